"""The discrete-velocity BGK micro solver against its independent references.

* Chapman–Enskog: mu = p tau and kappa = (d + 2)/2 p tau k_B/m at small Knudsen number.
* Beyond Navier–Stokes: the exact thermostatted uniform shear flow of the BGK equation
  (Garzó & Santos 2003), closed form in the thermostat parameter.
* The heat flux under shear against the closed third-moment equations.
"""

import numpy as np
import pytest

from hmm_fem.micro.kinetic import (
    BGKSolver,
    HermiteVelocityGrid,
    VelocityGridTooCoarse,
    chapman_enskog_conductivity,
    chapman_enskog_viscosity,
    moment_solution,
    usf_exact,
)
from hmm_fem.micro.protocol import MicroSolveError

SHEAR_RATES = [0.1, 0.3, 0.5, 1.0, 1.5, 2.0]


def _shear(dim, rate):
    a = np.zeros((dim, dim))
    a[0, 1] = rate
    return a


@pytest.mark.parametrize("dim", [2, 3])
def test_grid_integrates_gaussian_moments(dim):
    grid = HermiteVelocityGrid(dim, 6)
    c = grid.points
    c2 = np.sum(c**2, axis=1)
    assert grid.weights.sum() == pytest.approx(1.0, rel=1e-14)
    assert grid.weights @ c[:, 0] ** 4 == pytest.approx(3.0, rel=1e-13)  # <c_x^4> = 3
    assert grid.weights @ c2**2 == pytest.approx(dim * (dim + 2), rel=1e-13)
    assert grid.weights @ (c2**2 * c[:, 0] ** 2) == pytest.approx((dim + 2) * (dim + 4), rel=1e-13)
    # The differentiation matrix is exact on polynomials of degree n - 1.
    x = grid.nodes
    assert np.allclose(grid.differentiation @ (x**5 - 2 * x**2), 5 * x**4 - 4 * x, atol=1e-10)


@pytest.mark.parametrize("dim", [2, 3])
def test_chapman_enskog_viscosity_and_conductivity(dim):
    """Small Knudsen number: mu = p tau, kappa = (d+2)/2 p tau k_B/m (Prandtl 1), to 1e-3."""
    tau, density, temperature, mass, kb = 2e-5, 1.7, 3.0, 2.5, 1.3
    rate = 5.0  # a tau = 1e-4: the shear-heat coupling (Burnett order) stays below 1e-3
    grad_t = np.array([4.0, -7.0, 2.0])[:dim]
    solver = BGKSolver(dim, 6)
    state = solver.solve(
        _shear(dim, rate),
        grad_t,
        tau=tau,
        density=density,
        temperature=temperature,
        mass=mass,
        boltzmann=kb,
    )
    pressure = density * kb * temperature
    assert state.pressure == pytest.approx(pressure, rel=1e-14)
    assert np.trace(state.pressure_tensor) / dim == pytest.approx(pressure, rel=1e-12)
    mu = state.viscous_stress[0, 1] / rate
    assert mu == pytest.approx(chapman_enskog_viscosity(pressure, tau), rel=1e-3)
    kappa = chapman_enskog_conductivity(pressure, tau, dim, kb / mass)
    error = np.linalg.norm(state.heat_flux + kappa * grad_t)
    assert error < 1e-3 * kappa * np.linalg.norm(grad_t)
    # The Navier-Stokes stress is traceless: no normal stresses at this order.
    assert abs(state.viscous_stress[0, 0]) < 1e-3 * abs(state.viscous_stress[0, 1])


def test_chapman_enskog_general_velocity_gradient():
    """Any traceless gradient at small Kn: -(P - p I) = mu (A + A^T)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 3))
    a -= np.trace(a) / 3 * np.eye(3)
    a *= 1e-3 / np.abs(a).max()
    state = BGKSolver(3, 6).solve(a, tau=1.0)
    expected = chapman_enskog_viscosity(1.0, 1.0) * (a + a.T)
    assert np.abs(state.viscous_stress - expected).max() < 1e-3 * np.abs(expected).max()


@pytest.mark.parametrize("dim", [2, 3])
def test_uniform_shear_flow_matches_exact_bgk_solution(dim):
    """Non-Newtonian viscosity, normal-stress differences and thermostat: exact USF."""
    solver = BGKSolver(dim, 6)
    tau = 0.25
    for reduced in SHEAR_RATES:
        state = solver.solve(_shear(dim, reduced / tau), tau=tau)
        exact = usf_exact(reduced, dim)
        p = state.pressure_tensor / state.pressure
        assert -p[0, 1] / reduced == pytest.approx(exact["eta"], rel=1e-9)
        assert p[0, 0] - p[1, 1] == pytest.approx(exact["N1"], rel=1e-9)
        if dim == 3:
            assert abs(p[1, 1] - p[2, 2]) < 1e-10
            assert abs(p[0, 2]) < 1e-12 and abs(p[1, 2]) < 1e-12
        assert state.thermostat_rate * tau == pytest.approx(exact["zeta"], rel=1e-9)
        # Reversing the shear flips the shear stress only (reflection y -> -y).
        mirror = solver.solve(_shear(dim, -reduced / tau), tau=tau).pressure_tensor
        flip = np.array([1.0, -1.0, 1.0][:dim])
        assert np.allclose(np.outer(flip, flip) * mirror, state.pressure_tensor, atol=1e-10)
    # Shear thinning: clearly beyond Navier-Stokes at a* = 1.
    assert usf_exact(1.0, dim)["eta"] < 0.8


def test_usf_closed_form_solves_the_cubic():
    a = np.array(SHEAR_RATES)
    for dim in (2, 3):
        zeta = usf_exact(a, dim)["zeta"]
        assert np.allclose(dim * zeta * (1 + 2 * zeta) ** 2, a**2, rtol=1e-13)


def test_heat_flux_under_shear_matches_moment_equations():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 3))
    a -= np.trace(a) / 3 * np.eye(3)
    a *= 0.8 / np.abs(a).max()
    gamma = np.array([0.05, -0.02, 0.03])
    state = BGKSolver(3, 6).solve(a, gamma, tau=1.0)
    p_ref, q_ref, zeta_ref = moment_solution(a, gamma)
    assert np.allclose(state.pressure_tensor, p_ref, rtol=0, atol=1e-10)
    assert np.allclose(state.heat_flux, q_ref, rtol=0, atol=1e-10)
    assert state.thermostat_rate == pytest.approx(zeta_ref, rel=1e-9)
    # Shear turns the heat flux: q is no longer parallel to the temperature gradient.
    cosine = -q_ref @ gamma / np.linalg.norm(q_ref) / np.linalg.norm(gamma)
    assert cosine < 0.999


def test_moments_exact_on_any_grid_distribution_converges():
    """Stress and heat flux do not depend on the grid; the distribution converges spectrally."""
    a, gamma = _shear(3, 0.05), [0.01, 0.02, 0.0]
    coarse = BGKSolver(3, 5).solve(a, gamma, tau=1.0)
    fine = BGKSolver(3, 9).solve(a, gamma, tau=1.0)
    assert np.allclose(coarse.pressure_tensor, fine.pressure_tensor, rtol=0, atol=1e-12)
    assert np.allclose(coarse.heat_flux, fine.heat_flux, rtol=0, atol=1e-12)
    assert fine.tail_fraction < 1e-2 * coarse.tail_fraction


def test_bad_input_is_refused():
    solver = BGKSolver(2, 6)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        solver.solve(_shear(2, 1.0), tau=0.0)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        solver.solve(_shear(2, 1.0), tau=float("nan"))
    with pytest.raises(ValueError, match="temperature must be"):
        solver.solve(_shear(2, 1.0), tau=1.0, temperature=-1.0)
    with pytest.raises(ValueError, match="traceless"):
        solver.solve([[1.0, 0.0], [0.0, 0.0]], tau=1.0)
    with pytest.raises(ValueError, match="square"):
        solver.solve(np.zeros((3, 3)), tau=1.0)
    with pytest.raises(ValueError, match="at most"):
        solver.solve(_shear(2, 1.0), [1.0, 2.0, 3.0], tau=1.0)
    with pytest.raises(ValueError, match="no longer exact moments"):
        BGKSolver(3, 4)
    with pytest.raises(ValueError, match="must be an integer in"):
        BGKSolver(2, 25)
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        BGKSolver(1, 6)
    with pytest.raises(ValueError, match="resolution_tol"):
        BGKSolver(2, 6, resolution_tol=0.0)


def test_too_coarse_grid_for_requested_resolution():
    solver = BGKSolver(3, 6, resolution_tol=1e-3)
    state = solver.solve(_shear(3, 1e-3), tau=1.0)  # near equilibrium: resolved
    assert state.tail_fraction < 1e-3
    with pytest.raises(VelocityGridTooCoarse, match="increase n_velocity"):
        solver.solve(_shear(3, 1.0), tau=1.0)


def test_round_off_check_refuses_spoilt_moments():
    solver = BGKSolver(2, 6, moment_tol=1e-300)
    with pytest.raises(MicroSolveError, match="moment balances"):
        solver.solve(_shear(2, 1.0), tau=1.0)


def test_linearised_tangent_matches_central_differences():
    """dP/dA and dq/dA from the steady state's factorisation against central differences."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 3))
    a -= np.trace(a) / 3 * np.eye(3)
    a *= 0.7 / np.abs(a).max()
    grad_t = np.array([0.3, -0.5, 0.2])
    options = dict(tau=0.8, density=1.3, temperature=1.7, mass=1.1, boltzmann=0.9)
    solver = BGKSolver(3, 6)
    state = solver.solve(a, grad_t, tangent=True, **options)
    h = 1e-6
    for k, m in [(0, 1), (2, 0), (1, 2)]:
        step = np.zeros((3, 3))
        step[k, m] = h
        plus, minus = (
            solver.solve(a + step, grad_t, **options),
            solver.solve(a - step, grad_t, **options),
        )
        dp = (plus.pressure_tensor - minus.pressure_tensor) / (2 * h)
        dq = (plus.heat_flux - minus.heat_flux) / (2 * h)
        assert np.abs(state.pressure_tensor_tangent[:, :, k, m] - dp).max() < 1e-7
        assert np.abs(state.heat_flux_tangent[:, k, m] - dq).max() < 1e-7
    # A traceless diagonal direction: the thermostat follows.
    step = np.diag([h, -h, 0.0])
    plus, minus = (
        solver.solve(a + step, grad_t, **options),
        solver.solve(a - step, grad_t, **options),
    )
    dp = (plus.pressure_tensor - minus.pressure_tensor) / (2 * h)
    tangent = state.pressure_tensor_tangent
    assert np.abs(tangent[:, :, 0, 0] - tangent[:, :, 1, 1] - dp).max() < 1e-7
    # Only the requested components: the others are NaN.
    one = solver.solve(a, grad_t, tangent=[(0, 1)], **options)
    assert np.allclose(one.pressure_tensor_tangent[:, :, 0, 1], tangent[:, :, 0, 1], atol=1e-13)
    assert np.isnan(one.pressure_tensor_tangent[:, :, 1, 0]).all()
    with pytest.raises(ValueError, match="tangent must be True or a list"):
        solver.solve(a, grad_t, tangent=[(0, 3)], **options)
