"""Output: VTX files for ParaView, pictures, whole-solution writers.

:mod:`~hmm_fem.io.vtx` writes functions to VTX ``.bp`` folders (ParaView's ADIOS2 VTX
reader) and makes cell-wise fields; :mod:`~hmm_fem.io.fields` writes a solved cell or a
macro solution; :mod:`~hmm_fem.io.plots` renders PNG pictures with pyvista;
:mod:`~hmm_fem.io.checkpoint` saves and restores whole runs (adios4dolfinx for the macro
fields, ``.npz`` + a JSON manifest for the micro side).
"""

from .checkpoint import (
    Checkpoint,
    Checkpointer,
    latest_checkpoint,
    read_checkpoint_mesh,
    restore,
    save_checkpoint,
)
from .fields import write_conductivity_cell, write_heat_fields
from .plots import plot_cell_fields, plot_macro_fields
from .vtx import dg0_function, write_vtx

__all__ = [
    "Checkpoint",
    "Checkpointer",
    "latest_checkpoint",
    "read_checkpoint_mesh",
    "restore",
    "save_checkpoint",
    "write_vtx",
    "dg0_function",
    "write_conductivity_cell",
    "write_heat_fields",
    "plot_cell_fields",
    "plot_macro_fields",
]
