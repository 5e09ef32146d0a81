"""Registered checks of the hierarchy model (THEORY C).

The experiments are :func:`diffphase.simulate.hierarchy.forward_backward` (exact BP on sampled
trees) and population dynamics (:mod:`diffphase.solvers.population`).

Checks (``diffphase validate --model hierarchy``):

1. ``bp-exact``: BP marginals equal brute-force enumeration; clean data give a delta on the class;
   fully noised data give the uniform prior.
2. ``bp-vs-mean-field`` (paper kind): BP with the ``eps``-process versus the mean-field map,
   per depth, for ``(v, m, s) = (32, 8, 2)`` and ``(16, 16, 3)``. The map replaces every child
   message by a symmetric one (belief ``b`` on the truth, the rest spread evenly); BP on one
   instance sees how the other rules overlap the true tuple, so the map is an approximation
   even for the ``eps``-process, and how well it describes BP is the paper's claim. The map's
   implementation is tested against the symbolic expression and mpmath, not here.
3. ``population-vs-bp``: population dynamics versus BP for masking, uniform and Gaussian noise
   (exact for the instance as the population grows: a toolkit check).
4. ``sharp-class``: the collapse of finite-depth mean-field curves against
   ``(eps - eps*) * lambda^L`` (the linearization of the map; toolkit); ``level-widths``: the
   per-level BP subtree beliefs and their transition widths versus population dynamics with the
   ``eps``-process (toolkit), and the class sharper than low levels; ``bp-collapse`` (paper):
   BP curves at several depths against the same scaling variable; ``unchanged-widths`` (paper):
   width ratios of BP beliefs and of the unchanged probability of posterior samples versus the
   mean-field map, and the susceptibility peak versus ``eps*``.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.channels import noisy_leaf_likelihood
from ..data.rhm import RandomHierarchyModel
from ..simulate.hierarchy import collapse_spread, forward_backward, transition_width
from ..solvers import hierarchy as mf
from ..solvers import population as popdyn
from ..solvers.bp import belief_propagation
from .registry import Comparison, register_check

MODEL = "hierarchy"


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


@register_check(MODEL, "bp-collapse", tiers=("full",), kind="paper")
def check_bp_collapse(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """BP class preservation (eps-process, (32, 8, 2), fresh rules per depth) at ``L = 4, 6, 8``
    against the mean-field scaling variable ``(eps - eps*) lambda^L``: the spread between depths
    versus the mean-field curves' own spread at the same points (corrections to scaling).
    Tolerance: 0.03 + 4 sqrt(2) standard errors."""
    v, m, s = 32, 8, 2
    crit = mf.critical_point(v, m, s)
    eps_star, lam = crit["eps_star"], crit["slope"]
    x = np.linspace(-1.0, 0.3, 8)
    depths, n_samples = (4, 6, 8), 1500
    measured, theory, ses = [], [], []
    for depth in depths:
        eps = np.clip(eps_star + x * lam ** (-depth), 0.0, 1.0)
        model = RandomHierarchyModel(v, m, s, depth, seed=int(rng.integers(1 << 30)))
        runs = [forward_backward(model, "eps", float(e), n_samples, rng) for e in eps]
        measured.append([r["class_posterior"] for r in runs])
        ses.append([r["class_posterior_se"] for r in runs])
        theory.append(mf.mean_field_levels(eps, v, m, s, depth)[:, 0])
    measured, theory = np.array(measured), np.array(theory)
    spread_bp = float(np.max(measured.max(axis=0) - measured.min(axis=0)))
    spread_mf = float(np.max(theory.max(axis=0) - theory.min(axis=0)))
    return [Comparison(f"collapse spread of BP class preservation vs (eps-eps*)lambda^L, "
                       f"L={depths}", spread_mf, spread_bp,
                       0.03 + 4 * math.sqrt(2) * float(np.max(ses)),
                       details={"x": x, "bp": measured, "mean_field": theory,
                                "eps_star": eps_star, "slope": lam})]


def _level_runs(tier: str, rng: np.random.Generator):
    """BP forward-backward runs with the eps-process on a grid of eps, (32, 8, 2)."""
    v, m, s = 32, 8, 2
    depth = 5 if tier == "quick" else 7
    n_samples = 200 if tier == "quick" else 1000
    eps = np.linspace(0.3, 1.0, 15 if tier == "quick" else 29)
    model = RandomHierarchyModel(v, m, s, depth, seed=int(rng.integers(1 << 30)))
    runs = [forward_backward(model, "eps", float(x), n_samples, rng) for x in eps]
    return model, eps, runs


def _widths(eps: np.ndarray, curves: np.ndarray) -> list[float]:
    """Transition width of every level's curve; ``curves`` has shape ``(len(eps), L + 1)``."""
    return [transition_width(eps, curves[:, lv]) for lv in range(curves.shape[1])]


@register_check(MODEL, "level-widths", tiers=("quick", "full"))
def check_level_widths(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """Per-level transition of the BP subtree (upward) belief vs population dynamics (exact for
    the instance as the population grows), and the class sharper than the level above the leaves.

    Tolerances: curves, 4 combined standard errors + 0.005 at the worst point; width ratio, 10%
    + 0.03 (the widths come from interpolated noisy curves on a grid of spacing 0.025-0.05).
    """
    model, eps, runs = _level_runs(tier, rng)
    depth = model.L
    population = 8000 if tier == "quick" else 20000
    seed = int(rng.integers(1 << 30))
    pd = [popdyn.class_preservation(model, "eps", float(x), population, 2, seed) for x in eps]
    pd_curves = np.array([r.true_value_belief for r in pd])
    pd_se = np.array([r.standard_error for r in pd])
    bp_curves = np.array([r["upward_true_value_belief"] for r in runs])
    bp_se = np.array([r["upward_true_value_belief_se"] for r in runs])
    diff = np.abs(bp_curves - pd_curves)
    allowed = 4 * np.hypot(bp_se, pd_se) + 0.005
    worst = np.unravel_index(np.argmax(diff / allowed), diff.shape)
    up, pdw = _widths(eps, bp_curves), _widths(eps, pd_curves)
    unchanged = _widths(eps, np.array([r["unchanged"] for r in runs]))
    ratio_pd = pdw[0] / pdw[depth - 1]
    return [
        Comparison(f"per-level upward true-value belief, worst point eps={eps[worst[0]]:.3f} "
                   f"level {worst[1]} (v=32,m=8,s=2,L={depth})", float(pd_curves[worst]),
                   float(bp_curves[worst]), float(allowed[worst]),
                   details={"eps": eps, "population_dynamics": pd_curves, "bp": bp_curves}),
        Comparison(f"width(class)/width(level {depth - 1}), BP upward belief vs population "
                   f"dynamics (L={depth})", ratio_pd, up[0] / up[depth - 1],
                   0.1 * ratio_pd + 0.03,
                   details={"bp_upward_widths": up, "population_dynamics_widths": pdw}),
        Comparison(f"class sharper than level {depth - 1}: BP unchanged-probability width "
                   "ratio < 1", 1.0, float(unchanged[0] / unchanged[depth - 1] < 1.0), 0.0,
                   details={"bp_unchanged_widths": unchanged}),
    ]


@register_check(MODEL, "unchanged-widths", tiers=("full",), kind="paper")
def check_unchanged_widths(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """The mean-field picture (low levels smooth, class sharp) against BP: width ratios of the
    subtree belief and of the per-level unchanged probability of posterior samples vs the
    mean-field map, and the peak of the susceptibility vs ``eps*``.

    Tolerances: width ratios 10% + 0.03; the susceptibility peak, the mean-field width of the
    class transition at this depth plus one grid step (the scale on which ``eps*`` is resolved
    at finite depth).
    """
    model, eps, runs = _level_runs(tier, rng)
    depth = model.L
    mean_field = mf.mean_field_levels(eps, model.v, model.m, model.s, depth)
    mfw = _widths(eps, mean_field)
    up = _widths(eps, np.array([r["upward_true_value_belief"] for r in runs]))
    un = _widths(eps, np.array([r["unchanged"] for r in runs]))
    out = [Comparison(f"width(class)/width(level {depth - 1}), BP upward belief vs mean field "
                      f"(L={depth})", mfw[0] / mfw[depth - 1], up[0] / up[depth - 1],
                      0.1 * mfw[0] / mfw[depth - 1] + 0.03,
                      details={"bp_upward_widths": up, "mean_field_widths": mfw})]
    out += [Comparison(f"width(class)/width(level {lv}), P(unchanged) vs mean field (L={depth})",
                       mfw[0] / mfw[lv], un[0] / un[lv], 0.1 * mfw[0] / mfw[lv] + 0.03,
                       details={"bp_unchanged_widths": un, "mean_field_widths": mfw})
            for lv in (depth - 1, depth // 2)]
    chi = np.array([r["susceptibility"] for r in runs])
    eps_star = mf.critical_point(model.v, model.m, model.s)["eps_star"]
    out.append(Comparison(f"susceptibility peak (Var #changed leaves / d) vs eps* (L={depth})",
                          eps_star, float(eps[np.argmax(chi)]), mfw[0] + (eps[1] - eps[0]),
                          details={"eps": eps, "susceptibility": chi}))
    return out
