"""Command line of the spectral model: the JSON contract, files, errors, overwrite protection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from diffphase.cli import cli, main


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_spectrum_json_contract(tmp_path):
    result = run(
        [
            "spectrum",
            "--fractions",
            "0.2,0.2",
            "--variances",
            "1,0.09",
            "--tau",
            "0.1",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert result.exit_code == 0
    summary = json.loads(result.output)
    for key in ("tau", "edges", "manifold_gap", "intermediate_gaps", "phase", "dimension"):
        assert key in summary
    assert summary["tau"] == 0.1 and summary["phase"] == "coverage"
    edges = summary["edges"]
    assert len(edges) == 2 and all(lo < hi for lo, hi in edges) and edges[0][1] < edges[1][0]
    (gap,) = summary["intermediate_gaps"]
    assert set(gap) >= {"width", "tau_max", "window"} and gap["window"][0] < gap["window"][1]
    for name in (
        "spectrum_covariance.csv",
        "spectrum_jacobian.csv",
        "spectrum.json",
        "spectrum.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_spectrum_time_in_ou(tmp_path):
    result = run(
        [
            "spectrum",
            "--t",
            "0.5",
            "--process",
            "ou",
            "--out",
            str(tmp_path),
            "--json",
            "--subspace",
            "orthonormal",
        ]
    )
    summary = json.loads(result.output)
    assert summary["tau"] == pytest.approx(2.718281828459045 - 1)
    assert summary["edges"] == [[0.09, 0.09], [1.0, 1.0]]


def test_refuses_to_overwrite_without_force(tmp_path):
    args = ["spectrum", "--tau", "0.1", "--out", str(tmp_path)]
    assert run(args).exit_code == 0
    before = (tmp_path / "spectrum.json").read_text()
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert (tmp_path / "spectrum.json").read_text() == before
    assert run(args + ["--force"]).exit_code == 0


@pytest.mark.parametrize(
    "args,word",
    [
        (["--variances", "1,-0.09"], "variances"),
        (["--fractions", "0.7,0.5"], "fractions"),
        (["--fractions", "0.2"], "fractions"),
        (["--tau", "-1"], "tau"),
        (["--t", "0", "--process", "ou"], "t"),
        (["--tau", "0.1", "--process", "heat"], "process"),
        (["--tau", "0.1", "--delta", "2"], "delta"),
        (["--fractions", "a,b"], "fractions"),
        (["--law", "uniform:2,1"], "--law"),
        (["--law", "cauchy:0.1,1"], "--law"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, args, word):
    full = ["spectrum", "--out", str(tmp_path / "o")] + args
    if "--tau" not in args and "--t" not in args:
        full += ["--tau", "0.1"]
    proc = subprocess.run(
        [sys.executable, "-m", "diffphase", *full], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing written before the error


def test_phase_diagram_spectral_writes_csv_json_png(tmp_path):
    result = run(
        [
            "phase-diagram",
            "spectral",
            "--out",
            str(tmp_path),
            "--n-tau",
            "21",
            "--n-rows",
            "6",
            "--json",
        ]
    )
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert set(summary["alpha_time"]["phase_fractions"]) == {"trivial", "coverage", "consolidation"}
    header = (tmp_path / "phase_spectral_ratio.csv").read_text().splitlines()[0].split(",")
    assert {"variance_ratio", "tau", "t_ou", "phase", "intermediate_gap"} <= set(header)
    assert len((tmp_path / "phase_spectral_alpha.csv").read_text().splitlines()) == 6 * 21 + 1
    meta = json.loads((tmp_path / "phase_spectral.json").read_text())
    assert meta["diffphase_version"] and meta["parameters"]["delta"] == 0.1


def test_validate_unknown_model_is_an_input_error():
    with pytest.raises(SystemExit) as info:
        main(["validate", "--model", "nope"])
    assert info.value.code == 2


def test_continuous_law(tmp_path):
    result = run(
        [
            "spectrum",
            "--law",
            "uniform:0.2,1",
            "--alpha",
            "0.3",
            "--tau",
            "0.05",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    summary = json.loads(result.output)
    assert summary["n_bulks"] == 1 and summary["alpha"] == pytest.approx(0.3)
    assert summary["convergence"]["covariance"]["failed"] == 0
    meta = json.loads((tmp_path / "spectrum.json").read_text())
    assert meta["parameters"]["law"] == "uniform:0.2,1" and meta["solver"]["tol"] > 0
