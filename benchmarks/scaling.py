"""Benchmark: fixed blocks against the dynamic pool of micro solves, and Amdahl's law.

Heat FE² (``macro.SteadyHeat``, unit square, P1, Dirichlet 0, source 10) with a
temperature-dependent square-array conductivity cell. The micro cost is deliberately
uneven: states above the median temperature of all solves (a pilot run) solve their cell
``--costly`` times (10: the same cell solve repeated, real work with the same answer), the
others once. So the costly states cluster in state space, as plastic points do against
elastic ones, and the fixed blocks of the sorted states give one rank most of them.

Runs (each a fresh process): 1 rank, 2 ranks with blocks, 2 ranks with the pool, and the
pool on 4 and 8 ranks oversubscribed on this machine (they show the overheads, not the
speed). Every case runs ``--repeat`` times (interleaved); the fastest run is kept. Every
evaluation is timed on every rank: its wall time, and the rank's time in
micro solves; the macro part (assembly, linear solve) is the rest of the solve's wall time.

Prints:
  (a) wall times, speed-ups, the load imbalance (max/mean of the ranks' micro time, summed
      over the evaluations; target <= 1.1 with the pool), the cache memory per rank;
  (b) the Amdahl model: T(p) = T_macro + sum over evaluations of [makespan_p + c0 +
      c1 log2 p], with T_macro the measured macro time (kept serial: the Amdahl term),
      c0, c1 fitted to the measured per-evaluation overhead (evaluation wall time minus the
      busiest rank's micro time) at 1, 2, 4, 8 ranks, and makespan_p from the measured
      per-solve times, dealt to p workers by the strategy (contiguous blocks of the sorted
      states, or self-scheduling); the plain Amdahl fit 1 / (f + (1 - f) / p) beside it;
      predicted speed-ups at 64-1024 workers for this problem (strong scaling) and with
      the points per worker of the 2-rank run kept (weak scaling);
  (c) a PNG of the predicted curves (``--png``, default docs/_static/scaling.png).

The last line is ``pool/blocks: X.XX`` (ratio of the median wall times of the repeats on
2 ranks; target <= 0.8); the line before it gives the ratio of the fastest runs, and a
load-independent ratio (each rank's solves at their serial cost) is printed above. Run
it with ``docker/run python3 benchmarks/scaling.py`` (it starts the MPI runs itself).
"""

import argparse
import heapq
import json
import os
import sys
import time

import numpy as np
from _common import launch

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--nx", type=int, default=6, help="macro triangles per side / 2 (default 6)")
parser.add_argument("--cell-size", type=float, default=0.08, help="cell mesh size (default 0.08)")
parser.add_argument("--costly", type=int, default=10, help="repeats of a costly solve (10)")
parser.add_argument("--oversubscribed", type=int, nargs="*", default=[4, 8])
parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest is kept")
parser.add_argument("--png", default=os.path.join("docs", "_static", "scaling.png"))
parser.add_argument("--run", action="store_true", help="(internal) one solve, JSON out")
parser.add_argument("--strategy", default="blocks")
parser.add_argument("--threshold", type=float, default=None)
args = parser.parse_args()


def run_case():
    """One macro solve with timings; prints a JSON line (rank 0)."""
    from mpi4py import MPI

    from hmm_fem import cells
    from hmm_fem.cells import ConductivityModel, LinearLaw
    from hmm_fem.coupling.pool import cache_nbytes
    from hmm_fem.macro import SteadyHeat
    from hmm_fem.micro import MicroModel

    class UnevenCost(MicroModel):
        """The conductivity cell; states with T above ``threshold`` solve it ``repeats``
        times (the same solve: real work, the same answer)."""

        def __init__(self, model, threshold, repeats):
            self.model = model
            self.inputs = model.inputs
            self.output_shape = model.output_shape
            self.parameters = model.parameters
            self.state_names = model.state_names
            self.threshold = threshold
            self.repeats = repeats
            self.solves = []  # (step, iteration, T, seconds, costly)

        def micro_state(self, inputs, parameters):
            return self.model.micro_state(inputs, parameters)

        def solve(self, state, context):
            start = time.perf_counter()
            costly = bool(self.threshold is not None and state[0] > self.threshold)
            for _ in range(self.repeats if costly else 1):
                result = self.model.solve(state, context)
            seconds = time.perf_counter() - start
            self.solves.append((context.step, context.iteration, float(state[0]), seconds, costly))
            return result

        def respond(self, solutions, inputs, parameters):
            return self.model.respond(solutions, inputs, parameters)

    comm = MPI.COMM_WORLD
    cell = cells.square(0.4, mesh_size=args.cell_size)
    base = ConductivityModel(
        cell, {"matrix": LinearLaw(1.0, 0.5), "inclusion": LinearLaw(10.0, -0.2)}
    )
    model = UnevenCost(base, args.threshold, args.costly)
    from dolfinx import mesh

    plate = mesh.create_unit_square(comm, args.nx, args.nx)
    heat = SteadyHeat(
        plate,
        model,
        source=10.0,
        dirichlet=[(lambda x: np.full(x.shape[1], True), 0.0)],
        progress=False,
        strategy=args.strategy,
    )
    dispatcher = heat.coupling.dispatcher
    evaluate = dispatcher.evaluate
    calls = []  # (wall, this rank's micro seconds)

    def timed(*a, **k):
        start, busy = time.perf_counter(), dispatcher.statistics.micro_seconds
        out = evaluate(*a, **k)
        calls.append((time.perf_counter() - start, dispatcher.statistics.micro_seconds - busy))
        return out

    dispatcher.evaluate = timed
    comm.barrier()
    start = time.perf_counter()
    report = heat.solve()
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    walls = np.array([c[0] for c in calls])
    busy = np.array(comm.allgather([c[1] for c in calls]))  # (ranks, calls)
    by_rank = comm.allgather(model.solves)
    solves = [s for part in by_rank for s in part]
    # The quadrature-point temperatures of the converged solution (for the threshold).
    T_points = np.sort(np.concatenate(comm.allgather(heat.coupling.last_inputs["T"])))
    result = {
        "ranks": comm.size,
        "strategy": args.strategy,
        "seconds": seconds,
        "iterations": report.iterations,
        "points": int(T_points.size),
        "evaluation_walls": np.max(comm.allgather(walls.tolist()), axis=0).tolist(),
        "busy": busy.tolist(),
        "solves": solves,
        "solves_by_rank": by_rank,
        "micro_solves": report.statistics.micro_solves,
        "cache_entries": comm.allgather(dispatcher.num_cached),
        "cache_bytes": comm.allgather(cache_nbytes(dispatcher)),
        "T_median": float(np.median(T_points)),
        "T_norm": float(np.linalg.norm(T_points)),
        "T_sorted": T_points.tolist(),
    }
    if comm.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


if args.run:
    run_case()
    sys.exit(0)


# -- the driver ---------------------------------------------------------------------------------
def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


me = [sys.executable, os.path.abspath(__file__), "--run", "--nx", str(args.nx)]
me += ["--cell-size", str(args.cell_size), "--costly", str(args.costly)]
pilot = launch([*me, "--costly", "1"])  # the median state of all solves splits them
threshold = float(np.median([s[2] for s in pilot["solves"]]))
me += ["--threshold", repr(threshold)]
runs, walls = {}, {}
cases = [(1, "blocks"), (2, "blocks"), (2, "pool")] + [(p, "pool") for p in args.oversubscribed]
for _ in range(args.repeat):  # interleaved, so that a burst of load hits every case alike
    for ranks, strategy in cases:
        mpi = [] if ranks == 1 else ["mpirun", "-n", str(ranks)]
        if ranks > 2:
            mpi.insert(1, "--oversubscribe")
        before = load()
        r = launch([*mpi, *me, "--strategy", strategy])
        r["load"] = f"{before}-{load()}"
        walls.setdefault((ranks, strategy), []).append(r["seconds"])
        if (ranks, strategy) not in runs or r["seconds"] < runs[ranks, strategy]["seconds"]:
            runs[ranks, strategy] = r  # the fastest of the repeats

serial = runs[1, "blocks"]
print(
    f"macro: {serial['points']} quadrature points, {serial['iterations']} Newton iterations, "
    f"{serial['micro_solves']} micro solves; costly (x{args.costly}) above T = {threshold:.4g} "
    f"({100 * np.mean([s[4] for s in serial['solves']]):.0f} % of the solves)"
)


def summary(r):
    busy = np.array(r["busy"])  # ranks x calls
    micro = busy.sum(axis=1)
    imbalance = micro.max() / micro.mean()
    overhead = np.array(r["evaluation_walls"]) - busy.max(axis=0)
    macro = r["seconds"] - sum(r["evaluation_walls"])
    return imbalance, overhead, macro


print(
    f"(a) measured, the fastest of {args.repeat} runs per case (wall times under load: the "
    "load average before-after that run)"
)
print(
    "| ranks | strategy | wall s | speed-up | imbalance max/mean | macro s | overhead s "
    "| ms per solve | cache entries per rank | cache kB per rank | load |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (ranks, strategy), r in runs.items():
    imbalance, overhead, macro = summary(r)
    print(
        f"| {ranks}{' (oversubscribed)' if ranks > 2 else ''} | {strategy} | {r['seconds']:.2f} "
        f"| {serial['seconds'] / r['seconds']:.2f} | {imbalance:.2f} | {macro:.2f} "
        f"| {overhead.sum():.3f} | {1e3 * np.sum(r['busy']) / r['micro_solves']:.2f} "
        f"| {r['cache_entries']} "
        f"| {[round(b / 1024, 1) for b in r['cache_bytes']]} | {r['load']} |"
    )
print(
    "(ms per solve: the ranks' micro time over the solves; above the serial value it shows "
    "the ranks sharing the 2 cores with each other and with the machine's other load)"
)
blocks, pool = runs[2, "blocks"], runs[2, "pool"]
for case, times in walls.items():
    print(f"wall times of {case[0]} ranks, {case[1]}: " + ", ".join(f"{t:.2f}" for t in times))
# Load-independent: each rank's solves at their serial cost (a dedicated core per rank).
serial_cost = {(s[0], s[1], s[2]): s[3] for s in runs[1, "blocks"]["solves"]}


def dedicated(r):
    """Sum over evaluations of the busiest rank's solves, at their serial cost."""
    per = {}
    for rank, part in enumerate(r["solves_by_rank"]):
        for s in part:
            key = (s[0], s[1])
            per.setdefault(key, {}).setdefault(rank, 0.0)
            per[key][rank] += serial_cost.get((s[0], s[1], s[2]), s[3])
    return sum(max(v.values()) for v in per.values())


print(
    f"load-independent (each rank's solves at their serial cost, busiest rank per "
    f"evaluation): blocks {dedicated(blocks):.3f} s, pool {dedicated(pool):.3f} s, serial "
    f"{dedicated(runs[1, 'blocks']):.3f} s; pool/blocks {dedicated(pool) / dedicated(blocks):.2f}"
)
imbalance_blocks, imbalance_pool = summary(blocks)[0], summary(pool)[0]
print(
    f"load imbalance on 2 ranks: blocks {imbalance_blocks:.2f}, pool {imbalance_pool:.2f} "
    "(target <= 1.1)"
)
same = blocks["T_sorted"] == pool["T_sorted"]
T_ref = np.array(serial["T_sorted"])
spread = max(np.max(np.abs(np.array(r["T_sorted"]) - T_ref)) for r in runs.values())
print(
    f"answers: T at the quadrature points, pool vs blocks on 2 ranks: "
    f"{'bitwise equal' if same else 'DIFFERENT'}; largest relative difference of any run "
    "from the serial one (the macro linear solve differs with the ranks): "
    + f"{spread / np.max(np.abs(T_ref)):.1e}"
)

# -- (b) the model ------------------------------------------------------------------------------
# Per-solve times of the serial run, per evaluation, in the order of the sorted states.
by_call = {}
for step, iteration, T, seconds, _ in serial["solves"]:
    by_call.setdefault((step, iteration), []).append((T, seconds))
costs_by_call = [np.array([c for _, c in sorted(v)]) for _, v in sorted(by_call.items())]
calls = len(serial["evaluation_walls"])
costs_by_call += [np.zeros(0)] * (calls - len(costs_by_call))  # evaluations without solves
all_costs = np.concatenate(costs_by_call)


def makespan_blocks(costs, p):
    bounds = np.linspace(0, len(costs), p + 1).astype(int)
    return max(costs[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])) if len(costs) else 0.0


def makespan_pool(costs, p, claim=3e-5):
    """Self-scheduling; ``claim``: one Fetch_and_op (about 20-40 us measured here)."""
    claim = claim if p > 1 else 0.0
    if not len(costs):
        return 0.0
    free = [0.0] * min(p, len(costs))
    heapq.heapify(free)
    for c in costs:
        heapq.heappush(free, heapq.heappop(free) + c + claim)
    return max(free)


measured_p = sorted({ranks for ranks, s in runs if s == "pool"} | {1})
overheads = {}
for p in measured_p:
    r = runs[1, "blocks"] if p == 1 else runs[p, "pool"]
    overheads[p] = summary(r)[1].mean()
A = np.column_stack([np.ones(len(measured_p)), np.log2(measured_p)])
(c0, c1), *_ = np.linalg.lstsq(A, np.array([overheads[p] for p in measured_p]), rcond=None)
macro_time = summary(serial)[2]


def predicted(p, strategy, tasks=None):
    """Model time at p workers; ``tasks``: states per evaluation drawn from the measured
    per-solve times (weak scaling), default: the measured evaluations themselves."""
    span = makespan_pool if strategy == "pool" else makespan_blocks
    total = macro_time
    rng = np.random.default_rng(1)
    for costs in costs_by_call:
        if tasks is not None and len(costs):
            costs = rng.choice(all_costs, size=tasks)
        total += span(costs, p) + c0 + c1 * np.log2(p)
    return total


T1 = predicted(1, "blocks")
f_amdahl = macro_time / serial["seconds"]
print("(b) model: T(p) = T_macro + sum_evaluations [makespan_p + c0 + c1 log2 p]")
print(
    f"    inputs: T_macro = {macro_time:.3f} s (serial fraction f = {f_amdahl:.3f}), "
    f"{calls} evaluations, {len(all_costs)} solves, per-solve time: median "
    f"{1e3 * np.median(all_costs):.2f} ms, mean {1e3 * all_costs.mean():.2f} ms, max "
    f"{1e3 * all_costs.max():.2f} ms, cv {all_costs.std() / all_costs.mean():.2f}; overhead per "
    f"evaluation c0 = {1e3 * c0:.2f} ms, c1 = {1e3 * c1:.2f} ms per doubling (fitted to "
    + ", ".join(f"p={p}: {1e3 * overheads[p]:.2f} ms" for p in measured_p)
    + ")"
)
print(
    f"    model check at p=1: {T1:.2f} s predicted, {serial['seconds']:.2f} s measured; "
    f"p=2 pool {predicted(2, 'pool'):.2f} s vs {pool['seconds']:.2f} s, blocks "
    f"{predicted(2, 'blocks'):.2f} s vs {blocks['seconds']:.2f} s"
)
workers = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
print("| workers | Amdahl 1/(f+(1-f)/p) | strong: blocks | strong: pool | weak: pool efficiency |")
print("|---|---|---|---|---|")
curves = {"amdahl": [], "blocks": [], "pool": [], "weak": []}
busy_calls = sum(1 for c in costs_by_call if len(c))
per_worker = max(1, len(all_costs) // busy_calls // 2)  # states per worker per call, 2 ranks
for p in workers:
    amdahl = 1 / (f_amdahl + (1 - f_amdahl) / p)
    strong_b, strong_p = T1 / predicted(p, "blocks"), T1 / predicted(p, "pool")
    # Weak: p times the states of one worker, the macro part assumed to scale with them.
    weak_eff = predicted(1, "pool", per_worker) / predicted(p, "pool", p * per_worker)
    curves["amdahl"].append(amdahl)
    curves["blocks"].append(strong_b)
    curves["pool"].append(strong_p)
    curves["weak"].append(weak_eff)
    print(f"| {p} | {amdahl:.1f} | {strong_b:.1f} | {strong_p:.1f} | {weak_eff:.2f} |")
limit = 1 / f_amdahl
print(
    f"    what limits: the serial macro part (Amdahl bound {limit:.0f}x); with this problem's "
    f"{len(all_costs) // busy_calls} states per evaluation, the costliest solve "
    f"({1e3 * all_costs.max():.1f} ms) bounds an evaluation's makespan once p exceeds "
    "the states per evaluation; and the per-evaluation overhead grows with log2 p"
)

if args.png:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.loglog(workers, workers, "k:", label="ideal")
    ax.loglog(workers, curves["amdahl"], "k--", label=f"Amdahl, f = {f_amdahl:.3f}")
    ax.loglog(workers, curves["blocks"], "C1-o", ms=3, label="model: fixed blocks (this problem)")
    ax.loglog(workers, curves["pool"], "C0-o", ms=3, label="model: dynamic pool (this problem)")
    ax.loglog(
        workers,
        np.array(curves["weak"]) * np.array(workers),
        "C2-s",
        ms=3,
        label="model: pool, weak scaling (scaled speed-up)",
    )
    ax.loglog([2], [serial["seconds"] / pool["seconds"]], "C0*", ms=12, label="measured pool")
    ax.loglog([2], [serial["seconds"] / blocks["seconds"]], "C1*", ms=12, label="measured blocks")
    ax.set_xlabel("workers (ranks)")
    ax.set_ylabel("speed-up over 1 rank")
    ax.set_title(f"FE² heat, {serial['points']} points, half the states {args.costly}x costlier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.png) or ".", exist_ok=True)
    fig.savefig(args.png, dpi=120)
    print(f"(c) predicted scaling curve: {args.png}")

print(
    f"speed-up on 2 ranks: blocks {serial['seconds'] / blocks['seconds']:.2f}, "
    f"pool {serial['seconds'] / pool['seconds']:.2f}"
)
median_ratio = np.median(walls[2, "pool"]) / np.median(walls[2, "blocks"])
print(f"pool/blocks, fastest of the repeats: {pool['seconds'] / blocks['seconds']:.2f}")
print(f"pool/blocks: {median_ratio:.2f}")
