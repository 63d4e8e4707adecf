"""Regenerate the ready periodic cells of this folder with hmm-fem's own generators.

    python3 meshes/generate.py            # all of them (docker/run python3 meshes/generate.py)
    python3 meshes/generate.py NAME.msh   # one

Every file is a gmsh ``.msh`` 4.1 (ASCII) periodic cell with the physical cell tags
``matrix = 1`` and ``inclusion = 2`` (for the pore space: pore = 1, solid = 2) that
``hmm_fem.cells.load`` reads with its default phases. The files are reproducible with the
same gmsh version (single-threaded meshing, fixed seed for the random cell).

:data:`MESHES` is the single description of the files: the tests read it for the target
fractions and the meshing deficits (``tests/test_meshes.py``), README.md in this folder
repeats it for the reader.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

#: File name -> (generator in hmm_fem.cells, its arguments, largest meshing deficit
#: target - meshed volume fraction, relative to the target, what the file is).
#: The deficit is that of polygonal/polyhedral inclusions (nodes on the circle/sphere,
#: flat facets inside): about 0.1 % (2D) and 0.3 % (3D) at the default sizes, more on the
#: coarse 3D meshes kept small for the repository.
MESHES: dict[str, tuple[str, dict, float, str]] = {
    "fibre_square_f0.4.msh": (
        "square",
        {"volume_fraction": 0.4},
        1e-3,
        "2D square array of fibres (one disc per cell), fibre fraction 0.4, default mesh",
    ),
    "random_f0.3.msh": (
        "random",
        {"volume_fraction": 0.3, "num_inclusions": 10, "seed": 0},
        1.5e-3,
        "2D random periodic arrangement of 10 equal discs (seed 0), disc fraction 0.3",
    ),
    "spheres_cubic_f0.2.msh": (
        "cubic",
        {"volume_fraction": 0.2, "mesh_size": 0.15},
        1e-2,
        "3D simple cubic array of spheres, sphere fraction 0.2, coarse (mesh_size 0.15)",
    ),
    "pores_cubic_s0.343.msh": (
        "cubic",
        {"volume_fraction": 0.343, "mesh_size": 0.3},
        3e-2,
        "3D pore space (tag 1) around a simple cubic array of solid spheres (tag 2), solid"
        " fraction 0.343, coarse (mesh_size 0.3) for a Stokes cell in a few seconds",
    ),
}


def generate(name: str, folder: Path) -> None:
    """Write ``folder / name`` with its generator and print what was meshed."""
    from hmm_fem import cells

    generator, kwargs, _, _ = MESHES[name]
    kwargs = dict(kwargs)
    fraction = kwargs.pop("volume_fraction")
    start = time.perf_counter()
    cell = getattr(cells, generator)(fraction, msh_file=folder / name, **kwargs)
    size = (folder / name).stat().st_size
    print(
        f"{name}: {cell.num_cells} cells, meshed fraction {cell.volume_fraction:.5f}"
        f" (target {fraction}), {size / 1e6:.2f} MB, {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    names = sys.argv[1:] or list(MESHES)
    unknown = [n for n in names if n not in MESHES]
    if unknown:
        sys.exit(f"generate.py: unknown mesh {unknown}; known: {', '.join(MESHES)}")
    for name in names:
        generate(name, Path(__file__).resolve().parent)
