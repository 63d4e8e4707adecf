"""Benchmark: the cold start of ``hmm-fem cell conductivity`` on the default 2D cell.

The command (the README's example: square array, f = 0.4, contrast 10, P1, default mesh)::

    python3 -m hmm_fem cell conductivity --geometry square --volume-fraction 0.4 \\
        --matrix 1 --inclusion 10 --json

runs as a new process ``--repeat`` times, with a warm JIT cache and a warm cell cache (one
unmeasured run first fills both). Measured: the wall time from the start of the process to
its JSON line on stdout, and to its exit. The same with ``--no-cache`` (the cell meshed
with gmsh), and the start-up pieces alone (the interpreter, loading MPI with and without
UCX's memory hooks, DOLFINx, gmsh), so the output says where the time goes.

The last line is ``cli cold: X.XX s``: the median time to the printed JSON (target
<= 1.5 s). Run: ``make bench`` or ``docker/run python3 benchmarks/cli_start.py``.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--repeat", type=int, default=7, help="runs of each command")
args = parser.parse_args()

COMMAND = [sys.executable, "-m", "hmm_fem", "cell", "conductivity", "--geometry", "square",
           "--volume-fraction", "0.4", "--matrix", "1", "--inclusion", "10", "--json"]  # fmt: skip
ENV = {k: v for k, v in os.environ.items() if k != "UCX_MEM_EVENTS"}  # as a user has it


def run(command, env=ENV):
    """Wall times (to the first stdout line, to the exit) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()
    printed = time.perf_counter() - start
    rest, err = proc.communicate()
    ended = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{err.decode()}")
    return printed, ended, first + rest


def measure(label, command, env=ENV):
    printed, ended = [], []
    for _ in range(args.repeat):
        p, e, out = run(command, env)
        printed.append(p)
        ended.append(e)
    print(f"{label:<44} {np.median(printed):6.3f} {min(printed):6.3f} {np.median(ended):6.3f}")
    return float(np.median(printed)), out


print(f"load average at start: {os.getloadavg()[0]:.2f}")
run(COMMAND)  # fills the JIT cache and the cell cache
run([*COMMAND, "--no-cache"])
print(f"{'':<44} {'median':>6} {'min':>6} {'exit':>6}  (s, to the printed line / exit)")
python = [sys.executable, "-c"]
measure("python3 -c pass", [*python, "print()"])
measure("import mpi4py.MPI (UCX memory hooks on)", [*python, "from mpi4py import MPI; print()"])
measure(
    "import mpi4py.MPI (UCX_MEM_EVENTS=no)",
    [*python, "from mpi4py import MPI; print()"],
    dict(ENV, UCX_MEM_EVENTS="no"),
)
measure("import dolfinx (UCX_MEM_EVENTS=no)", [*python, "import dolfinx; print()"],
        dict(ENV, UCX_MEM_EVENTS="no"))  # fmt: skip
measure("import gmsh", [*python, "import gmsh; print()"])
measure("hmm-fem --help", [sys.executable, "-m", "hmm_fem", "--help"])
no_cache, _ = measure("hmm-fem cell conductivity --no-cache (gmsh)", [*COMMAND, "--no-cache"])
cold, out = measure("hmm-fem cell conductivity (cell cache)", COMMAND)
print(f"output: {out.decode().strip()[:160]}...")
print(f"load average at end: {os.getloadavg()[0]:.2f}")
print(f"cli cold: {cold:.2f} s")
