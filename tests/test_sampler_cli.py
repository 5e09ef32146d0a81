"""Command line of THEORY D: sampler-error and phase-diagram sampler."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from diffphase.cli import cli, main
from diffphase.solvers import sampler as sv


def test_sampler_error_json_keys_and_values(tmp_path):
    result = CliRunner().invoke(cli, ["sampler-error", "--T", "300", "--dim", "512", "--k", "4",
                                      "--design", "beta", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in ("kl", "kl_tangent", "kl_normal_per_dim", "tv_lower", "tv_upper"):
        assert key in summary
    exact = sv.sampler_error(300, 512, 4, "beta")
    assert summary["kl"] == pytest.approx(exact.kl, rel=1e-12)
    assert summary["kl_normal_per_dim"] == pytest.approx(exact.kl_normal_per_dim, rel=1e-12)
    sidecar = json.loads((tmp_path / "sampler_error.json").read_text())
    assert sidecar["parameters"]["design"] == "beta" and "diffphase_version" in sidecar
    assert (tmp_path / "sampler_error.csv").read_text().startswith("direction,")
    assert (tmp_path / "sampler_error.png").exists()
    again = CliRunner().invoke(cli, ["sampler-error", "--T", "300", "--out", str(tmp_path)])
    assert again.exit_code != 0  # no overwrite without --force


def test_sampler_error_custom_design_and_variances(tmp_path):
    args = ["sampler-error", "--T", "200", "--dim", "64", "--k", "2", "--variances", "1,1",
            "--design", "custom", "--eta-scale", "1", "--sigma2-scale", "1", "--json",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    star = sv.sampler_error(200, 64, 2, "star", variances=[1.0, 1.0])
    assert json.loads(result.output)["kl"] == pytest.approx(star.kl, rel=1e-12)


@pytest.mark.parametrize("args, fragment", [
    (["--T", "1"], "T"), (["--k", "9", "--dim", "4"], "k"),
    (["--k", "2", "--variances", "1,-1"], "variances"), (["--T", "6"], "li-yan schedule beta"),
    (["--design", "custom", "--sigma2-scale", "-1"], "--sigma2-scale"),
])
def test_bad_input_exits_2_with_one_line(args, fragment, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sampler-error", *args, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


def test_phase_diagram_sampler_small(tmp_path):
    result = CliRunner().invoke(cli, ["phase-diagram", "sampler", "--T-min", "20", "--T-max", "400",
                                      "--n-T", "4", "--dims", "8,64,512", "--k", "4", "--json",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["configurations"] == 4 * 3 * 4
    assert summary["fits"]["star"]["kl_slope"] < 0
    for ext in ("csv", "json", "png"):
        assert (tmp_path / f"sampler_phase_diagram.{ext}").exists()
    header = (tmp_path / "sampler_phase_diagram.csv").read_text().splitlines()[0]
    assert header.startswith("T_steps,dim,k,design")
