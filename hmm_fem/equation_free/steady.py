"""Coarse steady states, pseudo-arclength continuation and coarse eigenvalues.

Everything here works on a *coarse time-stepper*: any callable ``stepper(U, t, T)`` that
returns the coarse state after time ``T`` from the coarse state ``U`` (a float array of fixed
shape), optionally with ``stepper.standard_error`` (the standard error of the last returned
state: same shape or a scalar; absent or 0 for a deterministic map) and
``stepper.micro_steps`` (micro steps spent so far). The time-``horizon`` map is
``Phi(U) = stepper(U, 0, horizon)``; nothing else of the micro simulator is seen.

* :func:`coarse_steady_state` solves ``Phi(U) - U = 0`` by Jacobian-free Newton-Krylov:
  PETSc SNES (``newtonls``) with a matrix-free MFFD Jacobian (``snes_mf``), unpreconditioned
  GMRES, on ``MPI.COMM_SELF``. Every Krylov iteration costs one map evaluation.
* :func:`continuation` follows a branch of coarse steady states in a parameter by
  pseudo-arclength continuation (tangent predictor, Newton-Krylov corrector on the bordered
  system), detects folds and locates them, and classifies stability from
  :func:`coarse_eigenvalues`.
* :func:`coarse_eigenvalues` gives the leading eigenvalues (largest magnitude) ``mu`` of the
  Jacobian of ``Phi``, matrix-free: dense finite-difference columns for small coarse states,
  SLEPc (Krylov-Schur on a shell matrix whose product is a directional difference) for
  larger ones. A steady state is stable when every ``|mu| < 1``. For a coarse map that is
  the flow of an (unknown) coarse ODE ``dU/dt = f(U)``, ``mu = exp(sigma * horizon)`` where
  ``sigma`` are the eigenvalues of ``df/dU``: ``sigma = log(mu) / horizon`` (principal
  branch; the imaginary part is known modulo ``2*pi/horizon``). Fast modes (``Re sigma *
  horizon << -1``) map to ``mu ~ 0``, which is why a horizon longer than the fast time scale
  leaves only the slow eigenvalues near the unit circle.

**The difference step of a noisy map.** A forward difference ``(Phi(U + d a) - Phi(U)) / d``
with ``|a| = 1`` has a truncation error ``~ d |Phi''| / 2`` and, when each evaluation carries
independent noise of norm ``s`` (the 2-norm of ``stepper.standard_error``), a noise error
``~ sqrt(2) s / d``. The sum is smallest at ``d* = 2^(3/4) sqrt(s / |Phi''|)``. The curvature
is unknown; if the map varies on the scale ``L`` of the state itself (``|Phi''| ~ 1/L``),
``d* ~ sqrt(s L) = sqrt(eta) L`` with the relative noise ``eta = s / L``: the classical
"square root of the relative error of the function" (Dennis and Schnabel, 1983, sec. 5.4),
and the relative error of a Jacobian-vector product is then ``~ sqrt(eta)``. We take
``L = max(|U0|, state_scale)`` (2-norm; ``state_scale`` is the typical size of the state,
Dennis and Schnabel's ``typx``, default 1, so that a state passing through 0 keeps a step
above round-off) and ``eta = max(map_error, s / L)``,
where ``map_error`` is the relative error of a deterministic map (``MAP_ERROR = 1e-13`` by
default: a micro simulation of many steps loses digits to round-off; raise it for a micro
simulator with inner solver tolerances). PETSc's MFFD
(Walker-Pernice ``wp`` type) perturbs by ``h a`` with ``|h a| = mat_mffd_err * sqrt(1 +
|U|)``: we set ``mat_mffd_err = d / sqrt(1 + |U0|)`` so that the perturbation is ``d``
(``mat_mffd_err`` is PETSc's "square root of the relative error in the function"). The same
step ``d`` serves the columns of the dense Jacobian and the SLEPc shell product.

**The noise floor of the stopping test.** The residual ``Phi(U) - U`` of a noisy map cannot be
driven below its own noise: at the exact fixed point its norm is ``~ s``. Newton stops when
``|Phi(U) - U| <= max(tol, noise_factor * s)`` (``noise_factor = 2``), with ``s`` the median
noise norm of the evaluations so far; the report says which of the two decided
(``noise_limited``). A noisy map also uses the ``basic`` (full-step) line search, since a
backtracking line search compares residual norms that differ only by noise.

**MPI.** The coarse vector lives on ``MPI.COMM_SELF``. The stepper may use more ranks
internally (replicas over ranks, a distributed micro simulator): every rank then runs the
same Newton iterations on the same coarse data, so the stepper is called collectively the
same number of times on every rank. Its results must be identical on all ranks (a reduced
mean is).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from ..solver_options import PrefixedOptions
from .stepper import MicroSimulationError

__all__ = [
    "coarse_steady_state",
    "continuation",
    "coarse_eigenvalues",
    "SteadyStateReport",
    "Branch",
    "CoarseSolveError",
    "ContinuationError",
    "NOISE_FACTOR",
    "MAP_ERROR",
]

_log = logging.getLogger(__name__)
_counter = itertools.count()

#: Newton stops at ``max(tol, NOISE_FACTOR * noise)``: twice the noise norm of one evaluation.
NOISE_FACTOR = 2.0
#: Default relative error of a deterministic map evaluation. A coarse map is a micro
#: simulation of hundreds or thousands of steps, whose round-off is far above one ulp: the
#: RK4 run of the stiff slow-fast test system (1000 steps) differs by ~5e-14 relative from
#: a perturbed run, and differences with the machine-precision step of PETSc (1.5e-8) were
#: off by 3e-6 there. 1e-13 gives a relative step of 3.2e-7.
MAP_ERROR = 1e-13
#: Coarse states up to this size get the dense finite-difference Jacobian by default.
DENSE_LIMIT = 64

_REASONS = {
    int(getattr(PETSc.SNES.ConvergedReason, name)): name
    for name in dir(PETSc.SNES.ConvergedReason)
    if name.isupper() and name != "ITERATING"
}


def _reason_name(reason: int) -> str:
    return f"{_REASONS.get(int(reason), 'UNKNOWN')} ({int(reason)})"


class CoarseSolveError(RuntimeError):
    """Newton-Krylov on the coarse map did not converge (or the map gave unusable values).

    Attributes:
        reason: The SNES converged reason (name and code), or a description.
        residual_history: Residual norms ``|Phi(U) - U|`` of the Newton iterates.
    """

    def __init__(self, message: str, reason: str = "", residual_history=()):
        super().__init__(message)
        self.reason = reason
        self.residual_history = list(residual_history)


class ContinuationError(RuntimeError):
    """Continuation could not go on (the step fell below its minimum).

    Attributes:
        branch: The :class:`Branch` computed so far (folds not refined).
    """

    def __init__(self, message: str, branch: Branch):
        super().__init__(message)
        self.branch = branch


@dataclass
class SteadyStateReport:
    """What a coarse Newton-Krylov solve did and what it cost.

    Attributes:
        converged_reason: SNES converged reason, e.g. ``"CONVERGED_FNORM_ABS (2)"``.
        newton_iterations: Newton iterations.
        krylov_iterations: GMRES iterations, summed over the Newton steps (one map
            evaluation each: the Jacobian-vector products are differences).
        map_evaluations: Evaluations of the coarse map (calls of the stepper).
        micro_steps: Micro steps spent (``None`` if the stepper does not count them).
        residual_norm: Final ``|Phi(U) - U|`` (2-norm).
        residual_history: ``|Phi(U) - U|`` at every Newton iterate.
        tolerance: The stopping tolerance used, ``max(tol, noise_factor * noise_level)``.
        requested_tolerance: The ``tol`` asked for.
        noise_limited: True if the noise floor, not ``tol``, set the tolerance.
        noise_level: Median 2-norm of the map's standard error over the evaluations.
        difference_step: Norm ``d`` of the finite-difference perturbation.
        difference_error: The ``mat_mffd_err`` given to PETSc.
        jacobian_type: PETSc type of the SNES Jacobian (``"mffd"``: matrix-free).
        line_search: SNES line search type.
        horizon: The time horizon of the coarse map.
        seconds: Wall time.
    """

    converged_reason: str
    newton_iterations: int
    krylov_iterations: int
    map_evaluations: int
    micro_steps: int | None
    residual_norm: float
    residual_history: list[float]
    tolerance: float
    requested_tolerance: float
    noise_limited: bool
    noise_level: float
    difference_step: float
    difference_error: float
    jacobian_type: str
    line_search: str
    horizon: float
    seconds: float

    def __str__(self) -> str:
        micro = "" if self.micro_steps is None else f", {self.micro_steps} micro steps"
        floor = " (noise floor)" if self.noise_limited else ""
        return (
            f"coarse Newton-Krylov: {self.converged_reason}, {self.newton_iterations} Newton / "
            f"{self.krylov_iterations} GMRES iterations, {self.map_evaluations} map evaluations"
            f"{micro}; |Phi(U) - U| = {self.residual_norm:.3e} <= {self.tolerance:.3e}{floor}; "
            f"noise {self.noise_level:.3e}, difference step {self.difference_step:.3e}, "
            f"Jacobian {self.jacobian_type}, {self.seconds:.3f} s"
        )


@dataclass
class Branch:
    """A branch of coarse steady states from :func:`continuation`.

    Attributes:
        parameters: ``(m,)`` parameter values along the branch, in the order computed.
        states: ``(m, *shape)`` coarse steady states.
        eigenvalues: ``(m, k)`` leading eigenvalues ``mu`` of the linearised time-horizon
            map, by decreasing magnitude.
        stability: ``"stable"`` (every ``|mu| < 1``) or ``"unstable"`` at each point.
        arclength: ``(m,)`` cumulative pseudo-arclength (the weighted norm of the docstring
            of :func:`continuation`).
        folds: Indices of the branch points where ``d lambda / ds`` changes sign (the point
            of extremal parameter among its neighbours).
        fold_parameters: Located fold parameter of each fold.
        fold_states: Coarse state at each located fold.
        fold_standard_errors: Standard error of each fold parameter (0 for a deterministic
            map): from the least-squares fit of ``lambda(p)`` near a fold of a noisy map.
            The fit takes the branch points near the fold as independent; where they share
            their noise (KMC with common Newton guesses: 2e-4 reported against a spread of
            3.6e-3 over 20 seeds) it is too small, and the spread over seeds is the
            honest error.
        fold_eigenvalues: ``(num_folds, k)`` leading eigenvalues at the located folds (one
            of them is 1 at an exact fold).
        newton_iterations: Corrector Newton iterations of each point.
        map_evaluations: Coarse map evaluations in total.
        micro_steps: Micro steps in total (``None`` if the steppers do not count them).
        noise_level: Median noise norm of the map evaluations (0: deterministic).
        horizon: The time horizon of the coarse map.
        stop_reason: Why the continuation stopped.
        seconds: Wall time.
    """

    parameters: np.ndarray
    states: np.ndarray
    eigenvalues: np.ndarray
    stability: list[str]
    arclength: np.ndarray
    folds: list[int] = field(default_factory=list)
    fold_parameters: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fold_states: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fold_standard_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fold_eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), complex))
    newton_iterations: list[int] = field(default_factory=list)
    map_evaluations: int = 0
    micro_steps: int | None = None
    noise_level: float = 0.0
    horizon: float = 0.0
    stop_reason: str = ""
    seconds: float = 0.0

    @property
    def stable(self) -> np.ndarray:
        """Boolean array: True where the steady state is stable."""
        return np.array([s == "stable" for s in self.stability], dtype=bool)

    def stability_changes(self) -> list[int]:
        """Positions in :attr:`folds` of the folds across which the stability changes.

        A noisy branch may turn back and forth within its stable part (noise-induced "folds"
        whose neighbours are all stable), and the points next to a true fold have a leading
        ``|mu|`` near 1, on either side of it by noise. The folds cut the branch into
        segments; a fold counts when the majority stability of the segment before it (the
        points since the previous fold, without the fold points) differs from that of the
        segment after it.

        Returns:
            Indices ``j`` into :attr:`fold_parameters` (and :attr:`folds`).
        """
        stable = self.stable
        cuts = [-1, *self.folds, len(stable)]

        def majority(a, b):  # points a..b-1; None if empty or tied
            votes = stable[max(a, 0): b]
            if len(votes) == 0 or 2 * votes.sum() == len(votes):
                return None
            return bool(2 * votes.sum() > len(votes))

        out = []
        for j in range(len(self.folds)):
            before = majority(cuts[j] + 1, cuts[j + 1])
            after = majority(cuts[j + 1] + 1, cuts[j + 2])
            if before is not None and after is not None and before != after:
                out.append(j)
        return out

    def __str__(self) -> str:
        lines = [
            f"branch of {len(self.parameters)} coarse steady states, parameter "
            f"{self.parameters.min():.6g} .. {self.parameters.max():.6g}; {self.stop_reason}; "
            f"{self.map_evaluations} map evaluations"
            + ("" if self.micro_steps is None else f", {self.micro_steps} micro steps")
            + f", {self.seconds:.2f} s"
        ]
        for index, lam, se, mu in zip(
            self.folds, self.fold_parameters, self.fold_standard_errors, self.fold_eigenvalues
        ):
            error = f" +- {se:.2e}" if se > 0 else ""
            lines.append(
                f"  fold near point {index}: parameter {lam:.10g}{error}, leading |mu| = "
                f"{abs(mu[0]):.6f}"
            )
        return "\n".join(lines)


# -- the coarse map -------------------------------------------------------------------------------


class _CoarseMap:
    """The time-horizon map of flat coarse vectors, its noise and its costs.

    ``stepper_for(lam)`` gives the stepper of a parameter value (``lam = None`` for a fixed
    stepper); the last few steppers are kept so that finite differences in the parameter do
    not rebuild them more often than needed.
    """

    def __init__(self, stepper_for, shape, horizon, start_time=0.0, where="the stepper"):
        self.stepper_for = stepper_for
        self.shape = tuple(shape)
        self.size = int(np.prod(self.shape, dtype=int))
        self.horizon = float(horizon)
        self.start_time = float(start_time)
        self.where = where
        self.evaluations = 0
        self.micro_steps: int | None = None
        self.noise: list[float] = []
        self._steppers: OrderedDict = OrderedDict()
        self._images: OrderedDict = OrderedDict()

    def stepper(self, lam):
        key = None if lam is None else float(lam)
        if key in self._steppers:
            self._steppers.move_to_end(key)
            return self._steppers[key]
        stepper = self.stepper_for(key)
        if not callable(stepper):
            raise TypeError(
                f"make_stepper({key!r}) returned {type(stepper).__name__}, not a stepper: it "
                "must return a callable stepper(U, t, T) -> coarse state"
            )
        self._steppers[key] = stepper
        while len(self._steppers) > 4:
            self._steppers.popitem(last=False)
        return stepper

    def __call__(self, flat: np.ndarray, lam=None) -> np.ndarray:
        stepper = self.stepper(lam)
        state = np.array(flat, dtype=float).reshape(self.shape)
        before = getattr(stepper, "micro_steps", None)
        try:
            image = np.asarray(stepper(state, self.start_time, self.horizon), dtype=float)
        except MicroSimulationError as exc:
            # A micro simulation that blows up from a trial coarse state (a Bratu iterate
            # past the fold, say) is a point outside the map's domain, like a non-finite
            # image: Newton and continuation back off from it, and say so if they cannot.
            parameter = "" if lam is None else f" (parameter {lam:.10g})"
            raise CoarseSolveError(
                f"{self.where}: the micro simulation failed from the coarse state "
                f"{_brief(state)}{parameter}: {exc}",
                reason="micro simulation failed",
            ) from exc
        self.evaluations += 1
        after = getattr(stepper, "micro_steps", None)
        if before is not None and after is not None:
            self.micro_steps = (self.micro_steps or 0) + int(after) - int(before)
        if image.shape != self.shape:
            raise ValueError(
                f"{self.where} returned a coarse state of shape {image.shape} for a coarse state "
                f"of shape {self.shape}: stepper(U, t, T) must return an array of U's shape"
            )
        standard_error = getattr(stepper, "standard_error", None)
        if standard_error is None:
            noise = 0.0
        else:
            standard_error = np.asarray(standard_error, dtype=float)
            noise = float(np.linalg.norm(np.broadcast_to(standard_error, self.shape)))
            if not math.isfinite(noise) or np.any(standard_error < 0):
                raise ValueError(
                    f"{self.where} has standard_error {standard_error!r}: it must be finite and "
                    "non-negative (0 or absent for a deterministic map)"
                )
        self.noise.append(noise)
        if not np.all(np.isfinite(image)):
            parameter = "" if lam is None else f" (parameter {lam:.10g})"
            raise CoarseSolveError(
                f"{self.where} returned non-finite values from the coarse state "
                f"{_brief(state)}{parameter} over the horizon {self.horizon:g}",
                reason="non-finite coarse map",
            )
        image = image.ravel()
        self._images[(lam, state.tobytes())] = image
        while len(self._images) > 8:
            self._images.popitem(last=False)
        return image

    def known_image(self, flat: np.ndarray, lam=None):
        """``Phi(flat)`` if it was just evaluated (no new evaluation), else None."""
        key = (None if lam is None else float(lam), np.asarray(flat, dtype=float).tobytes())
        return self._images.get(key)

    @property
    def noise_level(self) -> float:
        return float(np.median(self.noise)) if self.noise else 0.0


def _brief(array: np.ndarray) -> str:
    flat = np.asarray(array).ravel()
    text = np.array2string(flat[:6], precision=6, separator=", ")
    return text[:-1] + ", ...]" if flat.size > 6 else text


def _difference_step(norm_state, noise, map_error, state_scale):
    """The perturbation norm ``d = sqrt(max(map_error, noise / L)) * L`` (module docstring)."""
    scale = max(norm_state, float(state_scale))
    eta = max(float(map_error), noise / scale)
    return math.sqrt(eta) * scale


# -- Newton-Krylov on PETSc SNES -----------------------------------------------------------------


class _NewtonKrylov:
    """SNES ``newtonls`` + MFFD Jacobian + GMRES for ``residual(x) = 0``, one solve.

    ``residual(x) -> F`` evaluates the coarse map (its noise is read from ``noise()``);
    ``first`` is ``F(x0)`` already evaluated (it is not evaluated again).
    """

    def __init__(
        self,
        residual,
        noise,
        size,
        *,
        tol,
        noise_factor,
        difference_error,
        noisy,
        max_iterations,
        options,
        name,
    ):
        self.residual = residual
        self.noise = noise
        self.tol = float(tol)
        self.noise_factor = float(noise_factor)
        # A noisy residual of the initial guess may already lie below the noise floor: at
        # least one Newton step, so that the answer carries the map's information and not
        # only the guess's (e.g. a point interpolated near a fold).
        self.force_iteration = bool(noisy)
        self.prefix = f"hmm_ef_{name}_{next(_counter)}_"
        defaults = {
            "snes_type": "newtonls",
            "snes_mf": "true",
            "snes_linesearch_type": "basic" if noisy else "bt",
            "snes_atol": self.tol,
            "snes_rtol": 0.0,
            "snes_stol": 0.0,
            "snes_max_it": int(max_iterations),
            "snes_max_funcs": -1,
            "ksp_type": "gmres",
            "pc_type": "none",
            "ksp_rtol": 1e-3 if noisy else 1e-6,
            "ksp_max_it": max(50, 2 * size),
            "ksp_gmres_restart": max(30, min(size, 200)),
            "mat_mffd_type": "wp",
            "mat_mffd_err": float(difference_error),
        }
        self.options = PrefixedOptions(self.prefix, {**defaults, **dict(options or {})})
        self.snes = PETSc.SNES().create(MPI.COMM_SELF)
        self.snes.setOptionsPrefix(self.prefix)
        self.x = PETSc.Vec().createSeq(size, comm=MPI.COMM_SELF)
        self.F = self.x.duplicate()
        self.snes.setFunction(self._function, self.F)
        self.snes.setConvergenceTest(self._converged)
        self.snes.setMonitor(self._monitor)
        self.snes.setFromOptions()
        self.error: BaseException | None = None
        self.first: tuple[np.ndarray, np.ndarray] | None = None
        self.history: list[float] = []
        self.tolerance = self.tol

    def _function(self, snes, x, F):
        # An exception inside a SNES callback reaches the caller as an opaque PETSc error:
        # keep it, stop SNES with a NaN residual, raise it after the solve.
        if self.error is None:
            try:
                values = None
                if self.first is not None:
                    point, image = self.first
                    self.first = None
                    if np.array_equal(point, x.array_r):
                        values = image
                if values is None:
                    values = self.residual(x.array_r.copy())
                F.array[:] = values
                return
            except Exception as exc:  # noqa: BLE001 - re-raised by solve()
                self.error = exc
        F.set(np.nan)

    def _converged(self, snes, iteration, norms):
        fnorm = norms[2]
        self.tolerance = max(self.tol, self.noise_factor * self.noise())
        if not math.isfinite(fnorm):
            return PETSc.SNES.ConvergedReason.DIVERGED_FNORM_NAN
        if fnorm <= self.tolerance and (iteration > 0 or not self.force_iteration):
            return PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
        if iteration >= snes.getTolerances()[3]:
            return PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT
        return PETSc.SNES.ConvergedReason.ITERATING

    def _monitor(self, snes, iteration, fnorm):
        self.history.append(float(fnorm))

    def solve(self, x0, F0):
        """Newton from ``x0`` (``F0 = residual(x0)``); returns the solution and SNES facts."""
        self.x.array[:] = x0
        self.first = (np.array(x0, dtype=float), np.array(F0, dtype=float))
        self.history = []
        self.error = None
        try:
            self.snes.solve(None, self.x)
        except PETSc.Error:
            if self.error is None:
                raise
        if self.error is not None:
            raise self.error
        facts = {
            "reason": int(self.snes.getConvergedReason()),
            "newton_iterations": int(self.snes.getIterationNumber()),
            "krylov_iterations": int(self.snes.getLinearSolveIterations()),
            "jacobian_type": self.snes.getJacobian()[0].getType(),
            "line_search": self.snes.getLineSearch().getType(),
            "difference_error": float(PETSc.Options().getReal(self.prefix + "mat_mffd_err")),
            "history": list(self.history),
            "tolerance": self.tolerance,
        }
        return self.x.array.copy(), facts

    def destroy(self):
        self.snes.destroy()
        self.x.destroy()
        self.F.destroy()
        self.options.clear()


def _jfnk(
    residual,
    noise,
    x0,
    F0,
    *,
    tol,
    noise_factor,
    map_error,
    state_scale,
    difference_error,
    max_iterations,
    options,
    name,
    what,
):
    """One Newton-Krylov solve of ``residual(x) = 0`` from ``x0`` (``F0 = residual(x0)``).

    Returns ``(x, facts)``; raises :class:`CoarseSolveError` if SNES does not converge.
    """
    noise0 = noise()
    step = _difference_step(float(np.linalg.norm(x0)), noise0, map_error, state_scale)
    if difference_error is None:
        difference_error = step / math.sqrt(1.0 + float(np.linalg.norm(x0)))
    else:
        step = float(difference_error) * math.sqrt(1.0 + float(np.linalg.norm(x0)))
    solver = _NewtonKrylov(
        residual,
        noise,
        len(x0),
        tol=tol,
        noise_factor=noise_factor,
        difference_error=difference_error,
        noisy=noise0 > 0,
        max_iterations=max_iterations,
        options=options,
        name=name,
    )
    try:
        x, facts = solver.solve(x0, F0)
    finally:
        solver.destroy()
    facts["difference_step"] = step
    if facts["reason"] <= 0:
        history = ", ".join(f"{r:.3e}" for r in facts["history"])
        raise CoarseSolveError(
            f"{what} did not converge: SNES {_reason_name(facts['reason'])} after "
            f"{facts['newton_iterations']} Newton and {facts['krylov_iterations']} GMRES "
            f"iterations; residual norms |Phi(U) - U|: [{history}], tolerance "
            f"{facts['tolerance']:.3e}. Fix: start closer (a converged neighbour), raise "
            "max_iterations, or check that the horizon is long enough for the map to contract "
            "its fast modes",
            reason=_reason_name(facts["reason"]),
            residual_history=facts["history"],
        )
    return x, facts


# -- input checks ---------------------------------------------------------------------------------


def _positive(value, name, where):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
    return number


def _state(U, where, name="U0"):
    try:
        array = np.array(U, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name} must be an array of floats, got {U!r}") from None
    if array.size == 0:
        raise ValueError(f"{where}: {name} is empty; give the coarse state as a float array")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {name} has non-finite entries: {_brief(array)}")
    return array


def _callable(stepper, where, name="stepper"):
    if not callable(stepper):
        raise TypeError(
            f"{where}: {name} must be callable as stepper(U, t, T) -> coarse state, got "
            f"{type(stepper).__name__}"
        )


# -- coarse steady state ------------------------------------------------------------------------


def coarse_steady_state(
    stepper: Callable,
    U0,
    *,
    horizon: float,
    tol: float = 1e-8,
    max_iterations: int = 30,
    map_error: float = MAP_ERROR,
    state_scale: float = 1.0,
    difference_error: float | None = None,
    noise_factor: float = NOISE_FACTOR,
    options: Mapping | None = None,
    start_time: float = 0.0,
    return_report: bool = False,
) -> np.ndarray | tuple[np.ndarray, SteadyStateReport]:
    """A fixed point of the coarse time-horizon map: ``Phi(U) = U``, matrix-free.

    Jacobian-free Newton-Krylov with PETSc SNES on ``MPI.COMM_SELF``: ``newtonls`` with a
    matrix-free MFFD Jacobian (``snes_mf``, Walker-Pernice differencing), GMRES without
    preconditioner, the ``bt`` line search (``basic`` for a noisy map). Each GMRES iteration
    costs one evaluation of the map; the difference step is matched to the map's noise and
    the stopping tolerance never goes below it (module docstring). Options live under the
    solver's own prefix ``hmm_ef_steady_<n>_``; ``options`` overrides them (e.g.
    ``{"ksp_rtol": 1e-4, "snes_linesearch_type": "basic"}``).

    Example:
        >>> U = coarse_steady_state(stepper, U0, horizon=0.5, tol=1e-10)
        >>> U, report = coarse_steady_state(stepper, U0, horizon=0.5, tol=1e-10,
        ...                                 return_report=True)
        >>> print(report)   # Newton/GMRES iterations, map evaluations, micro steps, reason

    Args:
        stepper: ``stepper(U, t, T) -> coarse state`` (optional ``standard_error`` and
            ``micro_steps`` attributes).
        U0: Initial guess (float array; its shape is the coarse state's shape).
        horizon: Time horizon ``T`` of the map ``Phi(U) = stepper(U, start_time, T)``; longer
            than the fast relaxation of the micro simulator.
        tol: Absolute tolerance on ``|Phi(U) - U|`` (2-norm), raised to the noise floor
            ``noise_factor * noise`` of a noisy map. There is no relative test: the answer
            does not depend on how far ``U0`` was.
        max_iterations: Newton iterations allowed.
        map_error: Relative error of one deterministic evaluation (sets the difference
            step; raise it above machine precision for a simulator with inner tolerances).
        state_scale: Typical size of the coarse state: the difference step is relative to
            ``max(|U0|, state_scale)`` (2-norms).
        difference_error: ``mat_mffd_err`` to use instead of the noise-matched value.
        noise_factor: Multiple of the noise norm below which Newton stops.
        options: PETSc options overriding the defaults (names without prefix).
        start_time: The time ``t`` passed to the stepper.
        return_report: Also return the :class:`SteadyStateReport`.

    Returns:
        The coarse steady state (shape of ``U0``); with ``return_report``, the pair
        ``(U, report)``.

    Raises:
        CoarseSolveError: SNES did not converge (message: reason, residual history), or the
            stepper returned non-finite values.
        ValueError, TypeError: Bad arguments, or a stepper returning the wrong shape.
    """
    where = "coarse_steady_state"
    _callable(stepper, where)
    U0 = _state(U0, where)
    horizon = _positive(horizon, "horizon", where)
    tol = _positive(tol, "tol", where)
    _positive(map_error, "map_error", where)
    state_scale = _positive(state_scale, "state_scale", where)
    if difference_error is not None:
        _positive(difference_error, "difference_error", where)
    if int(max_iterations) < 1:
        raise ValueError(f"{where}: max_iterations must be >= 1, got {max_iterations!r}")
    start = time.perf_counter()
    coarse_map = _CoarseMap(lambda lam: stepper, U0.shape, horizon, start_time)
    x0 = U0.ravel()

    def residual(x):
        return coarse_map(x) - x

    F0 = residual(x0)
    x, facts = _jfnk(
        residual,
        lambda: coarse_map.noise_level,
        x0,
        F0,
        tol=tol,
        noise_factor=noise_factor,
        map_error=map_error,
        state_scale=state_scale,
        difference_error=difference_error,
        max_iterations=max_iterations,
        options=options,
        name="steady",
        what="coarse Newton-Krylov",
    )
    report = SteadyStateReport(
        converged_reason=_reason_name(facts["reason"]),
        newton_iterations=facts["newton_iterations"],
        krylov_iterations=facts["krylov_iterations"],
        map_evaluations=coarse_map.evaluations,
        micro_steps=coarse_map.micro_steps,
        residual_norm=facts["history"][-1] if facts["history"] else float("nan"),
        residual_history=facts["history"],
        tolerance=facts["tolerance"],
        requested_tolerance=tol,
        noise_limited=facts["tolerance"] > tol,
        noise_level=coarse_map.noise_level,
        difference_step=facts["difference_step"],
        difference_error=facts["difference_error"],
        jacobian_type=facts["jacobian_type"],
        line_search=facts["line_search"],
        horizon=horizon,
        seconds=time.perf_counter() - start,
    )
    if report.noise_limited:
        _log.info(
            "coarse_steady_state: tol %.3e is below the noise floor; stopped at %.3e",
            tol,
            report.tolerance,
        )
    if return_report:
        return x.reshape(U0.shape), report
    return x.reshape(U0.shape)


# -- coarse eigenvalues ---------------------------------------------------------------------------


class _ShellDifference:
    """SLEPc/PETSc shell product ``y = (Phi(U + d x/|x|) - Phi(U)) |x| / d``."""

    def __init__(self, directional):
        self.directional = directional
        self.error: BaseException | None = None

    def mult(self, mat, x, y):
        if self.error is None:
            try:
                y.array[:] = self.directional(x.array_r.copy())
                return
            except Exception as exc:  # noqa: BLE001 - re-raised after the eigensolve
                self.error = exc
        y.set(np.nan)


def _eigenvalues(
    coarse_map,
    lam,
    x,
    image,
    k,
    *,
    method,
    dense_limit,
    difference,
    map_error,
    state_scale,
    tol,
    options,
):
    """Leading eigenvalues of ``d Phi / dU`` at ``x``: (eigenvalues, method used)."""
    n = coarse_map.size
    if image is None:
        image = coarse_map(x, lam)
    noise = coarse_map.noise_level
    norm = float(np.linalg.norm(x))
    if method == "auto":
        method = "dense" if n <= dense_limit else "slepc"
    if method == "dense":
        if difference == "central":
            scale = max(norm, float(state_scale))
            step = max(float(map_error), noise / scale) ** (1.0 / 3.0) * scale
        else:
            step = _difference_step(norm, noise, map_error, state_scale)
        jacobian = np.empty((n, n))
        for j in range(n):  # one map evaluation per column: the map is the expensive part
            e = np.zeros(n)
            e[j] = step
            if difference == "central":
                jacobian[:, j] = (coarse_map(x + e, lam) - coarse_map(x - e, lam)) / (2 * step)
            else:
                jacobian[:, j] = (coarse_map(x + e, lam) - image) / step
        values = np.linalg.eigvals(jacobian)
        order = np.argsort(-np.abs(values), kind="stable")
        return values[order[:k]].astype(complex), "dense"
    if method != "slepc":
        raise ValueError(
            f"coarse_eigenvalues: method must be 'auto', 'dense' or 'slepc', got {method!r}"
        )
    try:
        from slepc4py import SLEPc
    except ImportError as exc:
        raise ImportError(
            "coarse_eigenvalues: method='slepc' needs slepc4py (Debian python3-slepc4py, "
            "listed in docker/packages.txt); use method='dense' for small coarse states"
        ) from exc
    if k >= n - 1:
        raise ValueError(
            f"coarse_eigenvalues: SLEPc needs k < n - 1 (k = {k}, n = {n}); use method='dense'"
        )
    step = _difference_step(norm, noise, map_error, state_scale)

    def directional(a):
        size = float(np.linalg.norm(a))
        if size == 0:
            return np.zeros(n)
        return (coarse_map(x + (step / size) * a, lam) - image) * (size / step)

    shell = _ShellDifference(directional)
    matrix = PETSc.Mat().createPython([n, n], shell, comm=MPI.COMM_SELF)
    matrix.setUp()
    prefix = f"hmm_ef_eigenvalues_{next(_counter)}_"
    defaults = {"eps_type": "krylovschur", "eps_tol": float(tol), "eps_max_it": 1000}
    prefixed = PrefixedOptions(prefix, {**defaults, **dict(options or {})})
    eps = SLEPc.EPS().create(MPI.COMM_SELF)
    try:
        eps.setOptionsPrefix(prefix)
        eps.setOperators(matrix)
        eps.setProblemType(SLEPc.EPS.ProblemType.NHEP)
        eps.setWhichEigenpairs(SLEPc.EPS.Which.LARGEST_MAGNITUDE)
        eps.setDimensions(nev=k)
        eps.setFromOptions()
        try:
            eps.solve()
        except PETSc.Error:
            if shell.error is None:
                raise
        if shell.error is not None:
            raise shell.error
        converged = eps.getConverged()
        if converged < k:
            raise CoarseSolveError(
                f"coarse_eigenvalues: SLEPc converged {converged} of {k} eigenvalues in "
                f"{eps.getIterationNumber()} iterations (reason {eps.getConvergedReason()}). "
                "Fix: raise eps_max_it in options, or loosen eps_tol to the map's accuracy",
                reason=str(eps.getConvergedReason()),
            )
        values = np.array([complex(eps.getEigenvalue(i)) for i in range(converged)])
    finally:
        eps.destroy()
        matrix.destroy()
        prefixed.clear()
    order = np.argsort(-np.abs(values), kind="stable")
    return values[order[:k]], "slepc"


def coarse_eigenvalues(
    stepper: Callable,
    U,
    *,
    horizon: float,
    k: int | None = None,
    method: str = "auto",
    dense_limit: int = DENSE_LIMIT,
    difference: str = "forward",
    map_error: float = MAP_ERROR,
    state_scale: float = 1.0,
    tol: float = 1e-10,
    options: Mapping | None = None,
    start_time: float = 0.0,
) -> np.ndarray:
    """The ``k`` leading eigenvalues of the linearised time-horizon map at ``U``.

    ``mu`` are the eigenvalues of the Jacobian of ``Phi(U) = stepper(U, start_time,
    horizon)``, largest magnitude first, computed matrix-free. A steady state is stable when
    every ``|mu| < 1``. When ``Phi`` is the flow of a coarse ODE, its eigenvalues ``sigma``
    are ``log(mu) / horizon`` (module docstring).

    * ``"dense"``: the ``n`` Jacobian columns by finite differences (``n + 1`` map
      evaluations, ``2n`` with ``difference="central"``), then ``numpy.linalg.eigvals``;
    * ``"slepc"``: SLEPc Krylov-Schur (``eps_*`` options under the prefix
      ``hmm_ef_eigenvalues_<n>_``) on a shell matrix whose product is a directional
      difference; one map evaluation per product;
    * ``"auto"``: dense up to ``dense_limit`` coarse unknowns, SLEPc above.

    The difference step is matched to the noise like Newton's (module docstring).

    Args:
        stepper: ``stepper(U, t, T) -> coarse state``.
        U: The coarse state (usually a steady state).
        horizon: Time horizon of the map.
        k: Number of eigenvalues (default ``min(6, n)``; ``k < n - 1`` for SLEPc).
        method: ``"auto"``, ``"dense"`` or ``"slepc"``.
        dense_limit: Largest coarse size for the dense method under ``"auto"``.
        difference: ``"forward"`` or ``"central"`` columns (dense method).
        map_error: Relative error of a deterministic evaluation.
        state_scale: Typical size of the coarse state: the difference step is relative to
            ``max(|U|, state_scale)``.
        tol: SLEPc convergence tolerance (relative residual of an eigenpair).
        options: SLEPc options overriding the defaults (names without prefix).
        start_time: The time ``t`` passed to the stepper.

    Returns:
        Complex array of the ``k`` eigenvalues by decreasing magnitude.

    Raises:
        ValueError, TypeError: Bad arguments.
        CoarseSolveError: SLEPc did not converge, or the map returned non-finite values.
    """
    where = "coarse_eigenvalues"
    _callable(stepper, where)
    U = _state(U, where, "U")
    horizon = _positive(horizon, "horizon", where)
    n = U.size
    if k is None:
        k = min(6, n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{where}: k must be an integer in [1, {n}] (the coarse size), got {k!r}")
    if difference not in ("forward", "central"):
        raise ValueError(f"{where}: difference must be 'forward' or 'central', got {difference!r}")
    if method not in ("auto", "dense", "slepc"):
        raise ValueError(f"{where}: method must be 'auto', 'dense' or 'slepc', got {method!r}")
    _positive(map_error, "map_error", where)
    state_scale = _positive(state_scale, "state_scale", where)
    coarse_map = _CoarseMap(lambda lam: stepper, U.shape, horizon, start_time)
    values, _ = _eigenvalues(
        coarse_map,
        None,
        U.ravel(),
        None,
        int(k),
        method=method,
        dense_limit=int(dense_limit),
        difference=difference,
        map_error=map_error,
        state_scale=state_scale,
        tol=tol,
        options=options,
    )
    return values


# -- continuation ---------------------------------------------------------------------------------


class _Bordered:
    """The coarse map of ``z = (U, lambda)`` and Newton-Krylov on ``[Phi(U) - U; c.z - c0]``."""

    def __init__(self, coarse_map, settings):
        self.map = coarse_map
        self.n = coarse_map.size
        self.settings = settings
        # Pseudo-arclength weights: the RMS of U (independent of the coarse resolution) and
        # lambda itself.
        self.weights = np.r_[np.full(self.n, 1.0 / self.n), 1.0]

    def inner(self, a, b):
        return float(np.dot(self.weights * a, b))

    def norm(self, a):
        return math.sqrt(self.inner(a, a))

    def G(self, z):
        return self.map(z[: self.n], z[self.n]) - z[: self.n]

    def tangent(self, last):
        """Unit tangent at the last of 2 or 3 points.

        The secant of two points; the derivative of the parabola through three points in
        chord length (second order: over a short step the next secant tends to it, which
        the turn test of the step control relies on).
        """
        if len(last) == 2:
            direction = last[1] - last[0]
        else:
            z0, z1, z2 = last
            h1, h2 = self.norm(z1 - z0), self.norm(z2 - z1)
            # d/ds at s = h1 + h2 of the parabola through s = 0, h1, h1 + h2.
            direction = (
                z0 * h2 / (h1 * (h1 + h2))
                - z1 * (h1 + h2) / (h1 * h2)
                + z2 * (h1 + 2 * h2) / ((h1 + h2) * h2)
            )
        return direction / self.norm(direction)

    def correct(self, z_guess, c, c0):
        """Solve ``G(z) = 0, c.z = c0`` from ``z_guess``: ``(z, facts)``."""
        s = self.settings

        def residual(z):
            return np.r_[self.G(z), np.dot(c, z) - c0]

        F0 = residual(z_guess)
        return _jfnk(
            residual,
            lambda: self.map.noise_level,
            np.array(z_guess, dtype=float),
            F0,
            tol=s["tol"],
            noise_factor=s["noise_factor"],
            map_error=s["map_error"],
            state_scale=s["state_scale"],
            difference_error=None,
            max_iterations=s["max_iterations"],
            options=s["options"],
            name="continuation",
            what="continuation corrector",
        )

    def eigenvalues(self, z, k):
        s = self.settings
        x, lam = z[: self.n], z[self.n]
        values, _ = _eigenvalues(
            self.map,
            lam,
            x,
            self.map.known_image(x, lam),
            k,
            method=s["eigenvalue_method"],
            dense_limit=s["dense_limit"],
            difference="forward",
            map_error=s["map_error"],
            state_scale=s["state_scale"],
            tol=s["eigenvalue_tol"],
            options=None,
        )
        return values


def _stability(values):
    return "stable" if np.max(np.abs(values)) < 1.0 else "unstable"


def continuation(
    make_stepper: Callable,
    U0,
    lam0: float,
    lam_end: float,
    *,
    horizon: float,
    step: float,
    tol: float = 1e-8,
    min_step: float | None = None,
    max_step: float | None = None,
    max_points: int = 500,
    max_turn: float = 0.5,
    k: int | None = None,
    eigenvalue_method: str = "auto",
    dense_limit: int = DENSE_LIMIT,
    eigenvalue_tol: float = 1e-10,
    refine_folds: bool = True,
    fold_xtol: float = 1e-5,
    fold_samples: int = 9,
    max_iterations: int = 12,
    map_error: float = MAP_ERROR,
    state_scale: float = 1.0,
    noise_factor: float = NOISE_FACTOR,
    options: Mapping | None = None,
    start_time: float = 0.0,
    stop: Callable | None = None,
) -> Branch:
    """Follow a branch of coarse steady states from ``lam0`` towards ``lam_end``.

    Pseudo-arclength continuation of ``G(U, lambda) = Phi_lambda(U) - U = 0``, with
    ``Phi_lambda(U) = make_stepper(lambda)(U, start_time, horizon)``:

    1. the steady state at ``lam0`` (from the guess ``U0``) and at ``lam0 + step`` (towards
       ``lam_end``) by Newton-Krylov at fixed parameter;
    2. predictor along the tangent ``t`` at the last point, ``z_pred = z_i + ds t``, with
       ``z = (U, lambda)`` and the weighted norm ``|z|^2 = |U|^2 / n + lambda^2`` (the RMS of
       the ``n`` coarse values, so that the step does not depend on the coarse resolution);
       ``t`` is the derivative of the parabola through the last three points in chord length
       (second-order; the secant after the first two points);
    3. corrector: Newton-Krylov (SNES, MFFD Jacobian, GMRES, as in
       :func:`coarse_steady_state`) on the bordered system
       ``[Phi_lambda(U) - U; <t, z - z_i> - ds] = 0``; the Jacobian-vector products are
       differences of the map in ``(U, lambda)`` together;
    4. step control: a corrector that fails, or whose secant turns by more than ``max_turn``
       radians from ``t`` (the turn is ~ curvature * ds / 2), is retried with half the step
       (after a turn, along that secant);
       one that converges in at most 2 Newton iterations multiplies it by 1.5, in 5 or more
       halves it; within ``[min_step, max_step]``;
    5. stop when the parameter passes ``lam_end``, falls back behind ``lam0``, when
       ``stop(lambda, U)`` is true, or after ``max_points`` points.

    At every point the ``k`` leading coarse eigenvalues give the stability (stable when all
    ``|mu| < 1``). A fold is where ``d lambda / ds`` changes sign; it is located on the curve
    ``lambda(p)``, where ``p = d.U`` is the coarse state along the chord ``d`` through the
    fold's neighbours (each value by a corrector with the constraint ``d.U = p``): Brent's
    parabolic search for the extremum to ``fold_xtol`` (relative in ``p``) for a
    deterministic map; for a noisy map a least-squares parabola through ``fold_samples``
    corrector solutions centred on the first estimate, the fold parameter being its vertex
    and its standard error propagated from the fit (the residual variance, ``fold_samples -
    3`` degrees of freedom).

    ``make_stepper(lambda)`` is called for every parameter value the solver evaluates
    (finite differences in ``lambda`` included; the last four are kept): make it cheap, e.g.
    a parameter set on a shared simulator.

    Example:
        >>> branch = continuation(lambda lam: Stepper(lam), [-1.2], -0.6, 0.6,
        ...                       horizon=0.5, step=0.05)
        >>> branch.fold_parameters, branch.stability

    Args:
        make_stepper: ``make_stepper(lambda)`` returns a stepper ``stepper(U, t, T)``.
        U0: Guess of the steady state at ``lam0``.
        lam0: Start parameter.
        lam_end: End parameter (sets the direction).
        horizon: Time horizon of the coarse map.
        step: Initial pseudo-arclength step (weighted norm above).
        tol: Absolute tolerance on ``|Phi(U) - U|`` of each corrector (raised to the noise
            floor of a noisy map).
        min_step: Smallest step (default ``step / 64``); below it continuation stops with
            :class:`ContinuationError`.
        max_step: Largest step (default ``4 * step``).
        max_points: Largest number of branch points.
        max_turn: Largest angle (radians) between the tangent and the secant of a step.
        k: Eigenvalues per point (default ``min(3, n)``).
        eigenvalue_method: ``"auto"``, ``"dense"`` or ``"slepc"`` (see
            :func:`coarse_eigenvalues`).
        dense_limit: Largest coarse size for dense eigenvalues under ``"auto"``.
        eigenvalue_tol: SLEPc tolerance.
        refine_folds: Locate the folds (otherwise the fold outputs are the branch points).
        fold_xtol: Relative tolerance in ``p`` of the deterministic fold search (the
            parameter error is quadratic in it).
        fold_samples: Corrector solutions in the least-squares fold fit of a noisy map.
        max_iterations: Newton iterations per corrector.
        map_error: Relative error of a deterministic evaluation (difference step).
        state_scale: Typical size of ``(U, lambda)``: the difference step is relative to
            ``max(|(U, lambda)|, state_scale)``.
        noise_factor: Newton stops at ``max(tol, noise_factor * noise)``.
        options: PETSc options of the correctors (names without prefix).
        start_time: The time ``t`` passed to the steppers.
        stop: Optional ``stop(lambda, U) -> bool``, asked at every new point: true ends the
            branch there (e.g. a bound on the amplitude of the state).

    Returns:
        The :class:`Branch`: ``parameters``, ``states``, ``stability``, ``eigenvalues``,
        ``folds`` (indices) with ``fold_parameters``, ``fold_states``,
        ``fold_standard_errors``, ``fold_eigenvalues``, and costs.

    Raises:
        ContinuationError: The step fell below ``min_step`` (the branch so far is attached).
        CoarseSolveError: No steady state at ``lam0`` (or at the second point).
        ValueError, TypeError: Bad arguments.
    """
    where = "continuation"
    if not callable(make_stepper):
        raise TypeError(
            f"{where}: make_stepper must be callable as make_stepper(lambda) -> stepper, got "
            f"{type(make_stepper).__name__}"
        )
    U0 = _state(U0, where)
    lam0 = float(lam0)
    lam_end = float(lam_end)
    if not (math.isfinite(lam0) and math.isfinite(lam_end)) or lam0 == lam_end:
        raise ValueError(
            f"{where}: lam0 and lam_end must be finite and different, got {lam0!r}, {lam_end!r}"
        )
    horizon = _positive(horizon, "horizon", where)
    step = _positive(step, "step", where)
    tol = _positive(tol, "tol", where)
    _positive(map_error, "map_error", where)
    state_scale = _positive(state_scale, "state_scale", where)
    min_step = step / 64 if min_step is None else _positive(min_step, "min_step", where)
    max_step = 4 * step if max_step is None else _positive(max_step, "max_step", where)
    if not min_step <= step <= max_step:
        raise ValueError(
            f"{where}: need min_step <= step <= max_step, got {min_step}, {step}, {max_step}"
        )
    max_turn = _positive(max_turn, "max_turn", where)
    if int(fold_samples) < 5:
        raise ValueError(f"{where}: fold_samples must be >= 5, got {fold_samples!r}")
    if int(max_points) < 3:
        raise ValueError(f"{where}: max_points must be >= 3, got {max_points!r}")
    if stop is not None and not callable(stop):
        raise TypeError(f"{where}: stop must be callable as stop(lambda, U) -> bool")
    if eigenvalue_method not in ("auto", "dense", "slepc"):
        raise ValueError(
            f"{where}: eigenvalue_method must be 'auto', 'dense' or 'slepc', got "
            f"{eigenvalue_method!r}"
        )
    n = U0.size
    k = min(3, n) if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{where}: k must be an integer in [1, {n}], got {k!r}")
    start = time.perf_counter()
    coarse_map = _CoarseMap(make_stepper, U0.shape, horizon, start_time, "the stepper")
    system = _Bordered(
        coarse_map,
        {
            "tol": tol,
            "noise_factor": noise_factor,
            "map_error": map_error,
            "state_scale": state_scale,
            "max_iterations": int(max_iterations),
            "options": options,
            "eigenvalue_method": eigenvalue_method,
            "dense_limit": int(dense_limit),
            "eigenvalue_tol": eigenvalue_tol,
        },
    )
    direction = 1.0 if lam_end > lam0 else -1.0
    e_lam = np.r_[np.zeros(n), 1.0]

    points: list[np.ndarray] = []
    eigenvalues: list[np.ndarray] = []
    iterations: list[int] = []

    def accept(z, facts):
        points.append(z)
        iterations.append(facts["newton_iterations"])
        eigenvalues.append(system.eigenvalues(z, k))

    def branch(stop_reason):
        Z = np.array(points)
        arclength = np.r_[0.0, np.cumsum([system.norm(b - a) for a, b in zip(Z[:-1], Z[1:])])]
        values = np.array(eigenvalues)
        return Branch(
            parameters=Z[:, n].copy(),
            states=Z[:, :n].reshape((len(Z), *U0.shape)).copy(),
            eigenvalues=values,
            stability=[_stability(v) for v in values],
            arclength=arclength,
            fold_eigenvalues=np.zeros((0, k), complex),
            newton_iterations=list(iterations),
            map_evaluations=coarse_map.evaluations,
            micro_steps=coarse_map.micro_steps,
            noise_level=coarse_map.noise_level,
            horizon=horizon,
            stop_reason=stop_reason,
            seconds=time.perf_counter() - start,
        )

    # 1. Two points at fixed parameter.
    z0 = np.r_[U0.ravel(), lam0]
    z, facts = system.correct(z0, e_lam, lam0)
    accept(z, facts)
    ds = step
    while True:
        lam1 = lam0 + direction * ds
        try:
            z, facts = system.correct(np.r_[points[0][:n], lam1], e_lam, lam1)
            break
        except CoarseSolveError as exc:
            ds /= 2
            if ds < min_step:
                raise ContinuationError(
                    f"{where}: no steady state near the first one at lambda = {lam1:.10g} "
                    f"(step {2 * ds:.3g} > min_step {min_step:.3g}): {exc}. Is lam0 at a fold? "
                    "Start elsewhere on the branch",
                    branch("failed at the second point"),
                ) from exc
    accept(z, facts)
    tangent = system.tangent(points[:2])

    # 2. Pseudo-arclength steps.
    stop_reason = f"max_points ({max_points}) reached"
    while len(points) < max_points:
        z_i = points[-1]
        predicted = z_i + ds * tangent
        try:
            z, facts = system.correct(
                predicted, system.weights * tangent, system.inner(tangent, z_i) + ds
            )
            secant = z - z_i
            length = system.norm(secant)
            cosine = system.inner(secant, tangent) / length if length > 0 else -1.0
            turned = cosine < math.cos(max_turn)
            failure = f"the secant turned by {math.acos(max(-1.0, min(1.0, cosine))):.3f} rad"
            if turned and length > 0:
                # The corrected point is on the branch: its chord is a better direction than
                # a tangent extrapolated from points that did not see a sharp turn coming.
                tangent = secant / length
        except CoarseSolveError as exc:
            turned, failure = True, str(exc)
        if turned:
            ds /= 2
            if ds < min_step:
                raise ContinuationError(
                    f"{where}: the step fell below min_step = {min_step:.3g} at lambda = "
                    f"{z_i[n]:.10g} after {len(points)} points ({failure}). Fix: a smaller "
                    "min_step, a larger max_turn, or a tighter tol",
                    branch("step below min_step"),
                )
            continue
        accept(z, facts)
        tangent = system.tangent(points[-3:])
        if facts["newton_iterations"] <= 2:
            ds = min(1.5 * ds, max_step)
        elif facts["newton_iterations"] >= 5:
            ds = max(0.5 * ds, min_step)
        lam = z[n]
        if direction * (lam - lam_end) >= 0:
            stop_reason = f"passed lam_end = {lam_end:.10g}"
            break
        if direction * (lam - lam0) < 0:
            stop_reason = f"went back past lam0 = {lam0:.10g}"
            break
        if stop is not None and stop(lam, z[:n].reshape(U0.shape)):
            stop_reason = f"stop(lambda, U) at lambda = {lam:.10g}"
            break

    result = branch(stop_reason)
    _locate_folds(result, system, points, k, refine_folds, fold_xtol, int(fold_samples))
    result.map_evaluations = coarse_map.evaluations
    result.micro_steps = coarse_map.micro_steps
    result.noise_level = coarse_map.noise_level
    result.seconds = time.perf_counter() - start
    return result


def _locate_folds(result, system, points, k, refine, xtol, samples):
    """Fill the fold fields of ``result``: sign changes of ``d lambda / ds``, then located."""
    n = system.n
    Z = np.array(points)
    dlam = np.diff(Z[:, n])
    folds = [i for i in range(1, len(Z) - 1) if dlam[i - 1] * dlam[i] < 0]
    parameters, states, errors, values = [], [], [], []
    for i in folds:
        if refine:
            z, error = _refine_fold(system, Z[i - 1], Z[i], Z[i + 1], xtol, samples)
            mu = system.eigenvalues(z, k)
        else:
            z, error, mu = Z[i], 0.0, result.eigenvalues[i]
        parameters.append(z[n])
        states.append(z[:n].reshape(result.states.shape[1:]))
        errors.append(error)
        values.append(mu)
    result.folds = folds
    result.fold_parameters = np.array(parameters)
    result.fold_states = np.array(states).reshape((len(folds), *result.states.shape[1:]))
    result.fold_standard_errors = np.array(errors)
    result.fold_eigenvalues = np.array(values, dtype=complex).reshape(len(folds), k)


def _refine_fold(system, z_a, z_b, z_c, xtol, samples):
    """Extremum of ``lambda(p)``, ``p = d.U`` along the chord ``d``: ``(z_fold, std error)``."""
    n = system.n
    chord = z_c[:n] - z_a[:n]
    chord /= np.linalg.norm(chord)
    known = [float(np.dot(chord, z[:n])) for z in (z_a, z_b, z_c)]
    if not known[0] < known[1] < known[2]:
        _log.warning(
            "continuation: the branch is not monotone along the chord near the fold at "
            "lambda = %.10g; the fold is the branch point (not refined)",
            z_b[n],
        )
        return z_b.copy(), 0.0
    maximum = z_b[n] > z_a[n]
    sign = 1.0 if maximum else -1.0
    neighbours = np.array([z_a, z_b, z_c])

    def guess(p):
        # Lagrange interpolation of the three branch points in p.
        weights = [
            np.prod([(p - known[m]) / (known[j] - known[m]) for m in range(3) if m != j])
            for j in range(3)
        ]
        return np.dot(weights, neighbours)

    constraint = np.r_[chord, 0.0]

    def solve_at(p):
        z, _ = system.correct(guess(p), constraint, p)
        return z

    if system.map.noise_level == 0:
        from scipy.optimize import minimize_scalar

        memo = {known[j]: neighbours[j] for j in range(3)}

        def objective(p):
            if p not in memo:
                memo[p] = solve_at(p)
            return -sign * memo[p][n]

        found = minimize_scalar(
            objective, bracket=tuple(known), method="brent", options={"xtol": xtol}
        )
        return memo[found.x].copy(), 0.0

    # A noisy map: the vertex of the parabola through the three branch points, then a
    # least-squares parabola through samples centred on it.
    lam = neighbours[:, n]
    c2, c1, c0 = np.polyfit(known, lam, 2)
    centre = float(np.clip(-c1 / (2 * c2), known[0], known[2]))
    half_width = 0.5 * (known[2] - known[0])
    offsets = np.linspace(-half_width, half_width, samples)
    solutions = np.array([solve_at(centre + u) for u in offsets])
    design = np.vander(offsets, 3, increasing=True)
    coefficients, *_ = np.linalg.lstsq(design, solutions[:, n], rcond=None)
    a0, a1, a2 = coefficients
    residuals = solutions[:, n] - design @ coefficients
    variance = float(residuals @ residuals) / (samples - 3)
    covariance = variance * np.linalg.inv(design.T @ design)
    if sign * a2 >= 0 or abs(a2) <= 2 * math.sqrt(covariance[2, 2]):
        _log.warning(
            "continuation: the fold at lambda ~ %.6g is not resolved above the noise (curvature "
            "%.3g +- %.3g); its parameter is the extreme sample",
            z_b[n],
            a2,
            math.sqrt(covariance[2, 2]),
        )
        best = int(np.argmax(sign * solutions[:, n]))
        return solutions[best], math.sqrt(variance)
    vertex = -a1 / (2 * a2)
    fold_parameter = a0 - a1**2 / (4 * a2)
    gradient = np.array([1.0, -a1 / (2 * a2), a1**2 / (4 * a2**2)])
    standard_error = math.sqrt(max(float(gradient @ covariance @ gradient), 0.0))
    z = solve_at(centre + vertex)
    z = z.copy()
    z[n] = fold_parameter
    return z, standard_error
