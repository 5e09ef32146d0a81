"""Score-field geometry diagnostics (THEORY E) and their registered checks.

Contract. Given any score field (see :mod:`diffphase.validate.jacobians`: exact linear fields
here, the empirical score, a user callable, or a torch network through
:mod:`diffphase.validate.torch_adapter`), :func:`diagnose_field` follows backward (probability-flow)
trajectories to the requested times, takes the Jacobian there by the best route, and reports,
per time point, on the **normalized Jacobian** ``Jn = D_t J`` (THEORY 0; ``-1 <= eig`` for exact
scores and the same in every process convention):

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

Exact fields. :class:`LinearField` ``s(x, t) = J(t) x`` has a closed-form Jacobian; for
centered Gaussian data ``J(t) = -(a_t^2 C + D_t I)^{-1}`` (:func:`gaussian_score_field`), and a
chosen antisymmetric part can be added (:func:`rotated_gaussian_field`) to give fields whose
``A`` is known. The linear-manifold data of THEORY A come from
:meth:`diffphase.validate.data.LinearGaussian.manifold`; the empirical score of
:mod:`diffphase.validate.empirical` is adapted by :class:`EmpiricalScoreField`.

Trajectories use :func:`backward_trajectories`, a probability-flow integrator written in
``(u = x / a_t, tau)``, so it serves every process including ``ddpm`` (the shared
:mod:`diffphase.validate.integrators` covers ``ou`` and ``ve``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, as_float_array, require_int, require_positive
from ..process import Process, get_process
from .jacobians import ScoreField, jacobian

# --------------------------------------------------------------------------- exact fields


class LinearField:
    """The linear score field ``s(x, t) = J(t) x`` with closed-form Jacobian ``J(t)``.

    Parameters
    ----------
    matrix_at : ``t -> (dim, dim)`` Jacobian in the process convention of ``process``.
    dim : ambient dimension.
    process : the forward process whose time ``t`` is.
    """

    jacobian_route = "closed-form"

    def __init__(self, matrix_at: Callable[[float], np.ndarray], dim: int, process: Process,
                 name: str = "linear field"):
        self.matrix_at = matrix_at
        self.dim = require_int("dim", dim, minimum=1)
        self.process = process
        self.name = name

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.matrix_at(t).T

    def jacobian(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return np.broadcast_to(self.matrix_at(t), (x.shape[0], self.dim, self.dim)).copy()


def _check_covariance(covariance: np.ndarray) -> np.ndarray:
    c = np.asarray(covariance, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ParameterError("covariance shape", c.shape, "a square (d, d) matrix")
    if not np.allclose(c, c.T, atol=1e-12 * max(1.0, np.abs(c).max())):
        raise ParameterError("covariance", "not symmetric",
                             "a symmetric positive semi-definite matrix")
    if np.linalg.eigvalsh(c).min() < -1e-10 * max(1.0, np.abs(c).max()):
        raise ParameterError("covariance", "negative eigenvalue", "positive semi-definite")
    return c


def gaussian_score_field(covariance: np.ndarray, process: Process) -> LinearField:
    """Exact score of centered Gaussian data ``N(0, C)``: ``J(t) = -(a_t^2 C + D_t I)^{-1}``."""
    c = _check_covariance(covariance)
    eye = np.eye(c.shape[0])

    def matrix_at(t: float) -> np.ndarray:
        a2 = float(process.signal_scale(t)) ** 2
        return -np.linalg.inv(a2 * c + float(process.noise_variance(t)) * eye)

    return LinearField(matrix_at, c.shape[0], process, "exact Gaussian score")


def rotated_gaussian_field(covariance: np.ndarray, process: Process, generator: np.ndarray,
                           rate: float) -> LinearField:
    """Exact Gaussian score plus a rotation: ``J(t) = -(a^2 C + D I)^{-1} + (rate / D_t) G``.

    ``G`` must be antisymmetric; the normalized Jacobian is ``Jn = -D (a^2 C + D I)^{-1} + rate G``,
    whose antisymmetric part is exactly ``rate G``.
    """
    g = np.asarray(generator, dtype=float)
    if g.shape != np.shape(covariance) or not np.allclose(g, -g.T):
        raise ParameterError("generator", "not antisymmetric or wrong shape",
                             f"an antisymmetric {np.shape(covariance)} matrix")
    base = gaussian_score_field(covariance, process)

    def matrix_at(t: float) -> np.ndarray:
        return base.matrix_at(t) + (rate / float(process.noise_variance(t))) * g

    return LinearField(matrix_at, base.dim, process, "Gaussian score + rotation")


def plane_rotation(basis: np.ndarray, i: int = 0, j: int = 1) -> np.ndarray:
    """Antisymmetric ``u v^T - v u^T`` for columns ``u = basis[:, i]``, ``v = basis[:, j]``."""
    u, v = basis[:, i], basis[:, j]
    return np.outer(u, v) - np.outer(v, u)


# --------------------------------------------------------------------------- linear manifolds
def linear_manifold(fractions, variances, d: int, subspace: str = "random",
                    rng: np.random.Generator | None = None):
    """THEORY A linear-manifold data (:meth:`diffphase.validate.data.LinearGaussian.manifold`:
    ``F``, ``latent_variances``, ``covariance()``, ``sample(n, rng)``)."""
    from ..data.laws import LinearGaussian

    return LinearGaussian.manifold(fractions, variances, d, subspace=subspace, rng=rng)


def group_bases(data) -> list[np.ndarray]:
    """Orthonormal bases of the latent groups' directions, highest variance first (``F`` with
    orthonormal columns, as for ``subspace="orthonormal"``)."""
    F, latent = np.asarray(data.F), np.asarray(data.latent_variances)
    if not np.allclose(F.T @ F, np.eye(F.shape[1]), atol=1e-10):
        raise ParameterError("subspace", "random", "orthonormal for per-group bases")
    return [F[:, latent == v] for v in sorted(set(latent.tolist()), reverse=True)]


def orthonormal_basis(matrix: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis of the column span of ``matrix`` (SVD, rank by relative ``tol``)."""
    u, s, _ = np.linalg.svd(np.asarray(matrix, dtype=float), full_matrices=False)
    rank = int(np.sum(s > tol * max(s.max(initial=0.0), 1e-300)))
    return u[:, :rank]


class EmpiricalScoreField:
    """The empirical score of training points (``diffphase.validate.empirical.EmpiricalScore``)
    as a score field in ``process``, with its closed-form Jacobian
    ``J = -I/D + (a^2/D^2) Cov_w(y)``."""

    jacobian_route = "closed-form"

    def __init__(self, training_points: np.ndarray, process: Process, device: str = "cpu"):
        from .empirical import EmpiricalScore

        self.empirical = EmpiricalScore(training_points, device)
        self.dim = int(np.shape(training_points)[1])
        self.process = process

    def _scales(self, t: float) -> tuple[float, float]:
        return float(self.process.signal_scale(t)), float(self.process.noise_variance(t))

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        from ..backend import to_numpy

        return to_numpy(self.empirical.score(np.atleast_2d(x), *self._scales(t)))

    def jacobian(self, x: np.ndarray, t: float) -> np.ndarray:
        from ..backend import to_numpy

        return to_numpy(self.empirical.jacobian(np.atleast_2d(x), *self._scales(t)))


# --------------------------------------------------------------------------- diagnostics
def split_symmetric(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``J = S + A`` with ``S = (J + J^T)/2`` and ``A = (J - J^T)/2`` (last two axes)."""
    jt = np.swapaxes(jac, -1, -2)
    return 0.5 * (jac + jt), 0.5 * (jac - jt)


def nonconservativeness(jac: np.ndarray) -> np.ndarray:
    """``|A|_F / |J|_F`` in ``[0, 1]`` (0 for a gradient field); batched over leading axes."""
    _, anti = split_symmetric(jac)
    total = np.linalg.norm(jac, axis=(-2, -1))
    return np.linalg.norm(anti, axis=(-2, -1)) / np.where(total > 0, total, np.nan)


def local_dimension_threshold(singular_values: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Number of normalized singular values ``< threshold`` (last axis)."""
    return np.sum(np.asarray(singular_values) < threshold, axis=-1)


def local_dimension_gap(singular_values: np.ndarray) -> np.ndarray:
    """Gap estimate: with ``s_1 >= ... >= s_d >= s_{d+1} = 0``, the dimension is
    ``d - argmax_i (s_i - s_{i+1})`` (the first maximal gap from the top)."""
    s = -np.sort(-np.asarray(singular_values, dtype=float), axis=-1)
    padded = np.concatenate([s, np.zeros(s.shape[:-1] + (1,))], axis=-1)
    gaps = padded[..., :-1] - padded[..., 1:]
    return s.shape[-1] - (np.argmax(gaps, axis=-1) + 1)


def complement_basis(basis: np.ndarray) -> np.ndarray:
    """Orthonormal basis ``W`` of the orthogonal complement of the columns of ``basis``."""
    d, m = basis.shape
    u, _, _ = np.linalg.svd(basis, full_matrices=True)
    return u[:, m:]


def block_diagnostics(jac: np.ndarray, basis: np.ndarray) -> dict[str, np.ndarray]:
    """Tangent/normal blocks of ``J`` for the orthonormal tangent ``basis`` ``U`` (d, m).

    Returns (per point) ``tangent_nonconservativeness = |A_TT|/|J_TT|`` with
    ``J_TT = U^T J U``, ``normal_nonconservativeness`` likewise for ``J_NN = W^T J W``, and
    ``coupling = sqrt(|U^T J W|^2 + |W^T J U|^2) / |J|`` (all Frobenius norms).
    """
    w = complement_basis(basis)
    tt = basis.T @ jac @ basis
    nn = w.T @ jac @ w
    tn = basis.T @ jac @ w
    nt = w.T @ jac @ basis
    total = np.linalg.norm(jac, axis=(-2, -1))
    coupling = np.sqrt(np.linalg.norm(tn, axis=(-2, -1)) ** 2
                       + np.linalg.norm(nt, axis=(-2, -1)) ** 2) / total
    normal = nonconservativeness(nn) if w.shape[1] > 0 else np.full(total.shape, np.nan)
    return {"tangent_nonconservativeness": nonconservativeness(tt),
            "normal_nonconservativeness": normal, "coupling": coupling}


def principal_angles(basis_a: np.ndarray, basis_b: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the spans of two orthonormal bases.

    Cosines are the singular values of ``A^T B``; small angles are taken from the sines (the
    singular values of ``(I - A A^T) B``), which keeps them accurate near 0.
    """
    if basis_a.shape[1] < basis_b.shape[1]:
        basis_a, basis_b = basis_b, basis_a
    k = basis_b.shape[1]
    cosines = np.clip(np.linalg.svd(basis_a.T @ basis_b, compute_uv=False), 0.0, 1.0)
    residual = basis_b - basis_a @ (basis_a.T @ basis_b)
    sines = np.clip(np.sort(np.linalg.svd(residual, compute_uv=False))[:k], 0.0, 1.0)
    return np.where(cosines > np.sqrt(0.5), np.arcsin(sines), np.arccos(cosines))


def local_tangent_features(jac: np.ndarray, count: int) -> np.ndarray:
    """Right singular vectors of the ``count`` smallest singular values of ``J``.

    Shape ``(n, d, count)``: the directions along which the field changes least."""
    _, _, vt = np.linalg.svd(jac)
    return np.swapaxes(vt[..., vt.shape[-1] - count:, :], -1, -2)


@dataclass
class TimeDiagnostics:
    """Diagnostics of ``Jn = D_t J`` at one time, over ``n`` points (arrays are per point)."""

    t: float
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

    def summary(self) -> dict:
        """Point-averaged values; the local dimension is the most common value over points."""
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
        return out


def _mode(values: np.ndarray) -> int:
    uniques, counts = np.unique(np.asarray(values, dtype=int), return_counts=True)
    return int(uniques[np.argmax(counts)])


def diagnose_jacobians(jac: np.ndarray, t: float, process: Process, *, threshold: float = 0.5,
                       reference_basis: np.ndarray | None = None,
                       feature_count: int | None = None, route: str = "") -> TimeDiagnostics:
    """All THEORY E diagnostics of the Jacobians ``jac`` (``(n, d, d)``) at time ``t``."""
    require_positive("threshold", threshold)
    noise = float(process.noise_variance(t))
    jn = noise * np.asarray(jac, dtype=float)
    sv = np.linalg.svd(jn, compute_uv=False)
    eig = np.linalg.eigvals(jn)
    eig = np.take_along_axis(eig, np.argsort(eig.real, axis=-1, kind="stable"), axis=-1)
    blocks, angles = {}, None
    if reference_basis is not None:
        blocks = block_diagnostics(jn, reference_basis)
        k = reference_basis.shape[1] if feature_count is None else feature_count
        features = local_tangent_features(jn, k)
        angles = np.stack([principal_angles(reference_basis, f) for f in features])
    return TimeDiagnostics(float(t), float(process.tau_from_time(t)), noise, sv, eig,
                           local_dimension_threshold(sv, threshold), local_dimension_gap(sv),
                           nonconservativeness(jn), blocks, angles, route)


# --------------------------------------------------------------------------- trajectories
def backward_trajectories(field: ScoreField, process: Process, times: Sequence[float],
                          x_start: np.ndarray, t_start: float, *,
                          steps_per_efold: int = 40) -> dict[float, np.ndarray]:
    """Probability-flow ODE from ``t_start`` back through ``times``; points at each time.

    Written in ``u = x / a_t`` and ``tau = D_t / a_t^2``, where every process is variance
    exploding: ``du/dtau = -(a_t / 2) s(a_t u, t(tau))``. Heun steps, uniform in ``log tau``
    (``steps_per_efold`` per unit of ``log tau``); second-order accurate.
    """
    steps_per_efold = require_int("steps_per_efold", steps_per_efold, minimum=1)
    times = np.sort(as_float_array("times", times))[::-1]
    if times[0] > t_start:
        raise ParameterError("t_start", t_start, f">= the largest time {times[0]:g}")
    tau_now = float(process.tau_from_time(t_start))
    u = np.asarray(x_start, dtype=float) / float(process.signal_scale(t_start))
    out: dict[float, np.ndarray] = {}

    def velocity(u_now: np.ndarray, tau: float) -> np.ndarray:
        t = float(process.time_from_tau(tau))
        a = float(process.signal_scale(t))
        return -0.5 * a * field.score(a * u_now, t)

    for t in times:
        tau_end = float(process.tau_from_time(t))
        count = max(1, int(np.ceil(steps_per_efold * np.log(tau_now / tau_end))))
        grid = np.exp(np.linspace(np.log(tau_now), np.log(tau_end), count + 1))
        for tau0, tau1 in zip(grid[:-1], grid[1:], strict=True):
            h = tau1 - tau0
            k0 = velocity(u, tau0)
            k1 = velocity(u + h * k0, tau1)
            u = u + 0.5 * h * (k0 + k1)
        tau_now = tau_end
        out[float(t)] = u * float(process.signal_scale(t))
    return out


def start_points(n: int, dim: int, process: Process, t_start: float, rng: np.random.Generator,
                 data_variance: float = 1.0, sampler: Callable | None = None) -> np.ndarray:
    """Points at ``t_start``: ``a y + sqrt(D) z`` with ``y`` from ``sampler`` (exact), else
    ``N(0, (a^2 data_variance + D) I)`` (an isotropic approximation of ``p_t``)."""
    a = float(process.signal_scale(t_start))
    noise = float(process.noise_variance(t_start))
    z = rng.standard_normal((n, dim))
    if sampler is not None:
        return a * sampler(n, rng) + np.sqrt(noise) * z
    return np.sqrt(a * a * data_variance + noise) * z


def diagnose_field(field: ScoreField, times: Sequence[float], *, points: int = 8,
                   rng: np.random.Generator, t_start: float | None = None,
                   sampler: Callable | None = None, data_variance: float = 1.0,
                   reference_basis: np.ndarray | None = None, threshold: float = 0.5,
                   route: str = "auto", probes: int | None = None, relative_step: float = 1e-4,
                   steps_per_efold: int = 40) -> list[TimeDiagnostics]:
    """Diagnostics along ``points`` backward trajectories at each of ``times`` (descending).

    Trajectories start at ``t_start`` (default: the largest time) from :func:`start_points` and
    follow :func:`backward_trajectories`; the Jacobian comes from
    :func:`diffphase.validate.jacobians.jacobian` (``route``).
    """
    process = getattr(field, "process", None)
    if process is None:
        raise ParameterError("field.process", None, "a diffphase Process")
    times = np.sort(as_float_array("--times", times))[::-1]
    process.tau_from_time(times)  # validates the times before any work
    points = require_int("--points", points, minimum=1)
    if reference_basis is not None and reference_basis.shape[0] != field.dim:
        raise ParameterError("reference basis rows", reference_basis.shape[0], f"{field.dim}")
    t_start = float(times[0]) if t_start is None else float(t_start)
    x0 = start_points(points, field.dim, process, t_start, rng, data_variance, sampler)
    along = backward_trajectories(field, process, times, x0, t_start,
                                  steps_per_efold=steps_per_efold)
    from .jacobians import available_route

    used = available_route(field) if route == "auto" else route
    results = []
    for t in times:
        jac = jacobian(field, along[float(t)], float(t), route=route, probes=probes, rng=rng,
                       relative_step=relative_step)
        results.append(diagnose_jacobians(jac, float(t), process, threshold=threshold,
                                          reference_basis=reference_basis, route=used))
    return results


def linear_manifold_field(fractions, variances, dim: int, process: str | Process = "ve", *,
                          subspace: str = "random", rotation: float = 0.0,
                          rng: np.random.Generator | None = None):
    """The exact score of linear-manifold data (optionally plus a tangent rotation ``rotation``
    in the plane of the first two tangent basis vectors), with its data and tangent basis.

    Returns ``(field, data, tangent_basis)``.
    """
    proc = get_process(process) if isinstance(process, str) else process
    data = linear_manifold(fractions, variances, dim, subspace=subspace, rng=rng)
    cov = data.covariance()
    basis = orthonormal_basis(np.asarray(data.F))
    if rotation:
        if basis.shape[1] < 2:
            raise ParameterError("--rotation", rotation, "0 when the manifold has dimension < 2")
        score = rotated_gaussian_field(cov, proc, plane_rotation(basis), rotation)
    else:
        score = gaussian_score_field(cov, proc)
    return score, data, basis

