"""Internal variables of micro models, per macro point: trial, commit, rollback, save, load.

A micro model with memory (:attr:`~hmm_fem.micro.protocol.MicroModel.history`) carries
per macro point a set of arrays (plastic strain at every micro quadrature point, a
block's concentration profile ...). :class:`HistoryStore` keeps them for the points of
one rank:

* **Committed** histories are those at the start of the current macro step. Every solve
  of the step starts from them, whatever the Newton iterate.
* **Trial** histories are the ones returned by the last evaluation. :meth:`commit` makes
  them committed when the macro solver accepts the step; :meth:`rollback` drops them when
  it cuts the step, so a retried step starts exactly where the accepted one ended.

Histories are stored once per distinct content: points whose histories are equal (every
virgin point, every point that stayed elastic) share one entry, identified by a 104-bit
content hash. The hash is part of the dispatcher's key, so points with different
histories never share a solve, and equal ones (on any rank) do. Every rank keeps the
entries referenced by the committed histories of all ranks (so any rank can solve any
state); :meth:`commit` prunes the rest.

The store saves to and loads from one ``.npz`` file indexed by global point id, so a run
restarts on any number of ranks. The format: ``point_ids`` (``N``, int64, sorted),
``index`` (``N``, the entry of each point), and for every history name ``history/<name>``
(``U`` entries of the declared shape).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from mpi4py import MPI

from ..materials.validation import require_named_arrays

__all__ = ["HistoryStore", "history_code"]

_MASK52 = (1 << 52) - 1


def history_code(history: Mapping[str, np.ndarray]) -> np.ndarray:
    """The content hash of a history as two exactly representable floats (104 bits).

    Equal arrays (same names, shapes and float64 values) give equal codes on every rank.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(history):
        array = np.ascontiguousarray(history[name], dtype=np.float64)
        digest.update(name.encode())
        digest.update(np.asarray(array.shape, dtype=np.int64).tobytes())
        digest.update(array.tobytes())
    raw = digest.digest()
    high = int.from_bytes(raw[:8], "little") & _MASK52
    low = int.from_bytes(raw[8:], "little") & _MASK52
    return np.array([float(high), float(low)])


class HistoryStore:
    """The committed and trial histories of the macro points of one rank.

    Args:
        shapes: History name -> shape at one point (the model's ``history``).
        initial: The virgin history (name -> array of that shape).
        comm: Communicator of the macro problem (:meth:`commit`, :meth:`save`,
            :meth:`load` are collective over it).
        owner: Name of the model, for error messages.

    Raises:
        ValueError: If ``initial`` does not match ``shapes`` or is not finite.
    """

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        initial: Mapping[str, np.ndarray],
        comm: MPI.Comm = MPI.COMM_WORLD,
        owner: str = "micro model",
    ):
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.comm = comm
        self.owner = owner
        self._table: dict[bytes, dict[str, np.ndarray]] = {}
        self.initial_code = self.add(initial, what="the initial history")
        self.point_ids: np.ndarray | None = None
        self._committed: np.ndarray | None = None
        self._trial: np.ndarray | None = None

    # -- entries -------------------------------------------------------------------------------
    def check(self, history, what: str) -> dict[str, np.ndarray]:
        """``history`` as read-only arrays of the declared names and shapes, or a clear error."""
        checked = require_named_arrays(
            history, self.shapes, f"{self.owner}: {what}", "the model declares its history"
        )
        for array in checked.values():
            array.setflags(write=False)
        return checked

    def add(self, history: Mapping[str, np.ndarray], what: str = "a history") -> np.ndarray:
        """Store ``history`` (validated, read only) and return its code."""
        checked = self.check(history, what)
        code = history_code(checked)
        self._table.setdefault(code.tobytes(), checked)
        return code

    def arrays(self, code: np.ndarray) -> dict[str, np.ndarray]:
        """The (read-only) history arrays of ``code``."""
        try:
            return self._table[np.asarray(code, dtype=np.float64).tobytes()]
        except KeyError:
            raise KeyError(
                f"{self.owner}: no history with code {np.asarray(code).tolist()} on rank "
                f"{self.comm.rank} (internal error: the store was pruned while in use)"
            ) from None

    @property
    def num_entries(self) -> int:
        """Number of distinct histories held on this rank."""
        return len(self._table)

    # -- points --------------------------------------------------------------------------------
    def attach(self, point_ids: np.ndarray) -> None:
        """Bind the store to the global ids of this rank's points (virgin on the first call).

        Raises:
            ValueError: If later calls give other points: a model with history must be
                evaluated at the same points every time.
        """
        point_ids = np.asarray(point_ids, dtype=np.int64).reshape(-1)
        if self.point_ids is None:
            self.point_ids = point_ids.copy()
            self._committed = np.tile(self.initial_code, (point_ids.size, 1))
            self._trial = self._committed.copy()
            return
        if point_ids.shape != self.point_ids.shape or not np.array_equal(point_ids, self.point_ids):
            raise ValueError(
                f"{self.owner} carries a history per macro point, so it must be evaluated at "
                f"the same points every time: the first evaluation on rank {self.comm.rank} "
                f"had {self.point_ids.size} points, this one {point_ids.size} (or other ids). "
                "Use one dispatcher (one micro_operator) per set of points."
            )

    @property
    def committed_codes(self) -> np.ndarray:
        """``(n, 2)`` codes of the committed histories of this rank's points."""
        self._require_points()
        return self._committed

    @property
    def trial_codes(self) -> np.ndarray:
        """``(n, 2)`` codes of the trial histories (the last evaluation's)."""
        self._require_points()
        return self._trial

    def set_trial(self, codes: np.ndarray) -> None:
        """Record the histories returned by an evaluation as trial."""
        self._require_points()
        self._trial = np.asarray(codes, dtype=np.float64).reshape(self._committed.shape).copy()

    def values(self, name: str, which: str = "trial") -> np.ndarray:
        """History ``name`` at every point of this rank, ``(n, *shape)`` (materialised)."""
        self._require_points()
        if name not in self.shapes:
            raise KeyError(f"{self.owner} has no history '{name}' (it has {sorted(self.shapes)})")
        codes = {"trial": self._trial, "committed": self._committed}[which]
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        blocks = np.stack([self.arrays(code)[name] for code in unique])
        return blocks[inverse.reshape(-1)]

    def _require_points(self) -> None:
        if self.point_ids is None:
            raise RuntimeError(f"{self.owner}: no history yet (the model was never evaluated)")

    # -- steps ---------------------------------------------------------------------------------
    def commit(self) -> None:
        """Accept the trial histories (collective); drop entries no rank references."""
        if self.point_ids is not None:
            self._committed = self._trial.copy()
        self._prune()

    def rollback(self) -> None:
        """Drop the trial histories: back to the committed ones (local, exact)."""
        if self.point_ids is not None:
            self._trial = self._committed.copy()

    def _prune(self) -> None:
        local = set()
        if self._committed is not None:
            local = {row.tobytes() for row in np.unique(self._committed, axis=0)}
        referenced = set().union(*self.comm.allgather(local)) if self.comm.size > 1 else local
        referenced.add(self.initial_code.tobytes())
        for key in [k for k in self._table if k not in referenced]:
            del self._table[key]

    def is_referenced(self, code_bytes: bytes) -> bool:
        """Whether an entry is still held (a committed history of some rank, or new)."""
        return code_bytes in self._table

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the committed histories of all ranks to one ``.npz`` (collective; rank 0 writes).

        Returns:
            The path written.
        """
        self._require_points()
        path = Path(path)
        unique, inverse = np.unique(self._committed, axis=0, return_inverse=True)
        local = (
            self.point_ids,
            inverse.reshape(-1),
            {name: np.stack([self.arrays(c)[name] for c in unique]) for name in self.shapes},
        )
        parts = self.comm.gather(local, root=0)
        if self.comm.rank == 0:
            ids, index, offset = [], [], 0
            blocks: dict[str, list[np.ndarray]] = {name: [] for name in self.shapes}
            for point_ids, idx, arrays in parts:
                ids.append(point_ids)
                index.append(idx + offset)
                for name in self.shapes:
                    blocks[name].append(arrays[name])
                offset += next(iter(arrays.values())).shape[0] if arrays else 0
            ids, index = np.concatenate(ids), np.concatenate(index)
            order = np.argsort(ids, kind="stable")
            data = {"point_ids": ids[order], "index": index[order]}
            for name in self.shapes:
                data[f"history/{name}"] = np.concatenate(blocks[name])
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                np.savez(handle, **data)
        self.comm.barrier()
        return path

    def load(self, path: str | os.PathLike, point_ids: np.ndarray) -> None:
        """Read committed histories saved by :meth:`save` for this rank's points (collective).

        Args:
            path: The ``.npz`` file.
            point_ids: Global ids of this rank's points (the file may come from a run on
                another number of ranks).

        Raises:
            ValueError: If the file does not hold the model's history names and shapes, or
                lacks some of the points.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{self.owner}: history file '{path}' does not exist")
        with np.load(path) as data:
            names = {k.removeprefix("history/") for k in data.files if k.startswith("history/")}
            if names != set(self.shapes):
                raise ValueError(
                    f"{self.owner}: history file '{path}' holds {sorted(names)}, the model "
                    f"declares {sorted(self.shapes)}"
                )
            ids, index = data["point_ids"], data["index"]
            blocks = {name: data[f"history/{name}"] for name in self.shapes}
        point_ids = np.asarray(point_ids, dtype=np.int64).reshape(-1)
        where = np.searchsorted(ids, point_ids)
        found = (where < ids.size) & (ids[np.minimum(where, ids.size - 1)] == point_ids)
        if not np.all(found):
            missing = point_ids[~found][:5].tolist()
            raise ValueError(
                f"{self.owner}: history file '{path}' has no entry for global points {missing}"
                " (was it written for another macro mesh or quadrature degree?)"
            )
        # Every rank keeps every entry (any rank may solve any state).
        codes = np.array(
            [
                self.add({name: blocks[name][u] for name in self.shapes}, f"entry {u} of '{path}'")
                for u in range(next(iter(blocks.values())).shape[0])
            ]
        ).reshape(-1, 2)
        self.point_ids = point_ids.copy()
        self._committed = codes[index[where]].copy()
        self._trial = self._committed.copy()
        self._prune()
