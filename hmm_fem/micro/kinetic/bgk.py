"""Discrete-velocity BGK micro solver: stress and heat flux of a gas under imposed gradients.

The micro problem is the **spatially homogeneous steady state** of the BGK equation in the
frame moving with an imposed linear velocity field ``u(r) = A r`` (Lees–Edwards / uniform
shear flow formulation of Garzó & Santos 2003), with the temperature gradient entering
through the Chapman–Enskog source of the local equilibrium:

    -A_ij V_j ∂f/∂V_i - zeta ∂_V·(V f) + nu f = nu f_M - nu tau (V·∇ln T)(m V²/2k_BT - (d+2)/2) f_M,

with ``nu = 1/tau`` and the peculiar velocity ``V``. The velocity gradient ``A`` enters as a
force in velocity space and is kept to all orders (non-Newtonian stress); the viscous heating
is removed by the Gaussian thermostat ``zeta``, fixed by the condition that the temperature
stays the imposed one (energy balance ``d p zeta = -A_ij P_ij``), so the state is steady. The
temperature-gradient source is that of the Navier–Stokes-level Chapman–Enskog expansion
(the Euler time derivatives of the local Maxwellian included, so that it carries no mass or
momentum flux); it gives Fourier's law with the BGK conductivity at vanishing ``A``. At finite
``A`` the heat flux is that of this frozen local-equilibrium source, not the exact
shear-dependent conductivity tensor of Lee & Dufty (arXiv:cond-mat/9705142, 1997).

**Velocity grid.** ``f = f_M g`` with ``g`` collocated at a tensor Gauss–Hermite grid (the
nodes of the Gaussian weight ``exp(-c²/2)``, ``c = V/sqrt(k_B T/m)``); the force term uses
the derivative of the polynomial interpolant of ``g`` (spectral collocation), the thermostat
is built mode by mode (no aliasing), and moments are the Gauss–Hermite sums. Why this grid:
an ``n``-node Gauss rule integrates ``f_M`` times any polynomial of degree ``<= 2n - 1``
exactly; in the Hermite modes the operator maps total degree ``K`` only into ``K`` and
``K + 2`` (lower block-triangular), so truncating the velocity space never feeds back into
the low moments. For ``n >= 5`` the discrete equations for the pressure tensor and the
third moments (heat flux) are *identical* to the continuous moment equations: stress and
heat flux carry no velocity-discretisation error, only round-off, which the solver checks
a posteriori (``moment_tol``). The grid size controls how well the distribution itself is
resolved; the solver reports the weight of the two highest Hermite modes of ``g``
(:attr:`BGKState.tail_fraction`) and, if asked (``resolution_tol``), refuses a grid too
coarse for it (:class:`VelocityGridTooCoarse`). A discrete-velocity grid on a box (uniform
nodes, finite differences in velocity) has none of these exactness properties: its moments
carry the quadrature and velocity-derivative errors.

All operators are sparse Kronecker products of ``n x n`` one-dimensional matrices built
once; a solve is a few sparse LU factorisations (one per thermostat iterate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import hermite_e
from scipy.sparse.linalg import splu

from ..protocol import MicroSolveError

__all__ = ["BGKSolver", "BGKState", "HermiteVelocityGrid", "VelocityGridTooCoarse"]

#: Fewest nodes per direction for which the discrete moment hierarchy is exact up to the
#: heat flux (a cubic moment against ``c² g`` needs degree ``n + 4 <= 2n - 1``).
MIN_NODES = 5
#: Most nodes per direction: the differentiation matrix of the interpolant at the Hermite
#: nodes loses accuracy with n (relative error on a quintic: 3e-11 at n = 20, 7e-8 at 30,
#: 2e-2 at 40).
MAX_NODES = 24


class VelocityGridTooCoarse(ValueError):
    """The velocity grid does not resolve the distribution to the requested tolerance."""


class HermiteVelocityGrid:
    """Tensor Gauss–Hermite velocity grid in reduced velocity ``c = V / sqrt(k_B T / m)``.

    Attributes:
        dim: Velocity-space dimension (2 or 3).
        n: Nodes per direction.
        nodes: 1D nodes, shape ``(n,)`` (roots of the probabilists' Hermite ``He_n``).
        weights_1d: 1D weights normalised to sum 1 (the standard normal density).
        points: Velocity nodes, shape ``(n**dim, dim)``, C order (last axis fastest).
        weights: Tensor weights, shape ``(n**dim,)``, summing to 1.
        differentiation: ``(n, n)`` matrix: derivative of the interpolating polynomial at
            the nodes.
        synthesis: ``(n, n)``: orthonormal Hermite polynomials ``He_k/sqrt(k!)`` at the nodes
            (``[j, k]``).
        analysis: ``(n, n)``: its inverse, the Gauss–Hermite projection on those polynomials.
    """

    def __init__(self, dim=3, n=12):
        """Build the grid.

        Args:
            dim: Velocity-space dimension, 2 or 3.
            n: Nodes per direction, ``MIN_NODES <= n <= MAX_NODES``.

        Raises:
            ValueError: ``dim`` or ``n`` out of range.
        """
        if dim not in (2, 3):
            raise ValueError(f"HermiteVelocityGrid: dim must be 2 or 3, got {dim!r}")
        if not isinstance(n, (int, np.integer)) or not MIN_NODES <= n <= MAX_NODES:
            raise ValueError(
                f"HermiteVelocityGrid: n (nodes per velocity direction) must be an integer in "
                f"[{MIN_NODES}, {MAX_NODES}], got {n!r}; below {MIN_NODES} the pressure tensor "
                "and heat flux are no longer exact moments of the discrete solution, above "
                f"{MAX_NODES} the spectral velocity derivative loses accuracy"
            )
        self.dim = int(dim)
        self.n = int(n)
        x, w = hermite_e.hermegauss(self.n)
        self.nodes = x
        self.weights_1d = w / w.sum()
        diff = x[:, None] - x[None, :]
        np.fill_diagonal(diff, 1.0)
        bary = 1.0 / np.prod(diff, axis=1)
        dmat = (bary[None, :] / bary[:, None]) / diff
        np.fill_diagonal(dmat, 0.0)
        np.fill_diagonal(dmat, -dmat.sum(axis=1))
        self.differentiation = dmat
        mesh = np.meshgrid(*([x] * self.dim), indexing="ij")
        self.points = np.stack([m.ravel() for m in mesh], axis=1)
        wmesh = np.meshgrid(*([self.weights_1d] * self.dim), indexing="ij")
        self.weights = np.prod(np.stack([m.ravel() for m in wmesh]), axis=0)
        # Orthonormal Hermite analysis: coefficient_k = sum_j w_j He_k(x_j)/sqrt(k!) g_j,
        # exact for polynomials of degree < n (Gauss rule of degree 2n - 1).
        norms = np.sqrt([math.factorial(k) for k in range(self.n)])
        self.synthesis = hermite_e.hermevander(x, self.n - 1) / norms
        self.analysis = self.synthesis.T * self.weights_1d

    @property
    def size(self):
        """Number of discrete velocities, ``n**dim``."""
        return self.n**self.dim

    def hermite_coefficients(self, values):
        """Orthonormal tensor-Hermite coefficients of a function given at the nodes.

        Args:
            values: Shape ``(n**dim,)``, the function (e.g. ``f/f_M``) at :attr:`points`.

        Returns:
            Shape ``(n,) * dim``: coefficient ``[k1, k2, ...]`` of
            ``He_k1(c_x) He_k2(c_y) ... / sqrt(k1! k2! ...)``.
        """
        coef = np.asarray(values).reshape((self.n,) * self.dim)
        for axis in range(self.dim):
            coef = np.moveaxis(np.tensordot(self.analysis, coef, axes=(1, axis)), 0, axis)
        return coef

    def tail_fraction(self, values):
        """Relative weight of the two highest Hermite degrees (per direction) in ``values``.

        Args:
            values: Shape ``(n**dim,)``.

        Returns:
            ``||coefficients with some index >= n - 2|| / ||all coefficients||`` (0 for a zero
            function): a spectral estimate of the relative interpolation error.
        """
        coef = self.hermite_coefficients(values)
        total = np.sqrt(np.sum(coef**2))
        if total == 0.0:
            return 0.0
        index = np.indices(coef.shape).max(axis=0)
        return float(np.sqrt(np.sum(coef[index >= self.n - 2] ** 2)) / total)


@dataclass(frozen=True)
class BGKState:
    """Steady state of the BGK micro problem, in the user's physical units.

    Attributes:
        pressure_tensor: ``P_ij = m ∫ V_i V_j f dV``, shape ``(dim, dim)``.
        heat_flux: ``q_i = (m/2) ∫ V² V_i f dV``, shape ``(dim,)``.
        pressure: ``n k_B T`` (equal to ``trace(P)/dim`` by the thermostat).
        thermostat_rate: Gaussian thermostat ``zeta`` (1/time) that removes viscous heating.
        reduced_velocity_gradient: ``A tau`` (the local Knudsen numbers of the flow).
        reduced_temperature_gradient: ``tau sqrt(k_B T/m) ∇T / T``.
        distribution: ``f / f_M`` at the velocity nodes, shape ``(n**dim,)``.
        tail_fraction: Spectral resolution estimate of ``distribution - 1``
            (:meth:`HermiteVelocityGrid.tail_fraction`).
        factorisations: Sparse LU factorisations used (thermostat iterations + 1).
        pressure_tensor_tangent: With ``tangent=True``: ``dP_ij/dA_kl``, shape
            ``(dim, dim, dim, dim)`` (the thermostat adjusting), else ``None``.
        heat_flux_tangent: With ``tangent=True``: ``dq_i/dA_kl``, shape ``(dim, dim, dim)``.
    """

    pressure_tensor: np.ndarray
    heat_flux: np.ndarray
    pressure: float
    thermostat_rate: float
    reduced_velocity_gradient: np.ndarray
    reduced_temperature_gradient: np.ndarray
    distribution: np.ndarray
    tail_fraction: float
    factorisations: int
    pressure_tensor_tangent: np.ndarray | None = None
    heat_flux_tangent: np.ndarray | None = None

    @property
    def viscous_stress(self):
        """Viscous (deviatoric) stress ``-(P - p I)``; ``[0, 1]`` is the shear stress."""
        return -(self.pressure_tensor - self.pressure * np.eye(len(self.heat_flux)))


def _moment_residual(a_red, gamma, zeta, p_red, m3):
    """Largest residual of the exact second- and third-moment balances (reduced units).

    Multiplying the kinetic equation by ``c_i c_j`` and ``c_i c_j c_k`` and integrating:
    ``A P + (A P)^T + (1 + 2 zeta) P = I`` and
    ``sym3(A M) + (1 + 3 zeta) M = -(δ_ij γ_k + δ_ik γ_j + δ_jk γ_i)``.
    """
    d = len(gamma)
    ap = a_red @ p_red
    r2 = ap + ap.T + (1.0 + 2.0 * zeta) * p_red - np.eye(d)
    eye = np.eye(d)
    source = (
        np.einsum("ij,k->ijk", eye, gamma)
        + np.einsum("ik,j->ijk", eye, gamma)
        + np.einsum("jk,i->ijk", eye, gamma)
    )
    r3 = (
        np.einsum("im,mjk->ijk", a_red, m3)
        + np.einsum("jm,imk->ijk", a_red, m3)
        + np.einsum("km,ijm->ijk", a_red, m3)
        + (1.0 + 3.0 * zeta) * m3
        + source
    )
    scale = 1.0 + np.abs(a_red).max() * (1.0 + np.abs(m3).max()) + np.abs(gamma).max()
    return float(max(np.abs(r2).max(), np.abs(r3).max()) / scale)


def _positive(name, value):
    value = float(value)
    if not (np.isfinite(value) and value > 0.0):
        raise ValueError(f"BGKSolver.solve: {name} must be finite and > 0, got {value!r}")
    return value


class BGKSolver:
    """Steady homogeneous BGK solver under an imposed velocity and temperature gradient.

    Build it once (grid and sparse operators); call :meth:`solve` per macro state.

    Example:
        >>> solver = BGKSolver(dim=3, n_velocity=6)
        >>> A = [[0, 0.5, 0], [0, 0, 0], [0, 0, 0]]  # u_x = 0.5 y
        >>> state = solver.solve(A, [0.1, 0, 0], tau=1e-3)
        >>> state.viscous_stress[0, 1]  # mu * 0.5 with mu = p tau: about 5.0e-4
        >>> state.heat_flux[0]  # -kappa * 0.1, kappa = 5/2 p tau k_B/m: about -2.5e-4
    """

    def __init__(self, dim=3, n_velocity=6, *, moment_tol=1e-9, resolution_tol=None):
        """Build the velocity grid and the sparse velocity-space operators.

        Args:
            dim: Velocity-space dimension, 2 or 3. With 3 (a monatomic gas), the BGK
                conductivity has ``(d + 2)/2 = 5/2``.
            n_velocity: Gauss–Hermite nodes per velocity direction (``>= 5``). The stress and
                heat flux are exact moments for any such grid; more nodes resolve the tails of
                the distribution but worsen the conditioning at large shear rates (the
                operator is strongly non-normal), so keep it small (6–10).
            moment_tol: Largest accepted residual of the second- and third-moment balances
                that the discrete solution satisfies exactly in exact arithmetic (reduced
                units); a larger one means round-off has spoilt the solve
                (:class:`~hmm_fem.micro.protocol.MicroSolveError`).
            resolution_tol: If given, the largest accepted :attr:`BGKState.tail_fraction` of
                the distribution; a solve whose distribution is less resolved raises
                :class:`VelocityGridTooCoarse`. ``None``: only reported. Note that the
                uniform-shear-flow distribution of the BGK equation has algebraic tails, so
                its Hermite series converges only at small reduced shear rates.

        Raises:
            ValueError: Bad ``dim``, ``n_velocity``, ``moment_tol`` or ``resolution_tol``.
        """
        self.grid = HermiteVelocityGrid(dim, n_velocity)
        for name, value in (("moment_tol", moment_tol), ("resolution_tol", resolution_tol)):
            if value is not None and not (np.isfinite(float(value)) and float(value) > 0.0):
                raise ValueError(f"BGKSolver: {name} must be finite and > 0, got {value!r}")
        self.moment_tol = float(moment_tol)
        self.resolution_tol = None if resolution_tol is None else float(resolution_tol)
        g, d, n = self.grid, self.grid.dim, self.grid.n
        eye1 = sp.identity(n, format="csr")
        dmat = sp.csr_matrix(g.differentiation)

        def along(axis, mat):
            factors = [mat if k == axis else eye1 for k in range(d)]
            out = factors[0]
            for f in factors[1:]:
                out = sp.kron(out, f, format="csr")
            return out

        self._identity = sp.identity(g.size, format="csr")
        self._c = [sp.diags(g.points[:, k]) for k in range(d)]
        self._d = [along(k, dmat) for k in range(d)]
        c2 = np.sum(g.points**2, axis=1)
        # The thermostat -∂_V·(V f)/f_M = -sum_k (1 + c_k ∂_k - c_k²) g maps the orthonormal
        # Hermite mode h_k to k h_k + sqrt((k+1)(k+2)) h_{k+2} in each direction. Built in
        # modal form with h_n, h_{n+1} dropped: collocating c² g instead would alias h_{n+1}
        # onto -n h_{n-1} at the nodes and give the operator a spurious eigenvalue
        # 1 - d zeta tau that crosses zero at finite shear rates.
        k = np.arange(n)
        modal = np.diag(k.astype(float))
        modal[k[2:], k[:-2]] = np.sqrt((k[:-2] + 1.0) * (k[:-2] + 2.0))
        thermostat_1d = sp.csr_matrix(g.synthesis @ modal @ g.analysis)
        self._thermostat = sum(along(axis, thermostat_1d) for axis in range(d)).tocsr()
        # Chapman–Enskog temperature-gradient source per unit reduced gradient (dim, size).
        self._heat_source = -(0.5 * c2 - 0.5 * (d + 2))[None, :] * g.points.T
        self._c2 = c2

    def _shear_operator(self, a_red):
        d = self.grid.dim
        op = self._identity.copy()
        for i in range(d):
            for j in range(d):
                if a_red[i, j] != 0.0:
                    # -A_ij c_j ∂_i f / f_M = A_ij c_j (c_i - ∂_i) g
                    op = op + a_red[i, j] * (self._c[j] @ (self._c[i] - self._d[i]))
        return op.tocsr()

    def _check_gradients(self, velocity_gradient, temperature_gradient):
        d = self.grid.dim
        a = np.asarray(velocity_gradient, dtype=float)
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] > d:
            raise ValueError(
                f"BGKSolver.solve: velocity_gradient must be a square (k, k) matrix with "
                f"k <= dim = {d} (A_ij = ∂u_i/∂x_j), got shape {a.shape}"
            )
        full = np.zeros((d, d))
        full[: a.shape[0], : a.shape[1]] = a
        if not np.all(np.isfinite(full)):
            raise ValueError(f"BGKSolver.solve: velocity_gradient is not finite: {a.tolist()}")
        scale = max(np.abs(full).max(), 1e-300)
        if abs(np.trace(full)) > 1e-12 * scale:
            raise ValueError(
                "BGKSolver.solve: the velocity gradient must be traceless (divergence-free "
                f"flow), got trace {np.trace(full)!r}; a compressing or expanding gas has no "
                "steady homogeneous state"
            )
        if temperature_gradient is None:
            t = np.zeros(d)
        else:
            t = np.asarray(temperature_gradient, dtype=float).ravel()
            if t.size > d or not np.all(np.isfinite(t)):
                raise ValueError(
                    f"BGKSolver.solve: temperature_gradient must be finite with at most "
                    f"dim = {d} components, got {np.asarray(temperature_gradient).tolist()}"
                )
            t = np.concatenate([t, np.zeros(d - t.size)])
        return full, t

    def _thermostat_root(self, base, a_red, count):
        """Thermostat ``zeta tau`` at which the steady temperature is the imposed one.

        Safeguarded Newton on ``T(zeta)/T - 1`` (``dT/dzeta`` from a second solve with the
        same factorisation), inside a bracket ``[0, hi]``: viscous heating makes the excess
        positive at ``zeta = 0`` and the thermostat lowers it monotonically.
        """
        g = self.grid
        ones = np.ones(g.size)
        weights = g.weights * self._c2 / g.dim

        def excess(zeta):
            count[0] += 1
            lu = splu((base + zeta * self._thermostat).tocsc())
            dist = lu.solve(ones)
            slope = -weights @ lu.solve(self._thermostat @ dist)
            return weights @ dist - 1.0, slope

        # Navier–Stokes viscous heating, an upper bound for simple shear (shear thinning).
        hi = max(float(np.sum(a_red * (a_red + a_red.T))) / g.dim, 1e-14)
        for _ in range(60):
            f_hi, _slope = excess(hi)
            if f_hi < 0.0:
                break
            hi *= 2.0
        else:
            raise MicroSolveError(
                f"BGKSolver: no thermostat found up to zeta*tau = {hi:.3g} for the reduced "
                f"velocity gradient {a_red.tolist()}: no steady state"
            )
        lo, zeta = 0.0, hi
        for _ in range(200):
            value, slope = excess(zeta)
            if value == 0.0:
                return zeta
            if value > 0.0:
                lo = zeta
            else:
                hi = zeta
            new = zeta - value / slope if slope < 0.0 else 0.5 * (lo + hi)
            if not lo < new < hi:
                new = 0.5 * (lo + hi)
            # An absolute 1e-16 in zeta*tau changes the reduced stresses by as much: round-off.
            if abs(new - zeta) <= 1e-13 * zeta + 1e-16:
                return new
            zeta = new
        raise MicroSolveError(
            f"BGKSolver: the thermostat iteration did not converge for the reduced velocity "
            f"gradient {a_red.tolist()} (bracket [{lo:.6g}, {hi:.6g}])"
        )

    def solve(
        self,
        velocity_gradient,
        temperature_gradient=None,
        *,
        tau,
        density=1.0,
        temperature=1.0,
        mass=1.0,
        boltzmann=1.0,
        tangent=False,
    ):
        """Steady stress and heat flux under the imposed gradients.

        Args:
            velocity_gradient: ``A_ij = ∂u_i/∂x_j``, shape ``(k, k)`` with ``k <= dim``
                (padded with zeros), traceless. Simple shear ``u_x = a y``: ``A[0, 1] = a``.
            temperature_gradient: ``∇T``, up to ``dim`` components (``None``: zero).
            tau: BGK relaxation time (``> 0``).
            density: Number density ``n``.
            temperature: Temperature ``T``.
            mass: Particle mass ``m``.
            boltzmann: Boltzmann constant ``k_B`` in the user's units.
            tangent: Also return the derivatives of the pressure tensor and heat flux by the
                velocity gradient (:attr:`BGKState.pressure_tensor_tangent`), from the
                factorisation of the steady state: differentiating ``L(A, zeta) g = 1``
                with the thermostat fixed by the temperature condition costs a few
                triangular solves per component of ``A`` and no new factorisation.
                ``True``: every component ``A_kl``; a list of ``(k, l)`` pairs: only those
                (the others are NaN).

        Returns:
            The :class:`BGKState`.

        Raises:
            ValueError: Bad input (non-positive ``tau``, density, temperature, mass, wrong
                shapes, a non-traceless velocity gradient).
            VelocityGridTooCoarse: The distribution is not resolved to ``resolution_tol``.
            MicroSolveError: The thermostat could not be found (no steady state), or
                round-off broke the exact moment balances by more than ``moment_tol``.
        """
        tau = _positive("tau", tau)
        density = _positive("density", density)
        temperature = _positive("temperature", temperature)
        mass = _positive("mass", mass)
        boltzmann = _positive("boltzmann", boltzmann)
        a_phys, grad_t = self._check_gradients(velocity_gradient, temperature_gradient)
        theta = boltzmann * temperature / mass
        a_red = a_phys * tau
        gamma = tau * np.sqrt(theta) * grad_t / temperature
        g = self.grid
        base = self._shear_operator(a_red)
        ones = np.ones(g.size)
        count = [0]

        def factorise(zeta):
            count[0] += 1
            return splu((base + zeta * self._thermostat).tocsc())

        zeta = 0.0
        if np.any(a_red != 0.0):
            zeta = self._thermostat_root(base, a_red, count)
        rhs = np.column_stack([ones, self._heat_source.T @ gamma])
        lu = factorise(zeta)
        sol = lu.solve(rhs)
        dist = sol[:, 0] + sol[:, 1]
        if not np.all(np.isfinite(dist)):
            raise MicroSolveError(
                f"BGKSolver: non-finite distribution for the reduced velocity gradient "
                f"{a_red.tolist()} and reduced temperature gradient {gamma.tolist()}"
            )
        tail = g.tail_fraction(dist - 1.0)
        if self.resolution_tol is not None and tail > self.resolution_tol:
            raise VelocityGridTooCoarse(
                f"BGKSolver: the velocity grid ({g.n} Gauss-Hermite nodes per direction) "
                f"resolves f/f_M only to {tail:.2e} (weight of the two highest Hermite modes) > "
                f"resolution_tol = {self.resolution_tol:.1e} at the reduced velocity gradient "
                f"{a_red.tolist()} (A tau); increase n_velocity, or pass resolution_tol=None "
                "if only the stress and heat flux are needed (they are exact moments)"
            )
        weighted = g.weights * dist
        p_red = (g.points * weighted[:, None]).T @ g.points
        m3 = np.einsum("n,ni,nj,nk->ijk", weighted, g.points, g.points, g.points)
        residual = _moment_residual(a_red, gamma, zeta, p_red, m3)
        if residual > self.moment_tol:
            raise MicroSolveError(
                f"BGKSolver: the discrete solution misses the exact moment balances by "
                f"{residual:.2e} > moment_tol = {self.moment_tol:.1e} (round-off in an "
                f"ill-conditioned velocity operator) at the reduced velocity gradient "
                f"{a_red.tolist()}; use fewer velocity nodes (n_velocity = {g.n}; any n >= "
                f"{MIN_NODES} gives exact moments)"
            )
        pressure = density * boltzmann * temperature
        q_red = 0.5 * np.einsum("ijj->i", m3)
        p_tangent = q_tangent = None
        if tangent is not False and tangent is not None:
            d = g.dim
            pairs = [(k, m) for k in range(d) for m in range(d)] if tangent is True else tangent
            pairs = [(int(k), int(m)) for k, m in pairs]
            if any(not (0 <= k < d and 0 <= m < d) for k, m in pairs):
                raise ValueError(
                    f"BGKSolver.solve: tangent must be True or a list of (k, l) index pairs "
                    f"with 0 <= k, l < dim = {d}, got {tangent!r}"
                )
            dp_red, dq_red = self._tangent(lu, sol, zeta, pairs)
            # d(reduced)/dA = tau d(reduced)/dA*
            p_tangent = pressure * tau * dp_red
            q_tangent = pressure * np.sqrt(theta) * tau * dq_red
        return BGKState(
            pressure_tensor=pressure * p_red,
            heat_flux=pressure * np.sqrt(theta) * q_red,
            pressure=pressure,
            thermostat_rate=zeta / tau,
            reduced_velocity_gradient=a_red,
            reduced_temperature_gradient=gamma,
            distribution=dist,
            tail_fraction=tail,
            factorisations=count[0],
            pressure_tensor_tangent=p_tangent,
            heat_flux_tangent=q_tangent,
        )

    def _tangent(self, lu, sol, zeta, pairs):
        """``dP*/dA*_kl`` and ``dq*/dA*_kl`` (reduced) at a steady state, by linearisation.

        ``L g = 1`` (temperature column) and ``L h = s`` (heat column) with
        ``L = I + sum A*_ij C_ij + zeta Theta``: ``dg = -L^-1 (C_kl g + dzeta Theta g)``, the
        thermostat derivative ``dzeta`` fixed by the temperature condition ``<c^2/d> dg = 0``,
        and ``dh = -L^-1 (C_kl h + dzeta Theta h)``.
        """
        g = self.grid
        d = g.dim
        weights_t = g.weights * self._c2 / d
        base_g, base_h = sol[:, 0], sol[:, 1]
        theta_g = lu.solve(self._thermostat @ base_g)
        theta_h = self._thermostat @ base_h
        dp = np.full((d, d, d, d), np.nan)
        dq = np.full((d, d, d), np.nan)
        for k, m in pairs:
            op = self._c[m] @ (self._c[k] - self._d[k])
            x = lu.solve(op @ base_g)
            dzeta = -(weights_t @ x) / (weights_t @ theta_g)
            dg = -(x + dzeta * theta_g)
            dh = -lu.solve(op @ base_h + dzeta * theta_h)
            w = g.weights * (dg + dh)
            dp[:, :, k, m] = (g.points * w[:, None]).T @ g.points
            dq[:, k, m] = 0.5 * np.einsum("n,ni,nj,nj->i", w, g.points, g.points, g.points)
        return dp, dq
