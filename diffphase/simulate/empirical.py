"""Empirical score of N training points and its closed-form Jacobian (THEORY B, "Empirical score").

Contract
--------
For training points ``y_1..y_N`` in ``R^d`` and query points ``x`` (shape ``(M, d)`` or ``(d,)``) at
one or many times (``a`` and ``D`` scalars or one value per query), with the forward process
``x = a y + sqrt(D) z`` (THEORY section 0):

* posterior weights ``w_mu(x) = softmax_mu(-|x - a y_mu|^2 / (2D))`` (log-sum-exp, stable down to
  ``tau = D / a^2 = 1e-6`` and below);
* score ``s(x) = (a ybar - x) / D`` with ``ybar = sum_mu w_mu y_mu``;
* ``N_eff = 1 / sum_mu w_mu^2`` (in ``[1, N]``) and the weight entropy ``-sum_mu w_mu ln w_mu``;
* the Jacobian ``J = -I/D + (a^2/D^2) Cov_w(y)`` and the normalized Jacobian
  ``Jn = D J = -I + Cov_w(y)/tau`` (eigenvalues ``>= -1``), their eigenvalues and singular values,
  batched over queries.

Numerics
--------
* The data are stored centred on their mean ``c`` (``|x - a y|`` is unchanged when
  ``x -> x - a c``), which keeps ``E_w[y y^T] - ybar ybar^T`` free of cancellation for data far
  from the origin.
* Queries are processed in blocks whose ``(block, N)`` log-weight matrix fits in
  ``chunk_bytes``; the second moments of spread weights are one matrix product ``W @ Z`` with the
  symmetric outer-product features ``Z[mu] = (y_mu y_mu^T)_{i <= j}``, built ``N``-chunk by
  ``N``-chunk, so the engine's peak memory is one centred copy of the data plus
  ``O(chunk_bytes + 16 N)`` bytes, and the cached features when they fit
  ``feature_cache_bytes`` (``N = 10^6``, ``d = 64``: 1.3 GB peak resident for the whole process,
  caller's data included, measured in ``benchmarks/bench_memorization.py``).
* Optional truncation, stated either as an eigenvalue tolerance ``tol`` or as a neglected mass
  ``max_neglected_mass``: for each query only the fewest largest weights whose complement has mass
  at most ``eps`` are kept (found in linear time, see
  :func:`~diffphase.simulate.empirical_kernels.smallest_sufficient_sets`), with
  ``eps = max_neglected_mass`` or ``eps = tol * tau / (4 R^2)`` (``R`` the largest distance of a
  training point from the data mean), whichever is smaller. At tiny ``tau``, where the
  matrix-product log-weights lose digits, the kept ones are recomputed from exact differences
  ``x - a y_mu``. Writing ``w = (1 - eps) u + eps v`` (``u`` the renormalized kept weights, ``v``
  the neglected ones), ``Cov_w - Cov_u = eps (S_v - eps b b^T - Cov_u)`` with
  ``S_v = E_v[(y - mu_u)(y - mu_u)^T]`` and ``b = mu_v - mu_u``, so
  ``-eps Cov_u <= Cov_w - Cov_u <= eps S_v`` and every eigenvalue of ``Cov`` moves by at most
  ``max(eps lambda_max(Cov_u), sum_{neglected} w_mu |y_mu - mu_u|^2)`` (Weyl). That bound is
  computed exactly after the fact and reported (``error_bound``, in units of ``Jn``); it is
  ``<= 4 eps R^2``, hence ``<= tol * tau`` in the tolerance mode. A FLOP-and-bandwidth cost
  model sends the rows with the largest kept sets to the dense route when there are enough of them
  to pay for a dense pass, and keeps a block all dense when truncating would save less than 20%;
  with at most ``DENSE_ONLY_MAX_FEATURES`` features per point truncation is not attempted (the
  dense result is exact and cheaper than the selection).
* Data in a subspace: when the centred points span only ``r < d`` dimensions (up to
  ``SUBSPACE_RESIDUAL_RTOL`` of their radius: linear-manifold data of THEORY A, or ``N <= d``),
  everything above runs in ``r`` coordinates (:func:`exact_subspace`, ``reduce_subspace`` of
  :class:`EmpiricalScore`); means and covariances are mapped back to ``R^d`` and the spectra padded
  with the ``d - r`` exact zero eigenvalues of ``Cov_w``.
* The same code runs on numpy and cupy (``device="cpu" | "gpu" | "auto"``, see
  :mod:`diffphase.backend`); results stay on the chosen device (bring them back with
  :func:`diffphase.backend.to_numpy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_array_module, to_numpy
from ..errors import ParameterError, require_positive
from .empirical_kernels import (
    centred_kept_points,
    normalize_log_weights,
    smallest_sufficient_sets,
)

DEFAULT_CHUNK_BYTES = 128 * 2**20
#: the outer-product features of the data are kept between calls when they fit in this many bytes
DEFAULT_FEATURE_CACHE_BYTES = 2 * 2**30
#: cost model of the route choice (see EmpiricalScore._rows_to_truncate): streaming the cached
#: features once costs about as much as this many rows of the dense product (memory bandwidth
#: against BLAS speed), and truncation must save at least 1 - TRUNCATION_MIN_SAVING of the cost
DENSE_PASS_FIXED_ROWS = 40.0
TRUNCATION_MIN_SAVING = 0.8
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
#: a-priori bound used to turn an eigenvalue tolerance into a mass: |Delta Cov| <= 4 eps R^2
TRUNCATION_BOUND_FACTOR = 4.0
#: the data are reduced to the span of their r leading principal directions when every centred
#: point lies within this fraction of the data radius R of that span (points in a subspace up to
#: rounding: linear-manifold data, or N <= d)
SUBSPACE_RESIDUAL_RTOL = 1e-12


@dataclass
class PosteriorMoments:
    """Posterior statistics of the training points at each query (arrays of the backend).

    Attributes
    ----------
    mean : (M, d) ``ybar = E_w[y]`` in the data's own coordinates.
    score : (M, d) ``(a ybar - x) / D``.
    n_eff : (M,) ``1 / sum w^2``.
    entropy : (M,) ``-sum w ln w``.
    log_density : (M,) ``ln p^N(x) = ln (1/N) sum_mu N(x; a y_mu, D I)``.
    covariance : (M, d, d) ``Cov_w(y)`` or None when not asked for.
    covariance_eigenvalues : (M, d) ascending eigenvalues of ``Cov_w(y)`` or None.
    neglected_mass : (M,) total weight dropped by truncation (0 without truncation).
    kept : (M,) number of training points kept per query.
    tau : (M,) ``D / a^2``.
    covariance_error_bound : (M,) bound on the spectral norm of the covariance's truncation error
        (0 when exact) or None when the covariance was not asked for.
    """

    mean: object
    score: object
    n_eff: object
    entropy: object
    log_density: object
    tau: object
    neglected_mass: object
    kept: object
    covariance: object | None = None
    covariance_eigenvalues: object | None = None
    covariance_error_bound: object | None = None
    notes: dict = field(default_factory=dict)


@dataclass
class JacobianSpectrum:
    """Eigenvalues of the normalized Jacobian ``Jn = -I + Cov_w(y)/tau`` at each query.

    ``eigenvalues`` (M, d) ascending (``>= -1``); ``error_bound`` (M,) the bound on their error from
    truncation (0 when exact); ``n_eff``, ``neglected_mass``, ``kept``, ``tau`` per query;
    ``method`` per block (``"dense"`` or ``"truncated"``).
    """

    eigenvalues: object
    tau: object
    n_eff: object
    neglected_mass: object
    error_bound: object
    kept: object
    methods: list[str]

    def singular_values(self):
        """Singular values of ``Jn`` (``|eigenvalues|`` since ``Jn`` is symmetric), descending."""
        xp = _namespace(self.eigenvalues)
        return -xp.sort(-xp.abs(self.eigenvalues), axis=-1)


def _first_if(single: bool, value):
    return value[0] if single and value is not None else value


def _namespace(array):
    if isinstance(array, np.ndarray):
        return np
    import cupy

    return cupy


def _scatter_rows(xp, m: int, row_sets: list, parts: list) -> tuple:
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


class EmpiricalScore:
    """Score, weights and Jacobian of the empirical distribution of ``data`` (THEORY B).

    Parameters
    ----------
    data : (N, d) training points.
    device : ``"cpu"``, ``"gpu"`` or ``"auto"`` (falls back to the CPU with a warning).
    chunk_bytes : memory budget for one block of temporaries.
    feature_cache_bytes : the symmetric outer-product features ``(N, d(d+1)/2)`` used by the dense
        second moments are built once and kept when they fit in this budget (repeated calls on the
        same data, as along trajectories, then cost one matrix product each); otherwise they are
        rebuilt chunk by chunk at every call. ``0`` disables the cache.
    reduce_subspace : when the centred data lie in an ``r``-dimensional subspace (``r < d``, up to
        ``SUBSPACE_RESIDUAL_RTOL * R``; see :func:`exact_subspace`), work in coordinates of that
        subspace: the component of a query orthogonal to it shifts every log-weight by the same
        amount, so weights, moments and the ``r`` nonzero covariance eigenvalues need ``r`` instead
        of ``d`` coordinates (the other ``d - r`` eigenvalues are exactly 0) and the dense second
        moments ``r(r+1)/2`` instead of ``d(d+1)/2`` features per point. The points are replaced by
        their projections; the effect of the measured ``subspace_residual`` ``delta`` is added to
        the reported covariance error bound (0 when ``delta = 0``): with ``x_perp`` the query's
        component off the span, log-weights move by at most
        ``eta = (a |x_perp| delta + a^2 delta^2 / 2) / D``, which changes the weights by factors
        within ``exp(+-2 eta)`` and the covariance eigenvalues by at most
        ``(exp(2 eta) - 1) lambda_max + 2 delta sqrt(exp(2 eta) lambda_max) + delta^2``
        (so in the tolerance mode the reported bound is ``tol`` plus this term, about
        ``1e-14 R^2 / tau`` for points generated in a subspace in double precision).

    Attributes ``rank`` (the working dimension ``r``, ``d`` without reduction), ``basis``
    ((d, r) or None) and ``subspace_residual`` describe the reduction.
    """

    def __init__(
        self,
        data,
        device: str = "cpu",
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
        reduce_subspace: bool = True,
    ):
        host = check_training_data(data)
        if int(chunk_bytes) < 2**16:
            raise ParameterError("chunk_bytes", chunk_bytes, ">= 65536")
        self.xp, self.device = get_array_module(device)
        self.chunk_bytes = int(chunk_bytes)
        self.n_points, self.dim = host.shape
        self.center = host.mean(axis=0)
        centred = host - self.center
        basis, residual = (
            exact_subspace(centred, SUBSPACE_RESIDUAL_RTOL, self.chunk_bytes)
            if reduce_subspace
            else (None, 0.0)
        )
        if basis is not None:
            centred = centred @ basis
        self.rank = centred.shape[1]
        #: symmetric outer-product features per point of the dense second moments
        self.n_features = self.rank * (self.rank + 1) // 2
        self.basis = None if basis is None else self.xp.asarray(basis)
        self.subspace_residual = residual
        squared_norms = np.einsum("ij,ij->i", centred, centred)  # no (N, d) temporary
        self.radius = float(np.sqrt(np.max(squared_norms)))
        #: the centred training points in working coordinates, (N, rank)
        self.data = self.xp.asarray(centred)
        self.squared_norms = self.xp.asarray(squared_norms)
        self._center_dev = self.xp.asarray(self.center)
        iu = np.triu_indices(self.rank)
        self._triu = (self.xp.asarray(iu[0]), self.xp.asarray(iu[1]))
        self.feature_cache_bytes = int(feature_cache_bytes)
        self._features = None

    # ------------------------------------------------------------------ input handling
    def _prepare(self, x, a, D):
        xp = self.xp
        try:
            xq = xp.asarray(x, dtype=float)
        except (TypeError, ValueError):
            raise ParameterError("x", type(x).__name__, "an (M, d) or (d,) array") from None
        single = xq.ndim == 1
        if single:
            xq = xq[None, :]
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            shape = tuple(x.shape) if hasattr(x, "shape") else "?"
            raise ParameterError(
                "x",
                f"array of shape {shape}",
                f"shape (M, {self.dim}) or ({self.dim},) matching the data",
            )
        if not bool(xp.all(xp.isfinite(xq))):
            raise ParameterError("x", "non-finite entries", "finite numbers")
        m = xq.shape[0]
        a_arr = self._per_query("a", a, m)
        d_arr = self._per_query("D", D, m)
        xq = xq - a_arr[:, None] * self._center_dev[None, :]
        return xq, a_arr, d_arr, single

    def _per_query(self, name: str, value, m: int):
        host = np.asarray(to_numpy(value), dtype=float)
        if host.ndim == 0:
            require_positive(name, float(host))
            host = np.full(m, float(host))
        elif host.shape != (m,):
            raise ParameterError(name, f"array of shape {host.shape}", f"a scalar or shape ({m},)")
        elif not np.all(np.isfinite(host) & (host > 0)):
            raise ParameterError(name, host, "> 0 and finite (tau = D/a^2 must be > 0)")
        return self.xp.asarray(host)

    def _block_size(self, truncating: bool) -> int:
        """Queries per block: their (block, N) weights and log-weights, and with truncation the
        (block, N) candidate indices, fit in ``chunk_bytes``."""
        per_row = (24 if truncating else 16) * self.n_points
        return max(1, min(4096, self.chunk_bytes // per_row))

    # ------------------------------------------------------------------ kernels
    def _working(self, xq):
        """Queries (M, d), centred like the data, in the working coordinates (M, rank)."""
        return xq if self.basis is None else xq @ self.basis

    def _lift(self, xq_full, xq, a, D, mean, cov, eigs, bound):
        """Moments in working coordinates -> the data's d coordinates (identity without a
        reduction); the covariance error bound gains the reduction term of the class docstring."""
        if self.basis is None:
            return mean, cov, eigs, bound
        xp = self.xp
        if (cov is not None or eigs is not None) and self.subspace_residual > 0.0:
            delta = self.subspace_residual
            off = xq_full - xq @ self.basis.T
            eta = (a * xp.sqrt(xp.sum(off * off, axis=1)) * delta + 0.5 * (a * delta) ** 2) / D
            top = eigs[:, -1] if eigs is not None else xp.linalg.eigvalsh(cov)[:, -1]
            top = xp.maximum(top, 0.0) + bound  # >= lambda_max of the untruncated covariance
            growth = xp.expm1(2.0 * eta)
            bound = bound + growth * top + 2.0 * delta * xp.sqrt((1.0 + growth) * top) + delta**2
        mean = mean @ self.basis.T
        if cov is not None:
            cov = self.basis @ cov @ self.basis.T
        if eigs is not None:
            zeros = xp.zeros((eigs.shape[0], self.dim - self.rank))
            eigs = xp.sort(xp.concatenate([zeros, eigs], axis=1), axis=1)
        return mean, cov, eigs, bound

    def _log_weights(self, xq, a, D):
        """Unnormalized log-weights ``(a x.y - a^2 |y|^2 / 2) / D`` (the ``|x|^2`` term cancels),
        ``xq`` in working coordinates."""
        logw = (xq * (a / D)[:, None]) @ self.data.T
        logw -= (0.5 * a * a / D)[:, None] * self.squared_norms[None, :]
        return logw

    def _outer_features(self, rows):
        """``Z[mu, p] = y_mu[i_p] y_mu[j_p]`` for ``i_p <= j_p`` (upper triangle, row-major)."""
        out = self.xp.empty((rows.shape[0], self.n_features))
        offset = 0
        for i in range(self.rank):
            width = self.rank - i
            self.xp.multiply(rows[:, i : i + 1], rows[:, i:], out=out[:, offset : offset + width])
            offset += width
        return out

    def _unpack_symmetric(self, packed):
        xp = self.xp
        out = xp.empty((packed.shape[0], self.rank, self.rank))
        out[:, self._triu[0], self._triu[1]] = packed
        out[:, self._triu[1], self._triu[0]] = packed
        return out

    def _second_moments_dense(self, weights):
        """``sum_mu w_mu y_mu y_mu^T`` for every row of ``weights``, as one chunked product."""
        xp = self.xp
        n_features = self.n_features
        if self._features is None and 8 * self.n_points * n_features <= self.feature_cache_bytes:
            self._features = self._outer_features(self.data)
        if self._features is not None:
            return self._unpack_symmetric(weights @ self._features)
        rows = max(1, min(4096, self.chunk_bytes // (16 * n_features)))
        packed = xp.zeros((weights.shape[0], n_features))
        for start in range(0, self.n_points, rows):
            stop = min(self.n_points, start + rows)
            packed += weights[:, start:stop] @ self._outer_features(self.data[start:stop])
        return self._unpack_symmetric(packed)

    def _block(self, xq, a, D, *, eps, want: str):
        """Posterior statistics for one block of queries.

        ``want``: ``"mean"`` (first moments only), ``"covariance"`` (d x d matrices) or
        ``"spectrum"`` (eigenvalues of the covariance, by the cheapest exact route). ``eps``: the
        neglected mass allowed per query (None: no truncation).
        """
        xp = self.xp
        sqx = xp.sum(xq**2, axis=1)
        xq_full, xq = xq, self._working(xq)
        weights, log_norm, entropy, n_eff = self._normalized_weights(self._log_weights(xq, a, D))
        log_density = (
            log_norm
            - 0.5 * sqx / D
            - math.log(self.n_points)
            - 0.5 * self.dim * xp.log(2 * math.pi * D)
        )
        tau = D / (a * a)
        out = {"entropy": entropy, "n_eff": n_eff, "log_density": log_density, "tau": tau}
        m = xq.shape[0]
        neglected = xp.zeros(m)
        kept = xp.full(m, self.n_points, dtype=xp.int64)
        method = "dense"
        if eps is not None and want != "mean" and self._truncation_can_pay():
            kept_t, neglected_t, candidates = self._smallest_sufficient_sets(weights, eps)
            truncate = self._rows_to_truncate(kept_t)
            if truncate is not None:
                chosen = xp.asarray(truncate)
                if bool(truncate.all()):
                    method, kept, neglected = "truncated", kept_t, neglected_t
                else:  # split the block: truncated rows and dense rows
                    rows_t = xp.nonzero(chosen)[0]
                    rows_d = xp.nonzero(~chosen)[0]
                    part_t = self._truncated_moments(
                        xq[rows_t],
                        a[rows_t],
                        D[rows_t],
                        weights[rows_t],
                        kept_t[rows_t],
                        candidates[rows_t],
                        want,
                    )
                    part_d = self._dense_moments(weights[rows_d], want)
                    method = "mixed"
                    neglected = xp.where(chosen, neglected_t, 0.0)
                    kept = xp.where(chosen, kept_t, self.n_points)
                    moments = _scatter_rows(xp, m, [rows_t, rows_d], [part_t, part_d])
        if method == "truncated":
            moments = self._truncated_moments(xq, a, D, weights, kept, candidates, want)
        elif method == "dense":
            moments = self._dense_moments(weights, want)
        mean, cov, cov_eigs, cov_bound = self._lift(xq_full, xq, a, D, *moments)
        out.update(
            mean=mean,
            covariance=cov,
            covariance_eigenvalues=cov_eigs,
            covariance_error_bound=cov_bound,
            neglected_mass=neglected,
            kept=kept,
            method=method,
        )
        return out

    def _normalized_weights(self, logw):
        """``(weights, log_norm, entropy, n_eff)`` per row of unnormalized log-weights."""
        xp = self.xp
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

    def _truncation_can_pay(self) -> bool:
        """Whether a row's dense product costs enough for truncation to be worth selecting."""
        return self.n_features > DENSE_ONLY_MAX_FEATURES

    def _rows_to_truncate(self, kept):
        """Rows to truncate (a host boolean mask; the others take the dense route), or None when
        all dense is estimated cheaper. Cost model in units of one row's dense product
        ``N r (r+1)/2``: a dense pass costs ``DENSE_PASS_FIXED_ROWS`` rows (streaming the
        outer-product features) plus its rows; a truncated row ``2 k r^2`` (gather and product).
        The heaviest rows are the ones worth sending dense, so the split is the best prefix of the
        rows sorted by kept count; it is taken when it costs at most ``TRUNCATION_MIN_SAVING``
        of all rows dense."""
        row = self.n_points * self.n_features
        cost = 2.0 * to_numpy(kept) * self.rank**2 / row
        order = np.argsort(-cost, kind="stable")
        m = cost.size
        # total[s]: the s heaviest rows dense, the rest truncated
        tail = np.concatenate([np.cumsum(cost[order][::-1])[::-1], [0.0]])
        dense = DENSE_PASS_FIXED_ROWS + np.arange(m + 1.0)
        dense[0] = 0.0
        total = tail + dense
        best = int(np.argmin(total))
        if best == m or total[best] > TRUNCATION_MIN_SAVING * (DENSE_PASS_FIXED_ROWS + m):
            return None
        truncate = np.ones(m, dtype=bool)
        truncate[order[:best]] = False
        return truncate

    def _dense_moments(self, weights, want):
        """``(mean, covariance or None, covariance eigenvalues or None, error bound = 0)`` from all
        the weights of each row."""
        xp = self.xp
        mean = weights @ self.data
        exact = xp.zeros(weights.shape[0])
        if want == "mean":
            return mean, None, None, exact
        cov = self._second_moments_dense(weights) - mean[:, :, None] * mean[:, None, :]
        if want == "spectrum":
            return mean, None, xp.linalg.eigvalsh(cov), exact
        return mean, cov, None, exact

    def _smallest_sufficient_sets(self, weights, eps):
        """Per row, the fewest largest weights whose complement has mass ``<= eps``: returns
        ``(kept counts, neglected masses, candidates)`` with the first ``kept`` entries of each
        row of ``candidates`` (m, N) the kept indices (in any order)."""
        xp = self.xp
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

    def _truncated_moments(self, xq, a, D, weights, kept, candidates, want):
        """Moments from the ``kept`` largest weights of each query, renormalized (recomputed from
        exact differences ``x - a y_mu`` where ``PRODUCT_FORM_LOGW_TOL`` asks), and the bound on
        ``|eig(Cov_w) - eig(Cov_u)|`` of the module docstring. Rows are grouped by kept count
        (half octaves) so that no row is padded to more than sqrt(2) times its own count, and
        each group is cut into row slices whose gathered points fit in ``GATHER_BLOCK_BYTES``.
        ``weights`` is consumed: its kept entries are zeroed in place (the callers own it and
        are done)."""
        xp = self.xp
        m = xq.shape[0]
        buckets = xp.ceil(2 * xp.log2(xp.maximum(kept, 1))).astype(xp.int64)
        # rows where the product-form log-weights (already in `weights`) are accurate reuse them;
        # the others recompute theirs from exact differences
        product_error = (
            np.finfo(float).eps
            * self.rank
            * (a * xp.sqrt(xp.sum(xq * xq, axis=1)) * self.radius + 0.5 * (a * self.radius) ** 2)
            / D
        )
        recompute = product_error > PRODUCT_FORM_LOGW_TOL
        neglected = weights  # becomes the weights of the dropped points only
        parts = []
        rows_of = []
        for value in [int(v) for v in to_numpy(xp.unique(buckets))]:
            rows = xp.nonzero(buckets == value)[0]
            k_max = int(xp.max(kept[rows]))
            budget = min(self.chunk_bytes, GATHER_BLOCK_BYTES)
            step = max(1, budget // (8 * k_max * self.rank))  # bytes of one (rows, k, d) array
            for start in range(0, int(rows.shape[0]), step):
                sub = rows[start : start + step]
                idx = candidates[sub, :k_max]
                mask = xp.arange(k_max)[None, :] < kept[sub][:, None]
                rows_of.append(sub)
                parts.append(
                    self._kept_moments(
                        xq[sub], a[sub], D[sub], idx, kept[sub], want, weights, sub, recompute[sub]
                    )
                )
                # padding slots may repeat a kept index: clear only the kept (row, point) pairs
                neglected[xp.broadcast_to(sub[:, None], idx.shape)[mask], idx[mask]] = 0.0
        mean, cov, eigs = parts[0] if len(parts) == 1 else _scatter_rows(xp, m, rows_of, parts)
        # sum_neglected w |y - mu_u|^2 = s2 - 2 s1.mu_u + eps |mu_u|^2, from the dropped weights
        # themselves (no cancellation against the kept mass)
        eps = xp.sum(neglected, axis=1)
        s1 = neglected @ self.data
        s2 = neglected @ self.squared_norms
        tail = s2 - 2.0 * xp.sum(s1 * mean, axis=1) + eps * xp.sum(mean * mean, axis=1)
        top = eigs[:, -1] if eigs is not None else xp.einsum("mii->m", cov)  # >= lambda_max
        return mean, cov, eigs, xp.maximum(eps * top, xp.maximum(tail, 0.0))

    def _kept_moments(self, xq, a, D, idx, kept, want, weights, rows, recompute):
        """``(mean, covariance or None, covariance eigenvalues or None)`` of the renormalized
        weights of the first ``kept`` points ``idx`` of each row (see
        :meth:`_centred_kept_points` for ``weights``, ``rows`` and ``recompute``)."""
        xp = self.xp
        m, k_max = idx.shape
        scaled, mean = self._centred_kept_points(xq, a, D, idx, kept, weights, rows, recompute)
        if want == "spectrum" and k_max < self.rank:
            gram = scaled @ xp.swapaxes(scaled, 1, 2)  # (m, k, k): same nonzero spectrum
            small = xp.linalg.eigvalsh(gram)
            pad = xp.zeros((m, self.rank - k_max))
            return mean, None, xp.sort(xp.concatenate([pad, small], axis=1), axis=1)
        cov = xp.swapaxes(scaled, 1, 2) @ scaled
        if want == "spectrum":
            return mean, None, xp.linalg.eigvalsh(cov)
        return mean, cov, None

    def _centred_kept_points(self, xq, a, D, idx, kept, weights, rows, recompute):
        """``(scaled, mean)``: rows ``sqrt(u_j) (y_j - mu_u)`` (zero past ``kept``), shape
        (m, k_max, d), and ``mu_u``. The kept weights ``u`` are the rows ``rows`` of the block's
        ``weights`` renormalized, or, where ``recompute`` (tiny ``tau``: the product-form
        log-weights have lost digits), recomputed from exact differences ``x - a y_j``.
        Compiled on the CPU; array code on the GPU (always recomputing)."""
        xp = self.xp
        m, k_max = idx.shape
        if xp is np:
            scaled = np.empty((m, k_max, self.rank))
            mean = np.empty((m, self.rank))
            centred_kept_points(
                self.data,
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
        points = self.data[idx]  # (m, k, d)
        diff = xq[:, None, :] - a[:, None, None] * points
        logw = -xp.einsum("mkd,mkd->mk", diff, diff) / (2 * D[:, None])
        del diff
        logw = xp.where(mask, logw, -xp.inf)
        logw = logw - xp.max(logw, axis=1, keepdims=True)
        wk = xp.exp(logw)
        wk /= xp.sum(wk, axis=1, keepdims=True)
        mean = xp.einsum("mk,mkd->md", wk, points)
        return xp.sqrt(wk)[:, :, None] * (points - mean[:, None, :]), mean

    def _truncation_eps(self, tau, tol, max_neglected_mass):
        """The neglected mass allowed per query (None: no truncation)."""
        if tol is None and max_neglected_mass is None:
            return None
        xp = self.xp
        eps = xp.full(tau.shape[0], 0.5)
        if tol is not None:
            tol = require_positive("tol", tol)
            bound = TRUNCATION_BOUND_FACTOR * max(self.radius, 1e-300) ** 2
            eps = xp.minimum(eps, tol * tau / bound)
        if max_neglected_mass is not None:
            mass = float(max_neglected_mass)
            if not (0.0 < mass < 0.5):
                raise ParameterError("max_neglected_mass", max_neglected_mass, "in (0, 0.5)")
            eps = xp.minimum(eps, mass)
        return eps

    def _run(self, x, a, D, *, tol=None, max_neglected_mass=None, want="mean"):
        xq, a_arr, d_arr, single = self._prepare(x, a, D)
        eps = self._truncation_eps(d_arr / (a_arr * a_arr), tol, max_neglected_mass)
        xp = self.xp
        blocks = []
        size = self._block_size(truncating=eps is not None and want != "mean")
        for start in range(0, xq.shape[0], size):
            sl = slice(start, start + size)
            block_eps = None if eps is None else eps[sl]
            blocks.append(self._block(xq[sl], a_arr[sl], d_arr[sl], eps=block_eps, want=want))
        merged = {}
        for key in blocks[0]:
            if key == "method":
                merged["methods"] = [b["method"] for b in blocks]
            elif blocks[0][key] is None:
                merged[key] = None
            else:
                merged[key] = xp.concatenate([b[key] for b in blocks], axis=0)
        merged["xq"], merged["a"], merged["D"] = xq, a_arr, d_arr
        return merged, single

    # ------------------------------------------------------------------ public API
    def weights(self, x, a, D):
        """Posterior weights ``w_mu(x)``, shape (M, N) (or (N,) for one query); rows sum to one."""
        xq, a_arr, d_arr, single = self._prepare(x, a, D)
        logw = self._log_weights(self._working(xq), a_arr, d_arr)
        logw -= self.xp.max(logw, axis=1, keepdims=True)
        w = self.xp.exp(logw)
        w /= self.xp.sum(w, axis=1, keepdims=True)
        return w[0] if single else w

    def log_weights(self, x, a, D):
        """Normalized ``ln w_mu(x)`` (finite even where ``w_mu`` underflows), shape like weights."""
        xq, a_arr, d_arr, single = self._prepare(x, a, D)
        logw = self._log_weights(self._working(xq), a_arr, d_arr)
        top = self.xp.max(logw, axis=1, keepdims=True)
        logw = logw - top - self.xp.log(self.xp.sum(self.xp.exp(logw - top), axis=1, keepdims=True))
        return logw[0] if single else logw

    def moments(
        self,
        x,
        a,
        D,
        *,
        covariance: bool = False,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ) -> PosteriorMoments:
        """All posterior statistics at once (see :class:`PosteriorMoments`). Truncation (``tol``
        or ``max_neglected_mass``, see the module docstring) applies to the covariance only."""
        res, single = self._run(
            x,
            a,
            D,
            tol=tol,
            max_neglected_mass=max_neglected_mass,
            want="covariance" if covariance else "mean",
        )
        mean_c = res["mean"]
        score = (res["a"][:, None] * mean_c - res["xq"]) / res["D"][:, None]

        def pick(value):
            return _first_if(single, value)

        return PosteriorMoments(
            mean=pick(mean_c + self._center_dev[None, :]),
            score=pick(score),
            n_eff=pick(res["n_eff"]),
            entropy=pick(res["entropy"]),
            log_density=pick(res["log_density"]),
            tau=pick(res["tau"]),
            neglected_mass=pick(res["neglected_mass"]),
            kept=pick(res["kept"]),
            covariance=pick(res["covariance"]),
            covariance_error_bound=pick(res["covariance_error_bound"]) if covariance else None,
            notes={"methods": res["methods"]},
        )

    def score(self, x, a, D):
        """Empirical score ``s(x) = (a ybar(x) - x) / D``, same shape as ``x``."""
        return self.moments(x, a, D).score

    def posterior_mean(self, x, a, D):
        """``E_w[y | x] = sum_mu w_mu y_mu`` (the denoiser), same shape as ``x``."""
        return self.moments(x, a, D).mean

    def n_eff(self, x, a, D):
        """Effective number of points ``1 / sum_mu w_mu^2`` in ``[1, N]``."""
        return self.moments(x, a, D).n_eff

    def participation_ratio(self, x, a, D):
        """``N_eff / N`` in ``[1/N, 1]``."""
        return self.n_eff(x, a, D) / self.n_points

    def entropy(self, x, a, D):
        """Weight entropy ``-sum_mu w_mu ln w_mu`` in ``[0, ln N]``."""
        return self.moments(x, a, D).entropy

    def log_density(self, x, a, D):
        """``ln p_t^N(x)`` of the empirical mixture ``(1/N) sum_mu N(a y_mu, D I)``."""
        return self.moments(x, a, D).log_density

    def jacobian(
        self,
        x,
        a,
        D,
        *,
        normalized: bool = False,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ):
        """Closed-form Jacobian ``J = -I/D + (a^2/D^2) Cov_w(y)`` (or ``Jn = D J`` when
        ``normalized``), shape (M, d, d) (or (d, d) for one query); symmetric. With truncation the
        spectral-norm error of ``Jn`` is at most ``tol`` (bounds per query: :meth:`moments`)."""
        res, single = self._run(
            x, a, D, tol=tol, max_neglected_mass=max_neglected_mass, want="covariance"
        )
        xp = self.xp
        eye = xp.eye(self.dim)[None, :, :]
        jn = res["covariance"] / res["tau"][:, None, None] - eye
        jac = jn if normalized else jn / res["D"][:, None, None]
        return jac[0] if single else jac

    def jacobian_spectrum(
        self,
        x,
        a,
        D,
        *,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ) -> JacobianSpectrum:
        """Eigenvalues of ``Jn = -I + Cov_w(y)/tau`` at each query (ascending, ``>= -1``).

        With ``tol`` the weights are truncated so that each eigenvalue is exact to ``tol``
        (absolute); with ``max_neglected_mass`` at most that posterior mass is dropped per query.
        Either way the neglected mass and a rigorous bound on each eigenvalue's error
        (``error_bound``, computed from the dropped points) are reported per query. Eigenvalues of
        the unnormalized ``J`` are ``eigenvalues / D``.
        """
        res, single = self._run(
            x, a, D, tol=tol, max_neglected_mass=max_neglected_mass, want="spectrum"
        )
        eig = res["covariance_eigenvalues"] / res["tau"][:, None] - 1.0
        bound = res["covariance_error_bound"] / res["tau"]

        def pick(value):
            return _first_if(single, value)

        return JacobianSpectrum(
            eigenvalues=pick(eig),
            tau=pick(res["tau"]),
            n_eff=pick(res["n_eff"]),
            neglected_mass=pick(res["neglected_mass"]),
            error_bound=pick(bound),
            kept=pick(res["kept"]),
            methods=res["methods"],
        )

    def singular_values(
        self,
        x,
        a,
        D,
        *,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ):
        """Singular values of ``Jn`` per query, descending (``|eigenvalues|``: ``Jn`` is
        symmetric)."""
        return self.jacobian_spectrum(
            x, a, D, tol=tol, max_neglected_mass=max_neglected_mass
        ).singular_values()


def empirical_score(x, data, a, D, device: str = "cpu"):
    """Score of the empirical distribution of ``data`` at ``x`` (THEORY B): ``(a ybar - x)/D``.

    ``x``: (M, d) or (d,); ``data``: (N, d); ``a``, ``D``: scalars or one per query.
    """
    return EmpiricalScore(data, device=device).score(x, a, D)
