"""The conductivity cell problem against exact results, published values and bounds."""

import numpy as np
import pytest
from mpi4py import MPI

from hmm_fem import cells, references
from hmm_fem.cells import CellSolveError, ConductivityCell


def effective(cell, k_m, k_i, **kwargs):
    problem = ConductivityCell(cell, {"matrix": k_m, "inclusion": k_i}, **kwargs)
    tensor = problem.effective_tensor()
    problem.destroy()
    return tensor


# -- exact: laminates ------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("degree", [1, 2])
def test_laminate_is_exact(dim, degree):
    f, k_m, k_i = 0.3, 1.0, 25.0
    cell = cells.laminate(f, dim=dim, mesh_size=0.25 if dim == 3 else 0.1)
    K = effective(cell, k_m, k_i, degree=degree)
    exact = references.laminate_conductivity(k_m, k_i, f, dim)
    assert np.abs(K - exact).max() < 1e-8 * np.abs(exact).max()


def test_laminate_anisotropic_phases_are_exact():
    """Layers normal to x with full tensors: only K_xx is a harmonic mean, the rest follow
    from continuity of the tangential gradient and the normal flux (exact 1D solution)."""
    f = 0.4
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    B = np.array([[8.0, -1.0], [-1.0, 3.0]])
    cell = cells.laminate(f, mesh_size=0.1)
    problem = ConductivityCell(cell, {"matrix": A, "inclusion": B})
    K = problem.effective_tensor()
    # Exact laminate formula (e.g. Milton, The Theory of Composites, sec. 9.2) for normal e_x.
    mean = lambda g: (1 - f) * g(A) + f * g(B)  # noqa: E731
    kxx = 1.0 / mean(lambda C: 1.0 / C[0, 0])
    kxy = kxx * mean(lambda C: C[0, 1] / C[0, 0])
    kyy = mean(lambda C: C[1, 1] - C[0, 1] ** 2 / C[0, 0]) + kxy**2 / kxx
    exact = np.array([[kxx, kxy], [kxy, kyy]])
    assert np.abs(K - exact).max() < 1e-8 * np.abs(exact).max()


# -- published: square array of discs -----------------------------------------------------------
@pytest.mark.parametrize("f", sorted(references.PERRINS_CONTRAST_10))
def test_square_array_matches_perrins(f):
    cell = cells.square(f)
    K = effective(cell, 1.0, 10.0)
    reference = references.PERRINS_CONTRAST_10[f]
    assert abs(K[0, 0] / reference - 1) < 5e-3
    assert abs(K[1, 1] / reference - 1) < 5e-3


@pytest.mark.parametrize("f", [0.2, 0.45])
def test_square_array_high_contrast_matches_perrins_formula(f):
    k_i = 1000.0
    K = effective(cells.square(f), 1.0, k_i)
    reference = references.perrins_square_array(1.0, k_i, f)
    assert abs(K[0, 0] / reference - 1) < 5e-3


@pytest.mark.mpi
def test_keller_reciprocity_square_array():
    """Keller (1964): in 2D, K*(1, s)_xx K*(1, 1/s)_yy = 1 for any geometry.

    Conforming elements overestimate K* for both contrasts, so the product exceeds 1 by
    the sum of the two discretisation errors: about 1.6e-3 with P1 on the default mesh,
    2e-6 with P2.
    """
    cell = cells.square(0.5)
    for degree, tolerance in [(1, 3e-3), (2, 1e-5)]:
        problem = ConductivityCell(cell, {"matrix": 1.0, "inclusion": 20.0}, degree=degree)
        K_s = problem.effective_tensor()
        K_inv = problem.effective_tensor({"matrix": 1.0, "inclusion": 1.0 / 20.0})
        assert 0.0 < K_s[0, 0] * K_inv[1, 1] - 1.0 < tolerance
        assert 0.0 < K_s[1, 1] * K_inv[0, 0] - 1.0 < tolerance


def test_dilute_discs_match_maxwell_garnett():
    f = 0.05
    K = effective(cells.square(f), 1.0, 10.0)
    assert abs(K[0, 0] / references.maxwell_garnett(1.0, 10.0, f, 2) - 1) < 1e-2


# -- bounds --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k_i", [10.0, 0.1])
def test_random_cells_respect_hashin_shtrikman(seed, k_i):
    cell = cells.random(0.35, num_inclusions=6, seed=seed)
    f = cell.volume_fraction  # bounds hold for the meshed geometry
    K = effective(cell, 1.0, k_i)
    lower, upper = references.hashin_shtrikman_trace_margins(K, 1.0, k_i, f)
    assert lower >= 0.0 and upper >= 0.0
    eig = np.linalg.eigvalsh(K)
    harmonic, arithmetic = sorted(
        [references.harmonic_mean(1, k_i, f), references.arithmetic_mean(1, k_i, f)]
    )
    assert harmonic <= eig.min() and eig.max() <= arithmetic


# -- symmetry ------------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("geometry", ["square", "hexagonal"])
def test_2d_arrays_are_isotropic(geometry):
    K = effective(getattr(cells, geometry)(0.4), 1.0, 10.0)
    assert abs(K[0, 0] / K[1, 1] - 1) < 2e-3
    assert abs(K[0, 1]) < 1e-3 * K[0, 0]
    lower, upper = references.hashin_shtrikman_bounds(1.0, 10.0, 0.4, 2)
    assert lower * (1 - 5e-3) < K[0, 0] < upper


def test_cubic_array_is_isotropic_and_bounded():
    cell = cells.cubic(0.3)
    K = effective(cell, 1.0, 10.0)
    diag = np.diag(K)
    assert np.ptp(diag) < 5e-3 * diag.mean()
    assert np.abs(K - np.diag(diag)).max() < 1e-3 * diag.mean()
    lower, upper = references.hashin_shtrikman_bounds(1.0, 10.0, cell.volume_fraction, 3)
    assert lower < diag.min() and diag.max() < upper


# -- convergence and consistency -----------------------------------------------------------------
def test_error_falls_under_mesh_refinement():
    f = 0.4
    reference = references.perrins_square_array(1.0, 10.0, f)
    errors = [
        abs(effective(cells.square(f, mesh_size=h), 1.0, 10.0)[0, 0] - reference)
        for h in (0.2, 0.1, 0.05)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.5 * errors[0]


def test_tensor_equals_energy_form():
    """The algebraic K* (one factorisation, Galerkin orthogonality) against the energy
    integral of the corrected gradients, assembled independently in UFL."""
    import ufl
    from dolfinx import fem

    cell = cells.hexagonal(0.3)
    problem = ConductivityCell(
        cell, {"matrix": [[1.0, 0.2], [0.2, 2.0]], "inclusion": 7.0}, degree=2
    )
    K = problem.effective_tensor()
    d = cell.dim
    grads = [ufl.as_vector(np.eye(d)[j]) + ufl.grad(c) for j, c in enumerate(problem.correctors)]
    energy = (
        np.array(
            [
                [
                    fem.assemble_scalar(
                        fem.form(ufl.inner(problem.conductivity * grads[j], grads[i]) * ufl.dx)
                    )
                    for j in range(d)
                ]
                for i in range(d)
            ]
        )
        / cell.volume
    )
    assert np.abs(K - energy).max() < 1e-10 * np.abs(K).max()


def test_reevaluation_reuses_the_cell_and_matches_a_fresh_one():
    cell = cells.square(0.3)
    problem = ConductivityCell(cell, {"matrix": 1.0, "inclusion": 10.0})
    problem.effective_tensor()
    matrix, forms = problem.solver.A, (problem._a, problem._L)
    warm = problem.effective_tensor({"matrix": 2.0, "inclusion": 0.5})
    assert problem.solver.A is matrix and (problem._a, problem._L) == forms
    cold = effective(cell, 2.0, 0.5)
    assert np.abs(warm - cold).max() < 1e-12 * np.abs(cold).max()
    # Scaling every phase scales K*: a linear check of the warm path.
    assert np.allclose(
        problem.effective_tensor({"matrix": 4.0, "inclusion": 1.0}), 2 * warm, rtol=1e-12
    )


def test_isotropic_fast_path_equals_assembly():
    """Isotropic phases take the affine path (precomputed phase matrices); an anisotropy
    of 1e-12 forces the assembly path. Both must agree to that level."""
    cell = cells.hexagonal(0.35)
    fast = ConductivityCell(cell, {"matrix": 2.0, "inclusion": 30.0})
    K_fast = fast.effective_tensor()
    K_fast2 = fast.effective_tensor({"matrix": 0.5, "inclusion": 3.0})
    slow = ConductivityCell(cell, {"matrix": np.diag([2.0, 2.0 * (1 + 1e-12)]), "inclusion": 30.0})
    assert np.abs(slow.effective_tensor() - K_fast).max() < 1e-9 * K_fast.max()
    K_slow2 = slow.effective_tensor({"matrix": np.diag([0.5, 0.5 * (1 + 1e-12)]), "inclusion": 3.0})
    assert np.abs(K_slow2 - K_fast2).max() < 1e-9 * K_fast2.max()


def test_phase_sensitivities_are_exact_derivatives():
    """dK*/dk_p without an extra solve (Hellmann-Feynman) against central differences,
    and Euler's identity K* = sum_p k_p dK*/dk_p (K* is homogeneous of degree 1)."""
    cell = cells.square(0.35)
    problem = ConductivityCell(cell, {"matrix": 1.5, "inclusion": 12.0})
    K = problem.effective_tensor()
    E = problem.phase_sensitivities()
    assert np.abs(1.5 * E[0] + 12.0 * E[1] - K).max() < 1e-10 * K.max()
    h = 1e-5
    for p, (k_m, k_i) in enumerate([(1.5 + h, 12.0), (1.5, 12.0 + h)]):
        plus = problem.effective_tensor({"matrix": k_m, "inclusion": k_i})
        minus = problem.effective_tensor({"matrix": 2 * 1.5 - k_m, "inclusion": 2 * 12.0 - k_i})
        assert np.abs((plus - minus) / (2 * h) - E[p]).max() < 1e-6
    # the general tensor form contracts to the isotropic one
    problem.effective_tensor({"matrix": 1.5, "inclusion": 12.0})
    M = problem.sensitivities()
    assert np.allclose(np.einsum("pijkk->pij", M), E, rtol=1e-10, atol=1e-12)


def test_multiphase_user_tags():
    """Three phases with user tags: the laminate's matrix split at its two interfaces
    (x = 0.25 and 0.75) into two phases is a three-layer laminate, exact on this mesh."""
    cell = cells.laminate(0.5, mesh_size=0.05)
    mesh = cell.mesh
    tdim = mesh.topology.dim
    from dolfinx import mesh as dmesh

    num = mesh.topology.index_map(tdim).size_local
    mid = dmesh.compute_midpoints(mesh, tdim, np.arange(num, dtype=np.int32))
    tags = np.full(num, cells.MATRIX, dtype=np.int32)
    tags[mid[:, 0] > 0.75] = 7
    tags[(mid[:, 0] > 0.25) & (mid[:, 0] < 0.75)] = 3
    cell.cell_tags = dmesh.meshtags(mesh, tdim, np.arange(num, dtype=np.int32), tags)
    cell.phases = {"matrix": 1, "a": 3, "b": 7}
    K = ConductivityCell(cell, {"matrix": 1.0, 3: 4.0, "b": 2.0}).effective_tensor()
    fractions = np.array([0.25, 0.5, 0.25])
    k = np.array([1.0, 4.0, 2.0])
    assert abs(K[0, 0] - 1 / np.sum(fractions / k)) < 1e-10
    assert abs(K[1, 1] - np.sum(fractions * k)) < 1e-10


@pytest.mark.mpi
def test_each_rank_solves_its_own_cell():
    """Cells live on COMM_SELF: ranks solve different cells at the same time."""
    rank = MPI.COMM_WORLD.rank
    f = 0.2 + 0.1 * rank
    K = effective(cells.laminate(f, mesh_size=0.1), 1.0, 5.0)
    assert abs(K[0, 0] - references.harmonic_mean(1.0, 5.0, f)) < 1e-10
    gathered = MPI.COMM_WORLD.allgather(K[0, 0])
    assert len(set(np.round(gathered, 12))) == MPI.COMM_WORLD.size


# -- solver safety -------------------------------------------------------------------------------
def test_tight_iterative_solver_agrees_with_direct():
    cell = cells.square(0.4)
    direct = effective(cell, 1.0, 10.0)
    options = {
        "ksp_type": "cg",
        "pc_type": "gamg",
        "ksp_rtol": 1e-12,
        "ksp_atol": 1e-14,
        "ksp_max_it": 1000,
    }
    iterative = effective(cell, 1.0, 10.0, petsc_options=options)
    assert np.abs(iterative - direct).max() < 1e-8


def test_loose_iterative_solver_is_refused():
    """A loose iterative solve would bias K* silently; the residual check refuses it."""
    cell = cells.square(0.4)
    options = {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-3}
    with pytest.raises(CellSolveError, match="relative residual"):
        effective(cell, 1.0, 10.0, petsc_options=options)


# -- bad input -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def square_cell():
    return cells.square(0.3, mesh_size=0.1)


@pytest.mark.parametrize(
    "conductivities, message",
    [
        ({"matrix": -1.0, "inclusion": 10.0}, "phase 'matrix'.*positive"),
        ({"matrix": 1.0, "inclusion": 0.0}, "phase 'inclusion'.*positive"),
        ({"matrix": 1.0, "inclusion": float("nan")}, "not finite"),
        ({"matrix": 1.0}, "no conductivity given for phase 'inclusion' \\(tag 2\\)"),
        ({"matrix": 1.0, "inclusion": 2.0, "fibre": 3.0}, "unknown phase 'fibre'"),
        ({"matrix": 1.0, "inclusion": [[1.0, 2.0], [0.0, 1.0]]}, "not symmetric"),
        ({"matrix": 1.0, "inclusion": [1.0, 2.0, 3.0]}, "shape"),
    ],
)
def test_bad_conductivities_are_refused(square_cell, conductivities, message):
    with pytest.raises(ValueError, match=message):
        ConductivityCell(square_cell, conductivities)


def test_bad_conductivity_on_reevaluation_keeps_the_last_result(square_cell):
    problem = ConductivityCell(square_cell, {"matrix": 1.0, "inclusion": 10.0})
    before = problem.effective_tensor()
    with pytest.raises(ValueError, match="positive"):
        problem.effective_tensor({"matrix": 1.0, "inclusion": -3.0})
    assert np.array_equal(problem.effective_tensor(), before)


def test_bad_degree_is_refused(square_cell):
    with pytest.raises(ValueError, match="degree"):
        ConductivityCell(square_cell, {"matrix": 1.0, "inclusion": 1.0}, degree=0)
