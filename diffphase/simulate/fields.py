"""Score-field geometry diagnostics (THEORY E).

Contract. A score field is any object with ``dim`` and ``score(x, a, D)`` in the library's one
convention (THEORY 0, ``x = a y + sqrt(D) z``; see :mod:`diffphase.simulate.jacobians`): the exact
linear fields here, the exact scores of :mod:`diffphase.data.laws`, the empirical engine
:class:`~diffphase.simulate.empirical.EmpiricalScore`, a user callable through
:class:`~diffphase.simulate.jacobians.CallableScore` (one of a process's time ``f(x, t)`` through
:class:`~diffphase.simulate.jacobians.TimeScore`), or a torch network
(:mod:`diffphase.simulate.torch_adapter`, :mod:`diffphase.simulate.networks`). Fields carry no
process; a process enters with times only. :func:`diagnose_field` ``(field, process, times)``
follows backward probability-flow trajectories
(:func:`diffphase.simulate.integrators.probability_flow`, Heun in ``u = x / a_t`` and
``sqrt(tau)``, every process including ``ddpm``) to the requested times, takes the Jacobian
there at the process's ``(a_t, D_t)`` by the best route, and reports, per time point, on the
**normalized Jacobian** ``Jn = D_t J`` (THEORY 0; ``-1 <= eig`` for exact scores and the same in
every process convention); :func:`diagnose_jacobians` ``(jac, a, D)`` does the same for given
Jacobians at one noise level:

* eigenvalues and singular values (sorted; averaged over the points);
* the local dimension: the number of normalized singular values below ``threshold`` (default
  1/2: for an exact score on a linear manifold a direction of data variance ``lambda`` counts
  while ``tau < lambda``), and a gap-based estimate (the position of the largest drop in the
  descending singular values, with 0 appended so an isotropic spectrum gives dimension 0);
* the split ``J = S + A`` (``S`` symmetric, ``A`` antisymmetric) and the non-conservativeness
  ``|A|_F / |J|_F`` (0 for every exact score);
* with a reference tangent basis ``U``: the tangent block ``U^T J U`` and the normal block
  ``W^T J W`` (``W`` spans the orthogonal complement), each block's own non-conservativeness,
  and the coupling ``(|U^T J W|_F^2 + |W^T J U|_F^2)^{1/2} / |J|_F``;
* principal angles between the top local features (the right singular vectors of the ``k``
  smallest singular values of ``Jn``: the directions the field does not push back) and the
  reference tangent space.

Exact fields. :class:`LinearField` ``s(x; a, D) = J(a, D) x`` has a closed-form Jacobian; for
centered Gaussian data ``J = -(a^2 C + D I)^{-1}`` (:func:`gaussian_score_field`, from the
eigendecomposition of ``C`` as ``-Q diag(1/(a^2 lambda + D)) Q^T``: no inverse, exact normal
directions at every ``tau``), and a chosen antisymmetric part can be added
(:func:`rotated_gaussian_field`) to give fields whose ``A`` is known.
:func:`linear_manifold_field` pairs the THEORY A data
(:meth:`diffphase.data.laws.LinearGaussian.manifold`) with their exact score and tangent basis.

Checks. Every public function checks its arguments and raises
:class:`~diffphase.errors.ParameterError` (empty or misshapen arrays, NaN, ``a <= 0``, ``D <= 0``).
Values that are undefined come back as NaN, never as a number: ``|A|/|J|`` of a zero Jacobian
or block; :meth:`TimeDiagnostics.summary` counts them in ``n_nonfinite``. :func:`diagnose_field`
checks all its options (:func:`check_request`) before any work, within these limits:

* times and ``t_start``: ``tau = D_t / a_t^2`` in :data:`TAU_RANGE` (``1e-30 .. 1e30``, where
  every route stays finite in double precision), ddpm steps in ``[1, T]``; ``data_variance`` in
  the same range; ``steps_per_efold`` at most :data:`MAX_STEPS_PER_EFOLD`; ``relative_step`` in
  ``(0, 1]``;
* size: :func:`diagnosis_cost` estimates the memory and the work from the options alone and
  :func:`check_cost` refuses a request above ``max_memory`` (default
  :data:`MEMORY_BUDGET_BYTES`: half the machine's memory) or ``max_operations`` (default
  :data:`WORK_BUDGET_OPERATIONS`), naming the option behind the largest part;
* central differences: where rounding (``eps |x| / h``,
  :func:`~diffphase.simulate.jacobians.central_difference_roundoff`) would exceed
  :data:`ROUNDOFF_LIMIT` of the Jacobian, the time or step is refused instead of reported; a
  trajectory or Jacobian that leaves the finite range is an error naming the field.

What ``diffphase diagnose`` computes (a user score or a built-in model, checked as a whole and
reported under the options' spelling) is assembled in :mod:`diffphase.commands.fields`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backend import default_memory_budget
from ..data.laws import LinearGaussian
from ..errors import (
    ParameterError,
    as_float_array,
    require_choice,
    require_finite,
    require_in_range,
    require_int,
    require_positive,
)
from ..models import JACOBIAN_ROUTES
from ..process import Process
from .integrators import (
    NonFiniteTrajectory,
    as_process,
    log_tau_grid,
    log_tau_grid_size,
    probability_flow,
    start_points,
)
from .jacobians import (
    ScoreField,
    available_route,
    central_difference_roundoff,
    check_field,
    checked_array,
    checked_level,
    checked_points,
    jacobian,
)

#: the noise-to-signal ratios ``tau`` a request may reach (and the range of ``--data-variance``
#: and ``--variances``): wide enough for any data scale, narrow enough that ``1/D``, ``a^2/D^2``
#: and ``|x|^2`` stay finite on every route
TAU_RANGE = (1e-30, 1e30)
#: above this dimension ``auto`` computes spectra matrix-free (a dense ``d x d`` Jacobian per
#: point and its factorizations cost about ``100 d^2`` bytes and ``60 d^3`` operations)
DENSE_DIMENSION_LIMIT = 1024
#: more Heun steps per e-fold of ``tau`` add nothing: the step error ``~ N^-2`` is already below
#: the rounding accumulated over the steps
MAX_STEPS_PER_EFOLD = 10_000
#: largest relative rounding error ``eps |x| / h`` allowed in a central-difference Jacobian
ROUNDOFF_LIMIT = 1e-5
#: operations (flops, plus a charge per call) above which a request is refused as too long
WORK_BUDGET_OPERATIONS = 1e14


MEMORY_BUDGET_BYTES = default_memory_budget()


def _square_stack(name: str, jac) -> np.ndarray:
    """``jac`` as finite ``(..., d, d)`` matrices (one or a stack)."""
    jac = checked_array(name, jac, ndim=(2, 3, 4))
    if jac.shape[-1] != jac.shape[-2]:
        raise ParameterError(f"{name} shape", jac.shape, "square matrices (..., d, d)")
    return jac


def _basis(name: str, basis, dim: int | None = None) -> np.ndarray:
    """A finite ``(d, m)`` matrix with ``1 <= m <= d`` (and ``d = dim`` when given)."""
    basis = checked_array(name, basis, ndim=2, shape=(dim, None))
    if basis.shape[1] > basis.shape[0]:
        raise ParameterError(f"{name} shape", basis.shape, "(d, m) with m <= d")
    return basis


# --------------------------------------------------------------------------- exact fields
class LinearField:
    """The linear score field ``s(x; a, D) = J(a, D) x`` with closed-form Jacobian ``J(a, D)``.

    Parameters
    ----------
    matrix_at : ``(a, D) -> (dim, dim)`` Jacobian at the noise level ``(a, D)``.
    dim : ambient dimension.
    apply : optional ``(x, a, D) -> J(a, D) x`` for ``(n, dim)`` points, when that is cheaper or
        more accurate than forming the matrix.
    """

    jacobian_route = "closed-form"

    def __init__(self, matrix_at: Callable[[float, float], np.ndarray], dim: int,
                 name: str = "linear field", apply: Callable | None = None):
        if not callable(matrix_at) or (apply is not None and not callable(apply)):
            raise ParameterError("matrix_at", matrix_at, "a callable (a, D) -> (dim, dim)")
        self.matrix_at = matrix_at
        self.dim = require_int("dim", dim, minimum=1)
        self.name = name
        self.apply = apply

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x, (a, D) = checked_points(x, self.dim), checked_level(a, D)
        if self.apply is not None:
            return self.apply(x, a, D)
        return x @ self.matrix_at(a, D).T

    def jacobian(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x, (a, D) = checked_points(x, self.dim), checked_level(a, D)
        return np.broadcast_to(self.matrix_at(a, D), (x.shape[0], self.dim, self.dim)).copy()


def _check_covariance(covariance: np.ndarray) -> np.ndarray:
    c = checked_array("covariance", covariance, ndim=2)
    if c.shape[0] != c.shape[1]:
        raise ParameterError("covariance shape", c.shape, "a square (d, d) matrix")
    if not np.allclose(c, c.T, atol=1e-12 * max(1.0, np.abs(c).max())):
        raise ParameterError("covariance", "not symmetric",
                             "a symmetric positive semi-definite matrix")
    if np.linalg.eigvalsh(c).min() < -1e-10 * max(1.0, np.abs(c).max()):
        raise ParameterError("covariance", "negative eigenvalue", "positive semi-definite")
    return c


def _spectral_gaussian_field(vectors: np.ndarray, values: np.ndarray, name: str) -> LinearField:
    """``J(a, D) = -(a^2 C + D I)^{-1} = -Q diag(1 / (a^2 lambda + D)) Q^T`` for
    ``C = Q diag(values) Q^T`` with ``Q`` a full orthonormal basis (``values >= 0``, exactly 0 off
    the data's span): no inverse and no cancellation, so every direction is as exact as ``Q`` at
    every ``tau`` (``Jn = -1`` off the span, ``-tau / (tau + lambda)`` on it)."""

    def matrix_at(a: float, D: float) -> np.ndarray:
        return -(vectors / ((a * a) * values + D)) @ vectors.T

    def apply(x: np.ndarray, a: float, D: float) -> np.ndarray:
        return -((x @ vectors) / ((a * a) * values + D)) @ vectors.T

    return LinearField(matrix_at, vectors.shape[0], name, apply)


def gaussian_score_field(covariance: np.ndarray) -> LinearField:
    """Exact score of centered Gaussian data ``N(0, C)``: ``J(a, D) = -(a^2 C + D I)^{-1}``,
    from the eigendecomposition of ``C`` (eigenvalues within rounding of 0 are 0)."""
    c = _check_covariance(covariance)
    values, vectors = np.linalg.eigh(c)
    tiny = c.shape[0] * np.finfo(float).eps * max(values.max(initial=0.0), 1e-300)
    return _spectral_gaussian_field(vectors, np.where(values > tiny, values, 0.0),
                                    "exact Gaussian score")


def _rotated(base: LinearField, generator: np.ndarray, rate: float) -> LinearField:
    def matrix_at(a: float, D: float) -> np.ndarray:
        return base.matrix_at(a, D) + (rate / D) * generator

    def apply(x: np.ndarray, a: float, D: float) -> np.ndarray:
        return base.apply(x, a, D) + (rate / D) * (x @ generator.T)

    return LinearField(matrix_at, base.dim, "Gaussian score + rotation", apply)


def rotated_gaussian_field(covariance: np.ndarray, generator: np.ndarray,
                           rate: float) -> LinearField:
    """Exact Gaussian score plus a rotation: ``J(a, D) = -(a^2 C + D I)^{-1} + (rate / D) G``.

    ``G`` must be antisymmetric; the normalized Jacobian is ``Jn = -D (a^2 C + D I)^{-1} + rate G``,
    whose antisymmetric part is exactly ``rate G``.
    """
    base = gaussian_score_field(covariance)
    g = checked_array("generator", generator, ndim=2)
    if g.shape != (base.dim, base.dim) or not np.allclose(g, -g.T):
        raise ParameterError("generator", "not antisymmetric or wrong shape",
                             f"an antisymmetric {(base.dim, base.dim)} matrix")
    return _rotated(base, g, require_finite("rate", rate))


def plane_rotation(basis: np.ndarray, i: int = 0, j: int = 1) -> np.ndarray:
    """Antisymmetric ``u v^T - v u^T`` for columns ``u = basis[:, i]``, ``v = basis[:, j]``."""
    basis = checked_array("basis", basis, ndim=2)
    for name, index in (("i", i), ("j", j)):
        if not 0 <= require_int(name, index) < basis.shape[1]:
            raise ParameterError(name, index, f"a column of basis, in [0, {basis.shape[1] - 1}]")
    if i == j:
        raise ParameterError("j", j, f"a column other than i = {i}")
    u, v = basis[:, i], basis[:, j]
    return np.outer(u, v) - np.outer(v, u)


# --------------------------------------------------------------------------- linear manifolds
def group_bases(data) -> list[np.ndarray]:
    """Orthonormal bases of the latent groups' directions, highest variance first (``F`` with
    orthonormal columns, as for ``subspace="orthonormal"``)."""
    F, latent = np.asarray(data.F), np.asarray(data.latent_variances)
    if not np.allclose(F.T @ F, np.eye(F.shape[1]), atol=1e-10):
        raise ParameterError("subspace", "random", "orthonormal for per-group bases")
    return [F[:, latent == v] for v in sorted(set(latent.tolist()), reverse=True)]


def orthonormal_basis(matrix: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis of the column span of ``matrix`` (SVD, rank by relative ``tol``)."""
    matrix = checked_array("matrix", matrix, ndim=2)
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    rank = int(np.sum(s > require_positive("tol", tol) * max(s.max(initial=0.0), 1e-300)))
    return u[:, :rank]


def linear_manifold_field(fractions, variances, dim: int, *, subspace: str = "random",
                          rotation: float = 0.0, rng: np.random.Generator | None = None):
    """The exact score of linear-manifold data (optionally plus a tangent rotation ``rotation``
    in the plane of the first two tangent basis vectors), with its data and tangent basis.

    Returns ``(field, data, tangent_basis)``; ``data`` is a
    :class:`~diffphase.data.laws.LinearGaussian`. The score is built on the tangent basis ``U``
    (``C = U (U^T C U) U^T``) and its complement, where ``C`` is exactly 0.
    """
    rotation = require_finite("rotation", rotation)
    data = LinearGaussian.manifold(fractions, variances, dim, subspace=subspace, rng=rng)
    basis = orthonormal_basis(np.asarray(data.F))
    values, vectors = np.linalg.eigh(basis.T @ data.covariance() @ basis)
    full = np.concatenate([basis @ vectors, complement_basis(basis)], axis=1)
    values = np.concatenate([np.clip(values, 0.0, None), np.zeros(data.dim - values.size)])
    exact = _spectral_gaussian_field(full, values, "exact linear-manifold score")
    if rotation:
        if basis.shape[1] < 2:
            raise ParameterError("rotation", rotation, "0 when the manifold has dimension < 2")
        return _rotated(exact, plane_rotation(basis), rotation), data, basis
    return exact, data, basis


# --------------------------------------------------------------------------- diagnostics
def split_symmetric(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``J = S + A`` with ``S = (J + J^T)/2`` and ``A = (J - J^T)/2`` (last two axes)."""
    jac = _square_stack("jac", jac)
    jt = np.swapaxes(jac, -1, -2)
    return 0.5 * (jac + jt), 0.5 * (jac - jt)


def nonconservativeness(jac: np.ndarray) -> np.ndarray:
    """``|A|_F / |J|_F`` in ``[0, 1]`` (0 for a gradient field); batched over leading axes.
    NaN where ``J = 0`` (the ratio is undefined there)."""
    _, anti = split_symmetric(jac)
    total = np.linalg.norm(jac, axis=(-2, -1))
    return np.linalg.norm(anti, axis=(-2, -1)) / np.where(total > 0, total, np.nan)


def _singular_values(singular_values) -> np.ndarray:
    return checked_array("singular_values", singular_values, ndim=(1, 2, 3))


def local_dimension_threshold(singular_values: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Number of normalized singular values ``< threshold`` (last axis)."""
    require_positive("threshold", threshold)
    return np.sum(_singular_values(singular_values) < threshold, axis=-1)


def local_dimension_gap(singular_values: np.ndarray) -> np.ndarray:
    """Gap estimate: with ``s_1 >= ... >= s_d >= s_{d+1} = 0``, the dimension is
    ``d - argmax_i (s_i - s_{i+1})`` (the first maximal gap from the top)."""
    s = -np.sort(-_singular_values(singular_values), axis=-1)
    padded = np.concatenate([s, np.zeros(s.shape[:-1] + (1,))], axis=-1)
    gaps = padded[..., :-1] - padded[..., 1:]
    return s.shape[-1] - (np.argmax(gaps, axis=-1) + 1)


def complement_basis(basis: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``W`` of the orthogonal complement of the columns of ``basis``."""
    basis = _basis("basis", basis)
    u, _, _ = np.linalg.svd(basis, full_matrices=True)
    return u[:, basis.shape[1]:]


def block_diagnostics(jac: np.ndarray, basis: np.ndarray) -> dict[str, np.ndarray]:
    """Tangent/normal blocks of ``J`` for the orthonormal tangent ``basis`` ``U`` (d, m).

    Returns (per point) ``tangent_nonconservativeness = |A_TT|/|J_TT|`` with
    ``J_TT = U^T J U``, ``normal_nonconservativeness`` likewise for ``J_NN = W^T J W``, and
    ``coupling = sqrt(|U^T J W|^2 + |W^T J U|^2) / |J|`` (all Frobenius norms; NaN where a
    denominator is 0).
    """
    jac = _square_stack("jac", jac)
    basis = _basis("basis", basis, jac.shape[-1])
    w = complement_basis(basis)
    tt = basis.T @ jac @ basis
    nn = w.T @ jac @ w
    tn = basis.T @ jac @ w
    nt = w.T @ jac @ basis
    total = np.linalg.norm(jac, axis=(-2, -1))
    coupling = np.sqrt(np.linalg.norm(tn, axis=(-2, -1)) ** 2
                       + np.linalg.norm(nt, axis=(-2, -1)) ** 2) / np.where(total > 0, total,
                                                                             np.nan)
    normal = nonconservativeness(nn) if w.shape[1] > 0 else np.full(total.shape, np.nan)
    return {"tangent_nonconservativeness": nonconservativeness(tt),
            "normal_nonconservativeness": normal, "coupling": coupling}


def principal_angles(basis_a: np.ndarray, basis_b: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the spans of two orthonormal bases.

    Cosines are the singular values of ``A^T B``; small angles are taken from the sines (the
    singular values of ``(I - A A^T) B``), which keeps them accurate near 0.
    """
    basis_a = _basis("basis_a", basis_a)
    basis_b = _basis("basis_b", basis_b, basis_a.shape[0])
    if basis_a.shape[1] < basis_b.shape[1]:
        basis_a, basis_b = basis_b, basis_a
    return _angles(basis_a, basis_b)


def _angles(basis_a: np.ndarray, basis_b: np.ndarray) -> np.ndarray:
    """:func:`principal_angles` of checked bases, ``(..., d, m)`` and ``(..., d, k)`` with
    ``m >= k``, batched over the leading axes."""
    k = basis_b.shape[-1]
    overlap = np.swapaxes(basis_a, -1, -2) @ basis_b
    cosines = np.clip(np.linalg.svd(overlap, compute_uv=False), 0.0, 1.0)
    residual = basis_b - basis_a @ overlap
    sines = np.clip(np.sort(np.linalg.svd(residual, compute_uv=False), axis=-1)[..., :k], 0.0, 1.0)
    return np.where(cosines > np.sqrt(0.5), np.arcsin(sines), np.arccos(cosines))


def local_tangent_features(jac: np.ndarray, count: int) -> np.ndarray:
    """Right singular vectors of the ``count`` smallest singular values of ``J``.

    Shape ``(n, d, count)``: the directions along which the field changes least."""
    jac = _square_stack("jac", jac)
    count = require_int("count", count, minimum=1)
    if count > jac.shape[-1]:
        raise ParameterError("count", count, f"an integer in [1, {jac.shape[-1]}]")
    _, _, vt = np.linalg.svd(jac)
    return np.swapaxes(vt[..., vt.shape[-1] - count:, :], -1, -2)


@dataclass
class TimeDiagnostics:
    """Diagnostics of ``Jn = D J`` at one noise level, over ``n`` points (arrays are per point);
    ``t`` is the time of the process when the level came from one (else None); ``roundoff`` the
    relative rounding error of a central-difference Jacobian (None on the other routes)."""

    t: float | None
    tau: float
    noise_variance: float
    singular_values: np.ndarray  # (n, d) descending
    eigenvalues: np.ndarray  # (n, d) complex, ascending real part
    local_dimension_threshold: np.ndarray  # (n,)
    local_dimension_gap: np.ndarray  # (n,)
    nonconservativeness: np.ndarray  # (n,)
    blocks: dict[str, np.ndarray] = field(default_factory=dict)
    principal_angles: np.ndarray | None = None  # (n, k)
    route: str = ""
    roundoff: float | None = None

    def summary(self) -> dict:
        """Point-averaged values; the local dimension is the most common value over points.
        ``n_nonfinite`` counts the values that are NaN (undefined: a ratio over a zero
        Jacobian or block) or None."""
        out = {
            "t": self.t, "tau": self.tau, "noise_variance": self.noise_variance,
            "points": int(self.singular_values.shape[0]), "jacobian_route": self.route,
            "singular_values": self.singular_values.mean(axis=0),
            "eigenvalues_real": self.eigenvalues.real.mean(axis=0),
            "eigenvalues_imag": self.eigenvalues.imag.mean(axis=0),
            "local_dimension": _mode(self.local_dimension_threshold),
            "local_dimension_gap": _mode(self.local_dimension_gap),
            "local_dimension_mean": float(np.mean(self.local_dimension_threshold)),
            "nonconservativeness": float(np.mean(self.nonconservativeness)),
        }
        for key, values in self.blocks.items():
            out[key] = float(np.nanmean(values)) if np.any(np.isfinite(values)) else None
        if self.principal_angles is not None:
            out["max_principal_angle"] = float(np.mean(self.principal_angles[:, -1]))
            out["principal_angles"] = self.principal_angles.mean(axis=0)
        if self.roundoff is not None:
            out["central_difference_roundoff"] = float(self.roundoff)
        out["n_nonfinite"] = sum(_count_nonfinite(v) for k, v in out.items() if k != "t")
        return out


def _count_nonfinite(value) -> int:
    if value is None:
        return 1
    if isinstance(value, (str, bool)):
        return 0
    return int(np.count_nonzero(~np.isfinite(np.asarray(value, dtype=float))))


def _mode(values: np.ndarray) -> int:
    uniques, counts = np.unique(np.asarray(values, dtype=int), return_counts=True)
    return int(uniques[np.argmax(counts)])


def diagnose_jacobians(jac: np.ndarray, a: float, D: float, *, t: float | None = None,
                       threshold: float = 0.5, reference_basis: np.ndarray | None = None,
                       feature_count: int | None = None, route: str = "",
                       roundoff: float | None = None) -> TimeDiagnostics:
    """All THEORY E diagnostics of the Jacobians ``jac`` (``(n, d, d)``, finite) at the noise
    level ``(a, D)`` (``tau = D / a^2``); ``t`` and ``roundoff`` are only recorded."""
    require_positive("threshold", threshold)
    a, D = checked_level(a, D)
    jac = _square_stack("jac", jac)
    if jac.ndim != 3:
        raise ParameterError("jac shape", jac.shape, "(n, d, d)")
    d = jac.shape[-1]
    if reference_basis is not None:
        reference_basis = _basis("reference_basis", reference_basis, d)
    with np.errstate(over="ignore"):
        jn = D * jac
    if not np.all(np.isfinite(jn)):
        raise ParameterError("jac", "entries whose D * jac overflows",
                             f"finite D * jac (D = {D:g})")
    try:
        sv = np.linalg.svd(jn, compute_uv=False)
        eig = np.linalg.eigvals(jn)
    except np.linalg.LinAlgError as exc:
        raise ParameterError("jac", f"matrices where {exc}", "matrices LAPACK can factor") from None
    eig = np.take_along_axis(eig, np.argsort(eig.real, axis=-1, kind="stable"), axis=-1)
    blocks, angles = {}, None
    if reference_basis is not None:
        blocks = block_diagnostics(jn, reference_basis)
        k = reference_basis.shape[1] if feature_count is None else feature_count
        features = local_tangent_features(jn, k)  # (n, d, k)
        angles = (_angles(reference_basis, features) if k <= reference_basis.shape[1]
                  else _angles(features, reference_basis))
    return TimeDiagnostics(None if t is None else float(t), D / (a * a), D, sv, eig,
                           local_dimension_threshold(sv, threshold), local_dimension_gap(sv),
                           nonconservativeness(jn), blocks, angles, route, roundoff)


# --------------------------------------------------------------------------- request checks
def _process_times(process: Process, name: str, values) -> np.ndarray:
    """Times of ``process`` in its range, with ``tau`` in :data:`TAU_RANGE`."""
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if process.name == "ddpm":
        low, high = process.time_range()
        allowed = f"steps in [1, {int(high)}] for ddpm"
    else:
        low, high = (float(t) for t in process.time_from_tau(np.array(TAU_RANGE)))
        allowed = (f"in [{low:.4g}, {high:.4g}] for {process.name} (tau = D_t/a_t^2 in "
                   f"[{TAU_RANGE[0]:g}, {TAU_RANGE[1]:g}])")
    bad = ~((values >= low) & (values <= high))
    if np.any(bad):
        raise ParameterError(name, float(values[bad][0]), allowed)
    return values


def check_request(process: Process, times, *, points, t_start, data_variance, threshold,
                  route, probes, relative_step, steps_per_efold) -> np.ndarray:
    """Every option of :func:`diagnose_field` checked before any work (within the limits of the
    module notes); the distinct times, descending."""
    times = np.unique(_process_times(process, "times", as_float_array("times", times)))[::-1]
    if t_start is not None:
        t_start = float(_process_times(process, "t_start", require_finite("t_start", t_start))[0])
        if t_start < times[0]:
            raise ParameterError("t_start", t_start, f">= the largest time {times[0]:g}")
    require_positive("threshold", threshold)
    require_in_range("relative_step", relative_step, 0.0, 1.0, closed=(False, True))
    require_in_range("data_variance", data_variance, *TAU_RANGE)
    require_int("points", points, minimum=1)
    require_choice("route", route, JACOBIAN_ROUTES)
    if probes is not None:
        require_int("probes", probes, minimum=1)
    if require_int("steps_per_efold", steps_per_efold, minimum=1) > MAX_STEPS_PER_EFOLD:
        raise ParameterError("steps_per_efold", steps_per_efold,
                             f"an integer in [1, {MAX_STEPS_PER_EFOLD}]")
    return times


def check_probes(probes, dim: int) -> None:
    """``probes`` (checked an integer) at most the dimension ``dim``."""
    if probes is not None and probes > dim:
        raise ParameterError("probes", probes, f"an integer in [1, {dim}]")


def resolve_route(route: str, field: ScoreField) -> str:
    """The route ``route`` resolves to for ``field`` (``auto``: the field's own)."""
    own = available_route(field)
    if route in ("closed-form", "autograd") and route != own:
        allowed = "auto or central" if own == "central" else f"auto, central or {own}"
        raise ParameterError("route", route, f"{allowed} for this score")
    return own if route == "auto" else route


# --------------------------------------------------------------------------- cost model
@dataclass(frozen=True)
class CostTerm:
    """One part of a request's cost: bytes held at the peak and operations (flops, plus
    :data:`CALL_OPERATIONS` per call into a score), set by the arguments ``options``."""

    what: str
    options: tuple[str, ...]
    memory: float
    operations: float


#: operations charged per call into a score (interpreter overhead, small arrays)
CALL_OPERATIONS = 1e4


def source_cost_terms(model: str | None, dim: int, samples: int = 0) -> list[CostTerm]:
    """A field's setup: ``d x d`` bases and covariances, and an empirical engine's points."""
    terms = [CostTerm("d x d bases and covariances", ("dim",), 96.0 * dim**2,
                      30.0 * dim**3 if model else 0.0)]
    if model == "empirical":
        from .empirical.routes import DEFAULT_CHUNK_BYTES, DEFAULT_FEATURE_CACHE_BYTES

        features = min(4.0 * samples * dim * (dim + 1), DEFAULT_FEATURE_CACHE_BYTES)
        terms.append(CostTerm("the empirical training data", ("samples", "dim"),
                              32.0 * samples * dim + features + DEFAULT_CHUNK_BYTES,
                              4.0 * samples * dim**2))
    return terms


def diagnosis_cost(process: str | Process, times, *, points: int, dim: int,
                   t_start: float | None = None, probes: int | None = None,
                   route: str = "central", steps_per_efold: int = 40,
                   model: str | None = None, samples: int = 0) -> list[CostTerm]:
    """Estimated memory and work of :func:`diagnose_field` from its (checked) options alone.

    The peak holds the Jacobians of one time and their factorizations (about ``12 n d^2``
    floats), the probe shifts of central differences (``12 n k d``), the recorded states and
    per-point results (``m n d``), the grid and the field's setup; the work is the score calls
    along the grid (two per Heun step), the Jacobians and the ``O(n d^3)`` factorizations per
    time. ``model`` (``None``: a user score, costed as cheap) and ``samples`` set a call's cost.
    """
    proc = as_process(process)
    n, d, m = int(points), int(dim), len(times)
    k = (int(probes) if probes else d) if route == "central" else 0
    nodes = log_tau_grid_size(proc, times[0] if t_start is None else t_start, times,
                              steps_per_efold)
    steps = len(proc.betas) if proc.name == "ddpm" else 0
    per_call = CALL_OPERATIONS + (20.0 * steps if model is None else 0.0)

    def call(count: float) -> float:
        per_point = {"empirical": 4.0 * samples * d, None: 20.0 * d}.get(model, 6.0 * d * d)
        return per_call + count * per_point

    jacobian_work = (call(2.0 * n * k) + 2.0 * n * k * d * d if k
                     else 8.0 * n * d * d * (1 + samples))
    return source_cost_terms(model, d, samples if model == "empirical" else 0) + [
        CostTerm("the ddpm noise levels", ("T",), 80.0 * steps, 100.0 * steps),
        CostTerm("the trajectories", ("steps_per_efold", "times", "points", "dim"),
                 160.0 * nodes + 80.0 * n * d, nodes * (2 * call(n) + 20.0 * n * d)),
        CostTerm("the recorded states and results", ("times", "points", "dim"),
                 64.0 * m * n * d, 0.0),
        CostTerm("the Jacobians and their factorizations", ("points", "dim", "probes"),
                 96.0 * n * d * (d + k), m * (60.0 * n * d**3 + jacobian_work))]


def check_cost(terms: Sequence[CostTerm], values: dict, *, max_memory: float | None = None,
               max_operations: float | None = None) -> tuple[float, float]:
    """Refuse a request whose estimated memory exceeds ``max_memory`` (default
    :data:`MEMORY_BUDGET_BYTES`) or whose work exceeds ``max_operations`` (default
    :data:`WORK_BUDGET_OPERATIONS`); the error names the largest of the options (``values``:
    name -> value, ``times`` their number) behind the largest part. Returns the estimated
    ``(bytes, operations)`` of an accepted request."""
    budgets = (("memory", MEMORY_BUDGET_BYTES if max_memory is None else max_memory),
               ("operations", WORK_BUDGET_OPERATIONS if max_operations is None
                else max_operations))
    for kind, budget in budgets:
        parts = [getattr(term, kind) for term in terms]
        total = float(sum(parts))
        if total <= float(budget):
            continue
        term = terms[int(np.argmax(parts))]
        known = [o for o in term.options if values.get(o) is not None] or [term.options[0]]
        name = max(known, key=lambda o: values.get(o) or 0)
        size = (f"about {total / 2**30:.3g} GiB, budget {budget / 2**30:.3g} GiB"
                if kind == "memory" else f"about {total:.2g} operations, budget {budget:.2g}")
        factors = ", ".join(f"{o} {values[o]}" for o in known if o in values)
        raise ParameterError(name, values.get(name), f"a job within the {kind} budget: this "
                             f"one needs {size}, mostly for {term.what} ({factors})")
    return (float(sum(term.memory for term in terms)),
            float(sum(term.operations for term in terms)))


# --------------------------------------------------------------------------- trajectories
def _jacobian_at(field: ScoreField, x: np.ndarray, t: float, a: float, D: float, used: str, *,
                 probes, rng, relative_step: float) -> tuple[np.ndarray, float | None]:
    """The Jacobian at the points ``x`` (time ``t``), refused where central differences would be
    dominated by rounding; ``(jac, relative rounding error or None)``."""
    roundoff = None
    if used == "central":
        roundoff = central_difference_roundoff(x, relative_step * math.sqrt(D))
        if roundoff > ROUNDOFF_LIMIT:
            needed = relative_step * roundoff / ROUNDOFF_LIMIT
            size = float(np.max(np.linalg.norm(x, axis=-1)))
            if needed <= 1.0:
                raise ParameterError("relative_step", relative_step,
                                     f">= {needed:.3g} at t = {t:.6g}: a smaller step is lost to "
                                     f"rounding where |x| reaches {size:.3g}")
            raise ParameterError("times", t, f"a time where central differences resolve the "
                                 f"Jacobian: at this one |x| reaches {size:.3g} and the step "
                                 f"would need relative_step {needed:.3g} > 1")
    jac = jacobian(field, x, a, D, route=used, probes=probes, rng=rng,
                   relative_step=relative_step)
    if not np.all(np.isfinite(jac)):
        bad = int(np.count_nonzero(~np.isfinite(jac)))
        raise ParameterError(f"{getattr(field, 'name', 'score field')} Jacobian",
                             f"{bad} non-finite entries at t = {t:.6g}", "finite entries")
    return jac, roundoff


def points_along_trajectories(field: ScoreField, proc: Process, times, *, points: int, dim: int,
                              t_start: float, rng: np.random.Generator,
                              data_variance: float = 1.0, sampler=None,
                              steps_per_efold: int = 40) -> dict:
    """``{t: states}``: ``points`` probability-flow trajectories of ``field`` started at
    ``t_start`` (:func:`start_points`) and recorded at ``times``; a trajectory that leaves the
    finite numbers is an error naming the field."""
    x0 = start_points(int(points), dim, proc, t_start, rng, data_variance, sampler)
    try:
        flow = probability_flow(field.score, x0, proc,
                                log_tau_grid(proc, t_start, times, steps_per_efold),
                                record_times=times)
    except NonFiniteTrajectory as exc:
        raise ParameterError(getattr(field, "name", "score field"), exc.value,
                             exc.allowed) from None
    return dict(zip(flow.times.tolist(), flow.states, strict=True))


def diagnose_field(field: ScoreField, process: str | Process, times: Sequence[float], *,
                   points: int = 8, rng: np.random.Generator, t_start: float | None = None,
                   sampler: Callable | None = None, data_variance: float = 1.0,
                   reference_basis: np.ndarray | None = None, threshold: float = 0.5,
                   route: str = "auto", probes: int | None = None, relative_step: float = 1e-4,
                   steps_per_efold: int = 40, max_memory: float | None = None,
                   max_operations: float | None = None) -> list[TimeDiagnostics]:
    """Diagnostics along ``points`` backward trajectories at each of ``times`` (descending) of
    ``process``.

    Trajectories start at ``t_start`` (default: the largest time) from
    :func:`~diffphase.simulate.integrators.start_points` (``sampler``: exact ``a y + sqrt(D) z``)
    and follow :func:`~diffphase.simulate.integrators.probability_flow` on
    :func:`~diffphase.simulate.integrators.log_tau_grid` (``steps_per_efold``); at each time the
    Jacobian comes from :func:`diffphase.simulate.jacobians.jacobian` (``route``, ``probes``,
    ``relative_step``) at the process's ``(a_t, D_t)``. Every argument is checked first, and the
    estimated cost (:func:`diagnosis_cost`) against ``max_memory`` and ``max_operations``.
    """
    proc = as_process(process)
    dim = check_field(field)
    times = check_request(proc, times, points=points, t_start=t_start,
                           data_variance=data_variance, threshold=threshold, route=route,
                           probes=probes, relative_step=relative_step,
                           steps_per_efold=steps_per_efold)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("rng", type(rng).__name__, "a numpy.random.Generator")
    if sampler is not None and not callable(sampler):
        raise ParameterError("sampler", sampler, "a callable sample(n, rng) or None")
    check_probes(probes, dim)
    used = resolve_route(route, field)
    if reference_basis is not None:
        reference_basis = _basis("reference basis", reference_basis, dim)
    check_cost(diagnosis_cost(proc, times, points=points, dim=dim, t_start=t_start,
                              probes=probes, route=used, steps_per_efold=steps_per_efold),
               {"points": points, "dim": dim, "probes": probes, "times": len(times),
                "steps_per_efold": steps_per_efold},
               max_memory=max_memory, max_operations=max_operations)
    t_start = float(times[0]) if t_start is None else float(t_start)
    along = points_along_trajectories(field, proc, times, points=points, dim=dim,
                                      t_start=t_start, rng=rng, data_variance=data_variance,
                                      sampler=sampler, steps_per_efold=steps_per_efold)
    results = []
    for t in times:
        a, D = float(proc.signal_scale(t)), float(proc.noise_variance(t))
        jac, roundoff = _jacobian_at(field, along[float(t)], float(t), a, D, used,
                                     probes=probes, rng=rng, relative_step=relative_step)
        results.append(diagnose_jacobians(jac, a, D, t=float(t), threshold=threshold,
                                          reference_basis=reference_basis, route=used,
                                          roundoff=roundoff))
    return results
