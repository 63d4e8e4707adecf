"""hmm-fem: heterogeneous multiscale (FE², HMM) computations on FEniCSx.

The package answers, at the quadrature points of a macroscopic DOLFINx problem,
with effective properties computed by micro models (periodic cell problems on
``MPI.COMM_SELF``, or any simulator that implements the micro-model protocol).

Layers, bottom to top: :mod:`~hmm_fem.geometry` (unit cells), :mod:`~hmm_fem.materials`
(laws and checks), :mod:`~hmm_fem.cells` (cell problems), :mod:`~hmm_fem.micro` (the
protocol and what wraps a micro model), :mod:`~hmm_fem.coupling` (micro models in UFL
forms, dispatch, Newton), :mod:`~hmm_fem.macro` (ready-made macro problems),
:mod:`~hmm_fem.io` (files and pictures).
"""

__version__ = "0.2.0.dev0"

__all__ = [
    "__version__",
    "cells",
    "coupling",
    "effective_flux",
    "equation_free",
    "geometry",
    "io",
    "macro",
    "materials",
    "micro",
    "micro_operator",
    "references",
    "voigt",
    "waves",
]


_SUBPACKAGES = (
    "cells",
    "coupling",
    "equation_free",
    "geometry",
    "io",
    "macro",
    "materials",
    "micro",
    "references",
    "voigt",
    "waves",
)


def __getattr__(name):
    # Subpackages load DOLFINx; import them on first use so `hmm-fem --help` stays fast.
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"hmm_fem.{name}")
    if name in ("effective_flux", "micro_operator"):
        return getattr(importlib.import_module("hmm_fem.coupling"), name)
    raise AttributeError(f"module 'hmm_fem' has no attribute {name!r}")
