"""hmm-fem: heterogeneous multiscale (FE², HMM) computations on FEniCSx.

The package answers, at the quadrature points of a macroscopic DOLFINx problem,
with effective properties computed by micro models (periodic cell problems on
``MPI.COMM_SELF``).
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "cells",
    "coupling",
    "effective_flux",
    "io",
    "macro",
    "micro",
    "micro_operator",
    "references",
    "voigt",
    "waves",
]


def __getattr__(name):
    # Subpackages load DOLFINx; import them on first use so `hmm-fem --help` stays fast.
    import importlib

    if name in ("cells", "coupling", "io", "macro", "micro", "references", "voigt", "waves"):
        return importlib.import_module(f"hmm_fem.{name}")
    if name in ("effective_flux", "micro_operator"):
        return getattr(importlib.import_module("hmm_fem.coupling"), name)
    raise AttributeError(f"module 'hmm_fem' has no attribute {name!r}")
