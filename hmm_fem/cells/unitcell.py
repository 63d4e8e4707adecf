"""The `UnitCell` record shared by every cell geometry and every cell problem."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh

__all__ = ["UnitCell", "MATRIX", "INCLUSION"]

#: Physical tag of the matrix (host) phase in every generated cell.
MATRIX = 1
#: Physical tag of the inclusion phase in every generated cell.
INCLUSION = 2


@dataclass
class UnitCell:
    """A periodic unit cell: a mesh on ``MPI.COMM_SELF`` with its phases tagged.

    The cell is the box ``[0, L_0] x [0, L_1] (x [0, L_2])`` with ``L = lengths``.
    Opposite faces carry matching nodes, so a periodic constraint can be built
    geometrically.

    Attributes:
        mesh: The DOLFINx mesh, always on ``MPI.COMM_SELF``.
        cell_tags: Phase tag of every mesh cell (``MATRIX``, ``INCLUSION``, or the
            tags of a user mesh).
        facet_tags: Boundary facets tagged by face: ``1, 2`` for ``x = 0, L_0``,
            ``3, 4`` for ``y``, ``5, 6`` for ``z``. ``None`` if not available.
        phases: Phase name to tag, for example ``{"matrix": 1, "inclusion": 2}``.
        lengths: Side lengths of the periodic box.
        geometry: Name of the generator (``"square"``, ``"msh"``, ...).
        target_volume_fraction: The inclusion volume fraction that was asked for,
            or ``None`` for a loaded mesh.
        description: Free-form parameters of the generator (radius, seed, ...).
    """

    mesh: dmesh.Mesh
    cell_tags: dmesh.MeshTags
    facet_tags: dmesh.MeshTags | None
    phases: dict[str, int]
    lengths: tuple[float, ...]
    geometry: str
    target_volume_fraction: float | None = None
    description: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Geometric dimension of the cell (2 or 3)."""
        return self.mesh.geometry.dim

    @property
    def volume(self) -> float:
        """Volume (area in 2D) of the periodic box."""
        return float(np.prod(self.lengths))

    def phase_volumes(self) -> dict[str, float]:
        """Meshed volume of every phase, by name, computed by exact quadrature."""
        dx = ufl.Measure("dx", domain=self.mesh, subdomain_data=self.cell_tags)
        one = fem.Constant(self.mesh, self.mesh.geometry.x.dtype.type(1.0))
        return {
            name: float(fem.assemble_scalar(fem.form(one * dx(tag))))
            for name, tag in self.phases.items()
        }

    def phase_volume_fractions(self) -> dict[str, float]:
        """Meshed volume fraction of every phase, by name (they sum to 1)."""
        return {name: v / self.volume for name, v in self.phase_volumes().items()}

    @property
    def volume_fraction(self) -> float:
        """Meshed volume fraction of the inclusion phase (all non-matrix phases)."""
        fractions = self.phase_volume_fractions()
        return float(sum(v for name, v in fractions.items() if name != "matrix"))

    @property
    def num_cells(self) -> int:
        """Number of mesh cells."""
        return self.mesh.topology.index_map(self.dim).size_local
