# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Micro solves only where they are needed: adaptive activation follows a heat front
#
# A plate $[0, 1]^2$ at $T = 0$; from $t = 0$ the lower half of its left side is held at
# $T = 1$ and a heat front moves into the plate. The plate is a composite of discs in a
# matrix whose disc fraction grows from left to right, $f(x) = 0.2 + 0.2 x$, and whose
# phases depend on the
# temperature (matrix $k = 1 + T$, discs $k = 10 (1 - T/2)$), so the macro flux
# $q = -K^*(T, f)\,\nabla T$ needs a cell solve for every state $(T, f)$: the FE² method.
#
# With `activation=AdaptiveActivation(1e-3, ...)` the dispatcher solves a cell only where
# the answer cannot be taken from the cells already solved within the relative tolerance
# 1e-3 on $K^*$: a first-order Taylor expansion in $T$ from the nearest solved state with
# the cell's exact tangent $\partial K^*/\partial T$, its error estimated from the
# tangent's change and the discrepancy of two neighbours. Where the front brings states
# that were never met (a new disc fraction at a new temperature), cells are solved; behind
# and ahead of it, answers are reused.
#
# **Self-checks.** (1) The temperature matches the full FE² (every state solved) within
# the tolerance at every step; (2) at least 5 times fewer micro solves; (3) the micro
# activity follows the front: the solved points lie where the temperature changes most in
# the step (from the second step on: in the first every disc fraction is solved once at
# $T = 0$), and their mean position moves to the right.
#
# Output: `adaptive_front.bp` (VTX, one time per step: `T`, and the cell fields
# `micro_active`, `micro_error_estimate`, `micro_seconds`) and `adaptive_front.png`.
#
# Run: `python3 demos/demo_adaptive_front.py` (`mpirun -n 2` works too; `--quick` is the
# small size of the test suite).

# +
import argparse
import sys
from pathlib import Path

import numpy as np
import ufl
from dolfinx import fem, io, mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import ConductivityModel, LinearLaw
from hmm_fem.coupling import AdaptiveActivation
from hmm_fem.coupling.adaptivity import ACTIVE_KEY, ESTIMATE_KEY, SECONDS_KEY
from hmm_fem.io import dg0_function
from hmm_fem.macro import TransientHeat

parser = argparse.ArgumentParser(description="adaptive activation demo")
parser.add_argument("--quick", action="store_true", help="small size (used by the test suite)")
parser.add_argument("--output", default="results/adaptive_front", help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
output = Path(args.output)

n_macro = 6 if args.quick else 20
steps = 4 if args.quick else 15
dt = 0.02
cell_size = 0.15 if args.quick else 0.08
tolerance = 1e-3
model = ConductivityModel(
    lambda f: cells.square(f, mesh_size=cell_size),
    {"matrix": LinearLaw(1.0, 1.0), "inclusion": LinearLaw(10.0, -0.5)},
    parameter_resolution=0.02,
    dim=2,
)


def front(**options):
    plate = mesh.create_unit_square(comm, n_macro, n_macro)
    x = ufl.SpatialCoordinate(plate)
    return TransientHeat(
        plate,
        model,
        dt=dt,
        dirichlet=[(lambda p: np.isclose(p[0], 0.0) & (p[1] <= 0.5 + 1e-12), 1.0)],
        parameters={"volume_fraction": 0.2 + 0.2 * x[0]},
        quadrature_degree=1,
        **options,
    )


def l2(heat, values):
    f = fem.Function(heat.V)
    f.x.array[:] = values
    return np.sqrt(comm.allreduce(fem.assemble_scalar(fem.form(f * f * ufl.dx)), op=MPI.SUM))


# -

# ## The full FE² (the reference) and the adaptive run

# +
full = front()
reference = []
for _ in range(steps):
    full.step()
    reference.append(full.T.x.array.copy())
solves_full = full.statistics.total(comm).micro_solves

strategy = AdaptiveActivation(tolerance, ["K"], tangents={"K": "dK_dT"}, columns=["T"])
heat = front(activation=strategy)
coupling = heat.coupling
tdim = heat.mesh.topology.dim
owned = np.arange(heat.mesh.topology.index_map(tdim).size_local, dtype=np.int32)
midpoints = mesh.compute_midpoints(heat.mesh, tdim, owned)[:, :2]
fields = [fem.Function(heat.V, name="T")]
names = (ACTIVE_KEY, ESTIMATE_KEY, SECONDS_KEY)
dg0 = {name: dg0_function(heat.mesh, np.zeros(len(owned)), name) for name in names}
writer_T = io.VTXWriter(comm, output / "adaptive_front_T.bp", [heat.T], engine="BP4")
writer_micro = io.VTXWriter(
    comm, output / "adaptive_front_micro.bp", list(dg0.values()), engine="BP4"
)
errors, centres, contrast, snapshots = [], [], [], []
for k in range(steps):
    T_old = heat.T.x.array.copy()
    heat.step()
    errors.append(l2(heat, heat.T.x.array - reference[k]) / l2(heat, reference[k]))
    active = coupling.cell_averages(ACTIVE_KEY)
    for name in names:
        dg0[name].x.array[: len(owned)] = coupling.cell_averages(name)
        dg0[name].x.scatter_forward()
    writer_T.write(heat.time)
    writer_micro.write(heat.time)
    # how much T changed in the step, per cell (P1: the mean of the vertex changes)
    change = fem.Function(heat.V)
    change.x.array[:] = np.abs(heat.T.x.array - T_old)
    dofs = heat.V.dofmap.list[owned]
    cell_change = change.x.array[dofs].mean(axis=1)
    on = active > 0
    n_on = comm.allreduce(int(on.sum()), op=MPI.SUM)
    sums = comm.allreduce(
        np.array([cell_change[on].sum(), cell_change[~on].sum(), midpoints[on, 0].sum()]),
        op=MPI.SUM,
    )
    n_off = comm.allreduce(len(owned), op=MPI.SUM) - n_on
    if n_on:
        centres.append(sums[2] / n_on)
        contrast.append((sums[0] / n_on, sums[1] / max(n_off, 1)))
    cell_T = heat.T.x.array[dofs].mean(axis=1)
    snapshots.append(
        (
            heat.time,
            comm.gather(midpoints, root=0),
            comm.gather(active, root=0),
            comm.gather(cell_T, root=0),
        )
    )
writer_T.close()
writer_micro.close()
solves = strategy.statistics.solves
say(f"full FE²: {solves_full} micro solves; adaptive (tol {tolerance:g}): {solves} solves")
say(f"largest relative L2 difference of T from the full FE²: {max(errors):.2e}")
say("mean x of the cells with micro solves, per step: " + ", ".join(f"{c:.2f}" for c in centres))
# -

# ## Self-checks

# +
failures = []
if max(errors) > tolerance:
    failures.append(f"T differs from the full FE² by {max(errors):.2e} > {tolerance:g}")
if 5 * solves > solves_full:
    failures.append(f"{solves} solves: not 5 times fewer than the full FE²'s {solves_full}")
moving = [a > b for a, b in contrast[1:]]
if np.mean(moving) < 0.75:
    failures.append(f"solves not where T changes most in {moving.count(False)} steps")
if len(centres) < 3 or centres[-1] <= centres[1]:
    failures.append(f"the activity does not move with the front: {centres}")
# -

# ## The picture: where the cells were solved, at three times

# +
if comm.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [1, len(snapshots) // 2, len(snapshots) - 1]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
    for ax, i in zip(axes, picks):
        t, points, flags, temperature = snapshots[i]
        points, flags = np.vstack(points), np.concatenate(flags)
        temperature = np.concatenate(temperature)
        shade = ax.tricontourf(points[:, 0], points[:, 1], temperature, levels=20, cmap="Greys_r")
        on = flags > 0
        ax.scatter(points[on, 0], points[on, 1], c="red", s=10, label="micro solve in the step")
        ax.set_title(f"t = {t:.2f}: {int(on.sum())} of {len(on)} cells solved")
        ax.set_aspect("equal")
        ax.set_xlabel("x")
    figure.colorbar(shade, ax=axes, label="T (cell mean)", shrink=0.8)
    axes[0].legend(loc="upper right", fontsize=8)
    figure.suptitle(
        f"Adaptive activation (tolerance {tolerance:g}): {solves} micro solves "
        f"instead of {solves_full}"
    )
    output.mkdir(parents=True, exist_ok=True)
    figure.savefig(output / "adaptive_front.png", dpi=90)
    say(f"wrote {output / 'adaptive_front.png'}")

if failures:
    say("FAILED: " + "; ".join(failures))
    sys.exit(1)
say("all checks passed")
# -
