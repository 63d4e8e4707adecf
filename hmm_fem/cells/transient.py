"""Transient cell problems: a periodic cell relaxing under a macro gradient, a block soaking.

Two time-dependent micro problems for time-dependent homogenisation, both built once
(mesh, spaces, constraint, matrices) and factorised once per time step size:

* :class:`TransientConductivityCell`: the periodic fluctuation ``w`` of ``u = G.y + w``
  in the cell ``Y`` under a fixed macro gradient ``G``, started from ``w = 0`` (the
  parabolic HMM of Abdulle & E, 2003; Ming & Zhang, 2007)::

      c dw/dt = div( K (G + grad w) ),   w periodic,   w(0) = 0.

  The cell-average flux ``<K (G + grad w)> = K(t) G`` starts at the arithmetic mean
  ``<K>`` and relaxes to the effective tensor ``K*`` of the steady cell problem; the
  HMM averages it over a window with a smoothing kernel (:meth:`windowed_tensor`).
* :class:`DiffusionBlock`: one weakly conducting block of a double-porosity medium
  (Arbogast, Douglas & Hornung, 1990), driven by the surrounding fracture value ``U(t)``
  as a Dirichlet condition::

      c_b dv/dt = D lap v  in the block,   v = U(t) on its boundary.

  Its relaxation time is ``1 / lambda_1``, the leading eigenvalue of the block
  (``2 pi^2 D / (c_b L^2)`` for a square of side ``L``).

Time is in the units of the cell (a cell of unit side): on a physical period ``eps``
(same conductivities) one cell time unit is ``eps^2`` physical time units. Both problems
use backward Euler (L-stable: no oscillation after the sudden start) and SciPy's sparse
LU on ``MPI.COMM_SELF`` matrices assembled once by DOLFINx.

:func:`block_cell` builds the structured cell with a centred square block that the
direct fine-scale simulations of :mod:`hmm_fem.macro.fine_scale` resolve exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from petsc4py import PETSc

from ..geometry import INCLUSION, MATRIX, UnitCell
from ..geometry.msh import box_facet_tags
from ..materials.phases import as_conductivity
from .periodic import periodic_constraint
from .skeleton import PhaseField

__all__ = [
    "KERNELS",
    "DiffusionBlock",
    "TransientConductivityCell",
    "block_cell",
    "check_block",
    "in_block",
    "window_kernel",
]


# -- geometry --------------------------------------------------------------------------------
def in_block(x: np.ndarray, period: float, block_side: float) -> np.ndarray:
    """Whether points lie in the centred square block of their period (vectorised).

    Args:
        x: Coordinates, shape ``(gdim, n)`` (DOLFINx's convention) with ``gdim`` 2 or 3
            (only the first two axes are used).
        period: The side ``eps`` of a period.
        block_side: Side of the block as a fraction of the period (``0 < b < 1``).

    Returns:
        Boolean array ``(n,)``: inside the open block ``|y - 1/2| < b/2`` in both axes,
        with ``y = x / eps mod 1``.
    """
    y = np.mod(np.asarray(x)[:2] / period, 1.0)
    return np.all(np.abs(y - 0.5) < 0.5 * block_side, axis=0)


def check_block(cells_per_side: int, block_side: float, where: str) -> tuple[int, float]:
    """Validate a block geometry: ``m >= 2`` cells per side, ``0 < b < 1``, edges on mesh lines.

    Returns:
        ``(cells_per_side, block_side)`` as ``(int, float)``.

    Raises:
        ValueError: naming ``where``, if the block edges ``(1 - b)/2`` miss the mesh lines.
    """
    m = int(cells_per_side)
    b = float(block_side)
    if m < 2 or not 0.0 < b < 1.0:
        raise ValueError(
            f"{where}: need cells_per_side >= 2 and 0 < block_side < 1, got {cells_per_side}, "
            f"{block_side}"
        )
    edge = 0.5 * (1.0 - b) * m
    if abs(edge - round(edge)) > 1e-9:
        raise ValueError(
            f"{where}: the block edges (1 - b)/2 = {0.5 * (1 - b):g} must fall on the mesh lines "
            f"of {m} cells per side; choose block_side with (1 - block_side) * cells_per_side / 2 "
            "an integer (e.g. block_side = 0.5 with cells_per_side = 8)"
        )
    return m, b


def block_cell(cells_per_side: int = 8, block_side: float = 0.5) -> UnitCell:
    """The unit square cell with a centred square block, on a structured triangle mesh.

    The block (phase ``"inclusion"``, tag :data:`~hmm_fem.geometry.INCLUSION`) is
    ``[(1 - b)/2, (1 + b)/2]^2``; the rest is the connected ``"matrix"`` (the fracture
    of a double-porosity medium). The block edges lie on mesh lines, so the phases are
    exact and a fine-scale mesh of ``cells_per_side / eps`` cells per unit length sees the
    same cells (:func:`in_block`).

    Args:
        cells_per_side: Mesh cells along a side of the cell (even, with the block edges on
            mesh lines).
        block_side: Side of the block as a fraction of the cell side.

    Raises:
        ValueError: if the block edges do not fall on mesh lines.
    """
    m, b = check_block(cells_per_side, block_side, "block_cell")
    msh = dmesh.create_unit_square(MPI.COMM_SELF, m, m, dmesh.CellType.triangle)
    tdim = msh.topology.dim
    num_cells = msh.topology.index_map(tdim).size_local
    midpoints = dmesh.compute_midpoints(msh, tdim, np.arange(num_cells, dtype=np.int32))
    tags = np.where(in_block(midpoints.T, 1.0, b), INCLUSION, MATRIX).astype(np.int32)
    cell_tags = dmesh.meshtags(msh, tdim, np.arange(num_cells, dtype=np.int32), tags)
    return UnitCell(
        mesh=msh,
        cell_tags=cell_tags,
        facet_tags=box_facet_tags(msh, (1.0, 1.0)),
        phases={"matrix": MATRIX, "inclusion": INCLUSION},
        lengths=(1.0, 1.0),
        geometry="block",
        target_volume_fraction=b * b,
        description={"block_side": b, "cells_per_side": m},
    )


# -- window kernels ------------------------------------------------------------------------------
def _uniform(s: np.ndarray) -> np.ndarray:
    return np.ones_like(s)


def _smooth(s: np.ndarray) -> np.ndarray:
    # 30 s^2 (1 - s)^2: unit mass, value and slope zero at both ends, so the initial
    # transient e^{-lambda t} enters the average as O((lambda tau)^-3), not (lambda tau)^-1.
    return 30.0 * s**2 * (1.0 - s) ** 2


def _late(s: np.ndarray) -> np.ndarray:
    # 2 s: weights the end of the window, zero at the start (O((lambda tau)^-2)).
    return 2.0 * s


#: The named window kernels ``k(s)`` on ``[0, 1]`` (unit mass).
KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uniform": _uniform,
    "linear": _late,
    "smooth": _smooth,
}


def window_kernel(kernel: str | Callable) -> Callable[[np.ndarray], np.ndarray]:
    """A window kernel ``k(s)``, ``s`` in ``[0, 1]``, by name (:data:`KERNELS`) or callable.

    Raises:
        ValueError: for an unknown name.
    """
    if callable(kernel):
        return kernel
    if kernel not in KERNELS:
        raise ValueError(f"unknown window kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    return KERNELS[kernel]


def _trapezoid_weights(kernel: Callable, steps: int) -> np.ndarray:
    """Weights of ``int_0^1 k(s) f(s) ds`` at ``s = j/steps``, normalised to unit mass.

    The normalisation makes the average of a constant exact whatever the kernel's
    quadrature error, so a window average of a relaxed flux is the relaxed flux.
    """
    s = np.linspace(0.0, 1.0, steps + 1)
    values = np.asarray(kernel(s), dtype=np.float64)
    if values.shape != s.shape or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("a window kernel must return finite, non-negative values of s's shape")
    weights = values.copy()
    weights[[0, -1]] *= 0.5
    total = weights.sum()
    if total <= 0:
        raise ValueError("the window kernel has zero mass on [0, 1]")
    return weights / total


def _scipy_matrix(A: PETSc.Mat) -> scipy.sparse.csr_matrix:
    indptr, indices, values = A.getValuesCSR()
    return scipy.sparse.csr_matrix(
        (values.copy(), indices.copy(), indptr.copy()), shape=A.getSize()
    )


# -- the relaxing periodic cell -----------------------------------------------------------------
class TransientConductivityCell:
    """The periodic cell relaxing under a macro gradient: the transient micro problem of HMM.

    Solves, for every unit gradient ``G = e_j`` at once (one factorisation per time step),
    ``c dw_j/dt = div(K (e_j + grad w_j))`` with ``w_j`` periodic and ``w_j(0) = 0``, by
    backward Euler, and returns the cell-average flux tensor::

        K(t)_ij = 1/|Y| ( int_Y K_ij dy - b_i . w_j(t) ),

    (``b_i`` the load of the unit gradient ``e_i``, as in the steady energy average), so
    ``K(0) = <K>`` and ``K(t) -> K*`` as ``t -> infinity``: the steady backward-Euler limit
    is the discrete steady cell problem of :class:`~hmm_fem.cells.ConductivityCell`. No
    dof is pinned: the capacity-weighted mean of ``w`` stays zero by itself.

    Example:
        >>> cell = TransientConductivityCell(block_cell(8, 0.5), {"matrix": 1.0, "inclusion": 0.1})
        >>> times, K = cell.flux_history(duration=0.2, steps=40)   # K: (41, 2, 2)
        >>> cell.windowed_tensor(window=0.2, kernel="smooth")      # the HMM's K

    Args:
        cell: The unit cell (mesh with phase tags).
        conductivities: Conductivity of every phase (scalar, diagonal or SPD matrix), by
            phase name or tag.
        capacities: Volumetric heat capacity of every phase (positive scalars), by phase
            name or tag, or one number for all.
        degree: Lagrange degree of the fluctuation.

    Attributes:
        factorisations: Number of LU factorisations so far (one per time step size).
    """

    def __init__(
        self,
        cell: UnitCell,
        conductivities: Mapping,
        capacities: Mapping | float = 1.0,
        degree: int = 1,
    ):
        d = cell.dim
        self.cell = cell
        self.degree = int(degree)
        if not isinstance(capacities, Mapping):
            capacities = {name: capacities for name in cell.phases}
        self.conductivity = PhaseField(
            cell,
            (d, d),
            "conductivity",
            lambda v, what: as_conductivity(v, d, what),
            "conductivity",
        )
        self.conductivity.set(conductivities)
        self.capacity = PhaseField(cell, (), "capacity", _positive_scalar, "heat capacity")
        self.capacity.set(capacities)
        msh = cell.mesh
        V = fem.functionspace(msh, ("Lagrange", self.degree))
        mpc, _ = periodic_constraint(V, tuple(cell.lengths), pin=False)
        self.mpc = mpc
        K, c = self.conductivity.function, self.capacity.function
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        G = fem.Constant(msh, np.zeros(d, dtype=PETSc.ScalarType))
        stiffness = fem.form(ufl.inner(K * ufl.grad(u), ufl.grad(v)) * ufl.dx)
        mass = fem.form(c * u * v * ufl.dx)
        load = fem.form(-ufl.inner(K * G, ufl.grad(v)) * ufl.dx)
        A = dolfinx_mpc.assemble_matrix(stiffness, mpc, bcs=[], diagval=0.0)
        M = dolfinx_mpc.assemble_matrix(mass, mpc, bcs=[], diagval=0.0)
        self._A, self._M = _scipy_matrix(A), _scipy_matrix(M)
        A.destroy()
        M.destroy()
        n = self._A.shape[0]
        self._slaves = np.asarray(mpc.slaves, dtype=np.int64)
        slave_diagonal = np.zeros(n)
        slave_diagonal[self._slaves] = 1.0
        self._slave_identity = scipy.sparse.diags(slave_diagonal, format="csr")
        loads = np.empty((n, d))
        for j in range(d):
            G.value[:] = np.eye(d)[j]
            b = dolfinx_mpc.assemble_vector(load, mpc)
            b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            loads[:, j] = b.array_r
            b.destroy()
        loads[self._slaves] = 0.0
        self._loads = loads
        self._arithmetic = self.conductivity.integral()
        self._lu: dict[float, scipy.sparse.linalg.SuperLU] = {}
        self.factorisations = 0
        self._relaxation: float | None = None

    @property
    def num_dofs(self) -> int:
        """Number of degrees of freedom of the fluctuation (before the constraint)."""
        return self._A.shape[0]

    def system_matrices(self) -> dict:
        """The assembled semi-discrete system, for checks (e.g. a modal expansion).

        Returns:
            ``A`` (stiffness) and ``M`` (capacity) as SciPy CSR matrices on the constrained
            space (zero rows and columns at the periodic slaves), ``loads`` (``n x d``, the
            load of every unit gradient), ``free`` (the indices of the master dofs) and
            ``integral`` (``int_Y K dy``): ``M dw/dt + A w = loads``.
        """
        return {
            "A": self._A,
            "M": self._M,
            "loads": self._loads,
            "free": np.setdiff1d(np.arange(self.num_dofs), self._slaves),
            "integral": self._arithmetic,
        }

    def arithmetic_mean(self) -> np.ndarray:
        """``<K>``, the flux tensor at ``t = 0`` (the Voigt bound)."""
        return self._arithmetic / self.cell.volume

    def _factor(self, dt: float) -> scipy.sparse.linalg.SuperLU:
        key = float(dt)
        if key not in self._lu:
            system = (self._M + key * self._A + self._slave_identity).tocsc()
            self._lu[key] = scipy.sparse.linalg.splu(system)
            self.factorisations += 1
        return self._lu[key]

    def flux_history(self, duration: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The cell-average flux tensor ``K(t)`` over ``[0, duration]`` (cell time units).

        Args:
            duration: Length of the simulation, in cell time (``> 0``).
            steps: Number of backward-Euler steps (``>= 1``).

        Returns:
            ``(times, K)``: ``times`` ``(steps + 1,)`` and ``K`` ``(steps + 1, d, d)``, with
            ``K[0] = <K>``.
        """
        duration, steps = float(duration), int(steps)
        if not (np.isfinite(duration) and duration > 0) or steps < 1:
            raise ValueError(
                f"flux_history needs duration > 0 and steps >= 1, got {duration}, {steps}"
            )
        dt = duration / steps
        lu = self._factor(dt)
        d = self.cell.dim
        w = np.zeros((self.num_dofs, d))
        K = np.empty((steps + 1, d, d))
        K[0] = self._arithmetic
        forcing = dt * self._loads
        for k in range(1, steps + 1):
            rhs = self._M @ w + forcing
            rhs[self._slaves] = 0.0
            w = lu.solve(rhs)
            K[k] = self._arithmetic - self._loads.T @ w
        return np.linspace(0.0, duration, steps + 1), K / self.cell.volume

    def windowed_tensor(
        self, window: float, kernel: str | Callable = "smooth", steps: int = 64
    ) -> np.ndarray:
        """The kernel-weighted average of ``K(t)`` over ``[0, window]``: the HMM's tensor.

        ``K_tau = int_0^1 k(s) K(s tau) ds`` (trapezoid rule on the backward-Euler
        samples, weights normalised to unit mass), symmetrised.

        Args:
            window: Window length ``tau`` in cell time.
            kernel: A name of :data:`KERNELS` (``"smooth"``, ``"linear"``, ``"uniform"``) or
                a callable ``k(s)`` on ``[0, 1]``.
            steps: Backward-Euler steps over the window.
        """
        weights = _trapezoid_weights(window_kernel(kernel), int(steps))
        _, K = self.flux_history(window, steps)
        averaged = np.tensordot(weights, K, axes=1)
        return 0.5 * (averaged + averaged.T)

    def eigenvalues(self, count: int = 2) -> np.ndarray:
        """The smallest eigenvalues of ``-div(K grad w) = lambda c w`` on periodic ``w``.

        The first is zero (the constants). Dense generalised eigenproblem on the master
        dofs (SciPy ``eigh``); for the small cells of the HMM.
        """
        keep = np.setdiff1d(np.arange(self.num_dofs), self._slaves)
        A = self._A[keep][:, keep].toarray()
        M = self._M[keep][:, keep].toarray()
        return scipy.linalg.eigh(A, M, eigvals_only=True, subset_by_index=[0, count - 1])

    def relaxation_time(self) -> float:
        """``1 / lambda_1``: the slowest decay time of a fluctuation (cell time units)."""
        if self._relaxation is None:
            self._relaxation = float(1.0 / self.eigenvalues(2)[1])
        return self._relaxation


def _positive_scalar(value, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 0 or not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"{what} must be one positive number, got {value!r}")
    return arr


# -- the double-porosity block --------------------------------------------------------------------
class DiffusionBlock:
    """A square block of a double-porosity medium soaking up its boundary value.

    ``c_b dv/dt = D lap v`` in ``[0, L]^2``, ``v = U(t)`` on the boundary, by backward Euler
    on P1 triangles. The state is ``v`` at the interior nodes; one step from ``(v_n, U_n)``
    to the boundary value ``U_{n+1}`` is affine in ``U_{n+1}``:

        v_{n+1} = (M_II + dt D A_II)^-1 [ M_II v_n + M_IB 1 U_n ] + g_dt U_{n+1},

    with ``g_dt = -(M_II + dt D A_II)^-1 (M_IB + dt D A_IB) 1`` computed once per ``dt``
    (one LU per ``dt``; ``M_IB = 0`` with the lumped mass). The stored heat is
    ``S = int c_b v dy = m_I . v + m_B U`` with the nodal masses ``m``.

    Args:
        side: Side ``L`` of the block (cell units; the block of a unit cell of block
            fraction ``b`` has ``L = b``).
        diffusivity: ``D``, the block conductivity in cell units (a physical block
            conductivity ``eps^2 D`` on a period ``eps``: the double-porosity scaling).
        capacity: ``c_b``, the block's volumetric heat capacity.
        cells_per_side: Mesh cells along a side.

    Attributes:
        num_interior: Number of interior nodes (the length of the state).
        boundary_mass: ``sum m_B``: the heat capacity of the boundary nodes (an ``O(h)``
            band that follows ``U`` instantly; all an impermeable block takes up).
        coordinates: Coordinates of the interior nodes, ``(num_interior, 2)``.
    """

    def __init__(
        self, side: float, diffusivity: float, capacity: float = 1.0, cells_per_side: int = 16
    ):
        for name, value in (("side", side), ("diffusivity", diffusivity), ("capacity", capacity)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"DiffusionBlock: {name} must be positive, got {value!r}")
        if int(cells_per_side) < 2:
            raise ValueError(f"DiffusionBlock: cells_per_side >= 2, got {cells_per_side}")
        self.side = float(side)
        self.diffusivity = float(diffusivity)
        self.capacity = float(capacity)
        m = int(cells_per_side)
        msh = dmesh.create_rectangle(
            MPI.COMM_SELF, [[0.0, 0.0], [self.side, self.side]], [m, m], dmesh.CellType.triangle
        )
        V = fem.functionspace(msh, ("Lagrange", 1))
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        A = dolfinx.fem.petsc.assemble_matrix(
            fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
        )
        A.assemble()
        M = dolfinx.fem.petsc.assemble_matrix(fem.form(u * v * ufl.dx))
        M.assemble()
        A_full = _scipy_matrix(A) * self.diffusivity
        # Lumped (row-sum) mass: the block scheme is then an M-matrix scheme, so a block
        # heated through its boundary never undershoots (a consistent mass gives negative
        # temperatures next to a sudden boundary change), and impermeable blocks (D -> 0)
        # keep their interior exactly: only the boundary band follows U.
        lumped = np.asarray(_scipy_matrix(M).sum(axis=1)).ravel() * self.capacity
        M_full = scipy.sparse.diags(lumped, format="csr")
        A.destroy()
        M.destroy()
        msh.topology.create_connectivity(1, 2)
        boundary = np.unique(
            fem.locate_dofs_topological(V, 1, dmesh.exterior_facet_indices(msh.topology))
        )
        interior = np.setdiff1d(np.arange(A_full.shape[0]), boundary)
        self._A_II = A_full[interior][:, interior].tocsc()
        self._M_II = M_full[interior][:, interior].tocsc()
        ones_B = np.ones(boundary.size)
        self._A_IB1 = A_full[interior][:, boundary] @ ones_B
        self._M_IB1 = M_full[interior][:, boundary] @ ones_B
        row_sums = np.asarray(M_full.sum(axis=1)).ravel()
        self._m_I = row_sums[interior]
        self.boundary_mass = float(row_sums[boundary].sum())
        self.num_interior = interior.size
        self.coordinates = V.tabulate_dof_coordinates()[interior, :2]
        self._steps: dict[float, tuple[scipy.sparse.linalg.SuperLU, np.ndarray]] = {}
        self.factorisations = 0

    @property
    def volume(self) -> float:
        """``L^2``, the block's area."""
        return self.side**2

    def _operators(self, dt: float):
        key = float(dt)
        if not (np.isfinite(key) and key > 0):
            raise ValueError(
                f"DiffusionBlock.step needs a time step dt > 0, got {dt!r}; the block is a "
                "transient micro problem (run it inside a transient macro step)"
            )
        if key not in self._steps:
            lu = scipy.sparse.linalg.splu((self._M_II + key * self._A_II).tocsc())
            gain = -lu.solve(self._M_IB1 + key * self._A_IB1)
            self._steps[key] = (lu, gain)
            self.factorisations += 1
        return self._steps[key]

    def step(
        self, state: np.ndarray, boundary_old: float, boundary_new: float, dt: float
    ) -> tuple[np.ndarray, float]:
        """One backward-Euler step: the new interior state and ``dv/dU_{n+1}``'s heat.

        Returns:
            ``(v_{n+1}, dS/dU_{n+1})``: the interior values, and the derivative of the
            stored heat with respect to the new boundary value.
        """
        lu, gain = self._operators(dt)
        free = lu.solve(self._M_II @ state + self._M_IB1 * boundary_old)
        new = free + gain * boundary_new
        return new, float(self._m_I @ gain + self.boundary_mass)

    def stored_heat(self, state: np.ndarray, boundary: float) -> float:
        """``S = int c_b v dy`` (lumped mass) for interior values ``state``."""
        return float(self._m_I @ state + self.boundary_mass * boundary)

    def eigenvalues(self, count: int = 1) -> np.ndarray:
        """Smallest eigenvalues of ``-D lap phi = lambda c_b phi``, ``phi = 0`` on the boundary.

        Dense generalised eigenproblem on the interior nodes (SciPy ``eigh``): the blocks
        are small (a 16 x 16 mesh has 225 interior nodes).
        """
        return scipy.linalg.eigh(
            self._A_II.toarray(),
            self._M_II.toarray(),
            eigvals_only=True,
            subset_by_index=[0, count - 1],
        )

    def relaxation_time(self) -> float:
        """``1 / lambda_1`` of the discrete block (cell time units)."""
        return float(1.0 / self.eigenvalues(1)[0])

    def exact_leading_eigenvalue(self) -> float:
        """``2 pi^2 D / (c_b L^2)``: the leading eigenvalue of the continuous square block."""
        return 2.0 * np.pi**2 * self.diffusivity / (self.capacity * self.side**2)

    def measured_relaxation_time(
        self, dt: float | None = None, duration: float | None = None
    ) -> float:
        """The relaxation time the block simulation shows after a unit step of ``U``.

        Runs the block from ``v = 0`` with ``U = 1`` and fits ``log(S_inf - S(t))`` over the
        second half of the run (where the leading mode dominates), correcting the fitted
        per-step factor for backward Euler (``1/(1 + lambda dt)``).

        Args:
            dt: Time step (default: a fiftieth of the exact relaxation time).
            duration: Length of the run (default: five exact relaxation times).
        """
        tau = 1.0 / self.exact_leading_eigenvalue()
        dt = tau / 50.0 if dt is None else float(dt)
        duration = 5.0 * tau if duration is None else float(duration)
        steps = max(int(round(duration / dt)), 4)
        state = np.zeros(self.num_interior)
        full = self.volume * self.capacity
        deficits = np.empty(steps)
        old = 0.0
        for k in range(steps):
            state, _ = self.step(state, old, 1.0, dt)
            old = 1.0
            deficits[k] = full - self.stored_heat(state, 1.0)
        late = np.arange(steps // 2, steps)
        slope = np.polyfit(late, np.log(deficits[late]), 1)[0]
        factor = np.exp(slope)  # deficit ratio per step = 1 / (1 + lambda dt)
        return float(dt / (1.0 / factor - 1.0))
