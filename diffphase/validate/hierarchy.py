"""Forward-backward experiments on RHM data and the registered hierarchy checks (THEORY C).

Contract: :func:`forward_backward` runs ``x0 -> x_noisy -> x0_hat ~ p(x0 | x_noisy)`` with exact
BP (:mod:`diffphase.validate.bp`) on ``n_samples`` trees and returns, per level (0 the class,
``L`` the leaves): the probability that a node's value is unchanged, the mean posterior marginal
on the true value, the class-preservation probability and the susceptibility (variance over
samples of the number of changed leaves, divided by ``d = s**L``).

Checks (``diffphase validate --model hierarchy``):

1. ``bp-exact``: BP marginals equal brute-force enumeration; clean data give a delta on the class;
   fully noised data give the uniform prior.
2. ``bp-vs-mean-field`` (paper's mean-field theory): BP with the ``eps``-process versus the
   mean-field map, per depth, for ``(v, m, s) = (32, 8, 2)`` and ``(16, 16, 3)``.
3. ``population-vs-bp``: population dynamics versus BP for masking, uniform and Gaussian noise.
4. ``sharp-class``: the collapse of finite-depth mean-field curves against
   ``(eps - eps*) * lambda^L``; ``level-widths``: per-level transition widths of the BP subtree
   beliefs versus the mean-field map, and the class sharper than low levels;
   ``unchanged-widths`` (paper's picture): widths of the per-level unchanged probability of
   posterior samples versus the mean-field prediction.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import require_int
from ..solvers import hierarchy as mf
from ..solvers import population as popdyn
from .bp import belief_propagation, sample_posterior
from .registry import Comparison, register_check
from .rhm import RandomHierarchyModel, noisy_leaf_likelihood

MODEL = "hierarchy"


def forward_backward(model: RandomHierarchyModel, channel: str, noise: float, n_samples: int,
                     rng: np.random.Generator, engine: str = "numba", device: str = "cpu",
                     chunk: int = 2000) -> dict:
    """One forward-backward experiment at one noise level; per-level arrays of length ``L + 1``.

    Keys: ``unchanged`` (``P(x0_hat_l = x0_l)`` per level), ``true_value_belief``
    (``E[marginal_l(x0_l)]``), ``upward_true_value_belief`` (``E[up_l(x0_l)]``, the subtree-only
    belief the mean-field map iterates), ``class_preservation`` (``unchanged[0]``),
    ``class_posterior`` (``true_value_belief[0]``, the same quantity with less variance),
    ``susceptibility`` (``Var(#changed leaves) / s**L``), and standard errors ``*_se``.
    """
    n_samples = require_int("n_samples", n_samples, 1)
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


# ----------------------------------------------------------------------------- checks
@register_check(MODEL, "bp-exact", tiers=("quick", "full"))
def check_bp_exact(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """BP marginals vs brute-force enumeration; clean -> delta on the class; eps=1 -> prior."""
    model = RandomHierarchyModel(4, 2, 2, 3, n_c=3, seed=int(rng.integers(1 << 30)))
    leaves, classes = model.enumerate_data()
    nu = rng.random((4, model.n_leaves, model.v)) ** 2
    result = belief_propagation(model.rules, nu)
    weight = np.prod(nu[:, np.arange(model.n_leaves), leaves], axis=-1)  # (batch, n_data)
    weight /= weight.sum(axis=1, keepdims=True)
    brute_class = np.stack([np.bincount(classes, w, minlength=model.n_c) for w in weight])
    brute_leaf = np.einsum("bn,nia->bia", weight, np.eye(model.v)[leaves])
    err = max(np.abs(brute_class - result.marginals[0][:, 0]).max(),
              np.abs(brute_leaf - result.marginals[-1]).max())
    trees = model.sample_trees(50, rng)
    clean = belief_propagation(model.rules, noisy_leaf_likelihood("eps", trees[-1], 0.0,
                                                                  model.v, rng))
    on_class = np.take_along_axis(clean.marginals[0][:, 0], trees[0], axis=1)
    full = belief_propagation(model.rules, noisy_leaf_likelihood("eps", trees[-1], 1.0,
                                                                 model.v, rng))
    return [
        Comparison("max |BP - enumeration| marginal (v=4,m=2,s=2,L=3,n_c=3)", 0.0, err, 1e-12),
        Comparison("min class marginal on truth, clean leaves", 1.0, float(on_class.min()),
                   1e-12),
        Comparison("max |class marginal - 1/n_c|, eps = 1", 0.0,
                   float(np.abs(full.marginals[0] - 1.0 / model.n_c).max()), 1e-12),
    ]


def _bp_vs_mean_field(v, m, s, depths, n_samples, rng, offsets=(-0.1, 0.0, 0.1)):
    crit = mf.critical_point(v, m, s)
    eps_values = np.clip(crit["eps_star"] + np.array(offsets), 0.0, 1.0)
    out = []
    for depth in depths:
        model = RandomHierarchyModel(v, m, s, depth, seed=int(rng.integers(1 << 30)))
        theory = mf.mean_field_levels(eps_values, v, m, s, depth)[:, 0]
        measured, ses = [], []
        for x in eps_values:
            fb = forward_backward(model, "eps", float(x), n_samples, rng)
            measured.append(fb["class_posterior"])
            ses.append(fb["class_posterior_se"])
        diff = np.abs(np.array(measured) - theory)
        worst = int(np.argmax(diff))
        out.append(Comparison(
            f"class preservation (v={v},m={m},s={s},L={depth}) at eps={eps_values[worst]:.3f}",
            float(theory[worst]), float(measured[worst]), 0.03 + 4 * ses[worst],
            details={"eps": eps_values, "mean_field": theory, "bp": measured, "bp_se": ses,
                     "eps_star": crit["eps_star"], "n_samples": n_samples}))
    return out


@register_check(MODEL, "bp-vs-mean-field", tiers=("quick", "full"), kind="paper")
def check_bp_vs_mean_field(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """BP (eps-process) vs the mean-field map per depth; tolerance 0.03 + 4 standard errors."""
    if tier == "quick":
        return _bp_vs_mean_field(32, 8, 2, (2, 4), 300, rng)
    return (_bp_vs_mean_field(32, 8, 2, range(2, 9), 1500, rng)
            + _bp_vs_mean_field(16, 16, 3, range(2, 9), 300, rng))


@register_check(MODEL, "population-vs-bp", tiers=("quick", "full"))
def check_population_vs_bp(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """Population dynamics vs BP class preservation for masking, uniform and Gaussian noise."""
    quick = tier == "quick"
    v, m, s, depth = (8, 2, 2, 3) if quick else (16, 4, 2, 5)
    n_samples, population = (800, 8000) if quick else (4000, 40000)
    model = RandomHierarchyModel(v, m, s, depth, seed=int(rng.integers(1 << 30)))
    out = []
    for channel in ("mask", "uniform", "gaussian"):
        half = popdyn.half_point(model, channel, population=population // 2, repeats=1,
                                 xtol=0.02, grid=6)
        noise = half.noise if half.converged else 0.5
        pd = popdyn.class_preservation(model, channel, noise, population, repeats=3,
                                       seed=int(rng.integers(1 << 30)))
        fb = forward_backward(model, channel, noise, n_samples, rng)
        tol = 4 * math.hypot(pd.standard_error[0], fb["class_posterior_se"]) + 0.005
        out.append(Comparison(f"class preservation, {channel} noise {noise:.3f} "
                              f"(v={v},m={m},s={s},L={depth})", pd.class_preservation,
                              fb["class_posterior"], tol,
                              details={"per_level_population": pd.true_value_belief,
                                       "per_level_bp": fb["true_value_belief"]}))
    return out


@register_check(MODEL, "sharp-class", tiers=("quick", "full"))
def check_sharp_class(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """Finite-depth mean-field curves collapse against ``(eps - eps*) * lambda^L``."""
    v, m, s = 32, 8, 2
    crit = mf.critical_point(v, m, s)
    eps_star, lam = crit["eps_star"], crit["slope"]
    # collapse of the mean-field curves: spread on a common grid of (eps - eps*) lambda^L
    depths = (8, 10, 12)
    grid = np.linspace(-1.0, 0.3, 41)
    scaled, curves = [], []
    for depth in depths:
        eps = np.clip(eps_star + grid * lam ** (-depth), 0, 1)
        scaled.append(mf.collapse_variable(eps, eps_star, lam, depth))
        curves.append(mf.mean_field_levels(eps, v, m, s, depth)[:, 0])
    spread = collapse_spread(scaled, curves, grid)
    return [Comparison(f"mean-field collapse spread vs (eps-eps*)lambda^L, L={depths}", 0.0,
                       spread, 0.02, details={"eps_star": eps_star, "slope": lam})]


def _level_widths(tier: str, rng: np.random.Generator):
    v, m, s = 32, 8, 2
    depth = 5 if tier == "quick" else 7
    n_samples = 200 if tier == "quick" else 1000
    eps = np.linspace(0.3, 1.0, 15 if tier == "quick" else 29)
    model = RandomHierarchyModel(v, m, s, depth, seed=int(rng.integers(1 << 30)))
    runs = [forward_backward(model, "eps", float(x), n_samples, rng) for x in eps]
    mean_field = mf.mean_field_levels(eps, v, m, s, depth)
    widths = {key: [transition_width(eps, np.array([r[key][lv] for r in runs]))
                    for lv in range(depth + 1)]
              for key in ("upward_true_value_belief", "unchanged")}
    widths["mean_field"] = [transition_width(eps, mean_field[:, lv]) for lv in range(depth + 1)]
    return depth, eps, widths


@register_check(MODEL, "level-widths", tiers=("quick", "full"))
def check_level_widths(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """Width of the transition per level: BP subtree beliefs vs the mean-field map."""
    depth, eps, widths = _level_widths(tier, rng)
    up, mfw = widths["upward_true_value_belief"], widths["mean_field"]
    out = [Comparison(f"width(class)/width(level {depth - 1}), BP upward belief (L={depth})",
                      mfw[0] / mfw[depth - 1], up[0] / up[depth - 1],
                      0.1 * mfw[0] / mfw[depth - 1] + 0.03,
                      details={"bp_upward_widths": up, "mean_field_widths": mfw, "eps": eps})]
    out.append(Comparison(f"class sharper than level {depth - 1}: BP unchanged-probability "
                          "width ratio < 1", 1.0,
                          float(widths["unchanged"][0] / widths["unchanged"][depth - 1] < 1.0),
                          0.0, details={"bp_unchanged_widths": widths["unchanged"]}))
    return out


@register_check(MODEL, "unchanged-widths", tiers=("full",), kind="paper")
def check_unchanged_widths(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """Paper's picture (low levels smooth, class sharp) measured on the posterior samples: the
    width ratio of the per-level unchanged probability vs the mean-field subtree prediction."""
    depth, eps, widths = _level_widths(tier, rng)
    un, mfw = widths["unchanged"], widths["mean_field"]
    return [Comparison(f"width(class)/width(level {lv}), P(unchanged) vs mean field (L={depth})",
                       mfw[0] / mfw[lv], un[0] / un[lv], 0.1 * mfw[0] / mfw[lv] + 0.03,
                       details={"bp_unchanged_widths": un, "mean_field_widths": mfw})
            for lv in (depth - 1, depth // 2)]
