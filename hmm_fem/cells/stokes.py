"""Periodic Stokes cell problems: the permeability tensor of a periodic porous medium.

The pore space is the phase ``"matrix"`` (tag :data:`~hmm_fem.geometry.MATRIX`)
of a unit cell; every other phase (the inclusions) is the solid. The problems are
solved on a submesh of the pore cells only; the solid surface is made of the pore
facets that are not on the periodic box.

Transverse (full) permeability, :class:`PermeabilityCell`: for each unit macro pressure
gradient (body force ``e_j``) the periodic velocity ``u_j`` and pressure fluctuation
``p_j`` solve, with viscosity 1,

    -laplace u_j + grad p_j = e_j,   div u_j = 0   in the pore space,
    u_j = 0 on the solid surface,    u_j, p_j periodic,

and ``k_ij = 1/|Y| int_pore (u_j)_i dx`` (Darcy: ``<u> = -k grad P / mu``). Lengths are in
units of the cell side, so ``k`` is in units of (cell side)^2.

Axial permeability of a fibre bed, :class:`AxialFlowCell` (2D cells): the flow along
the cylinders solves the scalar problem ``-laplace w = 1`` in the pore, ``w = 0`` on the
solid, ``w`` periodic, and ``k_zz = 1/|Y| int_pore w dx``.
"""

from __future__ import annotations

import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from petsc4py import PETSc

from ..geometry import MATRIX, TOUCHING_LIMITS, UnitCell
from ..geometry.periodicity import on_face, periodic_maps, tolerance
from ..materials.validation import spd_defect
from .conditions import Periodic
from .skeleton import LinearCellProblem
from .solver import LU_SOLVER_OPTIONS, CellSolveError

__all__ = [
    "PermeabilityCell",
    "AxialFlowCell",
    "STOKES_SOLVER_OPTIONS",
    "STOKES_ITERATIVE_OPTIONS",
    "STOKES_ITERATIVE_RESIDUAL",
    "pore_mesh",
]

#: Direct LU with MUMPS: the Stokes saddle-point matrix is symmetric but indefinite,
#: so the Cholesky default of the other cell problems does not apply.
STOKES_SOLVER_OPTIONS = LU_SOLVER_OPTIONS

#: The iterative saddle-point solver, the default of 3D cells: MINRES preconditioned by the
#: block-diagonal matrix ``diag(A_uu, M_p)`` (the velocity Laplacian by PETSc's smoothed
#: aggregation multigrid GAMG, the pressure mass matrix -- spectrally equivalent to the
#: Schur complement of Stokes -- by Jacobi), to a relative (unpreconditioned) residual of
#: ``ksp_rtol``. The permeability is then taken from the second-order (stationary) form
#: ``k_ij |Y| = b_i.x_j + b_j.x_i - x_i.A x_j``, whose error is the product of two solution
#: errors; against the direct solve k agrees to about 1e-7 (measured 3.7e-8 and 1.6e-7 on
#: cubes of 8.4e3 and 2.5e4 dofs; tests/test_cells_3d.py).
STOKES_ITERATIVE_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "minres",
    "ksp_norm_type": "unpreconditioned",
    "ksp_rtol": 1e-4,
    "ksp_atol": 0.0,
    "ksp_max_it": 2000,
    "pc_type": "fieldsplit",
    "pc_fieldsplit_type": "additive",
    **{
        f"fieldsplit_u{axis}_{key}": value
        for axis in "xyz"
        for key, value in {
            "ksp_type": "preonly",
            "pc_type": "gamg",
            "pc_gamg_threshold": 0.05,
            "mg_levels_ksp_max_it": 3,
        }.items()
    },
    "fieldsplit_p_ksp_type": "preonly",
    "fieldsplit_p_pc_type": "jacobi",
}

#: The residual check of :data:`STOKES_ITERATIVE_OPTIONS`: this factor times its
#: ``ksp_rtol`` (the recursively updated MINRES residual drifts from the true one).
STOKES_ITERATIVE_RESIDUAL = 10.0


def _without_zeros(matrix: PETSc.Mat) -> PETSc.Mat:
    """A copy of the assembled sequential AIJ ``matrix`` without its stored exact zeros.

    The pattern of a mixed (Taylor-Hood) form couples every velocity component with every
    other; the Laplacian leaves those couplings exactly zero. Dropping them makes every
    product with the matrix about four times cheaper (measured on the cube at 2.5e4 dofs:
    103 -> 26 entries a row, 4.6 -> 0.8 ms).
    """
    indptr, indices, values = matrix.getValuesCSR()
    keep = values != 0.0
    # Keep the diagonal even where it is zero, so that every row stays in the pattern.
    rows = np.repeat(np.arange(indptr.size - 1, dtype=indices.dtype), np.diff(indptr))
    keep |= rows == indices
    positions = np.flatnonzero(keep)
    new_indptr = np.searchsorted(positions, indptr).astype(indptr.dtype)
    compact = PETSc.Mat().createAIJ(
        matrix.getSize(), csr=(new_indptr, indices[keep], values[keep]), comm=matrix.comm
    )
    compact.assemble()
    return compact


def _check_cell(cell: UnitCell, what: str) -> None:
    """Reject cells whose solid is at or beyond the touching limit of their lattice."""
    limit = TOUCHING_LIMITS.get(cell.geometry)
    f = cell.target_volume_fraction
    if limit is not None and f is not None and cell.geometry != "random" and f >= limit:
        raise ValueError(
            f"{what}: the solid fraction {f:.6g} of the '{cell.geometry}' cell is at or above its"
            f" touching limit {limit:.6g}: neighbouring solid inclusions touch and close the pore"
            " space, so there is no flow path and no permeability. Use a smaller solid fraction."
        )
    if "matrix" in cell.phases and cell.phases["matrix"] != MATRIX:
        raise ValueError(f"{what}: the pore phase 'matrix' must carry tag {MATRIX}")


def pore_mesh(cell: UnitCell, what: str = "pore_mesh") -> tuple[dmesh.Mesh, np.ndarray]:
    """The submesh of the pore space (phase ``"matrix"``) and its solid-surface facets.

    Args:
        cell: The unit cell; the phase ``"matrix"`` is the fluid, all others are solid.
        what: Name used in error messages.

    Returns:
        The pore submesh and the indices (in the submesh) of the facets on the solid
        surface: its boundary facets that do not lie on a face of the periodic box.

    Raises:
        ValueError: If the cell has no pore cells or no solid surface.
    """
    if "matrix" not in cell.phases:
        raise ValueError(
            f"{what}: the cell has no phase 'matrix' (the pore space); phases: {cell.phases}"
        )
    msh = cell.mesh
    tdim = msh.topology.dim
    tag = cell.phases["matrix"]
    pores = np.sort(cell.cell_tags.indices[cell.cell_tags.values == tag]).astype(np.int32)
    if pores.size == 0:
        raise ValueError(
            f"{what}: the '{cell.geometry}' cell has no pore space (no cell tagged 'matrix' ="
            f" {tag}); there is no fluid to flow"
        )
    sub = dmesh.create_submesh(msh, tdim, pores)[0]
    fdim = tdim - 1
    sub.topology.create_connectivity(fdim, tdim)
    boundary = dmesh.exterior_facet_indices(sub.topology)
    L = np.asarray(cell.lengths, dtype=np.float64)
    tol = tolerance(L)
    # Facets lying in one face of the box (all their vertices on it) are periodic faces.
    periodic = [
        dmesh.locate_entities_boundary(sub, fdim, lambda x, i=i, v=v: on_face(x, i, v, tol))
        for i in range(tdim)
        for v in (0.0, L[i])
    ]
    periodic = np.concatenate(periodic).astype(np.int32)
    solid = np.setdiff1d(boundary, periodic).astype(np.int32)
    if solid.size == 0:
        raise ValueError(
            f"{what}: the pore space of the '{cell.geometry}' cell has no solid surface; the"
            " velocity would be unbounded. The cell needs a solid phase (tag other than 'matrix')"
        )
    return sub, solid


def _check_permeability(tensor: np.ndarray, what: str, cell: UnitCell) -> None:
    """Raise unless ``tensor`` is symmetric positive definite.

    The rule is :func:`~hmm_fem.materials.validation.spd_defect`; a singular direction is
    a solid that blocks the flow, reported as such.
    """
    defect = spd_defect(tensor)
    if defect is None:
        return
    if np.abs(tensor).max(initial=0.0) == 0.0:
        raise ValueError(f"{what} is zero: the pore space of the '{cell.geometry}' cell is closed")
    if defect.startswith("is not positive definite"):
        eig, vec = np.linalg.eigh(0.5 * (tensor + tensor.T))
        direction = np.round(vec[:, np.argmin(eig)], 6).tolist()
        raise ValueError(
            f"{what} {defect}: the pore space of the '{cell.geometry}' cell does not percolate"
            f" along {direction} - the solid touches its periodic images and blocks the flow."
            f" Tensor: {tensor.tolist()}"
        )
    raise CellSolveError(f"{what} {defect}: {tensor.tolist()}")


class PermeabilityCell(LinearCellProblem):
    """Permeability tensor of a periodic porous unit cell (periodic Stokes flow).

    Taylor-Hood elements (degree ``degree`` velocity, ``degree - 1`` pressure) on the pore
    space (phase ``"matrix"``), no slip on the solid surface, periodic velocity and
    pressure fluctuation, one pressure dof pinned at an interior node. The ``d`` load cases
    (unit body force ``e_j``, i.e. a unit macro pressure drop) share one MUMPS LU
    factorisation in 2D, one block preconditioner in 3D (MINRES,
    :data:`STOKES_ITERATIVE_OPTIONS`), and ``k_ij |Y| = int_pore (u_j)_i dx = b_i . x_j`` is
    the work of body force ``i`` on flow ``j`` (the dissipation form of
    :mod:`hmm_fem.cells.skeleton`; its second-order version after an iterative solve).

    Example:
        >>> cell = hmm_fem.cells.square(0.2)       # solid discs, 20 % solid
        >>> PermeabilityCell(cell).permeability()   # about 0.0194 * I (cell side^2)

    Args:
        cell: The unit cell; ``"matrix"`` is the fluid, the other phases are solid.
        degree: Velocity degree (>= 2); the pressure has ``degree - 1``.
        petsc_options: Linear solver options; default :data:`STOKES_SOLVER_OPTIONS` (MUMPS
            LU) for the direct solver, :data:`STOKES_ITERATIVE_OPTIONS` for the iterative one.
        solver: ``"auto"`` (iterative in 3D, direct in 2D), ``"direct"`` or ``"iterative"``
            (MINRES with the block preconditioner; k within about 1e-7 of the direct solve,
            at a fraction of its time and memory in 3D).

    Attributes:
        iterative: Whether the cell uses the iterative solver.
        solutions: The velocity and pressure of every load case (``flow_x``, ...).
        raw_tensor: The unsymmetrised tensor of the last solve (set even if the check fails).

    Raises:
        ValueError: If there is no pore space, no solid surface, or the solid is at or
            beyond its touching limit.
    """

    def __init__(
        self,
        cell: UnitCell,
        degree: int = 2,
        petsc_options: dict | None = None,
        solver: str = "auto",
    ):
        if solver not in ("auto", "direct", "iterative"):
            raise ValueError(
                f"PermeabilityCell: solver={solver!r}; use 'auto' (iterative in 3D, direct in"
                " 2D), 'direct' (MUMPS LU, or petsc_options) or 'iterative' (MINRES with the"
                " block preconditioner of STOKES_ITERATIVE_OPTIONS)"
            )
        if solver == "iterative" and petsc_options is not None:
            raise ValueError(
                "PermeabilityCell: solver='iterative' uses STOKES_ITERATIVE_OPTIONS; pass"
                " petsc_options with solver='direct' (or 'auto') instead"
            )
        if int(degree) < 2:
            raise ValueError(f"degree must be >= 2 (Taylor-Hood P2-P1 at least), got {degree}")
        what = "PermeabilityCell"
        _check_cell(cell, what)
        super().__init__(cell, degree, min_degree=2)
        d = cell.dim
        self.mesh, self.solid_facets = pore_mesh(cell, what)
        msh = self.mesh
        cname = msh.basix_cell()
        P2 = basix.ufl.element("Lagrange", cname, self.degree, shape=(d,))
        P1 = basix.ufl.element("Lagrange", cname, self.degree - 1)
        self.W = fem.functionspace(msh, basix.ufl.mixed_element([P2, P1]))
        V, _ = self.W.sub(0).collapse()
        Q, _ = self.W.sub(1).collapse()
        dofs_u = fem.locate_dofs_topological((self.W.sub(0), V), d - 1, self.solid_facets)
        pinned = fem.locate_dofs_geometrical((self.W.sub(1), Q), periodic_maps(cell.lengths)[3])
        if len(pinned[0]) == 0:
            raise ValueError(f"{what}: no interior pressure node to pin; refine the mesh")
        bcs = [
            fem.dirichletbc(fem.Function(V), dofs_u, self.W.sub(0)),
            fem.dirichletbc(fem.Function(Q), [pinned[0][:1], pinned[1][:1]], self.W.sub(1)),
        ]
        self.force = f = fem.Constant(msh, np.zeros(d, dtype=PETSc.ScalarType))
        self.iterative = (
            petsc_options is None and (solver == "iterative" or (solver == "auto" and d == 3))
        ) or petsc_options == STOKES_ITERATIVE_OPTIONS
        if petsc_options is None:
            petsc_options = STOKES_ITERATIVE_OPTIONS if self.iterative else STOKES_SOLVER_OPTIONS

        def bilinear(w, z):
            (u, p), (v, q) = ufl.split(w), ufl.split(z)
            return (ufl.inner(ufl.grad(u), ufl.grad(v)) - p * ufl.div(v) - q * ufl.div(u)) * ufl.dx

        self._build(
            self.W,
            Periodic(pin=False),
            bilinear,
            lambda z: ufl.inner(f, ufl.split(z)[0]) * ufl.dx,
            load=f,
            unit_loads=np.eye(d),
            labels=[f"body force e_{'xyz'[j]}" for j in range(d)],
            solution_names=[f"flow_{'xyz'[j]}" for j in range(d)],
            name="stokes_cell",
            what=f"permeability of the '{cell.geometry}' cell",
            petsc_options=petsc_options,
            bcs=bcs,
        )
        self._preconditioner = None
        if self.iterative:
            self._iterative_set_up(bcs)
        one = fem.Constant(msh, PETSc.ScalarType(1.0))
        self.pore_volume = float(fem.assemble_scalar(fem.form(one * ufl.dx)))

    def _iterative_set_up(self, bcs) -> None:
        """The compact matrix, the block preconditioner matrix and the index sets.

        The preconditioner matrix is the Stokes matrix with the lumped pressure mass
        matrix (spectrally equivalent to the mass matrix for P1, hence to the Schur
        complement) on the diagonal of the pressure block: the additive field split
        uses only the diagonal blocks, so the rest of it is never read.
        """
        W, d = self.W, self.cell.dim
        solver = self.system.solver
        # The Stokes matrix has no coefficients: assembled once (by the solver), kept
        # without its zero couplings.
        full = solver.A
        solver.A = _without_zeros(full)
        full.destroy()
        solver.residual_tolerance = STOKES_ITERATIVE_RESIDUAL * solver.ksp.getTolerances()[0]
        mass = self.system.assemble_vector(
            fem.form(ufl.TestFunctions(W)[1] * ufl.dx), solver.A.createVecLeft()
        )
        pressure = np.asarray(W.sub(1).collapse()[1], dtype=np.int64)
        fixed = np.concatenate(
            [np.asarray(self.mpc.slaves, dtype=np.int64)]
            + [bc.dof_indices()[0].astype(np.int64) for bc in bcs]
        )
        pressure = np.setdiff1d(pressure, fixed)
        diagonal = solver.A.getDiagonal()
        diagonal.array[pressure] = mass.array_r[pressure]
        self._preconditioner = solver.A.duplicate(copy=True)
        self._preconditioner.setDiagonal(diagonal)
        diagonal.destroy()
        mass.destroy()
        solver.P = self._preconditioner
        # One split per velocity component: the vector Laplacian is block diagonal, and a
        # scalar multigrid per component skips the zero couplings the mixed pattern stores.
        splits = [(f"u{'xyz'[i]}", W.sub(0).sub(i)) for i in range(d)] + [("p", W.sub(1))]
        self._index_sets = [
            PETSc.IS().createGeneral(np.asarray(space.collapse()[1], dtype=np.int32))
            for _, space in splits
        ]
        solver.ksp.getPC().setFieldSplitIS(
            *[(name, iset) for (name, _), iset in zip(splits, self._index_sets, strict=True)]
        )

    def _factorise(self) -> None:
        """Set up the solver; the iterative path keeps its once-assembled compact matrix."""
        self.system.solver.factorise(assemble=self._preconditioner is None)

    def _energy_average(self, loads, solutions, average=None, zeroed=()):
        """The dissipation form; with the iterative solver its second-order version.

        ``b_i.x_j + b_j.x_i - x_i.A x_j`` equals ``b_i.x_j`` for exact solutions and differs
        from it by ``e_i.A e_j`` (``e`` the solution errors) for approximate ones.
        """
        work = super()._energy_average(loads, solutions, average, zeroed)
        if not self.iterative:
            return work
        A = self.system.solver.A
        x, y = A.createVecRight(), A.createVecLeft()
        products = np.empty_like(solutions)
        for j, row in enumerate(solutions):
            x.array[:] = row
            A.mult(x, y)
            products[j] = y.array_r
        x.destroy()
        y.destroy()
        return work + (work.T - solutions @ products.T / self.cell.volume)

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        super().destroy()
        if self._preconditioner is not None:
            self._preconditioner.destroy()
            for index_set in self._index_sets:
                index_set.destroy()

    @property
    def porosity(self) -> float:
        """Meshed pore volume fraction."""
        return self.pore_volume / self.cell.volume

    def _checked(self, raw: np.ndarray) -> np.ndarray:
        _check_permeability(raw, self._what, self.cell)
        return 0.5 * (raw + raw.T)

    def permeability(self) -> np.ndarray:
        """The permeability tensor ``k`` (``d x d``, symmetrised, viscosity 1).

        Returns:
            ``k_ij = 1/|Y| int_pore (u_j)_i dx`` in units of (cell side)^2: Darcy's law
            reads ``<u> = -(k / mu) grad P`` with ``<u>`` the cell-averaged (superficial)
            velocity.

        Raises:
            ValueError: If ``k`` is not positive definite (the pore space does not
                percolate: the solid touches its periodic images).
            CellSolveError: If a solve fails or ``k`` is not finite or not symmetric.
        """
        return self._evaluate()


class AxialFlowCell(LinearCellProblem):
    """Axial permeability of a fibre bed: flow along the cylinders of a 2D cell.

    Solves ``-laplace w = 1`` in the pore space (phase ``"matrix"``), ``w = 0`` on the solid
    surface, ``w`` periodic (degree ``degree`` Lagrange), with one Cholesky factorisation;
    ``k_zz |Y| = int_pore w dx = b . x`` (the dissipation form).

    Args:
        cell: A 2D unit cell; its cross-section is that of the fibre bed.
        degree: Lagrange degree of ``w``.
        petsc_options: Linear solver options; default the cell-problem default (CHOLMOD
            Cholesky, :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`).

    Raises:
        ValueError: If the cell is not 2D, has no pore space or no solid surface, or its
            solid is at or beyond the touching limit.
    """

    def __init__(self, cell: UnitCell, degree: int = 2, petsc_options: dict | None = None):
        what = "AxialFlowCell"
        if cell.dim != 2:
            raise ValueError(f"{what}: needs a 2D cell (the fibre cross-section), got {cell.dim}D")
        super().__init__(cell, degree)
        _check_cell(cell, what)
        self.mesh, self.solid_facets = pore_mesh(cell, what)
        V = fem.functionspace(self.mesh, ("Lagrange", self.degree))
        dofs = fem.locate_dofs_topological(V, 1, self.solid_facets)
        self.force = f = fem.Constant(self.mesh, PETSc.ScalarType(0.0))
        self._build(
            V,
            Periodic(pin=False),
            lambda w, v: ufl.inner(ufl.grad(w), ufl.grad(v)) * ufl.dx,
            lambda v: f * v * ufl.dx,
            load=f,
            unit_loads=np.ones(1),
            labels=["axial flow"],
            solution_names=["axial_velocity"],
            name="axial_flow_cell",
            what=f"axial permeability of the '{cell.geometry}' cell",
            petsc_options=petsc_options,
            bcs=[fem.dirichletbc(PETSc.ScalarType(0.0), dofs, V)],
        )
        self.solution = self.solutions[0]

    def _checked(self, raw: np.ndarray) -> np.ndarray:
        k = float(raw[0, 0])
        if not np.isfinite(k) or k <= 0.0:
            raise CellSolveError(f"{self._what} is {k}")
        return raw

    def permeability(self) -> float:
        """The axial permeability ``k_zz = 1/|Y| int_pore w dx`` in (cell side)^2.

        Raises:
            CellSolveError: If the solve fails or ``k_zz`` is not finite and positive.
        """
        return float(self._evaluate()[0, 0])
