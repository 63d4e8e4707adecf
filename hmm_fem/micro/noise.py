"""Noisy micro models: ensembles of independent replicas with a target standard error.

A stochastic micro model (:attr:`~hmm_fem.micro.protocol.MicroModel.stochastic`) draws its
random numbers from ``context.rng()``, a stream seeded from (model seed, global point id,
macro step, Newton iteration): the numbers do not depend on the number of ranks.
:class:`EnsembleAverage` runs independent replicas of such a model at a point, replica
``k`` on the stream ``(..., k)``, and averages their responses and tangents until the
standard error of the response meets a target.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .pointwise import TANGENT_PREFIX, PointwiseWrapper
from .protocol import MicroModel, SolveContext

__all__ = ["EnsembleAverage"]


class EnsembleAverage(PointwiseWrapper):
    """The average of independent replicas of a stochastic micro model.

    At every point, replicas are run in batches of ``batch``; after each batch (and at
    least ``min_replicas``) the standard error of the mean response, ``s / sqrt(k)`` with
    ``s`` the sample standard deviation of ``k`` replicas, is compared with the target:
    ``target_standard_error`` (absolute) or ``target_standard_error * max |mean|``
    (``relative=True``), for every component. The average stops at ``max_replicas``;
    if the target is not met then, the solution entry ``target_met`` is 0 and a warning
    is issued (once per model).

    The response is the mean, its standard error is :attr:`MicroResponse.standard_error`,
    the tangent is the mean of the replicas' tangents, and the solution entries are the
    means of the wrapped model's, plus ``replicas`` (how many were run).

    Example:
        >>> model = EnsembleAverage(noisy_patch, target_standard_error=1e-3, relative=True)

    Args:
        model: A stochastic micro model without history.
        target_standard_error: The target (positive).
        relative: Whether the target is relative to the largest mean component.
        min_replicas: Replicas run before the first check (at least 2).
        max_replicas: Most replicas run at one point.
        batch: Replicas run between two checks.

    Raises:
        ValueError: If the model is not stochastic, has a history, or a count is invalid.
    """

    def __init__(
        self,
        model: MicroModel,
        *,
        target_standard_error: float,
        relative: bool = False,
        min_replicas: int = 8,
        max_replicas: int = 1024,
        batch: int = 8,
    ):
        if not model.stochastic:
            raise ValueError(
                f"{type(model).__name__} is not stochastic: an ensemble of it repeats one answer"
            )
        if model.history:
            raise ValueError(
                f"{type(model).__name__} carries a history: the replicas would each update it "
                "differently; average inside the model instead"
            )
        if not (np.isfinite(target_standard_error) and target_standard_error > 0):
            raise ValueError(f"target_standard_error must be positive, got {target_standard_error}")
        if not 2 <= int(min_replicas) <= int(max_replicas) or int(batch) < 1:
            raise ValueError(
                "need 2 <= min_replicas <= max_replicas and batch >= 1, got "
                f"{min_replicas}, {max_replicas}, {batch}"
            )
        super().__init__(model)
        self.target_standard_error = float(target_standard_error)
        self.relative = bool(relative)
        self.min_replicas = int(min_replicas)
        self.max_replicas = int(max_replicas)
        self.batch = int(batch)
        self._warned = False

    def _target(self, mean: np.ndarray) -> float:
        if self.relative:
            return self.target_standard_error * float(np.abs(mean).max(initial=0.0))
        return self.target_standard_error

    def solve(self, state: np.ndarray, context: SolveContext) -> dict[str, np.ndarray]:
        """Replicas until the target standard error is met (or ``max_replicas``)."""
        inner, inputs, parameters = self.unpack(state)
        deadline = self.deadline(context)  # context.timeout: for all replicas together
        count = 0
        sums: dict[str, np.ndarray] = {}
        mean = spread = None  # Welford: running mean and sum of squared deviations
        target_met = False
        while count < self.max_replicas:
            for _ in range(min(self.batch, self.max_replicas - count)):
                replica = dataclasses.replace(
                    self.within(context, deadline), seed=(*context.seed, count)
                )
                response, solution, _ = self.respond_at(inputs, parameters, replica, inner)
                value = np.asarray(response.value[0], dtype=np.float64)
                entries = {TANGENT_PREFIX + k: v[0] for k, v in response.derivatives.items()}
                entries.update(solution)
                count += 1
                if mean is None:
                    mean, spread = value.copy(), np.zeros_like(value)
                    sums = {k: np.array(v, dtype=np.float64) for k, v in entries.items()}
                    continue
                shift = value - mean
                mean += shift / count
                spread += shift * (value - mean)
                for k, v in entries.items():
                    sums[k] += v
            if count < self.min_replicas:
                continue
            error = np.sqrt(spread / (count - 1) / count)
            if np.all(error <= self._target(mean)):
                target_met = True
                break
        error = np.sqrt(spread / (count - 1) / count)
        if not target_met and not self._warned:
            self._warned = True
            warnings.warn(
                f"EnsembleAverage of {type(self.model).__name__}: {count} replicas (max_replicas) "
                f"reached a standard error of {error.max():.3g}, above the target "
                f"{self._target(mean):.3g} (first at global point {context.point}); raise "
                "max_replicas or the target",
                RuntimeWarning,
                stacklevel=2,
            )
        out = {k: v / count for k, v in sums.items()}
        out["value"] = mean
        out["standard_error"] = error
        out["replicas"] = np.array(float(count))
        out["target_met"] = np.array(float(target_met))
        return out
