"""Tests of the periodic unit-cell generators and of the ``.msh`` loader.

Tests marked ``mpi`` concern periodicity; they are also run under
``mpirun -n 2``, where every rank builds its own cells on ``MPI.COMM_SELF``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ufl
from dolfinx import fem
from mpi4py import MPI

from hmm_fem import geometry
from hmm_fem.geometry import INCLUSION, MATRIX, msh

RANK = MPI.COMM_WORLD.rank

# name -> (generator call, expected lengths)
CASES = {
    "laminate2d": (lambda: geometry.laminate(0.3), (1.0, 1.0)),
    "laminate3d": (lambda: geometry.laminate(0.3, dim=3), (1.0, 1.0, 1.0)),
    "square": (lambda: geometry.square(0.5), (1.0, 1.0)),
    "hexagonal": (lambda: geometry.hexagonal(0.6), (1.0, math.sqrt(3.0))),
    "cubic": (lambda: geometry.cubic(0.3), (1.0, 1.0, 1.0)),
    "random": (lambda: geometry.random(0.4, num_inclusions=8, seed=3), (1.0, 1.0)),
}

_cache: dict = {}


def cell_for(name):
    """Build each default cell once per process."""
    if name not in _cache:
        _cache[name] = CASES[name][0]()
    return _cache[name]


def face_nodes(x, axis, value, atol=1e-10):
    """Coordinates (other axes) of the nodes on the face ``x_axis = value``, sorted."""
    pts = x[np.abs(x[:, axis] - value) <= atol]
    pts = np.delete(pts, axis, axis=1)
    return pts[np.lexsort(pts.T[::-1])]


def periodic_distance(a, b, lengths):
    d = np.abs(np.asarray(a) - np.asarray(b))
    d = np.minimum(d, np.asarray(lengths) - d)
    return float(np.linalg.norm(d))


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("name", list(CASES))
def test_generator_cell(name):
    cell = cell_for(name)
    lengths = CASES[name][1]
    dim = len(lengths)
    assert cell.mesh.comm.size == 1
    assert MPI.Comm.Compare(cell.mesh.comm, MPI.COMM_SELF) != MPI.UNEQUAL
    assert cell.dim == dim
    assert cell.lengths == pytest.approx(lengths, rel=1e-14)
    assert cell.phases == {"matrix": MATRIX, "inclusion": INCLUSION}
    assert cell.geometry == name.removesuffix("2d").removesuffix("3d")

    # Every cell carries exactly one phase tag, and both phases are present.
    num_cells = cell.mesh.topology.index_map(dim).size_local
    assert np.array_equal(np.sort(cell.cell_tags.indices), np.arange(num_cells))
    assert set(np.unique(cell.cell_tags.values)) == {MATRIX, INCLUSION}

    # The box is exactly [0, L]: the bounding box of the nodes.
    x = cell.mesh.geometry.x[:, :dim]
    assert np.allclose(x.min(axis=0), 0.0, atol=1e-14)
    assert np.allclose(x.max(axis=0), lengths, rtol=1e-14)

    # Meshed volume fraction.
    f = cell.volume_fraction
    target = cell.target_volume_fraction
    if name.startswith("laminate"):
        assert f == pytest.approx(target, rel=1e-12, abs=1e-12)
    else:
        assert abs(f / target - 1) < 5e-3
    assert sum(cell.phase_volume_fractions().values()) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_generator_facet_tags(name):
    cell = cell_for(name)
    lengths = CASES[name][1]
    dim = len(lengths)
    assert cell.facet_tags is not None
    assert set(np.unique(cell.facet_tags.values)) == set(range(1, 2 * dim + 1))
    ds = ufl.Measure("ds", domain=cell.mesh, subdomain_data=cell.facet_tags)
    one = fem.Constant(cell.mesh, 1.0)
    for axis in range(dim):
        area = math.prod(v for j, v in enumerate(lengths) if j != axis)
        for side in (0, 1):
            tag = 2 * axis + side + 1
            measured = fem.assemble_scalar(fem.form(one * ds(tag)))
            assert measured == pytest.approx(area, rel=1e-12), (axis, side)


@pytest.mark.mpi
@pytest.mark.parametrize("name", list(CASES))
def test_generator_periodic(name):
    cell = cell_for(name)
    lengths = CASES[name][1]
    x = cell.mesh.geometry.x[:, : len(lengths)]
    for axis, L in enumerate(lengths):
        lo, hi = face_nodes(x, axis, 0.0), face_nodes(x, axis, L)
        assert len(lo) > 0
        assert lo.shape == hi.shape
        assert np.allclose(lo, hi, rtol=0, atol=1e-12)
    msh.check_periodic(cell.mesh, cell.lengths, name=name)
    msh.check_periodic(cell.mesh, np.array([np.zeros(len(lengths)), lengths]), name=name)


@pytest.mark.parametrize("f", [0.1, 0.4, 0.7])
def test_square_volume_fraction(f):
    cell = geometry.square(f)
    assert abs(cell.volume_fraction / f - 1) < 5e-3
    assert cell.description["radius"] == pytest.approx(math.sqrt(f / math.pi))


def test_hexagonal_is_isotropic_lattice():
    f = 0.8
    cell = geometry.hexagonal(f, mesh_size=0.06)
    r = cell.description["radius"]
    assert 2 * math.pi * r**2 / math.sqrt(3) == pytest.approx(f)
    centres = np.array(cell.description["centres"])
    # Nearest-neighbour distance 1 between the two sub-lattices.
    assert periodic_distance(centres[0], centres[1], cell.lengths) == pytest.approx(1.0)
    assert cell.description["min_gap"] == pytest.approx(1 - 2 * r)
    assert abs(cell.volume_fraction / f - 1) < 5e-3


def test_laminate_interfaces_are_mesh_faces():
    f = 0.37
    cell = geometry.laminate(f, mesh_size=0.1)
    a, b = (1 - f) / 2, (1 + f) / 2
    assert cell.description["interfaces"] == pytest.approx((a, b))
    # Every inclusion cell lies in a <= x <= b, every matrix cell outside.
    x = cell.mesh.geometry.x
    dofmap = cell.mesh.geometry.dofmaps[0]
    order = np.argsort(cell.cell_tags.indices)
    tags = cell.cell_tags.values[order]
    xs = x[dofmap][:, :, 0]
    inc = tags == INCLUSION
    assert np.all((xs[inc] >= a - 1e-14) & (xs[inc] <= b + 1e-14))
    assert np.all((xs[~inc].max(axis=1) <= a + 1e-14) | (xs[~inc].min(axis=1) >= b - 1e-14))


def test_mesh_size_refines():
    coarse = geometry.square(0.3, mesh_size=0.07)
    fine = geometry.square(0.3)
    assert fine.num_cells > 2 * coarse.num_cells
    assert coarse.description["mesh_size"] == 0.07


# ----------------------------------------------------------------------------- bad inputs

BAD_FRACTION = {
    "laminate": (geometry.laminate, "1"),
    "square": (geometry.square, "0.785398"),
    "hexagonal": (geometry.hexagonal, "0.9069"),
    "cubic": (geometry.cubic, "0.523599"),
    "random": (geometry.random, "0.55"),
}


@pytest.mark.parametrize("name", list(BAD_FRACTION))
def test_bad_volume_fraction(name):
    fn, text = BAD_FRACTION[name]
    limit = geometry.TOUCHING_LIMITS[name]
    for bad in (0.0, -0.2, limit, limit + 0.01, 1.5, float("nan")):
        with pytest.raises(ValueError, match=text) as info:
            fn(bad)
        assert "volume_fraction" in str(info.value)
    with pytest.raises(ValueError, match="touching limit"):
        fn(limit)


def test_touching_limits():
    assert geometry.TOUCHING_LIMITS["square"] == pytest.approx(math.pi / 4)
    assert geometry.TOUCHING_LIMITS["hexagonal"] == pytest.approx(math.pi / (2 * math.sqrt(3)))
    assert geometry.TOUCHING_LIMITS["cubic"] == pytest.approx(math.pi / 6)
    assert geometry.TOUCHING_LIMITS["laminate"] == 1.0
    assert 0.5 < geometry.TOUCHING_LIMITS["random"] < 0.6
    with pytest.raises(ValueError, match=r"pi/4 = 0\.785398 of the square array"):
        geometry.square(0.8)


def test_bad_other_arguments():
    with pytest.raises(ValueError, match="mesh_size"):
        geometry.square(0.3, mesh_size=0.0)
    with pytest.raises(ValueError, match="mesh_size"):
        geometry.cubic(0.3, mesh_size=-0.1)
    with pytest.raises(ValueError, match="mesh_size"):
        geometry.random(0.3, mesh_size=-1)
    with pytest.raises(ValueError, match="dim"):
        geometry.laminate(0.3, dim=1)
    with pytest.raises(ValueError, match="num_inclusions"):
        geometry.random(0.3, num_inclusions=0)
    with pytest.raises(ValueError, match="num_inclusions"):
        geometry.random(0.3, num_inclusions=2.5)
    with pytest.raises(ValueError, match="min_gap"):
        geometry.random(0.3, min_gap=-0.01)
    with pytest.raises(ValueError, match=".msh"):
        geometry.square(0.3, msh_file="cell.vtk")


# ----------------------------------------------------------------------------- random


def test_random_reproducible():
    a = geometry.random(0.3, num_inclusions=6, seed=11, mesh_size=0.07)
    b = geometry.random(0.3, num_inclusions=6, seed=11, mesh_size=0.07)
    c = geometry.random(0.3, num_inclusions=6, seed=12, mesh_size=0.07)
    assert a.description["centres"] == b.description["centres"]
    assert a.num_cells == b.num_cells
    assert np.array_equal(a.mesh.geometry.x, b.mesh.geometry.x)
    assert not np.allclose(a.description["centres"], c.description["centres"])
    assert a.description["seed"] == 11


@pytest.mark.parametrize(("n", "f", "seed"), [(10, 0.45, 0), (25, 0.4, 1), (3, 0.5, 7)])
def test_random_discs_do_not_overlap(n, f, seed):
    cell = geometry.random(f, num_inclusions=n, seed=seed, mesh_size=0.05)
    d = cell.description
    centres, r, gap = np.array(d["centres"]), d["radius"], d["requested_min_gap"]
    assert centres.shape == (n, 2)
    assert np.all((centres >= 0) & (centres < 1))
    assert r == pytest.approx(math.sqrt(f / (n * math.pi)))
    distances = [
        periodic_distance(centres[i], centres[j], (1.0, 1.0))
        for i in range(n)
        for j in range(i + 1, n)
    ]
    assert min(distances) >= 2 * r + gap - 1e-12
    assert d["min_gap"] >= gap - 1e-12
    # No circle runs close to a side line or corner without crossing it clearly.
    side = np.minimum(centres, 1 - centres)
    assert np.all(np.abs(side - r) >= 0.1 * r - 1e-12)
    assert np.all(np.abs(np.hypot(side[:, 0], side[:, 1]) - r) >= 0.1 * r - 1e-12)
    assert abs(cell.volume_fraction / f - 1) < 5e-3


def test_random_jammed_raises():
    with pytest.raises(RuntimeError, match="seed"):
        geometry.random(0.545, num_inclusions=12, seed=0, min_gap=0.02)


# ----------------------------------------------------------------------------- .msh files


def _write_square_with_disc(path, periodic, shift=(0.0, 0.0), tags=True):
    """Write a unit square with a disc, meshed with or without setPeriodic."""
    import gmsh

    with msh.gmsh_session("test") as saved:
        occ = gmsh.model.occ
        box = occ.addRectangle(shift[0], shift[1], 0, 1, 1)
        disc = occ.addDisk(shift[0] + 0.5, shift[1] + 0.5, 0, 0.3, 0.3)
        _, out_map = occ.fragment([(2, box)], [(2, disc)])
        occ.synchronize()
        inclusion = [t for _, t in out_map[1]]
        matrix = [t for _, t in out_map[0] if t not in inclusion]
        if tags:
            gmsh.model.addPhysicalGroup(2, matrix, 1)
            gmsh.model.addPhysicalGroup(2, inclusion, 2)
        msh.set_option(saved, "Mesh.MeshSizeMax", 0.1)
        # A fine corner makes the two sides x = 0 and x = 1 mesh differently.
        gmsh.model.mesh.setSize(
            gmsh.model.getEntitiesInBoundingBox(
                shift[0] - 1e-6, shift[1] - 1e-6, -1, shift[0] + 1e-6, shift[1] + 1e-6, 1, 0
            ),
            0.01,
        )
        if periodic:
            for axis in (0, 1):
                lo = [shift[0] - 1e-6, shift[1] - 1e-6, -1e-6]
                hi = [shift[0] + 1 + 1e-6, shift[1] + 1 + 1e-6, 1e-6]
                lo[axis] += 1
                slaves = gmsh.model.getEntitiesInBoundingBox(*lo, *hi, 1)
                lo[axis] -= 1
                hi[axis] -= 1
                masters = gmsh.model.getEntitiesInBoundingBox(*lo, *hi, 1)
                t = [0.0, 0.0, 0.0]
                t[axis] = 1.0
                affine = [1, 0, 0, t[0], 0, 1, 0, t[1], 0, 0, 1, t[2], 0, 0, 0, 1]
                gmsh.model.mesh.setPeriodic(
                    1, [s for _, s in slaves], [m for _, m in masters], affine
                )
        gmsh.model.mesh.generate(2)
        msh.set_option(saved, "Mesh.MshFileVersion", 4.1)
        gmsh.write(str(path))


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["square", "laminate3d", "random"])
def test_msh_round_trip(name, tmp_path):
    path = tmp_path / f"{name}_rank{RANK}.msh"
    if name == "square":
        cell = geometry.square(0.4, msh_file=path)
    elif name == "random":
        cell = geometry.random(0.3, num_inclusions=5, seed=2, msh_file=path)
    else:
        cell = geometry.laminate(0.25, dim=3, msh_file=path)
    loaded = msh.load(path)
    assert loaded.geometry == "msh"
    assert loaded.mesh.comm.size == 1
    assert loaded.dim == cell.dim
    assert loaded.lengths == pytest.approx(cell.lengths, rel=1e-14)
    assert loaded.num_cells == cell.num_cells
    assert loaded.phases == {"matrix": 1, "phase_2": 2}
    assert loaded.volume_fraction == pytest.approx(cell.volume_fraction, rel=1e-12)
    assert set(np.unique(loaded.facet_tags.values)) == set(range(1, 2 * cell.dim + 1))
    named = msh.load(path, phases={"matrix": MATRIX, "inclusion": INCLUSION})
    assert named.phase_volumes()["inclusion"] == pytest.approx(
        cell.phase_volumes()["inclusion"], rel=1e-12
    )


@pytest.mark.mpi
def test_msh_periodic_shifted_box_is_translated(tmp_path):
    path = tmp_path / f"shifted_rank{RANK}.msh"
    _write_square_with_disc(path, periodic=True, shift=(2.0, -3.0))
    cell = msh.load(path)
    assert cell.lengths == pytest.approx((1.0, 1.0))
    assert cell.description["origin"] == pytest.approx((2.0, -3.0))
    x = cell.mesh.geometry.x[:, :2]
    assert np.allclose(x.min(axis=0), 0.0, atol=1e-12)
    assert cell.volume_fraction == pytest.approx(math.pi * 0.09, rel=3e-2)
    msh.check_periodic(cell.mesh, cell.lengths, name="shifted")


@pytest.mark.mpi
def test_msh_not_periodic_names_the_face(tmp_path):
    path = tmp_path / f"nonperiodic_rank{RANK}.msh"
    _write_square_with_disc(path, periodic=False)
    with pytest.raises(ValueError, match="not periodic") as info:
        msh.load(path)
    message = str(info.value)
    assert path.name in message
    assert "x = 1 (x-max)" in message and "x = 0 (x-min)" in message
    assert "setPeriodic" in message


@pytest.mark.mpi
def test_check_periodic_detects_moved_node():
    cell = geometry.square(0.3, mesh_size=0.1)
    msh.check_periodic(cell.mesh, cell.lengths, name="square")
    x = cell.mesh.geometry.x
    on_top = np.flatnonzero((np.abs(x[:, 1] - 1.0) < 1e-12) & (x[:, 0] > 0.2) & (x[:, 0] < 0.8))
    x[on_top[0], 0] += 1e-3
    with pytest.raises(ValueError, match=r"1 nodes on the face y = 1 \(y-max\) have no partner"):
        msh.check_periodic(cell.mesh, cell.lengths, name="moved")


def test_msh_errors(tmp_path):
    missing = tmp_path / "nothere.msh"
    with pytest.raises(ValueError, match="nothere.msh.*does not exist"):
        msh.load(missing)

    untagged = tmp_path / f"untagged_rank{RANK}.msh"
    _write_square_with_disc(untagged, periodic=True, tags=False)
    with pytest.raises(ValueError, match="Physical Surface"):
        msh.load(untagged)

    good = tmp_path / f"good_rank{RANK}.msh"
    _write_square_with_disc(good, periodic=True)
    with pytest.raises(ValueError, match=r"phase tag\(s\) \[3\].*present are \[1, 2\]"):
        msh.load(good, phases={"matrix": 1, "inclusion": 3})
    with pytest.raises(ValueError, match=r"tag\(s\) \[2\] that are not in phases"):
        msh.load(good, phases={"matrix": 1})
    cell = msh.load(good, phases={"host": 1, "fibre": 2})
    assert cell.phases == {"host": 1, "fibre": 2}


def test_gmsh_state_of_caller_is_kept():
    import gmsh

    started = not gmsh.isInitialized()
    if started:
        gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("caller_model")
        gmsh.model.occ.addBox(0, 0, 0, 1, 1, 1)
        gmsh.model.occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.321)
        cell = geometry.square(0.3, mesh_size=0.1)
        assert cell.num_cells > 0
        assert gmsh.isInitialized()
        assert gmsh.model.getCurrent() == "caller_model"
        assert gmsh.model.getEntities(3) == [(3, 1)]
        assert gmsh.option.getNumber("Mesh.MeshSizeMax") == 0.321
    finally:
        if started:
            gmsh.finalize()
