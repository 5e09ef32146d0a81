"""Compiled CPU kernel of the empirical engine's truncated route (THEORY B, "Empirical score").

Contract
--------
:func:`centred_kept_points` turns, for each query, its kept training points (indices sorted by
decreasing weight) into the rows ``sqrt(u_j) (y_j - mu_u)`` whose Gram product
``scaled^T scaled`` is the covariance ``Cov_u`` of the renormalized kept weights ``u``. The weights
are recomputed from exact differences ``x - a y_j`` (log-sum-exp), so they stay accurate where the
matrix-product form ``a x.y - a^2 |y|^2 / 2`` loses digits (tiny ``tau``). One pass over each kept
point's coordinates per stage, with the point's row still in cache: the numpy equivalent needs about
a dozen passes over a ``(rows, kept, d)`` array, which is memory-bound. The kernels are serial on
purpose: they run between BLAS calls, and a parallel numba pool competing with BLAS threads that
still spin after a call measured several times slower (7.4 ms against 1.0 ms for one score of
N = 20000 points in d = 128 on 2 cores). Padding slots (``j >= kept[r]``) are written as zeros.
The cupy route is the array code in :mod:`diffphase.validate.empirical`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def centred_kept_points(data, xq, a, D, idx, kept, scaled, mean, weights):
    """Fill ``scaled`` (m, k_max, d), ``mean`` (m, d) and ``weights`` (m, k_max) in place.

    ``data`` (N, d) training points; ``xq`` (m, d) queries; ``a``, ``D`` (m,) process
    coefficients; ``idx`` (m, k_max) kept indices per row (int64); ``kept`` (m,) how many of them
    are used in each row (``1 <= kept[r] <= k_max``).
    """
    m, k_max = idx.shape
    d = data.shape[1]
    for r in range(m):
        k = kept[r]
        top = -np.inf
        for j in range(k):
            row = idx[r, j]
            total = 0.0
            for c in range(d):
                diff = xq[r, c] - a[r] * data[row, c]
                total += diff * diff
            logw = -total / (2.0 * D[r])
            weights[r, j] = logw
            if logw > top:
                top = logw
        norm = 0.0
        for j in range(k):
            w = np.exp(weights[r, j] - top)
            weights[r, j] = w
            norm += w
        for c in range(d):
            mean[r, c] = 0.0
        for j in range(k):
            w = weights[r, j] / norm
            weights[r, j] = w
            row = idx[r, j]
            for c in range(d):
                mean[r, c] += w * data[row, c]
        for j in range(k):
            root = np.sqrt(weights[r, j])
            row = idx[r, j]
            for c in range(d):
                scaled[r, j, c] = root * (data[row, c] - mean[r, c])
        for j in range(k, k_max):
            weights[r, j] = 0.0
            for c in range(d):
                scaled[r, j, c] = 0.0


@njit(cache=True)
def smallest_sufficient_sets(weights, eps, cap, candidates, kept, neglected):
    """Per row of ``weights`` (m, N), the fewest largest weights whose complement has mass at most
    ``eps[r]``; fills ``kept`` (m,), ``neglected`` (m,) (the complement's mass) and the first
    ``min(kept, cap)`` entries of ``candidates`` (m, cap) with their indices in decreasing weight.

    Points with ``w < eps / N`` are never needed: together they weigh less than ``eps``, so the
    fewest-largest set lies among the others, which are the only ones sorted. A row with
    ``kept[r] > cap`` has its first ``cap`` candidates filled and is meant for the dense route.
    """
    m, n = weights.shape
    for r in range(m):
        floor = eps[r] / n
        count = 0
        rest = 0.0
        for j in range(n):
            if weights[r, j] >= floor:
                count += 1
            else:
                rest += weights[r, j]
        pool = np.empty(count, dtype=np.int64)
        values = np.empty(count)
        count = 0
        for j in range(n):
            if weights[r, j] >= floor:
                pool[count] = j
                values[count] = -weights[r, j]
                count += 1
        order = np.argsort(values)  # decreasing weight
        # walk up from the smallest candidate while the neglected mass stays within eps
        k = count
        mass = rest
        while k > 1 and mass - values[order[k - 1]] <= eps[r]:
            mass -= values[order[k - 1]]
            k -= 1
        kept[r] = k
        neglected[r] = mass
        for j in range(min(k, cap)):
            candidates[r, j] = pool[order[j]]


@njit(cache=True)
def normalize_log_weights(logw, weights, log_norm, entropy, n_eff):
    """Posterior weights from unnormalized log-weights (log-sum-exp), row by row: fills
    ``weights`` (m, N) with ``softmax(logw)``, ``log_norm`` with ``log sum exp(logw)``,
    ``entropy`` with ``-sum w ln w`` and ``n_eff`` with ``1 / sum w^2``; one exponential per entry
    and three passes over each row (the array code makes about a dozen)."""
    m, n = logw.shape
    for r in range(m):
        top = -np.inf
        for j in range(n):
            if logw[r, j] > top:
                top = logw[r, j]
        total = 0.0
        for j in range(n):
            e = np.exp(logw[r, j] - top)
            weights[r, j] = e
            total += e
        norm = top + np.log(total)
        squares = 0.0
        plogp = 0.0
        for j in range(n):
            w = weights[r, j] / total
            weights[r, j] = w
            squares += w * w
            if w > 0.0:
                plogp += w * (logw[r, j] - norm)
        log_norm[r] = norm
        entropy[r] = -plogp
        n_eff[r] = 1.0 / squares
