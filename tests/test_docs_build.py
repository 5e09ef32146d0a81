"""The documentation builds with warnings as errors (skipped where Sphinx is not installed).

The build runs every gallery script in ``docs/examples/`` and renders the API pages from the
docstrings, so it fails on a broken example or an invalid docstring. It takes a minute or two
on two cores; ``.ci/docs`` runs the same build from the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[docs]')")
pytest.importorskip("sphinx_click", reason="sphinx-click is not installed "
                                           "(pip install -e '.[docs]')")


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in ("index.html", "cli.html", "references.html", "gallery/spectral.html",
                 "api/generated/diffphase.solvers.spectral.html"):
        assert (out / page).is_file(), page
    gallery = (out / "gallery" / "hierarchy.html").read_text(encoding="utf-8")
    assert "eps* = 0.800" in gallery  # the script's printed output is on the page
