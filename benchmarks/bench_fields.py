"""Score-field Jacobians (THEORY E): batched central differences against a per-probe loop.

Ours: one batched score call with all ``2 n k`` shifted points
(:func:`diffphase.validate.jacobians.central_difference_jacobian`). Baseline: the usual loop,
two score calls per probe and point. The score is the empirical score of training points (its
per-call overhead is what batching amortizes). With torch installed, also the batched autograd
Jacobian of a small network against the batched central differences on the same network.
"""

from __future__ import annotations

import numpy as np
from run import best_of

from diffphase.process import get_process
from diffphase.validate.fields import EmpiricalScoreField, linear_manifold
from diffphase.validate.jacobians import central_difference_jacobian, orthonormal_probes


def _loop_central(field, x, t, step, q):
    out = np.zeros((x.shape[0], field.dim, field.dim))
    for p, point in enumerate(x):
        for i in range(q.shape[1]):
            plus = field.score(point[None] + step * q[:, i], t)[0]
            minus = field.score(point[None] - step * q[:, i], t)[0]
            out[p] += np.outer((plus - minus) / (2 * step), q[:, i])
    return out


def bench_batched_central(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    d, n_train, points = (16, 500, 4) if quick else (32, 2000, 16)
    data = linear_manifold((0.25,), (1.0,), d, rng=rng)
    field = EmpiricalScoreField(data.sample(n_train, rng), get_process("ve"))
    x = rng.standard_normal((points, d))
    q = orthonormal_probes(d, d, rng)
    ours_jac = central_difference_jacobian(field, x, 0.5, 1e-4, probes=q)
    np.testing.assert_allclose(ours_jac, _loop_central(field, x, 0.5, 1e-4, q), atol=1e-8)
    ours = best_of(lambda: central_difference_jacobian(field, x, 0.5, 1e-4, probes=q))
    base = best_of(lambda: _loop_central(field, x, 0.5, 1e-4, q), repeats=1 if not quick else 2)
    return [{"benchmark": f"central-difference Jacobian, empirical score d={d} N={n_train} "
                          f"{points} points", "ours_s": ours, "baseline_s": base,
             "ratio": base / ours, "target": None,
             "notes": "batched single call vs per-probe loop"}]


def bench_autograd(quick: bool) -> list[dict]:
    from diffphase.validate.torch_adapter import torch_available

    if not torch_available():
        return []
    from diffphase.validate.networks import DenoiserMLP, network_score

    d, points = (12, 32) if quick else (16, 128)
    score = network_score(DenoiserMLP(d, width=128, depth=3), get_process("ve"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((points, d))
    q = orthonormal_probes(d, d, rng)
    ours = best_of(lambda: score.jacobian(x, 0.5))
    base = best_of(lambda: central_difference_jacobian(score, x, 0.5, 1e-4, probes=q))
    return [{"benchmark": f"autograd vs batched central differences, MLP d={d} {points} points",
             "ours_s": ours, "baseline_s": base, "ratio": base / ours, "target": None,
             "notes": "autograd is exact; central differences O(h^2)"}]


BENCHMARKS = [bench_batched_central, bench_autograd]
