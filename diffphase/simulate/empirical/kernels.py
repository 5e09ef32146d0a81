"""Compiled CPU kernels of the empirical engine (THEORY B, "Empirical score").

Contract
--------
* :func:`normalize_log_weights`: posterior weights, ``ln`` normalizer, entropy and ``N_eff`` from
  log-weights, row by row (the CPU branch of :func:`.dense.normalized_weights`).
* :func:`smallest_sufficient_sets`: per query, the fewest largest weights whose complement has
  mass at most ``eps`` (the kept set of exact truncation), in time linear in ``N`` (the CPU branch
  of :func:`.truncated.sufficient_sets`).
* :func:`centred_kept_points`: per query, its kept training points turned into the rows
  ``sqrt(u_j) (y_j - mu_u)`` whose Gram product ``scaled^T scaled`` is the covariance ``Cov_u`` of
  the renormalized kept weights ``u``. Where the matrix-product form ``a x.y - a^2 |y|^2 / 2`` of
  the log-weights loses digits (tiny ``tau``) the weights are recomputed from exact differences
  ``x - a y_j`` (log-sum-exp); elsewhere the block's weights are reused. Padding slots
  (``j >= kept[r]``) are written as zeros (the CPU branch of :func:`.truncated.kept_points`).

All arrays are numpy, C-contiguous, float64 (indices int64); outputs are filled in place.

Notes
-----
Each kernel makes one pass per stage over the data it touches, with the current row in cache: the
numpy equivalents need about a dozen passes over ``(rows, N)`` or ``(rows, kept, d)`` arrays,
which are memory-bound. The kernels are serial on purpose: they run between BLAS calls, and a
parallel numba pool competing with BLAS threads that still spin after a call measured several
times slower (7.4 ms against 1.0 ms for one score of N = 20000 points in d = 128 on 2 cores). The
cupy route is the array code beside each caller, in :mod:`.dense` and :mod:`.truncated`. The
kernels are module-level functions compiled with ``cache=True``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...solvers.codegen import repair_numba_cache

# a damaged cache of these functions (empty or truncated files) is discarded before numba reads it
repair_numba_cache(__file__)


@njit(cache=True)
def centred_kept_points(data, xq, a, D, idx, kept, weights, rows, recompute, scaled, mean, work):
    """Fill ``scaled`` (m, k_max, d) and ``mean`` (m, d) in place (``work`` (m, k_max) scratch).

    ``data`` (N, d) training points; ``xq`` (m, d) queries; ``a``, ``D`` (m,) process
    coefficients; ``idx`` (m, k_max) kept indices per row (int64); ``kept`` (m,) how many of them
    are used in each row (``1 <= kept[r] <= k_max``). Row ``r``'s kept weights are
    ``weights[rows[r], idx[r, :kept[r]]]`` renormalized, or, where ``recompute[r]``, recomputed
    from exact differences (log-sum-exp).
    """
    m, k_max = idx.shape
    d = data.shape[1]
    for r in range(m):
        k = kept[r]
        if recompute[r]:
            top = -np.inf
            for j in range(k):
                row = idx[r, j]
                total = 0.0
                for c in range(d):
                    diff = xq[r, c] - a[r] * data[row, c]
                    total += diff * diff
                logw = -total / (2.0 * D[r])
                work[r, j] = logw
                if logw > top:
                    top = logw
            for j in range(k):
                work[r, j] = np.exp(work[r, j] - top)
        else:
            for j in range(k):
                work[r, j] = weights[rows[r], idx[r, j]]
        norm = 0.0
        for j in range(k):
            norm += work[r, j]
        for c in range(d):
            mean[r, c] = 0.0
        for j in range(k):
            w = work[r, j] / norm
            work[r, j] = w
            row = idx[r, j]
            for c in range(d):
                mean[r, c] += w * data[row, c]
        for j in range(k):
            root = np.sqrt(work[r, j])
            row = idx[r, j]
            for c in range(d):
                scaled[r, j, c] = root * (data[row, c] - mean[r, c])
        for j in range(k, k_max):
            for c in range(d):
                scaled[r, j, c] = 0.0


#: the selection buckets weights by the top bits of their IEEE-754 pattern (for positive doubles
#: the bit pattern is monotone in the value): exponent and 6 mantissa bits, i.e. 64 buckets per
#: factor of 2 in weight
_BUCKET_SHIFT = 46


@njit(cache=True)
def _bucket_of(value):
    """Bucket key of one positive double (its bit pattern's top bits)."""
    cell = np.empty(1)
    cell[0] = value
    return cell.view(np.int64)[0] >> _BUCKET_SHIFT


@njit(cache=True)
def smallest_sufficient_sets(weights, eps, cap, candidates, kept, neglected):
    """Per row of ``weights`` (m, N), the fewest largest weights whose complement has mass at most
    ``eps[r]``; fills ``kept`` (m,), ``neglected`` (m,) (the complement's mass) and the first
    ``min(kept, cap)`` entries of ``candidates`` (m, cap) with their indices (in no particular
    order; the set is the one a full sort gives, up to ties).

    Points with ``w < eps / N`` are never needed: together they weigh less than ``eps``. The
    others are bucketed by their bit patterns (``_BUCKET_SHIFT``): one pass gives each bucket's
    mass, walking the buckets from the lightest finds the one where the neglected mass would
    exceed ``eps``, and only that bucket's points are sorted. Linear in ``N`` per row.
    """
    m, n = weights.shape
    bits = weights.view(np.int64)
    for r in range(m):
        floor = eps[r] / n
        top = 0.0
        for j in range(n):
            top = max(top, weights[r, j])
        low_key = _bucket_of(floor)
        mass = np.zeros(_bucket_of(top) - low_key + 1)
        rest = 0.0
        for j in range(n):
            if weights[r, j] >= floor:
                mass[(bits[r, j] >> _BUCKET_SHIFT) - low_key] += weights[r, j]
            else:
                rest += weights[r, j]
        # the lightest buckets are dropped whole while the dropped mass stays within eps
        dropped = rest
        boundary = 0
        while boundary < mass.size - 1 and dropped + mass[boundary] <= eps[r]:
            dropped += mass[boundary]
            boundary += 1
        boundary += low_key
        # in the boundary bucket, its lightest points while the mass stays within eps
        size = 0
        for j in range(n):
            if weights[r, j] >= floor and (bits[r, j] >> _BUCKET_SHIFT) == boundary:
                size += 1
        pool = np.empty(size, dtype=np.int64)
        size = 0
        for j in range(n):
            if weights[r, j] >= floor and (bits[r, j] >> _BUCKET_SHIFT) == boundary:
                pool[size] = j
                size += 1
        pool = pool[np.argsort(weights[r][pool])]  # increasing weight
        first = 0
        while first < size - 1 and dropped + weights[r, pool[first]] <= eps[r]:
            dropped += weights[r, pool[first]]
            first += 1
        # kept: the rest of the boundary bucket and every point of a heavier bucket
        count = 0
        for t in range(first, size):
            if count < cap:
                candidates[r, count] = pool[t]
            count += 1
        for j in range(n):
            if weights[r, j] >= floor and (bits[r, j] >> _BUCKET_SHIFT) > boundary:
                if count < cap:
                    candidates[r, count] = j
                count += 1
        kept[r] = count
        neglected[r] = dropped


#: relative weights below ``exp(WEIGHT_FLUSH_LOG)`` (about 1e-300 of the largest) are set to 0:
#: they change no sum by more than ``N e^-690`` of its largest term, far below rounding, and
#: kept as subnormal numbers they slow every later product with the weights by a factor of ~10
#: to 100 (a block of 81 queries x 60000 points took 0.96 s instead of 0.02 s)
WEIGHT_FLUSH_LOG = -690.0


@njit(cache=True)
def normalize_log_weights(logw, weights, log_norm, entropy, n_eff):
    """Posterior weights from unnormalized log-weights (log-sum-exp), row by row: fills
    ``weights`` (m, N) with ``softmax(logw)``, ``log_norm`` with ``log sum exp(logw)``,
    ``entropy`` with ``-sum w ln w`` and ``n_eff`` with ``1 / sum w^2``; one exponential per entry
    and three passes over each row (the array code makes about a dozen). Weights below
    ``exp(WEIGHT_FLUSH_LOG)`` times the largest are written as exact zeros (no subnormals)."""
    m, n = logw.shape
    for r in range(m):
        top = -np.inf
        for j in range(n):
            if logw[r, j] > top:
                top = logw[r, j]
        total = 0.0
        for j in range(n):
            gap = logw[r, j] - top
            e = np.exp(gap) if gap > WEIGHT_FLUSH_LOG else 0.0
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
