"""Micro models: the batch protocol every micro model implements."""

from .protocol import MicroModel, MicroResponse, MicroSolveError

__all__ = ["MicroModel", "MicroResponse", "MicroSolveError"]
