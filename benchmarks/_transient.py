"""Shared runs of the transient-micro validation and benchmark: the DNS and the four models.

The problems (issue 12): a medium of unit-period cells with a centred square block of
side 0.5 (``block_cell``), at rest (T = 0), heated from the boundary (T = 1 on x = 0 in 1D,
on x = 0 and y = 0 in 2D) by backward Euler. "1D" is a strip one period high with insulated
long sides (a 1D macro mesh, the DNS on the strip: by the cell's mirror symmetry the
transverse macro gradient vanishes).

* standard scaling ("slow inclusions"): block conductivity 0.1, matrix 1: the quasi-static
  FE² and the transient-micro HMM both converge to the DNS as eps falls;
* double porosity: block conductivity eps^2 D (D = 0.05; block relaxation time 0.25, the
  run's time scale): the memory model converges, the quasi-static and fracture-only laws
  do not.
"""

from __future__ import annotations

import time

import numpy as np
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from hmm_fem.cells import ConductivityModel
from hmm_fem.cells.transient import block_cell
from hmm_fem.macro import TransientHeat
from hmm_fem.macro.double_porosity import DoublePorosityHeat
from hmm_fem.macro.fine_scale import FineScaleHeat, point_values, relative_l2_difference
from hmm_fem.micro.cell_models import BlockExchangeModel, MacroAxes, TransientConductivityModel

BLOCK = 0.5
CELLS_PER_PERIOD = 8
SLOW = {"matrix": 1.0, "inclusion": 0.1}
D_BLOCK = 0.05
INSULATING = {"matrix": 1.0, "inclusion": 1e-9}


def boundary(dim):
    """The heated boundary: x = 0 (1D strip), x = 0 and y = 0 (2D)."""

    def left(x):
        return np.isclose(x[0], 0.0)

    def bottom(x):
        return np.isclose(x[1], 0.0)

    return [(left, 1.0)] if dim == 1 else [(left, 1.0), (bottom, 1.0)]


def probe(dim):
    """A point in the fractures for every eps = 1/2^k (a period corner)."""
    return [0.25, 0.0] if dim == 1 else [0.25, 0.25]


def run_dns(
    dim, eps, conductivities, dt, steps, cells_per_period=CELLS_PER_PERIOD, comm=None, record=True
):
    """The DNS; returns its final state, the probe history (if ``record``) and the cost."""
    comm = comm or MPI.COMM_WORLD
    start = time.perf_counter()
    dns = FineScaleHeat(
        comm,
        (1.0, eps if dim == 1 else 1.0),
        eps,
        cells_per_period,
        BLOCK,
        conductivities,
        (1.0, 1.0),
        dt,
        boundary(dim),
    )
    history = [0.0]
    blocks = [0.0]
    for _ in range(steps):
        dns.step()
        if record:
            history.append(float(point_values(dns.u, [probe(dim)])[0]))
            blocks.append(dns.phase_average(block=True))
    return {
        "dns": dns,
        "probe": np.array(history),
        "blocks": np.array(blocks),
        "seconds": time.perf_counter() - start,
        "dofs": dns.num_dofs,
    }


def macro_mesh(dim, n, comm=None):
    """The macro mesh: ``n`` intervals on [0, 1], or an ``n x n`` triangulated unit square."""
    comm = comm or MPI.COMM_WORLD
    if dim == 1:
        return mesh.create_interval(comm, n, [0.0, 1.0])
    return mesh.create_unit_square(comm, n, n)


def flux_model(dim, model):
    """The flux model as the macro dimension sees it."""
    return MacroAxes(model) if dim == 1 else model


def run_macro(
    kind,
    dim,
    dt,
    steps,
    n,
    comm=None,
    window=None,
    kernel="smooth",
    micro_steps=64,
    record=True,
    diffusivity=D_BLOCK,
    cells_per_period=CELLS_PER_PERIOD,
):
    """One homogenised model: ``quasi-static``, ``hmm`` (standard scaling), ``memory``,
    ``quasi-static-dp`` (blocks in equilibrium), ``fracture-only`` (double porosity)."""
    start = time.perf_counter()
    msh = macro_mesh(dim, n, comm)
    cell = block_cell(cells_per_period, BLOCK)
    bcs = boundary(dim)
    if kind == "quasi-static":
        heat = TransientHeat(
            msh, flux_model(dim, ConductivityModel(cell, SLOW)), dt=dt, dirichlet=bcs
        )
    elif kind == "hmm":
        model = TransientConductivityModel(
            cell, SLOW, window=window, kernel=kernel, micro_steps=micro_steps
        )
        heat = TransientHeat(msh, flux_model(dim, model), dt=dt, dirichlet=bcs)
    elif kind == "memory":
        blocks = BlockExchangeModel(
            BLOCK, diffusivity, 1.0, cells_per_side=int(cells_per_period * BLOCK)
        )
        heat = DoublePorosityHeat(
            msh,
            flux_model(dim, ConductivityModel(cell, INSULATING)),
            blocks,
            fracture_capacity=1 - BLOCK**2,
            dt=dt,
            dirichlet=bcs,
        )
    elif kind in ("quasi-static-dp", "fracture-only"):
        capacity = 1.0 if kind == "quasi-static-dp" else 1 - BLOCK**2
        heat = TransientHeat(
            msh,
            flux_model(dim, ConductivityModel(cell, INSULATING)),
            heat_capacity=capacity,
            dt=dt,
            dirichlet=bcs,
        )
    else:
        raise ValueError(kind)
    history, blocks = [0.0], [0.0]
    point = [probe(dim)[0]] if dim == 1 else probe(dim)
    mean = fem.form(heat.T * ufl.dx)
    for _ in range(steps):
        heat.step()
        if record:
            history.append(float(point_values(heat.T, [point])[0]))
            blocks.append(block_mean(kind, heat, mean))
    return {
        "heat": heat,
        "T": heat.T,
        "probe": np.array(history),
        "blocks": np.array(blocks),
        "seconds": time.perf_counter() - start,
        "micro_solves": heat.statistics.total(msh.comm).micro_solves,
    }


def block_mean(kind, heat, mean_form):
    """Mean block temperature over the domain (unit area): the memory model's blocks, U
    itself when the blocks are in equilibrium, nothing when they are impermeable."""
    comm = heat.mesh.comm
    if kind == "memory":
        heat_per_cell = heat.block_heat()  # equal cell areas on the structured macro meshes
        total = comm.allreduce(float(heat_per_cell.sum()), MPI.SUM)
        count = comm.allreduce(heat_per_cell.size, MPI.SUM)
        return total / count / BLOCK**2
    if kind == "fracture-only":
        return 0.0
    return comm.allreduce(fem.assemble_scalar(mean_form), MPI.SUM)


def error(dns_run, macro_run, fractures_only=False):
    """Relative L2 difference against the DNS (over the fractures for double porosity)."""
    dns = dns_run["dns"]
    region = dns.phase_indicator(block=False) if fractures_only else None
    return relative_l2_difference(dns.u, macro_run["T"], region)
