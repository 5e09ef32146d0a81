"""Empirical score of N training points and its closed-form Jacobian (THEORY B, "Empirical score").

Contract
--------
For training points ``y_1..y_N`` in ``R^d`` and query points ``x`` (shape ``(M, d)`` or ``(d,)``) at
one or many times (``a`` and ``D`` scalars or one value per query), with the forward process
``x = a y + sqrt(D) z`` (THEORY section 0), :class:`EmpiricalScore` gives

* posterior weights ``w_mu(x) = softmax_mu(-|x - a y_mu|^2 / (2D))`` (log-sum-exp, stable down to
  ``tau = D / a^2 = 1e-6`` and below);
* score ``s(x) = (a ybar - x) / D`` with ``ybar = sum_mu w_mu y_mu``;
* ``N_eff = 1 / sum_mu w_mu^2`` (in ``[1, N]``) and the weight entropy ``-sum_mu w_mu ln w_mu``;
* the Jacobian ``J = -I/D + (a^2/D^2) Cov_w(y)`` and the normalized Jacobian
  ``Jn = D J = -I + Cov_w(y)/tau`` (eigenvalues ``>= -1``) and its eigenvalues, batched over
  queries, exact or truncated to a stated tolerance with a rigorous error bound per query.

The same code runs on numpy and cupy (``device="cpu" | "gpu" | "auto"``, see
:mod:`diffphase.backend`).

Parts
-----
engine
    The public front: :class:`EmpiricalScore`, :func:`empirical_score`, the result records.
points
    Input checks; the training points centred (and reduced) once; queries centred per call.
blocks
    Queries block by block: weights once per block, the route per block, results merged.
dense
    Log-weights, normalized weights and dense moments (outer-product features, or Gram
    products of the weighted points).
truncated
    Smallest sufficient sets, kept moments, the a-posteriori error bound.
subspace
    :func:`exact_subspace` and the lift of results back to ``R^d``.
routes
    The cost model and thresholds that choose between the exact routes; block sizes.
noised
    Forward-noised probes at many ``tau``: distances to every point from two products, then
    log-sum-exp (own weights, nested log-densities).
kernels
    The compiled (numba) CPU kernels.
"""

from .engine import EmpiricalScore, JacobianSpectrum, PosteriorMoments, empirical_score
from .points import check_training_data
from .subspace import exact_subspace

__all__ = [
    "EmpiricalScore",
    "JacobianSpectrum",
    "PosteriorMoments",
    "check_training_data",
    "empirical_score",
    "exact_subspace",
]
