"""Ready-made macro elasticity with a micro-model stress, with load stepping.

Equilibrium: ``div sigma + f = 0`` in the macro domain, with the stress
``sigma = sigma(eps(u))`` answered by a micro model at every quadrature point
(:class:`hmm_fem.cells.ElasticityModel`, or any model with the input ``strain`` of
shape ``(n,)`` and a response of shape ``(n,)``). Voigt conventions are those of
:mod:`hmm_fem.voigt`: the micro model receives the strain vector with engineering
shears and answers the plain stress vector, which is mapped back to a symmetric tensor
in UFL. 2D means plane strain. Weak form, for a test function ``v``:

    int sigma(u) : eps(v) dx - lam int f . v dx - lam int t . v ds = 0,
    u = lam u_D on the Dirichlet boundary,

where ``t`` is a prescribed traction and ``lam`` the load factor (a
:class:`dolfinx.fem.Constant`, 1 at full load). :meth:`StaticElasticity.solve` ramps
``lam`` in steps and halves a step whose Newton iteration or micro solves fail.

Finite strain: with a micro model whose input is ``displacement_gradient`` (``H =
grad u``, shape ``(d, d)``) and whose response is the first Piola-Kirchhoff stress ``P``
(:class:`hmm_fem.cells.HyperelasticModel`), the same class solves
``int P(I + grad u) : grad v dX - ... = 0`` in the reference configuration.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh

from ..coupling import (
    MacroSolveError,
    MicroStatistics,
    NonlinearProblem,
    SolveReport,
    coupling_of,
    micro_operator,
)
from ..micro.protocol import MicroModel, MicroSolveError
from ..voigt import ufl_strain, ufl_stress_tensor, voigt_size

__all__ = ["StaticElasticity", "LoadStep", "SteppedSolveReport", "DEFAULT_MAX_CUTS"]

#: Default number of times one load step may be halved before :meth:`StaticElasticity.solve`
#: gives up: the smallest increment is the nominal one divided by ``2**DEFAULT_MAX_CUTS``.
DEFAULT_MAX_CUTS = 6


@dataclass
class LoadStep:
    """One attempted load step of :meth:`StaticElasticity.solve`.

    Attributes:
        load: The load factor the step aimed at.
        increment: Its increment over the last converged load factor.
        converged: Whether Newton converged (a failed step is retried with half the
            increment from the last converged state).
        iterations: Newton iterations (of the failed attempt: until it failed).
        halvings: How many times the nominal increment was halved for this attempt.
        seconds: Wall time of the attempt.
        error: Why it failed (``None`` if it converged).
    """

    load: float
    increment: float
    converged: bool
    iterations: int
    halvings: int
    seconds: float
    error: str | None = None


@dataclass
class SteppedSolveReport(SolveReport):
    """A :class:`~hmm_fem.coupling.SolveReport` of a load-stepped solve.

    ``converged_reason`` and ``residual_norms`` are those of the last step;
    ``iterations`` is the total over the converged steps; ``seconds``,
    ``micro_seconds`` and ``statistics`` cover the whole solve, failed attempts
    included.

    Attributes:
        steps: Every attempted step in order, converged or not.
    """

    steps: list[LoadStep] = field(default_factory=list)

    @property
    def accepted(self) -> list[LoadStep]:
        """The converged steps."""
        return [s for s in self.steps if s.converged]

    @property
    def cuts(self) -> int:
        """Number of failed attempts, each followed by halving the increment."""
        return sum(not s.converged for s in self.steps)

    def __str__(self):
        norms = ", ".join(f"{r:.2e}" for r in self.residual_norms)
        return (
            f"{len(self.accepted)} load steps ({self.cuts} cuts), {self.iterations} Newton "
            f"iterations (last step residuals {norms}); {self.statistics}; "
            f"{self.seconds:.3f} s total, {self.micro_seconds:.3f} s micro, "
            f"{self.macro_seconds:.3f} s macro"
        )


class StaticElasticity:
    """Static small-strain macro elasticity ``div sigma + f = 0`` with a micro-model stress.

    Example:
        >>> model = cells.ElasticityModel(cells.square(0.3), {"matrix": (1.0, 0.3),
        ...                                                   "inclusion": (10.0, 0.2)})
        >>> problem = StaticElasticity(mesh, model, body_force=(0.0, -1.0),
        ...                            dirichlet=[(lambda x: np.isclose(x[0], 0), 0.0)])
        >>> report = problem.solve(steps=4)
        >>> problem.u  # the displacement

    Args:
        mesh: The macro mesh (2D: plane strain, or 3D), distributed on its communicator.
        model: Micro model with the input ``strain`` (Voigt, shape ``(n,)``) and the
            Voigt stress as response (shape ``(n,)``), e.g.
            :class:`hmm_fem.cells.ElasticityModel`.
        body_force: Body force ``f`` per unit volume: a sequence of ``d`` numbers or a UFL
            vector; ``None`` for none.
        dirichlet: List of ``(marker, value)`` or ``(marker, value, component)``:
            ``marker(x) -> bool array`` locating boundary points (or an array of facet
            indices); ``value`` the prescribed displacement at full load: a number or a
            sequence of ``d`` numbers, a function ``x -> values`` to interpolate, or a
            :class:`dolfinx.fem.Function` (on the displacement space, or on the collapsed
            component space). With ``component`` only that component is prescribed.
            The values are interpolated once into :attr:`dirichlet_values`.
        traction: Prescribed traction ``t`` at full load: a sequence of ``d`` numbers or a
            UFL vector on the whole boundary (where no Dirichlet condition holds), or a
            list of ``(marker, value)`` pairs, each on the facets of its marker (a facet
            belongs to the first marker that finds it).
        parameters: Microstructure fields, e.g. ``{"volume_fraction": f}`` (UFL).
        degree: Lagrange degree of the displacement.
        quadrature_degree: Quadrature degree at which the micro model is evaluated (and
            every integral of the residual is computed).
        petsc_options: Extra SNES options (see :class:`~hmm_fem.coupling.NonlinearProblem`).
        **coupling_options: ``state_tolerance``, ``progress``, ``cache_size``,
            ``failure_policy``, ``activation`` (see :func:`~hmm_fem.coupling.micro_operator`).

    Attributes:
        u: The displacement.
        load_factor: The :class:`dolfinx.fem.Constant` scaling body force, traction and
            Dirichlet values (1 = full load; set by :meth:`solve`).
        converged_load: The load factor at which ``u`` is the converged solution (0 for
            the initial ``u = 0``); :meth:`solve` ramps from it.
        dirichlet_values: The prescribed displacements at full load (one function per
            Dirichlet condition); scaled into the conditions by the load factor.
        strain: The UFL Voigt strain of ``u``.
        stress_voigt: The micro operator: the Voigt stress at the quadrature points.
        stress: The stress as a symmetric UFL tensor.
        coupling: The :class:`~hmm_fem.coupling.MicroCoupling` of the stress.
        residual: The residual form.
        problem: The :class:`~hmm_fem.coupling.NonlinearProblem`.

    Raises:
        ValueError: If the model's input or response does not have the Voigt size of the
            mesh, or a Dirichlet or traction entry is malformed.
    """

    def __init__(
        self,
        mesh,
        model: MicroModel,
        body_force=None,
        dirichlet=(),
        traction=None,
        parameters: Mapping | None = None,
        degree: int = 1,
        quadrature_degree: int = 2,
        petsc_options: dict | None = None,
        **coupling_options,
    ):
        d = mesh.topology.dim
        if mesh.geometry.dim != d:
            raise ValueError(
                f"a {d}D mesh embedded in {mesh.geometry.dim}D is not supported; give a mesh "
                "whose geometric and topological dimensions agree"
            )
        n = voigt_size(d)
        inputs = dict(model.inputs)
        small = tuple(inputs.get("strain", ())) == (n,) and tuple(model.output_shape) == (n,)
        finite = tuple(inputs.get("displacement_gradient", ())) == (d, d) and tuple(
            model.output_shape
        ) == (d, d)
        if not (small or finite):
            raise ValueError(
                f"a {d}D elasticity problem needs a micro model with the input 'strain' of shape "
                f"({n},) and a Voigt stress of shape ({n},) (small strain), or the input "
                f"'displacement_gradient' of shape ({d}, {d}) and a first Piola stress of shape "
                f"({d}, {d}) (finite strain); this model has inputs {inputs} and response "
                f"shape {tuple(model.output_shape)}"
            )
        self.kinematics = "small" if small else "finite"
        self.mesh = mesh
        self.model = model
        self.dim = d
        self.V = fem.functionspace(mesh, ("Lagrange", degree, (d,)))
        self.u = fem.Function(self.V, name="u")
        self.load_factor = fem.Constant(mesh, np.float64(1.0))
        self.converged_load = 0.0
        self.last_steps: list[LoadStep] = []
        mesh.topology.create_connectivity(d - 1, d)

        name = coupling_options.pop("name", "stress")
        if self.kinematics == "small":
            self.strain = ufl_strain(self.u)
            operands = {"strain": self.strain}
        else:
            self.strain = ufl.grad(self.u)  # the macro displacement gradient H
            operands = {"displacement_gradient": self.strain}
        self.stress_voigt = micro_operator(
            model,
            mesh,
            operands,
            parameters,
            quadrature_degree=quadrature_degree,
            name=name,
            **coupling_options,
        )
        self.coupling = coupling_of(self.stress_voigt)
        if self.kinematics == "small":
            self.stress = ufl_stress_tensor(self.stress_voigt, d)
        else:
            self.stress = self.stress_voigt  # the first Piola-Kirchhoff stress P

        self.bcs = self._dirichlet(dirichlet)
        v = ufl.TestFunction(self.V)
        self.v = v
        lam = self.load_factor
        # Small strain: sigma : eps(v); finite strain: P : grad(v) (reference configuration).
        test_gradient = ufl.sym(ufl.grad(v)) if self.kinematics == "small" else ufl.grad(v)
        F = ufl.inner(self.stress, test_gradient) * ufl.dx
        if body_force is not None:
            F -= lam * ufl.inner(self._vector(body_force, "body_force"), v) * ufl.dx
        for ds, t in self._tractions(traction):
            F -= lam * ufl.inner(t, v) * ds
        self.residual = F
        self.problem = NonlinearProblem(F, self.u, bcs=self.bcs, petsc_options=petsc_options)
        self.set_load(1.0)

    # -- set-up -----------------------------------------------------------------------------
    def _facets(self, marker) -> np.ndarray:
        fdim = self.dim - 1
        if callable(marker):
            return dmesh.locate_entities_boundary(self.mesh, fdim, marker)
        facets = np.asarray(marker)
        if facets.ndim != 1 or not np.issubdtype(facets.dtype, np.integer):
            raise ValueError(
                f"a boundary marker must be a function x -> bool array or an array of facet "
                f"indices, got {marker!r}"
            )
        return facets.astype(np.int32)

    def _vector(self, value, what: str):
        """A UFL vector of a sequence of ``d`` numbers (a Constant) or a UFL expression."""
        if isinstance(value, ufl.core.expr.Expr):
            if value.ufl_shape != (self.dim,):
                raise ValueError(f"{what} has shape {value.ufl_shape}, expected ({self.dim},)")
            return value
        array = np.asarray(value, dtype=np.float64)
        if array.shape != (self.dim,):
            raise ValueError(
                f"{what} = {value!r}: give {self.dim} numbers or a UFL vector of shape "
                f"({self.dim},)"
            )
        return fem.Constant(self.mesh, array)

    def _dirichlet(self, dirichlet) -> list:
        bcs = []
        self.dirichlet_values: list[fem.Function] = []
        self._dirichlet_functions: list[fem.Function] = []
        fdim = self.dim - 1
        for entry in dirichlet:
            if not isinstance(entry, tuple | list) or len(entry) not in (2, 3):
                raise ValueError(
                    f"a Dirichlet condition is (marker, value) or (marker, value, component), "
                    f"got {entry!r}"
                )
            marker, value = entry[0], entry[1]
            component = entry[2] if len(entry) == 3 else None
            facets = self._facets(marker)
            if component is None:
                space = self.V
                dofs = fem.locate_dofs_topological(space, fdim, facets)
                shape = (self.dim,)
            else:
                if not 0 <= int(component) < self.dim:
                    raise ValueError(f"component {component!r} must be in 0..{self.dim - 1}")
                sub = self.V.sub(int(component))
                space, _ = sub.collapse()
                dofs = fem.locate_dofs_topological((sub, space), fdim, facets)
                shape = ()
            full = fem.Function(space, name="dirichlet_value")
            if isinstance(value, fem.Function) or callable(value):
                full.interpolate(value)
            else:
                array = np.asarray(value, dtype=np.float64)
                if array.shape not in ((), shape):
                    raise ValueError(
                        f"Dirichlet value {value!r}: give a number, {shape[0] if shape else 1} "
                        "numbers, a function x -> values or a fem.Function"
                    )
                full.x.array.reshape(-1, int(np.prod(shape)))[:] = array
            g = fem.Function(space, name="dirichlet")
            bc = fem.dirichletbc(g, dofs) if component is None else fem.dirichletbc(g, dofs, sub)
            bcs.append(bc)
            self.dirichlet_values.append(full)
            self._dirichlet_functions.append(g)
        return bcs

    def _tractions(self, traction) -> list:
        if traction is None:
            return []
        pairs = (
            isinstance(traction, list | tuple)
            and len(traction) > 0
            and all(
                isinstance(e, list | tuple)
                and len(e) == 2
                and (callable(e[0]) or isinstance(e[0], np.ndarray))
                for e in traction
            )
        )
        if not pairs:
            return [(ufl.ds(domain=self.mesh), self._vector(traction, "traction"))]
        tag_of_facet: dict[int, int] = {}
        for k, (marker, _) in enumerate(traction):
            for facet in self._facets(marker).tolist():
                tag_of_facet.setdefault(facet, k + 1)
        indices = np.array(sorted(tag_of_facet), dtype=np.int32)
        values = np.array([tag_of_facet[i] for i in indices.tolist()], dtype=np.int32)
        tags = dmesh.meshtags(self.mesh, self.dim - 1, indices, values)
        ds = ufl.Measure("ds", domain=self.mesh, subdomain_data=tags)
        return [
            (ds(k + 1), self._vector(value, f"traction {k}"))
            for k, (_, value) in enumerate(traction)
        ]

    # -- loads and solve --------------------------------------------------------------------
    def set_load(self, factor: float) -> None:
        """Scale body force, tractions and Dirichlet values to ``factor`` times the full load."""
        self.load_factor.value = float(factor)
        for g, full in zip(self._dirichlet_functions, self.dirichlet_values):
            g.x.array[:] = float(factor) * full.x.array

    def solve(
        self, steps: int = 1, *, load: float = 1.0, max_cuts: int = DEFAULT_MAX_CUTS
    ) -> SteppedSolveReport:
        """Newton solves ramping the load factor from :attr:`converged_load` to ``load``.

        The ramp is split into ``steps`` equal increments. If the Newton iteration of a
        step fails (:class:`~hmm_fem.coupling.MacroSolveError`) or a micro solve fails
        (:class:`~hmm_fem.micro.MicroSolveError`), ``u`` is reset to the last converged
        state and the step is retried with half the increment, up to ``max_cuts``
        consecutive halvings (the smallest increment is the nominal one divided by
        ``2**max_cuts``); after a converged step the increment is doubled again, up to the
        nominal one. Every attempt is recorded in the report's ``steps``.

        Micro models with memory (plasticity) see each step as one increment from the last
        converged state: the load factor is their pseudo-time, a converged step commits
        their histories, and a failed attempt rolls them back exactly, so a cut step gives
        the answer of a run with the smaller steps from the start.

        Args:
            steps: Number of nominal load increments (1: one Newton solve at full load).
            load: The final load factor (1: the full load).
            max_cuts: Largest number of consecutive halvings of one step (0: none).

        Returns:
            A :class:`SteppedSolveReport` (a :class:`~hmm_fem.coupling.SolveReport`).

        Raises:
            MacroSolveError: If a step still fails after ``max_cuts`` halvings; a note names
                the step. ``u`` and the load factor are then those of
                :attr:`converged_load`, so a further :meth:`solve` continues from there.
            hmm_fem.micro.MicroSolveError: Likewise, if the last failure was a micro solve.
            ValueError: If ``steps`` or ``max_cuts`` is not a valid count or ``load`` is not
                finite.
        """
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if int(max_cuts) != max_cuts or max_cuts < 0:
            raise ValueError(f"max_cuts must be an integer >= 0, got {max_cuts!r}")
        if not np.isfinite(load):
            raise ValueError(f"load must be finite, got {load!r}")
        before = dataclasses.replace(self.coupling.dispatcher.statistics)
        start = time.perf_counter()
        first = self.converged_load
        ramp = float(load) - first
        nominal = 1.0 / int(steps)
        done, halvings = 0.0, 0
        attempts: list[LoadStep] = []
        iterations = 0
        report: SolveReport | None = None
        saved = self.u.x.array.copy()
        while True:
            end = done + nominal / 2**halvings
            if end > 1.0 - 1e-12:
                end = 1.0
            target = float(load) if end == 1.0 else first + end * ramp
            self.set_load(target)
            # The load factor is the pseudo-time of the micro models (history, own clock).
            self.problem.set_time(target, abs(target - self.converged_load))
            attempt_start = time.perf_counter()
            try:
                report = self.problem.solve()
            except (MacroSolveError, MicroSolveError) as err:
                failed = LoadStep(
                    target,
                    target - self.converged_load,
                    False,
                    int(self.problem.solver.getIterationNumber()),
                    halvings,
                    time.perf_counter() - attempt_start,
                    f"{type(err).__name__}: {err}",
                )
                attempts.append(failed)
                self.u.x.array[:] = saved
                self.problem.rollback()
                self.set_load(self.converged_load)
                if halvings >= max_cuts:
                    err.add_note(
                        f"load stepping: the step from load factor {self.converged_load:.6g} to "
                        f"{target:.6g} failed after {halvings} halvings (max_cuts={max_cuts}); "
                        f"u is the converged state at load factor {self.converged_load:.6g}"
                    )
                    self.last_steps = attempts
                    raise
                halvings += 1
                continue
            attempts.append(
                LoadStep(
                    target,
                    target - self.converged_load,
                    True,
                    report.iterations,
                    halvings,
                    time.perf_counter() - attempt_start,
                )
            )
            iterations += report.iterations
            self.problem.commit()
            self.converged_load = target
            saved[:] = self.u.x.array
            done = end
            if end == 1.0:
                break
            halvings = max(halvings - 1, 0)
        self.last_steps = attempts
        local = self.coupling.dispatcher.statistics - before
        return SteppedSolveReport(
            report.converged_reason,
            iterations,
            list(report.residual_norms),
            time.perf_counter() - start,
            local.micro_seconds,
            local.total(self.mesh.comm),
            substituted_points=report.substituted_points,
            steps=attempts,
        )

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """What :mod:`hmm_fem.io.checkpoint` saves: ``u``, the converged load, the couplings.

        Save between :meth:`solve` calls (e.g. ``solve(steps=1, load=0.25)``, then 0.5 ...):
        the state is that of :attr:`converged_load`.
        """
        return {
            "functions": {"u": self.u},
            "scalars": {"converged_load": float(self.converged_load)},
            "couplings": self.problem.couplings,
        }

    def restore_state(self, scalars) -> None:
        """Set the converged load (and the loads it scales) of a restarted run."""
        self.converged_load = float(scalars["converged_load"])
        self.set_load(self.converged_load)

    # -- output -----------------------------------------------------------------------------
    @property
    def statistics(self) -> MicroStatistics:
        """Micro statistics of this problem's dispatcher (this rank, whole run)."""
        return self.coupling.dispatcher.statistics

    def effective_stiffness(self) -> np.ndarray:
        """Cell averages of C* at the last evaluation, ``(num_owned_cells, n, n)`` (Voigt).

        Needs a model whose solutions hold ``"C"`` (as :class:`~hmm_fem.cells.ElasticityModel`).
        """
        return self.coupling.cell_averages("C")

    def cell_stresses(self) -> np.ndarray:
        """Cell averages of the Voigt stress at the last evaluation, ``(num_owned_cells, n)``."""
        return self.coupling.cell_averages("value")

    def write(self, path: str | os.PathLike, time: float = 0.0) -> dict:
        """Write the solution for ParaView (VTX ``.bp`` folders, see :mod:`hmm_fem.io`).

        ``<path>_u.bp``: the displacement; ``<path>_micro.bp``: cell averages of the Voigt
        stress, of C* (if the model provides it) and of the microstructure parameters,
        as DG0 fields.

        Returns:
            The written paths by kind (``"displacement"``, ``"micro"``).
        """
        from ..io import dg0_function, write_vtx

        path = Path(path)
        coupling = self.coupling
        fields = [dg0_function(self.mesh, self.cell_stresses(), "stress")]
        if coupling.last_response is not None and "C" in coupling.last_response.solutions:
            fields.append(dg0_function(self.mesh, self.effective_stiffness(), "C_effective"))
        for name in coupling.parameter_names:
            fields.append(dg0_function(self.mesh, coupling.cell_averages(name), name))
        return {
            "displacement": write_vtx(path.parent / f"{path.name}_u.bp", [self.u], time),
            "micro": write_vtx(path.parent / f"{path.name}_micro.bp", fields, time),
        }
