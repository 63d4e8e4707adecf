"""A DOLFINx SNES problem whose forms contain micro operators."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import dolfinx.fem.petsc
import numpy as np
import ufl
from dolfinx import fem
from dolfinx_external_operator import replace_external_operators
from petsc4py import PETSc

from .dispatch import MicroStatistics
from .operator import MicroCoupling, coupling_of

__all__ = ["NonlinearProblem", "SolveReport", "MacroSolveError", "DEFAULT_SNES_OPTIONS"]

#: Newton with full steps and a direct linear solver: with the consistent tangent from
#: the micro models the convergence is quadratic.
DEFAULT_SNES_OPTIONS: dict[str, str | float | int] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "basic",
    "snes_rtol": 1e-10,
    "snes_atol": 1e-12,
    "snes_stol": 0.0,
    "snes_max_it": 25,
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

_counter = itertools.count()


class MacroSolveError(RuntimeError):
    """The macro Newton iteration did not converge."""


@dataclass
class SolveReport:
    """What one macro solve did.

    Attributes:
        converged_reason: The SNES converged reason (> 0: converged).
        iterations: Newton iterations.
        residual_norms: Residual norm at every Newton iterate (from the SNES monitor).
        seconds: Wall time of the solve.
        micro_seconds: Of which in micro solves on this rank.
        statistics: Micro statistics of this solve summed over ranks.
    """

    converged_reason: int
    iterations: int
    residual_norms: list[float]
    seconds: float
    micro_seconds: float
    statistics: MicroStatistics = field(default_factory=MicroStatistics)

    @property
    def macro_seconds(self) -> float:
        """Wall time outside the micro solves."""
        return self.seconds - self.micro_seconds

    def __str__(self):
        norms = ", ".join(f"{r:.2e}" for r in self.residual_norms)
        return (
            f"{self.iterations} Newton iterations (residuals {norms}); {self.statistics}; "
            f"{self.seconds:.3f} s total, {self.micro_seconds:.3f} s micro, "
            f"{self.macro_seconds:.3f} s macro"
        )


def _with_quadrature_degree(form: ufl.Form, degree: int) -> ufl.Form:
    """``form`` with every integral at quadrature degree ``degree`` (clear error on conflict)."""
    integrals = []
    for integral in form.integrals():
        metadata = dict(integral.metadata())
        given = metadata.get("quadrature_degree")
        if given is not None and int(given) != degree:
            raise ValueError(
                f"an integral asks for quadrature degree {given} but the micro operator is "
                f"evaluated at degree {degree}; drop the metadata or use the same degree"
            )
        metadata["quadrature_degree"] = degree
        integrals.append(integral.reconstruct(metadata=metadata))
    return ufl.Form(integrals)


class NonlinearProblem:
    """Newton (PETSc SNES) on a macro residual containing micro operators.

    The Jacobian defaults to ``ufl.derivative(F, u)``; the external operators in both
    are replaced by their coefficients, and before every residual assembly the micro
    models are evaluated once at the owned quadrature points, filling the operators
    and their tangents together.

    Args:
        F: Residual form (UFL) containing operators from :func:`micro_operator`.
        u: The unknown.
        bcs: Dirichlet conditions.
        J: Jacobian form; default ``ufl.derivative(F, u)``.
        petsc_options: SNES/KSP options, added to :data:`DEFAULT_SNES_OPTIONS`.
        petsc_options_prefix: Options prefix (default: a unique ``hmm_macro_<n>_``).
    """

    def __init__(
        self,
        F,
        u: fem.Function,
        bcs=None,
        J=None,
        petsc_options: dict | None = None,
        petsc_options_prefix: str | None = None,
    ):
        V = u.function_space
        if J is None:
            J = ufl.derivative(F, u, ufl.TrialFunction(V))
        F_replaced, self.F_operators = replace_external_operators(F)
        J_replaced, self.J_operators = replace_external_operators(J)
        couplings: list[MicroCoupling] = []
        for op in self.F_operators + self.J_operators:
            c = coupling_of(op)
            if c is None:
                raise TypeError(f"external operator {op} was not made by hmm_fem.micro_operator")
            if c not in couplings:
                couplings.append(c)
        self.couplings = couplings
        degrees = {c.quadrature_degree for c in couplings}
        if len(degrees) > 1:
            raise ValueError(f"micro operators with different quadrature degrees {sorted(degrees)}")
        if degrees:
            degree = degrees.pop()
            F_replaced = _with_quadrature_degree(F_replaced, degree)
            J_replaced = _with_quadrature_degree(J_replaced, degree)
        options = {**DEFAULT_SNES_OPTIONS, **(petsc_options or {})}
        prefix = petsc_options_prefix or f"hmm_macro_{next(_counter)}_"
        self.u = u
        self.problem = dolfinx.fem.petsc.NonlinearProblem(
            F_replaced,
            u,
            bcs=bcs or [],
            J=J_replaced,
            petsc_options_prefix=prefix,
            petsc_options=options,
        )
        snes = self.problem.solver
        self._evaluated_at: bytes | None = None
        self._pending_error: Exception | None = None
        residual_ctx = {
            "u": u,
            "residual": self.problem.F,
            "jacobian": self.problem.J,
            "bcs": bcs or [],
        }
        jacobian_ctx = {
            "u": u,
            "jacobian": self.problem.J,
            "preconditioner": self.problem.preconditioner,
            "bcs": bcs or [],
        }

        # An exception inside a SNES callback would reach the caller as an opaque PETSc
        # error: keep it, make SNES stop (NaN residual), and raise it after the solve.
        def residual(snes_, x, b):
            try:
                self._update_micro(x)
            except Exception as exc:  # noqa: BLE001 - re-raised by solve()
                self._pending_error = exc
                b.set(np.nan)
                return
            dolfinx.fem.petsc.assemble_residual(snes_, x, b, **residual_ctx)

        def jacobian(snes_, x, A, P):
            if self._pending_error is not None:
                return
            try:
                self._update_micro(x)  # no-op when the residual was assembled at this x
            except Exception as exc:  # noqa: BLE001 - re-raised by solve()
                self._pending_error = exc
                return
            dolfinx.fem.petsc.assemble_jacobian(snes_, x, A, P, **jacobian_ctx)

        self._residual_callback, self._jacobian_callback = residual, jacobian
        snes.setFunction(residual, self.problem.b)
        snes.setJacobian(jacobian, self.problem.A, self.problem.P_mat)
        self.residual_norms: list[float] = []
        snes.setMonitor(lambda _snes, _it, norm: self.residual_norms.append(float(norm)))

    @property
    def solver(self) -> PETSc.SNES:
        """The PETSc SNES."""
        return self.problem.solver

    def _update_micro(self, x: PETSc.Vec) -> None:
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with x.localForm() as local:
            signature = local.array_r.tobytes()
        if signature == self._evaluated_at:
            return
        dolfinx.fem.petsc.assign(x, self.u)
        for coupling in self.couplings:
            coupling.update(self.F_operators + self.J_operators)
        self._evaluated_at = signature

    def solve(self) -> SolveReport:
        """Run Newton from the current ``u``.

        Returns:
            A :class:`SolveReport`.

        Raises:
            MacroSolveError: if Newton did not converge (the residual history is in the
                message); ``u`` then holds the last iterate.
            hmm_fem.micro.MicroSolveError: if a micro solve failed (names the point).
        """
        before = [
            (
                c.dispatcher.statistics.micro_seconds,
                c.dispatcher.statistics.micro_solves,
                c.dispatcher.statistics.point_evaluations,
                c.dispatcher.statistics.cache_hits,
            )
            for c in self.couplings
        ]
        self.residual_norms = []
        self._evaluated_at = None
        self._pending_error = None
        start = time.perf_counter()
        try:
            self.problem.solve()
        except PETSc.Error:
            if self._pending_error is None:
                raise
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            self._evaluated_at = None
            raise error
        seconds = time.perf_counter() - start
        reason = self.solver.getConvergedReason()
        iterations = self.solver.getIterationNumber()
        comm = self.u.function_space.mesh.comm
        local = MicroStatistics()
        for c, (sec, solves, points, hits) in zip(self.couplings, before):
            s = c.dispatcher.statistics
            local.micro_seconds += s.micro_seconds - sec
            local.micro_solves += s.micro_solves - solves
            local.point_evaluations += s.point_evaluations - points
            local.cache_hits += s.cache_hits - hits
            local.calls = s.calls
        report = SolveReport(
            reason,
            iterations,
            list(self.residual_norms),
            seconds,
            local.micro_seconds,
            local.total(comm),
        )
        if reason <= 0:
            norms = ", ".join(f"{r:.3e}" for r in self.residual_norms)
            raise MacroSolveError(
                f"macro Newton did not converge (SNES reason {reason}) after {iterations} "
                f"iterations; residual norms: {norms}. Try load stepping, a smaller time step "
                "or a better initial guess."
            )
        return report

    def residual_vector(self) -> PETSc.Vec:
        """Assemble the residual at the current ``u`` (micro models evaluated); a new Vec."""
        x = self.u.x.petsc_vec.copy()
        b = self.problem.b.duplicate()
        self._residual_callback(self.solver, x, b)
        x.destroy()
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        return b

    def jacobian_matrix(self) -> PETSc.Mat:
        """Assemble the Jacobian at the current ``u`` (micro models evaluated); a new Mat."""
        x = self.u.x.petsc_vec.copy()
        A = self.problem.A.duplicate()
        self._jacobian_callback(self.solver, x, A, None)
        x.destroy()
        return A

    @staticmethod
    def convergence_rates(norms: list[float], floor: float = 1e-9) -> np.ndarray:
        """Estimated orders ``log(r_{k+1}/r_k) / log(r_k/r_{k-1})`` (2 = quadratic).

        Residuals below ``floor`` times the first one are dropped: there round-off (of the
        macro and micro solves) sets the residual, not the Newton iteration.
        """
        r = np.asarray(norms, dtype=np.float64)
        r = r[r > floor * r[0]] if len(r) else r
        if len(r) < 3:
            return np.array([])
        return np.log(r[2:] / r[1:-1]) / np.log(r[1:-1] / r[:-2])
