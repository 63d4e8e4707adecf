"""A base for wrappers whose solve needs the macro inputs of its point.

A finite-difference tangent perturbs the inputs and an ensemble average evaluates the
response of every replica, so their solve needs the point's inputs, not only the
wrapped model's state. :class:`PointwiseWrapper` appends the flattened inputs and
parameters to the wrapped model's state row (points with equal inputs still share a
solve) and unpacks them again in the solve.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np

from .protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext

__all__ = ["PointwiseWrapper", "TANGENT_PREFIX"]

#: Prefix of the solution entries that hold a wrapper's tangent by input name.
TANGENT_PREFIX = "tangent/"


class PointwiseWrapper(MicroModel):
    """A micro model wrapping ``model``, whose state row carries the point's inputs.

    The state row is ``[model's state | inputs flattened in order | parameters]``. The
    wrapper has the wrapped model's inputs, response shape, parameters, history, time
    dependence, noise, seed and remedies (a retry's ``context.remedy`` reaches every solve
    of the wrapped model that :meth:`respond_at` makes). Subclasses implement :meth:`solve`
    with the helpers :meth:`unpack` and :meth:`respond_at`, and return ``"value"`` and
    ``"tangent/<input>"`` entries (and ``"standard_error"`` for a noisy value), which
    :meth:`respond` turns into the response.

    Args:
        model: The wrapped micro model.
    """

    def __init__(self, model: MicroModel):
        self.model = model
        self.inputs = dict(model.inputs)
        self.output_shape = tuple(model.output_shape)
        self.parameters = tuple(model.parameters)
        self.history = dict(model.history)
        self.time_dependent = model.time_dependent
        self.stochastic = model.stochastic
        self.seed = model.seed
        self.remedies = tuple(model.remedies)
        self._sizes = {name: int(np.prod(shape)) for name, shape in self.inputs.items()}
        self._inner_width: int | None = None
        input_names = [
            f"{name}[{k}]" if self._sizes[name] > 1 else name
            for name in self.inputs
            for k in range(self._sizes[name])
        ]
        self._input_names = tuple(input_names)
        self.state_names = ()

    def initial_history(self) -> dict[str, np.ndarray]:
        """The wrapped model's initial history."""
        return self.model.initial_history()

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The wrapped model's state, the flattened inputs and the parameters."""
        inner = np.asarray(self.model.micro_state(inputs, parameters), dtype=np.float64)
        n = inner.shape[0]
        inner = inner.reshape(n, -1)
        self._inner_width = inner.shape[1]
        names = tuple(self.model.state_names) + tuple(
            f"s{i}" for i in range(len(self.model.state_names), inner.shape[1])
        )
        self.state_names = names[: inner.shape[1]] + self._input_names + self.parameters
        flat = [
            np.asarray(inputs[name], dtype=np.float64).reshape(n, self._sizes[name])
            for name in self.inputs
        ]
        params = [
            np.asarray(parameters[name], dtype=np.float64).reshape(n, 1) for name in self.parameters
        ]
        return np.hstack([inner, *flat, *params])

    @staticmethod
    def deadline(context: SolveContext) -> float | None:
        """The ``time.perf_counter()`` at which the solve's ``context.timeout`` runs out."""
        return None if context.timeout is None else time.perf_counter() + context.timeout

    @staticmethod
    def within(context: SolveContext, deadline: float | None) -> SolveContext:
        """The context of one inner solve: its timeout is the time left until ``deadline``.

        A wrapper that solves the wrapped model several times per point (differences,
        replicas) passes the remaining time on, so that an engine that stops itself at
        ``context.timeout`` (LAMMPS) stops the whole wrapped solve at the limit.

        Raises:
            TimeoutError: If the time is up before the inner solve starts.
        """
        if deadline is None:
            return context
        left = deadline - time.perf_counter()
        if left <= 0.0:
            raise TimeoutError(
                f"the timeout of {context.timeout:g} s ran out between the inner solves of a "
                "wrapper"
            )
        return dataclasses.replace(context, timeout=left)

    def unpack(self, state: np.ndarray):
        """``(inner_state, inputs, parameters)`` of one state row (inputs as ``(1, *shape)``)."""
        if self._inner_width is None:
            raise RuntimeError(f"{type(self).__name__}: micro_state was never called")
        state = np.asarray(state, dtype=np.float64)
        inner = state[: self._inner_width]
        offset = self._inner_width
        inputs = {}
        for name, shape in self.inputs.items():
            size = self._sizes[name]
            inputs[name] = state[offset : offset + size].reshape((1, *shape)).copy()
            offset += size
        parameters = {
            name: state[offset + k : offset + k + 1].copy()
            for k, name in enumerate(self.parameters)
        }
        return inner, inputs, parameters

    def respond_at(
        self,
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, np.ndarray],
        context: SolveContext,
        state: np.ndarray | None = None,
    ) -> tuple[MicroResponse, dict, dict | None]:
        """Solve the wrapped model at one point and respond there.

        Args:
            inputs: The point's inputs, ``(1, *shape)`` each.
            parameters: The point's parameters, ``(1,)`` each.
            context: The solve context (the same context gives the same random stream).
            state: The wrapped model's state row, if already known.

        Returns:
            ``(response, solution, history)``: the wrapped model's response at the point,
            its solve result (without the history) and the updated history (or ``None``).
        """
        if state is None:
            state = np.asarray(self.model.micro_state(inputs, parameters), dtype=np.float64)
            state = state.reshape(-1)
        solution = dict(self.model.solve(state, context))
        history = solution.pop(HISTORY_KEY, None)
        solution = {k: np.asarray(v, dtype=np.float64) for k, v in solution.items()}
        batch = {k: v[None] for k, v in solution.items()}
        return self.model.respond(batch, inputs, parameters), solution, history

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The response, tangents and standard error gathered by :meth:`solve`."""
        derivatives = {name: solutions[TANGENT_PREFIX + name] for name in self.inputs}
        kept = {
            k: v
            for k, v in solutions.items()
            if not k.startswith(TANGENT_PREFIX) and k not in ("value", "standard_error")
        }
        return MicroResponse(
            value=solutions["value"],
            derivatives=derivatives,
            solutions=kept,
            standard_error=solutions.get("standard_error"),
        )
