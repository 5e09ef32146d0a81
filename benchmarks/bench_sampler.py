"""Exact sampler error on a (T, d, k, design) grid: compiled chains vs a per-configuration
Python loop over steps (THEORY D). Contract: see benchmarks/run.py."""

from __future__ import annotations

import time

import numpy as np

from diffphase.process import make_betas
from diffphase.solvers import sampler as sv


def _grid(quick: bool):
    n_T, n_d = (10, 10) if quick else (25, 25)
    T_values = np.unique(np.geomspace(16, 10_000, n_T).astype(int))
    dims = np.unique(np.geomspace(16, 65_536, n_d).astype(int))
    return T_values, dims, [2, 4, 8, 16], sv.DESIGNS


def _python_loop_configuration(betas, eta_t, sigma2_t, lam, dim):
    """Baseline: one configuration, a Python loop over the steps (numpy over directions).

    The design arrays ``(eta_t, sigma_t^2)`` are computed once per ``(T, design)`` outside the
    timing, so the baseline pays for the steps only."""
    abar = np.cumprod(1 - betas)
    directions = np.r_[lam, 0.0]
    v = np.ones_like(directions)
    for t in range(betas.size - 1, 0, -1):
        c = 1 - eta_t[t] / (abar[t] * directions + 1 - abar[t])
        v = (c**2 * v + sigma2_t[t]) / (1 - betas[t])
    target = abar[0] * directions + 1 - abar[0]
    ratio = target / v
    kl_dir = 0.5 * (ratio - 1 - np.log(ratio))
    return float(np.sum(kl_dir[:-1]) + (dim - lam.size) * kl_dir[-1])


def bench_grid(quick: bool) -> list[dict]:
    T_values, dims, ks, designs = _grid(quick)
    sv.sampler_error_grid([16], [16], [2], designs)  # compile outside the timing
    start = time.perf_counter()
    grid = sv.sampler_error_grid(T_values, dims, ks, designs)
    ours = time.perf_counter() - start
    n_configs = grid["kl"].size
    # baseline on a random subset of the same configurations, extrapolated per configuration
    rng = np.random.default_rng(0)
    subset = rng.choice(n_configs, size=min(n_configs, 40 if quick else 120), replace=False)
    schedules = {int(T): make_betas("li-yan", int(T)) for T in T_values}
    coefficients = {(T, design): sv.design_arrays(design, betas)
                    for T, betas in schedules.items() for design in designs}
    start = time.perf_counter()
    worst = 0.0
    for i in subset:
        T, k = int(grid["T"][i]), int(grid["k"][i])
        kl = _python_loop_configuration(schedules[T], *coefficients[T, str(grid["design"][i])],
                                        sv.geometric_spectrum(k), int(grid["dim"][i]))
        worst = max(worst, abs(kl - grid["kl"][i]) / max(abs(grid["kl"][i]), 1e-300)
                    if grid["kl"][i] > 1e-12 else 0.0)
    per_config = (time.perf_counter() - start) / subset.size
    baseline = per_config * n_configs
    return [{
        "benchmark": f"sampler exact KL grid, {n_configs} configs, T<={int(T_values.max())}",
        "ours_s": ours, "baseline_s": baseline, "ratio": baseline / ours, "target": 50.0,
        "notes": (f"baseline timed on {subset.size} configs and scaled (design arrays "
                  f"precomputed); max rel. diff "
                  f"{worst:.1e} where KL > 1e-12 (the float baseline cancels in KL)"),
    }]


def bench_single(quick: bool) -> list[dict]:
    T = 1000 if quick else 10_000
    sv.sampler_error(T, 4096, 8, "star")
    start = time.perf_counter()
    sv.sampler_error(T, 4096, 8, "star")
    ours = time.perf_counter() - start
    betas = make_betas("li-yan", T)
    eta_t, sigma2_t = sv.design_arrays("star", betas)
    start = time.perf_counter()
    _python_loop_configuration(betas, eta_t, sigma2_t, sv.geometric_spectrum(8), 4096)
    baseline = time.perf_counter() - start
    return [{"benchmark": f"sampler exact KL single config, T={T}", "ours_s": ours,
             "baseline_s": baseline, "ratio": baseline / ours, "target": None,
             "notes": "ours includes the TV bounds"}]


BENCHMARKS = [bench_grid, bench_single]
