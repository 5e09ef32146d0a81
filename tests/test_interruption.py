"""SIGTERM and Ctrl-C end a run cleanly: one line, exit 130, no half-written or temporary file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from diffphase.outputs import TEMP_SUFFIX


def _argv(out_dir, rows: int, taus: int) -> list[str]:
    return [sys.executable, "-m", "diffphase", "phase-diagram", "spectral", "--n-rows", str(rows),
            "--n-tau", str(taus), "--out", str(out_dir), "--quiet"]  # no stage lines


def _start(out_dir):
    env = dict(os.environ, MPLBACKEND="Agg")
    # compile the kernels first: a signal that lands inside numba's compiler is not ours to handle
    subprocess.run(_argv(out_dir.parent / "warm", 2, 2), env=env, capture_output=True, check=True,
                   stdin=subprocess.DEVNULL)
    # about 25 s on two cores: the signal, sent after 3 s, lands inside the computation
    return subprocess.Popen(_argv(out_dir, 400, 4000), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """In the child, before it starts: Ctrl-C's default action, as under a terminal. A job
    started in the background by a non-interactive shell (as a CI runner may start the suite)
    inherits SIGINT ignored, and Python then rightly leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_with_one_line_and_no_partial_file(tmp_path, signum):
    out_dir = tmp_path / "out"
    proc = _start(out_dir)
    time.sleep(3.0)  # past start-up, inside the computation
    if proc.poll() is not None:
        pytest.skip("the run finished before the signal was sent")
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)  # a lost signal fails here
    assert stderr.strip().splitlines() == ["error: interrupted"], stderr
    assert "Traceback" not in stderr
    left = list(out_dir.glob(f".*{TEMP_SUFFIX}")) if out_dir.exists() else []
    assert not left
    for path in out_dir.glob("*.json") if out_dir.exists() else []:
        assert path.read_text().rstrip().endswith("}")  # complete files only
