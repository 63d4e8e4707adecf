"""Material data and laws, free of finite elements.

:mod:`~hmm_fem.materials.laws`: temperature laws of phase properties with exact
derivatives; :mod:`~hmm_fem.materials.phases`: phase properties as users give them,
validated; :mod:`~hmm_fem.materials.validation`: the one symmetric-positive-definite rule
and the (E, nu) check; :mod:`~hmm_fem.materials.hyperelastic`: the Neo-Hookean law at a
point (NumPy reference); :mod:`~hmm_fem.materials.plasticity`: small-strain J2 plasticity
(radial return and algorithmic tangent, vectorised over material points).
"""

from .hyperelastic import neo_hookean
from .laws import ArrheniusLaw, ConstantLaw, LinearLaw, as_law
from .phases import as_conductivity, as_lame, as_stiffness
from .plasticity import J2Plasticity, J2Response, StrainPathResult, integrate_strain_path
from .validation import require_spd, require_young_poisson, spd_defect

__all__ = [
    "ConstantLaw",
    "LinearLaw",
    "ArrheniusLaw",
    "as_law",
    "as_conductivity",
    "as_stiffness",
    "as_lame",
    "neo_hookean",
    "J2Plasticity",
    "J2Response",
    "StrainPathResult",
    "integrate_strain_path",
    "require_spd",
    "require_young_poisson",
    "spd_defect",
]
