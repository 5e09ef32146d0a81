"""Forward-backward experiments on random-hierarchy-model data (THEORY C).

Contract: :func:`forward_backward` runs ``x0 -> x_noisy -> x0_hat ~ p(x0 | x_noisy)`` with exact
BP (:mod:`diffphase.solvers.bp`) on ``n_samples`` trees and returns, per level (0 the class,
``L`` the leaves): the probability that a node's value is unchanged, the mean posterior marginal
on the true value, the class-preservation probability and the susceptibility (variance over
samples of the number of changed leaves, divided by ``d = s**L``). :func:`transition_width` and
:func:`collapse_spread` read widths and the quality of a scaling collapse off such curves.
The experiment of ``diffphase simulate hierarchy`` built on it is in
:mod:`diffphase.studies.hierarchy`.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.channels import CHANNELS, noisy_leaf_likelihood
from ..data.rhm import RandomHierarchyModel
from ..errors import require_choice, require_in_range, require_int
from ..solvers.bp import belief_propagation, bp_batch_size, sample_posterior


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
