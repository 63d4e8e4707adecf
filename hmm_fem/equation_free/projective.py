"""Projective integration: long coarse steps from short bursts of micro simulation.

A burst of micro simulation (lift, heal, burst, restrict) estimates the coarse time
derivative; a macro scheme extrapolates with it over a step much longer than the burst
(Gear & Kevrekidis, SIAM J. Sci. Comput. 24, 2003). The schemes follow the EquationFreeGit
toolbox (Maclean, Bunder & Roberts, arXiv:1909.04917, functions ``PIRK2``, ``PIRK4``,
``PIG``):

* ``"PFE"``, ``"PIRK2"``, ``"PIRK4"``: projective forward Euler and the projective
  Runge-Kutta schemes of order 2 (improved Euler) and 4 (classical). Stage ``i`` of a step
  from the first burst's reference point ``(tau, V)`` to ``tau + D`` needs the derivative
  at ``tau + c_i D``: the state is projected to ``tau + c_i D - lag`` (``lag`` = time from a
  burst's lift to its reference time) and a burst started there ends its fit at the stage
  time. The step is ``V + D sum_i b_i k_i``.
* any :func:`scipy.integrate.solve_ivp` method name (``"RK45"``, ``"LSODA"``, ...): the PIG
  family, the scipy integrator driven by the burst's derivative. By default (``cdmc``) each
  evaluation at ``(t, U)`` runs a first burst, projects back by its lag and runs a second
  burst that ends its fit at ``t`` (constraint-defined manifold computing, Gear et al.,
  SIAM J. Appl. Dyn. Syst. 4, 2005), so the derivative belongs to ``t`` and not to
  ``t + lag``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ProjectiveReport", "ProjectiveResult", "StepRecord", "projective_integrate"]

# Explicit Runge-Kutta tableaux (c, A, b) of the projective schemes.
_TABLEAUX = {
    "PFE": ((0.0,), ((),), (1.0,)),
    "PIRK2": ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5)),
    "PIRK4": (
        (0.0, 0.5, 0.5, 1.0),
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
}
# Order in the step of each scheme's error estimate (see _ProjectiveRK.estimate).
_ESTIMATE_ORDER = {"PFE": 2, "PIRK2": 2, "PIRK4": 5}
_IVP_METHODS = ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")


@dataclass(frozen=True)
class StepRecord:
    """One attempted macro step.

    Attributes:
        time: Start of the step.
        step: Length of the step (to its end, lag included).
        kind: ``"projective"``, ``"direct"`` (simulated by the micro simulator, because
            the step was not longer than the bursts a projective step needs), or
            ``"rejected"`` (a projective step whose error estimate exceeded the tolerance).
        error: Error estimate over the tolerance (``<= 1`` accepted); ``None`` without
            ``rtol`` and for direct steps.
        noise: The part of ``error`` that is noise of the derivative estimates (one
            standard error); ``None`` if unknown.
    """

    time: float
    step: float
    kind: str
    error: float | None = None
    noise: float | None = None


@dataclass
class ProjectiveReport:
    """What a projective integration did and what it cost.

    Attributes:
        method: The scheme.
        micro_steps: Micro steps spent (all replicas), from ``stepper.micro_steps``;
            ``None`` if the stepper does not count them.
        full_run_micro_steps: Micro steps of a full micro run over the time span, from
            ``stepper.full_run_micro_steps(t_end - t0)``; ``None`` if unavailable.
        accepted_steps: Accepted projective steps.
        rejected_steps: Rejected projective steps (error control; ``None`` for PIG, whose
            rejections scipy does not report).
        direct_steps: Steps simulated directly by the micro simulator.
        bursts: Bursts run.
        steps: Every attempted step, in order (empty for PIG).
        burst_times: Reference time of every burst.
        derivatives: The derivative estimated by every burst (the slow vector field).
        derivative_errors: Their standard errors.
        message: The scipy solver's message (PIG), else ``""``.
    """

    method: str
    micro_steps: int | None = None
    full_run_micro_steps: int | None = None
    accepted_steps: int = 0
    rejected_steps: int | None = 0
    direct_steps: int = 0
    bursts: int = 0
    steps: list[StepRecord] = field(default_factory=list)
    burst_times: list[float] = field(default_factory=list)
    derivatives: list[np.ndarray] = field(default_factory=list)
    derivative_errors: list[np.ndarray] = field(default_factory=list)
    message: str = ""

    @property
    def saving(self) -> float | None:
        """Micro steps of the full run over micro steps spent (``None`` if unknown)."""
        if not self.micro_steps or self.full_run_micro_steps is None:
            return None
        return self.full_run_micro_steps / self.micro_steps

    def __str__(self) -> str:
        rejected = "?" if self.rejected_steps is None else self.rejected_steps
        text = (
            f"{self.method}: {self.accepted_steps} projective steps accepted, {rejected} "
            f"rejected, {self.direct_steps} direct; {self.bursts} bursts"
        )
        if self.micro_steps is not None:
            text += f"; {self.micro_steps} micro steps"
            if self.saving is not None:
                text += f" against {self.full_run_micro_steps} for a full run ({self.saving:.1f}x)"
        return text


class ProjectiveResult(tuple):
    """``(times, states)``, with the :class:`ProjectiveReport` as :attr:`report`.

    Unpacks as ``times, states = projective_integrate(...)``; keep the result to read
    ``result.report`` (also ``result.times``, ``result.states``).
    """

    def __new__(cls, times: np.ndarray, states: np.ndarray, report: ProjectiveReport):
        """The pair ``(times, states)`` carrying ``report``."""
        self = super().__new__(cls, (times, states))
        self.report = report
        return self

    @property
    def times(self) -> np.ndarray:
        """Output times, shape ``(n,)``."""
        return self[0]

    @property
    def states(self) -> np.ndarray:
        """Coarse states at the output times, shape ``(n, *U0.shape)``."""
        return self[1]


def projective_integrate(
    stepper,
    U0,
    t_span,
    *,
    method: str = "PIRK2",
    projective_step: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_step: float = math.inf,
    cdmc: bool = True,
    ivp_options: dict | None = None,
) -> ProjectiveResult:
    """Integrate the coarse dynamics of a micro simulator by projective integration.

    What the stepper must offer (duck typing; :class:`CoarseTimeStepper` has it all):

    * ``stepper.burst(U, t)``: a burst from ``U`` at ``t``, returning an object with
      ``time`` (reference time of the estimate, ``> t``), ``state`` and ``derivative``
      (arrays of ``U``'s shape); optionally ``duration`` (micro time simulated) and
      ``derivative_error``.
    * ``stepper(U, t, T)``: the coarse state at ``t + T``, used for steps too short to
      project (PFE/PIRK schemes only).
    * optional ``stepper.burst_duration`` (micro time of one burst, known before the first
      burst), ``stepper.micro_steps`` and ``stepper.full_run_micro_steps(duration)`` for
      the cost report.

    Steps (PFE/PIRK schemes): with neither ``projective_step`` nor ``rtol``, one step per
    interval of ``t_span`` (as in EquationFreeGit); with ``projective_step``, equal steps of
    at most that length between successive output times; with ``rtol``, adaptive steps
    (``projective_step``, if given, is the first one). A step that is not longer than the
    bursts it needs (``stages * burst duration``; 11 bursts for PIRK4 with step doubling)
    is simulated directly with ``stepper(U, t, step)``: exact, and no dearer.

    Accuracy: the result follows the micro dynamics of the *lifted* states. Every step
    lifts once, and the lift's distance from the slow manifold shifts the coarse state
    while the fast variables heal (for a fast variable off its manifold by ``delta``,
    relaxing at rate ``1/eps``, a shift of order ``eps * delta``): lift as close to the
    slow manifold as you know it, and heal long enough that the fit window sees the
    relaxed dynamics.

    Error control (``rtol``): the error estimate ``err`` is compared with
    ``atol + rtol * max(|U_n|, |U_n+1|)`` componentwise (max norm). ``"PFE"``: the Heun
    correction ``D/2 (k(U_n+1) - k(U_n))`` (the burst at the new state is the next
    step's first burst); ``"PIRK2"``: its difference from PFE, ``D/2 (k2 - k1)`` (no extra
    burst); ``"PIRK4"``: step doubling, ``(two half steps - one step) / 15`` (the two half
    steps are kept). The error estimates include the noise of the derivatives: a
    tolerance below it makes steps shrink and is warned about. Every attempted step is in
    ``result.report.steps``.

    Example:
        With ``stepper`` a :class:`CoarseTimeStepper`::

            result = projective_integrate(stepper, np.array([1.0]), np.linspace(0, 6, 7),
                                          method="PIRK4")
            times, states = result
            print(result.report)     # steps, bursts, micro steps against a full run

    Args:
        stepper: The coarse time-stepper (see above).
        U0: Initial coarse state (float array) at ``t_span[0]``.
        t_span: Increasing times; the first is the initial time. With two entries, the
            result holds every macro step; with more, exactly these times.
        method: ``"PFE"``, ``"PIRK2"``, ``"PIRK4"``, or a :func:`scipy.integrate.solve_ivp`
            method name (``"RK23"``, ``"RK45"``, ``"DOP853"``, ``"Radau"``, ``"BDF"``,
            ``"LSODA"``) or ``OdeSolver`` subclass (PIG).
        projective_step: Macro step (see above); for PIG, the solver's ``max_step``.
        rtol: Relative tolerance of the error control; for PIG, solve_ivp's ``rtol``
            (default: solve_ivp's, 1e-3).
        atol: Absolute tolerance (default ``rtol * max|U0|``, or 1e-12 if ``U0 = 0``).
        max_step: Largest adaptive step.
        cdmc: PIG only: align each derivative with the evaluation time (two bursts per
            evaluation; see the module docstring). ``False``: one burst, derivative taken
            at ``t + lag``.
        ivp_options: PIG only: further keyword arguments of ``solve_ivp``.

    Returns:
        A :class:`ProjectiveResult`: ``(times, states)`` with ``states[0] = U0``, and the
        :class:`ProjectiveReport` as ``.report``.

    Raises:
        ValueError: If an argument is invalid.
        TypeError: If the stepper lacks ``burst``.
        RuntimeError: If the scipy solver fails (PIG).
    """
    U0 = np.array(U0, dtype=np.float64)
    if not np.all(np.isfinite(U0)):
        raise ValueError(f"U0 has non-finite entries: {U0}")
    t_span = np.asarray(t_span, dtype=np.float64)
    if t_span.ndim != 1 or t_span.size < 2 or not np.all(np.isfinite(t_span)):
        raise ValueError(
            f"t_span must hold at least two finite times (t0, t_end, ...), got {t_span}"
        )
    if not np.all(np.diff(t_span) > 0):
        raise ValueError(
            f"t_span must be strictly increasing (bursts run forward in time), got {t_span}"
        )
    if not callable(getattr(stepper, "burst", None)):
        raise TypeError(
            f"{type(stepper).__name__} has no burst(U, t) method: projective integration "
            "needs the derivative estimate of a burst (CoarseTimeStepper offers it)"
        )
    if projective_step is not None:
        projective_step = float(projective_step)
        if not (math.isfinite(projective_step) and projective_step > 0):
            raise ValueError(f"projective_step must be positive, got {projective_step}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}")
    if not max_step > 0:
        raise ValueError(f"max_step must be positive, got {max_step}")
    if atol is None and rtol is not None:
        scale = float(np.abs(U0).max(initial=0.0))
        atol = rtol * scale if scale > 0 else 1e-12

    report = ProjectiveReport(method=method if isinstance(method, str) else method.__name__)
    spent = getattr(stepper, "micro_steps", None)
    if isinstance(method, str) and method in _TABLEAUX:
        if ivp_options:
            raise ValueError(f"ivp_options apply to the scipy (PIG) methods, not to {method}")
        integrator = _ProjectiveRK(stepper, method, report, rtol, atol, max_step)
        times, states = integrator.run(U0, t_span, projective_step)
    elif (isinstance(method, str) and method in _IVP_METHODS) or isinstance(method, type):
        times, states = _pig(
            stepper, U0, t_span, method, report, projective_step, rtol, atol, cdmc, ivp_options
        )
    else:
        raise ValueError(
            f"unknown method {method!r}: use one of {', '.join(_TABLEAUX)} (projective "
            f"Runge-Kutta) or {', '.join(_IVP_METHODS)} (scipy solve_ivp, the PIG family)"
        )
    if spent is not None:
        report.micro_steps = int(stepper.micro_steps - spent)
    full_run = getattr(stepper, "full_run_micro_steps", None)
    if callable(full_run):
        report.full_run_micro_steps = int(full_run(float(t_span[-1] - t_span[0])))
    return ProjectiveResult(times, states, report)


class _ProjectiveRK:
    """Projective forward Euler and Runge-Kutta steps with optional error control."""

    def __init__(self, stepper, method, report, rtol, atol, max_step):
        self.stepper, self.method, self.report = stepper, method, report
        self.c, self.A, self.b = _TABLEAUX[method]
        self.stages = len(self.c)
        self.rtol, self.atol, self.max_step = rtol, atol, max_step
        # Bursts one attempted step costs; a step that is not longer than that many bursts
        # is simulated directly (step doubling of PIRK4: 4 + 3 + 4).
        self.cost = 11 if (method == "PIRK4" and rtol is not None) else self.stages
        self.duration = getattr(stepper, "burst_duration", None)
        self._cache = []  # bursts at (t, U) that a retry or the next step can reuse
        self._warned_noise = False

    # -- bursts ----------------------------------------------------------------------------

    def burst(self, U, t, lag=None):
        """A burst from ``(t, U)``, recorded; ``lag``: the lag it must have, if known."""
        for t_cached, U_cached, cached in self._cache:
            if t_cached == t and np.array_equal(U_cached, U):
                return cached
        b = self.stepper.burst(U, t)
        if not b.time > t:
            raise ValueError(
                f"the burst from t = {t} returned the reference time {b.time}: it must lie "
                "after the burst's start"
            )
        if lag is not None and abs((b.time - t) - lag) > 1e-9 * max(1.0, abs(lag)):
            raise ValueError(
                f"the burst lag changed within a step ({lag} then {b.time - t}): projective "
                "Runge-Kutta needs bursts of one length"
            )
        if self.duration is None:
            self.duration = float(getattr(b, "duration", b.time - t))
        self.report.bursts += 1
        self.report.burst_times.append(float(b.time))
        self.report.derivatives.append(np.array(b.derivative))
        self.report.derivative_errors.append(
            np.array(getattr(b, "derivative_error", np.full_like(b.derivative, np.nan)))
        )
        self._cache = [*self._cache[-1:], (t, U, b)]
        return b

    def projectable(self, t, end):
        """Whether a projective step over ``[t, end]`` is cheaper than simulating it."""
        duration = self.duration if self.duration is not None else 0.0
        return end - t > self.cost * duration

    def rk_step(self, first, lag, end):
        """One projective Runge-Kutta step from the burst ``first`` to time ``end``.

        Stage ``i`` needs the derivative at ``tau + c_i D``: its burst starts ``lag``
        earlier, from the state projected along the stage's slope.
        """
        tau, V = first.time, np.asarray(first.state, dtype=np.float64)
        D = end - tau
        bursts, ks = [first], [np.asarray(first.derivative, dtype=np.float64)]
        for i in range(1, self.stages):
            slope = sum(a * k for a, k in zip(self.A[i], ks, strict=False) if a) / self.c[i]
            start = tau + self.c[i] * D - lag
            b = self.burst(V + (self.c[i] * D - lag) * slope, start, lag)
            bursts.append(b)
            ks.append(np.asarray(b.derivative, dtype=np.float64))
        increment = sum(bi * k for bi, k in zip(self.b, ks, strict=True))
        return V + D * increment, bursts

    # -- one step --------------------------------------------------------------------------

    def attempt(self, U, t, end):
        """A projective step over ``[t, end]``: ``(U_new, error, noise)``.

        ``error`` and ``noise`` are ``None`` without ``rtol`` (``noise`` also when the
        stepper gives no standard errors). Returns ``None`` instead if the step is too
        short to project.
        """
        if not self.projectable(t, end):
            return None
        first = self.burst(U, t)
        lag = first.time - t
        if not self.projectable(t, end) or first.time >= end:
            return None
        if self.rtol is None:
            return self.rk_step(first, lag, end)[0], None, None
        if self.method == "PIRK4":
            middle = 0.5 * (t + end)
            if first.time >= middle:
                return None
            U_big = self.rk_step(first, lag, end)[0]
            U_half = self.rk_step(first, lag, middle)[0]
            U_new = self.rk_step(self.burst(U_half, middle, lag), lag, end)[0]
            return U_new, (U_new - U_big) / 15.0, None
        U_new, bursts = self.rk_step(first, lag, end)
        # PIRK2: its difference from PFE; PFE: Heun's correction, whose burst at the new
        # state is the next step's first burst.
        other = bursts[1] if self.method == "PIRK2" else self.burst(U_new, end, lag)
        D = end - first.time
        error = 0.5 * D * (np.asarray(other.derivative) - np.asarray(first.derivative))
        errors = [getattr(b, "derivative_error", None) for b in (first, other)]
        noise = None
        if all(e is not None and np.all(np.isfinite(e)) for e in errors):
            noise = 0.5 * D * np.sqrt(np.asarray(errors[0]) ** 2 + np.asarray(errors[1]) ** 2)
        return U_new, error, noise

    # -- the integration -------------------------------------------------------------------

    def run(self, U0, t_span, projective_step):
        t0, t_end = float(t_span[0]), float(t_span[-1])
        every_step = t_span.size == 2
        times, states = [t0], [U0]
        t, U = t0, U0
        adaptive = self.rtol is not None
        step = projective_step
        if adaptive and step is None:
            step = (t_end - t0) / 16
            if self.duration is not None:  # start with a step worth projecting
                step = min(t_end - t0, max(step, 2 * self.cost * self.duration))
        if step is not None:
            step = min(step, self.max_step)
        exponent = 1.0 / _ESTIMATE_ORDER[self.method]
        for t_out in t_span[1:]:
            t_out = float(t_out)
            while t < t_out:
                if step is None:
                    end = t_out
                elif adaptive:
                    # Land on the output time rather than leave a sliver step before it.
                    end = t_out if t + 1.1 * step >= t_out else t + step
                else:
                    end = t + (t_out - t) / math.ceil((t_out - t) / step * (1 - 1e-9))
                if t_out - end <= 1e-9 * (end - t):  # round-off must not leave a sliver
                    end = t_out
                outcome = self.attempt(U, t, end)
                if outcome is None:
                    U = np.asarray(self.stepper(U, t, end - t), dtype=np.float64)
                    self.report.direct_steps += 1
                    self.report.steps.append(StepRecord(t, end - t, "direct"))
                    if adaptive:  # probe back towards steps worth projecting
                        step = min(self.max_step, 2 * step)
                else:
                    U_new, error, noise = outcome
                    if error is None:
                        accepted, ratio, noise_ratio = True, None, None
                    else:
                        scale = self.atol + self.rtol * np.maximum(np.abs(U), np.abs(U_new))
                        ratio = float(np.max(np.abs(error) / scale))
                        noise_ratio = None if noise is None else float(np.max(noise / scale))
                        accepted = ratio <= 1.0
                        self._warn_noise(noise_ratio, t)
                        factor = 5.0 if ratio == 0 else 0.9 * ratio**-exponent
                        factor = min(5.0 if accepted else 1.0, max(0.2, factor))
                        step = min(self.max_step, factor * (end - t))
                    kind = "projective" if accepted else "rejected"
                    self.report.steps.append(StepRecord(t, end - t, kind, ratio, noise_ratio))
                    if not accepted:
                        self.report.rejected_steps += 1
                        continue
                    self.report.accepted_steps += 1
                    U = U_new
                t = end
                if every_step:
                    times.append(t)
                    states.append(U)
            if not every_step:
                times.append(t_out)
                states.append(U)
        return np.array(times), np.array(states)

    def _warn_noise(self, noise_ratio, t):
        if noise_ratio is not None and noise_ratio > 1.0 and not self._warned_noise:
            self._warned_noise = True
            warnings.warn(
                f"{self.method} at t = {t:.6g}: the noise of the derivative estimates alone "
                f"exceeds the tolerance ({noise_ratio:.2g} times); steps shrink to beat the "
                "noise. Use more replicas or a looser rtol/atol.",
                RuntimeWarning,
                stacklevel=4,
            )


def _pig(stepper, U0, t_span, method, report, projective_step, rtol, atol, cdmc, ivp_options):
    """The PIG family: a scipy solve_ivp method driven by burst derivatives."""
    from scipy.integrate import solve_ivp

    shape = U0.shape

    def record(b):
        report.bursts += 1
        report.burst_times.append(float(b.time))
        report.derivatives.append(np.array(b.derivative))
        report.derivative_errors.append(
            np.array(getattr(b, "derivative_error", np.full_like(b.derivative, np.nan)))
        )

    def derivative(t, y):
        U = y.reshape(shape)
        first = stepper.burst(U, t)
        record(first)
        if not cdmc:
            return np.asarray(first.derivative, dtype=np.float64).ravel()
        lag = first.time - t
        aligned = stepper.burst(U - lag * np.asarray(first.derivative), t - lag)
        record(aligned)
        return np.asarray(aligned.derivative, dtype=np.float64).ravel()

    options = dict(ivp_options or {})
    if rtol is not None:
        options.setdefault("rtol", rtol)
    if atol is not None:
        options.setdefault("atol", atol)
    if projective_step is not None:
        options.setdefault("max_step", projective_step)
    if "t_eval" in options:
        raise ValueError("give the output times as t_span, not as ivp_options['t_eval']")
    if t_span.size > 2:
        options["dense_output"] = True
    solution = solve_ivp(
        derivative, (float(t_span[0]), float(t_span[-1])), U0.ravel(), method=method, **options
    )
    report.message = solution.message
    if solution.status < 0:
        raise RuntimeError(
            f"projective integration with {report.method} failed: {solution.message}"
        )
    report.accepted_steps = len(solution.t) - 1
    report.rejected_steps = None
    if t_span.size > 2:
        times, values = t_span.copy(), solution.sol(t_span).T
    else:
        times, values = np.asarray(solution.t, dtype=np.float64), solution.y.T
    states = values.reshape(len(times), *shape)
    states[0] = U0
    return times, states
