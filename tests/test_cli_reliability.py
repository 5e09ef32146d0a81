"""Command-level reliability of every command but ``diagnose`` (README, "Command line"): checks
before heavy work, resuming ``phase-diagram all``, size budgets with ``--max-memory``, invalid
and extreme input refused in one line naming the option typed, and a flag beside every
non-finite value written."""

from __future__ import annotations

import csv
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from diffphase.cli import main
from diffphase.commands import common
from diffphase.commands.common import parse_size
from diffphase.errors import ParameterError
from diffphase.outputs import TEMP_SUFFIX, OutputSet
from diffphase.studies import budget
from diffphase.studies import hierarchy as hd
from diffphase.studies import memorization as md
from diffphase.studies import sampler as sd
from diffphase.studies import spectral as spd
from diffphase.studies.tables import flag_nonfinite_columns, flag_summary

sys.path.insert(0, str(Path(__file__).parent))
import cli_fuzz  # noqa: E402


def run(args, capsys) -> tuple[int, str, str]:
    """``diffphase args`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def refused(args, capsys, option: str) -> str:
    """Exit 2 with one line on stderr naming ``option``; the line."""
    code, _, err = run(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error:") and option in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- 1. checks first
def _forbid(monkeypatch, target: str) -> None:
    """Make ``module.function`` fail loudly if a command computes."""
    module, _, name = target.rpartition(".")

    def computed(*args, **kwargs):
        raise AssertionError(f"{target} ran before the outputs were claimed")

    monkeypatch.setattr(f"{module}.{name}", computed)


COMMANDS = [  # (command line, a file it writes, the function that computes)
    (["spectrum", "--tau", "0.1"], "spectrum.json", "diffphase.studies.spectral.run_spectrum"),
    (["phase-diagram", "spectral", "--n-tau", "5", "--n-rows", "3"], "phase_spectral.json",
     "diffphase.studies.spectral.phase_diagrams"),
    (["critical-times"], "critical_times.csv", "diffphase.commands.memorization.critical_times"),
    (["phase-diagram", "memorization", "--points", "4"], "memorization_diagram.png",
     "diffphase.studies.memorization.memorization_diagram"),
    (["simulate", "memorization", "--experiment", "speciation"], "simulate_speciation.csv",
     "diffphase.studies.memorization.run_memorization"),
    (["phase-diagram", "hierarchy"], "hierarchy_map.csv",
     "diffphase.studies.hierarchy.run_hierarchy_diagram"),
    (["simulate", "hierarchy", "--v", "8", "--m", "2"], "hierarchy_simulation_levels.csv",
     "diffphase.studies.hierarchy.run_forward_backward"),
    (["sampler-error", "--T", "100"], "sampler_error.png",
     "diffphase.studies.sampler.run_sampler_error"),
    (["phase-diagram", "sampler", "--T-max", "100", "--n-T", "3"], "sampler_phase_diagram.csv",
     "diffphase.studies.sampler.sampler_diagram"),
]


@pytest.mark.parametrize("args, existing, compute", COMMANDS, ids=[" ".join(c[0][:2])
                                                                   for c in COMMANDS])
def test_an_existing_output_is_refused_before_any_computing(args, existing, compute, tmp_path,
                                                            monkeypatch, capsys):
    (tmp_path / existing).write_text("keep")
    _forbid(monkeypatch, compute)
    refused([*args, "--out", tmp_path], capsys, "--out")
    assert (tmp_path / existing).read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_phase_diagram_all_refuses_a_file_in_the_last_folder_before_any_model_runs(
        tmp_path, monkeypatch, capsys):
    last = list(common.DEFAULT_DIAGRAMS)[-1]
    files = common.planned_files(common.DEFAULT_DIAGRAMS[last], tmp_path / "probe" / last,
                                 ("png",))
    (tmp_path / last).mkdir()
    (tmp_path / last / files[0]).write_text("keep")
    for target in COMMANDS:  # every model's computation
        _forbid(monkeypatch, target[2])
    refused(["phase-diagram", "all", "--out", tmp_path], capsys, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [last]
    assert (tmp_path / last / files[0]).read_text() == "keep"


def test_bad_input_of_a_sub_diagram_is_refused_before_any_model_runs(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setattr(common, "DEFAULT_DIAGRAMS", dict(common.DEFAULT_DIAGRAMS))
    first = list(common.DEFAULT_DIAGRAMS)[0]
    _forbid(monkeypatch, "diffphase.studies.spectral.phase_diagrams")

    def too_big(outputs, formats, max_memory=None):
        raise ParameterError("--max-memory", max_memory, "a larger budget")

    common.DEFAULT_DIAGRAMS["zz-last"] = too_big
    refused(["phase-diagram", "all", "--out", tmp_path / "o"], capsys, "--max-memory")
    assert first and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- 2. resume
def _fake_diagrams(monkeypatch, calls: list, interrupt: set):
    """Two quick default diagrams, ``a`` and ``b``; ``b`` can be made to stop half-way."""

    def build(name):
        def write(outputs: OutputSet, formats):
            outputs.claim([f"{name}.csv", f"{name}.json"])
            calls.append(name)
            outputs.write_csv(f"{name}.csv", {"x": [1.0, 2.0]})
            if name in interrupt:
                raise KeyboardInterrupt
            outputs.write_json(f"{name}.json", {"name": name})
            return {"name": name}

        return write

    monkeypatch.setattr(common, "DEFAULT_DIAGRAMS", {"a": build("a"), "b": build("b")})


def test_phase_diagram_all_resumes_after_an_interruption(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    out = tmp_path / "out"
    _fake_diagrams(monkeypatch, calls, {"b"})
    code, _, err = run(["phase-diagram", "all", "--out", out], capsys)
    assert code == 130 and calls == ["a", "b"]
    assert sorted(p.name for p in (out / "a").iterdir()) == ["a.csv", "a.json"]
    assert not list((out / "b").iterdir())  # nothing of b, no temporary either
    calls.clear()
    _fake_diagrams(monkeypatch, calls, set())
    code, stdout, err = run(["phase-diagram", "all", "--out", out, "--json"], capsys)
    assert code == 0 and calls == ["b"]
    summary = json.loads(stdout)
    assert summary["skipped"] == ["a"] and list(summary["diagrams"]) == ["b"]
    assert "skipped a" in err
    calls.clear()
    code, stdout, _ = run(["phase-diagram", "all", "--out", out, "--json"], capsys)
    assert code == 0 and calls == [] and json.loads(stdout)["skipped"] == ["a", "b"]
    code, stdout, _ = run(["phase-diagram", "all", "--out", out, "--json", "--force"], capsys)
    assert code == 0 and calls == ["a", "b"] and json.loads(stdout)["skipped"] == []


def test_phase_diagram_all_refuses_a_partial_model_folder(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    _fake_diagrams(monkeypatch, calls, set())
    assert run(["phase-diagram", "all", "--out", tmp_path], capsys)[0] == 0
    (tmp_path / "b" / "b.json").unlink()  # not the command's doing: refuse, do not guess
    calls.clear()
    line = refused(["phase-diagram", "all", "--out", tmp_path], capsys, "--out")
    assert "b.csv" in line and "--force" in line and calls == []


def test_a_command_writes_its_json_sidecar_last_and_all_files_together(tmp_path):
    out = OutputSet(tmp_path, defer=True)
    out.claim(["t.json", "t.csv"])
    out.write_json("t.json", {"a": 1})
    out.write_csv("t.csv", {"x": [1.0]})
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "t.csv").exists()
    assert [p.suffix for p in out.commit()] == [".csv", ".json"]
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    again = OutputSet(tmp_path / "b", defer=True)
    again.claim(["u.csv"])
    again.write_csv("u.csv", {"x": [1.0]})
    again.discard()
    assert not list((tmp_path / "b").iterdir())


# ----------------------------------------------------------------------------- 3. sizes
@pytest.mark.parametrize("args, option", [
    (["spectrum", "--tau", "0.1", "--points", "200000000"], "--points"),
    (["phase-diagram", "spectral", "--n-rows", "9223372036854775808", "--n-tau", "2"],
     "--n-rows"),
    (["phase-diagram", "spectral", "--n-tau", "1000000000000"], "--n-tau"),
    (["phase-diagram", "memorization", "--points", "1000000000000"], "--points"),
    (["simulate", "memorization", "--probes", "1000000000000"], "--probes"),
    (["simulate", "memorization", "--experiment", "geometric", "--n-train", "1000000000000"],
     "--n-train"),
    (["simulate", "memorization", "--log-n-per-d", "1e300"], "--log-n-per-d"),
    (["simulate", "memorization", "--dims", "1e300"], "--dims"),
    (["thresholds", "--channel", "eps", "--depth", "3", "--repeats", "1000000000000"],
     "--repeats"),
    (["thresholds", "--channel", "eps", "--depth", "3", "--population", "1000000000000"],
     "--population"),
    (["simulate", "hierarchy", "--samples", "9223372036854775808"], "--samples"),
    (["sampler-error", "--T", "1000000000000"], "--T"),
    (["sampler-error", "--dim", "1000000000000", "--k", "1000000000000"], "--k"),
    (["phase-diagram", "sampler", "--T-max", "1000000000000"], "--T-max"),
    (["phase-diagram", "sampler", "--n-T", "1000000000000"], "--n-T"),
    (["phase-diagram", "hierarchy", "--depths", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18",
      "--max-memory", "1M"], "--depths"),
])
def test_a_job_beyond_the_budgets_is_refused_naming_the_option(args, option, tmp_path, capsys):
    line = refused([*args, "--out", tmp_path / "o"] if args[0] != "thresholds" else args,
                   capsys, option)
    assert "allowed" in line  # the budget and the estimate, or a fixed range of the option
    assert not (tmp_path / "o").exists()


def test_max_memory_sets_the_budget(tmp_path, capsys):
    line = refused(["spectrum", "--tau", "0.1", "--max-memory", "100K", "--out", tmp_path],
                   capsys, "--n-grid")
    assert "--max-memory is 100 KiB" in line
    assert run(["spectrum", "--tau", "0.1", "--max-memory", "1G", "--out", tmp_path],
               capsys)[0] == 0
    refused(["spectrum", "--tau", "0.1", "--max-memory", "4X", "--out", tmp_path / "b"], capsys,
            "--max-memory")


def test_parse_size_and_the_default_budget():
    assert parse_size("4G") == 4 * 2**30 and parse_size("512m") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("2e9") == 2 * 10**9
    for bad in ("", "0", "-1G", "4X", "G", "inf", "nan"):
        with pytest.raises(ParameterError, match="--max-memory"):
            parse_size(bad)
    assert 0 < budget.default_memory_budget() <= 2**62


def test_check_cost_names_the_largest_term():
    terms = [budget.CostTerm("small", "a", 1, 10.0, 1.0), budget.CostTerm("big", "b", 2, 1e9, 1.0)]
    assert budget.check_cost(terms, 2e9) == (1e9 + 10.0, 2.0)
    with pytest.raises(ParameterError, match=r"^invalid b = 2: .*mostly for big"):
        budget.check_cost(terms, 1e6)
    slow = [budget.CostTerm("slow", "c", 3, 0.0, 1e9)]
    with pytest.raises(ParameterError, match=r"^invalid c = 3: allowed a job of at most"):
        budget.check_cost(slow, 1e6)
    assert budget.product(10**400, 2) == np.inf


def _peak(func) -> int:
    """Peak bytes traced while ``func`` runs (numpy allocations included)."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _memory(terms) -> float:
    return budget.total(terms)[0]


def _check_scaling(estimate, measure, small, large, slack: float = 6.0) -> None:
    """The estimate bounds the measured peak at ``large``, and its growth from ``small`` to
    ``large`` bounds the measured growth within ``slack`` (``small=None``: the bound only)."""
    measure(small if small is not None else large)  # warm: compile and cache first
    sizes = (large,) if small is None else (small, large)
    peaks = [_peak(lambda size=size: measure(size)) for size in sizes]
    estimates = [_memory(estimate(size)) for size in sizes]
    assert estimates[-1] >= peaks[-1], (estimates, peaks)
    if small is not None:
        grown, predicted = peaks[1] - peaks[0], estimates[1] - estimates[0]
        assert grown <= predicted <= slack * max(grown, 1), (predicted, grown)


def test_spectrum_cost_bounds_the_measured_peak(tmp_path):
    law = spd.solver.VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09])

    def measure(points):
        tables = spd.spectrum_tables(law, 0.1, points=points)
        out = OutputSet(tmp_path, force=True)
        out.write_csv("c.csv", tables.covariance)
        out.write_csv("j.csv", tables.jacobian)

    _check_scaling(lambda n: spd.spectrum_cost(n), measure, 2000, 12000)


def test_spectral_diagram_cost_bounds_the_measured_peak(tmp_path):
    from diffphase.commands.spectral import write_spectral_diagram

    def measure(n_tau):
        write_spectral_diagram(OutputSet(tmp_path, force=True), ("png",), 0.1, n_tau, 3)

    _check_scaling(lambda n: spd.phase_diagram_cost(n, 3), measure, 200, 1400)


def test_memorization_run_cost_bounds_the_measured_peak():
    def plan(rate):
        return md.plan_memorization_run("collapse", [16], rate, probes=16)

    def measure(rate):
        md.run_memorization(plan(rate))

    estimate = lambda rate: md.memorization_run_cost("collapse", [16], rate, probes=16)  # noqa: E731
    _check_scaling(estimate, measure, np.log(1000) / 16, np.log(6000) / 16)


def test_memorization_diagram_cost_bounds_the_measured_peak(tmp_path):
    from diffphase.commands.memorization import write_memorization_diagram

    def measure(points):
        write_memorization_diagram(OutputSet(tmp_path, force=True), ("png",), points=points)

    _check_scaling(lambda n: md.memorization_diagram_cost(n, 2), measure, 300, 2400)


def test_population_cost_bounds_the_measured_peak():
    from diffphase.data.rhm import RandomHierarchyModel
    from diffphase.solvers.population import class_preservation

    model = RandomHierarchyModel(16, 4, 2, 3)

    def measure(population):
        class_preservation(model, "eps", 0.3, population, 1)

    def estimate(population):
        return [hd.population_cost(16, 4, 2, 3, 16, population, 1)]

    _check_scaling(estimate, measure, 2000, 16000)


def test_forward_backward_cost_bounds_the_measured_peak():
    def measure(samples):
        hd.run_forward_backward(hd.plan_forward_backward(8, 2, 2, depths=[6], noise=[0.3],
                                                         samples=samples, population=0))

    def estimate(samples):
        return hd.forward_backward_cost(8, 2, 2, 8, [6], 1, samples, 0)

    _check_scaling(estimate, measure, 100, 800)


def test_sampler_costs_bound_the_measured_peaks(tmp_path):
    _check_scaling(lambda T: sd.sampler_error_cost(T, 8),
                   lambda T: sd.sampler_error_report(T, 4096, 8).table(), 20_000, 200_000)
    from diffphase.commands.sampler import write_sampler_diagram

    def measure(T_max):
        write_sampler_diagram(OutputSet(tmp_path, force=True), ("png",), 16, T_max, 4, [8, 64],
                              4)

    # the schedules dominate only beyond a million steps (a slow test): the bound alone here
    _check_scaling(lambda T: sd.sampler_diagram_cost(16, T, 4, 2, 4), measure, None, 100_000)


def test_hierarchy_diagram_cost_bounds_the_measured_peak(tmp_path):
    from diffphase.commands.hierarchy import write_hierarchy_diagram

    eps = np.linspace(0, 1, 1001)

    def measure(depth):
        write_hierarchy_diagram(OutputSet(tmp_path, force=True), ("png",), eps=eps,
                                depths=range(1, depth + 1), f_values=[0.5], s_values=(2,))

    _check_scaling(lambda d: hd.hierarchy_diagram_cost(eps.size, range(1, d + 1), 1, (2,)),
                   measure, 4, 12)


# ----------------------------------------------------------------------------- 4. invalid input
def test_n_c_follows_one_rule_in_thresholds_and_the_simulation(tmp_path, capsys):
    refused(["thresholds", "--n-c", "-5"], capsys, "--n-c")
    too_many = ["--v", "4", "--m", "4", "--s", "2", "--n-c", "5"]
    line = refused(["thresholds", *too_many], capsys, "--n-c")
    assert line == refused(["simulate", "hierarchy", *too_many, "--out", tmp_path], capsys,
                           "--n-c")
    assert line == refused(["phase-diagram", "hierarchy", *too_many, "--out", tmp_path], capsys,
                           "--n-c")


@pytest.mark.parametrize("args, option", [
    (["simulate", "memorization", "--log-n-per-d", "-1"], "--log-n-per-d"),
    (["simulate", "memorization", "--log-n-per-d", "0"], "--log-n-per-d"),
    (["simulate", "memorization", "--dims", "32.7"], "--dims"),
    (["simulate", "memorization", "--n-train", "1"], "--n-train"),
    (["phase-diagram", "hierarchy", "--s-values", "2.9"], "--s-values"),
    (["phase-diagram", "hierarchy", "--depths", "2.5"], "--depths"),
    (["simulate", "hierarchy", "--depths", "2.5"], "--depths"),
    (["phase-diagram", "sampler", "--dims", "32.7"], "--dims"),
    (["simulate", "memorization", "--seed", "-1"], "--seed"),
    (["simulate", "hierarchy", "--seed", "-1"], "--seed"),
    (["sampler-error", "--design", "star", "--sigma2-scale", "-1"], "--sigma2-scale"),
])
def test_invalid_values_are_refused_not_adjusted(args, option, tmp_path, capsys):
    refused([*args, "--out", tmp_path / "o"], capsys, option)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["thresholds", "--seed", "-1"],
                                  ["validate", "--model", "spectral", "--seed", "-1"]])
def test_a_negative_seed_is_refused_even_where_unused(args, capsys):
    refused(args, capsys, "--seed")


@pytest.mark.parametrize("command", [["spectrum", "--tau", "0.1"], ["critical-times"],
                                     ["phase-diagram", "all"], ["validate"]])
def test_an_empty_out_is_refused(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused([*command, "--out", ""], capsys, "--out")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- 5. extremes
@pytest.mark.parametrize("args, option", [
    (["simulate", "memorization", "--log-n-per-d", "inf"], "--log-n-per-d"),
    (["thresholds", "--s", "100000"], "--s"),
    (["thresholds", "--depth", "9223372036854775808", "--channel", "uniform"], "--depth"),
    (["spectrum", "--tau", "1e300"], "--tau"),
    (["spectrum", "--t", "1e300", "--process", "ou"], "--t"),
    (["phase-diagram", "memorization", "--rate-max", "1e300"], "--rate-max"),
    (["phase-diagram", "memorization", "--dim", "1000000000000"], "--log-n-per-d-max"),
    (["simulate", "hierarchy", "--v", "1000000000000", "--m", "2"], "--v"),
    (["phase-diagram", "sampler", "--dims", "1e300"], "--dims"),
    (["sampler-error", "--dim", "9223372036854775808"], "--dim"),
])
def test_extreme_values_are_refused_with_the_range(args, option, tmp_path, capsys):
    line = refused([*args, "--out", tmp_path] if args[0] != "thresholds" else args, capsys,
                   option)
    assert "allowed" in line


def test_extreme_but_valid_values_compute(tmp_path, capsys):
    code, out, _ = run(["thresholds", "--v", "1000000000000", "--json"], capsys)
    assert code == 0 and json.loads(out)["regime"] in {"transition", "kept", "lost", "partial"}
    code, out, _ = run(["spectrum", "--tau", "1e-20", "--json", "--out", tmp_path], capsys)
    assert code == 0 and json.loads(out)["phase"] == "consolidation"


# ----------------------------------------------------------------------------- 6. option names
@pytest.mark.parametrize("args, typed, other", [
    (["thresholds", "--depth", "-1"], "--depth", "invalid L"),
    (["simulate", "hierarchy", "--depth", "inf"], "--depth", "--depths"),
    (["simulate", "hierarchy", "--depths", "inf"], "--depths", "--depth "),
    (["simulate", "hierarchy", "--depth", "40"], "--depth", "--depths"),
    (["simulate", "hierarchy", "--depths", "40"], "--depths", "invalid L"),
    (["phase-diagram", "hierarchy", "--f", "nan"], "--f", "--f-values"),
    (["sampler-error", "--T", "1"], "--T", "invalid T"),
])
def test_messages_name_the_option_as_typed(args, typed, other, tmp_path, capsys):
    line = refused([*args, "--out", tmp_path] if args[0] != "thresholds" else args, capsys,
                   typed)
    assert other not in line


# ----------------------------------------------------------------------------- 7. NaN flags
def _assert_flagged(out_dir: Path, stdout: str) -> None:
    assert not cli_fuzz._unflagged_nulls(json.loads(stdout), "")
    for path in out_dir.rglob("*.csv"):
        assert not cli_fuzz._unflagged_csv(path), path
    for path in out_dir.rglob("*.json"):
        assert not cli_fuzz._unflagged_nulls(
            {k: v for k, v in json.loads(path.read_text()).items() if k != "parameters"}, ""), path


def test_hierarchy_eps_star_table_flags_undefined_thresholds(tmp_path, capsys):
    code, out, _ = run(["phase-diagram", "hierarchy", "--f", "0.01,0.5,1", "--s-values", "2,3",
                        "--depths", "2", "--eps", "0,0.5,1", "--json", "--out", tmp_path],
                       capsys)
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "hierarchy_eps_star.csv").open()))
    undefined = [r for r in rows if r["eps_star_large_v"] == "nan" or r["nu"] == "nan"]
    assert undefined and all(r["nan_reason"] for r in undefined)
    assert all(r["regime"] in r["nan_reason"] for r in undefined)
    _assert_flagged(tmp_path, out)


def test_simulated_crossovers_outside_the_grid_are_flagged(tmp_path, capsys):
    code, out, _ = run(["simulate", "memorization", "--dims", "2", "--probes", "2",
                        "--log-n-per-d", "0.5", "--json", "--out", tmp_path], capsys)
    assert code == 0
    prediction = json.loads(out)["predictions"]["d=2"]
    assert prediction["width_ln_tau"] is None and "width_ln_tau" in prediction["nan_reason"]
    _assert_flagged(tmp_path, out)


def test_skipped_population_dynamics_are_flagged(tmp_path, capsys):
    code, out, _ = run(["simulate", "hierarchy", "--v", "8", "--m", "2", "--depth", "2",
                        "--samples", "20", "--population", "0", "--noise", "0.2,0.8", "--json",
                        "--out", tmp_path], capsys)
    assert code == 0
    _assert_flagged(tmp_path, out)
    rows = list(csv.DictReader((tmp_path / "hierarchy_simulation_levels.csv").open()))
    assert all("population 0" in r["nan_reason"] for r in rows)


def test_flag_helpers_leave_finite_tables_alone_and_explain_the_rest():
    finite = {"x": np.array([1.0, 2.0]), "label": ["a", "b"]}
    assert list(flag_nonfinite_columns(finite)) == ["x", "label"]
    flagged = flag_nonfinite_columns({"x": np.array([1.0, np.nan]), "y": [np.inf, 1.0]},
                                     {"x": "no root"})
    assert flagged["nan_reason"] == ["y: not finite", "x: no root"]
    summary = flag_summary({"a": 1.0, "inner": {"b": float("nan"), "c": [1.0, None]}},
                           {"b": "why b"})
    assert "nan_reason" not in summary
    assert summary["inner"]["nan_reason"] == {"b": "why b", "c": "not finite"}
    table = md.MemorizationDiagram(np.array([0.1]), np.array([10.0]),
                                   {"speciation": np.array([np.nan])}, "ve", np.array([1.0]),
                                   1.0, {}, False, float("nan")).table()
    assert table["nan_reason"][0].startswith("tau: no speciation")


@pytest.mark.parametrize("command", [["critical-times"], ["spectrum", "--tau", "0.1"]])
def test_a_fraction_below_double_resolution_is_refused_and_the_smallest_allowed_works(
        command, tmp_path, capsys):
    """A group of fraction a has a bulk about 4 sqrt(a) of its variance wide; below a = 1e-30
    its edges are lost to rounding, so the fraction is refused naming --fractions; at 1e-30 the
    command runs and reports the group's (degenerate) bulk."""
    line = refused([*command, "--fractions", "1e-300", "--variances", "1",
                    "--out", tmp_path / "o"], capsys, "--fractions")
    assert "1e-30" in line
    code, out, _ = run([*command, "--fractions", "1e-30,0.3", "--variances", "1,0.01", "--json",
                        "--out", tmp_path / "p"], capsys)
    assert code == 0
    if command[0] == "spectrum":
        edges = json.loads(out)["edges"]
        assert len(edges) == 2 and edges[1][0] == pytest.approx(1.0, rel=0.01)
