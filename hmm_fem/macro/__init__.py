"""Ready-made macro problems written in UFL with micro-model constitutive laws."""

from .heat import SteadyHeat, TransientHeat

__all__ = ["SteadyHeat", "TransientHeat"]
