"""The BGK micro solver behind the micro seam: shear stress and heat flux of a planar flow.

:class:`BGKClosure` answers, at every macro point of a planar flow ``u = (u_x(y), 0, 0)``
with temperature ``T(y)``, the viscous shear stress ``sigma_xy = -P_xy`` and the heat flux
``q_y`` that the homogeneous BGK micro problem of :class:`~hmm_fem.micro.kinetic.BGKSolver`
gives for the local gradients. The relaxation time comes from a viscosity law,
``tau = mu(T)/p`` with ``mu(T) = mu_ref (T/T_ref)^omega`` (hard spheres ``omega = 1/2``,
Maxwell molecules ``omega = 1``) and ``p = n k_B T``.

**Reduced state.** In reduced variables the micro problem depends on the reduced shear rate
``a* = tau du_x/dy`` only (the local Knudsen number of the flow): the pressure tensor is
``p P*(a*)`` and the heat flux is linear in the reduced temperature gradient,
``q_y = (k_B/m) mu(T) K(a*) dT/dy`` (the micro heat source is linear in the gradient). So
the micro state is the single column ``a*``: points with equal ``a*`` share one solve
whatever their ``T``, ``n`` and ``dT/dy``, and ``respond`` rescales vectorised. A solve
returns ``P*``, ``K`` and their exact ``a*``-derivatives (the micro solver's linearised
tangent, from the factorisation of the steady state); the tangents by ``T``, ``n``,
``du/dy``, ``dT/dy`` follow by the chain rule.

**Navier–Stokes limit.** ``P*_xy = -a*`` and ``K = -(d + 2)/2`` as ``a* -> 0``: the model
gives ``sigma_xy = mu du/dy`` and ``q_y = -kappa dT/dy`` with ``kappa = (d + 2)/2 (k_B/m) mu``
(Prandtl number 1). At finite ``a*`` the stress is that of steady uniform shear flow
(shear thinning, normal-stress differences).

**The thermostat and the macro energy balance.** The micro problem is kept steady by a
Gaussian thermostat that removes the viscous heating at the point; the macro energy
equation ``dq_y/dy = sigma_xy du_x/dy`` puts that heat back where the macro flow dissipates
it (:class:`~hmm_fem.macro.channel.ChannelFlow` with ``energy=True``).
"""

from __future__ import annotations

import math

import numpy as np

from ..protocol import MicroModel, MicroResponse, SolveContext
from .bgk import BGKSolver

__all__ = ["BGKClosure", "rarefaction_parameter", "knudsen_number"]


def rarefaction_parameter(height, pressure, viscosity, temperature, mass=1.0, boltzmann=1.0):
    """Rarefaction parameter ``delta = p H / (mu v0)`` with ``v0 = sqrt(2 k_B T/m)``.

    The inverse Knudsen number of Sharipov & Seleznev (J. Phys. Chem. Ref. Data 27, 657
    (1998)): ``Kn = sqrt(pi)/(2 delta)`` for the mean free path ``mu sqrt(pi k_B T/(2 m))/p``.

    Args:
        height: Channel height ``H``.
        pressure: Pressure ``p``.
        viscosity: Viscosity ``mu``.
        temperature: Temperature ``T``.
        mass: Particle mass ``m``.
        boltzmann: Boltzmann constant ``k_B``.
    """
    v0 = math.sqrt(2.0 * boltzmann * temperature / mass)
    return pressure * height / (viscosity * v0)


def knudsen_number(delta):
    """``Kn = sqrt(pi)/(2 delta)`` from the rarefaction parameter ``delta``."""
    return math.sqrt(math.pi) / (2.0 * float(delta))


class BGKClosure(MicroModel):
    """Shear stress and heat flux of a planar gas flow from the BGK micro solver.

    Inputs at every macro point (all scalars): ``grad_u`` (``du_x/dy``), ``grad_T``
    (``dT/dy``), ``T`` (temperature) and ``n`` (number density). Response, shape ``(2,)``:
    ``[sigma_xy, q_y]`` with ``sigma_xy = -P_xy`` the viscous shear stress and ``q_y`` the
    heat flux, and the tangents by all four inputs. The solutions also carry the normal
    stresses over the pressure (``Pxx``, ``Pyy``), the reduced shear rate ``a*``, the
    relaxation time ``tau`` and the shear-induced streamwise heat flux ``q_x``.

    Example:
        >>> closure = BGKClosure(mu_ref=0.01, omega=0.5)
        >>> r = closure.evaluate({"grad_u": [[2.0]], "grad_T": [[0.0]], "T": [[1.0]],
        ...                       "n": [[1.0]]})
        >>> r.value[0, 0]  # mu * du/dy = 0.02 (a* = 0.02: Navier-Stokes to 1e-3)

    Args:
        mu_ref: Viscosity at ``T_ref`` (``> 0``).
        omega: Viscosity exponent, ``mu = mu_ref (T/T_ref)^omega``.
        T_ref: Reference temperature (``> 0``).
        dim: Velocity-space dimension of the micro solver (3: a monatomic gas; 2).
        n_velocity: Gauss–Hermite nodes per velocity direction of the micro solver.
        mass: Particle mass ``m``.
        boltzmann: Boltzmann constant ``k_B``.

    Raises:
        ValueError: Non-positive ``mu_ref``, ``T_ref``, ``mass`` or ``boltzmann``.
    """

    inputs = {"grad_u": (), "grad_T": (), "T": (), "n": ()}
    output_shape = (2,)
    state_names = ("a*",)

    def __init__(
        self,
        mu_ref: float,
        omega: float = 0.5,
        T_ref: float = 1.0,
        *,
        dim: int = 3,
        n_velocity: int = 6,
        mass: float = 1.0,
        boltzmann: float = 1.0,
    ):
        for name, value in (
            ("mu_ref", mu_ref),
            ("T_ref", T_ref),
            ("mass", mass),
            ("boltzmann", boltzmann),
        ):
            if not (np.isfinite(float(value)) and float(value) > 0.0):
                raise ValueError(f"BGKClosure: {name} must be finite and > 0, got {value!r}")
        if not np.isfinite(float(omega)):
            raise ValueError(f"BGKClosure: omega must be finite, got {omega!r}")
        self.mu_ref, self.omega, self.T_ref = float(mu_ref), float(omega), float(T_ref)
        self.mass, self.boltzmann = float(mass), float(boltzmann)
        self.solver = BGKSolver(dim, n_velocity)
        self.dim = self.solver.grid.dim

    # -- the gas --------------------------------------------------------------------------------
    def viscosity(self, T):
        """``mu(T) = mu_ref (T/T_ref)^omega`` (vectorised)."""
        return self.mu_ref * (np.asarray(T, dtype=np.float64) / self.T_ref) ** self.omega

    def relaxation_time(self, T, n):
        """``tau = mu(T) / (n k_B T)`` (vectorised)."""
        T = np.asarray(T, dtype=np.float64)
        return self.viscosity(T) / (np.asarray(n, dtype=np.float64) * self.boltzmann * T)

    def _check(self, inputs):
        values = {k: np.asarray(inputs[k], dtype=np.float64).reshape(-1) for k in self.inputs}
        for name in ("T", "n"):
            bad = ~(np.isfinite(values[name]) & (values[name] > 0.0))
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"BGKClosure: {name} must be finite and > 0 at every point, got "
                    f"{values[name][i]!r} at point {i}; check the macro temperature and "
                    "density fields (and their boundary values)"
                )
        return values

    # -- the protocol ---------------------------------------------------------------------------
    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The reduced shear rate ``a* = tau du_x/dy``, shape ``(n, 1)``."""
        v = self._check(inputs)
        return (self.relaxation_time(v["T"], v["n"]) * v["grad_u"]).reshape(-1, 1)

    def solve(self, state: np.ndarray, context: SolveContext | None = None):
        """Reduced pressure tensor and heat-flux coefficients, with their ``a*``-derivatives.

        One steady BGK solve at ``A*_xy = a*`` and unit reduced temperature gradient along
        ``y``, with the solver's linearised tangent (no finite difference).
        """
        d = self.dim
        a = np.zeros((d, d))
        a[0, 1] = float(state[0])
        gamma = np.zeros(d)
        gamma[1] = 1.0
        s = self.solver.solve(a, gamma, tau=1.0, tangent=[(0, 1)])
        p_red, k_red = s.pressure_tensor, s.heat_flux
        return {
            "Pxy": np.array(p_red[0, 1]),
            "Pxx": np.array(p_red[0, 0]),
            "Pyy": np.array(p_red[1, 1]),
            "dPxy": np.array(s.pressure_tensor_tangent[0, 1, 0, 1]),
            "Kyy": np.array(k_red[1]),
            "Kxy": np.array(k_red[0]),
            "dKyy": np.array(s.heat_flux_tangent[1, 0, 1]),
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """``sigma_xy = -p P*_xy(a*)``, ``q_y = (k_B/m) mu(T) K(a*) dT/dy``, chain-rule tangents."""
        v = self._check(inputs)
        T, n, du, dT = v["T"], v["n"], v["grad_u"], v["grad_T"]
        kb_m = self.boltzmann / self.mass
        p = n * self.boltzmann * T
        mu = self.viscosity(T)
        tau = mu / p
        pxy, dpxy = solutions["Pxy"], solutions["dPxy"]
        kyy, dkyy = solutions["Kyy"], solutions["dKyy"]
        # d a*/d(input): a* = tau du, tau = mu(T)/(n k_B T)
        da_du = tau
        da_dT = tau * du * (self.omega - 1.0) / T
        da_dn = -tau * du / n
        sigma = -p * pxy
        q = kb_m * mu * kyy * dT
        npts = T.size
        value = np.stack([sigma, q], axis=1)
        d_sigma = {
            "grad_u": -p * dpxy * da_du,
            "grad_T": np.zeros(npts),
            "T": -n * self.boltzmann * pxy - p * dpxy * da_dT,
            "n": -self.boltzmann * T * pxy - p * dpxy * da_dn,
        }
        d_q = {
            "grad_u": kb_m * mu * dkyy * dT * da_du,
            "grad_T": kb_m * mu * kyy,
            "T": kb_m * (self.omega * mu / T * kyy + mu * dkyy * da_dT) * dT,
            "n": kb_m * mu * dkyy * da_dn * dT,
        }
        derivatives = {k: np.stack([d_sigma[k], d_q[k]], axis=1) for k in self.inputs}
        out = {k: np.asarray(solutions[k]).reshape(-1) for k in ("Pxx", "Pyy", "Pxy")}
        out["a*"] = (tau * du).reshape(-1)
        out["tau"] = tau
        out["q_x"] = kb_m * mu * np.asarray(solutions["Kxy"]).reshape(-1) * dT
        return MicroResponse(value=value, derivatives=derivatives, solutions=out)
