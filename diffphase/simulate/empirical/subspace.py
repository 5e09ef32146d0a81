"""Exact subspace reduction of the empirical engine and the way back to R^d (THEORY B).

Contract
--------
* :func:`exact_subspace`: the smallest span of leading principal directions that holds the
  centred training points up to ``rtol`` of their radius, or ``None`` when no proper subspace
  does (host arrays).
* :func:`to_working`: queries (centred like the data) in the coordinates of that span.
* :func:`lift`: posterior mean, covariance and covariance eigenvalues from working coordinates
  back to the data's ``d`` coordinates, with the reduction's term added to the covariance error
  bound.

Notes
-----
When the centred points ``y_mu`` span ``r < d`` dimensions (linear-manifold data of THEORY A, or
``N <= d``), the component ``x_perp`` of a query off the span shifts every log-weight
``-|x - a y_mu|^2 / (2D)`` by the same amount, so the weights, the moments and the ``r`` nonzero
eigenvalues of ``Cov_w(y)`` need only ``r`` coordinates; the other ``d - r`` eigenvalues are
exactly 0. When the points lie off the span by at most ``delta`` (the measured residual), the
log-weights move by at most ``eta = (a |x_perp| delta + a^2 delta^2 / 2) / D``, which changes the
weights by factors within ``exp(+-2 eta)`` and the covariance eigenvalues by at most
``(exp(2 eta) - 1) lambda_max + 2 delta sqrt(exp(2 eta) lambda_max) + delta^2``; :func:`lift` adds
that term to the bound (0 when ``delta = 0``). Both covariances are weighted covariances of points
within ``R + delta`` of the data mean, so their eigenvalues lie in ``[0, (R + delta)^2]``; the bound
is capped there, which keeps it finite when ``eta`` is huge (``tau`` far below the residual).
"""

from __future__ import annotations

import math

import numpy as np

from .routes import DEFAULT_CHUNK_BYTES, SUBSPACE_RESIDUAL_RTOL


def exact_subspace(centred: np.ndarray, rtol: float = SUBSPACE_RESIDUAL_RTOL,
                   chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[np.ndarray | None, float]:
    """The smallest span of leading principal directions that holds the centred data.

    Returns ``(basis, residual)``: ``basis`` (d, r) orthonormal, directions of decreasing variance,
    with ``r >= 1`` the smallest rank such that every point lies within ``rtol * R`` of the span
    (``R`` the largest norm of a centred point), and ``residual`` the largest distance of a point
    from it; ``(None, 0.0)`` when no proper subspace (``r < d``) qualifies. The directions are the
    eigenvectors of the Gram matrix ``sum_mu y_mu y_mu^T``; each point's distance from every
    candidate span is then computed from its own coordinates (not from eigenvalues), chunk by
    chunk, so the residual is measured, not inferred.
    """
    n, d = centred.shape
    if d == 1:
        return None, 0.0
    rows = max(1, chunk_bytes // (24 * d))
    gram = np.zeros((d, d))
    for start in range(0, n, rows):
        chunk = centred[start : start + rows]
        gram += chunk.T @ chunk
    vectors = np.linalg.eigh(gram)[1][:, ::-1]  # decreasing variance
    # worst[r] = max_mu sum_{j >= r} (v_j . y_mu)^2: squared distance from the span of v_0..v_{r-1}
    worst = np.zeros(d + 1)
    radius_sq = 0.0
    for start in range(0, n, rows):
        coords = centred[start : start + rows] @ vectors
        tails = np.cumsum((coords * coords)[:, ::-1], axis=1)[:, ::-1]
        np.maximum(worst[:d], tails.max(axis=0), out=worst[:d])
        radius_sq = max(radius_sq, float(tails[:, 0].max()))
    limit = (rtol * math.sqrt(radius_sq)) ** 2
    rank = max(1, int(np.argmax(worst <= limit)))
    if rank >= d:
        return None, 0.0
    return np.ascontiguousarray(vectors[:, :rank]), math.sqrt(worst[rank])


def to_working(xq, basis):
    """Queries (M, d), centred like the data, in the working coordinates (M, r) of ``basis``
    (unchanged without a reduction, ``basis=None``)."""
    return xq if basis is None else xq @ basis


def lift(xp, basis, residual: float, radius: float, xq_full, xq, a, D, mean, cov, eigs, bound):
    """``(mean, cov, eigs, bound)`` in working coordinates -> the data's ``d`` coordinates.

    ``basis`` (d, r) or None (then everything is returned unchanged); ``residual`` the points'
    largest distance ``delta`` from its span; ``radius`` the largest norm ``R`` of a projected
    centred point; ``xq_full`` (m, d) and ``xq`` (m, r) the block's
    centred queries in both coordinates; ``mean`` (m, r); ``cov`` (m, r, r) or None; ``eigs``
    (m, r) ascending or None, padded with the ``d - r`` zero eigenvalues; ``bound`` (m,) the
    covariance error bound so far, which gains the reduction term of the module notes.
    """
    if basis is None:
        return mean, cov, eigs, bound
    dim, rank = basis.shape
    if (cov is not None or eigs is not None) and residual > 0.0:
        delta = residual
        off = xq_full - xq @ basis.T
        eta = (a * xp.sqrt(xp.sum(off * off, axis=1)) * delta + 0.5 * (a * delta) ** 2) / D
        top = eigs[:, -1] if eigs is not None else xp.linalg.eigvalsh(cov)[:, -1]
        top = xp.maximum(top, 0.0) + bound  # >= lambda_max of the untruncated covariance
        growth = xp.expm1(2.0 * xp.minimum(eta, 300.0))  # past the cap below anyway
        bound = bound + growth * top + 2.0 * delta * xp.sqrt((1.0 + growth) * top) + delta**2
        bound = xp.minimum(bound, (radius + delta) ** 2)
    mean = mean @ basis.T
    if cov is not None:
        cov = basis @ cov @ basis.T
    if eigs is not None:
        zeros = xp.zeros((eigs.shape[0], dim - rank))
        eigs = xp.sort(xp.concatenate([zeros, eigs], axis=1), axis=1)
    return mean, cov, eigs, bound
