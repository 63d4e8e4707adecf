"""Micro models: the batch protocol every micro model implements, and what wraps one.

The protocol (:mod:`~hmm_fem.micro.protocol`), the history store
(:mod:`~hmm_fem.micro.history`), the ensembles of noisy models
(:mod:`~hmm_fem.micro.noise`) and the tangents without an analytic form
(:mod:`~hmm_fem.micro.tangents`) are free of finite elements. The micro models built on
the periodic cells (:mod:`~hmm_fem.micro.cell_models`) and the cell bank
(:mod:`~hmm_fem.micro.bank`) load DOLFINx on first use. The surrogates
(:mod:`~hmm_fem.micro.surrogates`: a Gaussian process in state space, free of finite
elements, and the certified reduced basis of a conductivity cell, each falling back to the
true model above a tolerance) are imported on first use too.
"""

from .history import HistoryStore
from .material_point import MaterialPointModel
from .noise import EnsembleAverage
from .pointwise import PointwiseWrapper
from .protocol import HISTORY_KEY, MicroModel, MicroResponse, MicroSolveError, SolveContext
from .tangents import FiniteDifferenceTangent, SecantTangent

__all__ = [
    "MicroModel",
    "MicroResponse",
    "MicroSolveError",
    "SolveContext",
    "HISTORY_KEY",
    "HistoryStore",
    "EnsembleAverage",
    "FiniteDifferenceTangent",
    "SecantTangent",
    "PointwiseWrapper",
    "MaterialPointModel",
    "CellBank",
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "PermeabilityModel",
    "PlasticityModel",
    "GaussianProcessSurrogate",
    "ReducedBasisSurrogate",
    "SurrogateStatistics",
]

_LAZY = {
    "CellBank": "bank",
    "ConductivityModel": "cell_models",
    "ElasticityModel": "cell_models",
    "HyperelasticModel": "cell_models",
    "PermeabilityModel": "cell_models",
    "PlasticityModel": "cell_models",
    "GaussianProcessSurrogate": "surrogates",
    "ReducedBasisSurrogate": "surrogates",
    "SurrogateStatistics": "surrogates",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hmm_fem.micro.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hmm_fem.micro' has no attribute {name!r}")
