"""Score-field diagnostics at image scale without forming the Jacobian (THEORY E).

Contract. :func:`matrix_free_diagnostics` computes, at points ``x`` and one noise level
``(a, D)``, the estimators of :mod:`diffphase.simulate.matrix_free` on the normalized Jacobian
``Jn = D J`` of a torch score field (a :class:`~diffphase.simulate.network_scores.NetworkScore`,
or a :class:`~diffphase.simulate.torch_adapter.TorchScore`): the ``top_k`` largest and smallest
singular values of ``Jn`` and eigenvalues of its symmetric part with Ritz bounds, the widest
certified gap of that spectrum, the spectral CDFs of both with their errors, the local dimension
(singular values below ``threshold``) with its error, and the non-conservativeness
``|A|_F / |Jn|_F`` with its standard error, per point. Every point gets ``probes`` Krylov runs of
``steps`` steps (the extremes come from its first run, the gap from all its runs) and
``hutchinson_probes`` Rademacher probes; all points and probes run as one batch.

:func:`diagnose_matrix_free` follows backward probability-flow trajectories to each time as
:func:`diffphase.simulate.fields.diagnose_field` does (same checks, grid and start points) and
calls :func:`matrix_free_diagnostics` there. :class:`MatrixFreeDiagnostics` holds one time
point; its :meth:`~MatrixFreeDiagnostics.summary` averages over the points.

Memory. :func:`product_memory` measures the peak bytes of the tensors that a Jacobian-vector
and a vector-Jacobian product create, on one and on two rows (a torch dispatch mode counts
every operation's outputs while they live: forward mode through math attention can hold
several times what reverse mode saves); :func:`matrix_free_cost` adds the Krylov bases
(:func:`~diffphase.simulate.matrix_free.krylov_bytes`) and returns
:class:`~diffphase.simulate.fields.CostTerm` s for :func:`~diffphase.simulate.fields.check_cost`;
:func:`chunk_rows_within` picks how many rows go through the network at once so that the
products fit the budget.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, require_int, require_positive
from ..process import Process
from . import matrix_free as mf
from .fields import (
    MEMORY_BUDGET_BYTES,
    CostTerm,
    check_cost,
    check_request,
    points_along_trajectories,
)
from .integrators import as_process
from .jacobians import call_user_code, check_field, checked_level, checked_points
from .torch_adapter import require_torch

#: points of the spectral CDF grids
CDF_POINTS = 241
#: the keys of the widest certified gap in a summary (None when a time point has none)
GAP_KEYS = ("gap_lower", "gap_upper", "gap_lower_error", "gap_upper_error")
#: the largest Krylov run and number of probes accepted
MAX_STEPS = 2000
MAX_PROBES = 1000


# --------------------------------------------------------------------------- operators
def _torch_function(field, a: float, D: float) -> tuple[Callable, float, Callable | None]:
    """``(function of (rows, d) tensors, unit roundoff, forward-mode context)`` of a field."""
    from .network_scores import NetworkScore, forward_mode_ready
    from .torch_adapter import TorchScore

    torch = require_torch()
    if isinstance(field, NetworkScore):
        level = field.level(a, D)
        roundoff = float(torch.finfo(field.dtype).eps) / 2
        return (lambda x: field.torch_score(x, level), roundoff,
                lambda: forward_mode_ready(field.module))
    if isinstance(field, TorchScore):
        roundoff = float(torch.finfo(field.dtype).eps) / 2
        return (lambda x: field.function(x.to(field.dtype), a, D).to(torch.float64), roundoff,
                None)
    raise ParameterError("field", type(field).__name__,
                         "a torch score field (NetworkScore or TorchScore) for matrix-free spectra")


def normalized_jacobian_operator(field, x: np.ndarray, a: float, D: float, *,
                                 chunk_rows: int | None = None) -> mf.FunctionOperator:
    """The batched operator ``Jn = D J`` of ``field`` at the points ``x`` (``(n, dim)``)."""
    x = checked_points(x, check_field(field))
    a, D = checked_level(a, D)
    function, roundoff, context = _torch_function(field, a, D)
    return mf.FunctionOperator(function, x, scale=D, chunk_rows=chunk_rows,
                               unit_roundoff=roundoff, forward_context=context,
                               device=getattr(field, "device", None))


# --------------------------------------------------------------------------- one level
@dataclass
class MatrixFreeDiagnostics:
    """Matrix-free diagnostics of ``Jn = D J`` at one noise level over ``n`` points (arrays are
    per point; ``*_bound`` Ritz bounds, ``*_error`` errors of the stochastic estimates)."""

    t: float | None
    tau: float
    noise_variance: float
    singular: dict[str, np.ndarray]  # top/bottom (n, k) and their bounds
    eigen: dict[str, np.ndarray]  # of the symmetric part
    gap: np.ndarray  # (n, 4): lower, upper edge, their bounds
    local_dimension: np.ndarray
    local_dimension_error: np.ndarray  # of each point's count
    local_dimension_sampling: np.ndarray  # its sampling standard deviation
    nonconservativeness: np.ndarray
    nonconservativeness_error: np.ndarray
    eigen_grid: np.ndarray
    eigen_cdf: np.ndarray  # (n, G)
    eigen_cdf_error: np.ndarray
    singular_grid: np.ndarray
    singular_cdf: np.ndarray
    singular_cdf_error: np.ndarray
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Point-averaged values; the local dimension is the most common rounded value over
        points, with the mean beside it and the error of that mean (the quadrature parts
        averaged, the sampling parts combined as independent); the CDF errors are the points'
        errors averaged (an upper estimate for the mean CDF); ``n_nonfinite`` counts NaN and
        None values."""
        n = self.local_dimension.size
        rounded = np.rint(self.local_dimension).astype(int)
        uniques, counts = np.unique(rounded, return_counts=True)
        sampling = mf.SAMPLING_SIGMAS * self.local_dimension_sampling
        mean_error = (np.mean(self.local_dimension_error - sampling)
                      + np.sqrt(np.sum(sampling**2)) / n)
        out = {"t": self.t, "tau": self.tau, "noise_variance": self.noise_variance,
               "points": int(n), "spectra_route": "matrix-free",
               "local_dimension": int(uniques[np.argmax(counts)]),
               "local_dimension_mean": float(np.mean(self.local_dimension)),
               "local_dimension_error": float(mean_error),
               "nonconservativeness": float(np.mean(self.nonconservativeness)),
               "nonconservativeness_error": float(
                   np.sqrt(np.nansum(self.nonconservativeness_error**2)) / n)}
        for prefix, values in (("singular_values", self.singular), ("eigenvalues", self.eigen)):
            for end in ("top", "bottom"):
                out[f"{prefix}_{end}"] = _finite_mean(values[end])
                out[f"{prefix}_{end}_error"] = _finite_mean(values[f"{end}_bound"])
        for key, column in zip(GAP_KEYS, _finite_mean(self.gap), strict=True):
            out[key] = float(column) if np.isfinite(column) else None
        out["eigenvalue_cdf"] = {"grid": self.eigen_grid, "cdf": self.eigen_cdf.mean(axis=0),
                                 "error": self.eigen_cdf_error.mean(axis=0)}
        out["singular_value_cdf"] = {"grid": self.singular_grid,
                                     "cdf": self.singular_cdf.mean(axis=0),
                                     "error": self.singular_cdf_error.mean(axis=0)}
        out["ks_error"] = float(self.eigen_cdf_error.mean(axis=0).max())
        out.update(self.settings)
        out["n_nonfinite"] = sum(_nonfinite(v) for k, v in out.items()
                                 if k != "t" and k not in GAP_KEYS)
        return out


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the finite entries (NaN where none is finite)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    totals = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def _nonfinite(value) -> int:
    if value is None:
        return 1
    if isinstance(value, (str, bool, dict)):
        return 0
    return int(np.count_nonzero(~np.isfinite(np.asarray(value, dtype=float))))


def _cdf_grid(quadratures: list[mf.Quadrature], low: float, high: float) -> np.ndarray:
    nodes = np.concatenate([q.nodes for q in quadratures])
    span = max(high, float(nodes.max())) - min(low, float(nodes.min()))
    return np.linspace(min(low, float(nodes.min())) - 0.02 * span,
                       max(high, float(nodes.max())) + 0.02 * span, CDF_POINTS)


def check_krylov(steps: int, probes: int, hutchinson_probes: int, top_k: int,
                 threshold: float) -> None:
    """The Krylov options: integers in range and a positive threshold."""
    for name, value, high in (("krylov_steps", steps, MAX_STEPS),
                              ("krylov_probes", probes, MAX_PROBES),
                              ("hutchinson_probes", hutchinson_probes, MAX_PROBES),
                              ("top_k", top_k, MAX_STEPS)):
        if not 1 <= require_int(name, value, minimum=1) <= high:
            raise ParameterError(name, value, f"an integer in [1, {high}]")
    if top_k > steps:
        raise ParameterError("top_k", top_k, f"at most krylov_steps = {steps}")
    require_positive("threshold", threshold)


def matrix_free_diagnostics(field, x: np.ndarray, a: float, D: float, *, t: float | None = None,
                            threshold: float = 0.5, steps: int = 60, probes: int = 4,
                            hutchinson_probes: int = 16, top_k: int = 8,
                            chunk_rows: int | None = None, seed: int = 0
                            ) -> MatrixFreeDiagnostics:
    """All matrix-free diagnostics at the points ``x`` and the level ``(a, D)`` (module
    contract); ``seed`` draws the probes."""
    check_krylov(steps, probes, hutchinson_probes, top_k, threshold)
    operator = normalized_jacobian_operator(field, x, a, D, chunk_rows=chunk_rows)
    name = getattr(field, "name", "score field")
    level = f"at tau = {D / (a * a):.6g}"
    generator = require_torch().Generator().manual_seed(int(seed))
    rows = np.repeat(np.arange(operator.rows), probes)
    repeated = operator.select(rows)
    singular_run, symmetric_run = call_user_code(name, mf.krylov_pair, repeated, steps,
                                                 generator, where=level)
    operator.mode = repeated.mode
    ratio, ratio_error = call_user_code(name, mf.hutchinson_nonconservativeness, operator,
                                        hutchinson_probes, generator, where=level)
    result = _per_point(singular_run, symmetric_run, operator.rows, probes, operator.dim,
                        top_k, threshold)
    settings = {"krylov_steps": steps, "krylov_probes": probes,
                "hutchinson_probes": hutchinson_probes, "top_k": top_k,
                "jacobian_products": int(repeated.products
                                         + 2 * operator.rows * hutchinson_probes),
                "forward_products": repeated.mode}
    return MatrixFreeDiagnostics(t, D / (a * a), D, *result, ratio, ratio_error,
                                 *_cdfs(singular_run, symmetric_run, operator.rows, probes,
                                        operator.dim), settings)


def _per_point(singular_run, symmetric_run, points: int, probes: int, dim: int, top_k: int,
               threshold: float):
    singular, eigen = [], []
    gaps, dimension, dimension_error, sampling = np.full((points, 4), np.nan), [], [], []
    for p in range(points):
        rows = range(p * probes, (p + 1) * probes)
        singular.append(mf.extremes(mf.singular_quadrature(singular_run, rows[0]), top_k))
        eigen.append(mf.extremes(mf.symmetric_quadrature(symmetric_run, rows[0]), top_k))
        pooled = [mf.symmetric_quadrature(symmetric_run, r) for r in rows]
        gaps[p] = mf.widest_gap(np.concatenate([q.nodes for q in pooled]),
                                np.concatenate([q.bounds for q in pooled]))
        below = np.array([threshold * (1 - 1e-12)])
        cdf, error = mf.stochastic_cdf(singular_run, rows, below, mf.singular_quadrature, dim)
        dimension.append(dim * float(cdf[0]))
        dimension_error.append(dim * float(error[0]))
        sampling.append(dim * float(mf.sampling_deviation(cdf, dim, probes)[0]))

    def stack(parts):
        return {key: np.stack([part[key] for part in parts]) for key in parts[0]}

    return (stack(singular), stack(eigen), gaps, np.array(dimension), np.array(dimension_error),
            np.array(sampling))


def _cdfs(singular_run, symmetric_run, points: int, probes: int, dim: int):
    symmetric = [mf.symmetric_quadrature(symmetric_run, r) for r in range(points * probes)]
    singular = [mf.singular_quadrature(singular_run, r) for r in range(points * probes)]
    eigen_grid = _cdf_grid(symmetric, -1.0, 0.0)
    singular_grid = _cdf_grid(singular, 0.0, 1.0)
    out = []
    for grid, run, quadrature in ((eigen_grid, symmetric_run, mf.symmetric_quadrature),
                                  (singular_grid, singular_run, mf.singular_quadrature)):
        pairs = [mf.stochastic_cdf(run, range(p * probes, (p + 1) * probes), grid, quadrature,
                                   dim) for p in range(points)]
        out += [grid, np.stack([c for c, _ in pairs]), np.stack([e for _, e in pairs])]
    return out


# --------------------------------------------------------------------------- memory
class _LiveTensorBytes:
    """Counts the bytes of the tensors created while it is open and still alive, and their
    peak (a torch dispatch mode: every operation's outputs, storages counted once, released
    when their last tensor is collected); tensors without a plain storage are skipped."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for leaf in tree_leaves(out):
                    counter.track(leaf)
                return out

        self.mode, self.torch = Mode(), require_torch()
        self.references: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.current = self.peak = 0

    def track(self, tensor) -> None:
        if not isinstance(tensor, self.torch.Tensor):
            return
        try:
            storage = tensor.untyped_storage()
            address = storage.data_ptr()
        except (RuntimeError, NotImplementedError):
            return
        if address == 0:
            return
        if address not in self.references:
            self.references[address], self.sizes[address] = 0, storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.references[address] += 1
        weakref.finalize(tensor, self.release, address)

    def release(self, address: int) -> None:
        self.references[address] -= 1
        if not self.references[address]:
            self.current -= self.sizes.pop(address)
            del self.references[address]

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


@dataclass(frozen=True)
class ProductMemory:
    """Peak bytes of the tensors a field's products create: per row of a Jacobian-vector
    product (``forward``), per row of a vector-Jacobian product with the activations it keeps
    (``reverse``), and shared by all rows."""

    forward: float
    reverse: float
    shared: float

    @property
    def per_row(self) -> float:
        """Both products held at once (a reverse pass kept while forward products run)."""
        return self.forward + self.reverse


def product_memory(field, a: float, D: float) -> ProductMemory:
    """:class:`ProductMemory` of ``field`` at the level ``(a, D)``, measured on one and on two
    rows (:class:`_LiveTensorBytes`; forward mode where it works, else double backward)."""
    torch = require_torch()
    name = getattr(field, "name", "score field")

    def peak(rows: int, transpose: bool) -> float:
        x = np.zeros((rows, field.dim))
        operator = normalized_jacobian_operator(field, x, 1.0 * a, D)
        vectors = torch.ones(rows, field.dim, dtype=torch.float64, device=operator.device)
        product = operator.apply_transpose if transpose else operator.apply
        with _LiveTensorBytes() as counter:
            call_user_code(name, product, vectors, where="when measuring its memory")
        return float(counter.peak)

    forward = [peak(rows, False) for rows in (1, 2)]
    reverse = [peak(rows, True) for rows in (1, 2)]
    per_forward = max(forward[1] - forward[0], 8.0 * field.dim)
    per_reverse = max(reverse[1] - reverse[0], 8.0 * field.dim)
    shared = max(forward[0] - per_forward, reverse[0] - per_reverse, 0.0)
    return ProductMemory(per_forward, per_reverse, shared)


def chunk_rows_within(rows: int, per_row: float, budget: float) -> int:
    """Rows per network call so that ``per_row`` bytes times them stay within ``budget`` (at
    least 1, at most ``rows``)."""
    return int(min(rows, max(1, math.floor(budget / max(per_row, 1.0)))))


def matrix_free_cost(*, points: int, probes: int, steps: int, hutchinson_probes: int, dim: int,
                     memory: ProductMemory, chunk_rows: int) -> list[CostTerm]:
    """Memory and work of :func:`matrix_free_diagnostics` at one time point: the Krylov bases
    of ``points * probes`` rows, the network's products on ``chunk_rows`` rows, the CDFs and the
    Ritz problems (one ``m x m`` problem at a time)."""
    rows = float(points) * float(probes)
    grids = 8.0 * 4.0 * CDF_POINTS * float(points)
    return [
        CostTerm("the Krylov bases", ("krylov_steps", "points", "krylov_probes"),
                 mf.krylov_bytes(rows, steps, dim), 4.0 * rows * float(steps) ** 2 * dim),
        CostTerm("the network's Jacobian products", ("points", "krylov_probes"),
                 memory.per_row * chunk_rows + memory.shared,
                 rows * steps * 4.0 + float(points) * hutchinson_probes * 2.0),
        CostTerm("the spectral CDFs and Ritz problems", ("points", "krylov_steps"),
                 grids + 32.0 * float(steps) ** 2, 30.0 * rows * float(steps) ** 3)]


# --------------------------------------------------------------------------- trajectories
def diagnose_matrix_free(field, process: str | Process, times: Sequence[float], *,
                         points: int = 8, rng: np.random.Generator,
                         t_start: float | None = None, sampler: Callable | None = None,
                         data_variance: float = 1.0, threshold: float = 0.5, steps: int = 60,
                         probes: int = 4, hutchinson_probes: int = 16, top_k: int = 8,
                         steps_per_efold: int = 40, chunk_rows: int | None = None,
                         max_memory: float | None = None) -> list[MatrixFreeDiagnostics]:
    """Matrix-free diagnostics along ``points`` backward trajectories at each of ``times``
    (descending) of ``process``; the checks, start points and grid of
    :func:`~diffphase.simulate.fields.diagnose_field`, then the memory of the estimators
    against ``max_memory`` before any trajectory runs."""
    proc = as_process(process)
    dim = check_field(field)
    times = check_request(proc, times, points=points, t_start=t_start,
                          data_variance=data_variance, threshold=threshold, route="auto",
                          probes=None, relative_step=1e-4, steps_per_efold=steps_per_efold)
    check_krylov(steps, probes, hutchinson_probes, top_k, threshold)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("rng", type(rng).__name__, "a numpy.random.Generator")
    t_start = float(times[0]) if t_start is None else float(t_start)
    a0, d0 = float(proc.signal_scale(t_start)), float(proc.noise_variance(t_start))
    memory = product_memory(field, a0, d0)
    if chunk_rows is None:
        budget = MEMORY_BUDGET_BYTES if max_memory is None else float(max_memory)
        chunk_rows = chunk_rows_within(points * max(2 * probes, hutchinson_probes),
                                       memory.per_row, 0.5 * budget)
    check_cost(matrix_free_cost(points=points, probes=probes, steps=steps,
                                hutchinson_probes=hutchinson_probes, dim=dim, memory=memory,
                                chunk_rows=chunk_rows),
               {"points": points, "krylov_probes": probes, "krylov_steps": steps, "dim": dim},
               max_memory=max_memory)
    along = points_along_trajectories(field, proc, times, points=points, dim=dim,
                                      t_start=t_start, rng=rng, data_variance=data_variance,
                                      sampler=sampler, steps_per_efold=steps_per_efold)
    seeds = rng.integers(0, 2**31 - 1, size=len(times))
    return [matrix_free_diagnostics(field, along[float(t)], float(proc.signal_scale(t)),
                                    float(proc.noise_variance(t)), t=float(t),
                                    threshold=threshold, steps=steps, probes=probes,
                                    hutchinson_probes=hutchinson_probes, top_k=top_k,
                                    chunk_rows=chunk_rows, seed=int(seed))
            for t, seed in zip(times, seeds, strict=True)]

