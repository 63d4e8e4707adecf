"""Dispatch of micro solves: distinct states solved once, shared over ranks, cached.

Every rank holds the macro points of its own cells. A call to
:meth:`Dispatcher.evaluate` is collective over the communicator:

1. each rank computes the micro states of its points and finds the distinct ones
   that are not in its cache;
2. the missing states of all ranks are gathered (a few floats each) and made unique,
   so a state needed on both ranks is solved once; the sorted states are dealt to the
   ranks in contiguous blocks, solved on ``MPI.COMM_SELF``, and the results (small
   arrays) are shared;
3. every rank answers its points from the cache, vectorised.

So the total number of micro solves does not depend on the number of ranks, and a
model whose solve depends on no state (a linear cell) is solved once per run.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from ..micro.protocol import MicroModel, MicroResponse, MicroSolveError

__all__ = ["Dispatcher", "MicroStatistics"]


@dataclass
class MicroStatistics:
    """Counters of the micro evaluations (of this rank, and summed over ranks).

    Attributes:
        point_evaluations: Macro points answered (summed over calls).
        micro_solves: Micro solves performed by this rank.
        cache_hits: Point evaluations answered without a solve of their own: from the
            cache, or sharing a state with another point of the same call (the points
            minus the distinct new states, per call).
        micro_seconds: Wall time spent in micro solves on this rank.
        calls: Number of (collective) evaluations.
    """

    point_evaluations: int = 0
    micro_solves: int = 0
    cache_hits: int = 0
    micro_seconds: float = 0.0
    calls: int = 0

    def total(self, comm: MPI.Comm) -> MicroStatistics:
        """The statistics summed over the ranks of ``comm`` (seconds: the maximum)."""
        sums = comm.allreduce(
            np.array([self.point_evaluations, self.micro_solves, self.cache_hits]), op=MPI.SUM
        )
        return MicroStatistics(
            int(sums[0]),
            int(sums[1]),
            int(sums[2]),
            comm.allreduce(self.micro_seconds, op=MPI.MAX),
            self.calls,
        )

    def __str__(self):
        return (
            f"{self.point_evaluations} point evaluations, {self.micro_solves} micro solves, "
            f"{self.cache_hits} cache hits, {self.micro_seconds:.3f} s in micro solves"
        )


def _format_state(names, row) -> str:
    names = list(names) + [f"s{i}" for i in range(len(names), len(row))]
    return ", ".join(f"{n}={v:.6g}" for n, v in zip(names, row)) or "(no state)"


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
        cache_size: Largest number of solved states kept (least recently used dropped).
        progress: Show a tqdm bar over micro solves: ``None`` = only on a terminal.
    """

    def __init__(
        self,
        model: MicroModel,
        comm: MPI.Comm = MPI.COMM_WORLD,
        state_tolerance: float | np.ndarray = 0.0,
        cache_size: int = 1_000_000,
        progress: bool | None = None,
    ):
        tolerance = np.asarray(state_tolerance, dtype=np.float64)
        if np.any(tolerance < 0) or not np.all(np.isfinite(tolerance)):
            raise ValueError(f"state_tolerance must be finite and >= 0, got {state_tolerance}")
        self.model = model
        self.comm = comm
        self.state_tolerance = tolerance
        self.cache_size = int(cache_size)
        self.progress = progress
        self.statistics = MicroStatistics()
        self._cache: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()

    # -- helpers ---------------------------------------------------------------------------------
    def _keys(self, states: np.ndarray) -> np.ndarray:
        """The cache keys: states rounded to the tolerance grid (or the states themselves)."""
        if not np.any(self.state_tolerance > 0):
            return states
        tol = np.broadcast_to(self.state_tolerance, states.shape[1:])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(tol > 0, np.round(states / np.where(tol > 0, tol, 1.0)), states)

    def _progress_bar(self, total: int):
        show = self.progress
        if show is None:
            show = sys.stderr.isatty() and self.comm.rank == 0
        if not show or total == 0:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc="micro solves", unit="solve", leave=False)

    def clear(self) -> None:
        """Forget every cached solve."""
        self._cache.clear()

    # -- the collective evaluation ------------------------------------------------------------
    def evaluate(
        self,
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, np.ndarray] | None = None,
        describe_point: Callable[[int], str] | None = None,
    ) -> MicroResponse:
        """Answer the model at the ``n`` local points (collective over ``comm``).

        Args:
            inputs: Input name -> ``(n, *shape)`` array.
            parameters: Parameter name -> ``(n,)`` array.
            describe_point: Local point index -> text naming it (cell, coordinates) for errors.

        Raises:
            MicroSolveError: on every rank, if any input is not finite or any solve failed;
                the message names the point and the state.
        """
        parameters = {} if parameters is None else dict(parameters)
        describe = describe_point or (lambda i: f"point {i}")
        comm = self.comm
        self.statistics.calls += 1

        # 1. Local states and their finiteness.
        error = None
        states = keys = None
        try:
            for name, array in {**inputs, **parameters}.items():
                bad = ~np.isfinite(np.asarray(array, dtype=np.float64).reshape(len(array), -1)).all(
                    axis=1
                )
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise MicroSolveError(
                        f"non-finite macro input '{name}' = {np.asarray(array)[i]!r} at "
                        f"{describe(i)} on rank {comm.rank} ({int(bad.sum())} such points); "
                        "the macro iterate diverged or a field is undefined there"
                    )
            states = np.asarray(self.model.micro_state(inputs, parameters), dtype=np.float64)
            states = states.reshape(states.shape[0], -1)
            keys = self._keys(states)
        except Exception as exc:  # noqa: BLE001 - reported collectively below
            error = (
                exc
                if isinstance(exc, MicroSolveError)
                else MicroSolveError(f"micro state could not be formed on rank {comm.rank}: {exc}")
            )
        self._raise_if_any(error)

        n = states.shape[0]
        unique_keys, first, inverse = np.unique(
            keys, axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.reshape(-1)
        key_bytes = [row.tobytes() for row in unique_keys]
        missing = [i for i, kb in enumerate(key_bytes) if kb not in self._cache]

        # 2. Global set of missing states, dealt over the ranks.
        local_missing = (unique_keys[missing], states[first[missing]])
        gathered = comm.allgather(local_missing) if comm.size > 1 else [local_missing]
        all_keys = np.concatenate([g[0] for g in gathered]) if gathered else unique_keys[:0]
        all_states = np.concatenate([g[1] for g in gathered]) if gathered else states[:0]
        if len(all_keys):
            global_keys, pick = np.unique(all_keys, axis=0, return_index=True)
            global_states = all_states[pick]
        else:
            global_keys, global_states = all_keys, all_states
        if np.any(self.state_tolerance > 0) and len(global_keys):
            # Solve at the grid value: the result depends on the key only, so it is the
            # same whichever point (or rank) met the state first.
            tol = np.broadcast_to(self.state_tolerance, global_states.shape[1:])
            global_states = np.where(tol > 0, global_keys * tol, global_states)
        # Contiguous blocks of the sorted states: neighbouring (nearly equal) states stay on
        # one rank, where the cell can reuse or warm-start from the previous solve.
        bounds = np.linspace(0, len(global_keys), comm.size + 1).astype(int)
        mine = range(bounds[comm.rank], bounds[comm.rank + 1])
        solved: list[tuple[bytes, dict]] = []
        failure = None
        bar = self._progress_bar(len(mine))
        start = time.perf_counter()
        for g in mine:
            try:
                result = self.model.solve(global_states[g])
                result = {k: np.asarray(v, dtype=np.float64) for k, v in result.items()}
                for name, value in result.items():
                    if not np.all(np.isfinite(value)):
                        raise MicroSolveError(f"micro result '{name}' is not finite: {value!r}")
            except Exception as exc:  # noqa: BLE001 - reported collectively below
                failure = (
                    global_keys[g].tobytes(),
                    global_states[g],
                    f"{type(exc).__name__}: {exc}",
                )
                break
            solved.append((global_keys[g].tobytes(), result))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        self.statistics.micro_seconds += time.perf_counter() - start
        self.statistics.micro_solves += len(solved)

        failures = comm.allgather(failure) if comm.size > 1 else [failure]
        failures = [f for f in failures if f is not None]
        if failures:
            key, state, reason = failures[0]
            where = [
                describe(int(np.flatnonzero(inverse == i)[0]))
                for i, kb in enumerate(key_bytes)
                if kb == key
            ]
            where_all = [
                w for ws in (comm.allgather(where) if comm.size > 1 else [where]) for w in ws
            ]
            raise MicroSolveError(
                f"micro solve failed for state {_format_state(self.model.state_names, state)} "
                f"(needed at {', '.join(where_all[:3]) or 'an unknown point'}): {reason}"
            )

        # 3. Share the results, fill the cache, answer the local points.
        everything = comm.allgather(solved) if comm.size > 1 else [solved]
        for part in everything:
            for kb, result in part:
                self._cache[kb] = result
        solutions_of_unique = []
        for kb in key_bytes:
            self._cache.move_to_end(kb)
            solutions_of_unique.append(self._cache[kb])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.statistics.point_evaluations += n
        self.statistics.cache_hits += n - len(missing)

        if solutions_of_unique:
            solutions = {
                name: np.stack([s[name] for s in solutions_of_unique])[inverse]
                for name in solutions_of_unique[0]
            }
        else:
            solutions = {}
        return self.model.respond(solutions, inputs, parameters)

    def _raise_if_any(self, error: Exception | None) -> None:
        """Raise ``error`` collectively: if any rank has one, every rank raises."""
        messages = (
            self.comm.allgather(None if error is None else str(error))
            if self.comm.size > 1
            else [None if error is None else str(error)]
        )
        messages = [m for m in messages if m is not None]
        if messages:
            if isinstance(error, MicroSolveError):
                raise error
            raise MicroSolveError(messages[0])
