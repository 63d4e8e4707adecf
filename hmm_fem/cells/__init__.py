"""Periodic unit cells (geometry) and the cell problems solved on them.

Geometry: :func:`laminate`, :func:`square`, :func:`hexagonal`, :func:`cubic`,
:func:`random` build gmsh meshes in process; :func:`load` reads a user ``.msh``.
Problems: :class:`ConductivityCell` gives the effective conductivity K*,
:class:`ElasticityCell` the effective stiffness C* (Voigt, see :mod:`hmm_fem.voigt`)
with periodic, kinematic or traction (minimal kinematic) boundary conditions,
:class:`HyperelasticCell` the finite-strain (Neo-Hookean) response P*(F) and its
consistent tangent, :class:`PermeabilityCell` the permeability of the pore space
(periodic Stokes, Taylor-Hood) and :class:`AxialFlowCell` the axial permeability of a
fibre bed.
"""

from .conductivity import ConductivityCell
from .elastic_models import ElasticityModel, HyperelasticModel
from .elasticity import ElasticityCell
from .flow_models import PermeabilityModel
from .geometry import TOUCHING_LIMITS, cubic, hexagonal, laminate, random, square
from .hyperelastic import HyperelasticCell
from .laws import ArrheniusLaw, ConstantLaw, LinearLaw
from .models import ConductivityModel
from .msh import check_periodic, load
from .periodic import DEFAULT_SOLVER_OPTIONS, CellSolveError
from .stokes import AxialFlowCell, PermeabilityCell
from .unitcell import INCLUSION, MATRIX, UnitCell

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
    "ElasticityCell",
    "HyperelasticCell",
    "PermeabilityCell",
    "AxialFlowCell",
    "PermeabilityModel",
    "ConductivityModel",
    "ElasticityModel",
    "HyperelasticModel",
    "ConstantLaw",
    "LinearLaw",
    "ArrheniusLaw",
    "CellSolveError",
    "DEFAULT_SOLVER_OPTIONS",
]
