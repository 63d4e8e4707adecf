"""Coupling of micro models to macro UFL problems: operators, dispatch, cache, Newton."""

from .adaptivity import (
    ActivationStatistics,
    ActivationStrategy,
    AdaptiveActivation,
    SimilarityActivation,
)
from .dispatch import Dispatcher, MacroClock, MicroStatistics
from .failure import FailurePolicy, MicroFailureError, MicroTimeoutError
from .operator import MicroCoupling, coupling_of, effective_flux, micro_operator
from .pool import MicroWorkers
from .problem import (
    DEFAULT_NOISE_FACTOR,
    DEFAULT_SNES_OPTIONS,
    MacroSolveError,
    NonlinearProblem,
    SolveReport,
)

__all__ = [
    "ActivationStrategy",
    "ActivationStatistics",
    "AdaptiveActivation",
    "SimilarityActivation",
    "Dispatcher",
    "MacroClock",
    "MicroStatistics",
    "MicroWorkers",
    "FailurePolicy",
    "MicroFailureError",
    "MicroTimeoutError",
    "MicroCoupling",
    "coupling_of",
    "micro_operator",
    "effective_flux",
    "NonlinearProblem",
    "SolveReport",
    "MacroSolveError",
    "DEFAULT_SNES_OPTIONS",
    "DEFAULT_NOISE_FACTOR",
]
