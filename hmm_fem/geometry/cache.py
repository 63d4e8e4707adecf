"""A disk cache of generated unit cells: the same cell again without gmsh.

Importing gmsh and meshing a default 2D cell cost about 0.4 s, a good part of a short
command such as ``hmm-fem cell conductivity``. :func:`cached_cell` runs a generator of
:mod:`hmm_fem.geometry.generators` once, stores the arrays that DOLFINx builds the mesh
from (the gmsh nodes, the cells in gmsh numbering and their phase tags) and, on the next
call with the same arguments, rebuilds the mesh from them exactly as
``dolfinx.io.gmsh.model_to_mesh`` does: the same nodes, cells and numbering, hence the
same results to the last bit.

An entry is keyed by the generator, its arguments and a stamp of everything that decides
the mesh: the source of the geometry modules and the installed gmsh (its file, size and
modification time). A change of any of them makes a new entry; stale entries are never
read. Entries are written to a temporary file and renamed, so a half-written entry is
never seen. The folder is ``$HMM_FEM_CELL_CACHE`` if set, else
``$XDG_CACHE_HOME/hmm-fem/cells`` (``~/.cache/hmm-fem/cells``); delete it to clear the
cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["cached_cell", "cache_folder"]

_GENERATORS = ("laminate", "square", "hexagonal", "cubic", "random")
_HERE = Path(__file__).resolve().parent
_FORMAT = 1


def cache_folder() -> Path:
    """The folder of the cell cache (see the module docstring)."""
    explicit = os.environ.get("HMM_FEM_CELL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmm-fem" / "cells"


def _stamp() -> str:
    """What decides a generated mesh besides the arguments: our sources and gmsh."""
    digest = hashlib.sha256(f"format {_FORMAT}".encode())
    for name in ("generators.py", "msh.py", "periodicity.py", "unitcell.py"):
        digest.update((_HERE / name).read_bytes())
    spec = importlib.util.find_spec("gmsh")
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is None or not origin.is_file():
        digest.update(b"no gmsh")
    else:
        info = origin.stat()
        digest.update(f"{origin} {info.st_size} {info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _key(generator: str, args: tuple, kwargs: dict) -> str:
    text = json.dumps([generator, list(args), sorted(kwargs.items()), _stamp()], default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _mesh_from_arrays(x, gmsh_type, topology, values, gdim):
    """The mesh and cell tags ``model_to_mesh`` builds from these gmsh arrays (one rank)."""
    from dolfinx import cpp, default_real_type
    from dolfinx.graph import adjacencylist
    from dolfinx.io.gmsh import cell_perm_array, ufl_mesh
    from dolfinx.io.utils import distribute_entity_data
    from dolfinx.mesh import create_mesh, meshtags_from_entities
    from mpi4py import MPI

    domain = ufl_mesh(gmsh_type, gdim, dtype=default_real_type)
    num_nodes = domain.ufl_coordinate_element().basix_element.dim
    perm = cell_perm_array(cpp.mesh.to_type(str(domain.ufl_cell())), num_nodes)
    cells = topology[:, perm].copy().flatten().reshape(-1, num_nodes)
    mesh = create_mesh(
        MPI.COMM_SELF,
        cells,
        domain,
        x[:, :gdim].astype(default_real_type, copy=False),
        None,
        max_facet_to_cell_links=2,
    )
    tdim = mesh.topology.dim
    entities, local_values = distribute_entity_data(mesh, tdim, topology, values)
    mesh.topology.create_connectivity(tdim, tdim)
    tags = meshtags_from_entities(
        mesh, tdim, adjacencylist(entities), local_values.astype(np.int32, copy=False)
    )
    tags.name = "cell_tags"
    return mesh, tags


def cached_cell(generator: str, *args, **kwargs):
    """The unit cell ``hmm_fem.geometry.<generator>(*args, **kwargs)``, from the cache if there.

    On a miss the generator runs (gmsh) and its mesh is stored; on a hit the mesh is
    rebuilt from the stored arrays without importing gmsh, identical to the generated one
    (nodes, cells, numbering, phase and facet tags, description). A call with
    ``msh_file`` always runs the generator (it must write the file).

    Args:
        generator: ``"laminate"``, ``"square"``, ``"hexagonal"``, ``"cubic"`` or ``"random"``.
        *args: The generator's positional arguments.
        **kwargs: The generator's keyword arguments.

    Returns:
        The :class:`~hmm_fem.geometry.UnitCell`, on ``MPI.COMM_SELF``.

    Raises:
        ValueError: If ``generator`` names no generator, or the generator rejects its
            arguments (the same errors as calling it).
    """
    from . import generators
    from .msh import box_facet_tags
    from .unitcell import INCLUSION, MATRIX, UnitCell

    if generator not in _GENERATORS:
        raise ValueError(
            f"generator={generator!r} is not a cell generator; use one of {', '.join(_GENERATORS)}"
        )
    make = getattr(generators, generator)
    if kwargs.get("msh_file") is not None:
        return make(*args, **kwargs)
    path = cache_folder() / f"{generator}-{_key(generator, args, kwargs)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("x", "topology", "values")}
                meta = json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            import warnings

            warnings.warn(
                f"cell cache entry {path} is unreadable ({type(exc).__name__}: {exc}); the "
                "cell is meshed anew with gmsh and the entry overwritten",
                stacklevel=2,
            )
            meta = None  # unreadable: generate and overwrite below
        if meta is not None:
            mesh, tags = _mesh_from_arrays(
                arrays["x"], meta["gmsh_type"], arrays["topology"], arrays["values"], meta["gdim"]
            )
            lengths = tuple(meta["lengths"])
            description = meta["description"]
            for key in ("centres",):
                if key in description:
                    description[key] = [tuple(c) for c in description[key]]
            for key in ("interfaces",):
                if key in description:
                    description[key] = tuple(description[key])
            return UnitCell(
                mesh=mesh,
                cell_tags=tags,
                facet_tags=box_facet_tags(mesh, lengths),
                phases={"matrix": MATRIX, "inclusion": INCLUSION},
                lengths=lengths,
                geometry=meta["geometry"],
                target_volume_fraction=meta["target_volume_fraction"],
                description=description,
            )
    capture: dict = {}
    token = generators._CAPTURE.set(capture)
    try:
        cell = make(*args, **kwargs)
    finally:
        generators._CAPTURE.reset(token)
    meta = {
        "gmsh_type": capture["gmsh_type"],
        "gdim": capture["gdim"],
        "lengths": list(cell.lengths),
        "geometry": cell.geometry,
        "target_volume_fraction": cell.target_volume_fraction,
        "description": cell.description,
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.stem}-", suffix=".npz", delete=False
        ) as tmp:
            np.savez(
                tmp,
                x=capture["x"],
                topology=capture["topology"],
                values=capture["values"],
                meta=np.array(json.dumps(meta)),
            )
        os.replace(tmp.name, path)
    except OSError:
        # A cache that cannot be written only costs time: the cell is still right.
        import warnings

        warnings.warn(
            f"cached_cell: could not write the cell cache entry {path}; the cell is"
            " generated anew next time (set HMM_FEM_CELL_CACHE to a writable folder)",
            RuntimeWarning,
            stacklevel=2,
        )
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
    return cell
