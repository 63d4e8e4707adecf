"""Tangents of micro models that have no analytic form: finite differences and secants.

An MD box, a kinetic cell or a Monte Carlo patch answers a stress or a flux but not its
derivative. The macro Newton needs one. :class:`FiniteDifferenceTangent` computes it by
differences of the wrapped model's response at perturbed inputs (from the same committed
history and, for a noisy model, with the same random numbers). :class:`SecantTangent`
updates a tangent from the responses of successive Newton iterates (Broyden), starting
from a tangent the user gives (an elastic stiffness, say), at no extra micro solve. A
model with an exact tangent keeps it: wrap only the models that need one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .pointwise import TANGENT_PREFIX, PointwiseWrapper
from .protocol import HISTORY_KEY, MicroModel, MicroResponse, SolveContext

__all__ = ["FiniteDifferenceTangent", "SecantTangent"]

_EPS = float(np.finfo(np.float64).eps)


class FiniteDifferenceTangent(PointwiseWrapper):
    """The tangent of ``model`` by finite differences of its response.

    For every component ``x_j`` of every input, the response is evaluated at ``x_j +- h_j``
    (central) or ``x_j + h_j`` (forward), each a solve of the wrapped model from the
    point's committed history and with the point's random stream (common random numbers:
    the noise of a stochastic model largely cancels in the difference).

    The step is ``h_j = r * max(|x_j|, scale)``: ``scale`` is the typical magnitude of the
    input (so a zero input gets a step of the right size), and ``r`` balances truncation
    against round-off and noise: ``r = max(eps, eta)^(1/3)`` (central) or
    ``max(eps, eta)^(1/2)`` (forward), with ``eps`` the machine precision and ``eta`` the
    response's relative standard error at the point (0 for a deterministic model).

    Cost: ``2 m`` (central) or ``m`` (forward) extra solves per point, ``m`` the number of
    input components. A ``context.timeout`` is the limit of all of them together: each
    inner solve is told the time left (and none starts after it ran out).

    Example:
        >>> model = FiniteDifferenceTangent(md_box, scale={"strain": 1e-2})

    Args:
        model: The micro model (its own derivatives, if any, are ignored).
        scheme: ``"central"`` (second order, the default) or ``"forward"``.
        scale: Typical magnitude of each input (name -> number), default 1.
        step: A fixed absolute step (name -> number) instead of the rule above.

    Raises:
        ValueError: For an unknown scheme, an unknown input name, or a non-positive scale
            or step.
    """

    def __init__(
        self,
        model: MicroModel,
        *,
        scheme: str = "central",
        scale: Mapping[str, float] | None = None,
        step: Mapping[str, float] | None = None,
    ):
        super().__init__(model)
        if scheme not in ("central", "forward"):
            raise ValueError(f"scheme must be 'central' or 'forward', got {scheme!r}")
        self.scheme = scheme
        self.scale = self._per_input(scale, 1.0, "scale")
        self.step = None if step is None else self._per_input(step, None, "step")

    def _per_input(self, values, default, what: str) -> dict[str, float]:
        values = dict(values or {})
        unknown = set(values) - set(self.inputs)
        if unknown:
            raise ValueError(
                f"{what} names unknown inputs {sorted(unknown)}; inputs: {list(self.inputs)}"
            )
        out = {}
        for name in self.inputs:
            value = values.get(name, default)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{what}[{name!r}] must be positive, got {value}")
            out[name] = value
        return out

    def _relative_step(self, value: np.ndarray, standard_error: np.ndarray | None) -> float:
        eta = 0.0
        if standard_error is not None:
            magnitude = float(np.abs(value).max(initial=0.0))
            if magnitude > 0:
                eta = float(np.abs(standard_error).max(initial=0.0)) / magnitude
        noise = max(_EPS, eta)
        return noise ** (1.0 / 3.0) if self.scheme == "central" else np.sqrt(noise)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """The response at the point and its derivative by every input, by differences."""
        inner, inputs, parameters = self.unpack(state)
        deadline = self.deadline(context)
        response, solution, history = self.respond_at(
            inputs, parameters, self.within(context, deadline), inner
        )
        value = np.asarray(response.value[0], dtype=np.float64)
        error = None if response.standard_error is None else response.standard_error[0]
        relative = self._relative_step(value, error)
        out = dict(solution)
        out["value"] = value
        if error is not None:
            out["standard_error"] = np.asarray(error, dtype=np.float64)
        for name, shape in self.inputs.items():
            flat = inputs[name].reshape(-1)
            columns = []
            for j in range(flat.size):
                h = (
                    self.step[name]
                    if self.step is not None
                    else relative * max(abs(float(flat[j])), self.scale[name])
                )
                plus = self._value_at(inputs, parameters, context, deadline, name, j, h)
                if self.scheme == "central":
                    minus = self._value_at(inputs, parameters, context, deadline, name, j, -h)
                    columns.append((plus - minus) / (2.0 * h))
                else:
                    columns.append((plus - value) / h)
            out[TANGENT_PREFIX + name] = np.stack(columns, axis=-1).reshape(value.shape + shape)
        if history is not None:
            out[HISTORY_KEY] = history
        return out

    def _value_at(self, inputs, parameters, context, deadline, name, j, delta) -> np.ndarray:
        moved = {k: v.copy() for k, v in inputs.items()}
        moved[name].reshape(-1)[j] += delta
        response, _, _ = self.respond_at(moved, parameters, self.within(context, deadline))
        return np.asarray(response.value[0], dtype=np.float64)


class SecantTangent(MicroModel):
    """A tangent updated by Broyden's rule from successive evaluations at the same points.

    At the first evaluation of every point the tangent is ``initial_tangent``; at each
    later evaluation of the same points it is updated with the change of the response
    ``dy`` over the change of the inputs ``dx`` (all inputs flattened together):

        T <- T + (dy - T dx) dx^T / (dx . dx)     (skipped where dx = 0),

    so that the new tangent maps the last input step onto the last response step. No
    extra micro solve is needed; Newton's convergence becomes superlinear instead of
    quadratic. The tangents are kept per point (in evaluation order) and reset at
    :meth:`reset` (e.g. at the start of a load step, to the initial tangent again). The
    wrapped model's remedies are the wrapper's; the solve context passes through.

    Args:
        model: The micro model (its own derivatives are ignored).
        initial_tangent: The starting tangent at every point, ``output_shape +
            (m,)`` with ``m`` the total number of input components (for one input, the
            shape of its derivative is also accepted), e.g. the elastic stiffness.

    Raises:
        ValueError: If the initial tangent has the wrong shape or is not finite.
    """

    def __init__(self, model: MicroModel, initial_tangent: np.ndarray):
        self.model = model
        self.inputs = dict(model.inputs)
        self.output_shape = tuple(model.output_shape)
        self.parameters = tuple(model.parameters)
        self.state_names = tuple(model.state_names)
        self.history = dict(model.history)
        self.time_dependent = model.time_dependent
        self.stochastic = model.stochastic
        self.seed = model.seed
        self.remedies = tuple(model.remedies)
        self._sizes = [int(np.prod(shape)) for shape in self.inputs.values()]
        m = sum(self._sizes)
        out = int(np.prod(self.output_shape))
        tangent = np.asarray(initial_tangent, dtype=np.float64)
        if tangent.size != out * m or not np.all(np.isfinite(tangent)):
            raise ValueError(
                f"initial_tangent must hold {out} x {m} finite values (response by all input "
                f"components), got shape {tangent.shape}"
            )
        self.initial_tangent = tangent.reshape(out, m)
        self.reset()

    def reset(self) -> None:
        """Forget the iterates: the next evaluation starts from the initial tangent."""
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._T: np.ndarray | None = None

    def initial_history(self) -> dict[str, np.ndarray]:
        """The wrapped model's initial history."""
        return self.model.initial_history()

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The wrapped model's state."""
        return self.model.micro_state(inputs, parameters)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """The wrapped model's solve."""
        return self.model.solve(state, context)

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The wrapped response, with the secant tangent of every point."""
        response = self.model.respond(solutions, inputs, parameters)
        value = np.asarray(response.value, dtype=np.float64)
        n = value.shape[0]
        x = np.hstack([np.asarray(inputs[k], dtype=np.float64).reshape(n, -1) for k in self.inputs])
        y = value.reshape(n, -1)
        if self._T is None or self._T.shape[0] != n:
            T = np.broadcast_to(self.initial_tangent, (n, *self.initial_tangent.shape)).copy()
        else:
            T = self._T
            dx, dy = x - self._x, y - self._y
            norm2 = np.einsum("nj,nj->n", dx, dx)
            moved = norm2 > 0
            residual = dy - np.einsum("nij,nj->ni", T, dx)
            T = T.copy()
            T[moved] += (
                np.einsum("ni,nj->nij", residual[moved], dx[moved]) / norm2[moved, None, None]
            )
        self._x, self._y, self._T = x, y, T
        derivatives = {}
        offset = 0
        for (name, shape), size in zip(self.inputs.items(), self._sizes):
            block = T[:, :, offset : offset + size]
            derivatives[name] = block.reshape((n, *self.output_shape, *shape)).copy()
            offset += size
        return MicroResponse(value, derivatives, response.solutions, response.standard_error)
