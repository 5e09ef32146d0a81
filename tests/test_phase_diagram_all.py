"""``phase-diagram all``: every model's files claimed before any is drawn, and a rerun resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def _run(*args):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "diffphase", "phase-diagram", "all", *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=600)


def test_an_existing_file_in_the_last_folder_is_refused_before_any_drawing(tmp_path):
    out = tmp_path / "out"
    (out / "sampler").mkdir(parents=True)
    (out / "sampler" / "sampler_phase_diagram.csv").write_text("keep\n")
    proc = _run("--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--force" in proc.stderr
    drawn = [p for p in out.rglob("*") if p.is_file()]
    assert drawn == [out / "sampler" / "sampler_phase_diagram.csv"]
    assert (out / "sampler" / "sampler_phase_diagram.csv").read_text() == "keep\n"


@pytest.mark.slow
def test_a_rerun_draws_only_the_missing_models(tmp_path):
    out = tmp_path / "out"
    first = _run("--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    models = sorted(json.loads(first.stdout)["diagrams"])
    assert json.loads(first.stdout)["skipped"] == [] and len(models) == 5
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
            and p.parent.name != "sampler"}
    shutil.rmtree(out / "sampler")
    second = _run("--out", str(out), "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert sorted(summary["skipped"]) == [m for m in models if m != "sampler"]
    assert list(summary["diagrams"]) == ["sampler"]
    assert "skipped" in second.stderr
    assert (out / "sampler" / "sampler_phase_diagram.json").exists()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the others were not rewritten
