"""Thresholds and the mean-field phase diagram of the random hierarchy model (THEORY C).

Contract: :func:`hierarchy_thresholds` gives the critical noise ``eps*``, the slope ``lambda``,
``nu = ln s / ln lambda`` and the regime of the mean-field map, at finite ``v`` and for large ``v``
at fixed ``f = m / v^(s-1)``; with a channel and a depth also ``eps_half`` (class kept with
probability 1/2) by population dynamics. :func:`hierarchy_diagram` gives the mean-field beliefs at
every level over ``(eps, depth)`` and the large-``v`` ``eps*`` over ``(f, s)``. Level 0 is the
root (the class), ``L`` the leaves; arguments are checked before any solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_in_range
from ..models import NOISE_CONVENTION, REGIMES
from . import hierarchy as mf


def hierarchy_thresholds(v: int, m: int, s: int, n_c: int | None = None,
                         channel: str | None = None, depth: int | None = None,
                         population: int = 20000, repeats: int = 2, seed: int = 0) -> dict:
    """Mean-field ``eps*``, ``slope``, ``nu``, ``regime`` (and their ``*_large_v``); with a
    channel also ``eps_half`` by population dynamics.

    Parameters
    ----------
    v, m, s, n_c : vocabulary, synonyms, branching, classes (default ``n_c = v``).
    channel, depth : noise channel and tree depth of ``eps_half`` (``depth`` required with it).
    population, repeats, seed : population dynamics, quenched rules drawn from ``seed``.

    Returns
    -------
    dict
        What ``diffphase thresholds`` prints; for ``eps`` also ``eps_half_mean_field`` (first
        noise of a 2001-point grid where the mean-field class belief is below 1/2, or None).
    """
    from ..data.rhm import check_rhm_sizes

    if channel is not None and depth is None:
        raise ParameterError("depth", None, "an integer >= 1 when channel is given")
    if depth is not None:
        check_rhm_sizes(v, m, s, depth, n_c)
    crit = mf.critical_point(v, m, s)
    f = m / v ** (s - 1)
    large = mf.critical_point_large_v(f, s)
    summary = {"v": v, "m": m, "s": s, "n_c": n_c if n_c is not None else v, "f": f,
               **{k: crit[k] for k in ("eps_star", "slope", "nu", "regime", "fixed_point",
                                       "slope_at_1", "slope_at_uniform")},
               **{f"{k}_large_v": large[k] for k in ("eps_star", "slope", "nu")},
               "level_convention": "level 0 = root, L = leaves"}
    if channel is None:
        return summary
    from ..data.rhm import RandomHierarchyModel
    from .population import half_point

    model = RandomHierarchyModel(v, m, s, depth, n_c, seed=seed)
    half = half_point(model, channel, population=population, repeats=repeats, seed=seed)
    summary.update(channel=channel, depth=depth, eps_half=half.noise,
                   eps_half_converged=half.converged, eps_half_bracket=half.bracket,
                   noise_convention=NOISE_CONVENTION[channel], population=population,
                   repeats=repeats, seed=seed, method="population dynamics (quenched rules)")
    if channel == "eps":
        grid = np.linspace(0, 1, 2001)
        below = np.nonzero(mf.mean_field_levels(grid, v, m, s, depth, n_c)[:, 0] < 0.5)[0]
        summary["eps_half_mean_field"] = float(grid[below[0]]) if below.size else None
    return summary


@dataclass
class HierarchyDiagram:
    """``levels[i]``: beliefs at depth ``depths[i]``, shape ``(len(eps), depths[i] + 1)``;
    ``large_v``: ``eps*``, ``slope``, ``nu``, ``regime`` on the grid ``s_values x f_values``."""

    eps: np.ndarray
    depths: np.ndarray
    f_values: np.ndarray
    s_values: tuple[int, ...]
    levels: list[np.ndarray]
    large_v: dict[str, np.ndarray]
    critical_point: dict

    @property
    def class_preservation(self) -> np.ndarray:
        """Mean-field class preservation, shape ``(len(depths), len(eps))``."""
        return np.stack([levels[:, 0] for levels in self.levels])

    def map_table(self) -> dict[str, np.ndarray]:
        """Tidy ``eps, depth_L, level, true_value_belief_mean_field`` (depth, level, eps)."""
        pairs = [(int(d), lv) for d in self.depths for lv in range(int(d) + 1)]
        size = self.eps.size
        return {"eps": np.tile(self.eps, len(pairs)),
                "depth_L": np.repeat([d for d, _ in pairs], size),
                "level": np.repeat([lv for _, lv in pairs], size),
                "true_value_belief_mean_field": np.concatenate(
                    [levels[:, lv] for levels in self.levels for lv in range(levels.shape[1])])}

    def eps_star_table(self) -> dict[str, np.ndarray]:
        f, s = np.meshgrid(self.f_values, np.asarray(self.s_values, int))
        return {"f": f.ravel(), "s": s.ravel(),
                "eps_star_large_v": self.large_v["eps_star"].ravel(),
                **{k: self.large_v[k].ravel() for k in ("slope", "nu", "regime")}}

    def convergence(self) -> dict:
        return {"eps_star_points": int(self.large_v["regime"].size),
                "regimes": {r: int((self.large_v["regime"] == r).sum()) for r in REGIMES}}

    def summary(self) -> dict:
        return {k: self.critical_point[k] for k in ("eps_star", "slope", "nu", "regime")}


def hierarchy_diagram(v: int = 32, m: int = 8, s: int = 2, n_c: int | None = None, eps=None,
                      depths=None, f_values=None, s_values=(2, 3, 4)) -> HierarchyDiagram:
    """Mean-field beliefs over ``(eps, depth)`` and the large-``v`` ``eps*`` over ``(f, s)``.

    Parameters
    ----------
    v, m, s, n_c : the map's parameters (default ``n_c = v``).
    eps : noise grid in ``[0, 1]`` (default 101 points); ``depths``: integers >= 1 (1..12).
    f_values : ``f`` grid in ``(0, 1]`` (default 0.01..0.99, 99 points).
    s_values : integer branchings >= 2 of the ``eps*`` grid.
    """
    eps = np.linspace(0, 1, 101) if eps is None else np.asarray(eps, float)
    for x in eps:
        require_in_range("eps", x, 0, 1)
    for d in () if depths is None else depths:
        if d < 1 or d != int(d) or 3 ** d > 1e300:
            raise ParameterError("depths", d, "integers >= 1")
    depths = np.arange(1, 13) if depths is None else np.asarray(depths).astype(int)
    s_values = tuple(int(x) for x in s_values)
    for x in s_values:
        if x < 2:
            raise ParameterError("s_values", x, "integers >= 2")
    f_values = np.linspace(0.01, 0.99, 99) if f_values is None else np.asarray(f_values, float)
    for x in f_values:
        require_in_range("f", x, 0, 1, closed=(False, True))
    mf.check_map_parameters(v, m, s, n_c)
    levels = [mf.mean_field_levels(eps, v, m, s, int(d), n_c) for d in depths]
    f_grid, s_grid = np.meshgrid(f_values, np.asarray(s_values, int))
    return HierarchyDiagram(eps, depths, f_values, s_values, levels,
                            mf.critical_grid_large_v(f_grid, s_grid), mf.critical_point(v, m, s))
