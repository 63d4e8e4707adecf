# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Curved cells: isoparametric P2 reaches its own convergence rate
#
# The square array of discs (area fraction $f = 0.5$, conductivity contrast 10) has an
# effective conductivity known to many digits from Rayleigh's multipole series. A P2
# corrector on straight-sided triangles sees a polygon instead of the disc, and its error
# in $K^*$ falls only as $h^2$. With `order=2` gmsh puts the mid-edge nodes of the
# interface on the circle (second-order, periodic node for node): the isoparametric P2
# cell, whose energy error falls at the rate of P2 itself.
#
# **Self-checks.** (1) On every mesh the curved cell is more accurate than the straight
# one; (2) the observed rate of the curved cell between the two finest meshes is above 3,
# that of the straight cell below 2.5; (3) the curved cell reaches a relative error of
# 2e-5 on the coarsest mesh (about 700 triangles).
#
# Output: `curved_cell` (VTX: the correctors and fluxes of the curved cell on the
# coarsest mesh, with its P2 geometry) and `curved_cells.png` (error against mesh size).
#
# Run: `python3 demos/demo_curved_cells.py [--quick] [--output DIR]`.

# +
import argparse
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.io import write_conductivity_cell
from hmm_fem.references import rayleigh_square_array

parser = argparse.ArgumentParser(description="curved P2 cells against Rayleigh's series")
parser.add_argument("--quick", action="store_true", help="three meshes (test suite)")
parser.add_argument("--output", default="results/curved_cells", help="output folder")
args = parser.parse_args()
say = print if MPI.COMM_WORLD.rank == 0 else (lambda *a, **k: None)
# -

# ## K\* on straight and curved cells
#
# The cells live on `MPI.COMM_SELF`: under mpirun every rank solves them, rank 0 writes.

# +
f, contrast = 0.5, 10.0
exact = rayleigh_square_array(1.0, contrast, f)
sizes = [0.14, 0.035, 0.0175] if args.quick else [0.14, 0.07, 0.035, 0.0175, 0.00875]
errors = {1: [], 2: []}
first_curved = None
for h in sizes:
    for order in (1, 2):
        problem = cells.ConductivityCell(
            cells.square(f, mesh_size=h, order=order),
            {"matrix": 1.0, "inclusion": contrast},
            degree=2,
        )
        K = problem.effective_tensor()
        errors[order].append(abs(K[0, 0] - exact) / exact)
        if order == 2 and first_curved is None:
            first_curved = problem
        else:
            problem.destroy()
    say(f"h = {h:<7} straight P2 {errors[1][-1]:.2e}   curved P2 {errors[2][-1]:.2e}")


def rate(e):
    return np.log(e[-2] / e[-1]) / np.log(sizes[-2] / sizes[-1])


say(f"observed rates between h = {sizes[-2]} and {sizes[-1]}: straight "
    f"{rate(errors[1]):.2f}, curved {rate(errors[2]):.2f}")
checks = {
    "curved more accurate than straight on every mesh": all(
        c < s for c, s in zip(errors[2], errors[1])
    ),
    "curved rate > 3, straight rate < 2.5": rate(errors[2]) > 3.0 and rate(errors[1]) < 2.5,
    "curved P2 within 2e-5 on the coarsest mesh": errors[2][0] <= 2e-5,
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## Fields for ParaView and the convergence plot

# +
output = Path(args.output)
if MPI.COMM_WORLD.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, path in write_conductivity_cell(first_curved, output / "curved_cell").items():
        print(f"wrote {kind:<11} {path}")
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.loglog(sizes, errors[1], "o-", label="straight P2 (polygonal disc)")
    ax.loglog(sizes, errors[2], "s-", label="curved P2 (order=2)")
    ax.set_xlabel("mesh size h")
    ax.set_ylabel("relative error of $K^*_{xx}$")
    ax.set_title(f"square array, f = {f}, contrast {contrast:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output / "curved_cells.png", dpi=120)
    print(f"wrote picture     {output / 'curved_cells.png'}")
first_curved.destroy()

if not all(checks.values()):
    sys.exit("demo_curved_cells: a check FAILED")
say("demo_curved_cells: all checks passed")
# -
