"""``diffphase diagnose`` command line: outputs, JSON keys, errors (THEORY E)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from diffphase.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def score_module(tmp_path, monkeypatch):
    (tmp_path / "fields_user_scores.py").write_text(textwrap.dedent("""
        import numpy as np
        def isotropic(x, t):
            return -x / (1.0 + t)
        def wrong_shape(x, t):
            return x[:, :1]
        def with_nan(x, t):
            return np.full_like(x, np.nan)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fields_user_scores"
    sys.modules.pop("fields_user_scores", None)


def test_linear_manifold_json_and_files(tmp_path, capsys):
    code, out, _ = run(["diagnose", "--model", "linear-manifold", "--times", "0.1,0.5,1",
                        "--subspace", "orthonormal", "--variances", "4,0.25", "--points", "3",
                        "--out", str(tmp_path), "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    points = summary["time_points"]
    assert [p["t"] for p in points] == [1.0, 0.5, 0.1]
    for p in points:
        assert {"t", "singular_values", "local_dimension", "nonconservativeness"} <= set(p)
        assert p["nonconservativeness"] < 1e-12
    # d = 16, groups of 2 (variance 4) and 2 (variance 1/4): tau = 1, 0.5 -> 2; tau = 0.1 -> 4
    assert [p["local_dimension"] for p in points] == [2, 2, 4]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"fields_diagnose.csv", "fields_diagnose_summary.csv", "fields_diagnose.json",
            "fields_diagnose.png"} <= names
    header = (tmp_path / "fields_diagnose.csv").read_text().splitlines()[0]
    assert header.startswith("t_ve,tau,index,singular_value_normalized")
    sidecar = json.loads((tmp_path / "fields_diagnose.json").read_text())
    assert sidecar["seed"] == 0 and sidecar["solver"]["jacobian_route"] == "closed-form"
    assert "diffphase_version" in sidecar


def test_user_score_uses_central_differences(tmp_path, capsys, score_module):
    code, out, _ = run(["diagnose", "--score", f"{score_module}:isotropic", "--dim", "3",
                        "--times", "0.5,2", "--points", "2", "--out", str(tmp_path), "--json"],
                       capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["solver"]["jacobian_route"] == "central"
    for p in summary["time_points"]:  # Jn = -t/(1+t) I in ve
        np.testing.assert_allclose(p["singular_values"], [p["t"] / (1 + p["t"])] * 3, rtol=1e-7)


def test_rotation_is_seen_in_the_tangent_block(tmp_path, capsys):
    code, out, _ = run(["diagnose", "--model", "linear-manifold", "--rotation", "0.3",
                        "--times", "0.05", "--points", "2", "--out", str(tmp_path), "--json"],
                       capsys)
    point = json.loads(out)["time_points"][0]
    assert code == 0 and point["nonconservativeness"] > 0.05
    assert point["normal_nonconservativeness"] < 1e-10 < point["tangent_nonconservativeness"]


@pytest.mark.parametrize("args, message", [
    (["--score", "fields_user_scores:wrong_shape", "--dim", "3"], "output shape"),
    (["--score", "fields_user_scores:with_nan", "--dim", "3"], "non-finite"),
    (["--score", "no_such_module_xyz:f", "--dim", "3"], "importable module"),
    (["--score", "fields_user_scores:isotropic"], "--dim"),
    ([], "exactly one"),
    (["--model", "linear-manifold", "--times", "-1"], "t"),
    (["--model", "linear-manifold", "--threshold", "0"], "--threshold"),
    (["--model", "linear-manifold", "--device", "gpu"], "--device"),
    (["--score", "fields_user_scores:isotropic", "--dim", "3", "--device", "gpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, score_module, args, message):
    code, _, err = run(["diagnose", *args, "--out", str(tmp_path)], capsys)
    assert code == 2
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fields_diagnose.csv").exists()


def test_no_overwrite_without_force(tmp_path, capsys):
    argv = ["diagnose", "--model", "linear-manifold", "--times", "1", "--points", "1",
            "--out", str(tmp_path)]
    assert run(argv, capsys)[0] == 0
    code, _, err = run(argv, capsys)
    assert code == 2 and "--force" in err
    assert run(argv + ["--force"], capsys)[0] == 0
