"""Population dynamics for the law of BP messages on RHM trees (THEORY C, "Beyond the paper").

Contract: :func:`class_preservation` represents, at every level, the law of the upward message
of a node *given its true value* by a population of ``population`` pairs
``(true value, message)``, and recurses from the leaves to the root (the cavity method on a tree):

1. leaves: true values balanced over the ``v`` symbols, messages drawn from the noise channel
   (:func:`diffphase.data.channels.noisy_leaf_likelihood`);
2. one level up, for each new member: a true value ``a`` (balanced), a rule ``j`` uniform, and
   for each child ``k`` a random member of the lower population whose true value is
   ``R[a, j, k]``; the member's message is the BP upward update of those ``s`` messages
   (the compiled kernel of :mod:`diffphase.solvers.bp`).

Given its value, a node's subtree is independent of the rest of the tree, so with the rules of
the actual instance (``rules="quenched"``, the default) this recursion is exact as the
population grows; ``rules="annealed"`` draws fresh rules at every level and repetition (the
ensemble-typical law). The class-preservation probability of a forward-backward experiment is
``E[posterior(true class)]``, the population mean of the root message at the true class; its
standard error comes from ``repeats`` independent populations; with a ``tolerance`` the
population is doubled until that error is small enough (convergence control).
:func:`half_point` finds the noise where the class is preserved with probability one half by
bisection with common random numbers (the same seeds at every noise, so the estimate is a smooth
function of the noise), for one instance of the rules. :func:`half_point_estimate` is the
ensemble's half point: the mean of ``runs`` independent half points, each with its own draw of
the rules and its own populations, with the standard error from their spread (the rule-to-rule
variation, about 0.007 at ``(16, 4, 2)``, ``L = 5``, is larger than one run's population noise,
so an error from repeated populations of one instance would understate the spread between
seeds).

Arguments (model, channel, noise, sizes, seed) are checked before any population is drawn
(:class:`~diffphase.errors.ParameterError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.channels import noisy_leaf_likelihood
from ..data.rhm import RandomHierarchyModel
from ..errors import ParameterError, require_array, require_choice, require_in_range, require_int
from ..models import CHANNELS, RULE_MODES
from .bp import upward_level

#: guard: population * n_par * v floats per level
MAX_POPULATION_FLOATS = 2**27


@dataclass
class PopulationResult:
    """Per-level mean belief on the true value (level 0 the class) and its standard error.

    ``population`` is the size actually used (after doubling when a ``tolerance`` was asked
    for); ``converged`` says whether the class-level standard error met the tolerance (True when
    none was asked for).
    """

    noise: float
    true_value_belief: np.ndarray  # (L + 1,)
    standard_error: np.ndarray  # (L + 1,)
    population: int
    repeats: int
    n_guarded: int
    converged: bool = True
    tolerance: float | None = None

    @property
    def class_preservation(self) -> float:
        return float(self.true_value_belief[0])


def _check(channel, noise, population, repeats, rules_mode, model, max_population, seed=0):
    if not isinstance(model, RandomHierarchyModel):
        raise ParameterError("model", type(model).__name__, "a RandomHierarchyModel")
    require_int("seed", seed, 0)
    require_choice("channel", channel, CHANNELS)
    require_in_range("noise", noise, 0.0, 1.0)
    population = require_int("population", population, 100)
    repeats = require_int("repeats", repeats, 1)
    require_choice("rules", rules_mode, RULE_MODES)
    max_population = require_int("max_population", max_population, population)
    if max_population * model.v * max(model.v, model.n_c) > MAX_POPULATION_FLOATS:
        raise ParameterError("population", max_population,
                             f"population * v * max(v, n_c) <= {MAX_POPULATION_FLOATS}")
    return population, repeats, max_population


def _balanced_values(count: int, n_values: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(count) % n_values)


def _level_mean(values, on_truth, law):
    """Mean over the instance's value law of the per-value mean belief, and its standard error.

    The population is balanced over values; a level of a real tree is not (``law``), so the
    per-value conditional means are reweighted: ``sum_a law(a) E[mu(a) | value a]``.
    """
    counts = np.bincount(values, minlength=law.size)
    sums = np.bincount(values, weights=on_truth, minlength=law.size)
    squares = np.bincount(values, weights=on_truth**2, minlength=law.size)
    safe = np.maximum(counts, 1)
    means = sums / safe
    variances = np.maximum(squares / safe - means**2, 0.0)
    return float(law @ means), float(math.sqrt(np.sum(law**2 * variances / safe)))


def _one_population(model: RandomHierarchyModel, rules: list[np.ndarray], law, channel: str,
                    noise: float, population: int, rng: np.random.Generator):
    v, s = model.v, model.s
    values = _balanced_values(population, v, rng)
    messages = noisy_leaf_likelihood(channel, values, noise, v, rng)
    messages /= messages.sum(axis=1, keepdims=True)
    stats = [_level_mean(values, messages[np.arange(population), values], law[-1])]
    guarded = 0
    for level in range(model.L - 1, -1, -1):
        r = rules[level]
        n_par = r.shape[0]
        order = np.argsort(values, kind="stable")
        counts = np.bincount(values, minlength=v)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        parents = _balanced_values(population, n_par, rng)
        chosen = r[parents, rng.integers(0, model.m, size=population)]  # (N, s)
        picks = offsets[chosen] + (rng.random(chosen.shape) * counts[chosen]).astype(np.int64)
        children = messages[order[picks]].reshape(population, s, v)
        out = np.empty((population, 1, n_par))
        guarded += upward_level(np.ascontiguousarray(children), r, out)
        values, messages = parents, out[:, 0, :]
        stats.insert(0, _level_mean(values, messages[np.arange(population), values], law[level]))
    stats = np.array(stats)
    return stats[:, 0], stats[:, 1], guarded


def _estimate(model, channel, noise, population, repeats, seed, rules):
    runs, within, guarded = [], [], 0
    for rep in range(repeats):
        rng = np.random.default_rng([seed, rep, 0x504F50])
        instance = model if rules == "quenched" else RandomHierarchyModel(
            model.v, model.m, model.s, model.L, model.n_c, seed=seed * 1000 + rep + 1)
        beliefs, errors, g = _one_population(model, instance.rules,
                                             instance.level_value_distribution(), channel,
                                             noise, population, rng)
        runs.append(beliefs)
        within.append(errors)
        guarded += g
    runs = np.array(runs)
    if repeats > 1:
        stderr = runs.std(axis=0, ddof=1) / math.sqrt(repeats)
    else:
        stderr = within[0]
    return runs.mean(axis=0), stderr, guarded


def class_preservation(model: RandomHierarchyModel, channel: str, noise: float,
                       population: int = 20000, repeats: int = 2, seed: int = 0,
                       rules: str = "quenched", tolerance: float | None = None,
                       max_population: int | None = None) -> PopulationResult:
    """Population-dynamics estimate of the per-level true-value belief at one noise level.

    ``E[mu_l(x_l)]`` at level ``l`` (averaged over the instance's law of values at that level);
    at the root it is the probability that a forward-backward experiment preserves the class.
    The standard error is the spread across ``repeats`` independent populations (the
    within-population estimate when ``repeats = 1``).

    Convergence control: with a ``tolerance``, the population is doubled (up to
    ``max_population``, default ``16 * population``) until the class-level standard error is at
    most ``tolerance``; ``converged`` records whether it got there.
    """
    max_population = 16 * population if max_population is None and tolerance is not None \
        else (population if max_population is None else max_population)
    population, repeats, max_population = _check(channel, noise, population, repeats, rules,
                                                 model, max_population, seed)
    if tolerance is not None:
        tolerance = require_in_range("tolerance", tolerance, 0.0, 1.0, closed=(False, True))
    mean, stderr, guarded = _estimate(model, channel, noise, population, repeats, seed, rules)
    while tolerance is not None and stderr[0] > tolerance and 2 * population <= max_population:
        population *= 2
        mean, stderr, g = _estimate(model, channel, noise, population, repeats, seed, rules)
        guarded += g
    converged = tolerance is None or bool(stderr[0] <= tolerance)
    return PopulationResult(float(noise), mean, stderr, population, repeats, guarded,
                            converged, tolerance)


def preservation_curve(model: RandomHierarchyModel, channel: str, noises,
                       population: int = 20000, repeats: int = 2, seed: int = 0,
                       rules: str = "quenched",
                       tolerance: float | None = None) -> list[PopulationResult]:
    """:func:`class_preservation` on a list of noise levels in ``[0, 1]`` (common random numbers;
    with a ``tolerance``, each noise level doubles its own population until converged)."""
    noises = np.atleast_1d(require_array("noises", noises, low=0, high=1)).ravel()
    return [class_preservation(model, channel, float(x), population, repeats, seed, rules,
                               tolerance) for x in noises]


@dataclass
class HalfPoint:
    """Noise at which the class is preserved with probability ``target``."""

    noise: float
    converged: bool
    iterations: int
    bracket: tuple[float, float]


def half_point(model: RandomHierarchyModel, channel: str, target: float = 0.5,
               population: int = 20000, repeats: int = 2, seed: int = 0, xtol: float = 2e-3,
               grid: int = 11, maxiter: int = 30, rules: str = "quenched") -> HalfPoint:
    """Smallest noise where population-dynamics class preservation crosses ``target``.

    A scan of ``grid`` noise levels in ``[0, 1]`` brackets the crossing, then bisection narrows
    the bracket to ``xtol``. ``converged`` is False (and ``noise`` NaN) when no grid point is
    below ``target`` (the class survives every noise) or the bisection runs out of iterations.
    """
    target = require_in_range("target", target, 0.0, 1.0, closed=(False, False))
    grid = require_int("grid", grid, 3)
    require_in_range("xtol", xtol, 0.0, 1.0, closed=(False, True))
    maxiter = require_int("maxiter", maxiter, 0)
    _check(channel, 0.0, population, repeats, rules, model, population, seed)

    def preserved(x: float) -> float:
        return class_preservation(model, channel, x, population, repeats, seed,
                                  rules).class_preservation

    xs = np.linspace(0.0, 1.0, grid)
    lo = hi = None
    for a, b_ in zip(xs[:-1], xs[1:], strict=True):
        if preserved(b_) < target:
            lo, hi = float(a), float(b_)
            break
    if lo is None:
        return HalfPoint(math.nan, False, 0, (math.nan, math.nan))
    it = 0
    while hi - lo > xtol and it < maxiter:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if preserved(mid) >= target else (lo, mid)
        it += 1
    converged = hi - lo <= xtol
    return HalfPoint(0.5 * (lo + hi) if converged else math.nan, converged, it, (lo, hi))


@dataclass
class HalfPointEstimate:
    """The ensemble half point: ``noise`` (mean of the runs that found a crossing), its
    ``standard_error`` (see :func:`half_point_estimate`), the ``spread`` of one run (sample standard
    deviation), the per-run half points ``runs`` (NaN where a run found none), and
    ``converged`` (every run found its crossing to ``xtol``)."""

    noise: float
    standard_error: float
    spread: float
    runs: np.ndarray
    converged: bool
    population: int
    xtol: float

    @property
    def n_failed(self) -> int:
        return int(np.sum(~np.isfinite(self.runs)))


def half_point_estimate(v: int, m: int, s: int, depth: int, n_c: int | None, channel: str,
                        runs: int = 8, population: int = 20000, seed: int = 0,
                        target: float = 0.5, xtol: float = 2e-3,
                        grid: int = 11) -> HalfPointEstimate:
    """Half point of the rule ensemble at ``(v, m, s, depth, n_c)``: ``runs >= 2`` independent
    :func:`half_point` runs (one population each), run ``i`` with the rules and populations of
    the ``i``-th child of ``numpy.random.SeedSequence(seed)``.

    The standard error is ``sqrt(spread^2 / runs + xtol^2 / 12)``: the spread of the runs
    covers the rule-to-rule variation and the population noise, so it matches the spread of the
    estimate between seeds; the second term is the bisection's resolution (each run's midpoint
    is within ``xtol / 2`` of its crossing, and runs ending in the same bracket share that
    error, so averaging does not remove it). NaN (``converged`` False) when no run finds a
    crossing.
    """
    runs = require_int("runs", runs, 2)
    seed = require_int("seed", seed, 0)
    children = np.random.SeedSequence(seed).spawn(runs)
    found = np.full(runs, np.nan)
    for i, child in enumerate(children):
        rule_seed, population_seed = (int(x) for x in child.generate_state(2) >> 1)
        model = RandomHierarchyModel(v, m, s, depth, n_c, seed=rule_seed)
        half = half_point(model, channel, target, population, 1, population_seed, xtol, grid)
        found[i] = half.noise
    ok = found[np.isfinite(found)]
    if ok.size == 0:
        return HalfPointEstimate(math.nan, math.nan, math.nan, found, False, population, xtol)
    spread = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
    stderr = math.sqrt(spread**2 / ok.size + xtol**2 / 12.0)
    return HalfPointEstimate(float(ok.mean()), stderr, spread, found, bool(ok.size == runs),
                             population, xtol)
