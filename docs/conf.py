"""Sphinx configuration of the hmm-fem documentation site (``make docs``)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package, from the repository
sys.path.insert(0, str(HERE / "_ext"))

import hmm_fem  # noqa: E402

project = "hmm-fem"
author = "the hmm-fem developers"
copyright = "2026, the hmm-fem developers"
version = release = hmm_fem.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "hmm_demos",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_tools", "_ext", "_templates"]
templates_path = ["_templates"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # the README's sections start below level 1 when included

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: autodoc documents the attributes once

html_theme = "sphinx_book_theme"
html_title = f"hmm-fem {release}"
html_theme_options = {"show_toc_level": 2}

# Where docs/_tools/run_demos.py left the demos' outputs (make docs runs it first).
hmm_demo_outputs = str(HERE / "_build" / "demos")

# The README's links are written for the repository; on the site its sections are spread
# over several pages. Each rewrite is checked: a link the README drops is an error here.
README_LINKS = {
    "](#the-environment)": "](/guide/parallel.md#the-environment)",
    "[meshes/README.md](meshes/README.md)": "`meshes/README.md` (in the repository)",
}


def _readme_links(app, path, docname, content):
    if Path(path).name != "README.md":
        return
    for old, new in README_LINKS.items():
        if old not in content[0]:
            from sphinx.util import logging

            logging.getLogger(__name__).warning(
                f"docs/conf.py: the README no longer has the link {old!r}; update README_LINKS"
            )
        content[0] = content[0].replace(old, new)


def setup(app):
    """Rewrite the README's repository links where the site includes it."""
    app.connect("include-read", _readme_links)
