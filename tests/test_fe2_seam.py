"""The widened seam inside a macro solve: noise-aware Newton, secant tangents, statistics,
errors that are not silent, and solver options that take effect."""

import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem.coupling import MacroSolveError, NonlinearProblem, coupling_of, effective_flux
from hmm_fem.macro import SteadyHeat
from hmm_fem.micro import MicroModel, MicroResponse, MicroSolveError, SecantTangent

SIGMA = 1e-3  # standard deviation of the noisy conductivity


class NoisyConductor(MicroModel):
    """``q = -(1 + sigma xi) grad T``: a unit conductivity measured with noise at every point
    and every Newton iterate (a fresh ``xi`` from the point's stream)."""

    stochastic = True

    def __init__(self, sigma=SIGMA, seed=0):
        self.sigma, self.seed = sigma, seed
        self.inputs = {"T": (), "grad_T": (2,)}
        self.output_shape = (2,)

    def micro_state(self, inputs, parameters):
        return np.empty((np.asarray(inputs["T"]).size, 0))

    def solve(self, state, context):
        return {"k": np.array(1.0 + self.sigma * context.rng().standard_normal())}

    def respond(self, solutions, inputs, parameters):
        grad = np.asarray(inputs["grad_T"]).reshape(-1, 2)
        k = solutions["k"].reshape(-1, 1)
        n = grad.shape[0]
        return MicroResponse(
            value=-k * grad,
            derivatives={"T": np.zeros((n, 2)), "grad_T": -k[:, :, None] * np.eye(2)},
            solutions=dict(solutions),
            standard_error=self.sigma * np.abs(grad),
        )


def left(x):
    return np.isclose(x[0], 0.0)


def right(x):
    return np.isclose(x[0], 1.0)


def gradient_error(T, exact, comm):
    e = ufl.grad(T) - ufl.grad(exact)
    return np.sqrt(comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(e, e) * ufl.dx)), MPI.SUM))


@pytest.mark.mpi
def test_newton_stops_at_the_noise_level_and_does_not_chase_it():
    """T = x is the noise-free answer. With the conductivity re-measured at every iterate,
    the residual cannot fall below its noise; Newton stops there, in a few iterations. The
    energy estimate bounds the error: ||grad e|| <= ||sigma xi grad T|| / k ~ sigma (|grad T|
    = 1 on the unit square); plus the stopping residual, of the same size."""
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 8, 8)
    heat = SteadyHeat(
        msh,
        NoisyConductor(),
        dirichlet=[(left, 0.0), (right, 1.0)],
        petsc_options={"snes_max_it": 8},
    )
    report = heat.solve()
    assert report.converged_at_noise and report.iterations <= 3
    assert 0 < report.noise_level and report.residual_norms[-1] <= 2 * report.noise_level
    exact = fem.Function(heat.V)
    exact.interpolate(lambda x: x[0])
    assert gradient_error(heat.T, exact, msh.comm) < 4 * SIGMA

    # Chasing the noise: a stop far below the noise level is never reached.
    chaser = SteadyHeat(
        msh,
        NoisyConductor(),
        dirichlet=[(left, 0.0), (right, 1.0)],
        petsc_options={"snes_max_it": 6},
    )
    chaser.problem.noise_factor = 1e-6
    with pytest.raises(MacroSolveError, match="did not converge"):
        chaser.solve()


@pytest.mark.mpi
def test_noisy_solution_does_not_depend_on_the_number_of_ranks():
    """The streams are seeded by global quadrature point: serial and 2 ranks give the same T."""
    values = {}
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        if comm is MPI.COMM_SELF and MPI.COMM_WORLD.rank != 0:
            continue
        msh = mesh.create_unit_square(comm, 6, 6)
        heat = SteadyHeat(msh, NoisyConductor(seed=5), dirichlet=[(left, 0.0), (right, 1.0)])
        heat.solve()
        points = np.array([[0.3, 0.4, 0.0], [0.7, 0.2, 0.0], [0.5, 0.9, 0.0]])
        values[comm.size] = evaluate_at(heat.T, points)
    if MPI.COMM_WORLD.rank == 0:
        sizes = sorted(values)
        assert np.allclose(values[sizes[0]], values[sizes[-1]], rtol=0, atol=1e-12)


def evaluate_at(u, points):
    """u at points, on any number of ranks (gathered)."""
    from dolfinx import geometry

    msh = u.function_space.mesh
    tree = geometry.bb_tree(msh, msh.topology.dim)
    candidates = geometry.compute_collisions_points(tree, points)
    colliding = geometry.compute_colliding_cells(msh, candidates, points)
    found = np.full(len(points), np.nan)
    for i in range(len(points)):
        cells_i = colliding.links(i)
        if len(cells_i):
            found[i] = u.eval(points[i], cells_i[:1])[0]
    gathered = msh.comm.allgather(found)
    return np.nanmax(np.array(gathered), axis=0)


class Stiffening(MicroModel):
    """``q = -(1 + T^2) grad T`` without a tangent of its own (wrapped by a secant tangent)."""

    def __init__(self):
        self.inputs = {"T": (), "grad_T": (2,)}
        self.output_shape = (2,)

    def micro_state(self, inputs, parameters):
        return np.asarray(inputs["T"], dtype=float).reshape(-1, 1)

    def solve(self, state, context):
        return {"k": np.array(1.0 + state[0] ** 2)}

    def respond(self, solutions, inputs, parameters):
        grad = np.asarray(inputs["grad_T"]).reshape(-1, 2)
        k = solutions["k"].reshape(-1, 1)
        nan = np.full((grad.shape[0], 2), np.nan)
        return MicroResponse(
            -k * grad, {"T": nan, "grad_T": np.full((grad.shape[0], 2, 2), np.nan)}
        )


@pytest.mark.mpi
def test_secant_tangent_converges_to_the_kirchhoff_solution():
    """-div((1 + T^2) grad T) = 0, T(0) = 0, T(1) = 1: the Kirchhoff transform gives
    T + T^3/3 = 4x/3. Newton with Broyden tangents (from the unit conductivity) converges
    to it, superlinearly, with no derivative from the model."""
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 16, 2)
    initial = np.zeros((2, 3))
    initial[:, 1:] = -np.eye(2)
    model = SecantTangent(Stiffening(), initial_tangent=initial)
    heat = SteadyHeat(
        msh,
        model,
        degree=2,
        dirichlet=[(left, 0.0), (right, 1.0)],
        petsc_options={"snes_max_it": 40},
    )
    heat.T.interpolate(lambda x: x[0])
    report = heat.solve()
    x = np.linspace(0.05, 0.95, 7)
    exact = np.array([np.roots([1 / 3, 0, 1, -4 * xi / 3])[-1].real for xi in x])
    found = evaluate_at(heat.T, np.column_stack([x, np.full_like(x, 0.5), np.zeros_like(x)]))
    assert np.abs(found - exact).max() < 2e-3  # the P2 discretisation error on 16 cells
    rates = NonlinearProblem.convergence_rates(report.residual_norms)
    assert report.iterations < 30 and np.median(rates) > 1.1


def test_statistics_of_a_report_count_that_solve_only():
    msh = mesh.create_unit_square(MPI.COMM_SELF, 4, 4)
    heat = SteadyHeat(msh, Stiffening_exact(), dirichlet=[(left, 0.0), (right, 1.0)])
    first = heat.solve()
    heat.T.x.array[:] = 0.0
    second = heat.solve()
    # One collective evaluation per residual (the Jacobian reuses it): iterations + 1.
    assert first.statistics.calls == len(first.residual_norms)
    assert second.statistics.calls == len(second.residual_norms)


class Stiffening_exact(Stiffening):
    def respond(self, solutions, inputs, parameters):
        grad = np.asarray(inputs["grad_T"]).reshape(-1, 2)
        T = np.asarray(inputs["T"]).reshape(-1)
        k = (1 + T**2)[:, None]
        return MicroResponse(
            -k * grad, {"T": -2 * T[:, None] * grad, "grad_T": -k[:, :, None] * np.eye(2)}
        )


class Failing(Stiffening_exact):
    def solve(self, state, context):
        raise RuntimeError("the micro simulator crashed")


def test_jacobian_matrix_raises_a_pending_micro_error():
    msh = mesh.create_unit_square(MPI.COMM_SELF, 3, 3)
    V = fem.functionspace(msh, ("Lagrange", 1))
    T = fem.Function(V)
    q = effective_flux(Failing(), T)
    problem = NonlinearProblem(-ufl.inner(q, ufl.grad(ufl.TestFunction(V))) * ufl.dx, T)
    with pytest.raises(MicroSolveError, match="the micro simulator crashed"):
        problem.jacobian_matrix()


def test_cell_averages_use_the_weights_of_the_operators_own_rule(monkeypatch):
    """The cell average of T (degree 1, exact at quadrature degree 3) is its cell integral
    over the cell area, on quadrilaterals of unequal shape where the weights are unequal.
    The weights are those of the rule the operator was built with: a different rule met
    later (here basix's rule of another degree) is not used, and uniform weights are never
    substituted (they were, silently, when the two rules differed in size)."""
    import basix

    msh = mesh.create_rectangle(
        MPI.COMM_SELF, [[0, 0], [1, 1]], [2, 1], mesh.CellType.quadrilateral
    )
    x = msh.geometry.x
    x[:, 0] = x[:, 0] ** 2  # unequal cells
    V = fem.functionspace(msh, ("Lagrange", 1))
    T = fem.Function(V)
    T.interpolate(lambda x: 1 + 2 * x[0] + x[1])
    q = effective_flux(Stiffening_exact(), T, quadrature_degree=3)
    coupling = coupling_of(q)
    coupling.evaluate()
    real = basix.make_quadrature
    monkeypatch.setattr(
        basix, "make_quadrature", lambda cell, degree, **kw: real(cell, degree + 2, **kw)
    )
    averages = coupling.cell_averages("T")
    DG0 = fem.functionspace(msh, ("DG", 0))
    w = ufl.TestFunction(DG0)
    integrals = fem.assemble_vector(fem.form(T * w * ufl.dx)).array
    areas = fem.assemble_vector(fem.form(w * ufl.dx)).array
    assert np.allclose(averages, integrals / areas, rtol=1e-12)


def test_macro_solver_options_read_at_factorisation_take_effect():
    """A MUMPS ordering asked for in petsc_options is the one the factorisation used (DOLFINx
    deletes the options before the factorisation reads them; hmm-fem keeps them)."""
    msh = mesh.create_unit_square(MPI.COMM_SELF, 4, 4)
    heat = SteadyHeat(
        msh,
        Stiffening_exact(),
        dirichlet=[(left, 0.0), (right, 1.0)],
        petsc_options={"mat_mumps_icntl_7": 0},  # AMD (the default would be METIS, 5)
    )
    heat.solve()
    factor = heat.problem.solver.getKSP().getPC().getFactorMatrix()
    assert factor.getMumpsInfog(7) == 0
    prefix = heat.problem.solver.getOptionsPrefix()
    from petsc4py import PETSc

    heat.problem.destroy()
    assert not PETSc.Options().hasName(prefix + "mat_mumps_icntl_7")
