"""The periodic conductivity cell problem: effective conductivity tensor K*.

For each unit macro gradient ``e_j`` the periodic corrector ``chi_j`` solves

    div( K (e_j + grad chi_j) ) = 0   in the cell Y,   chi_j periodic,

and the effective tensor is the energy average::

    K*_ij = 1/|Y| int_Y (e_i + grad chi_i) . K (e_j + grad chi_j) dx,

which is symmetric by construction. All ``d`` load cases share one
factorisation. Sign convention: a macro temperature gradient ``G`` gives the
macro heat flux ``q = -K* G``; the local flux of load case ``j`` is
``q_j = -K (e_j + grad chi_j)``. K* is in the units of the phase conductivities.
"""

from __future__ import annotations

from collections.abc import Mapping

import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import as_conductivity
from .conditions import Periodic
from .skeleton import LinearCellProblem, PhaseField

__all__ = ["ConductivityCell", "CONDUCTIVITY_AMG_OPTIONS"]

#: Default solver of 3D cells of degree >= 2: conjugate gradients preconditioned by PETSc's
#: algebraic multigrid GAMG, warm-started, to a relative (unpreconditioned) residual of
#: 1e-9, under the usual residual check (:data:`~hmm_fem.cells.solver.RESIDUAL_TOLERANCE`).
#: The direct 3D P2 factorisation is slow here (dense separators on the environment's
#: reference BLAS: measured 30 s warm for the default cube, 5.3e4 dofs, against 2-4 s).
#: K* is second order in the solution error: it agrees with the direct solve to 5e-11
#: (measured on a small cube, see tests/test_cells_3d.py). P1 cells keep the direct
#: default (cheap factor).
CONDUCTIVITY_AMG_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "cg",
    "ksp_norm_type": "unpreconditioned",
    "ksp_rtol": 1e-9,
    "ksp_atol": 0.0,
    "ksp_max_it": 1000,
    "pc_type": "gamg",
}


class ConductivityCell(LinearCellProblem):
    """Effective conductivity of a periodic unit cell.

    The cell is built once: function space, periodic constraint, compiled forms
    and matrix sparsity. :meth:`effective_tensor` with new phase values only
    reassembles, refactorises and solves the ``d`` load cases (on the skeleton of
    :mod:`hmm_fem.cells.skeleton`). With isotropic phases nothing is assembled at all: the
    constrained matrix and loads are affine in the phase conductivities, combined from
    matrices assembled once.

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
        petsc_options: Linear solver options; default a direct CHOLMOD Cholesky
            factorisation (:data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`), except for 3D
            cells of degree >= 2: :data:`CONDUCTIVITY_AMG_OPTIONS` (CG with GAMG). On the
            default cube mesh P1 overestimates K* by about 0.7 %; ``degree=2`` brings it
            within 0.5 % (see ``benchmarks/cells_3d.py``).

    Attributes:
        conductivity: The phase conductivity as a cell-wise (DG0) tensor field.
        macro_gradient: The macro temperature gradient in the forms.
        correctors: The corrector of every load case after a solve (``corrector_x``, ...).
        seconds: Wall time of the last solve in :meth:`effective_tensor`.
    """

    def __init__(
        self,
        cell: UnitCell,
        conductivities: Mapping,
        degree: int = 1,
        petsc_options: dict | None = None,
    ):
        super().__init__(cell, degree)
        d = cell.dim
        msh = cell.mesh
        self.phases = PhaseField(
            cell,
            (d, d),
            "conductivity",
            lambda v, what: as_conductivity(v, d, what),
            "conductivity",
        )
        self.phases.set(conductivities)
        self.conductivity = K = self.phases.function
        self.macro_gradient = G = fem.Constant(msh, np.zeros(d, dtype=PETSc.ScalarType))
        if petsc_options is None and d == 3 and self.degree >= 2:
            petsc_options = CONDUCTIVITY_AMG_OPTIONS
        self._build(
            fem.functionspace(msh, ("Lagrange", self.degree)),
            Periodic(),
            lambda u, v: ufl.inner(K * ufl.grad(u), ufl.grad(v)) * ufl.dx,
            lambda v: -ufl.inner(K * G, ufl.grad(v)) * ufl.dx,
            load=G,
            unit_loads=np.eye(d),
            labels=[f"load case e_{'xyz'[j]}" for j in range(d)],
            solution_names=[f"corrector_{'xyz'[j]}" for j in range(d)],
            name="conductivity_cell",
            what=f"K* of the '{cell.geometry}' cell",
            petsc_options=petsc_options,
        )
        self.correctors = self.solutions
        self._rhs: np.ndarray | None = None
        self._flux_expressions = None
        self._phase_matrices = None
        self._basis = None
        self._coordinates = None
        self._phase_laplacians = None

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
            self.phases.set(conductivities)
        return self._evaluate()

    def _factorise(self) -> None:
        isotropic = self._isotropic_values()
        self._rhs = None
        if isotropic is None:
            self.solver.factorise()
            return
        # Affine in the phase conductivities: A = D + sum_p k_p A_p, b_j = sum_p k_p b_pj,
        # from matrices assembled once; no assembly on this path.
        basis = self._affine_basis()
        same = PETSc.Mat.Structure.SAME_NONZERO_PATTERN
        basis["D"].copy(self.solver.A, structure=same)
        for k_p, A_p in zip(isotropic, basis["A"]):
            self.solver.A.axpy(k_p, A_p, structure=same)
        self.solver.factorise(assemble=False)
        self._rhs = np.tensordot(isotropic, basis["b"], axes=1)

    def _fill_load(self, k: int) -> None:
        if self._rhs is None:
            super()._fill_load(k)
        else:
            self._b.array[:] = self._rhs[k]

    def _isotropic_values(self) -> np.ndarray | None:
        """The scalar conductivity of every phase, or ``None`` if a phase is anisotropic."""
        K = self.phases.values
        scalars = K[:, 0, 0]
        if np.array_equal(K, scalars[:, None, None] * np.eye(self.cell.dim)):
            return scalars
        return None

    def _affine_basis(self) -> dict:
        """Constrained phase matrices and load vectors, assembled once (isotropic phases).

        ``A[p]``: ``int_{Y_p} grad u . grad v`` with zero on the constrained rows;
        ``D``: one on the constrained (pinned and slave) diagonal entries;
        ``b[p, j]``: ``-int_{Y_p} e_j . grad v`` with the constrained entries zero.
        """
        if self._basis is not None:
            return self._basis
        d = self.cell.dim
        indicator = fem.Function(fem.functionspace(self.cell.mesh, ("DG", 0)))
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        a = fem.form(indicator * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
        L = fem.form(-indicator * ufl.inner(self.macro_gradient, ufl.grad(v)) * ufl.dx)
        template = self.solver.A
        D = template.duplicate()
        indicator.x.array[:] = 0.0
        dolfinx_mpc.assemble_matrix(a, self.mpc, bcs=self.bcs, diagval=1.0, A=D)
        matrices, loads = [], np.zeros((len(self.cell.phases), d, self._b.getLocalSize()))
        b = self._b.duplicate()
        for p in range(len(self.cell.phases)):
            self.phases.indicator(p, indicator)
            A_p = template.duplicate()
            dolfinx_mpc.assemble_matrix(a, self.mpc, bcs=self.bcs, diagval=0.0, A=A_p)
            matrices.append(A_p)
            for j in range(d):
                self.macro_gradient.value[:] = np.eye(d)[j]
                loads[p, j] = self.system.assemble_vector(L, b).array_r
        self.macro_gradient.value[:] = 0.0
        b.destroy()
        self._basis = {"A": matrices, "D": D, "b": loads}
        return self._basis

    # -- sensitivities --------------------------------------------------------------------------
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
        if self._stored is None:
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
        if self._stored is None:
            self.effective_tensor()
        if self._phase_matrices is not None:
            d = self.cell.dim
            full = [sum(m[k][k] for k in range(d)) for m in self._phase_matrices]
        else:
            if self._phase_laplacians is None:
                d = self.cell.dim
                self._phase_laplacians = [
                    per_phase[0] for per_phase in self._unconstrained_phase_matrices([np.eye(d)])
                ]
            full = self._phase_laplacians
        U = self._corrected_coordinates()
        return np.array([U.T @ (F @ U) for F in full]) / self.cell.volume

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
        import scipy.sparse

        d = self.cell.dim
        indicator = fem.Function(fem.functionspace(self.cell.mesh, ("DG", 0)))
        selector = fem.Constant(self.cell.mesh, np.zeros((d, d), dtype=PETSc.ScalarType))
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        form = fem.form(indicator * ufl.inner(selector * ufl.grad(u), ufl.grad(v)) * ufl.dx)
        A = dolfinx.fem.petsc.create_matrix(form)
        matrices = []
        for p in range(len(self.cell.phases)):
            self.phases.indicator(p, indicator)
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

    # -- fields -------------------------------------------------------------------------------
    def local_fluxes(self) -> list[fem.Function]:
        """The local flux of every load case, ``q_j = -K (e_j + grad chi_j)``.

        Returned as discontinuous Lagrange vector fields of degree ``degree - 1``
        (named ``flux_x``, ``flux_y``, ...), computed from the last solve.
        """
        if self._stored is None:
            self.effective_tensor()
        d = self.cell.dim
        if self._flux_expressions is None:
            space = fem.functionspace(self.cell.mesh, ("DG", self.degree - 1, (d,)))
            points = space.element.interpolation_points
            K = self.conductivity
            self._flux_expressions = [
                (
                    fem.Expression(-K * (ufl.as_vector(np.eye(d)[j]) + ufl.grad(chi)), points),
                    fem.Function(space, name=f"flux_{'xyz'[j]}"),
                )
                for j, chi in enumerate(self.correctors)
            ]
        for expr, q in self._flux_expressions:
            q.interpolate(expr)
        return [q for _, q in self._flux_expressions]

    def phase_field(self) -> fem.Function:
        """The phase tag of every cell as a DG0 field named ``phase`` (for viewing)."""
        return self.phases.tags()

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        super().destroy()
        if self._basis is not None:
            for A in [self._basis["D"], *self._basis["A"]]:
                A.destroy()
