"""The Stieltjes transform of the spectral model (THEORY A): the law, its bulk edges, the solver.

Contract:

* :class:`VarianceLaw`: latent groups (fractions and variances), checked however built;
  :func:`variance_unit` is the power of two that sets its scale. A continuous law
  (:meth:`VarianceLaw.from_density`, :meth:`VarianceLaw.from_samples`) carries a
  :class:`~diffphase.solvers.continuous_law.VarianceContinuum` beside its groups (a quadrature
  of it, or the samples); :func:`bulk_edges` and :func:`stieltjes_lines` solve the continuous
  law itself with :mod:`diffphase.solvers.continuous_solver` (a law with connected support has
  exactly one bulk: no spurious gaps).
* :func:`kernels`: the generated numba module (the inverse-map parts compiled from
  :mod:`diffphase.theory.spectral` and the templates of :mod:`diffphase.solvers.stieltjes`).
* :func:`bulk_edges`: the exact edges ``z(g*)`` at the critical points ``z'(g*) = 0``, found in
  units of :func:`variance_unit` (so laws at any scale, ``1e-300`` to ``1e300``, and variances
  spanning many decades work).
* :func:`stieltjes_lines` / :func:`stieltjes_transform`: ``g(z)`` on lines of points by the
  batched warm-started Newton with continuation in ``Im z``; a root is accepted only if
  ``z(g)`` is close to ``z`` (:func:`_residual_small`), and the points left unconverged get a
  second pass alone in their own units with more continuation stages (:func:`_solve_alone`).
  What still fails is flagged and counted in the :class:`StieltjesResult`, never returned as a
  silent value.

:mod:`diffphase.solvers.spectral` re-exports these names; densities, gaps and phases live there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import (
    ParameterError,
    as_float_array,
    require_array,
    require_count,
    require_in_range,
    require_int,
    require_nonnegative,
)
from . import stieltjes as templates
from .codegen import ScalarKernel, Template, compile_module
from .continuous_law import VarianceContinuum, continuum_from_pdf, continuum_from_samples

#: smallest group fraction: the bulk of a group of fraction ``a`` is about ``4 sqrt(a)`` of its
#: variance wide, and the critical points that bound it sit ``sqrt(a)`` (relative) from the pole
#: ``-1/s``, which double precision resolves down to about ``a = 1e-30``
MIN_FRACTION = 1e-30


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class VarianceLaw:
    """Latent groups: fraction ``alpha_k = m_k / d`` and variance ``s_k = sigma_k^2`` each.

    Checked on construction (however built): one finite fraction ``> 0`` per finite variance
    ``> 0``, fractions summing to at most 1; else :class:`~diffphase.errors.ParameterError`.
    Groups with equal variances are merged and groups are stored by descending variance.
    ``continuum`` (set by :meth:`from_density` and :meth:`from_samples`): the continuous law
    the groups stand for; the random-subspace solvers then use it, not the groups.
    ``quadrature``: the groups are only a quadrature of ``continuum`` (:meth:`from_density`), so
    the orthonormal subspace uses ``continuum`` too; otherwise (groups, or the samples of
    :meth:`from_samples`, exact at finite ``d``) it uses the groups.
    """

    fractions: np.ndarray
    variances: np.ndarray
    label: str = field(default="groups", compare=False)
    continuum: VarianceContinuum | None = field(default=None, compare=False)
    quadrature: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        fractions = as_float_array("fractions", self.fractions)
        variances = as_float_array("variances", self.variances)
        if fractions.size != variances.size:
            raise ParameterError(
                "fractions",
                fractions.tolist(),
                f"one fraction per variance ({variances.size} variances given)",
            )
        if np.any(fractions < MIN_FRACTION):
            raise ParameterError("fractions", fractions.tolist(),
                                 f"each >= {MIN_FRACTION:g} (a group's bulk is about "
                                 "4 sqrt(a) times its variance wide: below that, narrower than "
                                 "double precision resolves)")
        if fractions.sum() > 1 + 1e-12:
            raise ParameterError("fractions", fractions.tolist(), "summing to at most 1")
        if np.any(variances <= 0):
            raise ParameterError("variances", variances.tolist(), "each > 0")
        if self.continuum is not None and not isinstance(self.continuum, VarianceContinuum):
            raise ParameterError("continuum", type(self.continuum).__name__,
                                 "a VarianceContinuum or None")
        if self.quadrature and self.continuum is None:
            raise ParameterError("quadrature", True, "False without a continuum")
        unique, inverse = np.unique(variances, return_inverse=True)
        merged = np.zeros(unique.size)
        np.add.at(merged, inverse, fractions)
        order = np.argsort(-unique)
        object.__setattr__(self, "fractions", merged[order])
        object.__setattr__(self, "variances", unique[order])

    @classmethod
    def from_groups(cls, fractions, variances) -> VarianceLaw:
        return cls(fractions, variances)

    def rescaled(self, unit: float) -> VarianceLaw:
        """The same fractions with the variances divided by ``unit``."""
        continuum = None if self.continuum is None else self.continuum.rescaled(unit)
        return VarianceLaw(self.fractions, self.variances / unit, self.label, continuum,
                           self.quadrature)

    @classmethod
    def from_density(
        cls,
        pdf: Callable[[np.ndarray], np.ndarray],
        support: tuple[float, float],
        alpha: float,
        n_nodes: int = 48,
        n_pieces: int = 256,
    ) -> VarianceLaw:
        """A continuous law of latent variances with density ``pdf`` on ``support`` (normalized
        here) and total fraction ``alpha``.

        Solved as a continuous law (:func:`~diffphase.solvers.continuous_law.continuum_from_pdf`):
        ``s pdf(s)`` is interpolated linearly between ``n_pieces + 1`` geometric knots, which is
        exact for the uniform and log-uniform laws (``diffphase spectrum --law``) and otherwise
        accurate to ``O(h^2)`` in the knot spacing ``h`` of ``ln s``. The groups are
        ``n_nodes`` Gauss–Legendre nodes of ``pdf`` on ``support``, a quadrature standing for the
        law where only atoms can be used (collapse times of the orthonormal subspace); the
        orthonormal edges and masses use the continuous law itself."""
        continuum = continuum_from_pdf(pdf, support, alpha, n_pieces)
        lo, hi = continuum.lows[0], continuum.highs[-1]
        n_nodes = require_count("n_nodes", n_nodes, 2, 10**5)
        nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
        s = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        w = 0.5 * (hi - lo) * weights * np.asarray(pdf(s), dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ParameterError("pdf", "callable", "non-negative with positive mass on support")
        keep = w > 0
        return cls(continuum.alpha * w[keep] / w.sum(), s[keep], continuum.label, continuum,
                   quadrature=True)

    @classmethod
    def from_samples(cls, variances, alpha: float, gap_ratio: float | None = None,
                     label: str | None = None) -> VarianceLaw:
        """An empirical spectrum (``variances``: e.g. a dataset's covariance eigenvalues, all
        ``> 0``, at least two distinct) as a continuous law of total fraction ``alpha``.

        Exact: every edge, density, gap and read-out is that of the continuous law whose CDF is
        the samples' empirical CDF interpolated linearly in ``ln s`` between consecutive distinct
        samples (support ``[min, max]``), solved in closed form without discretization. Smoothed:
        each sample's mass is spread log-uniformly to its neighbours, so structure finer than the
        sample spacing (atoms, ties) and tails beyond the extreme samples are not represented.
        ``gap_ratio``: consecutive samples further apart than this ratio bound separate support
        components (see :func:`~diffphase.solvers.continuous_law.continuum_from_samples`). The
        groups are the samples themselves (fraction ``alpha / n`` each): the orthonormal subspace
        uses them (exact at finite ``d``), the random subspace the continuous law."""
        continuum = continuum_from_samples(variances, alpha, gap_ratio, label)
        samples = np.asarray(variances, dtype=float).ravel()
        fractions = np.full(samples.size, continuum.alpha / samples.size)
        return cls(fractions, samples, continuum.label, continuum)

    @property
    def alpha(self) -> float:
        return float(self.fractions.sum())

    @property
    def K(self) -> int:
        return int(self.fractions.size)

    @property
    def is_continuous(self) -> bool:
        return self.continuum is not None

    @property
    def cache_key(self) -> tuple:
        """Identifies the law for the caches of edges and spectral tables."""
        extra = () if self.continuum is None else self.continuum.cache_key
        return (self.fractions.tobytes(), self.variances.tobytes(), self.quadrature, *extra)


def as_law(law_or_fractions, variances=None) -> VarianceLaw:
    if isinstance(law_or_fractions, VarianceLaw):
        return law_or_fractions
    return VarianceLaw.from_groups(law_or_fractions, variances)


# ----------------------------------------------------------------------------- compiled kernels
@functools.lru_cache(maxsize=1)
def kernels():
    """The generated numba module: inverse-map parts and the solver templates (a warm process
    loads it without building the expressions: :func:`~.codegen.compile_module`)."""
    return compile_module("spectral", _kernel_specs,
                          ("theory", "solvers/stieltjes_solver.py", "solvers/stieltjes.py"))


def _kernel_specs():
    from ..theory import spectral as theory

    parts = theory.inverse_map_derivatives()
    g, a, s = theory.g, theory.alpha_g, theory.s_g
    specs = [
        ScalarKernel.of("zbase_triple", (g,), (parts["base"], parts["dbase"], parts["d2base"])),
        ScalarKernel.of(
            "zterm_triple", (g, a, s), (parts["term"], parts["dterm"], parts["d2term"])
        ),
        ScalarKernel.of("zbase_value", (g,), parts["base"]),
        ScalarKernel.of("zterm_value", (g, a, s), parts["term"]),
        ScalarKernel.of("dzbase", (g,), parts["dbase"]),
        ScalarKernel.of("d2zbase", (g,), parts["d2base"]),
        ScalarKernel.of("dzterm", (g, a, s), parts["dterm"]),
        ScalarKernel.of("d2zterm", (g, a, s), parts["d2term"]),
    ]
    loops = [
        Template(templates.inverse_map_value),
        Template(templates.inverse_map_slope),
        Template(templates.inverse_map_curvature),
        Template(templates.inverse_map_slope_size),
        Template(templates.newton_stieltjes),
        Template(templates.continuation_stieltjes),
        Template(templates.is_physical),
        Template(templates._interval_point),
        Template(templates._critical_in_interval),
        Template(templates._critical_scans),
        Template(templates.critical_points),
        Template(templates.critical_points_values),
        Template(templates.stieltjes_lines, parallel=True),
        Template(templates.residual_small_lines, parallel=True),
    ]
    return specs, loops


# ----------------------------------------------------------------------------- edges
@dataclass
class Edges:
    """Ascending bulk edges of the nonzero spectrum of ``C``: ``[[l_1, u_1], [l_2, u_2], ...]``;
    the critical points ``g*`` (ascending) and the edge ``z(g*)`` of each; for a continuous law
    also the real increasing branches of ``z(g)`` off the support, rows
    ``(x_lo, x_hi, g_lo, g_hi)``."""

    bulks: np.ndarray
    critical_points: np.ndarray
    critical_values: np.ndarray | None = None
    branches: np.ndarray | None = None

    @property
    def n_bulks(self) -> int:
        return int(self.bulks.shape[0])

    def contains(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        inside = np.zeros(x.shape, dtype=bool)
        for lo, hi in self.bulks:
            inside |= (x > lo) & (x < hi)
        return inside


def bulk_edges(law, variances=None, n_samples: int = 512) -> Edges:
    """Exact bulk edges (random subspace): ``z(g*)`` at the critical points of ``z(g)``, ``g* < 0``.

    With ``alpha = 1`` an odd number of critical points means a hard edge at ``lambda = 0``.
    Solved in units of :func:`variance_unit` (exact rescaling), so laws at any scale work. A
    continuous law: :func:`~diffphase.solvers.continuous_solver.continuum_edges` (``n_samples``
    unused)."""
    law = as_law(law, variances)
    n_samples = require_count("n_samples", n_samples, 8, 10**6)
    if law.is_continuous:
        return _continuum_edges(law.continuum)
    unit = variance_unit(law)
    scaled = law.rescaled(unit)
    out, values = np.empty(2 * law.K + 2), np.empty(2 * law.K + 2)
    count = kernels().critical_points_values(scaled.fractions, scaled.variances, n_samples, out,
                                             values)
    order = np.argsort(out[:count])
    return _edges_at(out[:count][order], scaled, unit, values[:count][order])


def _continuum_edges(continuum: VarianceContinuum) -> Edges:
    """:func:`~diffphase.solvers.continuous_solver.continuum_edges` in the law's unit, returned
    in the original one (``x`` times the unit, ``g`` divided by it)."""
    from .continuous_solver import continuum_edges, continuum_unit

    unit = continuum_unit(continuum)
    bulks, critical, values, branches = continuum_edges(continuum.rescaled(unit))
    branches = np.c_[branches[:, :2] * unit, branches[:, 2:] / unit]
    return Edges(bulks * unit, critical / unit, values * unit, branches)


def variance_unit(law: VarianceLaw) -> float:
    """The power of two nearest the geometric mean of the largest and smallest variance.
    ``z(g)`` is covariant (variances and ``z`` divided by ``c``, ``g`` times ``c``), and division
    by a power of two is exact, so solving in this unit gives the same bits for laws of ordinary
    scale and keeps laws at any scale (``1e-300`` to ``1e300``) away from overflow."""
    return float(2.0 ** np.round(np.log2(np.sqrt(law.variances[0]) * np.sqrt(law.variances[-1]))))


def _edges_at(crit: np.ndarray, law: VarianceLaw, unit: float = 1.0,
              at: np.ndarray | None = None) -> Edges:
    """Edges ``z(g*)`` at the critical points (of ``law``, in variance ``unit``; ``at``, the
    values ``z(g*)`` when already known), ascending and paired, back in the original unit; with
    ``alpha = 1`` an odd count means a hard edge at ``lambda = 0``."""
    if at is None:
        mod = kernels()
        at = np.array([mod.inverse_map_value(gc, law.fractions, law.variances)[0]
                       for gc in crit])
    values = np.sort(at)
    if values.size % 2 == 1:
        values = np.concatenate([[0.0], values])
    return Edges(values.reshape(-1, 2) * unit, crit / unit, at * unit)


@dataclass
class StieltjesResult:
    """``g`` on a grid with per-point ``converged``, ``iterations`` and ``fallback`` flags."""

    g: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    fallback: np.ndarray

    @property
    def n_failed(self) -> int:
        return int(self.converged.size - np.count_nonzero(self.converged))

    def summary(self) -> dict:
        return {
            "points": int(self.converged.size),
            "failed": self.n_failed,
            "fallbacks": int(np.count_nonzero(self.fallback)),
            "mean_iterations": float(self.iterations.mean()) if self.iterations.size else 0.0,
        }


@dataclass
class SolverSettings:
    """Newton tolerance and iteration cap; continuation stages and floor (relative to the
    largest variance). Checked on construction."""

    tol: float = 1e-13
    maxiter: int = 100
    n_stages: int = 40
    eta_floor_rel: float = 1e-10

    def __post_init__(self) -> None:
        require_in_range("tol", self.tol, 0, 1, closed=(False, False))
        require_in_range("eta_floor_rel", self.eta_floor_rel, 0, 1, closed=(False, False))
        require_int("maxiter", self.maxiter, minimum=1)
        require_int("n_stages", self.n_stages, minimum=1)


def stieltjes_lines(
    x: np.ndarray,
    laws: list[VarianceLaw] | VarianceLaw,
    eta: float = 0.0,
    settings: SolverSettings | None = None,
) -> StieltjesResult:
    """``g(x + i eta)`` on lines ``x[line, :]`` (warm starts along each line), one law per line.

    All group laws must have the same number of groups (pad by splitting is not done); ``x``
    finite, ``eta >= 0`` finite. Points the line solve leaves unconverged get a second pass alone
    (:func:`_solve_alone`); what still fails is flagged. Lines of continuous laws are solved by
    :func:`_continuum_lines` (any mix of laws is allowed then)."""
    settings = settings or SolverSettings()
    x = np.ascontiguousarray(np.atleast_2d(require_array("x", x)))
    eta = require_nonnegative("eta", eta)
    if x.ndim != 2:
        raise ParameterError("x", f"shape {x.shape}", "one line of points per row (2-d)")
    n_lines = x.shape[0]
    laws = [as_law(laws)] * n_lines if isinstance(laws, VarianceLaw) else [as_law(law)
                                                                             for law in laws]
    if x.size == 0:
        return StieltjesResult(np.empty(x.shape, complex), np.empty(x.shape, bool),
                               np.empty(x.shape, np.int64), np.empty(x.shape, bool))
    if len(laws) != n_lines:
        raise ParameterError("laws", len(laws), f"one per line ({n_lines})")
    if any(law.is_continuous for law in laws):
        return _lines_by_law(x, laws, eta, settings)
    K = laws[0].K
    if any(law.K != K for law in laws):
        raise ParameterError("laws", [law.K for law in laws], "the same number of groups per line")
    alphas = np.ascontiguousarray([law.fractions for law in laws])
    variances = np.ascontiguousarray([law.variances for law in laws])
    inside = np.zeros(x.shape, dtype=np.bool_)
    if eta == 0.0:
        groups: dict[int, list[int]] = {}
        for line, law in enumerate(laws):
            groups.setdefault(id(law), []).append(line)
        for lines in groups.values():
            rows = _as_slice(lines)  # consecutive lines: views, no copies
            inside[rows] = _cached_edges(laws[lines[0]]).contains(x[rows])
    scale = np.array([max(float(np.max(law.variances)), 1.0) for law in laws])
    largest = np.maximum(x.max(axis=1), -x.min(axis=1))  # max |x| a line, no temporary
    with np.errstate(over="ignore"):  # far out of range: fails here, solved alone in units
        eta_start = 10.0 * scale * (1.0 + largest / scale)
    eta_floor = settings.eta_floor_rel * scale
    g = np.empty(x.shape, dtype=np.complex128)
    iters = np.empty(x.shape, dtype=np.int64)
    conv = np.empty(x.shape, dtype=np.bool_)
    fallback = np.empty(x.shape, dtype=np.bool_)
    import numba

    previous_chunk = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(8)  # lines differ in cost: hand them out in small chunks
    try:
        kernels().stieltjes_lines(
            x,
            float(eta),
            alphas,
            variances,
            inside,
            settings.tol,
            settings.maxiter,
            eta_start,
            eta_floor,
            settings.n_stages,
            g,
            iters,
            conv,
            fallback,
        )
    finally:
        numba.set_parallel_chunksize(previous_chunk)
    conv &= _residual_small(x, eta, alphas, variances, g)
    result = StieltjesResult(g, conv, iters, fallback)
    if not conv.all():
        _solve_alone(x, float(eta), alphas, variances, inside, settings, result)
    if eta == 0.0 and not result.converged.all():
        _edge_roots(x, laws, result)
    return result


def _as_slice(lines: list[int]) -> slice | list[int]:
    """``lines`` as a slice when they are consecutive and ascending, else as they are."""
    if lines[-1] - lines[0] == len(lines) - 1 and all(
            b == a + 1 for a, b in zip(lines[:-1], lines[1:], strict=True)):
        return slice(lines[0], lines[-1] + 1)
    return lines


def _lines_by_law(x, laws, eta, settings) -> StieltjesResult:
    """:func:`stieltjes_lines` one law at a time (its lines together), when some are continuous."""
    result = StieltjesResult(np.empty(x.shape, complex), np.empty(x.shape, bool),
                             np.empty(x.shape, np.int64), np.empty(x.shape, bool))
    groups: dict[int, list[int]] = {}
    for line, law in enumerate(laws):
        groups.setdefault(id(law), []).append(line)
    for lines in groups.values():
        law = laws[lines[0]]
        part = (_continuum_lines(x[lines], law, eta, settings) if law.is_continuous
                else stieltjes_lines(x[lines], law, eta, settings))
        for name in ("g", "converged", "iterations", "fallback"):
            getattr(result, name)[lines] = getattr(part, name)
    return result


def _continuum_lines(x, law: VarianceLaw, eta: float, settings) -> StieltjesResult:
    """Lines of one continuous law, solved in its unit (exact rescaling) on the branches of
    its cached edges."""
    from .continuous_solver import continuum_lines, continuum_unit

    unit = continuum_unit(law.continuum)
    branches = _cached_edges(law).branches
    branches = np.c_[branches[:, :2] / unit, branches[:, 2:] * unit]
    with np.errstate(over="ignore"):
        g, converged, iterations, fallback = continuum_lines(
            np.ascontiguousarray(x / unit), eta / unit, law.continuum.rescaled(unit), branches,
            settings.tol, settings.maxiter)
    return StieltjesResult(g / unit, converged, iterations, fallback)


def _edge_roots(x, laws, result) -> None:
    """In place: a point that is a bulk edge (to rounding) has the critical point ``g*`` as its
    root (real, density 0); Newton cannot converge there since ``z'(g*) = 0``."""
    for line, col in zip(*np.nonzero(~result.converged), strict=True):
        edges = _cached_edges(laws[line])
        match = np.abs(edges.critical_values - x[line, col]) <= 1e-13 * abs(x[line, col])
        if np.any(match):
            result.g[line, col] = edges.critical_points[np.argmax(match)]
            result.converged[line, col] = result.fallback[line, col] = True


def _residual_small(x, eta, alphas, variances, g, rtol: float = 1e-7) -> np.ndarray:
    """Whether ``|z(g) - z| <= rtol (|z| + size)`` at each point of ``x (lines, points)``
    (``size`` the summed magnitudes of the parts of ``z(g)``, magnitudes as L1 norms
    ``|re| + |im|``, which cost no square root): a check, independent of Newton's
    stopping rules, that a root reported converged is one. It only rejects points that are far
    from a root (Newton fooled by under- or overflow at extreme scales)."""
    out = np.empty(x.shape, dtype=np.bool_)
    kernels().residual_small_lines(np.ascontiguousarray(x, dtype=float), float(eta),
                                   np.ascontiguousarray(alphas, dtype=float),
                                   np.ascontiguousarray(variances, dtype=float),
                                   np.ascontiguousarray(g, dtype=np.complex128), float(rtol), out)
    lines, cols = np.nonzero(~out)  # not shown by the compiled check: decided in numpy
    if lines.size:
        out[lines, cols] = _residual_small_numpy(x[lines, cols], eta, alphas[lines],
                                                 variances[lines], g[lines, cols], rtol)
    return out


def _residual_small_numpy(x, eta, alphas, variances, g, rtol) -> np.ndarray:
    """:func:`_residual_small` at points ``x (n,)`` with their groups ``(n, K)``, in numpy (exact
    complex division: right at every scale)."""
    from .stieltjes_array import _parts

    parts = _parts("numpy")
    def l1(w):
        return np.abs(w.real) + np.abs(w.imag)

    with np.errstate(all="ignore"):
        value = parts.zbase(g)[0] + 0 * g
        size = l1(value)
        for k in range(alphas.shape[1]):
            term = parts.zterm(g, alphas[:, k], variances[:, k])[0]
            value = value + term
            size = size + l1(term)
        zc = x + 1j * eta
        return l1(value - zc) <= rtol * (l1(zc) + size)


def _solve_alone(x, eta, alphas, variances, inside, settings, result) -> None:
    """Second pass, in place, for the points the line solve left unconverged: each alone (no
    warm start) in units of its own ``|x + i eta|`` (a power of two: the rescaling is exact), by
    continuation from far above the point down to ``1e-12`` of that unit, halving ``Im z`` at
    every stage, then Newton at the target. What still fails stays flagged."""
    lines, cols = np.nonzero(~result.converged)
    size = np.hypot(x[lines, cols], eta)
    size = np.where(size > 0, size, variances[lines, 0])
    units = 2.0 ** np.round(np.log2(size))
    for unit in np.unique(units):  # one solve per unit: eta is one number per call
        pick = units == unit
        rows, where = lines[pick], cols[pick]
        xs = np.ascontiguousarray(x[rows, where][:, None] / unit)
        groups = np.ascontiguousarray(variances[rows] / unit)
        with np.errstate(over="ignore"):
            start = np.minimum(10.0 * (np.maximum(groups[:, 0], 1.0) + np.abs(xs[:, 0])), 1e250)
        floor = np.full(xs.shape[0], 1e-12)
        stages = int(np.ceil(np.log2(start.max() / floor[0])))
        g, its = np.empty(xs.shape, np.complex128), np.empty(xs.shape, np.int64)
        ok, used = np.empty(xs.shape, np.bool_), np.empty(xs.shape, np.bool_)
        fractions = np.ascontiguousarray(alphas[rows])
        kernels().stieltjes_lines(xs, eta / unit, fractions, groups,
                                  np.ascontiguousarray(inside[rows, where][:, None]),
                                  settings.tol, 2 * settings.maxiter, start, floor, stages, g,
                                  its, ok, used)
        ok &= _residual_small(xs, eta / unit, fractions, groups, g)
        result.g[rows, where] = np.where(ok[:, 0], g[:, 0] / unit, result.g[rows, where])
        result.converged[rows, where] = ok[:, 0]
        result.iterations[rows, where] += its[:, 0]
        result.fallback[rows, where] = True


_EDGE_CACHE: dict[tuple, Edges] = {}


def _cached_edges(law: VarianceLaw) -> Edges:
    key = law.cache_key
    if key not in _EDGE_CACHE:
        if len(_EDGE_CACHE) > 4096:
            _EDGE_CACHE.clear()
        _EDGE_CACHE[key] = bulk_edges(law)
    return _EDGE_CACHE[key]


def _check_z(zc) -> np.ndarray:
    try:
        zc = np.atleast_1d(np.asarray(zc, dtype=complex))
    except (TypeError, ValueError):
        raise ParameterError("z", zc, "complex numbers") from None
    if not np.all(np.isfinite(zc)):
        raise ParameterError("z", zc[~np.isfinite(zc)], "finite complex numbers")
    return zc


def stieltjes_transform(zc, law, variances=None, settings=None) -> StieltjesResult:
    """``g(z)`` at finite complex points ``z`` (``Im z >= 0``; any shape, empty allowed) for one
    law; 1-d input is one line."""
    law = as_law(law, variances)
    zc = _check_z(zc)
    if np.any(zc.imag < 0):
        raise ParameterError("z", "Im z < 0", "Im z >= 0 (the physical branch is defined there)")
    out = StieltjesResult(np.empty(zc.shape, complex), np.empty(zc.shape, bool),
                          np.empty(zc.shape, np.int64), np.empty(zc.shape, bool))
    for eta in np.unique(zc.imag):  # one solve per distinct Im z; points sorted along the real axis
        mask = zc.imag == eta
        xs = zc.real[mask]
        order = np.argsort(xs)
        res = stieltjes_lines(xs[order][None, :], law, eta=float(eta), settings=settings)
        for name in ("g", "converged", "iterations", "fallback"):
            target = getattr(out, name)
            values = np.empty(order.size, dtype=target.dtype)
            values[order] = getattr(res, name)[0]
            target[mask] = values
    return out
