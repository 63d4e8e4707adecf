"""Error control of the HMM drift estimate: burn-in, window and replicas from a tolerance.

The error of a drift estimate ``F_hat`` at a slow state has two parts:

* a **bias** from the burn-in: the fast process starts out of equilibrium (lift, or the
  previous macro step's states); if the ensemble mean of ``f`` relaxes like
  ``F + A exp(-s / tau_r)``, the average of ``f`` over a window ``T_w`` after a burn-in
  ``T_b`` is off by ``A (tau_r / T_w) exp(-T_b / tau_r) (1 - exp(-T_w / tau_r))``;
* a **statistical error** ``SE^2 = 2 tau_int Var(f) / (R T_w)`` with ``tau_int`` the
  integrated autocorrelation time of ``f`` and ``R`` the replicas.

:func:`plan_burst` measures ``Var(f)``, ``tau_int``, ``A`` and ``tau_r`` in a pilot run
(cold starts from the lift, ``pilot_replicas`` replicas over ``pilot_time``) and returns
the cheapest settings meeting ``|F_hat - F| <= tolerance`` at the given confidence, with the
budget ``bias <= bias_fraction * tolerance`` and ``t_{R-1} SE <= (1 - bias_fraction) *
tolerance``. The cost of an estimate, ``R (T_b + T_w) / dt`` fast steps, is smallest with
the fewest replicas for a fixed ``R T_w`` (the burn-in is paid per replica), so ``R`` is
``min_replicas`` unless given, and the window follows; the window is at least
``min_window * tau_int`` so that the time average is over several correlation times. The
relaxation is measured on the ensemble mean of the pilot's cold starts: an exponential
``A exp(-s / tau_r)`` is fitted to the tail of its deviation from the stationary value
where that stands 4 standard errors above the noise, with ``tau_r >= tau_int`` and
``A >= d0`` (a nonlinear ``f`` of a linearly relaxing fast state decays with an amplitude
above ``d0``: ``<Y^3>`` from ``Y = 0`` towards N(2, 1/2) has ``d0 = 11`` but
``A ~ 27``); the integrated autocorrelation time alone can underestimate the relaxation
when ``f`` hardly sees the slowest mode.

**Warm starts.** In an integration each burst starts from the fast states of the previous
macro step, out of equilibrium by the change of the slow state over the step; the lift may
be close to equilibrium (then the pilot asks for no burn-in) while these starts are not
(protein copy numbers lagging a growing cell biased its growth rate by 0.3 %, half a
standard error per step, with no burn-in, and over 20 steps 3.6 standard errors at the end:
the bias of a lag has one sign and adds up like the number of steps, the noise like its
square root). :func:`plan_warm_starts` estimates the deviation of a warm start at ``x0``
by linear response (the part of ``dF/dx`` that goes through the fast state's measure,
times the step) and :meth:`BurstPlan.for_warm_starts` extends the burn-in so that this
bias stays below ``bias_fraction * tolerance / sqrt(steps)``;
:func:`~hmm_fem.micro.sde.hmm_integrate` with a tolerance does both.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .estimator import FastSlowEstimator, student_quantile

__all__ = ["BurstPlan", "plan_burst", "plan_warm_starts"]


@dataclass(frozen=True)
class BurstPlan:
    """Burst settings chosen by :func:`plan_burst`, with the pilot's measurements.

    Attributes:
        burn_in: Burn-in time.
        window: Averaging window.
        replicas: Replicas per estimate.
        tolerance: The target ``|F_hat - F|``.
        confidence: Confidence level of the target.
        correlation_time: Integrated autocorrelation time of ``f`` per component.
        relaxation_time: Relaxation time of the ensemble mean per component.
        relaxation_amplitude: Amplitude ``A`` of its exponential tail per component.
        variance: Stationary variance of ``f`` per component.
        initial_deviation: ``|<f>_lift - F|`` per component.
        standard_error: Predicted standard error per component.
        bias: Predicted burn-in bias per component.
        fast_steps: Fast steps of one estimate with these settings.
        pilot_fast_steps: Fast steps the pilot cost.
        bias_fraction: Share of the tolerance given to the bias.
        micro_dt: The estimator's micro step.
        warm_change: The deviation of the mean of ``f`` at the start of a warm burst that
            the burn-in covers (``None``: cold starts only).
        warm_bias: The predicted bias of a warm-started estimate.
    """

    burn_in: float
    window: float
    replicas: int
    tolerance: float
    confidence: float
    correlation_time: np.ndarray
    relaxation_time: np.ndarray
    relaxation_amplitude: np.ndarray
    variance: np.ndarray
    initial_deviation: np.ndarray
    standard_error: np.ndarray
    bias: np.ndarray
    fast_steps: int
    pilot_fast_steps: int
    bias_fraction: float = 0.2
    micro_dt: float = 0.0
    warm_change: np.ndarray | None = None
    warm_bias: np.ndarray | None = None

    @property
    def settings(self) -> dict:
        """``burn_in``, ``window`` and ``replicas``, for :meth:`FastSlowEstimator.configure`."""
        return {"burn_in": self.burn_in, "window": self.window, "replicas": self.replicas}

    def for_warm_starts(self, change, *, steps: int = 1, relaxation=None) -> BurstPlan:
        """The plan with a burn-in that also covers warm starts off by ``change``.

        A warm start's bias has the same sign step after step (the fast state lags the
        slow one), so over ``steps`` macro steps it adds up like ``steps`` while the noise
        adds up like ``sqrt(steps)``: its budget per estimate is ``bias_fraction *
        tolerance / sqrt(steps)``.

        Args:
            change: Deviation of the mean of ``f`` at the start of a warm burst from its
                stationary value (per component, or one number).
            steps: Number of macro steps of the integration.
            relaxation: Relaxation time of that deviation (default: the pilot's).

        Returns:
            A new plan (the window and replicas are unchanged; the burn-in is the larger
            of the cold-start and the warm-start requirement).
        """
        shape = self.relaxation_amplitude.shape
        change = np.broadcast_to(np.abs(np.asarray(change, dtype=np.float64)), shape).copy()
        tau_r = self.relaxation_time
        if relaxation is not None:
            tau_r = np.maximum(tau_r, np.broadcast_to(np.asarray(relaxation, float), shape))
        target = self.bias_fraction * self.tolerance / math.sqrt(max(int(steps), 1))
        warm, warm_bias = _burn_in(change, tau_r, self.window, target, self.micro_dt)
        if warm <= self.burn_in:
            warm_bias = warm_bias * np.exp(-(self.burn_in - warm) / np.maximum(tau_r, 1e-300))
            return dataclasses.replace(self, warm_change=change, warm_bias=warm_bias)
        cold_bias = self.bias * np.exp(
            -(warm - self.burn_in) / np.maximum(self.relaxation_time, 1e-300)
        )
        return dataclasses.replace(
            self,
            burn_in=warm,
            bias=cold_bias,
            fast_steps=self.replicas * round((warm + self.window) / self.micro_dt),
            warm_change=change,
            warm_bias=warm_bias,
        )

    def __str__(self) -> str:
        return (
            f"burn-in {self.burn_in:.4g}, window {self.window:.4g}, {self.replicas} replicas "
            f"({self.fast_steps} fast steps per estimate; tau_int "
            f"{np.max(self.correlation_time):.3g}, predicted SE "
            f"{np.max(self.standard_error):.3g}, bias {np.max(self.bias):.2g} for a tolerance "
            f"of {self.tolerance:g} at {self.confidence:g}"
            + (
                ""
                if self.warm_bias is None
                else f"; warm-start bias {np.max(self.warm_bias):.2g}"
            )
            + f"; pilot {self.pilot_fast_steps} fast steps)"
        )


def integrated_autocorrelation_time(series: np.ndarray, dt: float, c: float = 5.0):
    """Integrated autocorrelation time of ``series`` (time, replicas, components).

    The autocorrelation function is averaged over replicas (FFT, per component) and summed
    up to Sokal's self-consistent window ``M >= c tau`` (Sokal, Monte Carlo methods in
    statistical mechanics, 1997). Convention: ``Var(time average over T) ~ 2 tau Var / T``,
    so ``tau = dt (1/2 + sum_{k >= 1} rho_k)``.

    Returns:
        ``tau`` per component (``0`` for a constant component).
    """
    n = series.shape[0]
    # Centred by the mean over all replicas: each replica's own time mean would bias every
    # autocorrelation down by about 2 tau / T (for T = 20 tau, tau by a third).
    centred = series - series.mean(axis=(0, 1), keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    acf = np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[:n].mean(axis=1)
    acf /= (n - np.arange(n))[:, None]  # unbiased lag averages
    tau = np.zeros(series.shape[2])
    for i in range(series.shape[2]):
        if acf[0, i] <= 0:
            continue
        rho = acf[:, i] / acf[0, i]
        running = 0.5 + np.cumsum(rho[1:])  # tau in steps for windows M = 1, 2, ...
        window = np.arange(1, n)
        ok = window >= c * running
        M = int(np.argmax(ok)) if ok.any() else n - 2
        tau[i] = dt * max(running[M], 0.5)
    return tau


def plan_warm_starts(
    estimator: FastSlowEstimator,
    plan: BurstPlan,
    x,
    t: float = 0.0,
    *,
    macro_step: float,
    steps: int,
    key: int = 0,
) -> BurstPlan:
    """Extend a plan's burn-in for the warm starts of an integration (linear response).

    A warm burst at ``x + dx`` starts from fast states in equilibrium at ``x``. Writing
    ``F(x) = <f(x, Y)>_{mu_x}``, its derivative ``J = dF/dx`` has two parts: the explicit
    ``<df/dx>`` (no lag: ``f`` is evaluated at the new ``x``) and the change of the
    measure ``mu_x``, which is what lags. The mean of ``f`` at the start of the warm burst
    is therefore off by ``(J - <df/dx>) dx`` (to first order), relaxing with the pilot's
    ``tau_r``; likewise ``(F(x, t + h) - F(x, t)) - <f(x, Y, t + h) - f(x, Y, t)>`` for a
    fast process driven by the macro time. With ``dx = h F`` and a factor 2 (the lag may
    grow along the path) this is the ``change`` of :meth:`BurstPlan.for_warm_starts`.
    (The change of ``F`` alone would not do: a cell's protein copy number lags its volume,
    and the growth rate's dependence through the copy number is 3.3 times its total
    derivative in the gene-expression demo, with the opposite sign to the explicit one.)

    ``J`` is a common-random-number difference (:meth:`FastSlowEstimator.jacobian`) and
    ``<df/dx>`` a difference of ``f`` at fixed fast states (:meth:`~FastSlowEstimator.
    average`), both with the plan's settings (``estimator`` must be configured with them):
    ``2 m + 3`` bursts.

    Returns:
        The extended plan (its ``pilot_fast_steps`` include these bursts).
    """
    before = estimator.fast_steps
    probe_key = ("pilot", key, 1)
    f = estimator.slow_drift
    jacobian = estimator.jacobian(x, t, key=probe_key)
    x = jacobian.base.x
    F = jacobian.base.value
    explicit = np.empty_like(jacobian.value)
    for j in range(x.size):
        h = estimator.fd_step * max(1.0, abs(x[j]))
        shift = np.zeros_like(x)
        shift[j] = h

        def difference(y, x_, t_, shift=shift, h=h):
            return (f(y, x_ + shift, t_) - f(y, x_, t_)) / h

        explicit[:, j] = estimator.average(difference, x, t, key=probe_key).value
    later = estimator.drift(x, t + macro_step, key=probe_key)

    def time_difference(y, x_, t_):
        return f(y, x_, t_ + macro_step) - f(y, x_, t_)

    explicit_t = estimator.average(time_difference, x, t, key=probe_key).value
    change = 2 * (
        np.abs((jacobian.value - explicit) @ (macro_step * F))
        + np.abs(later.value - F - explicit_t)
    )
    extended = plan.for_warm_starts(change, steps=steps)
    return dataclasses.replace(
        extended, pilot_fast_steps=plan.pilot_fast_steps + estimator.fast_steps - before
    )


def _burn_in(amplitude, relaxation, window, target_bias, dt):
    """Burn-in (whole steps of ``dt``) after which the window bias is below the target.

    The window average of ``A exp(-s / tau_r)`` over ``[T_b, T_b + T_w]`` is
    ``A (tau_r / T_w) (1 - exp(-T_w / tau_r)) exp(-T_b / tau_r)``.

    Returns:
        ``(burn_in, bias)``: the burn-in and the predicted bias per component.
    """
    tau_r = np.maximum(relaxation, 1e-300)
    bias0 = amplitude * tau_r / window * -np.expm1(-window / tau_r)
    with np.errstate(divide="ignore"):
        burn = np.where(bias0 > target_bias, tau_r * np.log(bias0 / target_bias), 0.0)
    burn_in = math.ceil(float(burn.max()) / dt * (1 - 1e-9)) * dt if burn.max() > 0 else 0.0
    return burn_in, bias0 * np.exp(-burn_in / tau_r)


def _relaxation(series, limit, tau_int, dt):
    """Relaxation time and amplitude of the ensemble mean of the cold starts, per component.

    Where the deviation of the ensemble mean from the stationary value stands more than
    4 standard errors above its noise (a contiguous run from the lift), an exponential
    ``A exp(-s / tau_r)`` is fitted to its logarithm over the second half of that run (the
    slowest mode); ``tau_r`` is at least ``tau_int`` and ``A`` at least the initial
    deviation. Without such a run: ``tau_int`` and the initial deviation.
    """
    steps, replicas, m = series.shape
    ensemble = series.mean(axis=1)
    deviation = ensemble - limit
    initial = np.abs(deviation[0])
    half = series[steps // 2 :]
    # Noise of the ensemble mean at one time, and of the stationary value itself.
    limit_noise = np.sqrt(2 * tau_int * half.var(axis=(0, 1)) / (replicas * half.shape[0] * dt))
    noise = np.sqrt(series.var(axis=1, ddof=1) / replicas + limit_noise**2)
    relaxation, amplitude = tau_int.copy(), initial.copy()
    for i in range(m):
        significant = np.abs(deviation[: steps // 2, i]) > 4 * noise[: steps // 2, i]
        run = int(np.argmin(significant)) if not significant.all() else significant.size
        if run < 4:
            continue
        s = np.arange(run // 2, run)
        slope, intercept = np.polyfit(s * dt, np.log(np.abs(deviation[s, i])), 1)
        if slope < 0:
            relaxation[i] = max(relaxation[i], -1 / slope)
            amplitude[i] = max(amplitude[i], math.exp(intercept))
    return relaxation, amplitude, initial


def plan_burst(
    estimator: FastSlowEstimator,
    x,
    t: float = 0.0,
    *,
    tolerance: float,
    confidence: float = 0.95,
    bias_fraction: float = 0.2,
    min_replicas: int = 8,
    replicas: int | None = None,
    min_window: float = 2.0,
    pilot_time: float | None = None,
    pilot_replicas: int = 32,
    key: int = 0,
) -> BurstPlan:
    """Burst settings that meet a tolerance on the drift estimate at ``(x, t)``.

    The estimator's settings are not changed (apply them with
    ``estimator.configure(**plan.settings)``); its warm-start states are kept.

    Args:
        estimator: The estimator (its fast process, lift, ``dt`` and streams are used).
        x: The slow state of the pilot.
        t: The macro time of the pilot.
        tolerance: Target bound on ``|F_hat - F|`` per component (positive).
        confidence: Probability of the bound (Student's t with ``replicas - 1`` dof).
        bias_fraction: Share of the tolerance given to the burn-in bias, in ``(0, 1)``.
        min_replicas: Replicas unless ``replicas`` is given (at least 2).
        replicas: A fixed replica count (e.g. for wall time on many cores); the window
            follows from it.
        min_window: Least window in units of the integrated autocorrelation time.
        pilot_time: Length of the pilot run (default: 4 times the estimator's burn-in and
            window).
        pilot_replicas: Replicas of the pilot.
        key: Key of the pilot's random numbers.

    Returns:
        The :class:`BurstPlan`.

    Raises:
        ValueError: If an argument is invalid or the estimator has no slow drift.
    """
    tolerance = float(tolerance)
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if not 0 < bias_fraction < 1:
        raise ValueError(f"bias_fraction must lie in (0, 1), got {bias_fraction!r}")
    if estimator.slow_drift is None:
        raise ValueError("plan_burst controls the drift estimate: the estimator has no slow_drift")
    count = min_replicas if replicas is None else replicas
    if isinstance(count, bool) or int(count) != count or count < 2:
        raise ValueError(f"replicas / min_replicas must be an integer >= 2, got {count!r}")
    count = int(count)
    dt = estimator.dt
    if pilot_time is None:
        pilot_time = 4 * (estimator.burn_in + estimator.window)
    pilot_time = max(float(pilot_time), 8 * dt)
    start_cost = estimator.fast_steps
    series = estimator.pilot(x, t, duration=pilot_time, replicas=pilot_replicas, key=key)
    pilot_cost = estimator.fast_steps - start_cost
    pilot_steps = series.shape[0]
    half = series[pilot_steps // 2 :]
    limit = half.mean(axis=(0, 1))
    variance = half.var(axis=(0, 1))
    tau_int = integrated_autocorrelation_time(half, dt)
    if np.any(tau_int > 0.05 * half.shape[0] * dt):
        warnings.warn(
            f"plan_burst: the integrated autocorrelation time ({tau_int.max():.3g}) is not "
            f"small against the pilot's half length ({half.shape[0] * dt:.3g}); the plan is "
            "unreliable: lengthen pilot_time",
            RuntimeWarning,
            stacklevel=2,
        )
    relaxation, amplitude, deviation = _relaxation(series, limit, tau_int, dt)
    target_bias = bias_fraction * tolerance
    z = student_quantile(confidence, count - 1)
    target_se = (1 - bias_fraction) * tolerance / z
    window = np.max(2 * tau_int * variance / (count * target_se**2))
    window = max(window, min_window * float(tau_int.max()), dt)
    window_steps = estimator.steps_in(window)
    window = window_steps * dt
    burn_in, bias = _burn_in(amplitude, relaxation, window, target_bias, dt)
    standard_error = np.sqrt(2 * tau_int * variance / (count * window))
    return BurstPlan(
        burn_in=burn_in,
        window=window,
        replicas=count,
        tolerance=tolerance,
        confidence=float(confidence),
        correlation_time=tau_int,
        relaxation_time=relaxation,
        relaxation_amplitude=amplitude,
        variance=variance,
        initial_deviation=deviation,
        standard_error=standard_error,
        bias=bias,
        fast_steps=count * (estimator.steps_in(burn_in) + window_steps),
        pilot_fast_steps=pilot_cost,
        bias_fraction=float(bias_fraction),
        micro_dt=dt,
    )
