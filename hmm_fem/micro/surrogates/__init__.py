"""Surrogates of micro models with an error estimate, falling back to the true model.

* :class:`GaussianProcessSurrogate`: any deterministic micro model with a small state,
  interpolated in state space by a Gaussian process whose posterior variance (calibrated
  by leave-one-out cross-validation) bounds the error at a stated level; fallback solves
  become training data; ``.npz`` save and load with a fingerprint check.
* :class:`ReducedBasisSurrogate`: a conductivity or elasticity cell model answered by its
  certified reduced basis (:class:`~hmm_fem.cells.ReducedBasis`) where the rigorous bound
  is within the tolerance; fallbacks add their correctors to the basis (rank-independent).

Both forward the wrapped model's ``remedies`` (a failure policy's retries reach it) and
give their training as arrays (``training_arrays``, ``restore_training``), which
:mod:`hmm_fem.io.checkpoint` saves and restores with a run.

Both report in :attr:`statistics` how many states (and point evaluations) the surrogate
answered and how many fell back to the true model, and give every point's flag and error
indicator in the response's ``solutions`` (:data:`ANSWERED_KEY`, :data:`INDICATOR_KEY`).
"""

from .gaussian_process import (
    ANSWERED_KEY,
    INDICATOR_KEY,
    GaussianProcess,
    GaussianProcessSurrogate,
    SurrogateStatistics,
)

__all__ = [
    "ANSWERED_KEY",
    "INDICATOR_KEY",
    "GaussianProcess",
    "GaussianProcessSurrogate",
    "SurrogateStatistics",
    "ReducedBasisSurrogate",
]


def __getattr__(name):
    if name == "ReducedBasisSurrogate":
        from .reduced_basis import ReducedBasisSurrogate

        return ReducedBasisSurrogate
    raise AttributeError(f"module 'hmm_fem.micro.surrogates' has no attribute {name!r}")
