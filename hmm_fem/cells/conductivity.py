"""The periodic conductivity cell problem: effective conductivity tensor K*.

For each unit macro gradient ``e_j`` the periodic corrector ``chi_j`` solves

    div( K (e_j + grad chi_j) ) = 0   in the cell Y,   chi_j periodic,

and the effective tensor is the energy average

    K*_ij = 1/|Y| int_Y (e_i + grad chi_i) . K (e_j + grad chi_j) dx,

which is symmetric by construction. All ``d`` load cases share one
factorisation. Sign convention: a macro temperature gradient ``G`` gives the
macro heat flux ``q = -K* G``; the local flux of load case ``j`` is
``q_j = -K (e_j + grad chi_j)``. K* is in the units of the phase conductivities.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import as_conductivity
from .periodic import periodic_constraint
from .solver import CellSolveError, FactorisedSolver, check_effective_tensor

__all__ = ["ConductivityCell"]


class ConductivityCell:
    """Effective conductivity of a periodic unit cell.

    The cell is built once: function space, periodic constraint, compiled forms
    and matrix sparsity. :meth:`effective_tensor` with new phase values only
    reassembles, refactorises and solves the ``d`` load cases.

    Example:
        >>> cell = hmm_fem.cells.square(0.4)
        >>> problem = ConductivityCell(cell, {"matrix": 1.0, "inclusion": 10.0})
        >>> problem.effective_tensor()       # 2x2 array, about 1.98 * I

    Args:
        cell: The unit cell (mesh with phase tags).
        conductivities: Conductivity of every phase, by phase name or tag: a positive
            scalar (isotropic), ``d`` positive values (diagonal) or a symmetric
            positive definite ``d x d`` matrix.
        degree: Polynomial degree of the Lagrange corrector space.
        petsc_options: Linear solver options; default direct LU (MUMPS).
    """

    def __init__(
        self,
        cell: UnitCell,
        conductivities: Mapping,
        degree: int = 1,
        petsc_options: dict | None = None,
    ):
        if int(degree) < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        self.cell = cell
        self.degree = int(degree)
        d = cell.dim
        msh = cell.mesh
        self.V = fem.functionspace(msh, ("Lagrange", self.degree))
        self.mpc, self.bcs = periodic_constraint(self.V, cell.lengths)

        # Phase conductivity as a cell-wise constant tensor field.
        self._Q = fem.functionspace(msh, ("DG", 0, (d, d)))
        self.conductivity = fem.Function(self._Q, name="conductivity")
        num_cells = msh.topology.index_map(d).size_local + msh.topology.index_map(d).num_ghosts
        dofs = self._Q.dofmap.list[:num_cells, 0]
        phase_of_dof = np.empty(num_cells, dtype=np.int32)
        phase_of_dof[dofs] = cell.phase_index_of_cells(num_cells)
        self._phase_index_of_dof = phase_of_dof
        volumes = cell.phase_volumes()
        self._phase_volumes = np.array([volumes[n] for n in cell.phases])

        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        K = self.conductivity
        self.macro_gradient = fem.Constant(msh, np.zeros(d, dtype=PETSc.ScalarType))
        self._a = fem.form(ufl.inner(K * ufl.grad(u), ufl.grad(v)) * ufl.dx)
        self._L = fem.form(-ufl.inner(K * self.macro_gradient, ufl.grad(v)) * ufl.dx)

        self.correctors = [
            fem.Function(self.mpc.function_space, name=f"corrector_{'xyz'[j]}") for j in range(d)
        ]
        self._b = dolfinx_mpc.assemble_vector(self._L, self.mpc)
        self._slaves = np.asarray(self.mpc.slaves, dtype=np.int64)
        self._set_conductivities(conductivities)
        self.solver = FactorisedSolver(
            self._a, self.mpc, self.bcs, "conductivity_cell", petsc_options
        )
        self._tensor: np.ndarray | None = None
        self._solved_for: np.ndarray | None = None
        self.seconds = 0.0
        self._flux_expressions = None
        self._phase_matrices = None
        self._basis = None
        self._coordinates = None
        self._phase_laplacians = None

    # -- phases ---------------------------------------------------------------------------
    def _phase_tensors(self, conductivities: Mapping) -> np.ndarray:
        """The ``(num_phases, d, d)`` array of phase conductivities, validated."""
        d = self.cell.dim
        return np.array(
            [
                as_conductivity(value, d, f"conductivity of phase '{name}' (tag {tag})")
                for name, tag, value in self.cell.phase_values(conductivities, "conductivity")
            ]
        )

    def _set_conductivities(self, conductivities: Mapping) -> None:
        self._phase_K = self._phase_tensors(conductivities)
        d = self.cell.dim
        values = self.conductivity.x.array.reshape(-1, d * d)
        values[:] = self._phase_K.reshape(-1, d * d)[self._phase_index_of_dof]
        self.conductivity.x.scatter_forward()

    # -- solve ------------------------------------------------------------------------------
    def effective_tensor(self, conductivities: Mapping | None = None) -> np.ndarray:
        """The effective conductivity tensor K* (``d x d``, symmetric).

        Args:
            conductivities: New phase conductivities (same form as in the constructor).
                If omitted, or equal to the last ones, the stored result is returned
                without solving again.

        Returns:
            K* in the units of the phase conductivities.

        Raises:
            CellSolveError: if a solve fails or K* is not symmetric positive definite.
        """
        if conductivities is not None:
            self._set_conductivities(conductivities)
        if self._tensor is not None and np.array_equal(self._solved_for, self._phase_K):
            return self._tensor.copy()
        start = time.perf_counter()
        d = self.cell.dim
        isotropic = self._isotropic_values()
        if isotropic is not None:
            # Affine in the phase conductivities: A = D + sum_p k_p A_p, b_j = sum_p k_p b_pj,
            # from matrices assembled once; no assembly on this path.
            basis = self._affine_basis()
            basis["D"].copy(self.solver.A, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
            for k_p, A_p in zip(isotropic, basis["A"]):
                self.solver.A.axpy(k_p, A_p, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
            self.solver.factorise(assemble=False)
            rhs = np.tensordot(isotropic, basis["b"], axes=1)
        else:
            self.solver.factorise()
        loads = np.empty((d, self._b.getLocalSize()))
        solutions = np.empty_like(loads)
        for j, chi in enumerate(self.correctors):
            if isotropic is not None:
                self._b.array[:] = rhs[j]
            else:
                self.macro_gradient.value[:] = np.eye(d)[j]
                dolfinx_mpc.assemble_vector(self._L, self.mpc, self._b)
                dolfinx.fem.petsc.set_bc(self._b, self.bcs)
            self.solver.solve(self._b, chi.x.petsc_vec, label=f" (load case e_{'xyz'[j]})")
            loads[j] = self._b.array_r
            solutions[j] = chi.x.petsc_vec.array_r
            self.mpc.backsubstitution(chi)
        self.macro_gradient.value[:] = 0.0
        # K*_ij |Y| = int e_i.K e_j dx - b_i . x_j on the reduced (master) dofs: the energy
        # form at the discrete solution, by Galerkin orthogonality of the correctors.
        loads[:, self._slaves] = 0.0
        average = np.einsum("p,pij->ij", self._phase_volumes, self._phase_K)
        tensor = (average - loads @ solutions.T) / self.cell.volume
        tensor = 0.5 * (tensor + tensor.T)
        for chi in self.correctors:
            if not np.all(np.isfinite(chi.x.array)):
                raise CellSolveError(f"{chi.name} of the '{self.cell.geometry}' cell is not finite")
        check_effective_tensor(tensor, f"K* of the '{self.cell.geometry}' cell")
        self._tensor = tensor
        self._solved_for = self._phase_K.copy()
        self.seconds = time.perf_counter() - start
        return tensor.copy()

    def _isotropic_values(self) -> np.ndarray | None:
        """The scalar conductivity of every phase, or ``None`` if a phase is anisotropic."""
        d = self.cell.dim
        scalars = self._phase_K[:, 0, 0]
        if np.array_equal(self._phase_K, scalars[:, None, None] * np.eye(d)):
            return scalars
        return None

    def _affine_basis(self) -> dict:
        """Constrained phase matrices and load vectors, assembled once (isotropic phases).

        ``A[p]``: ``int_{Y_p} grad u . grad v`` with zero on the constrained rows;
        ``D``: one on the constrained (pinned and slave) diagonal entries;
        ``b[p, j]``: ``-int_{Y_p} e_j . grad v`` with the pinned entry zero.
        """
        if self._basis is not None:
            return self._basis
        d = self.cell.dim
        indicator = fem.Function(fem.functionspace(self.cell.mesh, ("DG", 0)))
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        a = fem.form(indicator * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
        L = fem.form(-indicator * ufl.inner(self.macro_gradient, ufl.grad(v)) * ufl.dx)
        dg_dofs = indicator.function_space.dofmap.list[:, 0]
        phase_of_cell = self._phase_index_of_dof[self._Q.dofmap.list[:, 0]]
        template = self.solver.A
        D = template.duplicate()
        indicator.x.array[:] = 0.0
        dolfinx_mpc.assemble_matrix(a, self.mpc, bcs=self.bcs, diagval=1.0, A=D)
        matrices, loads = [], np.zeros((len(self.cell.phases), d, self._b.getLocalSize()))
        b = self._b.duplicate()
        for p in range(len(self.cell.phases)):
            indicator.x.array[dg_dofs] = (phase_of_cell == p).astype(np.float64)
            A_p = template.duplicate()
            dolfinx_mpc.assemble_matrix(a, self.mpc, bcs=self.bcs, diagval=0.0, A=A_p)
            matrices.append(A_p)
            for j in range(d):
                self.macro_gradient.value[:] = np.eye(d)[j]
                dolfinx_mpc.assemble_vector(L, self.mpc, b)
                dolfinx.fem.petsc.set_bc(b, self.bcs)
                loads[p, j] = b.array_r
        self.macro_gradient.value[:] = 0.0
        b.destroy()
        self._basis = {"A": matrices, "D": D, "b": loads}
        return self._basis

    def sensitivities(self) -> np.ndarray:
        """Derivatives of K* with respect to every phase conductivity tensor.

        Returns ``M`` of shape ``(num_phases, d, d, d, d)`` with
        ``M[p, i, j, k, l] = dK*_ij / dK_p,kl = 1/|Y| int_{Y_p} d_k U_i d_l U_j dx``, where
        ``U_i = x_i + chi_i`` is the corrected coordinate. Because the correctors minimise
        the cell energy (also in the discrete space), the derivative needs no extra solve
        (Hellmann-Feynman): a change ``dK_p`` of phase ``p`` changes K* by
        ``einsum("pijkl,pkl->ij", M, dK)``, exactly at the discrete level to first order.
        Evaluated at the last solved state; the phase matrices are assembled once.
        """
        if self._tensor is None:
            self.effective_tensor()
        d = self.cell.dim
        if self._phase_matrices is None:
            self._phase_matrices = self._assemble_phase_matrices()
        U = self._corrected_coordinates()
        num_phases = len(self.cell.phases)
        M = np.empty((num_phases, d, d, d, d))
        for p in range(num_phases):
            for k in range(d):
                for m in range(d):
                    M[p, :, :, k, m] = U.T @ (self._phase_matrices[p][k][m] @ U)
        return M / self.cell.volume

    def _corrected_coordinates(self) -> np.ndarray:
        """``U[:, i] = x_i + chi_i`` at the dofs (``n x d``)."""
        if self._coordinates is None:
            d = self.cell.dim
            self._coordinates = self.mpc.function_space.tabulate_dof_coordinates()[:, :d].copy()
        return self._coordinates + np.column_stack([chi.x.array for chi in self.correctors])

    def phase_sensitivities(self) -> np.ndarray:
        """Derivatives of K* with respect to the scalar conductivity of every phase.

        ``E[p] = dK*/dk_p = 1/|Y| int_{Y_p} grad U_i . grad U_j dx`` (shape
        ``(num_phases, d, d)``): the isotropic contraction of :meth:`sensitivities`, at one
        sparse product per phase. For isotropic phases ``K* = sum_p k_p E[p]`` exactly.
        """
        if self._tensor is None:
            self.effective_tensor()
        if self._phase_matrices is not None:
            d = self.cell.dim
            full = [sum(m[k][k] for k in range(d)) for m in self._phase_matrices]
        else:
            if self._phase_laplacians is None:
                self._phase_laplacians = self._assemble_phase_laplacians()
            full = self._phase_laplacians
        U = self._corrected_coordinates()
        return np.array([U.T @ (F @ U) for F in full]) / self.cell.volume

    def _assemble_phase_laplacians(self) -> list:
        """Unconstrained ``int_{Y_p} grad u . grad v`` per phase, scipy CSR, assembled once."""
        d = self.cell.dim
        return [per_phase[0] for per_phase in self._unconstrained_phase_matrices([np.eye(d)])]

    def _assemble_phase_matrices(self) -> list:
        """Unconstrained matrices of ``int_{Y_p} d_l u d_k v dx`` per phase and ``(k, l)``.

        Returned as nested lists ``[p][k][l]`` of scipy CSR matrices, assembled once.
        """
        d = self.cell.dim
        units = [np.outer(np.eye(d)[k], np.eye(d)[m]) for k in range(d) for m in range(d)]
        return [
            [per_phase[k * d : (k + 1) * d] for k in range(d)]
            for per_phase in self._unconstrained_phase_matrices(units)
        ]

    def _unconstrained_phase_matrices(self, selectors: list[np.ndarray]) -> list:
        """Unconstrained ``int_{Y_p} (S grad u) . grad v`` per phase and selector ``S``.

        Returned as scipy CSR matrices indexed ``[p][s]``.
        """
        import dolfinx.fem.petsc
        import scipy.sparse

        d = self.cell.dim
        indicator = fem.Function(fem.functionspace(self.cell.mesh, ("DG", 0)))
        selector = fem.Constant(self.cell.mesh, np.zeros((d, d), dtype=PETSc.ScalarType))
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        form = fem.form(indicator * ufl.inner(selector * ufl.grad(u), ufl.grad(v)) * ufl.dx)
        dg_dofs = indicator.function_space.dofmap.list[:, 0]
        phase_of_cell = self._phase_index_of_dof[self._Q.dofmap.list[:, 0]]
        A = dolfinx.fem.petsc.create_matrix(form)
        matrices = []
        for p in range(len(self.cell.phases)):
            indicator.x.array[dg_dofs] = (phase_of_cell == p).astype(np.float64)
            per_phase = []
            for S in selectors:
                selector.value[:] = S
                A.zeroEntries()
                dolfinx.fem.petsc.assemble_matrix(A, form)
                A.assemble()
                indptr, indices, values = A.getValuesCSR()
                per_phase.append(
                    scipy.sparse.csr_matrix(
                        (values.copy(), indices.copy(), indptr.copy()), shape=A.getSize()
                    )
                )
            matrices.append(per_phase)
        A.destroy()
        return matrices

    def local_fluxes(self) -> list[fem.Function]:
        """The local flux of every load case, ``q_j = -K (e_j + grad chi_j)``.

        Returned as discontinuous Lagrange vector fields of degree ``degree - 1``
        (named ``flux_x``, ``flux_y``, ...), computed from the last solve.
        """
        if self._tensor is None:
            self.effective_tensor()
        d = self.cell.dim
        if self._flux_expressions is None:
            space = fem.functionspace(self.cell.mesh, ("DG", self.degree - 1, (d,)))
            points = space.element.interpolation_points
            self._flux_expressions = [
                (fem.Expression(expr, points), fem.Function(space, name=f"flux_{'xyz'[j]}"))
                for j, expr in enumerate(_local_flux_expressions(self))
            ]
        for expr, q in self._flux_expressions:
            q.interpolate(expr)
        return [q for _, q in self._flux_expressions]

    def phase_field(self) -> fem.Function:
        """The phase tag of every cell as a DG0 field named ``phase`` (for viewing)."""
        space = fem.functionspace(self.cell.mesh, ("DG", 0))
        phase = fem.Function(space, name="phase")
        tags = np.array(list(self.cell.phases.values()), dtype=np.float64)
        phase.x.array[space.dofmap.list[:, 0]] = tags[
            self._phase_index_of_dof[self._Q.dofmap.list[:, 0]]
        ]
        return phase

    @property
    def num_dofs(self) -> int:
        """Number of degrees of freedom of the corrector space (before constraints)."""
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        self.solver.destroy()
        self._b.destroy()
        if self._basis is not None:
            for A in [self._basis["D"], *self._basis["A"]]:
                A.destroy()


def _local_flux_expressions(problem: ConductivityCell) -> list:
    """UFL expressions of the local flux ``-K (e_j + grad chi_j)`` of every load case."""
    d = problem.cell.dim
    K = problem.conductivity
    return [
        -K * (ufl.as_vector(np.eye(d)[j]) + ufl.grad(chi))
        for j, chi in enumerate(problem.correctors)
    ]
