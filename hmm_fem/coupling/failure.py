"""What the dispatcher does when a micro solve fails: retry, substitute, or abort.

A micro solve *fails* when it raises, returns a non-finite value, or runs past the
policy's per-solve ``timeout``. :class:`FailurePolicy` says what follows, in this order:

1. **Retry** up to ``retries`` times. Retry ``k`` passes ``context.attempt = k`` and
   ``context.remedy`` = the k-th remedy (the policy's ``remedies``, default the model's own
   :attr:`~hmm_fem.micro.MicroModel.remedies`; the last one is repeated if there are more
   retries than remedies). A model without remedies repeats the plain solve (which only
   helps a failure that is not deterministic; a stochastic model's stream is the same on
   every attempt unless the model reads ``context.attempt``).
2. **Substitute** (``substitute=True``): the response of a state still failing is
   interpolated from the nearest *solved* states in state space (a k-d tree,
   :class:`scipy.spatial.cKDTree`, over every state in the dispatcher's cache with the
   failed key's time and step; for a model with memory the committed history is part of the
   coordinates, in units of its range), by a least-squares linear fit on ``neighbours``
   states (exact for a response linear in the state) or by inverse-distance weighting.
   Near-duplicate neighbours (the states of Newton iterates converging at one point differ
   only by round-off) are skipped, so the fit has a slope to speak of. Every
   solution entry is interpolated, the updated history of a model with memory included. A
   substituted state is not cached (the next evaluation tries it again) and its points are
   flagged (:attr:`hmm_fem.coupling.Dispatcher.last_substituted`, the report of the macro
   solve, the ``substituted`` cell field).
3. **Abort** collectively, the same error on every rank: with
   :class:`~hmm_fem.micro.MicroSolveError` when substitution is off (the default: the first
   failure aborts, with the same error as before this policy existed), with its subclass
   :class:`MicroFailureError` when the fraction of the macro points of one evaluation (a
   collective call of the dispatcher, summed over ranks) whose state failed exceeds
   ``max_failure_fraction``, or when there is no solved state to interpolate from (or none
   within ``max_distance``); and, with a run-wide budget ``max_run_fraction``, when the
   substituted point evaluations of the whole run (the one at hand included) pass that
   fraction of all its point evaluations: a run whose failures are few per evaluation but
   persist stops too.

Timeouts. The timeout reaches the solve as ``context.timeout``, for engines that can stop
themselves (LAMMPS's ``timer timeout``, a clock check in a Python loop); such a solve
raises a :class:`TimeoutError` (or :class:`MicroTimeoutError`), counted as a timeout.
Otherwise a Python-level model cannot be stopped from outside without its cooperation, so
the timeout is honest about what it does: the wall time of every attempt is measured, and
an attempt that returns after ``timeout`` seconds is a failure (its result is dropped), so
a slow solve is retried with the next remedy or substituted. With ``interrupt=True`` (main
thread, POSIX only) a ``SIGALRM`` timer also raises :class:`MicroTimeoutError` inside the
solve when the time is up. That interrupts Python code (loops, ``time.sleep``, a
petsc4py or LAMMPS callback the moment it returns to Python), but not a long call into
compiled code (a MUMPS factorisation, a LAMMPS ``run``): there the signal is handled when
the call returns. A model interrupted half way must be able to solve again afterwards
(models that keep warm-start state should reset it on ``context.attempt > 0``).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..micro.protocol import MicroModel, MicroSolveError, SolveContext

__all__ = [
    "FailurePolicy",
    "MicroFailureError",
    "MicroTimeoutError",
    "SolveOutcome",
    "solve_with_retries",
    "interpolate_responses",
]


class MicroFailureError(MicroSolveError):
    """Micro solves failed beyond what a substituting failure policy accepts.

    Raised on every rank: past the failure fraction, or with nothing to interpolate from.
    """


class MicroTimeoutError(MicroSolveError):
    """A micro solve ran past the failure policy's ``timeout``."""


_INTERPOLATIONS = ("linear", "idw")


@dataclass(frozen=True)
class FailurePolicy:
    """What to do when a micro solve fails (see :mod:`hmm_fem.coupling.failure`).

    The default aborts at the first failure, naming the point and the state.

    Example:
        >>> policy = FailurePolicy(retries=2, substitute=True, max_failure_fraction=0.2)
        >>> q = hmm_fem.effective_flux(model, T, failure_policy=policy)

    Args:
        retries: Further attempts at a failed state (``>= 0``).
        remedies: The remedies the retries ask for, in order (names the model lists in its
            ``remedies``); ``None``: the model's own list.
        substitute: Interpolate the states that still fail from solved neighbours (and
            flag them) instead of aborting.
        neighbours: Number of solved states an interpolation uses (``None``: ``2 (d + 1)``
            for ``d`` state columns, at least 2; fewer if fewer are solved).
        interpolation: ``"linear"`` (least-squares affine fit; exact for a response
            linear in the state) or ``"idw"`` (inverse squared distance weights).
        max_distance: Largest distance to the nearest solved state a substitution may
            bridge, in the scaled state units (``None``: no limit). The state columns are
            divided by ``state_scale`` before distances are measured.
        state_scale: Scale of every state column for the distance (a number or one per
            column); ``None``: the range of the solved states in each column (1 where they
            do not vary).
        max_failure_fraction: Abort when the points of one evaluation whose state failed
            are more than this fraction of all its points (over all ranks); ``0 <= . < 1``.
            Used only with ``substitute=True``.
        max_run_fraction: The run-wide failure budget: abort when the point evaluations
            substituted since the dispatcher was made (over all ranks, the evaluation at
            hand included) are more than this fraction of all its point evaluations;
            ``0 <= . < 1``, ``None``: no budget. Checked at an evaluation with failures, so
            an early failure weighs heavily (a first evaluation with 10 % substituted
            points is 10 % of the run). The counts start afresh in a restarted run. Used
            only with ``substitute=True``.
        timeout: Wall-clock limit in seconds of one attempt (``None``: none).
        interrupt: Also interrupt an attempt at ``timeout`` with ``SIGALRM`` (main thread,
            POSIX; interrupts Python code only).
    """

    retries: int = 0
    remedies: tuple[str, ...] | None = None
    substitute: bool = False
    neighbours: int | None = None
    interpolation: str = "linear"
    max_distance: float | None = None
    state_scale: float | Sequence[float] | None = None
    max_failure_fraction: float = 0.2
    timeout: float | None = None
    interrupt: bool = False
    max_run_fraction: float | None = None

    def __post_init__(self):
        if int(self.retries) != self.retries or self.retries < 0:
            raise ValueError(f"FailurePolicy: retries must be an integer >= 0, got {self.retries}")
        if self.remedies is not None:
            if isinstance(self.remedies, str):
                raise TypeError(
                    f"FailurePolicy: remedies must be a sequence of names, got the string "
                    f"{self.remedies!r}; write remedies=({self.remedies!r},)"
                )
            object.__setattr__(self, "remedies", tuple(str(r) for r in self.remedies))
        if self.neighbours is not None and (
            int(self.neighbours) != self.neighbours or self.neighbours < 1
        ):
            raise ValueError(
                f"FailurePolicy: neighbours must be an integer >= 1, got {self.neighbours}"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"FailurePolicy: interpolation must be one of {_INTERPOLATIONS}, got "
                f"{self.interpolation!r}"
            )
        if self.max_distance is not None and not (
            np.isfinite(self.max_distance) and self.max_distance > 0
        ):
            raise ValueError(
                f"FailurePolicy: max_distance must be positive, got {self.max_distance}"
            )
        if self.state_scale is not None:
            scale = np.asarray(self.state_scale, dtype=np.float64)
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
                raise ValueError(
                    f"FailurePolicy: state_scale must be positive, got {self.state_scale}"
                )
        if not (0.0 <= self.max_failure_fraction < 1.0):
            raise ValueError(
                "FailurePolicy: max_failure_fraction must be in [0, 1), got "
                f"{self.max_failure_fraction}"
            )
        if self.max_run_fraction is not None and not (0.0 <= self.max_run_fraction < 1.0):
            raise ValueError(
                "FailurePolicy: max_run_fraction must be in [0, 1) or None, got "
                f"{self.max_run_fraction}"
            )
        if self.timeout is not None and not (np.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"FailurePolicy: timeout must be positive seconds, got {self.timeout}")
        if self.interrupt and self.timeout is None:
            raise ValueError("FailurePolicy: interrupt=True needs a timeout")

    def remedy_sequence(self, model: MicroModel) -> tuple[str, ...]:
        """The remedies of the retries for ``model``, checked against what it offers.

        Raises:
            ValueError: If the policy asks for a remedy the model does not list.
        """
        offered = tuple(getattr(model, "remedies", ()) or ())
        if self.remedies is None:
            return offered
        unknown = [r for r in self.remedies if r not in offered]
        if unknown:
            raise ValueError(
                f"FailurePolicy asks for remedies {unknown} but {type(model).__name__} offers "
                f"{list(offered) or 'none'} (its `remedies` attribute)"
            )
        return self.remedies

    def describe(self) -> str:
        """One line saying what the policy does (for logs and error messages)."""
        parts = [f"{self.retries} retries"]
        if self.timeout is not None:
            interrupting = " (interrupting)" if self.interrupt else ""
            parts.append(f"timeout {self.timeout:g} s{interrupting}")
        if self.substitute:
            parts.append(
                f"substitution ({self.interpolation}) up to {100 * self.max_failure_fraction:g} % "
                "of the points of an evaluation"
            )
            if self.max_run_fraction is not None:
                parts.append(f"up to {100 * self.max_run_fraction:g} % of the run's points")
        else:
            parts.append("abort at the first failure")
        return ", ".join(parts)


@dataclass
class SolveOutcome:
    """The attempts at one micro state.

    Attributes:
        result: What the successful attempt returned (``None`` if every attempt failed).
        attempts: Number of attempts made.
        reasons: The failure of every failed attempt (``"attempt k [remedy]: reason"``).
        timeouts: How many attempts ran past the timeout.
    """

    result: object = None
    attempts: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)
    timeouts: int = 0

    @property
    def failed(self) -> bool:
        """Whether every attempt failed."""
        return self.result is None


def _alarm_possible() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


class _Alarm:
    """``SIGALRM`` after ``seconds``, raising :class:`MicroTimeoutError` (a context manager)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _handler(self, signum, frame):
        raise MicroTimeoutError(f"interrupted after the timeout of {self.seconds:g} s")

    def __enter__(self):
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        # None: the previous handler was not set from Python; the default is what it was.
        previous = signal.SIG_DFL if self._previous is None else self._previous
        signal.signal(signal.SIGALRM, previous)
        return False


def solve_with_retries(
    attempt: Callable[[SolveContext], object],
    context: SolveContext,
    policy: FailurePolicy,
    remedies: Sequence[str] = (),
) -> SolveOutcome:
    """Run ``attempt(context)`` until it succeeds, at most ``1 + policy.retries`` times.

    Args:
        attempt: One solve (raises on failure, including a non-finite result).
        context: The context of the first attempt; retries get ``attempt`` and ``remedy``.
        policy: The failure policy (retries, timeout).
        remedies: The remedies of the retries, in order (see
            :meth:`FailurePolicy.remedy_sequence`).

    Returns:
        The :class:`SolveOutcome`. Exceptions of the solve are recorded, not raised
        (``KeyboardInterrupt`` and ``SystemExit`` pass).
    """
    outcome = SolveOutcome()
    interrupt = policy.interrupt and policy.timeout is not None
    if interrupt and not _alarm_possible():
        warnings.warn(
            "FailurePolicy(interrupt=True): SIGALRM is only available in the main thread on "
            "POSIX; the timeout is checked after each attempt instead",
            RuntimeWarning,
            stacklevel=3,
        )
        interrupt = False
    if policy.timeout is not None:
        context = dataclasses.replace(context, timeout=policy.timeout)
    for k in range(1 + policy.retries):
        remedy = remedies[min(k, len(remedies)) - 1] if k > 0 and remedies else None
        ctx = context if k == 0 else dataclasses.replace(context, attempt=k, remedy=remedy)
        label = f"attempt {k + 1}" + (f" [{remedy}]" if remedy else "")
        outcome.attempts += 1
        start = time.perf_counter()
        try:
            if interrupt:
                with _Alarm(policy.timeout):
                    result = attempt(ctx)
            else:
                result = attempt(ctx)
        except Exception as exc:  # noqa: BLE001 - recorded; the policy decides
            # An engine that stopped itself at context.timeout raises a TimeoutError
            # (e.g. hmm_fem.micro.md.LammpsTimeout): a timeout too.
            if isinstance(exc, (MicroTimeoutError, TimeoutError)):
                outcome.timeouts += 1
            outcome.reasons.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - start
        if policy.timeout is not None and elapsed > policy.timeout:
            outcome.timeouts += 1
            outcome.reasons.append(
                f"{label}: MicroTimeoutError: took {elapsed:.3g} s, over the timeout of "
                f"{policy.timeout:g} s (result dropped)"
            )
            continue
        outcome.result = result
        return outcome
    return outcome


def interpolate_responses(
    points: np.ndarray,
    values: np.ndarray | Callable[[np.ndarray], np.ndarray],
    queries: np.ndarray,
    policy: FailurePolicy,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Values at ``queries`` interpolated from solved ``points``, as the policy says.

    Args:
        points: ``(m, d)`` solved states (``m >= 1``), distinct, in a fixed order (the
            result must not depend on the rank that computes it).
        values: ``(m, p)`` their flattened results, or a function of an index array giving
            those rows (only the neighbours' results are then formed).
        queries: ``(q, d)`` failed states.
        policy: Number of neighbours, method, scale and largest distance.
        scale: ``(d,)`` scales of the coordinates, overriding the policy's ``state_scale``
            (e.g. when the coordinates hold more than the state).

    Returns:
        ``(q, p)`` interpolated values and ``(q,)`` distances to the nearest solved state
        (scaled units).

    Raises:
        MicroFailureError: If there is no solved state, or the nearest one of a query is
            farther than ``policy.max_distance``.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    m, d = points.shape
    if m == 0:
        raise MicroFailureError(
            "no solved micro state at the same macro time and step to substitute from"
        )
    if scale is not None:
        scale = np.asarray(scale, dtype=np.float64)
    elif policy.state_scale is not None:
        scale = np.broadcast_to(np.asarray(policy.state_scale, dtype=np.float64), (d,))
    else:
        scale = np.ptp(points, axis=0) if m > 1 else np.zeros(d)
        scale = np.where(scale > 0, scale, 1.0)
    k = min(policy.neighbours or max(2, 2 * (d + 1)), m)
    tree = cKDTree(points / scale)
    # More than k candidates, thinned below: Newton iterates converging at one point give
    # states equal but for round-off, and a fit on such near-duplicates has no slope to
    # speak of (it extrapolated k = 1 + T by 0.04 in a first version).
    pool = min(m, max(8 * k, 32))
    distance, index = tree.query(queries / scale, k=pool)
    distance = distance.reshape(len(queries), pool)
    index = index.reshape(len(queries), pool)
    nearest = distance[:, 0]
    if policy.max_distance is not None and np.any(nearest > policy.max_distance):
        i = int(np.argmax(nearest))
        raise MicroFailureError(
            f"the nearest solved state is {nearest[i]:.3g} (scaled units) from a failed state, "
            f"farther than the policy's max_distance = {policy.max_distance:g}"
        )
    scaled = points / scale
    rows_of = values if callable(values) else (lambda i: values[i])
    result = None
    for j in range(len(queries)):  # failed states only: few, and k is small
        chosen = _spread_neighbours(scaled[index[j]], distance[j], k)
        X = points[index[j][chosen]]
        Y = np.asarray(rows_of(index[j][chosen]), dtype=np.float64)
        if result is None:
            result = np.empty((len(queries), Y.shape[1]))
        dist = distance[j][chosen]
        if policy.interpolation == "idw":
            w = 1.0 / np.maximum(dist, 1e-300) ** 2
            result[j] = w @ Y / w.sum()
            continue
        # Affine least squares about the neighbours' mean: the intercept column is then
        # orthogonal to the others, so the minimum-norm solution (neighbours in a lower-
        # dimensional set) keeps the mean and sets no slope across directions with no data.
        # Directions in which the neighbours spread less than 1e-8 of the distance to the
        # query carry no slope either (rcond relative to that distance, not to the spread).
        centre = X.mean(axis=0)
        A = (X - centre) / scale
        U, sigma, Vt = np.linalg.svd(A, full_matrices=False)
        keep = sigma > 1e-8 * max(float(dist.max()), 1e-300)
        slope = Vt[keep].T @ ((U[:, keep].T @ (Y - Y.mean(axis=0))) / sigma[keep, None])
        result[j] = Y.mean(axis=0) + ((queries[j] - centre) / scale) @ slope
    return result, nearest


def _spread_neighbours(candidates: np.ndarray, distance: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` well-spread candidates: indices into ``candidates`` (sorted by distance).

    A candidate closer to one already chosen than 1e-3 of its own distance to the query is
    skipped as a near-duplicate.
    """
    chosen = [0]
    for i in range(1, len(candidates)):
        if len(chosen) == k:
            break
        gaps = np.linalg.norm(candidates[chosen] - candidates[i], axis=1)
        if gaps.min() > 1e-3 * distance[i]:
            chosen.append(i)
    return np.asarray(chosen)


def flatten_results(results: Sequence[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, list]:
    """Stack result dicts of equal layout into ``(m, p)`` rows; returns the rows and layout."""
    layout = [(name, np.shape(results[0][name])) for name in sorted(results[0])]
    rows = np.array(
        [np.concatenate([np.ravel(r[name]) for name, _ in layout]) for r in results],
        dtype=np.float64,
    ).reshape(len(results), -1)
    return rows, layout


def unflatten_result(row: np.ndarray, layout: list) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten_results` for one row."""
    out, start = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        out[name] = row[start : start + size].reshape(shape).copy()
        start += size
    return out
