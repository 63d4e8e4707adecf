"""Micro models built on the periodic cell problems of :mod:`hmm_fem.cells`.

Each adapts a cell problem to the protocol of :mod:`hmm_fem.micro.protocol`: heat flux
from a conductivity cell, stress from a linear, hyperelastic or elastoplastic cell, Darcy
flux from a Stokes pore cell. A microstructure that varies over the macro domain is
served by a :class:`~hmm_fem.micro.bank.CellBank`.
"""

from .conductivity import ConductivityModel
from .elasticity import ElasticityModel, HyperelasticModel
from .permeability import PermeabilityModel
from .plasticity import PlasticityModel
from .transient import BlockExchangeModel, MacroAxes, TransientConductivityModel

__all__ = [
    "BlockExchangeModel",
    "MacroAxes",
    "TransientConductivityModel",
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "PermeabilityModel",
    "PlasticityModel",
]
