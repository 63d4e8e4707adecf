"""Checkpoint and restart of a macro run with its micro models, on any number of ranks.

A checkpoint is one folder ``<root>/step-<NNNNNNNN>/``:

* ``fields.bp`` (ADIOS2, written by adios4dolfinx): the macro mesh **in its input order**
  and the problem's functions (``T``, ``T_old`` ...). The input order makes the restarted
  mesh's ``original_cell_index`` that of the first run, so the global micro point ids
  (input cell x points per cell + q) and everything keyed by them (histories, random
  streams) carry over to a run on any number of ranks.
* ``coupling-<i>.history.npz`` (models with memory): the committed histories of every
  point, the format of :meth:`hmm_fem.micro.history.HistoryStore.save`.
* ``coupling-<i>.dispatcher.npz``: the dispatcher's macro clock and state cache, one row
  per cache entry, oldest first: ``cache/keys`` (``(n, w)`` float64, the keys' bytes),
  ``cache/codes`` (``(n, 2)``, the updated history's content hash, NaN: none),
  ``cache/result/<name>`` (``(n, *shape)``), and ``clock`` (``time, dt, step, iteration``)
  and ``failure_log`` (JSON text).
* ``coupling-<i>.surrogate-<j>.npz``: the training of the ``j``-th surrogate found in the
  coupling's model (the model itself or a model it wraps, through ``.model``: anything with
  ``training_arrays()`` and ``restore_training(arrays)``, e.g.
  :class:`~hmm_fem.micro.GaussianProcessSurrogate` (its training states and solves, fit)
  and :class:`~hmm_fem.micro.ReducedBasisSurrogate` (the reduced basis with its vectors,
  :meth:`~hmm_fem.cells.ReducedBasis.to_arrays`)). The training is the same on every rank;
  rank 0 writes it, every rank reads it back, so the restarted run answers as the
  uninterrupted one.
* ``manifest.json``, written last, a JSON object: ``format`` (``"hmm-fem-checkpoint"``),
  ``version`` (:data:`CHECKPOINT_VERSION`), ``step``, ``time``, ``created`` (UTC, ISO
  8601), ``ranks`` (of the run that wrote it), ``problem`` (class name), ``functions``
  (names), ``scalars`` (name -> float; JSON keeps floats exactly), ``couplings`` (one
  object per coupling: ``model`` class name, ``history`` (bool), ``cache_entries``,
  ``surrogates`` (class names, in file order; absent in checkpoints written before
  surrogates were saved)).

Atomicity: every rank writes into ``<root>/.step-<NNNNNNNN>.partial/``; after a barrier
rank 0 writes the manifest, flushes it to disk and renames the folder to its final name
(a POSIX rename is atomic). A run killed while writing leaves a ``.partial`` folder,
which :func:`latest_checkpoint` never loads (and the next save of that step replaces);
a final-named folder without a readable manifest of this version is skipped with a
warning. Only the ``keep`` newest complete checkpoints are kept.

Example:
    >>> ckpt = Checkpointer("run/checkpoints", every_steps=10, every_seconds=600)
    >>> for n in range(steps):
    ...     heat.step()
    ...     ckpt.maybe_save(heat, step=n + 1)
    >>> # later, on any number of ranks:
    >>> found = latest_checkpoint("run/checkpoints")
    >>> heat = TransientHeat(read_checkpoint_mesh(found, comm), model, ...)
    >>> step = restore(heat, found)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from mpi4py import MPI

__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "Checkpointer",
    "latest_checkpoint",
    "read_checkpoint_mesh",
    "restore",
    "save_checkpoint",
    "surrogates_of",
]

#: Version of the layout above; a loader refuses other versions (with the reason).
CHECKPOINT_VERSION = 1
_FORMAT = "hmm-fem-checkpoint"
_PREFIX = "step-"
_PARTIAL = ".partial"
_FIELDS = "fields.bp"
_MANIFEST = "manifest.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint found on disk.

    Attributes:
        path: Its folder.
        step: The macro step it was saved after.
        manifest: The parsed ``manifest.json``.
    """

    path: Path
    step: int
    manifest: dict


def _parts(problem) -> dict:
    try:
        parts = problem.checkpoint_state()
    except AttributeError:
        raise TypeError(
            f"{type(problem).__name__} cannot be checkpointed: it has no checkpoint_state() "
            "(the heat problems have one; see hmm_fem.macro.heat.SteadyHeat.checkpoint_state)"
        ) from None
    return parts


@contextlib.contextmanager
def _quiet_adios():
    """Silence adios4dolfinx's own deprecation warnings.

    adios4dolfinx 0.11 still calls ``geometry.dofmap`` and ``geometry.cmap``, deprecated in
    DOLFINx 0.11: its DeprecationWarnings are not ours to act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="adios4dolfinx")
        warnings.filterwarnings("ignore", message=r"(dofmap|cmap) is deprecated")
        yield


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def surrogates_of(model) -> list:
    """The surrogates in a micro model: it and the models it wraps (``.model``), outermost first.

    A surrogate is anything with ``training_arrays()`` and ``restore_training(arrays)``.
    """
    found, seen = [], set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        if callable(getattr(model, "training_arrays", None)) and callable(
            getattr(model, "restore_training", None)
        ):
            found.append(model)
        model = getattr(model, "model", None)
    return found


def _collective(comm: MPI.Comm, work, *args):
    """``work(*args)`` on every rank; an exception on any rank is raised on every rank."""
    failure, message = None, None
    try:
        result = work(*args)
    except Exception as exc:  # noqa: BLE001 - re-raised collectively below
        failure, message, result = exc, f"{type(exc).__name__}: {exc}", None
    messages = comm.allgather(message) if comm.size > 1 else [message]
    if failure is not None:
        raise failure
    for rank, text in enumerate(messages):
        if text is not None:
            raise RuntimeError(f"checkpoint: rank {rank} failed: {text}")
    return result


def _write_arrays(path: Path, arrays: dict) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _step_name(step: int) -> str:
    return f"{_PREFIX}{int(step):08d}"


def save_checkpoint(problem, root: str | os.PathLike, step: int, keep: int = 2) -> Path:
    """Write a complete checkpoint of ``problem`` after macro step ``step`` (collective).

    Call it between steps (histories committed). The folder appears under its final name
    only once everything is on disk.

    Args:
        problem: A macro problem with ``checkpoint_state()`` (e.g.
            :class:`~hmm_fem.macro.TransientHeat`).
        root: The folder holding the checkpoints of the run.
        step: The macro step just completed (names the checkpoint).
        keep: How many complete checkpoints to keep (the oldest are removed), ``>= 1``.

    Returns:
        The checkpoint's folder.
    """
    import adios4dolfinx

    if int(keep) < 1:
        raise ValueError(f"keep must be >= 1 (the checkpoint just written), got {keep}")
    parts = _parts(problem)
    functions = parts["functions"]
    if not functions:
        raise ValueError(f"{type(problem).__name__}.checkpoint_state() gave no functions")
    mesh = next(iter(functions.values())).function_space.mesh
    comm = mesh.comm
    root = Path(root)
    final = root / _step_name(step)
    partial = root / f".{_step_name(step)}{_PARTIAL}"

    def start():
        # A partial folder of this step is a killed earlier attempt: start afresh.
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)

    _on_root(comm, start)

    fields = partial / _FIELDS
    with _quiet_adios():
        adios4dolfinx.write_mesh_input_order(fields, mesh)
        for name, function in functions.items():
            adios4dolfinx.write_function_on_input_mesh(fields, function, name=name)

    couplings = []
    for i, coupling in enumerate(parts["couplings"]):
        dispatcher = coupling.dispatcher
        # Before the first evaluation every point is virgin: nothing to save.
        history = dispatcher.history is not None and bool(
            comm.allreduce(dispatcher.history.point_ids is not None, op=MPI.LOR)
        )
        if history:
            dispatcher.save_history(partial / f"coupling-{i}.history.npz")
        state = dispatcher.export_state()
        _on_root(comm, _write_dispatcher, partial / f"coupling-{i}.dispatcher.npz", state)
        surrogates = surrogates_of(dispatcher.model)
        for j, surrogate in enumerate(surrogates):
            arrays = _collective(comm, surrogate.training_arrays)
            _on_root(comm, _write_arrays, partial / f"coupling-{i}.surrogate-{j}.npz", arrays)
        couplings.append(
            {
                "model": type(dispatcher.model).__name__,
                "history": history,
                "cache_entries": len(state["keys"]),
                "surrogates": [type(s).__name__ for s in surrogates],
            }
        )
    manifest = None
    if comm.rank == 0:
        manifest = {
            "format": _FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": int(step),
            "time": float(parts["scalars"].get("time", 0.0)),
            "created": datetime.now(UTC).isoformat(),
            "ranks": comm.size,
            "problem": type(problem).__name__,
            "functions": list(functions),
            "scalars": {k: float(v) for k, v in parts["scalars"].items()},
            "couplings": couplings,
        }

    def finish():
        _commit_folder(partial, final, manifest)
        _prune(root, keep)

    _on_root(comm, finish)
    return final


def _on_root(comm: MPI.Comm, work, *args) -> None:
    """Run ``work(*args)`` on rank 0; an exception there is raised on every rank."""
    failure, message = None, None
    if comm.rank == 0:
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised collectively below
            failure, message = exc, f"{type(exc).__name__}: {exc}"
    message = comm.bcast(message, root=0)
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"checkpoint: rank 0 failed: {message}")


def _commit_folder(partial: Path, final: Path, manifest: dict) -> None:
    """Write the manifest last, flush everything, and rename the folder (rank 0)."""
    path = partial / _MANIFEST
    with open(path, "w") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    for dirpath, _, files in os.walk(partial):
        for f in files:
            _fsync(Path(dirpath) / f)
    if final.exists():
        # The same step saved again (a run restarted before it): replace it.
        shutil.rmtree(final)
    os.rename(partial, final)
    _fsync(final.parent)


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.glob(f"{_PREFIX}*") if (p / _MANIFEST).is_file())
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _write_dispatcher(path: Path, state: dict) -> None:
    keys, results, codes = state["keys"], state["results"], state["codes"]
    clock = state["clock"]
    data = {
        "clock": np.array([clock.time, clock.dt, clock.step, clock.iteration], dtype=np.float64),
        "failure_log": np.array(json.dumps(state["failure_log"])),
    }
    widths = {len(k) for k in keys}
    if len(widths) > 1:
        raise ValueError(f"dispatcher cache keys of several widths {sorted(widths)} (bytes)")
    data["cache/keys"] = (
        np.array([np.frombuffer(k, dtype=np.float64) for k in keys]) if keys else np.zeros((0, 0))
    )
    data["cache/codes"] = np.array(
        [np.full(2, np.nan) if c is None else np.asarray(c, dtype=np.float64) for c in codes]
    ).reshape(-1, 2)
    names = set(results[0]) if results else set()
    for r in results:
        if set(r) != names:
            raise ValueError(
                f"dispatcher cache results with different names ({sorted(names)} and "
                f"{sorted(r)}): the micro model must return the same names for every state"
            )
    for name in sorted(names):
        data[f"cache/result/{name}"] = np.stack([np.asarray(r[name]) for r in results])
    with open(path, "wb") as handle:
        np.savez(handle, **data)


def _read_dispatcher(path: Path) -> dict:
    from ..coupling.dispatch import MacroClock

    with np.load(path) as data:
        time_, dt, step, iteration = data["clock"]
        keys = [row.tobytes() for row in np.asarray(data["cache/keys"], dtype=np.float64)]
        codes = [None if np.isnan(c[0]) else c.copy() for c in data["cache/codes"]]
        names = [k.removeprefix("cache/result/") for k in data.files if k.startswith("cache/r")]
        blocks = {name: data[f"cache/result/{name}"] for name in names}
        failure_log = json.loads(str(data["failure_log"]))
    results = [{name: blocks[name][i] for name in names} for i in range(len(keys))]
    clock = MacroClock(float(time_), float(dt), int(step), int(iteration))
    return {
        "clock": clock,
        "keys": keys,
        "results": results,
        "codes": codes,
        "failure_log": failure_log,
    }


def _read_manifest(folder: Path) -> dict:
    """The manifest of ``folder``, or a ValueError saying why it is not a usable checkpoint."""
    path = folder / _MANIFEST
    if not path.is_file():
        raise ValueError("no manifest.json (an incomplete or foreign folder)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable manifest.json: {exc}") from None
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"manifest format {manifest.get('format')!r}, not {_FORMAT!r}")
    if manifest.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint version {manifest.get('version')}, this hmm-fem reads version "
            f"{CHECKPOINT_VERSION}"
        )
    return manifest


def latest_checkpoint(root: str | os.PathLike, comm: MPI.Comm = MPI.COMM_WORLD) -> Checkpoint:
    """The newest complete checkpoint under ``root`` (collective: rank 0 looks, all agree).

    ``.partial`` folders (a save that was killed) are never considered; a final-named
    folder whose manifest is missing, unreadable or of another version is skipped with a
    warning. The choice is logged (logger ``hmm_fem.io.checkpoint``) and returned.

    Raises:
        FileNotFoundError: If ``root`` holds no complete checkpoint.
    """
    root = Path(root)
    found = None
    skipped: list[str] = []
    if comm.rank == 0:
        candidates = []
        for folder in root.glob(f"{_PREFIX}*") if root.is_dir() else []:
            try:
                candidates.append((int(folder.name.removeprefix(_PREFIX)), folder))
            except ValueError:
                continue
        for step, folder in sorted(candidates, reverse=True):
            try:
                found = (str(folder), step, _read_manifest(folder))
                break
            except ValueError as exc:
                skipped.append(f"{folder}: {exc}")
        partial = []
        if root.is_dir():
            partial = sorted(p.name for p in root.glob(f".{_PREFIX}*{_PARTIAL}"))
        found = (found, skipped, partial)
    found, skipped, partial = comm.bcast(found, root=0)
    for reason in skipped:
        warnings.warn(f"checkpoint skipped: {reason}", RuntimeWarning, stacklevel=2)
    if found is None:
        raise FileNotFoundError(
            f"no complete checkpoint under '{root}'"
            + (f" (ignored {len(partial)} half-written: {', '.join(partial)})" if partial else "")
            + (f" (skipped: {'; '.join(skipped)})" if skipped else "")
        )
    path, step, manifest = found
    log.info(
        "restarting from %s (step %d, time %r, written on %d ranks)%s",
        path,
        step,
        manifest["time"],
        manifest["ranks"],
        f"; ignored half-written {', '.join(partial)}" if partial else "",
    )
    return Checkpoint(Path(path), step, manifest)


def _as_checkpoint(where, comm: MPI.Comm) -> Checkpoint:
    if isinstance(where, Checkpoint):
        return where
    folder = Path(where)
    if (folder / _MANIFEST).is_file():
        manifest = _read_manifest(folder)
        return Checkpoint(folder, int(manifest["step"]), manifest)
    return latest_checkpoint(folder, comm)


def read_checkpoint_mesh(where, comm: MPI.Comm = MPI.COMM_WORLD):
    """The macro mesh of a checkpoint, distributed over ``comm`` (any number of ranks).

    Args:
        where: A :class:`Checkpoint`, a checkpoint folder, or the root of a run's
            checkpoints (then the newest complete one).
        comm: The communicator of the restarted run.
    """
    import adios4dolfinx

    checkpoint = _as_checkpoint(where, comm)
    with _quiet_adios():
        return adios4dolfinx.read_mesh(checkpoint.path / _FIELDS, comm)


def restore(problem, where) -> int:
    """Load a checkpoint into ``problem``, built on :func:`read_checkpoint_mesh` (collective).

    Reads the functions, the scalars (time, time step), every coupling's histories, macro
    clock, state cache and the training of its surrogates (see :func:`surrogates_of`).
    The micro statistics start afresh.

    Args:
        problem: The macro problem, of the same class and options as the saved one.
        where: A :class:`Checkpoint`, a checkpoint folder, or a run's checkpoint root.

    Returns:
        The step the checkpoint was saved after (the run continues with the next one).

    Raises:
        ValueError: If the checkpoint does not match the problem (class, functions,
            couplings and their models and surrogates).

    Warns:
        RuntimeWarning: If the problem's models hold surrogates and the checkpoint (an
            older one) holds no training for them: they keep their present training.
    """
    import adios4dolfinx

    parts = _parts(problem)
    functions = parts["functions"]
    comm = next(iter(functions.values())).function_space.mesh.comm
    checkpoint = _as_checkpoint(where, comm)
    manifest = checkpoint.manifest
    saved_models = [c["model"] for c in manifest["couplings"]]
    models = [type(c.dispatcher.model).__name__ for c in parts["couplings"]]
    problems = (manifest["problem"], type(problem).__name__)
    if problems[0] != problems[1] or sorted(manifest["functions"]) != sorted(functions):
        raise ValueError(
            f"checkpoint {checkpoint.path} holds a {problems[0]} with functions "
            f"{manifest['functions']}; cannot restore a {problems[1]} with {list(functions)}"
        )
    if saved_models != models:
        raise ValueError(
            f"checkpoint {checkpoint.path} holds micro models {saved_models}, the problem "
            f"has {models}: build the problem with the same models in the same order"
        )
    surrogates = [surrogates_of(c.dispatcher.model) for c in parts["couplings"]]
    for i, found in enumerate(surrogates):
        names = [type(s).__name__ for s in found]
        saved = manifest["couplings"][i].get("surrogates")
        if saved is None and names:
            warnings.warn(
                f"checkpoint {checkpoint.path} holds no surrogate training (written before "
                f"surrogates were saved); the surrogates {names} of coupling {i} keep their "
                "present training, so the restarted run may answer otherwise",
                RuntimeWarning,
                stacklevel=2,
            )
        elif saved is not None and saved != names:
            raise ValueError(
                f"checkpoint {checkpoint.path} holds the training of surrogates {saved} in "
                f"coupling {i}, the problem's model has {names}: wrap the models alike"
            )
    fields = checkpoint.path / _FIELDS
    with _quiet_adios():
        for name, function in functions.items():
            adios4dolfinx.read_function(fields, function, name=name)
    problem.restore_state(manifest["scalars"])
    for i, coupling in enumerate(parts["couplings"]):
        dispatcher = coupling.dispatcher
        if manifest["couplings"][i]["history"]:
            dispatcher.load_history(
                checkpoint.path / f"coupling-{i}.history.npz", coupling.point_ids
            )
        state = _read_dispatcher(checkpoint.path / f"coupling-{i}.dispatcher.npz")
        dispatcher.import_state(**state)
        if manifest["couplings"][i].get("surrogates") is not None:
            for j, surrogate in enumerate(surrogates[i]):
                path = checkpoint.path / f"coupling-{i}.surrogate-{j}.npz"
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
                surrogate.restore_training(arrays)
    return checkpoint.step


class Checkpointer:
    """Decides when to save and saves: every ``every_steps`` steps or ``every_seconds``.

    The decision is rank 0's, broadcast, so every rank takes part in the same saves.

    Args:
        root: The folder of the run's checkpoints.
        every_steps: Save after every ``every_steps``-th step (``None``: not by steps).
        every_seconds: Save when this much wall time has passed since the last save (or
            since the checkpointer was made), ``None``: not by time.
        keep: Complete checkpoints kept on disk (the newest).
        comm: Communicator of the run.

    Attributes:
        saved: Folders written so far, oldest first.
        seconds: Wall time spent saving, on this rank.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        every_steps: int | None = None,
        every_seconds: float | None = None,
        keep: int = 2,
        comm: MPI.Comm = MPI.COMM_WORLD,
    ):
        if every_steps is None and every_seconds is None:
            raise ValueError("give every_steps, every_seconds or both (when to save)")
        if every_steps is not None and int(every_steps) < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        if every_seconds is not None and not float(every_seconds) > 0:
            raise ValueError(f"every_seconds must be > 0, got {every_seconds}")
        self.root = Path(root)
        self.every_steps = None if every_steps is None else int(every_steps)
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        self.keep = int(keep)
        self.comm = comm
        self.saved: list[Path] = []
        self.seconds = 0.0
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after ``step`` (collective; the same on every rank)."""
        decision = None
        if self.comm.rank == 0:
            by_steps = self.every_steps is not None and step % self.every_steps == 0
            by_time = (
                self.every_seconds is not None
                and time.monotonic() - self._last >= self.every_seconds
            )
            decision = bool(by_steps or by_time)
        return self.comm.bcast(decision, root=0)

    def maybe_save(self, problem, step: int) -> Path | None:
        """Save ``problem`` after ``step`` if :meth:`due` (collective); the folder or None."""
        if not self.due(step):
            return None
        return self.save(problem, step)

    def save(self, problem, step: int) -> Path:
        """Save now (collective); returns the checkpoint's folder."""
        start = time.perf_counter()
        path = save_checkpoint(problem, self.root, step, self.keep)
        self.seconds += time.perf_counter() - start
        self._last = time.monotonic()
        self.saved.append(path)
        return path
