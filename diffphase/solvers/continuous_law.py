"""Continuous laws of latent variances (THEORY A, "Optional: a continuous law of latent variances").

Contract: :class:`VarianceContinuum` is a law with a density ``f`` of latent variances (total
mass ``alpha = int f ds <= 1``) on a union of intervals, given on pieces ``[a_i, b_i]`` on which
the *weighted density* ``p(s) = s f(s)`` is linear in ``s``. This family is closed under a change
of variance unit (``p`` is invariant, the ends scale) and its part of the inverse map,
``int s f(s) / (1 + s g) ds = sum_i int_{a_i}^{b_i} p(s) / (1 + s g) ds``, has a closed form per
piece (:mod:`diffphase.solvers.continuous_kernels`), so the Stieltjes equation of the law is solved
without discretizing the law. It holds exactly:

* the uniform law on ``[a, b]`` (``p = alpha s / (b - a)``) and the log-uniform law
  (``p = alpha / ln(b/a)``), on any set of pieces;
* every law whose ``s f(s)`` is piecewise linear.

Constructors: :func:`continuum_from_pdf` (a density callable: ``s pdf(s)`` interpolated linearly
between geometric knots, exact for the two laws above, else with an interpolation error
``O(h^2)`` in the knot spacing ``h`` of ``ln s``; pieces where the density vanishes are dropped,
so a density with holes gives a law with several support components) and
:func:`continuum_from_samples` (an empirical spectrum; see its docstring for what is exact and
what is smoothed). :meth:`VarianceContinuum.mass_above` is the exact mass above a threshold.
Bad input raises :class:`~diffphase.errors.ParameterError` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, as_float_array, require_count, require_in_range

#: relative tolerance on the total mass ``alpha <= 1``
MASS_TOLERANCE = 1e-12


@dataclass(frozen=True)
class VarianceContinuum:
    """Pieces ``[lows[i], highs[i]]`` (ascending, not overlapping; touching pieces form one
    support component) with the weighted density ``p(s) = s f(s)`` linear on each, equal to
    ``p_low[i]`` at ``lows[i]`` and ``p_high[i]`` at ``highs[i]`` (``>= 0``, positive mass per
    piece). Checked on construction."""

    lows: np.ndarray
    highs: np.ndarray
    p_low: np.ndarray
    p_high: np.ndarray
    label: str = field(default="continuous", compare=False)

    def __post_init__(self) -> None:
        arrays = [as_float_array(name, getattr(self, name))
                  for name in ("lows", "highs", "p_low", "p_high")]
        lows, highs, p_low, p_high = arrays
        if len({a.size for a in arrays}) != 1:
            raise ParameterError("pieces", [a.size for a in arrays], "one low, high, p_low and "
                                 "p_high per piece")
        if np.any(lows <= 0) or np.any(highs <= lows) or np.any(lows[1:] < highs[:-1]):
            raise ParameterError("support", np.c_[lows, highs].tolist(),
                                 "ascending pieces 0 < low < high, not overlapping")
        if np.any(p_low < 0) or np.any(p_high < 0):
            raise ParameterError("density", "negative", "s f(s) >= 0 on every piece")
        for name, value in zip(("lows", "highs", "p_low", "p_high"), arrays, strict=True):
            object.__setattr__(self, name, value)
        masses = self.piece_masses
        if np.any(masses <= 0):
            raise ParameterError("density", "a piece of zero mass", "positive mass per piece")
        if masses.sum() > 1 + MASS_TOLERANCE:
            raise ParameterError("alpha", float(masses.sum()), "total mass at most 1")

    # ------------------------------------------------------------------ derived quantities
    @property
    def widths(self) -> np.ndarray:
        return self.highs - self.lows

    @property
    def slopes(self) -> np.ndarray:
        """``dp/ds`` on each piece."""
        return (self.p_high - self.p_low) / self.widths

    @property
    def piece_masses(self) -> np.ndarray:
        """``int f ds`` per piece (closed form of :meth:`_mass_between`)."""
        return self._mass_between(self.lows, self.highs)

    @property
    def alpha(self) -> float:
        return float(self.piece_masses.sum())

    @property
    def components(self) -> np.ndarray:
        """Support components ``[[low, high], ...]``, ascending (runs of touching pieces)."""
        starts = np.r_[0, np.nonzero(self.lows[1:] > self.highs[:-1])[0] + 1]
        ends = np.r_[starts[1:] - 1, self.lows.size - 1]
        return np.stack([self.lows[starts], self.highs[ends]], axis=1)

    @property
    def cache_key(self) -> tuple:
        return tuple(a.tobytes() for a in (self.lows, self.highs, self.p_low, self.p_high))

    def rescaled(self, unit: float) -> VarianceContinuum:
        """Variances divided by ``unit``; ``p = s f(s)`` is invariant."""
        return VarianceContinuum(self.lows / unit, self.highs / unit, self.p_low, self.p_high,
                                 self.label)

    def _mass_between(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return piece_masses(self.lows, self.highs, self.p_low, self.p_high, start, stop)

    def mass_above(self, threshold) -> np.ndarray:
        """Exact mass of the law above each ``threshold`` (vectorized): the part of the piece
        holding it plus every piece above."""
        t = np.asarray(threshold, dtype=float)
        flat = t.ravel()
        masses = self.piece_masses
        above = np.r_[np.cumsum(masses[::-1])[::-1], 0.0]  # mass of pieces i, i+1, ...
        index = np.minimum(np.searchsorted(self.highs, flat, side="right"), masses.size - 1)
        start = np.clip(flat, self.lows[index], self.highs[index])
        part = piece_masses(self.lows[index], self.highs[index], self.p_low[index],
                            self.p_high[index], start, self.highs[index])
        result = np.where(flat >= self.highs[-1], 0.0, part + above[index + 1])
        return result.reshape(t.shape)


def piece_masses(lows, highs, p_low, p_high, start, stop) -> np.ndarray:
    """``int_start^stop p(s)/s ds`` per piece for ``lows <= start <= stop <= highs``:
    ``(p_a - m a) ln(stop/start) + m (stop - start)`` with ``m`` the slope of ``p``."""
    slopes = (p_high - p_low) / (highs - lows)
    log_ratio = np.log1p((stop - start) / start)  # accurate for narrow pieces
    return (p_low - slopes * lows) * log_ratio + slopes * (stop - start)


# ----------------------------------------------------------------------------- constructors
def check_support(support) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in support)
    except (TypeError, ValueError):
        raise ParameterError("support", support, "two numbers (low, high)") from None
    if not (0 < low < high < np.inf):
        raise ParameterError("support", support, "0 < low < high < inf")
    return low, high


def check_alpha(alpha) -> float:
    return require_in_range("alpha", alpha, 0, 1, closed=(False, True))


def continuum_from_pdf(pdf: Callable[[np.ndarray], np.ndarray], support, alpha: float,
                       n_pieces: int = 256, label: str | None = None) -> VarianceContinuum:
    """The law of density ``pdf`` on ``support`` (normalized here) with total mass ``alpha``:
    ``s pdf(s)`` is interpolated linearly between ``n_pieces + 1`` geometric knots (exact when
    it is linear in ``s`` between knots: uniform and log-uniform laws). Pieces where ``pdf``
    vanishes at both knots are dropped (holes in the support)."""
    low, high = check_support(support)
    alpha = check_alpha(alpha)
    n_pieces = require_count("n_pieces", n_pieces, 1, 10**5)
    knots = np.geomspace(low, high, n_pieces + 1)
    knots[0], knots[-1] = low, high
    try:
        values = np.asarray(pdf(knots), dtype=float) * knots
    except (TypeError, ValueError):
        raise ParameterError("pdf", "callable", "a function of an array of variances") from None
    if (values.shape != knots.shape or not np.all(np.isfinite(values)) or np.any(values < 0)
            or values.max() > 1e300):
        raise ParameterError("pdf", "callable", "finite (below 1e300) and >= 0 on support")
    keep = (values[:-1] > 0) | (values[1:] > 0)
    if not np.any(keep):
        raise ParameterError("pdf", "callable", "positive mass on support")
    lows, highs, p_low, p_high = knots[:-1][keep], knots[1:][keep], values[:-1][keep], values[
        1:][keep]
    lows, highs, p_low, p_high = _merge_collinear(lows, highs, p_low, p_high)
    scale = alpha / piece_masses(lows, highs, p_low, p_high, lows, highs).sum()
    return VarianceContinuum(lows, highs, p_low * scale, p_high * scale,
                             label or f"continuous on [{low:g}, {high:g}]")


def _merge_collinear(lows, highs, p_low, p_high, rtol: float = 1e-12):
    """Touching pieces on which ``p`` continues on one straight line are joined (an exact
    simplification: a uniform or log-uniform law becomes one piece)."""
    keep_low, keep_p_low = [lows[0]], [p_low[0]]
    keep_high, keep_p_high = [highs[0]], [p_high[0]]
    for a, b, pa, pb in zip(lows[1:], highs[1:], p_low[1:], p_high[1:], strict=True):
        slope_joined = (pb - keep_p_low[-1]) / (b - keep_low[-1])
        line_at_a = keep_p_low[-1] + slope_joined * (a - keep_low[-1])
        scale = max(abs(pa), abs(pb), abs(keep_p_high[-1]), 1e-300)
        if (a == keep_high[-1] and abs(line_at_a - pa) <= rtol * scale
                and abs(keep_p_high[-1] - pa) <= rtol * scale):
            keep_high[-1], keep_p_high[-1] = b, pb
        else:
            keep_low.append(a), keep_high.append(b), keep_p_low.append(pa), keep_p_high.append(pb)
    return tuple(np.array(v) for v in (keep_low, keep_high, keep_p_low, keep_p_high))


def continuum_from_samples(samples, alpha: float, gap_ratio: float | None = None,
                           label: str | None = None) -> VarianceContinuum:
    """An empirical spectrum (e.g. the covariance eigenvalues of a dataset) as a continuous law.

    Exact: the law it builds, whose CDF is the empirical CDF of the samples interpolated
    linearly in ``ln s`` through the points ``(u_j, F_j)`` at the distinct sorted samples ``u_j``
    (``F`` from 0 at the smallest sample to 1 at the largest, rising by
    ``(c_j + c_{j+1}) / 2`` between ``u_j`` and ``u_{j+1}`` for counts ``c_j``: with no ties,
    ``F_j = (j - 1)/(n - 1)``), times ``alpha``; its support is ``[min, max]`` of the samples.
    Every Stieltjes solve, edge and density of it is exact (closed-form pieces, no further
    discretization). Smoothed: each sample's mass is spread log-uniformly over the intervals to
    its neighbours, so the law resolves the spectrum only down to the spacing of the samples;
    atoms, ties and the tails beyond the extreme samples are not represented.

    ``gap_ratio`` (> 1, None: never): consecutive distinct samples whose ratio exceeds it, with
    at least two distinct samples on each side, bound separate support components (the mass is
    not spread across the gap, so the spectrum of ``C`` may show separate bulks there); each
    component keeps the share of samples it holds.
    """
    try:
        values = np.asarray(samples, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ParameterError("samples", samples, "a list of variances") from None
    if values.size == 0:
        raise ParameterError("samples", "empty", "at least two distinct variances")
    if not np.all(np.isfinite(values)):
        raise ParameterError("samples", values[~np.isfinite(values)], "finite variances")
    if np.any(values <= 0):
        raise ParameterError("samples", values[values <= 0], "variances > 0 (leave zero "
                             "eigenvalues out: they are normal directions, not in alpha)")
    alpha = check_alpha(alpha)
    distinct, counts = np.unique(values, return_counts=True)
    if distinct.size < 2:
        raise ParameterError("samples", distinct, "at least two distinct variances")
    if gap_ratio is not None:
        gap_ratio = require_in_range("gap_ratio", gap_ratio, 1, np.inf, closed=(False, False))
    pieces = [_interpolated_pieces(distinct[run], counts[run], values.size)
              for run in _sample_components(distinct, gap_ratio)]
    lows, highs, density = (np.concatenate([part[k] for part in pieces]) for k in range(3))
    return VarianceContinuum(lows, highs, alpha * density, alpha * density,
                             label or f"samples (n={values.size})")


def _sample_components(distinct: np.ndarray, gap_ratio: float | None) -> list[slice]:
    """Runs of distinct samples between gaps wider than ``gap_ratio`` (two samples or more)."""
    if gap_ratio is None:
        return [slice(0, distinct.size)]
    cuts = [0]
    for j in np.nonzero(distinct[1:] / distinct[:-1] > gap_ratio)[0] + 1:
        if j - cuts[-1] >= 2 and distinct.size - j >= 2:
            cuts.append(int(j))
    cuts.append(distinct.size)
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _interpolated_pieces(distinct: np.ndarray, counts: np.ndarray, total: int):
    """Pieces between consecutive distinct samples of one component, each log-uniform
    (``p`` constant) with mass ``(c_j + c_{j+1}) / 2`` shared so that the component holds
    ``sum c_j / total``."""
    masses = 0.5 * (counts[:-1] + counts[1:])
    masses *= counts.sum() / (total * masses.sum())
    lows, highs = distinct[:-1], distinct[1:]
    return lows, highs, masses / np.log1p((highs - lows) / lows)
