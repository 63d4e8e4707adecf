"""Ready-made macro problems written in UFL with micro-model constitutive laws."""

from .channel import BGK_VISCOUS_SLIP, ChannelFlow
from .double_porosity import DoublePorosityHeat
from .elasticity import DEFAULT_MAX_CUTS, LoadStep, StaticElasticity, SteppedSolveReport
from .elastodynamics import LinearElastodynamics
from .electrothermal import ElectroThermal, TemperatureGrid
from .fine_scale import FineScaleHeat
from .heat import SteadyDarcy, SteadyHeat, TransientHeat
from .reaction_diffusion import PatchReactionDiffusion
from .surface_reaction import SurfaceReactionDiffusion

__all__ = [
    "ChannelFlow",
    "BGK_VISCOUS_SLIP",
    "SteadyHeat",
    "TransientHeat",
    "DoublePorosityHeat",
    "FineScaleHeat",
    "SteadyDarcy",
    "StaticElasticity",
    "SteppedSolveReport",
    "LoadStep",
    "DEFAULT_MAX_CUTS",
    "LinearElastodynamics",
    "ElectroThermal",
    "TemperatureGrid",
    "PatchReactionDiffusion",
    "SurfaceReactionDiffusion",
]
