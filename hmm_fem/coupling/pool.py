"""The dynamic pool of micro solves: a shared MPI counter, results sent to their requesters.

:class:`~hmm_fem.coupling.Dispatcher` with ``strategy="pool"`` deals the distinct missing
states of one collective evaluation (the same sorted global list on every rank, see
:mod:`hmm_fem.coupling.dispatch`) dynamically instead of in fixed blocks:

1. **Cached elsewhere.** Every rank marks which of the global keys its own cache holds; the
   lowest such rank serves it (one ``Allreduce`` of an integer per key). Only the rest is
   solved.
2. **Self-scheduling.** The ranks take the next key to solve from a counter in an MPI
   window on rank 0 (``MPI.Win.Fetch_and_op``, passive target: rank 0 need not be in an
   MPI call for it to advance). A rank whose states are costly takes fewer of them, so the
   ranks finish within about one solve of each other, whatever the spread of the solve
   times: the balance comes from the measured solve time itself, not from a prediction.
3. **Results stay where needed.** Every solved (or served) result goes only to the ranks
   whose points asked for it (one ``alltoall``), so a rank's cache holds the results of its
   own points: it grows as N/ranks, not N. The updated histories of a model with memory
   are still shared with every rank (the :class:`~hmm_fem.micro.history.HistoryStore`
   keeps every committed history on every rank, so that any rank can solve any state).

Answers do not depend on the strategy or the number of ranks: a result depends on its key
and the rank-independent context (the point id of the smallest point needing the state
seeds a stochastic stream) only, failures are ordered by key, and a substitution
interpolates from the union of the ranks' caches (gathered for that call only), which holds
the same states as the shared cache of ``"blocks"``. A micro model that warm-starts from its
previous solve gives results that depend on which solves came before on the same rank, with
any strategy; the pool mixes the order more than the blocks.

MPMD (:class:`MicroWorkers`): the last ranks of a communicator are dedicated micro workers
and the first ones run the macro problem on :attr:`MicroWorkers.macro_comm`. The
dispatcher lives on the whole communicator; the macro ranks call it as usual (each call is
announced to the workers by a broadcast from rank 0) and never solve, and the workers run
:meth:`MicroWorkers.serve`, which takes part in every evaluation with no points of its own.

Example (MPMD, 1 macro rank + 1 worker under ``mpirun -n 2``)::

    workers = MicroWorkers(MPI.COMM_WORLD, workers=1)
    model = ConductivityModel(...)
    if workers.is_worker:
        dispatcher = Dispatcher(model, workers.comm, strategy="pool", workers=workers)
        workers.serve(dispatcher)
    else:
        mesh = dolfinx.mesh.create_unit_square(workers.macro_comm, 8, 8)
        problem = SteadyHeat(mesh, model, ..., comm=workers.comm, strategy="pool",
                             workers=workers)
        problem.solve()
        workers.stop()
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mpi4py import MPI

from ..micro.protocol import MicroSolveError

__all__ = ["STRATEGIES", "SharedCounter", "MicroWorkers"]

#: The dispatch strategies of :class:`~hmm_fem.coupling.Dispatcher`.
STRATEGIES = ("blocks", "pool")


class SharedCounter:
    """A task counter in an MPI window on rank 0, advanced by ``Fetch_and_op``.

    Created collectively; :meth:`reset` (rank 0) and :meth:`take` need no other rank to be
    in an MPI call. The caller orders a reset before the next takes by a collective call.

    Args:
        comm: The communicator of the ranks that take tasks.
    """

    def __init__(self, comm: MPI.Comm):
        self.comm = comm
        self._local = 0
        self._win = None
        if comm.size > 1:
            self._win = MPI.Win.Allocate(8 if comm.rank == 0 else 0, 8, comm=comm)
        self._out = np.zeros(1, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Set the counter to 0 (rank 0; no-op on the others)."""
        self._local = 0
        if self._win is not None and self.comm.rank == 0:
            self._win.Lock(0, MPI.LOCK_EXCLUSIVE)
            self._win.Accumulate(np.zeros(1, dtype=np.int64), 0, op=MPI.REPLACE)
            self._win.Unlock(0)

    def take(self, count: int = 1) -> int:
        """Add ``count`` to the counter atomically; returns its value before."""
        if self._win is None:
            value, self._local = self._local, self._local + int(count)
            return value
        self._win.Lock(0, MPI.LOCK_SHARED)
        self._win.Fetch_and_op(np.array([count], dtype=np.int64), self._out, 0, 0, MPI.SUM)
        self._win.Unlock(0)
        return int(self._out[0])

    def free(self) -> None:
        """Free the window (collective)."""
        if self._win is not None:
            self._win.Free()
            self._win = None


class _Claims:
    """Iterate over ``tasks`` as this rank claims them from the shared counter."""

    def __init__(self, counter: SharedCounter, tasks: np.ndarray, chunk: int = 1):
        self.counter = counter
        self.tasks = tasks
        self.chunk = chunk

    def __iter__(self):
        n = len(self.tasks)
        while True:
            i = self.counter.take(self.chunk)
            if i >= n:
                return
            for j in range(i, min(i + self.chunk, n)):
                yield int(self.tasks[j])

    def stop_claims(self) -> None:
        """Make every rank's next claim the last: a failure aborts the evaluation."""
        self.counter.take(len(self.tasks) + 1)


def requesters_of(back: np.ndarray, row_rank: np.ndarray, n: int) -> list[np.ndarray]:
    """The ranks that asked for each of the ``n`` global keys.

    Args:
        back: Global key index of every gathered missing key (the ranks' lists, in rank
            order).
        row_rank: The rank of every gathered missing key.
        n: Number of global keys.
    """
    back = np.asarray(back).reshape(-1)
    order = np.argsort(back, kind="stable")
    splits = np.cumsum(np.bincount(back, minlength=n))[:-1]
    return np.split(row_rank[order], splits)


def served_from_caches(dispatcher, global_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rank's cache serves each global key (-1: none), and the keys to solve.

    Collective. Rank 0 also resets the task counter here: the ``Allreduce`` orders the reset
    before every rank's first claim.
    """
    comm = dispatcher.comm
    dispatcher._counter.reset()
    n = len(global_keys)
    if comm.size == 1:
        # A single rank's missing keys are not in its cache.
        return np.full(n, -1, dtype=np.int32), np.arange(n)
    cache = dispatcher._cache
    holder = np.array(
        [comm.rank if row.tobytes() in cache else comm.size for row in global_keys],
        dtype=np.int32,
    ).reshape(n)
    comm.Allreduce(MPI.IN_PLACE, holder, op=MPI.MIN)
    holder[holder == comm.size] = -1
    return holder, np.flatnonzero(holder < 0)


def solve_dynamic(dispatcher, tasks, global_keys, global_states, global_ids, width):
    """Solve the ``tasks`` (global key indices) as this rank claims them.

    Returns what :meth:`Dispatcher._solve_keys` returns. Macro ranks with dedicated workers
    claim nothing.
    """
    workers = dispatcher.workers
    if workers is not None and not workers.is_worker:
        return [], []
    claims = _Claims(dispatcher._counter, np.asarray(tasks, dtype=np.int64))
    return dispatcher._solve_keys(claims, global_keys, global_states, global_ids, width)


def share_by_requester(dispatcher, solved, holder, requesters, global_keys):
    """Send every solved or cached result to the ranks that asked for it (collective).

    Args:
        dispatcher: The dispatcher.
        solved: ``(g, key bytes, result, updated history or None)`` solved on this rank.
        holder: Rank whose cache serves each global key (-1: solved).
        requesters: The ranks that asked for each global key.
        global_keys: The global keys.

    Returns:
        ``(entries, served)``: ``(key bytes, result, history code or None)`` for this
        rank's cache, in the order of the global keys, and how many of them came from
        another rank's cache.
    """
    comm = dispatcher.comm
    history = dispatcher.history
    codes: dict[int, np.ndarray] = {}
    if history is not None:
        # Updated histories go to every rank (the store keeps all committed histories).
        mine = [(g, new_history) for g, _, _, new_history in solved]
        for part in comm.allgather(mine) if comm.size > 1 else [mine]:
            for g, new_history in part:
                codes[g] = history.add(new_history, "an updated history")
    send: list[list] = [[] for _ in range(comm.size)]
    for g, kb, result, _ in solved:
        for r in requesters[g]:
            send[r].append((g, kb, result, codes.get(g)))
    for g in np.flatnonzero(holder == comm.rank):
        kb = global_keys[g].tobytes()
        result, code = dispatcher._cache[kb]
        for r in requesters[g]:
            send[r].append((int(g), kb, result, code))
    received = comm.alltoall(send) if comm.size > 1 else send
    entries = sorted((e for part in received for e in part), key=lambda e: e[0])
    served = sum(1 for e in entries if holder[e[0]] >= 0)
    return [(kb, result, code) for _, kb, result, code in entries], served


def union_of_caches(dispatcher) -> OrderedDict:
    """The union of the ranks' caches, this rank's entries first (collective)."""
    comm = dispatcher.comm
    local = list(dispatcher._cache.items())
    union = OrderedDict(local)
    if comm.size > 1:
        for part in comm.allgather(local):
            for key, value in part:
                union.setdefault(key, value)
    return union


def cache_nbytes(dispatcher) -> int:
    """Bytes of the result arrays and keys in this rank's cache (the dispatcher's memory)."""
    total = 0
    for key, (result, code) in dispatcher._cache.items():
        total += len(key) + sum(np.asarray(v).nbytes for v in result.values())
        total += 0 if code is None else np.asarray(code).nbytes
    return total


class MicroWorkers:
    """Macro ranks plus dedicated micro worker ranks (MPMD) on one communicator.

    The last ``workers`` ranks of ``comm`` become workers; the others run the macro problem
    on :attr:`macro_comm`. Collective.

    Args:
        comm: All ranks (macro and workers).
        workers: Number of worker ranks (at least 1, fewer than ``comm.size``).

    Attributes:
        comm: All ranks: the dispatcher's communicator.
        macro_comm: The macro ranks' communicator (``None`` on a worker).
        is_worker: Whether this rank is a worker.
        n_workers: Number of worker ranks.

    Raises:
        ValueError: If ``workers`` leaves no macro rank or no worker.
    """

    def __init__(self, comm: MPI.Comm = MPI.COMM_WORLD, workers: int = 1):
        workers = int(workers)
        if not 1 <= workers < comm.size:
            raise ValueError(
                f"MicroWorkers needs at least one macro rank and one worker: {workers} "
                f"workers of {comm.size} ranks; run on more ranks (mpirun -n ...) or choose "
                "1 <= workers < ranks"
            )
        self.comm = comm
        self.n_workers = workers
        self.is_worker = comm.rank >= comm.size - workers
        split = comm.Split(1 if self.is_worker else 0, comm.rank)
        self.macro_comm = None if self.is_worker else split
        self._worker_comm = split if self.is_worker else None

    def announce(self, dispatcher, command: str, inputs=None, parameters=None, ids=True):
        """Tell the workers what the macro ranks call next (macro ranks; collective)."""
        if self.is_worker:
            return
        message = None
        if self.macro_comm.rank == 0:
            empty = {k: np.asarray(v)[:0] for k, v in (inputs or {}).items()}
            no_parameters = {k: np.asarray(v)[:0] for k, v in (parameters or {}).items()}
            # The macro side's settings rule: the workers solve what it would solve.
            settings = (dispatcher.failure_policy, dispatcher.state_tolerance)
            message = (command, dispatcher.clock, empty, no_parameters, ids, settings)
        self.comm.bcast(message, root=0)

    def serve(self, dispatcher) -> int:
        """Take part in every call of the macro ranks until :meth:`stop` (workers only).

        Every call brings the macro side's clock, failure policy and state tolerance (the
        worker's own dispatcher settings are replaced by them). A micro failure that the
        macro ranks see as an exception (the same one on every rank) is theirs to handle:
        the worker goes on serving.

        Returns:
            The number of evaluations served.
        """
        if not self.is_worker:
            raise RuntimeError("MicroWorkers.serve runs on the worker ranks only")
        if dispatcher.workers is not self:
            raise ValueError("serve(dispatcher): the dispatcher was made with other workers")
        served = 0
        while True:
            command, clock, inputs, parameters, ids, settings = self.comm.bcast(None, root=0)
            if command == "stop":
                return served
            dispatcher.clock = clock
            policy, dispatcher.state_tolerance = settings
            if policy != dispatcher.failure_policy:
                dispatcher.failure_policy = policy
                dispatcher._remedies = policy.remedy_sequence(dispatcher.model)
            try:
                if command == "evaluate":
                    dispatcher.evaluate(
                        inputs, parameters, point_ids=np.zeros(0, np.int64) if ids else None
                    )
                    served += 1
                elif command == "commit":
                    dispatcher.commit()
                elif command == "rollback":
                    dispatcher.rollback()
                else:
                    raise RuntimeError(f"unknown command {command!r} from the macro ranks")
            except MicroSolveError:
                continue

    def stop(self) -> None:
        """Release the workers (macro ranks; collective over :attr:`comm`)."""
        if self.is_worker:
            return
        message = ("stop", None, None, None, False, None) if self.macro_comm.rank == 0 else None
        self.comm.bcast(message, root=0)
