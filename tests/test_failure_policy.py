"""The failure policy of micro solves: abort, retry with a remedy, timeout, substitution
from solved neighbours (exact for a linear law), collective abort past a failure fraction,
the same on 1 and 2 ranks, and a macro FE² solve that goes on and says so."""

import time
import warnings

import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem.coupling import (
    Dispatcher,
    FailurePolicy,
    MicroFailureError,
    MicroStatistics,
    coupling_of,
)
from hmm_fem.io import dg0_function, write_vtx
from hmm_fem.macro import SteadyHeat
from hmm_fem.micro import MicroModel, MicroResponse, MicroSolveError


def law(a, b):
    """The exact (linear) coefficient of the toy model."""
    return 1.0 + 2.0 * a - 0.5 * b


class Flaky(MicroModel):
    """Response ``k(a, b) x`` with ``k`` linear in the state ``(a, b)``, failing on demand.

    ``faults`` maps a state ``(a, b)`` to how it fails: ``"raise"``, ``"nan"``, ``"sleep"``
    (sleeps ``nap`` seconds), or ``"...-unless-<remedy>"`` (fails unless the retry asks for
    that remedy).
    """

    inputs = {"x": ()}
    parameters = ("a", "b")
    state_names = ("a", "b")
    remedies = ("substeps", "lu")

    def __init__(self, faults=None, nap=0.3):
        self.faults = dict(faults or {})
        self.nap = nap
        self.calls = []  # (state, attempt, remedy) of every solve
        self.timeouts_seen = set()

    def micro_state(self, inputs, parameters):
        return np.column_stack([parameters["a"], parameters["b"]])

    def fault(self, state):
        for (a, b), mode in self.faults.items():
            if abs(state[0] - a) < 1e-12 and abs(state[1] - b) < 1e-12:
                return mode
        return None

    def solve(self, state, context):
        self.calls.append((tuple(state), context.attempt, context.remedy))
        self.timeouts_seen.add(context.timeout)
        mode = self.fault(state)
        if mode is not None and "-unless-" in mode:
            mode, cure = mode.split("-unless-")
            if context.remedy == cure:
                mode = None
        if mode == "raise":
            raise RuntimeError("micro Newton diverged")
        k = law(*state)
        if mode == "nan":
            k = np.nan
        if mode == "sleep":
            time.sleep(self.nap)
        return {"k": np.array(k), "dk": np.array([2.0, -0.5])}

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"])
        return MicroResponse(solutions["k"] * x, {"x": solutions["k"]}, dict(solutions))


def grid(n=5):
    """States on an n x n grid of (a, b) in [0, 1]^2, x = 1 + index."""
    a, b = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    a, b = a.ravel(), b.ravel()
    return {"x": 1.0 + np.arange(a.size)}, {"a": a, "b": b}


def evaluate(dispatcher, inputs, parameters):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return dispatcher.evaluate(inputs, parameters)


# -- abort (the default) ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, reason", [("raise", "micro Newton diverged"), ("nan", "not finite")]
)
def test_default_policy_aborts_at_the_first_failure_naming_point_and_state(mode, reason):
    inputs, parameters = grid(3)
    model = Flaky({(0.5, 1.0): mode})
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    with pytest.raises(
        MicroSolveError, match=rf"state a=0.5, b=1 .*needed at point 5\).*{reason}"
    ) as info:
        dispatcher.evaluate(inputs, parameters)
    assert type(info.value) is MicroSolveError  # as before the policy (callers record it)
    assert issubclass(MicroFailureError, MicroSolveError)  # old handlers catch the new aborts
    assert [c[1] for c in model.calls if c[0] == (0.5, 1.0)] == [0]  # no retry by default


def test_policy_arguments_are_checked():
    with pytest.raises(ValueError, match="retries"):
        FailurePolicy(retries=-1)
    with pytest.raises(ValueError, match="max_failure_fraction"):
        FailurePolicy(max_failure_fraction=1.5)
    with pytest.raises(ValueError, match="interrupt=True needs a timeout"):
        FailurePolicy(interrupt=True)
    with pytest.raises(TypeError, match=r"remedies=\('lu',\)"):
        FailurePolicy(remedies="lu")
    with pytest.raises(ValueError, match=r"asks for remedies \['bisection'\] but Flaky offers"):
        Dispatcher(Flaky(), MPI.COMM_SELF, failure_policy=FailurePolicy(1, ("bisection",)))


# -- retries with a remedy ----------------------------------------------------------------------
def test_retry_with_the_models_remedies_succeeds_and_is_counted():
    inputs, parameters = grid(3)
    model = Flaky({(0.5, 0.5): "raise-unless-lu", (1.0, 0.0): "nan-unless-substeps"})
    dispatcher = Dispatcher(model, MPI.COMM_SELF, failure_policy=FailurePolicy(retries=2))
    response = dispatcher.evaluate(inputs, parameters)
    assert np.allclose(response.value, law(parameters["a"], parameters["b"]) * inputs["x"])
    # The retries ask for the model's remedies in its order; a cured state stops retrying.
    assert [c[1:] for c in model.calls if c[0] == (0.5, 0.5)] == [
        (0, None),
        (1, "substeps"),
        (2, "lu"),
    ]
    assert [c[1:] for c in model.calls if c[0] == (1.0, 0.0)] == [(0, None), (1, "substeps")]
    s = dispatcher.statistics
    assert (s.failures, s.retries, s.substitutions, s.micro_solves) == (3, 3, 0, 9)
    assert not dispatcher.last_substituted.any()
    assert "3 failed attempts" in str(s)


def test_retries_that_all_fail_abort_with_every_reason():
    inputs, parameters = grid(3)
    model = Flaky({(0.5, 0.5): "raise"})
    policy = FailurePolicy(retries=2, remedies=("lu",))
    with pytest.raises(
        MicroSolveError, match=r"attempt 1: .*diverged; attempt 2 \[lu\]: .*; attempt 3 \[lu\]"
    ):
        Dispatcher(model, MPI.COMM_SELF, failure_policy=policy).evaluate(inputs, parameters)


# -- timeouts ---------------------------------------------------------------------------------
def test_a_solve_past_the_timeout_is_a_failure_and_a_remedy_can_cure_it():
    inputs, parameters = grid(2)
    model = Flaky({(1.0, 1.0): "sleep-unless-lu"}, nap=0.25)
    policy = FailurePolicy(retries=1, remedies=("lu",), timeout=0.1)
    dispatcher = Dispatcher(model, MPI.COMM_SELF, failure_policy=policy)
    response = dispatcher.evaluate(inputs, parameters)
    assert np.allclose(response.value, law(parameters["a"], parameters["b"]) * inputs["x"])
    s = dispatcher.statistics
    assert (s.failures, s.timeouts, s.retries) == (1, 1, 1)
    assert model.timeouts_seen == {0.1}  # the engine is told, in case it can stop itself
    with pytest.raises(MicroSolveError, match=r"took 0.2\d* s, over the timeout of 0.1 s"):
        Dispatcher(
            Flaky({(1.0, 1.0): "sleep"}, nap=0.25),
            MPI.COMM_SELF,
            failure_policy=FailurePolicy(timeout=0.1),
        ).evaluate(inputs, parameters)


def test_interrupt_stops_a_hung_python_solve_at_the_timeout():
    inputs, parameters = grid(2)
    model = Flaky({(0.0, 1.0): "sleep"}, nap=60.0)
    policy = FailurePolicy(timeout=0.2, interrupt=True)
    start = time.perf_counter()
    with pytest.raises(MicroSolveError, match="interrupted after the timeout of 0.2 s"):
        Dispatcher(model, MPI.COMM_SELF, failure_policy=policy).evaluate(inputs, parameters)
    assert time.perf_counter() - start < 5.0


# -- substitution ---------------------------------------------------------------------------------
def test_substitution_is_exact_for_a_linear_law_and_flags_the_points():
    inputs, parameters = grid(5)
    faults = {(0.5, 0.25): "raise", (0.75, 0.75): "nan", (0.0, 0.0): "raise"}  # one at a corner
    model = Flaky(faults)
    policy = FailurePolicy(substitute=True)
    dispatcher = Dispatcher(model, MPI.COMM_SELF, failure_policy=policy)
    with pytest.warns(RuntimeWarning, match="3 micro states failed and were substituted"):
        response = dispatcher.evaluate(inputs, parameters)
    exact = law(parameters["a"], parameters["b"])
    assert np.allclose(response.value, exact * inputs["x"], rtol=0, atol=1e-12)
    assert np.allclose(response.solutions["dk"], [2.0, -0.5], rtol=0, atol=1e-12)
    failed = np.array([model.fault(s) is not None for s in model.micro_state(inputs, parameters)])
    assert failed.sum() == 3
    assert np.array_equal(dispatcher.last_substituted, failed)
    s = dispatcher.statistics
    assert (s.substitutions, s.substituted_points, s.micro_solves) == (3, 3, 22)
    assert len(dispatcher.failure_log) == 3 and "substituted" in dispatcher.failure_log[0]
    # A substitute is not cached: the next evaluation tries the failed states again; the
    # warning comes once per macro step (the statistics and the log count every one).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dispatcher.evaluate(inputs, parameters)
        dispatcher.set_time(1.0)
        dispatcher.evaluate(inputs, parameters)
    assert sum(c[0] == (0.5, 0.25) for c in model.calls) == 3
    assert dispatcher.statistics.substitutions == 9 and len(dispatcher.failure_log) == 9
    assert [str(w.message)[:40] for w in caught] == ["3 micro states failed and were substitut"]


def test_inverse_distance_substitution_weights_the_nearest_solved_states():
    """Reference: the k nearest solved states by brute force, weights 1/d^2."""
    inputs, parameters = grid(4)
    parameters["a"][6], parameters["b"][6] = 0.3, 0.62  # off the grid: no ties in distance
    model = Flaky({(0.3, 0.62): "raise"})
    policy = FailurePolicy(substitute=True, interpolation="idw", neighbours=3, state_scale=1.0)
    response = evaluate(Dispatcher(model, MPI.COMM_SELF, failure_policy=policy), inputs, parameters)
    states = model.micro_state(inputs, parameters)
    others = np.delete(states, 6, axis=0)
    d = np.linalg.norm(others - states[6], axis=1)
    order = np.argsort(d)[:3]
    assert d[order[2]] < d[np.argsort(d)[3]]  # no tie at the third neighbour
    w = 1 / d[order] ** 2
    expected = w @ law(others[order, 0], others[order, 1]) / w.sum()
    assert abs(response.value[6] / inputs["x"][6] - expected) < 1e-12
    assert abs(expected - law(*states[6])) > 1e-3  # IDW is not exact: the test can tell


def test_substitution_refuses_to_bridge_more_than_max_distance():
    inputs, parameters = grid(3)
    parameters["a"][8] = 5.0  # far away from every other state
    model = Flaky()
    model.faults = {(5.0, 1.0): "raise"}
    policy = FailurePolicy(substitute=True, max_distance=1.0, state_scale=1.0)
    with pytest.raises(MicroFailureError, match=r"cannot be substituted.*farther than.*= 1"):
        Dispatcher(model, MPI.COMM_SELF, failure_policy=policy).evaluate(inputs, parameters)


class Accumulating(MicroModel):
    """``value = h + s``, history ``h <- h + s``: linear in the state and the history."""

    inputs = {"x": ()}
    parameters = ("s",)
    state_names = ("s",)
    history = {"h": ()}

    def __init__(self, bad=()):
        self.bad = bad

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["s"]).reshape(-1, 1)

    def solve(self, state, context):
        if any(abs(state[0] - b) < 1e-12 for b in self.bad):
            raise RuntimeError("cell failed")
        h = float(context.history["h"])
        return {"v": np.array(h + state[0]), "history": {"h": np.array(h + state[0])}}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["v"], {"x": np.zeros_like(solutions["v"])}, solutions)


def test_substitution_interpolates_in_state_and_committed_history():
    s = np.linspace(0.0, 1.0, 11)
    model = Accumulating(bad=(0.3,))
    dispatcher = Dispatcher(model, MPI.COMM_SELF, failure_policy=FailurePolicy(substitute=True))
    first = evaluate(dispatcher, {"x": s}, {"s": s})
    assert np.allclose(first.value, s, atol=1e-12)
    dispatcher.commit()
    model.bad = (0.6,)  # another point fails in the second step
    second = evaluate(dispatcher, {"x": s}, {"s": s})
    assert np.allclose(second.value, 2 * s, atol=1e-12)
    assert np.allclose(dispatcher.history.values("h"), 2 * s, atol=1e-12)
    assert np.flatnonzero(dispatcher.last_substituted).tolist() == [6]
    dispatcher.commit()  # prunes the histories of step 1, still the committed ones of keys
    model.bad = (0.9,)  # in the cache: they must not be used (nor break the search)
    third = evaluate(dispatcher, {"x": s}, {"s": s})
    assert np.allclose(third.value, 3 * s, atol=1e-12)
    assert np.flatnonzero(dispatcher.last_substituted).tolist() == [9]


# -- abort past the failure fraction, collectively --------------------------------------------
def test_past_the_failure_fraction_the_evaluation_aborts_with_the_numbers():
    inputs, parameters = grid(3)  # 9 points
    model = Flaky({(0.0, 0.0): "raise", (0.0, 0.5): "raise"})
    policy = FailurePolicy(substitute=True)  # 2/9 = 22 % > 20 %
    with pytest.raises(
        MicroFailureError, match=r"2 of 9 macro points \(22.2 %\).*max_failure_fraction = 20 %"
    ):
        Dispatcher(model, MPI.COMM_SELF, failure_policy=policy).evaluate(inputs, parameters)
    # At 25 % the same failures are substituted.
    policy = FailurePolicy(substitute=True, max_failure_fraction=0.25)
    response = evaluate(Dispatcher(model, MPI.COMM_SELF, failure_policy=policy), inputs, parameters)
    assert np.allclose(response.value, law(parameters["a"], parameters["b"]) * inputs["x"])


def rank_share(inputs, parameters, comm):
    """This rank's share of the points (interleaved, so that every rank has some)."""
    mine = slice(comm.rank, None, comm.size)
    return {k: v[mine] for k, v in inputs.items()}, {k: v[mine] for k, v in parameters.items()}


@pytest.mark.mpi
def test_past_the_fraction_every_rank_raises_the_same_error():
    comm = MPI.COMM_WORLD
    inputs, parameters = grid(4)  # 16 points; the failing states are needed on rank 0 only
    faults = {(a, b): "raise" for a in (0.0, 2 / 3) for b in (0.0, 2 / 3)}
    model = Flaky(faults)
    inputs, parameters = rank_share(inputs, parameters, comm)
    dispatcher = Dispatcher(model, comm, failure_policy=FailurePolicy(substitute=True))
    with pytest.raises(MicroFailureError, match=r"4 of 16 macro points \(25 %\)") as info:
        dispatcher.evaluate(inputs, parameters)
    messages = comm.allgather(str(info.value))
    assert len(set(messages)) == 1
    # And the default policy: every rank raises too (no rank left waiting).
    with pytest.raises(MicroSolveError, match="micro Newton diverged"):
        Dispatcher(Flaky(faults), comm).evaluate(inputs, parameters)


@pytest.mark.mpi
def test_substitution_is_the_same_on_one_and_two_ranks():
    comm = MPI.COMM_WORLD
    inputs, parameters = grid(6)
    faults = {(0.2, 0.4): "raise", (0.8, 0.0): "nan", (0.4, 0.4): "raise-unless-lu"}
    faults[(0.6, 1.0)] = "sleep"  # hangs: interrupted at the timeout, on whichever rank
    policy = FailurePolicy(
        retries=1,
        remedies=("lu",),
        substitute=True,
        interpolation="idw",
        neighbours=4,
        timeout=0.3,
        interrupt=True,
    )
    start = time.perf_counter()
    serial = evaluate(
        Dispatcher(Flaky(faults, nap=60), MPI.COMM_SELF, failure_policy=policy),
        inputs,
        parameters,
    )
    mine_inputs, mine_parameters = rank_share(inputs, parameters, comm)
    dispatcher = Dispatcher(Flaky(faults, nap=60), comm, failure_policy=policy)
    parallel = evaluate(dispatcher, mine_inputs, mine_parameters)
    assert time.perf_counter() - start < 10.0  # two hung attempts each, cut at 0.3 s
    mine = slice(comm.rank, None, comm.size)
    assert np.array_equal(parallel.value, serial.value[mine])  # bitwise: same neighbours, order
    model = Flaky(faults)
    flags = np.array(
        [model.fault(s) in ("raise", "nan", "sleep") for s in model.micro_state(inputs, parameters)]
    )
    assert flags.sum() == 3
    assert np.array_equal(dispatcher.last_substituted, flags[mine])
    total = dispatcher.statistics.total(comm)
    assert (total.substitutions, total.substituted_points, total.retries) == (3, 3, 4)
    assert total.timeouts == 2
    assert isinstance(total, MicroStatistics)


# -- a macro FE² solve that goes on with substituted points -------------------------------------
class Conductor(MicroModel):
    """``q = -(1 + T) grad T``; the micro state is T, and it fails for T in ``band``."""

    inputs = {"T": (), "grad_T": (2,)}
    output_shape = (2,)
    state_names = ("T",)

    def __init__(self, band=None):
        self.band = band

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["T"]).reshape(-1, 1)

    def solve(self, state, context):
        if self.band is not None and self.band[0] < state[0] < self.band[1]:
            raise RuntimeError("cell diverged")
        return {"k": np.array(1.0 + state[0])}

    def respond(self, solutions, inputs, parameters):
        grad = np.asarray(inputs["grad_T"]).reshape(-1, 2)
        k = solutions["k"].reshape(-1, 1)
        return MicroResponse(
            -k * grad, {"T": -grad, "grad_T": -k[:, :, None] * np.eye(2)}, dict(solutions)
        )


def heat_solve(comm, band, policy=None):
    msh = mesh.create_unit_square(comm, 8, 8)
    heat = SteadyHeat(
        msh,
        Conductor(band),
        dirichlet=[(lambda x: np.isclose(x[0], 0.0), 0.0), (lambda x: np.isclose(x[0], 1.0), 1.0)],
        failure_policy=policy,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = heat.solve()
    heat.warnings = [str(w.message) for w in caught]
    integrals = [
        msh.comm.allreduce(fem.assemble_scalar(fem.form(f * ufl.dx)), op=MPI.SUM)
        for f in (heat.T, ufl.inner(ufl.grad(heat.T), ufl.grad(heat.T)))
    ]
    return heat, report, np.array(integrals)


@pytest.mark.mpi
def test_macro_solve_continues_with_substituted_points_and_says_so(tmp_path_factory):
    comm = MPI.COMM_WORLD
    band = (0.40, 0.47)
    policy = FailurePolicy(substitute=True)
    heat, report, integrals = heat_solve(comm, band, policy)
    _, reference, exact = heat_solve(comm, None)
    # k = 1 + T is linear in the state: the substituted k is exact, and so is the solution,
    # and Newton takes the same path (states equal to round-off from converging iterates
    # must not spoil the fit: they did, by 0.04 in k, in a first version).
    assert np.allclose(integrals, exact, rtol=1e-10, atol=0)
    k = heat.coupling.last_response.solutions["k"].reshape(-1)
    assert np.allclose(k, 1 + heat.coupling.last_inputs["T"].reshape(-1), rtol=0, atol=1e-12)
    assert report.iterations == reference.iterations
    assert np.allclose(report.residual_norms[:-1], reference.residual_norms[:-1], rtol=1e-8)
    # T = sqrt(1 + 3x) - 1 (1D, k = 1 + T): a check that the reference solve is right.
    assert abs(exact[0] - (2 / 9 * (8 - 1) - 1)) < 2e-3
    assert report.substituted and report.substituted_points > 0
    assert not reference.substituted
    assert "SUBSTITUTED micro responses at" in str(report)
    if comm.rank == 0:
        assert any("rests on substituted micro responses" in w for w in heat.warnings)
    assert report.statistics.substitutions > 0 and report.statistics.failures > 0
    coupling = heat.coupling
    T_points = heat.coupling.last_inputs["T"].reshape(-1)
    inside = (T_points > band[0]) & (T_points < band[1])
    assert np.array_equal(coupling.substituted, inside)
    assert comm.allreduce(int(inside.sum()), op=MPI.SUM) == report.substituted_points
    cells = coupling.substituted_cells()
    assert np.array_equal(cells, inside.reshape(cells.size, -1).any(axis=1).astype(float))
    directory = tmp_path_factory.mktemp("substituted") if comm.rank == 0 else None
    directory = comm.bcast(directory, root=0)
    path = write_vtx(directory / "cells.bp", [dg0_function(heat.mesh, cells, "substituted")])
    assert path.exists()
    # The macro writer marks the cells in ParaView's output (read back as ADIOS2 sees it).
    micro = heat.write(directory / "heat")["micro"]
    if comm.rank == 0:
        import adios2

        with adios2.FileReader(str(micro)) as reader:
            values = np.asarray(reader.read("substituted"), dtype=float)
        assert set(np.unique(values)) == {0.0, 1.0}
    assert coupling_of(heat.flux) is coupling


@pytest.mark.mpi
def test_macro_solve_aborts_on_every_rank_past_the_fraction_and_by_default():
    comm = MPI.COMM_WORLD
    with pytest.raises(MicroFailureError, match=r"macro points .*max_failure_fraction = 20 %"):
        heat_solve(comm, (0.2, 0.8), FailurePolicy(substitute=True))
    with pytest.raises(MicroSolveError, match=r"needed at quadrature point \d of cell \d+"):
        heat_solve(comm, (0.40, 0.47))


@pytest.mark.mpi
def test_macro_solve_with_substitution_is_the_same_on_one_and_two_ranks():
    policy = FailurePolicy(substitute=True)
    results = {}
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        if comm is MPI.COMM_SELF and MPI.COMM_WORLD.rank != 0:
            continue
        _, report, integrals = heat_solve(comm, (0.40, 0.47), policy)
        results[comm.size] = (report.substituted_points, integrals)
    if MPI.COMM_WORLD.rank == 0:
        (n1, i1), (n2, i2) = results[min(results)], results[max(results)]
        assert n1 == n2 > 0
        assert np.allclose(i1, i2, rtol=1e-12, atol=0)
