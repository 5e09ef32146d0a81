"""Dense route of the empirical engine: every weight of every query (THEORY B, "Empirical score").

Contract
--------
For a block of queries ``xq`` (m, r) in working coordinates (centred like the data) and the
process coefficients ``a``, ``D`` (m,):

* :func:`log_weights`: the unnormalized log-weights ``(a x.y_mu - a^2 |y_mu|^2 / 2) / D`` (m, N),
  one matrix product (the ``|x|^2`` term of ``-|x - a y_mu|^2 / (2D)`` cancels in the softmax);
* :func:`normalized_weights`: ``w = softmax(logw)`` by log-sum-exp, the log normalizer, the
  entropy ``-sum w ln w`` and ``N_eff = 1 / sum w^2`` per row (weights below ``e^-690`` of the
  largest are exact zeros: :data:`.kernels.WEIGHT_FLUSH_LOG`);
* :func:`second_moments`: ``sum_mu w_mu y_mu y_mu^T`` for every row of ``w``;
* :func:`weighted_covariances`: ``Cov_w(y)`` for every row of ``w`` as Gram products of the
  weighted, centred points (the route for few rows and a large rank);
* :func:`dense_moments`: ``(mean, covariance or None, covariance eigenvalues or None, error
  bound = 0)`` of the weights, ``Cov_w(y) = E_w[y y^T] - ybar ybar^T``.

Every array is on the backend ``xp`` (numpy: the compiled kernels of :mod:`.kernels` where they
apply; cupy: array code).

Notes
-----
The second moments of spread weights are one matrix product ``W @ Z`` with the symmetric
outer-product features ``Z[mu] = (y_mu y_mu^T)_{i <= j}``, ``r (r + 1) / 2`` per point. The
features are built once and cached on the :class:`~.points.TrainingPoints` when they fit its
``feature_cache_bytes`` (repeated calls on the same data, as along trajectories, then cost one
product each); otherwise they are rebuilt ``N``-chunk by ``N``-chunk at every call, so the peak
memory stays one centred copy of the data plus ``O(chunk_bytes + 16 N)`` bytes.

Rebuilding the features costs ``N r (r + 1) / 2`` writes per call and a product whose inner
dimension (the chunk of points) is short, both far below BLAS speed; for a few rows and a large
rank (the Jacobian read-out of image data: 32 rows, ``r = 784``) the Gram products
``B_p^T B_p`` with ``B_p = sqrt(w_p) (Y - ybar_p)`` (``N r^2`` multiply-adds per row, at BLAS
speed, on ``N``-chunks of ``chunk_bytes``) are several times faster, and they are centred, so
``Cov_w`` has no cancellation. :func:`.routes.covariance_by_gram` chooses between the two.
"""

from __future__ import annotations

import numpy as np

from . import routes
from .kernels import WEIGHT_FLUSH_LOG, normalize_log_weights
from .points import TrainingPoints


def log_weights(xq, a, D, points: TrainingPoints):
    """Unnormalized log-weights ``(a x.y - a^2 |y|^2 / 2) / D`` (the ``|x|^2`` term cancels),
    ``xq`` in working coordinates."""
    logw = (xq * (a / D)[:, None]) @ points.data.T
    logw -= (0.5 * a * a / D)[:, None] * points.squared_norms[None, :]
    return logw


def normalized_weights(xp, logw):
    """``(weights, log_norm, entropy, n_eff)`` per row of unnormalized log-weights."""
    if xp is np:
        m, n = logw.shape
        weights = np.empty((m, n))
        log_norm, entropy, n_eff = np.empty(m), np.empty(m), np.empty(m)
        normalize_log_weights(logw, weights, log_norm, entropy, n_eff)
        return weights, log_norm, entropy, n_eff
    top = xp.max(logw, axis=1)
    gap = logw - top[:, None]
    weights = xp.where(gap > WEIGHT_FLUSH_LOG, xp.exp(gap), 0.0)
    total = xp.sum(weights, axis=1)
    weights /= total[:, None]
    log_norm = top + xp.log(total)
    plogp = xp.where(weights > 0, weights * (logw - log_norm[:, None]), 0.0)
    return weights, log_norm, -xp.sum(plogp, axis=1), 1.0 / xp.sum(weights**2, axis=1)


def outer_features(xp, rows):
    """``Z[mu, p] = y_mu[i_p] y_mu[j_p]`` for ``i_p <= j_p`` (upper triangle, row-major) of the
    points ``rows`` (n, r): shape (n, r (r + 1) / 2)."""
    rank = rows.shape[1]
    out = xp.empty((rows.shape[0], rank * (rank + 1) // 2))
    offset = 0
    for i in range(rank):
        width = rank - i
        xp.multiply(rows[:, i : i + 1], rows[:, i:], out=out[:, offset : offset + width])
        offset += width
    return out


def unpack_symmetric(xp, packed, triu, rank: int):
    """Symmetric (m, r, r) matrices from their packed upper triangles (m, r (r + 1) / 2), with
    ``triu`` the triangle's row and column indices."""
    out = xp.empty((packed.shape[0], rank, rank))
    out[:, triu[0], triu[1]] = packed
    out[:, triu[1], triu[0]] = packed
    return out


def second_moments(xp, points: TrainingPoints, weights):
    """``sum_mu w_mu y_mu y_mu^T`` for every row of ``weights``, as one chunked product (the
    features are cached on ``points`` the first time when they fit its budget)."""
    n_features = points.n_features
    if points.features is None and routes.cache_features(
        points.n_points, n_features, points.feature_cache_bytes
    ):
        points.features = outer_features(xp, points.data)
    if points.features is not None:
        return unpack_symmetric(xp, weights @ points.features, points.triu, points.rank)
    rows = routes.feature_rows(n_features, points.chunk_bytes)
    packed = xp.zeros((weights.shape[0], n_features))
    for start in range(0, points.n_points, rows):
        stop = min(points.n_points, start + rows)
        packed += weights[:, start:stop] @ outer_features(xp, points.data[start:stop])
    return unpack_symmetric(xp, packed, points.triu, points.rank)


def weighted_means(xp, weights, data):
    """``weights @ data`` ((m, N) by (N, r)). On the CPU as ``(data^T weights^T)^T``: with
    posterior weights (most of them tiny or zero) OpenBLAS ran the direct product of this shape
    (few rows, long inner dimension) up to 25x slower (81 x 60000 by 60000 x 128: 0.95 s
    against 0.04 s; the same shapes with uniform random weights: 0.03 s either way)."""
    if xp is np:
        return (data.T @ weights.T).T
    return weights @ data


def features_cached(points: TrainingPoints) -> bool:
    """Whether the dense route reads cached outer-product features (built or to be built)."""
    return points.features is not None or routes.cache_features(
        points.n_points, points.n_features, points.feature_cache_bytes)


def weighted_covariances(xp, points: TrainingPoints, weights, mean):
    """``Cov_w(y) = sum_mu w_mu (y_mu - ybar)(y_mu - ybar)^T`` (m, r, r) for every row of
    ``weights`` (m, N) with its posterior mean ``mean`` (m, r): Gram products
    ``B^T B`` of ``B = sqrt(w) (Y - ybar)`` on ``N``-chunks of :func:`.routes.gram_rows` points
    (a chunk where a row's weights are all exactly 0 adds nothing and is skipped)."""
    m, rank = mean.shape
    out = xp.zeros((m, rank, rank))
    step = routes.gram_rows(rank, points.chunk_bytes)
    for start in range(0, points.n_points, step):
        block = points.data[start : start + step]
        roots = xp.sqrt(weights[:, start : start + step])
        for row in range(m):
            if not bool(xp.any(roots[row] > 0.0)):
                continue
            scaled = roots[row][:, None] * (block - mean[row][None, :])
            out[row] += scaled.T @ scaled
    return out


def dense_moments(xp, points: TrainingPoints, weights, want: str):
    """``(mean, covariance or None, covariance eigenvalues or None, error bound = 0)`` from all
    the weights of each row; ``want`` is ``"mean"``, ``"covariance"`` or ``"spectrum"``."""
    mean = weighted_means(xp, weights, points.data)
    exact = xp.zeros(weights.shape[0])
    if want == "mean":
        return mean, None, None, exact
    if routes.covariance_by_gram(weights.shape[0], points.rank, points.n_features,
                                 features_cached(points), points.chunk_bytes):
        cov = weighted_covariances(xp, points, weights, mean)
    else:
        cov = second_moments(xp, points, weights) - mean[:, :, None] * mean[:, None, :]
    if want == "spectrum":
        return mean, None, xp.linalg.eigvalsh(cov), exact
    return mean, cov, None, exact
