"""The J2 elastoplastic periodic cell and its micro model, against independent references.

References: the return mapping at a material point (a one-phase cell is a material point),
Levin's identity with the elastic correctors of ElasticityCell (residual stress), C* of
ElasticityCell (elastic unloading), a slab with traction-free faces solved at a material
point (a laminate with a void layer), a soft inclusion's limit (perforated cell), the
limit-analysis bounds of a perforated plate, central differences (macro tangent), and
the quadratic rate of Newton against a lagged Jacobian.
"""

import copy

import basix
import numpy as np
import pytest
import ufl
from dolfinx import fem
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import CellSolveError, ElasticityCell, PlasticCell
from hmm_fem.coupling import Dispatcher
from hmm_fem.materials import J2Plasticity, integrate_strain_path
from hmm_fem.micro import PlasticityModel, SolveContext
from hmm_fem.voigt import isotropic_stiffness, ufl_strain

E, NU, YIELD = 1.0, 0.3, 0.01
FIBRE = (5.0, 0.2)
PLANE = [0, 1, 5]


def j2(dim=2, iso=0.0, kin=0.0, yield_stress=YIELD, E_=E, nu=NU):
    return J2Plasticity(
        E_, nu, yield_stress, isotropic_hardening=iso, kinematic_hardening=kin, dim=dim
    )


@pytest.fixture(scope="module")
def square():
    return cells.square(0.2, mesh_size=0.1)


@pytest.fixture(scope="module")
def coarse_square():
    return cells.square(0.2, mesh_size=0.15)


@pytest.fixture(scope="module")
def laminate():
    return cells.laminate(0.3, mesh_size=0.15)


@pytest.fixture(scope="module")
def laminate3d():
    return cells.laminate(0.3, dim=3, mesh_size=0.5)


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


# -- a one-phase cell is a material point ------------------------------------------------------
PATHS = {
    # load, unload into reverse yielding, reload
    "uniaxial": [0.5, 1.0, 2.0, 3.0, 1.5, -1.0, -2.5, 0.0, 2.0],
    "shear": [1.0, 2.5, 4.0, 2.0, -1.0, -3.5, 0.5],
}


@pytest.mark.parametrize(
    "dim, path, iso, kin, degree",
    [
        (2, "uniaxial", 0.1, 0.0, 1),
        (2, "shear", 0.0, 0.1, 1),
        (2, "uniaxial", 0.05, 0.2, 2),
        (3, "uniaxial", 0.0, 0.1, 1),
        (3, "shear", 0.05, 0.2, 1),
    ],
)
def test_one_phase_cell_equals_the_return_mapping_along_strain_paths(
    square, laminate3d, dim, path, iso, kin, degree
):
    """Both phases carry the same law: the micro strain is uniform and every quadrature
    point follows integrate_strain_path of the law (stress, sigma_zz, tangent, internal
    variables) through loading, unloading, reverse yielding and reloading (P1, one point
    per cell; P2, three)."""
    law = j2(dim, iso, kin)
    cell = square if dim == 2 else laminate3d
    # two equal but distinct law objects: one vectorised return mapping for both phases
    problem = PlasticCell(cell, {"matrix": law, "inclusion": j2(dim, iso, kin)}, degree=degree)
    assert problem.num_points == cell.num_cells * (1 if degree == 1 else 3)
    n = 3 if dim == 2 else 6
    direction = np.zeros(n)
    if path == "uniaxial":
        direction[1] = 1.0
    else:
        direction[-1 if dim == 2 else 3] = 1.0  # 2 e_xy in 2D, 2 e_yz in 3D
    strains = np.outer(PATHS[path], direction) * (YIELD / E)
    given = strains.copy()
    reference = integrate_strain_path(law, strains, tangent=True)
    assert np.array_equal(strains, given)  # the law leaves its input alone (1 point in 3D)
    assert reference.yielded.sum() >= 4 and not reference.yielded.all()
    state = problem.initial_state()
    m = problem.num_plastic_points
    assert m == problem.num_points
    for k, strain in enumerate(strains):
        response = problem.respond(strain, state)
        state = response.state
        assert np.abs(response.stress - reference.stress[k]).max() < 1e-10 * YIELD
        assert np.abs(response.stress_3d - reference.stress_3d[k]).max() < 1e-10 * YIELD
        assert np.abs(response.tangent - reference.tangent[k]).max() < 1e-10 * E
        assert np.all(response.yielded == reference.yielded[k])
        for key in ("plastic_strain", "back_stress", "equivalent_plastic_strain"):
            expected = np.broadcast_to(getattr(reference, key)[k], state[key].shape)
            assert np.abs(state[key] - expected).max() < 1e-10 * YIELD / E
    problem.destroy()


# -- a two-phase cell through a cycle ----------------------------------------------------------
def strain_localisation(elastic: ElasticityCell, cell) -> tuple[np.ndarray, np.ndarray]:
    """``A_k = e_k + eps(chi_k)`` at the cell midpoints (P1: one point per cell) and the
    cell areas, from the elastic correctors of ElasticityCell."""
    msh = cell.mesh
    cells_ = np.arange(cell.num_cells, dtype=np.int32)
    points, _ = basix.make_quadrature(msh.basix_cell(), 0)
    A = np.stack(
        [
            fem.Expression(ufl_strain(chi), points).eval(msh, cells_).reshape(-1, 3)
            for chi in elastic.fluctuations
        ],
        axis=1,
    )
    A += np.eye(3)[None]
    space = fem.functionspace(msh, ("DG", 0))
    areas = fem.assemble_vector(fem.form(ufl.TestFunction(space) * ufl.dx)).array
    return A, areas[space.dofmap.list[: cell.num_cells, 0]]


def test_load_unload_reload_cycle(square):
    """Elastic fibres in a hardening J2 matrix. The loop has a positive area; unloading and
    reloading are elastic up to the previous maximum, retrace each other and have the
    tangent C* of ElasticityCell; the residual stress at zero macro strain is Levin's
    -<A^T C eps_p> of the stored plastic strains; the residual strain (zero macro stress)
    is -C*^-1 of it; no solve modifies the state it is given."""
    law = j2(iso=0.2)
    problem = PlasticCell(square, {"matrix": law, "inclusion": FIBRE})
    direction = np.array([0.0, 1.0, 0.5]) * (YIELD / E)
    load, unload = [0.5, 1.0, 1.5], [1.0, 0.5, 0.0]
    state = problem.initial_state()
    stresses = {}
    for phase, path in (("load", load), ("unload", unload)):
        for s in path:
            given = copy.deepcopy(state)
            response = problem.respond(s * direction, state)
            for key in state:  # the committed state is never modified
                assert np.array_equal(state[key], given[key])
            if phase == "load" and s == 1.5:
                peak, peak_state = response, response.state
            assert response.yielded.any() == (phase == "load" and s > 0.5)
            stresses[phase, s] = response
            state = response.state
    # dissipation: the work of the closed loop 0 -> 2 -> 0 is positive
    path = [0.0, *load, *unload]
    sigma = [np.zeros(3)] + [stresses["load", s].stress for s in load]
    sigma += [stresses["unload", s].stress for s in unload]
    work = sum(
        0.5 * (sigma[i] + sigma[i + 1]) @ ((path[i + 1] - path[i]) * direction)
        for i in range(len(path) - 1)
    )
    assert work > 0.05 * YIELD * np.linalg.norm(direction)

    elastic = ElasticityCell(square, {"matrix": (E, NU), "inclusion": FIBRE})
    C_star = elastic.effective_tensor()
    for s in unload:
        assert relative(stresses["unload", s].tangent, C_star) < 1e-10
    # Levin: Sigma(E = 0) = -<A^T C eps_p> with the elastic localisation A
    residual = stresses["unload", 0.0]
    A, areas = strain_localisation(elastic, square)
    matrix_cells = np.sort(square.cell_tags.find(square.phases["matrix"]))
    assert matrix_cells.size == problem.num_plastic_points
    # the state's order: the plastic cells in mesh order (P1: at their centroids)
    geometry = square.mesh.geometry
    centroids = geometry.x[geometry.dofmaps[0][matrix_cells], :2].mean(axis=1)
    assert np.abs(problem.plastic_points() - centroids).max() < 1e-14
    tau = -(state["plastic_strain"] @ isotropic_stiffness(E, NU, 3).T)[:, PLANE]
    levin = np.einsum("c,cki,ci->k", areas[matrix_cells], A[matrix_cells], tau) / square.volume
    assert np.abs(levin).max() > 0.05 * YIELD
    assert np.abs(residual.stress - levin).max() < 1e-10 * YIELD
    # the residual strain: zero macro stress, still elastic
    strain = -np.linalg.solve(C_star, residual.stress)
    at_rest = problem.respond(strain, state)
    assert np.abs(at_rest.stress).max() < 1e-12 and not at_rest.yielded.any()
    # reloading retraces the unloading and is elastic up to the previous maximum (at the
    # maximum itself the points are back on the yield surface, to the Newton tolerance)
    for s in [0.5, 1.0, 1.5 * (1.0 - 1e-6)]:
        response = problem.respond(s * direction, state)
        assert not response.yielded.any()
        if s < 1.5 * (1.0 - 1e-6):
            assert relative(response.stress, stresses["unload", s].stress) < 1e-10
    response = problem.respond(1.5 * direction, state)
    assert relative(response.stress, peak.stress) < 1e-10
    for key in state:
        assert np.abs(response.state[key] - peak_state[key]).max() < 1e-10 * YIELD / E
    beyond = problem.respond(1.7 * direction, state)
    assert beyond.yielded.any()
    # the micro fields of the last solve, cell-wise (P1: one point per cell)
    fields = problem.fields()

    def cellwise(name, size):
        f = fields[name]
        return f.x.array.reshape(-1, size)[f.function_space.dofmap.list[: square.num_cells, 0]]

    assert relative(areas @ cellwise("stress", 3) / square.volume, beyond.stress) < 1e-12
    alpha = cellwise("equivalent_plastic_strain", 1)[:, 0]
    assert relative(alpha[matrix_cells], beyond.state["equivalent_plastic_strain"]) < 1e-14
    assert np.all(np.delete(alpha, matrix_cells) == 0.0)
    assert (
        relative(areas @ cellwise("stress_zz", 1)[:, 0] / square.volume, beyond.stress_zz) < 1e-12
    )
    problem.destroy()
    elastic.destroy()


# -- the macro tangent -------------------------------------------------------------------------
def central_differences(problem, strain, state, h):
    n = strain.size
    columns = []
    for k in range(n):
        step = np.zeros(n)
        step[k] = h
        plus = problem.respond(strain + step, state).stress
        minus = problem.respond(strain - step, state).stress
        columns.append((plus - minus) / (2.0 * h))
    return np.array(columns).T


@pytest.mark.parametrize("dim", [2, 3])
def test_macro_tangent_equals_central_differences(square, laminate3d, dim):
    """dSigma/dE from the converged micro Jacobian equals central differences of Sigma from
    the same committed state, at an elastic (virgin, small strain) and a plastic state
    (after a plastic step, further loading). In 2D both phases are J2 with different laws
    (two return mappings); in 3D a J2 matrix holds an elastic layer."""
    if dim == 2:
        phases = {
            "matrix": j2(iso=0.1, kin=0.2),
            "inclusion": j2(iso=0.3, yield_stress=0.03, E_=4.0),
        }
        first, elastic, plastic = (
            [0.004, 0.012, 0.003],
            [0.001, -0.002, 0.001],
            [0.006, 0.016, 0.002],
        )
        cell = square
    else:
        phases = {"matrix": j2(3, iso=0.1, kin=0.2), "inclusion": FIBRE}
        first = [0.004, 0.012, -0.003, 0.003, 0.002, -0.004]
        elastic = [0.001, -0.002, 0.0, 0.001, 0.0, 0.0005]
        plastic = [0.006, 0.016, -0.002, 0.004, 0.002, -0.006]
        cell = laminate3d
    problem = PlasticCell(cell, phases, rtol=1e-13)
    virgin = problem.initial_state()
    committed = problem.respond(np.array(first), virgin).state
    for state, strain, yields in ((virgin, elastic, False), (committed, plastic, True)):
        strain = np.array(strain)
        response = problem.respond(strain, state)
        assert response.yielded.any() == yields
        fd = central_differences(problem, strain, state, 1e-6)
        assert relative(response.tangent, fd) < 1e-6
        assert np.abs(response.tangent - response.tangent.T).max() < 1e-12 * np.abs(fd).max()
    problem.destroy()


# -- Newton ------------------------------------------------------------------------------------
def test_micro_newton_converges_quadratically(square):
    """One large plastic step from the virgin state: with the algorithmic tangent the
    residual falls quadratically once the yielded set settles, ||R_k+1|| / ||R_0|| <=
    C (||R_k|| / ||R_0||)^2 with C of order 1; with the Jacobian of the first iterate kept
    (SNES lag -2, the elastic tangent: a modified Newton) the same test fails."""
    phases = {"matrix": j2(iso=0.1, kin=0.05), "inclusion": FIBRE}
    strain = np.array([0.004, 0.02, 0.005])

    def ratios(norms):
        r = np.asarray(norms) / norms[0]
        above = r[1:] > 1e-13  # above the round-off floor
        return (r[1:] / r[:-1] ** 2)[above]

    problem = PlasticCell(square, phases)
    problem.respond(strain)
    norms = problem.residual_norms
    assert 4 <= problem.iterations <= 8, problem.log
    assert norms[-1] < 1e-12 * norms[0]
    assert ratios(norms)[-2:].max() < 10.0, norms
    assert problem.tangent_solver == "primary"
    problem.destroy()
    lagged = PlasticCell(
        square, phases, max_iterations=100, petsc_options={"snes_lag_jacobian": -2}
    )
    lagged.respond(strain)
    assert lagged.iterations > 2 * problem.iterations
    assert ratios(lagged.residual_norms)[-2:].max() > 100.0
    lagged.destroy()


# -- voids -------------------------------------------------------------------------------------
def free_slab(law, strains, free):
    """A material point of a slab with traction-free faces normal to x: the stress
    components ``free`` vanish (their strains found by Newton on the law), the strains of
    the others are imposed. Returns the stress, the condensed tangent of the others and
    whether the point yielded, at every step."""
    state = law.initial_state(1)
    k = law.strain_size
    fixed = [i for i in range(k) if i not in free]
    eps = np.zeros(k)
    out = []
    for strain in strains:
        eps[fixed] = np.asarray(strain)[fixed]
        for _ in range(30):
            response = law.return_mapping(eps[None], state)
            stress, C = response.stress[0], response.tangent[0]
            if np.abs(stress[free]).max() < 1e-16:
                break
            eps[free] -= np.linalg.solve(C[np.ix_(free, free)], stress[free])
        else:
            raise AssertionError("the slab point did not converge")
        condensed = C[np.ix_(fixed, fixed)] - C[np.ix_(fixed, free)] @ np.linalg.solve(
            C[np.ix_(free, free)], C[np.ix_(free, fixed)]
        )
        state = response.state
        out.append((stress, condensed, bool(response.yielded[0])))
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_void_layer_laminate_is_a_free_slab(laminate, laminate3d, dim):
    """A laminate whose middle layer is a void: the solid is a slab with traction-free faces
    normal to x, in a uniform state (exact for P1). Sigma and dSigma/dE equal (1 - f) times
    the stress and the condensed tangent of the slab's material point, whose strains across
    (xx, and the shears with x) are free; the rows and columns of those components vanish.
    Along a path through yielding, unloading and reverse yielding."""
    f = 0.3
    law = j2(dim, iso=0.1, kin=0.1)
    cell = laminate if dim == 2 else laminate3d
    problem = PlasticCell(cell, {"matrix": law, "inclusion": None}, rtol=1e-12)
    assert problem.voids == ("inclusion",)
    assert problem.num_points == cell.cell_tags.find(cell.phases["matrix"]).size
    free = [0, 2] if dim == 2 else [0, 4, 5]
    fixed = [i for i in range(law.strain_size) if i not in free]
    rng = np.random.default_rng(3)
    direction = rng.uniform(-1.0, 1.0, law.strain_size)
    direction[1] = 2.0
    strains = np.outer([0.5, 1.5, 3.0, 1.0, -2.0, 0.0], direction) * (YIELD / E)
    reference = free_slab(law, strains, free)
    state = problem.initial_state()
    assert {y for _, _, y in reference} == {True, False}
    for strain, (stress, condensed, yielded) in zip(strains, reference):
        response = problem.respond(strain, state)
        state = response.state
        assert np.all(response.yielded == yielded)  # uniform
        assert np.abs(response.stress - (1 - f) * stress).max() < 1e-10 * YIELD
        T = np.zeros_like(response.tangent)
        T[np.ix_(fixed, fixed)] = (1 - f) * condensed
        assert np.abs(response.tangent - T).max() < 1e-10 * E
    problem.destroy()


def test_perforated_cell_is_the_limit_of_a_soft_inclusion(square):
    """Elastic response of a cell with a hole = the limit of ElasticityCell with an ever
    softer inclusion (on the same mesh). C*(delta) = C_void + a delta + O(delta^2) with C*
    decreasing to C_void (monotone in the phase stiffness): the linear extrapolation of
    delta = 1e-4, 1e-6 to 0 is C_void; a J2 matrix below yield answers the same."""
    holed = PlasticCell(square, {"matrix": (E, NU), "inclusion": None})
    assert holed.mesh.topology.index_map(2).size_local < square.num_cells
    response = holed.respond(np.array([1e-3, -2e-3, 1e-3]))
    C_void = response.tangent
    assert relative(response.stress, C_void @ [1e-3, -2e-3, 1e-3]) < 1e-12
    soft = {}
    for delta in (1e-4, 1e-6):
        elastic = ElasticityCell(square, {"matrix": (E, NU), "inclusion": (delta * E, NU)})
        soft[delta] = elastic.effective_tensor()
        elastic.destroy()
        assert np.linalg.eigvalsh(soft[delta] - C_void).min() > 0.0
        assert 1e-2 * delta < relative(soft[delta], C_void) < 1e2 * delta
    extrapolated = soft[1e-6] - 1e-6 * (soft[1e-4] - soft[1e-6]) / (1e-4 - 1e-6)
    assert relative(extrapolated, C_void) < 1e-9
    plastic = PlasticCell(square, {"matrix": j2(iso=0.1), "inclusion": None})
    below = plastic.respond(np.array([1e-3, -2e-3, 1e-3]))
    assert not below.yielded.any() and relative(below.tangent, C_void) < 1e-12
    holed.destroy()
    plastic.destroy()


def test_perforated_plate_limit_load_within_the_bounds(square):
    """A square array of holes (f = 0.2, radius r) in a perfectly plastic matrix under plane
    strain uniaxial stress (Sigma_xx = Sigma_xy = 0 by an outer Newton on E_xx, E_xy with
    the macro tangent): Sigma_yy levels off between the limit-analysis bounds
    (1 - 2r) (2/sqrt 3) sigma_y <= Sigma_yy <= (1 - f) (2/sqrt 3) sigma_y."""
    f = 0.2
    radius = np.sqrt(f / np.pi)
    plastic = 2.0 / np.sqrt(3.0) * YIELD
    problem = PlasticCell(square, {"matrix": j2(), "inclusion": None})
    state = problem.initial_state()
    strain = np.zeros(3)
    history = []
    for E_yy in np.linspace(0.0, 0.05, 6)[1:]:
        strain[1] = E_yy
        for _ in range(10):
            response = problem.respond(strain, state)
            mixed = response.stress[[0, 2]]
            if np.abs(mixed).max() < 1e-10 * plastic:
                break
            strain[[0, 2]] -= np.linalg.solve(response.tangent[np.ix_([0, 2], [0, 2])], mixed)
        else:
            raise AssertionError("the mixed control did not converge")
        state = response.state
        history.append(response.stress[1])
    assert (1 - 2 * radius) * plastic <= history[-1] <= (1 - f) * plastic
    assert history[-1] - history[-2] < 0.01 * history[-1]  # levelled off
    assert strain[0] < 0.0  # the plate contracts laterally
    # the plastic zone and the cell's displacement, for pictures
    fields = problem.fields()
    assert fields["equivalent_plastic_strain"].x.array.max() > 0.0
    assert set(fields) == {"stress", "stress_zz", "equivalent_plastic_strain", "yielded", "phase"}
    u = problem.displacement()
    assert u.function_space.mesh is problem.mesh
    problem.destroy()


# -- the micro model ---------------------------------------------------------------------------
def test_plasticity_model_through_the_dispatcher(coarse_square, tmp_path):
    """Histories flow through the seam: a step from the virgin state, commit, the next step
    starts from the first's internal variables (= PlasticCell from the same state); a cut
    step is rolled back exactly; model.evaluate answers from the virgin state; the history
    (13 m floats per point) is saved to .npz."""
    law = j2(iso=0.1, kin=0.1)
    phases = {"matrix": law, "inclusion": FIBRE}
    model = PlasticityModel(coarse_square, phases)
    m = model.cell.num_plastic_points
    assert model.history == {
        "plastic_strain": (m, 6),
        "back_stress": (m, 6),
        "equivalent_plastic_strain": (m,),
    }
    assert model.history_size == 13 * m
    reference = PlasticCell(coarse_square, phases)

    def check(response, expected):
        for i, e in enumerate(expected):
            assert relative(response.value[i], e.stress) < 1e-10
            assert relative(response.derivatives["strain"][i], e.tangent) < 1e-10

    step1 = np.array([[0.002, 0.004, 0.0], [0.01, 0.02, 0.004]])  # elastic, plastic
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    first = [reference.respond(s) for s in step1]
    check(dispatcher.evaluate({"strain": step1}), first)
    check(model.evaluate({"strain": step1}), first)
    dispatcher.commit()
    committed = dispatcher.history.values("equivalent_plastic_strain", "committed")
    assert np.all(committed[0] == 0.0) and committed[1].max() > 0.0
    assert np.abs(committed[1] - first[1].state["equivalent_plastic_strain"]).max() < 1e-10 * YIELD

    step2 = np.array([[0.003, 0.006, 0.0], [0.012, 0.024, 0.004]])
    second = [reference.respond(s, f.state) for s, f in zip(step2, first)]
    response = dispatcher.evaluate({"strain": step2})
    check(response, second)
    assert relative(response.value[1], reference.respond(step2[1]).stress) > 1e-3  # not virgin
    dispatcher.rollback()  # a cut step: the retry starts from step 1 again
    retry = 0.5 * (step1 + step2)
    check(
        dispatcher.evaluate({"strain": retry}),
        [reference.respond(s, f.state) for s, f in zip(retry, first)],
    )
    assert model.solves == 8 and model.newton_iterations > 0
    with np.load(dispatcher.save_history(tmp_path / "history.npz")) as data:
        assert data["history/plastic_strain"].shape[1:] == (m, 6)
        assert data["history/equivalent_plastic_strain"].shape[1:] == (m,)
    reference.destroy()
    model.destroy()


def test_bad_input_gets_clear_errors(coarse_square, square, tmp_path):
    law = j2()
    with pytest.raises(ValueError, match=r"dim=3, but the cell is 2D"):
        PlasticCell(coarse_square, {"matrix": j2(3), "inclusion": FIBRE})
    with pytest.raises(ValueError, match=r"phase 'inclusion' \(tag 2\) is 'steel'; give a J2"):
        PlasticCell(coarse_square, {"matrix": law, "inclusion": "steel"})
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        PlasticCell(coarse_square, {"matrix": law, "inclusion": (1.0, 0.3, 0.1)})
    with pytest.raises(ValueError, match="Poisson"):
        PlasticCell(coarse_square, {"matrix": law, "inclusion": (1.0, 0.7)})
    with pytest.raises(ValueError, match="every phase .* is a void"):
        PlasticCell(coarse_square, {"matrix": None, "inclusion": None})
    with pytest.raises(ValueError, match="unknown phase 'fibre'"):
        PlasticCell(coarse_square, {"matrix": law, "inclusion": None, "fibre": FIBRE})
    with pytest.raises(ValueError, match="'inclusion'"):
        PlasticCell(coarse_square, {"matrix": law})
    with pytest.raises(ValueError, match="not supported.*periodic"):
        PlasticCell(coarse_square, {"matrix": law, "inclusion": FIBRE}, condition="kinematic")
    problem = PlasticCell(coarse_square, {"matrix": law, "inclusion": FIBRE})
    with pytest.raises(ValueError, match=r"Voigt strain \(E_xx, E_yy, 2E_xy\), shape \(3,\)"):
        problem.respond([0.1, 0.2])
    with pytest.raises(ValueError, match="not finite"):
        problem.respond([np.nan, 0.0, 0.0])
    state = problem.initial_state()
    m = problem.num_plastic_points
    short = {**state, "plastic_strain": np.zeros((m - 1, 6))}
    with pytest.raises(
        ValueError, match=rf"'plastic_strain'\] has shape \({m - 1}, 6\), expected \({m}, 6\)"
    ):
        problem.respond([0.0, 0.0, 0.0], short)
    with pytest.raises(ValueError, match="names"):
        problem.respond([0.0, 0.0, 0.0], {"plastic_strain": state["plastic_strain"]})
    with pytest.raises(ValueError, match="not finite"):
        problem.respond([0.0, 0.0, 0.0], {**state, "back_stress": np.full((m, 6), np.inf)})
    with pytest.raises(RuntimeError, match="no solve yet"):
        problem.fields()
    # a failed Newton names the SNES reason and leaves the cell usable
    hasty = PlasticCell(coarse_square, {"matrix": law, "inclusion": FIBRE}, max_iterations=1)
    with pytest.raises(CellSolveError, match="DIVERGED_MAX_IT"):
        hasty.respond([0.01, 0.03, 0.0], state)
    assert all(np.all(v == 0.0) for v in state.values())
    assert (
        relative(hasty.respond([0.001, 0.0, 0.0]).stress, problem.respond([0.001, 0.0, 0.0]).stress)
        < 1e-10
    )
    hasty.destroy()
    model = PlasticityModel(coarse_square, {"matrix": law, "inclusion": FIBRE})
    with pytest.raises(ValueError, match="expected"):
        model.solve(np.zeros(3), SolveContext(history=short))
    # a history saved for another cell does not load
    dispatcher = Dispatcher(model, MPI.COMM_SELF)
    dispatcher.evaluate({"strain": np.zeros((1, 3))})
    dispatcher.commit()
    path = dispatcher.save_history(tmp_path / "coarse.npz")
    other = Dispatcher(PlasticityModel(square, {"matrix": law, "inclusion": FIBRE}), MPI.COMM_SELF)
    with pytest.raises(ValueError, match=r"\['plastic_strain'\] has shape"):
        other.load_history(path, np.arange(1))
    problem.destroy()
    model.destroy()
    other.model.destroy()
