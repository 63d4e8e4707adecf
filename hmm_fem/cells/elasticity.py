"""The linear elasticity cell problem: effective stiffness C* in Voigt notation.

Small strains. For each unit macro strain ``E_k`` (the Voigt basis, engineering
shears: see :mod:`hmm_fem.voigt`) the fluctuation ``w_k`` solves

    div( C (E_k + eps(w_k)) ) = 0   in the cell Y,

with one of three boundary conditions (``bc``, objects of :mod:`hmm_fem.cells.conditions`):

* ``"periodic"``: ``w_k`` periodic (dolfinx_mpc), one interior node pinned;
* ``"kinematic"``: ``w_k = 0`` on the whole boundary (affine displacement ``E_k x``);
* ``"traction"``: the *minimal kinematic* condition ``int_dY w_k (x) n ds = 0`` and
  ``int_Y w_k dx = 0``, imposed with Lagrange multipliers in real spaces. It is the
  weakest condition that keeps ``<eps(w_k)> = 0``; its solution carries the uniform
  traction ``sigma n = Sigma n`` on the boundary (the static, uniform-traction
  estimate), and the mean and rotation constraints remove the rigid body modes.

The effective stiffness is the energy average::

    C*_kl = 1/|Y| int_Y (E_k + eps(w_k)) : C (E_l + eps(w_l)) dx,

symmetric by construction. On one mesh the discrete estimates are ordered as
quadratic forms: Reuss <= traction <= periodic <= kinematic <= Voigt. 2D cells are
plane strain. All ``voigt_size(d)`` load cases share one factorisation; the macro
strain enters the forms as a :class:`dolfinx.fem.Constant`. C* is a Voigt matrix
(order ``xx, yy, zz, yz, xz, xy``; 2D ``xx, yy, xy``) mapping engineering strains to
stresses, in the units of the phase moduli.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import VOIGT_LABELS, as_stiffness
from ..voigt import ufl_strain, voigt_size
from .conditions import BOUNDARY_CONDITIONS, CellCondition, as_condition
from .skeleton import LinearCellProblem, PhaseField
from .solver import LU_SOLVER_OPTIONS

__all__ = [
    "AMG_SOLVER_OPTIONS",
    "AMG_RESIDUAL_TOLERANCE",
    "ElasticityCell",
    "BOUNDARY_CONDITIONS",
    "TRACTION_SOLVER_OPTIONS",
    "rigid_body_modes",
]

#: Default solver of the ``"traction"`` cell: its Lagrange multipliers make the matrix
#: symmetric indefinite (a saddle point), so Cholesky does not apply; MUMPS LU with
#: pivoting does. The other conditions use :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`.
TRACTION_SOLVER_OPTIONS = LU_SOLVER_OPTIONS

#: Default solver of the 3D periodic and kinematic cells of degree >= 2 (P1 keeps the
#: direct default: its factor is cheap and exact): conjugate gradients preconditioned
#: by PETSc's smoothed-aggregation multigrid (GAMG, unsmoothed aggregates, 3 Chebyshev-Jacobi
#: smoothing steps) with the rigid body modes as near-nullspace, warm-started from the last
#: solution of each load case, to a relative (unpreconditioned) residual of 1e-6. The 3D P2
#: direct factorisation is slow: its dense separators run on the reference BLAS of the
#: environment (measured 24 s for 3.1e4 dofs with CHOLMOD). The energy average makes C*
#: second order in the solution error: against the direct solve C* agrees to about 5e-8
#: (relative, largest entry; measured 4.8e-8 on the cube at 3.1e4 dofs, P2).
AMG_SOLVER_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "cg",
    "ksp_norm_type": "unpreconditioned",
    "ksp_rtol": 1e-6,
    "ksp_atol": 0.0,
    "ksp_max_it": 1000,
    "pc_type": "gamg",
    "pc_gamg_threshold": 0.05,
    "pc_gamg_agg_nsmooths": 0,
    "mg_levels_ksp_max_it": 3,
}

#: The residual check of :data:`AMG_SOLVER_OPTIONS` (10x ``ksp_rtol``: the recursively
#: updated CG residual drifts from the true one); other solvers keep
#: :data:`~hmm_fem.cells.solver.RESIDUAL_TOLERANCE`.
AMG_RESIDUAL_TOLERANCE = 1e-5


def rigid_body_modes(V: fem.FunctionSpace) -> list[np.ndarray]:
    """The rigid body modes of a vector Lagrange space as arrays of its local dofs.

    ``d`` translations and ``d (d - 1) / 2`` infinitesimal rotations about the centre of the
    dof coordinates: the near-nullspace of elasticity that algebraic multigrid needs.
    """
    bs = V.dofmap.index_map_bs
    x = V.tabulate_dof_coordinates()[:, :bs]
    x = x - x.mean(axis=0)
    n = x.shape[0]
    modes = []
    for i in range(bs):
        mode = np.zeros((n, bs))
        mode[:, i] = 1.0
        modes.append(mode.ravel())
    for i, j in [(0, 1), (0, 2), (1, 2)][: bs * (bs - 1) // 2]:
        mode = np.zeros((n, bs))
        mode[:, i], mode[:, j] = -x[:, j], x[:, i]
        modes.append(mode.ravel())
    return modes


class ElasticityCell(LinearCellProblem):
    """Effective linear elastic stiffness of a unit cell (small strain; 2D plane strain).

    The cell is built once: function spaces, constraints, compiled forms and matrix
    sparsity. :meth:`effective_tensor` with new phase values only reassembles,
    refactorises and solves the ``voigt_size(d)`` load cases (3 in 2D, 6 in 3D), on the
    skeleton of :mod:`hmm_fem.cells.skeleton`.

    Conventions are those of :mod:`hmm_fem.voigt`: C* is a Voigt matrix, order
    ``xx, yy, zz, yz, xz, xy`` (2D ``xx, yy, xy``), mapping engineering strains
    (``gamma_ij = 2 e_ij``) to stresses, in the units of the phase moduli.

    Example:
        >>> cell = hmm_fem.cells.square(0.4)
        >>> problem = ElasticityCell(cell, {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)})
        >>> problem.effective_tensor()       # 3x3 Voigt matrix (plane strain)

    Args:
        cell: The unit cell (mesh with phase tags).
        phases: Stiffness of every phase, by phase name or tag: ``(E, nu)`` (isotropic;
            ``E > 0``, ``-1 < nu < 0.5``; plane strain in 2D) or a symmetric positive
            definite Voigt stiffness matrix (``n x n``, ``n = voigt_size(d)``; in 2D the
            ``xx, yy, xy`` block, i.e. the plane-strain stiffness).
        degree: Polynomial degree of the vector Lagrange fluctuation space.
        bc: ``"periodic"``, ``"kinematic"`` (zero fluctuation on the boundary) or
            ``"traction"`` (minimal kinematic condition; see the module docstring), or a
            condition object (:class:`~hmm_fem.cells.conditions.Periodic`, ...).
        petsc_options: Linear solver options; default in 2D CHOLMOD Cholesky for periodic
            and kinematic, in 3D at degree >= 2 :data:`AMG_SOLVER_OPTIONS` (CG with GAMG; C*
            within about 5e-8 of the direct solve), and MUMPS LU for traction (symmetric
            indefinite). Pass :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS` for the direct
            solve in 3D. With ``pc_type`` ``gamg`` the rigid body modes are given to the
            matrix as its near-nullspace.

    Attributes:
        convention: ``"voigt"``: the notation of :meth:`effective_tensor`.
        bc: The name of the boundary condition; ``condition`` is its object.
        fluctuations: The fluctuation of every load case after a solve (vector Lagrange
            functions named ``fluctuation_xx``, ...).
        stiffness: The phase stiffness as a cell-wise (DG0) Voigt matrix field.
        macro_strain: The macro strain (Voigt, engineering shears) in the forms.
        seconds: Wall time of the last solve in :meth:`effective_tensor`.
    """

    convention = "voigt"

    def __init__(
        self,
        cell: UnitCell,
        phases: Mapping,
        degree: int = 1,
        bc: str | CellCondition = "periodic",
        petsc_options: dict | None = None,
    ):
        super().__init__(cell, degree)
        condition = as_condition(bc)
        d = cell.dim
        n = voigt_size(d)
        msh = cell.mesh
        self.phases = PhaseField(
            cell, (n, n), "stiffness", lambda v, what: as_stiffness(v, d, what), "stiffness"
        )
        self.phases.set(phases)
        self.stiffness = C = self.phases.function
        self.macro_strain = E = fem.Constant(msh, np.zeros(n, dtype=PETSc.ScalarType))
        self.bc = condition.name
        amg = (
            petsc_options is None
            and d == 3
            and self.degree >= 2
            and self.bc in ("periodic", "kinematic")
        )
        if amg:
            petsc_options = AMG_SOLVER_OPTIONS
        self._build(
            fem.functionspace(msh, ("Lagrange", self.degree, (d,))),
            condition,
            lambda u, v: ufl.inner(C * ufl_strain(u), ufl_strain(v)) * ufl.dx,
            lambda v: -ufl.inner(C * E, ufl_strain(v)) * ufl.dx,
            load=E,
            unit_loads=np.eye(n),
            labels=[f"load case {label}" for label in VOIGT_LABELS[d]],
            solution_names=[f"fluctuation_{label}" for label in VOIGT_LABELS[d]],
            name=f"elasticity_cell_{self.bc}",
            what=f"C* ({self.bc}) of the '{cell.geometry}' cell",
            petsc_options=petsc_options,
        )
        self.fluctuations = self.solutions
        solver = self.system.solver
        if solver.options.options.get("pc_type") == "gamg":
            solver.set_near_nullspace(rigid_body_modes(self.system.space))
        if amg or petsc_options == AMG_SOLVER_OPTIONS:
            # the stated tolerance of these options, also when they are passed explicitly
            solver.residual_tolerance = AMG_RESIDUAL_TOLERANCE

    @property
    def phase_stiffnesses(self) -> dict[str, np.ndarray]:
        """The current Voigt stiffness of every phase, by name."""
        return {name: C.copy() for name, C in zip(self.cell.phases, self.phases.values)}

    def effective_tensor(self, phases: Mapping | None = None) -> np.ndarray:
        """The effective stiffness C* (Voigt ``n x n``, symmetric positive definite).

        Args:
            phases: New phase stiffnesses (same form as in the constructor). If omitted,
                or equal to the last ones, the stored result is returned without solving
                again.

        Returns:
            C* in Voigt notation (engineering shears), in the units of the phase moduli.

        Raises:
            CellSolveError: if a solve fails or C* is not finite, symmetric, positive
                definite.
        """
        if phases is not None:
            self.phases.set(phases)
        return self._evaluate()
