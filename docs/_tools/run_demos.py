"""Run every demo at its test size for the documentation site and the ParaView check.

Usage (inside the environment; ``make docs`` calls it)::

    python3 docs/_tools/run_demos.py [--output docs/_build/demos] [--jobs 2] [NAME ...]

For each ``demos/demo_NAME.py`` this runs ``python3 demos/demo_NAME.py --quick --output
OUT/NAME`` and keeps, in ``OUT/NAME``, what the demo wrote plus

- ``stdout.txt``: what it printed (its checks included),
- ``manifest.json``: every VTX folder (``*.bp``) it wrote, read back with ADIOS2's own Python
  bindings (not ParaView): the arrays of each step with their sizes and ranges. The ParaView
  check (``paraview_check.py``) compares what ParaView shows against this record.

A demo that fails, or whose output lacks ``all checks passed``, stops the build with its
output printed: the site is never built from a broken demo.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ROOT / "demos"

# Variables DOLFINx's VTX writer adds beside the functions: the mesh and its bookkeeping.
MESH_VARIABLES = {
    "geometry",
    "connectivity",
    "types",
    "vtkGhostType",
    "vtkOriginalPointIds",
    "NumberOfNodes",
    "NumberOfEntities",
    "NumberOfCells",
    "step",
    "TIME",
}


def read_vtx(folder: Path) -> dict:
    """The arrays of a VTX folder, step by step, as ADIOS2 reads them.

    Args:
        folder: A ``*.bp`` folder written by DOLFINx's ``VTXWriter``.

    Returns:
        ``{"steps": [{"time": t, "arrays": {name: {"size": n, "min": a, "max": b}}}]}``,
        where ``size`` is the number of values (all components) and the range is over all
        of them; ``finite`` says whether every value is finite.
    """
    import adios2
    import numpy as np

    steps = []
    with adios2.FileReader(str(folder)) as reader:
        variables = reader.available_variables()
        names = sorted(n for n in variables if n not in MESH_VARIABLES)
        num_steps = int(reader.num_steps())
        for step in range(num_steps):
            record = {"arrays": {}}
            for name in names:
                values = np.asarray(reader.read(name, step_selection=[step, 1]), dtype=float)
                finite = bool(np.all(np.isfinite(values)))
                record["arrays"][name] = {
                    "size": int(values.size),
                    "min": float(np.nanmin(values)) if values.size else 0.0,
                    "max": float(np.nanmax(values)) if values.size else 0.0,
                    "finite": finite,
                }
            if "step" in variables:
                record["time"] = float(
                    np.asarray(reader.read("step", step_selection=[step, 1])).ravel()[0]
                )
            steps.append(record)
    return {"steps": steps}


def run_demo(path: Path, output: Path) -> tuple[str, float, str | None]:
    """Run one demo at its test size; returns (name, seconds, error or None)."""
    name = path.stem.removeprefix("demo_")
    folder = output / name
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(path), "--quick", "--output", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    (folder / "stdout.txt").write_text(done.stdout)
    if done.returncode != 0 or "all checks passed" not in done.stdout:
        return name, seconds, (
            f"demo {path.name} failed (exit code {done.returncode}); its output:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    manifest = {
        str(bp.relative_to(folder)): read_vtx(bp) for bp in sorted(folder.rglob("*.bp"))
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return name, seconds, None


def main(argv: list[str] | None = None) -> int:
    """Run the demos (all, or the named ones); exit code 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="demo names (default: every demo)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "_build" / "demos"))
    parser.add_argument("--jobs", type=int, default=2, help="demos run at the same time")
    args = parser.parse_args(argv)
    paths = sorted(DEMOS.glob("demo_*.py"))
    if args.names:
        known = {p.stem.removeprefix("demo_"): p for p in paths}
        unknown = sorted(set(args.names) - set(known))
        if unknown:
            parser.error(f"no demo named {', '.join(unknown)}; available: {', '.join(known)}")
        paths = [known[n] for n in args.names]
    output = Path(args.output).resolve()
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, seconds, error in pool.map(lambda p: run_demo(p, output), paths):
            print(f"{'FAILED' if error else 'ok':6s} {name:28s} {seconds:6.1f} s", flush=True)
            if error:
                failures.append(error)
    for error in failures:
        print(error, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
