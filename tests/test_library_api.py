"""The library behind the thin commands, called from Python: each function against the command's
output (the same numbers through the CLI) or an independent route (closed forms, invariants)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_allclose

from diffphase.cli import cli
from diffphase.commands.common import option_names
from diffphase.errors import ParameterError
from diffphase.outputs import dumps
from diffphase.solvers import hierarchy as mf
from diffphase.solvers import sampler as sv
from diffphase.solvers import spectral as sp_solver
from diffphase.studies import hierarchy as hd
from diffphase.studies import memorization as md
from diffphase.studies import sampler as sd
from diffphase.studies import spectral as spd
from diffphase.theory import hierarchy as th


def _cli(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _read_csv(path) -> dict[str, list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [row[key] for row in rows] for key in rows[0]}


def _assert_table_matches_csv(table: dict, path) -> None:
    """A library table equals a written CSV column by column (numbers to the CSV's 10 digits)."""
    written = _read_csv(path)
    assert list(written) == list(table)
    for key, values in table.items():
        values = np.asarray(values).ravel()
        assert len(written[key]) == values.size, key
        if values.dtype.kind in "fiu":
            assert_allclose(np.asarray(written[key], dtype=float), values, rtol=1e-9,
                            equal_nan=True, err_msg=key)
        elif values.dtype.kind == "b":
            assert written[key] == ["true" if v else "false" for v in values], key
        else:
            assert written[key] == [str(v) for v in values], key


# ----------------------------------------------------------------------------- option spelling
def test_option_names_respells_mapped_errors_only():
    with pytest.raises(ParameterError, match=r"^invalid --rate-max = 0\.1: allowed > --rate-min"):
        with option_names({"rate_min": "--rate-min", "rate_max": "--rate-max"}):
            raise ParameterError("rate_max", 0.1, "> rate_min = 0.2")
    with pytest.raises(ParameterError, match=r"exactly one of --tau or --t$"):
        with option_names({"tau/t": "--tau/--t", "tau": "--tau"}):
            raise ParameterError("tau/t", {}, "exactly one of tau or t")
    with pytest.raises(ParameterError, match=r"^invalid t = 0\.0: allowed > 0 for the ou"):
        with option_names({"tau/t": "--tau/--t", "tau": "--tau"}):  # "t" alone is not mapped
            raise ParameterError("t", 0.0, "> 0 for the ou process")


# ----------------------------------------------------------------------------- memorization
def test_critical_times_match_the_cli_and_the_isotropic_closed_form(tmp_path):
    summary = md.critical_times([1.0], [1.0], 64, 5000, "ve", "orthonormal")
    assert_allclose(summary["tau_C"], 1.0 / (5000 ** (2 / 64) - 1), rtol=1e-10)
    assert summary["t_C"] == summary["tau_C"]  # ve: t = tau
    printed = json.loads(_cli(["critical-times", "--fractions", "1", "--variances", "1",
                               "--dim", "64", "--n-train", "5000", "--process", "ve",
                               "--subspace", "orthonormal", "--out", str(tmp_path), "--json"]))
    assert printed == json.loads(dumps(summary))
    with pytest.raises(ParameterError, match="^invalid n_train = 1"):
        md.critical_times([1.0], [1.0], 64, 1)


def test_memorization_diagram_table_is_the_cli_csv_and_its_collapse_line_the_closed_form(
        tmp_path):
    rates = md.log_n_per_d_grid(0.02, 0.2, 6, 64)
    assert_allclose(rates, np.geomspace(0.02, 0.2, 6))
    diagram = md.memorization_diagram([1.0], [1.0], 64, rates, "ou", "orthonormal")
    n = np.exp(64 * rates)
    assert_allclose(diagram.lines["collapse"], 1 / (n ** (2 / 64) - 1), rtol=1e-9)
    assert_allclose(diagram.times()["collapse"], 0.5 * np.log1p(diagram.lines["collapse"]))
    _cli(["phase-diagram", "memorization", "--fractions", "1", "--variances", "1", "--dim", "64",
          "--subspace", "orthonormal", "--rate-min", "0.02", "--points", "6",
          "--out", str(tmp_path)])
    _assert_table_matches_csv(diagram.table(), tmp_path / "memorization_diagram.csv")
    with pytest.raises(ParameterError, match="^invalid rate_max"):
        md.log_n_per_d_grid(0.1, 0.05)
    with pytest.raises(ParameterError, match="^invalid rate_min.*ln 2 / d"):
        md.log_n_per_d_grid(0.001, 0.2, 10, 64)


def test_memorization_run_is_the_cli_experiment(tmp_path):
    plan = md.plan_memorization_run("speciation", probes=2, seed=3)
    run = md.run_memorization(plan)
    assert run.group == "series" and run.x_key == "tau" and len(run.columns["tau"]) == 9
    assert np.all(np.asarray(run.columns["same_cluster_predicted"]) <= 1.0)
    _cli(["simulate", "memorization", "--experiment", "speciation", "--probes", "2",
          "--seed", "3", "--out", str(tmp_path)])
    _assert_table_matches_csv(run.columns, tmp_path / "simulate_speciation.csv")
    with open(tmp_path / "simulate_speciation.json") as handle:
        assert json.load(handle)["predictions"] == run.summary()["predictions"]
    with pytest.raises(ParameterError, match="^invalid probes"):
        md.plan_memorization_run(probes=0)
    with pytest.raises(ParameterError, match="^invalid dims = 1"):
        md.plan_memorization_run("collapse", dims=[8, 1])
    with pytest.raises(ParameterError, match="^invalid seed"):
        md.plan_memorization_run(seed=-2)


# ----------------------------------------------------------------------------- hierarchy
def test_hierarchy_thresholds_match_the_cli_and_the_symbolic_critical_noise():
    summary = hd.hierarchy_thresholds(16, 4, 2)
    exact = float(th.critical_noise(2).subs({th.v: 16, th.m: 4}))
    assert_allclose(summary["eps_star"], exact, rtol=1e-12)
    assert summary["regime"] == "transition" and summary["n_c"] == 16
    printed = json.loads(_cli(["thresholds", "--v", "16", "--m", "4", "--s", "2", "--json"]))
    assert printed == json.loads(dumps(summary))
    with pytest.raises(ParameterError, match="^invalid depth = None.*when channel is given"):
        hd.hierarchy_thresholds(16, 4, 2, channel="mask")


def _mean_field_map(b, v, m, s):
    """THEORY C's map with ``n = v``: ``b' = [b^s + (m-1) c] / [b^s + (v m - 1) c]``."""
    c = (1 - b**s) / (v**s - 1)
    return (b**s + (m - 1) * c) / (b**s + (v * m - 1) * c)


def test_hierarchy_diagram_against_the_mean_field_map_and_the_cli(tmp_path):
    eps, depths = np.linspace(0, 1, 11), [1, 3]
    diagram = hd.hierarchy_diagram(16, 4, 2, eps=eps, depths=depths, f_values=[0.2, 0.6],
                                   s_values=(2, 3))
    beliefs = 1 - eps + eps / 16  # the leaves, iterated up to the root
    for level in range(3, -1, -1):
        assert_allclose(diagram.levels[1][:, level], beliefs, rtol=1e-12)
        beliefs = _mean_field_map(beliefs, 16, 4, 2)
    assert_allclose(diagram.class_preservation[0], diagram.levels[0][:, 0])
    assert [levels.shape for levels in diagram.levels] == [(11, 2), (11, 4)]
    assert diagram.convergence()["eps_star_points"] == 4
    _cli(["phase-diagram", "hierarchy", "--v", "16", "--m", "4", "--eps",
          ",".join(f"{x:g}" for x in eps), "--depths", "1,3", "--f", "0.2,0.6",
          "--s-values", "2,3", "--out", str(tmp_path)])
    _assert_table_matches_csv(diagram.map_table(), tmp_path / "hierarchy_map.csv")
    _assert_table_matches_csv(diagram.eps_star_table(), tmp_path / "hierarchy_eps_star.csv")
    with pytest.raises(ParameterError, match="^invalid depths"):
        hd.hierarchy_diagram(depths=[0])
    with pytest.raises(ParameterError, match="^invalid s_values"):
        hd.hierarchy_diagram(s_values=(1,))


def test_forward_backward_runs_are_the_cli_experiment(tmp_path):
    plan = hd.plan_forward_backward(8, 2, 2, depths=[2, 3], channel="eps", noise=[0.2, 0.9],
                                    samples=150, population=0, seed=1)
    assert plan.depths == [2, 3]
    depth_runs = hd.run_forward_backward(plan)
    columns, levels = hd.forward_backward_tables(depth_runs)
    assert columns["depth_L"] == [2, 2, 3, 3] and len(levels["level"]) == 2 * 3 + 2 * 4
    for run in depth_runs:  # the class is kept at low noise; mean field is the eps prediction
        assert run.measured["class_posterior"][0] > 0.9
        assert_allclose(run.predicted["mean field"],
                        mf.mean_field_levels([0.2, 0.9], 8, 2, 2, run.depth)[:, 0])
    _cli(["simulate", "hierarchy", "--v", "8", "--m", "2", "--depths", "2,3", "--noise",
          "0.2,0.9", "--samples", "150", "--population", "0", "--seed", "1",
          "--out", str(tmp_path)])
    _assert_table_matches_csv(columns, tmp_path / "hierarchy_simulation.csv")
    _assert_table_matches_csv(levels, tmp_path / "hierarchy_simulation_levels.csv")
    with pytest.raises(ParameterError, match="^invalid population"):
        hd.plan_forward_backward(8, 2, 2, population=50)
    with pytest.raises(ParameterError, match="^invalid L = 20.*too large for memory"):
        hd.plan_forward_backward(32, 8, 2, depths=[20])


# ----------------------------------------------------------------------------- spectral
def test_resolve_tau_and_bulk_grid():
    assert spd.resolve_tau(tau=0.3) == 0.3
    assert_allclose(spd.resolve_tau(t=0.5, process="ou"), np.expm1(1.0), rtol=1e-14)
    with pytest.raises(ParameterError, match="exactly one of tau or t"):
        spd.resolve_tau(tau=0.1, t=0.2)
    with pytest.raises(ParameterError, match="^invalid tau"):
        spd.resolve_tau(tau=-1.0)
    grid = spd.bulk_grid([[0.1, 0.5], [2.0, 3.0]], 40)
    assert np.all(np.diff(grid) > 0) and {0.1, 0.5, 2.0, 3.0} <= set(grid.tolist())
    assert np.diff(grid[:20]).max() > 5 * np.diff(grid[:20]).min()  # clustered at the edges


def test_spectrum_tables_atoms_density_mass_and_the_cli(tmp_path):
    law = sp_solver.VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09])
    atoms = spd.spectrum_tables(law, 0.1, subspace="orthonormal", process="ou")
    assert_allclose(atoms.jacobian["jn"], -0.1 / (0.1 + np.array([0.09, 1.0])))
    assert atoms.summary["t"] == pytest.approx(0.5 * np.log1p(0.1))
    tables = spd.spectrum_tables(law, 0.1, points=3000)
    lam, rho = tables.covariance["lambda"], tables.covariance["density"]
    assert np.all(rho >= 0)
    assert_allclose(np.trapezoid(rho, lam), law.alpha, rtol=0.02)  # square-root edges: coarse
    _cli(["spectrum", "--tau", "0.1", "--points", "3000", "--out", str(tmp_path)])
    _assert_table_matches_csv(tables.covariance, tmp_path / "spectrum_covariance.csv")
    _assert_table_matches_csv(tables.jacobian, tmp_path / "spectrum_jacobian.csv")
    with pytest.raises(ParameterError, match="^invalid points"):
        spd.spectrum_tables(law, 0.1, points=5)


def test_phase_diagrams_against_the_single_maps_and_the_cli(tmp_path):
    axes = spd.phase_diagram_axes(n_tau=11, n_rows=4)
    result = spd.phase_diagrams(0.1, axes)
    alone = spd.alpha_time_diagram(alphas=axes["alpha"], taus=axes["alpha_tau"], delta=0.1)
    assert list(result.alpha_time.columns["phase"]) == list(alone.columns["phase"])
    summary = result.summary()
    for part in ("alpha_time", "ratio_time"):
        assert sum(summary[part]["phase_fractions"].values()) == pytest.approx(1.0)
    assert spd.phase_fractions(np.array(["a", "b", "b", "b"], dtype=object)) == {"a": 0.25,
                                                                                  "b": 0.75}
    _cli(["phase-diagram", "spectral", "--n-tau", "11", "--n-rows", "4", "--out", str(tmp_path)])
    _assert_table_matches_csv(result.alpha_time.columns, tmp_path / "phase_spectral_alpha.csv")
    _assert_table_matches_csv(result.ratio_time.columns, tmp_path / "phase_spectral_ratio.csv")
    with pytest.raises(ParameterError, match="^invalid n_tau"):
        spd.phase_diagram_axes(n_tau=1)


# ----------------------------------------------------------------------------- sampler
def test_sampler_error_report_against_the_solver_and_the_cli(tmp_path):
    report = sd.sampler_error_report(300, 512, 4, "beta")
    exact = sv.sampler_error(300, 512, 4, "beta")
    assert report.summary()["kl"] == pytest.approx(exact.kl, rel=1e-12)
    table = report.table()
    total = np.sum(table["kl_per_direction_step1"] * table["multiplicity"])
    assert total == pytest.approx(exact.kl, rel=1e-10)  # the KL splits over directions
    _cli(["sampler-error", "--T", "300", "--dim", "512", "--k", "4", "--design", "beta",
          "--out", str(tmp_path)])
    _assert_table_matches_csv(table, tmp_path / "sampler_error.csv")
    star = sv.sampler_error(200, 64, 2, "star", variances=[1.0, 1.0])
    custom = sd.sampler_error_report(200, 64, 2, "custom", variances=[1.0, 1.0])
    assert custom.error.kl == pytest.approx(star.kl, rel=1e-12)  # scales 1: the star design
    assert sd.schedule_parameters("linear", -1.0) == {}
    with pytest.raises(ParameterError, match="^invalid c0"):
        sd.schedule_parameters("li-yan", c0=0.0)
    with pytest.raises(ParameterError, match="^invalid sigma2_scale"):
        sd.custom_design(np.full(10, 0.01), sigma2_scale=-1.0)


def test_sampler_diagram_against_the_rate_fit_and_the_cli(tmp_path):
    T_values, dims = sd.sampler_diagram_axes(20, 400, 4, [8, 64, 512], 4)
    assert list(dims) == [8, 64, 512] and T_values[0] == 20 and T_values[-1] == 400
    diagram = sd.sampler_diagram(T_values, dims, 4)
    assert diagram.summary()["configurations"] == 4 * 3 * 4 and diagram.dim_for_rates == 512
    sel = (diagram.grid["design"] == "star") & (diagram.grid["dim"] == 512)
    fit = sv.fit_rate(diagram.grid["T"][sel], diagram.grid["kl"][sel])
    assert diagram.fits["star"]["kl_slope"] == fit.slope < 0
    _cli(["phase-diagram", "sampler", "--T-min", "20", "--T-max", "400", "--n-T", "4",
          "--dims", "8,64,512", "--k", "4", "--out", str(tmp_path)])
    _assert_table_matches_csv(diagram.table(), tmp_path / "sampler_phase_diagram.csv")
    with pytest.raises(ParameterError, match="^invalid T_max"):
        sd.sampler_diagram_axes(20, 10)
    with pytest.raises(ParameterError, match="^invalid dims"):
        sd.sampler_diagram_axes(dims=[2], k=4)
