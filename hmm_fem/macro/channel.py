"""Planar channel flow (Couette, force-driven Poiseuille) with a kinetic micro closure.

A gas between walls at ``y = 0`` and ``y = H``, uniform in ``x`` (periodic), flowing along
``x``: ``u = (u(y), 0, 0)``, temperature ``T(y)``, uniform pressure ``p``, so that the
number density is ``n = p/(k_B T)``. The balances of momentum along ``x`` and of energy are

    d sigma_xy/dy + m n g = 0,          d q_y/dy = sigma_xy du/dy,

with the body force per unit mass ``g`` (along ``x``) and the viscous shear stress
``sigma_xy`` and heat flux ``q_y`` answered by a micro model at every quadrature point
(:class:`~hmm_fem.micro.kinetic.BGKClosure`, inputs ``grad_u``, ``grad_T``, ``T``, ``n``).
Weak form, for test functions ``v`` and ``w``:

    int sigma_xy v' dy - int m n g v dy + slip terms = 0,
    -int q_y w' dy - int sigma_xy u' w dy = 0.

**Walls.** Velocity: no slip (Dirichlet), or first-order Maxwell slip
``u - U_w = ± zeta l du/dy`` with ``l = mu v0/p``, ``v0 = sqrt(2 k_B T/m)``: on the wall
the shear stress is then ``p (u - U_w)/(zeta v0)`` (a Robin term; ``zeta`` is the viscous
slip coefficient of the kinetic half-space problem, 1.016191 for BGK with diffuse walls).
Temperature: Dirichlet (no temperature jump). Without ``energy`` the temperature is the
first wall temperature everywhere and only the momentum balance is solved.

The Newton iteration runs on PETSc SNES through :class:`hmm_fem.coupling.NonlinearProblem`,
with the micro tangents.
"""

from __future__ import annotations

import math

import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from ..coupling import NonlinearProblem, SolveReport, coupling_of, micro_operator
from ..micro.protocol import MicroModel

__all__ = ["ChannelFlow", "BGK_VISCOUS_SLIP"]

#: Viscous slip coefficient of the BGK model with diffuse walls, in units of
#: ``l = mu v0/p`` with ``v0 = sqrt(2 k_B T/m)`` (Kramers problem; Albertoni, Cercignani &
#: Gotusso, Phys. Fluids 6, 993 (1963); Loyalka, Petrellis & Storvick, Phys. Fluids 18, 1094
#: (1975); recommended in F. Sharipov, J. Phys. Chem. Ref. Data 40, 023101 (2011)).
BGK_VISCOUS_SLIP = 1.016191


class ChannelFlow:
    """Steady planar Couette/Poiseuille flow whose stress and heat flux come from a micro model.

    Example:
        >>> closure = BGKClosure(mu_ref=0.05)
        >>> flow = ChannelFlow(closure, force=0.1, cells=32)
        >>> flow.solve()
        >>> y, u, T = flow.profile()

    Args:
        model: Micro model with inputs ``grad_u``, ``grad_T``, ``T``, ``n`` (scalars) and
            response ``[sigma_xy, q_y]`` (shape ``(2,)``), e.g.
            :class:`~hmm_fem.micro.kinetic.BGKClosure`. Its ``mass`` and ``boltzmann``
            attributes (default 1) set ``m`` and ``k_B``.
        height: Channel height ``H``.
        cells: Number of cells across the channel.
        comm: Communicator of the mesh.
        force: Body force per unit mass ``g`` along ``x`` (number).
        wall_velocity: ``(U_0, U_H)``, the wall speeds along ``x`` (Couette flow).
        wall_temperature: ``(T_0, T_H)``.
        pressure: The uniform pressure ``p``.
        energy: Also solve the energy balance for ``T`` (viscous heating, micro heat flux).
        slip: Viscous slip coefficient ``zeta`` (e.g. :data:`BGK_VISCOUS_SLIP`); ``None``
            for no slip.
        degree: Lagrange degree of ``u`` (and ``T``).
        quadrature_degree: Degree of the quadrature at which the micro model is asked.
        petsc_options: Extra SNES options.
        **coupling_options: ``state_tolerance`` (default ``1e-14`` on ``a*``: far below
            the Newton tolerance, it makes the number of micro solves independent of the
            number of ranks), ``cache_size``, ``progress``.

    Raises:
        ValueError: Bad geometry, pressure, temperatures or slip coefficient.
    """

    def __init__(
        self,
        model: MicroModel,
        *,
        height: float = 1.0,
        cells: int = 32,
        comm: MPI.Comm = MPI.COMM_WORLD,
        force: float = 0.0,
        wall_velocity=(0.0, 0.0),
        wall_temperature=(1.0, 1.0),
        pressure: float = 1.0,
        energy: bool = False,
        slip: float | None = None,
        degree: int = 2,
        quadrature_degree: int = 2,
        petsc_options: dict | None = None,
        **coupling_options,
    ):
        names = set(model.inputs)
        if names != {"grad_u", "grad_T", "T", "n"} or tuple(model.output_shape) != (2,):
            raise ValueError(
                "ChannelFlow needs a micro model with scalar inputs grad_u, grad_T, T, n and "
                f"response [sigma_xy, q_y] of shape (2,), got inputs {sorted(names)} and "
                f"output shape {tuple(model.output_shape)} (see hmm_fem.micro.kinetic."
                "BGKClosure)"
            )
        if not (math.isfinite(height) and height > 0.0):
            raise ValueError(f"ChannelFlow: height must be finite and > 0, got {height!r}")
        if int(cells) < 1:
            raise ValueError(f"ChannelFlow: cells must be >= 1, got {cells!r}")
        if not (math.isfinite(pressure) and pressure > 0.0):
            raise ValueError(f"ChannelFlow: pressure must be finite and > 0, got {pressure!r}")
        t0, t1 = (float(t) for t in wall_temperature)
        if not (t0 > 0.0 and t1 > 0.0 and math.isfinite(t0) and math.isfinite(t1)):
            raise ValueError(
                f"ChannelFlow: wall_temperature must be two finite values > 0, got "
                f"{wall_temperature!r}"
            )
        if not energy and t0 != t1:
            raise ValueError(
                f"ChannelFlow: walls at different temperatures {wall_temperature!r} need "
                "energy=True (without it the gas is isothermal)"
            )
        if slip is not None and not (math.isfinite(slip) and slip > 0.0):
            raise ValueError(f"ChannelFlow: slip must be None or > 0, got {slip!r}")
        u0, u1 = (float(v) for v in wall_velocity)
        self.model = model
        self.height = float(height)
        self.energy = bool(energy)
        self.pressure = float(pressure)
        self.force = float(force)
        self.slip = slip
        self.mass = float(getattr(model, "mass", 1.0))
        self.boltzmann = float(getattr(model, "boltzmann", 1.0))
        self.mesh = dmesh.create_interval(comm, int(cells), [0.0, self.height])
        mesh = self.mesh
        p2 = basix.ufl.element("Lagrange", mesh.basix_cell(), degree)
        if self.energy:
            self.W = fem.functionspace(mesh, basix.ufl.mixed_element([p2, p2]))
            self.solution = fem.Function(self.W, name="u_T")
            u, T = ufl.split(self.solution)
            v, w = ufl.TestFunctions(self.W)
            self.V, _ = self.W.sub(0).collapse()
            self.VT, _ = self.W.sub(1).collapse()
            y0 = fem.Function(self.W)
            y0.sub(0).interpolate(lambda x: u0 + (u1 - u0) * x[0] / self.height)
            y0.sub(1).interpolate(lambda x: t0 + (t1 - t0) * x[0] / self.height)
            self.solution.x.array[:] = y0.x.array
        else:
            self.W = fem.functionspace(mesh, p2)
            self.V = self.VT = self.W
            self.solution = fem.Function(self.W, name="u")
            self.solution.interpolate(lambda x: u0 + (u1 - u0) * x[0] / self.height)
            u, v = self.solution, ufl.TestFunction(self.W)
            self._temperature = fem.Function(self.W, name="T")
            self._temperature.x.array[:] = t0
            T = self._temperature
        self.u_expr, self.T_expr = u, T
        kb, m = self.boltzmann, self.mass
        n = self.pressure / (kb * T)
        coupling_options.setdefault("state_tolerance", 1e-14)
        self.response = micro_operator(
            model,
            mesh,
            {"grad_u": u.dx(0), "grad_T": T.dx(0), "T": T, "n": n},
            quadrature_degree=quadrature_degree,
            name="sigma_q",
            **coupling_options,
        )
        self.coupling = coupling_of(self.response)
        sigma, q = self.response[0], self.response[1]
        F = sigma * v.dx(0) * ufl.dx
        if self.force != 0.0:
            F -= m * n * self.force * v * ufl.dx
        x = ufl.SpatialCoordinate(mesh)
        if slip is not None:
            wall_speed = u0 + (u1 - u0) * x[0] / self.height
            v0 = ufl.sqrt(2.0 * kb * T / m)
            F += self.pressure / (slip * v0) * (u - wall_speed) * v * ufl.ds
        if self.energy:
            F += -q * w.dx(0) * ufl.dx - sigma * u.dx(0) * w * ufl.dx
        self.residual = F
        self.bcs = self._walls(u0, u1, t0, t1)
        self.problem = NonlinearProblem(F, self.solution, bcs=self.bcs, petsc_options=petsc_options)

    def _walls(self, u0, u1, t0, t1):
        mesh = self.mesh
        mesh.topology.create_connectivity(0, 1)
        bcs = []
        for y, uw, tw in ((0.0, u0, t0), (self.height, u1, t1)):
            facets = dmesh.locate_entities_boundary(
                mesh, 0, lambda x, y=y: np.isclose(x[0], y, atol=1e-12 * self.height)
            )
            if self.slip is None:
                space = self.W.sub(0) if self.energy else self.W
                dofs = fem.locate_dofs_topological(space, 0, facets)
                bcs.append(fem.dirichletbc(np.float64(uw), dofs, space))
            if self.energy:
                dofs = fem.locate_dofs_topological(self.W.sub(1), 0, facets)
                bcs.append(fem.dirichletbc(np.float64(tw), dofs, self.W.sub(1)))
        return bcs

    # -- solving ---------------------------------------------------------------------------------
    def solve(self) -> SolveReport:
        """Newton solve; returns the :class:`~hmm_fem.coupling.SolveReport`."""
        return self.problem.solve()

    def destroy(self) -> None:
        """Destroy the PETSc objects of the Newton solver and remove its options (collective).

        Call it on every rank when done: left to the garbage collector, the destruction may
        happen at different moments on different ranks and deadlock a parallel run.
        """
        inner = self.problem.problem
        for obj in (inner.solver, inner.A, inner.b, inner.x, inner.P_mat):
            if obj is not None:
                obj.destroy()  # idempotent: DOLFINx's own __del__ later is a no-op
        self.problem.destroy()

    @property
    def statistics(self):
        """Micro statistics of this problem's dispatcher (this rank, whole run)."""
        return self.coupling.dispatcher.statistics

    # -- results ---------------------------------------------------------------------------------
    def velocity(self) -> fem.Function:
        """The velocity ``u(y)`` as a function on its own space."""
        if not self.energy:
            return self.solution
        out = self.solution.sub(0).collapse()
        out.name = "u"
        return out

    def temperature(self) -> fem.Function:
        """The temperature ``T(y)`` as a function on its own space."""
        if not self.energy:
            return self._temperature
        out = self.solution.sub(1).collapse()
        out.name = "T"
        return out

    def profile(self):
        """``(y, u, T)`` at every node, sorted by ``y``, the same on every rank (collective)."""
        y, u = self._gather(self.velocity())
        _, T = self._gather(self.temperature())
        return y, u, T

    def _gather(self, function):
        space = function.function_space
        owned = space.dofmap.index_map.size_local
        y = space.tabulate_dof_coordinates()[:owned, 0]
        parts = self.mesh.comm.allgather((y, function.x.array[:owned].copy()))
        y = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(y, kind="stable")
        return y[order], values[order]

    def flow_rate(self) -> float:
        """``int_0^H u dy`` (collective)."""
        form = fem.form(self.u_expr * ufl.dx)
        return self.mesh.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)

    def shear_stress(self) -> np.ndarray:
        """Cell averages of ``sigma_xy`` at the last evaluation, ``(num_owned_cells,)``."""
        return self.coupling.cell_averages("value")[:, 0]

    def write(self, path, time: float = 0.0):
        """Write ``u`` and ``T`` for ParaView (VTX ``.bp``); returns the path."""
        from ..io import write_vtx

        return write_vtx(path, [self.velocity(), self.temperature()], time)
