"""Score-field Jacobians (THEORY E): batched central differences against two loops.

Ours: one batched score call with all ``2 n k`` shifted points
(:func:`diffphase.simulate.jacobians.central_difference_jacobian`). Baselines, both written the
way such loops usually are: (a) two score calls per point and probe; (b) two score calls per probe,
each batched over the ``n`` points. Two scores: a cheap user callable (the exact linear-manifold
score through :class:`CallableScore`: per-call overhead dominates, which batching amortizes) and
the empirical score of ``N`` training points (compute-bound: batching can only save the call
overhead, and the large single batch can cost more than ``2k`` medium ones). With torch installed,
also the batched autograd Jacobian of a small network against the batched central differences on
the same network. No target: the issue asks for no speed here; the rows say when batching pays.
"""

from __future__ import annotations

import numpy as np
from run import best_of

from diffphase.process import get_process
from diffphase.simulate.fields import EmpiricalScoreField, gaussian_score_field, linear_manifold
from diffphase.simulate.jacobians import (
    CallableScore,
    central_difference_jacobian,
    orthonormal_probes,
)


def _loop_central(field, x, t, step, q):
    """Baseline (a): per point and probe, two score calls of one point each."""
    out = np.zeros((x.shape[0], field.dim, field.dim))
    for p, point in enumerate(x):
        for i in range(q.shape[1]):
            plus = field.score(point[None] + step * q[:, i], t)[0]
            minus = field.score(point[None] - step * q[:, i], t)[0]
            out[p] += np.outer((plus - minus) / (2 * step), q[:, i])
    return out


def _probe_loop_central(field, x, t, step, q):
    """Baseline (b): per probe, two score calls batched over the points."""
    out = np.zeros((x.shape[0], field.dim, field.dim))
    for i in range(q.shape[1]):
        directional = (field.score(x + step * q[:, i], t)
                       - field.score(x - step * q[:, i], t)) / (2 * step)
        out += directional[:, :, None] * q[None, None, :, i]
    return out


def bench_batched_central(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    d, n_train, points = (16, 500, 4) if quick else (32, 2000, 16)
    process = get_process("ve")
    data = linear_manifold((0.25,), (1.0,), d, rng=rng)
    scores = {
        "cheap callable (exact score)": CallableScore(
            gaussian_score_field(data.covariance(), process).score, d),
        f"empirical score N={n_train}": EmpiricalScoreField(data.sample(n_train, rng), process),
    }
    x = rng.standard_normal((points, d))
    q = orthonormal_probes(d, d, rng)
    rows = []
    for label, field in scores.items():
        ours_jac = central_difference_jacobian(field, x, 0.5, 1e-4, probes=q)
        for name, loop in (("per point and probe", _loop_central),
                           ("per probe, batched over points", _probe_loop_central)):
            np.testing.assert_allclose(ours_jac, loop(field, x, 0.5, 1e-4, q), atol=1e-7)
            ours = best_of(lambda f=field: central_difference_jacobian(f, x, 0.5, 1e-4, probes=q))
            base = best_of(lambda f=field, g=loop: g(f, x, 0.5, 1e-4, q))
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
