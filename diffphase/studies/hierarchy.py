"""Thresholds and the mean-field phase diagram of the random hierarchy model (THEORY C).

Contract: :func:`hierarchy_thresholds` gives the critical noise ``eps*``, the slope ``lambda``,
``nu = ln s / ln lambda`` and the regime of the mean-field map, at finite ``v`` and for large ``v``
at fixed ``f = m / v^(s-1)``; with a channel and a depth also ``eps_half`` (class kept with
probability 1/2) by population dynamics. :func:`hierarchy_diagram` gives the mean-field beliefs at
every level over ``(eps, depth)`` and the large-``v`` ``eps*`` over ``(f, s)``. Level 0 is the
root (the class), ``L`` the leaves; arguments are checked before any solve.

The experiment of ``diffphase simulate hierarchy``: :func:`plan_forward_backward` checks the
arguments and draws one rule set per depth (nothing heavy runs); :func:`run_forward_backward` runs
:func:`forward_backward_at_depth` at each depth, which puts the measured class preservation next
to its predictions (the mean-field map for the ``eps`` channel, population dynamics for any
channel) in tidy tables; :func:`forward_backward_tables` stacks the depths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from ..data.channels import CHANNELS
from ..data.rhm import RandomHierarchyModel
from ..errors import ParameterError, require_choice, require_in_range
from ..models import BP_ENGINES, NOISE_CONVENTION, REGIMES
from ..simulate.hierarchy import forward_backward_curves
from ..solvers import hierarchy as mf
from ..solvers.bp import bp_batch_size
from ..solvers.population import preservation_curve


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
    from ..solvers.population import half_point

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


#: independent population-dynamics runs behind each predicted point
POPULATION_REPEATS = 2
#: measured quantities of :func:`forward_backward` kept per noise level by the experiment
MEASURED_KEYS = ("unchanged", "true_value_belief", "upward_true_value_belief", "class_posterior",
                 "class_posterior_se", "class_preservation", "susceptibility")



# ----------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class ForwardBackwardPlan:
    """Checked arguments of a forward-backward experiment: one model per depth."""

    models: tuple[RandomHierarchyModel, ...]
    channel: str
    noise: np.ndarray
    samples: int
    population: int
    engine: str
    device: str
    seed: int

    @property
    def depths(self) -> list[int]:
        return [model.L for model in self.models]


@dataclass
class DepthRun:
    """One depth of the experiment.

    ``measured``: arrays over the noise levels (``unchanged`` etc. of shape ``(noise, L + 1)``);
    ``predicted``: class preservation per prediction (``mean field``, ``population dynamics``);
    ``columns`` and ``levels``: tidy tables (one row per noise level; per noise level and
    level); ``convergence``: guarded messages and population standard errors.
    """

    depth: int
    measured: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    columns: dict[str, list]
    levels: dict[str, list]
    convergence: dict


def plan_forward_backward(v: int = 32, m: int = 8, s: int = 2, n_c: int | None = None,
                          depths: Sequence[float] = (4,), channel: str = "eps",
                          noise: Sequence[float] = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9),
                          samples: int = 1000, population: int = 20000, engine: str = "numba",
                          device: str = "cpu", seed: int = 0) -> ForwardBackwardPlan:
    """Check the arguments and draw the rules of each depth (from ``seed``), before any run.

    Parameters
    ----------
    v, m, s, n_c : the random hierarchy model (THEORY C).
    depths : tree depths ``L`` (integers >= 1); one forward-backward run each.
    channel : noise channel; ``noise``: its levels in ``[0, 1]``.
    samples : trees per noise level (>= 1).
    population : population size of the population-dynamics prediction (0: none, else >= 100).
    engine, device : belief-propagation engine and device (a GPU asked for must answer).
    seed : rules and samples.

    Raises
    ------
    ParameterError
        naming the argument at fault, or ``L`` when one tree is too large for memory.
    """
    require_choice("channel", channel, CHANNELS)
    require_choice("engine", engine, BP_ENGINES)
    noise = np.atleast_1d(np.asarray(noise, dtype=float))
    for x in noise:
        require_in_range("noise", x, 0, 1)
    depth_list = []
    for d in depths:
        if not float(d).is_integer() or d < 1:
            raise ParameterError("depths", d, "integers >= 1")
        depth_list.append(int(d))
    if samples < 1:
        raise ParameterError("samples", samples, "an integer >= 1")
    if population != 0 and population < 100:
        raise ParameterError("population", population, "0 (skip) or an integer >= 100")
    models = tuple(RandomHierarchyModel(v, m, s, depth, n_c, seed=seed) for depth in depth_list)
    for model in models:  # a tree too large: error now, before any run
        bp_batch_size(model.v, model.n_c, model.s, model.L, samples)
    get_array_module(device)
    return ForwardBackwardPlan(models, channel, noise, samples, population, engine, device, seed)


def run_forward_backward(plan: ForwardBackwardPlan,
                         progress: Callable[[Iterable], Iterable] | None = None
                         ) -> list[DepthRun]:
    """:func:`forward_backward_at_depth` at every depth of the plan (``progress`` wraps each
    loop over noise levels)."""
    return [forward_backward_at_depth(model, plan.channel, plan.noise, plan.samples,
                                      plan.population, plan.engine, plan.device, plan.seed,
                                      progress) for model in plan.models]


def forward_backward_at_depth(model: RandomHierarchyModel, channel: str, noise, samples: int,
                              population: int = 20000, engine: str = "numba",
                              device: str = "cpu", seed: int = 0,
                              progress: Callable[[Iterable], Iterable] | None = None
                              ) -> DepthRun:
    """Measured curves at one depth next to the predictions, as arrays and tidy tables.

    Samples are drawn from ``default_rng([seed, L])``; the population dynamics (when
    ``population > 0``) from ``seed``. The susceptibility is measured only: the toolkit has no
    prediction for it (THEORY C).
    """
    depth = model.L
    noise = list(np.atleast_1d(noise))
    rng = np.random.default_rng([seed, depth])
    runs = forward_backward_curves(model, channel, noise, samples, rng, progress=progress,
                                   engine=engine, device=device)
    predicted = {}
    if channel == "eps":
        predicted["mean field"] = mf.mean_field_levels(noise, model.v, model.m, model.s, depth,
                                                       model.n_c)[:, 0]
    pd_runs = []
    if population:
        pd_runs = preservation_curve(model, channel, noise, population,
                                     repeats=POPULATION_REPEATS, seed=seed)
        predicted["population dynamics"] = np.array([r.class_preservation for r in pd_runs])
    measured = {key: np.array([r[key] for r in runs]) for key in MEASURED_KEYS}
    columns = {"noise": noise,
               "noise_convention": [NOISE_CONVENTION[channel]] * len(noise),
               "class_preservation_sampled": measured["class_preservation"],
               "class_preservation_posterior": measured["class_posterior"],
               "class_preservation_posterior_se": measured["class_posterior_se"],
               "susceptibility_var_changed_leaves_over_d": measured["susceptibility"]}
    for name, values in predicted.items():
        columns["class_preservation_" + name.replace(" ", "_")] = values
    levels: dict[str, list] = {"noise": [], "level": [], "p_unchanged": [],
                               "true_value_marginal": [], "upward_true_value_belief": [],
                               "upward_true_value_belief_population_dynamics": []}
    for i, x in enumerate(noise):
        for lv in range(depth + 1):
            levels["noise"].append(x)
            levels["level"].append(lv)
            levels["p_unchanged"].append(measured["unchanged"][i, lv])
            levels["true_value_marginal"].append(measured["true_value_belief"][i, lv])
            levels["upward_true_value_belief"].append(measured["upward_true_value_belief"][i, lv])
            levels["upward_true_value_belief_population_dynamics"].append(
                pd_runs[i].true_value_belief[lv] if pd_runs else np.nan)
    convergence = {"bp_guarded_messages": int(sum(r["n_guarded"] for r in runs)),
                   "population_guarded_messages": int(sum(r.n_guarded for r in pd_runs)),
                   "population_class_standard_error": [float(r.standard_error[0])
                                                       for r in pd_runs]}
    return DepthRun(depth, measured, predicted, columns, levels, convergence)


def forward_backward_tables(runs: Sequence[DepthRun]
                            ) -> tuple[dict[str, list], dict[str, list]]:
    """The runs' tables stacked depth after depth, each with a leading ``depth_L`` column:
    ``(per noise level, per noise level and level)``."""
    columns: dict[str, list] = {}
    levels: dict[str, list] = {}
    for run in runs:
        _extend(columns, {"depth_L": [run.depth] * len(run.columns["noise"]), **run.columns})
        _extend(levels, {"depth_L": [run.depth] * len(run.levels["noise"]), **run.levels})
    return columns, levels


def _extend(table: dict[str, list], rows: dict) -> None:
    for key, values in rows.items():
        table.setdefault(key, []).extend(list(values))
