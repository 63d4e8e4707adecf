"""ParaView opens what we write: the check behind `make check-paraview`, and `hmm-fem paraview`.

`make check-paraview` (and `make docs`) run every demo, record each VTX file with ADIOS2's
Python bindings (docs/_tools/run_demos.py) and open it in ParaView's own Python
(docs/_tools/paraview_check.py). Here both halves run on one small file whose values are
known exactly, and on a record tampered with, which the check must reject.
"""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

TOOLS = Path(__file__).parent.parent / "docs" / "_tools"
PVPYTHON = shutil.which("pvpython")


def _run_demos_module():
    spec = importlib.util.spec_from_file_location("run_demos", TOOLS / "run_demos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_vtx(folder: Path) -> None:
    """u = x + 2y (P1) and a cell-wise vector (DG0) on the unit square, two steps."""
    from dolfinx import fem, io, mesh

    domain = mesh.create_unit_square(MPI.COMM_SELF, 4, 3)
    u = fem.Function(fem.functionspace(domain, ("Lagrange", 1)), name="u")
    w = fem.Function(fem.functionspace(domain, ("DG", 0, (2,))), name="w")
    with io.VTXWriter(MPI.COMM_SELF, folder / "p1.bp", [u]) as writer:
        for t, scale in ((0.0, 1.0), (0.5, 2.0)):
            u.interpolate(lambda x, s=scale: s * (x[0] + 2 * x[1]))
            writer.write(t)
    with io.VTXWriter(MPI.COMM_SELF, folder / "dg0.bp", [w]) as writer:
        w.interpolate(lambda x: np.vstack([x[0], -x[1]]))
        writer.write(0.0)


def _check(root: Path):
    done = subprocess.run(
        [PVPYTHON, str(TOOLS / "paraview_check.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(PVPYTHON is None, reason="ParaView's pvpython is not installed")
def test_paraview_check_accepts_a_faithful_file_and_rejects_a_wrong_record(tmp_path):
    demo = tmp_path / "demos" / "tiny"
    demo.mkdir(parents=True)
    _write_vtx(demo)
    read_vtx = _run_demos_module().read_vtx
    manifest = {name: read_vtx(demo / name) for name in ("p1.bp", "dg0.bp")}

    # The ADIOS2 record holds the exact values: u = s (x + 2y) on the unit square.
    steps = manifest["p1.bp"]["steps"]
    assert [s["time"] for s in steps] == [0.0, 0.5]
    assert [s["arrays"]["u"]["size"] for s in steps] == [20, 20]  # 5 x 4 vertices
    assert steps[1]["arrays"]["u"]["max"] == pytest.approx(6.0, abs=1e-14)
    (demo / "manifest.json").write_text(json.dumps(manifest))

    code, out = _check(tmp_path / "demos")
    assert code == 0, out
    report = json.loads((tmp_path / "demos" / "paraview_report.json").read_text())
    assert {(r["file"], r["steps"], r["ok"]) for r in report} == {
        ("p1.bp", 2, True),
        ("dg0.bp", 1, True),
    }
    assert (demo / "paraview" / "p1.png").stat().st_size > 1000

    # A wrong range at the second step and a lost array are both named.
    steps[1]["arrays"]["u"]["max"] = 6.5
    manifest["dg0.bp"]["steps"][0]["arrays"]["v"] = dict(
        manifest["dg0.bp"]["steps"][0]["arrays"]["w"]
    )
    (demo / "manifest.json").write_text(json.dumps(manifest))
    code, out = _check(tmp_path / "demos")
    assert code == 1
    assert "p1.bp step 1 (t = 0.5), array 'u': range" in out
    assert "arrays written but not shown by ParaView: ['v']" in out


@pytest.mark.skipif(PVPYTHON is None, reason="ParaView's pvpython is not installed")
def test_hmm_fem_paraview_renders_one_png_per_vtx_file(tmp_path, capsys):
    from hmm_fem.cli import main

    results = tmp_path / "results"
    (results / "sub").mkdir(parents=True)
    _write_vtx(results / "sub")
    assert main(["paraview", str(results), "--png", str(tmp_path / "views")]) == 0
    import matplotlib.image

    for name in ("p1", "dg0"):
        image = matplotlib.image.imread(tmp_path / "views" / "sub" / f"{name}.png")
        assert image.shape[:2] == (480, 640)
        # A rendered field, not an empty view: many colours (the colour map and the bar).
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_hmm_fem_paraview_errors_name_the_folder(tmp_path, capsys):
    from hmm_fem.cli import main

    assert main(["paraview", str(tmp_path / "missing")]) == 2
    assert f"no folder {tmp_path / 'missing'}" in capsys.readouterr().err
    assert main(["paraview", str(tmp_path), "--png", str(tmp_path / "out")]) == 2
    assert f"{tmp_path} holds no VTX folder (*.bp)" in capsys.readouterr().err
