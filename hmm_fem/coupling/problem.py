"""A DOLFINx SNES problem whose forms contain micro operators."""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, field

import dolfinx.fem.petsc
import numpy as np
import ufl
from dolfinx import fem
from dolfinx_external_operator import replace_external_operators
from mpi4py import MPI
from petsc4py import PETSc

from ..solver_options import PrefixedOptions
from .dispatch import MicroStatistics
from .operator import MicroCoupling, coupling_of

__all__ = [
    "NonlinearProblem",
    "SolveReport",
    "MacroSolveError",
    "DEFAULT_SNES_OPTIONS",
    "DEFAULT_NOISE_FACTOR",
]

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

#: A Newton iteration on noisy micro responses stops when the residual norm is below this
#: factor times the residual's noise level (the norm of its standard deviations): the
#: norm of pure noise is about 1 times it, so below 2 times the residual is noise.
DEFAULT_NOISE_FACTOR = 2.0

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
        noise_level: The residual's noise level at the last iterate (the norm of the
            standard deviations of its entries, from the micro responses' standard
            errors); ``0`` for deterministic micro models.
        converged_at_noise: Whether Newton stopped because the residual reached the noise
            level (see :data:`DEFAULT_NOISE_FACTOR`) rather than the SNES tolerances.
        substituted_points: Macro points (over all ranks and micro operators) whose micro
            response at the last evaluation, the one at the solution, was substituted from
            solved neighbours (:class:`~hmm_fem.coupling.FailurePolicy`); the statistics
            count the failures, retries and substitutions of the whole solve.
    """

    converged_reason: int
    iterations: int
    residual_norms: list[float]
    seconds: float
    micro_seconds: float
    statistics: MicroStatistics = field(default_factory=MicroStatistics)
    noise_level: float = 0.0
    converged_at_noise: bool = False
    substituted_points: int = 0

    @property
    def substituted(self) -> bool:
        """Whether the solution rests on substituted micro responses (a marked step)."""
        return self.substituted_points > 0

    @property
    def macro_seconds(self) -> float:
        """Wall time outside the micro solves."""
        return self.seconds - self.micro_seconds

    def __str__(self):
        norms = ", ".join(f"{r:.2e}" for r in self.residual_norms)
        text = (
            f"{self.iterations} Newton iterations (residuals {norms}); {self.statistics}; "
            f"{self.seconds:.3f} s total, {self.micro_seconds:.3f} s micro, "
            f"{self.macro_seconds:.3f} s macro"
        )
        if self.substituted:
            text += f"; SUBSTITUTED micro responses at {self.substituted_points} points"
        return text


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
        petsc_options: SNES/KSP options, added to :data:`DEFAULT_SNES_OPTIONS`. They stay
            in the PETSc database under the prefix for the life of the problem (so options
            read at factorisation time, such as ``mat_mumps_icntl_7``, take effect);
            :meth:`destroy` removes them.
        petsc_options_prefix: Options prefix (default: a unique ``hmm_macro_<n>_``).
        noise_factor: With noisy micro models (responses with standard errors), Newton
            stops when the residual norm is below ``noise_factor`` times the residual's
            noise level, instead of chasing the noise (default
            :data:`DEFAULT_NOISE_FACTOR`).
    """

    def __init__(
        self,
        F,
        u: fem.Function,
        bcs=None,
        J=None,
        petsc_options: dict | None = None,
        petsc_options_prefix: str | None = None,
        noise_factor: float = DEFAULT_NOISE_FACTOR,
    ):
        if not (np.isfinite(noise_factor) and noise_factor > 0):
            raise ValueError(f"noise_factor must be positive, got {noise_factor}")
        self.noise_factor = float(noise_factor)
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
        # DOLFINx removes the options right after setFromOptions; keep them for the life of
        # the solver: the factorisation reads some of them (e.g. a MUMPS ordering) later.
        self._options = PrefixedOptions(prefix, options)
        snes = self.problem.solver
        self.bcs = list(bcs or [])
        self._noise_forms = self._compile_noise_forms(F_replaced) if self.stochastic else []
        self.noise_level = 0.0
        self._converged_at_noise = False
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
        if self.stochastic:
            snes.setConvergenceTest(self._noise_aware_convergence)

    # -- noise ---------------------------------------------------------------------------------
    @property
    def stochastic(self) -> bool:
        """Whether some micro model is noisy (Newton then stops at the noise level)."""
        return any(c.model.stochastic for c in self.couplings)

    def _compile_noise_forms(self, F_replaced) -> list:
        """``dF/d(response coefficient)`` of every response operator, compiled once.

        Its entries are the weights by which each quadrature value of a response enters
        each residual entry, so independent errors of standard deviation ``s`` at the
        quadrature points give the residual entries the variances ``(B o B) s^2``.
        """
        forms = []
        for op in self.F_operators:
            if any(op.derivatives):
                continue
            coefficient = op.ref_coefficient
            trial = ufl.TrialFunction(coefficient.function_space)
            form = fem.form(ufl.derivative(F_replaced, coefficient, trial))
            forms.append((coupling_of(op), form, dolfinx.fem.petsc.create_matrix(form)))
        return forms

    def _update_noise_level(self) -> None:
        """The norm of the standard deviations of the residual entries (collective)."""
        variance = self.problem.b.duplicate()
        variance.set(0.0)
        for coupling, form, B in self._noise_forms:
            error = coupling.last_response.standard_error if coupling.last_response else None
            if error is None:
                continue
            B.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(B, form)
            B.assemble()
            indptr, indices, data = B.getValuesCSR()
            B.setValuesCSR(indptr, indices, data**2)
            B.assemble()
            s2 = B.createVecRight()
            size = coupling.num_points * int(np.prod(coupling.model.output_shape))
            s2.array[:size] = np.asarray(error, dtype=np.float64).reshape(-1) ** 2
            s2.array[size:] = 0.0  # owned quadrature values only (ghost cells not evaluated)
            B.multAdd(s2, variance, variance)
            s2.destroy()
        for bc in self.bcs:
            dofs, first_ghost = bc.dof_indices()
            variance.array[dofs[:first_ghost]] = 0.0  # constrained rows carry no noise
        self.noise_level = float(np.sqrt(variance.sum()))
        variance.destroy()

    def _noise_aware_convergence(self, snes, iteration, norms):
        """SNES's default tests, plus: stop when the residual is at the noise level."""
        _, _, fnorm = norms
        rtol, atol, _, max_it = snes.getTolerances()
        reasons = PETSc.SNES.ConvergedReason
        if not np.isfinite(fnorm):
            return reasons.DIVERGED_FUNCTION_NANORINF
        if iteration == 0:
            self._first_norm = fnorm
        if fnorm <= atol:
            return reasons.CONVERGED_FNORM_ABS
        if iteration > 0 and fnorm <= rtol * self._first_norm:
            return reasons.CONVERGED_FNORM_RELATIVE
        if fnorm <= self.noise_factor * self.noise_level:
            self._converged_at_noise = True
            return reasons.CONVERGED_FNORM_ABS
        if iteration >= max_it:
            return reasons.DIVERGED_MAX_IT
        return reasons.CONVERGED_ITERATING

    @property
    def solver(self) -> PETSc.SNES:
        """The PETSc SNES."""
        return self.problem.solver

    def _update_micro(self, x: PETSc.Vec) -> None:
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with x.localForm() as local:
            signature = local.array_r.tobytes()
        # The skip must be collective: near convergence (or at a state-tolerance floor) one
        # rank's local iterate can stop changing while another's still moves, and a rank
        # that skipped would leave the others waiting in the micro evaluation.
        unchanged = signature == self._evaluated_at
        if self.u.function_space.mesh.comm.allreduce(unchanged, op=MPI.LAND):
            return
        dolfinx.fem.petsc.assign(x, self.u)
        for coupling in self.couplings:
            coupling.update(self.F_operators + self.J_operators)
        if self._noise_forms:
            self._update_noise_level()
        self._evaluated_at = signature

    # -- steps ---------------------------------------------------------------------------------
    def set_time(self, time: float, dt: float = 0.0, step: int | None = None) -> None:
        """Start a macro step (time or load factor at its end, its length) for every micro model."""
        for coupling in self.couplings:
            coupling.dispatcher.set_time(time, dt, step)

    def commit(self) -> None:
        """Accept the step: trial micro histories become committed (collective)."""
        for coupling in self.couplings:
            coupling.dispatcher.commit()

    def rollback(self) -> None:
        """Cut the step: drop the trial micro histories (exactly)."""
        for coupling in self.couplings:
            coupling.dispatcher.rollback()
        self._evaluated_at = None

    def statistics(self) -> MicroStatistics:
        """This rank's micro statistics summed over the couplings (whole run)."""
        total = MicroStatistics()
        for coupling in self.couplings:
            total = total + coupling.dispatcher.statistics
        # Collective evaluations happen for every coupling at once: count them once.
        total.calls = max((c.dispatcher.statistics.calls for c in self.couplings), default=0)
        return total

    def destroy(self) -> None:
        """Remove this problem's PETSc options from the database."""
        self._options.clear()

    def solve(self) -> SolveReport:
        """Run Newton from the current ``u``.

        Returns:
            A :class:`SolveReport`.

        Raises:
            MacroSolveError: if Newton did not converge (the residual history is in the
                message); ``u`` then holds the last iterate.
            hmm_fem.micro.MicroSolveError: if a micro solve failed (names the point).
        """
        before = self.statistics()
        self.residual_norms = []
        self._evaluated_at = None
        self._pending_error = None
        self._converged_at_noise = False
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
        local = self.statistics() - before
        substituted = sum(int(c.substituted.sum()) for c in self.couplings)
        if comm.size > 1:
            substituted = comm.allreduce(substituted, op=MPI.SUM)
        report = SolveReport(
            reason,
            iterations,
            list(self.residual_norms),
            seconds,
            local.micro_seconds,
            local.total(comm),
            noise_level=self.noise_level,
            converged_at_noise=self._converged_at_noise,
            substituted_points=substituted,
        )
        if report.substituted and comm.rank == 0:
            warnings.warn(
                f"the macro solution rests on substituted micro responses at "
                f"{report.substituted_points} quadrature points (see the failure policy; "
                "report.substituted_points, coupling.substituted_cells())",
                RuntimeWarning,
                stacklevel=2,
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
        """Assemble the Jacobian at the current ``u`` (micro models evaluated); a new Mat.

        Raises:
            hmm_fem.micro.MicroSolveError: If a micro evaluation failed (no matrix is
                returned half assembled).
        """
        x = self.u.x.petsc_vec.copy()
        A = self.problem.A.duplicate()
        self._jacobian_callback(self.solver, x, A, None)
        x.destroy()
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            A.destroy()
            raise error
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
