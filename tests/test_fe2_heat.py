"""The FE² engine on macro heat conduction, against pure UFL, exact and fine-scale solutions."""

import dolfinx.fem.petsc
import numpy as np
import pytest
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem import cells, references
from hmm_fem.cells import ConductivityCell, ConductivityModel, UnitCell
from hmm_fem.coupling import NonlinearProblem, coupling_of, effective_flux
from hmm_fem.macro import SteadyHeat, TransientHeat
from hmm_fem.materials.laws import LinearLaw
from hmm_fem.micro import MicroSolveError


def everywhere(x):
    return np.full(x.shape[1], True)


def l2_norm(u, comm):
    return np.sqrt(
        comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(u, u) * ufl.dx)), op=MPI.SUM)
    )


@pytest.fixture(scope="module")
def small_square():
    return cells.square(0.3, mesh_size=0.1)


# -- the engine against pure UFL ---------------------------------------------------------------
def test_engine_residual_and_jacobian_equal_pure_ufl_for_a_linear_cell(small_square):
    model = ConductivityModel(small_square, {"matrix": 1.0, "inclusion": 10.0})
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 5, mesh.CellType.quadrilateral)
    V = fem.functionspace(msh, ("Lagrange", 2))
    T = fem.Function(V)
    T.interpolate(lambda x: np.sin(2 * x[0]) * np.exp(x[1]) + x[0] * x[1] ** 2)
    v = ufl.TestFunction(V)
    source = 3.0
    q = effective_flux(model, T, quadrature_degree=4)
    engine = NonlinearProblem(-ufl.inner(q, ufl.grad(v)) * ufl.dx - source * v * ufl.dx, T)
    b_engine, A_engine = engine.residual_vector(), engine.jacobian_matrix()

    K = fem.Constant(
        msh, ConductivityCell(small_square, {"matrix": 1.0, "inclusion": 10.0}).effective_tensor()
    )
    dx = ufl.dx(metadata={"quadrature_degree": 4})
    F_ref = ufl.inner(K * ufl.grad(T), ufl.grad(v)) * dx - source * v * dx
    b_ref = dolfinx.fem.petsc.assemble_vector(fem.form(F_ref))
    b_ref.ghostUpdate(
        addv=dolfinx.la.petsc.PETSc.InsertMode.ADD, mode=dolfinx.la.petsc.PETSc.ScatterMode.REVERSE
    )
    A_ref = dolfinx.fem.petsc.assemble_matrix(
        fem.form(ufl.derivative(F_ref, T, ufl.TrialFunction(V)))
    )
    A_ref.assemble()
    b_ref.axpy(-1.0, b_engine)
    A_ref.axpy(-1.0, A_engine)
    assert b_ref.norm() < 1e-10 * b_engine.norm()
    assert A_ref.norm() < 1e-10 * A_engine.norm()
    # A linear cell is solved once, however many points and evaluations.
    assert coupling_of(q).dispatcher.statistics.total(MPI.COMM_WORLD).micro_solves == 1


# -- exact: laminate cell, manufactured macro solution ------------------------------------------
@pytest.mark.mpi
def test_laminate_cell_reproduces_the_exact_homogenised_solution():
    f, k_m, k_i = 0.3, 1.0, 10.0
    cell = cells.laminate(f, mesh_size=0.1)
    model = ConductivityModel(cell, {"matrix": k_m, "inclusion": k_i})
    Kx, Ky = np.diag(references.laminate_conductivity(k_m, k_i, f))
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 8, 8)

    def exact(x):  # quadratic, so P2 reproduces it; -div(K* grad T) = 2 Kx + 2 Ky
        return x[0] * (1 - x[0]) + 2 * x[1] * (1 - x[1]) + 0.5

    heat = SteadyHeat(msh, model, source=2 * Kx + 4 * Ky, degree=2, dirichlet=[(everywhere, 0.0)])
    boundary = fem.Function(heat.V)
    boundary.interpolate(exact)
    heat.bcs[0] = fem.dirichletbc(boundary, heat.bcs[0].dof_indices()[0])
    heat.problem = NonlinearProblem(heat.residual, heat.T, bcs=heat.bcs)
    heat.solve()
    expected = fem.Function(heat.V)
    expected.interpolate(exact)
    error = l2_norm(heat.T - expected, msh.comm)
    assert error < 1e-10 * l2_norm(expected, msh.comm)


# -- convergence to the fine-scale solution ------------------------------------------------------
def layered_cell(num_layers: int) -> UnitCell:
    """A periodic cell of the coefficient a(y) = 1/(2 + cos 2 pi y_1): one phase per layer."""
    msh = mesh.create_rectangle(MPI.COMM_SELF, [[0, 0], [1, 1]], [num_layers, 2])
    num = msh.topology.index_map(2).size_local
    mid = mesh.compute_midpoints(msh, 2, np.arange(num, dtype=np.int32))
    tags = np.floor(mid[:, 0] * num_layers).astype(np.int32) + 1
    cell_tags = mesh.meshtags(msh, 2, np.arange(num, dtype=np.int32), tags)
    phases = {f"layer_{k}": k for k in range(1, num_layers + 1)}
    return UnitCell(msh, cell_tags, None, phases, (1.0, 1.0), "layered")


def test_fe2_converges_to_the_fine_scale_solution():
    """a(x/eps) = 1/(2 + cos(2 pi x_1/eps)): A* = diag(1/2, 1/sqrt(3)); ||u_eps - u_0|| = O(eps)."""
    layers = 200
    cell = layered_cell(layers)
    centres = (np.arange(layers) + 0.5) / layers
    # Exact layer averages of a(y) (so the cell holds the exact harmonic/arithmetic means).
    edges = np.arange(layers + 1) / layers
    antiderivative = np.arctan(np.tan(np.pi * edges) / np.sqrt(3)) / (np.pi * np.sqrt(3))
    antiderivative = np.unwrap(antiderivative * 2 * np.pi * np.sqrt(3)) / (2 * np.pi * np.sqrt(3))
    means = np.diff(antiderivative) * layers
    harmonic = 1 / np.mean(2 + np.cos(2 * np.pi * centres))
    model_laws = {f"layer_{k + 1}": m for k, m in enumerate(means)}
    problem = ConductivityCell(cell, model_laws)
    K = problem.effective_tensor()
    assert abs(K[1, 1] - 1 / np.sqrt(3)) < 1e-12  # arithmetic mean of exact layer means
    assert abs(K[0, 0] - 0.5) < 2e-4 and abs(harmonic - 0.5) < 1e-12

    model = ConductivityModel(cell, model_laws)
    errors = []
    epsilons = [1 / 4, 1 / 8, 1 / 16]
    for eps in epsilons:
        msh = mesh.create_rectangle(MPI.COMM_WORLD, [[0, 0], [1, 1]], [int(24 / eps), 24])
        heat = SteadyHeat(
            msh, model, source=1.0, degree=2, dirichlet=[(everywhere, 0.0)], quadrature_degree=2
        )
        heat.solve()
        V, x = heat.V, ufl.SpatialCoordinate(msh)
        u, v = fem.Function(V), ufl.TestFunction(V)
        a = 1 / (2 + ufl.cos(2 * ufl.pi * x[0] / eps))
        fine = dolfinx.fem.petsc.LinearProblem(
            a * ufl.inner(ufl.grad(ufl.TrialFunction(V)), ufl.grad(v)) * ufl.dx,
            1.0 * v * ufl.dx,
            u=u,
            bcs=heat.bcs,
            petsc_options_prefix=f"fine_{len(errors)}_",
            petsc_options={"ksp_type": "preonly", "pc_type": "lu"},
        )
        fine.solve()
        errors.append(l2_norm(u - heat.T, msh.comm) / l2_norm(u, msh.comm))
    rates = np.diff(np.log(errors)) / np.diff(np.log(epsilons))
    assert errors[-1] < errors[0]
    assert np.all(rates > 0.9), (errors, rates)


# -- nonlinear: temperature-dependent phases ---------------------------------------------------
def nonlinear_model(cell):
    return ConductivityModel(
        cell, {"matrix": LinearLaw(1.0, 0.8), "inclusion": LinearLaw(10.0, -0.3)}
    )


def test_nonlinear_newton_is_quadratic_and_matches_tabulated_cells(small_square):
    model = nonlinear_model(small_square)
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 10, 10)
    heat = SteadyHeat(msh, model, source=20.0, dirichlet=[(everywhere, 0.0)])
    report = heat.solve()
    rates = NonlinearProblem.convergence_rates(report.residual_norms)
    norms = report.residual_norms
    # quadratic: r_{k+1} <= C r_k^2 until round-off
    meaningful = [r for r, prev in zip(rates, norms[1:]) if prev > 1e-9 * norms[0]]
    assert len(meaningful) >= 1 and min(meaningful) > 1.7, (norms, rates)
    T_max = msh.comm.allreduce(heat.T.x.array.max(), op=MPI.MAX)
    assert T_max > 0.5  # the nonlinearity matters: k varies by 40 % over the range

    # Reference: K*(T) tabulated by separate cell solves at Chebyshev nodes, fitted by a
    # polynomial, and a pure-UFL Newton solve with that conductivity.
    nodes = 0.5 * T_max * (1 - np.cos(np.pi * (np.arange(9) + 0.5) / 9)) * 1.05
    table = [
        ConductivityCell(
            small_square, {"matrix": 1 + 0.8 * t, "inclusion": 10 * (1 - 0.3 * t)}
        ).effective_tensor()
        for t in nodes
    ]
    coefficients = np.polynomial.polynomial.polyfit(nodes, np.array([K[0, 0] for K in table]), 8)
    V = heat.V
    T, v = fem.Function(V), ufl.TestFunction(V)
    kxx = sum(c * T**i for i, c in enumerate(coefficients))
    kyy_coefficients = np.polynomial.polynomial.polyfit(
        nodes, np.array([K[1, 1] for K in table]), 8
    )
    kyy = sum(c * T**i for i, c in enumerate(kyy_coefficients))
    Kref = ufl.as_matrix([[kxx, 0], [0, kyy]])
    dx = ufl.dx(metadata={"quadrature_degree": 2})
    F = ufl.inner(Kref * ufl.grad(T), ufl.grad(v)) * dx - 20.0 * v * dx
    reference = dolfinx.fem.petsc.NonlinearProblem(
        F,
        T,
        bcs=heat.bcs,
        petsc_options_prefix="tabulated_",
        petsc_options={"snes_rtol": 1e-12, "ksp_type": "preonly", "pc_type": "lu"},
    )
    reference.solve()
    assert reference.solver.getConvergedReason() > 0
    difference = l2_norm(T - heat.T, msh.comm) / l2_norm(T, msh.comm)
    assert difference < 1e-5  # the off-diagonal of K* (mesh asymmetry, ~1e-5) is not in the fit


def test_transient_heat_approaches_the_steady_state(small_square):
    model = nonlinear_model(small_square)
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6)
    steady = SteadyHeat(msh, model, source=5.0, dirichlet=[(everywhere, 0.0)])
    steady.solve()
    transient = TransientHeat(
        msh, model, heat_capacity=1.0, dt=0.05, source=5.0, dirichlet=[(everywhere, 0.0)]
    )
    change = []
    for _ in range(40):
        before = transient.T.x.array.copy()
        transient.step()
        change.append(np.abs(transient.T.x.array - before).max())
    assert change[-1] < 1e-3 * change[0]
    assert l2_norm(transient.T - steady.T, msh.comm) < 1e-3 * l2_norm(steady.T, msh.comm)


# -- parallel ----------------------------------------------------------------------------------
@pytest.mark.mpi
def test_parallel_equals_serial_with_the_same_number_of_micro_solves(small_square):
    results = {}
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
        model = nonlinear_model(small_square)
        msh = mesh.create_unit_square(comm, 8, 8)
        # A state resolution far below the solution's accuracy but far above round-off
        # (which differs with the partition) makes "the same state" partition-independent;
        # states are solved at the grid value, so both runs use identical cell answers.
        heat = SteadyHeat(
            msh, model, source=20.0, dirichlet=[(everywhere, 0.0)], state_tolerance=1e-8
        )
        report = heat.solve()
        x = ufl.SpatialCoordinate(msh)
        functional = comm.allreduce(
            fem.assemble_scalar(fem.form(heat.T * (1 + x[0]) * ufl.dx)), op=MPI.SUM
        )
        results[comm.size] = (functional, report.statistics.micro_solves, report.iterations)
    serial, parallel = results[1], results[MPI.COMM_WORLD.size]
    assert abs(parallel[0] - serial[0]) < 1e-10 * abs(serial[0])
    assert parallel[1] == serial[1] and parallel[2] == serial[2]


# -- failure -----------------------------------------------------------------------------------
@pytest.mark.mpi
def test_nan_input_names_the_quadrature_point(small_square):
    model = ConductivityModel(
        lambda f: cells.square(f, mesh_size=0.1), {"matrix": 1.0, "inclusion": 5.0}
    )
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 4, 4)
    fraction = fem.Function(fem.functionspace(msh, ("DG", 0)))
    fraction.x.array[:] = 0.3
    if msh.comm.rank == 0:
        fraction.x.array[0] = np.nan
    heat = SteadyHeat(
        msh,
        model,
        source=1.0,
        dirichlet=[(everywhere, 0.0)],
        parameters={"volume_fraction": fraction},
    )
    with pytest.raises(
        MicroSolveError,
        match=r"non-finite macro input 'volume_fraction'.*quadrature point \d+ of cell \d+ \(x = ",
    ):
        heat.solve()


def test_failed_micro_solve_names_the_point_and_state(small_square):
    # k_matrix = 1 - T turns negative where T > 1: the cell refuses the state.
    model = ConductivityModel(small_square, {"matrix": LinearLaw(1.0, -1.0), "inclusion": 5.0})
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 4, 4)
    heat = SteadyHeat(msh, model, source=100.0, dirichlet=[(everywhere, 0.0)])
    with pytest.raises(
        MicroSolveError, match=r"micro solve failed for state T=.*quadrature point.*positive"
    ):
        heat.solve()


# -- geometry as a macro field -----------------------------------------------------------------
def test_volume_fraction_field_builds_a_small_bank_of_cells(tmp_path):
    model = ConductivityModel(
        lambda f: cells.square(f, mesh_size=0.1),
        {"matrix": 1.0, "inclusion": 10.0},
        parameter_resolution=0.05,
    )
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 6, 6)
    x = ufl.SpatialCoordinate(msh)
    heat = SteadyHeat(
        msh,
        model,
        source=1.0,
        dirichlet=[(everywhere, 0.0)],
        parameters={"volume_fraction": 0.1 + 0.4 * x[0]},
    )
    heat.solve()
    assert model.num_cells_built <= 9  # f in [0.1, 0.5] at resolution 0.05
    K = heat.effective_conductivity()
    # K* grows with the fraction of the better conductor, following Perrins' curve.
    f_cells = heat.coupling.cell_averages("volume_fraction")
    expected = np.array([references.perrins_square_array(1.0, 10.0, f) for f in f_cells])
    assert np.all(np.abs(K[:, 0, 0] / expected - 1) < 0.03)
    # Output for ParaView: T, and the cell fields of flux, K* and the volume fraction.
    files = heat.write(tmp_path / f"heat{msh.comm.rank}")
    assert files["temperature"].is_dir() and files["micro"].is_dir()


def test_external_function_path_equals_the_engine_path(small_square):
    """dolfinx-external-operator's own evaluation (all cells, external_function) fills the
    operator and its tangents with the same values as the engine's update."""
    from dolfinx_external_operator import (
        evaluate_external_operators,
        evaluate_operands,
        replace_external_operators,
    )

    model = nonlinear_model(small_square)
    msh = mesh.create_unit_square(MPI.COMM_SELF, 3, 3)
    V = fem.functionspace(msh, ("Lagrange", 1))
    T = fem.Function(V)
    T.interpolate(lambda x: 0.3 + x[0] * x[1])
    v = ufl.TestFunction(V)
    q = effective_flux(model, T)
    F = -ufl.inner(q, ufl.grad(v)) * ufl.dx
    _, F_ops = replace_external_operators(F)
    _, J_ops = replace_external_operators(ufl.derivative(F, T, ufl.TrialFunction(V)))
    operands = evaluate_operands(F_ops)
    evaluate_external_operators(F_ops, operands)
    evaluate_external_operators(J_ops, operands)
    library = [op.ref_coefficient.x.array.copy() for op in F_ops + J_ops]
    coupling_of(q).update(F_ops + J_ops)
    engine = [op.ref_coefficient.x.array for op in F_ops + J_ops]
    assert len(J_ops) == 2  # dq/dT and dq/dgrad T
    for a, b in zip(library, engine):
        assert np.allclose(a, b, rtol=1e-13, atol=1e-14)


# -- Arrhenius phases end to end ---------------------------------------------------------------
@pytest.mark.mpi
def test_arrhenius_phases_match_the_exact_laminate_law_in_pure_ufl():
    """Phases with Arrhenius conductivities (defined at absolute temperatures only) in a
    laminate cell: K*_xx(T) is the harmonic mean of the phase laws, exactly. A macro solve
    from 300 K to 400 K across the layers equals DOLFINx's Newton on the same law written
    in UFL. (The cells used to be built at T = 0 K, where an Arrhenius law is 0.)"""
    from dolfinx.fem.petsc import NonlinearProblem as DolfinxNonlinearProblem

    from hmm_fem.materials.laws import ArrheniusLaw

    f = 0.4
    laws = {
        "matrix": ArrheniusLaw(1.0, activation_temperature=800.0, T_ref=300.0),
        "inclusion": ArrheniusLaw(5.0, activation_temperature=2000.0, T_ref=300.0),
    }
    model = ConductivityModel(cells.laminate(f, mesh_size=0.1), laws)
    msh = mesh.create_unit_square(MPI.COMM_WORLD, 10, 2)
    heat = SteadyHeat(
        msh,
        model,
        dirichlet=[
            (lambda x: np.isclose(x[0], 0.0), 300.0),
            (lambda x: np.isclose(x[0], 1.0), 400.0),
        ],
        initial_temperature=350.0,
        state_tolerance=1e-9,
    )
    report = heat.solve()
    assert report.iterations <= 6

    V = heat.V
    T = fem.Function(V)
    T.x.array[:] = 350.0
    v = ufl.TestFunction(V)

    def arrhenius(k_ref, activation):
        return k_ref * ufl.exp(-activation * (1.0 / T - 1.0 / 300.0))

    k_m, k_i = arrhenius(1.0, 800.0), arrhenius(5.0, 2000.0)
    K = ufl.as_matrix([[1.0 / ((1 - f) / k_m + f / k_i), 0.0], [0.0, (1 - f) * k_m + f * k_i]])
    dx = ufl.dx(metadata={"quadrature_degree": 2})
    F = ufl.inner(K * ufl.grad(T), ufl.grad(v)) * dx
    fdim = msh.topology.dim - 1
    bcs = []
    for where, value in (
        (lambda x: np.isclose(x[0], 0.0), 300.0),
        (lambda x: np.isclose(x[0], 1.0), 400.0),
    ):
        dofs = fem.locate_dofs_topological(V, fdim, mesh.locate_entities_boundary(msh, fdim, where))
        bcs.append(fem.dirichletbc(np.float64(value), dofs, V))
    reference = DolfinxNonlinearProblem(
        F,
        T,
        bcs=bcs,
        petsc_options_prefix="arrhenius_reference_",
        petsc_options={
            "snes_rtol": 1e-12,
            "snes_atol": 1e-12,
            "ksp_type": "preonly",
            "pc_type": "lu",
        },
    )
    reference.solve()
    assert reference.solver.getConvergedReason() > 0
    difference = l2_norm(heat.T - T, msh.comm)
    assert difference < 1e-10 * l2_norm(T, msh.comm)  # measured 6e-13
