"""Sphinx extension: the demos become the tutorials, with their output and pictures.

At ``builder-inited`` every ``demos/demo_NAME.py`` (a jupytext "light" script) is converted to
a Markdown page ``docs/generated/tutorials/NAME.md`` by jupytext. The page ends with what the
demo printed and the pictures it wrote when ``docs/_tools/run_demos.py`` ran it at its test
size, and with ParaView's renderings of its VTX files (``docs/_tools/paraview_check.py``).
``docs/generated/paraview.md`` gathers the ParaView table and renderings of all demos.

A demo without outputs is a warning (an error under ``-W``) that says how to produce them:
the pages are never built from stale or missing results silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def _markdown_of(demo: Path) -> str:
    import jupytext

    notebook = jupytext.read(demo)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith("# #"):
            # jupytext reads a comment line that starts like an IPython shell command
            # ("# copy ...", "# cd ...", "# time ...") as commented code, and then the
            # whole block, heading included, as code.
            logger.warning(
                f"{demo.name}: the text block starting {cell.source.splitlines()[0]!r} was "
                "read as code by jupytext; reflow it so that no line starts with a word like "
                "copy, cd, ls, time or cat"
            )
    notebook.metadata = {"jupytext": {"notebook_metadata_filter": "-all"}}
    return jupytext.writes(notebook, fmt="md")


def _pictures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png"))


def _generate(app) -> None:
    docs = Path(app.srcdir)
    outputs = Path(app.config.hmm_demo_outputs)
    target = docs / "generated"
    shutil.rmtree(target / "tutorials", ignore_errors=True)  # generated/api is autosummary's
    (target / "tutorials").mkdir(parents=True)
    gallery = ["# Every demo output, opened by ParaView", ""]
    report = outputs / "paraview_report.md"
    if report.exists():
        gallery += [
            "Each VTX file the demos write at their test size was opened by ParaView's own",
            "Python (`pvpython`, ParaView's `ADIOS2VTXReader`) and compared with the same file",
            "read by ADIOS2's Python bindings: the array names, the number of values and the",
            "range of every array at every step. `make check-paraview` runs this check.",
            "",
            report.read_text(),
        ]
    else:
        logger.warning(
            f"no ParaView report in {outputs}: run "
            "`docker/run xvfb-run -a pvpython docs/_tools/paraview_check.py` (make docs does)"
        )
    for demo in sorted((ROOT / "demos").glob("demo_*.py")):
        name = demo.stem.removeprefix("demo_")
        page = [_markdown_of(demo).rstrip(), ""]
        page += [
            "## Run it",
            "",
            f"`hmm-fem demo {name}`, or `python3 demos/{demo.name} [--quick] [--output DIR]`.",
            f"The source is `demos/{demo.name}` in the repository.",
            "",
        ]
        folder = outputs / name
        stdout = folder / "stdout.txt"
        if not stdout.exists():
            logger.warning(
                f"demo {name!r} has no output in {folder}: run "
                "`docker/run xvfb-run -a python3 docs/_tools/run_demos.py` (make docs does)"
            )
        else:
            page += [
                "## Output at the test size",
                "",
                "What the demo printed when it ran with `--quick` for this page:",
                "",
                "```text",
                stdout.read_text().rstrip(),
                "```",
                "",
            ]
            images = target / "tutorials" / name
            pictures = _pictures(folder)
            rendered = _pictures(folder / "paraview")
            if pictures or rendered:
                images.mkdir(parents=True, exist_ok=True)
            for picture in pictures:
                shutil.copy(picture, images / picture.name)
                page += [f"![{picture.stem}]({name}/{picture.name})", ""]
            if rendered:
                page += ["### In ParaView", ""]
                gallery += [f"## {name}", ""]
            for picture in rendered:
                copy = images / f"paraview_{picture.name}"
                shutil.copy(picture, copy)
                page += [f"`{picture.stem}.bp`:", "", f"![{picture.stem}]({name}/{copy.name})", ""]
                gallery += [
                    f"`{picture.stem}.bp`:",
                    "",
                    f"![{name} {picture.stem}](tutorials/{name}/{copy.name})",
                    "",
                ]
        (target / "tutorials" / f"{name}.md").write_text("\n".join(page) + "\n")
    (target / "paraview.md").write_text("\n".join(gallery) + "\n")


def setup(app):
    """Register the configuration value and the page generator."""
    app.add_config_value("hmm_demo_outputs", "", "env")
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
