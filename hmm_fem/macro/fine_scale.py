"""Direct fine-scale simulation (DNS) of heat conduction in a periodic block medium.

The reference of the time-dependent homogenisation models: ``c(x) du/dt = div(k(x) grad u)``
on a structured triangle mesh that resolves every period ``eps`` with
``cells_per_period`` cells per side, the centred square blocks of
:func:`hmm_fem.cells.transient.block_cell` (side ``block_side * eps``) tagged exactly.
Backward Euler; the matrix ``c M / dt + K`` is assembled and LU-factorised once (MUMPS,
its own options prefix), every step is one assembly of the right-hand side and one
back-substitution. Runs on any communicator.

The same time stepping as the macro models (backward Euler, equal ``dt``) makes the
comparison one of the spatial models, not of the time discretisations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from time import perf_counter

import dolfinx.fem.petsc
import dolfinx.geometry
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI
from petsc4py import PETSc

from ..cells.transient import check_block, in_block
from ..solver_options import PrefixedOptions

__all__ = ["FineScaleHeat", "point_values", "relative_l2_difference"]

_counter = itertools.count()

#: Direct solver of the fine-scale system.
FINE_SCALE_SOLVER_OPTIONS = {
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}


class FineScaleHeat:
    """``c du/dt = div(k grad u)`` resolving every period of a block medium (the DNS).

    Example:
        >>> dns = FineScaleHeat(MPI.COMM_WORLD, (1.0, 1.0), 1 / 16, 8, 0.5,
        ...                     conductivities=(1.0, 0.1), dt=1e-3,
        ...                     dirichlet=[(lambda x: np.isclose(x[0], 0), 1.0)])
        >>> for _ in range(10): dns.step()
        >>> point_values(dns.u, [[0.3, 0.5, 0]])

    Args:
        comm: Communicator of the mesh.
        lengths: Domain ``[0, L_0] x [0, L_1]``; each a whole number of periods.
        period: The period ``eps``.
        cells_per_period: Mesh cells along a period (block edges on mesh lines).
        block_side: Block side as a fraction of the period.
        conductivities: ``(k_matrix, k_block)`` (physical; a double-porosity block has
            ``eps^2 D``).
        capacities: ``(c_matrix, c_block)``.
        dt: Time step.
        dirichlet: ``(marker, value)`` pairs: ``marker(x) -> bool`` on the boundary,
            ``value`` a number or a function of time ``g(t)`` (evaluated at the step's end).
        initial_temperature: Uniform initial temperature.
        petsc_options: Linear solver options (default: MUMPS LU).

    Attributes:
        u: The temperature.
        time: The current time.
        num_dofs: Global number of unknowns.
        seconds: Wall time spent in setup and steps (this rank).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        lengths: Sequence[float],
        period: float,
        cells_per_period: int,
        block_side: float,
        conductivities: tuple[float, float],
        capacities: tuple[float, float] = (1.0, 1.0),
        dt: float = 1e-3,
        dirichlet: Sequence[tuple[Callable, float | Callable]] = (),
        initial_temperature: float = 0.0,
        petsc_options: dict | None = None,
    ):
        start = perf_counter()
        m, b = check_block(cells_per_period, block_side, "FineScaleHeat")
        counts = []
        for L in lengths:
            periods = float(L) / float(period)
            if abs(periods - round(periods)) > 1e-9 or round(periods) < 1:
                raise ValueError(
                    f"FineScaleHeat: the side {L} is not a whole number of periods {period}"
                )
            counts.append(int(round(periods)) * m)
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"FineScaleHeat: dt must be positive, got {dt}")
        self.period, self.block_side, self.dt = float(period), b, float(dt)
        self.mesh = msh = dmesh.create_rectangle(
            comm,
            [[0.0, 0.0], [float(lengths[0]), float(lengths[1])]],
            counts,
            dmesh.CellType.triangle,
        )
        tdim = msh.topology.dim
        imap = msh.topology.index_map(tdim)
        cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        blocks = in_block(dmesh.compute_midpoints(msh, tdim, cells).T, self.period, b)
        Q0 = fem.functionspace(msh, ("DG", 0))
        k, c = fem.Function(Q0, name="conductivity"), fem.Function(Q0, name="capacity")
        dofs = Q0.dofmap.list[cells, 0]
        k.x.array[dofs] = np.where(blocks, conductivities[1], conductivities[0])
        c.x.array[dofs] = np.where(blocks, capacities[1], capacities[0])
        self.conductivity, self.capacity = k, c
        self.V = V = fem.functionspace(msh, ("Lagrange", 1))
        self.u = fem.Function(V, name="T")
        self.u.x.array[:] = initial_temperature
        self.u_old = fem.Function(V)
        self.u_old.x.array[:] = initial_temperature
        self.time = 0.0
        msh.topology.create_connectivity(tdim - 1, tdim)
        self._dirichlet = []
        self.bcs = []
        for marker, value in dirichlet:
            facets = dmesh.locate_entities_boundary(msh, tdim - 1, marker)
            bc_dofs = fem.locate_dofs_topological(V, tdim - 1, facets)
            constant = fem.Constant(msh, PETSc.ScalarType(0.0))
            self._dirichlet.append((constant, value))
            self.bcs.append(fem.dirichletbc(constant, bc_dofs, V))
        self._set_boundary_values(0.0)
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        inv_dt = fem.Constant(msh, PETSc.ScalarType(1.0 / self.dt))
        self._a = fem.form(
            c * inv_dt * u * v * ufl.dx + ufl.inner(k * ufl.grad(u), ufl.grad(v)) * ufl.dx
        )
        self._L = fem.form(c * inv_dt * self.u_old * v * ufl.dx)
        self.A = dolfinx.fem.petsc.assemble_matrix(self._a, bcs=self.bcs)
        self.A.assemble()
        self.b = dolfinx.fem.petsc.create_vector(V)
        prefix = f"hmm_fine_{next(_counter)}_"
        self._options = PrefixedOptions(prefix, petsc_options or FINE_SCALE_SOLVER_OPTIONS)
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setOptionsPrefix(prefix)
        self.ksp.setOperators(self.A)
        self.ksp.setFromOptions()
        self.ksp.setUp()
        self.num_dofs = V.dofmap.index_map.size_global
        self.seconds = perf_counter() - start

    def _set_boundary_values(self, time: float) -> None:
        for constant, value in self._dirichlet:
            constant.value = float(value(time) if callable(value) else value)

    def step(self) -> None:
        """Advance one backward-Euler step (one assembly of the load, one back-substitution)."""
        start = perf_counter()
        self.time += self.dt
        self._set_boundary_values(self.time)
        self.u_old.x.array[:] = self.u.x.array
        with self.b.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self.b, self._L)
        dolfinx.fem.petsc.apply_lifting(self.b, [self._a], bcs=[self.bcs])
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs)
        self.ksp.solve(self.b, self.u.x.petsc_vec)
        reason = self.ksp.getConvergedReason()
        if reason <= 0:
            raise RuntimeError(f"FineScaleHeat: the linear solve failed (KSP reason {reason})")
        self.u.x.scatter_forward()
        self.seconds += perf_counter() - start

    def phase_indicator(self, block: bool) -> fem.Function:
        """The DG0 indicator of the blocks (``block=True``) or of the matrix (fractures)."""
        indicator = fem.Function(self.conductivity.function_space)
        msh = self.mesh
        tdim = msh.topology.dim
        imap = msh.topology.index_map(tdim)
        cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        inside = in_block(dmesh.compute_midpoints(msh, tdim, cells).T, self.period, self.block_side)
        dofs = self.conductivity.function_space.dofmap.list[cells, 0]
        indicator.x.array[dofs] = inside if block else ~inside
        return indicator

    def phase_average(self, block: bool) -> float:
        """Mean temperature of the blocks (``block=True``) or of the matrix (collective)."""
        indicator = self.phase_indicator(block)
        comm = self.mesh.comm
        num = fem.assemble_scalar(fem.form(indicator * self.u * ufl.dx))
        den = fem.assemble_scalar(fem.form(indicator * ufl.dx))
        return float(comm.allreduce(num, MPI.SUM) / comm.allreduce(den, MPI.SUM))

    def destroy(self) -> None:
        """Free the PETSc objects and the solver's options."""
        self.ksp.destroy()
        self.A.destroy()
        self.b.destroy()
        self._options.clear()


def point_values(function: fem.Function, points) -> np.ndarray:
    """Values of a scalar function at points (collective; every rank gets all values).

    Args:
        function: A scalar function on a distributed mesh.
        points: ``(n, 3)`` coordinates (missing trailing coordinates are zero-padded).

    Raises:
        ValueError: if a point lies outside the mesh.
    """
    msh = function.function_space.mesh
    pts = np.zeros((len(points), 3))
    given = np.atleast_2d(np.asarray(points, dtype=np.float64))
    pts[:, : given.shape[1]] = given
    tdim = msh.topology.dim
    tree = dolfinx.geometry.bb_tree(msh, tdim, padding=1e-12)
    candidates = dolfinx.geometry.compute_collisions_points(tree, pts)
    colliding = dolfinx.geometry.compute_colliding_cells(msh, candidates, pts)
    owned = msh.topology.index_map(tdim).size_local
    values = np.zeros(len(pts))
    found = np.zeros(len(pts))
    for i in range(len(pts)):  # a handful of probe points, not a hot path
        cells = colliding.links(i)
        cells = cells[cells < owned]
        if cells.size:
            values[i] = function.eval(pts[i], cells[:1])[0]
            found[i] = 1.0
    values = msh.comm.allreduce(values, MPI.SUM)
    found = msh.comm.allreduce(found, MPI.SUM)
    if np.any(found == 0):
        raise ValueError(f"points outside the mesh: {pts[found == 0][:3].tolist()}")
    return values / found


def relative_l2_difference(
    fine: fem.Function, coarse: fem.Function, region: fem.Function | None = None
) -> float:
    """``||fine - I coarse|| / ||fine||`` in L2 over the fine mesh (collective).

    With ``region`` (a DG0 indicator on the fine mesh, e.g.
    :meth:`FineScaleHeat.phase_indicator`) both norms are taken over that region only: the
    fractures of a double-porosity medium, where the macro temperature is the fine one.

    ``coarse`` lives on another mesh: of the same dimension (interpolated with DOLFINx's
    non-matching interpolation), or on an interval when ``fine`` is 2D (a quasi-1D
    problem: the coarse P1 function is evaluated at the fine nodes' ``x``, exactly).
    """
    V = fine.function_space
    interpolated = fem.Function(V)
    cmesh = coarse.function_space.mesh
    if cmesh.topology.dim == V.mesh.topology.dim:
        tdim = V.mesh.topology.dim
        imap = V.mesh.topology.index_map(tdim)
        cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        data = fem.create_interpolation_data(V, coarse.function_space, cells, padding=1e-10)
        interpolated.interpolate_nonmatching(coarse, cells, data)
    elif cmesh.topology.dim == 1:
        if coarse.function_space.element.basix_element.degree != 1:
            raise ValueError("relative_l2_difference: a 1D coarse function must be P1")
        coords = coarse.function_space.tabulate_dof_coordinates()[:, 0]
        nodes = np.concatenate(cmesh.comm.allgather(coords))
        vals = np.concatenate(cmesh.comm.allgather(coarse.x.array[: coords.size]))
        order = np.argsort(nodes)
        x_fine = V.tabulate_dof_coordinates()[:, 0]
        interpolated.x.array[:] = np.interp(x_fine, nodes[order], vals[order])
    else:
        raise ValueError(
            "relative_l2_difference: the coarse mesh must be 1D or of fine's dimension"
        )
    weight = 1.0 if region is None else region
    diff = fem.form(weight * (fine - interpolated) ** 2 * ufl.dx)
    norm = fem.form(weight * fine**2 * ufl.dx)
    comm = V.mesh.comm
    e = comm.allreduce(fem.assemble_scalar(diff), MPI.SUM)
    n = comm.allreduce(fem.assemble_scalar(norm), MPI.SUM)
    return float(np.sqrt(e / n))
