"""Read user gmsh ``.msh`` files as periodic unit cells, and check periodicity.

A loaded cell follows the same conventions as the generated ones (see
:mod:`hmm_fem.geometry.unitcell`): the mesh lives on ``MPI.COMM_SELF``, its cells
carry the physical tags of the phases, and its boundary facets are tagged
``1, 2`` (``x = 0, L_0``), ``3, 4`` (``y``) and ``5, 6`` (``z``).

The periodic box of a loaded mesh is the bounding box of its nodes. Opposite
faces of that box must carry matching nodes (a translation by the side length),
which is what gmsh produces with ``gmsh.model.mesh.setPeriodic`` (API) or
``Periodic Surface/Curve`` (``.geo``). :func:`check_periodic` verifies it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from .periodicity import PERIODICITY_TOLERANCE, on_face
from .unitcell import UnitCell

__all__ = ["load", "check_periodic", "box_facet_tags", "FACE_TAGS", "gmsh_session", "set_option"]

#: Facet tag of every face of the box, by ``(axis, side)`` with side 0 at
#: ``x_axis = min`` and side 1 at ``x_axis = max``.
FACE_TAGS = {(axis, side): 2 * axis + side + 1 for axis in range(3) for side in range(2)}

_AXES = "xyz"
_model_counter = itertools.count()


@contextlib.contextmanager
def gmsh_session(name: str = "hmm_fem") -> Iterator[dict[str, float]]:
    """Run a block with a fresh, quiet, single-threaded gmsh model.

    gmsh is initialized if it is not yet (and then finalized on exit). If the
    caller already runs gmsh, its current model is kept: a new model is added,
    removed on exit, and the caller's model is made current again; the numeric
    options changed through the yielded dict are restored.

    Args:
        name: Prefix of the name of the temporary gmsh model.

    Yields:
        A dict to which the block may add ``{option: value}`` pairs *through*
        :func:`set_option`; it records the options to restore.
    """
    import gmsh

    started = not gmsh.isInitialized()
    if started:
        gmsh.initialize(readConfigFiles=False, interruptible=False)
    previous = None if started else gmsh.model.getCurrent()
    saved: dict[str, float] = {}
    try:
        set_option(saved, "General.Terminal", 0)
        set_option(saved, "General.NumThreads", 1)
        gmsh.model.add(f"{name}_{os.getpid()}_{next(_model_counter)}")
        yield saved
    finally:
        if started:
            gmsh.finalize()
        else:
            with contextlib.suppress(Exception):
                gmsh.model.remove()
            for option, value in saved.items():
                gmsh.option.setNumber(option, value)
            if previous is not None:
                with contextlib.suppress(Exception):
                    gmsh.model.setCurrent(previous)


def set_option(saved: dict[str, float], option: str, value: float) -> None:
    """Set a numeric gmsh option, remembering its first value in ``saved``."""
    import gmsh

    if option not in saved:
        saved[option] = gmsh.option.getNumber(option)
    gmsh.option.setNumber(option, value)


def _box_arrays(lengths_or_box, gdim: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(lower, upper)`` corners from side lengths or a ``(2, gdim)`` box."""
    arr = np.asarray(lengths_or_box, dtype=float)
    if arr.ndim == 1:
        lower, upper = np.zeros(arr.size), arr
    elif arr.ndim == 2 and arr.shape[0] == 2:
        lower, upper = arr[0], arr[1]
    else:
        raise ValueError(
            f"lengths_or_box must be gdim side lengths or a (2, gdim) array [[min...], [max...]],"
            f" got shape {arr.shape}"
        )
    if lower.size != gdim:
        raise ValueError(f"the box has {lower.size} dimensions but the mesh has {gdim}")
    if np.any(upper <= lower):
        raise ValueError(f"degenerate box: lower corner {lower}, upper corner {upper}")
    return lower, upper


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def check_periodic(
    mesh: dmesh.Mesh, lengths_or_box, name: str = "mesh", tol: float = PERIODICITY_TOLERANCE
) -> None:
    """Check that opposite faces of the periodic box carry matching nodes.

    For every axis ``i``, every geometry node on the face ``x_i = max`` must
    have a node on the face ``x_i = min`` with the same other coordinates, and
    vice versa. Matching uses a k-d tree (no loop over nodes). In parallel the
    face nodes of all ranks of ``mesh.comm`` are gathered first.

    Args:
        mesh: The mesh to check.
        lengths_or_box: Either the side lengths ``(L_0, L_1[, L_2])`` of the box
            ``[0, L_0] x [0, L_1] (x [0, L_2])``, or the box as a ``(2, gdim)``
            array ``[[min_0, min_1, ...], [max_0, max_1, ...]]``.
        name: Name of the mesh (file name, geometry) used in the error message.
        tol: Matching tolerance relative to the largest side length (default
            :data:`~hmm_fem.geometry.periodicity.PERIODICITY_TOLERANCE`).

    Raises:
        ValueError: If some face has no nodes or some node has no partner on
            the opposite face; the message names the face and the first
            unmatched node.
    """
    gdim = mesh.geometry.dim
    lower, upper = _box_arrays(lengths_or_box, gdim)
    atol = tol * float(np.max(upper - lower))
    x = mesh.geometry.x[:, :gdim]
    for axis in range(gdim):
        others = [j for j in range(gdim) if j != axis]
        faces = []
        for value in (lower[axis], upper[axis]):
            pts = x[np.abs(x[:, axis] - value) <= atol]
            if mesh.comm.size > 1:
                pts = np.concatenate(mesh.comm.allgather(pts), axis=0)
            faces.append(pts)
        labels = [
            f"{_AXES[axis]} = {lower[axis]:.6g} ({_AXES[axis]}-min)",
            f"{_AXES[axis]} = {upper[axis]:.6g} ({_AXES[axis]}-max)",
        ]
        for side in (0, 1):
            if len(faces[side]) == 0:
                raise ValueError(
                    f"mesh '{name}' is not periodic: no node lies on the face {labels[side]}"
                    f" of the box {_fmt(lower)} - {_fmt(upper)}; the mesh must fill its"
                    " periodic box"
                )
        for side in (1, 0):
            here, there = faces[side], faces[1 - side]
            lost = _unmatched(here[:, others], there[:, others], atol)
            if np.any(lost):
                raise ValueError(
                    f"mesh '{name}' is not periodic: {int(lost.sum())} nodes on the face"
                    f" {labels[side]} have no partner on {labels[1 - side]}, first at"
                    f" {_fmt(here[np.argmax(lost)])}; generate it with gmsh setPeriodic /"
                    " Mesh.Periodic"
                )


def _unmatched(points: np.ndarray, partners: np.ndarray, atol: float) -> np.ndarray:
    """Which ``points`` (n, k) have no partner within ``atol`` (Euclidean) among ``partners``.

    One coordinate (the faces of a 2D box): a sorted search, without SciPy (whose import
    costs 0.2 s, much of a short command's start-up). More: a k-d tree.
    """
    if points.shape[1] == 1:
        sorted_partners = np.sort(partners[:, 0])
        p = points[:, 0]
        right = np.clip(np.searchsorted(sorted_partners, p), 0, len(sorted_partners) - 1)
        left = np.clip(right - 1, 0, len(sorted_partners) - 1)
        gap = np.minimum(np.abs(sorted_partners[right] - p), np.abs(sorted_partners[left] - p))
        return gap > atol
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(partners).query(points, distance_upper_bound=atol)
    return ~np.isfinite(dist)


def box_facet_tags(mesh: dmesh.Mesh, lengths: Sequence[float], tol: float = PERIODICITY_TOLERANCE):
    """Tag the boundary facets of a box mesh ``[0, L_0] x ...`` by face.

    Tags: ``1, 2`` for ``x = 0, L_0``; ``3, 4`` for ``y = 0, L_1``; ``5, 6`` for
    ``z = 0, L_2`` (see :data:`FACE_TAGS`).

    Args:
        mesh: A mesh of the box with its lower corner at the origin.
        lengths: Side lengths of the box.
        tol: Tolerance relative to the largest side length (default
            :data:`~hmm_fem.geometry.periodicity.PERIODICITY_TOLERANCE`).

    Returns:
        The facet :class:`dolfinx.mesh.MeshTags`.
    """
    tdim = mesh.topology.dim
    fdim = tdim - 1
    mesh.topology.create_connectivity(fdim, tdim)
    atol = tol * float(max(lengths))
    facets, values = [], []
    for (axis, side), tag in FACE_TAGS.items():
        if axis >= mesh.geometry.dim:
            continue
        value = 0.0 if side == 0 else float(lengths[axis])
        found = dmesh.locate_entities_boundary(
            mesh, fdim, lambda p, a=axis, v=value: on_face(p, a, v, atol)
        )
        facets.append(found)
        values.append(np.full(found.size, tag, dtype=np.int32))
    facets_all = np.concatenate(facets).astype(np.int32)
    values_all = np.concatenate(values)
    order = np.argsort(facets_all, kind="stable")
    tags = dmesh.meshtags(mesh, fdim, facets_all[order], values_all[order])
    tags.name = "facet_tags"
    return tags


def _mesh_volume(mesh: dmesh.Mesh) -> float:
    one = fem.Constant(mesh, mesh.geometry.x.dtype.type(1.0))
    return float(fem.assemble_scalar(fem.form(one * ufl.dx(domain=mesh))))


def load(
    path: str | os.PathLike,
    phases: Mapping[str, int] | None = None,
    tol: float = PERIODICITY_TOLERANCE,
) -> UnitCell:
    """Load a periodic cell from a gmsh ``.msh`` file (2D or 3D).

    The phases must be physical groups of the cells (``Physical Surface`` in 2D,
    ``Physical Volume`` in 3D); physical groups of lower dimension are ignored
    and the box faces are tagged geometrically instead (``1..6``, see
    :func:`box_facet_tags`). The geometric dimension is 2 if the cells are
    triangles/quadrilaterals and all nodes have the same ``z`` (which is then
    dropped), 3 for tetrahedra/hexahedra.

    The periodic box is the bounding box of the nodes. If its lower corner is
    not the origin, the mesh is *translated* so that it is (the box becomes
    ``[0, L_0] x [0, L_1] (x [0, L_2])``); the original corner is kept in
    ``description["origin"]``. The mesh must fill its box and be periodic
    (:func:`check_periodic`).

    Args:
        path: The ``.msh`` file.
        phases: Phase name to physical tag, for example
            ``{"matrix": 1, "fibre": 2}``. The name ``"matrix"`` marks the host
            phase; every other phase counts as inclusion in
            :attr:`UnitCell.volume_fraction`. Every cell tag of the mesh must be
            named. Default: the smallest tag is ``"matrix"``, every other tag
            ``t`` is ``"phase_<t>"``.
        tol: Relative tolerance (to the largest side length) of the periodicity
            and box checks (default
            :data:`~hmm_fem.geometry.periodicity.PERIODICITY_TOLERANCE`).

    Returns:
        The :class:`UnitCell` on ``MPI.COMM_SELF``, with ``geometry="msh"`` and
        ``target_volume_fraction=None``.

    Raises:
        ValueError: If the file is missing or unreadable, has no physical cell
            tags, has untagged or doubly tagged cells, if a requested phase tag
            is absent or a present one is not named, if the mesh does not fill
            its bounding box, or if it is not periodic.
    """
    import gmsh
    from dolfinx.io.gmsh import model_to_mesh

    path = Path(path)
    fname = str(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ValueError(f"mesh file '{fname}' {what}; give the path of a gmsh .msh file")
    comm = MPI.COMM_SELF
    with gmsh_session("hmm_fem_load"):
        try:
            gmsh.merge(fname)
        except Exception as err:  # gmsh raises a bare Exception
            raise ValueError(
                f"mesh file '{fname}' could not be read by gmsh ({err}); it must be a gmsh"
                " .msh file"
            ) from err
        tdim = max((d for d in (3, 2, 1) if len(gmsh.model.mesh.getElementTypes(d)) > 0), default=0)
        if tdim < 2:
            raise ValueError(
                f"mesh file '{fname}' contains no 2D or 3D cells; mesh the surfaces (2D) or"
                " volumes (3D) of the cell"
            )
        kind = {2: "Physical Surface", 3: "Physical Volume"}[tdim]
        groups = gmsh.model.getPhysicalGroups(tdim)
        if not groups:
            raise ValueError(
                f"mesh file '{fname}' has no physical cell tags (no {tdim}D physical group);"
                f" tag the phases with {kind}, e.g. {kind}(1) = {{...}} for the matrix"
            )
        # Every meshed entity of dimension tdim must belong to exactly one phase.
        for _, entity in gmsh.model.getEntities(tdim):
            if len(gmsh.model.mesh.getElementTypes(tdim, entity)) == 0:
                continue
            owners = gmsh.model.getPhysicalGroupsForEntity(tdim, entity)
            if len(owners) != 1:
                what = "in no" if len(owners) == 0 else f"in {len(owners)}"
                raise ValueError(
                    f"mesh file '{fname}': the cells of {tdim}D entity {entity} are {what}"
                    f" physical group; put every {tdim}D entity in exactly one {kind}"
                )
        present = sorted(int(t) for _, t in groups)
        lower_groups = [g for d in range(tdim) for g in gmsh.model.getPhysicalGroups(d)]
        if lower_groups:
            gmsh.model.removePhysicalGroups(lower_groups)
        _, coords, _ = gmsh.model.mesh.getNodes()
        coords = np.asarray(coords).reshape(-1, 3)
        size = float(np.max(np.ptp(coords, axis=0)))
        if tdim == 3:
            gdim = 3
        elif np.ptp(coords[:, 2]) <= tol * size:
            gdim = 2
        else:
            raise ValueError(
                f"mesh file '{fname}' holds a surface mesh that is not flat (z varies);"
                " a 2D cell must lie in a plane z = const"
            )
        if phases is None:
            phases = {("matrix" if t == present[0] else f"phase_{t}"): t for t in present}
        else:
            phases = {str(k): int(v) for k, v in phases.items()}
            missing = sorted(set(phases.values()) - set(present))
            if missing:
                names = [k for k, v in phases.items() if v in missing]
                raise ValueError(
                    f"mesh file '{fname}' has no cells with phase tag(s) {missing} (asked for"
                    f" {names}); the physical cell tags present are {present}"
                )
            unnamed = sorted(set(present) - set(phases.values()))
            if unnamed:
                raise ValueError(
                    f"mesh file '{fname}' has cells with tag(s) {unnamed} that are not in phases"
                    f" {phases}; name every physical cell tag {present}"
                )
        try:
            data = model_to_mesh(gmsh.model, comm, 0, gdim=gdim)
        except Exception as err:
            raise ValueError(
                f"mesh file '{fname}' could not be converted to a DOLFINx mesh ({err}); use one"
                " cell type (triangles or quadrilaterals in 2D, tetrahedra or hexahedra in 3D)"
                " with every cell in exactly one physical group"
            ) from err

    msh = data.mesh
    x = msh.geometry.x
    origin = x[:, :gdim].min(axis=0)
    upper = x[:, :gdim].max(axis=0)
    lengths = tuple(float(v) for v in upper - origin)
    if np.any(origin != 0.0):
        x[:, :gdim] -= origin
    box_volume = float(np.prod(lengths))
    volume = _mesh_volume(msh)
    if abs(volume - box_volume) > 1e-6 * box_volume:
        raise ValueError(
            f"mesh '{fname}' does not fill its bounding box {_fmt(origin)} - {_fmt(upper)}:"
            f" meshed volume {volume:.8g} vs box volume {box_volume:.8g}; a periodic cell must"
            " be a box (with all phases meshed)"
        )
    check_periodic(msh, lengths, name=fname, tol=tol)
    return UnitCell(
        mesh=msh,
        cell_tags=data.cell_tags,
        facet_tags=box_facet_tags(msh, lengths, tol=tol),
        phases=dict(phases),
        lengths=lengths,
        geometry="msh",
        target_volume_fraction=None,
        description={"file": fname, "origin": tuple(float(v) for v in origin)},
    )
