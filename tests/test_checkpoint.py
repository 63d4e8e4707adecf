"""Checkpoint and restart: a restarted run equals the uninterrupted one.

The run: transient macro heat on the unit square with an *aging* micro model, whose
conductivity grows with an accumulated dose ``h <- h + dt T^2`` (a history per point), so
a restart that lost or shifted anything (a history, the clock, T_old, the time) gives
another temperature. References: the uninterrupted run, compared through rank-independent
fingerprints (T and T_old by dof coordinate, the committed dose by global point id).

Runs on other numbers of ranks and runs that are killed are subprocesses running this
file as a script (``python3 tests/test_checkpoint.py run ...``, under ``mpirun -n 2`` for
two ranks), as tests/test_cli.py runs the CLI: one serial pytest process checks 1 -> 2 and
2 -> 1 rank restarts and SIGKILLed runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from dolfinx import mesh as dmesh
from mpi4py import MPI

from hmm_fem.io import checkpoint as ckpt
from hmm_fem.macro import TransientHeat
from hmm_fem.micro import MicroModel, MicroResponse

STEPS = 6
HERE = Path(__file__).resolve()


class Aging(MicroModel):
    """``q = -k grad T``, ``k = 1 + h/(1 + h)``, dose ``h <- h + dt T^2`` (never decreases)."""

    inputs = {"T": (), "grad_T": (2,)}
    output_shape = (2,)
    state_names = ("T",)
    history = {"h": ()}
    time_dependent = True

    def __init__(self, kill_at_step=None):
        self.kill_at_step = kill_at_step

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["T"], dtype=float).reshape(-1, 1)

    def solve(self, state, context):
        if context.step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash in the middle of a macro step
        T = state[0]
        h = float(context.history["h"]) + context.dt * T**2
        k = 1.0 + h / (1.0 + h)
        dk_dT = 2.0 * context.dt * T / (1.0 + h) ** 2
        return {"k": np.array(k), "dk": np.array(dk_dT), "history": {"h": np.array(h)}}

    def respond(self, solutions, inputs, parameters):
        grad = np.asarray(inputs["grad_T"]).reshape(-1, 2)
        k = solutions["k"].reshape(-1, 1)
        dk = solutions["dk"].reshape(-1, 1)
        return MicroResponse(
            -k * grad, {"T": -dk * grad, "grad_T": -k[:, :, None] * np.eye(2)}, dict(solutions)
        )


def build(msh, model=None):
    """The macro problem (the same options for every run, first or restarted)."""
    return TransientHeat(
        msh,
        model or Aging(),
        dt=0.05,
        source=8.0,
        dirichlet=[(lambda x: np.isclose(x[0], 0.0), 0.0)],
        petsc_options={"snes_rtol": 1e-13, "snes_atol": 1e-13},
    )


def fresh_mesh(comm):
    return dmesh.create_unit_square(comm, 4, 4)


def advance(heat, first: int, last: int, checkpointer=None):
    """Steps ``first..last`` (1-based), checkpointing after each step if due."""
    for n in range(first, last + 1):
        heat.step()
        if checkpointer is not None:
            checkpointer.maybe_save(heat, n)


def fingerprint(heat) -> dict:
    """Rank-independent state: T, T_old sorted by dof coordinate; dose by point id; clock."""
    comm = heat.mesh.comm
    V = heat.V
    n = V.dofmap.index_map.size_local
    xy = V.tabulate_dof_coordinates()[:n, :2]
    dispatcher = heat.coupling.dispatcher
    parts = comm.gather(
        (
            xy,
            heat.T.x.array[:n].copy(),
            heat.T_old.x.array[:n].copy(),
            dispatcher.history.point_ids,
            dispatcher.history.values("h", "committed"),
        ),
        root=0,
    )
    out = None
    if comm.rank == 0:
        xy, T, T_old, ids, h = (np.concatenate([p[i] for p in parts]) for i in range(5))
        order = np.lexsort((np.round(xy[:, 1], 12), np.round(xy[:, 0], 12)))
        by_id = np.argsort(ids)
        out = {
            "xy": xy[order],
            "T": T[order],
            "T_old": T_old[order],
            "ids": ids[by_id],
            "h": h[by_id],
            "clock": np.array([dispatcher.clock.time, dispatcher.clock.dt, dispatcher.clock.step]),
            "time": np.array(heat.time),
        }
    return comm.bcast(out, root=0)


def assert_same(a: dict, b: dict, tol: float):
    assert np.array_equal(a["ids"], b["ids"])
    assert np.allclose(a["xy"], b["xy"], rtol=0, atol=1e-14)
    assert np.array_equal(a["clock"], b["clock"]) and a["time"] == b["time"]
    for name in ("T", "T_old", "h"):
        scale = np.max(np.abs(a[name]))
        assert scale > 0.1  # the run did something
        assert np.max(np.abs(a[name] - b[name])) <= tol * scale, name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run, serial, saving after every step (all kept)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    heat = build(fresh_mesh(MPI.COMM_SELF))
    checkpointer = ckpt.Checkpointer(root, every_steps=1, keep=STEPS, comm=MPI.COMM_SELF)
    solves = []
    for n in range(1, STEPS + 1):
        before = heat.statistics.micro_solves
        advance(heat, n, n, checkpointer)
        solves.append(heat.statistics.micro_solves - before)
    return {"root": root, "final": fingerprint(heat), "solves": solves, "heat": heat}


def restart_serial(where, last=STEPS):
    found = where if isinstance(where, ckpt.Checkpoint) else Path(where)
    heat = build(ckpt.read_checkpoint_mesh(found, MPI.COMM_SELF))
    step = ckpt.restore(heat, found)
    advance(heat, step + 1, last)
    return heat, step


def test_restart_equals_the_uninterrupted_run(uninterrupted):
    root = uninterrupted["root"]
    assert sorted(p.name for p in root.iterdir()) == [f"step-{n:08d}" for n in range(1, 7)]
    heat, step = restart_serial(root / "step-00000004")
    assert step == 4
    # The same partition and the same operations: bit for bit, well inside 1e-12.
    assert_same(fingerprint(heat), uninterrupted["final"], 1e-12)
    # The same micro solves in the two steps after the restart (clock, keys, histories).
    assert heat.statistics.micro_solves == sum(uninterrupted["solves"][4:])


def test_the_manifest_and_the_cache_come_back(uninterrupted):
    found = ckpt.latest_checkpoint(uninterrupted["root"], MPI.COMM_SELF)
    assert found.step == STEPS and found.path.name == "step-00000006"
    manifest = found.manifest
    assert manifest["version"] == ckpt.CHECKPOINT_VERSION and manifest["ranks"] == 1
    assert manifest["functions"] == ["T", "T_old"]
    assert manifest["scalars"]["time"] == uninterrupted["heat"].time
    reference = uninterrupted["heat"].coupling.dispatcher.export_state()
    heat = build(ckpt.read_checkpoint_mesh(found, MPI.COMM_SELF))
    ckpt.restore(heat, found)
    restored = heat.coupling.dispatcher.export_state()
    assert manifest["couplings"][0]["cache_entries"] == len(reference["keys"]) > 0
    assert restored["keys"] == reference["keys"]
    assert restored["clock"] == reference["clock"]
    for a, b in zip(restored["results"], reference["results"]):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_keep_prunes_old_checkpoints_and_bad_input_is_refused(tmp_path):
    heat = build(fresh_mesh(MPI.COMM_SELF))
    checkpointer = ckpt.Checkpointer(tmp_path, every_steps=2, keep=2, comm=MPI.COMM_SELF)
    advance(heat, 1, 6, checkpointer)
    assert [p.name for p in checkpointer.saved] == [f"step-{n:08d}" for n in (2, 4, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000006"]
    with pytest.raises(ValueError, match="every_steps, every_seconds"):
        ckpt.Checkpointer(tmp_path)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        ckpt.latest_checkpoint(tmp_path / "nothing", MPI.COMM_SELF)
    with pytest.raises(TypeError, match="checkpoint_state"):
        ckpt.save_checkpoint(object(), tmp_path, 1)
    # Before the first step: no history to save; the restart starts from virgin points.
    virgin = build(fresh_mesh(MPI.COMM_SELF))
    found = ckpt.save_checkpoint(virgin, tmp_path / "virgin", 0)
    again = build(ckpt.read_checkpoint_mesh(found, MPI.COMM_SELF))
    assert ckpt.restore(again, found) == 0
    advance(again, 1, 1)
    advance(virgin, 1, 1)
    a, b = fingerprint(again), fingerprint(virgin)
    assert np.max(b["h"]) > 0 and np.array_equal(a["clock"], b["clock"])
    for name in ("T", "h"):
        assert np.max(np.abs(a[name] - b[name])) <= 1e-12 * np.max(np.abs(b[name]))


def test_every_seconds_saves_by_wall_time(tmp_path):
    checkpointer = ckpt.Checkpointer(tmp_path, every_seconds=3600, comm=MPI.COMM_SELF)
    assert not checkpointer.due(1)
    checkpointer._last -= 3601  # as if an hour had passed
    assert checkpointer.due(2)


@pytest.mark.mpi
def test_restart_in_process_on_the_same_ranks(tmp_path_factory):
    """Save and restore collectively on COMM_WORLD (1 or 2 ranks); the restarted mesh is
    partitioned anew, so on 2 ranks the round-off may differ: 1e-12."""
    comm = MPI.COMM_WORLD
    root = comm.bcast(str(tmp_path_factory.mktemp("same")) if comm.rank == 0 else None)
    heat = build(fresh_mesh(comm))
    advance(heat, 1, 4, ckpt.Checkpointer(root, every_steps=2, keep=1, comm=comm))
    found = ckpt.latest_checkpoint(root, comm)
    assert found.step == 4 and found.manifest["ranks"] == comm.size
    restarted = build(ckpt.read_checkpoint_mesh(found, comm))
    assert ckpt.restore(restarted, found) == 4
    advance(heat, 5, 5)
    advance(restarted, 5, 5)
    assert_same(fingerprint(restarted), fingerprint(heat), 1e-12)


def test_fe2_plastic_cells_restart_between_load_steps(tmp_path):
    """FE² with J2 elastoplastic cells, loaded in two calls; a checkpoint after the first
    (plastic flow under way) and a restart give the uninterrupted run's displacement and
    plastic strains."""
    from hmm_fem import cells
    from hmm_fem.macro import StaticElasticity
    from hmm_fem.materials import J2Plasticity
    from hmm_fem.micro import PlasticityModel

    cell = cells.square(0.2, mesh_size=0.2)

    def plate(msh):
        model = PlasticityModel(
            cell,
            {
                "matrix": J2Plasticity(1.0, 0.3, 0.01, isotropic_hardening=0.1, dim=2),
                "inclusion": (10.0, 0.2),
            },
        )
        held = [
            (lambda x: np.isclose(x[1], 0.0), 0.0),
            (lambda x: np.isclose(x[1], 1.0) & (x[0] <= 0.5 + 1e-12), 0.03, 1),
        ]
        return StaticElasticity(msh, model, dirichlet=held)

    def state(problem):
        xy = problem.V.tabulate_dof_coordinates()[:, :2]
        order = np.lexsort((np.round(xy[:, 1], 12), np.round(xy[:, 0], 12)))
        u = problem.u.x.array.reshape(-1, 2)[order]
        history = problem.coupling.dispatcher.history
        alpha = history.values("equivalent_plastic_strain", "committed")
        return u, alpha[np.argsort(history.point_ids)]

    whole = plate(dmesh.create_unit_square(MPI.COMM_SELF, 2, 2))
    whole.solve(load=0.5)
    assert state(whole)[1].max() > 1e-3  # plastic flow under way at the checkpoint
    ckpt.save_checkpoint(whole, tmp_path, step=1)
    whole.solve(load=1.0)
    u, alpha = state(whole)

    found = ckpt.latest_checkpoint(tmp_path, MPI.COMM_SELF)
    restarted = plate(ckpt.read_checkpoint_mesh(found, MPI.COMM_SELF))
    ckpt.restore(restarted, found)
    assert restarted.converged_load == 0.5
    restarted.solve(load=1.0)
    u_r, alpha_r = state(restarted)
    assert np.max(np.abs(u_r - u)) <= 1e-12 * np.max(np.abs(u))
    assert np.max(np.abs(alpha_r - alpha)) <= 1e-12 * np.max(np.abs(alpha))


# -- other processes: killed runs, other numbers of ranks -------------------------------------
def child_env():
    env = dict(os.environ)
    # Variables of this process's MPI singleton must not leak into a child mpirun.
    for name in list(env):
        if name.startswith(("PMIX_", "OMPI_COMM_", "OMPI_MCA_ess", "OMPI_MCA_orte", "PRTE_")):
            del env[name]
    return env


def run_child(*args, ranks=1):
    command = [sys.executable, str(HERE), *map(str, args)]
    if ranks > 1:
        command = ["mpirun", "-n", str(ranks), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_env())


def test_a_killed_run_restarts_from_its_last_complete_checkpoint(uninterrupted, tmp_path, caplog):
    # 1. Killed by SIGKILL inside a micro solve of step 5: checkpoints 3 and 4 are complete.
    mid_step = tmp_path / "mid_step"
    out = run_child("run", mid_step, "--steps", STEPS, "--kill-at-step", 5)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert sorted(p.name for p in mid_step.iterdir()) == ["step-00000003", "step-00000004"]
    found = ckpt.latest_checkpoint(mid_step, MPI.COMM_SELF)
    assert found.step == 4
    heat, _ = restart_serial(found)
    assert_same(fingerprint(heat), uninterrupted["final"], 1e-12)

    # 2. Killed while writing checkpoint 4 (after the fields, before the manifest).
    saving = tmp_path / "saving"
    out = run_child("run", saving, "--steps", STEPS, "--kill-saving-step", 4)
    assert out.returncode == -signal.SIGKILL, out.stderr
    names = sorted(p.name for p in saving.iterdir())
    assert names == [".step-00000004.partial", "step-00000002", "step-00000003"]
    assert (saving / ".step-00000004.partial" / "fields.bp").exists()
    # A folder with a final name but no manifest (e.g. copied by hand) is skipped, loudly.
    (saving / "step-00000009").mkdir()
    with caplog.at_level(logging.INFO, logger="hmm_fem.io.checkpoint"):
        with pytest.warns(RuntimeWarning, match="step-00000009: no manifest"):
            found = ckpt.latest_checkpoint(saving, MPI.COMM_SELF)
    assert found.step == 3
    assert "step-00000003" in caplog.text and ".step-00000004.partial" in caplog.text
    heat, _ = restart_serial(found)
    assert_same(fingerprint(heat), uninterrupted["final"], 1e-12)


def test_restart_from_two_ranks_on_one_and_from_one_on_two(uninterrupted, tmp_path):
    """2 -> 1: a 2-rank run checkpoints at step 3, this process finishes it serially.
    1 -> 2: the serial checkpoint of step 3 is finished by a 2-rank run. Both equal the
    serial uninterrupted run to the Newton tolerance (other partitions, other round-off)."""
    two = tmp_path / "two"
    out = run_child("run", two, "--steps", 3, ranks=2)
    assert out.returncode == 0, out.stderr
    found = ckpt.latest_checkpoint(two, MPI.COMM_SELF)
    assert found.step == 3 and found.manifest["ranks"] == 2
    heat, _ = restart_serial(found)
    assert_same(fingerprint(heat), uninterrupted["final"], 1e-12)

    result = tmp_path / "fingerprint.npz"
    out = run_child(
        "restart",
        uninterrupted["root"] / "step-00000003",
        "--steps",
        STEPS,
        "--out",
        result,
        ranks=2,
    )
    assert out.returncode == 0, out.stderr
    assert "ranks 2" in out.stdout
    with np.load(result) as data:
        restarted = {k: data[k] for k in data.files}
    assert_same(restarted, uninterrupted["final"], 1e-12)


# -- the script the subprocesses run -------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "restart"))
    parser.add_argument("where", type=Path)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--kill-saving-step", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    warnings.simplefilter("error", RuntimeWarning)
    if args.kill_saving_step is not None:
        commit = ckpt._commit_folder

        def killed_while_saving(partial, final, manifest):
            if manifest["step"] == args.kill_saving_step:
                os.kill(os.getpid(), signal.SIGKILL)
            commit(partial, final, manifest)

        ckpt._commit_folder = killed_while_saving
    model = Aging(args.kill_at_step)
    if args.action == "run":
        heat = build(fresh_mesh(comm), model)
        checkpointer = ckpt.Checkpointer(args.where, every_steps=1, keep=2, comm=comm)
        advance(heat, 1, args.steps, checkpointer)
    else:
        heat = build(ckpt.read_checkpoint_mesh(args.where, comm), model)
        step = ckpt.restore(heat, args.where)
        advance(heat, step + 1, args.steps)
    result = fingerprint(heat)
    if comm.rank == 0:
        print(f"done: step {args.steps} on ranks {comm.size}")
        if args.out is not None:
            np.savez(args.out, **result)


if __name__ == "__main__":
    main()


# -- surrogate training in checkpoints -----------------------------------------------------------
def _surrogate_run(comm, kind, coarse):
    """Transient heat on a conductivity cell whose inclusion follows ``k = 10 (1 + 2 T)``,
    answered by a surrogate that keeps learning (its training grows every step)."""
    from hmm_fem import cells
    from hmm_fem.cells import ReducedBasis
    from hmm_fem.materials.laws import LinearLaw
    from hmm_fem.micro import (
        ConductivityModel,
        GaussianProcessSurrogate,
        ReducedBasisSurrogate,
    )

    laws = {"matrix": 1.0, "inclusion": LinearLaw(10.0, 2.0, T0=0.0)}
    model = ConductivityModel(cells.square(0.4, mesh_size=0.2), laws)
    if kind == "rb":
        surrogate = ReducedBasisSurrogate(
            model, ReducedBasis.from_arrays(coarse), tolerance=1e-9, comm=comm
        )
    else:
        surrogate = GaussianProcessSurrogate(model, 1e-5, comm=comm, min_training=4)
        surrogate.train(np.array([[0.0], [0.2], [0.4]]))  # too few to answer: it must learn
    return surrogate


def _coarse_rb_arrays():
    from hmm_fem import cells
    from hmm_fem.cells import ConductivityCell, ReducedBasis

    problem = ConductivityCell(cells.square(0.4, mesh_size=0.2), {"matrix": 1.0, "inclusion": 10.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_size reached: meant
        rb = ReducedBasis.train(
            problem, {"matrix": 1.0, "inclusion": (10.0, 12.0)}, tolerance=1e-12, max_size=2
        )
    arrays = rb.to_arrays()
    problem.destroy()
    return arrays


def _build_learning(msh, surrogate):
    """As :func:`build`, with a Newton tolerance above the residual floor of a surrogate that
    learns between Newton iterations (its answers move at round-off: measured 5e-13)."""
    return TransientHeat(
        msh,
        surrogate,
        dt=0.05,
        source=8.0,
        dirichlet=[(lambda x: np.isclose(x[0], 0.0), 0.0)],
        petsc_options={"snes_rtol": 1e-11, "snes_atol": 1e-11},
    )


def _temperatures(heat):
    """T by dof coordinate on every rank (rank-independent)."""
    comm = heat.mesh.comm
    n = heat.V.dofmap.index_map.size_local
    xy = heat.V.tabulate_dof_coordinates()[:n, :2]
    parts = comm.allgather((xy, heat.T.x.array[:n].copy()))
    xy = np.concatenate([p[0] for p in parts])
    T = np.concatenate([p[1] for p in parts])
    return T[np.lexsort((np.round(xy[:, 1], 12), np.round(xy[:, 0], 12)))]


@pytest.mark.mpi
@pytest.mark.parametrize("kind", ["rb", "gp"])
def test_surrogate_training_is_checkpointed(kind, tmp_path_factory):
    """A run whose surrogate learns at every step, checkpointed after step 2 and restarted:
    the restart answers as the uninterrupted run (T to 1e-12, the same surrogate answers and
    fallbacks in steps 3-4). Control: the same restart with the surrogate's training *not*
    restored (the coarse start) falls back more."""
    comm = MPI.COMM_WORLD
    root = comm.bcast(str(tmp_path_factory.mktemp(f"surrogate-{kind}")) if comm.rank == 0 else None)
    coarse = _coarse_rb_arrays() if kind == "rb" else None

    def counts(surrogate):
        total = surrogate.statistics.total(comm)
        return total.surrogate_answers, total.fallbacks

    surrogate = _surrogate_run(comm, kind, coarse)
    heat = _build_learning(fresh_mesh(comm), surrogate)
    advance(heat, 1, 2, ckpt.Checkpointer(root, every_steps=2, keep=1, comm=comm))
    before = counts(surrogate)
    advance(heat, 3, 4)
    after = counts(surrogate)
    reference = _temperatures(heat)
    found = ckpt.latest_checkpoint(root, comm)
    assert found.manifest["couplings"][0]["surrogates"] == [type(surrogate).__name__]

    restarted_surrogate = _surrogate_run(comm, kind, coarse)
    restarted = _build_learning(ckpt.read_checkpoint_mesh(found, comm), restarted_surrogate)
    assert ckpt.restore(restarted, found) == 2
    advance(restarted, 3, 4)
    T = _temperatures(restarted)
    assert np.max(reference) > 0.1  # the run did something
    assert np.max(np.abs(T - reference)) <= 1e-12 * np.max(reference)
    steps_3_4 = tuple(a - b for a, b in zip(after, before))
    assert counts(restarted_surrogate) == steps_3_4
    assert steps_3_4[0] > 0  # the surrogate answered points after the checkpoint

    control_surrogate = _surrogate_run(comm, kind, coarse)
    start = control_surrogate.training_arrays()
    control = _build_learning(ckpt.read_checkpoint_mesh(found, comm), control_surrogate)
    ckpt.restore(control, found)
    control_surrogate.restore_training(start)  # forget what was learned in steps 1-2
    advance(control, 3, 4)
    # (Its temperatures agree to round-off too: the answers are certified to 1e-9, and
    # measured 2e-16 apart; the counts show what the checkpoint carried.)
    assert counts(control_surrogate)[1] > steps_3_4[1]

    # A checkpoint without surrogate training (written before it was saved) warns.
    if comm.rank == 0:
        manifest = found.path / "manifest.json"
        text = json.loads(manifest.read_text())
        del text["couplings"][0]["surrogates"]
        manifest.write_text(json.dumps(text))
    comm.Barrier()
    old = ckpt.Checkpoint(found.path, found.step, ckpt._read_manifest(found.path))
    other = _build_learning(
        ckpt.read_checkpoint_mesh(old, comm), _surrogate_run(comm, kind, coarse)
    )
    with pytest.warns(RuntimeWarning, match="holds no surrogate training"):
        ckpt.restore(other, old)


@pytest.mark.mpi
def test_surrogate_training_restarts_on_another_number_of_ranks(tmp_path_factory):
    """On 2 ranks: a run on both ranks restarted on one (every rank alone, COMM_SELF), and a
    run on one rank restarted on both, each with the same surrogate answers and fallbacks
    after the restart as its uninterrupted run and T equal to 1e-12 (the training is
    rank-free), for the learning reduced basis.

    Not for the Gaussian process: its decisions depend on the round-off by which the macro
    states of runs on 1 and 2 ranks differ (bitwise-equal states are merged, states one ulp
    apart are not, and the length scales are refitted at other set sizes): uninterrupted
    runs on 1 and 2 ranks differed by 5e-11 in T with 420/132 against 437/115
    answers/fallbacks, and its 1 -> 2 restart gave 430/122 against 437/115."""
    kind = "rb"
    comm = MPI.COMM_WORLD
    if comm.size == 1:
        pytest.skip("needs 2 ranks (the serial restart is test_surrogate_training_is_checkpointed)")
    coarse = _coarse_rb_arrays() if kind == "rb" else None
    base = comm.bcast(str(tmp_path_factory.mktemp(f"cross-{kind}")) if comm.rank == 0 else None)

    def counts(surrogate, c):
        total = surrogate.statistics.total(c)
        return total.surrogate_answers, total.fallbacks

    def uninterrupted(c, root):
        surrogate = _surrogate_run(c, kind, coarse)
        heat = _build_learning(fresh_mesh(c), surrogate)
        advance(heat, 1, 2, ckpt.Checkpointer(root, every_steps=2, keep=1, comm=c))
        before = counts(surrogate, c)
        advance(heat, 3, 4)
        after = counts(surrogate, c)
        return _temperatures(heat), tuple(a - b for a, b in zip(after, before))

    def restarted(c, root):
        surrogate = _surrogate_run(c, kind, coarse)
        found = ckpt.latest_checkpoint(root, c)
        heat = _build_learning(ckpt.read_checkpoint_mesh(found, c), surrogate)
        assert ckpt.restore(heat, found) == 2
        advance(heat, 3, 4)
        return _temperatures(heat), counts(surrogate, c)

    world_root = f"{base}/world"
    alone_root = f"{base}/alone-{comm.rank}"  # every rank runs its own serial run
    T_world, solves_world = uninterrupted(comm, world_root)
    T_alone, solves_alone = uninterrupted(MPI.COMM_SELF, alone_root)
    comm.Barrier()
    tol = 1e-12 * np.max(T_world)
    T, solves = restarted(MPI.COMM_SELF, world_root)  # 2 -> 1
    assert np.max(np.abs(T - T_world)) <= tol
    assert solves == solves_world
    T_alone, solves_alone = comm.bcast((T_alone, solves_alone), root=0)
    T, solves = restarted(comm, f"{base}/alone-0")  # 1 -> 2
    assert np.max(np.abs(T - T_alone)) <= tol
    assert solves == solves_alone
    assert solves_world[0] > 0


def test_surrogates_are_found_inside_wrappers():
    """The checkpoint finds a surrogate wrapped by another model (through ``.model``)."""
    from hmm_fem.micro.adapter import InputAdapter
    from hmm_fem.micro.surrogates import GaussianProcessSurrogate

    class Plain(MicroModel):
        inputs = {"T": (), "grad_T": (2,)}
        output_shape = (2,)
        state_names = ("T",)

        def micro_state(self, inputs, parameters):
            return np.asarray(inputs["T"], dtype=float).reshape(-1, 1)

        def solve(self, state, context):
            return {"k": np.array(1.0 + state[0])}

        def respond(self, solutions, inputs, parameters):
            raise NotImplementedError

    class Renamed(InputAdapter):
        def respond(self, solutions, inputs, parameters):
            return self.model.respond(solutions, inputs, parameters)

    gp = GaussianProcessSurrogate(Plain(), 1e-3, comm=MPI.COMM_SELF)
    wrapped = Renamed(gp, {"T": (), "grad_T": (2,)}, (2,))
    assert ckpt.surrogates_of(wrapped) == [gp]
    assert ckpt.surrogates_of(Aging()) == []
