"""Matrix-free Jacobian spectra: Krylov and stochastic estimators that see a Jacobian only
through products ``J v`` and ``J^T u`` (THEORY E; compared with THEORY A by the studies).

Contract. A *batched operator* holds ``rows`` independent ``d x d`` matrices ``M_p`` (one per
point; here ``Jn = D J`` of a score at a noise level) and gives ``apply(V) = [M_p v_p]`` and
``apply_transpose(U) = [M_p^T u_p]`` on ``(rows, d)`` float64 tensors, ``select(indices)`` (the
operator of those rows, repeats allowed), ``dim``, ``device`` and ``unit_roundoff`` (of the
arithmetic behind the products). :class:`DenseOperator` wraps matrices (tests, small ``d``);
:class:`FunctionOperator` differentiates a torch function that acts row by row
(``torch.func.jvp`` and ``torch.func.vjp``; when forward mode fails, ``J v`` comes from the
reverse mode of a vector-Jacobian product, "double backward"). Vectors stay on the operator's
device (a GPU when torch sees one) and every estimator is batched over all rows at once.

Estimators, each with its error statement (``m`` Krylov steps, full reorthogonalization):

* :func:`golub_kahan`: ``M V = U B``, ``M^T U = V B^T + beta_m v_{m+1} e_m^T`` with ``B`` upper
  bidiagonal. A singular triplet ``(s, p, q)`` of ``B`` gives a Ritz singular value ``s`` within
  ``beta_m |p_m| / sqrt(2)`` of a singular value of ``M`` (the residual of ``(Up; Vq)/sqrt(2)``
  for the symmetric ``[[0, M], [M^T, 0]]``). ``B^T B`` is the Lanczos matrix of ``M^T M`` started
  at ``v_1``: its eigenvalues ``s^2`` and the squared first components of ``q`` are the Gauss
  quadrature of the singular-value distribution seen from ``v_1``.
* :func:`lanczos`: the same for the symmetric part ``S = (M + M^T)/2``: ``S Q = Q T +
  beta_m q_{m+1} e_m^T``; a Ritz value ``theta`` (eigenvector ``y`` of ``T``) lies within
  ``beta_m |y_m|`` of an eigenvalue of ``S``. For a conservative field (every exact score)
  ``S = M``. :func:`krylov_pair` runs both at once, one product with ``M`` and one with ``M^T``
  per step on twice the rows.
* Stochastic Lanczos quadrature (:func:`quadrature_cdf`): with ``v`` uniform on the sphere,
  ``E[mu_v] = (1/d) sum_i delta_{lambda_i}``, so the mean over probes of the Gauss quadrature
  ``G(x) = sum_{theta_j <= x} tau_j`` estimates the spectral CDF ``F(x)``. Its error: the
  quadrature part is 0 where the run ended on an invariant subspace (the quadrature is exact),
  else the smaller of the Chebyshev-Markov-Stieltjes bracket ``G(x) - tau_k <= F_v(x) <= G(x) +
  tau_{k+1}`` (nodes ``theta_k <= x < theta_{k+1}``; a bound) and the change
  ``|G_m(x) - G_m'(x)|`` from ``m' = m - m/4`` steps (an estimate); the sampling part is
  ``3 sqrt(2 F (1 - F) / ((d + 2) k))`` for ``k`` probes (the variance of the weight of a fixed
  subspace under a uniform unit vector). The **local dimension** (singular values of ``Jn``
  below ``threshold``, THEORY E) is ``d F(threshold^-)`` with ``d`` times that error.
* :func:`hutchinson_nonconservativeness`: ``|A|_F^2 = E |A z|^2`` and ``|M|_F^2 = E |M z|^2``
  for Rademacher ``z``, ``A = (M - M^T)/2``; the ratio ``|A|_F / |M|_F`` from the same probes,
  with a jackknife standard error.
* :func:`widest_gap`: the widest interval between consecutive Ritz values of ``S`` whose edges
  are both certified (bounds below a tenth of its width): eigenvalues at gap edges.

A Lanczos run sees one copy of an exactly repeated eigenvalue (the count of a repeated value
comes from the densities). Products in float32 add about ``10 u |M|`` (``u`` the unit roundoff)
to every Ritz bound; that floor is included.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_int
from .torch_adapter import require_torch

#: a Lanczos coefficient below this many unit roundoffs times the operator's size ends a run
BREAKDOWN_ROUNDOFFS = 100.0
#: Ritz bounds include this many unit roundoffs times the operator's size (rounded products)
ROUNDING_FLOOR_ROUNDOFFS = 10.0
#: standard deviations in the sampling part of a stochastic CDF error
SAMPLING_SIGMAS = 3.0
#: a gap edge is certified when its bound is below this fraction of the gap
GAP_CERTIFICATE = 0.1


# --------------------------------------------------------------------------- operators
class DenseOperator:
    """Matrices ``(rows, d, d)`` (numpy or torch) as a batched operator."""

    def __init__(self, matrices, device: str | None = None):
        self.torch = require_torch()
        self.matrices = self.torch.as_tensor(matrices, dtype=self.torch.float64, device=device)
        if self.matrices.ndim != 3 or self.matrices.shape[1] != self.matrices.shape[2]:
            raise ParameterError("matrices shape", tuple(self.matrices.shape), "(rows, d, d)")
        self.rows, self.dim = int(self.matrices.shape[0]), int(self.matrices.shape[1])
        self.device = self.matrices.device
        self.unit_roundoff = float(np.finfo(float).eps / 2)

    def select(self, indices) -> DenseOperator:
        return DenseOperator(self.matrices[self.torch.as_tensor(indices, device=self.device)])

    def apply(self, vectors):
        return self.torch.einsum("rij,rj->ri", self.matrices, vectors)

    def apply_transpose(self, vectors):
        return self.torch.einsum("rji,rj->ri", self.matrices, vectors)


class FunctionOperator:
    """``scale`` times the Jacobians of a torch ``function`` ``(rows, d) -> (rows, d)`` that acts
    row by row, at ``points`` ``(rows, d)`` float64.

    Products run in chunks of ``chunk_rows`` rows, inside the context ``forward_context()``
    (default none) for ``torch.func.jvp``; ``unit_roundoff`` is that of the function's
    arithmetic (float32 networks: ``6e-8``). ``mode`` is ``"forward"`` (jvp) until a jvp
    raises, then ``"double-backward"``; ``products`` counts the Jacobian products done. When
    all rows fit one chunk, the reverse pass of the points is kept and reused by every
    transposed product (a Krylov run multiplies at fixed points).
    """

    def __init__(self, function: Callable, points, *, scale: float = 1.0,
                 chunk_rows: int | None = None, unit_roundoff: float | None = None,
                 forward_context: Callable | None = None, device=None):
        self.torch = require_torch()
        self.function = function
        self.points = self.torch.as_tensor(points, dtype=self.torch.float64, device=device)
        self.rows, self.dim = (int(s) for s in self.points.shape)
        self.device = self.points.device
        self.scale = float(scale)
        self.chunk_limit = chunk_rows  # None: every row in one call
        self.chunk_rows = max(1, int(chunk_rows or self.rows))
        self.unit_roundoff = float(unit_roundoff or np.finfo(float).eps / 2)
        self.forward_context = forward_context
        self.mode = "forward"
        self.products = 0
        self._pullback = None

    def select(self, indices) -> FunctionOperator:
        chosen = FunctionOperator(self.function, self.points[self.torch.as_tensor(
            indices, device=self.device)], scale=self.scale, chunk_rows=self.chunk_limit,
            unit_roundoff=self.unit_roundoff, forward_context=self.forward_context)
        chosen.mode = self.mode
        return chosen

    def _chunked(self, product, vectors):
        parts = [product(self.points[i:i + self.chunk_rows], vectors[i:i + self.chunk_rows])
                 for i in range(0, self.rows, self.chunk_rows)]
        self.products += self.rows
        return self.scale * self.torch.cat(parts).to(self.torch.float64)

    def _forward(self, points, tangents):
        with (self.forward_context() if self.forward_context else contextlib.nullcontext()):
            return self.torch.func.jvp(self.function, (points,), (tangents,))[1]

    def _double_backward(self, points, tangents):
        func = self.torch.func
        _, pullback = func.vjp(self.function, points)
        _, push = func.vjp(lambda cotangent: pullback(cotangent)[0], self.torch.zeros_like(points))
        return push(tangents)[0]

    def _tangent_product(self, points, tangents):
        if self.mode == "forward":
            try:
                return self._forward(points, tangents)
            except (NotImplementedError, RuntimeError):
                self.mode = "double-backward"
        return self._double_backward(points, tangents)

    def _cotangent_product(self, points, cotangents):
        if self.rows > self.chunk_rows:
            return self.torch.func.vjp(self.function, points)[1](cotangents)[0]
        if self._pullback is None:
            self._pullback = self.torch.func.vjp(self.function, points)[1]
        return self._pullback(cotangents)[0]

    def apply(self, vectors):
        return self._chunked(self._tangent_product, vectors)

    def apply_transpose(self, vectors):
        return self._chunked(self._cotangent_product, vectors)


# --------------------------------------------------------------------------- Krylov runs
@dataclass
class KrylovRun:
    """Coefficients of a batched Krylov run: ``alpha`` and ``beta`` ``(rows, m)`` (Golub-Kahan:
    the diagonal and superdiagonal of ``B``; Lanczos: of ``T``; ``beta[:, L-1]`` is the residual
    coefficient of a run of length ``L``), the length of each row's run, whether it ended on an
    invariant subspace (``exact``) and the scale ``|M|`` seen."""

    alpha: np.ndarray
    beta: np.ndarray
    lengths: np.ndarray
    exact: np.ndarray
    norm: np.ndarray
    unit_roundoff: float


def _unit_start(operator, generator):
    torch = operator.torch
    start = torch.randn(operator.rows, operator.dim, dtype=torch.float64, generator=generator,
                        device="cpu").to(operator.device)
    return start / torch.linalg.vector_norm(start, dim=1, keepdim=True)


def _orthogonalized(vector, basis):
    """``vector`` minus its projection on the ``(rows, j, d)`` orthonormal ``basis``, twice."""
    if basis.shape[1] == 0:
        return vector
    torch = require_torch()
    for _ in range(2):
        vector = vector - torch.einsum("rjd,rj->rd", basis, torch.einsum("rjd,rd->rj", basis,
                                                                           vector))
    return vector


class _Stopping:
    """Per-row bookkeeping of a batched run: the scale seen, the rows still running, lengths."""

    def __init__(self, rows: int, steps: int, unit_roundoff: float):
        self.norm = np.zeros(rows)
        self.lengths = np.full(rows, steps)
        self.exact = np.zeros(rows, dtype=bool)
        self.running = np.ones(rows, dtype=bool)
        self.rtol = BREAKDOWN_ROUNDOFFS * unit_roundoff

    def normalize(self, vector, step: int):
        """``(unit vector, coefficient)``: rows whose norm is below the breakdown tolerance end
        here (length ``step + 1``, exact) and carry zero vectors and coefficients from now on."""
        torch = require_torch()
        size = torch.linalg.vector_norm(vector, dim=1)
        host = size.cpu().numpy()
        was_running = self.running.copy()
        self.norm = np.maximum(self.norm, np.where(was_running, host, 0.0))
        ended = was_running & (host <= self.rtol * np.maximum(self.norm, 1e-300))
        self.lengths[ended] = step + 1
        self.exact |= ended
        self.running &= ~ended
        keep = torch.as_tensor(self.running, device=vector.device)
        unit = torch.where(keep[:, None], vector / torch.clamp(size, min=1e-300)[:, None],
                           torch.zeros_like(vector))
        return unit, np.where(was_running, host, 0.0)


class _KrylovSteps:
    """What a batched Krylov run holds: its coefficients ``alpha`` and ``beta`` per row and
    step, the stopping rule, and its :class:`KrylovRun` once done."""

    def __init__(self, operator, steps: int):
        self.torch, self.device, self.step = operator.torch, operator.device, 0
        self.alpha = np.zeros((operator.rows, steps))
        self.beta = np.zeros((operator.rows, steps))
        self.stop = _Stopping(operator.rows, steps, operator.unit_roundoff)
        self.unit_roundoff = operator.unit_roundoff

    def _vectors(self, operator, count: int):
        return self.torch.zeros(operator.rows, count, operator.dim, dtype=self.torch.float64,
                                device=self.device)

    def result(self) -> KrylovRun:
        return KrylovRun(self.alpha, self.beta, self.stop.lengths, self.stop.exact,
                         self.stop.norm, self.unit_roundoff)


class _GolubKahanSteps(_KrylovSteps):
    """A batched Golub-Kahan run, one half-step per product: ``forward_vector`` is multiplied
    by ``M`` and given to ``take_forward``; then ``transpose_vector`` by ``M^T``."""

    def __init__(self, operator, steps: int, generator):
        super().__init__(operator, steps)
        self.right = self._vectors(operator, steps + 1)
        self.left = self._vectors(operator, steps)
        self.right[:, 0] = _unit_start(operator, generator)

    def forward_vector(self):
        return self.right[:, self.step]

    def take_forward(self, product) -> None:
        j = self.step
        if j:
            product = product - self._coefficient(self.beta[:, j - 1]) * self.left[:, j - 1]
        self.left[:, j], self.alpha[:, j] = self.stop.normalize(
            _orthogonalized(product, self.left[:, :j]), j)

    def transpose_vector(self):
        return self.left[:, self.step]

    def take_transpose(self, product) -> None:
        j = self.step
        product = product - self._coefficient(self.alpha[:, j]) * self.right[:, j]
        self.right[:, j + 1], self.beta[:, j] = self.stop.normalize(
            _orthogonalized(product, self.right[:, :j + 1]), j)
        self.step += 1

    def _coefficient(self, values):
        return self.torch.as_tensor(values, device=self.device)[:, None]


class _LanczosSteps(_KrylovSteps):
    """A batched Lanczos run on ``(M + M^T)/2``: ``vector`` is multiplied by ``M`` and by
    ``M^T`` and both products are given to ``take``."""

    def __init__(self, operator, steps: int, generator):
        super().__init__(operator, steps)
        self.basis = self._vectors(operator, steps + 1)
        self.basis[:, 0] = _unit_start(operator, generator)

    def vector(self):
        return self.basis[:, self.step]

    def take(self, forward, transpose) -> None:
        j, q = self.step, self.basis[:, self.step]
        w = 0.5 * (forward + transpose)
        self.alpha[:, j] = self.torch.einsum("rd,rd->r", q, w).cpu().numpy()
        self.stop.norm = np.maximum(self.stop.norm, np.abs(self.alpha[:, j]))
        self.basis[:, j + 1], self.beta[:, j] = self.stop.normalize(
            _orthogonalized(w, self.basis[:, :j + 1]), j)
        self.step += 1


def golub_kahan(operator, steps: int, generator) -> KrylovRun:
    """Golub-Kahan-Lanczos bidiagonalization of every row (see the module contract)."""
    run = _GolubKahanSteps(operator, require_int("steps", steps, minimum=1), generator)
    for _ in range(steps):
        run.take_forward(operator.apply(run.forward_vector()))
        run.take_transpose(operator.apply_transpose(run.transpose_vector()))
        if not run.stop.running.any():
            break
    return run.result()


def lanczos(operator, steps: int, generator) -> KrylovRun:
    """Lanczos tridiagonalization of the symmetric parts ``(M + M^T)/2`` of every row."""
    run = _LanczosSteps(operator, require_int("steps", steps, minimum=1), generator)
    for _ in range(steps):
        q = run.vector()
        run.take(operator.apply(q), operator.apply_transpose(q))
        if not run.stop.running.any():
            break
    return run.result()


def krylov_pair(operator, steps: int, generator) -> tuple[KrylovRun, KrylovRun]:
    """:func:`golub_kahan` and :func:`lanczos` of every row at once, sharing the products: each
    step is one product with ``M`` and one with ``M^T`` on twice the rows (half the calls into
    the operator, each on a larger batch)."""
    steps = require_int("steps", steps, minimum=1)
    singular = _GolubKahanSteps(operator, steps, generator)
    symmetric = _LanczosSteps(operator, steps, generator)
    doubled = operator.select(np.tile(np.arange(operator.rows), 2))
    torch, rows = operator.torch, operator.rows
    for _ in range(steps):
        forward = doubled.apply(torch.cat([singular.forward_vector(), symmetric.vector()]))
        singular.take_forward(forward[:rows])
        transpose = doubled.apply_transpose(torch.cat([singular.transpose_vector(),
                                                       symmetric.vector()]))
        singular.take_transpose(transpose[:rows])
        symmetric.take(forward[rows:], transpose[rows:])
        if not (singular.stop.running.any() or symmetric.stop.running.any()):
            break
    if isinstance(doubled, FunctionOperator):
        operator.products += doubled.products
        operator.mode = doubled.mode
    return singular.result(), symmetric.result()


# --------------------------------------------------------------------------- Ritz values
@dataclass
class Quadrature:
    """One row's Ritz values ``nodes`` (ascending), quadrature ``weights`` (sum 1) and Ritz
    ``bounds`` (residual plus the rounding floor)."""

    nodes: np.ndarray
    weights: np.ndarray
    bounds: np.ndarray


def _bidiagonal(alpha: np.ndarray, beta: np.ndarray, length: int) -> np.ndarray:
    return np.diag(alpha[:length]) + np.diag(beta[:length - 1], 1)


def _tridiagonal(alpha: np.ndarray, beta: np.ndarray, length: int) -> np.ndarray:
    off = beta[:length - 1]
    return np.diag(alpha[:length]) + np.diag(off, 1) + np.diag(off, -1)


def singular_quadrature(run: KrylovRun, row: int, length: int | None = None) -> Quadrature:
    """Ritz singular values of row ``row`` (its first ``length`` steps; default all)."""
    full = int(run.lengths[row])
    length = full if length is None else min(int(length), full)
    left, values, right_t = np.linalg.svd(_bidiagonal(run.alpha[row], run.beta[row], length))
    residual = run.beta[row, length - 1] if (length < full or not run.exact[row]) else 0.0
    floor = ROUNDING_FLOOR_ROUNDOFFS * run.unit_roundoff * run.norm[row]
    bounds = residual * np.abs(left[length - 1]) / math.sqrt(2.0) + floor
    order = np.argsort(values)
    return Quadrature(values[order], right_t[order, 0] ** 2, bounds[order])


def symmetric_quadrature(run: KrylovRun, row: int, length: int | None = None) -> Quadrature:
    """Ritz values of the symmetric part, row ``row`` (first ``length`` steps; default all)."""
    full = int(run.lengths[row])
    length = full if length is None else min(int(length), full)
    values, vectors = np.linalg.eigh(_tridiagonal(run.alpha[row], run.beta[row], length))
    residual = run.beta[row, length - 1] if (length < full or not run.exact[row]) else 0.0
    floor = ROUNDING_FLOOR_ROUNDOFFS * run.unit_roundoff * run.norm[row]
    return Quadrature(values, vectors[0] ** 2, residual * np.abs(vectors[length - 1]) + floor)


def quadrature_cdf(quadrature: Quadrature, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``G(x) = sum_{theta_j <= x} tau_j`` on ``grid`` and the Chebyshev-Markov-Stieltjes
    bracket ``max(tau_k, tau_{k+1})`` around each ``x`` (see the module contract)."""
    cumulative = np.concatenate([[0.0], np.cumsum(quadrature.weights)])
    below = np.searchsorted(quadrature.nodes, grid, side="right")
    padded = np.concatenate([[0.0], quadrature.weights, [0.0]])
    bracket = np.maximum(padded[below], padded[below + 1])
    return np.minimum(cumulative[below], 1.0), bracket


def stochastic_cdf(run: KrylovRun, rows, grid: np.ndarray, quadrature: Callable,
                   dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean quadrature CDF over the probe ``rows`` of one point, and its error on ``grid``
    (quadrature part plus :data:`SAMPLING_SIGMAS` sampling deviations; module contract)."""
    values, errors = [], []
    for row in rows:
        full = int(run.lengths[row])
        estimate, bracket = quadrature_cdf(quadrature(run, row), grid)
        if run.exact[row]:
            error = np.zeros_like(grid)
        else:
            shorter, _ = quadrature_cdf(quadrature(run, row, full - max(1, full // 4)), grid)
            error = np.minimum(bracket, np.abs(estimate - shorter))
        values.append(estimate)
        errors.append(error)
    cdf = np.mean(values, axis=0)
    return cdf, np.mean(errors, axis=0) + SAMPLING_SIGMAS * sampling_deviation(cdf, dim,
                                                                                len(rows))


def sampling_deviation(cdf: np.ndarray, dim: int, probes: int) -> np.ndarray:
    """Standard deviation of the mean over ``probes`` uniform unit probes of the weight of a
    subspace holding the fraction ``cdf`` of ``dim`` eigenvalues: ``sqrt(2 F (1 - F) /
    ((d + 2) k))`` (``F`` kept within ``[1/d, 1 - 1/d]``)."""
    spread = np.clip(cdf, 1.0 / dim, 1.0 - 1.0 / dim)
    return np.sqrt(2.0 * spread * (1.0 - spread) / ((dim + 2) * probes))


def extremes(quadrature: Quadrature, count: int) -> dict[str, np.ndarray]:
    """The ``count`` largest (descending) and smallest (ascending) Ritz values with bounds,
    padded with NaN when the run has fewer."""
    def padded(values):
        out = np.full(count, np.nan)
        out[: min(count, values.size)] = values[:count]
        return out

    nodes, bounds = quadrature.nodes, quadrature.bounds
    return {"top": padded(nodes[::-1]), "top_bound": padded(bounds[::-1]),
            "bottom": padded(nodes), "bottom_bound": padded(bounds)}


def widest_gap(nodes: np.ndarray, bounds: np.ndarray) -> tuple[float, float, float, float]:
    """``(lower edge, upper edge, lower bound, upper bound)`` of the widest interval between
    consecutive Ritz values whose edge bounds are both below :data:`GAP_CERTIFICATE` of its
    width; NaN when there is none."""
    order = np.argsort(nodes)
    nodes, bounds = nodes[order], bounds[order]
    widths = np.diff(nodes)
    certified = (bounds[:-1] < GAP_CERTIFICATE * widths) & (bounds[1:] < GAP_CERTIFICATE * widths)
    if not certified.any():
        return (math.nan,) * 4
    k = int(np.argmax(np.where(certified, widths, -np.inf)))
    return float(nodes[k]), float(nodes[k + 1]), float(bounds[k]), float(bounds[k + 1])


# --------------------------------------------------------------------------- Hutchinson
def hutchinson_nonconservativeness(operator, probes: int, generator
                                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``|A|_F / |M|_F`` from ``probes`` Rademacher probes (one batched product of
    each kind) and its jackknife standard error (NaN with one probe; see the module contract)."""
    torch = operator.torch
    probes = require_int("probes", probes, minimum=1)
    rows = np.repeat(np.arange(operator.rows), probes)
    signs = torch.randint(0, 2, (rows.size, operator.dim), generator=generator,
                          dtype=torch.int64).to(device=operator.device, dtype=torch.float64)
    signs = 2.0 * signs - 1.0
    repeated = operator.select(rows)
    forward, backward = repeated.apply(signs), repeated.apply_transpose(signs)
    anti = (0.25 * torch.sum((forward - backward) ** 2, dim=1)).cpu().numpy()
    total = torch.sum(forward**2, dim=1).cpu().numpy()
    return _ratio_with_jackknife(anti.reshape(-1, probes), total.reshape(-1, probes))


def _ratio_with_jackknife(anti: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sum_anti, sum_total = anti.sum(axis=1), total.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(sum_anti / np.where(sum_total > 0, sum_total, np.nan))
        probes = anti.shape[1]
        if probes < 2:
            return ratio, np.full_like(ratio, np.nan)
        leave_out = np.sqrt((sum_anti[:, None] - anti)
                            / np.where(sum_total[:, None] - total > 0,
                                       sum_total[:, None] - total, np.nan))
    spread = np.nansum((leave_out - leave_out.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return ratio, np.sqrt((probes - 1) / probes * spread)


# --------------------------------------------------------------------------- memory
def krylov_bytes(rows: int, steps: int, dim: int) -> float:
    """Bytes of the bases of :func:`krylov_pair` on ``rows`` rows (Golub-Kahan keeps ``2 m + 1``
    vectors per row and Lanczos ``m + 1``, plus the doubled products and temporaries), in
    floating point (no overflow)."""
    return 8.0 * float(rows) * float(dim) * (3.0 * float(steps) + 10.0)
