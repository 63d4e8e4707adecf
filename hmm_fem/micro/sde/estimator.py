"""HMM estimators of the effective slow drift and diffusion from bursts of a fast process.

The fast–slow system is ``dX = f(X, Y, t) dt`` (slow) with a fast process ``Y`` that, for
a frozen slow state ``X = x`` and macro time ``t``, has an invariant measure
``mu_{x,t}``. The heterogeneous multiscale method (E, Liu & Vanden-Eijnden, Commun. Pure
Appl. Math. 58, 2005) estimates, on the fly and only where the macro scheme asks,

* the **effective drift** ``F(x, t) = <f(x, Y, t)>_{mu_{x,t}}`` (averaging): the time
  average of ``f`` along a burst of the fast process after a burn-in, averaged over
  replicas (:meth:`FastSlowEstimator.drift`);
* the **effective diffusion** ``D`` where the limit is stochastic: the growth rate of the
  variance of a slow increment, ``Var(Z(s + l) - Z(s)) ~ 2 D l`` for lags ``l`` much
  longer than the correlation time, with ``Z`` either the integral of ``f`` over the burst
  (``X`` frozen: the fluctuations of the slow increment) or an observable of the fast state
  itself (homogenisation, e.g. a particle's unwrapped position in a periodic potential:
  the Lifson–Jackson effective diffusivity) (:meth:`FastSlowEstimator.diffusion`).

**Replicas, blocks and ranks.** The ``replicas`` are simulated in *blocks* of
``block_size`` replicas, one vectorised batch each: the fast step is called on a
``(block, ...)`` array of fast states. Block ``b`` draws all its random numbers (lift and
fast steps) from ``numpy.random.default_rng([seed, b, tag, len(key), *key])``; the
blocks are split in contiguous ranges over the ranks of ``comm`` and the per-replica
results are gathered in replica order, so every estimate is the same, to the last bit, on
any number of ranks (the block size, not the rank count, fixes the streams). A ``key`` (a
tuple of non-negative integers) names the random numbers of a burst: two bursts with the
same key draw the same numbers (*common random numbers*), which makes the estimated drift a
smooth function of ``x`` for a smooth fast process (finite-difference Jacobians, Newton
iterations of implicit schemes); without a key every burst draws fresh numbers.

**Confidence intervals.** Each replica gives one time average (or one diffusion slope)
over its window; the replicas are independent, so the standard error is the sample
standard deviation over replicas divided by ``sqrt(replicas)``. This accounts for the
correlation of the samples *within* a window exactly, whatever it is (no batch means or
autocorrelation model): the correlated samples only enter through the spread of the
per-replica averages. The confidence interval uses Student's t with ``replicas - 1``
degrees of freedom. The integrated autocorrelation time of ``f`` is reported as a
diagnostic (``window * Var(window average) / (2 Var(f))``, valid for windows much longer
than it); the error control (:func:`~hmm_fem.micro.sde.plan_burst`) uses it.

**Warm starts.** With ``warm_start=True`` a burst starts from the fast states at the end of
the last *committed* burst (:meth:`FastSlowEstimator.commit`; the macro integrators commit
the burst of each accepted step), as in E, Liu & Vanden-Eijnden, so that the burn-in only
has to follow the change of the slow state over one macro step; the first burst, and every
burst with ``warm_start=False``, starts from ``lift(x, n, rng)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

__all__ = [
    "DiffusionEstimate",
    "Estimate",
    "FastSimulationError",
    "FastSlowEstimator",
    "Jacobian",
    "student_quantile",
]

# Relative slack when a time is converted into whole micro steps (0.3 / 0.1 = 2.999...).
_STEP_SLACK = 1e-9
# Stream tags: automatic keys (a call counter), user keys, pilot runs of the error control,
# the macro noise of Euler-Maruyama. The entropy of a stream is [seed, block, tag,
# len(key), *key]: numpy's SeedSequence pads entropy with zeros, so without the length the
# keys (5,) and (5, 0) would name the same numbers.
_AUTO, _USER, _PILOT, _MACRO = 0, 1, 2, 3


class FastSimulationError(RuntimeError):
    """A burst of the fast process failed or produced non-finite values.

    The message names the block of replicas, the slow state and the macro time. The error
    is collective: every rank of the estimator's communicator raises it.
    """


@dataclass(frozen=True)
class Estimate:
    """An estimate from independent replicas, with its standard error.

    Attributes:
        value: The mean over replicas.
        standard_error: Sample standard deviation over replicas / ``sqrt(replicas)``
            (``value``'s shape).
        replica_values: The per-replica estimates, shape ``(replicas, *value.shape)``.
        x: The slow state of the burst.
        time: The macro time of the burst.
        fast_steps: Fast steps the burst cost (all replicas).
        correlation_time: Integrated autocorrelation time of ``f`` per component (drift
            estimates only; ``None`` otherwise).
    """

    value: np.ndarray
    standard_error: np.ndarray
    replica_values: np.ndarray
    x: np.ndarray
    time: float
    fast_steps: int
    correlation_time: np.ndarray | None = None
    _end_states: dict | None = field(default=None, repr=False, compare=False)

    @property
    def replicas(self) -> int:
        """Number of replicas."""
        return int(self.replica_values.shape[0])

    @property
    def covariance(self) -> np.ndarray:
        """Covariance matrix of ``value.ravel()`` (sample covariance over replicas / n)."""
        flat = self.replica_values.reshape(self.replicas, -1)
        return np.atleast_2d(np.cov(flat, rowvar=False, ddof=1)) / self.replicas

    def interval(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The two-sided confidence interval ``(low, high)`` (Student's t, replicas - 1 dof).

        Args:
            confidence: Coverage probability in ``(0, 1)``.
        """
        half = student_quantile(confidence, self.replicas - 1) * self.standard_error
        return self.value - half, self.value + half


@dataclass(frozen=True)
class DiffusionEstimate:
    """Effective drift and diffusion of a slow increment, from the same burst.

    ``Z`` is the integral of ``f`` over the burst (or the observable): ``drift`` estimates
    ``E[dZ]/dt`` and ``diffusion`` the matrix ``D`` with ``Cov(Z(s + l) - Z(s)) ~ 2 D l``,
    i.e. the limit ``dX = drift dt + sqrt(2 D) dW``.

    Attributes:
        drift: Mean increment rate, shape ``(q,)``.
        diffusion: ``D``, shape ``(q, q)`` (symmetric).
        lag: The lag ``l`` of the slope estimate.
        lags: Number of lags in the window of each replica.
        fast_steps: Fast steps the burst cost (all replicas).
    """

    drift: Estimate
    diffusion: Estimate
    lag: float
    lags: int
    fast_steps: int


@dataclass(frozen=True)
class Jacobian:
    """A finite-difference Jacobian of the drift with common random numbers.

    Attributes:
        value: ``dF/dx``, shape ``(m, m)``.
        standard_error: Its standard error (spread of the replicas' differences).
        base: The drift estimate at ``x``.
    """

    value: np.ndarray
    standard_error: np.ndarray
    base: Estimate


def student_quantile(confidence: float, dof: int) -> float:
    """Two-sided quantile of Student's t with ``dof`` degrees of freedom (normal if ``inf``)."""
    from scipy import stats

    confidence = float(confidence)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    q = 0.5 + 0.5 * confidence
    return float(stats.norm.ppf(q) if math.isinf(dof) else stats.t.ppf(q, dof))


def _steps(duration: float, dt: float) -> int:
    return math.ceil(duration / dt * (1 - _STEP_SLACK)) if duration > 0 else 0


def _time(name: str, value, *, positive: bool) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} finite time, got {value!r}")
    return value


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _key(key) -> tuple[int, ...]:
    key = (key,) if np.isscalar(key) else tuple(key)
    out = []
    for k in key:
        if isinstance(k, bool) or int(k) != k:
            raise ValueError(f"a key is a tuple of integers, got {key!r}")
        # SeedSequence entropy must be non-negative: map negative ids (e.g. -1, an unknown
        # point) to distinct large words.
        out.append(int(k) if k >= 0 else 2**64 + int(k))
    return tuple(out)


class FastSlowEstimator:
    """Bursts of a fast process with the slow state frozen: effective drift and diffusion.

    Example:
        Averaging (E, Liu & Vanden-Eijnden's example): ``dX = (-Y^3 + cos(pi t)) dt`` with
        a fast Ornstein–Uhlenbeck ``dY = -(Y - X)/eps dt + eps^(-1/2) dW``, whose
        invariant measure for frozen ``X = x`` is N(x, 1/2), so that
        ``F(x) = -(x^3 + 3x/2) + cos(pi t)``::

            eps = 1e-3
            estimator = FastSlowEstimator(
                EulerMaruyama(lambda y, x, t: -(y - x) / eps, eps ** -0.5),
                slow_drift=lambda y, x, t: -y**3 + np.cos(np.pi * t),
                lift=lambda x, n, rng: np.full((n, 1), x[0]),
                dt=eps / 20, burn_in=5 * eps, window=20 * eps, replicas=16)
            F = estimator.drift([1.0], t=0.0)   # F.value ~ -2.5 + 1, F.standard_error

    Args:
        fast_step: ``fast_step(y, x, t, dt, rng)``: the fast states of a block of replicas
            (first axis: replica) after one micro step, with ``x`` (shape ``(m,)``) and
            the macro time ``t`` frozen (see :mod:`hmm_fem.micro.sde.fast`).
        lift: ``lift(x, n, rng)``: initial fast states of ``n`` replicas at the slow state
            ``x`` (an array with first axis ``n``).
        dt: Micro time step (resolve the fast time scale).
        burn_in: Time simulated before sampling starts (rounded up to whole steps).
        window: Time over which ``f`` is averaged (rounded up to whole steps, at least one).
        replicas: Number of independent replicas (at least 2: the standard error comes
            from their spread).
        slow_drift: ``f(y, x, t)``: the slow drift at every replica, shape ``(n, m)``
            (``(n,)`` accepted for ``m = 1``). Needed by :meth:`drift`.
        observable: ``g(y, x)``: an observable of the fast state whose increments
            :meth:`diffusion` analyses instead of the integral of ``f`` (shape ``(n, q)``
            or ``(n,)``); it must be continuous in time (e.g. an unwrapped position).
        lag: Lag of the diffusion slope estimate (default ``window / 8``); the window
            holds ``floor(window / lag) >= 2`` lags.
        block_size: Replicas per vectorised block (and per random stream).
        seed: Non-negative integer seed of all streams.
        warm_start: Whether a burst starts from the end states of the last committed burst.
        comm: Communicator over which the blocks are distributed (calls are collective).
        fd_step: Relative step of the finite-difference Jacobian (:meth:`jacobian`):
            ``fd_step * max(1, |x_j|)``. Common random numbers make the difference smooth
            for a smooth fast process; a jump process needs a step of the size of the
            slow state's effect on the rates.

    Attributes:
        fast_steps: Fast steps spent so far (all replicas, all ranks; pilots included).
        bursts: Bursts run so far.

    Raises:
        TypeError: If a function is not callable.
        ValueError: If a time, count or seed is invalid.
    """

    def __init__(
        self,
        fast_step: Callable,
        *,
        lift: Callable,
        dt: float,
        burn_in: float,
        window: float,
        replicas: int,
        slow_drift: Callable | None = None,
        observable: Callable | None = None,
        lag: float | None = None,
        block_size: int = 64,
        seed: int = 0,
        warm_start: bool = True,
        comm: MPI.Comm = MPI.COMM_WORLD,
        fd_step: float = 1e-6,
    ):
        for name, fn in (("fast_step", fast_step), ("lift", lift)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        for name, fn in (("slow_drift", slow_drift), ("observable", observable)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        if slow_drift is None and observable is None:
            raise ValueError(
                "give slow_drift (the slow equation's right-hand side f(y, x, t)) for the "
                "effective drift, or an observable g(y, x) for the effective diffusion"
            )
        self.fast_step, self.lift = fast_step, lift
        self.slow_drift, self.observable = slow_drift, observable
        self.dt = _time("dt", dt, positive=True)
        self.seed = _count("seed", seed, 0)
        self.block_size = _count("block_size", block_size, 1)
        self.warm_start = bool(warm_start)
        self.comm = comm
        fd_step = float(fd_step)
        if not (math.isfinite(fd_step) and fd_step > 0):
            raise ValueError(f"fd_step must be a positive number, got {fd_step!r}")
        self.fd_step = fd_step
        self.fast_steps = 0
        self.bursts = 0
        self._calls = 0
        self._committed: dict[int, np.ndarray] = {}
        self.replicas = 0
        self.configure(burn_in=burn_in, window=window, replicas=replicas, lag=lag)

    # -- settings ------------------------------------------------------------------------

    def configure(
        self,
        *,
        burn_in: float | None = None,
        window: float | None = None,
        replicas: int | None = None,
        lag: float | None = None,
    ) -> FastSlowEstimator:
        """Change the burst settings (``None`` keeps a setting); returns the estimator.

        A new replica count drops the warm-start states (the next burst lifts).

        Raises:
            ValueError: If a setting is invalid.
        """
        burn_in = self.burn_in if burn_in is None else _time("burn_in", burn_in, positive=False)
        window = self.window if window is None else _time("window", window, positive=True)
        if window < self.dt * (1 - _STEP_SLACK):
            raise ValueError(
                f"window = {window:g} is shorter than one micro step dt = {self.dt:g}; "
                "lengthen the window or reduce dt"
            )
        replicas = self.replicas if replicas is None else _count("replicas", replicas, 2)
        if lag is None:
            lag = getattr(self, "_lag", None)
        lag = window / 8 if lag is None else _time("lag", lag, positive=True)
        self.burn_in, self.window, self._lag = burn_in, window, lag
        self.burn_steps = _steps(burn_in, self.dt)
        self.window_steps = max(1, _steps(window, self.dt))
        self.lag_steps = max(1, _steps(lag, self.dt))
        self.lags = self.window_steps // self.lag_steps
        if replicas != self.replicas:
            self.replicas = replicas
            self._committed = {}
            blocks = math.ceil(replicas / self.block_size)
            size, rank = self.comm.Get_size(), self.comm.Get_rank()
            # Contiguous ranges of blocks in rank order: gathering restores replica order.
            bounds = [blocks * p // size for p in range(size + 1)]
            self._local = [
                (b, b * self.block_size, min(self.block_size, replicas - b * self.block_size))
                for b in range(bounds[rank], bounds[rank + 1])
            ]
        return self

    @property
    def lag(self) -> float:
        """Lag of the diffusion slope estimate (whole micro steps)."""
        return self.lag_steps * self.dt

    @property
    def burst_steps(self) -> int:
        """Micro steps of one drift burst (burn-in and window) per replica."""
        return self.burn_steps + self.window_steps

    @contextlib.contextmanager
    def _trial_settings(self, **settings):
        """Run with other burst settings; restore them (and the warm starts) afterwards."""
        names = ("burn_in", "window", "_lag", "replicas", "_local", "_committed", "burn_steps",
                 "window_steps", "lag_steps", "lags")
        saved = {name: getattr(self, name) for name in names}
        try:
            self.configure(**settings)
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def steps_in(self, duration: float) -> int:
        """Whole micro steps covering ``duration`` (rounded up)."""
        return _steps(float(duration), self.dt)

    def pilot(self, x, t: float = 0.0, *, duration: float, replicas: int, key: int = 0):
        """``f`` at every micro step of cold starts from the lift (for the error control).

        The replicas start from ``lift`` (whatever the warm-start states), run for
        ``duration`` without burn-in and record ``f`` at the start of every step; the
        estimator's settings and warm-start states are unchanged. The streams are those of
        the pilot tag with ``key``.

        Returns:
            ``f`` samples, shape ``(steps, replicas, m)``.
        """
        if self.slow_drift is None:
            raise ValueError("pilot() records the slow drift f: none was given")
        x = self._slow(x)
        steps = max(1, self.steps_in(duration))
        with self._trial_settings(burn_in=0.0, window=steps * self.dt, replicas=replicas):
            parts, _ = self._burst(
                x, float(t), self._entropy(("pilot", key)), "drift", record=True, lift=True
            )
        return np.concatenate([p[2] for p in parts], axis=1)

    def reset(self) -> None:
        """Forget the warm-start states: the next burst lifts."""
        self._committed = {}

    def commit(self, estimate: Estimate | DiffusionEstimate) -> None:
        """Keep the end states of ``estimate``'s burst as the next bursts' start (warm start).

        Does nothing with ``warm_start=False``.
        """
        if not self.warm_start:
            return
        if isinstance(estimate, DiffusionEstimate):
            estimate = estimate.diffusion
        if estimate._end_states is None:
            raise ValueError("this estimate does not carry end states (a pilot run?)")
        self._committed = estimate._end_states

    # -- the estimates -------------------------------------------------------------------

    def drift(self, x, t: float = 0.0, *, key=None) -> Estimate:
        """The effective slow drift ``F(x, t) = <f(x, Y, t)>`` from one burst.

        Each replica runs ``burn_in``, then averages ``f`` over the states at the start of
        every step of the window.

        Args:
            x: The frozen slow state (shape ``(m,)``; a number for ``m = 1``).
            t: The frozen macro time.
            key: Integers naming the random numbers (common random numbers); ``None``:
                fresh numbers.

        Returns:
            The :class:`Estimate` (value of shape ``(m,)``), with the end states of the
            burst for :meth:`commit`.

        Raises:
            ValueError: If ``x`` is not finite or there is no ``slow_drift``.
            FastSimulationError: If a replica fails (on every rank).
        """
        if self.slow_drift is None:
            raise ValueError("drift() needs slow_drift f(y, x, t); none was given")
        return self.average(None, x, t, key=key)

    def average(self, function, x, t: float = 0.0, *, key=None) -> Estimate:
        """The stationary average of any ``function(y, x, t)`` from one burst.

        As :meth:`drift` (which is ``average`` of ``slow_drift``), for an observable of the
        fast state with ``x`` and ``t`` frozen: ``function`` returns ``(n, k)`` (or
        ``(n,)``) values for the ``n`` replicas of a block.

        Args:
            function: ``function(y, x, t)``; ``None`` averages ``slow_drift``.
            x: The frozen slow state.
            t: The frozen macro time.
            key: Integers naming the random numbers (``None``: fresh numbers).

        Returns:
            The :class:`Estimate` (value of shape ``(k,)``).

        Raises:
            TypeError: If ``function`` is not callable.
            ValueError: If ``x`` is not finite, or ``function`` is ``None`` without a
                ``slow_drift``.
            FastSimulationError: If a replica fails (on every rank).
        """
        if function is not None and not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        if function is None and self.slow_drift is None:
            raise ValueError("average(None, ...) averages slow_drift f(y, x, t); none was given")
        x, t = self._slow(x), float(t)
        parts, ends = self._burst(x, t, self._entropy(key), "drift", function=function)
        mean_f = np.concatenate([p[0] for p in parts])  # (R, k)
        mean_f2 = np.concatenate([p[1] for p in parts])
        value, error = _mean_and_error(mean_f)
        variance = np.maximum(mean_f2.mean(axis=0) - value**2, 0.0)
        spread = mean_f.var(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(variance > 0, self.window_steps * self.dt * spread / (2 * variance), 0)
        cost = self.replicas * self.burst_steps
        return Estimate(value, error, mean_f, x, t, cost, tau, ends)

    def diffusion(self, x, t: float = 0.0, *, key=None) -> DiffusionEstimate:
        """Effective drift and diffusion of the slow increment from one burst.

        After ``burn_in``, each replica records ``Z`` (the integral of ``f`` with ``x``
        frozen, left-point rule, or the observable) every ``lag`` over the window. With the
        increments over one and two lags, centred by the drift pooled over replicas,
        ``C_k = mean over s of dZ dZ^T`` over all (overlapping) pairs ``k`` lags apart, the
        replica's diffusion is the slope ``(C_2 - C_1) / (2 lag)``: the constant offset of
        the mean squared displacement (the equilibration inside a period, for instance)
        cancels, so the lag only has to exceed the correlation time, not the window. The
        replica's drift is ``(Z_end - Z_start) / (lags * lag)``.

        Args:
            x: The frozen slow state.
            t: The frozen macro time.
            key: Integers naming the random numbers (``None``: fresh numbers).

        Returns:
            The :class:`DiffusionEstimate`.

        Raises:
            ValueError: If the window holds fewer than two lags.
            FastSimulationError: If a replica fails (on every rank).
        """
        if self.lags < 2:
            raise ValueError(
                f"the window ({self.window_steps} steps) holds {self.lags} lag(s) of "
                f"{self.lag_steps} steps; the diffusion slope needs at least 2: lengthen "
                "the window or shorten the lag"
            )
        x, t = self._slow(x), float(t)
        parts, ends = self._burst(x, t, self._entropy(key), "increments")
        Z = np.concatenate([p[0] for p in parts], axis=1)  # (lags + 1, R, q)
        lag = self.lag
        rates = (Z[-1] - Z[0]) / (self.lags * lag)  # (R, q)
        pooled = rates.mean(axis=0)
        d1 = Z[1:] - Z[:-1] - pooled * lag
        d2 = Z[2:] - Z[:-2] - pooled * 2 * lag
        C1 = np.einsum("kri,krj->rij", d1, d1) / d1.shape[0]
        C2 = np.einsum("kri,krj->rij", d2, d2) / d2.shape[0]
        slopes = (C2 - C1) / (2 * lag)  # (R, q, q)
        cost = self.replicas * (self.burn_steps + self.lags * self.lag_steps)
        drift = Estimate(*_mean_and_error(rates), rates, x, t, cost)
        diffusion = Estimate(*_mean_and_error(slopes), slopes, x, t, cost, None, ends)
        return DiffusionEstimate(drift, diffusion, lag, self.lags, cost)

    def jacobian(self, x, t: float = 0.0, *, key=None, base: Estimate | None = None):
        """``dF/dx`` by forward differences of the drift with common random numbers.

        Every burst (at ``x`` and at ``x + h_j e_j``) uses the same key and the same start
        states, so the difference measures the change of ``F``, not the noise. Each
        replica's difference is the derivative of its own time average; their spread over
        replicas gives the standard error of the Jacobian.

        Args:
            x: The slow state.
            t: The macro time.
            key: The key of the bursts (``None``: one fresh key for all of them).
            base: The drift estimate at ``x`` with this key, if already computed.

        Returns:
            The :class:`Jacobian` (``value`` of shape ``(m, m)``, its standard error, and
            the drift estimate ``base`` at ``x``).
        """
        x = self._slow(x)
        key = ("auto", self._next_call()) if key is None else key
        if base is None:
            base = self.drift(x, t, key=key)
        columns = []
        for j in range(x.size):
            h = self.fd_step * max(1.0, abs(x[j]))
            shifted = x.copy()
            shifted[j] += h
            moved = self.drift(shifted, t, key=key)
            columns.append((moved.replica_values - base.replica_values) / h)
        per_replica = np.stack(columns, axis=-1)  # (R, m, m)
        value, error = _mean_and_error(per_replica)
        return Jacobian(value, error, base)

    # -- the bursts ----------------------------------------------------------------------

    def _slow(self, x) -> np.ndarray:
        x = np.array(x, dtype=np.float64).reshape(-1)
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise ValueError(f"the slow state x must be a non-empty finite array, got {x}")
        return x

    def _next_call(self) -> int:
        call = self._calls
        self._calls += 1
        return call

    def _entropy(self, key) -> tuple[int, ...]:
        if key is None:
            tag, key = _AUTO, (self._next_call(),)
        elif isinstance(key, tuple) and key and key[0] == "auto":
            tag, key = _AUTO, (int(key[1]),)
        elif isinstance(key, tuple) and key and key[0] == "pilot":
            tag, key = _PILOT, _key(key[1:])
        else:
            tag, key = _USER, _key(key)
        return (tag, len(key), *key)

    def macro_rng(self, step: int) -> np.random.Generator:
        """The generator of the macro noise of step ``step`` (the same on every rank)."""
        return np.random.default_rng([self.seed, 0, _MACRO, 1, *_key(step)])

    def _burst(self, x, t, entropy, mode, *, record=False, lift=False, function=None):
        """Run every local block; gather the per-replica results in replica order."""
        local, ends, message, cause = [], {}, None, None
        for block, first, n in self._local:
            rng = np.random.default_rng([self.seed, block, *entropy])
            try:
                y = self._start(block, x, n, rng, lift)
                result, y = self._block(y, x, t, rng, mode, record, n, function)
            except _BlockError as exc:
                message = (
                    f"replicas {first}..{first + n - 1} (block {block}) at x = {x}, "
                    f"t = {t:.10g}: {exc}"
                )
                cause = exc.__cause__
                break
            local.append(result)
            ends[block] = y
        if self.comm.Get_size() > 1:
            gathered = self.comm.allgather((message, local))
        else:
            gathered = [(message, local)]
        messages = [m for m, _ in gathered if m is not None]
        if messages:
            raise FastSimulationError(messages[0]) from cause
        steps = self.burn_steps + (
            self.window_steps if mode != "increments" else self.lags * self.lag_steps
        )
        self.fast_steps += self.replicas * steps
        self.bursts += 1
        return [part for _, parts in gathered for part in parts], ends

    def _start(self, block, x, n, rng, lift):
        if self.warm_start and not lift and block in self._committed:
            return self._committed[block].copy()
        try:
            y = self.lift(x.copy(), n, rng)
        except Exception as exc:
            raise _BlockError(f"lift raised {type(exc).__name__}: {exc}") from exc
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise _BlockError(
                f"lift(x, n, rng) returned shape {y.shape}; its first axis must be the "
                f"n = {n} replicas"
            )
        return y

    def _block(self, y, x, t, rng, mode, record, n, function=None):
        dt, where, step = self.dt, "fast_step", 0
        try:
            for step in range(self.burn_steps):  # noqa: B007 - step is reported on failure
                y = self._step(y, x, t, dt, rng)
            self._finite(y, "the fast states", "burn-in")
            if mode == "drift":
                total = total2 = None
                series = [] if record else None
                for step in range(self.burn_steps, self.burst_steps):  # noqa: B007
                    where = "slow_drift" if function is None else "function"
                    f = self._f(y, x, t, n, function)
                    total = f.copy() if total is None else total + f
                    total2 = f * f if total2 is None else total2 + f * f
                    if record:
                        series.append(f)
                    where = "fast_step"
                    y = self._step(y, x, t, dt, rng)
                k = self.window_steps
                self._finite(total, "the slow drift f", "window")
                self._finite(y, "the fast states", "window")
                result = (total / k, total2 / k)
                if record:
                    result = (*result, np.stack(series))
                return result, y
            # increments of Z over the lags
            where = "observable" if self.observable is not None else "slow_drift"
            z = self._g(y, x, n) if self.observable is not None else np.zeros((n, x.size))
            samples = [np.array(z, dtype=np.float64, copy=True)]
            for j in range(self.lags):
                for s in range(self.lag_steps):
                    step = self.burn_steps + j * self.lag_steps + s
                    if self.observable is None:
                        where = "slow_drift"
                        z = z + dt * self._f(y, x, t, n)
                    where = "fast_step"
                    y = self._step(y, x, t, dt, rng)
                if self.observable is not None:
                    where = "observable"
                    z = self._g(y, x, n)
                samples.append(np.array(z, dtype=np.float64, copy=True))
            where = "the window's end"
            Z = np.stack(samples)
            self._finite(Z, "the slow increment", "window")
            self._finite(y, "the fast states", "window")
            return (Z,), y
        except _BlockError:
            raise
        except Exception as exc:
            raise _BlockError(
                f"{where} raised {type(exc).__name__} at micro step {step}: {exc}"
            ) from exc

    def _step(self, y, x, t, dt, rng):
        new = self.fast_step(y, x, t, dt, rng)
        if new is None:
            raise _BlockError(
                "fast_step returned None: it must return the new fast states (also when it "
                "updates them in place)"
            )
        if getattr(new, "shape", None) != getattr(y, "shape", None):
            raise _BlockError(
                f"fast_step changed the shape of the fast states from "
                f"{getattr(y, 'shape', None)} to {getattr(new, 'shape', None)}"
            )
        return new

    def _f(self, y, x, t, n, function=None):
        if function is not None:
            value = np.asarray(function(y, x, t), dtype=np.float64)
            if value.shape == (n,):
                return value[:, None]
            if value.ndim != 2 or value.shape[0] != n:
                raise _BlockError(f"function returned shape {value.shape}; expected ({n}, k)")
            return value
        f = np.asarray(self.slow_drift(y, x, t), dtype=np.float64)
        if f.shape == (n,) and x.size == 1:
            return f[:, None]
        if f.shape != (n, x.size):
            raise _BlockError(
                f"slow_drift returned shape {f.shape}; expected ({n}, {x.size}) (replicas, "
                "slow components)"
            )
        return f

    def _g(self, y, x, n):
        g = np.asarray(self.observable(y, x), dtype=np.float64)
        if g.shape == (n,):
            return g[:, None]
        if g.ndim != 2 or g.shape[0] != n:
            raise _BlockError(f"observable returned shape {g.shape}; expected ({n}, q)")
        return g

    @staticmethod
    def _finite(values, what, where):
        if not np.all(np.isfinite(values)):
            raise _BlockError(
                f"{what} became non-finite during the {where}: the fast simulation blew up; "
                "check dt against the fastest time scale of the fast process"
            )


def _mean_and_error(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis and its standard error (spread over replicas)."""
    n = values.shape[0]
    return values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(n)


class _BlockError(Exception):
    """A check of ours failed inside a block (its message is complete)."""
