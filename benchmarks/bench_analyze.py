"""``diffphase analyze`` end to end: wall time and peak memory against the goals of the real-data
issue, and the previous algorithm as the baseline.

Rows (``python benchmarks/run.py --only analyze``):

1. The bundled digits (1797 x 64) end to end, goal <= 60 s on 2 cores: this code against the
   analysis at ``BASELINE_COMMIT`` (the last commit before the blocked measurements) on the same
   data.
2. Generated Gaussian rows with a known spiked spectrum (``spiked_spectrum``), ``N = 60000``,
   ``d = 784``, read from an ``.npy`` file, goal <= 10 minutes and <= 4 GB peak memory. The
   previous algorithm does not finish this size (killed after 27 minutes), so the baseline is
   row 3.
3. The same generated law at ``N = BASELINE_ROWS``, ``d = 784``, where the previous algorithm
   finishes: this code against it, the ratio of the algorithms.

Each analysis runs in a fresh subprocess (default options of :func:`diffphase.studies.analyze.
analyze`: 200 probes, 32 Jacobian probes at 6 ``tau``); its time is the wall time of
``analyze()`` (planning, loading, predictions, measurements), its peak memory the process's
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (interpreter and libraries included). The baseline
code is taken read-only from git (``git archive BASELINE_COMMIT diffphase``); without a git
checkout holding that commit the baseline columns are empty. ``--quick`` uses 10000 x 784 for
row 2 and 1500 x 784 for row 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: the analysis before the blocked measurements (own weights and entropy route from two products
#: per block of probes, Gram covariances, flushed subnormal weights, truncated Jacobian weights)
BASELINE_COMMIT = "fc864ce7116af1a0c6d025be5668177538301852"
GOAL_DIGITS_S = 60.0
GOAL_LARGE_S = 600.0
GOAL_LARGE_MB = 4000.0
LARGE = (60000, 784)
BASELINE_ROWS = 4000

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import diffphase
from diffphase.studies.analyze import analyze
source = json.loads(sys.argv[2])
start = time.perf_counter()
result = analyze(**source)
seconds = time.perf_counter() - start
summary = result.summary
print(json.dumps({"seconds": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                  "n": summary["n"], "dim": summary["dim"], "tau_C": summary["tau_C"],
                  "tau_half": summary["collapse_measured"]["tau_half"],
                  "lambda_max": summary["lambda_max"], "package": diffphase.__file__}))
"""


def spiked_spectrum(dim: int) -> np.ndarray:
    """Ten spikes from 30 down to 5 over a unit bulk (before the trace normalization)."""
    eigenvalues = np.ones(dim)
    eigenvalues[:10] = np.linspace(30.0, 5.0, 10)
    return eigenvalues


def write_rows(path: str, rows: int, dim: int, seed: int = 0) -> str:
    """Gaussian rows with the spiked spectrum, saved as ``.npy`` in blocks (float64)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(spiked_spectrum(dim))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, dim))
    for start in range(0, rows, 5000):
        stop = min(rows, start + 5000)
        out[start:stop] = rng.standard_normal((stop - start, dim)) * scale
    out.flush()
    del out
    return path


def run_analysis(code_root: str, source: dict, timeout: float) -> dict | None:
    """One analysis in a fresh process importing ``diffphase`` from ``code_root``; None when it
    fails or runs past ``timeout`` seconds."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, code_root, json.dumps(source)],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=code_root)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(folder: str) -> str | None:
    """The package at ``BASELINE_COMMIT`` extracted into ``folder`` (read-only git), or None."""
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", BASELINE_COMMIT, "diffphase"],
                                 capture_output=True, timeout=120, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return folder


def _row(name: str, ours: dict | None, base: dict | None, goal_s: float | None,
         goal_mb: float | None, notes: str) -> dict:
    ours_s = None if ours is None else ours["seconds"]
    base_s = None if base is None else base["seconds"]
    verdict = []
    if goal_s is not None:
        met = ours_s is not None and ours_s <= goal_s
        verdict.append(f"goal <= {goal_s:g} s: {'met' if met else 'MISSED'}")
    if goal_mb is not None:
        met = ours is not None and ours["peak_mb"] <= goal_mb
        peak = "-" if ours is None else f"{ours['peak_mb']:.0f}"
        verdict.append(f"peak {peak} MB, goal <= {goal_mb:g} MB: {'met' if met else 'MISSED'}")
    return {"benchmark": name, "ours_s": ours_s, "baseline_s": base_s,
            "ratio": None if ours_s is None or base_s is None else base_s / ours_s,
            "target": None,
            "ours_peak_mb": None if ours is None else ours["peak_mb"],
            "baseline_peak_mb": None if base is None else base["peak_mb"],
            "memory_ratio": (None if ours is None or base is None
                             else base["peak_mb"] / ours["peak_mb"]),
            "notes": "; ".join(verdict + [notes]), "ours": ours, "baseline": base}


def bench_analyze(quick: bool) -> list[dict]:
    large = (10000, 784) if quick else LARGE
    small = (1500, 784) if quick else (BASELINE_ROWS, 784)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tree = os.path.join(folder, "baseline")
        os.makedirs(tree)
        old = baseline_tree(tree)
        digits = {"dataset": "digits"}
        ours = run_analysis(ROOT, digits, 3600)
        base = None if old is None else run_analysis(old, digits, 3600)
        rows.append(_row("analyze digits 1797 x 64 end to end", ours, base, GOAL_DIGITS_S, None,
                         f"baseline: the analysis at {BASELINE_COMMIT[:7]}"))
        path = write_rows(os.path.join(folder, "large.npy"), *large)
        ours = run_analysis(ROOT, {"data": path}, 3600)
        rows.append(_row(f"analyze generated {large[0]} x {large[1]} (.npy) end to end", ours,
                         None, GOAL_LARGE_S, GOAL_LARGE_MB,
                         "the previous algorithm did not finish this size (killed after 27 "
                         "minutes); its ratio is the next row"))
        os.remove(path)
        path = write_rows(os.path.join(folder, "small.npy"), *small)
        ours = run_analysis(ROOT, {"data": path}, 3600)
        base = None if old is None else run_analysis(old, {"data": path}, 3600)
        rows.append(_row(f"analyze generated {small[0]} x {small[1]} (.npy), old vs new", ours,
                         base, None, None, f"baseline: the analysis at {BASELINE_COMMIT[:7]}"))
    return rows


BENCHMARKS = [bench_analyze]
