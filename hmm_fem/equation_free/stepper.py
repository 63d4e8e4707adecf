"""The coarse time-stepper: lift, evolve, restrict; replicas over MPI ranks; bursts.

A micro simulator is given by three functions of the user:

* ``lift(U, rng)``: a micro state consistent with the coarse state ``U`` (a float array);
* ``micro_step(x, t, dt, rng)``: the micro state after one step of size ``dt`` from time
  ``t`` (it may update ``x`` in place, but must return it);
* ``restrict(x)``: the coarse state of a micro state (an array of ``U``'s shape).

:class:`CoarseTimeStepper` turns them into the coarse map ``U(t) -> U(t + T)`` (the
*coarse time-stepper* of equation-free computing, Kevrekidis et al., Commun. Math. Sci. 1,
2003) averaged over an ensemble of replicas, and into *bursts* that estimate the coarse
time derivative for projective integration (:func:`~hmm_fem.equation_free.projective_integrate`).

Random streams do not depend on the number of MPI ranks: replica ``r`` of the ``c``-th
call draws from ``numpy.random.default_rng([seed, r, c])``, the replicas are split in
contiguous blocks over the ranks of ``comm`` and gathered in replica order, so a run gives
the same numbers, to the last bit, on any number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

__all__ = ["Burst", "CoarseTimeStepper", "MicroSimulationError"]

# Relative slack when a time is converted into a whole number of micro steps, so that
# 0.3 / 0.1 = 2.9999999999999996 counts as 3 steps.
_STEP_SLACK = 1e-9


class MicroSimulationError(RuntimeError):
    """A replica of the micro simulation failed or produced an invalid coarse state.

    The message names the replica, the micro time and the call. The error is collective:
    every rank of the stepper's communicator raises it (on the rank that ran the replica it
    is chained to the original exception).
    """


@dataclass(frozen=True)
class Burst:
    """One burst of micro simulation with its least-squares estimate of the coarse derivative.

    The restricted states sampled over the fit window (the end of the burst) are fitted by
    a straight line in time. ``time`` is the centre of the window, where the fitted line's
    value (``state``) and slope (``derivative``) are the best estimates of the coarse state
    and its time derivative (second-order accurate in the window length; the two estimates
    are uncorrelated there).

    Standard errors: with two or more replicas, from the spread of the per-replica fits
    over the replicas (valid whatever the correlation of the noise within a burst); with
    one replica, from the residuals of the fit (which assumes independent residuals: it
    underestimates correlated noise, and for a deterministic simulator it measures the
    misfit of a line to the trajectory); ``nan`` with one replica and only two samples.

    Attributes:
        start_time: Time of the lift.
        time: Reference time of ``state`` and ``derivative`` (centre of the fit window).
        end_time: Time at the end of the burst.
        state: Coarse state at ``time`` (the fitted value, mean over replicas).
        derivative: Estimated coarse time derivative at ``time``.
        state_error: Standard error of ``state`` (``U``'s shape).
        derivative_error: Standard error of ``derivative``.
        end_state: Restricted state at ``end_time`` (mean over replicas).
        sample_times: Times of the restricted samples of the fit window, shape ``(n,)``.
        samples: Mean over replicas of the restricted samples, shape ``(n, *U.shape)``.
        micro_steps: Micro steps this burst cost (all replicas).
    """

    start_time: float
    time: float
    end_time: float
    state: np.ndarray
    derivative: np.ndarray
    state_error: np.ndarray
    derivative_error: np.ndarray
    end_state: np.ndarray
    sample_times: np.ndarray
    samples: np.ndarray
    micro_steps: int

    @property
    def duration(self) -> float:
        """Micro time simulated by the burst (healing and burst)."""
        return self.end_time - self.start_time

    @property
    def lag(self) -> float:
        """Time from the lift to the reference time (``time - start_time``)."""
        return self.time - self.start_time


def _positive_time(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite time, got {value!r}")
    return value


def _steps_in(duration: float, dt: float) -> int:
    """Whole micro steps of size ``dt`` that cover ``duration`` (rounded up)."""
    return math.ceil(duration / dt * (1 - _STEP_SLACK))


class CoarseTimeStepper:
    """The coarse time-stepper of a micro simulator: lift, evolve, restrict.

    ``stepper(U, t, T)`` lifts ``U`` at time ``t`` once per replica, advances each replica
    by micro steps over ``[t, t + T]`` and returns the mean over replicas of the restricted
    states, with their standard error in :attr:`standard_error`. :meth:`burst` runs the
    healing interval and a burst, and estimates the coarse time derivative by least
    squares over the end of the burst (see :class:`Burst`); projective integration uses it.

    Calls are collective over ``comm``: every rank must make the same calls with the same
    arguments. Replica ``r`` of the ``c``-th call (calls of ``stepper(...)`` and
    :meth:`burst` are counted together) draws all its random numbers, those of the lift and
    of every micro step, from ``numpy.random.default_rng([seed, r, c])``; the replicas are
    split in contiguous blocks over the ranks and gathered in replica order, so results do
    not depend on the number of ranks, to the last bit.

    Example:
        A slow-fast system (x slow, y fast) whose coarse state is x::

            eps = 0.01
            def lift(U, rng):                    # y on the slow manifold y = x / (1 + x)
                return np.array([U[0], U[0] / (1 + U[0])])
            def micro_step(z, t, dt, rng):       # one explicit Euler step
                x, y = z
                return z + dt * np.array([-x + (x + 0.5) * y, (x - (x + 1) * y) / eps])
            def restrict(z):
                return z[:1]
            stepper = CoarseTimeStepper(lift, micro_step, restrict, dt=eps / 20,
                                        burst_time=eps, healing_time=eps)
            U1 = stepper(np.array([1.0]), 0.0, 0.5)     # the coarse state at t = 0.5
            burst = stepper.burst(np.array([1.0]), 0.0)  # burst.derivative ~ -0.25

    Args:
        lift: ``lift(U, rng)`` returns a new micro state consistent with the coarse state
            ``U`` (it receives a copy of ``U``).
        micro_step: ``micro_step(x, t, dt, rng)`` returns the micro state after one step.
        restrict: ``restrict(x)`` returns the coarse state of ``x`` (``U``'s shape).
        dt: Micro time step. ``stepper(U, t, T)`` takes ``ceil(T / dt)`` equal steps of
            ``T / ceil(T / dt) <= dt``; bursts take steps of exactly ``dt``.
        burst_time: Length of a burst after healing (rounded up to whole micro steps).
        healing_time: Length of the healing (burn-in) interval after the lift, before the
            burst (rounded up to whole micro steps); the coarse state is not sampled there.
        replicas: Number of independent replicas (their mean is returned).
        seed: Non-negative integer seed of all random streams.
        comm: Communicator over which the replicas are distributed.
        fit_window: Length of the end of the burst over which the derivative is fitted
            (default: the whole burst); it holds ``ceil(fit_window / dt) + 1`` samples.

    Attributes:
        standard_error: Standard error of the last returned state (``U``'s shape; zeros for
            one replica after ``stepper(...)``, see :class:`Burst` after :meth:`burst`).
        micro_steps: Micro steps spent so far, summed over replicas and ranks.
        calls: Number of calls so far (the third entry of the random streams' seeds).
        replica_states: Restricted states of the replicas after the last call,
            shape ``(replicas, *U.shape)``.

    Raises:
        ValueError: If a time, count or seed is invalid, or the burst is shorter than one
            micro step.
    """

    def __init__(
        self,
        lift: Callable,
        micro_step: Callable,
        restrict: Callable,
        *,
        dt: float,
        burst_time: float,
        healing_time: float = 0.0,
        replicas: int = 1,
        seed: int = 0,
        comm: MPI.Comm = MPI.COMM_WORLD,
        fit_window: float | None = None,
    ):
        for name, fn in (("lift", lift), ("micro_step", micro_step), ("restrict", restrict)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        self.lift, self.micro_step, self.restrict = lift, micro_step, restrict
        self.dt = _positive_time("dt", dt)
        self.burst_time = _positive_time("burst_time", burst_time)
        healing_time = float(healing_time)
        if not (math.isfinite(healing_time) and healing_time >= 0):
            raise ValueError(f"healing_time must be a finite time >= 0, got {healing_time!r}")
        self.healing_time = healing_time
        if healing_time + self.burst_time < self.dt * (1 - _STEP_SLACK):
            raise ValueError(
                f"healing_time + burst_time = {healing_time + self.burst_time:g} is shorter than "
                f"one micro step dt = {self.dt:g}: a burst must span at least one micro step; "
                "lengthen the burst or reduce dt"
            )
        if self.burst_time < self.dt * (1 - _STEP_SLACK):
            raise ValueError(
                f"burst_time = {self.burst_time:g} is shorter than one micro step dt = "
                f"{self.dt:g}: the derivative fit needs at least two restricted states; make "
                "burst_time >= dt"
            )
        self.fit_window = (
            self.burst_time if fit_window is None else _positive_time("fit_window", fit_window)
        )
        if self.fit_window > self.burst_time * (1 + _STEP_SLACK):
            raise ValueError(
                f"fit_window = {self.fit_window:g} is longer than burst_time = "
                f"{self.burst_time:g}; the fit window is the end of the burst"
            )
        if self.fit_window < self.dt * (1 - _STEP_SLACK):
            raise ValueError(
                f"fit_window = {self.fit_window:g} is shorter than one micro step dt = "
                f"{self.dt:g}: the fit needs at least two samples"
            )
        if isinstance(replicas, bool) or int(replicas) != replicas or replicas < 1:
            raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.replicas, self.seed = int(replicas), int(seed)
        self.comm = comm
        self.healing_steps = _steps_in(self.healing_time, self.dt)
        self.burst_steps = max(1, _steps_in(self.burst_time, self.dt))
        self.fit_steps = min(self.burst_steps, max(1, _steps_in(self.fit_window, self.dt)))
        size, rank = comm.Get_size(), comm.Get_rank()
        # Contiguous blocks in rank order: gathering them restores replica order.
        bounds = [self.replicas * p // size for p in range(size + 1)]
        self._local = range(bounds[rank], bounds[rank + 1])
        self.standard_error: np.ndarray | float = 0.0
        self.micro_steps = 0
        self.calls = 0
        self.replica_states: np.ndarray | None = None

    @property
    def burst_duration(self) -> float:
        """Micro time simulated by one :meth:`burst` (healing and burst, whole steps)."""
        return (self.healing_steps + self.burst_steps) * self.dt

    def full_run_micro_steps(self, duration: float) -> int:
        """Micro steps of a full micro run of all replicas over ``duration`` (cost reports)."""
        return _steps_in(float(duration), self.dt) * self.replicas

    # -- the coarse map ------------------------------------------------------------------

    def __call__(self, U, t: float, T: float) -> np.ndarray:
        """The coarse state at ``t + T`` from ``U`` at ``t`` (mean over replicas).

        Args:
            U: Coarse state (float array).
            t: Time of ``U``.
            T: Time to simulate (``>= 0``; ``0`` returns ``restrict(lift(U))``).

        Returns:
            The mean over replicas of the restricted states at ``t + T`` (``U``'s shape);
            :attr:`standard_error` is set to its standard error.

        Raises:
            ValueError: If ``U`` is not finite or ``T`` is negative.
            MicroSimulationError: If a replica fails (on every rank).
        """
        U, t = self._coarse(U), float(t)
        T = float(T)
        if not (math.isfinite(T) and T >= 0):
            raise ValueError(f"T must be a finite time >= 0, got {T!r}")
        steps = _steps_in(T, self.dt) if T > 0 else 0
        h = T / steps if steps else 0.0
        samples = self._run(U, t, steps, h, first_sample=steps)  # (R, 1, *shape)
        final = samples[:, 0]
        self.replica_states = final
        mean = final.mean(axis=0)
        if self.replicas > 1:
            self.standard_error = final.std(axis=0, ddof=1) / math.sqrt(self.replicas)
        else:
            self.standard_error = np.zeros_like(mean)
        return mean

    def burst(self, U, t: float) -> Burst:
        """Lift ``U`` at ``t``, heal, run a burst and fit the coarse derivative.

        Args:
            U: Coarse state (float array).
            t: Time of ``U``.

        Returns:
            The :class:`Burst`: the coarse state and its derivative at the centre of the
            fit window, with standard errors.

        Raises:
            ValueError: If ``U`` is not finite.
            MicroSimulationError: If a replica fails (on every rank).
        """
        U, t = self._coarse(U), float(t)
        steps = self.healing_steps + self.burst_steps
        first = steps - self.fit_steps
        Y = self._run(U, t, steps, self.dt, first_sample=first)  # (R, n, *shape)
        R, n = Y.shape[:2]
        Y2 = Y.reshape(R, n, -1)
        offsets = np.arange(first, steps + 1, dtype=np.float64)
        sample_times = t + offsets * self.dt
        centre = t + 0.5 * (first + steps) * self.dt
        s = (offsets - 0.5 * (first + steps)) * self.dt  # sample times about the centre
        sxx = float(s @ s)
        mean_r = Y2.mean(axis=1)  # (R, m): the fitted value at the centre
        slope_r = np.einsum("j,rjm->rm", s, Y2 - mean_r[:, None, :]) / sxx
        state, derivative = mean_r.mean(axis=0), slope_r.mean(axis=0)
        if R > 1:
            state_error = mean_r.std(axis=0, ddof=1) / math.sqrt(R)
            derivative_error = slope_r.std(axis=0, ddof=1) / math.sqrt(R)
        elif n > 2:
            residual = Y2[0] - mean_r[0] - np.outer(s, slope_r[0])
            variance = (residual**2).sum(axis=0) / (n - 2)
            state_error, derivative_error = np.sqrt(variance / n), np.sqrt(variance / sxx)
        else:
            state_error = derivative_error = np.full_like(state, np.nan)
        shape = U.shape
        self.standard_error = state_error.reshape(shape)
        self.replica_states = Y[:, -1]
        return Burst(
            start_time=t,
            time=centre,
            end_time=t + steps * self.dt,
            state=state.reshape(shape),
            derivative=derivative.reshape(shape),
            state_error=state_error.reshape(shape),
            derivative_error=derivative_error.reshape(shape),
            end_state=Y[:, -1].mean(axis=0),
            sample_times=sample_times,
            samples=Y.mean(axis=0),
            micro_steps=steps * self.replicas,
        )

    # -- the replicas --------------------------------------------------------------------

    def _coarse(self, U) -> np.ndarray:
        U = np.array(U, dtype=np.float64)  # a copy: the user's functions cannot alter it
        if not np.all(np.isfinite(U)):
            raise ValueError(f"the coarse state U has non-finite entries: {U}")
        return U

    def _run(self, U: np.ndarray, t: float, steps: int, h: float, first_sample: int):
        """Restricted states after steps ``first_sample..steps`` of every replica, gathered."""
        call = self.calls
        self.calls += 1
        local, failure = [], None
        for r in self._local:
            try:
                local.append(self._replica(U, t, steps, h, first_sample, r, call))
            except _ReplicaError as exc:
                failure = exc
                break
        message = None if failure is None else f"call {call}: {failure}"
        if self.comm.Get_size() > 1:
            gathered = self.comm.allgather((message, local))
        else:
            gathered = [(message, local)]
        messages = [m for m, _ in gathered if m is not None]
        if messages:
            # The lowest failing replica's message on every rank; the cause where it ran.
            cause = failure.__cause__ if failure is not None else None
            raise MicroSimulationError(messages[0]) from cause
        self.micro_steps += steps * self.replicas
        return np.stack([y for _, part in gathered for y in part])

    def _replica(self, U, t, steps, h, first_sample, r, call) -> np.ndarray:
        rng = np.random.default_rng([self.seed, r, call])
        where = "lift"
        time = t
        try:
            x = self.lift(U.copy(), rng)
            if x is None:
                raise _ReplicaError(f"lift returned None for replica {r} at t = {t:.10g}")
            micro_shape = x.shape if isinstance(x, np.ndarray) else None
            # An array micro state is checked after every step, so that a blow-up is
            # reported where it happens (other micro states only through restrict).
            check = micro_shape is not None and np.issubdtype(x.dtype, np.inexact)
            samples = []
            if first_sample == 0:
                where = "restrict"
                samples.append(self._restricted(x, U.shape, r, t))
            for k in range(steps):
                where, time = "micro_step", t + k * h
                x = self.micro_step(x, time, h, rng)
                if x is None:
                    raise _ReplicaError(
                        f"micro_step returned None for replica {r} at t = {time:.10g}: it "
                        "must return the new micro state (also when it updates it in place)"
                    )
                if micro_shape is not None and getattr(x, "shape", micro_shape) != micro_shape:
                    raise _ReplicaError(
                        f"micro_step changed the micro state's shape from {micro_shape} to "
                        f"{x.shape} for replica {r} at t = {time:.10g}"
                    )
                if check and not np.all(np.isfinite(x)):
                    raise _ReplicaError(
                        f"micro_step produced a non-finite micro state for replica {r} at "
                        f"t = {t + (k + 1) * h:.10g} (step from t = {time:.10g}): the micro "
                        "simulation blew up; check dt against the fastest micro time scale"
                    )
                if k + 1 >= first_sample:
                    where, time = "restrict", t + (k + 1) * h
                    samples.append(self._restricted(x, U.shape, r, time))
        except _ReplicaError:
            raise
        except Exception as exc:
            raise _ReplicaError(
                f"{where} raised {type(exc).__name__} for replica {r} at t = {time:.10g}: {exc}"
            ) from exc
        return np.stack(samples)

    def _restricted(self, x, shape, r, time) -> np.ndarray:
        # A copy: restrict may return a view of a micro state that micro_step updates in place.
        value = np.array(self.restrict(x), dtype=np.float64)
        if value.shape != shape:
            raise _ReplicaError(
                f"restrict returned shape {value.shape} for replica {r} at t = {time:.10g}, "
                f"but the coarse state has shape {shape}: restrict(lift(U)) must have U's shape"
            )
        if not np.all(np.isfinite(value)):
            raise _ReplicaError(
                f"restrict returned non-finite values {value} for replica {r} at "
                f"t = {time:.10g}: restrict is invalid for that micro state (or the micro "
                "simulation blew up)"
            )
        return value


class _ReplicaError(Exception):
    """A check of ours failed inside a replica (its message is already complete)."""
