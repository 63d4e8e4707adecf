# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Flow through a graded filter: Darcy's law from the geometry of the pores
#
# A filter of length 2 and height 1 is a bed of parallel fibres (square array) whose
# solid fraction grows along the flow, $\phi(x) = 0.1 + 0.2\,x$. Nobody gives us the
# permeability: at every quadrature point a periodic Stokes cell of the pore space
# (Taylor–Hood P2–P1) answers with $k(\phi)$, one cell per distinct solid fraction
# (rounded to 0.05). The macro problem is Darcy's law
# $\nabla\cdot q = 0$, $q = -(k/\mu)\nabla p$ with $p = 1$ at the inlet, $p = 0$ at the
# outlet and impermeable walls.
#
# **Self-check.** The medium only changes along $x$, so the filter is resistances in
# series: the flux is $q = \Delta p / \int_0^2 \mu/k(\phi(x))\,dx$, with $k$ from separate
# cell solves. The demo compares it with the FE² flux.
#
# Run: `hmm-fem demo darcy_filter` or `python3 demos/demo_darcy_filter.py`.

# +
import argparse
import sys
from pathlib import Path

import numpy as np
import ufl
from dolfinx import mesh
from mpi4py import MPI

from hmm_fem import cells
from hmm_fem.cells import PermeabilityCell, PermeabilityModel
from hmm_fem.macro import SteadyDarcy

parser = argparse.ArgumentParser(description="graded filter demo")
parser.add_argument("--quick", action="store_true", help="coarse meshes (used by the tests)")
parser.add_argument("--output", default="results/darcy_filter", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)
mesh_size = 0.1 if args.quick else 0.05
resolution, mu = 0.05, 1.0
# -

# ## The macro problem


# +
def solid_fraction(x):
    return 0.1 + 0.2 * x


model = PermeabilityModel(
    lambda f: cells.square(f, mesh_size=mesh_size), viscosity=mu, parameter_resolution=resolution
)
# The rounded solid fraction jumps at x = 0.125, 0.375, ...: element edges when n is a
# multiple of 8, so the permeability is constant on every element.
n = 16 if args.quick else 32
filter_mesh = mesh.create_rectangle(
    comm, [[0.0, 0.0], [2.0, 1.0]], [2 * n, n], cell_type=mesh.CellType.quadrilateral
)
x = ufl.SpatialCoordinate(filter_mesh)
darcy = SteadyDarcy(
    filter_mesh,
    model,
    parameters={"solid_fraction": solid_fraction(x[0])},
    dirichlet=[(lambda p: np.isclose(p[0], 0.0), 1.0), (lambda p: np.isclose(p[0], 2.0), 0.0)],
)
report = darcy.solve()
say(report)
flux = darcy.coupling.cell_averages("value")[:, 0]
q_fe2 = comm.allreduce(flux.sum(), op=MPI.SUM) / comm.allreduce(len(flux), op=MPI.SUM)
# -

# ## Resistances in series, from separate cell solves

# +
rounded = lambda f: np.round(f / resolution) * resolution  # noqa: E731
k_of = {
    f: PermeabilityCell(cells.square(f, mesh_size=mesh_size)).permeability()[0, 0]
    for f in np.unique(rounded(solid_fraction(np.linspace(0, 2, 2001))))
}
# k is constant on each of the 16 segments between jumps (width 0.125): exact sum.
midpoints = 0.0625 + 0.125 * np.arange(16)
resistance = 0.125 * sum(mu / k_of[f] for f in rounded(solid_fraction(midpoints)))
q_series = 1.0 / resistance
checks = {
    f"flux {q_fe2:.10e} = series resistances {q_series:.10e} (1e-8)": abs(q_fe2 / q_series - 1)
    < 1e-8,
    f"{model.num_cells_built} Stokes cells built for {report.statistics.point_evaluations} "
    "point evaluations": model.num_cells_built <= len(k_of),
}
for text, ok in checks.items():
    say(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## Output for ParaView (pressure, Darcy flux, k, solid fraction) and a picture

# +
output = Path(args.output)
for kind, path in darcy.write(output / "filter").items():
    say(f"wrote {kind:<11} {path}")
if not args.no_png and comm.size == 1:
    from hmm_fem.io import plot_macro_fields

    png = plot_macro_fields(
        darcy,
        output / "filter.png",
        solution="k",
        component=(0, 0),
        labels=("pressure p", "permeability k_xx / L^2"),
    )
    say(f"wrote picture     {png}")
if not all(checks.values()):
    sys.exit("demo_darcy_filter: a check FAILED")
say("demo_darcy_filter: all checks passed")
# -
