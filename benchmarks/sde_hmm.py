"""Benchmark: the HMM for a fast-slow SDE against direct simulation, at equal accuracy.

The averaging example of E, Liu & Vanden-Eijnden (2005) at eps = 1e-3:

    dX = (-Y^3 + cos(pi t) + sin(sqrt(2) pi t)) dt,   dY = -(Y - X)/eps dt + eps^(-1/2) dW,

X(0) = 2 (Y(0) = 2), 0 <= t <= T = 3. Reference: the averaged equation
dX/dt = -(X^3 + 3X/2) + cos(pi t) + sin(sqrt(2) pi t) (Y ~ N(X, 1/2) for frozen X),
integrated by solve_ivp to 1e-12. Accuracy: the root-mean-square error of X(T) against the
reference over independent runs.

* Direct simulation: Euler-Maruyama of the full system with dt = eps/20 (it resolves the
  fast scale), one path per run; the RMS error over 256 paths run side by side (and of the
  means of 16 groups of 16). Its seconds are those of one path run alone (a loop of
  vector operations costs about as much at width 1 as at width 256, so the 256-wide run
  is not divided by 256).
* HMM (hmm_fem.micro.sde): the same Euler-Maruyama fast solver with dt = eps/20 in bursts
  with X frozen, warm starts, explicit Euler or Heun macro steps; a ladder of settings
  (replicas, burn-in, window, macro step), each run with ``--seeds`` seeds; the RMS error
  over the seeds (its own relative uncertainty is about 1/sqrt(2 seeds), 20 % with 12).
  No error propagation (its Jacobian bursts only give error bars).

Cost: fast steps (micro steps of the fast variable, summed over replicas or paths; the
figure that does not depend on the machine) and seconds. Accuracy levels: (1) that of one
direct path, whose error is dominated by the O(sqrt(eps)) fluctuations of X; (2) that of
the mean of 16 paths (a quarter in theory, at 16 times the fast steps, run side by side);
(3) the tolerance of (1) at eps / 10, where a direct path costs ten times more and the HMM
exactly as much (its runs do not depend on eps). At each level the cheapest HMM setting
whose RMS error is at most the target is compared. The HMM samples the same fast noise
that a direct path averages along its way, so where the error is statistical it needs
about as many fast steps as the paths for the same variance, plus its burn-ins (level 2);
its gain is at a tolerance at or above the error of one path, which a direct simulation
cannot buy for less than one whole path of 20 T / eps steps, while the HMM's cost does not
depend on eps (levels 1 and 3). The last line is ``HMM speed-up: X.Xx``, the ratio of fast
steps at level (1) (the line before it gives the ratio of seconds).
Run: ``docker/run python3 benchmarks/sde_hmm.py [--eps EPS]``.
"""

import argparse
import math
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--eps", type=float, default=1e-3, help="scale separation (default 1e-3)")
parser.add_argument("--seeds", type=int, default=12, help="HMM runs per setting (default 12)")
args = parser.parse_args()

import numpy as np
from mpi4py import MPI
from scipy.integrate import solve_ivp

from hmm_fem.micro.sde import EulerMaruyama, FastSlowEstimator, hmm_integrate

EPS, T_END, X0 = args.eps, 3.0, 2.0
DT = EPS / 20
PATHS = 256


def forcing(t):
    return np.cos(np.pi * t) + np.sin(np.sqrt(2) * np.pi * t)


reference = solve_ivp(
    lambda t, x: -(x**3) - 1.5 * x + forcing(t), (0, T_END), [X0], rtol=1e-12, atol=1e-12
).y[0, -1]

# -- direct simulation of the stiff system --------------------------------------------------


def direct(eps, paths, seed):
    """X(T) of ``paths`` Euler-Maruyama paths of the full system with dt = eps/20."""
    rng = np.random.default_rng(seed)
    dt = eps / 20
    x = np.full(paths, X0)
    y = np.full(paths, X0)
    root = math.sqrt(dt / eps)
    tic = time.perf_counter()
    for k in range(round(T_END / dt)):
        t = k * dt
        x, y = (
            x + dt * (-(y**3) + forcing(t)),
            y - dt / eps * (y - x) + root * rng.standard_normal(paths),
        )
    return x, round(T_END / dt), time.perf_counter() - tic


x, steps, _ = direct(EPS, PATHS, 20261202)
_, _, direct_seconds = direct(EPS, 1, 20261204)  # the seconds of one path
direct_errors = x - reference
direct_rms = float(np.sqrt(np.mean(direct_errors**2)))
group_means = direct_errors.reshape(-1, 16).mean(axis=1)
direct16_rms = float(np.sqrt(np.mean(group_means**2)))
print(f"sde_hmm: eps = {EPS:g}, T = {T_END:g}, reference X(T) = {reference:.6f}")
print(
    f"  direct Euler-Maruyama, dt = eps/20: {steps} fast steps per path, {direct_seconds:.2f} s "
    f"for one path; over {PATHS} paths: RMS error of one path {direct_rms:.2e} (mean error "
    f"{direct_errors.mean():+.1e}), of the mean of 16 paths {direct16_rms:.2e}"
)

# -- the HMM ladder -------------------------------------------------------------------------
fast = EulerMaruyama(lambda y, x, t: -(y - x) / EPS, EPS**-0.5)


def hmm_run(method, replicas, burn_in, window, macro_step, seed):
    estimator = FastSlowEstimator(
        fast,
        slow_drift=lambda y, x, t: -(y**3) + forcing(t),
        lift=lambda x, n, rng: np.full((n, 1), x[0]),
        dt=DT,
        burn_in=burn_in * EPS,
        window=window * EPS,
        replicas=replicas,
        seed=seed,
        comm=MPI.COMM_SELF,
    )
    tic = time.perf_counter()
    solution = hmm_integrate(
        estimator, X0, (0.0, T_END), dt=macro_step, method=method, propagate_error=False
    )
    return solution.states[-1, 0] - reference, solution.report.fast_steps, time.perf_counter() - tic


ladder = [  # (macro scheme, replicas, burn-in / eps, window / eps, macro step)
    ("euler", 2, 1, 8, 0.1),
    ("heun", 2, 1, 4, 0.05),
    ("heun", 2, 1, 6, 0.05),
    ("heun", 2, 1, 8, 0.05),
    ("heun", 4, 1, 8, 0.05),
    ("heun", 8, 2, 20, 0.05),
    ("heun", 32, 2, 40, 0.05),
]
print(
    f"  {'scheme':>6} {'replicas':>8} {'burn-in':>7} {'window':>7} {'h':>5} {'fast steps':>10} "
    f"{'seconds':>8} {'RMS error':>9} {'mean error':>10}"
)
results = []
for setting in ladder:
    method, replicas, burn_in, window, macro_step = setting
    runs = [hmm_run(*setting, seed) for seed in range(args.seeds)]
    errors = np.array([r[0] for r in runs])
    cost, seconds = runs[0][1], float(np.mean([r[2] for r in runs]))
    rms = float(np.sqrt(np.mean(errors**2)))
    results.append((rms, cost, seconds, setting))
    print(
        f"  {method:>6} {replicas:8d} {f'{burn_in:g} eps':>7} {f'{window:g} eps':>7} "
        f"{macro_step:5.2f} {cost:10d} {seconds:8.2f} {rms:9.2e} {errors.mean():+10.1e}"
    )


def compare(label, target, direct_cost, direct_time):
    fits = [r for r in results if r[0] <= target]
    if not fits:
        print(f"  {label}: no HMM setting reached an RMS error of {target:.2e}")
        return math.nan, math.nan
    rms, cost, seconds, (method, replicas, burn_in, window, h) = min(fits, key=lambda r: r[1])
    print(
        f"  {label} (RMS <= {target:.2e}): direct {direct_cost} fast steps, {direct_time:.2f} s; "
        f"HMM ({method}, {replicas} replicas, burn-in {burn_in:g} eps, window {window:g} eps, "
        f"h = {h:g}) {cost} fast steps, {seconds:.2f} s, RMS {rms:.2e}; direct / HMM: "
        f"{direct_cost / cost:.2g} in fast steps, {direct_time / seconds:.2g} in seconds"
    )
    return direct_cost / cost, direct_time / seconds


steps_ratio, time_ratio = compare("(1) one direct path", direct_rms, steps, direct_seconds)
# The 16 paths side by side (as the HMM runs its replicas).
_, _, seconds16 = direct(EPS, 16, 20261205)
compare("(2) mean of 16 direct paths", direct16_rms, 16 * steps, seconds16)
# (3) The HMM runs above do not depend on eps (all lengths in units of eps, and the fast
# Euler-Maruyama chain y' = y - h (y - x) + sqrt(h) xi with h = dt/eps is scale-free: the
# same numbers at any eps), while a direct path costs 20 T / eps steps.
small = EPS / 10
x_small, steps_small, seconds_small = direct(small, 16, 20261203)
rms_small = float(np.sqrt(np.mean((x_small - reference) ** 2)))
print(
    f"  (3) eps = {small:g}: one direct path {steps_small} fast steps, {seconds_small:.2f} s "
    f"(16 paths side by side), RMS error {rms_small:.2e} over 16 paths; the HMM settings of "
    "(1) give the same runs"
)
compare(f"(3) at eps = {small:g}, tolerance of (1)", direct_rms, steps_small, seconds_small)
print(f"HMM time saving at level (1): {time_ratio:.1f}x")
print(f"HMM speed-up: {steps_ratio:.1f}x")
