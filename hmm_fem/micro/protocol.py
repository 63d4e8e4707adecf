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
2. :meth:`MicroModel.solve` performs one micro solve for one state row, given a
   :class:`SolveContext`, and returns a dict of fixed-shape arrays (for example ``K``
   and ``dK_dT``).
3. :meth:`MicroModel.respond` combines the per-point solve results with the inputs,
   vectorised, into the response and its derivative with respect to every input.

Three optional features widen the seam for micro simulators that are not a
quasi-static, deterministic cell:

* **History** (:attr:`MicroModel.history`): internal variables carried per macro point
  (plastic strain, a block's concentration profile, an MD box's configuration). A solve
  reads the point's *committed* history from ``context.history`` and returns the updated
  one under the key ``"history"``. Updates are trial until the macro solver commits the
  step; a step cut rolls them back. Points with different histories never share a solve.
* **Time** (:attr:`MicroModel.time_dependent`): the solve receives the macro time and
  time step in the context and advances the micro problem over it.
* **Noise** (:attr:`MicroModel.stochastic`): the solve draws random numbers from
  ``context.rng()``, a stream seeded from (model seed, global point id, macro step, Newton
  iteration), so a run gives the same numbers on any number of ranks. A response may carry
  a standard error (:attr:`MicroResponse.standard_error`).

A fourth, **remedies** (:attr:`MicroModel.remedies`), serves the dispatcher's failure
policy (:class:`hmm_fem.coupling.FailurePolicy`): a model names what it can do
differently when a solve fails (load sub-stepping, a more robust solver, a cold start),
and a retry asks for one through ``context.remedy`` (``context.attempt`` counts the
attempts). A solve that cannot succeed raises, or returns a non-finite value: both are
failures, and the policy retries, substitutes or aborts.

An MD box, a kinetic cell or a KMC patch implements the same three methods.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MicroModel", "MicroResponse", "MicroSolveError", "SolveContext", "HISTORY_KEY"]

#: Key of the updated history in the dict returned by :meth:`MicroModel.solve`.
HISTORY_KEY = "history"


class MicroSolveError(RuntimeError):
    """A micro solve failed or received a non-finite state.

    The message names the macro point (index, cell, coordinates when known) and the state.
    """


@dataclass(frozen=True)
class SolveContext:
    """What a micro solve may need besides its state row.

    Attributes:
        time: Macro time at the end of the step being solved (a load factor for
            quasi-static load stepping).
        dt: Macro time step (``0`` for a quasi-static or steady solve).
        step: Index of the macro step (counts accepted and attempted steps alike).
        iteration: Index of the macro evaluation within the step (a Newton iterate).
        point: Global id of a macro point that needs this solve (for a stochastic model,
            the point whose stream this is; ``-1`` if unknown).
        history: The committed history of the point (name -> array of the shape in
            :attr:`MicroModel.history`), read only; ``None`` for a model without history.
        seed: The entropy of this solve's random stream: ``(model seed, point, step,
            iteration)``.
        attempt: ``0`` for the first attempt at this state; ``k`` for the k-th retry after
            a failure (see :class:`hmm_fem.coupling.FailurePolicy`).
        remedy: The remedy a retry asks for: one of the model's :attr:`MicroModel.remedies`
            (``None`` on the first attempt, or when the model offers none).
        timeout: Wall-clock seconds this attempt may take (the failure policy's timeout;
            ``None``: no limit). An engine that can stop itself should honour it (LAMMPS:
            ``timer timeout``; a Python loop: check the clock); the dispatcher drops a
            result that comes later.
    """

    time: float = 0.0
    dt: float = 0.0
    step: int = 0
    iteration: int = 0
    point: int = -1
    history: Mapping[str, np.ndarray] | None = None
    seed: tuple[int, ...] = (0,)
    attempt: int = 0
    remedy: str | None = None
    timeout: float | None = None

    def seed_sequence(self) -> np.random.SeedSequence:
        """A fresh :class:`numpy.random.SeedSequence` of this solve's stream."""
        return np.random.SeedSequence([int(s) for s in self.seed])

    def rng(self) -> np.random.Generator:
        """A fresh generator of this solve's stream.

        Every call starts the same stream again: repeated solves of one context (finite
        differences, retries) see the same numbers (common random numbers).
        """
        return np.random.default_rng(self.seed_sequence())


@dataclass
class MicroResponse:
    """The answer of a micro model at ``n`` points.

    Attributes:
        value: The response, shape ``(n, *output_shape)`` (a flux, a stress ...).
        derivatives: For every input name, ``d value / d input`` with shape
            ``(n, *output_shape, *input_shape)``: the consistent tangent.
        solutions: The per-point micro solve results (``(n, ...)`` arrays by name),
            for output such as the effective tensor at every point.
        standard_error: For a noisy model, the standard error of ``value`` (same shape),
            or ``None`` for a deterministic answer.
    """

    value: np.ndarray
    derivatives: dict[str, np.ndarray]
    solutions: dict[str, np.ndarray] = field(default_factory=dict)
    standard_error: np.ndarray | None = None


class MicroModel(abc.ABC):
    """A micro model answering a batch of macro states.

    Subclasses set :attr:`inputs`, :attr:`output_shape` and :attr:`parameters` and
    implement the three methods below; :attr:`history`, :attr:`time_dependent`,
    :attr:`stochastic` and :attr:`seed` declare the optional features.
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

    #: Name -> shape at one point of each internal variable. Empty: no memory.
    history: Mapping[str, tuple[int, ...]] = {}
    #: Whether a solve depends on the macro time and time step (``context.time``,
    #: ``context.dt``): transient micro problems, micro simulators with their own clock.
    time_dependent: bool = False
    #: Whether a solve draws random numbers (``context.rng()``).
    stochastic: bool = False
    #: Seed of the model's random streams (with the point, step and iteration).
    seed: int = 0
    #: Names of the remedies a retry after a failed solve may ask for (``context.remedy``),
    #: in the order a :class:`~hmm_fem.coupling.FailurePolicy` tries them: e.g.
    #: ``("substeps", "lu")`` for a Newton cell (load sub-stepping, a more robust
    #: factorisation). Empty: a retry repeats the plain solve.
    remedies: tuple[str, ...] = ()

    def initial_history(self) -> dict[str, np.ndarray]:
        """The history of a point before its first step (default: zeros of every shape)."""
        return {name: np.zeros(shape) for name, shape in self.history.items()}

    @abc.abstractmethod
    def micro_state(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """The ``(n, s)`` array of states that determine the micro solves."""

    @abc.abstractmethod
    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One micro solve for one state row; returns fixed-shape arrays by name.

        A model with :attr:`history` reads ``context.history`` (never modifies it) and
        returns the updated history as ``result["history"]``, a dict of arrays of the
        declared shapes.

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
        self,
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, np.ndarray] | None = None,
        context: SolveContext | None = None,
    ) -> MicroResponse:
        """Evaluate at ``n`` points without cache or distribution (one solve per point).

        For quick checks of a model. Every point is solved with the same ``context``
        (virgin history if the model has history, and the updated histories are
        dropped). The coupling layer uses :class:`hmm_fem.coupling.Dispatcher` instead,
        which solves every distinct state once and keeps the histories.
        """
        parameters = {} if parameters is None else parameters
        if context is None:
            context = SolveContext(
                history=self.initial_history() if self.history else None, seed=(self.seed,)
            )
        states = np.atleast_2d(self.micro_state(inputs, parameters))
        results = [self.solve(row, context) for row in states]
        for result in results:
            result.pop(HISTORY_KEY, None)
        solutions = {k: np.array([r[k] for r in results]) for k in results[0]} if results else {}
        return self.respond(solutions, inputs, parameters)
