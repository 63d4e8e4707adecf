"""Periodic unit cells: gmsh generators, ``.msh`` loading and the periodicity check.

Generators: :func:`laminate`, :func:`square`, :func:`hexagonal`, :func:`cubic`,
:func:`random` build a periodic gmsh mesh in process; :func:`load` reads a user
``.msh`` and checks that it is periodic (:func:`check_periodic`). Each returns a
:class:`UnitCell` on ``MPI.COMM_SELF`` with its phases tagged. The tolerance and maps
of periodicity live in :mod:`hmm_fem.geometry.periodicity`. :func:`cached_cell` runs a
generator through a disk cache (the same mesh again without gmsh;
:mod:`hmm_fem.geometry.cache`). The disc cells take ``order=2`` for curved
(isoparametric P2) cells.
"""

from .cache import cached_cell
from .generators import (
    DEFAULT_MESH_SIZE,
    TOUCHING_LIMITS,
    cubic,
    hexagonal,
    laminate,
    random,
    square,
)
from .msh import FACE_TAGS, box_facet_tags, check_periodic, load
from .periodicity import PERIODICITY_TOLERANCE, periodic_maps
from .unitcell import INCLUSION, MATRIX, UnitCell

__all__ = [
    "UnitCell",
    "MATRIX",
    "INCLUSION",
    "TOUCHING_LIMITS",
    "DEFAULT_MESH_SIZE",
    "FACE_TAGS",
    "PERIODICITY_TOLERANCE",
    "laminate",
    "square",
    "hexagonal",
    "cubic",
    "random",
    "cached_cell",
    "load",
    "check_periodic",
    "box_facet_tags",
    "periodic_maps",
]
