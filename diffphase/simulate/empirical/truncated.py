"""Truncated route of the empirical engine: the fewest largest weights, with a rigorous bound
(THEORY B, "Empirical score": the weights are very sparse at small ``tau``).

Contract
--------
* :func:`truncation_eps`: the neglected mass ``eps`` allowed per query, from an eigenvalue
  tolerance ``tol`` (``eps = tol * tau / (4 R^2)``, ``R`` the largest distance of a training
  point from the data mean) and/or a stated mass ``max_neglected_mass``, whichever is smaller.
* :func:`sufficient_sets`: per query, the fewest largest weights whose complement has mass at
  most ``eps`` (linear time on the CPU, :func:`.kernels.smallest_sufficient_sets`).
* :func:`truncated_moments`: ``(mean, covariance or None, covariance eigenvalues or None, bound)``
  of the renormalized kept weights ``u``, with ``bound`` (m,) a rigorous bound on the spectral
  norm of ``Cov_w - Cov_u`` (:func:`neglected_bound`), hence on each eigenvalue's error.
* :func:`scatter_rows`: per-query results computed on disjoint row subsets, reassembled.

Queries ``xq`` (m, r) are in working coordinates, centred like the data; arrays are on the
backend ``xp`` (numpy: compiled kernels; cupy: array code).

Notes
-----
Writing ``w = (1 - eps) u + eps v`` (``u`` the renormalized kept weights, ``v`` the neglected
ones), ``Cov_w - Cov_u = eps (S_v - eps b b^T - Cov_u)`` with ``S_v = E_v[(y - mu_u)(y - mu_u)^T]``
and ``b = mu_v - mu_u``, so ``-eps Cov_u <= Cov_w - Cov_u <= eps S_v`` and every eigenvalue of
``Cov`` moves by at most ``max(eps lambda_max(Cov_u), sum_{neglected} w_mu |y_mu - mu_u|^2)``
(Weyl). That bound is computed exactly after the fact; it is ``<= 4 eps R^2``, hence
``<= tol * tau`` in the tolerance mode. At tiny ``tau``, where the matrix-product log-weights
lose digits (:func:`.routes.rows_to_recompute`), the kept weights are recomputed from exact
differences ``x - a y_mu``.
"""

from __future__ import annotations

import numpy as np

from ...backend import to_numpy
from ...errors import ParameterError, require_positive
from . import routes
from .kernels import centred_kept_points, smallest_sufficient_sets
from .points import TrainingPoints

#: a-priori bound used to turn an eigenvalue tolerance into a mass:
#: ``|Delta Cov| <= 4 eps R^2``
TRUNCATION_BOUND_FACTOR = 4.0


def truncation_eps(xp, tau, tol, max_neglected_mass, radius: float):
    """The neglected mass allowed per query (None: no truncation)."""
    if tol is None and max_neglected_mass is None:
        return None
    eps = xp.full(tau.shape[0], 0.5)
    if tol is not None:
        tol = require_positive("tol", tol)
        bound = TRUNCATION_BOUND_FACTOR * max(radius, 1e-300) ** 2
        eps = xp.minimum(eps, tol * tau / bound)
    if max_neglected_mass is not None:
        mass = float(max_neglected_mass)
        if not (0.0 < mass < 0.5):
            raise ParameterError("max_neglected_mass", max_neglected_mass, "in (0, 0.5)")
        eps = xp.minimum(eps, mass)
    return eps


def sufficient_sets(xp, weights, eps):
    """Per row, the fewest largest weights whose complement has mass ``<= eps``: returns
    ``(kept counts, neglected masses, candidates)`` with the first ``kept`` entries of each
    row of ``candidates`` (m, N) the kept indices (in any order)."""
    m, n = weights.shape
    if xp is np:
        candidates = np.zeros((m, n), dtype=np.int64)
        kept = np.empty(m, dtype=np.int64)
        neglected = np.empty(m)
        smallest_sufficient_sets(
            np.ascontiguousarray(weights),
            np.ascontiguousarray(eps, dtype=float),
            n,
            candidates,
            kept,
            neglected,
        )
        return kept, neglected, candidates
    order = xp.argsort(-weights, axis=1)
    top = xp.take_along_axis(weights, order, axis=1)  # descending
    # outside[k - 1] = mass outside the k largest = sum_{j >= k} top[j]
    outside = xp.cumsum(top[:, ::-1], axis=1)[:, ::-1]
    outside = xp.concatenate([outside[:, 1:], xp.zeros((m, 1))], axis=1)
    kept = xp.argmax(outside <= eps[:, None], axis=1) + 1
    neglected = xp.take_along_axis(outside, (kept - 1)[:, None], axis=1)[:, 0]
    return kept, neglected, order


def truncated_moments(xp, points: TrainingPoints, xq, a, D, weights, kept, candidates, want):
    """Moments from the ``kept`` largest weights of each query, renormalized (recomputed from
    exact differences ``x - a y_mu`` where :func:`.routes.rows_to_recompute` asks), and the bound
    on ``|eig(Cov_w) - eig(Cov_u)|`` of the module notes.

    Rows are grouped by kept count (half octaves) so that no row is padded to more than sqrt(2)
    times its own count, and each group is cut into row slices whose gathered points fit
    :func:`.routes.gather_rows`. ``weights`` is consumed: its kept entries are zeroed in place
    (the callers own it and are done).
    """
    m = xq.shape[0]
    buckets = xp.ceil(2 * xp.log2(xp.maximum(kept, 1))).astype(xp.int64)
    # rows where the product-form log-weights (already in `weights`) are accurate reuse them;
    # the others recompute theirs from exact differences
    recompute = routes.rows_to_recompute(xp, xq, a, D, points.rank, points.radius)
    neglected = weights  # becomes the weights of the dropped points only
    parts = []
    rows_of = []
    for value in [int(v) for v in to_numpy(xp.unique(buckets))]:
        rows = xp.nonzero(buckets == value)[0]
        k_max = int(xp.max(kept[rows]))
        step = routes.gather_rows(points.chunk_bytes, k_max, points.rank)
        for start in range(0, int(rows.shape[0]), step):
            sub = rows[start : start + step]
            idx = candidates[sub, :k_max]
            mask = xp.arange(k_max)[None, :] < kept[sub][:, None]
            rows_of.append(sub)
            parts.append(
                kept_moments(
                    xp, points, xq[sub], a[sub], D[sub], idx, kept[sub], want, weights, sub,
                    recompute[sub],
                )
            )
            # padding slots may repeat a kept index: clear only the kept (row, point) pairs
            neglected[xp.broadcast_to(sub[:, None], idx.shape)[mask], idx[mask]] = 0.0
    mean, cov, eigs = parts[0] if len(parts) == 1 else scatter_rows(xp, m, rows_of, parts)
    return mean, cov, eigs, neglected_bound(xp, points, neglected, mean, cov, eigs)


def neglected_bound(xp, points: TrainingPoints, neglected, mean, cov, eigs):
    """``max(eps lambda_max(Cov_u), sum_neglected w |y - mu_u|^2)`` per row, from the dropped
    weights ``neglected`` (m, N) themselves (no cancellation against the kept mass), with
    ``mean`` ``mu_u`` and ``cov`` or ``eigs`` those of the kept weights."""
    # sum_neglected w |y - mu_u|^2 = s2 - 2 s1.mu_u + eps |mu_u|^2
    eps = xp.sum(neglected, axis=1)
    s1 = neglected @ points.data
    s2 = neglected @ points.squared_norms
    tail = s2 - 2.0 * xp.sum(s1 * mean, axis=1) + eps * xp.sum(mean * mean, axis=1)
    top = eigs[:, -1] if eigs is not None else xp.einsum("mii->m", cov)  # >= lambda_max
    return xp.maximum(eps * top, xp.maximum(tail, 0.0))


def kept_moments(xp, points: TrainingPoints, xq, a, D, idx, kept, want, weights, rows, recompute):
    """``(mean, covariance or None, covariance eigenvalues or None)`` of the renormalized
    weights of the first ``kept`` points ``idx`` of each row (see :func:`kept_points` for
    ``weights``, ``rows`` and ``recompute``)."""
    m, k_max = idx.shape
    scaled, mean = kept_points(xp, points, xq, a, D, idx, kept, weights, rows, recompute)
    if want == "spectrum" and k_max < points.rank:
        gram = scaled @ xp.swapaxes(scaled, 1, 2)  # (m, k, k): same nonzero spectrum
        small = xp.linalg.eigvalsh(gram)
        pad = xp.zeros((m, points.rank - k_max))
        return mean, None, xp.sort(xp.concatenate([pad, small], axis=1), axis=1)
    cov = xp.swapaxes(scaled, 1, 2) @ scaled
    if want == "spectrum":
        return mean, None, xp.linalg.eigvalsh(cov)
    return mean, cov, None


def kept_points(xp, points: TrainingPoints, xq, a, D, idx, kept, weights, rows, recompute):
    """``(scaled, mean)``: rows ``sqrt(u_j) (y_j - mu_u)`` (zero past ``kept``), shape
    (m, k_max, r), and ``mu_u``. The kept weights ``u`` are the rows ``rows`` of the block's
    ``weights`` renormalized, or, where ``recompute`` (tiny ``tau``: the product-form
    log-weights have lost digits), recomputed from exact differences ``x - a y_j``.
    Compiled on the CPU; array code on the GPU (always recomputing)."""
    m, k_max = idx.shape
    if xp is np:
        scaled = np.empty((m, k_max, points.rank))
        mean = np.empty((m, points.rank))
        centred_kept_points(
            points.data,
            np.ascontiguousarray(xq),
            np.ascontiguousarray(a),
            np.ascontiguousarray(D),
            np.ascontiguousarray(idx, dtype=np.int64),
            np.ascontiguousarray(kept, dtype=np.int64),
            weights,
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(recompute, dtype=np.bool_),
            scaled,
            mean,
            np.empty((m, k_max)),
        )
        return scaled, mean
    mask = xp.arange(k_max)[None, :] < kept[:, None]
    data = points.data[idx]  # (m, k, r)
    diff = xq[:, None, :] - a[:, None, None] * data
    logw = -xp.einsum("mkd,mkd->mk", diff, diff) / (2 * D[:, None])
    del diff
    logw = xp.where(mask, logw, -xp.inf)
    logw = logw - xp.max(logw, axis=1, keepdims=True)
    wk = xp.exp(logw)
    wk /= xp.sum(wk, axis=1, keepdims=True)
    mean = xp.einsum("mk,mkd->md", wk, data)
    return xp.sqrt(wk)[:, :, None] * (data - mean[:, None, :]), mean


def scatter_rows(xp, m: int, row_sets: list, parts: list) -> tuple:
    """Reassemble per-query results computed on disjoint row subsets: ``parts[i]`` is a tuple of
    arrays (or ``None``) for the rows ``row_sets[i]``; the result has ``m`` rows."""
    merged = []
    for index in range(len(parts[0])):
        pieces = [part[index] for part in parts]
        if pieces[0] is None:
            merged.append(None)
            continue
        full = xp.empty((m,) + pieces[0].shape[1:])
        for rows, piece in zip(row_sets, pieces, strict=True):
            full[rows] = piece
        merged.append(full)
    return tuple(merged)
