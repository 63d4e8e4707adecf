"""The cell Newton on PETSc SNES: the assembly hook, domain errors, options and reasons."""

import basix.ufl
import numpy as np
import pytest
import ufl
from dolfinx import fem
from petsc4py import PETSc

from hmm_fem import cells
from hmm_fem.cells import CellSolveError, HyperelasticCell
from hmm_fem.cells.conditions import Periodic, Traction
from hmm_fem.cells.newton import CellNewton, NewtonFailure
from hmm_fem.cells.skeleton import PhaseField

PHASES = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
#: Cold, the full Newton step from w = 0 folds the cell (J <= 0): the line search backs off.
H_FOLDING = np.diag([0.8, -0.5])


def options_under(prefix):
    return sorted(key for key in PETSc.Options().getAll() if key.startswith(prefix))


@pytest.fixture(scope="module")
def square():
    return cells.square(0.3, mesh_size=0.07)


@pytest.mark.mpi
def test_quadrature_hook_equals_the_ufl_law():
    """The pattern of a return-mapping cell: the flux and its tangent are computed in NumPy
    at the quadrature points by the hook, before every assembly, and enter the forms as
    quadrature functions. For the law q = k0 (1 + |g|^2) g, g = G + grad w, the Newton
    iterates, the solution and the iteration count equal those of the same law in UFL."""
    cell = cells.square(0.3, mesh_size=0.1)
    msh, d, degree = cell.mesh, cell.dim, 2
    k0 = PhaseField(cell, (), "k0", lambda value, what: float(value), "k0")
    k0.set({"matrix": 1.0, "inclusion": 4.0})
    V = fem.functionspace(msh, ("Lagrange", 1))
    condition = Periodic()
    G = fem.Constant(msh, np.array([0.8, -0.5]))
    dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": degree})
    zero = fem.Constant(msh, 0.0)

    def build(make_flux, prepare):
        constraint = condition.constrain(V, lengths=cell.lengths)
        w = fem.Function(constraint.space)
        flux, tangent = make_flux(w)
        system = condition.system(
            V,
            lambda du, v: ufl.inner(tangent(du), ufl.grad(v)) * dx,
            lambda v: zero * v * dx,
            lengths=cell.lengths,
            name="hook_test",
            constraint=constraint,
        )
        residual = fem.form(ufl.inner(flux, ufl.grad(ufl.TestFunction(V))) * dx)
        return w, CellNewton(residual, w, system, prepare=prepare and prepare(w)), system

    def ufl_law(w):
        g = G + ufl.grad(w)
        flux = k0.function * (1 + ufl.dot(g, g)) * g
        return flux, lambda du: ufl.derivative(flux, w, du)

    spaces = {
        shape: fem.functionspace(
            msh, basix.ufl.quadrature_element(msh.basix_cell(), value_shape=shape, degree=degree)
        )
        for shape in ((d,), (d, d))
    }
    q_flux, q_tangent = fem.Function(spaces[(d,)]), fem.Function(spaces[(d, d)])
    dofs = spaces[(d,)].dofmap.list.ravel()
    num_cells = msh.topology.index_map(d).size_local
    calls = []

    def quadrature_law(w):
        return q_flux, lambda du: ufl.dot(q_tangent, ufl.grad(du))

    def return_mapping(w):
        points = spaces[(d,)].element.interpolation_points
        inputs = fem.Expression(ufl.as_vector([k0.function, *(G + ufl.grad(w))]), points)
        cells_ = np.arange(num_cells, dtype=np.int32)

        def hook(w):
            values = inputs.eval(msh, cells_).reshape(-1, 1 + d)
            k, g = values[:, 0], values[:, 1:]
            scale = 1.0 + np.einsum("pi,pi->p", g, g)
            q_flux.x.array.reshape(-1, d)[dofs] = (k * scale)[:, None] * g
            tangent = k[:, None, None] * (
                scale[:, None, None] * np.eye(d) + 2.0 * g[:, :, None] * g[:, None, :]
            )
            q_tangent.x.array.reshape(-1, d * d)[dofs] = tangent.reshape(-1, d * d)
            calls.append(np.linalg.norm(w.x.array))
            return True

        return hook

    results = {}
    for kind, make_flux, prepare in [
        ("ufl", ufl_law, None),
        ("hook", quadrature_law, return_mapping),
    ]:
        w, newton, system = build(make_flux, prepare)
        newton.solve(1e-11)
        results[kind] = (w.x.array.copy(), newton.iterations, list(newton.history))
        newton.destroy()
        system.destroy()
    (w_ufl, its_ufl, history_ufl), (w_hook, its_hook, history_hook) = results.values()
    assert its_ufl >= 3 and its_hook == its_ufl
    assert np.abs(w_hook - w_ufl).max() < 1e-10 * np.abs(w_ufl).max()
    assert np.allclose(history_hook, history_ufl, rtol=1e-8, atol=1e-12)
    # one return mapping per Newton iterate (the Jacobian reuses the residual's)
    assert len(calls) == its_hook + 1


def test_domain_error_backs_off_to_the_load_stepped_state(square):
    """From w = 0 the full Newton step at H_FOLDING makes J <= 0: the line search backs
    off (domain error) and Newton still converges, to the state reached by load steps."""
    problem = HyperelasticCell(square, PHASES)
    P, A = problem.respond(H_FOLDING)
    assert any("outside the domain" in line for line in problem.log), problem.log
    assert problem.min_jacobian() > 0.0
    stepped = HyperelasticCell(square, PHASES)
    for s in np.linspace(0.0, 1.0, 6)[1:]:
        P_stepped, A_stepped = stepped.respond(s * H_FOLDING)
        assert not any("outside the domain" in line for line in stepped.log)
    assert np.abs(P - P_stepped).max() < 1e-9 * np.abs(P).max()
    assert np.abs(A - A_stepped).max() < 1e-8 * np.abs(A).max()
    problem.destroy()
    stepped.destroy()


def test_snes_options_under_the_cell_prefix_and_failure_reasons(square):
    """SNES options are taken from petsc_options under the cell's prefix: without a line
    search (basic) the folding step is not backed off and every start fails with the
    domain reason; max_iterations gives DIVERGED_MAX_IT. All options go with destroy()."""
    basic = HyperelasticCell(square, PHASES, petsc_options={"snes_linesearch_type": "basic"})
    assert basic.newton.snes.getLineSearch().getType() == "basic"
    assert basic.newton.prefix.startswith(basic.solver.prefix)
    with pytest.raises(CellSolveError, match="DIVERGED_FUNCTION_DOMAIN") as info:
        basic.respond(H_FOLDING)
    assert "cold start" in str(info.value) and "J = det F <= 0" in str(info.value)
    assert basic.solver.ksp.getPC().getFactorSolverType() == "cholmod"  # linear default kept
    short = HyperelasticCell(square, PHASES, max_iterations=2)
    with pytest.raises(CellSolveError, match="DIVERGED_MAX_IT"):
        short.respond(H_FOLDING)
    prefixes = [basic.solver.prefix, short.solver.prefix]
    assert all(options_under(prefix) for prefix in prefixes)
    basic.destroy()
    short.destroy()
    assert [options_under(prefix) for prefix in prefixes] == [[], []]


def test_inadmissible_warm_start_falls_back_to_a_cold_start(square):
    """The state converged at H_FOLDING folds the cell at the transposed load: the warm
    start is skipped (recorded), the cold start converges to the answer of a fresh cell."""
    problem = HyperelasticCell(square, PHASES)
    problem.respond(H_FOLDING)
    H = np.diag([-0.5, 0.8])
    P, _ = problem.respond(H)
    log = "\n".join(problem.log)
    assert "the last converged state is outside the domain" in log
    assert log.index("warm start") < log.index("cold start") < log.index("(converged)")
    fresh = HyperelasticCell(square, PHASES)
    assert np.abs(P - fresh.respond(H)[0]).max() < 1e-10 * np.abs(P).max()
    problem.destroy()
    fresh.destroy()


def nonlinear_diffusion(prepare=None, condition=None):
    """A small periodic cell with the law q = k0 (1 + |g|^2) g, g = G + grad w (UFL)."""
    cell = cells.square(0.3, mesh_size=0.2)
    msh = cell.mesh
    k0 = PhaseField(cell, (), "k0", lambda value, what: float(value), "k0")
    k0.set({"matrix": 1.0, "inclusion": 4.0})
    V = fem.functionspace(msh, ("Lagrange", 1))
    condition = condition or Periodic()
    constraint = condition.constrain(V, lengths=cell.lengths)
    w = fem.Function(constraint.space)
    g = fem.Constant(msh, np.array([0.5, 0.2])) + ufl.grad(w)
    flux = k0.function * (1 + ufl.dot(g, g)) * g
    system = condition.system(
        V,
        lambda du, v: ufl.inner(ufl.derivative(flux, w, du), ufl.grad(v)) * ufl.dx,
        lambda v: fem.Constant(msh, 0.0) * v * ufl.dx,
        lengths=cell.lengths,
        name="diffusion",
        constraint=constraint,
    )
    residual = fem.form(ufl.inner(flux, ufl.grad(ufl.TestFunction(V))) * ufl.dx)
    return CellNewton(residual, w, system, prepare=prepare), system


def test_hook_errors_fail_the_start_or_propagate():
    """A CellSolveError of the hook (a failed return mapping) fails the start with its
    message; any other exception reaches the caller as itself, not as a PETSc error."""
    calls = []

    def failing(kind):
        def prepare(w):
            calls.append(1)
            if len(calls) > 1:
                raise kind("return mapping did not converge at 3 points")
            return True

        return prepare

    newton, system = nonlinear_diffusion(failing(CellSolveError))
    with pytest.raises(NewtonFailure, match="return mapping did not converge") as info:
        newton.solve(1e-10)
    assert "cold start:" in str(info.value) and np.all(newton.u.x.array == 0.0)
    newton.destroy()
    system.destroy()
    calls.clear()
    newton, system = nonlinear_diffusion(failing(ZeroDivisionError))
    with pytest.raises(ZeroDivisionError, match="return mapping"):
        newton.solve(1e-10)
    newton.destroy()
    system.destroy()
    newton, system = nonlinear_diffusion()
    newton.solve(1e-10)
    assert newton.reason == PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
    assert newton.history[-1] <= 1e-10 < newton.history[0]
    newton.destroy()
    system.destroy()


def test_newton_needs_a_single_function_system():
    cell = cells.square(0.3, mesh_size=0.2)
    V = fem.functionspace(cell.mesh, ("Lagrange", 1))
    system = Traction().system(
        V,
        lambda u, v: ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx,
        lambda v: fem.Constant(cell.mesh, 0.0) * v * ufl.dx,
        lengths=cell.lengths,
        name="traction",
    )
    w = fem.Function(V)
    residual = fem.form(ufl.inner(ufl.grad(w), ufl.grad(ufl.TestFunction(V))) * ufl.dx)
    with pytest.raises(ValueError, match="one function"):
        CellNewton(residual, w, system)
    system.destroy()


def test_newton_failure_carries_the_log():
    failure = NewtonFailure(["cold start:", "  failed: SNES DIVERGED_MAX_IT (-5)"])
    assert isinstance(failure, CellSolveError) and "DIVERGED_MAX_IT" in str(failure)
    assert failure.log[0] == "cold start:"
