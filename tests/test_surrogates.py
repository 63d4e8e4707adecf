"""Surrogates of micro models: coverage of the error bound, fallbacks, files, ranks.

References: a closed-form laminate (arithmetic and harmonic means of two temperature
laws) as the true model of the Gaussian-process surrogate, so that thousands of true
errors cost nothing; the full conductivity cell for the reduced-basis surrogate.
"""

import numpy as np
import pytest
from mpi4py import MPI
from scipy.stats import qmc

from hmm_fem import cells
from hmm_fem.coupling import Dispatcher
from hmm_fem.materials.laws import LinearLaw
from hmm_fem.micro import (
    ConductivityModel,
    GaussianProcessSurrogate,
    MicroModel,
    MicroResponse,
    ReducedBasisSurrogate,
)
from hmm_fem.micro.surrogates import ANSWERED_KEY, INDICATOR_KEY

LOWER, UPPER = np.array([300.0, 0.1]), np.array([400.0, 0.6])


class Laminate(MicroModel):
    """K*(T, f) of a laminate: arithmetic mean along, harmonic across the layers (exact)."""

    inputs = {"T": (), "grad_T": (2,)}
    output_shape = (2,)
    parameters = ("f",)
    state_names = ("T", "f")

    def __init__(self, kink: bool = False):
        self.solves = 0
        self.kink = kink

    def micro_state(self, inputs, parameters):
        T = np.asarray(inputs["T"], dtype=np.float64).reshape(-1)
        return np.column_stack([T, np.asarray(parameters["f"], dtype=np.float64).reshape(-1)])

    def exact(self, T, f):
        k1 = 10.0 * np.exp(-500.0 / T)
        k2 = 1.0 + 1e-3 * (T - 300.0) + (0.02 * np.abs(T - 350.0) if self.kink else 0.0)
        return np.stack([f * k1 + (1 - f) * k2, 1.0 / (f / k1 + (1 - f) / k2)], axis=-1)

    def solve(self, state, context=None):
        self.solves += 1
        return {"K": np.diag(self.exact(state[0], state[1]))}

    def respond(self, solutions, inputs, parameters):
        K = solutions["K"]
        grad = np.asarray(inputs["grad_T"], dtype=np.float64).reshape(-1, 2)
        return MicroResponse(
            -np.einsum("nij,nj->ni", K, grad),
            {"T": np.zeros_like(grad), "grad_T": -K},
            dict(solutions),
        )


def random_states(n, seed):
    return LOWER + np.random.default_rng(seed).random((n, 2)) * (UPPER - LOWER)


def true_relative_errors(surrogate, model, states):
    results, indicator = surrogate.predict(states)
    truth = np.array([model.exact(*s) for s in states])
    K = np.einsum("nii->ni", results["K"])
    scale = np.linalg.norm(
        np.array([model.solve(s)["K"] for s in surrogate.training_states]), axis=(1, 2)
    ).max()
    return np.linalg.norm(K - truth, axis=1) / scale, indicator


@pytest.mark.parametrize(
    "kernel, kink, size",
    [
        ("matern52", False, 12),
        ("matern52", False, 40),
        ("matern32", True, 20),
        ("matern32", True, 40),
    ],
)
def test_gp_bound_covers_the_true_error_at_the_nominal_level(kernel, kink, size):
    """Over 2000 random states the true relative error lies below the indicator at least as
    often as the nominal 95 % (less three binomial standard deviations), and the indicator
    is informative (not orders of magnitude above the error). A map with a kink needs the
    rougher kernel: Matérn 5/2 covered only 89-98 % there (measured at 12-80 points)."""
    model = Laminate(kink=kink)
    surrogate = GaussianProcessSurrogate(
        model, 1e-3, level=0.95, comm=MPI.COMM_SELF, kernel=kernel, min_training=size
    )
    surrogate.train(LOWER + qmc.Halton(2, seed=3).random(size) * (UPPER - LOWER))
    assert model.solves == size and surrogate.training_size == size
    error, indicator = true_relative_errors(surrogate, model, random_states(2000, 11))
    coverage = np.mean(error <= indicator)
    assert coverage >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 2000), coverage
    assert np.median(error / indicator) > 1e-2
    # At the training states the process interpolates up to its nugget, and the error
    # there lies within the (small) indicator too.
    error, indicator = true_relative_errors(surrogate, model, surrogate.training_states)
    assert np.all(error <= indicator + 1e-12) and indicator.max() < 1e-3


def test_gp_falls_back_above_the_tolerance_and_learns_from_the_fallbacks():
    """Through the dispatcher: every state is answered by the surrogate or by a true solve
    (counted), the fallbacks join the training set, and the surrogate answers lie within the
    tolerance of the exact tensors (at the level of the bound)."""
    tolerance = 1e-4
    model = Laminate()
    surrogate = GaussianProcessSurrogate(model, tolerance, comm=MPI.COMM_SELF)
    dispatcher = Dispatcher(surrogate, MPI.COMM_SELF)
    errors = []
    for k in range(12):
        states = random_states(40, 100 + k)
        response = dispatcher.evaluate(
            {"T": states[:, 0], "grad_T": np.tile([1.0, -2.0], (40, 1))}, {"f": states[:, 1]}
        )
        exact = np.array([model.exact(*s) for s in states])
        K = -response.derivatives["grad_T"]
        errors.append(np.linalg.norm(np.einsum("nii->ni", K) - exact, axis=1))
        flags = response.solutions[ANSWERED_KEY]
        assert flags.shape == (40,) and np.all(surrogate.last_answered == (flags == 1.0))
        accepted = response.solutions[INDICATOR_KEY][flags == 1.0]
        assert np.all(accepted <= tolerance)
    stats = surrogate.statistics
    errors = np.concatenate(errors) / np.abs(exact).max()
    assert stats.surrogate_answers + stats.fallbacks == dispatcher.statistics.micro_solves == 480
    assert stats.surrogate_points + stats.fallback_points == 480
    assert model.solves == stats.fallbacks == surrogate.training_size
    assert stats.surrogate_answers > 300, str(stats)  # it learns: most later states are cheap
    assert stats.largest_accepted <= tolerance
    # The true errors of all points, surrogate answers included, within the tolerance but
    # for at most the nominal 5 % (scales differ slightly: 1.2 x allowance).
    assert np.mean(errors > 1.2 * tolerance) <= 0.05, np.sort(errors)[-10:]


def test_gp_waits_for_training_states_that_span_the_state_space():
    """States all on one line (one temperature, as at the start of a transient run from a
    uniform field) cannot fit the linear trend in (T, f): the surrogate falls back at every
    state instead of failing, and answers once the training set spans the plane."""
    model = Laminate()
    surrogate = GaussianProcessSurrogate(model, 1e-2, comm=MPI.COMM_SELF)
    dispatcher = Dispatcher(surrogate, MPI.COMM_SELF)
    line = np.column_stack([np.full(20, 350.0), np.linspace(0.2, 0.6, 20)])
    dispatcher.evaluate(
        {"T": line[:, 0], "grad_T": np.tile([1.0, 0.0], (20, 1))}, {"f": line[:, 1]}
    )
    assert surrogate.statistics.fallbacks == 20 and surrogate.statistics.surrogate_answers == 0
    states = random_states(40, 7)
    dispatcher.evaluate(
        {"T": states[:, 0], "grad_T": np.tile([1.0, 0.0], (40, 1))}, {"f": states[:, 1]}
    )
    later = random_states(40, 8)
    dispatcher.evaluate(
        {"T": later[:, 0], "grad_T": np.tile([1.0, 0.0], (40, 1))}, {"f": later[:, 1]}
    )
    assert surrogate.statistics.surrogate_answers > 0


def test_gp_save_and_load_answer_alike_and_check_the_model(tmp_path):
    model = Laminate()
    surrogate = GaussianProcessSurrogate(model, 1e-3, comm=MPI.COMM_SELF, identity="laminate")
    surrogate.train(LOWER + qmc.Halton(2, seed=0).random(16) * (UPPER - LOWER))
    path = tmp_path / "gp.npz"
    surrogate.save(path)
    again = GaussianProcessSurrogate(Laminate(), 1e-3, comm=MPI.COMM_SELF, identity="laminate")
    again.load(path)
    states = random_states(50, 5)
    a, ia = surrogate.predict(states)
    b, ib = again.predict(states)
    assert np.array_equal(a["K"], b["K"]) and np.array_equal(ia, ib)
    other = GaussianProcessSurrogate(Laminate(), 1e-3, comm=MPI.COMM_SELF, identity="other")
    with pytest.raises(ValueError, match="different micro model.*identity"):
        other.load(path)


def test_gp_refuses_models_it_cannot_interpolate():
    class WithHistory(Laminate):
        history = {"p": (1,)}

    with pytest.raises(ValueError, match="history, time dependence or noise"):
        GaussianProcessSurrogate(WithHistory(), 1e-3)
    with pytest.raises(ValueError, match="tolerance must be positive"):
        GaussianProcessSurrogate(Laminate(), 0.0)
    surrogate = GaussianProcessSurrogate(Laminate(), 1e-3, entries=["Q"], comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match=r"entries \['Q'\]"):
        surrogate.train(random_states(4, 0))


@pytest.fixture(scope="module")
def conductivity():
    laws = {"matrix": 1.0, "inclusion": LinearLaw(10.0, 0.05, T0=300.0)}
    model = ConductivityModel(cells.square(0.4, mesh_size=0.1), laws)
    from hmm_fem.cells import ReducedBasis

    problem = model.cell_problem(T=300.0)
    # Inclusion 10 (300 K) to 60 (400 K); the basis covers 5..40, i.e. up to 360 K.
    rb = ReducedBasis.train(
        problem, {"matrix": 1.0, "inclusion": (5.0, 40.0)}, tolerance=1e-7, training_size=32
    )
    return model, rb


def test_reduced_basis_surrogate_is_certified_and_falls_back_outside(conductivity):
    """Inside the training range the answer is the reduced tensor, within its certified bound
    of the full cell, with dK*/dT matching the cell's Hellmann-Feynman derivative; outside
    (above 360 K) the full cell answers, and both are counted."""
    import warnings

    model, rb = conductivity
    surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-6, learn=False)
    temperatures = np.array([300.0, 320.0, 345.0, 355.0, 370.0, 390.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside the range: the basis warns, we fall back
        for T in temperatures:
            got = surrogate.solve(np.array([T]))
            full = model.solve(np.array([T]))
            scale = np.linalg.norm(full["K"], 2)
            assert np.linalg.norm(got["K"] - full["K"], 2) <= 1e-6 * scale + 1e-13 * 40
            assert np.allclose(got["dK_dT"], full["dK_dT"], rtol=0, atol=1e-6 * scale)
    assert surrogate.statistics.surrogate_answers == 4
    assert surrogate.statistics.fallbacks == 2
    assert [float(s[0]) for s in surrogate.fallback_states] == [370.0, 390.0]


def test_reduced_basis_surrogate_rejects_other_models(conductivity):
    _, rb = conductivity
    with pytest.raises(TypeError, match="wraps a ConductivityModel"):
        ReducedBasisSurrogate(Laminate(), rb, 1e-6)


@pytest.mark.mpi
def test_gp_gives_the_same_answers_and_fallbacks_on_any_number_of_ranks():
    """The same evaluations through a dispatcher on COMM_WORLD and on COMM_SELF (every rank
    all points): bitwise-equal answers, the same training set, the same numbers of
    surrogate answers and fallbacks."""
    comm = MPI.COMM_WORLD
    runs = {}
    for name, c in (("world", comm), ("self", MPI.COMM_SELF)):
        model = Laminate()
        surrogate = GaussianProcessSurrogate(model, 1e-4, comm=c)
        surrogate.train(random_states(9, 7))  # dealt over the ranks of c
        dispatcher = Dispatcher(surrogate, c)
        values = []
        for k in range(6):
            states = random_states(30, 200 + k)
            # On COMM_WORLD every rank takes its share of the points.
            share = np.array_split(np.arange(30), c.size)[c.rank]
            response = dispatcher.evaluate(
                {"T": states[share, 0], "grad_T": np.ones((len(share), 2))},
                {"f": states[share, 1]},
            )
            parts = c.allgather(response.value) if c.size > 1 else [response.value]
            values.append(np.concatenate(parts))
        runs[name] = (
            np.concatenate(values),
            surrogate.training_states,
            surrogate.statistics.total(c),
        )
    world, alone = runs["world"], runs["self"]
    assert np.array_equal(world[0], alone[0])
    assert np.array_equal(world[1], alone[1])
    assert world[2].surrogate_answers == alone[2].surrogate_answers > 0
    assert world[2].fallbacks == alone[2].fallbacks > 0


def test_gp_on_the_conductivity_cell_answers_within_tolerance(conductivity):
    """The real FE cell as the true model: every answer of the surrogate is within the
    tolerance of the full cell's K* (checked at every state), and it learns: the later calls
    are mostly answered by the surrogate."""
    model, _ = conductivity
    tolerance = 1e-4
    surrogate = GaussianProcessSurrogate(model, tolerance, comm=MPI.COMM_SELF)
    surrogate.train(np.linspace(300.0, 360.0, 10)[:, None])
    dispatcher = Dispatcher(surrogate, MPI.COMM_SELF)
    rng = np.random.default_rng(4)
    errors, answered = [], []
    for _ in range(6):
        before = surrogate.statistics.surrogate_answers
        T = rng.uniform(300.0, 360.0, 25)
        response = dispatcher.evaluate({"T": T, "grad_T": np.tile([1.0, 0.0], (25, 1))})
        answered.append(surrogate.statistics.surrogate_answers - before)
        K = -response.derivatives["grad_T"]
        for i in range(25):
            full = model.solve(np.array([T[i]]))["K"]
            errors.append(np.linalg.norm(K[i] - full) / np.linalg.norm(full))
    stats = surrogate.statistics
    assert stats.surrogate_answers + stats.fallbacks == 150
    assert surrogate.training_size == 10 + stats.fallbacks
    assert sum(answered[-2:]) >= 35, (answered, str(stats))
    assert max(errors) <= tolerance, max(errors)


@pytest.mark.mpi
def test_reduced_basis_surrogate_gives_the_same_answers_on_any_number_of_ranks(conductivity):
    """Through a dispatcher on COMM_WORLD and on COMM_SELF: the same K* at every point and the
    same numbers of reduced and full answers (the decision depends on the state only)."""
    import warnings

    model, rb = conductivity
    comm = MPI.COMM_WORLD
    T = np.linspace(300.0, 390.0, 19)  # 370 K and above lie outside the basis's range
    runs = {}
    for name, c in (("world", comm), ("self", MPI.COMM_SELF)):
        surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-6, learn=False, comm=c)
        share = np.array_split(np.arange(len(T)), c.size)[c.rank]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = Dispatcher(surrogate, c).evaluate(
                {"T": T[share], "grad_T": np.ones((len(share), 2))}
            )
        mine = np.column_stack([response.value, response.solutions[ANSWERED_KEY]])
        parts = c.allgather(mine) if c.size > 1 else [mine]
        runs[name] = (np.concatenate(parts), surrogate.statistics.total(c))
    world, alone = runs["world"], runs["self"]
    assert np.array_equal(world[0], alone[0])
    assert np.array_equal(world[0][:, -1], (T < 359.0).astype(float))  # the flags per point
    assert world[1].surrogate_points == 12 and world[1].fallback_points == 7
    # 300..355 K: 12 answers; 360 K falls back too (T + h of the tangent leaves the range).
    assert world[1].surrogate_answers == alone[1].surrogate_answers == 12
    assert world[1].fallbacks == alone[1].fallbacks == 7


def test_reduced_basis_surrogate_refuses_a_basis_of_another_cell(conductivity):
    model, rb = conductivity
    other = ConductivityModel(
        cells.square(0.4, mesh_size=0.2), {"matrix": 1.0, "inclusion": LinearLaw(10.0, 0.05, 300.0)}
    )
    surrogate = ReducedBasisSurrogate(other, rb, 1e-6)
    with pytest.raises(ValueError, match="trained on a cell with .* dofs"):
        surrogate.solve(np.array([310.0]))


# -- the reduced-basis surrogate learns from its fallbacks ---------------------------------------
def _coarse_basis(model):
    """A deliberately small basis (relative bound 1e-2 on inclusion 5..40, i.e. 290..360 K)."""
    from hmm_fem.cells import ReducedBasis

    return ReducedBasis.train(
        model.cell_problem(T=300.0),
        {"matrix": 1.0, "inclusion": (5.0, 40.0)},
        tolerance=1e-2,
        training_size=16,
    )


def test_reduced_basis_surrogate_learns_from_fallbacks_and_stays_certified(conductivity):
    """A basis far too small for the tolerance falls back at first; every fallback's
    correctors join the basis, so later calls (also above the training range, 360-380 K)
    are answered, and every answer is within its certified bound of the full cell."""
    import warnings

    model, _ = conductivity
    rb = _coarse_basis(model)
    start = rb.size
    tolerance = 1e-7
    surrogate = ReducedBasisSurrogate(model, rb, tolerance=tolerance, comm=MPI.COMM_SELF)
    dispatcher = Dispatcher(surrogate, MPI.COMM_SELF)
    rng = np.random.default_rng(11)
    fallbacks = []
    for _ in range(5):
        T = rng.uniform(300.0, 380.0, 12)
        before = surrogate.statistics.fallbacks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = dispatcher.evaluate({"T": T, "grad_T": np.tile([1.0, 0.0], (12, 1))})
        fallbacks.append(surrogate.statistics.fallbacks - before)
        K = -response.derivatives["grad_T"]
        answered = response.solutions[ANSWERED_KEY] == 1.0
        bounds = response.solutions[INDICATOR_KEY]
        for i in np.flatnonzero(answered):
            full = model.solve(np.array([T[i]]))["K"]
            error = np.linalg.norm(K[i] - full, 2) / np.linalg.norm(full, 2)
            # The certified relative bound, up to the full solve's round-off (see
            # tests/test_reduced_basis.py: about 1e-14 of the arithmetic mean).
            assert error <= bounds[i] + 1e-13 * 60.0, (T[i], error, bounds[i])
            assert bounds[i] <= tolerance
    # Measured: fallbacks per call [12, 1, 0, 0, 1], basis 2 -> 10 functions; over seeds
    # 0-19 of the states: 11-12 fallbacks in the first call, at most 2 in the last two.
    assert fallbacks[0] >= 11  # the coarse basis certifies (almost) nothing at 1e-7
    assert sum(fallbacks[-2:]) <= 2, fallbacks
    assert rb.size > start and surrogate.statistics.training_size == rb.size
    assert rb.upper[1, 0] > 40.0  # the box widened to the learned states above 360 K


@pytest.mark.mpi
def test_reduced_basis_learning_is_the_same_on_any_number_of_ranks(conductivity):
    """Learning through a dispatcher on COMM_WORLD and on COMM_SELF (each from a copy of the
    same coarse basis): bitwise the same answers, fallbacks and basis."""
    import warnings

    from hmm_fem.cells import ReducedBasis

    model, _ = conductivity
    coarse = _coarse_basis(model).to_arrays()
    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(5)
    batches = [rng.uniform(300.0, 370.0, 9) for _ in range(3)]
    runs = {}
    for name, c in (("world", comm), ("self", MPI.COMM_SELF)):
        rb = ReducedBasis.from_arrays(coarse)
        surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-7, comm=c)
        dispatcher = Dispatcher(surrogate, c)
        values = []
        for T in batches:
            share = np.array_split(np.arange(len(T)), c.size)[c.rank]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                response = dispatcher.evaluate({"T": T[share], "grad_T": np.ones((len(share), 2))})
            mine = np.column_stack([response.value, response.solutions[ANSWERED_KEY]])
            parts = c.allgather(mine) if c.size > 1 else [mine]
            values.append(np.concatenate(parts))
        online = rb.to_arrays()
        runs[name] = (np.concatenate(values), online["G"], surrogate.statistics.total(c))
    world, alone = runs["world"], runs["self"]
    assert np.array_equal(world[0], alone[0])
    assert np.array_equal(world[1], alone[1])
    assert world[2].fallbacks == alone[2].fallbacks > 0
    assert world[2].surrogate_answers == alone[2].surrogate_answers > 0


def test_elasticity_surrogate_answers_c_star_within_its_bound_and_learns():
    """The elasticity cell model (isotropic phases): C* from the basis within the certified
    bound of the full cell; a basis too small falls back once, learns the state, and then
    answers it."""
    import warnings

    from hmm_fem.cells import ReducedBasis
    from hmm_fem.micro import ElasticityModel

    phases = {"matrix": (1.0, 0.3), "inclusion": (50.0, 0.2)}
    model = ElasticityModel(cells.square(0.4, mesh_size=0.15), phases)
    problem = model.cell_problem()
    ranges = {"matrix": {"E": 1.0, "nu": 0.3}, "inclusion": {"E": (1.0, 100.0), "nu": 0.2}}
    rb = ReducedBasis.train(problem, ranges, tolerance=1e-6, training_size=16)
    surrogate = ReducedBasisSurrogate(model, rb, tolerance=1e-5, comm=MPI.COMM_SELF)
    strain = np.array([[1e-3, -2e-4, 5e-4], [0.0, 1e-3, 0.0]])
    response = Dispatcher(surrogate, MPI.COMM_SELF).evaluate({"strain": strain})
    full = problem.effective_tensor()
    C = response.derivatives["strain"][0]
    bound = response.solutions[INDICATOR_KEY][0]
    assert response.solutions[ANSWERED_KEY].tolist() == [1.0, 1.0]
    assert np.linalg.norm(C - full, 2) <= bound * np.linalg.norm(full, 2) + 1e-13 * 50
    assert np.allclose(response.value, strain @ full.T, rtol=1e-5, atol=0)
    heat = ConductivityModel(cells.square(0.4), {"matrix": 1.0, "inclusion": 2.0})
    with pytest.raises(ValueError, match="kind 'elasticity', not 'conductivity'"):
        ReducedBasisSurrogate(heat, rb, 1e-6)
    # A one-snapshot basis at the other end of the range: not certified at 1e-9.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = ReducedBasis.train(problem, ranges, tolerance=1e-9, training_size=8, max_size=3)
    learner = ReducedBasisSurrogate(model, small, tolerance=1e-9, comm=MPI.COMM_SELF)
    first = learner.solve(np.zeros(0))
    assert first[ANSWERED_KEY] == 0.0 and np.array_equal(first["C"], full)
    assert learner.synchronise() > 0
    second = learner.solve(np.zeros(0))
    assert second[ANSWERED_KEY] == 1.0 and second[INDICATOR_KEY] <= 1e-9
    assert np.linalg.norm(second["C"] - full, 2) <= 1e-9 * np.linalg.norm(full, 2) + 1e-13 * 50


class _Cured(ConductivityModel):
    """The conductivity cell model offering remedies, failing unless a retry asks for 'lu'."""

    remedies = ("substeps", "lu")

    def solve(self, state, context=None):
        self.asked = getattr(self, "asked", []) + [context.remedy]
        if context.remedy != "lu":
            raise RuntimeError("cell solve failed")
        return super().solve(state, context)


def test_surrogates_forward_the_wrapped_models_remedies(conductivity):
    """A failure policy asking for remedies through a surrogate gets the wrapped model's, and
    a retried fallback reaches the wrapped model with the remedy."""
    from hmm_fem.coupling import FailurePolicy

    _, rb = conductivity
    laws = {"matrix": 1.0, "inclusion": LinearLaw(10.0, 0.05, T0=300.0)}
    model = _Cured(cells.square(0.4, mesh_size=0.1), laws)
    rbs = ReducedBasisSurrogate(model, rb, 1e-6, learn=False, comm=MPI.COMM_SELF)
    gps = GaussianProcessSurrogate(model, 1e-4, comm=MPI.COMM_SELF)
    for surrogate in (rbs, gps):
        assert surrogate.remedies == ("substeps", "lu")
        assert FailurePolicy().remedy_sequence(surrogate) == ("substeps", "lu")
        assert FailurePolicy(remedies=("lu",)).remedy_sequence(surrogate) == ("lu",)
    with pytest.raises(ValueError, match="asks for remedies"):
        FailurePolicy(remedies=("bisection",)).remedy_sequence(rbs)
    # 380 K lies outside the basis: a fallback, failing until the retry asks for "lu".
    dispatcher = Dispatcher(rbs, MPI.COMM_SELF, failure_policy=FailurePolicy(retries=2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = dispatcher.evaluate({"T": np.array([380.0]), "grad_T": np.ones((1, 2))})
    assert model.asked == [None, "substeps", "lu"]
    assert response.solutions[ANSWERED_KEY][0] == 0.0
    assert dispatcher.statistics.retries == 2
