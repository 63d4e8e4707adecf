"""Periodic cell problems on DOLFINx, and (for convenience) the unit cells they solve on.

Problems, all written on one skeleton (:mod:`~hmm_fem.cells.skeleton`: phase field, load
cases on one factorisation, energy average) with boundary conditions as objects
(:mod:`~hmm_fem.cells.conditions`: :class:`Periodic`, :class:`Kinematic`,
:class:`Traction`): :class:`ConductivityCell` gives the effective conductivity K*,
:class:`ElasticityCell` the effective stiffness C* (Voigt, see :mod:`hmm_fem.voigt`)
with periodic, kinematic or traction (minimal kinematic) boundary conditions,
:class:`HyperelasticCell` the finite-strain (Neo-Hookean) response P*(F) and its
consistent tangent (Newton on PETSc SNES, :mod:`~hmm_fem.cells.newton`),
:class:`PlasticCell` the small-strain J2 elastoplastic response (return mapping at the
micro quadrature points, consistent tangent; elastic phases and voids too),
:class:`PermeabilityCell` the permeability of the pore space
(periodic Stokes, Taylor-Hood) and :class:`AxialFlowCell` the axial permeability of a
fibre bed. :class:`ReducedBasis` (:mod:`~hmm_fem.cells.reduced_basis`) is a certified
reduced basis of the conductivity and elasticity cells with isotropic phases: K* or C* in
well under a millisecond, with a rigorous bound on its error. Time-dependent
(:mod:`~hmm_fem.cells.transient`): :class:`TransientConductivityCell`, the periodic cell
relaxing under a macro gradient (the parabolic HMM), and :class:`DiffusionBlock`, a
double-porosity block soaking up its boundary value.

The cell geometries (:func:`square`, :func:`load`, ...) live in :mod:`hmm_fem.geometry`,
the phase laws in :mod:`hmm_fem.materials`, and the micro models that put the cells to
work in a macro problem (:class:`ConductivityModel`, ...) in
:mod:`hmm_fem.micro.cell_models`; all are re-exported here, so ``cells.square`` and
``cells.ConductivityModel`` keep working.
"""

from ..geometry import (
    INCLUSION,
    MATRIX,
    TOUCHING_LIMITS,
    UnitCell,
    check_periodic,
    cubic,
    hexagonal,
    laminate,
    load,
    random,
    square,
)
from ..materials.laws import ArrheniusLaw, ConstantLaw, LinearLaw
from .conditions import Kinematic, Periodic, Traction
from .conductivity import ConductivityCell
from .elasticity import ElasticityCell
from .hyperelastic import HyperelasticCell
from .plastic import PlasticCell
from .reduced_basis import OutsideTrainingRangeWarning, ReducedBasis, ReducedEvaluation
from .solver import DEFAULT_SOLVER_OPTIONS, CellSolveError
from .stokes import AxialFlowCell, PermeabilityCell

_MICRO_MODELS = (
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "PermeabilityModel",
    "PlasticityModel",
)


# The transient cells load SciPy's dense and sparse linear algebra (0.3 s), which the
# steady cells (and `hmm-fem cell ...`) do not need: loaded on first use too.
_TRANSIENT = ("TransientConductivityCell", "DiffusionBlock", "block_cell")


def __getattr__(name):
    # The micro models import the cell problems of this package: load them on first use.
    if name in _MICRO_MODELS:
        from ..micro import cell_models

        return getattr(cell_models, name)
    if name in _TRANSIENT:
        from . import transient

        return getattr(transient, name)
    raise AttributeError(f"module 'hmm_fem.cells' has no attribute {name!r}")


__all__ = [
    "UnitCell",
    "MATRIX",
    "INCLUSION",
    "TOUCHING_LIMITS",
    "laminate",
    "square",
    "hexagonal",
    "cubic",
    "random",
    "load",
    "check_periodic",
    "ConductivityCell",
    "TransientConductivityCell",
    "DiffusionBlock",
    "block_cell",
    "ElasticityCell",
    "HyperelasticCell",
    "PlasticCell",
    "PermeabilityCell",
    "AxialFlowCell",
    "ReducedBasis",
    "ReducedEvaluation",
    "OutsideTrainingRangeWarning",
    "Periodic",
    "Kinematic",
    "Traction",
    "PermeabilityModel",
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "PlasticityModel",
    "ConstantLaw",
    "LinearLaw",
    "ArrheniusLaw",
    "CellSolveError",
    "DEFAULT_SOLVER_OPTIONS",
]
