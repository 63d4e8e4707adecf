"""Micro models inside UFL forms, through dolfinx-external-operator.

:func:`micro_operator` returns a ``FEMExternalOperator``: a UFL expression living in
a quadrature space whose values come from a micro model. ``ufl.derivative`` of a
form containing it spawns the tangent operators; :class:`MicroCoupling` fills the
operator and all its tangents from ONE dispatcher call per macro iterate.

Each rank evaluates the quadrature points of the cells it owns only; ghost values
arrive by a scatter, so no micro solve is repeated on two ranks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import basix
import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx_external_operator import FEMExternalOperator
from mpi4py import MPI

from ..micro.protocol import MicroModel, MicroResponse
from .dispatch import Dispatcher
from .failure import FailurePolicy

__all__ = ["MicroCoupling", "micro_operator", "effective_flux", "coupling_of"]


class MicroCoupling:
    """The link between one micro model and the quadrature points of one macro mesh.

    Created by :func:`micro_operator`; reach it from the operator with
    :func:`coupling_of`. Holds the dispatcher (cache, statistics) and the last
    response (e.g. K* at every quadrature point).
    """

    def __init__(
        self,
        model: MicroModel,
        mesh,
        operands: Mapping,
        parameters: Mapping,
        quadrature_degree: int,
        dispatcher: Dispatcher,
    ):
        self.model = model
        self.mesh = mesh
        self.quadrature_degree = int(quadrature_degree)
        self.dispatcher = dispatcher
        self.input_names = list(model.inputs)
        self.parameter_names = list(model.parameters)
        missing = [n for n in self.input_names if n not in operands]
        missing += [n for n in self.parameter_names if n not in parameters]
        if missing:
            raise ValueError(f"the micro model needs {missing}; give them as UFL expressions")
        self.operand_exprs = [operands[n] for n in self.input_names]
        self.parameter_exprs = [ufl.as_ufl(parameters[n]) for n in self.parameter_names]
        cell_name = mesh.topology.cell_name()
        element = basix.ufl.quadrature_element(
            cell_name, value_shape=tuple(model.output_shape), degree=self.quadrature_degree
        )
        self.space = fem.functionspace(mesh, element)
        self.points = self.space.element.interpolation_points
        self.num_points_per_cell = self.points.shape[0]
        self.weights = self._quadrature_weights(cell_name)
        tdim = mesh.topology.dim
        index_map = mesh.topology.index_map(tdim)
        self.num_owned_cells = index_map.size_local
        self.owned_cells = np.arange(self.num_owned_cells, dtype=np.int32)
        self.point_ids = self._point_ids(mesh, index_map)
        self._expressions = [
            fem.Expression(e, self.points) for e in self.operand_exprs + self.parameter_exprs
        ]
        # Compiled here, on every rank: JIT compilation is collective, and the coordinates
        # are needed on one rank only when an error is being reported.
        self._coordinates = fem.Expression(ufl.SpatialCoordinate(mesh), self.points)
        self.last_response: MicroResponse | None = None
        self.last_inputs: dict[str, np.ndarray] = {}
        self._operators: list[FEMExternalOperator] = []

    def _point_ids(self, mesh, index_map) -> np.ndarray:
        """Global ids of the owned quadrature points: input cell * points per cell + q.

        The input (original) cell index does not depend on the partition, unlike DOLFINx's
        global cell numbering, so the ids, which seed random streams and index histories,
        are the same on any number of ranks.
        """
        original = np.asarray(mesh.topology.original_cell_index, dtype=np.int64)
        if original.size >= self.num_owned_cells:
            cells = original[: self.num_owned_cells]
        else:
            warnings.warn(
                "the macro mesh does not know its input cell numbering (e.g. a submesh or a "
                "refined mesh): micro point ids follow DOLFINx's global cell numbering, so "
                "random streams and saved histories depend on the number of ranks",
                RuntimeWarning,
                stacklevel=3,
            )
            cells = index_map.local_to_global(self.owned_cells).astype(np.int64)
        q = np.arange(self.num_points_per_cell, dtype=np.int64)
        return (cells[:, None] * self.num_points_per_cell + q[None, :]).reshape(-1)

    @property
    def num_points(self) -> int:
        """Number of quadrature points owned by this rank."""
        return self.num_owned_cells * self.num_points_per_cell

    # -- evaluation --------------------------------------------------------------------------
    def _evaluate_operands(self):
        n = self.num_points
        values = [e.eval(self.mesh, self.owned_cells) for e in self._expressions]
        inputs, parameters = {}, {}
        for name, array in zip(self.input_names, values[: len(self.input_names)]):
            inputs[name] = np.asarray(array).reshape((n, *self.model.inputs[name]))
        for name, array in zip(self.parameter_names, values[len(self.input_names) :]):
            parameters[name] = np.asarray(array).reshape(n)
        return inputs, parameters

    def describe_point(self, i: int) -> str:
        """Text naming local quadrature point ``i``: global cell, point in cell, coordinates."""
        cell, q = divmod(int(i), self.num_points_per_cell)
        tdim = self.mesh.topology.dim
        global_cell = int(
            self.mesh.topology.index_map(tdim).local_to_global(np.array([cell], dtype=np.int32))[0]
        )
        xq = self._coordinates.eval(self.mesh, np.array([cell], dtype=np.int32)).reshape(
            self.num_points_per_cell, -1
        )[q]
        coords = ", ".join(f"{v:.6g}" for v in xq)
        return f"quadrature point {q} of cell {global_cell} (x = ({coords}))"

    def evaluate(self) -> MicroResponse:
        """Evaluate the micro model at the owned quadrature points (collective)."""
        inputs, parameters = self._evaluate_operands()
        response = self.dispatcher.evaluate(
            inputs, parameters, self.describe_point, point_ids=self.point_ids
        )
        self.last_inputs = {**inputs, **parameters}
        self.last_response = response
        return response

    def _values_for(self, derivatives: tuple[int, ...], response: MicroResponse) -> np.ndarray:
        if not any(derivatives):
            return response.value
        if sum(derivatives) > 1:
            raise NotImplementedError("second derivatives of micro responses are not available")
        index = int(np.flatnonzero(derivatives)[0])
        if index >= len(self.input_names):
            # Parameters are data, not unknowns: their derivative is not provided.
            name = self.parameter_names[index - len(self.input_names)]
            raise NotImplementedError(
                f"the micro response is not differentiated by parameter {name!r}"
            )
        return response.derivatives[self.input_names[index]]

    def assign(self, operators, response: MicroResponse | None = None) -> None:
        """Write the response (and tangents) into the coefficients of ``operators``."""
        response = self.last_response if response is None else response
        for op in operators:
            values = np.asarray(self._values_for(op.derivatives, response), dtype=np.float64)
            coefficient = op.ref_coefficient
            size = values.size
            coefficient.x.array[:size] = values.reshape(-1)
            coefficient.x.scatter_forward()

    def update(self, operators) -> None:
        """One micro evaluation, then fill every operator of this coupling in ``operators``."""
        mine = [op for op in operators if coupling_of(op) is self]
        if mine:
            self.assign(mine, self.evaluate())

    # -- the dolfinx-external-operator interface ---------------------------------------------
    def external_function(self, derivatives: tuple[int, ...]):
        """``external_function`` for ``FEMExternalOperator``: evaluates on all given points.

        Used by ``dolfinx_external_operator.evaluate_external_operators``; the macro
        solvers of hmm-fem call :meth:`update` instead (owned cells only, one
        evaluation for the operator and all its tangents).
        """

        def evaluate(*operand_values):
            if self.model.history:
                raise RuntimeError(
                    f"{type(self.model).__name__} carries a history per macro point; evaluate it "
                    "through the hmm-fem macro solvers (MicroCoupling.update), not "
                    "dolfinx_external_operator.evaluate_external_operators, whose points "
                    "include ghost cells"
                )
            names = self.input_names + self.parameter_names
            n = operand_values[0].size // max(1, int(np.prod(self.model.inputs[names[0]])))
            inputs = {
                name: np.asarray(v).reshape((n, *self.model.inputs[name]))
                for name, v in zip(self.input_names, operand_values)
            }
            parameters = {
                name: np.asarray(v).reshape(n)
                for name, v in zip(self.parameter_names, operand_values[len(self.input_names) :])
            }
            response = self.dispatcher.evaluate(inputs, parameters)
            return self._values_for(derivatives, response).reshape(-1)

        return evaluate

    # -- output ------------------------------------------------------------------------------
    def cell_averages(self, name: str) -> np.ndarray:
        """Cell averages over the owned cells of the last evaluation.

        ``name`` is ``"value"`` (the response), ``"standard_error"`` (of a noisy response),
        ``"substituted"`` (the fraction of the cell's quadrature weight answered by a
        substitution, see :class:`~hmm_fem.coupling.FailurePolicy`), an input or parameter
        name, or a solution entry (e.g. ``"K"``). Returns shape ``(num_owned_cells, *shape)``.
        """
        if self.last_response is None:
            raise RuntimeError("no micro evaluation yet")
        if name == "substituted":
            data = self.substituted.astype(np.float64)
        elif name == "value":
            data = self.last_response.value
        elif name in self.last_response.solutions:
            data = self.last_response.solutions[name]
        elif name == "standard_error" and self.last_response.standard_error is not None:
            data = self.last_response.standard_error
        elif name in self.last_inputs:
            data = self.last_inputs[name]
        else:
            known = ["value", *self.last_response.solutions, *self.last_inputs]
            raise KeyError(f"no micro quantity '{name}'; known: {known}")
        return self._average(data)

    @property
    def substituted(self) -> np.ndarray:
        """Which owned points were answered by a substitution at the last evaluation.

        ``(num_points,)`` booleans (all ``False`` before any evaluation).
        """
        flags = self.dispatcher.last_substituted
        if flags.size != self.num_points:
            return np.zeros(self.num_points, dtype=bool)
        return flags

    def substituted_cells(self) -> np.ndarray:
        """``(num_owned_cells,)`` 0/1: owned cells with a substituted point at the last evaluation.

        For ParaView: ``hmm_fem.io.dg0_function(mesh, coupling.substituted_cells(),
        "substituted")`` and ``hmm_fem.io.write_vtx``.
        """
        flags = self.substituted.reshape(self.num_owned_cells, self.num_points_per_cell)
        return flags.any(axis=1).astype(np.float64)

    def _quadrature_weights(self, cell_name: str) -> np.ndarray:
        """The weights of the quadrature rule whose points the operator's space uses.

        Raises:
            ValueError: If basix's rule of this degree does not have the space's points
                (the averages would be wrong; no other rule is guessed).
        """
        points, weights = basix.make_quadrature(basix.CellType[cell_name], self.quadrature_degree)
        if points.shape != self.points.shape or not np.allclose(points, self.points):
            raise ValueError(
                f"the quadrature rule of degree {self.quadrature_degree} on {cell_name} cells "
                f"has {len(weights)} points, but the micro operator's space has "
                f"{self.points.shape[0]} other points; cell averages need the weights of the "
                "space's own rule"
            )
        return np.asarray(weights, dtype=np.float64)

    def history_averages(self, name: str, which: str = "trial") -> np.ndarray:
        """Cell averages of history ``name`` of a model with memory, ``(num_owned_cells, *shape)``.

        Args:
            name: A history name of the model.
            which: ``"trial"`` (the last evaluation) or ``"committed"`` (the last accepted step).
        """
        store = self.dispatcher.history
        if store is None:
            raise ValueError(f"{type(self.model).__name__} has no history")
        return self._average(store.values(name, which))

    def _average(self, data: np.ndarray) -> np.ndarray:
        nq = self.num_points_per_cell
        data = np.asarray(data).reshape(self.num_owned_cells, nq, *np.shape(data)[1:])
        w = self.weights
        return np.tensordot(w / w.sum(), data, axes=([0], [1]))


def coupling_of(operator) -> MicroCoupling | None:
    """The :class:`MicroCoupling` behind an external operator (or ``None``)."""
    # Derivative operators are reconstructed with the same bound external_function.
    owner = getattr(getattr(operator, "external_function", None), "__self__", None)
    return owner if isinstance(owner, MicroCoupling) else None


def micro_operator(
    model: MicroModel,
    mesh,
    operands: Mapping,
    parameters: Mapping | None = None,
    *,
    quadrature_degree: int = 2,
    comm: MPI.Comm | None = None,
    state_tolerance: float = 0.0,
    cache_size: int = 1_000_000,
    progress: bool | None = None,
    failure_policy: FailurePolicy | None = None,
    strategy: str | None = None,
    workers=None,
    activation=None,
    name: str = "micro_response",
) -> FEMExternalOperator:
    """A UFL expression whose values at the quadrature points come from ``model``.

    Args:
        model: The micro model.
        mesh: The macro mesh.
        operands: Input name -> UFL expression (every name in ``model.inputs``).
        parameters: Parameter name -> UFL expression (every name in ``model.parameters``).
        quadrature_degree: Degree of the quadrature rule of the operator; the macro
            solvers of hmm-fem integrate every form containing it with this degree.
        comm: Communicator of the dispatcher (default: the mesh's).
        state_tolerance: See :class:`Dispatcher`.
        cache_size: See :class:`Dispatcher`.
        progress: See :class:`Dispatcher`.
        failure_policy: What a failed micro solve leads to (see
            :class:`~hmm_fem.coupling.FailurePolicy`; default: abort at the first failure).
        strategy: How micro solves are dealt to the ranks (``"blocks"`` or ``"pool"``,
            see :class:`Dispatcher`).
        workers: Dedicated micro worker ranks (a
            :class:`~hmm_fem.coupling.pool.MicroWorkers`; then ``comm`` is
            ``workers.comm`` and the mesh lives on ``workers.macro_comm``).
        activation: Which micro states are solved (see :class:`Dispatcher`,
            :mod:`hmm_fem.coupling.adaptivity`); default: all.
        name: Name of the operator's coefficient.

    Returns:
        The ``FEMExternalOperator``; :func:`coupling_of` gives its :class:`MicroCoupling`.
    """
    dispatcher = Dispatcher(
        model,
        comm or mesh.comm,
        state_tolerance=state_tolerance,
        cache_size=cache_size,
        progress=progress,
        failure_policy=failure_policy,
        strategy=strategy,
        workers=workers,
        activation=activation,
    )
    coupling = MicroCoupling(model, mesh, operands, parameters or {}, quadrature_degree, dispatcher)
    operator = FEMExternalOperator(
        *coupling.operand_exprs,
        *coupling.parameter_exprs,
        function_space=coupling.space,
        external_function=coupling.external_function,
        name=name,
    )
    return operator


def effective_flux(
    model: MicroModel, T: fem.Function, parameters: Mapping | None = None, **options
) -> FEMExternalOperator:
    """The macro heat flux ``q(T, grad T)`` of a conductivity micro model, as UFL.

    Example:
        >>> q = hmm_fem.effective_flux(model, T, quadrature_degree=2)
        >>> F = -ufl.inner(q, ufl.grad(v)) * ufl.dx - f * v * ufl.dx

    Args:
        model: A micro model with inputs ``T`` and ``grad_T`` (e.g.
            :class:`hmm_fem.cells.ConductivityModel`).
        T: The macro temperature.
        parameters: Microstructure parameters as UFL expressions, e.g.
            ``{"volume_fraction": f}``.
        **options: Passed to :func:`micro_operator`.
    """
    mesh = T.function_space.mesh
    return micro_operator(
        model,
        mesh,
        {"T": T, "grad_T": ufl.grad(T)},
        parameters,
        name=options.pop("name", "flux"),
        **options,
    )
