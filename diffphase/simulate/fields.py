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
centered Gaussian data ``J = -(a^2 C + D I)^{-1}`` (:func:`gaussian_score_field`), and a chosen
antisymmetric part can be added (:func:`rotated_gaussian_field`) to give fields whose ``A`` is
known. :func:`linear_manifold_field` pairs the THEORY A data
(:meth:`diffphase.data.laws.LinearGaussian.manifold`) with their exact score and tangent basis.

Requests (what ``diffphase diagnose`` computes). :func:`field_source` builds the field of a user
score or a built-in model (:func:`load_reference` reads a tangent basis);
:func:`prepare_diagnosis` checks a whole request before any work and returns a
:class:`FieldDiagnosis` whose ``run()`` gives the diagnostics; :func:`diagnosis_tables` lays them
out as tidy columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.laws import LinearGaussian
from ..errors import (
    ParameterError,
    as_float_array,
    require_choice,
    require_int,
    require_positive,
)
from ..models import FIELD_SOURCES, JACOBIAN_ROUTES
from ..process import Process
from .integrators import as_process, log_tau_grid, probability_flow, start_points
from .jacobians import (
    CallableScore,
    ScoreField,
    TimeScore,
    available_route,
    jacobian,
    load_callable,
)

# --------------------------------------------------------------------------- exact fields


class LinearField:
    """The linear score field ``s(x; a, D) = J(a, D) x`` with closed-form Jacobian ``J(a, D)``.

    Parameters
    ----------
    matrix_at : ``(a, D) -> (dim, dim)`` Jacobian at the noise level ``(a, D)``.
    dim : ambient dimension.
    """

    jacobian_route = "closed-form"

    def __init__(self, matrix_at: Callable[[float, float], np.ndarray], dim: int,
                 name: str = "linear field"):
        self.matrix_at = matrix_at
        self.dim = require_int("dim", dim, minimum=1)
        self.name = name

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.matrix_at(a, D).T

    def jacobian(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return np.broadcast_to(self.matrix_at(a, D), (x.shape[0], self.dim, self.dim)).copy()


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


def gaussian_score_field(covariance: np.ndarray) -> LinearField:
    """Exact score of centered Gaussian data ``N(0, C)``: ``J(a, D) = -(a^2 C + D I)^{-1}``."""
    c = _check_covariance(covariance)
    eye = np.eye(c.shape[0])

    def matrix_at(a: float, D: float) -> np.ndarray:
        return -np.linalg.inv(float(a) ** 2 * c + float(D) * eye)

    return LinearField(matrix_at, c.shape[0], "exact Gaussian score")


def rotated_gaussian_field(covariance: np.ndarray, generator: np.ndarray,
                           rate: float) -> LinearField:
    """Exact Gaussian score plus a rotation: ``J(a, D) = -(a^2 C + D I)^{-1} + (rate / D) G``.

    ``G`` must be antisymmetric; the normalized Jacobian is ``Jn = -D (a^2 C + D I)^{-1} + rate G``,
    whose antisymmetric part is exactly ``rate G``.
    """
    g = np.asarray(generator, dtype=float)
    if g.shape != np.shape(covariance) or not np.allclose(g, -g.T):
        raise ParameterError("generator", "not antisymmetric or wrong shape",
                             f"an antisymmetric {np.shape(covariance)} matrix")
    base = gaussian_score_field(covariance)

    def matrix_at(a: float, D: float) -> np.ndarray:
        return base.matrix_at(a, D) + (rate / float(D)) * g

    return LinearField(matrix_at, base.dim, "Gaussian score + rotation")


def plane_rotation(basis: np.ndarray, i: int = 0, j: int = 1) -> np.ndarray:
    """Antisymmetric ``u v^T - v u^T`` for columns ``u = basis[:, i]``, ``v = basis[:, j]``."""
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
    u, s, _ = np.linalg.svd(np.asarray(matrix, dtype=float), full_matrices=False)
    rank = int(np.sum(s > tol * max(s.max(initial=0.0), 1e-300)))
    return u[:, :rank]


def linear_manifold_field(fractions, variances, dim: int, *, subspace: str = "random",
                          rotation: float = 0.0, rng: np.random.Generator | None = None):
    """The exact score of linear-manifold data (optionally plus a tangent rotation ``rotation``
    in the plane of the first two tangent basis vectors), with its data and tangent basis.

    Returns ``(field, data, tangent_basis)``; ``data`` is a
    :class:`~diffphase.data.laws.LinearGaussian`.
    """
    data = LinearGaussian.manifold(fractions, variances, dim, subspace=subspace, rng=rng)
    cov = data.covariance()
    basis = orthonormal_basis(np.asarray(data.F))
    if rotation:
        if basis.shape[1] < 2:
            raise ParameterError("--rotation", rotation, "0 when the manifold has dimension < 2")
        return rotated_gaussian_field(cov, plane_rotation(basis), rotation), data, basis
    return gaussian_score_field(cov), data, basis


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
    """Diagnostics of ``Jn = D J`` at one noise level, over ``n`` points (arrays are per point);
    ``t`` is the time of the process when the level came from one (else None)."""

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


def diagnose_jacobians(jac: np.ndarray, a: float, D: float, *, t: float | None = None,
                       threshold: float = 0.5, reference_basis: np.ndarray | None = None,
                       feature_count: int | None = None, route: str = "") -> TimeDiagnostics:
    """All THEORY E diagnostics of the Jacobians ``jac`` (``(n, d, d)``) at the noise level
    ``(a, D)`` (``tau = D / a^2``); ``t`` is only recorded."""
    require_positive("threshold", threshold)
    a, D = require_positive("a", float(a)), require_positive("D", float(D))
    jn = D * np.asarray(jac, dtype=float)
    sv = np.linalg.svd(jn, compute_uv=False)
    eig = np.linalg.eigvals(jn)
    eig = np.take_along_axis(eig, np.argsort(eig.real, axis=-1, kind="stable"), axis=-1)
    blocks, angles = {}, None
    if reference_basis is not None:
        blocks = block_diagnostics(jn, reference_basis)
        k = reference_basis.shape[1] if feature_count is None else feature_count
        features = local_tangent_features(jn, k)
        angles = np.stack([principal_angles(reference_basis, f) for f in features])
    return TimeDiagnostics(None if t is None else float(t), D / (a * a), D, sv, eig,
                           local_dimension_threshold(sv, threshold), local_dimension_gap(sv),
                           nonconservativeness(jn), blocks, angles, route)


def _check_probes(probes, dim: int) -> None:
    if probes is not None and probes > dim:
        raise ParameterError("--probes", probes, f"an integer in [1, {dim}]")


def _check_request(process: Process, times, *, points, t_start, data_variance, threshold,
                   route, probes, relative_step, steps_per_efold) -> np.ndarray:
    """Every option of :func:`diagnose_field` checked before any work; the times, descending."""
    times = np.sort(as_float_array("--times", times))[::-1]
    process.tau_from_time(times)
    require_positive("--threshold", threshold)
    require_positive("--relative-step", relative_step)
    require_positive("--data-variance", data_variance)
    require_int("--points", points, minimum=1)
    require_choice("--route", route, JACOBIAN_ROUTES)
    if probes is not None:
        require_int("--probes", probes, minimum=1)
    require_int("steps_per_efold", steps_per_efold, minimum=1)
    if t_start is not None and t_start < times[0]:
        raise ParameterError("--t-start", t_start, f">= the largest time {times[0]:g}")
    return times


def diagnose_field(field: ScoreField, process: str | Process, times: Sequence[float], *,
                   points: int = 8, rng: np.random.Generator, t_start: float | None = None,
                   sampler: Callable | None = None, data_variance: float = 1.0,
                   reference_basis: np.ndarray | None = None, threshold: float = 0.5,
                   route: str = "auto", probes: int | None = None, relative_step: float = 1e-4,
                   steps_per_efold: int = 40) -> list[TimeDiagnostics]:
    """Diagnostics along ``points`` backward trajectories at each of ``times`` (descending) of
    ``process``.

    Trajectories start at ``t_start`` (default: the largest time) from
    :func:`~diffphase.simulate.integrators.start_points` (``sampler``: exact ``a y + sqrt(D) z``)
    and follow :func:`~diffphase.simulate.integrators.probability_flow` on
    :func:`~diffphase.simulate.integrators.log_tau_grid` (``steps_per_efold``); at each time the
    Jacobian comes from :func:`diffphase.simulate.jacobians.jacobian` (``route``, ``probes``,
    ``relative_step``) at the process's ``(a_t, D_t)``.
    """
    proc = as_process(process)
    times = _check_request(proc, times, points=points, t_start=t_start,
                           data_variance=data_variance, threshold=threshold, route=route,
                           probes=probes, relative_step=relative_step,
                           steps_per_efold=steps_per_efold)
    _check_probes(probes, field.dim)
    if reference_basis is not None and reference_basis.shape[0] != field.dim:
        raise ParameterError("reference basis rows", reference_basis.shape[0], f"{field.dim}")
    t_start = float(times[0]) if t_start is None else float(t_start)
    x0 = start_points(int(points), field.dim, proc, t_start, rng, data_variance, sampler)
    flow = probability_flow(field.score, x0, proc,
                            log_tau_grid(proc, t_start, times, steps_per_efold),
                            record_times=times)
    along = dict(zip(flow.times.tolist(), flow.states, strict=True))
    used = available_route(field) if route == "auto" else route
    results = []
    for t in times:
        a, D = float(proc.signal_scale(t)), float(proc.noise_variance(t))
        jac = jacobian(field, along[float(t)], a, D, route=route, probes=probes, rng=rng,
                       relative_step=relative_step)
        results.append(diagnose_jacobians(jac, a, D, t=float(t), threshold=threshold,
                                          reference_basis=reference_basis, route=used))
    return results


# --------------------------------------------------------------------------- requests
@dataclass
class FieldSource:
    """A score field to diagnose: the field, a label, the data sampler ``sample(n, rng)`` when
    the data law is known (exact start points), and a reference tangent basis when known."""

    field: ScoreField
    label: str
    sampler: Callable | None = None
    reference_basis: np.ndarray | None = None


def load_reference(reference, dim: int) -> np.ndarray:
    """Orthonormal basis of the span of a ``(dim, m)`` matrix (``1 <= m < dim``), given as an
    array or as the path of a ``.npy`` file."""
    if isinstance(reference, (str, Path)):
        try:
            reference = np.load(reference)
        except (OSError, ValueError) as exc:
            raise ParameterError("--reference", str(reference),
                                 f"a readable .npy file ({exc})") from None
    matrix = np.atleast_2d(np.asarray(reference, dtype=float))
    if matrix.ndim != 2 or matrix.shape[0] != dim or matrix.shape[1] >= dim:
        raise ParameterError("--reference shape", matrix.shape, f"({dim}, m) with 1 <= m < {dim}")
    return orthonormal_basis(matrix)


def field_source(process: str | Process, *, score: str | Callable | None = None,
                 model: str | None = None, dim: int | None = None,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace: str = "random",
                 rotation: float = 0.0, samples: int = 200, reference=None,
                 device: str = "cpu", rng: np.random.Generator | None = None) -> FieldSource:
    """The field of a user score or of a built-in model (exactly one of ``score``, ``model``).

    ``score`` is a callable ``f(x, t)`` with ``t`` a time of ``process`` (wrapped in
    :class:`~diffphase.simulate.jacobians.TimeScore` and checked by
    :class:`~diffphase.simulate.jacobians.CallableScore`), or its import path
    ``"package.module:function"``; ``dim`` is then required, ``reference`` optional (see
    :func:`load_reference`), and the callable is tried once on two zero points at ``tau = 1``
    (``ddpm``: step 1) so that a wrong shape or NaN fails before any work. ``model`` is
    ``"linear-manifold"`` (the exact score of :func:`linear_manifold_field`, ``dim`` default 16)
    or ``"empirical"`` (the empirical score of ``samples`` points of the same manifold, on
    ``device``: the only source computed on a GPU).
    """
    proc = as_process(process)
    rng = np.random.default_rng() if rng is None else rng
    if (score is None) == (model is None):
        raise ParameterError("--score/--model", f"{score}/{model}", "exactly one of the two")
    if device == "gpu" and model != "empirical":
        # only the empirical score has a cupy path; the others would silently run on the CPU
        raise ParameterError("--device", device, "cpu or auto unless --model empirical (the only "
                             "score computed on a GPU)")
    if score is not None:
        if dim is None:
            raise ParameterError("--dim", None, "an integer >= 1 (required with --score)")
        name = score if isinstance(score, str) else getattr(score, "__qualname__", repr(score))
        function = load_callable(score) if isinstance(score, str) else score
        user = CallableScore(TimeScore(function, proc), dim, name=f"--score {name}")
        t_probe = float(proc.time_from_tau(1.0)) if proc.name != "ddpm" else 1.0
        user.score(np.zeros((2, user.dim)), float(proc.signal_scale(t_probe)),
                   float(proc.noise_variance(t_probe)))  # shape/NaN errors before any work
        basis = None if reference is None else load_reference(reference, user.dim)
        return FieldSource(user, f"user score {name}", None, basis)
    require_choice("--model", model, FIELD_SOURCES)
    dim = 16 if dim is None else require_int("--dim", dim, minimum=2)
    if rotation and model != "linear-manifold":
        raise ParameterError("--rotation", rotation, "0 unless --model linear-manifold")
    exact, data, basis = linear_manifold_field(fractions, variances, dim, subspace=subspace,
                                               rotation=rotation, rng=rng)
    if model == "empirical":
        from .empirical import EmpiricalScore

        samples = require_int("--samples", samples, minimum=2)
        return FieldSource(EmpiricalScore(data.sample(samples, rng), device),
                           f"empirical score of {samples} linear-manifold points", data.sample,
                           basis)
    label = "exact linear-manifold score" + (f" + rotation {rotation:g}" if rotation else "")
    return FieldSource(exact, label, data.sample, basis)


@dataclass
class FieldDiagnosis:
    """A checked request (from :func:`prepare_diagnosis`): ``run()`` gives the diagnostics."""

    source: FieldSource
    process: Process
    times: np.ndarray  # descending
    rng: np.random.Generator
    options: dict  # the remaining keyword options of diagnose_field

    def run(self) -> list[TimeDiagnostics]:
        return diagnose_field(self.source.field, self.process, self.times, rng=self.rng,
                              sampler=self.source.sampler,
                              reference_basis=self.source.reference_basis, **self.options)


def prepare_diagnosis(process: str | Process, times: Sequence[float], *,
                      rng: np.random.Generator, points: int = 8, t_start: float | None = None,
                      data_variance: float = 1.0, threshold: float = 0.5, route: str = "auto",
                      probes: int | None = None, relative_step: float = 1e-4,
                      steps_per_efold: int = 40, **source) -> FieldDiagnosis:
    """Check the options of :func:`diagnose_field`, then build the source
    (:func:`field_source` with the keywords ``source``), then check ``probes`` against its
    dimension: every input error is raised here, before any heavy work."""
    proc = as_process(process)
    options = {"points": points, "t_start": t_start, "data_variance": data_variance,
               "threshold": threshold, "route": route, "probes": probes,
               "relative_step": relative_step, "steps_per_efold": steps_per_efold}
    times = _check_request(proc, times, **options)
    built = field_source(proc, rng=rng, **source)
    _check_probes(probes, built.field.dim)
    return FieldDiagnosis(built, proc, times, rng, options)


#: per-time values of :meth:`TimeDiagnostics.summary` in the per-time table, when present
SUMMARY_COLUMNS = ("local_dimension", "local_dimension_gap", "local_dimension_mean",
                   "nonconservativeness", "tangent_nonconservativeness",
                   "normal_nonconservativeness", "coupling", "max_principal_angle")


def diagnosis_tables(summaries: Sequence[dict], time_column: str = "t") -> tuple[dict, dict]:
    """Tidy columns of :meth:`TimeDiagnostics.summary` dicts: ``(spectra, per_time)``.

    ``spectra`` has one row per time and singular-value index (normalized singular values and
    eigenvalues, point-averaged); ``per_time`` one row per time (:data:`SUMMARY_COLUMNS`; NaN
    where a value is undefined).
    """
    d = len(summaries[0]["singular_values"])
    t = [s["t"] for s in summaries]
    tau = [s["tau"] for s in summaries]
    spectra = {
        time_column: np.repeat(t, d), "tau": np.repeat(tau, d),
        "index": np.tile(np.arange(1, d + 1), len(summaries)),
        "singular_value_normalized": np.concatenate([s["singular_values"] for s in summaries]),
        "eigenvalue_normalized_real": np.concatenate([s["eigenvalues_real"] for s in summaries]),
        "eigenvalue_normalized_imag": np.concatenate([s["eigenvalues_imag"] for s in summaries]),
    }
    per_time = {time_column: t, "tau": tau}
    for key in SUMMARY_COLUMNS:
        if key in summaries[0]:
            per_time[key] = [np.nan if s[key] is None else s[key] for s in summaries]
    return spectra, per_time
