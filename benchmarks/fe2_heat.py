"""Benchmark: nonlinear FE² heat conduction (temperature-dependent conductivity cell).

Macro: unit square, P1, ``NX x NX`` triangles with 3 quadrature points each (>= 2000
points). Micro: a square-array cell (f = 0.4) with about 5,000 dofs whose phases
depend on T, so every point and Newton iterate needs its own cell solve.

Prints:
  (a) micro time per quadrature-point evaluation against the raw floor of the same
      cell: plain DOLFINx assembly of the cell matrix, numeric refactorisation with the
      cell's direct solver (CHOLMOD Cholesky) and d solves (``micro/floor``, target <= 1.3);
  (b) wall time of the whole solve serially and under ``mpirun -n 2`` (target >= 1.7);
  (c) the micro solves the cache saves when states repeat: the same problem solved
      with a temperature resolution of 1e-3 (``state_tolerance``).

The last-but-one line is ``micro/floor: X.XX``. Run it with
``docker/run python3 benchmarks/fe2_heat.py`` (it starts the MPI runs itself).
"""

import argparse
import json
import os
import sys
import time

from _common import launch

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--nx", type=int, default=26, help="macro triangles per side / 2 (default 26)")
parser.add_argument("--cell-size", type=float, default=0.0165, help="cell mesh size (~5000 dofs)")
parser.add_argument("--run", action="store_true", help="(internal) run one solve and print JSON")
parser.add_argument("--state-tolerance", type=float, default=0.0)
args = parser.parse_args()


def run_case():
    """One macro solve; prints a JSON line (rank 0)."""
    import dolfinx.fem.petsc
    import numpy as np
    import ufl
    from dolfinx import fem, mesh
    from mpi4py import MPI
    from petsc4py import PETSc

    from hmm_fem import cells
    from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS, ConductivityModel, LinearLaw
    from hmm_fem.macro import SteadyHeat

    comm = MPI.COMM_WORLD
    cell = cells.square(0.4, mesh_size=args.cell_size)
    model = ConductivityModel(
        cell, {"matrix": LinearLaw(1.0, 0.5), "inclusion": LinearLaw(10.0, -0.2)}
    )
    problem = model.cell_problem(T=0.0)  # built at the boundary temperature, as the solve does
    plate = mesh.create_unit_square(comm, args.nx, args.nx)
    heat = SteadyHeat(
        plate,
        model,
        source=10.0,
        dirichlet=[(lambda x: np.full(x.shape[1], True), 0.0)],
        state_tolerance=args.state_tolerance,
        progress=False,
    )
    comm.barrier()
    start = time.perf_counter()
    report = heat.solve()
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    stats = report.statistics
    T_norm = np.sqrt(comm.allreduce(fem.assemble_scalar(fem.form(heat.T**2 * ufl.dx)), op=MPI.SUM))
    points = comm.allreduce(heat.coupling.num_points, op=MPI.SUM)

    # The floor: the same cell matrix with none of our code around it.
    floor = None
    if comm.size == 1:
        V = problem.V
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        a_plain = fem.form(ufl.inner(problem.conductivity * ufl.grad(u), ufl.grad(v)) * ufl.dx)
        A_plain = dolfinx.fem.petsc.create_matrix(a_plain)
        A_cell = problem.solver.A.copy()
        ksp = PETSc.KSP().create(MPI.COMM_SELF)
        ksp.setOperators(A_cell)
        ksp.setType("preonly")
        ksp.getPC().setType(DEFAULT_SOLVER_OPTIONS["pc_type"])
        ksp.getPC().setFactorSolverType(DEFAULT_SOLVER_OPTIONS["pc_factor_mat_solver_type"])
        ksp.setUp()
        rhs = [A_cell.createVecLeft() for _ in range(cell.dim)]
        for b in rhs:
            b.setRandom()
        x = A_cell.createVecRight()
        repeat, factors = 200, [2.0, 0.5]
        t0 = time.perf_counter()
        for i in range(repeat):
            A_plain.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(A_plain, a_plain)
            A_plain.assemble()
            A_cell.scale(factors[i % 2])
            ksp.setOperators(A_cell)
            ksp.setUp()
            for b in rhs:
                ksp.solve(b, x)
        floor = (time.perf_counter() - t0) / repeat
    result = {
        "ranks": comm.size,
        "seconds": seconds,
        "points": points,
        "cell_dofs": problem.num_dofs,
        "iterations": report.iterations,
        "micro_solves": stats.micro_solves,
        "point_evaluations": stats.point_evaluations,
        "cache_hits": stats.cache_hits,
        "micro_seconds": comm.allreduce(heat.statistics.micro_seconds, op=MPI.SUM),
        "T_norm": T_norm,
        "floor": floor,
    }
    if comm.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


if args.run:
    run_case()
    sys.exit(0)

me = [
    sys.executable,
    os.path.abspath(__file__),
    "--run",
    "--nx",
    str(args.nx),
    "--cell-size",
    str(args.cell_size),
]
serial = launch(me)
print(
    f"macro: {serial['points']} quadrature points; cell: {serial['cell_dofs']} dofs; "
    f"{serial['iterations']} Newton iterations"
)
per_solve = serial["micro_seconds"] / serial["micro_solves"]
print(
    f"(a) serial: {serial['seconds']:.2f} s, {serial['micro_solves']} micro solves, "
    f"{1e3 * per_solve:.2f} ms per solve; floor {1e3 * serial['floor']:.2f} ms "
    "(assemble + numeric refactorisation + d solves)"
)
parallel = launch(["mpirun", "-n", "2", *me])
print(
    f"(b) 2 ranks: {parallel['seconds']:.2f} s, {parallel['micro_solves']} micro solves; "
    f"relative change of ||T||: {abs(parallel['T_norm'] / serial['T_norm'] - 1):.1e}"
)
cached = launch([*me, "--state-tolerance", "1e-3"])
saved = serial["micro_solves"] - cached["micro_solves"]
print(
    f"(c) state resolution 1e-3: {cached['micro_solves']} micro solves instead of "
    f"{serial['micro_solves']} (the cache saved {saved}, "
    f"{100 * saved / serial['micro_solves']:.0f} %), "
    f"{cached['seconds']:.2f} s; relative change of ||T||: "
    f"{abs(cached['T_norm'] / serial['T_norm'] - 1):.1e}"
)
print(f"speed-up on 2 ranks: {serial['seconds'] / parallel['seconds']:.2f}")
print(f"micro/floor: {per_solve / serial['floor']:.2f}")
print(f"cache saved: {saved} of {serial['micro_solves']} micro solves")
