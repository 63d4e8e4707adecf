"""Lattice kinetic Monte Carlo (rejection-free), e.g. the ZGB model of CO oxidation.

* :class:`LatticeModel` (:mod:`~hmm_fem.micro.kmc.model`): species and events, declared as
  reaction strings with rates (site events ``"A -> B"``, pair events ``"A B -> C D"``,
  instantaneous pair events with rate ``inf``); :func:`zgb` builds the Ziff-Gulari-Barshad
  model of CO oxidation; :meth:`LatticeModel.mean_field_rhs` its mean-field rate equations.
* :class:`KMC` (:mod:`~hmm_fem.micro.kmc.engine`): the compiled (numba) n-fold way on many
  independent lattices at once (replicas or patches), 1D or 2D, periodic, reservoir or
  closed boundaries; lift from coverages, restriction to coverages, per-lattice rates,
  clocks, random streams and event counters.
* :mod:`~hmm_fem.micro.kmc.coarse`: the KMC as the micro simulator of the equation-free
  tools (a :class:`~hmm_fem.equation_free.CoarseTimeStepper` on coverages) and
  brute-force steady-state sweeps.
* :mod:`~hmm_fem.micro.kmc.patches`: persistent KMC patches with reservoir frames that
  measure local reaction rates and hop fluxes for a macro coverage problem
  (:class:`~hmm_fem.macro.SurfaceReactionDiffusion`), their mean-field stand-in, and the
  full-lattice strip reference (:func:`strip_fronts`).
* :mod:`~hmm_fem.micro.kmc.ion_hopping`: vacancy-mediated ion hopping under a bias (its own
  compiled kernel), the ionic conductivity from drift, collective and tracer displacements,
  and :class:`IonConductivityModel`, the micro model ``sigma(T)`` of a solid electrolyte.

The package needs numba (Debian's ``python3-numba``); it is imported on first use.
"""

from .model import Event, LatticeModel, zgb

__all__ = [
    "Event",
    "LatticeModel",
    "zgb",
    "KMC",
    "rank_block",
    "lattice_streams",
    "coverage_stepper",
    "steady_coverages",
    "mean_field_steady_state",
    "coverage_stepper_family",
    "absorbing_multiplier",
    "zgb_mean_field_states",
    "zgb_mean_field_fold",
    "mean_field_multipliers",
    "KMCPatches",
    "MeanFieldPatches",
    "PatchRates",
    "front_position",
    "strip_fronts",
    "with_hopping",
    "IonHopping",
    "HoppingMaterial",
    "IonConductivityModel",
    "ion_conductivity",
    "measure_transport",
    "arrhenius_fit",
]

_LAZY = {
    "KMC": "engine",
    "rank_block": "engine",
    "lattice_streams": "engine",
    "coverage_stepper": "coarse",
    "steady_coverages": "coarse",
    "mean_field_steady_state": "coarse",
    "coverage_stepper_family": "coarse",
    "absorbing_multiplier": "coarse",
    "zgb_mean_field_states": "coarse",
    "zgb_mean_field_fold": "coarse",
    "mean_field_multipliers": "coarse",
    "KMCPatches": "patches",
    "MeanFieldPatches": "patches",
    "PatchRates": "patches",
    "front_position": "patches",
    "strip_fronts": "patches",
    "with_hopping": "patches",
    **dict.fromkeys(
        ["IonHopping", "HoppingMaterial", "IonConductivityModel", "ion_conductivity",
         "measure_transport", "arrhenius_fit"],
        "ion_hopping",
    ),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hmm_fem.micro.kmc.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hmm_fem.micro.kmc' has no attribute {name!r}")
