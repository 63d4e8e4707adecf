"""Curved (second-order, isoparametric) cells and the cell cache.

The reference is Rayleigh's multipole solution of the square array
(:func:`hmm_fem.references.rayleigh_square_array`, converged to 1e-14 relative at the
default order; it reproduces the 6 digits of Perrins, McKenzie & McPhedran 1979).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from hmm_fem import cells, cli
from hmm_fem.geometry import cache, generators
from hmm_fem.references import rayleigh_square_array

F, K_M, K_I = 0.5, 1.0, 10.0  # the square array of issue 14
REFERENCE = rayleigh_square_array(K_M, K_I, F)


def k_error(cell, degree):
    """Relative error of K* (the mean of the diagonal) against Rayleigh's value."""
    problem = cells.ConductivityCell(cell, {"matrix": K_M, "inclusion": K_I}, degree=degree)
    K = problem.effective_tensor()
    problem.destroy()
    return abs(0.5 * (K[0, 0] + K[1, 1]) - REFERENCE) / REFERENCE


def test_curved_p2_converges_at_its_rate_and_straight_p2_does_not():
    """Halving every element size: curved P2 gains at least 2^3, straight P2 about 2^2.

    Straight-sided P2 is limited by the polygonal disc (an O(h^2) error of the area and of
    the interface), curved P2 converges like smooth P2 (K* is an energy, O(h^4)). The
    generator grades the mesh away from the disc at a fixed slope, so the bulk is refined
    by less than 2 and the observed curved rate (3.3 here) is below 4: we ask for > 3,
    well clear of the straight rate 2.
    """
    sizes = (0.035, 0.0175)
    curved = [k_error(cells.square(F, mesh_size=h, order=2), 2) for h in sizes]
    straight = [k_error(cells.square(F, mesh_size=h), 2) for h in sizes]
    rate_curved = math.log2(curved[0] / curved[1])
    rate_straight = math.log2(straight[0] / straight[1])
    assert rate_curved > 3.0, (curved, rate_curved)
    assert 1.5 < rate_straight < 2.5, (straight, rate_straight)
    # Issue 14: <= 1e-7 at the finest test mesh (measured 4.7e-8).
    assert curved[1] <= 1e-7
    assert all(c < s / 100 for c, s in zip(curved, straight, strict=True))


def test_coarse_curved_p2_reaches_2e5():
    """The 2e-5 target of issue 14 on a coarse curved cell (710 triangles, 1469 dofs)."""
    assert k_error(cells.square(F, mesh_size=0.14, order=2), 2) < 2e-5


def interface_nodes(cell):
    """Geometry nodes (vertices and mid-edge nodes) of the facets between the two phases."""
    msh = cell.mesh
    tdim = msh.topology.dim
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    tag = np.full(cell.num_cells, -1)
    tag[cell.cell_tags.indices] = cell.cell_tags.values
    two = np.flatnonzero(np.diff(f2c.offsets) == 2)
    pairs = f2c.array[f2c.offsets[two][:, None] + np.arange(2)]
    facets = two[tag[pairs[:, 0]] != tag[pairs[:, 1]]].astype(np.int32)
    nodes = dmesh.entities_to_geometry(msh, tdim - 1, facets)
    return msh.geometry.x[nodes.ravel(), :2]


def test_curved_cell_nodes_lie_on_the_circle_and_on_matching_faces():
    r = math.sqrt(F / math.pi)
    curved = cells.square(F, mesh_size=0.07, order=2)
    straight = cells.square(F, mesh_size=0.07)
    assert curved.description["order"] == 2 and straight.description["order"] == 1
    assert curved.mesh.geometry.cmaps[0].degree == 2
    # Every interface node, mid-edge ones included, is on the circle.
    nodes = interface_nodes(curved)
    assert len(nodes) % 3 == 0 and len(nodes) > 100  # 3 nodes per interface edge
    assert np.max(np.abs(np.hypot(*(nodes - 0.5).T) - r)) < 1e-12
    # The meshed disc: exact to O(h^4) curved, O(h^2) short straight.
    area = {c.description["order"]: c.phase_volumes()["inclusion"] for c in (curved, straight)}
    assert abs(area[2] - F) < 1e-6 * F
    assert abs(area[2] - F) < abs(area[1] - F) / 100
    # Periodicity node for node, mid-edge nodes included: the P2 dofs on opposite faces.
    x = fem.functionspace(curved.mesh, ("Lagrange", 2)).tabulate_dof_coordinates()
    for axis in (0, 1):
        low = np.sort(x[np.abs(x[:, axis]) < 1e-12, 1 - axis])
        high = np.sort(x[np.abs(x[:, axis] - 1.0) < 1e-12, 1 - axis])
        assert low.size == high.size and low.size % 2 == 1  # vertices and mid-edge nodes
        assert np.max(np.abs(low - high)) < 1e-12


@pytest.mark.parametrize("make", [
    lambda: cells.hexagonal(0.6, mesh_size=0.1, order=2),
    lambda: cells.random(0.4, num_inclusions=4, seed=2, mesh_size=0.1, order=2),
])  # fmt: skip
def test_other_disc_cells_curved(make):
    """Hexagonal and random cells (discs cut by the sides) are curved and periodic too."""
    cell = make()  # the generator checks periodicity of every node (check_periodic)
    assert cell.mesh.geometry.cmaps[0].degree == 2
    assert abs(cell.volume_fraction - cell.target_volume_fraction) < 1e-6


def min_jacobian_ratio(cell):
    """Smallest over largest Jacobian determinant at quadrature points and nodes."""
    import basix
    import ufl

    points, _ = basix.make_quadrature(basix.CellType.triangle, 8)
    points = np.vstack([points, [[0, 0], [1, 0], [0, 1], [0.5, 0], [0.5, 0.5], [0, 0.5]]])
    detj = fem.Expression(ufl.JacobianDeterminant(cell.mesh), points)
    values = detj.eval(cell.mesh, np.arange(cell.num_cells, dtype=np.int32))
    return values.min() / values.max()


def test_cells_inverted_by_curving_are_repaired():
    """A coarse random cell where mid-edge nodes on the circles fold some triangles.

    gmsh's bound of the scaled Jacobian finds them, its elastic optimisation repairs them;
    the repaired mesh has positive Jacobians everywhere (DOLFINx, independently of gmsh),
    stays periodic (the generator checks every node) and gives a symmetric K*.
    """
    cell = cells.random(0.5, num_inclusions=5, seed=5, mesh_size=0.5, order=2)
    assert cell.description["untangled_cells"] > 0
    assert min_jacobian_ratio(cell) > 0.0
    straight = cells.random(0.5, num_inclusions=5, seed=5, mesh_size=0.5)
    assert "untangled_cells" not in straight.description
    problem = cells.ConductivityCell(cell, {"matrix": 1.0, "inclusion": 10.0}, degree=2)
    K = problem.effective_tensor()  # checks symmetry and positive definiteness itself
    assert np.all(np.linalg.eigvalsh(K) > 1.0)  # above the matrix conductivity


@pytest.mark.parametrize("order", [3, 0, True, "2", None])
def test_bad_order_is_refused(order):
    with pytest.raises(ValueError, match="order=.* must be 1 .* or 2"):
        cells.square(0.3, order=order)


# ------------------------------------------------------------------------------ the cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cells"
    monkeypatch.setenv("HMM_FEM_CELL_CACHE", str(folder))
    return folder


def same_cell(a, b):
    assert np.array_equal(a.mesh.geometry.x, b.mesh.geometry.x)
    assert np.array_equal(a.mesh.geometry.dofmaps[0], b.mesh.geometry.dofmaps[0])
    ga, gb = a.mesh.geometry, b.mesh.geometry
    assert np.array_equal(ga.input_global_indices, gb.input_global_indices)
    for tags in ("cell_tags", "facet_tags"):
        assert np.array_equal(getattr(a, tags).indices, getattr(b, tags).indices)
        assert np.array_equal(getattr(a, tags).values, getattr(b, tags).values)
    assert a.description == b.description
    assert (a.lengths, a.geometry, a.phases) == (b.lengths, b.geometry, b.phases)
    assert a.target_volume_fraction == b.target_volume_fraction


@pytest.mark.parametrize("generator, args, kwargs", [
    ("square", (0.5,), {"mesh_size": 0.14, "order": 2}),
    ("random", (0.4,), {"num_inclusions": 3, "seed": 5, "mesh_size": 0.1}),
    ("laminate", (0.3,), {}),
])  # fmt: skip
def test_a_cached_cell_is_the_generated_cell(cache_dir, monkeypatch, generator, args, kwargs):
    fresh = cache.cached_cell(generator, *args, **kwargs)  # a miss: gmsh, model_to_mesh
    assert len(list(cache_dir.glob("*.npz"))) == 1

    def no_gmsh(*args, **kwargs):
        raise AssertionError("the generator ran on a cache hit")

    monkeypatch.setattr(generators, generator, no_gmsh)
    again = cache.cached_cell(generator, *args, **kwargs)  # a hit, rebuilt from the arrays
    same_cell(fresh, again)
    K = [cells.ConductivityCell(c, {"matrix": 1.0, "inclusion": 7.0}).effective_tensor()
         for c in (fresh, again)]  # fmt: skip
    assert np.array_equal(K[0], K[1])  # to the last bit


def test_the_cache_key_follows_the_arguments_and_a_bad_entry_is_replaced(cache_dir):
    a = cache.cached_cell("square", 0.3, mesh_size=0.2)
    b = cache.cached_cell("square", 0.3, mesh_size=0.25)
    assert a.num_cells != b.num_cells and len(list(cache_dir.glob("*.npz"))) == 2
    for entry in cache_dir.glob("*.npz"):
        entry.write_bytes(b"not a cache entry")
    with pytest.warns(UserWarning, match="unreadable.*meshed anew"):
        c = cache.cached_cell("square", 0.3, mesh_size=0.2)  # unreadable: generated again
    same_cell(a, c)
    same_cell(a, cache.cached_cell("square", 0.3, mesh_size=0.2))  # and stored again
    with pytest.raises(ValueError, match="generator='sphere' is not a cell generator"):
        cache.cached_cell("sphere", 0.3)
    with pytest.raises(ValueError, match="volume_fraction"):
        cache.cached_cell("square", 0.9)


def test_msh_file_bypasses_the_cache(cache_dir, tmp_path):
    path = tmp_path / "cell.msh"
    cache.cached_cell("square", 0.3, mesh_size=0.2, msh_file=path)
    assert path.is_file() and not cache_dir.exists()


@pytest.mark.mpi
def test_ranks_writing_the_same_entry_at_once_get_the_same_cell(tmp_path_factory, monkeypatch):
    comm = MPI.COMM_WORLD
    folder = comm.bcast(str(tmp_path_factory.mktemp("cells")) if comm.rank == 0 else None)
    monkeypatch.setenv("HMM_FEM_CELL_CACHE", folder)
    comm.barrier()
    first = cache.cached_cell("square", 0.4, mesh_size=0.1, order=2)  # every rank misses
    comm.barrier()
    second = cache.cached_cell("square", 0.4, mesh_size=0.1, order=2)  # every rank hits
    same_cell(first, second)
    x = comm.allgather(second.mesh.geometry.x)
    assert all(np.array_equal(x[0], xi) for xi in x)
    assert len([p for p in os.listdir(folder) if p.endswith(".npz")]) == 1


# -------------------------------------------------------------------------------- the CLI


def test_cli_curved_cell(capsys, cache_dir):
    args = ["cell", "conductivity", "--geometry", "square", "--volume-fraction", str(F),
            "--matrix", str(K_M), "--inclusion", str(K_I), "--mesh-size", "0.14",
            "--degree", "2", "--curved", "--json"]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    K = np.array(result["tensor"])
    assert abs(0.5 * np.trace(K) - REFERENCE) / REFERENCE < 2e-5
    assert result["degree"] == 2 and result["geometry_order"] == 2
    for where in (["--geometry", "laminate", "--volume-fraction", "0.3"],
                  ["--geometry", "cubic", "--volume-fraction", "0.3"],
                  ["--mesh", "cell.msh"]):  # fmt: skip
        code = cli.main(["cell", "conductivity", *where, "--matrix", "1", "--inclusion", "2",
                         "--curved"])  # fmt: skip
        assert code == 2
        assert "--curved applies to" in capsys.readouterr().err


def test_cli_fast_start_leaves_numba_usable():
    """In a fresh process the cell commands' start-up hides numba from FFCx only."""
    code = (
        "import os, sys; from hmm_fem import cli; cli._fast_start();"
        "import ffcx.codegeneration.utils as u, dolfinx.fem.petsc as p, numba;"
        "print(u.numba is None, hasattr(p.numba_utils, 'MatSetValuesLocal'),"
        " numba.njit(lambda a: a + 1)(1), os.environ['UCX_MEM_EVENTS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "UCX_MEM_EVENTS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "2", "no"]


def test_cli_cell_command_on_a_cached_cell_loads_no_gmsh_scipy_or_numba(tmp_path):
    """The cold-start cuts stay cut: on a cell-cache hit the command imports none of the
    three (gmsh 0.2 s, SciPy 0.2-0.4 s, numba 0.2-0.4 s of a 1-2 s start)."""
    code = (
        "import sys; from hmm_fem import cli;"
        "code = cli.main(['cell', 'conductivity', '--geometry', 'square', '--volume-fraction',"
        " '0.4', '--matrix', '1', '--inclusion', '10', '--mesh-size', '0.2', '--json']);"
        "print(code, [m for m in ('gmsh', 'scipy', 'numba') if m in sys.modules])"
    )
    env = dict(os.environ, HMM_FEM_CELL_CACHE=str(tmp_path))
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        for _ in range(2)
    ]
    for out in runs:
        assert out.returncode == 0, out.stderr
    first, second = (out.stdout.splitlines()[-1] for out in runs)
    assert first == "0 ['gmsh']"  # a miss: meshed with gmsh
    assert second == "0 []"  # a hit
    results = [json.loads(out.stdout.splitlines()[0]) for out in runs]
    assert results[0]["tensor"] == results[1]["tensor"]  # the same K*, to the last bit
