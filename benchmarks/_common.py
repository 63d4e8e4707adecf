"""Shared pieces of the benchmarks: timing, the raw floor of a cell solve, launching runs."""

import itertools
import json
import os
import subprocess
import time

import numpy as np


def best(fn, repeat):
    """``(minimum, median)`` wall time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


class RawFloor:
    """The work of one cell evaluation with none of our code around it.

    Plain DOLFINx assembly of ``form`` into a preallocated matrix, a direct factorisation
    of a copy of the cell's constrained matrix ``A_cell`` (``options``: ``pc_type`` and
    ``pc_factor_mat_solver_type``), and ``num_rhs`` solves.
    """

    def __init__(self, form, A_cell, num_rhs, options):
        import dolfinx.fem.petsc

        self.form, self.options = form, options
        self.A_plain = dolfinx.fem.petsc.create_matrix(form)
        self.A_cell = A_cell.copy()
        self.rhs = [self.A_cell.createVecLeft() for _ in range(num_rhs)]
        for b in self.rhs:
            b.setRandom()
        self.x = self.A_cell.createVecRight()
        self.factors = itertools.cycle([2.0, 0.5])
        self.kept = self._ksp()
        self.kept.setUp()

    def _ksp(self):
        from mpi4py import MPI
        from petsc4py import PETSc

        ksp = PETSc.KSP().create(MPI.COMM_SELF)
        ksp.setOperators(self.A_cell)
        ksp.setType("preonly")
        ksp.getPC().setType(self.options["pc_type"])
        ksp.getPC().setFactorSolverType(self.options["pc_factor_mat_solver_type"])
        return ksp

    def _assemble(self):
        import dolfinx.fem.petsc

        self.A_plain.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(self.A_plain, self.form)
        self.A_plain.assemble()

    def fresh(self):
        """Assembly, symbolic and numeric factorisation in a new KSP, the solves."""
        self._assemble()
        ksp = self._ksp()
        ksp.setUp()
        for b in self.rhs:
            ksp.solve(b, self.x)
        ksp.destroy()

    def numeric(self):
        """Assembly, numeric refactorisation only (symbolic analysis kept), the solves."""
        self._assemble()
        self.A_cell.scale(next(self.factors))  # new values: refactorised in setUp
        self.kept.setOperators(self.A_cell)
        self.kept.setUp()
        for b in self.rhs:
            self.kept.solve(b, self.x)


def launch(command):
    """Run ``command`` (a benchmark in ``--run`` mode) and return its ``RESULT`` JSON."""
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
