"""Benchmark: events per second of the lattice KMC engine, ZGB model on a 256 x 256 lattice.

The original ZGB model (instantaneous CO + O reaction) at y = 0.5 on one periodic 256^2
lattice, one core, after a warm-up (compilation, and 30 Monte Carlo steps from the empty
lattice into the reactive steady state). Timed: ``--mcs`` Monte Carlo steps, best of
``--repeat``, in CPU time of the thread (the machine is shared: on a busy machine the
wall clock measures the other jobs too; both are printed). An *event* is any change of
the lattice: an adsorption (a timed event of the n-fold way) or a CO2 formation
(instantaneous, found by the cascade); both are counted, and the timed events alone are
reported too. The variant with a finite reaction rate k = 100 (every event timed) is
measured as well.

The last line is ``events/s: X`` (the original model; target >= 5e6). Run:
``docker/run python3 benchmarks/kmc.py``.
"""

import argparse
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--size", type=int, default=256, help="lattice side (default 256)")
parser.add_argument("--mcs", type=float, default=40.0, help="timed Monte Carlo steps")
parser.add_argument("--repeat", type=int, default=3, help="timed runs (best is kept)")
args = parser.parse_args()

from hmm_fem.micro.kmc import KMC, zgb  # noqa: E402


def measure(model, label):
    sim = KMC(model, (args.size, args.size), seed=1)
    sim.run(30.0)  # compiles (or loads the cache), reaches the reactive state
    best = None
    for _ in range(args.repeat):
        before = sim.counts.sum()
        start, cpu = time.perf_counter(), time.thread_time()
        timed = int(sim.run(args.mcs).sum())
        seconds, wall = time.thread_time() - cpu, time.perf_counter() - start
        total = int(sim.counts.sum() - before)
        if best is None or total / seconds > best[0]:
            best = (total / seconds, timed / seconds, seconds, total, wall)
    theta = sim.coverages(["CO", "O"])[0]
    print(
        f"{label}: {best[0]:.3g} events/s ({best[1]:.3g} timed events/s), {best[3]} events in "
        f"{best[2]:.2f} s CPU ({best[3] / best[4]:.3g} events/s wall clock); theta_CO = "
        f"{theta[0]:.3f}, theta_O = {theta[1]:.3f}",
        flush=True,
    )
    return best[0]


print(f"ZGB at y = 0.5 on a {args.size}^2 periodic lattice, {args.mcs:g} MCS per run")
measure(zgb(0.5, reaction_rate=100.0), "finite reaction rate k = 100")
rate = measure(zgb(0.5), "original (instantaneous reaction)")
print(f"events/s: {rate:.3g}")
