"""The cell-problem skeleton and the boundary conditions as objects."""

import numpy as np
import pytest
import ufl
from dolfinx import fem

from hmm_fem import cells, references
from hmm_fem.cells import ConductivityCell, ElasticityCell
from hmm_fem.cells.conditions import Kinematic, Periodic, Traction, as_condition
from hmm_fem.cells.skeleton import LinearCellProblem, PhaseField


@pytest.fixture(scope="module")
def square():
    return cells.square(0.3, mesh_size=0.1)


# -- boundary conditions as objects ----------------------------------------------------------------
def test_condition_objects_and_names_agree(square):
    phases = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
    for name, condition in [("periodic", Periodic()), ("kinematic", Kinematic()),
                            ("traction", Traction())]:  # fmt: skip
        by_name = ElasticityCell(square, phases, bc=name)
        by_object = ElasticityCell(square, phases, bc=condition)
        assert by_object.bc == name and type(by_name.condition) is type(condition)
        assert np.array_equal(by_name.effective_tensor(), by_object.effective_tensor())
        by_name.destroy()
        by_object.destroy()
    with pytest.raises(ValueError, match="unknown boundary condition bc='dirichlet'"):
        as_condition("dirichlet")
    with pytest.raises(ValueError, match="unknown boundary condition"):
        as_condition(3)


class ScalarConductivityCell(LinearCellProblem):
    """A new cell problem is a few declarations on the skeleton: any condition object."""

    def __init__(self, cell, conductivities, bc):
        super().__init__(cell, degree=1)
        d = cell.dim
        self.phases = PhaseField(cell, (), "k", lambda v, what: float(v), "conductivity")
        self.phases.set(conductivities)
        k = self.phases.function
        G = fem.Constant(cell.mesh, np.zeros(d))
        self._build(
            fem.functionspace(cell.mesh, ("Lagrange", 1)),
            bc,
            lambda u, v: k * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx,
            lambda v: -k * ufl.inner(G, ufl.grad(v)) * ufl.dx,
            load=G,
            unit_loads=np.eye(d),
            labels=["e_x", "e_y"][:d],
            solution_names=["chi_x", "chi_y"][:d],
            name="scalar_conductivity",
            what="K*",
        )

    def effective_tensor(self):
        return self._evaluate()


@pytest.mark.mpi
def test_skeleton_cell_under_every_condition():
    """Scalar conductivity on the skeleton: periodic = ConductivityCell; uniform flux
    (Traction, also for a scalar) <= periodic <= uniform gradient (Kinematic) (Huet 1990),
    all within the harmonic and arithmetic means; exact across a laminate."""
    cell = cells.square(0.35, mesh_size=0.08)
    k = {"matrix": 1.0, "inclusion": 10.0}
    K = {}
    for condition in (Traction(), Periodic(), Kinematic()):
        problem = ScalarConductivityCell(cell, k, condition)
        K[condition.name] = problem.effective_tensor()
        problem.destroy()
    reference = ConductivityCell(cell, k)
    assert np.abs(K["periodic"] - reference.effective_tensor()).max() < 1e-12
    reference.destroy()
    for low, high in [("traction", "periodic"), ("periodic", "kinematic")]:
        assert np.linalg.eigvalsh(K[high] - K[low]).min() > 1e-4, (low, high)
    f = cell.volume_fraction
    assert references.harmonic_mean(1.0, 10.0, f) < np.linalg.eigvalsh(K["traction"]).min()
    assert np.linalg.eigvalsh(K["kinematic"]).max() < references.arithmetic_mean(1.0, 10.0, f)
    # a laminate under a gradient across the layers: the periodic flux is uniform, so the
    # uniform-flux estimate is exact (harmonic mean); along the layers it is not
    laminate = cells.laminate(0.3, mesh_size=0.1)
    problem = ScalarConductivityCell(laminate, {"matrix": 1.0, "inclusion": 25.0}, Traction())
    K_laminate = problem.effective_tensor()
    problem.destroy()
    exact = references.laminate_conductivity(1.0, 25.0, 0.3, 2)
    assert abs(K_laminate[0, 0] / exact[0, 0] - 1) < 1e-10
    assert exact[0, 0] < K_laminate[1, 1] < 0.9 * exact[1, 1]


def test_phase_field_validates_every_phase_before_writing(square):
    field = PhaseField(square, (2,), "pair", lambda v, what: np.asarray(v, float), "pair")
    field.set({"matrix": (1.0, 2.0), "inclusion": (3.0, 4.0)})
    before = field.function.x.array.copy()
    with pytest.raises(ValueError, match="no pair given for phase 'inclusion'"):
        field.set({"matrix": (5.0, 6.0)})
    assert np.array_equal(field.function.x.array, before)
    fractions = square.phase_volume_fractions()
    expected = square.volume * (
        fractions["matrix"] * np.array([1.0, 2.0]) + fractions["inclusion"] * np.array([3.0, 4.0])
    )
    assert np.allclose(field.integral(), expected, rtol=1e-12)
