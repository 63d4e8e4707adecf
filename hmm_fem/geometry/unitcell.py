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

    def phase_index_of_cells(self, num_cells: int) -> np.ndarray:
        """Index (into ``phases``) of the phase of each of the first ``num_cells`` cells.

        Raises:
            ValueError: if a cell carries no tag, or a tag that names no phase.
        """
        tag_of_cell = np.full(num_cells, -1, dtype=np.int64)
        tag_of_cell[self.cell_tags.indices] = self.cell_tags.values
        index_of_tag = {tag: i for i, tag in enumerate(self.phases.values())}
        lookup = np.full(max(max(index_of_tag), int(tag_of_cell.max())) + 2, -1, dtype=np.int32)
        for tag, i in index_of_tag.items():
            lookup[tag] = i
        phase = lookup[tag_of_cell]
        if np.any(phase < 0):
            bad = np.flatnonzero(phase < 0)
            untagged = sorted(set(tag_of_cell[bad].tolist()))
            raise ValueError(
                f"{len(bad)} cells of the '{self.geometry}' cell carry tags {untagged} that "
                f"name no phase (phases: {self.phases}); -1 means untagged. Tag every cell "
                "with a phase."
            )
        return phase

    def phase_values(self, values, what: str) -> list[tuple[str, int, object]]:
        """Per-phase values given by phase name or tag, as ``(name, tag, value)`` in phase order.

        Args:
            values: Mapping from phase name or tag to a value.
            what: What the values are (``"conductivity"``, ...), for the error messages.

        Raises:
            ValueError: if a key names no phase, or a phase has no value.
        """
        tag_to_name = {tag: name for name, tag in self.phases.items()}
        given: dict[str, object] = {}
        for key, value in dict(values).items():
            name = tag_to_name.get(key, key) if not isinstance(key, str) else key
            if name not in self.phases:
                raise ValueError(
                    f"{what} given for unknown phase {key!r}; the phases of this "
                    f"'{self.geometry}' cell are {self.phases} (name: tag)"
                )
            given[name] = value
        missing = [f"'{n}' (tag {t})" for n, t in self.phases.items() if n not in given]
        if missing:
            raise ValueError(
                f"no {what} given for phase {', '.join(missing)}; the phases of this "
                f"'{self.geometry}' cell are {self.phases} (name: tag)"
            )
        return [(name, tag, given[name]) for name, tag in self.phases.items()]

    @property
    def num_cells(self) -> int:
        """Number of mesh cells."""
        return self.mesh.topology.index_map(self.dim).size_local
