"""Performance goals, each measured side by side with its baseline in one run.

1. Belief propagation (THEORY C), ``L = 10, s = 2, v = 32, m = 8``: the numba engine against
   the goal of at least 25% of the machine's matmul rate on the contraction shapes, measured in
   the same run: the baseline time is the FLOP count of a one-hot matrix-multiply formulation of
   the upward pass (``(batch * nodes, v) @ (v, v * m)`` per child) at a quarter of the rate
   measured on those shapes. Beside it the engine's rate in useful multiply-adds (that
   formulation does ``v`` times the work) and the numpy ('array') engine's time.
2. Batched roots: the collapse equation (THEORY B) for many spectra, the compiled Newton that
   :func:`~diffphase.solvers.memorization.collapse_tau` runs
   (:func:`~diffphase.solvers.memorization.collapse_log_tau_roots`) against
   ``scipy.optimize.elementwise.find_root`` on the same batch, residual, brackets and tolerances;
   target 2x; iterations, residuals and the generic :func:`bracketed_root` reported beside.
3. Central-difference Jacobians of the empirical score (THEORY E): blocked batched calls against
   the loop over probes batched over points, at several sizes; target: never slower (1x).
4. Spectral density over ``10^6`` points against the K = 1 closed form (target: within 5x).
5. Cold start: a new process with a warm kernel cache, from the first import of the package to
   the end of the first call (split into import, kernel module load, first call), for the
   memorization kernels and for a first spectral density; the baseline column is the 0.5 s
   budget, and numba's own floor (import and first call of a trivial cached function, in a new
   process) is printed beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import best_of  # noqa: E402


# ----------------------------------------------------------------------------- 1. BP
def matmul_gflops(rows: int, inner: int, cols: int, repeats: int = 5) -> float:
    """Best measured GFLOP/s of ``(rows, inner) @ (inner, cols)`` in float64."""
    rng = np.random.default_rng(0)
    left, right = rng.random((rows, inner)), rng.random((inner, cols))
    return 2.0 * rows * inner * cols / best_of(lambda: left @ right, repeats) / 1e9


def bench_bp(quick: bool) -> list[dict]:
    from bench_hierarchy import _bp_and_sample

    from diffphase.data.channels import noisy_leaf_likelihood
    from diffphase.data.rhm import RandomHierarchyModel

    batch, v, m, s, depth = (100 if quick else 1000), 32, 8, 2, 10
    model = RandomHierarchyModel(v, m, s, depth, seed=0)
    rng = np.random.default_rng(0)
    leaves, _ = model.sample(batch, rng)
    nu = noisy_leaf_likelihood("uniform", leaves, 0.3, model.v, rng)
    _bp_and_sample(model, nu[:2], "numba")  # compile outside the timing
    ours, base = [], []
    for _ in range(2):  # interleaved: a loaded machine slows both alike
        ours.append(best_of(lambda: _bp_and_sample(model, nu, "numba"), 2))
        base.append(best_of(lambda: _bp_and_sample(model, nu, "array"), 1))
    ours, base = min(ours), min(base)
    internal_nodes = (s**depth - 1) // (s - 1)
    onehot_flops = internal_nodes * s * 2 * v * v * m  # one-hot gather as matmul, per child
    useful_flops = internal_nodes * v * m * s  # (s - 1) multiplies and one add per rule
    rows_mm = min(batch * 256, 65536)
    rate = matmul_gflops(rows_mm, v, v * m)
    budget = batch * onehot_flops / (0.25 * rate * 1e9)  # that formulation at 25% of the rate
    onehot = batch * onehot_flops / ours / 1e9
    useful = batch * useful_flops / ours / 1e9
    return [{"benchmark": f"BP up+sample L={depth} s={s} v={v} m={m} batch={batch}: numba "
                          "engine vs the matmul formulation at 25% of the machine's rate",
             "ours_s": ours, "baseline_s": budget, "ratio": budget / ours, "target": 1.0,
             "notes": f"baseline = the one-hot matmul formulation's FLOPs at 25% of the machine's "
                      f"matmul rate, {rate:.1f} GFLOP/s on ({rows_mm}, {v}) @ ({v}, {v * m}); "
                      f"ours counted in those FLOPs {onehot:.1f} GFLOP/s "
                      f"({100 * onehot / rate:.0f}% of matmul), in useful multiply-adds "
                      f"{useful:.2f} GFLOP/s ({100 * useful / rate:.1f}%); {batch / ours:.0f} "
                      f"trees/s; the numpy engine {base:.3g} s ({base / ours:.1f}x slower)"}]


# ----------------------------------------------------------------------------- 2. roots
def _collapse_batch(points: int, groups: int = 4):
    """Random collapse equations: node variances, per-dimension weights, ``ln N / d``; and the
    theory's brackets in ``ln tau`` (as :func:`~diffphase.solvers.memorization.collapse_tau`)."""
    from diffphase.solvers import memorization as mem

    rng = np.random.default_rng(0)
    nodes = np.exp(rng.uniform(-4, 2, (points, groups)))
    weights = rng.dirichlet(np.ones(groups), points) * rng.uniform(0.05, 1, (points, 1))
    rate = np.log(rng.uniform(1e2, 1e6, points)) / 100
    alpha = weights.sum(1)
    trace = (weights * nodes).sum(1)
    mean_log = (weights * np.log(nodes)).sum(1) / alpha
    lo, hi = mem._closed_form("collapse_bracket")(alpha, trace, mean_log, rate)
    hi = hi + 1e-9
    lo = np.minimum(lo, hi - 1e-6) - 1e-9
    return mem.kernels().collapse_residual_batch, nodes, weights, rate, lo, hi


def bench_roots(quick: bool) -> list[dict]:
    from diffphase.solvers.memorization import collapse_log_tau_roots
    from diffphase.solvers.roots import bracketed_root

    try:
        from scipy.optimize.elementwise import find_root
    except ImportError:  # scipy < 1.15
        return [{"benchmark": "collapse roots vs scipy elementwise find_root", "ours_s": None,
                 "baseline_s": None, "ratio": None, "target": 2.0,
                 "notes": "scipy.optimize.elementwise missing (scipy < 1.15)"}]
    points = 20_000 if quick else 200_000
    residual, nodes, weights, rate, lo, hi = _collapse_batch(points)
    residual(lo, nodes, weights, rate)  # load the kernel outside the timing

    def scipy_residual(x, index):
        index = index.astype(np.int64)
        return residual(np.ascontiguousarray(x), nodes[index], weights[index], rate[index])

    def ours():  # what collapse_tau runs: compiled Newton with the sympy slope
        return collapse_log_tau_roots(nodes, weights, rate, lo, hi, xtol=1e-13, rtol=1e-15)

    def generic():  # the generic batched Chandrupatla of solvers/roots.py
        return bracketed_root(residual, lo, hi, xtol=1e-13, rtol=1e-15,
                              args=(nodes, weights, rate))

    def theirs():
        return find_root(scipy_residual, (lo, hi), args=(np.arange(points),),
                         tolerances={"xatol": 1e-13, "xrtol": 1e-15})

    ours()  # load the Newton kernel outside the timing
    theirs()  # scipy's first call imports its array-API layer
    t_ours, t_base, t_generic = [], [], []
    for _ in range(3):  # interleaved: a loaded machine slows both alike
        t_ours.append(best_of(ours, 1))
        t_base.append(best_of(theirs, 1))
        t_generic.append(best_of(generic, 1))
    t_ours, t_base, t_generic = min(t_ours), min(t_base), min(t_generic)
    mine, scipy_result, chandrupatla = ours(), theirs(), generic()
    err_ours = np.max(np.abs(residual(mine.root, nodes, weights, rate)))
    err_scipy = np.max(np.abs(residual(scipy_result.x, nodes, weights, rate)))
    gap = np.max(np.abs(mine.root - scipy_result.x))
    return [{"benchmark": f"collapse equation, {points} roots vs scipy elementwise find_root",
             "ours_s": t_ours, "baseline_s": t_base, "ratio": t_base / t_ours, "target": 2.0,
             "notes": f"median iterations ours {np.median(mine.iterations):.0f} (max "
                      f"{mine.iterations.max()}), scipy {np.median(scipy_result.nit):.0f}; "
                      f"max |residual| ours {err_ours:.1e}, scipy {err_scipy:.1e}; max |ln tau "
                      f"ours - scipy| {gap:.1e}; failed {mine.n_failed}; generic "
                      f"bracketed_root {t_generic:.3g} s (x{t_base / t_generic:.2f}, median "
                      f"{np.median(chandrupatla.iterations):.0f} iterations)"}]


# ----------------------------------------------------------------------------- 3. Jacobians
#: interleaved pairs per size: where the cache model makes the baseline's own calls the two are
#: the same work, and the best of 7 pairs still scattered by +-1.5% around a tie
JACOBIAN_PAIRS = 15


def bench_jacobians(quick: bool) -> list[dict]:
    from bench_fields import _probe_loop_central

    from diffphase.data.laws import LinearGaussian
    from diffphase.simulate.empirical import EmpiricalScore
    from diffphase.simulate.jacobians import (
        central_difference_jacobian,
        orthonormal_probes,
        rows_per_call,
    )

    sizes = ([(16, 500, 4, 16), (32, 2000, 16, 32)] if quick else
             [(16, 500, 4, 16), (32, 2000, 16, 32), (8, 200, 256, 8), (64, 2000, 4, 64),
              (32, 8000, 64, 8), (32, 20000, 8, 32)])
    rows = []
    for d, n_train, points, k in sizes:
        rng = np.random.default_rng(0)
        field = EmpiricalScore(LinearGaussian.manifold((0.25,), (1.0,), d, rng=rng)
                               .sample(n_train, rng))
        x = rng.standard_normal((points, d))
        q = orthonormal_probes(d, k, rng)
        np.testing.assert_allclose(central_difference_jacobian(field, x, 1.0, 0.5, 1e-4, probes=q),
                                   _probe_loop_central(field, x, 1e-4, q), atol=1e-7)
        t_ours, t_base = [], []
        for _ in range(JACOBIAN_PAIRS):  # interleaved pairs: a loaded machine slows both alike
            t_ours.append(best_of(lambda f=field, x=x, q=q: central_difference_jacobian(
                f, x, 1.0, 0.5, 1e-4, probes=q), 1))
            t_base.append(best_of(lambda f=field, x=x, q=q: _probe_loop_central(f, x, 1e-4, q),
                                  1))
        ours, base = min(t_ours), min(t_base)
        per_call = rows_per_call(field, 2 * points * k, points)
        calls = -(-2 * points * k // per_call)
        same = " (the same calls as the baseline: a tie is expected)" if per_call == points else ""
        rows.append({"benchmark": f"central-difference Jacobian, empirical N={n_train} d={d}, "
                                  f"{points} points, {k} probes vs loop per probe",
                     "ours_s": ours, "baseline_s": base, "ratio": base / ours, "target": 1.0,
                     "notes": f"cache model: {calls} calls of {min(per_call, 2 * points * k)} "
                              f"rows against the baseline's {2 * k} calls of {points}{same}; "
                              f"best of {JACOBIAN_PAIRS} interleaved pairs"})
    return rows


# ----------------------------------------------------------------------------- 4. spectral
def bench_spectral_density(quick: bool) -> list[dict]:
    from bench_spectral import _grid, closed_form, ours

    alphas, taus, jn = _grid(quick)
    ours(alphas[:2], taus[:2], jn)
    t_ours, t_closed = [], []
    pairs = 15  # interleaved: a loaded machine slows both alike; best of each
    for _ in range(pairs):
        t_ours.append(best_of(lambda: ours(alphas, taus, jn), 1))
        t_closed.append(best_of(lambda: closed_form(alphas, taus, jn), 1))
    ratios = sorted(c / o for c, o in zip(t_closed, t_ours, strict=True))
    t_ours, t_closed = min(t_ours), min(t_closed)
    return [{"benchmark": f"spectral density, {alphas.size * taus.size * jn.size:.2g} points vs "
                          "K=1 closed form", "ours_s": t_ours, "baseline_s": t_closed,
             "ratio": t_closed / t_ours, "target": 0.2,
             "notes": f"ratio 0.2 = within 5x; ratios of the {pairs} interleaved pairs: median "
                      f"{np.median(ratios):.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}"}]


# ----------------------------------------------------------------------------- 5. cold start
COLD_SCRIPTS = {  # name -> (script, what it does); each prints its stage times as JSON
    "memorization": ("""
import json, time
start = time.perf_counter()
from diffphase.solvers import memorization as m
import numba, numpy as np
imported = time.perf_counter()
module = m.kernels()
loaded = time.perf_counter()
module.collapse_residual_batch(np.zeros(2), np.ones((2, 2)), np.ones((2, 2)), np.zeros(2))
called = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported,
                  "first_call": called - loaded}))
""", "memorization kernels: import, load, first call"),
    "spectral": ("""
import json, time
start = time.perf_counter()
from diffphase.solvers import spectral as S
import numba, numpy as np
imported = time.perf_counter()
module = S.kernels()
loaded = time.perf_counter()
S.jacobian_density(np.array([-0.5, -0.2]), 1.0, S.VarianceLaw.from_groups([0.5], [1.0]))
called = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported,
                  "first_call": called - loaded}))
""", "spectral: import, kernel load, first jacobian_density (edges, lines, closed forms)"),
    "hierarchy": ("""
import json, time
start = time.perf_counter()
from diffphase.solvers import hierarchy as H
import numba, numpy as np
imported = time.perf_counter()
module = H.compiled_map()
loaded = time.perf_counter()
H.critical_point(32, 8, 2)
H.mean_field_levels(np.array([0.2, 0.5]), 32, 8, 2, 4)
called = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported,
                  "first_call": called - loaded}))
""", "hierarchy (thresholds): import, kernel load, first critical point and mean-field levels"),
}

#: numba's own floor: importing numba and the first call of one trivial cached function
NUMBA_FLOOR_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import numba, numpy as np
sys.path.insert(0, sys.argv[1])
import floor_kernel
imported = time.perf_counter()
floor_kernel.total(np.ones(3))
called = time.perf_counter()
print(json.dumps({"import": imported - start, "load": 0.0, "first_call": called - imported}))
"""


def _cold_env() -> dict:
    """The environment of a cold process: this one's, with bytecode caches allowed (an installed
    package has its ``.pyc`` files; a shell's ``PYTHONDONTWRITEBYTECODE`` would make every new
    process compile the package's source again)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _cold_runs(script: str, args=(), repeats: int = 3, gc_paused: bool = False) -> list[dict]:
    """Run ``script`` in new processes; ``gc_paused``: with Python's cyclic garbage collector
    disabled from the first line (a diagnostic: how much of the start-up is collection)."""
    if gc_paused:
        script = "import gc; gc.disable()\n" + script
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                             text=True, check=True, env=_cold_env())
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def bench_cold_start(quick: bool) -> list[dict]:
    import tempfile

    repeats = 3 if quick else 5
    total = {"floor": [], **{name: [] for name in COLD_SCRIPTS}}
    paused = {"floor": [], **{name: [] for name in COLD_SCRIPTS}}
    stages = {name: [] for name in COLD_SCRIPTS}
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "floor_kernel.py"), "w") as handle:
            handle.write("from numba import njit\n\n\n@njit(cache=True)\n"
                         "def total(x):\n    return x.sum()\n")
        for repeat in range(repeats + 1):  # interleaved; the first round fills the caches
            for gc_paused in (False, True):
                target = paused if gc_paused else total
                run = _cold_runs(NUMBA_FLOOR_SCRIPT, (folder,), 1, gc_paused)[0]
                if repeat:
                    target["floor"].append(run["import"] + run["first_call"])
                for name, (script, _) in COLD_SCRIPTS.items():
                    run = _cold_runs(script, repeats=1, gc_paused=gc_paused)[0]
                    if repeat:
                        target[name].append(run["import"] + run["load"] + run["first_call"])
                        if not gc_paused:
                            stages[name].append(run)
    floor_s, floor_paused = min(total["floor"]), min(paused["floor"])
    rows = []
    for name, (_, what) in COLD_SCRIPTS.items():
        best = stages[name][int(np.argmin(total[name]))]
        ours = min(total[name])
        rows.append({
            "benchmark": f"cold start, warm cache, new process: {what}",
            "ours_s": ours, "baseline_s": 0.5, "ratio": 0.5 / ours, "target": 1.0,
            "notes": f"baseline = the 0.5 s budget; best of {repeats}: import "
                     f"{best['import']:.2f} s, kernel module {best['load']:.2f} s, first call "
                     f"{best['first_call']:.2f} s; numba alone (import + first call of a "
                     f"trivial cached function, interleaved) {floor_s:.2f} s, so ours is "
                     f"{ours / floor_s:.2f}x numba's floor; with Python's cyclic garbage "
                     f"collector paused, ours {min(paused[name]):.2f} s and numba's floor "
                     f"{floor_paused:.2f} s; bytecode caches on; measured "
                     f"{time.strftime('%H:%M')}"})
    return rows


BENCHMARKS = [bench_roots, bench_jacobians, bench_cold_start, bench_bp, bench_spectral_density]
