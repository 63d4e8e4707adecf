"""Pictures (pyvista PNG) of cell and macro fields.

Rendering is off-screen (``off_screen=True`` on every plotter; it needs an X server
such as ``xvfb-run`` or an off-screen VTK build). pyvista is imported on first use, and
no global pyvista setting is changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from dolfinx import plot

__all__ = ["plot_cell_fields", "plot_macro_fields"]


def plot_cell_fields(problem, filename: str | os.PathLike, load_case: int = 0) -> Path:
    """Save a PNG: phases, the corrector and the local flux magnitude of one load case.

    Rendering is off-screen (needs an X server such as ``xvfb-run`` or an off-screen
    VTK build); pyvista is imported here only.
    """
    import pyvista

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
