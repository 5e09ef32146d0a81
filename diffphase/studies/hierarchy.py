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

One rule for the sizes: :func:`check_hierarchy_sizes` (the random hierarchy model's own
:func:`~diffphase.data.rhm.check_rhm_sizes`, with the branching and the depth bounded first)
checks ``v, m, s, n_c`` (and the depth) for the thresholds, the diagram and the experiment
alike. Every function checks its arguments, then its estimated memory and run time
(``*_cost``, :mod:`diffphase.studies.budget`) against ``max_memory``, before any solve. Values
undefined in a regime (``eps*`` in the ``partial`` regime, ``slope`` and ``nu`` outside
``transition``) are NaN with a ``nan_reason`` beside them (:mod:`diffphase.studies.tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from ..data.channels import CHANNELS
from ..data.rhm import MAX_LEAVES, RandomHierarchyModel, check_rhm_sizes
from ..errors import ParameterError, require_choice, require_in_range, require_int
from ..models import BP_ENGINES, NOISE_CONVENTION, REGIMES
from ..simulate.hierarchy import forward_backward_curves
from ..solvers import hierarchy as mf
from ..solvers.bp import MAX_BP_BYTES, bp_batch_size, bp_bytes_per_tree
from ..solvers.population import preservation_curve
from .budget import CostTerm, check_cost, product
from .tables import flag_nonfinite_columns, flag_summary

#: noise evaluations of population dynamics behind one ``eps_half`` (an 11-point scan, then
#: bisection to 2e-3; measured: about 15)
HALF_POINT_EVALUATIONS = 20
#: largest ``v**s`` from which rules are drawn (64-bit tuple codes)
MAX_TUPLES = 2**62
#: why a value of the mean-field map can be undefined (NaN, ``null`` in JSON)
REGIME_REASONS = {
    "eps_star": "partial regime: both trivial fixed points are unstable, no threshold",
    "slope": "no interior fixed point in this regime (lost, kept or partial)",
    "nu": "no interior fixed point in this regime (lost, kept or partial)",
    "fixed_point": "no interior fixed point in this regime (lost, kept or partial)",
    "eps_half": "population dynamics found no crossing of 1/2 (see eps_half_converged)",
    "eps_half_stderr": "fewer than two runs found a crossing of 1/2",
    "eps_half_spread": "fewer than two runs found a crossing of 1/2",
    "eps_half_runs": "this run found no crossing of 1/2",
    "eps_half_mean_field": "the mean-field class belief stays above 1/2 for every eps",
}
REGIME_REASONS.update({f"{k}_large_v": why for k, why in list(REGIME_REASONS.items())[:4]})


def check_hierarchy_sizes(v: int, m: int, s: int, n_c: int | None = None,
                          depth: int | None = None) -> tuple[int, int, int, int | None, int]:
    """The sizes of the random hierarchy model, checked by one rule wherever they are used:
    integers ``2 <= s <= MAX_BRANCHING`` (checked first, so that the powers below stay small),
    ``v >= 2``, ``1 <= m <= v**(s-1)``, ``n_c >= 1`` with ``n_c * m <= v**s`` (default
    ``n_c = v``) and, when given, ``1 <= depth`` with ``s**depth <= MAX_LEAVES`` (the error
    names ``L``). Returns ``(v, m, s, depth, n_c)``."""
    s = mf.check_branching(s)
    v = require_int("v", v, 2)
    m = require_int("m", m, 1)
    if n_c is not None:
        n_c = require_int("n_c", n_c, 1)
    if depth is not None:
        depth = require_int("L", depth, 1)
        if depth * np.log(s) > np.log(MAX_LEAVES):  # before s**L is computed
            raise ParameterError("L", depth, f"s**L <= {MAX_LEAVES} leaves (L <= "
                                 f"{int(np.log(MAX_LEAVES) / np.log(s))} at s = {s}: a tree "
                                 "too large for memory)")
    v, m, s, L, n_c = check_rhm_sizes(v, m, s, 1 if depth is None else depth, n_c)
    return v, m, s, depth, n_c


def population_cost(v: int, m: int, s: int, L: int, n_c: int, population: int, repeats: int,
                    evaluations: float = 1.0, what: str = "population dynamics") -> CostTerm:
    """Memory and run time of ``evaluations`` population-dynamics estimates
    (:func:`~diffphase.solvers.population.class_preservation`): per member the messages of its
    ``s`` children and of its parent (measured: 0.4-2.5 kB), per member, level and repetition
    the BP update over the rules (measured: 2-27 microseconds)."""
    parents = max(v, n_c)
    memory = product(population, 8.0 * (2 * s * v + 2 * parents + 16) + 200)
    per_member = 1e-6 * (2.0 + 0.006 * product(parents, m, s) + 0.05 * product(s, v))
    seconds = product(evaluations, repeats, L, population, per_member)
    name, value = ("repeats", repeats) if repeats > 100 else ("population", population)
    return CostTerm(what, name, value, memory, seconds)


def rules_cost(v: int, m: int, s: int, L: int, n_c: int) -> CostTerm:
    """The rules of one random hierarchy model (``L`` levels of ``n_par x m`` ``s``-tuples)."""
    if s * np.log(float(v)) > np.log(MAX_TUPLES):
        raise ParameterError("v", v, f"v**s <= 2**62 for the rules to be drawn (here "
                             f"{float(v):.3g}**{s} tuples)")
    entries = product(L, max(v, n_c), m, s)
    return CostTerm("the production rules", "m", m, 32.0 * entries, 2e-7 * entries)


def thresholds_cost(v: int, m: int, s: int, n_c: int, depth: int | None, channel: str | None,
                    population: int, repeats: int) -> list[CostTerm]:
    """Estimated cost of :func:`hierarchy_thresholds`: the mean-field map (negligible) and, with
    a channel, the rules and about :data:`HALF_POINT_EVALUATIONS` population-dynamics
    estimates."""
    if channel is None:
        return [CostTerm("the mean-field map", "s", s, 0.0, 1.0)]
    return [rules_cost(v, m, s, depth, n_c),
            population_cost(v, m, s, depth, n_c, population, repeats, HALF_POINT_EVALUATIONS,
                            "the population-dynamics runs of eps_half")]


def check_thresholds(v, m, s, n_c=None, channel=None, depth=None, population=20000,
                     repeats=8, seed=0, max_memory=None) -> tuple:
    """The checks of :func:`hierarchy_thresholds` before it solves (sizes, channel and depth,
    population dynamics, seed, cost); returns the checked
    ``(v, m, s, n_c, depth, population, repeats, seed)``."""
    if channel is not None:
        require_choice("channel", channel, CHANNELS)
        if depth is None:
            raise ParameterError("depth", None, "an integer >= 1 when channel is given")
    v, m, s, depth, n_c_value = check_hierarchy_sizes(v, m, s, n_c, depth)
    population = require_int("population", population, 100)
    repeats = require_int("repeats", repeats, 2)
    seed = require_int("seed", seed, 0)
    check_cost(thresholds_cost(v, m, s, n_c_value, depth, channel, population, repeats),
               max_memory)
    return v, m, s, n_c_value, depth, population, repeats, seed


def hierarchy_thresholds(v: int, m: int, s: int, n_c: int | None = None,
                         channel: str | None = None, depth: int | None = None,
                         population: int = 20000, repeats: int = 8, seed: int = 0,
                         max_memory: float | None = None) -> dict:
    """Mean-field ``eps*``, ``slope``, ``nu``, ``regime`` (and their ``*_large_v``); with a
    channel also ``eps_half`` by population dynamics.

    Parameters
    ----------
    v, m, s, n_c : vocabulary, synonyms, branching, classes (default ``n_c = v``), checked by
        :func:`check_hierarchy_sizes` (with ``depth`` when given).
    channel, depth : noise channel and tree depth of ``eps_half`` (``depth`` required with it).
    population, repeats, seed : population dynamics (``population >= 100``, ``repeats >= 2``
        independent runs, each with its own draw of the rules and its own population, seeded
        from ``seed >= 0``; :func:`~diffphase.solvers.population.half_point_estimate`); checked
        even without a channel. ``eps_half_stderr`` is the runs' spread over
        ``sqrt(repeats)`` combined with the bisection's resolution.
    max_memory : memory budget in bytes (:func:`thresholds_cost`).

    Returns
    -------
    dict
        What ``diffphase thresholds`` prints; for ``eps`` also ``eps_half_mean_field`` (first
        noise of a 2001-point grid where the mean-field class belief is below 1/2, or None),
        and a ``nan_reason`` for each value undefined in the regime.
    """
    v, m, s, n_c_value, depth, population, repeats, seed = check_thresholds(
        v, m, s, n_c, channel, depth, population, repeats, seed, max_memory)
    crit = mf.critical_point(v, m, s)
    f = m / v ** (s - 1)
    large = mf.critical_point_large_v(f, s)
    summary = {"v": v, "m": m, "s": s, "n_c": n_c_value, "f": f,
               **{k: crit[k] for k in ("eps_star", "slope", "nu", "regime", "fixed_point",
                                       "slope_at_1", "slope_at_uniform")},
               **{f"{k}_large_v": large[k] for k in ("eps_star", "slope", "nu")},
               "level_convention": "level 0 = root, L = leaves"}
    if channel is None:
        return flag_summary(summary, REGIME_REASONS)
    from ..solvers.population import half_point_estimate

    half = half_point_estimate(v, m, s, depth, n_c, channel, runs=repeats,
                               population=population, seed=seed)
    summary.update(channel=channel, depth=depth, eps_half=half.noise,
                   eps_half_stderr=half.standard_error, eps_half_spread=half.spread,
                   eps_half_runs=half.runs.tolist(), eps_half_converged=half.converged,
                   eps_half_xtol=half.xtol, noise_convention=NOISE_CONVENTION[channel],
                   population=population, repeats=repeats, seed=seed,
                   method="population dynamics: mean of independent runs, each with its own "
                          "draw of the rules; stderr from their spread")
    if channel == "eps":
        grid = np.linspace(0, 1, 2001)
        below = np.nonzero(mf.mean_field_levels(grid, v, m, s, depth, n_c)[:, 0] < 0.5)[0]
        summary["eps_half_mean_field"] = float(grid[below[0]]) if below.size else None
    return flag_summary(summary, REGIME_REASONS)


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
        """Tidy ``f, s, eps_star_large_v, slope, nu, regime`` (and ``nan_reason`` where a value
        is undefined in its regime)."""
        f, s = np.meshgrid(self.f_values, np.asarray(self.s_values, int))
        regime = self.large_v["regime"].ravel()
        no_threshold = np.array([f"{r} regime: no threshold" for r in regime])
        no_root = np.array([f"{r} regime: no interior fixed point" for r in regime])
        return flag_nonfinite_columns(
            {"f": f.ravel(), "s": s.ravel(),
             "eps_star_large_v": self.large_v["eps_star"].ravel(),
             **{k: self.large_v[k].ravel() for k in ("slope", "nu", "regime")}},
            {"eps_star_large_v": no_threshold, "slope": no_root, "nu": no_root})

    def convergence(self) -> dict:
        return {"eps_star_points": int(self.large_v["regime"].size),
                "regimes": {r: int((self.large_v["regime"] == r).sum()) for r in REGIMES}}

    def summary(self) -> dict:
        return flag_summary({k: self.critical_point[k]
                             for k in ("eps_star", "slope", "nu", "regime")}, REGIME_REASONS)


def hierarchy_diagram_cost(n_eps: int, depths: Sequence[int], n_f: int,
                           s_values: Sequence[int]) -> list[CostTerm]:
    """Estimated cost of :func:`hierarchy_diagram` with its tables written and its figure drawn:
    one row per ``eps``, depth and level of the map, one per ``(f, s)`` of ``eps*`` (a
    polynomial root each, and a symbolic derivation per new ``s``)."""
    levels = sum(float(d) + 1.0 for d in depths)
    rows = product(n_eps, levels)
    points = product(n_f, len(s_values))
    return [CostTerm("the rows of the noise-depth-level map", "eps" if n_eps > levels
                     else "depths", n_eps if n_eps > levels else max(depths),
                     64 * 2**20 + 200.0 * rows, 10.0 + 2e-5 * rows),
            CostTerm("the large-v threshold grid", "f", n_f, 600.0 * points,
                     6.0 * len(set(s_values)) + 2e-3 * points)]


@dataclass(frozen=True)
class HierarchyDiagramPlan:
    """Checked arguments of :func:`hierarchy_diagram` (see :func:`plan_hierarchy_diagram`)."""

    v: int
    m: int
    s: int
    n_c: int
    eps: np.ndarray
    depths: np.ndarray
    f_values: np.ndarray
    s_values: tuple[int, ...]


def hierarchy_diagram(v: int = 32, m: int = 8, s: int = 2, n_c: int | None = None, eps=None,
                      depths=None, f_values=None, s_values=(2, 3, 4),
                      max_memory: float | None = None) -> HierarchyDiagram:
    """Mean-field beliefs over ``(eps, depth)`` and the large-``v`` ``eps*`` over ``(f, s)``:
    :func:`plan_hierarchy_diagram`, then :func:`run_hierarchy_diagram`."""
    return run_hierarchy_diagram(plan_hierarchy_diagram(v, m, s, n_c, eps, depths, f_values,
                                                        s_values, max_memory))


def plan_hierarchy_diagram(v: int = 32, m: int = 8, s: int = 2, n_c: int | None = None,
                           eps=None, depths=None, f_values=None, s_values=(2, 3, 4),
                           max_memory: float | None = None) -> HierarchyDiagramPlan:
    """Check the arguments of :func:`hierarchy_diagram` and its cost, before any solve.

    Parameters
    ----------
    v, m, s, n_c : the map's parameters (default ``n_c = v``), checked by
        :func:`check_hierarchy_sizes`.
    eps : noise grid in ``[0, 1]`` (default 101 points); ``depths``: integers >= 1 (1..12) with
        ``s**depth`` leaves at most :data:`~diffphase.data.rhm.MAX_LEAVES`.
    f_values : ``f`` grid in ``(0, 1]`` (default 0.01..0.99, 99 points).
    s_values : integer branchings in ``[2, MAX_BRANCHING]`` of the ``eps*`` grid.
    max_memory : memory budget in bytes (:func:`hierarchy_diagram_cost`).
    """
    eps = np.linspace(0, 1, 101) if eps is None else np.atleast_1d(np.asarray(eps, float))
    for x in eps:
        require_in_range("eps", x, 0, 1)
    v, m, s, _, n_c_value = check_hierarchy_sizes(v, m, s, n_c)
    if depths is None:
        depths = list(range(1, 13))
    depths = [require_int("depths", d, 1) for d in np.atleast_1d(depths).tolist()]
    for d in depths:
        if d * np.log(s) > np.log(MAX_LEAVES):
            raise ParameterError("depths", d, f"integers >= 1 with s**depth <= {MAX_LEAVES} "
                                 f"(depth <= {int(np.log(MAX_LEAVES) / np.log(s))} at s = {s})")
    s_values = tuple(require_int("s_values", x, 2) for x in np.atleast_1d(s_values).tolist())
    for x in s_values:
        if x > mf.MAX_BRANCHING:
            raise ParameterError("s_values", x, f"integers in [2, {mf.MAX_BRANCHING}]")
    f_values = np.linspace(0.01, 0.99, 99) if f_values is None else np.atleast_1d(
        np.asarray(f_values, float))
    for x in f_values:
        require_in_range("f", x, 0, 1, closed=(False, True))
    check_cost(hierarchy_diagram_cost(eps.size, depths, f_values.size, s_values), max_memory)
    return HierarchyDiagramPlan(v, m, s, n_c_value, eps, np.asarray(depths, dtype=int),
                                f_values, s_values)


def run_hierarchy_diagram(plan: HierarchyDiagramPlan) -> HierarchyDiagram:
    """The maps of a checked :class:`HierarchyDiagramPlan`."""
    levels = [mf.mean_field_levels(plan.eps, plan.v, plan.m, plan.s, int(d), plan.n_c)
              for d in plan.depths]
    f_grid, s_grid = np.meshgrid(plan.f_values, np.asarray(plan.s_values, int))
    return HierarchyDiagram(plan.eps, plan.depths, plan.f_values, plan.s_values, levels,
                            mf.critical_grid_large_v(f_grid, s_grid),
                            mf.critical_point(plan.v, plan.m, plan.s))


#: independent population-dynamics runs behind each predicted point
POPULATION_REPEATS = 2
#: why a column of the experiment's tables can be undefined
TABLE_REASONS = {
    "upward_true_value_belief_population_dynamics": "population 0: no population-dynamics "
                                                    "prediction",
    "class_preservation_population_dynamics": "population 0: no population-dynamics prediction",
}
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


def forward_backward_cost(v: int, m: int, s: int, n_c: int, depths: Sequence[int],
                          noise_levels: int, samples: int, population: int) -> list[CostTerm]:
    """Estimated memory and run time of :func:`run_forward_backward`: per depth the rules, the
    belief propagation of ``samples`` trees per noise level in batches of at most
    :data:`~diffphase.solvers.bp.MAX_BP_BYTES` (measured: 0.9 of
    :func:`~diffphase.solvers.bp.bp_bytes_per_tree` per tree held, about 1e-8 seconds per byte
    of a tree), and the population-dynamics predictions (one estimate per noise level)."""
    terms = []
    for depth in depths:
        per_tree = float(bp_bytes_per_tree(v, n_c, s, depth))
        nodes = sum(float(s) ** level for level in range(depth + 1))
        held = min(product(samples, per_tree), float(MAX_BP_BYTES))
        memory = 1.2 * held + product(samples, nodes, 24.0) + 64 * 2**20
        seconds = product(noise_levels, samples, per_tree, 2e-8)
        terms += [rules_cost(v, m, s, depth, n_c),
                  CostTerm(f"belief propagation on the trees of depth {depth}", "samples",
                           samples, memory, seconds)]
        if population:
            terms.append(population_cost(v, m, s, depth, n_c, population, POPULATION_REPEATS,
                                         noise_levels, "the population-dynamics predictions"))
    return terms


def plan_forward_backward(v: int = 32, m: int = 8, s: int = 2, n_c: int | None = None,
                          depths: Sequence[float] = (4,), channel: str = "eps",
                          noise: Sequence[float] = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9),
                          samples: int = 1000, population: int = 20000, engine: str = "numba",
                          device: str = "cpu", seed: int = 0,
                          max_memory: float | None = None) -> ForwardBackwardPlan:
    """Check the arguments and the cost, then draw the rules of each depth (from ``seed``),
    before any run.

    Parameters
    ----------
    v, m, s, n_c : the random hierarchy model (THEORY C), checked by
        :func:`check_hierarchy_sizes` at every depth.
    depths : tree depths ``L`` (integers >= 1); one forward-backward run each.
    channel : noise channel; ``noise``: its levels in ``[0, 1]``.
    samples : trees per noise level (>= 1).
    population : population size of the population-dynamics prediction (0: none, else >= 100).
    engine, device : belief-propagation engine and device (a GPU asked for must answer).
    seed : rules and samples (>= 0).
    max_memory : memory budget in bytes (:func:`forward_backward_cost`).

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
    for d in np.atleast_1d(depths).tolist():
        if not float(d).is_integer() or d < 1:
            raise ParameterError("depths", d, "integers >= 1")
        depth_list.append(check_hierarchy_sizes(v, m, s, n_c, int(d))[3])
    v, m, s, _, n_c_value = check_hierarchy_sizes(v, m, s, n_c)
    samples = require_int("samples", samples, 1)
    population = require_int("population", population, 0)
    if population != 0 and population < 100:
        raise ParameterError("population", population, "0 (skip) or an integer >= 100")
    seed = require_int("seed", seed, 0)
    rules_cost(v, m, s, 1, n_c_value)  # the rules can be drawn (v**s tuples)
    for depth in depth_list:  # a tree too large: error now, before any run
        bp_batch_size(v, n_c_value, s, depth, 1)
    check_cost(forward_backward_cost(v, m, s, n_c_value, depth_list, noise.size, samples,
                                     population), max_memory)
    get_array_module(device)
    models = tuple(RandomHierarchyModel(v, m, s, depth, n_c, seed=seed) for depth in depth_list)
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
    return (flag_nonfinite_columns(columns, TABLE_REASONS),
            flag_nonfinite_columns(levels, TABLE_REASONS))


def _extend(table: dict[str, list], rows: dict) -> None:
    for key, values in rows.items():
        table.setdefault(key, []).extend(list(values))
