# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# # Effective conductivity of a fibre composite
#
# A composite of parallel circular fibres in a square arrangement, seen in the plane
# normal to the fibres: fibre volume fraction $f = 0.4$, fibres ten times more
# conductive than the matrix. What is the effective (macroscopic) conductivity
# tensor $K^*$?
#
# Periodic homogenization answers with a cell problem. For each unit macro gradient
# $e_j$ the periodic corrector $\chi_j$ solves
# $\nabla\cdot K(e_j + \nabla\chi_j) = 0$ in the unit cell $Y$, and
# $K^*_{ij} = |Y|^{-1}\int_Y (e_i+\nabla\chi_i)\cdot K (e_j+\nabla\chi_j)\,dx$.
#
# The demo checks its own answer against the series solution of Perrins, McKenzie &
# McPhedran (1979), the Hashin-Shtrikman bounds and the symmetry of the square array,
# repeats it on the ready mesh `meshes/fibre_square_f0.4.msh`, then writes the
# correctors and local fluxes for ParaView and a PNG.
#
# Run it with `make demo`, `hmm-fem demo cell_conductivity` or
# `python3 demos/demo_cell_conductivity.py [--quick] [--output DIR]`.

# +
import argparse
import sys
from pathlib import Path

from mpi4py import MPI

from hmm_fem import cells, references
from hmm_fem.io import plot_cell_fields, write_conductivity_cell

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="coarse mesh (used by the test suite)")
parser.add_argument("--output", default="results/cell_conductivity", help="output folder")
parser.add_argument("--no-png", action="store_true", help="skip the picture")
args = parser.parse_args()
# -

# ## The cell
#
# `cells.square` builds a periodic gmsh mesh of the unit square with one disc,
# refined near the interface. The meshed volume fraction differs from the target
# by the polygonal approximation of the circle.

# +
f, k_matrix, k_fibre = 0.4, 1.0, 10.0
cell = cells.square(f, mesh_size=0.08 if args.quick else None)
print(
    f"square array: target f = {f}, meshed f = {cell.volume_fraction:.5f}, "
    f"{cell.num_cells} triangles"
)
# -

# ## The cell problem
#
# The cell is built once (space, periodic constraint, compiled forms); the two load
# cases share one LU factorisation.

problem = cells.ConductivityCell(cell, {"matrix": k_matrix, "inclusion": k_fibre})
K = problem.effective_tensor()
print(f"K* =\n{K}\n({problem.num_dofs} dofs, {problem.seconds:.3f} s)")

# ## Checks against independent references

# +
tolerance = 2e-2 if args.quick else 5e-3
perrins = references.perrins_square_array(k_matrix, k_fibre, f)
lower, upper = references.hashin_shtrikman_bounds(k_matrix, k_fibre, cell.volume_fraction, 2)
checks = {
    f"K*_xx within {tolerance:.1%} of Perrins et al. ({perrins:.6f})": abs(K[0, 0] / perrins - 1)
    < tolerance,
    "K*_xx = K*_yy (square symmetry)": abs(K[0, 0] / K[1, 1] - 1) < 1e-3,
    "K*_xy = 0 (mirror symmetry, to the mesh asymmetry)": abs(K[0, 1]) < 1e-3 * K[0, 0],
    f"Hashin-Shtrikman: {lower:.4f} <= K* <= {upper:.4f}": lower * (1 - tolerance)
    <= K[0, 0]
    <= upper,
}
for text, ok in checks.items():
    print(f"  [{'ok' if ok else 'FAILED'}] {text}")
# -

# ## The same cell from a ready mesh file
#
# `meshes/` holds ready periodic cells as gmsh files with the phase tags `cells.load`
# reads (1 = matrix, 2 = inclusion; `hmm-fem meshes` lists them). A cell of your own,
# meshed in gmsh, loads the same way. The folder sits next to `demos/` in a checkout
# and next to `hmm_fem/demos` in an installed package.

# +
mesh_file = Path(__file__).resolve().parent.parent / "meshes" / "fibre_square_f0.4.msh"
loaded = cells.load(mesh_file)  # default phases: tag 1 "matrix", tag 2 "phase_2"
from_file = cells.ConductivityCell(loaded, {"matrix": k_matrix, "phase_2": k_fibre})
K_file = from_file.effective_tensor()
from_file.destroy()
print(f"{mesh_file.name}: meshed f = {loaded.volume_fraction:.5f}, K*_xx = {K_file[0, 0]:.6f}")
to_perrins, to_generated = abs(K_file[0, 0] / perrins - 1), abs(K_file[0, 0] / K[0, 0] - 1)
file_checks = {
    f"{mesh_file.name}: K*_xx within 0.5% of Perrins et al. ({to_perrins:.3%})": to_perrins < 5e-3,
    f"{mesh_file.name}: K*_xx within {tolerance:.1%} of the generated cell": to_generated
    < tolerance,
}
for text, ok in file_checks.items():
    print(f"  [{'ok' if ok else 'FAILED'}] {text}")
checks.update(file_checks)
# -

# ## Fields for ParaView
#
# Open the `.bp` folders in ParaView (ADIOS2 VTX reader). `flux_x` is the local heat
# flux $-K(e_x + \nabla\chi_x)$ for a unit macro gradient along $x$: the fibres
# draw the heat in and it crowds into the matrix gaps between them.

# +
# The cell lives on MPI.COMM_SELF: under mpirun every rank solves it, rank 0 writes.
output = Path(args.output)
if MPI.COMM_WORLD.rank == 0:
    for kind, path in write_conductivity_cell(problem, output).items():
        print(f"wrote {kind:<11} {path}")
    if not args.no_png:
        print(f"wrote picture     {plot_cell_fields(problem, output / 'cell_conductivity.png')}")
problem.destroy()

if not all(checks.values()):
    sys.exit("demo_cell_conductivity: a check FAILED")
print("demo_cell_conductivity: all checks passed")
# -
