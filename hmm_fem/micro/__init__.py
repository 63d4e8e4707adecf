"""Micro models: the batch protocol every micro model implements, and what wraps one.

The protocol (:mod:`~hmm_fem.micro.protocol`) is free of finite elements. The micro
models built on the periodic cells (:mod:`~hmm_fem.micro.cell_models`) and the cell bank
(:mod:`~hmm_fem.micro.bank`) load DOLFINx on first use.
"""

from .protocol import MicroModel, MicroResponse, MicroSolveError

__all__ = [
    "MicroModel",
    "MicroResponse",
    "MicroSolveError",
    "CellBank",
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "PermeabilityModel",
]

_LAZY = {
    "CellBank": "bank",
    "ConductivityModel": "cell_models",
    "ElasticityModel": "cell_models",
    "HyperelasticModel": "cell_models",
    "PermeabilityModel": "cell_models",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hmm_fem.micro.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hmm_fem.micro' has no attribute {name!r}")
