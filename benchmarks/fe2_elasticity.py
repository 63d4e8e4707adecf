"""Benchmark: finite-strain FE² elasticity with Neo-Hookean cells (nonlinear micro).

Macro: unit square, P1, ``NX x NX x 2`` triangles, one quadrature point each, a
stretch plus a body force. Micro: a two-phase Neo-Hookean square cell of about 5,000
dofs, one micro Newton solve per distinct macro state, warm-started.

Prints:
  - micro time per micro solve against the raw floor of the same cell. The floor of one
    micro solve with k Newton iterations and an exact consistent tangent is k + 1 times
    (plain DOLFINx assembly of residual and Jacobian, numeric Cholesky refactorisation
    with CHOLMOD, one solve) -- the k Newton steps plus the factorisation of the converged
    Jacobian that the tangent needs -- and the d*d tangent right-hand sides (assembly +
    solves); k is the measured mean. ``micro/floor`` (target <= 1.3) is the last-but-one
    line;
  - the wall time serially and under ``mpirun -n 2`` (the last line is the speed-up).

Run: ``docker/run python3 benchmarks/fe2_elasticity.py``.
"""

import argparse
import json
import os
import sys
import time

from _common import launch

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--nx", type=int, default=6, help="macro triangles per side / 2")
parser.add_argument("--cell-size", type=float, default=0.025, help="cell mesh size (~5000 dofs)")
parser.add_argument("--run", action="store_true", help="(internal) one solve, JSON out")
args = parser.parse_args()


def run_case():
    import dolfinx.fem.petsc
    import numpy as np
    from dolfinx import mesh
    from mpi4py import MPI
    from petsc4py import PETSc

    from hmm_fem import cells
    from hmm_fem.cells import DEFAULT_SOLVER_OPTIONS, HyperelasticModel
    from hmm_fem.macro import StaticElasticity

    comm = MPI.COMM_WORLD
    cell = cells.square(0.3, mesh_size=args.cell_size)
    model = HyperelasticModel(cell, {"matrix": (1.0, 0.3), "inclusion": (10.0, 0.2)})
    plate = mesh.create_unit_square(comm, args.nx, args.nx)
    problem = StaticElasticity(
        plate,
        model,
        dirichlet=[
            (lambda x: np.isclose(x[0], 0.0), (0.0, 0.0)),
            (lambda x: np.isclose(x[0], 1.0), (0.15, 0.05)),
        ],
        body_force=(0.0, -0.2),
        quadrature_degree=1,
        progress=False,
    )
    comm.barrier()
    start = time.perf_counter()
    report = problem.solve(steps=1)
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    stats = problem.statistics
    solves = comm.allreduce(stats.micro_solves, op=MPI.SUM)
    iterations = comm.allreduce(model.newton_iterations, op=MPI.SUM)
    floor = None
    if comm.size == 1:
        c = model.cell
        K_plain = dolfinx.fem.petsc.create_matrix(c._K)
        R_plain = dolfinx.fem.petsc.create_vector(c.V)
        K_cell = c.solver.A.copy()
        ksp = PETSc.KSP().create(MPI.COMM_SELF)
        ksp.setOperators(K_cell)
        ksp.setType("preonly")
        ksp.getPC().setType(DEFAULT_SOLVER_OPTIONS["pc_type"])
        ksp.getPC().setFactorSolverType(DEFAULT_SOLVER_OPTIONS["pc_factor_mat_solver_type"])
        ksp.setUp()
        b, x = K_cell.createVecLeft(), K_cell.createVecRight()
        b.setRandom()
        repeat = 50
        t0 = time.perf_counter()
        for i in range(repeat):
            K_plain.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(K_plain, c._K)
            K_plain.assemble()
            with R_plain.localForm() as local:
                local.set(0.0)
            dolfinx.fem.petsc.assemble_vector(R_plain, c._R)
            K_cell.scale(2.0 if i % 2 else 0.5)
            ksp.setOperators(K_cell)
            ksp.setUp()
            ksp.solve(b, x)
        per_iteration = (time.perf_counter() - t0) / repeat
        d = cell.dim
        t0 = time.perf_counter()
        for _ in range(repeat):
            for _ in range(d * d):
                with R_plain.localForm() as local:
                    local.set(0.0)
                dolfinx.fem.petsc.assemble_vector(R_plain, c._L_tangent)
                ksp.solve(b, x)
        per_tangent = (time.perf_counter() - t0) / repeat
        floor = {"per_iteration": per_iteration, "per_tangent": per_tangent}
    result = {
        "ranks": comm.size,
        "seconds": seconds,
        "solves": solves,
        "iterations": iterations,
        "micro_seconds": comm.allreduce(stats.micro_seconds, op=MPI.SUM),
        "newton": report.iterations,
        "cell_dofs": model.cell.V.dofmap.index_map.size_global * model.cell.V.dofmap.index_map_bs,
        "floor": floor,
        "points": comm.allreduce(problem.coupling.num_points, op=MPI.SUM),
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
mean_iterations = serial["iterations"] / serial["solves"]
per_solve = serial["micro_seconds"] / serial["solves"]
floor = (mean_iterations + 1) * serial["floor"]["per_iteration"] + serial["floor"]["per_tangent"]
print(
    f"macro: {serial['points']} quadrature points, {serial['newton']} Newton iterations; "
    f"cell: {serial['cell_dofs']} dofs"
)
print(
    f"serial: {serial['seconds']:.2f} s, {serial['solves']} micro solves, "
    f"{mean_iterations:.2f} micro Newton iterations each, {1e3 * per_solve:.1f} ms per solve; "
    f"floor {1e3 * floor:.1f} ms ({1e3 * serial['floor']['per_iteration']:.1f} ms per "
    f"iteration + {1e3 * serial['floor']['per_tangent']:.1f} ms tangent)"
)
parallel = launch(["mpirun", "-n", "2", *me])
print(f"2 ranks: {parallel['seconds']:.2f} s, {parallel['solves']} micro solves")
print(f"micro/floor: {per_solve / floor:.2f}")
print(f"speed-up on 2 ranks: {serial['seconds'] / parallel['seconds']:.2f}")
