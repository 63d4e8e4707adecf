"""Benchmark: the equation-free tools against brute-force micro simulation.

(1) Projective integration (hmm_fem.equation_free.projective_integrate) of Michaelis-Menten
    kinetics, the EquationFreeGit example: x' = -x + (x + 1/2) y, y' = (x - (x + 1) y)/eps,
    eps = 0.01, over 0 <= t <= 6. The micro simulator takes classical RK4 steps of eps/10
    of the full system; the coarse variable is x; the lift puts y on the leading-order slow
    manifold y = x/(1+x). Reference: the full micro run from the same lifted state (6000
    micro steps). The relative error is the largest |x_PI - x_full| over every macro step,
    over max |x_full|. Several schemes and steps are run; the figure is the largest saving
    (micro steps of the full run over those of projective integration) among the runs
    with a relative error <= 1e-3 (target >= 10x).
(2) Coarse steady states (benchmarks/_equation_free_steady.py: measure()), if present.
(3) Patch dynamics (benchmarks/_equation_free_patches.py: measure()), if present.

The last line is ``projective saving: X.Xx``. Run: ``docker/run python3
benchmarks/equation_free.py [--eps EPS]``.
"""

import argparse
import importlib
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--eps", type=float, default=0.01, help="scale separation (default 0.01)")
parser.add_argument("--tolerance", type=float, default=1e-3, help="relative error bound")
args = parser.parse_args()

import numpy as np
from mpi4py import MPI

from hmm_fem.equation_free import CoarseTimeStepper, projective_integrate

EPS, T_END, U0 = args.eps, 6.0, np.array([1.0])
DT = EPS / 10


def rhs(z):
    x, y = z
    return np.array([-x + (x + 0.5) * y, (x - (x + 1) * y) / EPS])


def micro_step(z, t, h, rng):
    k1 = rhs(z)
    k2 = rhs(z + 0.5 * h * k1)
    k3 = rhs(z + 0.5 * h * k2)
    k4 = rhs(z + h * k3)
    return z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def lift(U, rng):
    return np.array([U[0], U[0] / (1 + U[0])])


def restrict(z):
    return z[:1]


def make_stepper(healing, burst):
    return CoarseTimeStepper(
        lift,
        micro_step,
        restrict,
        dt=DT,
        burst_time=burst * EPS,
        healing_time=healing * EPS,
        comm=MPI.COMM_SELF,
    )


# The full micro run, every micro step kept (the reference at any time, interpolated).
start = time.perf_counter()
full_steps = round(T_END / DT)
z = lift(U0, None)
x_full = np.empty(full_steps + 1)
x_full[0] = z[0]
for k in range(full_steps):
    z = micro_step(z, k * DT, DT, None)
    x_full[k + 1] = z[0]
t_full = np.arange(full_steps + 1) * DT
full_time = time.perf_counter() - start
assert make_stepper(1, 1).full_run_micro_steps(T_END) == full_steps
print(f"(1) projective integration, Michaelis-Menten, eps = {EPS:g}, 0 <= t <= {T_END:g}")
print(f"    full micro run: {full_steps} micro steps, {full_time:.2f} s")

runs = [
    # (method, options, healing / eps, burst / eps)
    ("PFE", {"projective_step": 0.1}, 1, 1),
    ("PIRK2", {"projective_step": 0.25}, 1, 1),
    ("PIRK2", {"projective_step": 0.5}, 1, 1),
    ("PIRK2", {"rtol": 1e-4}, 1, 1),
    ("PIRK4", {"projective_step": 0.5}, 1, 1),
    ("PIRK4", {"projective_step": 1.0}, 1, 1),
    ("PIRK4", {"projective_step": 1.5}, 1, 1),
    ("PIRK4", {"projective_step": 1.0}, 0.5, 0.5),
    ("PIRK4", {"projective_step": 1.5}, 0.5, 0.5),
    ("PIRK4", {"projective_step": 2.0}, 0.5, 0.5),
    ("PIRK4", {"rtol": 1e-4}, 1, 1),
    ("RK45", {"rtol": 1e-5}, 1, 1),
]
header = (
    f"    {'method':7s} {'step / rtol':>16s} {'heal+burst':>10s} {'steps':>5s} {'bursts':>6s} "
    f"{'micro':>6s} {'saving':>7s} {'rel. error':>10s} {'time':>6s}"
)
print(header)
best = 0.0
for method, options, healing, burst in runs:
    stepper = make_stepper(healing, burst)
    start = time.perf_counter()
    result = projective_integrate(stepper, U0, [0.0, T_END], method=method, **options)
    elapsed = time.perf_counter() - start
    times, states = result
    error = np.abs(states[:, 0] - np.interp(times, t_full, x_full)).max() / np.abs(x_full).max()
    report = result.report
    saving = report.saving
    if error <= args.tolerance:
        best = max(best, saving)
    setting = ", ".join(f"{k.replace('projective_', '')} {v:g}" for k, v in options.items())
    print(
        f"    {method:7s} {setting:>16s} {f'{healing:g}+{burst:g} eps':>10s} "
        f"{report.accepted_steps:5d} {report.bursts:6d} {report.micro_steps:6d} "
        f"{saving:6.1f}x {error:10.1e} {elapsed:5.2f}s"
    )
print(f"    best saving at a relative error <= {args.tolerance:g}: {best:.1f}x (target >= 10x)")


def helper_figures(title, module_name):
    """Print the figures of another helper's benchmark module, if it exists."""
    print(title)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print("    not available")
        return
    try:
        figures = module.measure()
    except Exception as exc:  # the other figures must still be printed
        print(f"    failed: {type(exc).__name__}: {exc}")
        return
    if hasattr(module, "report"):  # the module formats its own figures
        for line in module.report(figures):
            print(f"    {line}")
        return
    def show(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    for key, value in figures.items():
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            print(f"    {key}:")
            for case in value:
                print("      " + ", ".join(f"{k} {show(v)}" for k, v in case.items()))
        else:
            print(f"    {key}: {show(value)}")


helper_figures(
    "(2) coarse steady states (Newton-Krylov against integration)", "_equation_free_steady"
)
helper_figures(
    "(3) patch dynamics (against the full fine-scale simulation)", "_equation_free_patches"
)
print(f"projective saving: {best:.1f}x")
