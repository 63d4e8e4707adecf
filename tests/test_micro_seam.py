"""The widened micro seam on FE-free models: history, time, noise, tangents without a form.

References are closed forms: the 1D elastoplastic return mapping with linear isotropic
hardening, exponential relaxation over a time step, the mean of a Gaussian.
"""

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem.coupling import Dispatcher
from hmm_fem.micro import (
    EnsembleAverage,
    FiniteDifferenceTangent,
    MicroModel,
    MicroResponse,
    MicroSolveError,
    SecantTangent,
    SolveContext,
)

E, YIELD, HARDENING = 2.0, 0.02, 0.5


class Bar(MicroModel):
    """A 1D elastoplastic bar, linear isotropic hardening: the closed-form return mapping."""

    inputs = {"strain": ()}
    output_shape = ()
    state_names = ("strain",)
    history = {"plastic_strain": (1,), "alpha": (1,)}

    def __init__(self):
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["strain"], dtype=float).reshape(-1, 1)

    def solve(self, state, context):
        self.solves += 1
        strain = state[0]
        plastic, alpha = context.history["plastic_strain"][0], context.history["alpha"][0]
        trial = E * (strain - plastic)
        excess = abs(trial) - (YIELD + HARDENING * alpha)
        if excess <= 0:
            stress, tangent = trial, E
        else:
            gamma = excess / (E + HARDENING)
            plastic += gamma * np.sign(trial)
            alpha += gamma
            stress, tangent = E * (strain - plastic), E * HARDENING / (E + HARDENING)
        return {
            "stress": np.array(stress),
            "tangent": np.array(tangent),
            "history": {"plastic_strain": [plastic], "alpha": [alpha]},
        }

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["stress"], {"strain": solutions["tangent"]}, solutions)


def monotonic_stress(strain):
    """Closed form of the bar loaded monotonically from the virgin state."""
    onset = YIELD / E
    slope = E * HARDENING / (E + HARDENING)
    return np.where(
        np.abs(strain) <= onset,
        E * strain,
        np.sign(strain) * (YIELD + slope * (np.abs(strain) - onset)),
    )


def step(dispatcher, strains, ids=None):
    dispatcher.set_time(dispatcher.clock.time + 1.0, 1.0)
    return dispatcher.evaluate({"strain": np.asarray(strains, float)}, point_ids=ids).value


def test_history_closed_form_load_unload_and_residual_strain():
    dispatcher = Dispatcher(Bar(), MPI.COMM_SELF)
    path = [0.005, 0.03, 0.05]
    for e in path:
        stress = step(dispatcher, [e])
        dispatcher.commit()
        assert stress[0] == pytest.approx(float(monotonic_stress(e)), rel=1e-14)
    # Unload elastically to zero stress: the residual strain is the plastic strain.
    peak = float(monotonic_stress(0.05))
    residual = 0.05 - peak / E
    assert step(dispatcher, [residual])[0] == pytest.approx(0.0, abs=1e-15)
    dispatcher.commit()
    plastic = dispatcher.history.values("plastic_strain", "committed")[0, 0]
    assert plastic == pytest.approx(residual, rel=1e-14)


def test_rollback_is_exact_and_trial_updates_wait_for_commit():
    """A trial step that is cut leaves no trace: the next step equals a run without it."""
    cut = Dispatcher(Bar(), MPI.COMM_SELF)
    straight = Dispatcher(Bar(), MPI.COMM_SELF)
    step(cut, [0.04, 0.01])
    cut.commit()
    step(straight, [0.04, 0.01])
    straight.commit()
    step(cut, [-0.08, 0.2])  # a wild iterate, then the step is cut
    assert not np.array_equal(
        cut.history.values("plastic_strain", "trial"),
        cut.history.values("plastic_strain", "committed"),
    )
    cut.rollback()
    # What the outputs show (trial) is the committed state again.
    assert np.array_equal(
        cut.history.values("plastic_strain", "trial"),
        cut.history.values("plastic_strain", "committed"),
    )
    a = step(cut, [0.05, 0.02])
    b = step(straight, [0.05, 0.02])
    assert np.array_equal(a, b)
    # Every iterate of a step starts from the committed history, not from the last iterate.
    again = step(cut, [0.05, 0.02])
    assert np.array_equal(again, a)


def test_points_with_different_histories_never_share_a_solve():
    model = Bar()
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    step(dispatcher, [0.04, 0.0, 0.04])  # points 0 and 2 yield, point 1 stays virgin
    dispatcher.commit()
    model.solves = 0
    stress = step(dispatcher, [0.01, 0.01, 0.01])  # same strain everywhere
    assert model.solves == 2  # one for the two equal histories, one for the virgin point
    assert stress[0] == stress[2] and stress[1] == pytest.approx(E * 0.01)
    assert stress[0] < 0  # elastic unloading below the plastic strain of the yielded points


def test_history_saves_and_restarts_exactly(tmp_path):
    first = Dispatcher(Bar(), MPI.COMM_SELF)
    step(first, [0.03, -0.04, 0.0])
    first.commit()
    path = first.save_history(tmp_path / "history.npz")
    restarted = Dispatcher(Bar(), MPI.COMM_SELF)
    restarted.load_history(path, point_ids=np.arange(3))
    assert np.array_equal(step(restarted, [0.05, 0.01, 0.02]), step(first, [0.05, 0.01, 0.02]))


def test_bad_history_is_refused_with_its_name():
    class Broken(Bar):
        def solve(self, state, context):
            result = super().solve(state, context)
            result["history"] = {"plastic_strain": [0.0, 1.0], "alpha": [0.0]}
            return result

    dispatcher = Dispatcher(Broken(), MPI.COMM_SELF)
    with pytest.raises(MicroSolveError, match=r"\['plastic_strain'\] has shape"):
        step(dispatcher, [0.01])
    forgetful = Dispatcher(
        type("Forgetful", (Bar,), {"solve": lambda self, s, c: {"stress": 0.0, "tangent": 1.0}})(),
        MPI.COMM_SELF,
    )
    with pytest.raises(MicroSolveError, match="returned no 'history'"):
        step(forgetful, [0.01])


def test_a_model_with_history_must_keep_its_points():
    dispatcher = Dispatcher(Bar(), MPI.COMM_SELF)
    step(dispatcher, [0.01, 0.02])
    with pytest.raises(MicroSolveError, match="same points every time"):
        step(dispatcher, [0.01])


@pytest.mark.mpi
def test_history_on_two_ranks_equals_serial_and_restarts_on_one(tmp_path_factory):
    """Points dealt to the ranks by global id: the same stresses and the same number of
    solves as one rank; a history saved on 2 ranks restarts a serial run exactly."""
    comm = MPI.COMM_WORLD
    strains = np.array([0.03, -0.04, 0.0, 0.03, 0.05, 0.01, -0.02])
    later = np.array([0.05, 0.01, 0.02, 0.0, 0.06, 0.02, -0.03])
    ids = np.arange(len(strains))[comm.rank :: comm.size]
    parallel_model, serial_model = Bar(), Bar()
    parallel = Dispatcher(parallel_model, comm)
    serial = Dispatcher(serial_model, MPI.COMM_SELF)
    step(parallel, strains[ids], ids)
    parallel.commit()
    step(serial, strains)
    serial.commit()
    mine = step(parallel, later[ids], ids)
    everything = step(serial, later)
    assert np.array_equal(mine, everything[ids])
    assert comm.allreduce(parallel_model.solves, op=MPI.SUM) == serial_model.solves
    path = comm.bcast(str(tmp_path_factory.mktemp("history") / "h.npz") if comm.rank == 0 else None)
    parallel.rollback()
    parallel.save_history(path)
    if comm.rank == 0:
        restarted = Dispatcher(Bar(), MPI.COMM_SELF)
        restarted.load_history(path, point_ids=np.arange(len(strains)))
        serial.rollback()
        assert np.array_equal(step(restarted, later), step(serial, later))
    comm.barrier()


class Relaxation(MicroModel):
    """``dy/dt = (x - y) / tau`` over the macro step, exactly: y carried as history."""

    inputs = {"x": ()}
    output_shape = ()
    history = {"y": (1,)}
    time_dependent = True
    tau = 0.7

    def __init__(self):
        self.solves = 0

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["x"], dtype=float).reshape(-1, 1)

    def solve(self, state, context):
        self.solves += 1
        decay = np.exp(-context.dt / self.tau)
        y = state[0] + (context.history["y"][0] - state[0]) * decay
        return {"y": np.array(y), "dy_dx": np.array(1.0 - decay), "history": {"y": [y]}}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["y"], {"x": solutions["dy_dx"]}, solutions)


def test_a_time_dependent_model_advances_over_each_macro_step():
    model = Relaxation()
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    t, y_exact = 0.0, 0.0
    for dt, x in ((0.1, 1.0), (0.5, 1.0), (0.25, -2.0)):
        t += dt
        dispatcher.set_time(t, dt)
        y = dispatcher.evaluate({"x": np.array([x])}).value[0]
        dispatcher.commit()
        y_exact = x + (y_exact - x) * np.exp(-dt / Relaxation.tau)
        assert y == pytest.approx(y_exact, rel=1e-14)
        assert dispatcher.clock.dt == dt
    # The same state over another time step is another solve (the key holds the time step).
    solves = model.solves
    dispatcher.set_time(t + 0.3, 0.3)
    dispatcher.evaluate({"x": np.array([-2.0])})
    assert model.solves == solves + 1


class Noisy(MicroModel):
    """``y = a x + sigma xi``, ``xi`` standard normal from the point's stream."""

    inputs = {"x": ()}
    output_shape = ()
    stochastic = True
    a, sigma = 3.0, 0.1

    def __init__(self, seed=0):
        self.seed = seed

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["x"], dtype=float).reshape(-1, 1)

    def solve(self, state, context):
        xi = context.rng().standard_normal()
        return {"y": np.array(self.a * state[0] + self.sigma * xi), "slope": np.array(self.a)}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["y"], {"x": solutions["slope"]}, solutions)


def test_streams_are_seeded_by_model_point_step_and_iteration():
    x = np.ones(4)
    first = Dispatcher(Noisy(seed=7), MPI.COMM_SELF)
    values = first.evaluate({"x": x}).value
    assert len(np.unique(values)) == 4  # every point its own stream, even at equal states
    again = Dispatcher(Noisy(seed=7), MPI.COMM_SELF).evaluate({"x": x}).value
    assert np.array_equal(values, again)
    assert not np.array_equal(first.evaluate({"x": x}).value, values)  # next iteration
    other = Dispatcher(Noisy(seed=8), MPI.COMM_SELF).evaluate({"x": x}).value
    assert not np.any(other == values)
    expected = 3.0 + 0.1 * np.array(
        [np.random.default_rng([7, i, 0, 0]).standard_normal() for i in range(4)]
    )
    assert np.array_equal(values, expected)


@pytest.mark.mpi
def test_streams_do_not_depend_on_the_number_of_ranks():
    comm = MPI.COMM_WORLD
    x = np.linspace(0.0, 1.0, 9)
    ids = np.arange(9)[comm.rank :: comm.size]
    parallel = Dispatcher(Noisy(seed=3), comm)
    serial = Dispatcher(Noisy(seed=3), MPI.COMM_SELF)
    for _ in range(2):
        mine = parallel.evaluate({"x": x[ids]}, point_ids=ids).value
        assert np.array_equal(mine, serial.evaluate({"x": x}).value[ids])


def test_ensemble_meets_its_target_and_its_interval_covers_the_mean():
    """Replicas until the standard error is below 0.01: about (0.1/0.01)^2 = 100 of them.
    Over 20 seeds, the truth a x lies within 4 standard errors every time (a miss has
    probability 6e-5 per seed)."""
    x = np.array([0.5, 2.0])
    for seed in range(20):
        model = EnsembleAverage(Noisy(seed=seed), target_standard_error=0.01, max_replicas=400)
        response = Dispatcher(model, MPI.COMM_SELF).evaluate({"x": x})
        error = response.standard_error
        assert np.all(error <= 0.01)
        assert np.all(np.abs(response.value - 3.0 * x) <= 4 * error)
        replicas = response.solutions["replicas"]
        assert np.all((replicas >= 60) & (replicas <= 160))  # (sigma/target)^2 = 100
        assert np.allclose(response.derivatives["x"], 3.0)


def test_ensemble_warns_when_the_target_is_out_of_reach():
    model = EnsembleAverage(Noisy(), target_standard_error=1e-6, max_replicas=16)
    with pytest.warns(RuntimeWarning, match="above the target"):
        response = Dispatcher(model, MPI.COMM_SELF).evaluate({"x": np.ones(1)})
    assert response.solutions["target_met"][0] == 0.0 and response.solutions["replicas"][0] == 16


def test_ensemble_refuses_a_deterministic_model():
    with pytest.raises(ValueError, match="not stochastic"):
        EnsembleAverage(Bar(), target_standard_error=0.1)


class Cubic(MicroModel):
    """``y = (x0^3 + x0 x1, sin(x1))`` with its exact derivative (for checking)."""

    inputs = {"x": (2,)}
    output_shape = (2,)

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["x"], dtype=float).reshape(-1, 2)

    def solve(self, state, context):
        x0, x1 = state
        return {
            "y": np.array([x0**3 + x0 * x1, np.sin(x1)]),
            "dy": np.array([[3 * x0**2 + x1, x0], [0.0, np.cos(x1)]]),
        }

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["y"], {"x": solutions["dy"]}, solutions)


@pytest.mark.parametrize("scheme, tolerance", [("central", 1e-9), ("forward", 1e-6)])
def test_finite_difference_tangent_matches_the_exact_one(scheme, tolerance):
    x = np.array([[0.3, -1.2], [2.0, 0.0], [0.0, 0.5]])
    exact = Dispatcher(Cubic(), MPI.COMM_SELF).evaluate({"x": x})
    fd = Dispatcher(FiniteDifferenceTangent(Cubic(), scheme=scheme), MPI.COMM_SELF).evaluate(
        {"x": x}
    )
    assert np.array_equal(fd.value, exact.value)
    scale = np.abs(exact.derivatives["x"]).max()
    assert np.abs(fd.derivatives["x"] - exact.derivatives["x"]).max() < tolerance * scale


def test_finite_differences_use_common_random_numbers_and_keep_the_history():
    noisy = Dispatcher(FiniteDifferenceTangent(Noisy(seed=1)), MPI.COMM_SELF)
    response = noisy.evaluate({"x": np.array([0.2, 1.5])})
    assert np.allclose(response.derivatives["x"], 3.0, rtol=1e-9)  # the noise cancels
    bar = Dispatcher(FiniteDifferenceTangent(Bar()), MPI.COMM_SELF)
    reference = Dispatcher(Bar(), MPI.COMM_SELF)
    for dispatcher in (bar, reference):
        step(dispatcher, [0.03, 0.001])
        dispatcher.commit()
    fd, exact = step(bar, [0.05, 0.002]), step(reference, [0.05, 0.002])
    assert np.array_equal(fd, exact)  # the perturbed solves left the history alone
    assert np.array_equal(
        bar.history.values("plastic_strain"), reference.history.values("plastic_strain")
    )


def test_secant_tangent_satisfies_the_secant_condition():
    model = SecantTangent(Cubic(), initial_tangent=np.eye(2))
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    x0 = np.array([[0.3, -1.2], [1.0, 0.4]])
    x1 = x0 + np.array([[0.01, 0.02], [0.0, -0.03]])
    first = dispatcher.evaluate({"x": x0})
    assert np.array_equal(first.derivatives["x"], np.broadcast_to(np.eye(2), (2, 2, 2)))
    second = dispatcher.evaluate({"x": x1})
    T = second.derivatives["x"]
    assert np.allclose(np.einsum("nij,nj->ni", T, x1 - x0), second.value - first.value, rtol=1e-12)


def test_context_gives_the_same_stream_twice():
    context = SolveContext(seed=(1, 2, 3, 4))
    assert context.rng().random() == context.rng().random()
