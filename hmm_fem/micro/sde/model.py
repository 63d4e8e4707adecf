"""The HMM drift estimate as a micro model: the effective drift at macro points.

:class:`EffectiveDriftModel` puts a :class:`~hmm_fem.micro.sde.FastSlowEstimator` behind the
micro seam (:class:`~hmm_fem.micro.MicroModel`): the macro input ``x`` (the slow state at a
point, e.g. a concentration or a cell size field at a quadrature point) goes in, the
effective drift ``F(x, t)`` comes out with its standard error and its Jacobian (a
finite difference with common random numbers), so a macro FE problem can use it as a
reaction term: ``micro_operator(EffectiveDriftModel(estimator), mesh, [u], ...)`` in a
form such as ``(u - u_old)/dt v dx - F(u) v dx + ...``, solved by
:class:`hmm_fem.coupling.NonlinearProblem`, which stops Newton at the noise level of
``F``. Each solve draws from ``context.rng``'s entropy (model seed, point, macro step,
Newton iteration), so the answer is the same on any number of ranks, and a repeated
solve of a context (a finite difference, a retry) sees the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..protocol import MicroModel, MicroResponse, SolveContext
from .estimator import FastSlowEstimator

__all__ = ["EffectiveDriftModel"]


class EffectiveDriftModel(MicroModel):
    """Effective drift ``F(x, t)`` of a fast–slow system at macro points (stochastic).

    Input ``x`` (shape ``(m,)``), response ``F`` (shape ``(m,)``) with
    ``standard_error`` and the tangent ``dF/dx``. The model is ``stochastic`` (its key
    holds the point, step and iteration) and ``time_dependent`` (the drift may depend on
    the macro time ``context.time``).

    The estimator must live on ``MPI.COMM_SELF`` (the dispatcher runs each solve on one
    rank) and must not warm start (solves at different points in a rank-dependent order
    would start from each other's fast states).

    Example:
        >>> estimator = FastSlowEstimator(fast, slow_drift=f, lift=lift, dt=1e-4,
        ...                               burn_in=5e-3, window=2e-2, replicas=16,
        ...                               warm_start=False, comm=MPI.COMM_SELF)
        >>> model = EffectiveDriftModel(estimator, slow_dim=1, seed=3)
        >>> response = model.evaluate({"x": np.array([[1.0], [2.0]])})

    Args:
        estimator: The burst estimator (with ``slow_drift``).
        slow_dim: ``m``, the size of the slow state.
        seed: The model's seed (first entry of every solve's key).
        tangent: Whether to compute ``dF/dx`` (``m`` more bursts per solve); without it
            the tangent is zero (use :class:`~hmm_fem.micro.SecantTangent` then).

    Raises:
        ValueError: If the estimator is distributed, warm starts or has no slow drift.
    """

    stochastic = True
    time_dependent = True

    def __init__(
        self,
        estimator: FastSlowEstimator,
        *,
        slow_dim: int = 1,
        seed: int = 0,
        tangent: bool = True,
    ):
        if estimator.slow_drift is None:
            raise ValueError("EffectiveDriftModel needs an estimator with slow_drift")
        if estimator.comm.Get_size() != 1:
            raise ValueError(
                "the estimator of an EffectiveDriftModel must use comm=MPI.COMM_SELF: the "
                "dispatcher runs each solve on one rank (a collective burst would hang)"
            )
        if estimator.warm_start:
            raise ValueError(
                "the estimator of an EffectiveDriftModel must have warm_start=False: solves at "
                "different points would start from each other's fast states, in an order that "
                "depends on the number of ranks"
            )
        if isinstance(slow_dim, bool) or int(slow_dim) != slow_dim or slow_dim < 1:
            raise ValueError(f"slow_dim must be a positive integer, got {slow_dim!r}")
        self.estimator = estimator
        self.slow_dim = int(slow_dim)
        self.seed = int(seed)
        self.tangent = bool(tangent)
        self.inputs = {"x": (self.slow_dim,)}
        self.output_shape = (self.slow_dim,)
        self.state_names = tuple(f"x[{k}]" for k in range(self.slow_dim))

    def micro_state(self, inputs, parameters) -> np.ndarray:
        """The slow state at every point, ``(n, m)``."""
        x = np.asarray(inputs["x"], dtype=np.float64)
        return x.reshape(x.shape[0], -1)

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """One drift estimate (and its Jacobian) on the solve's streams."""
        key = tuple(int(s) for s in context.seed)
        if self.tangent:
            jacobian = self.estimator.jacobian(state, context.time, key=key)
            estimate, J, J_error = jacobian.base, jacobian.value, jacobian.standard_error
        else:
            estimate = self.estimator.drift(state, context.time, key=key)
            J = J_error = np.zeros((self.slow_dim, self.slow_dim))
        return {
            "drift": estimate.value,
            "standard_error": estimate.standard_error,
            "jacobian": J,
            "jacobian_error": J_error,
        }

    def respond(self, solutions, inputs, parameters) -> MicroResponse:
        """The drift, its standard error and ``dF/dx`` at every point."""
        return MicroResponse(
            value=solutions["drift"],
            derivatives={"x": solutions["jacobian"]},
            solutions=dict(solutions),
            standard_error=solutions["standard_error"],
        )
