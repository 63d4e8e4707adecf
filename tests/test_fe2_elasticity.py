"""The FE² engine on macro elasticity: against pure UFL, exact laminates, load stepping."""

import dolfinx.fem.petsc
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI
from petsc4py import PETSc

from hmm_fem import cells, references, voigt
from hmm_fem.cells.elasticity import ElasticityCell
from hmm_fem.coupling import MacroSolveError
from hmm_fem.macro.elasticity import StaticElasticity
from hmm_fem.micro import MicroModel, MicroResponse, MicroSolveError
from hmm_fem.micro.cell_models import ElasticityModel

STIFF = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
LU = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


def everywhere(x):
    return np.full(x.shape[1], True)


def left(x):
    return np.isclose(x[0], 0.0)


def right(x):
    return np.isclose(x[0], 2.0)


def eps_voigt(u):
    """Voigt strain written out by hand (engineering shear), independent of the package."""
    g = ufl.grad(u)
    return ufl.as_vector([g[0, 0], g[1, 1], g[0, 1] + g[1, 0]])


def l2_norm(u, comm):
    return np.sqrt(
        comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(u, u) * ufl.dx)), op=MPI.SUM)
    )


def functionals(u, comm):
    x = ufl.SpatialCoordinate(u.function_space.mesh)
    forms = [ufl.inner(u, u) * ufl.dx, ufl.inner(u, ufl.as_vector([1 + x[0], 2 - x[1]])) * ufl.dx]
    return np.array([comm.allreduce(fem.assemble_scalar(fem.form(f)), op=MPI.SUM) for f in forms])


@pytest.fixture(scope="module")
def small_square():
    return cells.square(0.3, mesh_size=0.1)


@pytest.fixture(scope="module")
def square_stiffness(small_square):
    problem = ElasticityCell(small_square, STIFF)
    C = problem.effective_tensor()
    problem.destroy()
    return C


# -- the micro model -----------------------------------------------------------------------------
@pytest.mark.parametrize("bc", ["periodic", "kinematic", "traction"])
def test_model_answers_stress_and_tangent(small_square, bc):
    problem = ElasticityCell(small_square, STIFF, bc=bc)
    C = problem.effective_tensor()
    problem.destroy()
    model = ElasticityModel(small_square, STIFF, bc=bc)
    strain = np.array([[1e-3, -2e-3, 5e-4], [0.0, 0.0, 1.0]])
    response = model.evaluate({"strain": strain})
    assert np.allclose(response.value, strain @ C.T, rtol=1e-12, atol=0)
    assert np.allclose(response.derivatives["strain"], C, rtol=1e-12, atol=0)
    assert model.micro_state({"strain": strain}, {}).shape == (2, 0)
    with pytest.raises(ValueError, match="Poisson"):
        ElasticityModel(small_square, {"matrix": (1.0, 0.5), "inclusion": (10.0, 0.2)})


# -- the engine against pure UFL ---------------------------------------------------------------
def test_engine_residual_and_jacobian_equal_pure_ufl(small_square, square_stiffness):
    model = ElasticityModel(small_square, STIFF)
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 5, mesh.CellType.quadrilateral)
    x = ufl.SpatialCoordinate(msh)
    body = ufl.as_vector([1 + x[0] * x[1], -2 + x[0]])
    top = (0.3, -0.7)
    problem = StaticElasticity(
        msh,
        model,
        body_force=body,
        traction=[(lambda x: np.isclose(x[1], 1.0), top)],
        degree=2,
        quadrature_degree=4,
    )
    problem.u.interpolate(
        lambda x: np.stack([np.sin(2 * x[0]) * np.exp(x[1]), x[0] * x[1] ** 2 - 0.3 * x[0] ** 2])
    )
    b_engine = problem.problem.residual_vector()
    A_engine = problem.problem.jacobian_matrix()

    V, u = problem.V, problem.u
    v = ufl.TestFunction(V)
    C = fem.Constant(msh, square_stiffness)
    dx = ufl.dx(metadata={"quadrature_degree": 4})
    facets = mesh.locate_entities_boundary(msh, 1, lambda x: np.isclose(x[1], 1.0))
    tags = mesh.meshtags(msh, 1, facets, np.full(len(facets), 7, dtype=np.int32))
    ds = ufl.Measure("ds", domain=msh, subdomain_data=tags, metadata={"quadrature_degree": 4})
    F_ref = (
        ufl.inner(C * eps_voigt(u), eps_voigt(v)) * dx
        - ufl.inner(body, v) * dx
        - ufl.inner(ufl.as_vector(top), v) * ds(7)
    )
    b_ref = dolfinx.fem.petsc.assemble_vector(fem.form(F_ref))
    b_ref.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    A_ref = dolfinx.fem.petsc.assemble_matrix(
        fem.form(ufl.derivative(F_ref, u, ufl.TrialFunction(V)))
    )
    A_ref.assemble()
    b_ref.axpy(-1.0, b_engine)
    A_ref.axpy(-1.0, A_engine)
    assert b_ref.norm() < 1e-10 * b_engine.norm()
    assert A_ref.norm() < 1e-10 * A_engine.norm()
    # A linear cell is solved once, however many points and evaluations.
    assert problem.statistics.total(MPI.COMM_WORLD).micro_solves == 1


# -- full solves against pure DOLFINx, serial and parallel -------------------------------------
PLATE_LOADS = {
    "body_force": (0.2, -0.5),
    "dirichlet": [(left, 0.0), (right, (0.1, 0.05))],
    "degree": 2,
}


def plate(comm):
    return mesh.create_rectangle(comm, [[0.0, 0.0], [2.0, 1.0]], [12, 6])


def reference_solution(problem, C):
    """Pure DOLFINx linear elasticity with the constant C*, same space, quadrature and bcs."""
    V, msh = problem.V, problem.mesh
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    dx = ufl.dx(metadata={"quadrature_degree": 2})
    f = fem.Constant(msh, np.array(PLATE_LOADS["body_force"]))
    reference = fem.Function(V)
    linear = dolfinx.fem.petsc.LinearProblem(
        ufl.inner(fem.Constant(msh, C) * eps_voigt(u), eps_voigt(v)) * dx,
        ufl.inner(f, v) * dx,
        u=reference,
        bcs=problem.bcs,
        petsc_options_prefix="elastic_reference_",
        petsc_options=LU,
    )
    linear.solve()
    return reference


@pytest.mark.mpi
def test_linear_cell_solve_equals_pure_dolfinx(small_square, square_stiffness):
    model = ElasticityModel(small_square, STIFF)
    msh = plate(MPI.COMM_WORLD)
    problem = StaticElasticity(msh, model, **PLATE_LOADS)
    report = problem.solve()
    assert report.converged_reason > 0 and report.iterations == 1
    assert report.statistics.micro_solves == 1
    reference = reference_solution(problem, square_stiffness)
    error = l2_norm(problem.u - reference, msh.comm)
    assert error < 1e-10 * l2_norm(reference, msh.comm)
    # The micro stress at the points is C* eps(u).
    stress = problem.coupling.last_response.value
    strain = problem.coupling.last_inputs["strain"]
    assert np.allclose(stress, strain @ square_stiffness.T, rtol=1e-12, atol=1e-14)


@pytest.mark.mpi
def test_parallel_equals_serial_with_the_same_number_of_micro_solves(small_square):
    results = {}
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
        model = ElasticityModel(small_square, STIFF)
        problem = StaticElasticity(plate(comm), model, **PLATE_LOADS)
        report = problem.solve(steps=2)
        results[comm.size] = (
            functionals(problem.u, comm),
            report.statistics.micro_solves,
            report.iterations,
        )
    serial, parallel = results[1], results[MPI.COMM_WORLD.size]
    assert np.all(np.abs(parallel[0] - serial[0]) < 1e-10 * np.abs(serial[0]))
    assert parallel[1] == serial[1] == 1
    assert parallel[2] == serial[2]


# -- exact: laminate cell, manufactured macro solution ------------------------------------------
def laminate_plane_strain(E, nu, f):
    """Plane-strain C* (xx, yy, xy) of layers normal to x, from Backus (layers normal to x3).

    In the Backus frame our x is the layer normal x3 and our y is x1: C_xx,xx = C33,
    C_xx,yy = C13, C_yy,yy = C11, C_xy,xy = C44 (the shear across the layers).
    """
    B = references.backus_laminate(E, nu, [1 - f, f])
    return np.array([[B[2, 2], B[0, 2], 0.0], [B[0, 2], B[0, 0], 0.0], [0.0, 0.0, B[3, 3]]])


@pytest.mark.mpi
def test_laminate_cell_reproduces_the_exact_homogenised_solution():
    f = 0.3
    C_exact = laminate_plane_strain([1.0, 10.0], [0.3, 0.2], f)
    model = ElasticityModel(cells.laminate(f, mesh_size=0.1), STIFF)
    assert np.abs(model.effective_tensor() - C_exact).max() < 1e-10 * C_exact.max()
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6)
    x = ufl.SpatialCoordinate(msh)

    def exact_ufl(x):  # quadratic: P2 reproduces it
        return ufl.as_vector(
            [
                x[0] * (1 - x[0]) + 0.5 * x[1] ** 2 + 0.1,
                2 * x[1] * (1 - x[1]) + x[0] * x[1] + 0.3 * x[0] ** 2,
            ]
        )

    def exact(x):
        return np.stack(
            [
                x[0] * (1 - x[0]) + 0.5 * x[1] ** 2 + 0.1,
                2 * x[1] * (1 - x[1]) + x[0] * x[1] + 0.3 * x[0] ** 2,
            ]
        )

    s = fem.Constant(msh, C_exact) * eps_voigt(exact_ufl(x))  # Voigt (xx, yy, xy)
    stress = ufl.as_matrix([[s[0], s[2]], [s[2], s[1]]])
    problem = StaticElasticity(
        msh, model, body_force=-ufl.div(stress), dirichlet=[(everywhere, exact)], degree=2
    )
    report = problem.solve()
    assert report.statistics.micro_solves == 1
    expected = fem.Function(problem.V)
    expected.interpolate(exact)
    error = l2_norm(problem.u - expected, msh.comm)
    assert error < 1e-10 * l2_norm(expected, msh.comm)


# -- geometry as a macro field -----------------------------------------------------------------
def test_volume_fraction_field_builds_a_small_bank_of_cells(tmp_path):
    model = ElasticityModel(
        lambda f: cells.square(f, mesh_size=0.1), STIFF, parameter_resolution=0.05
    )
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6)
    x = ufl.SpatialCoordinate(msh)
    problem = StaticElasticity(
        msh,
        model,
        body_force=(0.0, -1.0),
        dirichlet=[(left, 0.0), (lambda x: np.isclose(x[0], 1.0), 0.0, 1)],
        parameters={"volume_fraction": 0.1 + 0.4 * x[0]},
    )
    report = problem.solve()
    assert report.converged_reason > 0 and report.iterations == 1
    # Every point used the cell of its rounded fraction; stiffness grows with the fraction.
    fraction = problem.coupling.last_inputs["volume_fraction"]
    rounded = np.round(fraction / 0.05) * 0.05
    distinct = np.unique(np.concatenate(msh.comm.allgather(rounded)))
    assert 5 <= len(distinct) <= 9  # f in [0.1, 0.5] at resolution 0.05
    assert report.statistics.micro_solves == len(distinct)
    assert msh.comm.allreduce(model.num_cells_built) == len(distinct)
    C = problem.coupling.last_response.solutions["C"]
    _, first = np.unique(rounded, return_index=True)
    assert np.all(np.diff(C[first, 0, 0]) > 0) and np.all(np.diff(C[first, 2, 2]) > 0)
    for k in np.flatnonzero(np.isclose(rounded, rounded.max())):
        assert np.array_equal(C[k], C[first[-1]])
    fresh = ElasticityCell(cells.square(float(rounded[first[-1]]), mesh_size=0.1), STIFF)
    assert np.abs(fresh.effective_tensor() - C[first[-1]]).max() < 1e-12
    fresh.destroy()
    # Output for ParaView: u, and the cell fields of stress, C* and the volume fraction.
    files = problem.write(msh.comm.bcast(tmp_path, root=0) / "elastic")  # one path on all ranks
    assert files["displacement"].is_dir() and files["micro"].is_dir()
    assert problem.effective_stiffness().shape == (msh.topology.index_map(2).size_local, 3, 3)


# -- load stepping -----------------------------------------------------------------------------
def test_load_steps_reach_the_one_step_solution(small_square):
    model = ElasticityModel(small_square, STIFF)
    msh = plate(MPI.COMM_WORLD)
    one = StaticElasticity(msh, model, **PLATE_LOADS)
    one.solve()
    four = StaticElasticity(msh, model, **PLATE_LOADS)
    report = four.solve(steps=4)
    assert [s.load for s in report.steps] == [0.25, 0.5, 0.75, 1.0]
    assert report.cuts == 0 and all(s.converged for s in report.steps)
    assert four.converged_load == 1.0 and float(four.load_factor.value) == 1.0
    error = l2_norm(four.u - one.u, msh.comm)
    assert error < 1e-10 * l2_norm(one.u, msh.comm)
    # Forces and Dirichlet values are ramped together: half the load, half the solution.
    half = StaticElasticity(msh, model, **PLATE_LOADS)
    report = half.solve(steps=2, load=0.5)
    assert [s.load for s in report.steps] == [0.25, 0.5] and half.converged_load == 0.5
    error = l2_norm(half.u - 0.5 * one.u, msh.comm)
    assert error < 1e-10 * l2_norm(one.u, msh.comm)


class HardeningModel(MicroModel):
    """``sigma = (1 + beta e.C e) C e`` (a stiffening hyperelastic law, exact tangent).

    The micro state is the strain, and a solve refuses strains with ``|e| > limit``: under
    force control Newton's first iterate from a soft state overshoots, the more so the
    larger the load increment.
    """

    state_names = ("e_xx", "e_yy", "g_xy")

    def __init__(self, beta, limit=np.inf):
        self.C = voigt.isotropic_stiffness(1.0, 0.3, 2)
        self.beta, self.limit = beta, limit
        self.inputs = {"strain": (3,)}
        self.output_shape = (3,)
        self.largest = []

    def micro_state(self, inputs, parameters):
        strain = np.asarray(inputs["strain"]).reshape(-1, 3)
        self.largest.append(np.linalg.norm(strain, axis=1).max())
        return strain

    def solve(self, state, context=None):
        if np.linalg.norm(state) > self.limit:
            raise MicroSolveError(f"strain {np.linalg.norm(state):.3g} beyond {self.limit}")
        Ce = self.C @ state
        q = state @ Ce
        tangent = (1 + self.beta * q) * self.C + 2 * self.beta * np.outer(Ce, Ce)
        return {"sigma": (1 + self.beta * q) * Ce, "tangent": tangent}

    def respond(self, solutions, inputs, parameters):
        return MicroResponse(solutions["sigma"], {"strain": solutions["tangent"]})


TIGHT = {"snes_rtol": 1e-12, "snes_atol": 1e-13}


def cantilever(model, msh=None, **options):
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6) if msh is None else msh
    return StaticElasticity(msh, model, body_force=(0.0, -0.5), dirichlet=[(left, 0.0)], **options)


@pytest.mark.parametrize("failure", ["micro", "newton"])
def test_failed_steps_are_halved_and_retried(failure):
    reference = cantilever(HardeningModel(10.0), petsc_options=TIGHT)
    reference.solve()
    largest = max(reference.coupling.model.largest)  # the full step's first iterate
    final = np.linalg.norm(reference.coupling.last_inputs["strain"], axis=1).max()
    assert largest > 2 * final  # the one-step Newton overshoots far beyond the solution

    if failure == "micro":  # |e| = 1.2: the full step crosses it (1.9), halves do not (0.96)
        model, options = HardeningModel(10.0, limit=1.2), TIGHT
        kind = "MicroSolveError"
    else:  # one step takes 8 Newton iterations at this load, a half 7, a quarter 6
        model, options = HardeningModel(10.0), {**TIGHT, "snes_max_it": 6}
        kind = "MacroSolveError"
    problem = cantilever(model, reference.mesh, petsc_options=options)
    report = problem.solve()
    assert report.cuts >= 1
    assert report.steps[0].converged is False and report.steps[0].error.startswith(kind)
    assert report.steps[1].halvings >= 1 and report.steps[1].load < 1.0
    assert report.accepted[-1].load == 1.0 and problem.converged_load == 1.0
    assert np.isclose(sum(s.increment for s in report.accepted), 1.0, rtol=0, atol=1e-14)
    assert len(report.accepted) >= 2 and report.converged_reason > 0
    error = l2_norm(problem.u - reference.u, problem.mesh.comm)
    assert error < 1e-10 * l2_norm(reference.u, problem.mesh.comm)


def test_without_cuts_the_error_is_raised_from_the_last_converged_state():
    problem = cantilever(HardeningModel(10.0, limit=1.2), petsc_options=TIGHT)
    with pytest.raises(MicroSolveError, match="beyond 1.2") as info:
        problem.solve(max_cuts=0)
    assert any("max_cuts=0" in note for note in info.value.__notes__)
    assert problem.converged_load == 0.0 and float(problem.load_factor.value) == 0.0
    assert np.all(problem.u.x.array == 0.0)
    assert len(problem.last_steps) == 1 and not problem.last_steps[0].converged
    # Half the load in one step is fine; then the rest in one step from there.
    first = problem.solve(load=0.5, max_cuts=0)
    second = problem.solve(max_cuts=0)
    assert first.cuts == 0 and second.cuts == 0 and problem.converged_load == 1.0
    # A Newton failure: u is reset from the last iterate to the last converged state.
    problem = cantilever(HardeningModel(10.0), petsc_options={"snes_max_it": 2})
    with pytest.raises(MacroSolveError, match="did not converge"):
        problem.solve(max_cuts=1)
    assert [s.load for s in problem.last_steps] == [1.0, 0.5]
    assert problem.converged_load == 0.0 and np.all(problem.u.x.array == 0.0)


def test_elasticity_model_takes_a_condition_object(small_square):
    """bc as an object (hmm_fem.cells.conditions) gives the same C* as its name."""
    from hmm_fem.cells.conditions import Kinematic

    by_name = ElasticityModel(small_square, STIFF, bc="kinematic").effective_tensor()
    by_object = ElasticityModel(small_square, STIFF, bc=Kinematic()).effective_tensor()
    assert np.array_equal(by_name, by_object)
    with pytest.raises(ValueError, match="unknown boundary condition bc='dirichlet'"):
        ElasticityModel(small_square, STIFF, bc="dirichlet")
