"""Electro-thermal macro problem: Joule heating with a temperature-dependent conductivity.

Unknowns the potential ``phi`` and the temperature ``T`` on one mesh (a mixed space)::

    div(sigma(T) grad phi) = 0,
    rho_c dT/dt = div(k grad T) + sigma(T) |grad phi|^2,

with the potential given on the electrodes, the temperature given on part of the boundary
and a heat transfer ``-k dT/dn = h (T - T_ambient)`` on the rest (``h`` may vary along
it). Weak form for tests ``(psi, v)``::

    int sigma grad phi . grad psi dx + int rho_c (T - T_old)/dt v dx + int k grad T . grad v dx
        - int sigma |grad phi|^2 v dx + int h (T - T_ambient) v ds = 0.

``sigma(T)`` comes from a micro model (inputs ``T``, output shape ``()``, e.g.
:class:`hmm_fem.micro.kmc.IonConductivityModel`) evaluated at every quadrature point with
the temperature as its state, through the dispatcher (:class:`TemperatureGrid` shares
nearby temperatures), or from a closed-form law given as a function of the UFL temperature (the
reference the demos check the micro-coupled run against). Newton on the coupled system
uses the micro model's tangent ``d sigma / dT``.
"""

from __future__ import annotations

from collections.abc import Callable

import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from ..coupling import NonlinearProblem, SolveReport, coupling_of, micro_operator
from ..micro.protocol import MicroModel, MicroResponse

__all__ = ["ElectroThermal", "TemperatureGrid"]


class TemperatureGrid(MicroModel):
    """A scalar micro model of ``T`` solved on a temperature grid and interpolated linearly.

    The grid nodes are ``T_k = k * resolution``. A point at ``T`` in ``[T_k, T_k+1)`` needs
    the wrapped model at the two nodes; its state for the dispatcher is the interval ``k``,
    so all points in one interval share one solve (which solves the two nodes, each node
    once per process: a node is kept for the interval on either side). The response is
    ``(1 - w) sigma_k + w sigma_k+1`` with ``w = (T - T_k) / resolution``, its tangent the
    slope of the segment, its standard error interpolated the same way.

    Why not the dispatcher's ``state_tolerance``: rounding makes the response piecewise
    constant in ``T``, so the macro residual cannot fall below the jump over one grid step
    (a Newton on the KMC conductivity stalled at 1e-3 of its first residual); the
    interpolant is continuous with an exact derivative, at the same sharing.

    Args:
        model: A micro model with the single input ``T`` and a scalar response (it may
            carry standard errors); not stochastic in the dispatcher's sense and without
            history (e.g. :class:`hmm_fem.micro.kmc.IonConductivityModel`, frozen noise).
        resolution: The grid step in the unit of ``T``.

    Attributes:
        node_solves: Solves of the wrapped model by this process.
    """

    inputs = {"T": ()}
    output_shape = ()
    state_names = ("interval",)

    def __init__(self, model: MicroModel, resolution: float):
        if dict(model.inputs) != {"T": ()} or tuple(model.output_shape) != ():
            raise ValueError(
                "TemperatureGrid: the micro model must have the single input T (shape ()) and "
                f"a scalar response; got inputs {dict(model.inputs)} and output shape "
                f"{model.output_shape}"
            )
        if model.stochastic or model.history or model.time_dependent:
            raise ValueError(
                f"TemperatureGrid: {type(model).__name__} is stochastic, time dependent or has "
                "a history: its answer is not a function of T alone and cannot be tabulated"
            )
        if not (np.isfinite(resolution) and resolution > 0):
            raise ValueError(f"TemperatureGrid: resolution must be positive, got {resolution!r}")
        self.model = model
        self.resolution = float(resolution)
        self.seed = model.seed
        # The wrapped model's failure remedies (a retry's context.remedy reaches its solve).
        self.remedies = tuple(model.remedies)
        self._nodes: dict[int, dict[str, np.ndarray]] = {}
        self.node_solves = 0

    def _node(self, k: int, context) -> dict[str, np.ndarray]:
        if k not in self._nodes:
            state = np.array([k * self.resolution])
            solution = self.model.solve(state, context)
            response = self.model.respond(
                {name: np.asarray(v)[None] for name, v in solution.items()},
                {"T": state},
                {},
            )
            error = response.standard_error
            self._nodes[k] = {
                "value": np.asarray(response.value, dtype=np.float64)[0],
                "error": np.float64(0.0) if error is None else np.asarray(error)[0],
            }
            self.node_solves += 1
        return self._nodes[k]

    def nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nodes solved by this process: ``(T, value, standard error)``, sorted in ``T``."""
        keys = sorted(self._nodes)
        return (
            np.array(keys, dtype=np.float64) * self.resolution,
            np.array([self._nodes[k]["value"] for k in keys], dtype=np.float64),
            np.array([self._nodes[k]["error"] for k in keys], dtype=np.float64),
        )

    def micro_state(self, inputs, parameters):
        """The interval index ``floor(T / resolution)``, ``(n, 1)``."""
        T = np.asarray(inputs["T"], dtype=np.float64).reshape(-1, 1)
        return np.floor(T / self.resolution)

    def solve(self, state, context):
        """The wrapped model at both ends of the interval."""
        k = int(state[0])
        low, high = self._node(k, context), self._node(k + 1, context)
        return {
            "low": low["value"], "high": high["value"],
            "low_error": low["error"], "high_error": high["error"],
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """Linear interpolation in ``T``, the segment's slope, interpolated errors."""
        T = np.asarray(inputs["T"], dtype=np.float64).reshape(-1)
        h = self.resolution
        w = T / h - np.floor(T / h)
        low, high = solutions["low"], solutions["high"]
        value = (1 - w) * low + w * high
        error = (1 - w) * solutions["low_error"] + w * solutions["high_error"]
        return MicroResponse(value, {"T": (high - low) / h}, dict(solutions), error)


class ElectroThermal:
    """Joule heating: ``div(sigma grad phi) = 0``, ``rho_c T_t = div(k grad T) + sigma |E|^2``.

    Example:
        >>> model = IonConductivityModel(HoppingMaterial(), seed=1)
        >>> cell = ElectroThermal(mesh, model, voltage=[(left, 0.0), (right, 2.0)],
        ...                       temperature=[(left, 300.0), (right, 300.0)],
        ...                       thermal_conductivity=1.0, dt=0.5, temperature_resolution=0.1)
        >>> cell.step()                     # one backward-Euler step
        >>> cell.peak_temperature()

    Args:
        mesh: The macro mesh.
        conductivity: A micro model with input ``T`` and a scalar response ``sigma``, or a
            function ``T -> sigma`` of the UFL temperature (a closed-form law).
        voltage: List of ``(marker, value)``: the potential on the boundary points where
            ``marker(x)`` is true. The values can be changed later (:meth:`set_voltage`).
        temperature: List of ``(marker, value)``: the prescribed boundary temperatures.
        thermal_conductivity: ``k`` (number or UFL).
        heat_capacity: ``rho_c`` (number or UFL); used only with a time step.
        heat_transfer: ``h`` on the whole boundary ``ds`` (number or UFL; ``0``: insulated
            where no temperature is given). On facets with a given temperature it has no
            effect.
        ambient_temperature: ``T_ambient`` of the heat transfer.
        dt: Time step of backward Euler; ``None`` for the steady problem.
        initial_temperature: Initial (or initial-guess) temperature, number.
        degree: Lagrange degree of ``phi`` and ``T``.
        quadrature_degree: Quadrature degree (the micro model is evaluated at its points).
        temperature_resolution: If given, the micro model is solved on a grid of this step
            in ``T`` and interpolated (:class:`TemperatureGrid`): nearby temperatures share
            solves and ``sigma(T)`` stays continuous. Recommended for a noisy micro model.
        petsc_options: Extra SNES/KSP options.
        **coupling_options: ``state_tolerance``, ``cache_size``, ``progress`` of the
            dispatcher (micro model only).

    Raises:
        ValueError: If the micro model does not have the input ``T`` and a scalar output, or
            no potential is prescribed.
    """

    def __init__(
        self,
        mesh,
        conductivity: MicroModel | Callable,
        *,
        voltage,
        temperature=(),
        thermal_conductivity=1.0,
        heat_capacity=1.0,
        heat_transfer=0.0,
        ambient_temperature: float = 300.0,
        dt: float | None = None,
        initial_temperature: float = 300.0,
        degree: int = 1,
        quadrature_degree: int = 2,
        temperature_resolution: float | None = None,
        petsc_options: dict | None = None,
        **coupling_options,
    ):
        if temperature_resolution is not None:
            if not isinstance(conductivity, MicroModel):
                raise ValueError("ElectroThermal: temperature_resolution needs a micro model")
            conductivity = TemperatureGrid(conductivity, temperature_resolution)
        if not voltage:
            raise ValueError(
                "ElectroThermal: give the potential on at least one electrode, "
                "voltage=[(marker, value), ...]"
            )
        self.mesh = mesh
        element = basix.ufl.element("Lagrange", mesh.basix_cell(), degree)
        self.W = fem.functionspace(mesh, basix.ufl.mixed_element([element, element]))
        self.V_phi, self._phi_dofs = self.W.sub(0).collapse()
        self.V_T, self._T_dofs = self.W.sub(1).collapse()
        self.u = fem.Function(self.W, name="phi_T")
        self.u.x.array[self._T_dofs] = initial_temperature
        self.u_old = fem.Function(self.W)
        self.u_old.x.array[:] = self.u.x.array
        phi, T = ufl.split(self.u)
        psi, v = ufl.TestFunctions(self.W)
        self.coupling = None
        if isinstance(conductivity, MicroModel):
            if dict(conductivity.inputs) != {"T": ()} or tuple(conductivity.output_shape) != ():
                raise ValueError(
                    "ElectroThermal: the micro model must have the single input T (shape ()) "
                    f"and a scalar response; got inputs {dict(conductivity.inputs)} and output "
                    f"shape {conductivity.output_shape}"
                )
            sigma = micro_operator(
                conductivity, mesh, {"T": T}, quadrature_degree=quadrature_degree,
                name="sigma", **coupling_options,
            )
            self.coupling = coupling_of(sigma)
        elif callable(conductivity):
            if coupling_options:
                raise ValueError(
                    f"ElectroThermal: {sorted(coupling_options)} apply to a micro model only"
                )
            sigma = conductivity(T)
        else:
            raise TypeError(
                "ElectroThermal: conductivity must be a MicroModel or a function of T, got "
                f"{conductivity!r}"
            )
        self.sigma = sigma
        self.model = conductivity
        self.quadrature_degree = int(quadrature_degree)
        dx = ufl.Measure("dx", domain=mesh, metadata={"quadrature_degree": quadrature_degree})
        ds = ufl.Measure("ds", domain=mesh, metadata={"quadrature_degree": quadrature_degree})
        self._dx = dx
        self._h = heat_transfer
        self._ambient = fem.Constant(mesh, np.float64(ambient_temperature))
        joule = sigma * ufl.inner(ufl.grad(phi), ufl.grad(phi))
        F = sigma * ufl.inner(ufl.grad(phi), ufl.grad(psi)) * dx
        F += thermal_conductivity * ufl.inner(ufl.grad(T), ufl.grad(v)) * dx - joule * v * dx
        if not (isinstance(heat_transfer, int | float) and heat_transfer == 0):
            F += heat_transfer * (T - self._ambient) * v * ds
        self.steady = dt is None
        self.time = 0.0
        if not self.steady:
            self.dt = fem.Constant(mesh, np.float64(dt))
            T_old = ufl.split(self.u_old)[1]
            F += heat_capacity * (T - T_old) / self.dt * v * dx
        self._joule_form = fem.form(joule * dx) if self.coupling is None else None
        self._phi_value = [fem.Constant(mesh, np.float64(value)) for _, value in voltage]
        self.bcs = [
            self._dirichlet(0, marker, c) for (marker, _), c in zip(voltage, self._phi_value)
        ]
        self.bcs += [
            self._dirichlet(1, marker, fem.Constant(mesh, np.float64(value)))
            for marker, value in temperature
        ]
        self.residual = F
        self.problem = NonlinearProblem(F, self.u, bcs=self.bcs, petsc_options=petsc_options)

    def _dirichlet(self, sub: int, marker, value):
        fdim = self.mesh.topology.dim - 1
        self.mesh.topology.create_connectivity(fdim, self.mesh.topology.dim)
        facets = dmesh.locate_entities_boundary(self.mesh, fdim, marker)
        dofs = fem.locate_dofs_topological(self.W.sub(sub), fdim, facets)
        return fem.dirichletbc(value, dofs, self.W.sub(sub))

    # -- control -----------------------------------------------------------------------------
    def set_voltage(self, *values: float) -> None:
        """New electrode potentials, one per ``voltage`` entry, in order."""
        if len(values) != len(self._phi_value):
            raise ValueError(
                f"set_voltage: {len(self._phi_value)} electrodes, got {len(values)} values"
            )
        for constant, value in zip(self._phi_value, values):
            constant.value = float(value)

    @property
    def statistics(self):
        """Micro statistics of the dispatcher (this rank, whole run); ``None`` without one."""
        return None if self.coupling is None else self.coupling.dispatcher.statistics

    # -- solves ------------------------------------------------------------------------------
    def solve(self) -> SolveReport:
        """Steady problem: Newton from the current state.

        Raises:
            RuntimeError: If the problem has a time step (use :meth:`step`).
            hmm_fem.coupling.MacroSolveError: If Newton does not converge (past the
                thermal-runaway fold there is no steady state); the state is restored.
        """
        if not self.steady:
            raise RuntimeError("ElectroThermal.solve is the steady problem; this one has dt")
        return self._solve_and_commit()

    def _solve_and_commit(self) -> SolveReport:
        """Newton; on success commit the micro histories, on failure restore the state."""
        try:
            report = self.problem.solve()
        except Exception:
            self.u.x.array[:] = self.u_old.x.array
            self.problem.rollback()
            raise
        self.problem.commit()
        self.u_old.x.array[:] = self.u.x.array
        return report

    def step(self) -> SolveReport:
        """One backward-Euler step (the state is restored if it fails)."""
        if self.steady:
            raise RuntimeError("ElectroThermal.step needs a time step dt")
        dt = float(self.dt.value)
        self.problem.set_time(self.time + dt, dt)
        report = self._solve_and_commit()
        self.time += dt
        return report

    def destroy(self) -> None:
        """Free the PETSc objects of the solver now (collective).

        Call it on every rank at the same point when a problem is done with: left to the
        garbage collector, the destruction (collective in PETSc) happens at a different
        moment on each rank and can deadlock against another collective call (seen: one
        rank in DOLFINx's ``NonlinearProblem.__del__`` while the other compiled a form).
        """
        inner = self.problem.problem
        for obj in (inner.solver, inner.A, inner.b, inner.x, inner.P_mat):
            if obj is not None:
                obj.destroy()  # a second destroy (DOLFINx's __del__) is a no-op
        self.problem.destroy()

    # -- results -----------------------------------------------------------------------------
    @property
    def phi(self) -> fem.Function:
        """The potential (a copy on its own space)."""
        function = fem.Function(self.V_phi, name="phi")
        function.x.array[:] = self.u.x.array[self._phi_dofs]
        return function

    @property
    def T(self) -> fem.Function:
        """The temperature (a copy on its own space)."""
        function = fem.Function(self.V_T, name="T")
        function.x.array[:] = self.u.x.array[self._T_dofs]
        return function

    def peak_temperature(self) -> float:
        """The largest nodal temperature (collective)."""
        local = self.u.x.array[self._T_dofs].max(initial=-np.inf)
        return float(self.mesh.comm.allreduce(local, op=MPI.MAX))

    def joule_power(self) -> float:
        """``int sigma |grad phi|^2 dx`` (collective), at the last micro evaluation."""
        if self._joule_form is None:  # with a micro model: its coefficient, once compiled
            phi = ufl.split(self.u)[0]
            coefficient = self.problem.F_operators[0].ref_coefficient
            self._joule_form = fem.form(
                coefficient * ufl.inner(ufl.grad(phi), ufl.grad(phi)) * self._dx
            )
        if self.coupling is not None:
            self.coupling.update(self.problem.F_operators)
        form = self._joule_form
        return float(self.mesh.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM))

    def conductivity_cells(self) -> np.ndarray:
        """Cell averages of ``sigma`` over the owned cells (micro model or law)."""
        if self.coupling is not None:
            if self.coupling.last_response is None:
                self.coupling.update(self.problem.F_operators)
            return self.coupling.cell_averages("value")
        space = fem.functionspace(self.mesh, ("DG", 0))
        average = fem.Function(space)
        points = space.element.interpolation_points
        average.interpolate(fem.Expression(self.sigma, points))
        n = self.mesh.topology.index_map(self.mesh.topology.dim).size_local
        return average.x.array[space.dofmap.list[:n, 0]]

    def write(self, path, time: float | None = None) -> dict:
        """Write ``T``, ``phi`` (nodal) and ``sigma`` (cell averages) as VTX for ParaView.

        Returns:
            ``{"fields": path of T and phi, "sigma": path of sigma}``.
        """
        from pathlib import Path

        from ..io import dg0_function, write_vtx

        path = Path(path)
        t = self.time if time is None else time
        phi = fem.Function(self.V_T, name="phi")  # on T's space: VTX wants one space
        phi.interpolate(self.phi)
        fields = write_vtx(path.with_name(path.name + "_fields.bp"), [self.T, phi], t)
        sigma = dg0_function(self.mesh, np.asarray(self.conductivity_cells()), "sigma")
        cells = write_vtx(path.with_name(path.name + "_sigma.bp"), [sigma], t)
        return {"fields": fields, "sigma": cells}
