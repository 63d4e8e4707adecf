"""Writers of whole solutions for ParaView: a conductivity cell, a macro heat or Darcy solve."""

from __future__ import annotations

import os
from pathlib import Path

from .vtx import dg0_function, write_vtx

__all__ = ["write_conductivity_cell", "write_heat_fields"]


def write_conductivity_cell(problem, directory: str | os.PathLike, prefix: str = "cell") -> dict:
    """Write the correctors, local fluxes and phases of a solved conductivity cell.

    Files (in ``directory``): ``<prefix>_correctors.bp`` (one field per load case),
    ``<prefix>_flux.bp`` (``flux_x``, ``flux_y`` ...: the local heat flux for a unit
    macro gradient along that axis) and ``<prefix>_phase.bp``.

    Returns:
        A dict of the written paths by kind.
    """
    directory = Path(directory)
    problem.effective_tensor()
    paths = {
        "correctors": write_vtx(directory / f"{prefix}_correctors.bp", problem.correctors),
        "flux": write_vtx(directory / f"{prefix}_flux.bp", problem.local_fluxes()),
        "phase": write_vtx(directory / f"{prefix}_phase.bp", [problem.phase_field()]),
    }
    return paths


def write_heat_fields(heat, path: str | os.PathLike, time: float = 0.0) -> dict:
    """Write a macro heat (or Darcy) solution for ParaView.

    ``<path>_T.bp``: the temperature (pressure); ``<path>_micro.bp``: cell averages of
    the flux ``q``, of every per-point micro result (``K_effective``, ``dK_dT_effective``,
    ``k_effective`` ...) and of the microstructure parameters, as DG0 fields, and
    ``substituted`` (1 in a cell with a micro response substituted by the failure policy at
    the last evaluation, :class:`hmm_fem.coupling.FailurePolicy`; 0 elsewhere).
    """
    path = Path(path)
    coupling = heat.coupling
    mesh = heat.mesh
    fields = [dg0_function(mesh, coupling.cell_averages("value"), "flux")]
    # every per-point micro result (K*, dK*/dT, a permeability k ...) as a cell field
    for name in coupling.last_response.solutions:
        fields.append(dg0_function(mesh, coupling.cell_averages(name), f"{name}_effective"))
    for name in coupling.parameter_names:
        fields.append(dg0_function(mesh, coupling.cell_averages(name), name))
    fields.append(dg0_function(mesh, coupling.substituted_cells(), "substituted"))
    return {
        "temperature": write_vtx(path.parent / f"{path.name}_T.bp", [heat.T], time),
        "micro": write_vtx(path.parent / f"{path.name}_micro.bp", fields, time),
    }
