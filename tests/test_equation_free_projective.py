"""The coarse time-stepper and projective integration against independent references.

References: the Lambert-W solution on the slow manifold of Michaelis-Menten kinetics
(the EquationFreeGit example) and its first-order correction in epsilon; a tight
``solve_ivp`` solution of the full system; exponentials of a linear slow-fast system whose
slow manifold is exactly ``y = x``; the exact expectation (matrix powers) of a linear
stochastic micro scheme.
"""

import math

import numpy as np
import pytest
from mpi4py import MPI
from scipy.integrate import solve_ivp
from scipy.special import lambertw
from scipy.stats import chi2

from hmm_fem.equation_free import CoarseTimeStepper, projective_integrate
from hmm_fem.equation_free.stepper import MicroSimulationError


def rk4(rhs, z, h):
    k1 = rhs(z)
    k2 = rhs(z + 0.5 * h * k1)
    k3 = rhs(z + 0.5 * h * k2)
    k4 = rhs(z + h * k3)
    return z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def michaelis_menten(eps, *, manifold_order=0, healing=1.0, burst=1.0, **options):
    """x' = -x + (x + 1/2) y, y' = (x - (x + 1) y) / eps; coarse state x.

    The lift puts y on the slow manifold y = h(x) = x/(1+x) + eps x/(2(1+x)^4) + O(eps^2)
    (to order ``manifold_order``); micro steps are classical RK4 steps of eps/10.
    """

    def rhs(z):
        x, y = z
        return np.array([-x + (x + 0.5) * y, (x - (x + 1) * y) / eps])

    def lift(U, rng):
        x = U[0]
        y = x / (1 + x) + (eps * x / (2 * (1 + x) ** 4) if manifold_order else 0.0)
        return np.array([x, y])

    stepper = CoarseTimeStepper(
        lift,
        lambda z, t, h, rng: rk4(rhs, z, h),
        lambda z: z[:1],
        dt=eps / 10,
        burst_time=burst * eps,
        healing_time=healing * eps,
        **options,
    )
    return stepper, lift, rhs


def linear_slow_fast(eps, *, healing=0.0, burst_steps=4, **options):
    """x' = -y, y' = -(y - x)/eps - x: the slow manifold is exactly y = x, where x' = -x."""

    def rhs(z):
        x, y = z
        return np.array([-y, -(y - x) / eps - x])

    return CoarseTimeStepper(
        lambda U, rng: np.array([U[0], U[0]]),
        lambda z, t, h, rng: rk4(rhs, z, h),
        lambda z: z[:1],
        dt=eps / 10,
        burst_time=burst_steps * eps / 10,
        healing_time=healing,
        **options,
    )


def slow_manifold_solution(t):
    """x + ln x = 1 - t/2 from x(0) = 1 on y = x/(1+x): x = W(e^(1 - t/2))."""
    return lambertw(np.exp(1.0 - 0.5 * np.asarray(t))).real


def test_lambert_w_solves_the_reduced_equation():
    # The reference itself: x' = -x + (x + 1/2) x/(1+x) = -x / (2 (1+x)).
    t = np.linspace(0, 6, 13)
    reduced = solve_ivp(
        lambda t, x: -x / (2 * (1 + x)), (0, 6), [1.0], t_eval=t, rtol=1e-12, atol=1e-14
    )
    assert np.abs(reduced.y[0] - slow_manifold_solution(t)).max() < 1e-9


def test_michaelis_menten_follows_the_slow_manifold_to_order_eps():
    # The full dynamics leaves the leading-order slow manifold by eps*h1(x), h1 =
    # x/(2(1+x)^4): x drifts from the Lambert-W solution by eps*d1(t) with
    # d1' = f0'(x) d1 + (x + 1/2) h1(x), d1(0) = 0. The error must be O(eps) with at most
    # that constant: ten times smaller for eps ten times smaller.
    t = np.linspace(0, 6, 13)

    def first_order(t, d):
        x = slow_manifold_solution(t)
        return -d / (2 * (1 + x) ** 2) + (x + 0.5) * x / (2 * (1 + x) ** 4)

    d1 = solve_ivp(first_order, (0, 6), [0.0], t_eval=t, rtol=1e-10, atol=1e-12).y[0]
    errors = {}
    for eps in (1e-2, 1e-3):
        stepper, _, _ = michaelis_menten(eps)
        times, states = projective_integrate(stepper, [1.0], t, method="PIRK4")
        assert np.array_equal(times, t) and states.shape == (13, 1)
        errors[eps] = np.abs(states[:, 0] - slow_manifold_solution(t)).max()
        assert errors[eps] <= 1.5 * eps * np.abs(d1).max(), (eps, errors[eps])
    assert 7 < errors[1e-2] / errors[1e-3] < 14, errors


def test_michaelis_menten_eps_0p1_matches_the_full_system_for_a_fifth_of_the_micro_steps():
    # Coarse variable x, y lifted onto the slow manifold to O(eps^2): each lift then shifts
    # x by only O(eps^3) while y heals. Reference: the full 2D system from the lifted
    # initial state, solved to rtol 1e-11.
    eps = 0.1
    t = np.linspace(0, 6, 5)
    stepper, lift, rhs = michaelis_menten(eps, manifold_order=1, healing=0.2, burst=0.2)
    result = projective_integrate(stepper, [1.0], t, method="PIRK4", projective_step=1.5)
    times, states = result
    full = solve_ivp(
        lambda t, z: rhs(z),
        (0, 6),
        lift([1.0], None),
        t_eval=t,
        rtol=1e-11,
        atol=1e-13,
        method="DOP853",
    )
    error = np.abs(states[:, 0] - full.y[0]).max()
    assert error <= 1e-3, error
    report = result.report
    assert report.micro_steps == stepper.micro_steps
    # The full micro run over [0, 6] costs what the report says, and is itself accurate.
    before = stepper.micro_steps
    x_full = stepper([1.0], 0.0, 6.0)
    assert stepper.micro_steps - before == report.full_run_micro_steps == 600
    assert abs(x_full[0] - full.y[0, -1]) < 1e-7
    assert report.saving >= 5, str(report)
    assert report.accepted_steps == 4 and report.bursts == 16 and report.direct_steps == 0


@pytest.mark.parametrize("method, order", [("PFE", 1), ("PIRK2", 2), ("PIRK4", 4)])
def test_projective_schemes_converge_at_their_order(method, order):
    # Exact slow manifold and a lag of 2e-6: the burst's own error (the O(eps)-type floor,
    # lag * step) stays far below the scheme's error, so halving the step divides the
    # error by 2^order.
    errors = []
    for step in (0.5, 0.25, 0.125):
        stepper = linear_slow_fast(1e-5)
        times, states = projective_integrate(
            stepper, [1.0], [0.0, 1.0, 2.0], method=method, projective_step=step
        )
        errors.append(np.abs(states[:, 0] - np.exp(-times)).max())
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(rates > order - 0.3) and order - 0.25 < rates[-1] < order + 0.5, rates


def test_burst_estimates_the_state_and_derivative_at_the_window_centre():
    stepper = linear_slow_fast(1e-3, healing=0.01, burst_steps=200)  # burst 0.02
    burst = stepper.burst([2.0], 0.3)
    assert burst.start_time == 0.3 and burst.end_time == pytest.approx(0.33, abs=1e-12)
    assert burst.time == pytest.approx(0.32, abs=1e-12) and burst.lag == pytest.approx(0.02)
    exact = 2.0 * math.exp(-0.02)
    # The window mean is x(centre) (1 + w^2/24) and the slope -x(centre) (1 + w^2/40).
    assert burst.state[0] == pytest.approx(exact, rel=1e-4)
    assert burst.derivative[0] == pytest.approx(-exact, rel=1e-4)
    assert burst.end_state[0] == pytest.approx(2.0 * math.exp(-0.03), rel=1e-10)
    assert burst.sample_times.shape == (201,) and burst.samples.shape == (201, 1)
    assert burst.micro_steps == 300 == stepper.micro_steps
    # One replica: the residual standard errors measure the misfit of a line to
    # x_c e^(-s), whose residuals are those of its quadratic term x_c s^2/2.
    s = burst.sample_times - burst.time
    q = s**2 - np.mean(s**2)
    misfit = 0.5 * exact * math.sqrt(q @ q / (len(s) - 2))
    assert burst.derivative_error[0] == pytest.approx(misfit / math.sqrt(s @ s), rel=1e-2)
    assert burst.state_error[0] == pytest.approx(misfit / math.sqrt(len(s)), rel=1e-2)
    # The coarse map: exact exponential decay on the slow manifold.
    U = stepper([2.0], 0.3, 0.25)
    assert U[0] == pytest.approx(2.0 * math.exp(-0.25), rel=1e-10)
    assert np.array_equal(stepper.standard_error, [0.0])
    assert stepper([2.0], 0.3, 0.0)[0] == 2.0  # restrict(lift(U)) = U


def test_in_place_micro_steps_and_restriction_views_are_safe():
    def halve(z, t, h, rng):
        z *= 0.5  # in place
        return z

    stepper = CoarseTimeStepper(
        lambda U, rng: np.array([U[0], 0.0]), halve, lambda z: z[:1], dt=1.0, burst_time=3.0
    )
    U = np.array([8.0])
    burst = stepper.burst(U, 0.0)
    assert np.array_equal(burst.samples[:, 0], [8.0, 4.0, 2.0, 1.0]) and U[0] == 8.0


def test_adaptive_steps_meet_the_tolerance_and_report_every_step():
    for method in ("PFE", "PIRK2", "PIRK4"):
        errors, accepted = [], []
        for rtol in (1e-3, 1e-5):
            stepper = linear_slow_fast(1e-5)
            result = projective_integrate(stepper, [1.0], [0.0, 4.0], method=method, rtol=rtol)
            times, states = result
            report = result.report
            errors.append(np.abs(states[:, 0] - np.exp(-times)).max())
            kinds = [s.kind for s in report.steps]
            assert kinds.count("projective") == report.accepted_steps
            assert kinds.count("rejected") == report.rejected_steps
            assert kinds.count("direct") == report.direct_steps == 0
            assert all(s.error <= 1 for s in report.steps if s.kind == "projective")
            assert all(s.error > 1 for s in report.steps if s.kind == "rejected")
            # Two output times: every accepted step is returned.
            assert len(times) == report.accepted_steps + 1 and times[-1] == 4.0
            steps = np.array([s.step for s in report.steps if s.kind == "projective"])
            assert np.allclose(np.cumsum(steps), times[1:])
            accepted.append(report.accepted_steps)
        # The tolerance sets the error: a local error estimate of order q in the step,
        # for a scheme of order p, gives a global error ~ rtol^(p/q): PFE 1/2, PIRK2 2/2
        # (the PFE estimate, local extrapolation), PIRK4 4/5 (step doubling).
        exponent = {"PFE": 1 / 2, "PIRK2": 1.0, "PIRK4": 4 / 5}[method]
        assert max(errors) < 20 * 1e-3, (method, errors)
        assert errors[0] / errors[1] == pytest.approx(100**exponent, rel=0.5), (method, errors)
        assert accepted[1] > accepted[0]


def test_pig_drives_scipy_integrators_with_aligned_derivatives():
    for method in ("RK45", "LSODA"):
        stepper = linear_slow_fast(1e-5)
        t = np.linspace(0, 2, 5)
        result = projective_integrate(stepper, [1.0], t, method=method, rtol=1e-6, atol=1e-9)
        times, states = result
        assert np.array_equal(times, t)
        assert np.abs(states[:, 0] - np.exp(-t)).max() < 1e-4, method
        assert result.report.bursts == len(result.report.derivatives) > 0
    # A lag of about 0.05: a burst's derivative belongs to t + lag, so without alignment
    # the integrator solves x' = -e^(-lag) x; cdmc projects back and aligns it.
    errors = {}
    for cdmc in (False, True):
        stepper = linear_slow_fast(1e-2, healing=0.05)
        lag = stepper.burst([1.0], 0.0).lag
        times, states = projective_integrate(
            stepper, [1.0], [0.0, 1.0], method="RK45", rtol=1e-7, atol=1e-9, cdmc=cdmc
        )
        errors[cdmc] = abs(states[-1, 0] - math.exp(-1.0))
    assert errors[False] == pytest.approx(math.exp(-math.exp(-lag)) - math.exp(-1), rel=1e-2)
    assert errors[True] < errors[False] / 10, errors


def noisy_linear(eps, sigma, **options):
    """The linear slow-fast system with noise of strength sigma on the fast variable.

    Euler-Maruyama steps z <- (I + h M) z + (0, sigma sqrt(h/eps) xi): the expected micro
    state after k steps of dt is exactly A^k z0, A = I + dt M (returned with the stepper).
    """
    dt = eps / 10
    M = np.array([[0.0, -1.0], [1 / eps - 1, -1 / eps]])

    def micro_step(z, t, h, rng):
        drift = z + h * (M @ z)
        return drift + np.array([0.0, sigma * math.sqrt(h / eps) * rng.standard_normal()])

    stepper = CoarseTimeStepper(
        lambda U, rng: np.array([U[0], U[0]]), micro_step, lambda z: z[:1], dt=dt, **options
    )
    return stepper, np.eye(2) + dt * M  # a burst's steps are of dt exactly


def test_derivative_standard_error_is_consistent_with_the_exact_expectation():
    # The noise is linear and Gaussian: the mean and variance of the burst's estimates are
    # exact closed forms, against which the estimates and their standard errors are checked.
    eps, sigma, U0 = 0.01, 0.1, 1.0
    estimates = {8: [], 32: []}
    errors = {8: [], 32: []}
    for replicas in estimates:
        for seed in range(20):
            stepper, A = noisy_linear(
                eps, sigma, burst_time=5 * eps, healing_time=2 * eps, replicas=replicas, seed=seed
            )
            burst = stepper.burst([U0], 0.0)
            estimates[replicas].append((burst.state[0], burst.derivative[0]))
            errors[replicas].append((burst.state_error[0], burst.derivative_error[0]))
    # Samples x_k (k micro steps after the lift, k = 20..70) enter the fitted state and
    # slope with the weights 1/n and s_k / sum(s^2); the noise xi_j of step j enters x_k
    # as (A^(k-j) b)_x xi_j, b = (0, sigma sqrt(dt/eps)).
    k = np.arange(20, 71)
    powers = [np.linalg.matrix_power(A, m) for m in range(71)]
    expected_x = np.array([powers[j][0] @ [U0, U0] for j in k])
    s = (k - k.mean()) * eps / 10
    weights = np.array([np.full(k.size, 1 / k.size), s / (s @ s)])  # (state, derivative)
    expected = weights @ expected_x
    assert expected[1] == pytest.approx(-math.exp(-4.5 * eps), rel=1e-3)  # the slow rate
    response = np.array([powers[m][0] @ [0.0, sigma * math.sqrt(0.1)] for m in range(71)])
    coefficients = np.array(
        [[w[k >= j] @ response[k[k >= j] - j] for j in range(1, 71)] for w in weights]
    )
    deviation = np.sqrt((coefficients**2).sum(axis=1))  # of one replica's estimates
    for replicas in estimates:
        estimate, error = np.array(estimates[replicas]), np.array(errors[replicas])
        assert np.all(np.abs(estimate - expected) < 4 * error), replicas
        # Exact z-scores: the sum of 20 squares is chi-square(20).
        squares = (((estimate - expected) / (deviation / math.sqrt(replicas))) ** 2).sum(axis=0)
        low, high = chi2.ppf(2.5e-4, 20), chi2.ppf(1 - 2.5e-4, 20)
        assert np.all((low < squares) & (squares < high)), (replicas, squares)
        # The standard error is deviation / sqrt(replicas): E[sample sd] = c4 * deviation,
        # and the mean over 20 seeds of a sample sd of n = replicas fluctuates by about
        # 1/sqrt(2 (n - 1) 20).
        n = replicas
        c4 = math.sqrt(2 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))
        ratio = error.mean(axis=0) / (c4 * deviation / math.sqrt(n))
        assert np.all(np.abs(ratio - 1) < 3.5 / math.sqrt(2 * (n - 1) * 20)), (n, ratio)


def test_a_tolerance_below_the_noise_is_warned_about():
    stepper, _ = noisy_linear(0.01, 0.1, burst_time=0.03, healing_time=0.01, replicas=4)
    with pytest.warns(RuntimeWarning, match="noise of the derivative estimates alone exceeds"):
        result = projective_integrate(stepper, [1.0], [0.0, 1.0], method="PIRK2", rtol=1e-6)
    noisy = [s for s in result.report.steps if s.noise is not None and s.noise > 1]
    assert noisy and all(s.error is not None for s in noisy)


@pytest.mark.mpi
def test_ensemble_gives_the_same_numbers_on_any_number_of_ranks():
    # Every rank also runs the whole ensemble alone (COMM_SELF): equal to the last bit.
    def run(comm, replicas):
        stepper, _ = noisy_linear(
            0.01, 0.1, burst_time=0.03, healing_time=0.01, replicas=replicas, seed=7, comm=comm
        )
        mapped = stepper([1.0], 0.0, 0.05)
        error = stepper.standard_error.copy()
        burst = stepper.burst([0.9], 0.1)
        times, states = projective_integrate(
            stepper, [1.0], [0.0, 0.5, 1.0], method="PIRK2", projective_step=0.25
        )
        return [
            mapped,
            error,
            burst.state,
            burst.derivative,
            burst.derivative_error,
            burst.samples,
            times,
            states,
            np.array(stepper.micro_steps),
        ]

    for replicas in (5, 1):
        parallel, serial = run(MPI.COMM_WORLD, replicas), run(MPI.COMM_SELF, replicas)
        for a, b in zip(parallel, serial, strict=True):
            assert np.array_equal(a, b), (replicas, a, b)
    assert not np.array_equal(run(MPI.COMM_SELF, 5)[0], run(MPI.COMM_SELF, 4)[0])


@pytest.mark.mpi
def test_a_failing_replica_raises_on_every_rank_and_is_named():
    # The replica whose lift draws the largest number blows up after t = 0.02.
    draws = [np.random.default_rng([3, r, 0]).random() for r in range(4)]
    failing = int(np.argmax(draws))

    def lift(U, rng):
        return np.array([U[0], rng.random()])

    def micro_step(z, t, h, rng):
        return z * np.inf if (z[1] == max(draws) and t >= 0.02) else z

    stepper = CoarseTimeStepper(
        lift, micro_step, lambda z: z[:1], dt=0.01, burst_time=0.05, replicas=4, seed=3
    )
    with pytest.raises(MicroSimulationError, match=rf"non-finite.*replica {failing} at t = 0\.03"):
        stepper.burst([1.0], 0.0)


def test_bad_inputs_are_refused_with_a_clear_message():
    step = lambda z, t, h, rng: z  # noqa: E731
    lift = lambda U, rng: np.array([U[0], 0.0])  # noqa: E731
    restrict = lambda z: z[:1]  # noqa: E731

    def make(**kw):
        options = dict(dt=0.1, burst_time=0.5) | kw
        return CoarseTimeStepper(lift, step, restrict, **options)

    for kw, pattern in [
        ({"dt": 0.0}, "dt must be a positive"),
        ({"dt": -1.0}, "dt must be a positive"),
        ({"burst_time": 0.0}, "burst_time must be a positive"),
        ({"burst_time": 0.04, "healing_time": 0.03}, r"healing_time \+ burst_time .* one micro"),
        ({"burst_time": 0.05, "healing_time": 0.5}, "burst_time = 0.05 is shorter than one"),
        ({"healing_time": -0.1}, "healing_time must be"),
        ({"replicas": 0}, "replicas must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"fit_window": 1.0}, "fit_window = 1 is longer than burst_time"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            make(**kw)
    with pytest.raises(TypeError, match="restrict must be callable"):
        CoarseTimeStepper(lift, step, None, dt=0.1, burst_time=0.5)

    stepper = make()
    with pytest.raises(ValueError, match="T must be a finite time >= 0"):
        stepper([1.0], 0.0, -1.0)
    with pytest.raises(ValueError, match="non-finite"):
        stepper([np.nan], 0.0, 1.0)

    blowup = CoarseTimeStepper(
        lift,
        lambda z, t, h, rng: z + (np.nan if t > 0.15 else 0.0),
        restrict,
        dt=0.1,
        burst_time=0.5,
        replicas=3,
    )
    with pytest.raises(
        MicroSimulationError,
        match=r"non-finite micro state for replica 0 at "
        r"t = 0\.3 \(step from t = 0\.2\)",
    ):
        blowup([1.0], 0.0, 1.0)
    # x falls by 0.3 a step; the restriction (a square root) fails once x < 0.
    negative = CoarseTimeStepper(
        lift,
        lambda z, t, h, rng: z - 0.3,
        lambda z: np.where(z[:1] >= 0, z[:1], np.nan),
        dt=0.1,
        burst_time=0.5,
        replicas=2,
    )
    with pytest.raises(
        MicroSimulationError,
        match=r"restrict returned non-finite values \[nan\] "
        r"for replica 0 at t = 0\.4",
    ):
        negative.burst([1.0], 0.0)
    wrong = CoarseTimeStepper(lift, step, lambda z: z, dt=0.1, burst_time=0.5)
    with pytest.raises(MicroSimulationError, match=r"restrict returned shape \(2,\).*shape \(1,\)"):
        wrong.burst([1.0], 0.0)
    growing = CoarseTimeStepper(
        lift, lambda z, t, h, rng: np.append(z, 0.0), restrict, dt=0.1, burst_time=0.5
    )
    with pytest.raises(MicroSimulationError, match=r"changed the micro state's shape"):
        growing([1.0], 0.0, 1.0)
    forgetful = CoarseTimeStepper(lift, lambda z, t, h, rng: None, restrict, dt=0.1, burst_time=0.5)
    with pytest.raises(MicroSimulationError, match="micro_step returned None"):
        forgetful([1.0], 0.0, 1.0)
    raising = CoarseTimeStepper(lift, lambda z, t, h, rng: z[5], restrict, dt=0.1, burst_time=0.5)
    with pytest.raises(MicroSimulationError, match="micro_step raised IndexError") as info:
        raising([1.0], 0.0, 1.0)
    assert isinstance(info.value.__cause__, IndexError)

    with pytest.raises(ValueError, match="unknown method 'RK5'"):
        projective_integrate(stepper, [1.0], [0, 1], method="RK5")
    with pytest.raises(ValueError, match="strictly increasing"):
        projective_integrate(stepper, [1.0], [1, 0])
    with pytest.raises(ValueError, match="at least two"):
        projective_integrate(stepper, [1.0], [0])
    with pytest.raises(ValueError, match="rtol must be positive"):
        projective_integrate(stepper, [1.0], [0, 1], rtol=-1e-3)
    with pytest.raises(ValueError, match="ivp_options apply to the scipy"):
        projective_integrate(stepper, [1.0], [0, 1], ivp_options={"rtol": 1})
    with pytest.raises(TypeError, match="no burst"):
        projective_integrate(lambda U, t, T: U, [1.0], [0, 1])
