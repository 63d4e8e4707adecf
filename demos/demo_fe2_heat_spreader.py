# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # FE²: a graded fibre-composite heat spreader with temperature-dependent phases
#
# A plate of height $H = 1$ and width $W = 0.5$ is a fibre composite: conductive
# fibres (square array) in a polymer matrix. The fibre volume fraction is graded
# through the thickness, $f(y) = 0.15 + 0.35\,y/H$. The plate is heated from below
# by a flux $g$, held at $T = 0$ on top, and insulated on its sides.
#
# Both phases change with temperature: the matrix conducts better when hot,
# $k_m(T) = 1\,(1 + 0.01\,T)$, the fibres worse, $k_f(T) = 20\,(1 - 0.004\,T)$. So the
# effective conductivity $K^*(T, f)$ changes with both the position (through $f$) and
# the solution (through $T$). Nobody tabulated it: at every quadrature point of every
# Newton iterate the macro problem asks a periodic cell, and the consistent tangent
# $\partial q/\partial T$ comes from the same cell solve.
#
# **Self-check.** Everything here depends on $y$ only, so the macro problem is really
# the ODE $K^*_{yy}(T, f(y))\, T'(y) = -g$, $T(H) = 0$. The demo integrates that ODE
# with scipy, using $K^*$ from *separate* cell solves tabulated in $T$, and compares.
#
# Run: `hmm-fem demo fe2_heat_spreader` or `python3 demos/demo_fe2_heat_spreader.py`
# (`mpirun -n 2` works too; `--quick` is the small size of the test suite).

# +
import argparse
import sys
from pathlib import Path

import numpy as np
import ufl
from dolfinx import mesh
from mpi4py import MPI
from scipy.integrate import solve_ivp

from hmm_fem import cells
from hmm_fem.cells import ConductivityCell, ConductivityModel, LinearLaw
from hmm_fem.macro import SteadyHeat

parser = argparse.ArgumentParser(description="FE2 heat spreader demo")
parser.add_argument("--quick", action="store_true", help="small size (used by the test suite)")
parser.add_argument("--output", default="results/fe2_heat_spreader", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
# -

# ## The micro model
#
# One cell geometry per distinct volume fraction (rounded to 0.025): a small bank of
# periodic square-array cells, each built once. Every quadrature point has its own
# temperature, so every point and Newton iterate gets its own cell solve (reusing the
# built cell: only reassembly, one factorisation and two solves).

# +
mesh_size = 0.1 if args.quick else 0.05
resolution = 0.025
laws = {"matrix": LinearLaw(1.0, 0.01), "inclusion": LinearLaw(20.0, -0.004)}
model = ConductivityModel(
    lambda f: cells.square(f, mesh_size=mesh_size), laws, parameter_resolution=resolution
)
# -

# ## The macro problem, in a few lines

# +
H, W, g = 1.0, 0.5, 30.0
ny = 16 if args.quick else 40
plate = mesh.create_rectangle(
    comm, [[0.0, 0.0], [W, H]], [max(2, ny // 4), ny], cell_type=mesh.CellType.quadrilateral
)
x = ufl.SpatialCoordinate(plate)
fraction = 0.15 + 0.35 * x[1] / H
heat = SteadyHeat(
    plate,
    model,
    degree=2,
    quadrature_degree=2,
    dirichlet=[(lambda p: np.isclose(p[1], H), 0.0)],
    boundary_flux=g * ufl.conditional(ufl.lt(x[1], 1e-12), 1.0, 0.0),
    parameters={"volume_fraction": fraction},
)
report = heat.solve()
say(report)
rates = heat.problem.convergence_rates(report.residual_norms, floor=1e-8)
say("convergence orders:", np.round(rates, 2))
# -

# ## Self-check against the ODE with tabulated cells


# +
def fraction_at(y):
    return np.round((0.15 + 0.35 * y / H) / resolution) * resolution


T_table = np.linspace(0.0, 60.0, 13)
tables = {}
for f in np.unique(fraction_at(np.linspace(0, H, 401))):
    separate = ConductivityCell(
        cells.square(f, mesh_size=mesh_size), {"matrix": 1.0, "inclusion": 20.0}
    )
    tables[f] = np.array(
        [
            separate.effective_tensor({"matrix": 1 + 0.01 * t, "inclusion": 20 * (1 - 0.004 * t)})[
                1, 1
            ]
            for t in T_table
        ]
    )
    separate.destroy()


def kyy(T, y):
    return np.interp(T, T_table, tables[float(fraction_at(y))])


# The fraction is piecewise constant in y (rounded): integrate piece by piece, downwards.
breaks = (
    np.arange(0, 1 / resolution + 1) * resolution - 0.15
) / 0.35 * H + 0.5 * resolution / 0.35 * H
breaks = np.sort(np.concatenate([[0.0, H], breaks[(breaks > 0) & (breaks < H)]]))[::-1]
T_ref, y_ref = [0.0], [H]
for top, bottom in zip(breaks[:-1], breaks[1:]):
    mid = 0.5 * (top + bottom)
    sol = solve_ivp(
        lambda y, T, mid=mid: [-g / kyy(T[0], mid)],
        (top, bottom),
        [T_ref[-1]],
        rtol=1e-10,
        atol=1e-12,
    )
    T_ref.append(sol.y[0, -1])
    y_ref.append(bottom)
T_bottom_ref = T_ref[-1]

bottom_points = np.array([[W / 2, 0.0, 0.0]])
from dolfinx import geometry  # noqa: E402

tree = geometry.bb_tree(plate, plate.topology.dim)
candidates = geometry.compute_collisions_points(tree, bottom_points)
colliding = geometry.compute_colliding_cells(plate, candidates, bottom_points)
local = (
    [heat.T.eval(bottom_points[0], colliding.links(0)[:1])[0]] if len(colliding.links(0)) else []
)
T_bottom = [v for part in comm.allgather(local) for v in part][0]
statistics = report.statistics
checks = {
    f"bottom temperature {T_bottom:.5f} matches the ODE with tabulated cells "
    f"{T_bottom_ref:.5f} (0.2 %)": abs(T_bottom / T_bottom_ref - 1) < 2e-3,
    "Newton converges quadratically (last order > 1.7)": len(rates) > 0 and rates[-1] > 1.7,
    f"one cell per distinct volume fraction: {model.num_cells_built} cells for "
    f"{statistics.micro_solves} micro solves": model.num_cells_built <= int(0.35 / resolution) + 2,
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## Output for ParaView
#
# `heat_T.bp` holds the temperature, `heat_micro.bp` the cell averages of the flux,
# of $K^*$ and of the volume fraction.

# +
output = Path(args.output)
for kind, path in heat.write(output / "heat").items():
    say(f"wrote {kind:<11} {path}")
if not args.no_png and comm.size == 1:
    from hmm_fem.io import plot_macro_fields

    say(f"wrote picture     {plot_macro_fields(heat, output / 'heat_spreader.png')}")

if not all(checks.values()):
    sys.exit("demo_fe2_heat_spreader: a check FAILED")
say("demo_fe2_heat_spreader: all checks passed")
# -
