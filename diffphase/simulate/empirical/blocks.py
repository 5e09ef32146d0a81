"""Posterior statistics of the empirical engine, block of queries by block (THEORY B).

Contract
--------
:func:`posterior_statistics` takes checked queries ``xq`` (M, d), centred like the data
(:func:`.points.prepare_queries`), the process coefficients ``a``, ``D`` (M,), the neglected mass
``eps`` (M,) allowed per query (None: no truncation) and what is wanted (``"mean"``,
``"covariance"`` or ``"spectrum"``), and returns one dict of backend arrays with M rows:
``mean`` (posterior mean of the centred data), ``covariance`` ``Cov_w(y)`` (M, d, d) or None,
``covariance_eigenvalues`` (M, d) ascending or None, ``covariance_error_bound``,
``neglected_mass``, ``kept``, ``entropy``, ``n_eff``, ``log_density``, ``tau``, ``methods`` (one
route name per block) and the inputs ``xq``, ``a``, ``D``.

Notes
-----
Queries run in blocks whose ``(block, N)`` weights fit ``chunk_bytes``
(:func:`.routes.query_rows`). In each block the weights are computed once (:mod:`.dense`); the
covariance then takes the dense route, the truncated route (:mod:`.truncated`), or both on a
split of the rows (``"mixed"``), as :mod:`.routes` decides; results are lifted back to ``R^d``
(:func:`.subspace.lift`). The log-density is
``ln p^N(x) = ln sum_mu exp(logw_mu) - |x|^2 / (2D) - ln N - (d/2) ln(2 pi D)``.
"""

from __future__ import annotations

import math

from . import routes
from .dense import dense_moments, features_cached, log_weights, normalized_weights
from .points import TrainingPoints
from .subspace import lift, to_working
from .truncated import scatter_rows, sufficient_sets, truncated_moments


def posterior_statistics(xp, points: TrainingPoints, xq, a, D, *, eps, want: str) -> dict:
    """The statistics of the module contract for all queries, block by block."""
    blocks = []
    size = routes.query_rows(
        points.n_points, points.chunk_bytes, truncating=eps is not None and want != "mean"
    )
    for start in range(0, xq.shape[0], size):
        sl = slice(start, start + size)
        block_eps = None if eps is None else eps[sl]
        blocks.append(block_statistics(xp, points, xq[sl], a[sl], D[sl], eps=block_eps,
                                       want=want))
    merged = {}
    for key in blocks[0]:
        if key == "method":
            merged["methods"] = [b["method"] for b in blocks]
        elif blocks[0][key] is None:
            merged[key] = None
        else:
            merged[key] = xp.concatenate([b[key] for b in blocks], axis=0)
    merged["xq"], merged["a"], merged["D"] = xq, a, D
    return merged


def block_statistics(xp, points: TrainingPoints, xq, a, D, *, eps, want: str) -> dict:
    """Posterior statistics for one block of queries (keys of the module contract, with one
    ``method`` instead of ``methods``).

    ``want``: ``"mean"`` (first moments only), ``"covariance"`` (d x d matrices) or
    ``"spectrum"`` (eigenvalues of the covariance, by the cheapest exact route). ``eps``: the
    neglected mass allowed per query (None: no truncation).
    """
    sqx = xp.sum(xq**2, axis=1)
    xq_full, xq = xq, to_working(xq, points.basis)
    weights, log_norm, entropy, n_eff = normalized_weights(xp, log_weights(xq, a, D, points))
    log_density = (
        log_norm
        - 0.5 * sqx / D
        - math.log(points.n_points)
        - 0.5 * points.dim * xp.log(2 * math.pi * D)
    )
    tau = D / (a * a)
    method, moments, kept, neglected = block_moments(xp, points, xq, a, D, weights, eps, want)
    mean, cov, cov_eigs, cov_bound = lift(
        xp, points.basis, points.subspace_residual, points.radius, xq_full, xq, a, D, *moments
    )
    return {
        "entropy": entropy,
        "n_eff": n_eff,
        "log_density": log_density,
        "tau": tau,
        "mean": mean,
        "covariance": cov,
        "covariance_eigenvalues": cov_eigs,
        "covariance_error_bound": cov_bound,
        "neglected_mass": neglected,
        "kept": kept,
        "method": method,
    }


def block_moments(xp, points: TrainingPoints, xq, a, D, weights, eps, want: str) -> tuple:
    """``(method, moments, kept, neglected)`` of one block by the route :mod:`.routes` picks:
    ``"dense"``, ``"truncated"``, or ``"mixed"`` (the rows with the largest kept sets dense, the
    others truncated). ``moments`` is ``(mean, covariance, eigenvalues, error bound)`` in
    working coordinates; ``kept`` and ``neglected`` are per row (``N`` and 0 on dense rows).
    ``weights`` may be consumed."""
    m = xq.shape[0]
    if eps is not None and want != "mean" and routes.truncation_can_pay(points.n_features):
        kept_t, neglected_t, candidates = sufficient_sets(xp, weights, eps)
        truncate = routes.rows_to_truncate(kept_t, points.n_points, points.rank,
                                           points.n_features, features_cached(points),
                                           points.chunk_bytes)
        if truncate is not None and bool(truncate.all()):
            moments = truncated_moments(xp, points, xq, a, D, weights, kept_t, candidates, want)
            return "truncated", moments, kept_t, neglected_t
        if truncate is not None:  # split the block: truncated rows and dense rows
            chosen = xp.asarray(truncate)
            rows_t = xp.nonzero(chosen)[0]
            rows_d = xp.nonzero(~chosen)[0]
            part_t = truncated_moments(xp, points, xq[rows_t], a[rows_t], D[rows_t],
                                       weights[rows_t], kept_t[rows_t], candidates[rows_t], want)
            part_d = dense_moments(xp, points, weights[rows_d], want)
            moments = scatter_rows(xp, m, [rows_t, rows_d], [part_t, part_d])
            kept = xp.where(chosen, kept_t, points.n_points)
            return "mixed", moments, kept, xp.where(chosen, neglected_t, 0.0)
    kept = xp.full(m, points.n_points, dtype=xp.int64)
    return "dense", dense_moments(xp, points, weights, want), kept, xp.zeros(m)
