"""One command line: one option name per concept across every command (read from the click
tree), retired names kept only as hidden aliases, defaults equal to what ``phase-diagram all``
draws, ``--json`` without ``--out`` writing nothing, progress on stderr when it is not a
terminal, ``--quiet`` / ``--verbose``, and shell completion of the option names."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from diffphase.cli import cli, main
from diffphase.commands import common

#: concept -> (parameter name in every command, its one option name)
CONCEPTS = {
    "ambient dimension d": ("dim", "--dim"),
    "several ambient dimensions": ("dims", "--dims"),
    "number of sampler steps T": ("steps", "--steps"),
    "fewest / most sampler steps of a sweep": ("steps_min", "--steps-min"),
    "most sampler steps of a sweep": ("steps_max", "--steps-max"),
    "points along T": ("n_steps", "--n-steps"),
    "number of training points N": ("n_train", "--n-train"),
    "ln N / d": ("log_n_per_d", "--log-n-per-d"),
    "smallest ln N / d of a map": ("log_n_per_d_min", "--log-n-per-d-min"),
    "largest ln N / d of a map": ("log_n_per_d_max", "--log-n-per-d-max"),
    "points along ln N / d": ("n_log_n_per_d", "--n-log-n-per-d"),
    "points along tau": ("n_tau", "--n-tau"),
    "points of a density grid": ("n_grid", "--n-grid"),
    "backward trajectories per time": ("trajectories", "--trajectories"),
    "forward-backward samples": ("samples", "--samples"),
    "probe points of a measured curve": ("probes", "--probes"),
    "probe directions of central differences": ("difference_probes", "--difference-probes"),
    "one tree depth L": ("depth", "--depth"),
    "several tree depths": ("depths", "--depths"),
    "random seed": ("seed", "--seed"),
    "time convention": ("process", "--process"),
    "device": ("device", "--device"),
    "group fractions": ("fractions", "--fractions"),
    "group variances": ("variances", "--variances"),
    "resolution delta": ("delta", "--delta"),
    "ddpm schedule": ("schedule", "--schedule"),
    "memory budget": ("max_memory", "--max-memory"),
    "output folder": ("out", "--out"),
    "overwrite": ("force", "--force"),
    "print JSON": ("as_json", "--json"),
    "figure formats": ("figure_format", "--format"),
    "figure resolution": ("dpi", "--dpi"),
    "figure style": ("style", "--style"),
    "no progress": ("quiet", "--quiet"),
    "progress of every stage": ("verbose", "--verbose"),
}
#: retired names: they still work, as hidden aliases, in these commands, and are never shown
RETIRED = {
    ("sampler-error",): {"--T": "--steps"},
    ("phase-diagram", "sampler"): {"--T-min": "--steps-min", "--T-max": "--steps-max",
                                   "--n-T": "--n-steps"},
    ("spectrum",): {"--points": "--n-grid"},
    ("phase-diagram", "memorization"): {"--points": "--n-log-n-per-d",
                                        "--rate-min": "--log-n-per-d-min",
                                        "--rate-max": "--log-n-per-d-max"},
    ("diagnose",): {"--points": "--trajectories", "--samples": "--n-train",
                    "--probes": "--difference-probes"},
    ("simulate", "hierarchy"): {"--depth": "--depths"},
}
#: options that hold whole numbers, comma-separated
INTEGER_LISTS = {"depths", "dims", "s_values"}
#: commands whose result is a data store in --out rather than a summary (no --json)
STORE_WRITERS = {("sweep",)}
#: the commands that draw figures (and so take --format, --dpi, --style)
DRAWING = {("spectrum",), ("phase-diagram", "spectral"), ("phase-diagram", "memorization"),
           ("simulate", "memorization"), ("phase-diagram", "hierarchy"),
           ("simulate", "hierarchy"), ("sampler-error",), ("phase-diagram", "sampler"),
           ("diagnose",), ("phase-diagram", "fields"), ("phase-diagram", "all"), ("analyze",)}


def leaf_commands() -> dict[tuple[str, ...], click.Command]:
    found = {}

    def walk(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, path + (name,))
        else:
            found[path] = command

    walk(cli, ())
    return found


COMMANDS = leaf_commands()


def visible(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def test_every_concept_has_one_name_in_every_command():
    by_parameter = {name: option for name, option in CONCEPTS.values()}
    for path, command in COMMANDS.items():
        for param in visible(command):
            if param.name in by_parameter:
                assert param.opts == [by_parameter[param.name]], (path, param.opts)


def test_an_option_name_means_one_parameter_everywhere():
    names: dict[str, set] = {}
    parameters: dict[str, set] = {}
    for command in COMMANDS.values():
        for param in visible(command):
            for opt in param.opts:
                names.setdefault(opt, set()).add(param.name)
            parameters.setdefault(param.name, set()).update(param.opts)
    assert {k: v for k, v in names.items() if len(v) > 1} == {}
    assert {k: v for k, v in parameters.items() if len(v) > 1} == {}


def test_retired_names_are_hidden_aliases_only():
    shown = {opt for command in COMMANDS.values() for p in visible(command) for opt in p.opts}
    for path, aliases in RETIRED.items():
        command = COMMANDS[path]
        hidden = {opt for p in command.params if getattr(p, "hidden", False) for opt in p.opts}
        mine = {opt for p in visible(command) for opt in p.opts}
        for alias, canonical in aliases.items():
            assert alias in hidden and alias not in mine, (path, alias)
            assert canonical in mine, (path, canonical)
    assert not {"--T", "--T-min", "--T-max", "--n-T", "--points", "--rate-min", "--rate-max",
                "--svg"} & shown
    for path, command in COMMANDS.items():  # a hidden option is a retired name of this command
        hidden = {opt for p in command.params if getattr(p, "hidden", False) for opt in p.opts}
        allowed = set(RETIRED.get(path, {})) | ({"--svg"} if path in DRAWING else set())
        assert hidden <= allowed, (path, hidden - allowed)


#: (command, arguments under the retired names, the same under the one name)
ALIAS_RUNS = [
    (["sampler-error", "--dim", "8", "--k", "2"], ["--T", "50"], ["--steps", "50"]),
    (["phase-diagram", "sampler", "--dims", "8,16", "--k", "2"],
     ["--T-min", "16", "--T-max", "64", "--n-T", "3"],
     ["--steps-min", "16", "--steps-max", "64", "--n-steps", "3"]),
    (["spectrum", "--tau", "0.1"], ["--points", "100"], ["--n-grid", "100"]),
    (["phase-diagram", "memorization"], ["--rate-min", "0.01", "--rate-max", "0.1", "--points",
                                         "4"],
     ["--log-n-per-d-min", "0.01", "--log-n-per-d-max", "0.1", "--n-log-n-per-d", "4"]),
    (["diagnose", "--model", "empirical", "--times", "1"], ["--points", "2", "--samples", "10"],
     ["--trajectories", "2", "--n-train", "10"]),
    (["simulate", "hierarchy", "--v", "8", "--m", "2", "--samples", "20", "--population", "0",
      "--noise", "0.3"], ["--depth", "2"], ["--depths", "2"]),
    (["diagnose", "--model", "linear-manifold", "--route", "central", "--times", "1",
      "--trajectories", "1"], ["--probes", "4"], ["--difference-probes", "4"]),
]


def _summary(args, capsys) -> dict:
    with pytest.raises(SystemExit) as info:
        main([*args, "--json"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    summary = json.loads(out.out)
    summary.pop("timestamp", None)
    return summary


@pytest.mark.parametrize("base, retired, current", ALIAS_RUNS,
                         ids=[" ".join(r[0][:2]) for r in ALIAS_RUNS])
def test_a_retired_name_feeds_the_same_parameter(base, retired, current, tmp_path, monkeypatch,
                                                 capsys):
    monkeypatch.chdir(tmp_path)
    assert _summary([*base, *retired], capsys) == _summary([*base, *current], capsys)
    with pytest.raises(SystemExit) as info:  # the same option twice, under both names
        main([*base, *retired[:2], *current[:2], "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "same option" in err[0]


def test_an_error_names_the_option_as_typed(capsys):
    for typed in ("--T", "--steps"):
        with pytest.raises(SystemExit):
            main(["sampler-error", typed, "1", "--json"])
        line = capsys.readouterr().err.strip()
        assert line.startswith("error:") and f"{typed} " in line
        assert ({"--T", "--steps"} - {typed}).pop() + " " not in line


def test_integer_lists_are_parsed_as_integers(capsys):
    for path, command in COMMANDS.items():
        for param in command.params:
            if param.name in INTEGER_LISTS:
                assert param.type is common.INTS, (path, param.name)
    with pytest.raises(SystemExit) as info:
        main(["simulate", "hierarchy", "--depths", "2.5", "--json"])
    assert info.value.code == 2 and "--depths" in capsys.readouterr().err
    np.testing.assert_array_equal(common.parse_int_list("--depths", "4,6"), [4, 6])
    assert common.parse_int_list("--depths", "4,6").dtype.kind == "i"


def test_figure_options_only_where_a_figure_is_drawn():
    for path, command in COMMANDS.items():
        names = {opt for p in command.params for opt in p.opts}
        draws = {"--format", "--dpi", "--style"} <= names
        assert draws == (path in DRAWING), path
        assert ("--svg" in names) == (path in DRAWING), path
        assert {"--quiet", "--verbose"} <= names, path
        if "--out" in names:
            assert "--force" in names, path
            assert "--json" in names or path in STORE_WRITERS, path


#: phase-diagram subcommand -> (the function ``phase-diagram all`` calls, option -> argument)
DIAGRAM_WRITERS = {
    "spectral": ("diffphase.commands.spectral:write_spectral_diagram",
                 {"delta": "delta", "n_tau": "n_tau", "n_rows": "n_rows"}),
    "memorization": ("diffphase.commands.memorization:write_memorization_diagram",
                     {"fractions": "fractions", "variances": "variances", "dim": "dim",
                      "process": "process", "subspace": "subspace",
                      "log_n_per_d_min": "rate_min", "log_n_per_d_max": "rate_max",
                      "n_log_n_per_d": "points"}),
    "hierarchy": ("diffphase.commands.hierarchy:write_hierarchy_diagram",
                  {"v": "v", "m": "m", "s": "s", "n_c": "n_c", "eps": "eps", "depths": "depths",
                   "f_values": "f_values", "s_values": "s_values"}),
    "sampler": ("diffphase.commands.sampler:write_sampler_diagram",
                {"steps_min": "T_min", "steps_max": "T_max", "n_steps": "n_T", "dims": "dims",
                 "k": "k", "schedule": "schedule", "c0": "c0", "c1": "c1"}),
}


@pytest.mark.parametrize("name", sorted(DIAGRAM_WRITERS))
def test_a_diagram_command_defaults_to_what_phase_diagram_all_draws(name):
    import importlib

    target, mapping = DIAGRAM_WRITERS[name]
    module, _, function = target.partition(":")
    writer = getattr(importlib.import_module(module), function)
    signature = inspect.signature(writer).parameters
    command = COMMANDS[("phase-diagram", name)]
    ctx = click.Context(command)
    params = {p.name: p for p in command.params if not p.hidden}
    assert set(mapping) == {p for p in params if p not in
                            {"out", "force", "as_json", "figure_format", "svg", "dpi", "style",
                             "max_memory", "quiet", "verbose"}}
    for option, argument in mapping.items():
        param = params[option]
        default = param.get_default(ctx)
        value = None if default is None else param.type_cast_value(ctx, default)
        expected = signature[argument].default
        if expected is None or value is None:
            assert expected is None and value is None, (name, option, value, expected)
        elif isinstance(expected, str):
            assert value == expected, (name, option)
        else:
            np.testing.assert_allclose(np.atleast_1d(np.asarray(value, dtype=float)),
                                       np.atleast_1d(np.asarray(expected, dtype=float)),
                                       err_msg=f"{name} {option}")


QUICK = [
    ["critical-times"],
    ["spectrum", "--tau", "0.1", "--n-grid", "100"],
    ["sampler-error", "--steps", "50", "--dim", "8", "--k", "2"],
    ["phase-diagram", "memorization", "--n-log-n-per-d", "4"],
    ["simulate", "hierarchy", "--v", "8", "--m", "2", "--depths", "2", "--samples", "20",
     "--population", "0", "--noise", "0.2,0.8"],
    ["diagnose", "--model", "linear-manifold", "--times", "1", "--trajectories", "1"],
]


@pytest.mark.parametrize("args", QUICK, ids=[" ".join(a[:2]) for a in QUICK])
def test_json_without_out_prints_and_writes_nothing(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*args, "--json", "--format", "pdf"] if args[0] != "critical-times"
             else [*args, "--json"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    assert isinstance(json.loads(out.out), dict)
    assert list(tmp_path.iterdir()) == []
    # the same command twice: a repeated query is answered again, not refused
    with pytest.raises(SystemExit) as info:
        main([*args, "--json"])
    assert info.value.code == 0 and list(tmp_path.iterdir()) == []


def test_an_option_a_command_does_not_use_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["critical-times", "--svg", "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "--svg" in err[0]


def _cli(*args, timeout=600):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "diffphase", *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout)


def test_progress_reaches_stderr_that_is_not_a_terminal():
    args = ["sampler-error", "--steps", "50", "--dim", "8", "--k", "2", "--json"]
    verbose = _cli(*args, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "sampler-error: exact KL ..." in verbose.stderr
    assert "sampler-error: exact KL: done in" in verbose.stderr
    json.loads(verbose.stdout)  # progress never goes to stdout
    quiet = _cli(*args, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout) == json.loads(verbose.stdout)
    both = _cli(*args, "--quiet", "--verbose")
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1


def test_a_failing_command_prints_one_error_line_by_default():
    proc = _cli("sampler-error", "--steps", "1", "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error:") and "--steps" in proc.stderr


def test_stage_lines_wait_for_a_slow_stage(monkeypatch):
    """A stage prints nothing until it has run for the delay, then a line and its duration."""
    import threading

    lines: list[str] = []
    monkeypatch.setattr(common, "_echo_progress", lines.append)
    with common.stage("quick"):
        pass
    assert lines == []
    monkeypatch.setattr(common, "STAGE_DELAY", 0.0)
    released = threading.Event()
    with common.stage("slow"):
        while not lines and not released.wait(0.01):
            pass
    assert lines[0] == "slow ..." and lines[1].startswith("slow: done in")


def test_shell_completion_offers_the_one_name_and_is_documented():
    env = dict(os.environ, _DIFFPHASE_COMPLETE="bash_complete",
               COMP_WORDS="diffphase sampler-error --st", COMP_CWORD="2")
    proc = subprocess.run([sys.executable, "-c", "from diffphase.cli import main; main()"],
                          capture_output=True, text=True, env=env, timeout=120)
    offered = {line.split(",", 1)[1] for line in proc.stdout.splitlines() if "," in line}
    assert "--steps" in offered and "--T" not in offered, proc.stdout
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.rst").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"_DIFFPHASE_COMPLETE={shell}_source" in docs


def test_progress_lines_count_the_items_of_a_loop(monkeypatch):
    """Outside a terminal, a loop reports ``desc: i/n`` (every item with --verbose)."""
    lines: list[str] = []
    monkeypatch.setattr(common, "_echo_progress", lines.append)
    monkeypatch.setattr(common, "verbosity", lambda: 2)
    monkeypatch.setattr(common.sys.stderr, "isatty", lambda: False, raising=False)
    wrap = common.progress_bar(desc="runs")
    assert list(wrap([10, 20, 30])) == [10, 20, 30]
    assert lines == ["runs: 1/3", "runs: 2/3", "runs: 3/3"]
    lines.clear()
    assert list(wrap(x for x in "ab")) == ["a", "b"] and lines == ["runs: 1", "runs: 2"]
    monkeypatch.setattr(common, "verbosity", lambda: 0)
    assert common.progress_bar(desc="runs") is None


@pytest.mark.parametrize("args", [["thresholds", "--v", "16", "--m", "4"], ["critical-times"],
                                  ["spectrum", "--tau", "0.1", "--n-grid", "100"]],
                         ids=["thresholds", "critical-times", "spectrum"])
def test_a_json_query_imports_neither_matplotlib_nor_sympy(args, capsys):
    """``--json`` alone draws no figure, and a warm kernel cache spares the symbolic layer: a
    repeated query starts without the two heaviest imports."""
    with pytest.raises(SystemExit) as info:  # fills the kernel cache if it is cold
        main([*args, "--json"])
    assert info.value.code == 0
    capsys.readouterr()
    code = ("import sys\nfrom diffphase.cli import main\ntry:\n"
            f"    main({[*args, '--json']!r})\nexcept SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "print(sorted(m for m in ('matplotlib', 'sympy') if m in sys.modules), "
            "file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "[]"
