"""Ready-made macro heat conduction with a micro-model flux (steady and transient).

Balance: ``rho_c dT/dt + div q = s`` with ``q = q(T, grad T)`` answered by a micro
model at every quadrature point (:class:`hmm_fem.cells.ConductivityModel`, or any
model with inputs ``T`` and ``grad_T``). Weak form, for a test function ``v``:

    int rho_c (T - T_old)/dt v dx - int q . grad v dx - int s v dx - int g v ds = 0

where ``g`` is a prescribed inward heat flux on the Neumann boundary.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import ufl
from dolfinx import fem

from ..coupling import NonlinearProblem, SolveReport, coupling_of, effective_flux
from ..micro.adapter import InputAdapter
from ..micro.protocol import MicroModel

__all__ = ["SteadyHeat", "TransientHeat", "SteadyDarcy"]


class SteadyHeat:
    """Steady macro heat conduction ``div q(T, grad T) = s`` with a micro-model flux.

    Example:
        >>> heat = SteadyHeat(mesh, model, source=1.0, dirichlet=[(boundary, 0.0)])
        >>> report = heat.solve()
        >>> heat.T  # the temperature

    Args:
        mesh: The macro mesh (distributed on its communicator).
        model: Micro model with inputs ``T`` and ``grad_T``.
        source: Volumetric heat source ``s`` (number or UFL expression).
        dirichlet: List of ``(marker, value)``: ``marker(x) -> bool array`` locating
            boundary points, ``value`` a number, a ``fem.Constant`` (a value to change
            between time steps) or a ``fem.Function`` on the space.
        boundary_flux: Inward heat flux ``g`` on the rest of the boundary (UFL or number).
        parameters: Microstructure fields, e.g. ``{"volume_fraction": f}`` (UFL).
        degree: Lagrange degree of T.
        quadrature_degree: Quadrature degree at which the micro model is evaluated.
        initial_temperature: Initial guess (number).
        petsc_options: Extra SNES options.
        **coupling_options: ``state_tolerance``, ``progress``, ``cache_size``,
            ``failure_policy``, ``strategy``, ``workers``, ``comm``, ``activation`` (see
            :func:`~hmm_fem.coupling.micro_operator`).
    """

    def __init__(
        self,
        mesh,
        model: MicroModel,
        source=0.0,
        dirichlet=(),
        boundary_flux=None,
        parameters: Mapping | None = None,
        degree: int = 1,
        quadrature_degree: int = 2,
        initial_temperature: float = 0.0,
        petsc_options: dict | None = None,
        **coupling_options,
    ):
        self.mesh = mesh
        self.model = model
        self.V = fem.functionspace(mesh, ("Lagrange", degree))
        self.T = fem.Function(self.V, name="T")
        self.T.x.array[:] = initial_temperature
        self.flux = effective_flux(
            model, self.T, parameters, quadrature_degree=quadrature_degree, **coupling_options
        )
        self.coupling = coupling_of(self.flux)
        self.bcs = self._dirichlet(dirichlet)
        v = ufl.TestFunction(self.V)
        self.v = v
        F = -ufl.inner(self.flux, ufl.grad(v)) * ufl.dx
        if not (isinstance(source, int | float) and source == 0):
            F -= source * v * ufl.dx
        if boundary_flux is not None:
            F -= boundary_flux * v * ufl.ds
        self.residual = F + self._transient_terms(v)
        self.problem = NonlinearProblem(
            self.residual, self.T, bcs=self.bcs, petsc_options=petsc_options
        )

    def _transient_terms(self, v):
        return 0

    def _dirichlet(self, dirichlet):
        bcs = []
        fdim = self.mesh.topology.dim - 1
        self.mesh.topology.create_connectivity(fdim, self.mesh.topology.dim)
        from dolfinx import mesh as dmesh

        for marker, value in dirichlet:
            facets = dmesh.locate_entities_boundary(self.mesh, fdim, marker)
            dofs = fem.locate_dofs_topological(self.V, fdim, facets)
            if isinstance(value, fem.Function):
                bcs.append(fem.dirichletbc(value, dofs))
            elif isinstance(value, fem.Constant):  # a value changed between time steps
                bcs.append(fem.dirichletbc(value, dofs, self.V))
            else:
                bcs.append(fem.dirichletbc(np.float64(value), dofs, self.V))
        return bcs

    @property
    def statistics(self):
        """Micro statistics of this problem's dispatcher (this rank, whole run)."""
        return self.coupling.dispatcher.statistics

    def solve(self) -> SolveReport:
        """Newton solve; returns the :class:`SolveReport` (raises if not converged).

        Micro models with memory have their histories committed after convergence (rolled
        back if the solve fails).
        """
        try:
            report = self.problem.solve()
        except Exception:
            self.problem.rollback()
            raise
        self.problem.commit()
        return report

    def checkpoint_state(self) -> dict:
        """What :mod:`hmm_fem.io.checkpoint` saves of this problem.

        Returns:
            A dict: ``functions`` (name -> ``fem.Function``), ``scalars`` (name -> float)
            and ``couplings`` (the problem's micro couplings).
        """
        return {"functions": {"T": self.T}, "scalars": {}, "couplings": self.problem.couplings}

    def restore_state(self, scalars: Mapping[str, float]) -> None:
        """Set the scalars saved by :meth:`checkpoint_state` (the functions are read in place)."""

    def effective_conductivity(self) -> np.ndarray:
        """Cell averages of K* at the last evaluation, ``(num_owned_cells, d, d)``."""
        return self.coupling.cell_averages("K")

    def write(self, path, time: float = 0.0):
        """Write T, the flux and K* (cell averages) for ParaView; see :mod:`hmm_fem.io`."""
        from ..io import write_heat_fields

        return write_heat_fields(self, path, time)


class TransientHeat(SteadyHeat):
    """Backward-Euler macro heat conduction: ``rho_c (T - T_old)/dt + div q = s``.

    Args:
        mesh: The macro mesh.
        model: Micro model with inputs ``T`` and ``grad_T``.
        heat_capacity: Volumetric heat capacity ``rho_c`` (number or UFL).
        dt: Time step.
        initial_temperature: Initial temperature (number).
        **kwargs: As for :class:`SteadyHeat`.
    """

    def __init__(
        self,
        mesh,
        model: MicroModel,
        heat_capacity=1.0,
        dt: float = 0.1,
        initial_temperature: float = 0.0,
        **kwargs,
    ):
        self._heat_capacity = heat_capacity
        self._dt_value = float(dt)
        self.time = 0.0
        super().__init__(mesh, model, initial_temperature=initial_temperature, **kwargs)
        self.T_old.x.array[:] = self.T.x.array

    def _transient_terms(self, v):
        self.T_old = fem.Function(self.V, name="T_old")
        self.dt = fem.Constant(self.mesh, np.float64(self._dt_value))
        return self._heat_capacity * (self.T - self.T_old) / self.dt * v * ufl.dx

    def step(self) -> SolveReport:
        """Advance one time step (T_old <- T after convergence).

        Micro models see the step's end time and length (``context.time``, ``context.dt``);
        their histories are committed after convergence. If Newton or a micro solve fails,
        T, the time and the histories are left as they were before the step.
        """
        dt = float(self.dt.value)
        self.problem.set_time(self.time + dt, dt)
        try:
            report = self.problem.solve()
        except Exception:
            self.T.x.array[:] = self.T_old.x.array
            self.problem.rollback()
            raise
        self.problem.commit()
        self.T_old.x.array[:] = self.T.x.array
        self.time += dt
        return report


    def checkpoint_state(self) -> dict:
        """T, T_old, the time and the time step, and the micro couplings (see the base class)."""
        state = super().checkpoint_state()
        state["functions"]["T_old"] = self.T_old
        state["scalars"] = {"time": self.time, "dt": float(self.dt.value)}
        return state

    def restore_state(self, scalars: Mapping[str, float]) -> None:
        """Set the time and the time step of a restarted run."""
        self.time = float(scalars["time"])
        self.dt.value = float(scalars["dt"])


class SteadyDarcy(SteadyHeat):
    """Steady macro Darcy flow ``div q = s``, ``q = -(k*/mu) grad p`` from pore cells.

    The pressure formulation of :class:`SteadyHeat` with the unknown named ``p``: give a
    :class:`hmm_fem.cells.PermeabilityModel` and, for a graded medium,
    ``parameters={"solid_fraction": ...}``. ``heat.T`` is the pressure (also ``self.p``),
    the flux is the Darcy velocity. Arguments as for :class:`SteadyHeat`
    (``boundary_flux`` is an inward volumetric flux).
    """

    def __init__(self, mesh, model: MicroModel, **kwargs):
        model_inputs = dict(model.inputs)
        if set(model_inputs) != {"p", "grad_p"}:
            raise ValueError(
                f"SteadyDarcy needs a model with inputs p and grad_p, got {model_inputs}"
            )
        super().__init__(mesh, _Renamed(model), **kwargs)
        self.T.name = "p"
        self.p = self.T

    def permeability(self) -> np.ndarray:
        """Cell averages of k* at the last evaluation, ``(num_owned_cells, d, d)``."""
        return self.coupling.cell_averages("k")


class _Renamed(InputAdapter):
    """A (p, grad_p) micro model seen with the (T, grad_T) names of the heat problems."""

    def __init__(self, model: MicroModel):
        super().__init__(model, {"T": (), "grad_T": model.inputs["grad_p"]}, model.output_shape)

    def adapt(self, inputs):
        """The names of the pore model."""
        return {"p": inputs["T"], "grad_p": inputs["grad_T"]}

    def respond(self, solutions, inputs, parameters):
        response = self.model.respond(solutions, self.adapt(inputs), parameters)
        response.derivatives = {
            "T": response.derivatives["p"],
            "grad_T": response.derivatives["grad_p"],
        }
        return response
