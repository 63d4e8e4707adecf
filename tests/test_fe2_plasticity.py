"""Small-strain plasticity through the macro solver: the history seam in load stepping.

Material points (:class:`MaterialPointModel` with the J2 law): exact against the law
integrated along the same strain path, the plane-strain limit stress, a cut step rolled
back exactly, a restart from a saved history, and serial = 2 ranks. Then FE² with J2
elastoplastic cells (:class:`PlasticityModel`): one-phase cells equal the material points,
the macro tangent against central differences of the residual, a cut step, 2 ranks.
"""

import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.macro import StaticElasticity
from hmm_fem.materials import J2Plasticity, integrate_strain_path
from hmm_fem.micro import MaterialPointModel, MicroSolveError, PlasticityModel

E, NU, YIELD = 1.0, 0.3, 0.01
YIELD_STRAIN = YIELD / E


def bottom(x):
    return np.isclose(x[1], 0.0)


def top(x):
    return np.isclose(x[1], 1.0)


def left(x):
    return np.isclose(x[0], 0.0)


def right(x):
    return np.isclose(x[0], 1.0)


def law(hardening=0.0, kinematic=0.0):
    return J2Plasticity(
        E, NU, YIELD, isotropic_hardening=hardening, kinematic_hardening=kinematic, dim=2
    )


def tension(model, displacement, lateral="free", comm=MPI.COMM_WORLD, n=2, **options):
    """A unit square in plane strain pulled at the top; the sides are free or held."""
    msh = mesh.create_unit_square(comm, n, n)
    dirichlet = [(bottom, 0.0, 1), (left, 0.0, 0), (top, displacement, 1)]
    if lateral == "held":
        dirichlet.append((right, 0.0, 0))
    return StaticElasticity(msh, model, dirichlet=dirichlet, **options)


def average_stress(problem):
    """The (uniform) Voigt stress, averaged over the owned cells and the ranks."""
    local = problem.cell_stresses()
    comm = problem.mesh.comm
    return comm.allreduce(local.sum(axis=0), MPI.SUM) / comm.allreduce(len(local), MPI.SUM)


def test_uniaxial_strain_cycle_equals_the_law_along_the_same_path():
    """Lateral sides held: the strain is (0, e, 0) exactly, so every accepted step must give
    the stress of the law integrated along the same strain path (mixed hardening; a load,
    an unload into reverse yielding and a reload)."""
    model = MaterialPointModel(law(hardening=0.2, kinematic=0.1))
    problem = tension(model, 4 * YIELD_STRAIN, lateral="held")
    loads = [0.5, 1.0, 0.25, -0.75, 0.5]
    path = []
    for target in loads:
        report = problem.solve(steps=2, load=target)
        for step in report.accepted:
            path.append(step.load)
        assert report.cuts == 0
    strains = np.array([[0.0, 4 * YIELD_STRAIN * s, 0.0] for s in path])
    expected = integrate_strain_path(law(hardening=0.2, kinematic=0.1), strains).stress[-1]
    assert np.allclose(average_stress(problem), expected, rtol=0, atol=1e-12 * YIELD)
    assert np.abs(problem.cell_stresses() - expected).max() < 1e-12 * YIELD


def test_plane_strain_tension_approaches_the_limit_stress_from_below():
    """Free lateral side, perfect plasticity: sigma_xx = 0, and in steady plastic flow
    eps_p_zz rates vanish, so s_zz = 0, sigma_zz = sigma_yy / 2 and von Mises gives the
    limit stress 2 sigma_y / sqrt(3); the stress never exceeds it."""
    problem = tension(MaterialPointModel(law()), 20 * YIELD_STRAIN)
    limit = 2 * YIELD / np.sqrt(3)
    history = []
    for target in np.linspace(0.1, 1.0, 10):
        problem.solve(steps=2, load=target)
        history.append(average_stress(problem)[1])
    history = np.array(history)
    assert np.all(history <= limit * (1 + 1e-12))
    assert np.all(np.diff(history) >= -1e-14)
    assert history[-1] > limit * (1 - 1e-3)
    assert abs(average_stress(problem)[0]) < 1e-12 * YIELD  # the free side carries nothing


class FailOnce(MaterialPointModel):
    """The J2 points, with one injected failure: at the given step, on the second Newton
    evaluation (so the failed attempt has already written trial histories)."""

    def __init__(self, step, iteration=1):
        super().__init__(law(hardening=0.1))
        self.fail_at, self.iteration, self.failed = step, iteration, False

    def solve(self, state, context):
        if context.step == self.fail_at and context.iteration == self.iteration and not self.failed:
            self.failed = True
            raise MicroSolveError("injected failure")
        return super().solve(state, context)


@pytest.mark.mpi
def test_a_cut_step_rolls_the_history_back_exactly():
    """One step 0.5 -> 1 fails and is halved: 0.5 -> 0.75 -> 1. The answer equals a run that
    took those steps from the start: the failed attempt's trial histories left no trace."""
    displacement = 6 * YIELD_STRAIN
    cut = tension(FailOnce(step=2), displacement, n=3, body_force=(0.002, 0.0))
    report = cut.solve(steps=2)
    assert report.cuts == 1 and [s.load for s in report.accepted] == [0.5, 0.75, 1.0]
    # Every step starts from the committed histories; the failed attempt's trial ones were
    # dropped (checked on the store: a failure without a retry leaves trial = committed).
    stuck = tension(FailOnce(step=2, iteration=2), displacement, n=3, body_force=(0.002, 0.0))
    stuck.solve(load=0.5)
    with pytest.raises(MicroSolveError, match="injected"):
        stuck.solve(max_cuts=0)
    store = stuck.coupling.dispatcher.history
    for name in store.shapes:
        assert np.array_equal(store.values(name, "trial"), store.values(name, "committed"))
    straight = tension(
        MaterialPointModel(law(hardening=0.1)), displacement, n=3, body_force=(0.002, 0.0)
    )
    for target in (0.5, 0.75, 1.0):
        straight.solve(load=target)
    assert np.array_equal(cut.u.x.array, straight.u.x.array)
    alpha = cut.coupling.history_averages("equivalent_plastic_strain", "committed")
    assert np.array_equal(
        alpha, straight.coupling.history_averages("equivalent_plastic_strain", "committed")
    )
    assert alpha.max() > 0  # plastic flow did happen


def test_a_run_restarts_from_its_saved_history(tmp_path):
    displacement = 6 * YIELD_STRAIN
    whole = tension(
        MaterialPointModel(law(hardening=0.1)), displacement, n=3, body_force=(0.002, 0.0)
    )
    whole.solve(steps=2, load=0.5)
    path = whole.coupling.dispatcher.save_history(tmp_path / "history.npz")
    u_saved = whole.u.x.array.copy()
    whole.solve(steps=2)
    restarted = tension(
        MaterialPointModel(law(hardening=0.1)), displacement, n=3, body_force=(0.002, 0.0)
    )
    restarted.coupling.dispatcher.load_history(path, restarted.coupling.point_ids)
    restarted.u.x.array[:] = u_saved
    restarted.converged_load = 0.5
    restarted.solve(steps=2)
    assert np.allclose(restarted.u.x.array, whole.u.x.array, rtol=0, atol=1e-14)


def notched_plate(model, comm, n=6):
    """A plate pulled on a part of its top edge: a non-uniform plastic zone."""
    msh = mesh.create_unit_square(comm, n, n)
    return StaticElasticity(
        msh,
        model,
        dirichlet=[
            (bottom, 0.0),
            (lambda x: np.isclose(x[1], 1.0) & (x[0] <= 0.5 + 1e-12), 3 * YIELD_STRAIN, 1),
        ],
    )


@pytest.mark.mpi
def test_a_plastic_zone_on_two_ranks_equals_serial():
    """Same displacements, same plastic zone and the same number of solves on 1 and 2 ranks."""
    result = {}
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        if comm is MPI.COMM_SELF and MPI.COMM_WORLD.rank != 0:
            continue
        problem = notched_plate(MaterialPointModel(law(hardening=0.05)), comm)
        report = problem.solve(steps=3)
        V = problem.V
        u_norm = np.sqrt(
            comm.allreduce(
                fem.assemble_scalar(fem.form(ufl.inner(problem.u, problem.u) * ufl.dx)), MPI.SUM
            )
        )
        DG0 = fem.functionspace(problem.mesh, ("DG", 0))
        alpha = fem.Function(DG0)
        alpha.x.array[: problem.coupling.num_owned_cells] = problem.coupling.history_averages(
            "equivalent_plastic_strain", "committed"
        )
        plastic_volume = comm.allreduce(
            fem.assemble_scalar(fem.form(ufl.conditional(ufl.gt(alpha, 0), 1.0, 0.0) * ufl.dx)),
            MPI.SUM,
        )
        result[comm.size] = (
            u_norm,
            plastic_volume,
            report.statistics.micro_solves,
            V.dofmap.index_map.size_global,
        )
    if MPI.COMM_WORLD.rank == 0:
        serial, parallel = result[1], result[max(result)]
        assert abs(parallel[0] - serial[0]) < 1e-12 * serial[0]
        assert parallel[1] == pytest.approx(serial[1], abs=1e-12) and 0 < serial[1] < 1
        assert parallel[2] == serial[2]


# -- FE² with J2 elastoplastic cells ----------------------------------------------------------
@pytest.fixture(scope="module")
def coarse_square():
    return cells.square(0.2, mesh_size=0.15)


def two_phase(cell):
    """Elastic fibres (10x stiffer) in a hardening J2 matrix."""
    return PlasticityModel(cell, {"matrix": law(hardening=0.1), "inclusion": (10.0, 0.2)})


def test_one_phase_cells_reproduce_the_material_point_solution(coarse_square):
    """A cell whose phases carry one J2 law answers like the law at a point (no fluctuation),
    so FE² equals the single-scale plasticity solve of the notched plate."""
    one_phase = PlasticityModel(
        coarse_square, {"matrix": law(hardening=0.05), "inclusion": law(hardening=0.05)}
    )
    fe2 = notched_plate(one_phase, MPI.COMM_SELF, n=3)
    fe2.solve(steps=3)
    points = notched_plate(MaterialPointModel(law(hardening=0.05)), MPI.COMM_SELF, n=3)
    points.solve(steps=3)
    assert np.abs(fe2.u.x.array - points.u.x.array).max() < 1e-10 * np.abs(points.u.x.array).max()
    alpha = points.coupling.history_averages("equivalent_plastic_strain", "committed")
    assert alpha.max() > 0


def test_fe2_macro_tangent_matches_central_differences_of_the_residual(coarse_square):
    """Within a load step (history committed at half load, the macro state a trial one
    further on, so points yield strictly or stay elastic), the engine's Jacobian applied to
    a direction equals central differences of the assembled macro residual, which the
    cells' stresses make: the macro tangent is consistent. (At a converged state the yielded
    points sit on the yield surface, where the response has a kink: central differences
    there average the elastic and plastic tangents. The state meets the Dirichlet values and
    the direction vanishes on that boundary, as Newton's iterates and increments do:
    DOLFINx's residual lifts ``g - u`` with the Jacobian's boundary columns, a term whose
    derivative the assembled Jacobian does not hold.)"""
    problem = notched_plate(two_phase(coarse_square), MPI.COMM_SELF, n=3)
    problem.solve(load=0.5)
    nonlinear = problem.problem
    u0 = 1.6 * problem.u.x.array
    problem.u.x.array[:] = u0
    problem.set_load(0.8)  # = 1.6 x 0.5: u0 meets the boundary values
    direction = np.sin(np.arange(u0.size) * 1.7) * np.abs(u0).max()
    for bc in problem.bcs:  # Newton directions vanish on the Dirichlet boundary
        dofs, _ = bc.dof_indices()
        direction[dofs] = 0.0
    J = nonlinear.jacobian_matrix()
    fraction = problem.coupling.last_response.solutions["yielded_fraction"]
    assert fraction.max() > 0  # points are yielding in this increment
    du = J.createVecRight()
    du.array[:] = direction
    J_du = J.createVecLeft()
    J.mult(du, J_du)
    h = 1e-7
    values = []
    for sign in (1.0, -1.0):
        problem.u.x.array[:] = u0 + sign * h * direction
        values.append(nonlinear.residual_vector().array.copy())
    problem.u.x.array[:] = u0
    difference = (values[0] - values[1]) / (2 * h)
    assert np.abs(J_du.array - difference).max() < 1e-6 * np.abs(J_du.array).max()


class FailingCells(PlasticityModel):
    """Two-phase cells with one injected failure at the second evaluation of a step."""

    def __init__(self, cell, step):
        super().__init__(cell, {"matrix": law(hardening=0.1), "inclusion": (10.0, 0.2)})
        self.fail_at, self.failed = step, False

    def solve(self, state, context):
        if context.step == self.fail_at and context.iteration == 2 and not self.failed:
            self.failed = True
            raise MicroSolveError("injected failure")
        return super().solve(state, context)


def test_a_cut_step_of_plastic_cells_equals_the_smaller_steps(coarse_square):
    cut = notched_plate(FailingCells(coarse_square, step=2), MPI.COMM_SELF, n=2)
    report = cut.solve(steps=2)
    assert report.cuts == 1 and [s.load for s in report.accepted] == [0.5, 0.75, 1.0]
    straight = notched_plate(two_phase(coarse_square), MPI.COMM_SELF, n=2)
    for target in (0.5, 0.75, 1.0):
        straight.solve(load=target)
    # The cell warm-starts its micro Newton from its last solve, which the failed attempt
    # changed: equal to the micro Newton's tolerance (1e-10 of the load), not bitwise.
    scale = np.abs(straight.u.x.array).max()
    assert np.abs(cut.u.x.array - straight.u.x.array).max() < 1e-9 * scale


@pytest.mark.mpi
def test_plastic_cells_on_two_ranks_equal_serial(coarse_square):
    result = {}
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        if comm is MPI.COMM_SELF and MPI.COMM_WORLD.rank != 0:
            continue
        problem = notched_plate(two_phase(coarse_square), comm, n=3)
        report = problem.solve(steps=2)
        norm = np.sqrt(
            comm.allreduce(
                fem.assemble_scalar(fem.form(ufl.inner(problem.u, problem.u) * ufl.dx)), MPI.SUM
            )
        )
        result[comm.size] = (norm, report.statistics.micro_solves, report.iterations)
    if MPI.COMM_WORLD.rank == 0:
        serial, parallel = result[1], result[max(result)]
        assert abs(parallel[0] - serial[0]) < 1e-10 * serial[0]
        assert parallel[1:] == serial[1:]
