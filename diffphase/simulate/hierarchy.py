"""Forward-backward experiments on random-hierarchy-model data (THEORY C).

Contract: :func:`forward_backward` runs ``x0 -> x_noisy -> x0_hat ~ p(x0 | x_noisy)`` with exact
BP (:mod:`diffphase.solvers.bp`) on ``n_samples`` trees and returns, per level (0 the class,
``L`` the leaves): the probability that a node's value is unchanged, the mean posterior marginal
on the true value, the class-preservation probability and the susceptibility (variance over
samples of the number of changed leaves, divided by ``d = s**L``). :func:`transition_width` and
:func:`collapse_spread` read widths and the quality of a scaling collapse off such curves.

The experiment of ``diffphase simulate hierarchy``: :func:`plan_forward_backward` checks the
arguments and draws one rule set per depth (nothing heavy runs); :func:`run_forward_backward` runs
:func:`forward_backward_at_depth` at each depth, which puts the measured class preservation next
to its predictions (the mean-field map for the ``eps`` channel, population dynamics for any
channel) in tidy tables; :func:`forward_backward_tables` stacks the depths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from ..data.channels import CHANNELS, noisy_leaf_likelihood
from ..data.rhm import RandomHierarchyModel
from ..errors import ParameterError, require_choice, require_in_range, require_int
from ..models import BP_ENGINES, NOISE_CONVENTION
from ..solvers import hierarchy as mf
from ..solvers.bp import belief_propagation, bp_batch_size, sample_posterior
from ..solvers.population import preservation_curve

#: independent population-dynamics runs behind each predicted point
POPULATION_REPEATS = 2
#: measured quantities of :func:`forward_backward` kept per noise level by the experiment
MEASURED_KEYS = ("unchanged", "true_value_belief", "upward_true_value_belief", "class_posterior",
                 "class_posterior_se", "class_preservation", "susceptibility")


def forward_backward(model: RandomHierarchyModel, channel: str, noise: float, n_samples: int,
                     rng: np.random.Generator, engine: str = "numba", device: str = "cpu",
                     chunk: int = 2000) -> dict:
    """One forward-backward experiment at one noise level; per-level arrays of length ``L + 1``.

    Keys: ``unchanged`` (``P(x0_hat_l = x0_l)`` per level), ``true_value_belief``
    (``E[marginal_l(x0_l)]``), ``upward_true_value_belief`` (``E[up_l(x0_l)]``, the subtree-only
    belief the mean-field map iterates), ``class_preservation`` (``unchanged[0]``),
    ``class_posterior`` (``true_value_belief[0]``, the same quantity with less variance),
    ``susceptibility`` (``Var(#changed leaves) / s**L``; measured only: the toolkit has no
    prediction for it), and standard errors ``*_se``.

    Arguments are checked before any tree is drawn; ``chunk`` is lowered so that one batch of BP
    stays within :data:`diffphase.solvers.bp.MAX_BP_BYTES`, and a tree that alone exceeds it is a
    :class:`~diffphase.errors.ParameterError`.
    """
    n_samples = require_int("n_samples", n_samples, 1)
    require_choice("channel", channel, CHANNELS)
    noise = require_in_range("noise", noise, 0.0, 1.0)
    chunk = bp_batch_size(model.v, model.n_c, model.s, model.L, require_int("chunk", chunk, 1))
    unchanged, belief, upward, changed_leaves, guarded = [], [], [], [], 0
    for start in range(0, n_samples, chunk):
        size = min(chunk, n_samples - start)
        levels = model.sample_trees(size, rng)
        nu = noisy_leaf_likelihood(channel, levels[-1], noise, model.v, rng)
        result = belief_propagation(model.rules, nu, engine, device)
        guarded += result.n_guarded
        sampled = sample_posterior(model.rules, result.up, rng, engine, device)
        unchanged.append(np.stack([(sampled[lv] == levels[lv]).mean(axis=1)
                                   for lv in range(model.L + 1)], axis=1))
        belief.append(np.stack([
            np.take_along_axis(result.marginals[lv], levels[lv][..., None], axis=-1)[..., 0]
            .mean(axis=1) for lv in range(model.L + 1)], axis=1))
        upward.append(np.stack([
            np.take_along_axis(result.up[lv], levels[lv][..., None], axis=-1)[..., 0]
            .mean(axis=1) for lv in range(model.L + 1)], axis=1))
        changed_leaves.append((sampled[-1] != levels[-1]).sum(axis=1))
    unchanged, belief = np.concatenate(unchanged), np.concatenate(belief)
    upward = np.concatenate(upward)
    changed = np.concatenate(changed_leaves).astype(float)
    root_se = math.sqrt(n_samples)
    return {
        "noise": float(noise), "channel": channel, "n_samples": n_samples,
        "unchanged": unchanged.mean(axis=0), "unchanged_se": unchanged.std(axis=0) / root_se,
        "true_value_belief": belief.mean(axis=0),
        "true_value_belief_se": belief.std(axis=0) / root_se,
        "upward_true_value_belief": upward.mean(axis=0),
        "upward_true_value_belief_se": upward.std(axis=0) / root_se,
        "class_preservation": float(unchanged[:, 0].mean()),
        "class_posterior": float(belief[:, 0].mean()),
        "class_posterior_se": float(belief[:, 0].std() / root_se),
        "susceptibility": float(changed.var() / model.n_leaves),
        "n_guarded": guarded,
    }


def forward_backward_curves(model: RandomHierarchyModel, channel: str, noises, n_samples: int,
                            rng: np.random.Generator, progress=None, **kwargs) -> list[dict]:
    """:func:`forward_backward` on a list of noise levels (``progress`` wraps the iterable)."""
    noises = list(np.atleast_1d(noises))
    iterable = progress(noises) if progress else noises
    return [forward_backward(model, channel, float(x), n_samples, rng, **kwargs) for x in iterable]


def transition_width(noise: np.ndarray, curve: np.ndarray) -> float:
    """Width of a decreasing transition: the noise span over which ``curve`` falls from 75% to
    25% of its total drop (linear interpolation; NaN when the curve does not drop)."""
    noise, curve = np.asarray(noise, float), np.asarray(curve, float)
    drop = curve[0] - curve[-1]
    if not drop > 0:
        return math.nan
    g = (curve - curve[-1]) / drop
    g = np.minimum.accumulate(g)  # monotone envelope against sampling noise
    upper = float(np.interp(-0.75, -g, noise))
    lower = float(np.interp(-0.25, -g, noise))
    return lower - upper


def collapse_spread(scaled: list[np.ndarray], curves: list[np.ndarray], grid: np.ndarray) -> float:
    """Largest difference between curves interpolated on a common grid of the scaling variable."""
    values = np.array([np.interp(grid, x, y) for x, y in zip(scaled, curves, strict=True)])
    return float(np.max(values.max(axis=0) - values.min(axis=0)))




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
