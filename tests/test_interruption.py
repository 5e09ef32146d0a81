"""SIGTERM and Ctrl-C end a run cleanly: one line, exit 130, no half-written or temporary file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from diffphase.outputs import TEMP_SUFFIX


def _start(out_dir):
    env = dict(os.environ, MPLBACKEND="Agg")
    argv = [sys.executable, "-m", "diffphase", "phase-diagram", "spectral", "--n-rows", "120",
            "--n-tau", "600", "--out", str(out_dir)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_with_one_line_and_no_partial_file(tmp_path, signum):
    out_dir = tmp_path / "out"
    proc = _start(out_dir)
    time.sleep(3.0)  # past start-up, inside the computation
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted"], stderr
    assert "Traceback" not in stderr
    left = list(out_dir.glob(f".*{TEMP_SUFFIX}")) if out_dir.exists() else []
    assert not left
    for path in out_dir.glob("*.json") if out_dir.exists() else []:
        assert path.read_text().rstrip().endswith("}")  # complete files only
