"""Benchmark: MD boxes (LAMMPS) as micro models.

Prints:
  - the time per MD micro evaluation at T = 0 (deform, CG relaxation, stress) for a 2D
    triangular box of 8 atoms, a 3D FCC box of 32 atoms and one of 256 atoms;
  - the time per MD micro evaluation at finite temperature (FCC, 256 atoms, Langevin NVT,
    ``--steps`` MD steps in all) with the standard error it reaches and the MD steps per
    second;
  - FE² with MD at the quadrature points: a 3D bar clamped at one end and stretched by 4 %
    (not homogeneous: every point its own MD box), T = 0, 256-atom FCC boxes, tangents by
    central differences through the seam (19 MD solves per point and evaluation); the
    wall time, the time inside the MD solves, and the fraction of the FE² time spent
    outside MD (macro assembly and Newton, the dispatcher, the finite-difference wrapper,
    Python). The same for the 2D demo's 8-atom boxes is printed for comparison (there the
    MD is so cheap that the overhead shows). Last line: ``outside-MD fraction: X.XXX`` of
    the 3D case (target <= 0.05).

Serial, one process (the 2 cores are shared). Run: ``docker/run python3 benchmarks/md_micro.py``.
"""

import argparse
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--repeat", type=int, default=200, help="T = 0 solves per box")
parser.add_argument("--steps", type=int, default=10000, help="MD steps of a finite-T solve")
parser.add_argument("--cells", type=int, default=4, help="FCC cells per axis of the FE² boxes")
args = parser.parse_args()

from mpi4py import MPI  # noqa: E402  (after argparse: --help without MPI)

from hmm_fem.micro import SolveContext  # noqa: E402
from hmm_fem.micro.md import MDStressModel  # noqa: E402
from hmm_fem.micro.md import lattice_sum as ls  # noqa: E402

LJ = ls.lennard_jones(cutoff=2.5)
A_FCC = ls.zero_pressure_lattice_constant("fcc", LJ, (1.50, 1.60))
A_HEX = ls.zero_pressure_lattice_constant("hex", LJ, (1.05, 1.15))
rng = np.random.default_rng(1)


def time_zero_temperature(lattice, a, cells):
    model = MDStressModel(lattice, lattice_constant=a, cells=cells)
    d = model.dim
    H = 0.02 * rng.standard_normal((args.repeat, d, d))
    model.solve(H[0].reshape(-1), SolveContext())  # first solve: neighbour lists built
    start = time.perf_counter()
    for h in H:
        model.solve(h.reshape(-1), SolveContext())
    seconds = (time.perf_counter() - start) / args.repeat
    atoms = model.box.num_atoms
    model.close()
    return atoms, seconds


print("T = 0 (deform + CG relaxation + stress), per MD micro evaluation:")
BOXES = (("hex", A_HEX, (2, 2)), ("fcc", A_FCC, (2, 2, 2)), ("fcc", A_FCC, (4, 4, 4)))
for lattice, a, cells in BOXES:
    atoms, seconds = time_zero_temperature(lattice, a, cells)
    print(f"  {lattice} {atoms:4d} atoms: {1e3 * seconds:8.3f} ms")

blocks = 16
block_steps = (args.steps * 4 // 5) // blocks // 5 * 5
equilibration = args.steps - blocks * block_steps
model = MDStressModel(
    "fcc",
    lattice_constant=A_FCC,
    cells=(4, 4, 4),
    temperature=0.3,
    equilibration=equilibration,
    blocks=blocks,
    block_steps=block_steps,
)
start = time.perf_counter()
out = model.solve(np.zeros(9), SolveContext(seed=(1, 0, 0, 0)))
seconds = time.perf_counter() - start
steps = equilibration + blocks * block_steps
P, se = float(out["pressure"]), float(out["pressure_standard_error"])
model.close()
print(
    f"T* = 0.3 (FCC crystal, 256 atoms, Langevin, {steps} steps = {equilibration} + {blocks} "
    f"blocks x {block_steps}): {seconds:.2f} s per MD micro evaluation "
    f"({steps / seconds:.0f} steps/s, {1e3 * seconds / steps:.3f} ms/step); "
    f"P = {P:.4f} +- {se:.4f}"
)


def fe2(lattice, cells):
    from dolfinx import mesh

    from hmm_fem.macro import StaticElasticity

    comm = MPI.COMM_WORLD
    if lattice == "fcc":
        model = MDStressModel("fcc", lattice_constant=A_FCC, cells=cells)
        bar = mesh.create_box(comm, [[0, 0, 0], [4.0, 1.0, 1.0]], [4, 1, 1])
        clamp, pull = (0.0, 0.0, 0.0), 0.04 * 4.0
    else:
        model = MDStressModel("hex", lattice_constant=A_HEX, cells=cells)
        bar = mesh.create_rectangle(comm, [[0, 0], [4.0, 1.0]], [8, 2])
        clamp, pull = (0.0, 0.0), 0.04 * 4.0
    problem = StaticElasticity(
        bar,
        model.with_tangent(),
        dirichlet=[
            (lambda x: np.isclose(x[0], 0.0), clamp),
            (lambda x: np.isclose(x[0], 4.0), pull, 0),
        ],
        quadrature_degree=1,
        progress=False,
    )
    start = time.perf_counter()
    report = problem.solve(steps=2)
    total = time.perf_counter() - start
    md = model.md_seconds
    points = problem.coupling.dispatcher.statistics.point_evaluations
    model.close()
    return {
        "total": total,
        "md": md,
        "solves": model.solves,
        "points": points,
        "iterations": report.iterations,
        "atoms": model.box.num_atoms,
        "outside": (total - md) / total,
    }


fe2("hex", (2, 2))  # JIT compilation of the forms, not timed below
for lattice, cells in (("hex", (2, 2)), ("fcc", (args.cells,) * 3)):
    r = fe2(lattice, cells)
    print(
        f"FE² {lattice} bar, {r['atoms']} atoms per box: {r['total']:.2f} s, {r['md']:.2f} s "
        f"in {r['solves']} MD solves ({1e3 * r['md'] / r['solves']:.2f} ms each; "
        f"{r['points']} point evaluations, {r['iterations']} Newton iterations); outside MD "
        f"{r['outside']:.3f}"
    )
print(f"outside-MD fraction: {r['outside']:.3f}")
