"""Coarse steady states, continuation and coarse eigenvalues on micro simulators we can solve.

The micro simulator of most tests is the slow-fast system

    x' = lambda + x - y,    y' = (x^3 - y) / eps,

integrated by explicit RK4 steps (or Euler-Maruyama with noise on the fast variable); the
coarse variable is ``x`` and the lift puts ``y`` on the leading slow manifold ``y = x^3``.
Its equilibria are ``lambda = x^3 - x`` exactly (``y = x^3`` makes the fast equation
stationary), with the folds ``lambda = -+2/(3 sqrt 3)`` at ``x = +-1/sqrt 3``. The slow
manifold is ``y = x^3 - 3 eps x^2 (lambda + x - x^3) + O(eps^2)``: its O(eps) correction
vanishes where ``lambda + x - x^3 = 0``, so the lift ``y = x^3`` is exact at every equilibrium
and the coarse fixed points, hence the folds, are exact for every ``eps`` and horizon. The
O(eps) effect of the lift shows elsewhere: in the coarse eigenvalue
``mu = e_x . expm(T J) (1, 3 x^2)`` (``J`` the full Jacobian; ``exp(T (1 - 3x^2))`` only to
O(eps)), which the tests compare with the exact matrix exponential, and in the fixed points
of a naive lift ``y = 0``, shifted by O(eps / T) (a test checks the first-order shift).

References are exact: the roots of ``x^3 - x - lambda``, the matrix exponential of the
linearisation, ``exp(lambda_i T)`` for a linear ODE, the first-order slow-manifold shift.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from mpi4py import MPI
from petsc4py import PETSc

from hmm_fem.equation_free import coarse_eigenvalues, coarse_steady_state, continuation
from hmm_fem.equation_free.steady import (
    MAP_ERROR,
    Branch,
    CoarseSolveError,
    ContinuationError,
)

FOLD = 2 / (3 * math.sqrt(3))


class FoldStepper:
    """RK4 micro steps of the slow-fast system; lift ``y = x^3`` (or ``y = 0``), restrict ``x``."""

    def __init__(self, lam, eps=1e-3, steps_per_eps=2.0, lift="manifold"):
        self.lam, self.eps, self.h, self.lift = lam, eps, eps / steps_per_eps, lift
        self.micro_steps = 0

    def __call__(self, U, t, T):
        lam, eps = self.lam, self.eps
        x = float(U[0])
        y = x**3 if self.lift == "manifold" else 0.0
        n = math.ceil(T / self.h)
        h = T / n

        def f(x, y):
            return lam + x - y, (x**3 - y) / eps

        for _ in range(n):  # one trajectory of two scalars: nothing to vectorise
            a = f(x, y)
            b = f(x + h / 2 * a[0], y + h / 2 * a[1])
            c = f(x + h / 2 * b[0], y + h / 2 * b[1])
            d = f(x + h * c[0], y + h * c[1])
            x += h / 6 * (a[0] + 2 * b[0] + 2 * c[0] + d[0])
            y += h / 6 * (a[1] + 2 * b[1] + 2 * c[1] + d[1])
        self.micro_steps += n
        return np.array([x])


class NoisyFoldStepper:
    """Euler-Maruyama replicas with noise of strength ``sigma`` on the fast variable.

    ``dy = (x^3 - y)/eps dt + sigma sqrt(2/eps) dW`` (stationary spread ``sigma`` around
    ``x^3``); the coarse state is the replica mean of ``x``, with its standard error. The
    stream of call ``c`` is ``default_rng([seed, c])``, ``c`` from a counter shared by all the
    steppers of one run (never the same stream twice).
    """

    def __init__(self, lam, seed, calls, eps=1e-2, sigma=0.1, replicas=100, h=1e-3):
        self.lam, self.seed, self.calls = lam, seed, calls
        self.eps, self.sigma, self.replicas, self.h = eps, sigma, replicas, h
        self.micro_steps = 0
        self.standard_error = 0.0

    def __call__(self, U, t, T):
        lam, eps = self.lam, self.eps
        n = math.ceil(T / self.h)
        h = T / n
        rng = np.random.default_rng([self.seed, next(self.calls)])
        kicks = rng.standard_normal((n, self.replicas)) * (self.sigma * math.sqrt(2 * h / eps))
        x = np.full(self.replicas, float(U[0]))
        y = x**3
        for i in range(n):  # vectorised over the replicas
            x, y = x + h * (lam + x - y), y + h * (x**3 - y) / eps + kicks[i]
        self.micro_steps += n * self.replicas
        self.standard_error = float(np.std(x, ddof=1) / math.sqrt(self.replicas))
        return np.array([x.mean()])


class LinearStepper:
    """RK4 micro steps of ``U' = A U`` (vectorised); the time-T map has eigenvalues ~ e^(a T)."""

    def __init__(self, A, h=0.01):
        self.A, self.h = A, h

    def __call__(self, U, t, T):
        n = math.ceil(T / self.h)
        h, A = T / n, self.A
        U = np.array(U, dtype=float)
        for _ in range(n):
            a = A @ U
            b = A @ (U + h / 2 * a)
            c = A @ (U + h / 2 * b)
            d = A @ (U + h * c)
            U = U + h / 6 * (a + 2 * b + 2 * c + d)
        return U


def exact_coarse_eigenvalue(x, eps, T):
    """``d x(T) / d x(0)`` of the full system linearised at an equilibrium, lift (1, 3x^2)."""
    jacobian = np.array([[1.0, -1.0], [3 * x**2 / eps, -1 / eps]])
    return (scipy.linalg.expm(T * jacobian) @ np.array([1.0, 3 * x**2]))[0]


def no_options_left():
    return not [key for key in PETSc.Options().getAll() if key.startswith("hmm_ef_")]


# -- steady states ------------------------------------------------------------------------------


def test_newton_krylov_finds_the_exact_steady_state_matrix_free():
    lam, T = 0.2, 0.5
    exact = max(r.real for r in np.roots([1, 0, -1, -lam]) if abs(r.imag) < 1e-12)
    stepper = FoldStepper(lam)
    U, report = coarse_steady_state(
        stepper,
        [1.4],
        horizon=T,
        tol=1e-12,
        options={"snes_linesearch_type": "basic"},
        return_report=True,
    )
    assert abs(U[0] - exact) < 1e-11
    assert report.converged_reason.startswith("CONVERGED")
    assert report.newton_iterations <= 5
    # Matrix-free: PETSc's Jacobian is MFFD, and every GMRES iteration is one evaluation
    # of the coarse map (a directional difference), none for assembling a Jacobian.
    assert report.jacobian_type == "mffd"
    assert report.map_evaluations == 1 + report.newton_iterations + report.krylov_iterations
    assert report.micro_steps == stepper.micro_steps == report.map_evaluations * 1000
    assert report.residual_history[-1] <= 1e-12 and not report.noise_limited
    assert report.difference_step == pytest.approx(math.sqrt(MAP_ERROR) * 1.4)
    # Without return_report: the state alone (the API of the issue).
    alone = coarse_steady_state(FoldStepper(lam), [1.4], horizon=T, tol=1e-12)
    assert isinstance(alone, np.ndarray) and abs(alone[0] - exact) < 1e-11
    assert no_options_left()


def test_noise_sets_the_difference_step_and_the_stopping_floor():
    """A contraction ``Phi(U) = U* + M (U - U*)`` plus Gaussian noise of known size."""
    M = np.array([[0.5, 0.2, 0.0], [-0.1, 0.3, 0.1], [0.0, 0.2, -0.4]])
    target = np.array([1.0, -2.0, 0.5])
    s = 1e-4  # standard error of each component

    class Noisy:
        def __init__(self, seed):
            self.rng = np.random.default_rng(seed)
            self.standard_error = s

        def __call__(self, U, t, T):
            return target + M @ (U - target) + s * self.rng.standard_normal(3)

    U0 = np.array([2.0, 0.0, 0.0])
    U, report = coarse_steady_state(Noisy(1), U0, horizon=1.0, tol=1e-12, return_report=True)
    noise = s * math.sqrt(3)
    assert report.noise_level == pytest.approx(noise)
    assert report.noise_limited and report.tolerance == pytest.approx(2 * noise)
    # d = sqrt(noise * |U0|): the optimum of truncation against noise (module docstring).
    assert report.difference_step == pytest.approx(math.sqrt(noise * np.linalg.norm(U0)))
    assert report.line_search == "basic"
    # |Phi(U) - U| <= 2 noise with Phi's own noise: |(M - I)(U - U*)| <= 3 noise, and
    # |(M - I)^-1| < 2.6 bounds the error.
    assert np.linalg.norm(U - target) < 2.6 * 3 * noise
    # The default (noise-blind) step of PETSc, 1.5e-8, makes every Jacobian product noise.
    with pytest.raises(CoarseSolveError, match="did not converge"):
        coarse_steady_state(Noisy(1), U0, horizon=1.0, tol=1e-12, difference_error=1.5e-8)
    assert no_options_left()


@pytest.mark.mpi
def test_a_stepper_that_is_collective_over_ranks():
    """Replicas spread over ranks and reduced inside the stepper: every rank runs the same
    Newton iterations on COMM_SELF, the collective calls line up, the answers agree."""
    comm = MPI.COMM_WORLD

    def stepper(U, t, T):
        replicas = range(comm.rank, 4, comm.size)
        local = sum(
            FoldStepper(0.3, replica_eps)(U, t, T)
            for replica_eps in [1e-3 * (1 + r) for r in replicas]
        )
        return comm.allreduce(local, op=MPI.SUM) / 4

    U, report = coarse_steady_state(stepper, [1.3], horizon=0.5, tol=1e-11, return_report=True)
    exact = max(r.real for r in np.roots([1, 0, -1, -0.3]) if abs(r.imag) < 1e-12)
    assert abs(U[0] - exact) < 1e-10  # every replica has the same equilibrium
    assert len({(float(u), n) for u, n in comm.allgather((U[0], report.map_evaluations))}) == 1


# -- coarse eigenvalues ---------------------------------------------------------------------------


def _sorted(values):
    values = np.asarray(values, dtype=complex)
    return values[np.lexsort((values.imag, -np.round(np.abs(values), 9)))]


def test_dense_eigenvalues_of_a_linear_flow():
    rng = np.random.default_rng(0)
    rates = np.array([-0.2, -0.5 + 2.0j, -0.5 - 2.0j, -1.0, -3.0])
    V = np.eye(5) + 0.3 * rng.standard_normal((5, 5))
    # A real matrix with these eigenvalues: a real block for the complex pair.
    D = np.diag(rates.real)
    D[1, 2], D[2, 1] = 2.0, -2.0
    A = V @ D @ np.linalg.inv(V)
    T = 1.0
    U = rng.standard_normal(5)
    mu = coarse_eigenvalues(LinearStepper(A), U, horizon=T, k=5)
    assert mu.shape == (5,)
    assert np.abs(mu) == pytest.approx(np.sort(np.abs(mu))[::-1])
    np.testing.assert_allclose(_sorted(mu), _sorted(np.exp(rates * T)), rtol=1e-6, atol=1e-9)
    # sigma = log(mu) / T recovers the rates of the flow (principal branch, |Im| < pi / T).
    np.testing.assert_allclose(_sorted(np.log(mu) / T), _sorted(rates), rtol=1e-6)
    central = coarse_eigenvalues(LinearStepper(A), U, horizon=T, k=2, difference="central")
    np.testing.assert_allclose(np.abs(central), np.exp(np.array([-0.2, -0.5]) * T), rtol=1e-8)


def test_slepc_eigenvalues_of_a_larger_linear_flow():
    pytest.importorskip("slepc4py")
    rng = np.random.default_rng(1)
    n = 40
    rates = -np.linspace(0.1, 4.0, n)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V = Q + 0.2 * rng.standard_normal((n, n)) / math.sqrt(n)  # not normal
    A = V @ np.diag(rates) @ np.linalg.inv(V)
    T = 1.0
    U = rng.standard_normal(n)
    mu = coarse_eigenvalues(LinearStepper(A), U, horizon=T, k=4, method="slepc")
    np.testing.assert_allclose(mu.real, np.exp(rates[:4] * T), rtol=1e-6)
    assert np.all(np.abs(mu.imag) < 1e-9)
    dense = coarse_eigenvalues(LinearStepper(A), U, horizon=T, k=4, method="dense")
    np.testing.assert_allclose(mu, dense, rtol=1e-6)
    assert no_options_left()


# -- continuation and folds -----------------------------------------------------------------------


def test_continuation_rounds_both_folds_of_the_s_shaped_branch():
    eps, T = 1e-3, 0.5
    branch = continuation(
        lambda lam: FoldStepper(lam, eps), [-1.2], -0.6, 0.6, horizon=T, step=0.05, tol=1e-10
    )
    x, lam = branch.states[:, 0], branch.parameters
    assert branch.stop_reason.startswith("passed lam_end")
    # Every point is an equilibrium of the full system.
    assert np.max(np.abs(lam - (x**3 - x))) < 1e-8
    # Both folds, located to far better than the 1e-4 asked for (exact: see the module doc).
    assert len(branch.folds) == 2
    np.testing.assert_allclose(branch.fold_parameters, [FOLD, -FOLD], atol=1e-8)
    np.testing.assert_allclose(np.abs(branch.fold_states[:, 0]), 1 / math.sqrt(3), atol=1e-5)
    # At a fold the lift direction (1, 3x^2) = (1, 1) is the null vector of the full Jacobian:
    # the coarse eigenvalue is exactly 1.
    np.testing.assert_allclose(branch.fold_eigenvalues[:, 0], 1.0, atol=1e-5)
    # The leading coarse eigenvalue is the exact linearisation of the full system.
    exact = np.array([exact_coarse_eigenvalue(xi, eps, T) for xi in x])
    np.testing.assert_allclose(branch.eigenvalues[:, 0].real, exact, rtol=0, atol=1e-6)
    # ... which crosses 1 at each fold: stable outer branches, unstable middle branch.
    reduced = 1 - 3 * x**2  # d/dx of the slow equation; the sign decides away from the folds
    clear = np.abs(reduced) > 0.05
    assert np.array_equal(branch.stable[clear], reduced[clear] < 0)
    first, second = branch.folds
    assert np.all(~branch.stable[first + 1 : second])
    assert branch.stable[first - 1] and branch.stable[second + 1]
    assert branch.micro_steps == branch.map_evaluations * 1000


def test_a_naive_lift_shifts_the_fold_by_order_eps_over_horizon():
    """Lift ``y = 0``: the fast transient adds ``eps x^3`` to ``x(T)``, so the coarse fixed
    points are ``lambda = (1 - eps/T) x^3 - x + O(eps^2)``, with the folds at
    ``+-FOLD / sqrt(1 - eps/T)``; here 3.9e-4 away from the exact ones."""
    eps, T = 1e-3, 0.5
    branch = continuation(
        lambda lam: FoldStepper(lam, eps, lift="zero"),
        [-1.2],
        -0.6,
        0.6,
        horizon=T,
        step=0.05,
        tol=1e-10,
    )
    shifted = FOLD / math.sqrt(1 - eps / T)
    np.testing.assert_allclose(branch.fold_parameters, [shifted, -shifted], atol=1e-5)
    assert np.all(np.abs(np.abs(branch.fold_parameters) - FOLD) > 3e-4)


@pytest.mark.parametrize("seed", [3, 4])
def test_noisy_fold_lies_in_its_confidence_interval(seed):
    """Noise of strength sigma = 0.1 on the fast variable, 100 replicas per evaluation.

    Each fold parameter comes with the standard error of the least-squares parabola
    ``lambda(p)`` through 9 corrector solutions (6 degrees of freedom), and the exact fold
    must lie in the two-sided 99.9% interval ``+- t(0.9995, 6) SE = +- 5.96 SE`` (SE ~ 1e-3).
    Checked before trusting it, over seeds 0-39 (80 folds): every seed passes; the errors
    divided by their SE have a standard deviation of 0.83 (Student's t(6): 1.22), 2 of 80
    lie outside the 95% interval and none outside the 99% one: the interval is honest, if
    anything conservative. The suite runs two seeds. The
    noise biases the coarse map by ``3 x Var(x) ~ 1e-4`` (Var(x) ~ sigma^2 eps T per
    replica), far below the standard errors.
    """
    calls = itertools.count()
    branch = continuation(
        lambda lam: NoisyFoldStepper(lam, seed, calls),
        [-1.2],
        -0.6,
        0.6,
        horizon=0.5,
        step=0.05,
        tol=1e-10,
    )
    assert branch.noise_level > 0
    assert len(branch.folds) == 2
    errors = branch.fold_standard_errors
    assert np.all(errors > 0) and np.all(errors < 0.01)  # an interval, not a vacuous one
    half_width = scipy.stats.t.ppf(0.9995, 6) * errors
    assert np.all(np.abs(branch.fold_parameters - [FOLD, -FOLD]) <= half_width)
    x = branch.states[:, 0]
    clear = np.abs(1 - 3 * x**2) > 0.3
    assert np.array_equal(branch.stable[clear], (1 - 3 * x**2)[clear] < 0)


# -- bad inputs -----------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    good = FoldStepper(0.0)
    with pytest.raises(TypeError, match="stepper must be callable"):
        coarse_steady_state(object(), [1.0], horizon=1.0)
    with pytest.raises(ValueError, match="U0 has non-finite"):
        coarse_steady_state(good, [np.nan], horizon=1.0)
    with pytest.raises(ValueError, match="U0 is empty"):
        coarse_steady_state(good, [], horizon=1.0)
    with pytest.raises(ValueError, match="horizon must be a positive"):
        coarse_steady_state(good, [1.0], horizon=0.0)
    with pytest.raises(ValueError, match="tol must be a positive"):
        coarse_steady_state(good, [1.0], horizon=1.0, tol=-1)
    with pytest.raises(ValueError, match=r"shape \(2,\) for a coarse state of shape \(1,\)"):
        coarse_steady_state(lambda U, t, T: np.zeros(2), [1.0], horizon=1.0)
    with pytest.raises(CoarseSolveError, match="non-finite values"):
        coarse_steady_state(lambda U, t, T: U * np.nan, [1.0], horizon=1.0)
    with pytest.raises(ValueError, match="standard_error"):

        class Negative:
            standard_error = -1.0

            def __call__(self, U, t, T):
                return U

        coarse_steady_state(Negative(), [1.0], horizon=1.0)

    def broken(U, t, T):
        raise RuntimeError("the micro simulator crashed")

    with pytest.raises(RuntimeError, match="micro simulator crashed"):  # the original error
        coarse_steady_state(broken, [1.0], horizon=1.0)
    with pytest.raises(CoarseSolveError, match="DIVERGED_MAX_IT") as failure:
        coarse_steady_state(FoldStepper(0.0), [3.0], horizon=0.5, tol=1e-12, max_iterations=1)
    assert failure.value.reason.startswith("DIVERGED_MAX_IT")
    assert len(failure.value.residual_history) == 2

    with pytest.raises(ValueError, match="k must be an integer in \\[1, 1\\]"):
        coarse_eigenvalues(good, [1.0], horizon=1.0, k=2)
    with pytest.raises(ValueError, match="method must be"):
        coarse_eigenvalues(good, [1.0], horizon=1.0, method="arpack")
    with pytest.raises(ValueError, match="SLEPc needs k < n - 1"):
        coarse_eigenvalues(good, [1.0], horizon=1.0, k=1, method="slepc")

    make = lambda lam: FoldStepper(lam)  # noqa: E731
    with pytest.raises(ValueError, match="lam0 and lam_end must be finite and different"):
        continuation(make, [1.0], 0.1, 0.1, horizon=1.0, step=0.1)
    with pytest.raises(ValueError, match="step must be a positive"):
        continuation(make, [1.0], 0.0, 1.0, horizon=1.0, step=0.0)
    with pytest.raises(ValueError, match="min_step <= step <= max_step"):
        continuation(make, [1.0], 0.0, 1.0, horizon=1.0, step=0.1, max_step=0.05)
    with pytest.raises(TypeError, match="make_stepper must be callable"):
        continuation(None, [1.0], 0.0, 1.0, horizon=1.0, step=0.1)
    with pytest.raises(TypeError, match=r"make_stepper\(0.0\) returned float"):
        continuation(lambda lam: lam, [1.0], 0.0, 1.0, horizon=1.0, step=0.1)
    assert no_options_left()


def test_continuation_reports_a_step_that_collapses():
    """A map whose fixed point disappears beyond lambda = 0.2: the step halves to min_step,
    the error says where, and the branch so far comes with it."""

    class Cliff:
        def __init__(self, lam):
            self.lam = lam

        def __call__(self, U, t, T):
            if self.lam > 0.2:
                return U * np.nan
            return 0.5 * U + self.lam

    with pytest.raises(ContinuationError, match="fell below min_step") as failure:
        continuation(Cliff, [0.0], 0.0, 1.0, horizon=1.0, step=0.05)
    branch = failure.value.branch
    assert len(branch.parameters) >= 3 and branch.parameters.max() <= 0.2
    np.testing.assert_allclose(branch.states[:, 0], 2 * branch.parameters, atol=1e-8)
    assert no_options_left()


def test_the_tools_drive_the_coarse_time_stepper():
    """coarse_steady_state and continuation on hmm-fem's own CoarseTimeStepper (lift
    ``y = x^3``, RK4 micro steps, restrict ``x``): the exact fixed point and both folds."""
    from hmm_fem.equation_free import CoarseTimeStepper

    eps, T = 1e-2, 0.2

    def make(lam):
        def f(z):
            return np.array([lam + z[0] - z[1], (z[0] ** 3 - z[1]) / eps])

        def micro_step(z, t, h, rng):
            a = f(z)
            b = f(z + h / 2 * a)
            c = f(z + h / 2 * b)
            return z + h / 6 * (a + 2 * b + 2 * c + f(z + h * c))

        return CoarseTimeStepper(
            lambda U, rng: np.array([U[0], U[0] ** 3]),
            micro_step,
            lambda z: z[:1],
            dt=eps / 2,
            burst_time=eps,
            comm=MPI.COMM_SELF,
        )

    exact = max(r.real for r in np.roots([1, 0, -1, -0.2]) if abs(r.imag) < 1e-12)
    U = coarse_steady_state(make(0.2), [1.4], horizon=T, tol=1e-11)
    assert abs(U[0] - exact) < 1e-10
    branch = continuation(make, [-1.2], -0.6, 0.6, horizon=T, step=0.05, tol=1e-10)
    assert len(branch.folds) == 2
    np.testing.assert_allclose(branch.fold_parameters, [FOLD, -FOLD], atol=1e-8)


def test_stability_changes_keep_only_folds_where_the_stability_changes():
    # A branch built by hand: stable up to a noise-induced turn (fold at point 2, stable on
    # both sides), on to a true fold at point 5 (the |mu| ~ 1 point itself, by noise, on
    # the wrong side), back along the unstable branch.
    stability = ["stable"] * 5 + ["stable", "unstable"] + ["unstable"] * 3
    m = len(stability)
    branch = Branch(
        parameters=np.linspace(0, 1, m), states=np.zeros((m, 1)),
        eigenvalues=np.zeros((m, 1)), stability=stability, arclength=np.arange(m, dtype=float),
        folds=[2, 5], fold_parameters=np.array([0.2, 0.55]),
    )
    assert branch.stability_changes() == [1]
    # Noise-induced folds only: none counts; a single tied segment counts neither way.
    branch.stability = ["stable"] * m
    assert branch.stability_changes() == []
    branch.stability = ["stable", "unstable"] * (m // 2)
    branch.folds = [4]
    assert branch.stability_changes() == []
