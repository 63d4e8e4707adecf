"""Dispatch of micro solves: distinct states solved once, shared over ranks, cached.

Every rank holds the macro points of its own cells. A call to
:meth:`Dispatcher.evaluate` is collective over the communicator:

1. each rank computes the micro states of its points and their keys, and finds the
   distinct keys that are not in its cache. A key is the state rounded to the state
   tolerance, extended by what else decides the solve: the content hash of the point's
   committed history (models with memory), the macro time and time step (time-dependent
   models), and the global point id with the macro step and iteration (stochastic models,
   whose random stream is seeded from them);
2. the missing keys of all ranks are gathered (a few floats each) and made unique, so a
   key needed on both ranks is solved once; the sorted keys are dealt to the ranks in
   contiguous blocks, solved on ``MPI.COMM_SELF``, and the results (small arrays, and the
   updated histories) are shared (``strategy="blocks"``, the default); or, with
   ``strategy="pool"``, taken one by one from a shared MPI counter and sent only to the
   ranks that need them (:mod:`hmm_fem.coupling.pool`, also for dedicated worker ranks);
3. every rank answers its points from the cache, vectorised, and records the updated
   histories of its points as trial (see :mod:`hmm_fem.micro.history`).

So the total number of micro solves and every answer do not depend on the number of
ranks, and a model whose solve depends on no state (a linear cell) is solved once per
run. Errors are collective: if any rank fails, every rank raises the same
:class:`~hmm_fem.micro.MicroSolveError`. What a failed solve leads to (retries with a
remedy, substitution from solved neighbours, abort past a failure fraction) is the
dispatcher's :class:`~hmm_fem.coupling.failure.FailurePolicy`; by default the first
failure aborts.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from ..micro.history import HistoryStore
from ..micro.protocol import HISTORY_KEY, MicroModel, MicroResponse, MicroSolveError, SolveContext
from . import pool as _pool
from .failure import (
    FailurePolicy,
    MicroFailureError,
    flatten_results,
    interpolate_responses,
    solve_with_retries,
    unflatten_result,
)

__all__ = ["Dispatcher", "MicroStatistics", "MacroClock"]


@dataclass
class MicroStatistics:
    """Counters of the micro evaluations.

    ``point_evaluations``, ``micro_solves``, ``cache_hits`` and ``micro_seconds`` are this
    rank's (:meth:`total` sums them over the ranks, seconds: the maximum). ``calls``
    counts collective evaluations, which every rank takes part in, so it is the same on
    every rank and :meth:`total` keeps it. The reports of the macro solvers hold the
    difference over one solve (``after - before``).

    Attributes:
        point_evaluations: Macro points answered (summed over calls).
        micro_solves: Micro solves performed by this rank.
        cache_hits: Point evaluations answered without a solve of their own: from the
            cache, or sharing a state with another point of the same call (the points
            minus the distinct new states, per call).
        micro_seconds: Wall time spent in micro solves on this rank.
        calls: Number of collective evaluations.
        failures: Failed solve attempts on this rank (exceptions, non-finite results,
            timeouts), retried ones included.
        retries: Attempts after the first at a state (see
            :class:`~hmm_fem.coupling.failure.FailurePolicy`).
        timeouts: Attempts that ran past the policy's timeout (counted in ``failures``).
        substitutions: States that failed every attempt on this rank and were substituted.
        substituted_points: Point evaluations of this rank answered by a substitution.
    """

    point_evaluations: int = 0
    micro_solves: int = 0
    cache_hits: int = 0
    micro_seconds: float = 0.0
    calls: int = 0
    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    substitutions: int = 0
    substituted_points: int = 0

    _SUMMED = (
        "point_evaluations",
        "micro_solves",
        "cache_hits",
        "failures",
        "retries",
        "timeouts",
        "substitutions",
        "substituted_points",
    )

    def total(self, comm: MPI.Comm) -> MicroStatistics:
        """The statistics summed over the ranks of ``comm`` (seconds: the maximum).

        Raises:
            RuntimeError: If the ranks disagree on ``calls`` (a collective call was missed).
        """
        sums = comm.allreduce(np.array([getattr(self, f) for f in self._SUMMED]), op=MPI.SUM)
        calls = comm.allgather(self.calls) if comm.size > 1 else [self.calls]
        if len(set(calls)) > 1:
            raise RuntimeError(f"the ranks counted different numbers of evaluations: {calls}")
        return MicroStatistics(
            **{f: int(v) for f, v in zip(self._SUMMED, sums)},
            micro_seconds=comm.allreduce(self.micro_seconds, op=MPI.MAX),
            calls=self.calls,
        )

    def __sub__(self, other: MicroStatistics) -> MicroStatistics:
        return MicroStatistics(
            *(getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self))
        )

    def __add__(self, other: MicroStatistics) -> MicroStatistics:
        return MicroStatistics(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )

    def __str__(self):
        text = (
            f"{self.calls} evaluations, {self.point_evaluations} point evaluations, "
            f"{self.micro_solves} micro solves, {self.cache_hits} cache hits, "
            f"{self.micro_seconds:.3f} s in micro solves"
        )
        if self.failures or self.substitutions:
            text += (
                f"; {self.failures} failed attempts ({self.timeouts} timeouts), "
                f"{self.retries} retries, {self.substitutions} substituted states "
                f"({self.substituted_points} point evaluations)"
            )
        return text


@dataclass
class MacroClock:
    """Where the macro solver stands: what a micro solve sees in its context.

    Attributes:
        time: Macro time at the end of the current step (a load factor in quasi-static
            load stepping).
        dt: The current macro time step (0: quasi-static or steady).
        step: Index of the current macro step.
        iteration: Index of the evaluation within the step (reset by every new step).
    """

    time: float = 0.0
    dt: float = 0.0
    step: int = 0
    iteration: int = 0


def _format_state(names, row) -> str:
    names = list(names) + [f"s{i}" for i in range(len(names), len(row))]
    return ", ".join(f"{n}={v:.6g}" for n, v in zip(names, row)) or "(no state)"


def _solver_of(model: MicroModel) -> Callable[[np.ndarray, SolveContext], dict]:
    """``model.solve`` as ``(state, context) -> dict``; a one-argument solve is adapted."""
    try:
        parameters = list(inspect.signature(model.solve).parameters.values())
    except (TypeError, ValueError):
        return model.solve
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or p.kind == p.VAR_POSITIONAL
    ]
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional):
        return model.solve
    name = type(model).__name__
    if model.history or model.time_dependent or model.stochastic:
        raise TypeError(
            f"{name}.solve(state) takes no context, but the model declares history, time "
            "or noise; write solve(self, state, context) and read context.history, "
            "context.dt or context.rng()"
        )
    warnings.warn(
        f"{name}.solve(state) without a context argument is deprecated; write "
        "solve(self, state, context) (hmm_fem.micro.SolveContext)",
        DeprecationWarning,
        stacklevel=3,
    )
    return lambda state, context: model.solve(state)


class Dispatcher:
    """Collective, cached evaluation of a :class:`MicroModel` at macro points.

    Args:
        model: The micro model.
        comm: Communicator of the macro problem (every rank must call :meth:`evaluate`).
        state_tolerance: Absolute resolution of the micro states (a scalar or one value
            per state column): states are rounded to multiples of it and solved at the
            rounded value, so states closer than it share one solve. ``0`` (the default)
            shares only bitwise-identical states; a small value such as ``1e-8`` makes the
            sharing independent of round-off (e.g. of the number of ranks).
        cache_size: Largest number of solved keys kept (least recently used dropped).
            Stochastic models are not cached across calls: their key holds the macro step
            and iteration, so it never recurs.
        progress: Show a tqdm bar over micro solves: ``None`` = only on a terminal.
        failure_policy: What a failed solve leads to (retries, substitution, abort past a
            failure fraction, timeout); default ``FailurePolicy()``: abort at the
            first failure.
        strategy: How the distinct missing states are dealt to the ranks: ``"blocks"``
            (the default: contiguous blocks of the sorted keys, every result shared with
            every rank) or ``"pool"`` (a dynamic pool: the ranks take the next state from
            a shared MPI counter, so a rank with costly states takes fewer; results go
            only to the ranks whose points need them). See :mod:`hmm_fem.coupling.pool`.
            ``None``: the environment variable ``HMM_FEM_DISPATCH_STRATEGY``, else
            ``"blocks"``.
        workers: Dedicated micro worker ranks (:class:`~hmm_fem.coupling.pool.MicroWorkers`,
            MPMD): ``comm`` must then be ``workers.comm``, the macro ranks call the
            dispatcher as usual and the worker ranks call ``workers.serve(dispatcher)``.
            Needs ``strategy="pool"``.
        activation: Which states are solved and how the others are answered: an
            :class:`~hmm_fem.coupling.adaptivity.ActivationStrategy` such as
            :class:`~hmm_fem.coupling.adaptivity.AdaptiveActivation` (one relative
            tolerance) or the Micro Manager baseline
            :class:`~hmm_fem.coupling.adaptivity.SimilarityActivation`; ``None`` (the
            default): every distinct state is solved.

    Attributes:
        clock: The :class:`MacroClock` (time, time step, step, iteration) the macro solver
            sets with :meth:`set_time`.
        history: The :class:`~hmm_fem.micro.history.HistoryStore` of a model with memory
            (``None`` otherwise).
        statistics: The :class:`MicroStatistics` of this rank.
        last_substituted: ``(n,)`` booleans: which points of the last evaluation were
            answered by a substitution.
        failure_log: One line per failed state (the state, every attempt's reason, and
            whether it was substituted), newest last, at most 1000 lines; the same on
            every rank.
    """

    def __init__(
        self,
        model: MicroModel,
        comm: MPI.Comm = MPI.COMM_WORLD,
        state_tolerance: float | np.ndarray = 0.0,
        cache_size: int = 1_000_000,
        progress: bool | None = None,
        failure_policy: FailurePolicy | None = None,
        strategy: str | None = None,
        workers: _pool.MicroWorkers | None = None,
        activation=None,
    ):
        tolerance = np.asarray(state_tolerance, dtype=np.float64)
        if np.any(tolerance < 0) or not np.all(np.isfinite(tolerance)):
            raise ValueError(f"state_tolerance must be finite and >= 0, got {state_tolerance}")
        if int(cache_size) < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        from_environment = strategy is None
        if strategy is None:
            strategy = os.environ.get("HMM_FEM_DISPATCH_STRATEGY", "blocks")
        if activation is not None and strategy == "pool":
            # An activation strategy predicts from every solved state, so it needs every
            # result on every rank (rank-independent decisions): the fixed blocks.
            message = (
                "an activation strategy (activation=...) needs every solved state on every "
                "rank, which the dynamic pool does not keep"
            )
            if not from_environment or workers is not None:
                raise ValueError(f'{message}: use strategy="blocks" (the default)')
            warnings.warn(
                f"{message}: HMM_FEM_DISPATCH_STRATEGY=pool ignored for this dispatcher, "
                "which deals its solves in fixed blocks",
                stacklevel=2,
            )
            strategy = "blocks"
        if strategy not in _pool.STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, _pool.STRATEGIES))}, got "
                f"{strategy!r}"
            )
        if workers is not None:
            if strategy != "pool":
                raise ValueError(
                    f'dedicated micro workers (workers=...) need strategy="pool", got {strategy!r}'
                )
            if workers.comm is not comm and MPI.Comm.Compare(workers.comm, comm) not in (
                MPI.IDENT,
                MPI.CONGRUENT,
            ):
                raise ValueError(
                    "with dedicated micro workers the dispatcher's comm must be workers.comm "
                    "(macro and worker ranks); the macro problem itself runs on "
                    "workers.macro_comm"
                )
        self.model = model
        self.comm = comm
        self.strategy = strategy
        self.workers = workers
        self._counter = _pool.SharedCounter(comm) if strategy == "pool" else None
        self.state_tolerance = tolerance
        self.cache_size = int(cache_size)
        self.progress = progress
        self.statistics = MicroStatistics()
        self.clock = MacroClock()
        self._solve = _solver_of(model)
        if failure_policy is not None and not isinstance(failure_policy, FailurePolicy):
            raise TypeError(
                f"failure_policy must be a hmm_fem.coupling.FailurePolicy, got "
                f"{type(failure_policy).__name__}"
            )
        self.failure_policy = failure_policy or FailurePolicy()
        self._remedies = self.failure_policy.remedy_sequence(model)
        self.activation = activation
        if activation is not None:
            from .adaptivity import ActivationStrategy

            if not isinstance(activation, ActivationStrategy):
                raise TypeError(
                    "activation must be a hmm_fem.coupling.ActivationStrategy (e.g. "
                    f"AdaptiveActivation(1e-3)), got {type(activation).__name__}"
                )
            activation.check_model(model)
        self.last_substituted = np.zeros(0, dtype=bool)
        # This rank's point evaluations and substituted ones since the dispatcher was made
        # (the run-wide failure budget, FailurePolicy.max_run_fraction).
        self._run_points = 0
        self._run_substituted = 0
        self.failure_log: list[str] = []
        self._warned_step: int | None = None
        self._cache: OrderedDict[bytes, tuple[dict[str, np.ndarray], np.ndarray | None]] = (
            OrderedDict()
        )
        self.history = (
            HistoryStore(model.history, model.initial_history(), comm, type(model).__name__)
            if model.history
            else None
        )

    # -- the macro clock and the steps ---------------------------------------------------------
    def set_time(self, time: float, dt: float = 0.0, step: int | None = None) -> None:
        """Start a macro step ending at ``time`` with time step ``dt``.

        Args:
            time: Macro time (or load factor) at the end of the step.
            dt: The step's length (``0``: quasi-static).
            step: Index of the step; default: the previous one plus one.
        """
        if not (np.isfinite(time) and np.isfinite(dt)) or dt < 0:
            raise ValueError(f"time must be finite and dt finite and >= 0, got {time}, {dt}")
        self.clock = MacroClock(
            float(time), float(dt), self.clock.step + 1 if step is None else int(step), 0
        )

    def commit(self) -> None:
        """Accept the step: the trial histories become the committed ones (collective)."""
        if self.workers is not None:
            self.workers.announce(self, "commit")
        if self.history is not None:
            self.history.commit()
            # Keys of histories nobody holds any more cannot recur: drop their results.
            for key in [k for k, (_, code) in self._cache.items() if not self._held(code)]:
                del self._cache[key]

    def rollback(self) -> None:
        """Cut the step: drop the trial histories, exactly (no solve is redone)."""
        if self.workers is not None:
            self.workers.announce(self, "rollback")
        if self.history is not None:
            self.history.rollback()

    def _held(self, code: np.ndarray | None) -> bool:
        return code is None or self.history.is_referenced(code.tobytes())

    def save_history(self, path: str | os.PathLike):
        """Write the committed histories of all points to one ``.npz`` (collective).

        See :mod:`hmm_fem.micro.history` for the format; returns the path.
        """
        self._require_history()
        self._refuse_with_workers("save_history (a checkpoint)")
        return self.history.save(path)

    def load_history(self, path: str | os.PathLike, point_ids: np.ndarray) -> None:
        """Read committed histories written by :meth:`save_history` (collective).

        Args:
            path: The ``.npz`` file (from a run on any number of ranks).
            point_ids: Global ids of this rank's points, in evaluation order.
        """
        self._require_history()
        self.history.load(path, point_ids)
        self._cache.clear()

    # -- checkpoints -----------------------------------------------------------------------------
    def export_state(self) -> dict:
        """What a restart needs besides the histories: the clock, the cache, the failure log.

        With ``strategy="blocks"`` the cache is the same on every rank (results are shared),
        so any rank's export is the whole cache. With ``"pool"`` every rank holds only the
        results its points needed: the export is then collective and gathers the union
        of the ranks' caches (this rank's entries first). Call it between steps (after
        :meth:`commit`) on every rank; see :mod:`hmm_fem.io.checkpoint` for the file format.

        Returns:
            A dict: ``clock`` (a copy of the :class:`MacroClock`), ``keys`` (the cache keys,
            bytes), ``results`` (their result dicts), ``codes`` (the updated history's code
            of each, or None) and ``failure_log`` (a list of str); oldest cache entry first.
        """
        self._refuse_with_workers("export_state (a checkpoint)")
        keys, results, codes = [], [], []
        items = self._cache.items()
        if self.strategy == "pool":
            items = _pool.union_of_caches(self).items()
        for key, (result, code) in items:
            keys.append(key)
            results.append(result)
            codes.append(code)
        return {
            "clock": dataclasses.replace(self.clock),
            "keys": keys,
            "results": results,
            "codes": codes,
            "failure_log": list(self.failure_log),
        }

    def import_state(self, clock: MacroClock, keys, results, codes, failure_log=()) -> int:
        """Restore what :meth:`export_state` gave (after :meth:`load_history`, if any).

        Cache entries whose updated history no rank holds any more are dropped, as
        :meth:`commit` would have done. With ``strategy="pool"`` the entries are dealt
        round-robin over the ranks (entry ``i`` to rank ``i % size``), so a restart does
        not hold every result on every rank; a rank that needs another's entry gets it
        sent (as a cache hit), not solved again.

        Returns:
            The number of cache entries restored on this rank.

        Raises:
            ValueError: If the lists differ in length.
        """
        if not (len(keys) == len(results) == len(codes)):
            raise ValueError(
                f"dispatcher state: {len(keys)} cache keys, {len(results)} results and "
                f"{len(codes)} history codes; they must match one to one"
            )
        self.clock = dataclasses.replace(clock)
        self._cache.clear()
        deal = self.strategy == "pool" and self.comm.size > 1
        for i, (key, result, code) in enumerate(zip(keys, results, codes)):
            if deal and i % self.comm.size != self.comm.rank:
                continue
            code = None if code is None else np.asarray(code, dtype=np.float64)
            if code is not None and (self.history is None or not self._held(code)):
                continue
            self._cache[bytes(key)] = ({k: np.asarray(v) for k, v in result.items()}, code)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.failure_log = list(failure_log)[-1000:]
        return len(self._cache)

    def _refuse_with_workers(self, what: str) -> None:
        if self.workers is not None:
            raise NotImplementedError(
                f"{what} with dedicated micro workers (MicroWorkers) is not supported yet: the "
                "workers would not take part in its collective calls. Checkpoint a run whose "
                'ranks are all macro ranks (strategy="pool" without workers, or "blocks")'
            )

    def _require_history(self) -> None:
        if self.history is None:
            raise ValueError(f"{type(self.model).__name__} has no history (no internal variables)")

    # -- helpers ---------------------------------------------------------------------------------
    def _round(self, states: np.ndarray) -> np.ndarray:
        """States rounded to the tolerance grid, in units of the tolerance (or as they are)."""
        if not np.any(self.state_tolerance > 0):
            return states
        tol = np.broadcast_to(self.state_tolerance, states.shape[1:])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(tol > 0, np.round(states / np.where(tol > 0, tol, 1.0)), states)

    def _grid_states(self, rounded: np.ndarray, states: np.ndarray) -> np.ndarray:
        """The states at the grid value of their key (so a result depends on the key only)."""
        if not np.any(self.state_tolerance > 0) or not len(rounded):
            return states
        tol = np.broadcast_to(self.state_tolerance, states.shape[1:])
        return np.where(tol > 0, rounded * tol, states)

    def _progress_bar(self, total: int):
        show = self.progress
        if show is None:
            show = sys.stderr.isatty() and self.comm.rank == 0
        if not show or total == 0:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc="micro solves", unit="solve", leave=False)

    @property
    def num_cached(self) -> int:
        """Number of solved states in this rank's cache (with ``"pool"``: its points' only)."""
        return len(self._cache)

    def clear(self) -> None:
        """Forget every cached solve (histories are kept)."""
        self._cache.clear()

    def _default_point_ids(self, n: int) -> np.ndarray:
        offset = self.comm.exscan(n) if self.comm.size > 1 else 0
        return np.arange(n, dtype=np.int64) + int(offset or 0)

    # -- the collective evaluation ------------------------------------------------------------
    def evaluate(
        self,
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, np.ndarray] | None = None,
        describe_point: Callable[[int], str] | None = None,
        point_ids: np.ndarray | None = None,
    ) -> MicroResponse:
        """Answer the model at the ``n`` local points (collective over ``comm``).

        Args:
            inputs: Input name -> ``(n, *shape)`` array.
            parameters: Parameter name -> ``(n,)`` array.
            describe_point: Local point index -> text naming it (cell, coordinates) for errors.
            point_ids: Global ids of the ``n`` points (``(n,)`` integers, the same whatever
                the number of ranks); they seed the random streams of stochastic models and
                index the histories. Default: the local index offset by the points of the
                lower ranks.

        Raises:
            MicroSolveError: on every rank, if any input is not finite or any solve failed;
                the message names the point and the state.
        """
        parameters = {} if parameters is None else dict(parameters)
        if self.workers is not None:
            self.workers.announce(self, "evaluate", inputs, parameters, ids=point_ids is not None)
        describe = describe_point or (lambda i: f"point {i}")
        comm = self.comm
        model = self.model
        self.statistics.calls += 1
        clock = self.clock

        # 1. Local states, their keys, and their finiteness.
        error = None
        states = keys = ids = None
        try:
            for name, array in {**inputs, **parameters}.items():
                array = np.asarray(array, dtype=np.float64)
                bad = ~np.isfinite(array.reshape(len(array), -1 if array.size else 0)).all(axis=1)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise MicroSolveError(
                        f"non-finite macro input '{name}' = {array[i]!r} at "
                        f"{describe(i)} on rank {comm.rank} ({int(bad.sum())} such points); "
                        "the macro iterate diverged or a field is undefined there"
                    )
            states = np.asarray(model.micro_state(inputs, parameters), dtype=np.float64)
            # (not -1: a worker without points has 0 rows)
            states = states.reshape(states.shape[0], int(np.prod(states.shape[1:], dtype=int)))
            n = states.shape[0]
            ids = self._default_point_ids(n) if point_ids is None else np.asarray(point_ids)
            ids = ids.astype(np.int64).reshape(-1)
            if ids.size != n:
                raise MicroSolveError(f"{ids.size} point ids for {n} points on rank {comm.rank}")
            columns = [self._round(states)]
            if self.history is not None:
                self.history.attach(ids)
                columns.append(self.history.committed_codes)
            if model.time_dependent:
                columns.append(np.tile([clock.time, clock.dt], (n, 1)))
            if model.stochastic:
                columns.append(
                    np.column_stack(
                        [ids, np.full(n, clock.step), np.full(n, clock.iteration)]
                    ).astype(np.float64)
                )
            # + 0.0 turns -0.0 into +0.0: np.unique merges the two but their bytes (the
            # cache keys) differ, and a key solved from another rank's +0.0 was not found
            # under the local -0.0 (a state rounded to 0 from below, e.g. a shear of -1e-16).
            keys = np.hstack(columns) + 0.0
        except Exception as exc:  # noqa: BLE001 - reported collectively below
            error = (
                exc
                if isinstance(exc, MicroSolveError)
                else MicroSolveError(
                    f"micro state could not be formed on rank {comm.rank}: "
                    f"{type(exc).__name__}: {exc}"
                )
            )
        self._raise_if_any(error)

        n = states.shape[0]
        width = states.shape[1]
        if self.activation is not None:  # collective
            states, keys = self.activation.redirect(self, states, keys, ids)
        unique_keys, first, inverse = np.unique(
            keys, axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.reshape(-1)
        key_bytes = [row.tobytes() for row in unique_keys]
        missing = [i for i, kb in enumerate(key_bytes) if kb not in self._cache]
        predicted: dict[bytes, dict] = {}
        if self.activation is not None:  # collective: solves or answers every missing key
            predicted = self.activation.resolve(
                self, unique_keys[missing], states[first[missing]], ids[first[missing]]
            )
            done = self._cache.keys() | predicted.keys()
            missing = [i for i in missing if key_bytes[i] not in done]
        # The smallest global point id needing each key: a rank-independent label.
        first_ids = np.full(len(unique_keys), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_ids, inverse, ids)

        # 2. Global set of missing keys, dealt over the ranks.
        local_missing = (unique_keys[missing], states[first[missing]], first_ids[missing])
        gathered = comm.allgather(local_missing) if comm.size > 1 else [local_missing]
        all_keys = np.concatenate([g[0] for g in gathered])
        all_states = np.concatenate([g[1] for g in gathered])
        all_ids = np.concatenate([g[2] for g in gathered])
        if len(all_keys):
            global_keys, pick, back = np.unique(
                all_keys, axis=0, return_index=True, return_inverse=True
            )
            global_states = all_states[pick]
            global_ids = np.full(len(global_keys), np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(global_ids, back.reshape(-1), all_ids)
        else:
            global_keys, global_states, global_ids = all_keys, all_states, all_ids
        # Solve at the grid value: the result depends on the key only, so it is the same
        # whichever point (or rank) met the state first.
        global_states = self._grid_states(global_keys[:, :width], global_states)
        policy = self.failure_policy
        if self.strategy == "pool":
            # Dealt dynamically (hmm_fem.coupling.pool); results go to their requesters.
            row_rank = np.repeat(np.arange(comm.size), [len(g[0]) for g in gathered])
            requesters = (
                _pool.requesters_of(back, row_rank, len(global_keys)) if len(all_keys) else []
            )
            holder, tasks = _pool.served_from_caches(self, global_keys)
            solved, failed_here = _pool.solve_dynamic(
                self, tasks, global_keys, global_states, global_ids, width
            )
        else:
            # Contiguous blocks of the sorted keys: neighbouring (nearly equal) states stay
            # on one rank, where the cell can reuse or warm-start from the previous solve.
            bounds = np.linspace(0, len(global_keys), comm.size + 1).astype(int)
            solved, failed_here = self._solve_keys(
                range(bounds[comm.rank], bounds[comm.rank + 1]),
                global_keys,
                global_states,
                global_ids,
                width,
            )

        failures = comm.allgather(failed_here) if comm.size > 1 else [failed_here]
        # In the order of the sorted global keys, whichever rank solved them.
        failures = sorted((f for part in failures for f in part), key=lambda f: f[0])
        failures = [f[1:] for f in failures]
        if failures:
            self._log_failures(failures, model.state_names, policy.substitute)
            where_first = self._where(failures[0][0], key_bytes, inverse, describe)
            if not policy.substitute:
                # The type of the abort before the policy existed: callers record it by name.
                key, state, reason = failures[0]
                raise MicroSolveError(
                    f"micro solve failed for state {_format_state(model.state_names, state)} "
                    f"(needed at {', '.join(where_first[:3]) or 'an unknown point'}): {reason}"
                )

        # 3. Share the results, fill the cache, answer the local points.
        if self.strategy == "pool":
            entries, served = _pool.share_by_requester(
                self, solved, holder, requesters, global_keys
            )
            # Keys another rank had cached: hits, as with the shared cache of "blocks".
            self.statistics.cache_hits += served
        else:
            everything = comm.allgather(solved) if comm.size > 1 else [solved]
            entries = [
                (
                    kb,
                    result,
                    None
                    if new_history is None
                    else self.history.add(new_history, "an updated history"),
                )
                for part in everything
                for _, kb, result, new_history in part
            ]
        for kb, result, code in entries:
            self._cache[kb] = (result, code)
        substituted: dict[bytes, tuple[dict, np.ndarray | None]] = {}
        if failures:
            substituted = self._substitute_failures(
                failures, width, key_bytes, inverse, n, where_first, failed_here
            )
        solutions_of_unique = []
        codes_of_unique = []
        for kb in key_bytes:
            if kb in substituted:
                result, code = substituted[kb]
            elif kb in predicted:
                result, code = predicted[kb], None
            else:
                self._cache.move_to_end(kb)
                result, code = self._cache[kb]
            solutions_of_unique.append(result)
            codes_of_unique.append(code)
        flags = np.array([kb in substituted for kb in key_bytes], dtype=bool)
        self.last_substituted = flags[inverse] if n else np.zeros(0, dtype=bool)
        self.statistics.substituted_points += int(self.last_substituted.sum())
        self._run_substituted += int(self.last_substituted.sum())
        self._run_points += n
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if model.stochastic:
            # A stochastic key holds the step and iteration: it never recurs.
            self._cache.clear()
        self.statistics.point_evaluations += n
        self.statistics.cache_hits += n - len(missing)
        self.clock.iteration += 1
        if self.history is not None and n:
            self.history.set_trial(np.array(codes_of_unique)[inverse])

        if solutions_of_unique:
            solutions = {
                name: np.stack([s[name] for s in solutions_of_unique])[inverse]
                for name in solutions_of_unique[0]
            }
        else:
            solutions = {}
        if self.workers is not None and self.workers.is_worker:
            return None  # a dedicated worker has no points to answer
        response = model.respond(solutions, inputs, parameters)
        if self.activation is not None:
            response.solutions.update(self.activation.point_fields(key_bytes, inverse))
        return response

    # -- what activation strategies use (hmm_fem.coupling.adaptivity) ---------------------------
    def cached_results(self):
        """``(key bytes, result dict)`` of every cached solve (the same on every rank)."""
        return ((kb, result) for kb, (result, _) in self._cache.items())

    def grid_states(self, rows: np.ndarray) -> np.ndarray:
        """The states at which keys' state columns (``rows``) were solved."""
        return self._grid_states(rows, rows)

    def solve_keys(self, keys: np.ndarray, states: np.ndarray, ids: np.ndarray) -> dict:
        """Solve rank-identical keys, dealt over the ranks; results shared and cached.

        Collective. For models without history (activation strategies); a failure raises
        :class:`~hmm_fem.micro.MicroSolveError` on every rank.

        Args:
            keys: ``(q, m)`` keys (the same on every rank, in the same order).
            states: ``(q, s)`` their states.
            ids: ``(q,)`` a global point id needing each.

        Returns:
            Key bytes -> seconds of its solve.
        """
        comm, model = self.comm, self.model
        width = states.shape[1] if states.ndim == 2 else 0
        states = self._grid_states(keys[:, :width], states)
        bounds = np.linspace(0, len(keys), comm.size + 1).astype(int)
        solved, error = [], None
        start = time.perf_counter()
        for g in range(bounds[comm.rank], bounds[comm.rank + 1]):
            began = time.perf_counter()
            try:
                result, _ = self._attempt(states[g], self._context(keys[g], width, int(ids[g])))
            except Exception as exc:  # noqa: BLE001 - raised collectively below
                self.statistics.failures += 1
                error = MicroSolveError(
                    f"micro solve failed for state {_format_state(model.state_names, states[g])}"
                    f": {type(exc).__name__}: {exc}"
                )
                break
            solved.append((keys[g].tobytes(), result, time.perf_counter() - began))
        self.statistics.micro_seconds += time.perf_counter() - start
        self.statistics.micro_solves += len(solved)
        self._raise_if_any(error)
        seconds = {}
        for part in comm.allgather(solved) if comm.size > 1 else [solved]:
            for kb, result, spent in part:
                self._cache[kb] = (result, None)
                seconds[kb] = spent
        return seconds

    def _solve_keys(self, indices, global_keys, global_states, global_ids, width):
        """Solve the global keys ``indices`` here, in that order (an iterable of ints).

        Returns:
            ``solved``: ``(g, key bytes, result, updated history or None)`` per solved key;
            ``failed``: ``(g, key bytes, state, reason)`` per failed key. Without
            substitution the loop stops at the first failure, and the ``indices`` iterator
            is told so by ``indices.stop_claims()`` if it has that method (the dynamic pool).
        """
        policy = self.failure_policy
        plain = policy.retries == 0 and policy.timeout is None
        solved: list[tuple[int, bytes, dict, dict | None]] = []
        failed_here: list[tuple[int, bytes, np.ndarray, str]] = []
        total = len(indices) if hasattr(indices, "__len__") else len(global_keys)
        bar = self._progress_bar(total)
        start = time.perf_counter()
        stop = getattr(indices, "stop_claims", lambda: None)
        for g in indices:
            kb = global_keys[g].tobytes()
            try:
                context = self._context(global_keys[g], width, int(global_ids[g]))
            except Exception as exc:  # noqa: BLE001 - reported collectively below
                failed_here.append((g, kb, global_states[g], f"{type(exc).__name__}: {exc}"))
                stop()
                break
            if plain:
                # One attempt, no clock: the common case costs no more than before the policy.
                try:
                    result, new_history = self._attempt(global_states[g], context)
                except Exception as exc:  # noqa: BLE001 - reported collectively below
                    self.statistics.failures += 1
                    failed_here.append((g, kb, global_states[g], f"{type(exc).__name__}: {exc}"))
                    if not policy.substitute:
                        stop()
                        break
                    continue
                solved.append((g, kb, result, new_history))
                if bar is not None:
                    bar.update()
                continue
            outcome = solve_with_retries(
                lambda ctx, g=g: self._attempt(global_states[g], ctx),
                context,
                policy,
                self._remedies,
            )
            self.statistics.failures += len(outcome.reasons)
            self.statistics.retries += outcome.attempts - 1
            self.statistics.timeouts += outcome.timeouts
            if outcome.failed:
                failed_here.append((g, kb, global_states[g], "; ".join(outcome.reasons)))
                if not policy.substitute:
                    stop()
                    break
                continue
            result, new_history = outcome.result
            solved.append((g, kb, result, new_history))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        self.statistics.micro_seconds += time.perf_counter() - start
        self.statistics.micro_solves += len(solved)
        return solved, failed_here

    def _attempt(self, state: np.ndarray, context: SolveContext):
        """One solve: its checked, finite result and its updated history (or raise)."""
        result = dict(self._solve(state, context))
        new_history = self._take_history(result)
        result = {k: np.asarray(v, dtype=np.float64) for k, v in result.items()}
        for name, value in result.items():
            if not np.all(np.isfinite(value)):
                raise MicroSolveError(f"micro result '{name}' is not finite: {value!r}")
        if new_history is not None:
            for name, value in new_history.items():
                if not np.all(np.isfinite(value)):
                    raise MicroSolveError(f"updated history '{name}' is not finite: {value!r}")
        return result, new_history

    def _where(self, key: bytes, key_bytes, inverse, describe) -> list[str]:
        """Text naming the points of all ranks that need ``key`` (collective)."""
        where = [
            describe(int(np.flatnonzero(inverse == i)[0]))
            for i, kb in enumerate(key_bytes)
            if kb == key
        ]
        comm = self.comm
        return [w for ws in (comm.allgather(where) if comm.size > 1 else [where]) for w in ws]

    def _log_failures(self, failures, names, substitute: bool) -> None:
        clock = self.clock
        for _, state, reason in failures:
            self.failure_log.append(
                f"step {clock.step} iteration {clock.iteration}: state "
                f"{_format_state(names, state)}: {reason}"
                + (" -> substituted" if substitute else " -> abort")
            )
        del self.failure_log[:-1000]

    def _substitute_failures(
        self, failures, width, key_bytes, inverse, n, where_first, failed_here
    ) -> dict[bytes, tuple[dict, np.ndarray | None]]:
        """Check the failure fraction, then interpolate the failed states (collective).

        Every rank computes every substitution from the same (replicated) cache, so the
        answers and the decision to abort are the same on every rank.
        """
        comm, model, policy = self.comm, self.model, self.failure_policy
        failed = {kb for kb, _, _ in failures}
        counts = np.bincount(inverse, minlength=len(key_bytes)) if n else np.zeros(0, int)
        local_failed = sum(int(c) for kb, c in zip(key_bytes, counts) if kb in failed)
        tally = np.array([local_failed, n, self._run_substituted, self._run_points])
        failed_points, total_points, run_substituted, run_points = (
            comm.allreduce(tally, op=MPI.SUM) if comm.size > 1 else tally
        )
        run_substituted, run_points = run_substituted + failed_points, run_points + total_points
        _, first_state, first_reason = failures[0]
        first = (
            f"state {_format_state(model.state_names, first_state)} (needed at "
            f"{', '.join(where_first[:3]) or 'an unknown point'}): {first_reason}"
        )
        fraction = failed_points / max(total_points, 1)
        if fraction > policy.max_failure_fraction:
            raise MicroFailureError(
                f"{failed_points} of {total_points} macro points ({100 * fraction:.3g} %) of "
                f"this evaluation (step {self.clock.step}, iteration {self.clock.iteration}) "
                f"need one of {len(failures)} micro states that failed, more than the failure "
                f"policy allows (max_failure_fraction = {100 * policy.max_failure_fraction:g} "
                f"%, per evaluation over all ranks). First failure: {first}. Make the micro "
                "solve robust (remedies, retries), shorten the macro step, or raise the limit."
            )
        run_fraction = run_substituted / max(run_points, 1)
        if policy.max_run_fraction is not None and run_fraction > policy.max_run_fraction:
            raise MicroFailureError(
                f"the run's failure budget is spent: {run_substituted} of {run_points} point "
                f"evaluations of this run ({100 * run_fraction:.3g} %, this evaluation's "
                f"{failed_points} of {total_points} included; step {self.clock.step}, "
                f"iteration {self.clock.iteration}) needed a substituted micro state, more "
                f"than the failure policy allows (max_run_fraction = "
                f"{100 * policy.max_run_fraction:g} %, over all ranks). First failure of this "
                f"evaluation: {first}. Make the micro solve robust (remedies, retries), "
                "shorten the macro step, or raise the budget."
            )
        error = None
        substituted: dict[bytes, tuple[dict, np.ndarray | None]] = {}
        own_cache = self._cache
        if self.strategy == "pool":
            # Every rank interpolates from the same states: the union of the ranks' caches
            # (gathered for the substitution only), as the shared cache of "blocks".
            self._cache = _pool.union_of_caches(self)
        try:
            substituted = self._interpolate_failed(failures, width)
        except MicroFailureError as exc:
            error = MicroFailureError(
                f"{len(failures)} micro states failed and cannot be substituted: {exc}. "
                f"First failure: {first}"
            )
        except Exception as exc:  # noqa: BLE001 - raised collectively
            error = MicroFailureError(
                f"substitution of {len(failures)} failed micro states failed: "
                f"{type(exc).__name__}: {exc}. First failure: {first}"
            )
        finally:
            self._cache = own_cache
        self._raise_if_any(error, MicroFailureError)
        self.statistics.substitutions += len(failed_here)
        if comm.rank == 0 and self._warned_step != self.clock.step:
            warnings.warn(
                f"{len(failures)} micro states failed and were substituted from solved "
                f"neighbours ({failed_points} of {total_points} points, {100 * fraction:.3g} %, "
                f"step {self.clock.step}, iteration {self.clock.iteration}); first failure: "
                f"{first}. Later substitutions in this step are recorded in the statistics "
                "and the dispatcher's failure_log, not warned again",
                RuntimeWarning,
                stacklevel=4,
            )
        self._warned_step = self.clock.step
        return substituted

    def _interpolate_failed(self, failures, width) -> dict[bytes, tuple[dict, np.ndarray | None]]:
        """The substituted result (and updated-history code) of every failed key."""
        if width == 0:
            raise MicroFailureError(
                f"{type(self.model).__name__} has no state columns, so there is no neighbouring "
                "state to interpolate from"
            )
        if not self._cache:
            raise MicroFailureError("no micro state has been solved yet")
        candidates = np.array([np.frombuffer(kb, dtype=np.float64) for kb in self._cache])
        # A fixed order (sorted rows), so that ties are broken alike on every rank.
        candidates = np.unique(candidates, axis=0)
        if self.history is not None:
            # Keys of earlier steps whose committed history was pruned cannot be placed.
            held = [self.history.is_referenced(k[width : width + 2].tobytes()) for k in candidates]
            candidates = candidates[np.asarray(held, dtype=bool)]
        # What must match besides the state: the time and the step; a stochastic key's
        # point id need not (other points' samples are neighbours). The committed history
        # is not matched but joins the coordinates (every plastic point has its own).
        match = np.ones(candidates.shape[1], dtype=bool)
        match[:width] = False
        if self.model.stochastic:
            match[-3] = False
        if self.history is not None:
            match[width : width + 2] = False
        failed_keys = np.array([np.frombuffer(kb, dtype=np.float64) for kb, _, _ in failures])
        coordinates = self._coordinates(candidates, width)
        queries = self._coordinates(failed_keys, width)
        scale = None
        if self.history is not None:
            # Histories in units of their range; the state as the policy says.
            span = np.ptp(coordinates, axis=0)
            scale = np.where(span > 0, span, 1.0)
            if self.failure_policy.state_scale is not None:
                scale[:width] = self.failure_policy.state_scale
        out: dict[bytes, tuple[dict, np.ndarray | None]] = {}
        groups: dict[bytes, list[int]] = {}
        for j, key in enumerate(failed_keys):
            groups.setdefault(key[match].tobytes(), []).append(j)
        for group_key, members in groups.items():
            same = np.all(candidates[:, match] == np.frombuffer(group_key), axis=1)
            rows = np.flatnonzero(same)
            if not len(rows):
                raise MicroFailureError(
                    "no solved micro state at the same macro time and step to substitute from"
                )
            layout: list = []

            def rows_of(indices, rows=rows, layout=layout):
                entries = []
                for i in indices:
                    result, code = self._cache[candidates[rows[i]].tobytes()]
                    entry = dict(result)
                    if self.history is not None:
                        entry.update(
                            {f"{HISTORY_KEY}:{k}": v for k, v in self.history.arrays(code).items()}
                        )
                    entries.append(entry)
                flat, layout[:] = flatten_results(entries)
                return flat

            interpolated, _ = interpolate_responses(
                coordinates[rows], rows_of, queries[members], self.failure_policy, scale
            )
            for j, row in zip(members, interpolated):
                entry = unflatten_result(row, layout)
                history = {
                    k.split(":", 1)[1]: entry.pop(k)
                    for k in list(entry)
                    if k.startswith(f"{HISTORY_KEY}:")
                }
                code = None
                if self.history is not None:
                    code = self.history.add(history, "an interpolated history")
                out[failures[j][0]] = (entry, code)
        return out

    def _coordinates(self, keys: np.ndarray, width: int) -> np.ndarray:
        """Where keys lie for a substitution: the grid states, then the committed histories."""
        coordinates = self._grid_states(keys[:, :width], keys[:, :width])
        if self.history is None:
            return coordinates
        histories = [self.history.arrays(key[width : width + 2]) for key in keys]
        flat = np.array(
            [np.concatenate([np.ravel(h[name]) for name in sorted(h)]) for h in histories]
        ).reshape(len(keys), -1)
        return np.hstack([coordinates, flat])

    def _context(self, key: np.ndarray, width: int, point: int) -> SolveContext:
        """The :class:`SolveContext` of one global key."""
        clock = self.clock
        history = None
        if self.history is not None:
            history = self.history.arrays(key[width : width + 2])
        return SolveContext(
            time=clock.time,
            dt=clock.dt,
            step=clock.step,
            iteration=clock.iteration,
            point=point,
            history=history,
            seed=(int(self.model.seed), point, clock.step, clock.iteration),
        )

    def _take_history(self, result: dict) -> dict | None:
        """Pop the updated history from a solve result (required iff the model has one)."""
        new_history = result.pop(HISTORY_KEY, None)
        if self.history is None:
            if new_history is not None:
                raise MicroSolveError(
                    f"the solve returned a '{HISTORY_KEY}' but {type(self.model).__name__} "
                    "declares no history; declare its names and shapes in `history`"
                )
            return None
        if new_history is None:
            raise MicroSolveError(
                f"{type(self.model).__name__} declares a history but its solve returned no "
                f"'{HISTORY_KEY}' entry; return the updated internal variables"
            )
        return self.history.check(new_history, "the updated history")

    def _raise_if_any(
        self, error: Exception | None, kind: type[MicroSolveError] = MicroSolveError
    ) -> None:
        """Raise ``error`` collectively: if any rank has one, every rank raises (a ``kind``)."""
        messages = (
            self.comm.allgather(None if error is None else str(error))
            if self.comm.size > 1
            else [None if error is None else str(error)]
        )
        messages = [m for m in messages if m is not None]
        if messages:
            if isinstance(error, kind):
                raise error
            raise kind(messages[0])
