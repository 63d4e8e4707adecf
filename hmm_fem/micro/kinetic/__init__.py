"""Kinetic micro models: a discrete-velocity BGK solver returning stress and heat flux.

* :class:`BGKSolver` (:mod:`~hmm_fem.micro.kinetic.bgk`): the steady spatially homogeneous
  BGK equation under an imposed (traceless) velocity gradient, kept to all orders as a force
  in velocity space (uniform shear flow with a Gaussian thermostat), and a temperature
  gradient through the Chapman–Enskog source; Gauss–Hermite velocity grid, sparse NumPy/SciPy
  operators. Returns the pressure tensor and the heat flux.
* :class:`BGKClosure` (:mod:`~hmm_fem.micro.kinetic.model`): the solver behind the micro
  seam: shear stress and heat flux of a planar flow from the local gradients, with ``tau``
  from a viscosity law (for :class:`hmm_fem.macro.ChannelFlow`).
* :class:`LinearizedBGKChannel` (:mod:`~hmm_fem.micro.kinetic.channel`): the full
  discrete-velocity BGK solution of planar Couette and Poiseuille flow between diffuse
  walls, the kinetic reference of the channel (slip, Knudsen layers).
* :mod:`~hmm_fem.micro.kinetic.exact`: the references: BGK Chapman–Enskog viscosity and
  conductivity, the exact non-Newtonian thermostatted uniform shear flow, and the closed
  moment equations of the micro problem for any traceless velocity gradient.
"""

from .bgk import BGKSolver, BGKState, HermiteVelocityGrid, VelocityGridTooCoarse
from .channel import ChannelSolution, LinearizedBGKChannel, half_range_velocities
from .exact import (
    chapman_enskog_conductivity,
    chapman_enskog_viscosity,
    couette_heating_exact,
    moment_solution,
    usf_exact,
    usf_poiseuille_velocity,
)
from .model import BGKClosure, knudsen_number, rarefaction_parameter

__all__ = [
    "BGKClosure",
    "ChannelSolution",
    "LinearizedBGKChannel",
    "couette_heating_exact",
    "half_range_velocities",
    "knudsen_number",
    "rarefaction_parameter",
    "usf_poiseuille_velocity",
    "BGKSolver",
    "BGKState",
    "HermiteVelocityGrid",
    "VelocityGridTooCoarse",
    "chapman_enskog_conductivity",
    "chapman_enskog_viscosity",
    "moment_solution",
    "usf_exact",
]
