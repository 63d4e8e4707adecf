"""Benchmark: the conductivity cell, cold and warm, against the raw PETSc floor.

For a 2D square-array cell of about 1e5 dofs (P1) it times

  (a) cold:  meshing (gmsh), form compilation (JIT, in an empty cache) and the solve;
  (b) warm:  re-evaluation of K* with new phase values on the built cell
             (reassemble, refactorise, d solves, K*);
  (c) floor: the same work with none of our code around it: assemble the same
             bilinear form with DOLFINx into a preallocated PETSc matrix, factorise the
             constrained cell matrix with the same direct solver as the cell (sparse
             Cholesky, CHOLMOD), and solve d right-hand sides.
             The floor keeps the symbolic factorisation between repetitions (numeric
             refactorisation only), as our warm path does; the floor with a fresh
             symbolic factorisation is printed too.

The last line is ``warm/floor: X.XX`` (target <= 1.3). Run: ``make bench`` or
``docker/run python3 benchmarks/cell_conductivity.py [--mesh-size H] [--repeat N]``.
"""

import argparse
import os
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument(
    "--mesh-size", type=float, default=0.0036, help="element size (default ~1e5 dofs)"
)
parser.add_argument("--repeat", type=int, default=5, help="repetitions of warm and floor")
parser.add_argument("--keep-jit-cache", action="store_true", help="do not use an empty JIT cache")
args = parser.parse_args()

if not args.keep_jit_cache:
    # An empty FFCx cache makes the cold run pay for form compilation.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hmm-fem-bench-jit-")

import numpy as np
import ufl
from _common import RawFloor, best
from dolfinx import fem

from hmm_fem import cells
from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS

# (a) cold
start = time.perf_counter()
cell = cells.square(0.4, mesh_size=args.mesh_size)
t_mesh = time.perf_counter() - start
problem = cells.ConductivityCell(cell, {"matrix": 1.0, "inclusion": 10.0})
K = problem.effective_tensor()
t_cold = time.perf_counter() - start
d = cell.dim
print(f"cell: square f=0.4, {cell.num_cells} triangles, {problem.num_dofs} dofs (P1)")
print(f"K*_xx = {K[0, 0]:.6f}")
print(f"(a) cold:  {t_cold:.3f} s  (meshing {t_mesh:.3f} s)")

# (b) warm: new phase values each time, so nothing is served from memory
values = iter(np.linspace(2.0, 50.0, 10 * args.repeat))
warm_min, warm_median = best(
    lambda: problem.effective_tensor({"matrix": 1.0, "inclusion": next(values)}), args.repeat
)
print(f"(b) warm:  {warm_min:.3f} s  (median {warm_median:.3f} s)")

# (c) floor: plain DOLFINx assembly + MUMPS LU + d solves of the same constrained matrix
V = problem.V
u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
a_plain = fem.form(ufl.inner(problem.conductivity * ufl.grad(u), ufl.grad(v)) * ufl.dx)
raw = RawFloor(a_plain, problem.solver.A, d, DEFAULT_SOLVER_OPTIONS)
fresh_min, fresh_median = best(raw.fresh, args.repeat)
floor_min, floor_median = best(raw.numeric, args.repeat)
print(f"(c) floor: {floor_min:.3f} s  (median {floor_median:.3f} s; numeric refactorisation)")
print(
    f"    floor with a fresh symbolic factorisation: {fresh_min:.3f} s; warm/that: "
    f"{warm_min / fresh_min:.2f}"
)
print(f"cold/warm: {t_cold / warm_min:.2f}")
print(f"warm/floor: {warm_min / floor_min:.2f}")
