"""Periodic unit-cell generators: laminates, disc/sphere arrays, random discs.

Every generator builds the cell with the gmsh OpenCASCADE kernel, makes opposite
faces periodic with ``gmsh.model.mesh.setPeriodic`` (the nodes on ``x_i = L_i``
are the nodes on ``x_i = 0`` translated by ``L_i``), and returns a
:class:`~hmm_fem.geometry.unitcell.UnitCell` on ``MPI.COMM_SELF`` with

* cell tags ``MATRIX = 1`` and ``INCLUSION = 2``
  (``phases = {"matrix": 1, "inclusion": 2}``),
* facet tags ``1, 2`` on ``x = 0, L_0``, ``3, 4`` on ``y = 0, L_1`` and ``5, 6`` on
  ``z = 0, L_2``,
* the box ``[0, L_0] x [0, L_1] (x [0, L_2])``; lengths are in units of the cell
  side (the unit box, except ``1 x sqrt(3)`` for :func:`hexagonal`).

Volume fractions are those of the inclusion phase. Each lattice has a *touching
limit* (:data:`TOUCHING_LIMITS`) at which neighbouring inclusions touch; inputs at
or beyond it are rejected.

Mesh sizes. ``mesh_size`` is the bulk element size in units of the cell side
(defaults in :data:`DEFAULT_MESH_SIZE`: 0.035 in 2D, 0.1 for the cube). Near the
inclusion boundaries the mesh is refined, graded at slope 0.3, to the *interface
size* ``min(0.01, 2 pi r / 80)`` in 2D and ``min(0.035, 2 pi r / 70)`` in 3D.
In the *neck* between two inclusions whose gap ``g`` is narrower than four
interface sizes it is refined further, to ``g / 4`` at the narrowest point: in
2D the size follows the local neck width ``(g + s^2 / r) / 4`` (``s`` the
lateral offset), in 3D it grows from ``g / 4`` at slope 0.3. These sizes are
for the default bulk size; an explicit ``mesh_size`` scales all of them by
``mesh_size / DEFAULT_MESH_SIZE``, so halving it halves every element. The
size field is periodic (analytic distances to all periodic images).

With the defaults, P1 effective conductivities were within 0.4 % (2D) and
0.7 % (cube) of those on meshes refined 2-4 times, for volume fractions up to
90 % of the touching limit and contrasts 0.01-100; the meshed volume fraction
(polygonal/polyhedral inclusions) is below the target by at most about 0.1 %
in 2D and 0.3 % in 3D. Defaults give a few thousand triangles (square), about
10 thousand (hexagonal, random with 10 discs) and 30-45 thousand tetrahedra
(cube); the count grows near the touching limit (necks).
"""

from __future__ import annotations

import contextvars
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mpi4py import MPI

from .msh import box_facet_tags, check_periodic, gmsh_session, set_option
from .periodicity import tolerance
from .unitcell import INCLUSION, MATRIX, UnitCell

__all__ = [
    "TOUCHING_LIMITS",
    "DEFAULT_MESH_SIZE",
    "laminate",
    "square",
    "hexagonal",
    "cubic",
    "random",
]

#: Inclusion volume fraction at which neighbouring inclusions touch, per
#: geometry. For ``"random"`` it is the practical limit 0.55 of random sequential
#: addition (discs jam near 0.547), not a touching limit.
TOUCHING_LIMITS: dict[str, float] = {
    "laminate": 1.0,
    "square": math.pi / 4,
    "hexagonal": math.pi / (2 * math.sqrt(3)),
    "cubic": math.pi / 6,
    "random": 0.55,
}

_LIMIT_TEXT = {
    "laminate": ("1", "laminate (the inclusion layer fills the cell)"),
    "square": ("pi/4", "square array"),
    "hexagonal": ("pi/(2*sqrt(3))", "hexagonal array"),
    "cubic": ("pi/6", "simple cubic array"),
    "random": ("0.55", "random disc arrangement (random sequential addition jams near 0.547)"),
}

#: Default bulk element size (units of the cell side) per geometry.
DEFAULT_MESH_SIZE: dict[str, float] = {
    "laminate": 0.05,
    "laminate3d": 0.1,
    "square": 0.035,
    "hexagonal": 0.035,
    "random": 0.035,
    "cubic": 0.1,
}

# Refinement parameters at the default bulk size, per dimension.
_INTERFACE_SIZE = {2: 0.01, 3: 0.035}  # cap of the interface element size
_ARC_SEGMENTS = {2: 80, 3: 70}  # at least this many elements along a great circle
_GRADING = 0.3  # growth of the element size per unit distance
_ELEMENTS_ACROSS_NECK = 4.0  # necks narrower than this many interface sizes get this many
_SIDE_CLEARANCE = 0.1  # random discs: min distance (x r) between a circle and a side/corner

# Set by hmm_fem.geometry.cache while it runs a generator: _finish then hands it the arrays
# DOLFINx builds the mesh from, so that the cache can rebuild the same mesh without gmsh.
_CAPTURE: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "hmm_fem_geometry_capture", default=None
)


# --------------------------------------------------------------------------- checks


def _check_fraction(volume_fraction: float, geometry: str) -> float:
    limit = TOUCHING_LIMITS[geometry]
    text, lattice = _LIMIT_TEXT[geometry]
    try:
        f = float(volume_fraction)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"volume_fraction={volume_fraction!r} is not a number; use a value in"
            f" (0, {limit:.6g}) for the {lattice}"
        ) from err
    if not math.isfinite(f) or f <= 0.0:
        raise ValueError(
            f"volume_fraction={volume_fraction!r} must be positive; use a value in (0, {limit:.6g})"
            f" (the touching limit {text} = {limit:.6g} of the {lattice})"
        )
    if f >= limit:
        raise ValueError(
            f"volume_fraction={volume_fraction!r} is at or above the touching limit {text} ="
            f" {limit:.6g} of the {lattice}; use a value in (0, {limit:.6g})"
        )
    return f


def _check_mesh_size(mesh_size: float | None, default: float) -> float:
    if mesh_size is None:
        return default
    try:
        h = float(mesh_size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"mesh_size={mesh_size!r} is not a number") from err
    if not math.isfinite(h) or h <= 0.0:
        raise ValueError(
            f"mesh_size={mesh_size!r} must be a positive element size in units of the cell side"
            f" (default {default})"
        )
    if h > 0.5:
        raise ValueError(f"mesh_size={mesh_size!r} is coarser than half the cell; use <= 0.5")
    return h


def _check_order(order) -> int:
    """The geometry order of the mesh: 1 (straight-sided) or 2 (curved, isoparametric P2)."""
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(
            f"order={order!r} must be 1 (straight-sided cells) or 2 (second-order cells whose"
            " edges follow the curved inclusion boundaries; use them with degree >= 2)"
        )
    return int(order)


def _check_msh_file(msh_file: str | os.PathLike | None) -> str | None:
    if msh_file is None:
        return None
    path = Path(msh_file)
    if path.suffix != ".msh":
        raise ValueError(f"msh_file='{path}' must end in .msh")
    if not path.parent.is_dir():
        raise ValueError(f"msh_file='{path}': the directory '{path.parent}' does not exist")
    return str(path)


# --------------------------------------------------------------------------- gmsh helpers


def _set_periodic(saved: dict, dim: int, lengths: Sequence[float]) -> None:
    """Make every face ``x_i = L_i`` a periodic copy of the face ``x_i = 0``.

    Faces and their partners are matched by their bounding boxes, to the one periodicity
    tolerance. OpenCASCADE pads its own bounding boxes by its kernel tolerance (1e-7);
    ``Geometry.OCCBoundsUseStl`` makes gmsh compute them from the surface triangulation
    instead, which is exact on the planar box faces.
    """
    import gmsh

    set_option(saved, "Geometry.OCCBoundsUseStl", 1)
    gmsh.model.occ.synchronize()
    L = list(lengths) + [0.0] * (3 - len(lengths))
    eps = tolerance(lengths)
    for axis in range(dim):
        lo = [-eps] * 3
        hi = [v + eps for v in L]
        lo[axis], hi[axis] = L[axis] - eps, L[axis] + eps
        slaves = gmsh.model.getEntitiesInBoundingBox(*lo, *hi, dim - 1)
        shift = [0.0, 0.0, 0.0]
        shift[axis] = L[axis]
        affine = [1, 0, 0, shift[0], 0, 1, 0, shift[1], 0, 0, 1, shift[2], 0, 0, 0, 1]
        for _, slave in slaves:
            box = np.array(gmsh.model.getBoundingBox(dim - 1, slave))
            box[[0, 1, 2]] -= shift
            box[[3, 4, 5]] -= shift
            candidates = gmsh.model.getEntitiesInBoundingBox(
                *(box[:3] - eps), *(box[3:] + eps), dim - 1
            )
            matches = [
                tag
                for _, tag in candidates
                if np.allclose(gmsh.model.getBoundingBox(dim - 1, tag), box, atol=eps)
            ]
            if len(matches) != 1:
                raise RuntimeError(
                    f"internal error: no unique periodic partner for the entity {slave} on the"
                    f" face {'xyz'[axis]} = {L[axis]:.6g} (found {matches})"
                )
            gmsh.model.mesh.setPeriodic(dim - 1, [slave], [matches[0]], affine)


def _images(centre: np.ndarray, reach: float, lengths: np.ndarray) -> list[np.ndarray]:
    """Periodic images ``centre + k L`` (k in {-1, 0, 1}^d) within ``reach`` of the box."""
    out = []
    for k in itertools.product((-1, 0, 1), repeat=len(lengths)):
        c = centre + np.array(k) * lengths
        outside = np.maximum(0.0, np.maximum(-c, c - lengths))
        if np.linalg.norm(outside) < reach:
            out.append(c)
    return out


def _pair_gaps(
    centres: np.ndarray, radius: float, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gap midpoints and widths between every inclusion and every periodic image.

    Pairs ``(i, j + k L)`` with ``i <= j`` and ``k`` in ``{-1, 0, 1}^d`` (minus
    ``i = j, k = 0``); valid for inclusions that do not overlap their images.
    """
    n, d = centres.shape
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=d)), dtype=float) * lengths
    i, j = np.triu_indices(n)
    v = centres[j][:, None, :] + shifts[None, :, :] - centres[i][:, None, :]
    gaps = np.linalg.norm(v, axis=2) - 2 * radius
    keep = np.ones(gaps.shape, dtype=bool)
    keep[i == j] = np.any(shifts != 0, axis=1)
    mids = centres[i][:, None, :] + v / 2
    return mids[keep], gaps[keep]


def _necks(
    centres: np.ndarray, radius: float, lengths: np.ndarray, max_gap: float
) -> list[tuple[np.ndarray, float]]:
    """Midpoints (wrapped into the box) and widths of gaps narrower than ``max_gap``."""
    mids, gaps = _pair_gaps(centres, radius, lengths)
    close = gaps < max_gap
    mids, gaps = np.mod(mids[close], lengths), gaps[close]
    keys = np.round(np.mod(mids / lengths, 1.0), 9) % 1.0
    _, first = np.unique(keys, axis=0, return_index=True)
    return [(mids[k], float(gaps[k])) for k in np.sort(first)]


def _math_eval(expr: str) -> int:
    import gmsh

    field = gmsh.model.mesh.field.add("MathEval")
    gmsh.model.mesh.field.setString(field, "F", expr)
    return field


def _distance_expr(point: np.ndarray) -> str:
    return (
        "sqrt(" + "+".join(f"({v}-({c:.17g}))^2" for v, c in zip("xyz", point, strict=False)) + ")"
    )


def _size_fields(
    centres: np.ndarray,
    radius: float,
    lengths: np.ndarray,
    h_bulk: float,
    h_interface: float,
    necks: list[tuple[np.ndarray, float]],
    neck_sizes: list[float],
) -> None:
    """Install the background size field: graded at interfaces and in necks.

    The field is periodic: it uses analytic distances to all periodic images of
    the inclusions (and necks) that come close to the box.
    """
    import gmsh

    fields = []
    reach = radius + (h_bulk - h_interface) / _GRADING
    for c in centres:
        for image in _images(c, reach, lengths):
            fields.append(
                _math_eval(
                    f"{h_interface:.17g}+{_GRADING}*abs({_distance_expr(image)}-{radius:.17g})"
                )
            )
    for (mid, gap), h_neck in zip(necks, neck_sizes, strict=True):
        if lengths.size == 2:
            # At a lateral offset s the neck is about gap + s^2 / r wide: keep the
            # size proportional to the local width, up to the interface size.
            reach = math.sqrt(max(radius * (h_interface * gap / h_neck - gap), 0.0))
            expr = f"{h_neck / gap:.17g}*({gap:.17g}+({{}})^2/{radius:.17g})"
        else:
            # 3D: a cheaper cone, graded like the interfaces.
            reach = (h_interface - h_neck) / _GRADING
            expr = f"{h_neck:.17g}+{_GRADING}*{{}}"
        for image in _images(mid, reach, lengths):
            fields.append(_math_eval(expr.format(_distance_expr(image))))
    total = gmsh.model.mesh.field.add("Min")
    gmsh.model.mesh.field.setNumbers(total, "FieldsList", fields)
    gmsh.model.mesh.field.setAsBackgroundMesh(total)


def _mesh_options(saved: dict, h_max: float, h_min: float = 0.0) -> None:
    set_option(saved, "Mesh.MeshSizeFromPoints", 0)
    set_option(saved, "Mesh.MeshSizeFromCurvature", 0)
    set_option(saved, "Mesh.MeshSizeExtendFromBoundary", 0)
    set_option(saved, "Mesh.MeshSizeMax", h_max)
    set_option(saved, "Mesh.MeshSizeMin", h_min)
    set_option(saved, "Mesh.ElementOrder", 1)
    set_option(saved, "Mesh.RecombineAll", 0)
    set_option(saved, "Mesh.SaveAll", 0)
    set_option(saved, "Mesh.MshFileVersion", 4.1)
    set_option(saved, "Mesh.Binary", 0)


def _snap_to_box(lengths: Sequence[float]) -> None:
    """Put mesh nodes within round-off of a box face exactly on it.

    OpenCASCADE intersections leave some boundary nodes ``~1e-14`` off the
    faces; snapping makes the box exactly ``[0, L]`` (periodic partners are
    snapped alike, so they stay matched).
    """
    import gmsh

    atol = tolerance(lengths)
    for dim, tag in gmsh.model.getEntities():
        etags, ecoords, eparams = gmsh.model.mesh.getNodes(dim, tag, False, True)
        if len(etags) == 0:
            continue
        ex = np.asarray(ecoords).reshape(-1, 3)
        ex_new = ex.copy()
        for axis, L in enumerate(lengths):
            for value in (0.0, float(L)):
                ex_new[np.abs(ex[:, axis] - value) <= atol, axis] = value
        rows = np.flatnonzero(np.any(ex_new != ex, axis=1))
        if rows.size == 0:
            continue
        npar = len(eparams) // len(etags)
        for row in rows:
            gmsh.model.mesh.setNode(
                int(etags[row]),
                ex_new[row].tolist(),
                list(eparams[row * npar : (row + 1) * npar]),
            )


def _finish(
    saved: dict,
    dim: int,
    lengths: Sequence[float],
    matrix: list[int],
    inclusion: list[int],
    geometry: str,
    volume_fraction: float,
    description: dict,
    msh_file: str | None,
    order: int = 1,
) -> UnitCell:
    """Tag, mesh, optionally write, and convert the current gmsh model.

    With ``order=2`` the linear mesh is raised to second order: gmsh puts the mid-edge
    node of every edge on a curved entity onto the CAD curve (``Mesh.SecondOrderLinear``
    0), and places the high-order nodes of periodic entities as images of their
    partners' (``Mesh.HighOrderPeriodic``), so the periodicity holds node for node.
    Cells that curving inverts are repaired (:func:`_untangle`).
    """
    import gmsh
    from dolfinx.io.gmsh import model_to_mesh

    gmsh.model.addPhysicalGroup(dim, matrix, MATRIX, name="matrix")
    gmsh.model.addPhysicalGroup(dim, inclusion, INCLUSION, name="inclusion")
    _set_periodic(saved, dim, lengths)
    gmsh.model.mesh.generate(dim)
    if order == 2:
        set_option(saved, "Mesh.SecondOrderLinear", 0)
        set_option(saved, "Mesh.HighOrderPeriodic", 1)
        gmsh.model.mesh.setOrder(2)
        description = {**description, **_untangle(dim, geometry)}
    _snap_to_box(lengths)
    if msh_file is not None:
        gmsh.write(msh_file)
    data = model_to_mesh(gmsh.model, MPI.COMM_SELF, 0, gdim=dim)
    mesh = data.mesh
    lengths = tuple(float(v) for v in lengths)
    check_periodic(mesh, lengths, name=geometry)
    description = {**description, "order": order}
    capture = _CAPTURE.get()
    if capture is not None:
        from dolfinx.io.gmsh import extract_geometry, extract_topology_and_markers

        (gmsh_type, topology), *more = extract_topology_and_markers(gmsh.model)[0].items()
        if more:
            raise RuntimeError("internal error: a generated cell mixes gmsh element types")
        capture.update(
            x=extract_geometry(gmsh.model),
            gmsh_type=int(gmsh_type),
            topology=np.asarray(topology["topology"], dtype=np.int64),
            values=np.asarray(topology["cell_data"], dtype=np.int32),
            gdim=dim,
        )
    return UnitCell(
        mesh=mesh,
        cell_tags=data.cell_tags,
        facet_tags=box_facet_tags(mesh, lengths),
        phases={"matrix": MATRIX, "inclusion": INCLUSION},
        lengths=lengths,
        geometry=geometry,
        target_volume_fraction=volume_fraction,
        description=description,
    )


def _min_scaled_jacobians(dim: int) -> np.ndarray:
    """The lower bound (by gmsh) of the scaled Jacobian of every cell of the current mesh."""
    import gmsh

    _, tags, _ = gmsh.model.mesh.getElements(dim)
    return np.concatenate([gmsh.model.mesh.getElementQualities(t, "minSJ") for t in tags])


def _untangle(dim: int, geometry: str) -> dict:
    """Repair cells that raising the mesh to second order inverted; fail if it cannot.

    Moving a mid-edge node onto a circle can fold a cell whose opposite vertex is closer
    than the arc's sagitta (coarse meshes, discs cut by the box sides). gmsh bounds the
    scaled Jacobian of every cell from below; if a bound is not positive, its elastic
    high-order optimisation moves the interior nodes (boundary nodes stay on their
    curves) and the bound is checked again.

    Returns:
        ``{"untangled_cells": n}``, the number of cells that were inverted and repaired
        (0 if none were).

    Raises:
        ValueError: If inverted cells remain after the optimisation.
    """
    import gmsh

    inverted = int(np.count_nonzero(_min_scaled_jacobians(dim) <= 0.0))
    if inverted:
        # "HighOrderElastic": the plain "HighOrder" optimiser crashed gmsh 4.15.2 here.
        gmsh.model.mesh.optimize("HighOrderElastic")
        left = int(np.count_nonzero(_min_scaled_jacobians(dim) <= 0.0))
        if left:
            raise ValueError(
                f"{geometry}: order=2 inverts {left} cells that gmsh's high-order optimisation"
                " cannot repair (a mid-edge node moved onto a circle crosses the cell); use a"
                " smaller mesh_size, or order=1"
            )
    return {"untangled_cells": inverted}


def _inclusion_cell(
    geometry: str,
    centres: np.ndarray,
    radius: float,
    lengths: Sequence[float],
    volume_fraction: float,
    mesh_size: float | None,
    msh_file: str | os.PathLike | None,
    description: dict,
    order: int = 1,
) -> UnitCell:
    """Mesh a periodic box holding equal discs (2D) or spheres (3D)."""
    import gmsh

    lengths = np.asarray(lengths, dtype=float)
    centres = np.atleast_2d(np.asarray(centres, dtype=float))
    dim = lengths.size
    h0 = DEFAULT_MESH_SIZE[geometry]
    h_bulk = _check_mesh_size(mesh_size, h0)
    msh_file = _check_msh_file(msh_file)
    scale = h_bulk / h0
    h_interface = min(_INTERFACE_SIZE[dim], 2 * math.pi * radius / _ARC_SEGMENTS[dim], h0)
    necks = _necks(centres, radius, lengths, _ELEMENTS_ACROSS_NECK * h_interface)
    neck_sizes = [scale * min(h_interface, gap / _ELEMENTS_ACROSS_NECK) for _, gap in necks]
    h_interface *= scale
    min_gap = float(_pair_gaps(centres, radius, lengths)[1].min())

    with gmsh_session(f"hmm_fem_{geometry}") as saved:
        occ = gmsh.model.occ
        if dim == 2:
            box = occ.addRectangle(0, 0, 0, *lengths)
        else:
            box = occ.addBox(0, 0, 0, *lengths)
        tools = []
        for c in centres:
            for image in _images(c, radius, lengths):
                if dim == 2:
                    tools.append((2, occ.addDisk(*image, 0, radius, radius)))
                else:
                    tools.append((3, occ.addSphere(*image, radius)))
        _, out_map = occ.fragment([(dim, box)], tools)
        inside = {tag for _, tag in out_map[0]}
        from_tools = {tag for m in out_map[1:] for _, tag in m}
        outside = sorted(from_tools - inside)
        if outside:
            occ.remove([(dim, t) for t in outside], recursive=True)
        occ.synchronize()
        inclusion = sorted(inside & from_tools)
        matrix = sorted(inside - from_tools)
        _mesh_options(saved, h_bulk)
        _size_fields(centres, radius, lengths, h_bulk, h_interface, necks, neck_sizes)
        description = {
            **description,
            "radius": radius,
            "centres": [tuple(float(v) for v in c) for c in centres],
            "mesh_size": h_bulk,
            "interface_size": h_interface,
            "neck_size": min(neck_sizes) if neck_sizes else None,
            "min_gap": min_gap,
        }
        return _finish(
            saved,
            dim,
            lengths,
            matrix,
            inclusion,
            geometry,
            volume_fraction,
            description,
            msh_file,
            order,
        )


# --------------------------------------------------------------------------- generators


def laminate(
    volume_fraction: float,
    dim: int = 2,
    mesh_size: float | None = None,
    msh_file: str | os.PathLike | None = None,
) -> UnitCell:
    """Laminate: layers normal to ``x`` in the unit square or cube.

    The inclusion occupies ``(1 - f)/2 <= x <= (1 + f)/2`` and the matrix the
    rest; both interfaces are faces of the mesh, so the meshed volume fraction
    is exact (to round-off). The effective conductivity of a laminate is known
    in closed form (harmonic mean across, arithmetic mean along the layers), and
    P1 elements reproduce it exactly on this mesh.

    Args:
        volume_fraction: Inclusion volume fraction ``f``, ``0 < f < 1``.
        dim: 2 (unit square) or 3 (unit cube).
        mesh_size: Element size in units of the cell side. Default 0.05 in 2D and
            0.1 in 3D. In a layer thinner than that, and graded around it, the
            size is reduced to the layer thickness, but not below a quarter of
            ``mesh_size``.
        msh_file: If given, the gmsh mesh is also written there (``.msh`` 4.1,
            physical groups ``matrix = 1``, ``inclusion = 2``).

    Returns:
        The periodic :class:`UnitCell` (``geometry="laminate"``); its
        ``description`` holds ``interfaces`` (the two ``x`` values),
        ``mesh_size`` and ``layer_size`` (the size in the thinnest layer).

    Raises:
        ValueError: If ``f`` is not in ``(0, 1)``, ``dim`` is not 2 or 3, or
            ``mesh_size`` is not positive.
    """
    import gmsh

    if dim not in (2, 3):
        raise ValueError(f"dim={dim!r} must be 2 or 3")
    f = _check_fraction(volume_fraction, "laminate")
    h0 = DEFAULT_MESH_SIZE["laminate" if dim == 2 else "laminate3d"]
    h = _check_mesh_size(mesh_size, h0)
    msh_file = _check_msh_file(msh_file)
    a, b = (1.0 - f) / 2.0, (1.0 + f) / 2.0
    # Layers thinner than h get elements as thin as the layer (down to h / 4).
    thin = [(x0, x1) for x0, x1 in ((0.0, a), (a, b), (b, 1.0)) if x1 - x0 < h]
    h_layer = min([h] + [max(x1 - x0, h / 4) for x0, x1 in thin])
    lengths = (1.0,) * dim
    with gmsh_session("hmm_fem_laminate") as saved:
        occ = gmsh.model.occ
        slabs = []
        for x0, x1 in ((0.0, a), (a, b), (b, 1.0)):
            if dim == 2:
                slabs.append((2, occ.addRectangle(x0, 0, 0, x1 - x0, 1)))
            else:
                slabs.append((3, occ.addBox(x0, 0, 0, x1 - x0, 1, 1)))
        _, out_map = occ.fragment(slabs[:1], slabs[1:])
        occ.synchronize()
        pieces = [[tag for _, tag in m] for m in out_map]
        _mesh_options(saved, h)
        field = gmsh.model.mesh.field
        boxes = []
        for x0, x1 in thin:
            box = field.add("Box")
            for key, value in (
                ("VIn", max(x1 - x0, h / 4)),
                ("VOut", h),
                ("XMin", x0),
                ("XMax", x1),
                ("YMin", -1),
                ("YMax", 2),
                ("ZMin", -1),
                ("ZMax", 2),
                ("Thickness", (h - max(x1 - x0, h / 4)) / _GRADING),
            ):
                field.setNumber(box, key, value)
            boxes.append(box)
        if boxes:
            total = field.add("Min")
            field.setNumbers(total, "FieldsList", boxes)
            field.setAsBackgroundMesh(total)
        description = {"interfaces": (a, b), "mesh_size": h, "layer_size": h_layer}
        return _finish(
            saved,
            dim,
            lengths,
            pieces[0] + pieces[2],
            pieces[1],
            "laminate",
            f,
            description,
            msh_file,
        )


def square(
    volume_fraction: float,
    mesh_size: float | None = None,
    msh_file: str | os.PathLike | None = None,
    order: int = 1,
) -> UnitCell:
    """Square array of discs: the unit square with one disc at ``(0.5, 0.5)``.

    The radius is ``r = sqrt(f / pi)``; discs of neighbouring cells touch at
    ``f = pi/4`` (``r = 1/2``).

    Args:
        volume_fraction: Inclusion area fraction ``f``, ``0 < f < pi/4``.
        mesh_size: Bulk element size in units of the cell side (default 0.035;
            see the module docstring for the interface and neck refinement).
        msh_file: If given, the gmsh mesh is also written there (``.msh`` 4.1).
        order: Geometry order of the cells: 1 (straight-sided triangles, the
            default) or 2 (six-node triangles whose edges on the disc boundaries
            are arcs through a mid-edge node on the circle). With P1 or P2
            correctors on straight cells the polygonal discs limit the accuracy
            (for P2 at about 1e-5 relative in K*); ``order=2`` with ``degree=2``
            (isoparametric P2) converges at the full rate. Periodicity holds for
            the mid-edge nodes too.

    Returns:
        The periodic :class:`UnitCell` (``geometry="square"``); ``description``
        holds ``radius``, ``centres``, ``mesh_size``, ``interface_size``,
        ``neck_size``, ``min_gap`` (narrowest surface-to-surface gap) and ``order``.

    Raises:
        ValueError: If ``f`` is not in ``(0, pi/4)``, ``mesh_size <= 0`` or ``order``
            is not 1 or 2.
    """
    f = _check_fraction(volume_fraction, "square")
    order = _check_order(order)
    radius = math.sqrt(f / math.pi)
    return _inclusion_cell(
        "square", np.array([[0.5, 0.5]]), radius, (1.0, 1.0), f, mesh_size, msh_file, {}, order
    )


def hexagonal(
    volume_fraction: float,
    mesh_size: float | None = None,
    msh_file: str | os.PathLike | None = None,
    order: int = 1,
) -> UnitCell:
    """Hexagonal array of discs in the rectangle ``[0, 1] x [0, sqrt(3)]``.

    The rectangle holds two discs of a hexagonal array with spacing 1: one at
    ``(0.5, sqrt(3)/2)`` and one centred at the corners (four quarter discs).
    ``f = 2 pi r^2 / sqrt(3)``; neighbours touch at ``f = pi/(2 sqrt(3))``
    (``r = 1/2``). The array is isotropic, so the effective conductivity is a
    multiple of the identity.

    Args:
        volume_fraction: Inclusion area fraction ``f``, ``0 < f < pi/(2 sqrt 3)``.
        mesh_size: Bulk element size in units of the spacing (default 0.035).
        msh_file: If given, the gmsh mesh is also written there (``.msh`` 4.1).
        order: Geometry order of the cells, 1 or 2 (curved); see :func:`square`.

    Returns:
        The periodic :class:`UnitCell` (``geometry="hexagonal"``, lengths
        ``(1, sqrt(3))``); ``description`` as for :func:`square`.

    Raises:
        ValueError: If ``f`` is not in ``(0, pi/(2 sqrt 3))``, ``mesh_size <= 0`` or
            ``order`` is not 1 or 2.
    """
    f = _check_fraction(volume_fraction, "hexagonal")
    order = _check_order(order)
    height = math.sqrt(3.0)
    radius = math.sqrt(f * height / (2 * math.pi))
    centres = np.array([[0.5, height / 2], [0.0, 0.0]])
    return _inclusion_cell(
        "hexagonal", centres, radius, (1.0, height), f, mesh_size, msh_file, {}, order
    )


def cubic(
    volume_fraction: float,
    mesh_size: float | None = None,
    msh_file: str | os.PathLike | None = None,
) -> UnitCell:
    """Simple cubic array of spheres: the unit cube with one sphere at its centre.

    ``r = (3 f / (4 pi))^(1/3)``; neighbours touch at ``f = pi/6`` (``r = 1/2``).

    Args:
        volume_fraction: Inclusion volume fraction ``f``, ``0 < f < pi/6``.
        mesh_size: Bulk element size in units of the cell side (default 0.1;
            interface size ``min(0.035, 2 pi r / 70)`` scaled alike). The
            default mesh has 30-45 thousand tetrahedra up to 90 % of the
            touching limit (65 thousand at 99 %).
        msh_file: If given, the gmsh mesh is also written there (``.msh`` 4.1).

    Returns:
        The periodic :class:`UnitCell` (``geometry="cubic"``); ``description``
        as for :func:`square`.

    Raises:
        ValueError: If ``f`` is not in ``(0, pi/6)`` or ``mesh_size <= 0``.
    """
    f = _check_fraction(volume_fraction, "cubic")
    radius = (3.0 * f / (4.0 * math.pi)) ** (1.0 / 3.0)
    return _inclusion_cell(
        "cubic",
        np.array([[0.5, 0.5, 0.5]]),
        radius,
        (1.0, 1.0, 1.0),
        f,
        mesh_size,
        msh_file,
        {},
    )


def _periodic_delta(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Minimum-image distances between ``points`` (n, 2) and ``centre`` (unit torus)."""
    d = np.abs(points - centre)
    d = np.minimum(d, 1.0 - d)
    return np.hypot(d[:, 0], d[:, 1])


def _place_discs(
    n: int, radius: float, min_gap: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Random sequential addition of ``n`` discs on the unit torus."""
    clearance = _SIDE_CLEARANCE * radius
    batch, batches_per_disc, restarts = 256, 200, 10
    attempts = 0
    for _ in range(restarts):
        centres = np.empty((0, 2))
        for _ in range(n):
            for _ in range(batches_per_disc):
                cand = rng.random((batch, 2))
                attempts += batch
                side = np.minimum(cand, 1.0 - cand)  # distance to the nearest side, per axis
                ok = np.all(np.abs(side - radius) >= clearance, axis=1)
                ok &= np.abs(np.hypot(side[:, 0], side[:, 1]) - radius) >= clearance
                for c in centres:
                    ok &= _periodic_delta(cand, c) >= 2 * radius + min_gap
                if ok.any():
                    centres = np.vstack([centres, cand[np.argmax(ok)]])
                    break
            else:
                break
        if len(centres) == n:
            return centres, attempts
    raise RuntimeError(
        f"random: could not place {n} non-overlapping discs of radius {radius:.4g} with gaps"
        f" >= {min_gap:.4g} by random sequential addition ({attempts} trial positions,"
        f" {restarts} restarts); the arrangement is jammed. Use a smaller volume_fraction,"
        " fewer (or more) inclusions, a smaller min_gap, or another seed"
    )


def random(
    volume_fraction: float,
    num_inclusions: int = 10,
    seed: int | None = 0,
    mesh_size: float | None = None,
    msh_file: str | os.PathLike | None = None,
    min_gap: float | None = None,
    order: int = 1,
) -> UnitCell:
    """Random periodic arrangement of equal, non-overlapping discs in the unit square.

    Disc centres are placed one after another uniformly at random, rejecting
    positions that violate the constraints below (random sequential addition,
    ``numpy.random.default_rng(seed)``; the same seed gives the same cell).
    The arrangement is periodic: a disc crossing a side reappears on the
    opposite side, and all images are cut to the box. Constraints:

    * the periodic surface-to-surface gap between any two discs (and between a
      disc and its own images) is at least ``min_gap``;
    * no circle passes within ``0.1 r`` of a side line or of a corner (it
      either crosses clearly or stays clear), so there are no slivers.

    Args:
        volume_fraction: Inclusion area fraction ``f``, ``0 < f < 0.55`` (0.55 is
            near the jamming fraction 0.547 of random sequential addition; with
            a gap, placement may fail earlier).
        num_inclusions: Number of discs ``n >= 1``; ``r = sqrt(f / (n pi))``.
        seed: Seed of the random generator.
        mesh_size: Bulk element size in units of the cell side (default 0.035).
        msh_file: If given, the gmsh mesh is also written there (``.msh`` 4.1).
        min_gap: Minimum periodic gap between discs, in units of the cell side.
            Default ``0.1 r``.
        order: Geometry order of the cells, 1 or 2 (curved); see :func:`square`.

    Returns:
        The periodic :class:`UnitCell` (``geometry="random"``); ``description``
        holds ``radius``, ``centres`` (one per disc, in ``[0, 1)^2``), ``seed``,
        ``num_inclusions``, ``min_gap`` (the realised narrowest gap),
        ``requested_min_gap``, ``attempts`` and the mesh sizes.

    Raises:
        ValueError: If ``f`` is not in ``(0, 0.55)``, ``num_inclusions < 1``,
            ``min_gap <= 0``, ``mesh_size <= 0`` or ``order`` is not 1 or 2.
        RuntimeError: If the discs cannot be placed (jammed arrangement).
    """
    f = _check_fraction(volume_fraction, "random")
    try:
        n = int(num_inclusions)
        valid = not isinstance(num_inclusions, bool) and n == num_inclusions and n >= 1
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise ValueError(f"num_inclusions={num_inclusions!r} must be an integer >= 1")
    radius = math.sqrt(f / (n * math.pi))
    gap = 0.1 * radius if min_gap is None else float(min_gap)
    if not math.isfinite(gap) or gap <= 0.0:
        raise ValueError(f"min_gap={min_gap!r} must be positive (units of the cell side)")
    if 2 * radius + gap >= 1.0:
        raise ValueError(
            f"min_gap={gap:.4g} is too large: a disc of radius {radius:.4g} would be closer to its"
            f" own periodic image; use min_gap < {1 - 2 * radius:.4g}"
        )
    _check_mesh_size(mesh_size, DEFAULT_MESH_SIZE["random"])
    order = _check_order(order)
    centres, attempts = _place_discs(n, radius, gap, np.random.default_rng(seed))
    description = {
        "seed": seed,
        "num_inclusions": n,
        "requested_min_gap": gap,
        "attempts": attempts,
    }
    return _inclusion_cell(
        "random", centres, radius, (1.0, 1.0), f, mesh_size, msh_file, description, order
    )
