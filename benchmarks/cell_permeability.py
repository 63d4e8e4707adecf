"""Benchmark: the permeability (periodic Stokes) cell, cold and warm, against the raw PETSc floor.

For a 2D square-array cell (solid discs, solid fraction 0.3) with about 1e5 Taylor-Hood
(P2-P1) mixed dofs it times

  (a) cold:  meshing (gmsh), the pore submesh, form compilation (JIT, in an empty cache),
             the periodic constraint and the solve (``PermeabilityCell(cell).permeability()``);
  (b) warm:  re-evaluation of k on the built cell: reassemble the constrained Stokes
             matrix, refactorise it (numeric MUMPS LU, symbolic analysis kept), assemble
             and solve the d load cases, k from the loads and solutions, its checks.
             ``PermeabilityCell.permeability()`` keeps its result and the cell has no
             phase values to change, so the warm path forgets the stored result (the
             private ``_forget()``) and calls ``permeability()`` again.
  (c) floor: the same work with none of our code around it: assemble the same mixed
             bilinear form with DOLFINx into a preallocated PETSc matrix, factorise the
             constrained cell matrix with the same direct solver as the cell (MUMPS LU),
             and solve d right-hand sides.
             The floor keeps the symbolic factorisation between repetitions (numeric
             refactorisation only), as our warm path does; the floor with a fresh
             symbolic factorisation is printed too.

The last line is ``warm/floor: X.XX``. Run:
``docker/run python3 benchmarks/cell_permeability.py [--mesh-size H] [--repeat N]``.
"""

import argparse
import atexit
import os
import shutil
import tempfile
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument(
    "--mesh-size", type=float, default=0.0092, help="element size (default ~1e5 mixed dofs)"
)
parser.add_argument("--repeat", type=int, default=5, help="repetitions of warm and floor")
parser.add_argument("--keep-jit-cache", action="store_true", help="do not use an empty JIT cache")
args = parser.parse_args()

if not args.keep_jit_cache:
    # An empty FFCx cache makes the cold run pay for form compilation.
    jit_cache = tempfile.mkdtemp(prefix="hmm-fem-bench-jit-")
    os.environ["XDG_CACHE_HOME"] = jit_cache
    atexit.register(shutil.rmtree, jit_cache, ignore_errors=True)

import numpy as np
import ufl
from _common import RawFloor, best
from dolfinx import fem

from hmm_fem import cells
from hmm_fem.cells.stokes import STOKES_SOLVER_OPTIONS

# (a) cold
start = time.perf_counter()
cell = cells.square(0.3, mesh_size=args.mesh_size)
t_mesh = time.perf_counter() - start
problem = cells.PermeabilityCell(cell)
k = problem.permeability()
t_cold = time.perf_counter() - start
d = cell.dim
W = problem.W
num_dofs = W.dofmap.index_map.size_local * W.dofmap.index_map_bs
num_constrained = problem.solver.A.getSize()[0]
print(
    f"cell: square f=0.3, {problem.mesh.topology.index_map(d).size_local} pore triangles, "
    f"{num_dofs} mixed dofs (P2-P1), constrained matrix {num_constrained}x{num_constrained}"
)
print(f"k_xx = {k[0, 0]:.6e}  k_yy = {k[1, 1]:.6e}  k_xy = {k[0, 1]:.3e}  (cell side^2)")
print(f"(a) cold:  {t_cold:.3f} s  (meshing {t_mesh:.3f} s)")


# (b) warm: permeability() again on the built cell, its stored result forgotten
def warm():
    problem._forget()
    return problem.permeability()


k_warm = warm()
if not np.allclose(k_warm, k, rtol=1e-8, atol=0.0):
    raise RuntimeError(f"warm re-evaluation changed k: {k_warm.tolist()} vs {k.tolist()}")
warm_min, warm_median = best(warm, args.repeat)
print(f"(b) warm:  {warm_min:.3f} s  (median {warm_median:.3f} s)")

# (c) floor: plain DOLFINx assembly + MUMPS LU + d solves of the same constrained matrix
u, p = ufl.TrialFunctions(W)
v, q = ufl.TestFunctions(W)
a_plain = fem.form((ufl.inner(ufl.grad(u), ufl.grad(v)) - p * ufl.div(v) - q * ufl.div(u)) * ufl.dx)
raw = RawFloor(a_plain, problem.solver.A, d, STOKES_SOLVER_OPTIONS)
fresh_min, fresh_median = best(raw.fresh, args.repeat)
floor_min, floor_median = best(raw.numeric, args.repeat)
print(f"(c) floor: {floor_min:.3f} s  (median {floor_median:.3f} s; numeric refactorisation)")
print(
    f"    floor with a fresh symbolic factorisation: {fresh_min:.3f} s; warm/that: "
    f"{warm_min / fresh_min:.2f}"
)
print(f"cold/warm: {t_cold / warm_min:.2f}")
print(f"warm/floor: {warm_min / floor_min:.2f}")
