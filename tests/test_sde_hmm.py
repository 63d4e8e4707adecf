"""HMM for fast-slow SDEs (hmm_fem.micro.sde) against exact averages and closed forms.

Every stochastic test is seeded; its tolerance is a multiple of the estimator's own standard
error (stated at each assertion), and each was run over 20 seeds before it was trusted
(the outcomes are in the commit message that introduced it).
"""

import math

import numpy as np
import pytest
from mpi4py import MPI
from scipy.integrate import solve_ivp
from scipy.optimize import brentq
from scipy.special import i0

from hmm_fem.micro import SolveContext
from hmm_fem.micro.sde import (
    EffectiveDriftModel,
    EulerMaruyama,
    FastSimulationError,
    FastSlowEstimator,
    ReactionNetwork,
    hmm_integrate,
    plan_burst,
    plan_warm_starts,
)

SELF = MPI.COMM_SELF


# -- the averaging example (E, Liu & Vanden-Eijnden 2005) ----------------------------------


def forcing(t):
    return np.cos(np.pi * t) + np.sin(np.sqrt(2) * np.pi * t)


def averaged_drift(t, X):
    """<-Y^3> for Y ~ N(X, 1/2) (the fast OU's invariant measure): X^3 + 3 X (1/2)."""
    return -(X**3) - 1.5 * X + forcing(t)


def exact_ou_step(eps):
    """The OU dY = -(Y - X)/eps dt + eps^(-1/2) dW over dt, exact in distribution."""

    def step(y, x, t, dt, rng):
        a = math.exp(-dt / eps)
        return x + (y - x) * a + math.sqrt(0.5 * (1 - a * a)) * rng.standard_normal(y.shape)

    return step


def averaging_estimator(eps, *, replicas=16, seed=0, comm=SELF, scale=1.0, **settings):
    settings = {"burn_in": 3 * eps, "window": 20 * eps, **settings}
    return FastSlowEstimator(
        exact_ou_step(eps),
        slow_drift=lambda y, x, t: scale * (-(y**3) + forcing(t)),
        lift=lambda x, n, rng: np.full((n, 1), x[0]),
        dt=eps / 2,
        replicas=replicas,
        seed=seed,
        comm=comm,
        **settings,
    )


def check_averaging(seed):
    """Heun HMM of the averaging example at eps = 1e-3 against the averaged equation.

    Error budget at t = 0.5, 1, 2, 3 (the HMM's propagated standard error SE is 5e-3 to
    9e-3 there):
    * micro solver: none (the fast OU is stepped by its exact transition; h = dt/eps = 0.5);
    * averaging: none beyond the burst (with X frozen the OU's invariant measure is
      exactly N(X, 1/2), so F = -(X^3 + 3X/2) + forcing; eps only sets the time unit);
    * macro scheme: Heun at h = 0.02 against the averaged solution, |error| <= 2.9e-4;
    * burn-in with warm starts (3 eps; each burst starts at the previous step's fast
      states): the expected HMM trajectory (exact Gaussian moments of the OU chain) is
      within 5e-5 of Heun's;
    * nonlinearity of the noise: O(SE^2 |F''|) ~ 1e-4.
    The deterministic part (<= 4e-4) is below 0.1 SE; the check allows 4 SE. Over 20 seeds
    the largest |deviation| / SE at the four times was 1.74.
    """
    eps = 1e-3
    times = (0.5, 1.0, 2.0, 3.0)
    reference = solve_ivp(averaged_drift, (0, 3), [2.0], rtol=1e-12, atol=1e-12, dense_output=True)
    estimator = averaging_estimator(eps, seed=seed)
    solution = hmm_integrate(estimator, 2.0, (0.0, 3.0), dt=0.02, method="heun", t_eval=times)
    index = [solution.at(t) for t in times]
    error = solution.standard_error[index, 0]
    z = (solution.states[index, 0] - reference.sol(times)[0]) / error
    return z, error, solution


def test_averaging_follows_the_averaged_equation():
    z, error, solution = check_averaging(seed=0)
    # 4 standard errors at each of the four times (see check_averaging for the budget).
    assert np.all(np.abs(z) <= 4), z
    assert np.all((2e-3 < error) & (error < 1e-2)), error  # an informative interval
    assert solution.report.steps == 150
    assert solution.report.fast_steps == 150 * 3 * 16 * (6 + 40)  # drift, Jacobian, corrector


def averaged_scheme(method, h, t_end=3.0):
    """The macro scheme on the exact averaged drift from X(0) = 2 (brentq for implicit)."""
    x = [2.0]
    for k in range(round(t_end / h)):
        t = k * h
        if method == "euler":
            x.append(x[-1] + h * averaged_drift(t, x[-1]))
        else:

            def residual(z, x0=x[-1], t=t):
                return z - x0 - h * averaged_drift(t + h, z)

            x.append(brentq(residual, -10, 10, xtol=1e-14))
    return np.array(x)


def check_averaging_euler(method, seed):
    """Explicit or implicit Euler HMM (h = 0.02, eps = 1e-3) against the averaged equation.

    The reference is the averaged drift -(X^3 + 3X/2) + forcing integrated by the *same*
    macro scheme at the same h: the HMM state then differs from it only by the estimation
    error, which its propagated standard error SE covers (7e-3 to 1.5e-2 at t = 0.5, 1, 2,
    3). The rest of the budget is that of check_averaging (exact OU steps, warm-start
    burn-in 3 eps, nonlinearity of the noise), below 0.05 SE. Over seeds 0-19 the largest
    |deviation| / SE at the four times was 2.39 (euler) and 2.25 (implicit_euler).
    Returns the deviations in SE from the scheme, the scheme's own O(h) distance from the
    exact averaged solution (solve_ivp, up to 1.1e-2), the SE and the solution.
    """
    eps, h = 1e-3, 0.02
    times = (0.5, 1.0, 2.0, 3.0)
    exact = solve_ivp(averaged_drift, (0, 3), [2.0], rtol=1e-12, atol=1e-12, dense_output=True)
    scheme = averaged_scheme(method, h)[[round(t / h) for t in times]]
    estimator = averaging_estimator(eps, seed=seed)
    solution = hmm_integrate(estimator, 2.0, (0.0, 3.0), dt=h, method=method, t_eval=times)
    index = [solution.at(t) for t in times]
    error = solution.standard_error[index, 0]
    z = (solution.states[index, 0] - scheme) / error
    return z, scheme - exact.sol(times)[0], error, solution


@pytest.mark.parametrize("method", ["euler", "implicit_euler"])
def test_averaging_explicit_and_implicit_euler(method):
    z, bias, error, solution = check_averaging_euler(method, seed=0)
    # 4 standard errors from the averaged equation under the same scheme, at each time.
    assert np.all(np.abs(z) <= 4), z
    # The averaged ODE itself: 4 SE widened by the scheme's own O(h) error.
    assert np.all(np.abs(z * error + bias) <= 4 * error + np.abs(bias))
    assert np.all((5e-3 < error) & (error < 2e-2)), error  # an informative interval
    if method == "implicit_euler":
        assert solution.report.unconverged_steps == 0
        assert solution.report.newton_iterations >= solution.report.steps


# -- effective diffusion: Lifson-Jackson ----------------------------------------------------


def lifson_jackson_estimate(beta, seed):
    eps, D = 0.1, 1.0
    fast = EulerMaruyama(
        lambda y, x, t: 2 * np.pi * beta / eps * np.sin(2 * np.pi * y / eps), math.sqrt(2 * D)
    )
    estimator = FastSlowEstimator(
        fast,
        observable=lambda y, x: y,
        lift=lambda x, n, rng: eps * rng.random((n, 1)),  # anywhere in one period
        dt=4e-3 / beta * eps**2,
        burn_in=0.5 * eps**2,
        window=(20.0 if beta == 2.0 else 10.0) * eps**2,
        lag=0.5 * eps**2,
        replicas=1024,
        block_size=256,
        seed=seed,
        comm=SELF,
    )
    return estimator.diffusion([0.0]), D / i0(beta / D) ** 2


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_lifson_jackson_effective_diffusivity(beta):
    """dY = -V'(Y/eps)/eps dt + sqrt(2D) dW, V(y) = beta cos(2 pi y), D = 1, eps = 0.1.

    Lifson & Jackson (J. Chem. Phys. 36, 1962): D_eff = D / (<e^{V/D}> <e^{-V/D}>), and
    <e^{+-beta cos(2 pi y)/D}> over a period is I0(beta/D) (the integral representation
    of the modified Bessel function), so D_eff = D / I0(beta/D)^2: 0.8842, 0.6239, 0.1924.
    Euler-Maruyama with dt = (4e-3/beta) eps^2 (h V''_max = 0.16): its bias, measured with
    16384 replicas, is +0.55 +- 0.47 %, -0.17 +- 0.47 % and +0.60 +- 0.42 % at beta = 0.5,
    1, 2, at most a third of this test's standard error (1.6-1.9 %).
    Tolerance: 4 standard errors of the estimate.
    """
    estimate, exact = lifson_jackson_estimate(beta, seed=11)
    value = estimate.diffusion.value[0, 0]
    error = estimate.diffusion.standard_error[0, 0]
    assert error < 0.025 * exact  # an informative interval
    assert abs(value - exact) <= 4 * error, (value, exact, error)
    # No net drift (the potential is symmetric), within 4 standard errors.
    assert abs(estimate.drift.value[0]) <= 4 * estimate.drift.standard_error[0]


# -- implicit Euler on a stiff slow drift ---------------------------------------------------


def check_implicit_euler(seed):
    """Implicit Euler HMM on F(X) = 10 (-(X^3 + 3X/2) + forcing), h = 0.1, 0 <= t <= 1.

    Reference: the implicit Euler recursion z = x + h F(z, t + h) on the exact averaged
    drift (brentq to 1e-14). Returns the deviations in propagated standard errors at every
    step. Budget: the warm-start burn-in (5 eps; X moves by up to 0.4 per step) leaves a
    drift bias below 0.02 against a drift standard error of about 0.5. 256 replicas with
    a window of 10 eps: -Y^3 is skewed, and with fewer effective samples per estimate the
    replicas' t-statistic has heavier tails than the normal (4.4 sigma in 400 estimates
    with 128 replicas and 5 eps).
    """
    eps, h, lam = 1e-3, 0.1, 10.0
    estimator = averaging_estimator(
        eps, seed=seed, scale=lam, burn_in=5 * eps, window=10 * eps, replicas=256
    )
    implicit = hmm_integrate(estimator, 1.0, (0.0, 1.0), dt=h, method="implicit_euler")
    assert implicit.report.unconverged_steps == 0
    x = [1.0]
    for n in range(10):
        t = (n + 1) * h

        def residual(z, x0=x[-1], t=t):
            return z - x0 - h * lam * averaged_drift(t, z)

        x.append(brentq(residual, -10, 10, xtol=1e-14))
    return (implicit.states[1:, 0] - x[1:]) / implicit.standard_error[1:, 0], implicit


def test_implicit_euler_is_stable_where_explicit_euler_is_not():
    """F'(1) = -45: explicit Euler at h = 0.1 amplifies deviations by |1 - 4.5| = 3.5."""
    z, implicit = check_implicit_euler(seed=5)
    assert np.all(np.abs(z) <= 4), z  # 4 propagated standard errors at every step
    assert np.all(np.abs(implicit.states[:, 0]) < 1.5)
    eps = 1e-3
    explicit = hmm_integrate(
        averaging_estimator(eps, seed=5, scale=10.0, burn_in=5 * eps),
        1.0,
        (0.0, 0.4),
        dt=0.1,
        method="euler",
        propagate_error=False,
    )
    assert np.abs(explicit.states[-1, 0]) > 10  # the explicit oscillation grows


# -- error control --------------------------------------------------------------------------


def check_error_control(seed):
    """Plan F(2) = -11 to 0.5 at 95 % from cold starts at Y = 0 (far from N(2, 1/2)).

    Returns the plan, 20 independent errors with the planned settings and 20 without
    burn-in.
    """
    eps, X = 1e-3, 2.0
    exact = averaged_drift(0.0, X) - forcing(0.0)
    estimator = FastSlowEstimator(
        exact_ou_step(eps),
        slow_drift=lambda y, x, t: -(y**3),
        lift=lambda x, n, rng: np.zeros((n, 1)),
        dt=eps / 4,
        burn_in=eps,
        window=10 * eps,
        replicas=8,
        warm_start=False,
        seed=seed,
        comm=SELF,
    )
    plan = plan_burst(estimator, [X], tolerance=0.5, replicas=256, pilot_replicas=64)
    estimator.configure(**plan.settings)
    errors = np.array([estimator.drift([X]).value[0] - exact for _ in range(20)])
    estimator.configure(burn_in=0.0)
    cold = np.array([estimator.drift([X]).value[0] - exact for _ in range(20)])
    return plan, errors, cold


def test_error_control_meets_its_tolerance():
    """Twenty estimates with the planned settings meet the tolerance 0.5 at 95 %.

    The binomial probability of 5 or more misses of 20 at p = 0.05 is 0.3 %; the sample
    deviation of the 20 errors must match the predicted standard error (factor 0.5-1.6:
    its own relative error is 16 %); the mean error must be within the bias budget
    (0.2 * 0.5) plus 4 standard errors of the mean. Without the planned burn-in the mean
    of 20 estimates is off by more than the bias budget plus 4 of its standard errors (so
    the burn-in matters and the test can fail).
    """
    plan, errors, cold = check_error_control(seed=2)
    assert plan.burn_in > 0 and plan.replicas == 256
    assert np.all(plan.bias <= 0.2 * 0.5 + 1e-12)
    assert np.sum(np.abs(errors) > 0.5) <= 4, errors
    spread = errors.std(ddof=1)
    assert 0.5 * plan.standard_error[0] <= spread <= 1.6 * plan.standard_error[0]
    assert abs(errors.mean()) <= 0.2 * 0.5 + 4 * spread / math.sqrt(20)
    assert abs(cold.mean()) > 0.2 * 0.5 + 4 * cold.std(ddof=1) / math.sqrt(20)


def test_warm_start_plan_measures_the_lag_of_the_fast_measure(seed=6):
    """f = a x + y with a fast OU of mean x: F = (a + 1) x, J = a + 1, <df/dx> = a.

    Only the measure's part of J (1, whatever a) lags a warm start: the deviation to cover
    is 2 h |F_hat| (factor 2 of the plan; dx = h F_hat), so within 4 standard errors of
    F_hat of 2 h |F| (the common-random-number Jacobian minus the explicit derivative is 1
    up to round-off: both are linear in y). The extended burn-in covers it with the budget
    0.2 tolerance / sqrt(steps).
    """
    eps, a, x, h = 1e-3, -5.0, 0.8, 0.1
    estimator = FastSlowEstimator(
        exact_ou_step(eps),
        slow_drift=lambda y, x, t: a * x + y,
        lift=lambda x, n, rng: np.full((n, 1), x[0]) + rng.standard_normal((n, 1)),
        dt=eps / 2,
        burn_in=2 * eps,
        window=10 * eps,
        replicas=16,
        seed=seed,
        comm=SELF,
    )
    plan = plan_burst(estimator, [x], tolerance=0.05, pilot_time=100 * eps)
    estimator.configure(**plan.settings)
    warm = plan_warm_starts(estimator, plan, [x], macro_step=h, steps=100)
    F = (a + 1) * x
    error = estimator.drift([x]).standard_error[0]
    assert abs(warm.warm_change[0] / (2 * h) - abs(F)) <= 4 * error
    assert warm.burn_in >= plan.burn_in
    assert np.all(warm.warm_bias <= 0.2 * 0.05 / math.sqrt(100) + 1e-15)
    tau = np.maximum(warm.relaxation_time, 1e-300)
    amplitude = warm.warm_change * tau / warm.window * -np.expm1(-warm.window / tau)
    assert np.allclose(warm.warm_bias, amplitude * np.exp(-warm.burn_in / tau))


# -- the stochastic limit and Euler-Maruyama ------------------------------------------------


def stochastic_limit_estimator(seed=0, comm=SELF):
    """dX = (-X + Y/sqrt(eps)) dt with a fast OU dY = -Y/eps dt + sqrt(2/eps) dW.

    With X frozen the slow increment has drift -X and diffusion D = 1 (Var(Y) = 1,
    correlation time eps: 2 D = (1/eps) 2 Var(Y) eps); the limit is dX = -X dt + sqrt(2) dW.
    Euler-Maruyama's chain Y_{k+1} = (1 - h) Y_k + sqrt(2h) xi has the long-run variance
    2h / h^2 for any h, so D = 1 exactly at h = 0.5 too.
    """
    eps = 1e-2
    fast = EulerMaruyama(lambda y, x, t: -y / eps, math.sqrt(2 / eps))
    return FastSlowEstimator(
        fast,
        slow_drift=lambda y, x, t: -x + y / math.sqrt(eps),
        lift=lambda x, n, rng: rng.standard_normal((n, 1)),
        dt=eps / 2,
        burn_in=5 * eps,
        window=40 * eps,
        lag=5 * eps,
        replicas=64,
        block_size=16,
        seed=seed,
        comm=comm,
    )


def check_stochastic_limit(seed):
    estimator = stochastic_limit_estimator(seed=seed)
    stats = estimator.diffusion([0.7])
    # The macro path with cheaper bursts: the per-step estimates only need to be unbiased.
    estimator.configure(replicas=16, window=20e-2)
    h = 0.05
    path = hmm_integrate(estimator, 0.5, (0.0, 200 * h), dt=h, method="euler_maruyama")
    x = path.states[:, 0]
    return stats, path, (np.diff(x) + x[:-1] * h) / math.sqrt(2 * h)


def test_diffusion_of_a_slow_increment_and_euler_maruyama():
    stats, path, r = check_stochastic_limit(seed=4)
    # drift -0.7 and D = 1, each within 4 standard errors
    assert abs(stats.drift.value[0] + 0.7) <= 4 * stats.drift.standard_error[0]
    assert abs(stats.diffusion.value[0, 0] - 1) <= 4 * stats.diffusion.standard_error[0, 0]
    assert stats.diffusion.standard_error[0, 0] < 0.2  # an informative estimate
    # The macro path: increments normalised by the exact limit, r = (dX + X h)/sqrt(2h),
    # are N(0, 1) up to the estimation errors; over 200 steps their mean is within
    # 4/sqrt(200) of 0 and their variance within 4 sqrt(2/200) of 1 (a wrong noise scale,
    # sqrt(h) for sqrt(2h), would give 0.5).
    assert abs(r.mean()) <= 4 / math.sqrt(200)
    assert abs(r.var() - 1) <= 4 * math.sqrt(2 / 200)
    assert path.diffusions.shape == (200, 1, 1)
    assert np.all(np.isnan(path.standard_error))  # a random path: no error bars


# -- the fast processes ---------------------------------------------------------------------


def euler_maruyama_ou_estimate(seed):
    eps, h, X = 1e-3, 0.2, 1.5
    estimator = FastSlowEstimator(
        EulerMaruyama(lambda y, x, t: -(y - x) / eps, eps**-0.5),
        slow_drift=lambda y, x, t: y**3,
        lift=lambda x, n, rng: np.full((n, 1), x[0]),
        dt=h * eps,
        burn_in=10 * eps,
        window=200 * eps,
        replicas=256,
        seed=seed,
        comm=SELF,
    )
    return estimator.drift([X])


def test_euler_maruyama_has_its_exact_stationary_bias():
    """EM on the OU at h = dt/eps = 0.2 is N(X, 1/(2 - h)) stationary: <Y^3> = X^3 + 3X/(2-h).

    The estimate must be within 4 standard errors of that and more than 4 away from the
    h -> 0 value X^3 + 3X/2 (so the test sees the stepper, not just the average).
    """
    eps, h, X = 1e-3, 0.2, 1.5
    estimate = euler_maruyama_ou_estimate(seed=1)
    value, error = estimate.value[0], estimate.standard_error[0]
    assert abs(value - (X**3 + 3 * X / (2 - h))) <= 4 * error
    assert abs(value - (X**3 + 1.5 * X)) > 4 * error
    # The OU's integrated autocorrelation time of Y^3 lies between eps/3 and eps.
    assert eps / 3 < estimate.correlation_time[0] < 1.2 * eps


def test_euler_maruyama_matrix_noise(seed=0):
    """One step from 0 with a full diffusion matrix B has the covariance dt B B^T."""
    B = np.array([[1.0, 0.5], [0.0, 2.0]])
    step = EulerMaruyama(lambda y, x, t: -y, lambda y, x, t: np.broadcast_to(B, (len(y), 2, 2)))
    rng = np.random.default_rng(seed)
    n, dt = 20000, 0.01
    y = step(np.zeros((n, 2)), np.zeros(1), 0.0, dt, rng)
    expected = dt * B @ B.T
    # Sample covariance of n normals: standard error sqrt((S_ii S_jj + S_ij^2)/n); 4 of them.
    se = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / n)
    assert np.all(np.abs(np.cov(y, rowvar=False) - expected) <= 4 * se)


def test_reaction_network_birth_death_is_poisson(seed=3):
    """Birth k, death g P from P = 0: P(t) ~ Poisson(k/g (1 - e^{-g t})) exactly."""
    k, g, dt, steps = 20.0, 1.0, 0.1, 7
    network = ReactionNetwork(
        [[1], [-1]], lambda y, x, t: np.column_stack([np.full(len(y), k), g * y[:, 0]])
    )
    rng = np.random.default_rng(seed)
    y = np.zeros((4000, 1))
    for _ in range(steps):
        y = network(y, np.zeros(1), 0.0, dt, rng)
    mean = k / g * (1 - math.exp(-g * steps * dt))
    n = len(y)
    # Poisson: mean = variance = lam; SE of the mean sqrt(lam/n), of the variance
    # sqrt((2 lam^2 + lam)/n) (fourth cumulant lam); 4 of each.
    assert abs(y.mean() - mean) <= 4 * math.sqrt(mean / n)
    assert abs(y.var(ddof=1) - mean) <= 4 * math.sqrt((2 * mean**2 + mean) / n)
    assert np.all(y == np.round(y)) and np.all(y >= 0)


# -- common random numbers, the micro seam ----------------------------------------------------


def test_average_of_a_fast_observable(seed=12):
    """The OU's invariant measure N(x, 1/2): <Y> = x and <Y^2> = x^2 + 1/2, each within 4 SE."""
    eps, x = 1e-3, 1.3
    estimator = averaging_estimator(eps, seed=seed, warm_start=False)
    estimate = estimator.average(lambda y, x, t: np.hstack([y, y**2]), [x])
    assert estimate.value.shape == (2,)
    exact = np.array([x, x**2 + 0.5])
    assert np.all(np.abs(estimate.value - exact) <= 4 * estimate.standard_error), estimate.value
    # function=None is the slow drift, with the same numbers for the same key
    assert np.array_equal(
        estimator.average(None, [x], key=(3,)).value, estimator.drift([x], key=(3,)).value
    )


def test_common_random_numbers_and_the_jacobian(seed=9):
    eps = 1e-3
    estimator = averaging_estimator(eps, seed=seed, warm_start=False)
    a = estimator.drift([1.2], key=(4, 2))
    b = estimator.drift([1.2], key=(4, 2))
    c = estimator.drift([1.2], key=(4, 2, 0))  # not the same numbers as (4, 2)
    assert np.array_equal(a.value, b.value)
    assert not np.array_equal(a.value, c.value)
    jacobian = estimator.jacobian([1.2], key=(4, 2))
    assert np.array_equal(jacobian.base.value, a.value)
    # F'(x) = -(3 x^2 + 3/2) within 4 standard errors of the replicas' differences, which
    # are much smaller than the noise of F itself divided by the step (common numbers).
    exact = -(3 * 1.2**2 + 1.5)
    J, error = jacobian.value[0, 0], jacobian.standard_error[0, 0]
    assert abs(J - exact) <= 4 * error
    assert error < 0.1 * abs(exact)
    assert error < 1e-3 * a.standard_error[0] / estimator.fd_step


def test_effective_drift_model_through_the_micro_seam(seed=3):
    eps = 1e-3
    estimator = averaging_estimator(eps, replicas=32, warm_start=False)
    model = EffectiveDriftModel(estimator, slow_dim=1, seed=seed)
    assert model.stochastic and model.time_dependent
    x = np.array([[0.5], [1.0], [2.0]])
    context = SolveContext(time=0.25, seed=(seed, 7, 1, 0))
    response = model.evaluate({"x": x}, context=context)
    exact = averaged_drift(0.25, x)
    assert response.value.shape == (3, 1) and response.standard_error.shape == (3, 1)
    assert np.all(np.abs(response.value - exact) <= 4 * response.standard_error)
    tangent = response.derivatives["x"][:, 0, 0]
    tangent_error = response.solutions["jacobian_error"][:, 0, 0]
    assert np.all(np.abs(tangent + 3 * x[:, 0] ** 2 + 1.5) <= 4 * tangent_error)
    again = model.evaluate({"x": x}, context=context)  # the same stream: the same numbers
    assert np.array_equal(again.value, response.value)


# -- ranks ----------------------------------------------------------------------------------


@pytest.mark.mpi
def test_serial_equals_distributed_to_the_last_bit():
    comm = MPI.COMM_WORLD
    eps = 1e-3

    def run(c):
        estimator = averaging_estimator(eps, replicas=24, seed=8, comm=c, block_size=4)
        solution = hmm_integrate(estimator, 2.0, (0.0, 0.1), dt=0.02, method="implicit_euler",
                                 tolerance=1.0)
        stats = stochastic_limit_estimator(seed=8, comm=c).diffusion([0.3])
        return solution, stats

    distributed, d_stats = run(comm)
    serial, s_stats = run(SELF)
    assert np.array_equal(distributed.states, serial.states)
    assert np.array_equal(distributed.covariance, serial.covariance)
    assert distributed.report.fast_steps == serial.report.fast_steps
    assert distributed.report.plan.burn_in == serial.report.plan.burn_in
    assert np.array_equal(d_stats.diffusion.value, s_stats.diffusion.value)
    assert np.array_equal(d_stats.drift.standard_error, s_stats.drift.standard_error)
    # every rank holds the same answer
    mine = distributed.states.tobytes()
    assert comm.allgather(mine) == [mine] * comm.size


# -- bad inputs -----------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    eps = 1e-3
    good = {
        "lift": lambda x, n, rng: np.full((n, 1), x[0]),
        "dt": eps / 2,
        "burn_in": eps,
        "window": 4 * eps,
        "replicas": 4,
        "comm": SELF,
        "slow_drift": lambda y, x, t: -(y**3),
    }
    step = exact_ou_step(eps)
    with pytest.raises(ValueError, match="replicas must be an integer >= 2"):
        FastSlowEstimator(step, **{**good, "replicas": 1})
    with pytest.raises(ValueError, match="dt must be a positive"):
        FastSlowEstimator(step, **{**good, "dt": 0.0})
    with pytest.raises(ValueError, match="shorter than one micro step"):
        FastSlowEstimator(step, **{**good, "window": eps / 10})
    with pytest.raises(ValueError, match="give slow_drift"):
        FastSlowEstimator(step, **{**good, "slow_drift": None})
    with pytest.raises(TypeError, match="fast_step must be callable"):
        FastSlowEstimator(None, **good)
    estimator = FastSlowEstimator(step, **good)
    with pytest.raises(ValueError, match="finite"):
        estimator.drift([np.nan])
    with pytest.raises(ValueError, match="at least 2"):
        estimator.configure(lag=4 * eps).diffusion([1.0])
    with pytest.raises(FastSimulationError, match=r"slow_drift returned shape \(4, 2\)"):
        FastSlowEstimator(step, **{**good, "slow_drift": lambda y, x, t: np.hstack([y, y])}).drift(
            [1.0]
        )
    with pytest.raises(FastSimulationError, match="lift.*first axis"):
        FastSlowEstimator(step, **{**good, "lift": lambda x, n, rng: np.zeros((n + 1, 1))}).drift(
            [1.0]
        )
    with pytest.raises(FastSimulationError, match="returned None"):
        FastSlowEstimator(lambda y, x, t, dt, rng: None, **good).drift([1.0])
    blowup = EulerMaruyama(lambda y, x, t: -(y - x) / eps, eps**-0.5)
    with (
        np.errstate(over="ignore", invalid="ignore"),
        pytest.raises(FastSimulationError, match="blew up"),
    ):
        FastSlowEstimator(blowup, **{**good, "dt": 3 * eps, "burn_in": 3000 * eps}).drift([1.0])
    with pytest.raises(ValueError, match="method must be one of"):
        hmm_integrate(estimator, 1.0, (0, 1), dt=0.1, method="rk4")
    with pytest.raises(ValueError, match="t_end > t0"):
        hmm_integrate(estimator, 1.0, (1, 0), dt=0.1)
    with pytest.raises(ValueError, match="tolerance must be a positive"):
        plan_burst(estimator, [1.0], tolerance=0.0)
    with pytest.raises(ValueError, match="warm_start=False"):
        EffectiveDriftModel(estimator)
    with pytest.raises(ValueError, match="drift\\(\\) needs slow_drift"):
        FastSlowEstimator(step, **{**good, "slow_drift": None, "observable": lambda y, x: y}).drift(
            [1.0]
        )
    with pytest.raises(ValueError, match="stoichiometry"):
        ReactionNetwork([1, -1], lambda y, x, t: y)
    with pytest.raises(ValueError, match="drift returned shape"):
        EulerMaruyama(lambda y, x, t: y[:, :1], 1.0)(np.zeros((3, 2)), 0, 0, 0.1,
                                                      np.random.default_rng(0))
