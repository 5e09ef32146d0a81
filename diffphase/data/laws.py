"""Data samplers and their exact scores (THEORY A and B).

Contract
--------
Every sampler has ``sample(n, rng) -> (n, d)``. Samplers with a closed-form noised law also give
``score(x, a, D)`` (the exact score of ``p_t``, ``x = a y + sqrt(D) z``) and ``jacobian``:

* :class:`LinearGaussian`: ``y = F z``, ``z ~ N(0, diag(latent_variances))`` (full-rank Gaussian
  when ``F`` is square, a linear manifold of THEORY A otherwise). ``p_t = N(0, a^2 C + D I)``,
  ``s(x) = -(a^2 C + D I)^{-1} x``; normalized Jacobian eigenvalues ``-tau/(tau + lambda)`` and
  ``-1``. Written by hand in numpy (this layer comes before the compiled one); the eigenvalues
  ``-1/(a^2 lambda + D)`` and ``-tau/(tau + lambda)`` are compared with the symbolic
  :func:`~diffphase.theory.spectral.score_jacobian_eigenvalue` and
  :func:`~diffphase.theory.spectral.jacobian_eigenvalue` in ``tests/test_spectral_solver.py``.
* :class:`SphereNormalized`: any sampler's points divided by their norm (unit sphere); no
  closed-form score.
* :class:`TwoGaussianMixture`: ``y = +-m + sigma z`` with equal weights;
  ``s(x) = -x/G + (a m / G) tanh(a m.x / G)``, ``G = D + sigma^2 a^2`` (coefficients derived in
  :mod:`diffphase.theory.memorization`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, as_float_array, require_choice, require_int, require_positive
from ..models import SUBSPACES


def _check_x(x, dim: int) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x, dtype=float)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ParameterError("x", f"array of shape {np.shape(x)}", f"shape (M, {dim}) or ({dim},)")
    return arr, single


def _positive(name: str, value) -> float:
    return require_positive(name, float(value))


@dataclass(frozen=True)
class LinearGaussian:
    """Gaussian data ``y = F z`` on the span of ``F`` (d x m), latent variances per column."""

    F: np.ndarray
    latent_variances: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.F.shape[0])

    @property
    def intrinsic_dim(self) -> int:
        return int(self.F.shape[1])

    @classmethod
    def isotropic(cls, dim: int, variance: float = 1.0) -> LinearGaussian:
        dim = require_int("dim", dim, 1)
        return cls(np.eye(dim), np.full(dim, _positive("variance", variance)))

    @classmethod
    def axis_aligned(cls, stds) -> LinearGaussian:
        """Independent coordinates with standard deviations ``stds`` (the [LD] protocol)."""
        s = as_float_array("stds", stds)
        if np.any(s <= 0):
            raise ParameterError("stds", s, "each > 0")
        return cls(np.eye(s.size), s**2)

    @classmethod
    def manifold(cls, fractions, variances, dim: int, subspace: str = "random",
                 rng: np.random.Generator | None = None) -> LinearGaussian:
        """THEORY A: group ``k`` has ``round(alpha_k d)`` latent coordinates of variance
        ``sigma_k^2``; ``F`` iid ``N(0, 1/d)`` (``random``) or the first coordinate axes
        (``orthonormal``)."""
        dim = require_int("dim", dim, 1)
        require_choice("subspace", subspace, SUBSPACES)
        fr = as_float_array("fractions", fractions)
        var = as_float_array("variances", variances)
        if fr.size != var.size:
            raise ParameterError("fractions", fr, f"one per variance ({var.size} given)")
        if np.any(var <= 0):
            raise ParameterError("variances", var, "each > 0")
        counts = np.rint(fr * dim).astype(int)
        if np.any(counts < 1) or counts.sum() > dim:
            raise ParameterError("fractions", fr, f"round(fraction*dim) >= 1, total <= dim={dim}")
        latent = np.repeat(var, counts)
        m = latent.size
        if subspace == "orthonormal":
            F = np.eye(dim)[:, :m]
        else:
            rng = rng if rng is not None else np.random.default_rng()
            F = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(dim, m))
        return cls(F, latent)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = require_int("n", n, 1)
        z = rng.normal(size=(n, self.intrinsic_dim)) * np.sqrt(self.latent_variances)
        return z @ self.F.T

    def covariance(self) -> np.ndarray:
        return (self.F * self.latent_variances) @ self.F.T

    @functools.cached_property
    def _eig(self) -> tuple[np.ndarray, np.ndarray]:
        vals, vecs = np.linalg.eigh(self.covariance())
        return np.clip(vals, 0.0, None), vecs

    def covariance_eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues of ``C`` (zeros for the normal directions)."""
        return self._eig[0].copy()

    def score(self, x, a, D) -> np.ndarray:
        """Exact ``s(x) = -(a^2 C + D I)^{-1} x``."""
        arr, single = _check_x(x, self.dim)
        a, D = _positive("a", a), _positive("D", D)
        vals, vecs = self._eig
        out = -((arr @ vecs) / (a * a * vals + D)) @ vecs.T
        return out[0] if single else out

    def jacobian(self, x=None, a: float = 1.0, D: float = 1.0) -> np.ndarray:
        """``J = -(a^2 C + D I)^{-1}`` (independent of ``x``)."""
        a, D = _positive("a", a), _positive("D", D)
        vals, vecs = self._eig
        return -(vecs / (a * a * vals + D)) @ vecs.T

    def normalized_jacobian_eigenvalues(self, tau: float) -> np.ndarray:
        """Ascending eigenvalues of ``Jn``: ``-tau/(tau + lambda_i)``."""
        tau = _positive("tau", tau)
        return np.sort(-tau / (tau + self._eig[0]))


@dataclass(frozen=True)
class SphereNormalized:
    """Points of ``base`` divided by their Euclidean norm (the [LD] normalized protocol)."""

    base: object

    @property
    def dim(self) -> int:
        return self.base.dim

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        y = self.base.sample(n, rng)
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return y / np.where(norms > 0, norms, 1.0)


@functools.cache
def _mixture_coefficients():
    import sympy as sp

    from ..theory import memorization as theory

    c_x, c_m = theory.mixture_score_coefficients()
    args = (theory.a_sym, theory.D_sym, theory.sigma2, theory.u_proj)
    return sp.lambdify(args, c_x, "numpy"), sp.lambdify(args, c_m, "numpy")


@dataclass(frozen=True)
class TwoGaussianMixture:
    """``y = +m + sigma z`` or ``-m + sigma z`` with probability 1/2 each."""

    mean: np.ndarray
    sigma2: float

    @classmethod
    def create(cls, dim: int, separation: float, sigma2: float = 1.0) -> TwoGaussianMixture:
        """Mixture with ``m = separation * (1, ..., 1) / sqrt(d)`` (so ``|m| = separation``)."""
        dim = require_int("dim", dim, 1)
        sep = _positive("separation", separation)
        return cls(np.full(dim, sep / np.sqrt(dim)), _positive("sigma2", sigma2))

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    @property
    def mean_norm2(self) -> float:
        return float(self.mean @ self.mean)

    def largest_eigenvalue(self) -> float:
        """Top eigenvalue of the covariance: ``|m|^2 + sigma^2`` (along ``m``)."""
        return self.mean_norm2 + self.sigma2

    def sample_with_labels(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = require_int("n", n, 1)
        labels = rng.choice(np.array([-1, 1]), size=n)
        y = labels[:, None] * self.mean[None, :] + np.sqrt(self.sigma2) * rng.normal(
            size=(n, self.dim))
        return y, labels

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.sample_with_labels(n, rng)[0]

    def score(self, x, a, D) -> np.ndarray:
        """Exact ``s(x) = -x/G + (a m/G) tanh(a m.x/G)``; ``a``, ``D`` scalars or per row."""
        arr, single = _check_x(x, self.dim)
        a = np.broadcast_to(np.asarray(a, float), (arr.shape[0],))
        D = np.broadcast_to(np.asarray(D, float), (arr.shape[0],))
        if np.any(~(a > 0)) or np.any(~(D > 0)):
            raise ParameterError("a, D", (a.min(), D.min()), "> 0")
        c_x, c_m = _mixture_coefficients()
        u = arr @ self.mean
        out = (c_x(a, D, self.sigma2, u)[:, None] * arr
               + c_m(a, D, self.sigma2, u)[:, None] * self.mean)
        return out[0] if single else out
