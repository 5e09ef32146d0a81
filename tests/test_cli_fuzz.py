"""Quick profile of the command-line fuzzer (``tests/cli_fuzz.py``): every command, a few drawn
command lines each, every run judged by the README's input-handling promise. The long profile
(thousands of runs) is run by hand: ``python tests/cli_fuzz.py --runs 2000``."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import cli_fuzz  # noqa: E402

COMMANDS = cli_fuzz.commands()
#: time limit of one run in the quick profile (a valid run of any command takes far less)
QUICK_TIMEOUT_SECONDS = 90.0
#: drawn command lines per command in the quick profile
QUICK_EXAMPLES = 2


def test_the_fuzzer_sees_every_command():
    paths = {" ".join(c.path) for c in COMMANDS}
    assert {"spectrum", "critical-times", "thresholds", "sampler-error", "diagnose", "validate",
            "phase-diagram all", "simulate hierarchy", "simulate memorization"} <= paths


def test_the_judge_catches_each_kind_of_failure(tmp_path):
    spectrum = next(c for c in COMMANDS if c.path == ("spectrum",))
    judge = cli_fuzz.judge
    assert judge(spectrum, [], None, "", "", None)[0] == "timeout"
    crash = "Traceback (most recent call last):\nKeyError: 'x'"
    assert judge(spectrum, [], 1, "", crash, None)[0] == "traceback"
    assert judge(spectrum, [], 2, "", "warning: w\nerror: invalid --tau = 0", None)[0] \
        == "not-one-line"
    assert judge(spectrum, [], 2, "", "error: something broke", None)[0] == "names-no-option"
    assert judge(spectrum, [], 2, "", "error: invalid --tau = 0: allowed > 0", None)[0] == "ok"
    assert judge(spectrum, ["--json"], 0, '{"gap": null}', "", None)[0] == "unflagged-null"
    assert judge(spectrum, ["--json"], 0, '{"gap": null, "gap_exists": false}', "", None)[0] \
        == "ok"
    (tmp_path / "t.csv").write_text("x,y\n1,nan\n")
    assert judge(spectrum, [], 0, "", "", tmp_path)[0] == "unflagged-nan-csv"
    (tmp_path / "t.csv").write_text("x,y,converged\n1,nan,false\n")
    assert judge(spectrum, [], 0, "", "", tmp_path)[0] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c.path))
@settings(max_examples=QUICK_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_command_line_keeps_its_promise(command, seed, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fuzz") / "out"
    argv = cli_fuzz.draw_argv(command, random.Random(seed), out_dir)
    outcome = cli_fuzz.fuzz_once(command, argv, out_dir, QUICK_TIMEOUT_SECONDS)
    assert outcome.verdict == "ok", f"{' '.join(argv)}\n{outcome.verdict}: {outcome.detail}"
