"""Kinetic micro models: a discrete-velocity BGK solver returning stress and heat flux.

* :class:`BGKSolver` (:mod:`~hmm_fem.micro.kinetic.bgk`): the steady spatially homogeneous
  BGK equation under an imposed (traceless) velocity gradient, kept to all orders as a force
  in velocity space (uniform shear flow with a Gaussian thermostat), and a temperature
  gradient through the Chapman–Enskog source; Gauss–Hermite velocity grid, sparse NumPy/SciPy
  operators. Returns the pressure tensor and the heat flux.
* :mod:`~hmm_fem.micro.kinetic.exact`: the references: BGK Chapman–Enskog viscosity and
  conductivity, the exact non-Newtonian thermostatted uniform shear flow, and the closed
  moment equations of the micro problem for any traceless velocity gradient.
"""

from .bgk import BGKSolver, BGKState, HermiteVelocityGrid, VelocityGridTooCoarse
from .exact import (
    chapman_enskog_conductivity,
    chapman_enskog_viscosity,
    moment_solution,
    usf_exact,
)

__all__ = [
    "BGKSolver",
    "BGKState",
    "HermiteVelocityGrid",
    "VelocityGridTooCoarse",
    "chapman_enskog_conductivity",
    "chapman_enskog_viscosity",
    "moment_solution",
    "usf_exact",
]
