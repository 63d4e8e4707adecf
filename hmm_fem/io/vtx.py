"""VTX (ADIOS2 ``.bp``) output for ParaView, and cell-wise fields from per-cell values."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from dolfinx import fem, io

__all__ = ["write_vtx", "dg0_function"]


def write_vtx(path: str | os.PathLike, functions: list[fem.Function], time: float = 0.0) -> Path:
    """Write functions that share one finite element space to a VTX ``.bp`` folder.

    ParaView opens the folder with its ADIOS2 VTX reader (File > Open, pick the
    ``.bp`` directory). Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comm = functions[0].function_space.mesh.comm
    with io.VTXWriter(comm, path, functions, engine="BP4") as writer:
        writer.write(time)
    return path


def dg0_function(mesh, values: np.ndarray, name: str) -> fem.Function:
    """A DG0 function (scalar, vector or tensor) from owned-cell values.

    Args:
        mesh: The mesh.
        values: ``(num_owned_cells, *shape)`` values, one per owned cell.
        name: Name of the function (the array name in ParaView).

    Returns:
        The DG0 function, ghost values updated.
    """
    shape = values.shape[1:]
    space = fem.functionspace(mesh, ("DG", 0, shape) if shape else ("DG", 0))
    function = fem.Function(space, name=name)
    size = int(np.prod(shape)) if shape else 1
    num_owned = values.shape[0]
    dofs = space.dofmap.list[:num_owned, 0]
    function.x.array.reshape(-1, size)[dofs] = values.reshape(num_owned, size)
    function.x.scatter_forward()
    return function
