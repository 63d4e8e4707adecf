"""Patch dynamics (the gap-tooth scheme): a micro simulator in small patches of a coarse grid.

Small patches of a fine-scale simulator sit at the nodes of a coarse grid and leave most of
the domain empty. The patches are coupled through their edges: before every micro step,
the values on each patch's edge points are set from a polynomial that fits the coarse
field (the patch averages) of the patch and its neighbours. Between the couplings every
patch evolves on its own, all patches in one vectorised call of the micro simulator. The
averages over the patches are the coarse field; the whole arrangement is a coarse
time-stepper ``stepper(U, t, T)`` on which the projective-integration and steady-state tools
of :mod:`hmm_fem.equation_free` work.

The scheme follows the gap-tooth and patch-dynamics papers of Gear, Li & Kevrekidis
(2003) and Samaey, Roose & Kevrekidis (Multiscale Model. Simul. 4, 2005; J. Comput. Phys.
213, 2006), which analyse it for homogenisation problems with box (patch) averages as the
coarse variables, and the "patchSys" design of Roberts, Bunder et al.'s EquationFreeGit
toolbox (the patches coupled at every micro step, so that the patch system is one closed
dynamical system); see :class:`PatchDynamics` for what is coupled how, and why.

:class:`HeterogeneousDiffusion` is a ready micro simulator: conservative finite differences
of ``u_t = div(a(x/eps) grad u)`` on a fine square lattice in every patch (1D or 2D),
explicit or implicit Euler, all patches in one sparse operator.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

__all__ = ["PatchDynamics", "HeterogeneousDiffusion"]

# Relative tolerance of geometric comparisons (ties of distances, touching patches, whole
# numbers of periods): far above round-off of coordinates, far below any spacing.
_GEOMETRY_TOLERANCE = 1e-9
# A fit whose design matrix has a smaller singular value ratio does not determine the
# polynomial: the neighbours are too few or badly spread for the requested order.
_RANK_TOLERANCE = 1e-10
# Shells of nodes a fit may take beyond the nearest ones before the order is refused.
_EXTRA_SHELLS = 3


def _exponents(dim: int, degree: int) -> np.ndarray:
    """Exponents of the monomials of total degree <= ``degree`` in ``dim`` variables."""
    if dim == 1:
        return np.arange(degree + 1).reshape(-1, 1)
    return np.array([(a, total - a) for total in range(degree + 1) for a in range(total, -1, -1)])


def _monomials(x: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Monomials ``x**alpha`` at points ``x`` (shape ``(..., d)``) -> ``(..., n_monomials)``."""
    return np.prod(x[..., None, :] ** exponents, axis=-1)


def _shifted_moments(offsets: np.ndarray, moments: np.ndarray, exponents: np.ndarray):
    """Averages of the monomials over a patch moved by ``offsets``.

    ``E_w[(D + xi)^alpha] = sum_{beta <= alpha} binom(alpha, beta) D^(alpha - beta) mu_beta``
    with ``mu_beta = E_w[xi^beta]`` the moments of the patch's averaging weights.
    """
    index = {tuple(e): i for i, e in enumerate(exponents)}
    out = np.zeros((*offsets.shape[:-1], len(exponents)))
    for i, alpha in enumerate(exponents):
        for beta in np.ndindex(*(alpha + 1)):
            beta = np.asarray(beta)
            binom = np.prod([math.comb(int(a), int(b)) for a, b in zip(alpha, beta)])
            power = np.prod(offsets ** (alpha - beta), axis=-1)
            out[..., i] += binom * power * moments[index[tuple(beta)]]
    return out


def _as_points(values, dim: int, name: str) -> np.ndarray:
    """``values`` as a finite ``(n, dim)`` float array (a 1D array is ``n`` points in 1D)."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1 and dim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (n, {dim}) for a {dim}D micro model, got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has entries that are not finite")
    return array


class PatchDynamics:
    """Patch dynamics: a micro simulator in patches at the nodes of a coarse grid.

    **The micro simulator** acts on all patches at once. It is any object with

    * ``points``: ``(P, d)`` offsets of its state's points from the patch centre (the
      patch's extent is their bounding box, centred on 0);
    * ``edge``: indices of the points whose values the coupling sets (Dirichlet values);
    * ``weights``: ``(P,)`` averaging weights, summing to 1; the coarse value of a patch
      is ``weights @ u`` (the patch average, or an average over a core region);
    * ``step(u, t, dt)``: advances the stacked states ``u`` (shape ``(N, P)``) by ``dt``
      and returns the new array, holding the edge values of ``u`` during the step;
    * optionally ``prepare(centres)`` (called once with the ``(N, d)`` centres, to lay
      out coefficients and build operators for ``N`` patches), ``stable_time_step`` (the
      default ``dt``), ``edge_time`` (when within a step the micro scheme reads its edge
      values: 0 at the start, e.g. forward Euler, the default; 1 at the end, backward
      Euler) and ``linear`` (``True`` if ``step`` is affine in ``u`` and the same at every
      time, which allows ``coupling="implicit"``).

    :class:`HeterogeneousDiffusion` is one.

    **The coupling.** Patch ``j`` gets the polynomial ``P_j`` of total degree ``order``
    whose average over patch ``j`` (with the patch's weights) is exactly ``U_j`` and whose
    averages over the neighbouring patches match theirs, in the least-squares sense with
    weights ``(spacing/distance)^4`` (a Dirichlet node of the coarse grid counts with its
    point value); the edge values of patch ``j`` are ``P_j`` at its edge points, and
    :meth:`lift` puts ``P_j`` on all its points. The neighbours are the nearest coarse
    nodes: ``neighbours`` of them, by default the number of free coefficients in 1D
    (interpolation: ``p/2`` patches on either side for an even ``order`` ``p``) and 30 %
    more in 2D (``order=2`` fits the 8 surrounding nodes of a square grid, ``order=4``
    the 20 within twice the spacing); ties at equal distance are all taken, so stencils on
    regular grids stay symmetric, and a fit the nodes do not determine (nodes in a line
    along a boundary) takes the next shell of nodes (counted in ``widened_stencils``).

    Why averages and not point values: the patch average is the coarse variable; a
    polynomial through the averages taken as point values is off by ``w^2 U''/24`` at
    every node, which leaves an O((w/H)^2) error in the coarse rate however high the
    order (and made the coupled patches unstable in our 2D tests). Why a smooth
    polynomial per patch and not the P1/P2 interpolant of the coarse mesh: that
    interpolant has kinks at the nodes where the patches sit, and a patch of width ``w``
    feels a kink of slope ``s`` as a source ``~ s/w``, an O(H^k/w) error. With
    ``order >= 2`` the coupling reproduces the curvature, and the coarse rate of a smooth
    field is consistent with an error O(H^order) on symmetric stencils (tested in 1D).
    Measured on a 12 x 12 mesh of the unit square (u = 0 on its boundary, constant
    diffusivity), the error of the decay rate of ``sin(pi x) sin(2 pi y)``: 3 % with
    ``order=2``, 0.05 % with ``order=4``; an odd order gains nothing over the even order
    below it, and ``order=6`` made the coupled patches unstable.
    When the weights include edge points (a trapezoidal average over the whole patch),
    the averages and edge values are solved for together (a sparse LU made once).

    **Time integration of the patch system.** The patches evolve in bursts of micro steps,
    the edge values refreshed before every micro step, so a burst is a stretch of one
    closed dynamical system (the "patchSys" approach of EquationFreeGit rather than edge
    values frozen for a whole burst, which is consistent only while the burst is short
    against the patch's diffusion time ``w^2 / a``). Two couplings in time:

    * ``coupling="explicit"`` (any micro simulator): the edge values come from the
      averages at the start of the step, extrapolated linearly to ``edge_time`` of the
      step. With forward Euler that is exact; with backward Euler (``edge_time = 1``) the
      extrapolation makes the lag error second order, but the step must stay below the
      patch's diffusion time ``~ w^2 / (12 a)`` (frozen edge values would slow the coarse
      rate by ``1 / (1 + 3 a dt / (w/2)^2)``: 33 % at ``dt = 2e-5`` on ``w = 1/64``).
    * ``coupling="implicit"`` (a ``linear`` micro step, e.g. backward Euler): the edge
      values at the end of the step are solved for with the step. The step's responses to
      unit edge values (one micro step per edge point, all patches at once, per step
      size) give the new averages by an ``N x N`` sparse solve per step; the step size is
      then limited by the coarse accuracy only, as for a full fine simulation with the
      same scheme.

    ``stepper(U, t, T)`` lifts ``U`` (every patch gets ``P_j``), runs the coupled patches
    for time ``T`` in ``ceil(T/dt)`` equal micro steps, and returns the patch averages.
    The micro state of the last call is kept: a call that continues from the state and
    time it returned does not lift again (``lifts`` counts the lifts), so stepping along
    in several calls equals one long run. After a projective step (a new coarse state)
    the patches are lifted without microstructure and heal within their own diffusion
    time ``~ (w/pi)^2 / a``, much shorter than the coarse time scale.

    **Heterogeneous media.** For ``u_t = div(a(x/eps) grad u)`` with patches of a whole
    number of periods, the patch averages follow the homogenised equation
    ``U_t = div(K* grad U)`` when the patch edges lie on mirror planes of the periodic
    cell (the centre of a layer of a symmetric laminate; the centre or the boundary of a
    square cell with a centred disc); the coarse rate then has an error ``~ c (eps/w)^2``
    (measured: ``c ~ 0.3`` for ``a = 1/(2 + cos 2 pi y)``; second order in ``eps`` at a
    fixed patch width). If the edges cut the cell elsewhere, the interpolated edge
    values miss the corrector's offset there, and the error is first order in ``eps`` but
    with a large factor (``~ eps / (k w^2)`` for a mode of wavenumber ``k``: 30-60 % for
    patches of a few periods); :class:`HeterogeneousDiffusion` warns about it.

    Example:
        Heterogeneous diffusion with ``a(y) = 1/(2 + cos 2 pi y)`` (harmonic mean 1/2) on
        the periodic unit interval, eight patches of eight periods each (12.5 % of the
        domain), against the homogenised solution ``exp(-k^2 t / 2) sin(k x)``:

        >>> import numpy as np
        >>> from hmm_fem.equation_free import PatchDynamics
        >>> from hmm_fem.equation_free.patches import HeterogeneousDiffusion
        >>> micro = HeterogeneousDiffusion(lambda y: 1 / (2 + np.cos(2 * np.pi * y)),
        ...                                period=1 / 512, width=1 / 64, points_per_period=4)
        >>> stepper = PatchDynamics.on_interval(micro, (0.0, 1.0), patches=8, order=6,
        ...                                     dt=2e-5, coupling="implicit")
        >>> k = 2 * np.pi
        >>> U0 = stepper.restrict(np.sin(k * stepper.micro_coordinates()))  # averages
        >>> U = stepper(U0, 0.0, 0.01)                 # a burst of 500 micro steps
        >>> error = np.abs(U - U0 * np.exp(-k**2 * 0.01 / 2)).max()
        >>> bool(error < 1e-3), stepper.covered_fraction, stepper.lifts
        (True, 0.125, 1)
        >>> U = stepper(U, 0.01, 0.01)                 # continues: no second lift
        >>> stepper.lifts, stepper.standard_error
        (1, 0.0)

    Args:
        micro: The micro simulator (see above).
        centres: ``(N, d)`` patch centres (``(N,)`` in 1D).
        order: Total degree of the coupling polynomial (>= 1; diffusion needs >= 2).
        boundary_points: ``(Nb, d)`` coarse nodes with prescribed values (Dirichlet
            conditions of the coarse problem); they take part in the fits as point values.
        boundary_values: Their values: a number, an ``(Nb,)`` array, or a callable
            ``f(x, t)`` of the ``(Nb, d)`` points and the time (evaluated every micro step).
        period: Periodic axes: a length (every axis), or one length or ``None`` per axis.
            Distances between patches are then taken to the nearest periodic image.
        domain_measure: Length/area of the domain, for :attr:`covered_fraction`.
        dt: Micro time step; default ``micro.stable_time_step``.
        neighbours: Number of nearest coarse nodes in each fit (before ties); see above.
        coupling: ``"explicit"`` or ``"implicit"`` (see above).

    Attributes:
        centres: ``(N, d)`` patch centres.
        width: ``(d,)`` extent of a patch.
        ratio: Largest patch extent over the distance to the nearest other patch centre
            (1 = patches touch).
        covered_fraction: Total patch measure over ``domain_measure`` (``None`` without it).
        stencils: For every patch, the indices of the coarse nodes of its fit (patches
            ``0..N-1``, then the boundary nodes).
        widened_stencils: Number of patches whose fit took extra shells of nodes.
        micro_steps: Micro steps taken so far (one step advances all patches; the
            response steps of ``coupling="implicit"`` count too); the work of a run is
            about ``micro_steps * micro_points`` point updates.
        micro_points: Number of micro points over all patches.
        lifts: Number of lifts.
        standard_error: 0.0 (a deterministic map).

    Raises:
        ValueError: If the micro simulator lacks a part or has inconsistent parts, the
            centres or boundary nodes are malformed, patches overlap each other or cover a
            boundary node, the neighbours do not determine a polynomial of the order (too
            few nodes, or badly spread: lower ``order`` or refine the coarse grid), or
            ``coupling="implicit"`` is asked of a micro step not declared linear.
    """

    def __init__(
        self,
        micro,
        centres,
        *,
        order: int = 4,
        boundary_points=None,
        boundary_values: float | np.ndarray | Callable = 0.0,
        period: float | Sequence[float | None] | None = None,
        domain_measure: float | None = None,
        dt: float | None = None,
        neighbours: int | None = None,
        coupling: str = "explicit",
    ):
        self.micro = micro
        points, edge, weights = self._check_micro(micro)
        if coupling not in ("explicit", "implicit"):
            raise ValueError(f"coupling must be 'explicit' or 'implicit', got {coupling!r}")
        if coupling == "implicit" and not getattr(micro, "linear", False):
            raise ValueError(
                f"coupling='implicit' superposes the responses of a linear micro step; "
                f"{type(micro).__name__} does not declare `linear = True`: use "
                "coupling='explicit'"
            )
        if domain_measure is not None and not (
            np.isfinite(float(domain_measure)) and float(domain_measure) > 0
        ):
            raise ValueError(f"domain_measure must be positive, got {domain_measure!r}")
        dim = points.shape[1]
        self.dim = dim
        self.centres = _as_points(centres, dim, "centres")
        num_patches = len(self.centres)
        if num_patches < 1:
            raise ValueError("centres is empty: give at least one patch centre")
        self.order = self._check_order(order)
        self._period = self._check_period(period, dim)

        if boundary_points is None:
            boundary_points = np.zeros((0, dim))
        self.boundary_points = _as_points(boundary_points, dim, "boundary_points")
        self._boundary_values = self._check_boundary_values(boundary_values)

        # The patch box: the micro points' bounding box, centred on the patch centre.
        lo, hi = points.min(axis=0), points.max(axis=0)
        self.width = hi - lo
        if np.any(self.width <= 0):
            raise ValueError(f"the micro model's points span no extent along an axis: {lo}..{hi}")
        if np.any(np.abs(lo + hi) > _GEOMETRY_TOLERANCE * self.width):
            raise ValueError(
                f"the micro model's points must be offsets from the patch centre (their box "
                f"is {lo}..{hi}, not centred on 0)"
            )
        self._check_overlaps()

        exponents = _exponents(dim, self.order)
        scale = self._length_scale()
        self._scale = scale
        self._exponents = exponents
        xi = points / scale
        moments = weights @ _monomials(xi, exponents)
        self._C_patch, self._C_boundary, self.stencils = self._coupling_matrix(
            exponents, moments, scale, neighbours
        )
        self._V_all = _monomials(xi, exponents)
        self._V_edge = self._V_all[edge]
        self._edge = edge
        self._weights = weights
        self._weights_interior = weights.copy()
        self._weights_interior[edge] = 0.0

        # Edge points inside the average: U = W_int u + W_edge P(U), one sparse solve.
        edge_moments = weights[edge] @ self._V_edge
        self._self_consistent = bool(np.any(weights[edge] != 0))
        if self._self_consistent:
            contract = sp.kron(sp.identity(num_patches), sp.csr_matrix(edge_moments)).tocsr()
            self._B_patch = (contract @ self._C_patch).tocsr()
            self._B_boundary = (contract @ self._C_boundary).tocsr()
            S = (sp.identity(num_patches) - self._B_patch).tocsc()
            self._S_lu = spla.splu(S)
        self._constant_boundary = None
        if not callable(self._boundary_values):
            g = self._boundary_values
            self._constant_boundary = (
                self._C_boundary @ g,
                self._B_boundary @ g if self._self_consistent else None,
            )

        if hasattr(micro, "prepare"):
            micro.prepare(self.centres.copy())
        self.dt = self._check_dt(dt, micro)
        self._edge_time = float(getattr(micro, "edge_time", 0.0))
        if not 0 <= self._edge_time <= 1:
            raise ValueError(f"micro.edge_time must be in [0, 1], got {self._edge_time}")
        self.coupling = coupling
        self._implicit_factors = {}

        self.micro_points = num_patches * len(points)
        self.micro_steps = 0
        self.lifts = 0
        self.standard_error = 0.0
        self.domain_measure = domain_measure
        self.covered_fraction = (
            None
            if domain_measure is None
            else float(num_patches * np.prod(self.width) / float(domain_measure))
        )
        self._memory = None

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def on_interval(
        cls,
        micro,
        interval: tuple[float, float],
        patches: int,
        *,
        periodic: bool = True,
        boundary_values: float | np.ndarray | Callable = 0.0,
        **kwargs,
    ) -> PatchDynamics:
        """Patches on a uniform grid of an interval (1D).

        Periodic: ``patches`` centres at ``a + (j + 1/2) H``, ``H = (b - a)/patches``.
        Otherwise the coarse grid has ``patches + 2`` nodes ``a + j H``,
        ``H = (b - a)/(patches + 1)``: the two ends carry ``boundary_values`` (Dirichlet)
        and the ``patches`` interior nodes carry patches.

        Args:
            micro: The micro simulator (1D).
            interval: ``(a, b)``, ``a < b``.
            patches: Number of patches (>= 1).
            periodic: Periodic interval, or Dirichlet values at the ends.
            boundary_values: Values at ``a`` and ``b`` (non-periodic): a number, two
                values, or ``f(x, t)``.
            **kwargs: Passed to :class:`PatchDynamics` (``order``, ``dt``, ...).

        Returns:
            The patch scheme, with ``domain_measure = b - a``.

        Raises:
            ValueError: If the interval or count is invalid or a patch sticks out of it.
        """
        a, b = (float(v) for v in interval)
        if not (np.isfinite(a) and np.isfinite(b) and a < b):
            raise ValueError(f"interval must be (a, b) with a < b, got {interval}")
        if isinstance(patches, bool) or not isinstance(patches, numbers.Integral) or patches < 1:
            raise ValueError(f"patches must be a positive integer, got {patches!r}")
        length = b - a
        if periodic:
            spacing = length / patches
            centres = a + (np.arange(patches) + 0.5) * spacing
            return cls(micro, centres, period=length, domain_measure=length, **kwargs)
        spacing = length / (patches + 1)
        centres = a + (np.arange(patches) + 1.0) * spacing
        return cls(
            micro,
            centres,
            boundary_points=[[a], [b]],
            boundary_values=boundary_values,
            domain_measure=length,
            **kwargs,
        )

    @classmethod
    def on_mesh(
        cls,
        micro,
        mesh,
        *,
        points=None,
        boundary_values: float | np.ndarray | Callable = 0.0,
        **kwargs,
    ) -> PatchDynamics:
        """Patches at the vertices of a DOLFINx mesh (the macro mesh).

        The vertices on the mesh boundary are Dirichlet nodes of the coarse problem with
        ``boundary_values``; the patches sit at the interior vertices, or at ``points``.
        Every patch's corners must lie in the mesh.

        Args:
            micro: The micro simulator (its dimension is the mesh's).
            mesh: A :class:`dolfinx.mesh.Mesh` on one process (``MPI.COMM_SELF``),
                affine simplices or quadrilaterals.
            points: ``(N, d)`` patch centres; default the interior vertices.
            boundary_values: Values at the boundary vertices: a number, an array in the
                order of :attr:`boundary_points`, or ``f(x, t)``.
            **kwargs: Passed to :class:`PatchDynamics` (``order``, ``dt``, ...).

        Returns:
            The patch scheme, with ``domain_measure`` the mesh's area (length).

        Raises:
            ValueError: If the mesh is distributed, its dimension is not the micro
                model's, or a patch corner lies outside the mesh.
        """
        import dolfinx

        if mesh.comm.size != 1:
            raise ValueError(
                "the macro mesh of the patches must live on one process: create it on MPI.COMM_SELF"
            )
        topology = mesh.topology
        tdim, gdim = topology.dim, mesh.geometry.dim
        if tdim != gdim:
            raise ValueError(f"a manifold mesh (tdim {tdim}, gdim {gdim}) is not supported")
        topology.create_connectivity(tdim - 1, tdim)
        topology.create_connectivity(tdim, 0)
        topology.create_connectivity(0, tdim)
        num_vertices = topology.index_map(0).size_local + topology.index_map(0).num_ghosts
        nodes = dolfinx.mesh.entities_to_geometry(
            mesh, 0, np.arange(num_vertices, dtype=np.int32)
        ).reshape(-1)
        vertices = mesh.geometry.x[nodes, :gdim]
        facets = dolfinx.mesh.exterior_facet_indices(topology)
        on_boundary = np.zeros(num_vertices, dtype=bool)
        on_boundary[dolfinx.mesh.compute_incident_entities(topology, facets, tdim - 1, 0)] = True
        centres = vertices[~on_boundary] if points is None else points

        # Area (length) of the mesh from its vertices (affine cells).
        cells = dolfinx.mesh.entities_to_geometry(
            mesh, tdim, np.arange(topology.index_map(tdim).size_local, dtype=np.int32)
        )
        xc = mesh.geometry.x[cells, :gdim]
        cell_name = topology.cell_type.name
        if cell_name == "interval":
            measure = np.abs(xc[:, 1, 0] - xc[:, 0, 0]).sum()
        elif cell_name == "triangle":
            e1, e2 = xc[:, 1] - xc[:, 0], xc[:, 2] - xc[:, 0]
            measure = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
        elif cell_name == "quadrilateral":
            ring = xc[:, [0, 1, 3, 2]]
            x, y = ring[..., 0], ring[..., 1]
            measure = (
                0.5
                * np.abs(
                    (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
                ).sum()
            )
        else:
            raise ValueError(f"macro cells of type {cell_name} are not supported")

        scheme = cls(
            micro,
            centres,
            boundary_points=vertices[on_boundary],
            boundary_values=boundary_values,
            domain_measure=float(measure),
            **kwargs,
        )
        # Every patch corner inside the mesh (the patch boxes may not leave the domain).
        signs = np.array(list(np.ndindex(*(2,) * gdim))) * 2 - 1
        corners = (scheme.centres[:, None, :] + 0.5 * signs * scheme.width).reshape(-1, gdim)
        corners3 = np.zeros((len(corners), 3))
        corners3[:, :gdim] = corners
        tree = dolfinx.geometry.bb_tree(mesh, tdim)
        candidates = dolfinx.geometry.compute_collisions_points(tree, corners3)
        colliding = dolfinx.geometry.compute_colliding_cells(mesh, candidates, corners3)
        outside = np.flatnonzero(np.diff(colliding.offsets) == 0)
        if len(outside):
            patch = outside[0] // len(signs)
            raise ValueError(
                f"patch {patch} at {scheme.centres[patch]} (width {scheme.width}) has a corner "
                f"{corners[outside[0]]} outside the mesh: move it inward or use narrower patches"
            )
        scheme.mesh = mesh
        return scheme

    # -- the coarse time-stepper ---------------------------------------------------------------

    def __call__(self, U, t: float, T: float) -> np.ndarray:
        """The patch averages after time ``T`` from the patch averages ``U`` at time ``t``.

        Args:
            U: ``(N,)`` coarse state (patch averages).
            t: Time of ``U``.
            T: Length of the burst (>= 0).

        Returns:
            ``(N,)`` patch averages at time ``t + T``.

        Raises:
            ValueError: If ``U`` has the wrong shape or non-finite entries, or ``T < 0``.
        """
        U = self._check_coarse(U)
        T = float(T)
        if not (np.isfinite(T) and T >= 0):
            raise ValueError(f"the burst length T must be finite and >= 0, got {T}")
        memory = self._memory
        # Continue only from the very state returned, at its time (to round-off of t + T).
        continuing = (
            memory is not None
            and abs(memory[1] - t) <= 1e-9 * self.dt
            and np.array_equal(memory[0], U)
        )
        if continuing:
            u, history = memory[2].copy(), memory[3]
        else:
            u, history = self.lift(U, t), None
        u, history = self._evolve(u, t, T, history)
        U_end = self.restrict(u)
        self._memory = (U_end.copy(), t + T, u, history)
        return U_end

    def lift(self, U, t: float = 0.0) -> np.ndarray:
        """Micro states consistent with the coarse state: each patch gets its polynomial.

        Args:
            U: ``(N,)`` patch averages.
            t: Time (for time-dependent boundary values).

        Returns:
            ``(N, P)`` micro states whose averages are ``U`` exactly.
        """
        U = self._check_coarse(U)
        self.lifts += 1
        return self._coefficients(U, t) @ self._V_all.T

    def restrict(self, u) -> np.ndarray:
        """The patch averages ``weights @ u`` of micro states ``u`` (shape ``(N, P)``)."""
        return np.asarray(u, dtype=float) @ self._weights

    def evolve(self, u, t: float, T: float) -> np.ndarray:
        """Run the coupled patches from micro states ``u`` at ``t`` for time ``T``.

        ``ceil(T / dt)`` equal micro steps; the edge values are set before each step and
        once more at the end (so the returned state is consistent with its averages). With
        ``coupling="explicit"`` and ``edge_time > 0`` the first step has no earlier
        averages to extrapolate from and holds them (a lag of one step, ``~ dt``).

        Args:
            u: ``(N, P)`` micro states.
            t: Start time.
            T: Duration (>= 0).

        Returns:
            ``(N, P)`` micro states at ``t + T``.
        """
        return self._evolve(u, t, T, None)[0]

    def _evolve(self, u, t, T, history):
        """:meth:`evolve` from ``history`` (the averages one step back and that step)."""
        u = np.array(u, dtype=float)
        if u.shape != (len(self.centres), len(self._weights)):
            raise ValueError(
                f"micro states must have shape {(len(self.centres), len(self._weights))}, "
                f"got {u.shape}"
            )
        steps = math.ceil(T / self.dt - 1e-9) if T > 0 else 0
        h = T / steps if steps else 0.0
        if self.coupling == "implicit":
            for n in range(steps):
                responses, schur = self._implicit_solver(h, t + n * h)
                rhs = u.copy()
                rhs[:, self._edge] = self._boundary_edges(t + (n + 1) * h)
                v = np.asarray(self.micro.step(rhs, t + n * h, h), dtype=float)
                U = schur.solve(v @ self._weights)
                coef = (self._C_patch @ U).reshape(len(self.centres), -1)
                u = v + (responses @ coef[:, :, None])[:, :, 0]
                self.micro_steps += 1
        else:
            theta = self._edge_time
            for n in range(steps):
                time = t + n * h
                U = self._averages(u, time)
                # Edge values at the time the micro step reads them (start, end, ...):
                # linear extrapolation of the averages from the last step.
                edge_U = U
                if history is not None and theta > 0:
                    previous, h_previous = history
                    edge_U = U + theta * h / h_previous * (U - previous)
                self._write_edges(u, edge_U, time + theta * h)
                u = np.asarray(self.micro.step(u, time, h), dtype=float)
                self.micro_steps += 1
                history = (U, h)
        self._write_edges(u, self._averages(u, t + T), t + T)
        if not np.all(np.isfinite(u)):
            raise FloatingPointError(
                f"the patch system blew up between t={t} and t={t + T}: with explicit micro "
                "steps lower dt; with `coupling='explicit'` and implicit micro steps keep dt "
                "below the patch diffusion time (width^2 / (12 a)); else lower `order` or "
                "raise `neighbours` (a fit that extrapolates can make the coupling unstable)"
            )
        return u, history

    def micro_coordinates(self) -> np.ndarray:
        """Global coordinates of all micro points, ``(N, P)`` in 1D and ``(N, P, d)``."""
        x = self.centres[:, None, :] + np.asarray(self.micro.points, dtype=float)[None]
        return x[..., 0] if self.dim == 1 else x

    @property
    def ratio(self) -> float:
        """Largest patch extent over the distance to the nearest other patch centre."""
        if len(self.centres) < 2:
            return 0.0
        tree = self._tree(self.centres)
        distance = tree.query(self._wrapped(self.centres)[0], k=2)[0][:, 1]
        return float(np.max(self.width) / distance.min())

    # -- coupling ------------------------------------------------------------------------------

    def _boundary(self, t):
        if callable(self._boundary_values):
            values = np.asarray(
                self._boundary_values(self.boundary_points.copy(), t), dtype=float
            ).reshape(-1)
            if values.shape != (len(self.boundary_points),) or not np.all(np.isfinite(values)):
                raise ValueError(
                    f"boundary_values(x, t={t}) must return {len(self.boundary_points)} "
                    f"finite values, got shape {values.shape}"
                )
            return values
        return self._boundary_values

    def _coefficients(self, U, t):
        """``(N, n_monomials)`` coefficients of every patch's polynomial."""
        if self._constant_boundary is not None:
            boundary_part = self._constant_boundary[0]
        else:
            boundary_part = self._C_boundary @ self._boundary(t)
        return (self._C_patch @ U + boundary_part).reshape(len(self.centres), -1)

    def _boundary_edges(self, t):
        """The part of the edge values that comes from the boundary values, ``(N, n_edge)``."""
        if not len(self.boundary_points):
            return 0.0
        if self._constant_boundary is not None:
            part = self._constant_boundary[0]
        else:
            part = self._C_boundary @ self._boundary(t)
        return part.reshape(len(self.centres), -1) @ self._V_edge.T

    def _implicit_solver(self, h, t):
        """Edge responses and the coarse Schur complement of one implicitly coupled step.

        For a linear micro step ``M``, the new state is ``v + G P(U)`` with ``v = M(u with
        the edges at their boundary part)`` and ``G`` the step's response to unit edge
        values (one micro step per edge point, all patches at once), so the new averages
        solve ``(I - W G P) U = W v``: an ``N x N`` sparse system with the stencils'
        pattern. Kept per step size (the micro step must not change in time).
        """
        kept = self._implicit_factors.get(h)
        if kept is not None:
            return kept
        if len(self._implicit_factors) >= 4:
            self._implicit_factors.pop(next(iter(self._implicit_factors)))
        num, size = len(self.centres), len(self._weights)
        zero = np.zeros((num, size))
        base = np.asarray(self.micro.step(zero, t, h), dtype=float)
        unit_responses = np.empty((num, size, len(self._edge)))
        for e, point in enumerate(self._edge):
            unit = zero.copy()
            unit[:, point] = 1.0
            unit_responses[:, :, e] = np.asarray(self.micro.step(unit, t, h), dtype=float) - base
        responses = unit_responses @ self._V_edge  # (N, P, n_monomials)
        self.micro_steps += len(self._edge) + 1
        averaged = np.einsum("p,npm->nm", self._weights, responses)
        num_mono = averaged.shape[1]
        contract = sp.csr_matrix(
            (averaged.ravel(), (np.repeat(np.arange(num), num_mono), np.arange(num * num_mono))),
            shape=(num, num * num_mono),
        )
        schur = spla.splu((sp.identity(num) - contract @ self._C_patch).tocsc())
        kept = self._implicit_factors[h] = (responses, schur)
        return kept

    def _averages(self, u, t):
        """The patch averages of ``u`` with its edge values consistent with them."""
        U = u @ self._weights_interior
        if self._self_consistent:
            if self._constant_boundary is not None:
                U = U + self._constant_boundary[1]
            else:
                U = U + self._B_boundary @ self._boundary(t)
            U = self._S_lu.solve(U)
        return U

    def _write_edges(self, u, U, t):
        """Set the edge values of ``u`` in place from the patch averages ``U``."""
        u[:, self._edge] = self._coefficients(U, t) @ self._V_edge.T

    def _coupling_matrix(self, exponents, moments, scale, neighbours):
        """Sparse maps from (patch averages, boundary values) to polynomial coefficients."""
        num_patches, num_boundary = len(self.centres), len(self.boundary_points)
        nodes = np.vstack([self.centres, self.boundary_points])
        num_mono = len(exponents)
        free = num_mono - 1
        if neighbours is None:
            # 1D: interpolation (p/2 nodes on either side for an even order). 2D: least
            # squares over ~30 % more nodes than coefficients; fits through exactly as many
            # nodes as coefficients near corners made the coupled patches unstable.
            neighbours = free if self.dim == 1 else math.ceil(1.3 * free)
        if isinstance(neighbours, bool) or not isinstance(neighbours, numbers.Integral):
            raise ValueError(f"neighbours must be an integer, got {neighbours!r}")
        if neighbours < free:
            raise ValueError(
                f"neighbours={neighbours} cannot determine the {free} free coefficients of a "
                f"degree-{self.order} polynomial in {self.dim}D: give at least {free}"
            )
        if len(nodes) - 1 < neighbours:
            raise ValueError(
                f"coupling order {self.order} needs {neighbours} neighbouring coarse nodes per "
                f"patch, but the grid has only {len(nodes)} nodes: lower `order` or use more "
                "patches"
            )
        # Candidate nodes by distance; the stencil ends where the distance grows (so that
        # ties are taken together), at the first such cut with at least `neighbours` nodes.
        # A fit that does not determine the polynomial (e.g. nodes in a line along a
        # boundary) takes the next shell of nodes, up to _EXTRA_SHELLS more.
        tree = self._tree(nodes)
        wanted = min(len(nodes), 4 * neighbours + 9)
        distance, index = tree.query(self._wrapped(self.centres)[0], k=wanted)
        distance, index = distance[:, 1:], index[:, 1:]
        cuts = []
        for row in distance:
            grows = np.flatnonzero(np.diff(row) > 1e-8 * row[1:]) + 1
            if len(nodes) == wanted:
                grows = np.append(grows, len(row))
            grows = grows[grows >= neighbours]
            cuts.append(grows[: _EXTRA_SHELLS + 1])
        level = np.zeros(num_patches, dtype=int)
        pending = np.arange(num_patches)
        pieces = {}
        while len(pending):
            sizes = np.array(
                [cuts[j][level[j]] if level[j] < len(cuts[j]) else -1 for j in pending]
            )
            if np.any(sizes < 0):
                j = pending[np.flatnonzero(sizes < 0)[0]]
                raise ValueError(
                    f"coupling order {self.order} is too high for the coarse grid around patch "
                    f"{j} at {self.centres[j]}: its nearest nodes do not determine a "
                    f"degree-{self.order} polynomial; lower `order`, raise `neighbours`, or "
                    "refine the coarse grid"
                )
            failed = []
            for size in np.unique(sizes):
                group = pending[sizes == size]
                members = index[group, :size]
                offsets = self._displacement(nodes[members] - self.centres[group, None, :])
                offsets = offsets / scale
                design = (
                    np.where(
                        (members < num_patches)[..., None],
                        _shifted_moments(offsets, moments, exponents),
                        _monomials(offsets, exponents),
                    )[..., 1:]
                    - moments[1:]
                )
                # Weighted least squares, weights (scale/distance)^4: the nearest nodes
                # dominate (a 5x smaller coupling error in 2D than equal weights).
                sqrt_w = np.linalg.norm(offsets, axis=-1) ** -2.0
                design = design * sqrt_w[..., None]
                singular = np.linalg.svd(design, compute_uv=False)
                bad = singular[:, -1] <= _RANK_TOLERANCE * singular[:, 0]
                failed.append(group[bad])
                if np.any(~bad):
                    pinv = np.linalg.pinv(design[~bad]) * sqrt_w[~bad][:, None, :]
                    pieces.setdefault(size, []).append((group[~bad], members[~bad], pinv))
            pending = np.concatenate(failed)
            level[pending] += 1
        self.widened_stencils = int(np.count_nonzero(level))

        rows, cols, vals = [], [], []
        mu = moments[1:]
        alpha = np.arange(1, num_mono)
        stencils = [None] * num_patches
        for size, parts in pieces.items():
            for group, members, pinv in parts:  # pinv: (G, free, K)
                for j, m in zip(group, members):
                    stencils[j] = m
                row_sum = pinv.sum(axis=2)
                row_base = group[:, None] * num_mono
                # Free coefficients: c = pinv (values - U_j).
                rows.append(np.broadcast_to((row_base + alpha)[..., None], pinv.shape).ravel())
                cols.append(np.broadcast_to(members[:, None, :], pinv.shape).ravel())
                vals.append(pinv.ravel())
                rows.append((row_base + alpha).ravel())
                cols.append(np.repeat(group, free))
                vals.append(-row_sum.ravel())
                # Constant: U_j - sum_alpha c_alpha mu_alpha.
                rows.append(np.repeat(group * num_mono, size))
                cols.append(members.ravel())
                vals.append(-np.einsum("a,gak->gk", mu, pinv).ravel())
                rows.append(group * num_mono)
                cols.append(group)
                vals.append(1.0 + row_sum @ mu)
        C = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(num_patches * num_mono, num_patches + num_boundary),
        )
        return C[:, :num_patches].tocsr(), C[:, num_patches:].tocsr(), stencils

    # -- geometry ------------------------------------------------------------------------------

    def _displacement(self, d):
        """Displacements to the nearest periodic image."""
        periodic = self._period > 0
        if np.any(periodic):
            d = d.copy()
            p = self._period[periodic]
            d[..., periodic] -= p * np.round(d[..., periodic] / p)
        return d

    def _wrapped(self, points):
        """``points`` shifted into the k-d tree's box (periodic axes wrapped)."""
        everything = np.vstack([self.centres, self.boundary_points])
        low = everything.min(axis=0)
        # Non-periodic axes get a box so wide that no wrapped image comes near.
        box = np.where(self._period > 0, self._period, 3 * np.ptp(everything, axis=0) + 1.0)
        wrapped = np.where(self._period > 0, np.mod(points - low, box), points - low)
        # A coordinate rounding up to the box size must wrap to 0 for the tree.
        return np.where(wrapped >= box, 0.0, wrapped), box

    def _tree(self, nodes):
        """A k-d tree of ``nodes``; query it with ``self._wrapped(points)[0]``."""
        wrapped, box = self._wrapped(np.asarray(nodes, dtype=float))
        return cKDTree(wrapped, boxsize=box)

    def _length_scale(self):
        """The typical spacing of the coarse nodes (coordinates of the fits are scaled by it)."""
        nodes = np.vstack([self.centres, self.boundary_points])
        if len(nodes) < 2:
            return float(np.max(self.width))
        distance = self._tree(nodes).query(self._wrapped(self.centres)[0], k=2)[0][:, 1]
        return float(np.median(distance))

    def _check_overlaps(self):
        nodes = np.vstack([self.centres, self.boundary_points])
        num_patches = len(self.centres)
        tree = self._tree(nodes)
        reach = float(np.linalg.norm(self.width))
        for j, k in sorted(tree.query_pairs(reach)):
            if j >= num_patches and k >= num_patches:
                continue
            d = np.abs(self._displacement(nodes[k] - nodes[j]))
            if k >= num_patches:
                inside = np.all(d < 0.5 * self.width * (1 - _GEOMETRY_TOLERANCE))
                if inside:
                    raise ValueError(
                        f"patch {j} at {nodes[j]} (width {self.width}) covers the boundary "
                        f"node {nodes[k]}: use narrower patches or a coarser grid"
                    )
                continue
            if np.all(d < self.width * (1 - _GEOMETRY_TOLERANCE)):
                raise ValueError(
                    f"patches {j} at {nodes[j]} and {k} at {nodes[k]} overlap (width "
                    f"{self.width}, distance {d}): use narrower patches or fewer of them"
                )

    # -- validation ----------------------------------------------------------------------------

    @staticmethod
    def _check_micro(micro):
        for name in ("points", "edge", "weights", "step"):
            if not hasattr(micro, name):
                raise ValueError(
                    f"the micro simulator {type(micro).__name__} has no `{name}`: it needs "
                    "points, edge, weights and step(u, t, dt) (see PatchDynamics)"
                )
        if not callable(micro.step):
            raise ValueError("micro.step must be callable as step(u, t, dt)")
        points = np.asarray(micro.points, dtype=float)
        if points.ndim != 2 or points.shape[1] not in (1, 2, 3) or len(points) < 2:
            raise ValueError(f"micro.points must have shape (P, d), got {points.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("micro.points has entries that are not finite")
        edge = np.asarray(micro.edge)
        if edge.ndim != 1 or len(edge) == 0 or not np.issubdtype(edge.dtype, np.integer):
            raise ValueError("micro.edge must be a non-empty 1D array of point indices")
        if edge.min() < 0 or edge.max() >= len(points) or len(np.unique(edge)) != len(edge):
            raise ValueError(f"micro.edge must hold distinct indices in [0, {len(points)})")
        weights = np.asarray(micro.weights, dtype=float)
        if weights.shape != (len(points),) or not np.all(np.isfinite(weights)):
            raise ValueError(f"micro.weights must be {len(points)} finite values")
        if abs(weights.sum() - 1) > 1e-12 * len(weights):
            raise ValueError(
                f"micro.weights must sum to 1 (an average), they sum to {weights.sum()}"
            )
        if np.all(np.delete(weights, edge) == 0):
            raise ValueError("micro.weights must weigh some point that is not an edge point")
        return points, edge.astype(np.int64), weights

    @staticmethod
    def _check_order(order):
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
            raise ValueError(f"order must be an integer >= 1 (diffusion needs >= 2), got {order!r}")
        return int(order)

    @staticmethod
    def _check_period(period, dim):
        if period is None:
            return np.zeros(dim)
        values = [period] * dim if np.isscalar(period) else list(period)
        if len(values) != dim:
            raise ValueError(f"period needs one entry per axis ({dim}), got {period!r}")
        out = np.array([0.0 if v is None else float(v) for v in values])
        if (
            np.any(~np.isfinite(out))
            or np.any(out < 0)
            or any(v is not None and float(v) == 0 for v in values)
        ):
            raise ValueError(f"periods must be positive lengths or None, got {period!r}")
        return out

    def _check_boundary_values(self, values):
        if callable(values):
            return values
        num = len(self.boundary_points)
        array = np.asarray(values, dtype=float)
        if array.ndim == 0:
            array = np.full(num, float(array))
        if array.shape != (num,) or not np.all(np.isfinite(array)):
            raise ValueError(
                f"boundary_values must be a number, {num} finite values or f(x, t), got shape "
                f"{array.shape}"
            )
        return array

    @staticmethod
    def _check_dt(dt, micro):
        if dt is None:
            dt = getattr(micro, "stable_time_step", None)
            if dt is None:
                raise ValueError(
                    f"give dt: the micro simulator {type(micro).__name__} has no stable_time_step"
                )
        dt = float(dt)
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be positive, got {dt}")
        return dt

    def _check_coarse(self, U):
        U = np.asarray(U, dtype=float)
        if U.shape != (len(self.centres),):
            raise ValueError(
                f"the coarse state must have shape ({len(self.centres)},) (one average per "
                f"patch), got {U.shape}"
            )
        if not np.all(np.isfinite(U)):
            raise ValueError("the coarse state has entries that are not finite")
        return U


class HeterogeneousDiffusion:
    """Fine finite differences of ``u_t = div(a(x/eps) grad u)`` in square patches.

    Every patch is a square lattice of spacing ``delta = period / points_per_period``
    spanning ``width`` (a whole number of periods), in 1D or 2D. The scheme is conservative:
    the flux between two neighbouring lattice points is ``c (u_q - u_p) / delta`` with
    ``c`` the conductivity averaged over the face between them (the face midpoint in 1D;
    ``face_points`` Gauss points along the face in 2D, so that a layer interface through a
    lattice row counts half for each phase, as in a laminate). The boundary points of the
    patch are its edge points (set by the coupling); the averaging weights are the
    trapezoidal rule over the whole patch, which averages any lattice-periodic field over
    whole periods exactly.

    The microstructure is laid out per patch: at a point ``x`` of the patch with lower
    corner ``x0`` the fast variable is ``y = (x - x0)/period + edge_phase`` (each patch
    holds the same cells, starting at ``edge_phase`` on its edges), or with
    ``cell_origin="global"`` ``y = x / period`` (the patches are cut from one medium, e.g.
    to compare with a simulation of the whole domain). For the patch averages to follow
    the homogenised equation, the patch edges should lie on mirror planes of the cell
    (see :class:`PatchDynamics`); a cell that is not mirror-symmetric about the edges
    (checked on the face conductivities) is warned about.

    Time stepping: ``scheme="explicit"`` (forward Euler, ``dt <= stable_time_step``) or
    ``"implicit"`` (backward Euler, one sparse LU of all patches per distinct ``dt``,
    kept), both as one sparse operator over all patches. One "patch" whose width is the
    whole domain, with its edges held at the boundary values, is the full fine-scale
    simulation of the same medium (``cell_origin="global"``), as in the benchmark.

    Example:
        >>> micro = HeterogeneousDiffusion(lambda y1, y2: np.where(np.abs(y1 - 0.5) < 0.25,
        ...     10.0, 1.0), period=0.02, width=0.04, dim=2, points_per_period=8)

    Args:
        conductivity: ``a(y)`` in 1D, ``a(y1, y2)`` in 2D: positive values at arrays of
            the fast variable(s), 1-periodic in each.
        period: The period ``eps`` of the microstructure (> 0).
        width: Patch width, a whole number of periods.
        points_per_period: Lattice intervals per period (>= 2).
        dim: 1 or 2.
        scheme: ``"explicit"`` or ``"implicit"``.
        cell_origin: ``"patch"`` or ``"global"`` (see above).
        edge_phase: Phase of the cell at the patch's lower edges (``cell_origin="patch"``).
        face_points: Gauss points along a face for its conductivity (2D).

    Attributes:
        points: ``(P, dim)`` lattice offsets from the patch centre.
        edge: Indices of the patch boundary points.
        weights: Trapezoidal averaging weights.
        spacing: The lattice spacing ``delta``.
        periods: Periods per patch width.
        stable_time_step: The largest explicit step (Gershgorin bound), set by
            :meth:`prepare`; ``None`` for the implicit scheme (give ``dt``).
        edge_time: 0 (explicit: the step reads its edge values at its start) or 1
            (implicit: at its end); see :class:`PatchDynamics`.
        linear: ``True`` (the step is linear in ``u``: ``coupling="implicit"`` applies).

    Raises:
        ValueError: If the width is not a whole number of periods, a count or option is
            invalid, or the conductivity is not positive and finite.
    """

    def __init__(
        self,
        conductivity: Callable,
        *,
        period: float,
        width: float,
        points_per_period: int = 8,
        dim: int = 1,
        scheme: str = "implicit",
        cell_origin: str = "patch",
        edge_phase: float = 0.0,
        face_points: int = 2,
    ):
        if not callable(conductivity):
            raise ValueError("conductivity must be a callable a(y) (1D) or a(y1, y2) (2D)")
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        period, width = float(period), float(width)
        if not (np.isfinite(period) and period > 0):
            raise ValueError(f"period must be positive, got {period}")
        if not (np.isfinite(width) and width > 0):
            raise ValueError(f"width must be positive, got {width}")
        periods = width / period
        if abs(periods - round(periods)) > 1e-6 * periods or round(periods) < 1:
            whole = max(round(periods), 1)
            raise ValueError(
                f"patch width {width:.6g} is {periods:.4g} periods of the microstructure "
                f"(period {period:.6g}): a patch must hold a whole number of periods to "
                f"average the cells correctly, e.g. width={whole * period:.6g}"
            )
        for name, value, least in (
            ("points_per_period", points_per_period, 2),
            ("face_points", face_points, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if scheme not in ("explicit", "implicit"):
            raise ValueError(f"scheme must be 'explicit' or 'implicit', got {scheme!r}")
        if cell_origin not in ("patch", "global"):
            raise ValueError(f"cell_origin must be 'patch' or 'global', got {cell_origin!r}")
        self.conductivity = conductivity
        self.period = period
        self.periods = int(round(periods))
        self.points_per_period = int(points_per_period)
        self.dim = dim
        self.scheme = scheme
        self.edge_time = 0.0 if scheme == "explicit" else 1.0
        self.linear = True
        self.cell_origin = cell_origin
        self.edge_phase = float(edge_phase)
        self.face_points = int(face_points)
        self.spacing = period / points_per_period
        intervals = self.periods * self.points_per_period
        self.intervals = intervals
        self.width = intervals * self.spacing

        line = self.spacing * (np.arange(intervals + 1) - intervals / 2)
        trapezoid = np.ones(intervals + 1)
        trapezoid[[0, -1]] = 0.5
        trapezoid /= trapezoid.sum()
        if dim == 1:
            self.points = line.reshape(-1, 1)
            self.edge = np.array([0, intervals])
            self.weights = trapezoid
        else:
            grid = np.stack(np.meshgrid(line, line, indexing="ij"), axis=-1)
            self.points = grid.reshape(-1, 2)
            index = np.arange((intervals + 1) ** 2).reshape(intervals + 1, intervals + 1)
            ring = np.zeros_like(index, dtype=bool)
            ring[[0, -1], :] = True
            ring[:, [0, -1]] = True
            self.edge = index[ring]
            self.weights = np.outer(trapezoid, trapezoid).reshape(-1)
        self._bonds = self._lattice_bonds()
        self._operator = None
        self._factors = {}
        self.stable_time_step = None

    def _lattice_bonds(self):
        """Pairs of neighbouring lattice points, the face midpoints, and the face tangents."""
        n = self.intervals + 1
        if self.dim == 1:
            p = np.arange(n - 1)
            mid = (self.points[p] + self.points[p + 1]) / 2
            return p, p + 1, mid, np.zeros((len(p), 1))
        index = np.arange(n * n).reshape(n, n)
        pairs = [
            (index[:-1, :].ravel(), index[1:, :].ravel(), [0.0, 1.0]),  # x-neighbours
            (index[:, :-1].ravel(), index[:, 1:].ravel(), [1.0, 0.0]),  # y-neighbours
        ]
        first = np.concatenate([a for a, _, _ in pairs])
        second = np.concatenate([b for _, b, _ in pairs])
        tangent = np.concatenate([np.tile(t, (len(a), 1)) for a, _, t in pairs])
        mid = (self.points[first] + self.points[second]) / 2
        return first, second, mid, tangent

    def _face_conductivity(self, y_mid, tangent):
        """Conductivity averaged over the faces with midpoints at phases ``y_mid`` (..., d)."""
        if self.dim == 1:
            nodes, gauss = np.zeros(1), np.ones(1)
        else:
            nodes, gauss = np.polynomial.legendre.leggauss(self.face_points)
            gauss = gauss / 2
        half = 0.5 * self.spacing / self.period
        y = y_mid[..., None, :] + half * nodes[:, None] * tangent[..., None, :]
        return self._evaluate(y) @ gauss

    def _evaluate(self, y):
        """The conductivity at fast variables ``y`` (..., d), checked."""
        values = np.asarray(self.conductivity(*np.moveaxis(y, -1, 0)), dtype=float)
        values = np.broadcast_to(values, y.shape[:-1])
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("the conductivity must be positive and finite at every point")
        return values

    def _phase(self, x, corner):
        if self.cell_origin == "global":
            return x / self.period
        return (x - corner) / self.period + self.edge_phase

    def prepare(self, centres):
        """Lay out the conductivities of ``N`` patches and build their operator (once).

        Args:
            centres: ``(N, dim)`` patch centres.
        """
        centres = np.asarray(centres, dtype=float).reshape(-1, self.dim)
        num = len(centres)
        first, second, mid, tangent = self._bonds
        corner = centres[:, None, :] - self.width / 2
        c = self._face_conductivity(self._phase(centres[:, None, :] + mid, corner), tangent)
        # Mirror planes through the patch centre are mirror planes through its edges too
        # (whole periods): compare every face with its mirror image, axis by axis.
        for axis in range(self.dim):
            mirror = mid.copy()
            mirror[:, axis] *= -1
            image = self._face_conductivity(
                self._phase(centres[:, None, :] + mirror, corner), tangent
            )
            if not np.allclose(c, image, rtol=1e-8, atol=0):
                warnings.warn(
                    f"the microstructure is not mirror-symmetric about the patch edges along "
                    f"axis {axis}: the patch averages then carry an O(1) error in the coarse "
                    "rate; put the patch edges on mirror planes of the cell (edge_phase, or "
                    "the patch positions with cell_origin='global')",
                    stacklevel=3,
                )
                break
        c = c / self.spacing**2
        size = len(self.points)
        offset = (np.arange(num) * size)[:, None]
        p, q = first[None] + offset, second[None] + offset
        rows = np.concatenate([p, q, p, q], axis=None)
        cols = np.concatenate([q, p, p, q], axis=None)
        vals = np.concatenate([c, c, -c, -c], axis=None)
        L = sp.csr_matrix((vals, (rows, cols)), shape=(num * size, num * size))
        # Edge points are held during a step: their rows vanish.
        edge_rows = np.zeros(size, dtype=bool)
        edge_rows[self.edge] = True
        keep = sp.diags(np.tile(~edge_rows, num).astype(float))
        self._operator = (keep @ L).tocsr()
        self._num = num
        self._factors = {}
        self.stable_time_step = (
            float(1.0 / np.abs(self._operator.diagonal()).max())
            if self.scheme == "explicit"
            else None
        )

    def step(self, u, t, dt):
        """Advance all patches by ``dt`` with the edge values held.

        Args:
            u: ``(N, P)`` states (edge values set).
            t: Time (unused: the medium does not change in time).
            dt: Time step.

        Returns:
            ``(N, P)`` states after the step.

        Raises:
            ValueError: If the explicit step exceeds its stability limit, or ``prepare``
                was not called for this number of patches.
        """
        if self._operator is None or u.shape[0] != self._num:
            raise ValueError("call prepare(centres) for these patches first")
        flat = u.reshape(-1)
        if self.scheme == "explicit":
            if dt > self.stable_time_step * (1 + 1e-12):
                raise ValueError(
                    f"explicit step dt={dt:.3g} exceeds the stability limit "
                    f"{self.stable_time_step:.3g} of the lattice: lower dt or use "
                    "scheme='implicit'"
                )
            return (flat + dt * (self._operator @ flat)).reshape(u.shape)
        lu = self._factors.get(dt)
        if lu is None:
            if len(self._factors) >= 4:
                self._factors.pop(next(iter(self._factors)))
            matrix = sp.identity(self._operator.shape[0], format="csc") - dt * self._operator
            lu = self._factors[dt] = spla.splu(matrix.tocsc())
        return lu.solve(flat).reshape(u.shape)
