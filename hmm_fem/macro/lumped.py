"""Explicit lumped-P1 schemes with one micro patch per simplex: what they share.

:class:`PatchMesh` holds what a macro problem with one patch at the midpoint of every cell
needs from DOLFINx: the P1 space and its lumped mass, the midpoints and the input cell
numbering of the owned cells (the patches' ids, which do not depend on the partition), the
cells' measures, the stability bound of the explicit diffusion step, and the assembly of a
right-hand side into nodal rates. Used by
:class:`~hmm_fem.macro.reaction_diffusion.PatchReactionDiffusion` and
:class:`~hmm_fem.macro.surface_reaction.SurfaceReactionDiffusion`.
"""

from __future__ import annotations

import numpy as np
import ufl
from dolfinx import fem
from dolfinx.la import InsertMode
from mpi4py import MPI

__all__ = ["PatchMesh", "SIMPLEX_MIDPOINTS"]

# The reference midpoints of the simplices (P1 gradients are constant on them).
SIMPLEX_MIDPOINTS = {
    "interval": [[0.5]],
    "triangle": [[1 / 3, 1 / 3]],
    "tetrahedron": [[0.25, 0.25, 0.25]],
}


class PatchMesh:
    """P1 space, lumped mass and cell midpoints of a flat simplex mesh (see module).

    Args:
        mesh: The macro mesh (intervals, triangles or tetrahedra; flat).
        why_simplices: Why the caller needs simplices (for the error message).

    Attributes:
        V: The P1 space.
        dim: Topological dimension.
        num_cells: Owned cells.
        cells: ``arange(num_cells)``.
        patch_ids: Input (original) index of every owned cell.
        patch_centres: ``(num_cells, dim)`` midpoints.
        midpoint: The reference midpoint (for ``fem.Expression``).
        lumped: The lumped mass vector (owned and ghost entries).
        owned: Owned P1 dofs.
        domain_measure, smallest_cell: Global measure of the domain and of its smallest
            cell.

    Raises:
        ValueError: For a mesh that is not flat, not of simplices, or without its input
            cell numbering.
    """

    def __init__(self, mesh, why_simplices: str = ""):
        tdim = mesh.topology.dim
        if mesh.geometry.dim != tdim:
            raise ValueError(
                f"the mesh must be flat: geometric dimension {mesh.geometry.dim} != "
                f"topological dimension {tdim}"
            )
        cell_name = mesh.topology.cell_name()
        if cell_name not in SIMPLEX_MIDPOINTS:
            raise ValueError(
                f"unsupported cell type {cell_name!r}: use intervals, triangles or "
                f"tetrahedra{why_simplices}"
            )
        self.mesh = mesh
        self.comm = mesh.comm
        self.dim = tdim
        self.V = fem.functionspace(mesh, ("Lagrange", 1))
        index_map = mesh.topology.index_map(tdim)
        self.num_cells = index_map.size_local
        self.cells = np.arange(self.num_cells, dtype=np.int32)
        original = np.asarray(mesh.topology.original_cell_index, dtype=np.int64)
        if original.size < self.num_cells:
            raise ValueError(
                "the mesh does not know its input cell numbering (a submesh or a refined "
                "mesh?): the patches' random streams would depend on the number of ranks"
            )
        self.patch_ids = original[: self.num_cells].copy()
        self.midpoint = np.asarray(SIMPLEX_MIDPOINTS[cell_name], dtype=float)
        self.patch_centres = (
            fem.Expression(ufl.SpatialCoordinate(mesh), self.midpoint)
            .eval(mesh, self.cells)
            .reshape(self.num_cells, tdim)
        )
        v = ufl.TestFunction(self.V)
        self.lumped = fem.assemble_vector(fem.form(v * ufl.dx))
        self.lumped.scatter_reverse(InsertMode.add)
        self.lumped.scatter_forward()
        self.owned = self.V.dofmap.index_map.size_local
        self._b = fem.Function(self.V)
        Q = fem.functionspace(mesh, ("DG", 0))
        volumes = fem.assemble_vector(fem.form(ufl.TestFunction(Q) * ufl.dx)).array
        self.domain_measure = self.comm.allreduce(float(volumes[: self.num_cells].sum()))
        self.smallest_cell = self.comm.allreduce(
            float(volumes[: self.num_cells].min()), op=MPI.MIN
        )

    def stability_bound(self, diffusivity: float) -> float:
        """``2 / lambda_max(M_L^-1 A)`` bounded by Gershgorin (a safe, slightly small step)."""
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        A = fem.assemble_matrix(
            fem.form(diffusivity * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
        )
        A.scatter_reverse()
        matrix = A.to_scipy()
        rows = np.asarray(abs(matrix).sum(axis=1)).reshape(-1)[: self.owned]
        local = float((rows / self.lumped.array[: self.owned]).max()) if self.owned else 0.0
        return 2.0 / self.comm.allreduce(local, op=MPI.MAX)

    def assemble(self, form, out: np.ndarray | None = None) -> np.ndarray:
        """The owned entries of the assembled vector of ``form`` (added into ``out``)."""
        b = self._b.x
        b.array[:] = 0.0
        fem.assemble_vector(b.array, form)
        b.scatter_reverse(InsertMode.add)
        values = b.array[: self.owned]
        return values.copy() if out is None else np.add(out, values, out=out)

    def integral(self, u) -> float:
        """``int u dx`` of a P1 function with the lumped mass (collective)."""
        local = float(self.lumped.array[: self.owned] @ u.x.array[: self.owned])
        return self.comm.allreduce(local)
