"""Finite-``d`` spectra of linear-manifold data (THEORY A), formed as matrices.

Contract: :func:`normalized_jacobian` forms the exact ``Jn = D J = -D (a^2 C + D I)^{-1}`` of a
:class:`~diffphase.data.laws.LinearGaussian` as a matrix (independently of the eigenvalue map the
theory uses); :func:`tangent_covariance_eigenvalues` gives the ``m`` nonzero eigenvalues of ``C``;
:func:`theory_cdf` the theory's normalized CDF of that spectrum, to compare the two.
"""

from __future__ import annotations

import numpy as np

from ..data.laws import LinearGaussian
from ..solvers import spectral as solver


def normalized_jacobian(manifold: LinearGaussian, tau: float) -> np.ndarray:
    """``Jn = D J`` with ``J = -(a^2 C + D I)^{-1}``; in ``tau`` units (``a = 1, D = tau``)."""
    d = manifold.dim
    return -tau * np.linalg.inv(manifold.covariance() + tau * np.eye(d))


def tangent_covariance_eigenvalues(manifold: LinearGaussian) -> np.ndarray:
    """The ``m`` nonzero eigenvalues of ``C`` (those of ``Sigma^{1/2} F^T F Sigma^{1/2}``)."""
    root = np.sqrt(manifold.latent_variances)
    return np.linalg.eigvalsh((manifold.F * root).T @ (manifold.F * root))


def theory_cdf(law: solver.VarianceLaw, x: np.ndarray) -> np.ndarray:
    """Normalized CDF of the nonzero spectrum of ``C`` (mass above, subtracted from alpha)."""
    return 1.0 - solver.spectral_mass_above(x, law) / law.alpha
