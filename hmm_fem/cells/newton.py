"""Newton's method for nonlinear cell problems, on PETSc SNES.

:class:`CellNewton` solves ``R(u) = 0`` on the constrained (for a periodic cell, the
reduced dolfinx_mpc) system of a cell problem with SNES ``newtonls`` and a backtracking
line search (``bt``). What it adds to SNES is what a micro solve needs:

* **a hook before every assembly**: ``prepare(u)`` is called with the current iterate
  (copied into ``u`` and back-substituted) before the residual and the Jacobian are
  assembled at a new iterate, e.g. to compute a quadrature-point stress by a return
  mapping. It returns ``False`` when the iterate is outside the domain of the law (e.g.
  ``J = det F <= 0``): that is a *function domain error* (``SNESSetFunctionDomainError``)
  and the ``bt`` line search halves the step until the trial point is admissible (PETSc
  3.25, ``SNESLineSearchApply_BT``: the residual of a domain error is infinite, and the
  step is cut by 1/2 while the residual norm is infinite or NaN, down to
  ``snes_linesearch_minlambda``; then SNES stops with ``DIVERGED_FUNCTION_DOMAIN``. A
  domain error in the polynomial backtracking that may follow, for sufficient decrease,
  stops SNES with the same reason);
* **a stopping criterion independent of the initial guess**: ``||R|| <= tolerance``
  (a SNES convergence test; the tolerance is given per solve);
* **warm and cold starts**: the last committed solution is the first guess; if it is
  outside the domain or SNES fails from it, a cold start from ``u = 0`` follows;
* **a factorisation fallback, recorded**: the Jacobian is factorised with the system's
  solver (CHOLMOD Cholesky by default); if that fails (an indefinite Jacobian), MUMPS LU
  takes over for the rest of the solve and a line in :attr:`CellNewton.log` says so;
* **the tangent's factorisation**: :meth:`CellNewton.factorise_at_solution` factorises
  the Jacobian at the converged state (the primary solver first, so
  :attr:`CellNewton.tangent_solver` tells whether it is positive definite) for the load
  cases of the consistent tangent;
* **messages**: the log has one line per iteration (residual norm, step length, trial
  points rejected outside the domain, a cell-specific note); a failure names the SNES
  converged reason of every start.

Every option lives under the cell's prefix: the linear solver under the system solver's
prefix ``P``, the SNES under ``P + "newton_"``, the LU fallback under ``P + "fallback_"``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import warnings
from collections.abc import Callable

import numpy as np
import petsc4py
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from ..solver_options import PrefixedOptions
from .conditions import CellSystem
from .skeleton import CellProblem
from .solver import LU_SOLVER_OPTIONS, CellSolveError, FactorisedSolver, assemble_form

__all__ = [
    "CellNewton",
    "NonlinearCellProblem",
    "NewtonFailure",
    "NEWTON_OPTIONS",
    "snes_reason_name",
]

#: SNES options of every cell Newton: Newton with the backtracking line search (which
#: backs off from domain errors), no step-length convergence (a tiny step is not a
#: converged state: the residual criterion decides).
NEWTON_OPTIONS: dict[str, str | float | int] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
    "snes_stol": 0.0,
}

_REASONS = {
    getattr(PETSc.SNES.ConvergedReason, name): name
    for name in dir(PETSc.SNES.ConvergedReason)
    if name.isupper() and name != "ITERATING"
}


def snes_reason_name(reason: int) -> str:
    """``"DIVERGED_FUNCTION_DOMAIN (-1)"`` for a SNES converged reason."""
    return f"{_REASONS.get(int(reason), 'UNKNOWN')} ({int(reason)})"


class NewtonFailure(CellSolveError):
    """Every start of a cell Newton failed; the message is the log of all of them."""

    def __init__(self, log: list[str]):
        super().__init__("\n  ".join(log))
        self.log = list(log)


def _find_domain_error_setter():
    """``SNESSetFunctionDomainError`` from the PETSc library (petsc4py 3.25 does not wrap it)."""
    config = petsc4py.get_config()
    libdir = os.path.join(config["PETSC_DIR"], config["PETSC_ARCH"], "lib")
    for path in sorted(glob.glob(os.path.join(libdir, "libpetsc*.so*"))):
        try:
            function = ctypes.CDLL(path).SNESSetFunctionDomainError
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_void_p]
        function.restype = ctypes.c_int
        return function
    return None


_SET_DOMAIN_ERROR = _find_domain_error_setter()


class _LinearStep:
    """The preconditioner of the SNES's (``preonly``) KSP: the factorised Jacobian.

    A Python PC, so that every Newton step goes through the checked
    :meth:`FactorisedSolver.solve` of the active (primary or fallback) factorisation.
    """

    def __init__(self, newton: CellNewton):
        self.newton = newton

    def apply(self, pc, b, y):
        newton = self.newton
        if newton._error is None:
            try:
                newton._solve_step(b, y)
                return
            except Exception as exc:  # noqa: BLE001 - re-raised by CellNewton.solve()
                newton._error = exc
        y.set(0.0)
        pc.setFailedReason(PETSc.PC.FailedReason.FACTOR_OTHER)


class CellNewton:
    """Newton (PETSc SNES ``newtonls`` + ``bt`` line search) on a cell problem's system.

    Example (the hyperelastic cell):
        >>> system = Periodic().system(V, jacobian, tangent_load, lengths=..., name=...)
        >>> newton = CellNewton(residual, w, system, prepare=lambda w: min_J(w) > 0.0,
        ...                     domain="J = det F <= 0 (or NaN) at a quadrature point")
        >>> newton.solve(tolerance)              # warm, then cold start; NewtonFailure
        >>> solver = newton.factorise_at_solution()   # for the tangent load cases
        >>> newton.commit()                      # the next warm start

    Args:
        residual: The compiled residual form ``R(u; v)`` (linear in the test function of
            the system's space).
        u: The unknown, a function on ``system.space``; it holds the current iterate in
            every callback and the solution after :meth:`solve`.
        system: The constrained system (:class:`~hmm_fem.cells.conditions.CellSystem`,
            of :class:`~hmm_fem.cells.conditions.Periodic` or ``Kinematic``) whose
            bilinear form ``system.a`` is the Jacobian ``dR/du`` and whose solver
            factorises it (the primary solver); ``system.L`` and ``system.load`` serve
            the tangent load cases.
        snes_options: SNES options (``snes_*`` keys), over :data:`NEWTON_OPTIONS`.
        max_iterations: Largest number of Newton steps per start (``snes_max_it``).
        prepare: ``prepare(u)``, called with the current iterate before the residual and
            Jacobian are assembled at a new iterate (once per iterate and :meth:`solve`:
            the Jacobian at the iterate of the last residual reuses its results); return
            ``False`` if ``u`` is outside the domain (a domain error: the line search
            backs off). An exception stops SNES; a :class:`CellSolveError` fails the
            start, others are re-raised.
        note: ``note()``, a short text appended to the log line of every iteration.
        domain: What a domain error means, for the log and the messages.
        fallback_options: Linear solver options taken over when the primary
            factorisation or solve fails (default MUMPS LU); ``None``: no fallback.

    Attributes:
        snes: The PETSc SNES (prefix :attr:`prefix`).
        prefix: The SNES options prefix (``system.solver.prefix + "newton_"``).
        log: The log of the last :meth:`solve`: one block per start, one line per iteration.
        history: Residual norms of the start that converged, one per iteration.
        iterations: Newton steps of the start that converged.
        reason: The SNES converged reason of the last start.
        tangent_solver: ``"primary"`` or ``"fallback"``: the solver that factorised the
            Jacobian in :meth:`factorise_at_solution`.
    """

    def __init__(
        self,
        residual: fem.Form,
        u: fem.Function,
        system: CellSystem,
        *,
        snes_options: dict | None = None,
        max_iterations: int = 25,
        prepare: Callable[[fem.Function], bool | None] | None = None,
        note: Callable[[], str] | None = None,
        domain: str = "outside the domain of the law",
        fallback_options: dict | None = LU_SOLVER_OPTIONS,
    ):
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        if system.target(u) is not u.x.petsc_vec:
            raise ValueError(
                f"CellNewton needs a system whose unknown is one function (a {system.condition!r}"
                " system solves into a block vector); use Periodic() or Kinematic()"
            )
        self.residual = residual
        self.u = u
        self.system = system
        self.solver: FactorisedSolver = system.solver
        self.prepare = prepare
        self.note = note
        self.domain = domain
        self.fallback_options = None if fallback_options is None else dict(fallback_options)
        self._fallback: FactorisedSolver | None = None
        self._active = self.solver

        self.prefix = self.solver.prefix + "newton_"
        options = {**NEWTON_OPTIONS, "snes_max_it": int(max_iterations), **(snes_options or {})}
        self.options = PrefixedOptions(self.prefix, options)
        self._x = system.target(u).duplicate()
        self._F = self._x.duplicate()
        self._previous = self._x.duplicate()
        self.snes = PETSc.SNES().create(MPI.COMM_SELF)
        self.snes.setOptionsPrefix(self.prefix)
        self.snes.setFunction(self._residual_callback, self._F)
        self.snes.setJacobian(self._jacobian_callback, self.solver.A)
        self.snes.setConvergenceTest(self._convergence_test)
        self.snes.setMonitor(self._monitor)
        ksp = self.snes.getKSP()
        ksp.setType("preonly")
        self._pc = ksp.getPC()
        self._pc.setType("python")
        self._pc.setPythonContext(_LinearStep(self))
        self.snes.setFromOptions()

        self._committed: np.ndarray | None = None
        self._tolerance = 0.0
        self._error: Exception | None = None
        self._evaluated: np.ndarray | None = None
        self._admissible = True
        self._rejected = 0
        self._norms: list[float] = []
        self._primary_failed = False
        self.log: list[str] = []
        self.history: list[float] = []
        self.iterations = 0
        self.reason = 0
        self.tangent_solver = "primary"

    # -- SNES callbacks -------------------------------------------------------------------------
    def _update(self, x: PETSc.Vec) -> bool:
        """Copy the iterate ``x`` into ``u``; run the hook at a new iterate; admissible?"""
        target = self.system.target(self.u)
        x.copy(target)
        self.system.back_substitute(target, self.u)
        if self._evaluated is not None and np.array_equal(self._evaluated, x.array_r):
            return self._admissible
        self._evaluated = None
        admissible = True if self.prepare is None else self.prepare(self.u) is not False
        self._evaluated = x.array_r.copy()
        self._admissible = admissible
        return admissible

    def _residual_callback(self, snes, x, F):
        # Exceptions inside SNES callbacks reach the caller as an opaque PETSc error: keep
        # them, make SNES stop (NaN residual), and raise after the solve.
        if self._error is None:
            try:
                if self._update(x):
                    self.system.assemble_vector(self.residual, F)
                    return
                self._rejected += 1
                if _SET_DOMAIN_ERROR is not None:
                    _SET_DOMAIN_ERROR(snes.handle)  # SNES flags F as infinite
                else:
                    F.set(np.inf)
                return
            except Exception as exc:  # noqa: BLE001 - re-raised by solve()
                self._error = exc
        F.set(np.nan)

    def _jacobian_callback(self, snes, x, J, P):
        if self._error is not None:
            return
        try:
            self._update(x)
            self._factorise()
        except Exception as exc:  # noqa: BLE001 - re-raised by solve()
            self._error = exc

    def _convergence_test(self, snes, iteration, norms):
        fnorm = norms[2]
        if fnorm <= self._tolerance:
            return PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
        if not np.isfinite(fnorm):
            return PETSc.SNES.ConvergedReason.DIVERGED_FUNCTION_NANORINF
        return PETSc.SNES.ConvergedReason.ITERATING

    def _monitor(self, snes, iteration, fnorm):
        self._norms.append(float(fnorm))
        line = f"  iteration {iteration}: ||R|| = {fnorm:.3e}"
        x = self._x
        if iteration > 0:
            direction = snes.getSolutionUpdate().norm()
            self._previous.axpy(-1.0, x)
            step = self._previous.norm() / direction if direction > 0 else 0.0
            line += f", step {step:.3g}"
        if self._rejected:
            line += f" ({self._rejected} trial steps outside the domain)"
            self._rejected = 0
        if self.note is not None:
            line += f", {self.note()}"
        if fnorm <= self._tolerance:
            line += " (converged)"
        self.log.append(line)
        x.copy(self._previous)

    # -- the linear solves ----------------------------------------------------------------------
    def _factorise(self, converged: bool = False) -> None:
        """Assemble and factorise the Jacobian at ``u``: the primary solver, else the fallback.

        Once the primary solver has failed in a :meth:`solve`, the Newton steps of the rest
        of it use the fallback; the converged Jacobian is tried with the primary first.
        """
        if self._primary_failed and not converged:
            self.solver.assemble()
            self._fallback.factorise(assemble=False)
            self._active = self._fallback
            return
        try:
            self.solver.factorise()
            self._active = self.solver
        except CellSolveError as err:
            self._switch_to_fallback(err)

    def _switch_to_fallback(self, err: CellSolveError) -> None:
        """Factorise the (assembled) Jacobian with the fallback solver, and say so."""
        if self.fallback_options is None:
            raise err
        if self.solver.ksp.getPC().getType() == "cholesky":
            reason = "Cholesky failed: the Jacobian is not positive definite"
        else:
            reason = f"the primary solver failed ({err})"
        self.log.append(f"    {reason}; factorised with MUMPS LU instead")
        if self._fallback is None:
            self._fallback = FactorisedSolver(
                self.system.a,
                self.system.mpc,
                self.system.bcs,
                f"{self.solver.name}_fallback",
                self.fallback_options,
                matrix=self.solver.A,
                prefix=self.solver.prefix + "fallback_",
            )
        self._fallback.factorise(assemble=False)
        self._active = self._fallback
        self._primary_failed = True

    def _solve_step(self, b: PETSc.Vec, y: PETSc.Vec) -> None:
        """``J y = b`` with the active factorisation (the fallback if the primary fails)."""
        label = f" (Newton iteration {self.snes.getIterationNumber()})"
        try:
            self._active.solve(b, y, label=label)
        except CellSolveError as err:
            if self._active is not self.solver:
                raise
            self._switch_to_fallback(err)
            self._active.solve(b, y, label=label)

    @property
    def linear_solver(self) -> FactorisedSolver:
        """The solver holding the current factorisation of the Jacobian."""
        return self._active

    def factorise_at_solution(self) -> FactorisedSolver:
        """Factorise the Jacobian at the solution ``u`` (primary solver first); return the solver.

        Sets :attr:`tangent_solver`. Raises :class:`CellSolveError` if no solver can.
        """
        self._update(self._x)
        self._factorise(converged=True)
        self.tangent_solver = "primary" if self._active is self.solver else "fallback"
        return self._active

    # -- solve ------------------------------------------------------------------------------------
    def solve(
        self,
        tolerance: float,
        *,
        max_iterations: int | None = None,
        line_search: str | None = None,
    ) -> None:
        """Solve ``R(u) = 0`` to ``||R|| <= tolerance``: from the committed state, else from 0.

        Args:
            tolerance: The residual norm to reach.
            max_iterations: Newton steps per start for this solve only (default the
                SNES's ``snes_max_it``).
            line_search: A SNES line search type for this solve only (e.g. ``"l2"``, the
                secant line search on the residual norm; default the SNES's, ``"bt"``).
                Both are remedies for a failed solve.

        Raises:
            ValueError: If ``max_iterations`` is not an integer >= 1.
            NewtonFailure: if every start fails (the message is the log, with the SNES
                converged reason of every start); ``u`` is then back at the committed state.
            Exception: an exception of ``prepare`` other than :class:`CellSolveError`.
        """
        if max_iterations is not None and (
            isinstance(max_iterations, bool)
            or int(max_iterations) != max_iterations
            or max_iterations < 1
        ):
            raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
        max_it = self.snes.getTolerances()[3]
        search = self.snes.getLineSearch()
        # Keep the settings of the cell's own line search, to put them back after another
        # type (whose creation may set its own defaults) served this solve.
        kind, limits, order = search.getType(), search.getTolerances(), search.getOrder()
        try:
            if max_iterations is not None:
                self.snes.setTolerances(max_it=int(max_iterations))
            if line_search is not None:
                search.setType(line_search)
            self._solve(tolerance)
        finally:
            if max_iterations is not None:
                self.snes.setTolerances(max_it=max_it)
            if line_search is not None:
                search.setType(kind)
                search.setTolerances(*limits)
                search.setOrder(order)

    def _solve(self, tolerance: float) -> None:
        self._tolerance = float(tolerance)
        self.log = [f"(domain error: {self.domain})"] if self.prepare is not None else []
        self._primary_failed = False
        # The hook's results depend on the load too: evaluate them afresh in every solve.
        self._evaluated = None
        warm = self._committed is not None and np.any(self._committed)
        for kind in ("warm", "cold") if warm else ("cold",):
            self.log.append(f"{kind} start:")
            self.u.x.array[:] = self._committed if kind == "warm" else 0.0
            self.system.target(self.u).copy(self._x)
            if kind == "warm":
                try:
                    admissible = self._update(self._x)
                except CellSolveError as err:
                    self.log.append(f"  failed at the last converged state: {err}")
                    continue
                if not admissible:
                    self.log.append(
                        f"  the last converged state is outside the domain ({self.domain})"
                    )
                    continue
            if self._run():
                return
        self.restore()
        raise NewtonFailure(self.log)

    def _run(self) -> bool:
        """One SNES solve from ``_x`` (= ``u``); ``True`` if it converged."""
        self._error, self._rejected, self._norms = None, 0, []
        self._pc.setFailedReason(PETSc.PC.FailedReason.NOERROR)
        try:
            self.snes.solve(None, self._x)
        except PETSc.Error as err:
            if self._error is None:
                self._error = err
        self.reason = int(self.snes.getConvergedReason())
        iterations = self.snes.getIterationNumber()
        error, self._error = self._error, None
        if error is not None and not isinstance(error, (CellSolveError, PETSc.Error)):
            self.restore()
            raise error
        last = self._norms[-1] if self._norms else float("nan")
        if error is None and self.reason > 0 and last <= self._tolerance:
            self._update(self._x)
            self.history = list(self._norms)
            self.iterations = iterations
            return True
        detail = f": {error}" if error is not None else ""
        if error is None and self.reason == PETSc.SNES.ConvergedReason.DIVERGED_FUNCTION_DOMAIN:
            detail = f": every step length leaves the domain ({self.domain})"
        elif error is None and self.reason == PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT:
            detail = f" (||R|| = {last:.3e} > {self._tolerance:.3e})"
        self.log.append(
            f"  failed: SNES {snes_reason_name(self.reason)} after {iterations} Newton "
            f"iterations{detail}"
        )
        return False

    # -- state ------------------------------------------------------------------------------------
    def commit(self) -> None:
        """The current ``u`` becomes the committed state: the warm start of the next solve."""
        self._committed = self.u.x.array.copy()

    @property
    def committed(self) -> np.ndarray | None:
        """A copy of the committed state (``None``: none, the next solve starts cold)."""
        return None if self._committed is None else self._committed.copy()

    def recommit(self, state: np.ndarray | None) -> None:
        """Make ``state`` (a :attr:`committed` copy, or ``None``) the committed state again.

        For callers that commit intermediate states (a load path) and must go back to the
        state before them when the path fails; ``u`` is set to it.
        """
        self._committed = None if state is None else np.array(state, copy=True)
        self.restore()

    def restore(self) -> None:
        """``u`` back to the committed state (zero if none)."""
        self.u.x.array[:] = 0.0 if self._committed is None else self._committed

    def reset(self) -> None:
        """Forget the committed state: ``u = 0`` and the next solve starts cold."""
        self._committed = None
        self.u.x.array[:] = 0.0

    def destroy(self) -> None:
        """Free the SNES, its vectors, the fallback solver and the SNES options."""
        self.snes.destroy()
        for vec in (self._x, self._F, self._previous):
            vec.destroy()
        if self._fallback is not None:
            self._fallback.destroy()
        self.options.clear()


if _SET_DOMAIN_ERROR is None:  # pragma: no cover - depends on the PETSc installation
    warnings.warn(
        "hmm_fem.cells.newton: SNESSetFunctionDomainError not found in the PETSc library; a "
        "domain error is reported as an infinite residual (SNES reason "
        "DIVERGED_FUNCTION_NANORINF instead of DIVERGED_FUNCTION_DOMAIN)",
        RuntimeWarning,
        stacklevel=1,
    )


class NonlinearCellProblem(CellProblem):
    """What the cells with a micro Newton share (hyperelastic, plastic).

    The Newton controls and their checks, the split of ``petsc_options`` between the SNES
    and the linear solver, the :class:`CellNewton` with its recorded LU fallback, and the
    reference of the stopping criterion.

    Args:
        cell: The unit cell.
        degree: Polynomial degree of the fluctuation.
        rtol: Newton tolerance, relative to the load (positive, finite).
        atol: Absolute floor of the Newton tolerance (positive, finite).
        max_iterations: Largest number of Newton steps per start (>= 1).
        quadrature_degree: Quadrature degree of the cell integrals; default
            ``2 (degree - 1)``, exact for P1 (piecewise constant integrands).

    Attributes:
        rtol, atol, max_iterations, quadrature_degree: The Newton controls.
        iterations: Newton steps of the last solve.
        tangent_solver: ``"primary"`` or ``"fallback"`` (LU): the solver that factorised the
            converged Jacobian.
        tangent_seconds: Part of the last solve's time spent on the tangent.
    """

    def __init__(
        self,
        cell,
        degree: int,
        *,
        rtol: float,
        atol: float,
        max_iterations: int,
        quadrature_degree: int | None,
    ):
        super().__init__(cell, degree)
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not (np.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        qdeg = 2 * (self.degree - 1) if quadrature_degree is None else int(quadrature_degree)
        if qdeg < 0:
            raise ValueError(f"quadrature_degree must be >= 0, got {quadrature_degree}")
        self.rtol, self.atol = float(rtol), float(atol)
        self.max_iterations = int(max_iterations)
        self.quadrature_degree = qdeg
        self.iterations = 0
        self.tangent_solver = "primary"
        self.tangent_seconds = 0.0

    @staticmethod
    def split_options(petsc_options: dict | None) -> tuple[dict, dict]:
        """``(linear, snes)``: the ``snes_*`` options go to the SNES, the rest to the solver."""
        options = dict(petsc_options or {})
        snes = {k: v for k, v in options.items() if k.startswith("snes_")}
        return {k: v for k, v in options.items() if k not in snes}, snes

    def _make_newton(
        self,
        residual: fem.Form,
        unknown: fem.Function,
        system: CellSystem,
        *,
        snes_options: dict,
        linear_options: dict,
        prepare,
        note,
        domain: str,
    ) -> CellNewton:
        """The cell's :class:`CellNewton`, with MUMPS LU as the recorded fallback.

        No fallback when the linear solver is that LU already.
        """
        return CellNewton(
            residual,
            unknown,
            system,
            snes_options=snes_options,
            max_iterations=self.max_iterations,
            prepare=prepare,
            note=note,
            domain=domain,
            fallback_options=None
            if linear_options == dict(LU_SOLVER_OPTIONS)
            else LU_SOLVER_OPTIONS,
        )

    def _residual_reference(self, system: CellSystem, dx, stress_scale: float) -> float:
        """``c ||g||``: the nodal forces of a stress ``c`` (``g_a = int (1/h) sum_i (phi_a)_i``).

        The Newton tolerance is a strain times this reference, so it does not depend on the
        initial guess (warm and cold starts stop at the same accuracy).
        """
        d = self.cell.dim
        V = self.V
        h = ufl.CellDiameter(V.mesh)
        form = fem.form(ufl.inner(ufl.as_vector([1.0] * d), ufl.TestFunction(V)) / h * dx)
        g = assemble_form(form, system.load.duplicate(), system.mpc)
        reference = float(stress_scale) * g.norm()
        g.destroy()
        return reference

    @property
    def log(self) -> list[str]:
        """The Newton log of the last solve (one line per iteration, fallbacks, reasons)."""
        return self.newton.log
