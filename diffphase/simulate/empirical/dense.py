"""Dense route of the empirical engine: every weight of every query (THEORY B, "Empirical score").

Contract
--------
For a block of queries ``xq`` (m, r) in working coordinates (centred like the data) and the
process coefficients ``a``, ``D`` (m,):

* :func:`log_weights`: the unnormalized log-weights ``(a x.y_mu - a^2 |y_mu|^2 / 2) / D`` (m, N),
  one matrix product (the ``|x|^2`` term of ``-|x - a y_mu|^2 / (2D)`` cancels in the softmax);
* :func:`normalized_weights`: ``w = softmax(logw)`` by log-sum-exp, the log normalizer, the
  entropy ``-sum w ln w`` and ``N_eff = 1 / sum w^2`` per row;
* :func:`second_moments`: ``sum_mu w_mu y_mu y_mu^T`` for every row of ``w``;
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
"""

from __future__ import annotations

import numpy as np

from . import routes
from .kernels import normalize_log_weights
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
    weights = xp.exp(logw - top[:, None])
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


def dense_moments(xp, points: TrainingPoints, weights, want: str):
    """``(mean, covariance or None, covariance eigenvalues or None, error bound = 0)`` from all
    the weights of each row; ``want`` is ``"mean"``, ``"covariance"`` or ``"spectrum"``."""
    mean = weights @ points.data
    exact = xp.zeros(weights.shape[0])
    if want == "mean":
        return mean, None, None, exact
    cov = second_moments(xp, points, weights) - mean[:, :, None] * mean[:, None, :]
    if want == "spectrum":
        return mean, None, xp.linalg.eigvalsh(cov), exact
    return mean, cov, None, exact
