"""The micro-model protocol: a batch of macro states in, macro responses and tangents out.

A micro model knows nothing of finite elements. It declares its macro inputs
(name and shape at one point), the shape of its response, and splits the work in
three steps so that the dispatcher (:mod:`hmm_fem.coupling`) can cache and
distribute it:

1. :meth:`MicroModel.micro_state` maps the inputs at ``n`` points to ``n`` rows of
   floats that determine the micro solve (for a conductivity cell: temperature and
   volume fraction, not the gradient, since the flux is linear in the gradient).
   Equal rows are solved once. A model whose solve depends on nothing returns
   zero columns and is solved once for the whole run.
2. :meth:`MicroModel.solve` performs one micro solve for one state row and returns a
   dict of fixed-shape arrays (for example ``K`` and ``dK_dT``).
3. :meth:`MicroModel.respond` combines the per-point solve results with the inputs,
   vectorised, into the response and its derivative with respect to every input.

An MD box, a kinetic cell or a KMC patch implements the same three methods.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MicroModel", "MicroResponse", "MicroSolveError"]


class MicroSolveError(RuntimeError):
    """A micro solve failed or received a non-finite state.

    The message names the macro point (index, cell, coordinates when known) and the state.
    """


@dataclass
class MicroResponse:
    """The answer of a micro model at ``n`` points.

    Attributes:
        value: The response, shape ``(n, *output_shape)`` (a flux, a stress ...).
        derivatives: For every input name, ``d value / d input`` with shape
            ``(n, *output_shape, *input_shape)``: the consistent tangent.
        solutions: The per-point micro solve results (``(n, ...)`` arrays by name),
            for output such as the effective tensor at every point.
    """

    value: np.ndarray
    derivatives: dict[str, np.ndarray]
    solutions: dict[str, np.ndarray] = field(default_factory=dict)


class MicroModel(abc.ABC):
    """A micro model answering a batch of macro states.

    Subclasses set :attr:`inputs`, :attr:`output_shape` and :attr:`parameters` and
    implement the three methods below.
    """

    #: Name -> shape at one point of each macro input, in operand order.
    inputs: Mapping[str, tuple[int, ...]] = {}
    #: Shape of the response at one point.
    output_shape: tuple[int, ...] = ()
    #: Names of microstructure parameters (macro fields that are inputs but are not
    #: differentiated, e.g. a volume fraction).
    parameters: tuple[str, ...] = ()

    #: Names of the columns of :meth:`micro_state`, for error messages.
    state_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def micro_state(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """The ``(n, s)`` array of states that determine the micro solves."""

    @abc.abstractmethod
    def solve(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """One micro solve for one state row; returns fixed-shape arrays by name.

        Raises:
            Exception: any failure; the dispatcher adds the macro point and state.
        """

    @abc.abstractmethod
    def respond(
        self,
        solutions: Mapping[str, np.ndarray],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, np.ndarray],
    ) -> MicroResponse:
        """Vectorised response and tangents from the per-point solutions."""

    def evaluate(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, np.ndarray] | None = None
    ) -> MicroResponse:
        """Evaluate at ``n`` points without cache or distribution (one solve per point).

        The coupling layer uses :class:`hmm_fem.coupling.Dispatcher` instead, which
        solves every distinct state once.
        """
        parameters = {} if parameters is None else parameters
        states = np.atleast_2d(self.micro_state(inputs, parameters))
        results = [self.solve(row) for row in states]
        solutions = {k: np.array([r[k] for r in results]) for k in results[0]} if results else {}
        return self.respond(solutions, inputs, parameters)
