"""Sphinx configuration for the diffphase documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build imports the package (API pages from docstrings, the command reference from the click
group) and runs every script in ``docs/examples/`` (the gallery), so it needs the package and the
``docs`` extra installed: ``pip install -e ".[docs]"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("MPLBACKEND", "Agg")

import diffphase  # noqa: E402

project = "diffphase"
author = "the diffphase authors"
copyright = "2026, the diffphase authors"
release = diffphase.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_click",
    "diffphase_docs",
]

exclude_patterns = ["_build", "_generated", "examples", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"
nitpicky = False

# numpy-style docstrings: their sections are rendered by diffphase_docs.process_docstring
# (the package writes "name : description", which napoleon and numpydoc read as a type)

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# the gallery: every script runs at build time (diffphase_docs.RunExample)
diffphase_example_timeout = 120

html_theme = "alabaster"
html_title = f"diffphase {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Statistical-physics theory of generative diffusion on structured data",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
