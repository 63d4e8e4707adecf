"""The dynamic pool of micro solves (``Dispatcher(strategy="pool")``) and dedicated micro
workers (MPMD): the same answers, histories, substitutions, failure log and solve counts as
the fixed blocks, on 1 and 2 ranks; results kept only where they are needed."""

import warnings

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem.coupling import Dispatcher, FailurePolicy, MicroWorkers
from hmm_fem.coupling.pool import SharedCounter, cache_nbytes
from hmm_fem.micro import MicroModel, MicroResponse, MicroSolveError

N = 24  # macro points


class Hardening(MicroModel):
    """``v = sin(s) (1 + h)``, history ``h <- h + s^2``: nonlinear in state and history.

    Fails (raises) at the states in ``bad``; counts its solves.
    """

    inputs = {"x": ()}
    parameters = ("s",)
    state_names = ("s",)
    history = {"h": ()}

    def __init__(self, bad=()):
        self.bad = tuple(bad)
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["s"]).reshape(-1, 1)

    def solve(self, state, context):
        self.solves += 1
        if any(abs(state[0] - b) < 1e-12 for b in self.bad):
            raise RuntimeError("cell failed")
        h = float(context.history["h"])
        return {
            "v": np.array(np.sin(state[0]) * (1.0 + h)),
            "history": {"h": np.array(h + state[0] ** 2)},
        }

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"])
        return MicroResponse(solutions["v"] * x, {"x": solutions["v"]}, dict(solutions))


class Noisy(MicroModel):
    """``v = s + 0.1 * noise``, the noise from the solve's seeded stream."""

    inputs = {"x": ()}
    parameters = ("s",)
    state_names = ("s",)
    stochastic = True
    seed = 7

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["s"]).reshape(-1, 1)

    def solve(self, state, context):
        return {"v": np.array(state[0] + 0.1 * context.rng().standard_normal())}

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"])
        return MicroResponse(solutions["v"] * x, {"x": solutions["v"]}, dict(solutions))


def states(step):
    """Point states of a step: 7 distinct values, so points share states across ranks."""
    return 0.1 + (np.arange(N) % 7) / 7.0 + 0.05 * step


POLICY = FailurePolicy(substitute=True, interpolation="idw", neighbours=3, max_failure_fraction=0.3)


def run(model, comm, mine, strategy, steps=3, workers=None):
    """Steps of two evaluations each (a Newton iteration that repeats its states), then
    a commit; returns what must not depend on the strategy or the ranks."""
    dispatcher = Dispatcher(model, comm, strategy=strategy, failure_policy=POLICY, workers=workers)
    ids = np.arange(N)[mine]
    values, flags = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the substitution's warning
        for step in range(steps):
            dispatcher.set_time(1.0 + step, 1.0)
            for _ in range(2):
                s = states(step)[mine]
                response = dispatcher.evaluate({"x": 1.0 + ids}, {"s": s}, point_ids=ids)
                values.append(response.value.copy())
                flags.append(dispatcher.last_substituted.copy())
            dispatcher.commit()
    history = dispatcher.history.values("h", "committed") if model.history else None
    return dispatcher, values, flags, history


def reference(model_factory):
    """The serial run with fixed blocks on COMM_SELF, every point."""
    return run(model_factory(), MPI.COMM_SELF, slice(None), "blocks")


def bad_state():
    return states(1)[3]  # needed by several points, in step 1


def hardening():
    return Hardening(bad=(bad_state(),))


def test_pool_on_one_rank_equals_blocks_bitwise():
    for factory in (hardening, Noisy):
        ref, ref_values, ref_flags, ref_history = reference(factory)
        pool, values, flags, history = run(factory(), MPI.COMM_SELF, slice(None), "pool")
        assert all(np.array_equal(a, b) for a, b in zip(values, ref_values))
        assert all(np.array_equal(a, b) for a, b in zip(flags, ref_flags))
        if ref_history is not None:
            assert np.array_equal(history, ref_history)
            # The substitution happened, and only at the failing state.
            assert sum(f.sum() for f in flags) == 2 * np.sum(states(1) == bad_state())
        assert pool.failure_log == ref.failure_log
        pool.statistics.micro_seconds = ref.statistics.micro_seconds  # wall time differs
        assert pool.statistics == ref.statistics


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match=r"strategy must be one of 'blocks', 'pool'"):
        Dispatcher(Noisy(), MPI.COMM_SELF, strategy="fast")
    with pytest.raises(ValueError, match="at least one macro rank and one worker"):
        MicroWorkers(MPI.COMM_SELF, workers=1)


@pytest.mark.mpi
@pytest.mark.parametrize("factory", [hardening, Noisy], ids=["history", "stochastic"])
def test_pool_and_blocks_on_two_ranks_equal_the_serial_run_bitwise(factory):
    comm = MPI.COMM_WORLD
    mine = slice(comm.rank, None, comm.size)
    ref, ref_values, ref_flags, ref_history = reference(factory)
    totals = {}
    for strategy in ("blocks", "pool"):
        dispatcher, values, flags, history = run(factory(), comm, mine, strategy)
        for a, b in zip(values, ref_values):
            assert np.array_equal(a, b[mine])
        for a, b in zip(flags, ref_flags):
            assert np.array_equal(a, b[mine])
        if ref_history is not None:
            assert np.array_equal(history, ref_history[mine])
        assert dispatcher.failure_log == ref.failure_log
        totals[strategy] = dispatcher.statistics.total(comm)
    # The same solves and substitutions in all, whoever did them.
    for field in ("micro_solves", "substitutions", "substituted_points", "calls"):
        assert getattr(totals["pool"], field) == getattr(ref.statistics, field), field
        assert getattr(totals["blocks"], field) == getattr(ref.statistics, field), field
    # Hits are counted per rank (a state two ranks need is a miss on both): as for blocks.
    assert totals["pool"].cache_hits == totals["blocks"].cache_hits


@pytest.mark.mpi
def test_pool_keeps_results_on_the_ranks_that_need_them():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("needs 2 ranks")
    n = 40
    s = np.linspace(0.0, 1.0, n)  # every point its own state
    mine = slice(comm.rank, None, comm.size)
    caches = {}
    for strategy in ("blocks", "pool"):
        dispatcher = Dispatcher(Hardening(), comm, strategy=strategy)
        dispatcher.evaluate({"x": s[mine]}, {"s": s[mine]}, point_ids=np.arange(n)[mine])
        dispatcher.commit()
        caches[strategy] = dispatcher
    blocks, pool = caches["blocks"], caches["pool"]
    assert len(blocks._cache) == n  # every rank holds every result
    assert len(pool._cache) == len(s[mine])  # only its own points' results
    assert comm.allreduce(len(pool._cache)) == n
    assert cache_nbytes(pool) < 0.6 * cache_nbytes(blocks)
    # A checkpoint export gathers the union: the same entries as the shared cache.
    exported, shared = pool.export_state(), blocks.export_state()
    assert sorted(exported["keys"]) == sorted(shared["keys"])
    lookup = dict(zip(shared["keys"], shared["results"]))
    for key, result in zip(exported["keys"], exported["results"]):
        assert np.array_equal(result["v"], lookup[key]["v"])


@pytest.mark.mpi
def test_a_state_cached_on_another_rank_is_sent_not_solved_again():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("needs 2 ranks")
    model = Hardening()
    dispatcher = Dispatcher(model, comm, strategy="pool")
    s = np.array([0.25 + comm.rank])  # rank 0: 0.25, rank 1: 1.25
    dispatcher.evaluate({"x": s}, {"s": s}, point_ids=np.array([comm.rank]))
    solves = comm.allreduce(model.solves)
    # Now each rank needs the other's state, at a point with the same (virgin) history.
    other = np.array([0.25 + (1 - comm.rank)])
    response = dispatcher.evaluate({"x": other}, {"s": other}, point_ids=np.array([comm.rank]))
    assert comm.allreduce(model.solves) == solves == 2  # served from the other cache
    assert np.array_equal(response.value, np.sin(other) * other)


@pytest.mark.mpi
def test_shared_counter_hands_out_every_task_once():
    comm = MPI.COMM_WORLD
    counter = SharedCounter(comm)
    comm.Barrier()  # orders rank 0's reset before the takes
    taken = []
    while (i := counter.take()) < 200:
        taken.append(i)
    everything = sorted(t for part in comm.allgather(taken) for t in part)
    assert everything == list(range(200))
    counter.free()


@pytest.mark.mpi
def test_dedicated_worker_solves_everything_and_answers_equal_the_serial_run():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("1 macro rank + 1 worker: needs 2 ranks")
    workers = MicroWorkers(comm, workers=1)
    ref, ref_values, ref_flags, ref_history = reference(hardening)
    model = hardening()
    if workers.is_worker:
        dispatcher = Dispatcher(model, comm, strategy="pool", workers=workers)
        served = workers.serve(dispatcher)
        assert served == 6  # 3 steps x 2 evaluations
        solves = model.solves
    else:
        assert workers.macro_comm.size == 1
        try:
            dispatcher, values, flags, history = run(
                model, comm, slice(None), "pool", workers=workers
            )
        finally:
            workers.stop()  # also after an error: the worker must not wait for ever
        for a, b in zip(values, ref_values):
            assert np.array_equal(a, b)
        for a, b in zip(flags, ref_flags):
            assert np.array_equal(a, b)
        assert np.array_equal(history, ref_history)
        assert dispatcher.failure_log == ref.failure_log
        assert model.solves == 0  # the macro rank solved nothing
        solves = 0
    total = comm.allreduce(solves)
    assert total == ref.model.solves  # every attempt (failed ones included), as in serial


@pytest.mark.mpi
def test_workers_need_the_pool_and_their_communicator():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("needs 2 ranks")
    workers = MicroWorkers(comm, workers=1)
    with pytest.raises(ValueError, match='need strategy="pool"'):
        Dispatcher(Noisy(), comm, strategy="blocks", workers=workers)
    with pytest.raises(ValueError, match="must be workers.comm"):
        Dispatcher(Noisy(), MPI.COMM_SELF, strategy="pool", workers=workers)


@pytest.mark.mpi
def test_a_failed_solve_on_a_worker_aborts_the_macro_ranks_and_the_worker_serves_on():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("1 macro rank + 1 worker: needs 2 ranks")
    workers = MicroWorkers(comm, workers=1)
    model = Hardening(bad=(0.5,))
    dispatcher = Dispatcher(model, comm, strategy="pool", workers=workers)
    if workers.is_worker:
        assert workers.serve(dispatcher) == 1  # the failed call is not counted
        assert model.solves == 2 + 2  # 0.25, 0.5 (failed, nothing cached); 0.25, 0.75
        return
    s = np.array([0.5, 0.25])
    with pytest.raises(MicroSolveError, match=r"state s=0.5 .*cell failed"):
        dispatcher.evaluate({"x": s}, {"s": s})
    dispatcher.rollback()
    s = np.array([0.75, 0.25])
    response = dispatcher.evaluate({"x": s}, {"s": s})
    assert np.array_equal(response.value, np.sin(s) * s)
    workers.stop()


@pytest.mark.mpi
def test_fe2_heat_with_a_dedicated_worker_equals_the_serial_solve():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("1 macro rank + 1 worker: needs 2 ranks")
    from dolfinx import mesh

    from hmm_fem import cells
    from hmm_fem.cells import ConductivityModel, LinearLaw
    from hmm_fem.macro import SteadyHeat

    workers = MicroWorkers(comm, workers=1)
    cell = cells.square(0.4, mesh_size=0.15)
    model = ConductivityModel(cell, {"matrix": LinearLaw(1.0, 0.5), "inclusion": 10.0})
    everywhere = [(lambda x: np.full(x.shape[1], True), 0.0)]
    if workers.is_worker:
        dispatcher = Dispatcher(model, comm, strategy="pool", workers=workers)
        assert workers.serve(dispatcher) >= 3  # the Newton iterations
        assert dispatcher.statistics.micro_solves > 1  # T-dependent: a cell per state
        return
    heat = SteadyHeat(
        mesh.create_unit_square(workers.macro_comm, 3, 3),
        model,
        source=10.0,
        dirichlet=everywhere,
        comm=comm,
        strategy="pool",
        workers=workers,
    )
    try:
        heat.solve()
    finally:
        workers.stop()
    assert heat.statistics.micro_solves == 0  # the macro rank solved no cell
    alone = SteadyHeat(
        mesh.create_unit_square(MPI.COMM_SELF, 3, 3), model, source=10.0, dirichlet=everywhere
    )
    alone.solve()
    assert np.array_equal(alone.T.x.array, heat.T.x.array)


@pytest.mark.mpi
def test_a_checkpoint_with_dedicated_workers_is_refused_not_hung():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("1 macro rank + 1 worker: needs 2 ranks")
    workers = MicroWorkers(comm, workers=1)
    dispatcher = Dispatcher(Hardening(), comm, strategy="pool", workers=workers)
    if workers.is_worker:
        assert workers.serve(dispatcher) == 0
        return
    try:
        with pytest.raises(NotImplementedError, match="dedicated micro workers"):
            dispatcher.export_state()
    finally:
        workers.stop()


class Smooth(MicroModel):
    """``v = sin(s)``, no memory, counting its solves."""

    inputs = {"x": ()}
    parameters = ("s",)
    state_names = ("s",)

    def __init__(self):
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["s"]).reshape(-1, 1)

    def solve(self, state, context):
        self.solves += 1
        return {"v": np.array(np.sin(state[0]))}

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"])
        return MicroResponse(solutions["v"] * x, {"x": solutions["v"]}, dict(solutions))


@pytest.mark.mpi
def test_an_imported_cache_is_dealt_over_the_ranks_and_still_serves_every_state():
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("needs 2 ranks")
    n = 20
    s = np.linspace(0.0, 1.0, n)
    mine = slice(comm.rank, None, comm.size)
    inputs, parameters = {"x": s[mine]}, {"s": s[mine]}
    first = Dispatcher(Smooth(), comm, strategy="pool")
    reference = first.evaluate(inputs, parameters)
    state = first.export_state()
    assert len(state["keys"]) == n
    model = Smooth()
    restarted = Dispatcher(model, comm, strategy="pool")
    kept = restarted.import_state(**state)
    assert kept == n // 2 and comm.allreduce(kept) == n  # dealt, not replicated
    # Half of this rank's states are cached on the other rank: sent, not solved.
    response = restarted.evaluate(inputs, parameters)
    assert comm.allreduce(model.solves) == 0
    assert np.array_equal(response.value, reference.value)
    assert restarted.statistics.total(comm).cache_hits == n
