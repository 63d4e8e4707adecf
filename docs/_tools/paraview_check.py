"""Open every VTX file the demos wrote in ParaView itself, check it and render it.

Usage (ParaView's own Python; ``make check-paraview`` and ``make docs`` call it)::

    pvpython docs/_tools/paraview_check.py [docs/_build/demos]

It reads the folders that ``run_demos.py`` filled. For every ``*.bp`` listed in a demo's
``manifest.json`` (the arrays as ADIOS2 read them, step by step), ParaView's
``ADIOS2VTXReader`` opens the file and, at every step:

- the array names it shows are those the manifest lists (no array lost, none invented);
- each array has as many values (tuples x components) as were written;
- each array's range (over all components) equals the written range to 1e-12 relative, and
  every written value was finite.

The last step is rendered to ``<demo>/paraview/<file>.png`` by the view users get with
``hmm-fem paraview FOLDER --png DIR`` (:mod:`hmm_fem.io.paraview_view`).
``paraview_report.json`` and ``paraview_report.md`` (the table of the docs page) go into the
demos folder. The exit code is 1 if any check failed, and every failure is printed with the
file, step and array it concerns.
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

from paraview import simple  # pvpython only

ROOT = Path(__file__).resolve().parents[2]
# hmm_fem/io/paraview_view.py imports nothing from hmm-fem: load it without the package.
_spec = importlib.util.spec_from_file_location(
    "paraview_view", ROOT / "hmm_fem" / "io" / "paraview_view.py"
)
VIEW = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(VIEW)

RELATIVE = 1e-12


def _close(a, b):
    return abs(a - b) <= RELATIVE * max(1.0, abs(a), abs(b))


def _arrays(reader):
    """{name: (association, components, tuples, min, max)} as ParaView shows them."""
    shown = {}
    info = reader.GetDataInformation()
    for association, arrays, count in (
        ("POINTS", reader.PointData, info.GetNumberOfPoints()),
        ("CELLS", reader.CellData, info.GetNumberOfCells()),
    ):
        for name in arrays.keys():
            if name.startswith("vtk"):  # ghost flags and original ids: bookkeeping
                continue
            array = arrays[name]
            ncomp = array.GetNumberOfComponents()
            ranges = [array.GetRange(c) for c in range(ncomp)]
            shown[name] = (
                association,
                ncomp,
                count,
                min(r[0] for r in ranges),
                max(r[1] for r in ranges),
            )
    return shown


def check_file(path, record, picture):
    """Check one VTX folder against its manifest record; returns a list of failures."""
    failures = []
    reader = simple.ADIOS2VTXReader(FileName=str(path))
    values = reader.TimestepValues  # a list, one float, or empty (no time information)
    times = [float(values)] if isinstance(values, (int, float)) else list(values) or [0.0]
    steps = record["steps"]
    if len(times) != len(steps):
        failures.append(f"{path}: ParaView shows {len(times)} steps, {len(steps)} were written")
    for index, (t, written) in enumerate(zip(times, steps)):
        reader.UpdatePipeline(t)
        shown = _arrays(reader)
        where = f"{path} step {index} (t = {t:g})"
        missing = sorted(set(written["arrays"]) - set(shown))
        extra = sorted(set(shown) - set(written["arrays"]))
        if missing:
            failures.append(f"{where}: arrays written but not shown by ParaView: {missing}")
        if extra:
            failures.append(f"{where}: arrays shown by ParaView but not written: {extra}")
        for name, w in written["arrays"].items():
            if name not in shown:
                continue
            _, ncomp, count, lo, hi = shown[name]
            if ncomp * count != w["size"]:
                failures.append(
                    f"{where}, array {name!r}: {count} tuples x {ncomp} components in "
                    f"ParaView, {w['size']} values written"
                )
            if not w["finite"]:
                failures.append(f"{where}, array {name!r}: the file holds NaN or inf")
            elif not (_close(lo, w["min"]) and _close(hi, w["max"])):
                failures.append(
                    f"{where}, array {name!r}: range [{lo:.17g}, {hi:.17g}] in ParaView, "
                    f"[{w['min']:.17g}, {w['max']:.17g}] written"
                )
    arrays = sorted(_arrays(reader))
    simple.Delete(reader)
    if arrays:
        VIEW.render_png(path, picture)  # the view users get from `hmm-fem paraview --png`
    return failures, len(times), arrays


def main(argv):
    """Check every demo folder under argv[1] (default docs/_build/demos)."""
    root = Path(argv[1] if len(argv) > 1 else "docs/_build/demos").resolve()
    manifests = sorted(root.glob("*/manifest.json"))
    if not manifests:
        print(f"no demo outputs under {root}: run docs/_tools/run_demos.py first")
        return 1
    report, failures = [], []
    for manifest in manifests:
        demo = manifest.parent
        for relative, record in json.loads(manifest.read_text()).items():
            start = time.perf_counter()
            picture = demo / "paraview" / (Path(relative).stem + ".png")
            found, nsteps, arrays = check_file(demo / relative, record, picture)
            failures += found
            report.append(
                {
                    "demo": demo.name,
                    "file": relative,
                    "steps": nsteps,
                    "arrays": arrays,
                    "picture": str(picture.relative_to(root)) if picture.exists() else None,
                    "ok": not found,
                    "seconds": round(time.perf_counter() - start, 3),
                }
            )
            print(f"{'ok' if not found else 'FAILED':6s} {demo.name}/{relative}", flush=True)
    (root / "paraview_report.json").write_text(json.dumps(report, indent=1))
    rows = ["| demo | file | steps | arrays | ParaView |", "|---|---|---|---|---|"]
    rows += [
        f"| {r['demo']} | `{r['file']}` | {r['steps']} | {', '.join(r['arrays'])} | "
        f"{'opened, arrays and ranges match' if r['ok'] else '**failed**'} |"
        for r in report
    ]
    (root / "paraview_report.md").write_text("\n".join(rows) + "\n")
    for failure in failures:
        print(failure)
    print(
        f"ParaView opened {len(report)} files of {len(manifests)} demos: "
        f"{sum(r['ok'] for r in report)} passed, {len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
