"""The linear elasticity cell problem: effective stiffness C* in Voigt notation.

Small strains. For each unit macro strain ``E_k`` (the Voigt basis, engineering
shears: see :mod:`hmm_fem.voigt`) the fluctuation ``w_k`` solves

    div( C (E_k + eps(w_k)) ) = 0   in the cell Y,

with one of three boundary conditions (``bc``):

* ``"periodic"``: ``w_k`` periodic (dolfinx_mpc), one interior node pinned;
* ``"kinematic"``: ``w_k = 0`` on the whole boundary (affine displacement ``E_k x``);
* ``"traction"``: the *minimal kinematic* condition ``int_dY w_k (x) n ds = 0`` and
  ``int_Y w_k dx = 0``, imposed with Lagrange multipliers in real spaces. It is the
  weakest condition that keeps ``<eps(w_k)> = 0``; its solution carries the uniform
  traction ``sigma n = Sigma n`` on the boundary (the static, uniform-traction
  estimate), and the mean and rotation constraints remove the rigid body modes.

The effective stiffness is the energy average

    C*_kl = 1/|Y| int_Y (E_k + eps(w_k)) : C (E_l + eps(w_l)) dx,

symmetric by construction. On one mesh the discrete estimates are ordered as
quadratic forms: Reuss <= traction <= periodic <= kinematic <= Voigt. 2D cells are
plane strain. All ``voigt_size(d)`` load cases share one factorisation; the macro
strain enters the forms as a :class:`dolfinx.fem.Constant`. C* is a Voigt matrix
(order ``xx, yy, zz, yz, xz, xy``; 2D ``xx, yy, xy``) mapping engineering strains to
stresses, in the units of the phase moduli.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

import basix.ufl
import dolfinx.fem.petsc
import dolfinx_mpc
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from petsc4py import PETSc

from ..geometry import UnitCell
from ..materials.phases import VOIGT_LABELS, as_stiffness
from ..voigt import ufl_strain, voigt_size
from .periodic import periodic_constraint
from .solver import (
    DEFAULT_SOLVER_OPTIONS,
    CellSolveError,
    FactorisedSolver,
    check_effective_tensor,
)

__all__ = ["ElasticityCell", "BOUNDARY_CONDITIONS", "TRACTION_SOLVER_OPTIONS"]

#: The cell boundary conditions, weakest to strongest constraint (softest to stiffest C*).
BOUNDARY_CONDITIONS = ("traction", "periodic", "kinematic")

#: Default solver of the ``"traction"`` cell: its Lagrange multipliers make the matrix
#: symmetric indefinite (a saddle point), so Cholesky does not apply; MUMPS LU with
#: pivoting does. The other conditions use :data:`~hmm_fem.cells.DEFAULT_SOLVER_OPTIONS`.
TRACTION_SOLVER_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

_counter = itertools.count()


class _AssembledFactorisedSolver(FactorisedSolver):
    """:class:`FactorisedSolver` for a plain (no multi-point constraint) DOLFINx system.

    ``a`` is a compiled bilinear form or a compiled block form (a list of lists, assembled
    into one monolithic matrix). Solving, residual checks and clean-up are inherited.
    """

    def __init__(self, a, bcs, name: str, petsc_options: dict):
        self.a = a
        self.mpc = None
        self.bcs = bcs
        self.name = name
        self.A = dolfinx.fem.petsc.create_matrix(a)
        self._assemble()
        self.prefix = f"hmm_{name}_{next(_counter)}_"
        self.ksp = PETSc.KSP().create(MPI.COMM_SELF)
        self.ksp.setOptionsPrefix(self.prefix)
        self.A.setOptionsPrefix(self.prefix + "A_")
        opts = PETSc.Options()
        opts.prefixPush(self.prefix)
        for key, value in petsc_options.items():
            opts[key] = value
        opts.prefixPop()
        self.ksp.setFromOptions()
        for key in petsc_options:
            opts.delValue(self.prefix + key)
        self.ksp.setOperators(self.A)
        self._residual = self.A.createVecLeft()
        self._factorised = False

    def _assemble(self) -> None:
        self.A.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(self.A, self.a, bcs=self.bcs)
        self.A.assemble()

    def factorise(self, assemble: bool = True) -> None:
        """Factorise the matrix, assembled first for the current coefficients."""
        if assemble:
            self._assemble()
        self.ksp.setOperators(self.A)
        try:
            self.ksp.setUp()
        except PETSc.Error as err:
            raise CellSolveError(
                f"{self.name}: factorisation failed (PETSc error {err.ierr}); the cell matrix is "
                "singular or not finite. Check that every phase has a positive definite, finite "
                "stiffness."
            ) from err
        self._factorised = True


class ElasticityCell:
    """Effective linear elastic stiffness of a unit cell (small strain; 2D plane strain).

    The cell is built once: function spaces, constraints, compiled forms and matrix
    sparsity. :meth:`effective_tensor` with new phase values only reassembles,
    refactorises and solves the ``voigt_size(d)`` load cases (3 in 2D, 6 in 3D).

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
            ``"traction"`` (minimal kinematic condition; see the module docstring).
        petsc_options: Linear solver options; default CHOLMOD Cholesky for periodic and
            kinematic, MUMPS LU for traction (symmetric indefinite).

    Attributes:
        convention: ``"voigt"``: the notation of :meth:`effective_tensor`.
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
        bc: str = "periodic",
        petsc_options: dict | None = None,
    ):
        if int(degree) < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        if bc not in BOUNDARY_CONDITIONS:
            raise ValueError(
                f"unknown boundary condition bc={bc!r}; use one of {', '.join(BOUNDARY_CONDITIONS)}"
            )
        self.cell = cell
        self.degree = int(degree)
        self.bc = bc
        d = cell.dim
        n = voigt_size(d)
        msh = cell.mesh
        self.V = fem.functionspace(msh, ("Lagrange", self.degree, (d,)))

        # Phase stiffness as a cell-wise constant Voigt matrix field.
        self._Q = fem.functionspace(msh, ("DG", 0, (n, n)))
        self.stiffness = fem.Function(self._Q, name="stiffness")
        imap = msh.topology.index_map(d)
        num_cells = imap.size_local + imap.num_ghosts
        dofs = self._Q.dofmap.list[:num_cells, 0]
        phase_of_dof = np.empty(num_cells, dtype=np.int32)
        phase_of_dof[dofs] = cell.phase_index_of_cells(num_cells)
        self._phase_index_of_dof = phase_of_dof
        volumes = cell.phase_volumes()
        self._phase_volumes = np.array([volumes[name] for name in cell.phases])
        self._set_phases(phases)

        C = self.stiffness
        self.macro_strain = fem.Constant(msh, np.zeros(n, dtype=PETSc.ScalarType))
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        a_uu = ufl.inner(C * ufl_strain(u), ufl_strain(v)) * ufl.dx
        L_u = -ufl.inner(C * self.macro_strain, ufl_strain(v)) * ufl.dx
        name = f"elasticity_cell_{bc}"
        self.mpc = None
        self._multipliers: list[fem.Function] = []
        if bc == "periodic":
            self.mpc, self.bcs = periodic_constraint(self.V, cell.lengths)
            self._a = fem.form(a_uu)
            self._L = fem.form(L_u)
            self._b = dolfinx_mpc.assemble_vector(self._L, self.mpc)
            self._slaves = np.asarray(self.mpc.slaves, dtype=np.int64)
            self.solver = FactorisedSolver(self._a, self.mpc, self.bcs, name, petsc_options)
        elif bc == "kinematic":
            tdim = msh.topology.dim
            msh.topology.create_connectivity(tdim - 1, tdim)
            facets = dmesh.exterior_facet_indices(msh.topology)
            boundary = fem.locate_dofs_topological(self.V, tdim - 1, facets)
            self.bcs = [fem.dirichletbc(np.zeros(d, dtype=PETSc.ScalarType), boundary, self.V)]
            self._a = fem.form(a_uu)
            self._L = fem.form(L_u)
            self._b = dolfinx.fem.petsc.create_vector(self.V)
            options = DEFAULT_SOLVER_OPTIONS if petsc_options is None else petsc_options
            self.solver = _AssembledFactorisedSolver(self._a, self.bcs, name, dict(options))
        else:  # traction: minimal kinematic condition with Lagrange multipliers
            self.bcs = []
            dtype = msh.geometry.x.dtype
            R_n = fem.functionspace(
                msh, basix.ufl.real_element(msh.basix_cell(), value_shape=(d, d), dtype=dtype)
            )
            R_m = fem.functionspace(
                msh, basix.ufl.real_element(msh.basix_cell(), value_shape=(d,), dtype=dtype)
            )
            W = ufl.MixedFunctionSpace(self.V, R_n, R_m)
            u, lam, tau = ufl.TrialFunctions(W)
            v, mu, eta = ufl.TestFunctions(W)
            normal = ufl.FacetNormal(msh)
            a = (
                ufl.inner(C * ufl_strain(u), ufl_strain(v)) * ufl.dx
                + ufl.inner(lam, ufl.outer(v, normal)) * ufl.ds
                + ufl.inner(mu, ufl.outer(u, normal)) * ufl.ds
                + ufl.inner(tau, v) * ufl.dx
                + ufl.inner(eta, u) * ufl.dx
            )
            L = (
                -ufl.inner(C * self.macro_strain, ufl_strain(v)) * ufl.dx
                + ufl.ZeroBaseForm((mu,))
                + ufl.ZeroBaseForm((eta,))
            )
            self._a = fem.form(ufl.extract_blocks(a))
            self._L = fem.form(ufl.extract_blocks(L))
            self._b = dolfinx.fem.petsc.create_vector([self.V, R_n, R_m])
            self._x = self._b.duplicate()
            self._multipliers = [fem.Function(R_n), fem.Function(R_m)]
            options = TRACTION_SOLVER_OPTIONS if petsc_options is None else petsc_options
            self.solver = _AssembledFactorisedSolver(self._a, self.bcs, name, dict(options))
        space = self.V if self.mpc is None else self.mpc.function_space
        self.fluctuations = [
            fem.Function(space, name=f"fluctuation_{label}") for label in VOIGT_LABELS[d]
        ]
        self._tensor: np.ndarray | None = None
        self._solved_for: np.ndarray | None = None
        self.seconds = 0.0

    # -- phases ---------------------------------------------------------------------------
    def _phase_stiffnesses(self, phases: Mapping) -> np.ndarray:
        """The ``(num_phases, n, n)`` array of phase Voigt stiffnesses, validated."""
        d = self.cell.dim
        return np.array(
            [
                as_stiffness(value, d, f"stiffness of phase '{name}' (tag {tag})")
                for name, tag, value in self.cell.phase_values(phases, "stiffness")
            ]
        )

    def _set_phases(self, phases: Mapping) -> None:
        self._phase_C = self._phase_stiffnesses(phases)
        n = voigt_size(self.cell.dim)
        values = self.stiffness.x.array.reshape(-1, n * n)
        values[:] = self._phase_C.reshape(-1, n * n)[self._phase_index_of_dof]
        self.stiffness.x.scatter_forward()

    @property
    def phase_stiffnesses(self) -> dict[str, np.ndarray]:
        """The current Voigt stiffness of every phase, by name."""
        return {name: C.copy() for name, C in zip(self.cell.phases, self._phase_C)}

    # -- solve ------------------------------------------------------------------------------
    def _assemble_load(self) -> None:
        """Assemble the right-hand side of the current macro strain into ``self._b``."""
        if self.bc == "periodic":
            dolfinx_mpc.assemble_vector(self._L, self.mpc, self._b)
            dolfinx.fem.petsc.set_bc(self._b, self.bcs)
            return
        with self._b.localForm() as b_local:
            b_local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self._b, self._L)
        if self.bcs:
            # Homogeneous conditions: no lifting; the constrained rows read x = 0.
            dolfinx.fem.petsc.set_bc(self._b, self.bcs)

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
            self._set_phases(phases)
        if self._tensor is not None and np.array_equal(self._solved_for, self._phase_C):
            return self._tensor.copy()
        start = time.perf_counter()
        d = self.cell.dim
        n = voigt_size(d)
        self.solver.factorise()
        loads = np.empty((n, self._b.getLocalSize()))
        solutions = np.empty_like(loads)
        for k, w in enumerate(self.fluctuations):
            self.macro_strain.value[:] = np.eye(n)[k]
            self._assemble_load()
            x = self._x if self.bc == "traction" else w.x.petsc_vec
            self.solver.solve(self._b, x, label=f" (load case {VOIGT_LABELS[d][k]})")
            loads[k] = self._b.array_r
            solutions[k] = x.array_r
            if self.bc == "periodic":
                self.mpc.backsubstitution(w)
            elif self.bc == "traction":
                dolfinx.fem.petsc.assign(x, [w, *self._multipliers])
        self.macro_strain.value[:] = 0.0
        # C*_kl |Y| = int E_k.C E_l dx - b_k . x_l (Galerkin orthogonality): the energy form
        # at the discrete solution. Periodic: on the reduced (master) dofs. Traction: the
        # multiplier entries of the loads are zero.
        if self.bc == "periodic":
            loads[:, self._slaves] = 0.0
        average = np.einsum("p,pij->ij", self._phase_volumes, self._phase_C)
        tensor = (average - loads @ solutions.T) / self.cell.volume
        tensor = 0.5 * (tensor + tensor.T)
        for w in self.fluctuations:
            if not np.all(np.isfinite(w.x.array)):
                raise CellSolveError(f"{w.name} of the '{self.cell.geometry}' cell is not finite")
        check_effective_tensor(tensor, f"C* ({self.bc}) of the '{self.cell.geometry}' cell")
        self._tensor = tensor
        self._solved_for = self._phase_C.copy()
        self.seconds = time.perf_counter() - start
        return tensor.copy()

    @property
    def num_dofs(self) -> int:
        """Number of degrees of freedom of the fluctuation space (before constraints)."""
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs

    def destroy(self) -> None:
        """Free the PETSc objects of this cell."""
        self.solver.destroy()
        self._b.destroy()
        if self.bc == "traction":
            self._x.destroy()
