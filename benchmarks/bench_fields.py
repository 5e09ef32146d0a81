"""Score-field Jacobians (THEORY E): batched central differences against two loops.

Ours: one batched score call with all ``2 n k`` shifted points
(:func:`diffphase.simulate.jacobians.central_difference_jacobian`). Baselines, both written the
way such loops usually are: (a) two score calls per point and probe; (b) two score calls per probe,
each batched over the ``n`` points. Two scores: a cheap user callable (the exact linear-manifold
score through :class:`CallableScore`: per-call overhead dominates, which batching amortizes) and
the empirical score of ``N`` training points (:class:`EmpiricalScore`, compute-bound: batching
can only save the call overhead, and the large single batch can cost more than ``2k`` medium
ones). All at the noise level ``(a, D) = (1, 0.5)``. With torch installed,
also the batched autograd Jacobian of a small network against the batched central differences on
the same network. No target: the issue asks for no speed here; the rows say when batching pays.
"""

from __future__ import annotations

import numpy as np
from run import best_of

from diffphase.data.laws import LinearGaussian
from diffphase.simulate.empirical import EmpiricalScore
from diffphase.simulate.fields import gaussian_score_field
from diffphase.simulate.jacobians import (
    CallableScore,
    central_difference_jacobian,
    orthonormal_probes,
)

A, D = 1.0, 0.5  # the noise level of the benchmarks


def _loop_central(field, x, step, q):
    """Baseline (a): per point and probe, two score calls of one point each."""
    out = np.zeros((x.shape[0], field.dim, field.dim))
    for p, point in enumerate(x):
        for i in range(q.shape[1]):
            plus = np.asarray(field.score(point[None] + step * q[:, i], A, D))[0]
            minus = np.asarray(field.score(point[None] - step * q[:, i], A, D))[0]
            out[p] += np.outer((plus - minus) / (2 * step), q[:, i])
    return out


def _probe_loop_central(field, x, step, q):
    """Baseline (b): per probe, two score calls batched over the points."""
    out = np.zeros((x.shape[0], field.dim, field.dim))
    for i in range(q.shape[1]):
        directional = (np.asarray(field.score(x + step * q[:, i], A, D))
                       - np.asarray(field.score(x - step * q[:, i], A, D))) / (2 * step)
        out += directional[:, :, None] * q[None, None, :, i]
    return out


def bench_batched_central(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    d, n_train, points = (16, 500, 4) if quick else (32, 2000, 16)
    data = LinearGaussian.manifold((0.25,), (1.0,), d, rng=rng)
    scores = {
        "cheap callable (exact score)": CallableScore(
            gaussian_score_field(data.covariance()).score, d),
        f"empirical score N={n_train}": EmpiricalScore(data.sample(n_train, rng)),
    }
    x = rng.standard_normal((points, d))
    q = orthonormal_probes(d, d, rng)
    rows = []
    for label, field in scores.items():
        ours_jac = central_difference_jacobian(field, x, A, D, 1e-4, probes=q)
        for name, loop in (("per point and probe", _loop_central),
                           ("per probe, batched over points", _probe_loop_central)):
            np.testing.assert_allclose(ours_jac, loop(field, x, 1e-4, q), atol=1e-7)
            ours = best_of(lambda f=field: central_difference_jacobian(f, x, A, D, 1e-4, probes=q))
            base = best_of(lambda f=field, g=loop: g(f, x, 1e-4, q))
            rows.append({"benchmark": f"central-difference Jacobian, {label}, d={d}, {points} "
                                      f"points, {d} probes vs loop {name}",
                         "ours_s": ours, "baseline_s": base, "ratio": base / ours,
                         "target": None, "notes": "one batched call of 2 n k points"})
    return rows


def bench_autograd(quick: bool) -> list[dict]:
    from diffphase.simulate.torch_adapter import torch_available

    if not torch_available():
        return []
    from diffphase.simulate.networks import DenoiserMLP, network_score

    d, points = (12, 32) if quick else (16, 128)
    score = network_score(DenoiserMLP(d, width=128, depth=3))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((points, d))
    q = orthonormal_probes(d, d, rng)
    ours = best_of(lambda: score.jacobian(x, A, D))
    base = best_of(lambda: central_difference_jacobian(score, x, A, D, 1e-4, probes=q))
    return [{"benchmark": f"autograd vs batched central differences, MLP d={d} {points} points",
             "ours_s": ours, "baseline_s": base, "ratio": base / ours, "target": None,
             "notes": "autograd is exact; central differences O(h^2)"}]


BENCHMARKS = [bench_batched_central, bench_autograd]
