"""Full discrete-velocity BGK solution of planar Couette and Poiseuille flow: the kinetic reference.

The linearised BGK equation between diffuse (fully accommodating, Maxwell) walls at
``y' = y/H = ±1/2``, for small wall speeds (Couette) or a small body force (force-driven
Poiseuille, equivalent to the pressure-driven flow of a long channel), in the notation of
F. Sharipov & V. Seleznev, J. Phys. Chem. Ref. Data 27, 657 (1998):

* reduced velocity ``c = v/v0``, ``v0 = sqrt(2 k_B T/m)``, rarefaction parameter
  ``delta = p H/(mu v0)`` (``Kn = sqrt(pi)/(2 delta)``), BGK collision frequency ``p/mu``;
* ``f = f_M (1 + h)``. Both flows are odd in ``c_x`` and the perturbation is exactly
  ``h = c_x Phi(y', c_y)``: the ``c_x`` and ``c_z`` integrals of the 3D velocity space are done
  in closed form (Chu reduction), leaving the discrete velocities ``c_y`` and the equation

      c_y dpsi/dy' + delta psi = delta w(y') + s,     w(y') = <psi>,

  with ``<.> = pi^(-1/2) int . exp(-c_y^2) dc_y``: ``s = 1`` and ``psi = Phi v0^2/(2 g H)``,
  ``w = u v0/(g H)`` for Poiseuille flow driven by the force per unit mass ``g``;
  ``s = 0``, ``psi = Phi v0/(2U)`` and ``w = u/U`` for Couette flow with walls moving at
  ``±U/2``. Diffuse walls: the molecules leaving a wall carry its velocity,
  ``psi = U_w/U`` (Couette, ``±1/2``) or ``0`` (Poiseuille).

**Discretisation.** ``c_y`` on ``±c_k``: a Gauss–Legendre rule in ``e^{-c}`` on each half
line (the half-range discontinuity of ``h`` at ``c_y = 0`` sits on the end of both rules;
C. E. Siewert's choice for these problems). ``y'`` on a uniform grid of ``N + 1`` nodes;
along each characteristic the equation is integrated exactly for a source linear between
nodes (second order in ``y``, unconditionally stable, exact in the free-molecular limit).
The discrete solution operator is a Toeplitz matrix per velocity, summed over the
velocities into one ``(N + 1) x (N + 1)`` kernel ``W`` (NumPy, no loop over velocities); the
steady state is the direct solve of ``(I - delta W) w = W s + w_walls`` (no source
iteration, so no slow-down at small Knudsen numbers).

Results (:class:`ChannelSolution`): the velocity ``w(y')``, the shear stress
``Pi = -P_xy/(rho v0 U)`` (Couette; ``<c_y psi>`` at every node, a conservation check) and the
reduced flow rate ``G_P = int w dy'`` (Poiseuille; ``G_P -> delta/6`` in the Navier–Stokes
limit, and the same number as ``G_P`` of Sharipov & Seleznev for pressure-driven flow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lu_factor, lu_solve, toeplitz

__all__ = ["LinearizedBGKChannel", "ChannelSolution", "half_range_velocities"]


def half_range_velocities(n):
    """Nodes ``c_k > 0`` and weights for ``pi^(-1/2) int_0^inf F(c) exp(-c^2) dc``.

    Gauss–Legendre with ``n`` nodes in ``u = e^{-c}`` on ``(0, 1)``.

    Args:
        n: Number of nodes (``>= 2``).

    Returns:
        ``(c, w)``, shape ``(n,)`` each; ``sum(w) = 1/2`` up to the rule's error.
    """
    if int(n) < 2:
        raise ValueError(f"half_range_velocities: n must be >= 2, got {n!r}")
    x, wx = np.polynomial.legendre.leggauss(int(n))
    u = 0.5 * (x + 1.0)
    c = -np.log(u)
    w = 0.5 * wx / u * np.exp(-(c**2)) / math.sqrt(math.pi)
    return c, w


def _phi_coefficients(t, delta):
    """Coefficients of one cell step ``psi_1 = E psi_0 + a S_0 + b S_1`` (source linear)."""
    e = np.exp(-t)
    one_minus_e = -np.expm1(-t)
    # 1 - (1 - E)/t loses digits for small t: series there.
    small = t < 1e-3
    ratio = np.where(small, t / 2 - t**2 / 6 + t**3 / 24, 1.0 - one_minus_e / np.where(small, 1, t))
    b = ratio / delta
    a = one_minus_e / delta - b
    return e, a, b


@dataclass(frozen=True)
class ChannelSolution:
    """Steady discrete-velocity solution of a linearised BGK channel flow.

    Attributes:
        flow: ``"couette"`` or ``"poiseuille"``.
        delta: Rarefaction parameter.
        y: Nodes ``y' = y/H - 1/2`` in ``[-1/2, 1/2]``, shape ``(N + 1,)``.
        velocity: Reduced velocity ``w(y')`` (``u/U`` or ``u v0/(g H)``).
        shear: ``<c_y psi>`` at every node: ``-Pi`` for Couette flow (constant in exact
            arithmetic), ``-P_xy v0/(2 p g H)``-type for Poiseuille (linear in ``y'``).
        flow_rate: ``int w dy'`` (trapezoidal; Simpson where ``N`` is even).
        distribution: ``psi`` at the nodes, shape ``(N + 1, 2 n)``, velocities ``[+c, -c]``.
        velocities: ``c_y`` of the columns of :attr:`distribution`.
    """

    flow: str
    delta: float
    y: np.ndarray
    velocity: np.ndarray
    shear: np.ndarray
    flow_rate: float
    distribution: np.ndarray
    velocities: np.ndarray

    @property
    def shear_stress(self) -> float:
        """Couette ``Pi = -P_xy/(rho v0 U)``: mean of ``-<c_y psi>`` over the nodes."""
        return float(-np.mean(self.shear))


class LinearizedBGKChannel:
    """Discrete-velocity solver of the linearised BGK Couette and Poiseuille flows.

    Example:
        >>> channel = LinearizedBGKChannel(cells=200, velocities=48)
        >>> channel.couette(1.0).shear_stress  # between 1/(2 sqrt(pi)) and the slip NS value
        >>> channel.poiseuille(1.0).flow_rate  # near the Knudsen minimum of G_P

    Args:
        cells: Number of uniform cells across the channel (``N``).
        velocities: Discrete velocities per half line (``2 * velocities`` in all).

    Raises:
        ValueError: ``cells < 2`` or ``velocities < 2``.
    """

    def __init__(self, cells: int = 200, velocities: int = 48):
        if int(cells) < 2:
            raise ValueError(f"LinearizedBGKChannel: cells must be >= 2, got {cells!r}")
        self.cells = int(cells)
        self.c, self.w = half_range_velocities(velocities)
        self.y = np.linspace(-0.5, 0.5, self.cells + 1)
        self.h = 1.0 / self.cells

    def _kernel(self, delta):
        """Kernel ``W`` (moment of the c > 0 sweeps plus their mirror) and sweep data."""
        n = self.cells
        t = delta * self.h / self.c  # (nv,)
        e, a, b = _phi_coefficients(t, delta)
        m = np.arange(n + 1)
        powers = e[:, None] ** m[None, :]  # E^m, (nv, N+1)
        # psi_i = E^i psi_0 + sum_j K(i, j) S_j with K(i, j) = a E^(i-1-j) [j < i]
        # + b E^(i-j) [1 <= j <= i]: Toeplitz in i - j but for the b term at j = 0.
        column = b[:, None] * powers
        column[:, 1:] += a[:, None] * powers[:, :-1]
        col = self.w @ column  # velocity sum
        upper = toeplitz(col, np.zeros(n + 1))
        upper[:, 0] -= self.w @ (b[:, None] * powers)
        # c < 0 sweeps run from the top wall: the mirror image (i, j) -> (N - i, N - j).
        kernel = upper + upper[::-1, ::-1]
        return kernel, powers, (e, a, b)

    def _solve(self, flow, delta, source, psi_bottom, psi_top):
        delta = float(delta)
        if not (math.isfinite(delta) and delta > 0.0):
            raise ValueError(
                f"LinearizedBGKChannel: delta (rarefaction parameter) must be finite and > 0, "
                f"got {delta!r}; for the free-molecular limit take a small delta"
            )
        n = self.cells
        kernel, powers, (e, a, b) = self._kernel(delta)
        walls = (self.w @ powers) * psi_bottom + (self.w @ powers)[::-1] * psi_top
        rhs = source * kernel.sum(axis=1) + walls
        w_nodes = lu_solve(lu_factor(np.eye(n + 1) - delta * kernel), rhs)
        s = delta * w_nodes + source
        psi_up = self._sweep(s, psi_bottom, e, a, b)
        psi_down = self._sweep(s[::-1], psi_top, e, a, b)[::-1]
        psi = np.concatenate([psi_up, psi_down], axis=1)
        weights = np.concatenate([self.w, self.w])
        cy = np.concatenate([self.c, -self.c])
        shear = psi @ (weights * cy)
        if n % 2 == 0:
            simpson = np.ones(n + 1)
            simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
            rate = float(simpson @ w_nodes * self.h / 3.0)
        else:
            rate = float(np.trapezoid(w_nodes, self.y))
        return ChannelSolution(flow, delta, self.y, w_nodes, shear, rate, psi, cy)

    def _sweep(self, s, psi0, e, a, b):
        """``psi`` of the ``c > 0`` velocities along ``y`` (a loop over cells, vectorised)."""
        out = np.empty((s.size, e.size))
        out[0] = psi0
        for i in range(s.size - 1):
            out[i + 1] = e * out[i] + a * s[i] + b * s[i + 1]
        return out

    def couette(self, delta) -> ChannelSolution:
        """Couette flow, walls at ``y' = ∓1/2`` moving at ``∓U/2``; velocity ``u/U``."""
        return self._solve("couette", delta, 0.0, -0.5, 0.5)

    def poiseuille(self, delta) -> ChannelSolution:
        """Force-driven Poiseuille flow, walls at rest; velocity ``u v0/(g H)``."""
        return self._solve("poiseuille", delta, 1.0, 0.0, 0.0)
