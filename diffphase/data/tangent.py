"""Tangent laws of data supported on a ``k``-dimensional subspace (THEORY D).

Contract: laws in ``R^k`` with the exact score of the noised law ``a y + sqrt(D) z``, called as
``score(x, a, D)`` like every score of the library (THEORY 0; an optional fourth argument ``xp``
is the array module of ``x``, numpy or cupy):
:class:`GaussianTangent` (diagonal variances), :class:`MixtureTangent` (isotropic Gaussian
components; zero component variance gives a finite set of points), :func:`points_tangent`
(uniform weights on given points), :func:`tree_tangent` (every string of a small random hierarchy
model, each with its probability ``1/n_data``, embedded in ``R^k`` by a fixed random map
``x = sum_p G[p, token_p]`` with ``G[p, a] ~ N(0, I_k / s^L)``) and :func:`mixture_example`.
:mod:`diffphase.simulate.sampler` embeds them in ``R^d`` and runs the DDPM sampler on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, as_float_array


def check_variances(variances, k: int | None = None) -> np.ndarray:
    """Tangent variances: finite and > 0 (and ``k`` of them when ``k`` is given)."""
    lam = as_float_array("variances", variances)
    if np.any(lam <= 0):
        raise ParameterError("variances", lam, "> 0 (tangent data variances)")
    if k is not None and lam.size != k:
        raise ParameterError("variances", lam, f"exactly k = {k} values")
    return lam


@dataclass
class GaussianTangent:
    """``y ~ N(0, diag(variances))`` in ``R^k``."""

    variances: np.ndarray

    def __post_init__(self) -> None:
        self.variances = check_variances(self.variances)

    @property
    def k(self) -> int:
        return self.variances.size

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, self.k)) * np.sqrt(self.variances)

    def score(self, x, a: float, D: float, xp=np):
        """``-x / (a^2 lam + D)``."""
        return -x / xp.asarray(a**2 * self.variances + D)


@dataclass
class MixtureTangent:
    """``y ~ sum_j w_j N(mu_j, s_j^2 I_k)``; ``s_j = 0`` allowed (point masses)."""

    means: np.ndarray
    component_variances: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        self.means = np.atleast_2d(np.asarray(self.means, dtype=float))
        m = self.means.shape[0]
        self.component_variances = np.broadcast_to(
            np.asarray(self.component_variances, dtype=float), (m,)).copy()
        self.weights = np.broadcast_to(np.asarray(self.weights, dtype=float), (m,)).copy()
        if np.any(self.component_variances < 0):
            raise ParameterError("component_variances", self.component_variances, ">= 0")
        if np.any(self.weights <= 0) or not np.all(np.isfinite(self.means)):
            raise ParameterError("weights", self.weights, "> 0 (with finite means)")
        self.weights = self.weights / self.weights.sum()

    @property
    def k(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        comp = rng.choice(self.weights.size, size=n, p=self.weights)
        noise = rng.standard_normal((n, self.k)) * np.sqrt(self.component_variances[comp])[:, None]
        return self.means[comp] + noise

    def score(self, x, a: float, D: float, xp=np):
        """``sum_j r_j(x) (a mu_j - x) / V_j``, ``V_j = a^2 s_j^2 + D``, ``r_j`` the posterior
        weights ``∝ w_j N(x; a mu_j, V_j I)`` (log-sum-exp)."""
        means = xp.asarray(a * self.means)
        var = xp.asarray(a**2 * self.component_variances + D)
        sq = (xp.sum(x**2, axis=1)[:, None] - 2 * x @ means.T + xp.sum(means**2, axis=1)[None, :])
        logits = (xp.log(xp.asarray(self.weights))[None, :] - 0.5 * sq / var[None, :]
                  - 0.5 * self.k * xp.log(var)[None, :])
        logits -= xp.max(logits, axis=1, keepdims=True)
        resp = xp.exp(logits)
        resp /= xp.sum(resp, axis=1, keepdims=True)
        weighted = resp / var[None, :]
        return weighted @ means - xp.sum(weighted, axis=1, keepdims=True) * x


def points_tangent(points) -> MixtureTangent:
    """Uniform law on the rows of ``points`` (the empirical distribution of a finite data set)."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return MixtureTangent(points, 0.0, np.ones(points.shape[0]))


def tree_tangent(k: int = 3, v: int = 3, m: int = 2, s: int = 2, L: int = 2, n_c: int = 2,
                 seed: int = 0) -> MixtureTangent:
    """Every string of a random hierarchy model (THEORY C), equally likely, embedded in ``R^k``.

    Each valid string has one derivation of probability ``(1/n_c) m^-(number of internal
    nodes)``, so the law is uniform over the ``n_data`` strings listed by ``enumerate_data``.
    Embedding: ``x = sum_p G[p, token_p]``, ``G[p, a] ~ N(0, I_k / s^L)`` from ``seed``.
    """
    from .rhm import RandomHierarchyModel

    model = RandomHierarchyModel(v=v, m=m, s=s, L=L, n_c=n_c, seed=seed)
    leaves, _ = model.enumerate_data()
    rng = np.random.default_rng([seed, 7919])
    n_leaves = leaves.shape[1]
    table = rng.standard_normal((n_leaves, v, k)) / np.sqrt(n_leaves)
    points = table[np.arange(n_leaves)[None, :], leaves].sum(axis=1)
    return points_tangent(points)


def mixture_example(k: int = 2) -> MixtureTangent:
    """Default non-Gaussian law: two well-separated isotropic components, unequal weights."""
    means = np.zeros((2, k))
    means[0, 0], means[1, 0] = 1.5, -1.5
    return MixtureTangent(means, np.array([0.3, 0.6]), np.array([0.4, 0.6]))


