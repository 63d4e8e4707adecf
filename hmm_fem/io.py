"""Output for ParaView (VTX / ADIOS2 ``.bp`` folders) and pictures (pyvista PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from dolfinx import fem, io, plot

__all__ = [
    "write_vtx",
    "write_conductivity_cell",
    "plot_cell_fields",
    "write_heat_fields",
    "plot_macro_fields",
]


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


def plot_cell_fields(problem, filename: str | os.PathLike, load_case: int = 0) -> Path:
    """Save a PNG: phases, the corrector and the local flux magnitude of one load case.

    Rendering is off-screen (needs an X server such as ``xvfb-run`` or an off-screen
    VTK build); pyvista is imported here only.
    """
    import pyvista

    pyvista.OFF_SCREEN = True
    filename = Path(filename)
    filename.parent.mkdir(parents=True, exist_ok=True)
    chi = problem.correctors[load_case]
    flux = problem.local_fluxes()[load_case]
    msh = problem.cell.mesh
    axis = "xyz"[load_case]

    topology, cell_types, geometry = plot.vtk_mesh(chi.function_space)
    grid = pyvista.UnstructuredGrid(topology, cell_types, geometry)
    grid.point_data["corrector"] = chi.x.array.real
    cells = pyvista.UnstructuredGrid(*plot.vtk_mesh(msh, msh.topology.dim))
    num_cells = msh.topology.index_map(msh.topology.dim).size_local
    phase = problem.phase_field()
    cells.cell_data["phase"] = phase.x.array[phase.function_space.dofmap.list[:num_cells, 0]]
    d = msh.geometry.dim
    magnitude = np.linalg.norm(flux.x.array.reshape(-1, d), axis=1)
    if problem.degree == 1:  # the flux is cell-wise constant
        qgrid = cells.copy()
        qgrid.cell_data["|q|"] = magnitude[flux.function_space.dofmap.list[:num_cells, 0]]
    else:
        qgrid = pyvista.UnstructuredGrid(*plot.vtk_mesh(flux.function_space))
        qgrid.point_data["|q|"] = magnitude

    plotter = pyvista.Plotter(shape=(1, 3), off_screen=True, window_size=(1500, 520))
    plotter.subplot(0, 0)
    plotter.add_text("phases", font_size=10)
    plotter.add_mesh(cells, scalars="phase", show_edges=False, cmap="Set2", show_scalar_bar=False)
    plotter.subplot(0, 1)
    plotter.add_text(f"corrector chi_{axis}", font_size=10)
    plotter.add_mesh(grid, scalars="corrector", cmap="coolwarm")
    plotter.subplot(0, 2)
    plotter.add_text(f"|local flux|, unit gradient along {axis}", font_size=10)
    plotter.add_mesh(qgrid, scalars="|q|", cmap="viridis")
    for i in range(3):
        plotter.subplot(0, i)
        if d == 2:
            plotter.view_xy()
    plotter.screenshot(str(filename))
    plotter.close()
    return filename


def _dg0_function(mesh, values: np.ndarray, name: str) -> fem.Function:
    """A DG0 function (scalar, vector or tensor) from owned-cell values."""
    shape = values.shape[1:]
    space = fem.functionspace(mesh, ("DG", 0, shape) if shape else ("DG", 0))
    function = fem.Function(space, name=name)
    size = int(np.prod(shape)) if shape else 1
    num_owned = values.shape[0]
    dofs = space.dofmap.list[:num_owned, 0]
    function.x.array.reshape(-1, size)[dofs] = values.reshape(num_owned, size)
    function.x.scatter_forward()
    return function


def write_heat_fields(heat, path: str | os.PathLike, time: float = 0.0) -> dict:
    """Write a macro heat (or Darcy) solution for ParaView.

    ``<path>_T.bp``: the temperature (pressure); ``<path>_micro.bp``: cell averages of
    the flux ``q``, of every per-point micro result (``K_effective``, ``dK_dT_effective``,
    ``k_effective`` ...) and of the microstructure parameters, as DG0 fields.
    """
    path = Path(path)
    coupling = heat.coupling
    mesh = heat.mesh
    fields = [_dg0_function(mesh, coupling.cell_averages("value"), "flux")]
    # every per-point micro result (K*, dK*/dT, a permeability k ...) as a cell field
    for name in coupling.last_response.solutions:
        fields.append(_dg0_function(mesh, coupling.cell_averages(name), f"{name}_effective"))
    for name in coupling.parameter_names:
        fields.append(_dg0_function(mesh, coupling.cell_averages(name), name))
    return {
        "temperature": write_vtx(path.parent / f"{path.name}_T.bp", [heat.T], time),
        "micro": write_vtx(path.parent / f"{path.name}_micro.bp", fields, time),
    }


def plot_macro_fields(
    heat,
    filename: str | os.PathLike,
    solution: str = "K",
    component: tuple[int, int] = (1, 1),
    labels=("temperature T", None),
) -> Path:
    """Save a PNG of a macro heat (or Darcy) solution (serial).

    Left: the unknown; right: one component of a per-point micro result, as cell
    averages (default ``K*_yy``).
    """
    import pyvista

    pyvista.OFF_SCREEN = True
    filename = Path(filename)
    filename.parent.mkdir(parents=True, exist_ok=True)
    mesh = heat.mesh
    tdim = mesh.topology.dim
    grid = pyvista.UnstructuredGrid(*plot.vtk_mesh(heat.V))
    grid.point_data["T"] = heat.T.x.array.real
    cells = pyvista.UnstructuredGrid(*plot.vtk_mesh(mesh, tdim))
    name = labels[1] or f"{solution}*_{'xyz'[component[0]]}{'xyz'[component[1]]}"
    cells.cell_data[name] = heat.coupling.cell_averages(solution)[:, component[0], component[1]]
    plotter = pyvista.Plotter(shape=(1, 2), off_screen=True, window_size=(1100, 700))
    plotter.subplot(0, 0)
    plotter.add_text(labels[0], font_size=10)
    plotter.add_mesh(grid, scalars="T", cmap="inferno")
    plotter.view_xy()
    plotter.subplot(0, 1)
    plotter.add_text(name, font_size=10)
    plotter.add_mesh(cells, scalars=name, cmap="viridis")
    plotter.view_xy()
    plotter.screenshot(str(filename))
    plotter.close()
    return filename
