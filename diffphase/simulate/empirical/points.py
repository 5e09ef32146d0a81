"""Inputs of the empirical engine: training points prepared once, queries at each call (THEORY B).

Contract
--------
* :func:`check_training_data`: a finite ``(N, d)`` host float array, or
  :class:`~diffphase.errors.ParameterError` naming what is wrong.
* :class:`TrainingPoints`: the checked points as every route reads them, built once by
  :meth:`TrainingPoints.build`: centred on their mean, in the coordinates of their exact subspace
  when they have one (:mod:`.subspace`), with their squared norms, radius, the memory budgets and
  the cache of outer-product features of the dense route.
* :func:`prepare_queries`: queries ``x`` (``(M, d)`` or ``(d,)``) and the process coefficients
  ``a``, ``D`` (scalars or one per query) checked and put on the backend, ``x`` centred like the
  data (``x - a c``).

Notes
-----
Centring leaves every ``|x - a y_mu|`` unchanged (``x -> x - a c``, ``y -> y - c``) and keeps
``E_w[y y^T] - ybar ybar^T`` free of cancellation for data far from the origin. The engine holds
one centred copy of the data (in working coordinates) besides the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backend import to_numpy
from ...errors import ParameterError, require_positive
from . import routes
from .subspace import exact_subspace


def check_training_data(data) -> np.ndarray:
    """A finite ``(N, d)`` float array with ``N >= 1`` and ``d >= 1`` (host copy)."""
    try:
        arr = np.asarray(to_numpy(data), dtype=float)
    except (TypeError, ValueError):
        raise ParameterError("data", type(data).__name__, "an (N, d) array of numbers") from None
    if arr.ndim != 2:
        raise ParameterError("data", f"array of shape {arr.shape}", "an (N, d) array (2-d)")
    if arr.shape[0] < 1:
        raise ParameterError("N (number of training points)", arr.shape[0], ">= 1")
    if arr.shape[1] < 1:
        raise ParameterError("d (dimension)", arr.shape[1], ">= 1")
    if not np.all(np.isfinite(arr)):
        raise ParameterError("data", "non-finite entries", "finite numbers")
    return arr


@dataclass(eq=False)
class TrainingPoints:
    """The training points as the routes read them (backend arrays unless stated).

    Attributes
    ----------
    data : (N, r) the centred points in working coordinates.
    squared_norms : (N,) ``|y_mu|^2`` of the centred points.
    radius : ``R``, the largest norm of a centred point (host float).
    center : (d,) the data mean ``c`` (host); ``center_dev`` the same on the backend.
    basis : (d, r) orthonormal basis of the span the points were reduced to, or None.
    subspace_residual : the points' largest distance from that span (0.0 without a reduction).
    n_points, dim, rank : ``N``, ``d`` and the working dimension ``r`` (``d`` without reduction).
    n_features : ``r (r + 1) / 2`` symmetric outer-product features per point (dense route).
    triu : row and column indices of the upper triangle ``i <= j`` of an ``r x r`` matrix.
    chunk_bytes, feature_cache_bytes : memory budgets (see :class:`.engine.EmpiricalScore`).
    features : (N, n_features) cached outer-product features, or None until the dense route
        builds them (only when they fit ``feature_cache_bytes``).
    """

    data: object
    squared_norms: object
    radius: float
    center: np.ndarray
    center_dev: object
    basis: object | None
    subspace_residual: float
    n_points: int
    dim: int
    rank: int
    n_features: int
    triu: tuple
    chunk_bytes: int
    feature_cache_bytes: int
    features: object | None = None

    @classmethod
    def build(cls, host: np.ndarray, xp, *, chunk_bytes: int, feature_cache_bytes: int,
              reduce_subspace: bool) -> TrainingPoints:
        """Centre checked host points ``host`` (N, d), reduce them to their exact subspace when
        ``reduce_subspace`` and one exists (tolerance ``routes.SUBSPACE_RESIDUAL_RTOL`` at this
        call), and put them on the backend ``xp``."""
        n_points, dim = host.shape
        center = host.mean(axis=0)
        centred = host - center
        basis, residual = (
            exact_subspace(centred, routes.SUBSPACE_RESIDUAL_RTOL, chunk_bytes)
            if reduce_subspace
            else (None, 0.0)
        )
        if basis is not None:
            centred = centred @ basis
        rank = centred.shape[1]
        squared_norms = np.einsum("ij,ij->i", centred, centred)  # no (N, d) temporary
        iu = np.triu_indices(rank)
        return cls(
            data=xp.asarray(centred),
            squared_norms=xp.asarray(squared_norms),
            radius=float(np.sqrt(np.max(squared_norms))),
            center=center,
            center_dev=xp.asarray(center),
            basis=None if basis is None else xp.asarray(basis),
            subspace_residual=residual,
            n_points=n_points,
            dim=dim,
            rank=rank,
            n_features=rank * (rank + 1) // 2,
            triu=(xp.asarray(iu[0]), xp.asarray(iu[1])),
            chunk_bytes=chunk_bytes,
            feature_cache_bytes=feature_cache_bytes,
        )


def prepare_queries(xp, points: TrainingPoints, x, a, D):
    """``(xq, a, D, single)``: queries (M, d) centred like the data (``x - a c``), ``a`` and
    ``D`` (M,), and whether ``x`` was one query ``(d,)``; all on the backend ``xp``."""
    try:
        xq = xp.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError("x", type(x).__name__, "an (M, d) or (d,) array") from None
    single = xq.ndim == 1
    if single:
        xq = xq[None, :]
    if xq.ndim != 2 or xq.shape[1] != points.dim:
        shape = tuple(x.shape) if hasattr(x, "shape") else "?"
        raise ParameterError(
            "x",
            f"array of shape {shape}",
            f"shape (M, {points.dim}) or ({points.dim},) matching the data",
        )
    if not bool(xp.all(xp.isfinite(xq))):
        raise ParameterError("x", "non-finite entries", "finite numbers")
    m = xq.shape[0]
    a_arr = per_query(xp, "a", a, m)
    d_arr = per_query(xp, "D", D, m)
    xq = xq - a_arr[:, None] * points.center_dev[None, :]
    return xq, a_arr, d_arr, single


def per_query(xp, name: str, value, m: int):
    """A positive finite scalar or ``(m,)`` array ``value`` as ``m`` values on the backend."""
    host = np.asarray(to_numpy(value), dtype=float)
    if host.ndim == 0:
        require_positive(name, float(host))
        host = np.full(m, float(host))
    elif host.shape != (m,):
        raise ParameterError(name, f"array of shape {host.shape}", f"a scalar or shape ({m},)")
    elif not np.all(np.isfinite(host) & (host > 0)):
        raise ParameterError(name, host, "> 0 and finite (tau = D/a^2 must be > 0)")
    return xp.asarray(host)
