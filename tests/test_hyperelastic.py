"""The finite-strain Neo-Hookean cell against closed forms, the linear cell and differences."""

import numpy as np
import pytest

from hmm_fem import cells, voigt
from hmm_fem.cells import CellSolveError, HyperelasticCell
from hmm_fem.cells.elasticity import ElasticityCell
from hmm_fem.materials import neo_hookean

PHASES = {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)}
#: A finite macro displacement gradient: 15 % stretch, 12 % compression and shear.
H_FINITE = np.array([[0.15, 0.10], [-0.05, -0.12]])


@pytest.fixture(scope="module")
def square():
    return cells.square(0.3, mesh_size=0.07)


@pytest.fixture
def problem(square):
    cell = HyperelasticCell(square, PHASES)
    yield cell
    cell.destroy()


def rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def square_fractions(problem):
    fractions = problem.cell.phase_volume_fractions()
    return [fractions["matrix"], fractions["inclusion"]]


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max()


def test_neo_hookean_reference_is_consistent():
    """The numpy reference: P = dpsi/dF and A = dP/dF (central differences), P(I) = 0."""
    mu, lam = 0.7, 1.3
    F = np.eye(3) + 0.2 * np.random.default_rng(1).standard_normal((3, 3))
    psi, P, A = neo_hookean(F, mu, lam)
    eps = 1e-6
    for k in range(3):
        for m in range(3):
            E = np.zeros((3, 3))
            E[k, m] = eps
            psi_p, P_p, _ = neo_hookean(F + E, mu, lam)
            psi_m, P_m, _ = neo_hookean(F - E, mu, lam)
            assert abs((psi_p - psi_m) / (2 * eps) - P[k, m]) < 1e-8
            assert np.abs((P_p - P_m) / (2 * eps) - A[:, :, k, m]).max() < 1e-8
    assert np.abs(neo_hookean(np.eye(3), mu, lam)[1]).max() == 0.0


@pytest.mark.mpi
@pytest.mark.parametrize("dim", [2, 3])
def test_homogeneous_cell_is_the_neo_hookean_law(dim):
    """Both phases equal: w = 0, P* = P(F) and A* = A(F) of the closed form."""
    if dim == 2:
        cell = cells.square(0.3, mesh_size=0.1)
        H = H_FINITE
    else:
        cell = cells.cubic(0.1, mesh_size=0.35)
        H = np.array([[0.12, 0.05, -0.03], [0.0, -0.1, 0.04], [0.06, -0.02, 0.08]])
    E, nu = 2.0, 0.35
    problem = HyperelasticCell(cell, {"matrix": (E, nu), "inclusion": (E, nu)})
    P, A = problem.respond(H)
    lam, mu = voigt.lame(E, nu)
    _, P_exact, A_exact = neo_hookean(np.eye(dim) + H, mu, lam)
    assert P.shape == (dim, dim) and A.shape == (dim,) * 4
    assert relative(P, P_exact) < 1e-12
    assert relative(A, A_exact) < 1e-12
    assert np.abs(problem.fluctuation.x.array).max() < 1e-12
    assert problem.min_jacobian() == pytest.approx(np.linalg.det(np.eye(dim) + H), rel=1e-12)
    problem.destroy()


@pytest.mark.mpi
def test_small_strain_limit_is_the_linear_cell(square):
    """At F = I the Neo-Hookean tangent is the isotropic linear one: A*(0) = C* (tensor)."""
    problem = HyperelasticCell(square, PHASES)
    P, A = problem.respond(np.zeros((2, 2)))
    linear = ElasticityCell(square, PHASES)
    C = voigt.stiffness_to_tensor(linear.effective_tensor())
    linear.destroy()
    problem.destroy()
    assert np.abs(P).max() == 0.0
    assert relative(A, C) < 1e-8
    # and not trivially: the composite differs from both phases
    assert relative(A, voigt.stiffness_to_tensor(voigt.isotropic_stiffness(1.0, 0.3, 2))) > 0.1


def test_tangent_matches_finite_differences(problem):
    """A* = dP*/dF by central differences of P*(F) at a finite strain (two phases)."""
    P, A = problem.respond(H_FINITE)
    eps = 1e-4
    A_fd = np.empty_like(A)
    for k in range(2):
        for m in range(2):
            E = np.zeros((2, 2))
            E[k, m] = eps
            A_fd[:, :, k, m] = (
                problem.respond(H_FINITE + E)[0] - problem.respond(H_FINITE - E)[0]
            ) / (2 * eps)
    assert relative(A, A_fd) < 1e-6
    # the fluctuation matters: A* is far from the Voigt average <A>
    lam, mu = voigt.lame(np.array([1.0, 10.0]), np.array([0.3, 0.2]))
    fractions = square_fractions(problem)
    voigt_bound = sum(
        c * neo_hookean(np.eye(2) + H_FINITE, m_, l_)[2] for c, m_, l_ in zip(fractions, mu, lam)
    )
    assert relative(A, voigt_bound) > 0.05
    # major symmetry of a hyperelastic tangent (A* is not symmetrised by the cell)
    assert np.abs(A - A.transpose(2, 3, 0, 1)).max() < 1e-12 * np.abs(A).max()


@pytest.mark.mpi
def test_frame_indifference(problem):
    """P*(R F) = R P*(F) and A*(R F)_iJkL = R_ia R_kb A*(F)_aJbL; P* F^T is symmetric."""
    F = np.eye(2) + H_FINITE
    P, A = problem.respond(H_FINITE)
    R = rotation(0.6)
    P_rot, A_rot = problem.respond(R @ F - np.eye(2))
    assert relative(P_rot, R @ P) < 1e-9
    assert relative(A_rot, np.einsum("ia,kb,aJbL->iJkL", R, R, A)) < 1e-9
    tau = P @ F.T  # Kirchhoff stress J sigma: symmetric (balance of angular momentum)
    assert np.abs(tau - tau.T).max() < 1e-10 * np.abs(tau).max()


def test_warm_start_saves_iterations(problem):
    """A nearby F from the last converged state takes fewer Newton steps than from w = 0."""
    problem.respond(H_FINITE)
    cold_first = problem.iterations
    H_next = 1.03 * H_FINITE
    P_warm, A_warm = problem.respond(H_next)
    warm = problem.iterations
    problem.reset()
    P_cold, A_cold = problem.respond(H_next)
    cold = problem.iterations
    assert cold_first >= 3 and cold >= 3
    assert warm < cold
    assert problem.history[-1] < problem.history[0]
    # both starts reach the same state
    assert relative(P_warm, P_cold) < 1e-9 and relative(A_warm, A_cold) < 1e-9
    # the same H again: the stored answer, no solve
    P_again, _ = problem.respond(H_next)
    assert problem.iterations == 0 and np.array_equal(P_again, P_cold)


def test_stress_is_the_derivative_of_the_energy(problem):
    """P* = d<psi>/dF_macro (central differences of the average energy)."""
    P, _ = problem.respond(H_FINITE)
    eps = 1e-5
    P_fd = np.empty_like(P)
    for k in range(2):
        for m in range(2):
            E = np.zeros((2, 2))
            E[k, m] = eps
            P_fd[k, m] = (problem.energy(H_FINITE + E) - problem.energy(H_FINITE - E)) / (2 * eps)
    assert relative(P_fd, P) < 1e-7
    assert abs(problem.energy(np.zeros((2, 2)))) < 1e-14


@pytest.mark.parametrize(
    "F, match",
    [
        (np.diag([0.05, 0.05]), "Newton failed"),  # J -> 0: the micro path collapses
        (np.diag([0.0, 1.0]), "det = 0"),  # J = 0 on average: no admissible state at all
        (np.diag([-0.1, 1.0]), "det = -0.1"),
    ],
)
def test_extreme_compression_fails_cleanly(problem, F, match):
    H_good = 0.5 * H_FINITE
    P_good, A_good = problem.respond(H_good)
    with pytest.raises(CellSolveError, match=match) as info:
        problem.respond(F - np.eye(2))
    message = str(info.value)
    assert "F_macro = [[" in message
    if "Newton" in match:
        assert "iteration 0: ||R|| =" in message and "J = det F <= 0" in message
    # back in the last converged state and still usable
    assert np.array_equal(problem.macro_gradient.value, H_good)
    P_same, _ = problem.respond(H_good)
    assert np.array_equal(P_same, P_good)
    P, A = problem.respond(H_FINITE)
    assert (
        problem.history[-1] <= problem.rtol * np.linalg.norm(H_FINITE) * problem.residual_reference
    )
    fresh = HyperelasticCell(problem.cell, PHASES)
    assert relative(P, fresh.respond(H_FINITE)[0]) < 1e-9
    fresh.destroy()


def test_input_validation(square):
    with pytest.raises(ValueError, match="unknown phase 'fibre'"):
        HyperelasticCell(square, {**PHASES, "fibre": (1.0, 0.3)})
    with pytest.raises(ValueError, match="no \\(E, nu\\) given for phase 'inclusion'"):
        HyperelasticCell(square, {"matrix": (1.0, 0.3)})
    with pytest.raises(ValueError, match="Poisson ratio"):
        HyperelasticCell(square, {"matrix": (1.0, 0.5), "inclusion": (1.0, 0.3)})
    with pytest.raises(ValueError, match="Young's modulus"):
        HyperelasticCell(square, {1: (-1.0, 0.3), 2: (1.0, 0.3)})
    with pytest.raises(ValueError, match="give \\(E, nu\\)"):
        HyperelasticCell(square, {"matrix": 1.0, "inclusion": (1.0, 0.3)})
    problem = HyperelasticCell(square, {1: (1.0, 0.3), 2: (10.0, 0.2)})  # by tag
    assert problem.phase_lame["inclusion"][0] == pytest.approx(10.0 / 2.4)
    with pytest.raises(ValueError, match="2x2"):
        problem.respond(np.zeros(3))
    with pytest.raises(ValueError, match="not finite"):
        problem.respond(np.array([[np.nan, 0.0], [0.0, 0.0]]))
    problem.destroy()


def laminate_response(F, fractions, lame_constants):
    """Exact P* of a laminate with layers normal to x at the macro F (numpy Newton).

    The fluctuation depends on x only, so every layer p is homogeneous with
    ``F_p = F + c_p (x) e_x``, ``sum_p f_p c_p = 0``, and the tractions ``P_p e_x`` agree.
    """
    (f1, f2), ((mu1, lam1), (mu2, lam2)) = fractions, lame_constants
    c = np.zeros(2)
    for _ in range(50):
        F1 = F + np.outer(c, [1.0, 0.0])
        F2 = F - f1 / f2 * np.outer(c, [1.0, 0.0])
        _, P1, A1 = neo_hookean(F1, mu1, lam1)
        _, P2, A2 = neo_hookean(F2, mu2, lam2)
        r = P1[:, 0] - P2[:, 0]
        if np.abs(r).max() < 1e-15 * np.abs(P1).max():
            break
        c -= np.linalg.solve(A1[:, 0, :, 0] + f1 / f2 * A2[:, 0, :, 0], r)
    return f1 * P1 + f2 * P2


@pytest.mark.mpi
def test_laminate_matches_the_exact_finite_strain_response():
    """Layers normal to x: piecewise homogeneous fields, exact on the mesh for any F."""
    f = 0.4
    cell = cells.laminate(f, mesh_size=0.1)
    problem = HyperelasticCell(cell, PHASES)
    lame_constants = [voigt.lame(*PHASES["matrix"])[::-1], voigt.lame(*PHASES["inclusion"])[::-1]]
    for H in (H_FINITE, np.array([[-0.2, 0.3], [0.1, 0.25]])):
        P, _ = problem.respond(H)
        exact = laminate_response(np.eye(2) + H, (1 - f, f), lame_constants)
        assert relative(P, exact) < 1e-10
    problem.destroy()


def test_indefinite_jacobian_falls_back_to_lu():
    """A stiff layer compressed along itself beyond micro buckling, held in its symmetric
    state: the converged Jacobian is indefinite, Cholesky fails and MUMPS LU takes over."""
    cell = cells.laminate(0.1, mesh_size=0.05)
    phases = {"matrix": (1.0, 0.3), "inclusion": (1000.0, 0.3)}
    problem = HyperelasticCell(cell, phases)
    lu = HyperelasticCell(
        cell,
        phases,
        petsc_options={
            "ksp_type": "preonly",
            "pc_type": "lu",
            "pc_factor_mat_solver_type": "mumps",
        },
    )
    P, A = problem.respond(np.diag([0.0, -0.02]))  # below the buckling strain
    assert problem.tangent_solver == "primary"
    H = np.diag([0.0, -0.05])
    P, A = problem.respond(H)
    assert problem.tangent_solver == "fallback"
    assert any("not positive definite" in line for line in problem.log)
    P_lu, A_lu = lu.respond(H)
    assert lu.tangent_solver == "primary"
    assert relative(P, P_lu) < 1e-10 and relative(A, A_lu) < 1e-10
    problem.destroy()
    lu.destroy()
