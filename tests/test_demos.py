"""Every demo runs at a small size and passes its own checks, serially and on 2 ranks."""

import runpy
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

DEMOS = sorted((Path(__file__).parent.parent / "demos").glob("demo_*.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("demo", DEMOS, ids=[d.stem for d in DEMOS])
def test_demo(demo, tmp_path, capsys, monkeypatch):
    # In process (as `mpirun -n 2 python3 demos/demo_X.py` would run it): a subprocess
    # started from an MPI rank would inherit the job's Open MPI environment.
    comm = MPI.COMM_WORLD
    output = Path(comm.bcast(str(tmp_path), root=0)) / "output"  # one folder for all ranks
    monkeypatch.setattr(sys, "argv", [str(demo), "--quick", "--output", str(output)])
    try:
        runpy.run_path(str(demo), run_name="__main__")
    except SystemExit as stop:
        pytest.fail(f"{demo.name} exited with {stop.code!r}:\n{capsys.readouterr().out}")
    comm.barrier()
    if comm.rank == 0:  # demos report and write on rank 0; every rank checks its exit
        assert "all checks passed" in capsys.readouterr().out
        assert any(output.iterdir())  # results for ParaView (.bp) or pictures
