"""The factorised linear solver shared by all cell problems, and its checks.

A cell matrix is factorised once per micro state (a direct Cholesky by default) and
every unit load case is another right-hand side. Every solve is checked (relative
residual, finiteness), and so is every effective tensor (:func:`check_effective_tensor`).
"""

from __future__ import annotations

import itertools

import dolfinx_mpc
import numpy as np
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from ..materials.validation import require_spd

__all__ = [
    "CellSolveError",
    "DEFAULT_SOLVER_OPTIONS",
    "RESIDUAL_TOLERANCE",
    "FactorisedSolver",
    "check_effective_tensor",
]

#: The default linear solver of every cell problem: a direct sparse Cholesky
#: factorisation (CHOLMOD; the constrained cell matrices are symmetric positive
#: definite). Measured on 2D cells of 7e3 and 1e5 dofs it factorises 1.1x and 2.2x faster
#: than MUMPS LU. An iterative solver at loose tolerance silently biases effective tensors
#: by percents; if you pass iterative options, the residual check below still applies.
DEFAULT_SOLVER_OPTIONS: dict[str, str | float | int] = {
    "ksp_type": "preonly",
    "pc_type": "cholesky",
    "pc_factor_mat_solver_type": "cholmod",
}

#: A solve whose relative residual exceeds this is reported as failed.
RESIDUAL_TOLERANCE = 1e-8

_counter = itertools.count()


class CellSolveError(RuntimeError):
    """A micro (cell) solve failed: singular matrix, divergence, or non-finite values."""


def check_effective_tensor(tensor: np.ndarray, what: str) -> np.ndarray:
    """Return ``tensor`` if it is symmetric positive definite, else raise :class:`CellSolveError`.

    The rule is :func:`hmm_fem.materials.validation.spd_defect`, the one of the phase inputs.
    """
    return require_spd(tensor, what, error=CellSolveError)


class FactorisedSolver:
    """A constrained linear system ``A x = b`` factorised once, solved for many ``b``.

    The matrix keeps its sparsity pattern for the life of the solver: re-assembly
    after coefficient changes triggers only a numeric refactorisation.

    Args:
        a: Compiled bilinear form.
        mpc: Finalised multi-point constraint of the unknown.
        bcs: Dirichlet conditions (the pin).
        name: Short name used in the PETSc options prefix and in error messages.
        petsc_options: Solver options; defaults to :data:`DEFAULT_SOLVER_OPTIONS`.
    """

    def __init__(self, a: fem.Form, mpc, bcs, name: str, petsc_options: dict | None = None):
        self.a = a
        self.mpc = mpc
        self.bcs = bcs
        self.name = name
        self.A = dolfinx_mpc.assemble_matrix(a, mpc, bcs=bcs)
        self.prefix = f"hmm_{name}_{next(_counter)}_"
        self.ksp = PETSc.KSP().create(MPI.COMM_SELF)
        self.ksp.setOptionsPrefix(self.prefix)
        self.A.setOptionsPrefix(self.prefix + "A_")
        options = dict(DEFAULT_SOLVER_OPTIONS if petsc_options is None else petsc_options)
        opts = PETSc.Options()
        opts.prefixPush(self.prefix)
        for key, value in options.items():
            opts[key] = value
        opts.prefixPop()
        self.ksp.setFromOptions()
        for key in options:
            opts.delValue(self.prefix + key)
        self.ksp.setOperators(self.A)
        self._residual = self.A.createVecLeft()
        self._factorised = False

    def factorise(self, assemble: bool = True) -> None:
        """Factorise the matrix, assembled first for the current coefficients.

        Args:
            assemble: ``False`` when the caller has already written the values of ``A``
                (same sparsity), e.g. as a combination of precomputed matrices.
        """
        if assemble:
            self.A.zeroEntries()
            dolfinx_mpc.assemble_matrix(self.a, self.mpc, bcs=self.bcs, A=self.A)
        self.ksp.setOperators(self.A)
        try:
            self.ksp.setUp()
        except PETSc.Error as err:  # a zero pivot: singular or non-finite matrix
            raise CellSolveError(
                f"{self.name}: factorisation failed (PETSc error {err.ierr}); the cell matrix is "
                "singular or not finite. Check that every phase has a positive, finite property."
            ) from err
        self._factorised = True

    def solve(self, b: PETSc.Vec, x: PETSc.Vec, label: str = "") -> None:
        """Solve ``A x = b`` with the current factorisation and check the result.

        Raises:
            CellSolveError: if the solver diverged, the relative residual exceeds
                ``RESIDUAL_TOLERANCE`` or the solution is not finite.
        """
        if not self._factorised:
            self.factorise()
        self.ksp.solve(b, x)
        reason = self.ksp.getConvergedReason()
        self.A.mult(x, self._residual)
        self._residual.axpy(-1.0, b)
        bnorm = b.norm()
        rel = self._residual.norm() / bnorm if bnorm > 0 else self._residual.norm()
        if reason < 0 or not np.isfinite(rel) or rel > RESIDUAL_TOLERANCE:
            raise CellSolveError(
                f"{self.name}{label}: linear solve failed (KSP reason {reason}, relative residual "
                f"{rel:.3e} > {RESIDUAL_TOLERANCE:.0e}). Use the default direct solver, or tighten "
                "the iterative tolerances."
            )

    def destroy(self) -> None:
        """Free the PETSc objects."""
        self.ksp.destroy()
        self.A.destroy()
        self._residual.destroy()
