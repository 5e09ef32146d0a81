"""Route choices of the empirical engine: block sizes and when truncation pays (THEORY B).

Contract
--------
Every choice the engine makes between its exact routes, and every memory budget that sizes its
blocks, is made by a function of this module, from sizes and per-query scalars (never from the
training points themselves):

* :func:`query_rows`, :func:`feature_rows`, :func:`gather_rows`: queries per block, training
  points per ``N``-chunk of the dense product, rows per gather of the truncated route;
* :func:`cache_features`: whether the outer-product features are kept between calls;
* :func:`covariance_by_gram`, :func:`gram_rows`: whether the dense covariances are Gram products
  of the weighted points instead of a product with rebuilt features, and their ``N``-chunks;
* :func:`truncation_can_pay`: whether truncation is tried at all (``DENSE_ONLY_MAX_FEATURES``);
* :func:`rows_to_truncate`: which rows of a block take the truncated route, by a FLOP-and-bandwidth
  cost model (``DENSE_PASS_FIXED_ROWS``, ``TRUNCATION_MIN_SAVING``);
* :func:`rows_to_recompute`: which truncated rows recompute their kept weights from exact
  differences (``PRODUCT_FORM_LOGW_TOL``);
* ``SUBSPACE_RESIDUAL_RTOL``: how close to a subspace the data must lie for the engine to work in
  its coordinates (:func:`.subspace.exact_subspace`).

The cost choices change time and memory only; the two accuracy thresholds keep results within
the bounds the engine reports. The thresholds are read when a call is made, so setting one of
these module attributes (a test, a benchmark) changes the engine's next choice.

Notes
-----
Costs are in units of one row's dense product, ``N r (r + 1) / 2`` multiply-adds for ``N``
training points of working rank ``r`` (THEORY B, "Empirical score": dense second moments as one
matrix product with the outer-product features).
"""

from __future__ import annotations

import numpy as np

from ...backend import to_numpy

DEFAULT_CHUNK_BYTES = 128 * 2**20
#: the outer-product features of the data are kept between calls when they fit in this many bytes
DEFAULT_FEATURE_CACHE_BYTES = 2 * 2**30
#: cost model of the route choice (see rows_to_truncate): streaming the cached features once costs
#: about as much as this many rows of the dense product (memory bandwidth against BLAS speed), and
#: truncation must save at least 1 - TRUNCATION_MIN_SAVING of the cost
DENSE_PASS_FIXED_ROWS = 40.0
TRUNCATION_MIN_SAVING = 0.8
#: cost model of covariance_by_gram, in multiply-adds at BLAS speed per training point: a Gram
#: row costs r (r + GRAM_ELEMENTWISE) (the product, and weighting and centring the chunk); a
#: dense pass with the features rebuilt at the call costs n_features (REBUILT_FEATURE_ROWS + rows)
#: times a slowdown 1.5 + REBUILT_FEATURE_SHORT / feature_rows (writing the features, and a
#: product whose inner dimension, feature_rows points, is short). Calibrated on 2 cores,
#: N = 8000, r = 64 to 784, 8 to 128 rows, 128 MiB chunks: Gram rows 2-3x faster at r = 784
#: (32-128 rows) and r = 160-320 (8 rows), rebuilt features faster at r = 64 and at r = 160 with
#: 32 or more rows
GRAM_ELEMENTWISE = 100.0
REBUILT_FEATURE_ROWS = 8.0
REBUILT_FEATURE_SHORT = 100.0
#: size of one gathered (rows, kept, d) array of the truncated route: elementwise passes over
#: arrays much larger than the last-level cache run several times slower per element
GATHER_BLOCK_BYTES = 16 * 2**20
#: below this many outer-product features per point (rank r <= 48) the dense product of a row,
#: N r(r+1)/2 multiply-adds at BLAS speed, costs less than selecting its kept set alone (about
#: 10 ns per weight), so truncation is not attempted: measured on 2 cores, N = 20000, M = 256,
#: data of rank 8 to 48 in d = 128, all-dense was 1.1-3.3x faster than truncation at N_eff ~ 1-10
DENSE_ONLY_MAX_FEATURES = 1200
#: the truncated route reuses the product-form weights of a row when its log-weights' rounding
#: error, about ``eps_machine * r * (a |x| R + a^2 R^2 / 2) / D``, is below this; otherwise (tiny
#: ``tau``) it recomputes them from exact differences ``x - a y``
PRODUCT_FORM_LOGW_TOL = 1e-10
#: the data are reduced to the span of their r leading principal directions when every centred
#: point lies within this fraction of the data radius R of that span (points in a subspace up to
#: rounding: linear-manifold data, or N <= d)
SUBSPACE_RESIDUAL_RTOL = 1e-12


def query_rows(n_points: int, chunk_bytes: int, truncating: bool) -> int:
    """Queries per block: their (block, N) weights and log-weights, and with truncation the
    (block, N) candidate indices, fit in ``chunk_bytes``."""
    per_row = (24 if truncating else 16) * n_points
    return max(1, min(4096, chunk_bytes // per_row))


def feature_rows(n_features: int, chunk_bytes: int) -> int:
    """Training points per ``N``-chunk when the outer-product features are rebuilt at each call."""
    return max(1, min(4096, chunk_bytes // (16 * n_features)))


def cache_features(n_points: int, n_features: int, feature_cache_bytes: int) -> bool:
    """Whether the (N, n_features) outer-product features fit their cache budget."""
    return 8 * n_points * n_features <= feature_cache_bytes


def gram_rows(rank: int, chunk_bytes: int) -> int:
    """Training points per ``N``-chunk of :func:`.dense.weighted_covariances`: the chunk and one
    weighted copy of it fit ``chunk_bytes``."""
    return max(1, chunk_bytes // (16 * rank))


def covariance_by_gram(rows: int, rank: int, n_features: int, cached: bool,
                       chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> bool:
    """Whether ``rows`` dense covariances are cheaper as Gram products of the weighted points
    (:func:`.dense.weighted_covariances`) than as the product with outer-product features
    rebuilt at this call (cost model above: ``GRAM_ELEMENTWISE``, ``REBUILT_FEATURE_ROWS``,
    ``REBUILT_FEATURE_SHORT``); never when the features are cached."""
    if cached:
        return False
    gram = float(rows) * rank * (rank + GRAM_ELEMENTWISE)
    return bool(gram <= rebuilt_feature_cost(rows, n_features, chunk_bytes))


def rebuilt_feature_cost(rows: int, n_features: int, chunk_bytes: int) -> float:
    """Multiply-adds (at BLAS speed) per training point of a dense pass of ``rows`` with the
    outer-product features rebuilt at the call."""
    slowdown = 1.5 + REBUILT_FEATURE_SHORT / feature_rows(n_features, chunk_bytes)
    return slowdown * n_features * (REBUILT_FEATURE_ROWS + np.asarray(rows, dtype=float))


def gather_rows(chunk_bytes: int, kept: int, rank: int) -> int:
    """Rows per slice of the truncated route, so that one gathered (rows, kept, rank) array fits
    ``min(chunk_bytes, GATHER_BLOCK_BYTES)``."""
    budget = min(chunk_bytes, GATHER_BLOCK_BYTES)
    return max(1, budget // (8 * kept * rank))


def truncation_can_pay(n_features: int) -> bool:
    """Whether a row's dense product costs enough for truncation to be worth selecting."""
    return n_features > DENSE_ONLY_MAX_FEATURES


def rows_to_truncate(kept, n_points: int, rank: int, n_features: int, cached: bool = True,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray | None:
    """Rows to truncate (a host boolean mask; the others take the dense route), or None when
    all dense is estimated cheaper.

    Cost model in units of one row's dense product ``N r (r+1)/2``: with cached features a
    dense pass costs ``DENSE_PASS_FIXED_ROWS`` rows (streaming the outer-product features) plus
    its rows; without (``cached`` False) the cheaper of the Gram rows and the rebuilt features
    of :func:`covariance_by_gram`; a truncated row with ``k`` kept points ``2 k r^2`` (gather
    and product). The heaviest rows are the ones worth sending dense, so the split is the best
    prefix of the rows sorted by kept count; it is taken when it costs at most
    ``TRUNCATION_MIN_SAVING`` of all rows dense.
    """
    row = n_points * n_features
    cost = 2.0 * to_numpy(kept) * rank**2 / row
    order = np.argsort(-cost, kind="stable")
    m = cost.size
    # total[s]: the s heaviest rows dense, the rest truncated
    tail = np.concatenate([np.cumsum(cost[order][::-1])[::-1], [0.0]])
    count = np.arange(m + 1.0)
    if cached:
        dense = DENSE_PASS_FIXED_ROWS + count
    else:
        gram = count * rank * (rank + GRAM_ELEMENTWISE) / n_features
        dense = np.minimum(gram, rebuilt_feature_cost(count, n_features, chunk_bytes) / n_features)
    dense[0] = 0.0
    total = tail + dense
    best = int(np.argmin(total))
    if best == m or total[best] > TRUNCATION_MIN_SAVING * dense[m]:
        return None
    truncate = np.ones(m, dtype=bool)
    truncate[order[:best]] = False
    return truncate


def rows_to_recompute(xp, xq, a, D, rank: int, radius: float):
    """Rows (a backend boolean mask) whose product-form log-weights have lost too many digits to
    be reused: rounding error about ``eps_machine * r * (a |x| R + a^2 R^2 / 2) / D`` above
    ``PRODUCT_FORM_LOGW_TOL`` (``xq`` (m, r) centred queries in working coordinates)."""
    product_error = (
        np.finfo(float).eps
        * rank
        * (a * xp.sqrt(xp.sum(xq * xq, axis=1)) * radius + 0.5 * (a * radius) ** 2)
        / D
    )
    return product_error > PRODUCT_FORM_LOGW_TOL
