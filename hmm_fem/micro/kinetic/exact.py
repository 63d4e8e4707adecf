"""Exact results for the BGK equation: Chapman–Enskog coefficients, uniform shear flow.

The Chapman–Enskog transport coefficients and the steady thermostatted uniform shear flow
(USF).

These are the independent references of :mod:`~hmm_fem.micro.kinetic.bgk`; nothing here is
used by the solver itself.

**Chapman–Enskog (Navier–Stokes) limit** of the BGK equation with relaxation time ``tau`` in
``d`` velocity dimensions: shear viscosity ``mu = p tau`` and heat conductivity
``kappa = (d + 2)/2 · p tau k_B/m``, so the Prandtl number ``c_p mu / kappa`` is 1
(``c_p = (d + 2)/2 · k_B/m``).

**Uniform shear flow** ``u_x = a y`` in the Lees–Edwards frame, with a Gaussian thermostat
``-zeta ∂_V·(V f)`` that removes the viscous heating so that the state is steady. For the BGK
collision term with a constant collision frequency ``nu = 1/tau`` the second moments obey a
closed linear hierarchy, solved exactly (Garzó & Santos, *Kinetic Theory of Gases in Shear
Flows: Nonlinear Transport*, Kluwer 2003, the BGK solution of USF; see also
A. Santos, V. Garzó, J. J. Brey, J. W. Dufty, Phys. Rev. Lett. 71, 3971 (1993) and the
review A. Santos, arXiv:0903.1054 (2009), section on uniform shear flow). With the reduced
shear rate ``a* = a tau`` and thermostat ``zeta* = zeta tau``, the moment equations

    a (δ_ix P_jy + δ_jx P_iy) + 2 zeta P_ij = -nu (P_ij - p δ_ij)

give, in units of ``p``,

    P_yy* = P_zz* = 1/(1 + 2 zeta*),   P_xy* = -a*/(1 + 2 zeta*)^2,
    P_xx* = d - (d - 1) P_yy*,

and the energy balance ``d zeta* = -a* P_xy*`` is the cubic ``d zeta* (1 + 2 zeta*)^2 = a*^2``
in the thermostat parameter (derived here from the moment equations above). Its real root,
in closed form (Cardano, hyperbolic branch), is

    zeta* = (2/3) sinh^2[ (1/6) arccosh(1 + 27 a*^2 / d) ],

i.e. ``(2/3) sinh^2[(1/6) arccosh(1 + 9 a*^2)]`` for ``d = 3``. The non-Newtonian viscosity is
``eta* = -P_xy*/a* = (1 + 2 zeta*)^-2``; the first normal-stress difference is
``(P_xx - P_yy)/p = 2 d zeta*/(1 + 2 zeta*)`` and the second, ``(P_yy - P_zz)/p``, is zero.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "chapman_enskog_viscosity",
    "chapman_enskog_conductivity",
    "usf_exact",
    "moment_solution",
    "usf_poiseuille_velocity",
    "couette_heating_exact",
]


def chapman_enskog_viscosity(pressure, tau):
    """BGK shear viscosity in the Navier–Stokes limit.

    Args:
        pressure: Pressure ``p = n k_B T``.
        tau: BGK relaxation time.

    Returns:
        ``mu = p tau``.
    """
    return pressure * tau


def chapman_enskog_conductivity(pressure, tau, dim, k_over_m=1.0):
    """BGK heat conductivity in the Navier–Stokes limit (Prandtl number 1).

    Args:
        pressure: Pressure ``p = n k_B T``.
        tau: BGK relaxation time.
        dim: Velocity-space dimension ``d`` (2 or 3).
        k_over_m: Boltzmann constant over particle mass, ``k_B/m``.

    Returns:
        ``kappa = (d + 2)/2 · p tau k_B/m``.
    """
    return 0.5 * (dim + 2) * pressure * tau * k_over_m


def usf_exact(reduced_shear_rate, dim=3):
    """Exact steady thermostatted BGK uniform shear flow, in units of the pressure.

    Args:
        reduced_shear_rate: ``a* = a tau`` (scalar or array, ``>= 0``).
        dim: Velocity-space dimension ``d`` (2 or 3).

    Returns:
        A dict of arrays: ``zeta`` (reduced thermostat ``zeta tau``), ``eta`` (reduced
        viscosity ``-P_xy/(p a*)``), ``Pxx``, ``Pyy``, ``Pxy`` (pressure tensor over ``p``),
        ``N1`` ``= (P_xx - P_yy)/p`` and ``N2`` ``= (P_yy - P_zz)/p`` (zero for the BGK USF).
    """
    a = np.asarray(reduced_shear_rate, dtype=float)
    zeta = (2.0 / 3.0) * np.sinh(np.arccosh(1.0 + 27.0 * a**2 / dim) / 6.0) ** 2
    pyy = 1.0 / (1.0 + 2.0 * zeta)
    pxy = -a * pyy**2
    pxx = dim - (dim - 1) * pyy
    return {
        "zeta": zeta,
        "eta": pyy**2,
        "Pxx": pxx,
        "Pyy": pyy,
        "Pxy": pxy,
        "N1": pxx - pyy,
        "N2": np.zeros_like(a),
    }


def _third_moment_operator(a_red, zeta):
    d = a_red.shape[0]
    eye = np.eye(d)
    return (
        np.kron(np.kron(a_red, eye), eye)
        + np.kron(np.kron(eye, a_red), eye)
        + np.kron(np.kron(eye, eye), a_red)
        + (1.0 + 3.0 * zeta) * np.eye(d**3)
    )


def moment_solution(reduced_velocity_gradient, reduced_temperature_gradient):
    """Pressure tensor and heat flux of the BGK micro problem from its closed moment equations.

    The model problem is that of :class:`~hmm_fem.micro.kinetic.BGKSolver`, solved here
    without a velocity grid.

    For the steady BGK equation with the velocity gradient ``A`` as a force in velocity
    space, a Gaussian thermostat ``zeta`` and the Chapman–Enskog temperature-gradient source,
    the second and third moments (reduced units: ``P`` over ``p``, ``M_ijk = <c_i c_j c_k>``
    with ``c = V/sqrt(k_B T/m)``) obey the closed linear systems

        A P + (A P)^T + (1 + 2 zeta) P = I,                       trace(P) = d,
        sum_m (A_im M_mjk + A_jm M_imk + A_km M_ijm) + (1 + 3 zeta) M = -sym(δ γ),

    the trace condition fixing ``zeta`` (energy balance). This is the method of the exact USF
    solution (Garzó & Santos 2003) applied to a general traceless ``A``.

    Args:
        reduced_velocity_gradient: ``A tau``, shape ``(d, d)``, traceless.
        reduced_temperature_gradient: ``gamma = tau sqrt(k_B T/m) ∇T/T``, shape ``(d,)``.

    Returns:
        ``(P, q, zeta)``: the pressure tensor over ``p``, the heat flux over
        ``p sqrt(k_B T/m)`` (``q_i = M_ijj / 2``), and ``zeta tau``.
    """
    a = np.asarray(reduced_velocity_gradient, dtype=float)
    gamma = np.asarray(reduced_temperature_gradient, dtype=float)
    d = a.shape[0]
    eye = np.eye(d)

    def pressure_tensor(zeta):
        op = np.kron(a, eye) + np.kron(eye, a) + (1.0 + 2.0 * zeta) * np.eye(d * d)
        return np.linalg.solve(op, eye.ravel()).reshape(d, d)

    zeta = 0.0
    if np.any(a != 0.0):
        hi = 1.0
        while np.trace(pressure_tensor(hi)) > d:
            hi *= 2.0
        zeta = brentq(lambda z: np.trace(pressure_tensor(z)) - d, 0.0, hi, xtol=1e-16)
    source = (
        np.einsum("ij,k->ijk", eye, gamma)
        + np.einsum("ik,j->ijk", eye, gamma)
        + np.einsum("jk,i->ijk", eye, gamma)
    )
    m3 = np.linalg.solve(_third_moment_operator(a, zeta), -source.ravel()).reshape(d, d, d)
    return pressure_tensor(zeta), 0.5 * np.einsum("ijj->i", m3), zeta


def _usf_shear_stress(a, dim):
    """``-P_xy/p = a* eta(a*)`` of the exact USF (increasing up to its maximum)."""
    return a * usf_exact(a, dim)["eta"]


def usf_poiseuille_velocity(y, force, height, tau, temperature=1.0, dim=3, mass=1.0, boltzmann=1.0):
    """Isothermal force-driven channel flow with the exact USF shear stress at every point.

    The reference of the local (homogeneous) BGK closure in a Poiseuille flow: the
    momentum balance fixes the shear stress, ``sigma(y) = m n g (H/2 - y)`` (walls at
    ``y = 0, H`` at rest, no slip); the local closure ``sigma = p a* eta(a*)`` with the
    closed-form USF viscosity (:func:`usf_exact`) gives the shear rate ``a*(y)/tau``, and
    ``u(y) = int_0^y a*/tau``. Independent of the velocity grid and of the finite elements.

    Args:
        y: Positions in ``[0, H]`` (array).
        force: Body force per unit mass ``g``.
        height: ``H``.
        tau: Relaxation time (uniform: isothermal gas).
        temperature: ``T``.
        dim: Velocity-space dimension.
        mass: ``m``.
        boltzmann: ``k_B``.

    Returns:
        ``u(y)``.

    Raises:
        ValueError: The wall stress exceeds the largest USF shear stress (at ``a* = 1.5``
            the stress is still increasing; beyond, the local closure has no solution).
    """
    theta = boltzmann * temperature / mass
    reduced = force * height / (2.0 * theta)  # sigma_wall / p
    a_max = 1.5
    if abs(reduced) >= _usf_shear_stress(a_max, dim):
        raise ValueError(
            f"usf_poiseuille_velocity: the reduced wall stress {reduced:.3g} is beyond the "
            "range of this reference (a* <= 1.5)"
        )

    def shear_rate(s):
        target = reduced * (1.0 - 2.0 * s / height)
        if target == 0.0:
            return 0.0
        sign = np.sign(target)
        a = brentq(lambda x: _usf_shear_stress(x, dim) - abs(target), 0.0, a_max, xtol=1e-15)
        return sign * a / tau

    # a*(y) is analytic on [0, H]: a 40-point Gauss-Legendre rule on [0, y] is exact to
    # round-off.
    y = np.atleast_1d(np.asarray(y, dtype=float))
    x, w = np.polynomial.legendre.leggauss(40)
    out = np.empty_like(y)
    for k, yi in enumerate(y):
        nodes = 0.5 * yi * (x + 1.0)
        out[k] = 0.5 * yi * (w @ np.array([shear_rate(s) for s in nodes]))
    return out


def couette_heating_exact(wall_speed, height, mu, c_p, wall_temperature=1.0, samples=2001):
    """Navier–Stokes planar Couette flow with viscous heating, Prandtl number 1.

    Walls at ``y = 0`` (at rest) and ``y = H`` (speed ``U``), both at ``T_w``;
    ``mu = mu(T)`` any law and ``kappa = c_p mu``. With ``sigma = mu u'`` uniform and
    ``-(kappa T')' = sigma u'``, the Crocco–Busemann relation ``T = T_w + u (U - u)/(2 c_p)``
    holds for any ``mu(T)``; then ``dy/du = mu(T(u))/sigma`` gives
    ``sigma = (1/H) int_0^U mu(T(u)) du`` and ``y(u)``.

    Args:
        wall_speed: ``U``.
        height: ``H``.
        mu: Viscosity law, a vectorised function of ``T``.
        c_p: Specific heat at constant pressure (per unit mass).
        wall_temperature: ``T_w``.
        samples: Points of the composite Simpson rule in ``u``.

    Returns:
        ``(sigma, y, u, T)``: the shear stress and the profile at ``samples`` points.
    """
    from scipy.integrate import cumulative_simpson

    u = np.linspace(0.0, wall_speed, samples)
    T = wall_temperature + u * (wall_speed - u) / (2.0 * c_p)
    mu_u = mu(T)
    y_unscaled = cumulative_simpson(mu_u, x=u, initial=0.0)
    sigma = y_unscaled[-1] / height
    return sigma, y_unscaled / sigma, u, T
