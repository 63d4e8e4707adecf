# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # A reaction front on a catalyst: KMC patches on a DOLFINx mesh against the full lattice
#
# CO oxidation in the Ziff–Gulari–Barshad model (`hmm_fem.micro.kmc.zgb`): CO adsorbs at
# rate $y$ per empty site, O$_2$ at $(1-y)/2$ per empty pair, CO + O react at rate $k$ per
# neighbouring pair, and both adsorbates hop to empty neighbours at rate $D$ (per pair;
# time in Monte Carlo steps, lengths in lattice sites). At $y = 0.36$ the surface is
# bistable: the reactive state (O-rich, $\theta_O \approx 0.65$) and the CO-covered
# (poisoned) state. Started side by side, the reactive state eats into the poisoned one:
# a travelling front.
#
# **The patch scheme** (`hmm_fem.macro.SurfaceReactionDiffusion`): the coverages
# $\theta_{CO}$, $\theta_O$ are P1 fields on a DOLFINx interval mesh along the strip,
# $\partial_t\theta_s + \partial_x J_s = R_s$, with $R_s$ (net reaction rates) and $J_s$
# (hop fluxes) measured at every step by a persistent KMC patch in each cell (24 sites
# along the strip, 8 across), constrained to the macro coverages at the cell's midpoint and
# framed by ghost sites drawn from the macro field and gradient
# (`hmm_fem.micro.kmc.patches.KMCPatches`). A patch is a sample of the surface there, not
# a tile: it is longer than the 10-site cell, because the hops of an adsorbate through a
# crowded surface are correlated over several sites along the flux (shorter patches
# measure the mean-field flux: 16-site ones gave a front 18 % fast, 8-site ones 30 %), but
# only 8 of the lattice's 64 sites across (4 were too few): the patches hold 30 % of the
# full lattice's sites.
#
# **The reference**: the full lattice of the same strip (400 x 64 sites, periodic across,
# closed ends), from the same initial step, several replicas. The front position is where
# the laterally averaged $\theta_{CO}$ is below 1/2 (`front_position`: robust to noise);
# the speed is a least-squares fit over the second half of the run, with its standard
# error over replicas. **Self-check** (full size): the patch speed agrees with the full
# lattice within 10 %, and a patch run costs less than a full-lattice run. It is noisier,
# though (fewer sites, and noise in the measured fluxes moves coverage over a whole cell):
# the demo also prints the cost at an equal standard error of the speed. The mean-field
# equations (the same mesh, the site-approximation law instead of patches) are shown for
# comparison: they miss the lattice's correlations, and their front is about 30 % fast.
#
# **Why O hops too.** With immobile O (the original ZGB) the reactive state holds about
# 60 % O, and the free sites do not percolate (site percolation needs 59 % of free sites):
# CO moves only where reactions open paths, a property of the whole surface that no patch
# smaller than the islands can measure (a patch of 8 sites passes 5 times the flux of one
# of 32 at 45 % static O). With O hopping the surface mixes on the patch scale.
#
# Run: `python3 demos/demo_kmc_front.py` (add `--quick` for the test size); the coverages
# at several times go to `results/kmc_front/coverages_*.bp` (ParaView, VTX reader), the
# front positions to `front_position.png`.

# +
import argparse
import sys
import time
from pathlib import Path

import dolfinx
import numpy as np
from mpi4py import MPI

from hmm_fem.io import write_vtx
from hmm_fem.macro import SurfaceReactionDiffusion
from hmm_fem.micro.kmc import rank_block, zgb
from hmm_fem.micro.kmc.patches import strip_fronts, with_hopping

parser = argparse.ArgumentParser(description="KMC front on a catalyst: patches vs full lattice")
parser.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
parser.add_argument("--output", default="results/kmc_front", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)

Y, K, D = 0.36, 1.0, 100.0  # CO fraction, reaction rate, hop rate of CO and O
LEVEL = 0.5  # the front: theta_CO = 1/2
if args.quick:
    LENGTH, WIDTH, T_END, X0, REPLICAS, PATCH_REPLICAS = 160, 16, 8.0, 35.0, 2, 2
else:
    LENGTH, WIDTH, T_END, X0, REPLICAS, PATCH_REPLICAS = 400, 64, 60.0, 75.0, 4, 6
H, DT = 10.0, 0.25  # macro cell (sites), macro step (MCS)
PATCH, ACROSS = 24, 8  # patch sites along and across the strip (a sample at the midpoint)
SEED = 2026
model = with_hopping(zgb(Y, reaction_rate=K, diffusion_rate=D), O=D)
say(f"model: {model}")


def initial_co(x):
    """The poisoned (CO-covered) state right of X0, an empty surface left of it.

    X0 lies halfway between two mesh nodes, where the P1 interpolant of the step crosses
    1/2, as the lattice's column profile does: both fronts start at X0.
    """
    return (x[0] > X0).astype(float)


times = np.arange(1.0, T_END + 0.5, 1.0)
fit = times >= T_END / 4  # after the initial transient (about 10 MCS at full size)


def speeds(positions):
    """Least-squares speed of every row over the last three quarters of the run."""
    return np.array([np.polyfit(times[fit], p[fit], 1)[0] for p in np.atleast_2d(positions)])


# -

# ## The full lattice: replicas over the ranks (each its own stream)

# +
mine = rank_block(REPLICAS, comm)
start = time.perf_counter()
full, seconds = strip_fronts(model, LENGTH, WIDTH, {"CO": initial_co}, times, species="CO",
                             level=LEVEL, ids=np.arange(mine.start, mine.stop), seed=SEED)
full = np.concatenate(comm.allgather(full))
full_seconds = comm.allreduce(seconds)  # CPU seconds of all replicas
full_speeds = speeds(full)
say(f"full lattice {LENGTH} x {WIDTH}: speeds {np.round(full_speeds, 3)} "
    f"({full_seconds:.1f} s for {REPLICAS} replicas)")
# -

# ## The patch scheme on a DOLFINx mesh, and the mean-field equations on the same mesh

# +
output = Path(args.output)
mesh = dolfinx.mesh.create_interval(comm, round(LENGTH / H), [0.0, float(LENGTH)])
patch, patch_seconds = [], 0.0
for replica in range(PATCH_REPLICAS):
    problem = SurfaceReactionDiffusion(mesh, model, dt=DT, patch_width=PATCH,
                                       patch_lateral=ACROSS, allow_overlap=True,
                                       seed=SEED + 1 + replica,
                                       initial_coverages={"CO": initial_co})
    fields = [problem.theta["CO"], problem.theta["O"]]
    positions = []
    begin = time.perf_counter()
    for t in times:
        problem.run(t - problem.time)
        positions.append(problem.front_position("CO", LEVEL))
        if replica == 0 and (t % max(1, int(T_END) // 5) == 0):
            write_vtx(output / f"coverages_t{t:05.1f}.bp", fields, t)
    patch_seconds += comm.allreduce(time.perf_counter() - begin)
    patch.append(positions)
patch = np.array(patch)
patch_speeds = speeds(patch)
say(f"patches {PATCH} x {ACROSS} in {round(LENGTH / H)} cells of {H:g} sites (dt = {DT}): "
    f"speeds {np.round(patch_speeds, 3)} ({patch_seconds:.1f} s for {PATCH_REPLICAS} replicas; "
    f"{problem.patches.constrained_sites} sites constrained on rank {comm.rank})")

mean_field = SurfaceReactionDiffusion(mesh, model, dt=DT, micro="mean_field",
                                      initial_coverages={"CO": initial_co})
mf = []
for t in times:
    mean_field.run(t - mean_field.time)
    mf.append(mean_field.front_position("CO", LEVEL))
mf = np.array(mf)
mf_speed = speeds(mf)[0]
# -

# ## Checks, and the picture

# +
def summary(values):
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


(c_full, e_full), (c_patch, e_patch) = summary(full_speeds), summary(patch_speeds)
gap = c_patch / c_full - 1
sites_full, sites_patch = LENGTH * WIDTH, round(LENGTH / H) * PATCH * ACROSS
say(f"front speed: full lattice {c_full:.3f} +- {e_full:.3f}, patches {c_patch:.3f} +- "
    f"{e_patch:.3f} ({100 * gap:+.1f} %), mean field {mf_speed:.3f} sites/MCS")
cost_full, cost_patch = full_seconds / REPLICAS, patch_seconds / PATCH_REPLICAS
say(f"cost: full lattice {cost_full:.2f} s, patches {cost_patch:.2f} s per replica "
    f"({sites_patch} of {sites_full} sites)")
# At equal statistical accuracy: replicas in proportion to the variance of one replica.
equal = cost_full * full_speeds.var(ddof=1) / (cost_patch * patch_speeds.var(ddof=1))
say(f"cost at an equal standard error of the speed: patches {1 / equal:.2f} x the full lattice")
checks = {}
checks["the reactive state invades (both fronts move right)"] = bool(
    full[:, -1].mean() > X0 + 2 and patch[:, -1].mean() > X0 + 2)
x, values = problem.nodal_values()  # the last patch replica
ahead = x[:, 0] > patch[-1, -1] + 4 * H
say(f"patch coverages in [{values.min():.3f}, {values.max():.3f}] (noise of the estimates); "
    f"theta_CO ahead of the front {values[ahead, 0].mean():.4f}")
checks["the poisoned state ahead of the patch front is kept (theta_CO > 0.95)"] = bool(
    values[ahead, 0].mean() > 0.95)
if not args.quick:
    checks[f"patch front speed within 10 % of the full lattice ({100 * gap:+.1f} %)"] = (
        abs(gap) < 0.10)
    checks["a patch replica costs less than a full-lattice one"] = cost_patch < cost_full

if comm.rank == 0 and not args.no_png:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for k, p in enumerate(full):
        ax.plot(times, p, color="0.6", lw=0.8, label="full lattice (replicas)" if k == 0 else None)
    for k, p in enumerate(patch):
        ax.plot(times, p, color="C0", lw=0.8, alpha=0.6,
                label="KMC patches (replicas)" if k == 0 else None)
    ax.plot(times, full.mean(axis=0), color="k", lw=2,
            label=f"full lattice: {c_full:.2f} ± {e_full:.2f} sites/MCS")
    ax.plot(times, patch.mean(axis=0), color="C0", lw=2,
            label=f"patches: {c_patch:.2f} ± {e_patch:.2f} ({100 * gap:+.1f} %)")
    ax.plot(times, mf, "--", color="C3", lw=1.5, label=f"mean-field equations: {mf_speed:.2f}")
    ax.axvspan(times[fit][0], times[-1], color="0.93", zorder=0, label="fit window")
    ax.set_xlabel("time (Monte Carlo steps)")
    ax.set_ylabel(r"front position (sites), $\theta_{CO} = 1/2$")
    ax.set_title(f"ZGB + hopping, y = {Y}: {LENGTH} x {WIDTH} lattice vs {PATCH} x {ACROSS} "
                 f"patches every {H:g} sites", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    fig.savefig(output / "front_position.png", dpi=120)
    plt.close(fig)

if comm.rank == 0:
    import json

    output.mkdir(parents=True, exist_ok=True)
    summary_file = output / "summary.json"
    summary_file.write_text(json.dumps({
        "full_speed": c_full, "full_error": e_full, "patch_speed": c_patch,
        "patch_error": e_patch, "mean_field_speed": float(mf_speed),
        "full_seconds_per_replica": cost_full, "patch_seconds_per_replica": cost_patch,
        "patch_cost_at_equal_error": 1 / equal, "sites_full": sites_full,
        "sites_patch": sites_patch}, indent=1))

for name, ok in checks.items():
    say(f"[{'ok' if ok else 'FAILED'}] {name}")
if not all(checks.values()):
    sys.exit(1)
say("all checks passed")
# -
