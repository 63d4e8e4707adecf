"""The dispatcher: distinct states solved once, over ranks; cache, tolerance, errors."""

import io
import sys

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem.coupling import Dispatcher
from hmm_fem.micro import MicroModel, MicroResponse, MicroSolveError


class Quadratic(MicroModel):
    """A toy micro model: response a * x^2 with a = 1 + s (s: the state), counting solves."""

    inputs = {"x": ()}
    output_shape = ()
    parameters = ("s",)
    state_names = ("s",)

    def __init__(self):
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["s"]).reshape(-1, 1)

    def solve(self, state, context=None):
        self.solves += 1
        if state[0] < 0:
            raise ValueError("negative state")
        return {"a": np.array(1.0 + state[0])}

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"])
        return MicroResponse(solutions["a"] * x**2, {"x": 2 * solutions["a"] * x}, solutions)


def test_distinct_states_are_solved_once_and_cached():
    model = Quadratic()
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    s = np.array([0.1, 0.2, 0.1, 0.3, 0.2])
    x = np.arange(5.0)
    response = dispatcher.evaluate({"x": x}, {"s": s})
    assert np.allclose(response.value, (1 + s) * x**2)
    assert np.allclose(response.derivatives["x"], 2 * (1 + s) * x)
    assert model.solves == 3
    dispatcher.evaluate({"x": x + 1}, {"s": s[::-1]})  # the same states: all cached
    assert model.solves == 3
    stats = dispatcher.statistics
    assert (stats.point_evaluations, stats.micro_solves, stats.cache_hits) == (10, 3, 7)


def test_state_tolerance_shares_nearby_states_and_solves_at_the_grid_value():
    model = Quadratic()
    dispatcher = Dispatcher(model, MPI.COMM_SELF, state_tolerance=0.01)
    s = np.array([0.1000, 0.1004, 0.2])
    response = dispatcher.evaluate({"x": np.ones(3)}, {"s": s})
    assert model.solves == 2
    assert np.allclose(response.value, [1.1, 1.1, 1.2])  # solved at the rounded state


def test_cache_size_bounds_memory():
    model = Quadratic()
    dispatcher = Dispatcher(model, MPI.COMM_SELF, cache_size=2)
    for s in (0.1, 0.2, 0.3, 0.1):
        dispatcher.evaluate({"x": np.ones(1)}, {"s": np.array([s])})
    assert model.solves == 4  # 0.1 was evicted before it came back


def test_failed_solve_names_the_point_and_state():
    dispatcher = Dispatcher(Quadratic(), MPI.COMM_SELF)
    with pytest.raises(MicroSolveError, match=r"state s=-0.5 .*needed at point 2.*negative state"):
        dispatcher.evaluate({"x": np.ones(3)}, {"s": np.array([0.1, 0.2, -0.5])})


def test_non_finite_input_is_refused_before_any_solve():
    model = Quadratic()
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    with pytest.raises(MicroSolveError, match=r"non-finite macro input 'x'.*point 1"):
        dispatcher.evaluate({"x": np.array([1.0, np.inf])}, {"s": np.array([0.1, 0.2])})
    assert model.solves == 0


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="state_tolerance"):
        Dispatcher(Quadratic(), MPI.COMM_SELF, state_tolerance=-1.0)


def test_progress_bar_is_quiet_when_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    Dispatcher(Quadratic(), MPI.COMM_SELF).evaluate(
        {"x": np.ones(50)}, {"s": np.linspace(0, 1, 50)}
    )
    assert stream.getvalue() == ""
    Dispatcher(Quadratic(), MPI.COMM_SELF, progress=True).evaluate(
        {"x": np.ones(50)}, {"s": np.linspace(0, 1, 50)}
    )
    assert "micro solves" in stream.getvalue()


@pytest.mark.mpi
def test_ranks_share_states_and_solve_each_once():
    """Both ranks need the same states: the total number of solves equals the number of
    distinct states, and the work is dealt over the ranks."""
    comm = MPI.COMM_WORLD
    model = Quadratic()
    dispatcher = Dispatcher(model, comm)
    s = np.linspace(0.0, 1.0, 10)[comm.rank :: 2].copy()  # disjoint halves ...
    s = np.concatenate([s, [0.5, 0.75]])  # ... plus two states every rank needs
    response = dispatcher.evaluate({"x": np.full(len(s), 2.0)}, {"s": s})
    assert np.allclose(response.value, 4 * (1 + s))
    total = comm.allreduce(model.solves, op=MPI.SUM)
    distinct = len(np.unique(np.concatenate(comm.allgather(s))))
    assert total == distinct
    if comm.size > 1:
        assert model.solves < distinct  # shared out


@pytest.mark.mpi
def test_an_error_on_one_rank_is_raised_on_every_rank():
    comm = MPI.COMM_WORLD
    dispatcher = Dispatcher(Quadratic(), comm)
    s = np.array([-1.0 if comm.rank == comm.size - 1 else 0.5])
    with pytest.raises(MicroSolveError, match="negative state"):
        dispatcher.evaluate({"x": np.ones(1)}, {"s": s})


def test_a_solve_without_context_still_works_with_a_deprecation_warning():
    class Legacy(Quadratic):
        def solve(self, state):  # the protocol before the context argument
            return super().solve(state)

    with pytest.warns(DeprecationWarning, match="solve\\(self, state, context\\)"):
        dispatcher = Dispatcher(Legacy(), MPI.COMM_SELF)
    response = dispatcher.evaluate({"x": np.ones(2)}, {"s": np.array([0.1, 0.2])})
    assert np.allclose(response.value, [1.1, 1.2])


def test_a_legacy_solve_cannot_declare_history():
    class Legacy(Quadratic):
        history = {"h": (1,)}

        def solve(self, state):
            return super().solve(state)

    with pytest.raises(TypeError, match="takes no context"):
        Dispatcher(Legacy(), MPI.COMM_SELF)


@pytest.mark.mpi
def test_calls_count_collective_evaluations_and_agree_over_ranks():
    """``calls`` is the number of collective evaluations: the same on every rank, kept (not
    summed) by ``total``; a difference of two snapshots counts the calls in between."""
    comm = MPI.COMM_WORLD
    dispatcher = Dispatcher(Quadratic(), comm)
    before = dispatcher.statistics.total(comm)
    for k in range(3):
        dispatcher.evaluate({"x": np.ones(2)}, {"s": np.array([0.1, 0.2 + k])})
    after = dispatcher.statistics.total(comm)
    assert (after - before).calls == 3
    assert after.point_evaluations == 6 * comm.size
