"""Benchmark: agent-based patches (HMM) against the full agent simulation (DNS) of the domain.

The agent model: proliferating random walkers with logistic crowding
(hmm_fem.micro.agents.LatticeWalkers), 1D lattice of spacing a = 0.025 (units: length
sqrt(D/r), time 1/r, D = r = 1), K = 1e6 agents per site, hop probability 1/2. A front
invades [0, 50] from u = 1 on [0, 2). Its position is the mass int u dx; the speed is
fitted over t in [8, 22] after adding Bramson's delay (3/2) ln t, and compared with the
Fisher-KPP speed 2 sqrt(Dr) = 2 of the mean-field limit.

* DNS: the walkers on all 2000 sites of the domain (LatticeDNS), one run.
* Patches: PatchReactionDiffusion on 100 P1 cells (h = 0.5), one patch of 2 + 2 sites per
  cell (20 % of the domain), 2 replicas, bursts of 8 micro steps at each of the two stages
  of every Heun step of 0.04.

Equal accuracy: the patch scheme's front-speed error must be no larger than the DNS's
(both measured against 2 sqrt(Dr) with the same fit); the cost is wall time (one core), also
reported as site updates (lattice sites times micro steps). The last line is
``patch speed-up: X.Xx`` (DNS time / patch time; target >= 5x). Run: ``docker/run python3
benchmarks/patches.py`` (about two minutes, most of it the DNS).
"""

import argparse
import math
import time

import dolfinx
import numpy as np
from mpi4py import MPI

from hmm_fem.macro import PatchReactionDiffusion
from hmm_fem.micro.agents import AgentPatchModel, LatticeDNS, LatticeWalkers

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--length", type=float, default=50.0, help="domain length")
parser.add_argument("--time", type=float, default=22.0, help="end time")
args = parser.parse_args()

D, r, K, A = 1.0, 1.0, 1e6, 0.025
WINDOW = (8.0, args.time)
walkers = LatticeWalkers(1, A, D, r, K, core_sites=2, burst_time=8 * A**2 / (4 * D))
target = walkers.front_speed()


def speed(times, positions):
    times, positions = np.asarray(times), np.asarray(positions)
    keep = (times >= WINDOW[0]) & (times <= WINDOW[1])
    lam = math.sqrt(r / D)
    return np.polyfit(times[keep], positions[keep] + 1.5 / lam * np.log(times[keep]), 1)[0]


# -- the patch scheme ----------------------------------------------------------------------------
mesh = dolfinx.mesh.create_interval(MPI.COMM_SELF, round(args.length / 0.5), [0.0, args.length])
model = AgentPatchModel(walkers, seed=1)
start = time.perf_counter()
problem = PatchReactionDiffusion(
    mesh, model, dt=0.04, initial_density=lambda x: (x[0] < 2.0).astype(float)
)
times, positions = [], []
problem.run(args.time, lambda p: (times.append(p.time), positions.append(p.mass())))
patch_seconds = time.perf_counter() - start
patch_speed = speed(times, positions)
print(
    f"patches: coverage {problem.covered_fraction:.0%}, {problem.evaluations} evaluations x "
    f"{walkers.burst_steps} micro steps, {model.site_updates:.3g} site updates, "
    f"{patch_seconds:.1f} s (micro {problem.micro_seconds:.1f} s); front speed "
    f"{patch_speed:.4f} ({100 * (patch_speed / target - 1):+.2f} %)"
)

# -- the DNS ---------------------------------------------------------------------------------------
start = time.perf_counter()
dns = LatticeDNS(
    walkers, [args.length], lambda x: (x[:, 0] < 2.0).astype(float), np.random.default_rng(1)
)
times, positions = [], []
record_every = 0.02
while dns.time < args.time - 1e-9:
    dns.run(record_every)
    times.append(dns.time)
    positions.append(dns.mass()[0])
dns_seconds = time.perf_counter() - start
dns_speed = speed(times, positions)
print(
    f"DNS: {dns.counts.size} sites x {round(dns.time / walkers.time_step)} steps, "
    f"{dns.site_updates:.3g} site updates, {dns_seconds:.1f} s; front speed {dns_speed:.4f} "
    f"({100 * (dns_speed / target - 1):+.2f} %)"
)

equal = abs(patch_speed / target - 1) <= abs(dns_speed / target - 1)
verdict = "patches at least as accurate" if equal else "NOT equal: the patches are less accurate"
print(
    f"front-speed error: patches {abs(patch_speed / target - 1):.2%}, DNS "
    f"{abs(dns_speed / target - 1):.2%} ({verdict})"
)
print(f"site updates saved: {dns.site_updates / model.site_updates:.1f}x")
print(f"patch speed-up: {dns_seconds / patch_seconds:.1f}x")
