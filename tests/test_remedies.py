"""Remedies of failed micro solves: wrappers pass them on, the hyperelastic cell's load paths
cure a step too large for Newton and reach the state of a gradual path, the MD box stops at
a timeout (LAMMPS ``timer timeout``) and a smaller time step cures a trajectory that blew up.
"""

import time

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import CellSolveError, HyperelasticCell
from hmm_fem.coupling import Dispatcher, FailurePolicy
from hmm_fem.micro import (
    EnsembleAverage,
    FiniteDifferenceTangent,
    HyperelasticModel,
    MicroModel,
    MicroResponse,
    SecantTangent,
    SolveContext,
)
from hmm_fem.micro.adapter import InputAdapter


# -- wrappers -----------------------------------------------------------------------------------
class Picky(MicroModel):
    """``y = k(a) x`` with ``k = 1 + 2 a``; the state ``a = 1`` fails unless the remedy is "lu"."""

    inputs = {"x": ()}
    parameters = ("a",)
    state_names = ("a",)
    remedies = ("substeps", "lu")
    stochastic = True  # draws nothing, but lets an ensemble wrap it

    def __init__(self):
        self.calls = []

    def micro_state(self, inputs, parameters):
        return np.asarray(parameters["a"], dtype=np.float64).reshape(-1, 1)

    def solve(self, state, context):
        self.calls.append((float(state[0]), context.attempt, context.remedy))
        if state[0] == 1.0 and context.remedy != "lu":
            raise RuntimeError("diverged")
        return {"k": np.array(1.0 + 2.0 * state[0])}

    def respond(self, solutions, inputs, parameters):
        x = np.asarray(inputs["x"], dtype=np.float64)
        k = np.asarray(solutions["k"], dtype=np.float64)
        return MicroResponse(k * x, {"x": k.copy()}, dict(solutions))


class Renamed(InputAdapter):
    """Picky seen with the input ``z`` instead of ``x``."""

    def __init__(self, model):
        super().__init__(model, {"z": ()}, ())

    def adapt(self, inputs):
        return {"x": inputs["z"]}

    def respond(self, solutions, inputs, parameters):
        response = self.model.respond(solutions, self.adapt(inputs), parameters)
        response.derivatives = {"z": response.derivatives["x"]}
        return response


WRAPPERS = {
    "InputAdapter": (Renamed, "z"),
    "FiniteDifferenceTangent": (lambda m: FiniteDifferenceTangent(m, scheme="forward"), "x"),
    "SecantTangent": (lambda m: SecantTangent(m, np.ones((1, 1))), "x"),
    "EnsembleAverage": (
        lambda m: EnsembleAverage(m, target_standard_error=1.0, min_replicas=2, batch=2),
        "x",
    ),
}


@pytest.mark.parametrize("name", WRAPPERS)
def test_wrappers_offer_the_models_remedies_and_pass_the_retry_through(name):
    make, input_name = WRAPPERS[name]
    inner = Picky()
    wrapper = make(inner)
    assert wrapper.remedies == ("substeps", "lu")
    a = np.array([0.0, 0.5, 1.0])
    x = np.array([1.0, 2.0, 3.0])
    dispatcher = Dispatcher(wrapper, MPI.COMM_SELF, failure_policy=FailurePolicy(retries=2))
    response = dispatcher.evaluate({input_name: x}, {"a": a})
    # the exact law: y = (1 + 2a) x, with a = 1 reached by the second remedy
    np.testing.assert_allclose(response.value, (1.0 + 2.0 * a) * x, rtol=1e-12)
    tried = [(attempt, remedy) for state, attempt, remedy in inner.calls if state == 1.0]
    # the wrapped solve saw the plain attempt, then the remedies in the model's order
    assert [t for t in dict.fromkeys(tried)] == [(0, None), (1, "substeps"), (2, "lu")]
    assert (dispatcher.statistics.failures, dispatcher.statistics.retries) == (2, 2)
    # a remedy the model does not offer is refused through the wrapper too
    with pytest.raises(ValueError, match=r"asks for remedies \['cold'\] but"):
        Dispatcher(wrapper, MPI.COMM_SELF, failure_policy=FailurePolicy(1, ("cold",)))


# -- the hyperelastic cell ----------------------------------------------------------------------
#: A stiff inclusion (contrast 1000) and a macro step (150 % stretch, 40 % compression,
#: shear) that the plain Newton (warm and cold start, 25 steps) does not reach.
PHASES = {"matrix": (1.0, 0.3), "inclusion": (1000.0, 0.2)}
H_BIG = np.array([[1.5, 0.8], [0.0, -0.6]])
H_SMALL = np.array([[0.05, 0.02], [0.0, -0.02]])
#: Tolerances of P* and A* against the gradual path: both solves stop at ||R|| <= 1e-10
#: of the load's stress scale (rtol), so they agree to about that times the condition.
RTOL_P, RTOL_A = 1e-7, 1e-6


@pytest.fixture(scope="module")
def square():
    return cells.square(0.3, mesh_size=0.1)


@pytest.fixture(scope="module")
def gradual(square):
    """The reference: the state at H_BIG reached from rest in 32 equal load steps."""
    cell = HyperelasticCell(square, PHASES)
    for t in np.linspace(0.0, 1.0, 33)[1:]:
        P, A = cell.respond(t * H_BIG)
    assert cell.tangent_solver == "primary"  # a stable state (positive definite Jacobian)
    cell.destroy()
    return P, A


def relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_substeps_cure_a_step_where_newton_fails_and_reach_the_gradual_state(square, gradual):
    cell = HyperelasticCell(square, PHASES)
    with pytest.raises(CellSolveError, match="DIVERGED_MAX_IT"):
        cell.respond(H_BIG)  # from rest (cold start) in one step: Newton does not get there
    assert cell.newton.committed is None  # the failure left the cell at rest
    for kwargs in ({"substeps": 4}, {"substeps": 8, "start": "zero"}):
        cell.reset()
        P, A = cell.respond(H_BIG, **kwargs)
        assert cell.path[-1] == 1.0 and len(cell.path) >= kwargs["substeps"]
        assert relative(P, gradual[0]) < RTOL_P, kwargs
        assert relative(A, gradual[1]) < RTOL_A, kwargs
    # "last" starts from the last converged state: from H_SMALL, the path is shorter
    cell.reset()
    P0, _ = cell.respond(H_SMALL)
    P, A = cell.respond(H_BIG, substeps=2)
    assert cell.path == [0.5, 1.0]
    assert relative(P, gradual[0]) < RTOL_P
    assert relative(A, gradual[1]) < RTOL_A
    # and on from there: back to H_SMALL by a path, the same state as before
    P_back, _ = cell.respond(H_SMALL, substeps=2)
    assert relative(P_back, P0) < RTOL_P
    cell.destroy()


def test_a_path_past_an_instability_fails_cleanly_and_the_cell_stays_usable(square):
    cell = HyperelasticCell(square, PHASES)
    P0, _ = cell.respond(H_SMALL)
    committed = cell.newton.committed
    # compression with shear: the micro state buckles at about 72 % of the way
    H = np.array([[-0.5, 0.8], [0.0, -0.5]])
    with pytest.raises(CellSolveError, match=r"load path .* \(4 increments, 6 halvings\)"):
        cell.respond(H, substeps=4, max_bisections=6)
    assert 0.5 < cell.path[-1] < 1.0  # it got part of the way
    np.testing.assert_array_equal(cell.newton.committed, committed)
    np.testing.assert_array_equal(cell.macro_gradient.value, H_SMALL)
    cell.reset()
    P, _ = cell.respond(H_SMALL)  # a fresh solve gives the same state as before
    assert relative(P, P0) < RTOL_P
    for bad, match in (
        ({"substeps": 0}, "substeps"),
        ({"substeps": 2.5}, "substeps"),
        ({"start": "middle"}, "start"),
        ({"max_bisections": -1}, "max_bisections"),
    ):
        with pytest.raises(ValueError, match=match):
            cell.respond(H_BIG, **bad)
    cell.destroy()


class Recording(HyperelasticModel):
    """The hyperelastic model, recording the remedy of every solve."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remedies_seen = []

    def solve(self, state, context=None):
        self.remedies_seen.append(context.remedy)
        return super().solve(state, context)


@pytest.mark.parametrize(
    "remedies, expected",
    [(None, [None, "substeps", None]), (("path_from_zero",), [None, "path_from_zero", None])],
)
def test_failure_policy_uses_the_hyperelastic_remedies_in_order(
    square, gradual, remedies, expected
):
    model = Recording(square, PHASES)
    assert model.remedies == ("substeps", "path_from_zero")
    policy = FailurePolicy(retries=2, remedies=remedies)
    dispatcher = Dispatcher(model, MPI.COMM_SELF, failure_policy=policy)
    # H_BIG fails from rest and is cured; the next state is warm-started from it
    H = np.stack([H_BIG, H_BIG * 1.001])
    response = dispatcher.evaluate({"displacement_gradient": H}, {})
    assert model.remedies_seen == expected  # the first remedy cured it
    assert (dispatcher.statistics.failures, dispatcher.statistics.retries) == (1, 1)
    assert relative(response.value[0], gradual[0]) < RTOL_P
    assert relative(response.derivatives["displacement_gradient"][0], gradual[1]) < RTOL_A
    with pytest.raises(ValueError, match="offers the remedies"):
        model.solve(H_BIG.ravel(), SolveContext(remedy="lu"))
    model.cell.destroy()


@pytest.mark.mpi
def test_hyperelastic_remedies_on_two_ranks_give_the_serial_answer(square, gradual):
    """Every rank cures its own failing state; the answers are the serial ones."""
    comm = MPI.COMM_WORLD
    # two big states: on 2 ranks each rank solves one of them, cold, and fails once
    H = np.stack([H_BIG, H_BIG * 1.001])
    model = HyperelasticModel(square, PHASES)
    dispatcher = Dispatcher(model, comm, failure_policy=FailurePolicy(retries=1))
    response = dispatcher.evaluate({"displacement_gradient": H}, {})
    total = dispatcher.statistics.total(comm)
    assert total.failures == total.retries == comm.size
    assert relative(response.value[0], gradual[0]) < RTOL_P
    serial_model = HyperelasticModel(square, PHASES)
    serial = Dispatcher(serial_model, MPI.COMM_SELF, failure_policy=FailurePolicy(retries=1))
    expected = serial.evaluate({"displacement_gradient": H}, {})
    assert relative(response.value, expected.value) < RTOL_P
    assert relative(
        response.derivatives["displacement_gradient"],
        expected.derivatives["displacement_gradient"],
    ) < RTOL_A
    model.cell.destroy()
    serial_model.cell.destroy()
