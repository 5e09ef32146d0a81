"""Compiled solvers of the memorization model (THEORY B): collapse, speciation, cloning, REM.

Contract
--------
* :class:`CovarianceSpectrum` holds a covariance spectrum as nodes ``lambda_j`` and per-dimension
  weights ``w_j`` with ``(1/d) sum_i f(lambda_i) = sum_j w_j f(lambda_j)`` (zero eigenvalues left
  out): isotropic data, several groups (axis-aligned: exact multiplicities ``round(alpha_k d)``;
  random subspace: THEORY A's spectrum by quadrature), explicit eigenvalues, a continuous law of
  latent variances (:meth:`CovarianceSpectrum.from_law`).
* :func:`collapse_tau` solves ``sum_j w_j (1/2) ln(1 + lambda_j/tau) = ln N / d`` (THEORY B) for
  a batch of ``(N, d, spectrum)`` points with a compiled residual (sympy term, numba sum) and the
  batched bracketed root finder, in ``ln tau`` between the closed-form brackets of
  :func:`~diffphase.theory.memorization.collapse_log_tau_bracket`; per-point convergence flags
  are returned, never a silent NaN.
* :func:`speciation_tau` is ``Lambda - 1`` (``t_S = (1/2) ln Lambda`` in ``ou``); NaN with
  ``exists=False`` when ``Lambda <= 1`` (no speciation at positive time).
* :func:`cloning_probability` is the compiled one-dimensional integral of THEORY B by
  Gauss–Legendre quadrature on the window where the integrand lives.
* :func:`rem_critical_tau` solves the REM condition ``V(tau) = 2 ln N`` for any probe; the closed
  form for a probe ``sqrt(tau) v`` is used for per-direction and per-group critical times.

Extremes: a random-subspace spectrum whose quadrature had unconverged density nodes is flagged
(:attr:`CovarianceSpectrum.converged`) and so are the collapse points computed from it; REM times
are computed in units of a power of two near the data's scale (exact rescaling), so variances
from ``1e-300`` to ``1e300`` neither over- nor underflow; a ``tau_c`` beyond the largest float is
flagged. Public functions check their arguments (:class:`~diffphase.errors.ParameterError`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import (
    ParameterError,
    as_float_array,
    require_array,
    require_choice,
    require_count,
    require_in_range,
    require_int,
    require_nonnegative,
    require_positive,
)
from ..models import SUBSPACES
from ..process import get_process
from .codegen import ScalarKernel, Template, compile_module
from .roots import RootResult, bracketed_root


# ----------------------------------------------------------------------------- templates
def collapse_residual_batch(log_tau, nodes, weights, log_n_per_d):  # pragma: no cover - numba
    """``sum_j w_j term(lambda_j, tau) - ln N / d`` for each row (numba template)."""
    out = np.empty(log_tau.shape[0])
    for g in range(log_tau.shape[0]):
        tau_g = math.exp(log_tau[g])
        total = 0.0
        for j in range(nodes.shape[1]):
            if weights[g, j] > 0.0:
                total += weights[g, j] * collapse_term(nodes[g, j], tau_g)  # noqa: F821
        out[g] = total - log_n_per_d[g]
    return out


def collapse_root_batch(log_lo, log_hi, nodes, weights, log_n_per_d, xtol, rtol, maxiter,
                        root, converged, iterations):  # pragma: no cover - numba
    """Roots in ``ln tau`` of each row's collapse equation ``S(tau) = ln N / d`` (``S`` the
    weighted sum of terms) inside ``[log_lo, log_hi]`` (numba template): Newton on
    ``ln S - ln(ln N / d)`` with the analytic slope of the terms, kept inside the bracket
    (bisection when a step leaves it), from ``log_hi``. In that form the equation is close to
    linear in ``ln tau`` both where ``tau`` is small (``S ~ (alpha/2)(mean_log - ln tau)``) and
    where it is large (``S ~ trace / (2 tau)``, whose root is ``log_hi``), so a few steps
    suffice at every scale (``ln N / d > 0``). Converged: a Newton step inside the bracket no
    larger than ``max(xtol + rtol |u|, 4 eps |u|)``, a residual exactly 0, or a bracket that
    narrow whose ends were both evaluated with opposite signs. A row whose residual is not
    finite, or without a sign change in its bracket, is not converged (root NaN)."""
    eps = 2.220446049250313e-16
    for g in range(log_lo.shape[0]):
        lo = log_lo[g]
        hi = log_hi[g]
        u = hi
        log_rate = math.log(log_n_per_d[g])
        seen_above = False  # a point with residual > 0 (the lower end) was evaluated
        seen_below = False
        ok = False
        it = 0
        while it < maxiter:
            it += 1
            tau_g = math.exp(u)
            total = 0.0
            slope = 0.0
            for j in range(nodes.shape[1]):
                if weights[g, j] > 0.0:
                    term, dterm = collapse_term_slope(nodes[g, j], tau_g)  # noqa: F821
                    total += weights[g, j] * term
                    slope += weights[g, j] * dterm
            value = math.log(total) - log_rate if total > 0.0 else -math.inf
            slope = slope / total
            if value == 0.0:
                ok = True
                break
            if value > 0.0:
                lo = u
                seen_above = True
            elif value < 0.0:
                hi = u
                seen_below = True
            else:  # NaN
                break
            tol = max(xtol + rtol * abs(u), 4.0 * eps * abs(u))
            step = -value / slope
            new = u + step
            if abs(step) <= tol and lo <= new <= hi:  # False for a NaN step
                u = new
                ok = True
                break
            if lo < new < hi:
                u = new
            else:
                u = 0.5 * (lo + hi)
            if hi - lo <= tol:
                ok = seen_above and seen_below
                break
        iterations[g] = it
        converged[g] = ok
        root[g] = u if ok else np.nan


def cloning_batch(kappas, nodes, node_weights):  # pragma: no cover - numba
    """``E_z[q^2 + (1 - q)^2] = 1 - E_z[1 - same_cluster]`` for each ``kappa``, with per-``kappa``
    quadrature nodes ``z`` and weights (rows) for ``N(0, 1)`` (numba template)."""
    out = np.empty(kappas.shape[0])
    for i in range(kappas.shape[0]):
        total = 0.0
        for j in range(nodes.shape[1]):
            total += node_weights[i, j] * (1.0 - same_cluster(kappas[i], nodes[i, j]))  # noqa: F821
        out[i] = 1.0 - total
    return out


@functools.lru_cache(maxsize=1)
def kernels():
    """The generated numba module (collapse term, cloning integrand, batch templates); a warm
    process loads it without building the expressions (:func:`~.codegen.compile_module`)."""
    return compile_module("memorization", _kernel_specs,
                          ("theory", "solvers/memorization.py"))


def _kernel_specs():
    from ..theory import memorization as theory

    specs = [ScalarKernel.of("collapse_term", (theory.lam, theory.tau), theory.collapse_term()),
             ScalarKernel.of("collapse_term_slope", (theory.lam, theory.tau),
                             (theory.collapse_term(), theory.collapse_term_log_slope())),
             ScalarKernel.of("same_cluster", (theory.kappa, theory.zvar),
                             theory.cloning_same_cluster_given_z())]
    return specs, [Template(collapse_residual_batch), Template(collapse_root_batch),
                   Template(cloning_batch)]


def _closed_forms(theory) -> dict:
    """name -> (symbolic expression builder, argument symbols)"""
    return {
        "collapse_isotropic": (theory.collapse_tau_isotropic,
                               (theory.sigma2, theory.n_train, theory.m_dim)),
        "rem_displaced": (theory.rem_critical_tau_displaced,
                          (theory.rem_C, theory.rem_S4, theory.g_norm, theory.n_train)),
        "rem_residual": (theory.rem_residual, (theory.tau, theory.rem_A, theory.rem_B, theory.rem_C,
                                               theory.rem_S4, theory.g_norm, theory.n_train)),
        "entropy_residual": (theory.entropy_form_residual,
                             (theory.h_dim, theory.tau, theory.n_train, theory.d_dim)),
        "kappa": (theory.mixture_kappa, (theory.tau, theory.m_norm2, theory.sigma2)),
        "collapse_bracket": (theory.collapse_log_tau_bracket,
                             (theory.w_total, theory.w_trace, theory.w_mean_log, theory.rate)),
        "speciation_tau": (theory.speciation_tau, (theory.big_lambda,)),
        "participation_ratio": (theory.rem_participation_ratio, (theory.tau, theory.tau_c)),
        "tau_c_of_participation": (theory.rem_critical_tau_of_participation,
                                   (theory.tau, theory.participation)),
    }


@functools.cache
def _closed_form(name: str):
    """numpy function of one closed form of :mod:`diffphase.theory.memorization` by name (all
    of them in one generated module, which a warm process loads without sympy)."""
    return getattr(_closed_form_module(), name)


@functools.lru_cache(maxsize=1)
def _closed_form_module():
    def build():
        from ..theory import memorization as theory

        return [ScalarKernel.of(name, args, builder())
                for name, (builder, args) in _closed_forms(theory).items()], []

    return compile_module("memorization_formulas", build, ("theory", "solvers/memorization.py"),
                          backend="numpy")


def entropy_residual(entropy_per_dim, tau, n_train, dim) -> np.ndarray:
    """[DR]'s collapse residual ``ln N / d + (1/2) ln(2 pi e tau) - h`` from the entropy per
    dimension ``h`` of the noised law at ``tau`` (any data law; negative below ``tau_C``);
    finite ``h``, finite ``tau > 0``, ``n_train >= 2``, ``dim >= 1``."""
    return _closed_form("entropy_residual")(
        require_array("entropy_per_dim", entropy_per_dim),
        require_array("tau", tau, low=0, closed=(False, True)),
        require_in_range("n_train", n_train, 2, np.inf), require_in_range("dim", dim, 1, np.inf))


def collapse_tau_isotropic(variance, n_train, n_nonzero):
    """Closed form ``tau_C = sigma^2 / (N^(2/m) - 1)`` (sympy-derived; for tests and reference):
    finite ``variance > 0``, ``n_train >= 2``, ``n_nonzero >= 1``."""
    return _closed_form("collapse_isotropic")(
        require_array("variance", variance, low=0, closed=(False, True)),
        require_array("n_train", n_train, low=2), require_array("n_nonzero", n_nonzero, low=1))


# ----------------------------------------------------------------------------- spectra
@dataclass(frozen=True)
class CovarianceSpectrum:
    """Nonzero covariance eigenvalues ``nodes`` with per-dimension ``weights`` at dimension ``dim``.

    ``largest`` is the top of the spectrum (the upper bulk edge for a random subspace).
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    largest: float
    label: str = ""
    #: False when the spectrum's quadrature had nodes where the density solver did not converge
    #: (results computed from it are flagged as not converged)
    converged: bool = True

    @classmethod
    def from_eigenvalues(cls, eigenvalues, label: str = "eigenvalues") -> CovarianceSpectrum:
        """All ``d`` eigenvalues of a covariance (zeros allowed, they do not count)."""
        eig = as_float_array("eigenvalues", eigenvalues)
        if np.any(eig < 0):
            raise ParameterError("eigenvalues", eig, ">= 0 (a covariance spectrum)")
        keep = eig > 0
        if not keep.any():
            raise ParameterError("eigenvalues", eig, "at least one > 0")
        return cls(eig[keep], np.full(keep.sum(), 1.0 / eig.size), eig.size,
                   float(eig.max()), label)

    @classmethod
    def from_groups(cls, fractions, variances, dim: int, subspace: str = "orthonormal",
                    n_nodes: int = 128) -> CovarianceSpectrum:
        """Latent groups (THEORY A). ``orthonormal``: eigenvalues are the variances with
        multiplicities ``round(alpha_k d)`` (each >= 1); ``random``: the ``d -> infinity``
        spectrum of ``F Sigma F^T`` with iid ``N(0, 1/d)`` entries of ``F``."""
        from .spectral import VarianceLaw

        return cls.from_law(VarianceLaw.from_groups(fractions, variances), dim, subspace,
                            n_nodes, exact_counts=True)

    @classmethod
    def from_law(cls, law, dim: int, subspace: str = "orthonormal", n_nodes: int = 128,
                 exact_counts: bool = False) -> CovarianceSpectrum:
        """Any :class:`~diffphase.solvers.spectral.VarianceLaw`, including a continuous law
        (``VarianceLaw.from_density``). ``orthonormal``: the eigenvalues are the latent variances
        with weights ``alpha_k`` (multiplicities ``round(alpha_k d)`` when ``exact_counts``);
        ``random``: THEORY A's ``d -> infinity`` spectrum of ``C`` by quadrature."""
        from .spectral import as_law, covariance_spectrum_quadrature, spectrum_edges

        law = as_law(law)
        dim = require_int("dim", dim, minimum=1)
        n_nodes = require_count("n_nodes", n_nodes, 2, 10**5)
        require_choice("subspace", subspace, SUBSPACES)
        if subspace == "orthonormal":
            weights = law.fractions.copy()
            if exact_counts:
                counts = np.rint(law.fractions * dim)
                if np.any(counts < 1) or counts.sum() > dim:
                    raise ParameterError("fractions", law.fractions.tolist(),
                                         f"multiplicities round(fraction*dim) in [1, dim={dim}]")
                weights = counts / dim
            return cls(law.variances.copy(), weights, dim, float(law.variances.max()),
                       "orthonormal")
        nodes, weights, failed = covariance_spectrum_quadrature(law, n_nodes=n_nodes)
        top = float(spectrum_edges(law)[-1, 1])
        return cls(nodes, weights, dim, top, "random", converged=failed == 0)

    @property
    def trace_per_dim(self) -> float:
        return float(np.sum(self.weights * self.nodes))

    @property
    def fourth_sum(self) -> float:
        """``sum_i lambda_i^2`` (``S4`` of the REM criterion with ``s_i^2 = lambda_i``)."""
        return float(self.dim * np.sum(self.weights * self.nodes**2))


# ----------------------------------------------------------------------------- collapse
class CollapseResult(RootResult):
    """A :class:`~diffphase.solvers.roots.RootResult` whose root is the collapse ``tau`` (NaN
    where not converged), with per-point flags and iterations."""

    @property
    def tau(self) -> np.ndarray:
        return self.root


def _stack(spectra: list[CovarianceSpectrum]) -> tuple[np.ndarray, np.ndarray]:
    width = max(s.nodes.size for s in spectra)
    nodes = np.ones((len(spectra), width))
    weights = np.zeros((len(spectra), width))
    for i, s in enumerate(spectra):
        nodes[i, :s.nodes.size] = s.nodes
        weights[i, :s.nodes.size] = s.weights
    return nodes, weights


def collapse_tau(spectrum, n_train, dim=None) -> CollapseResult:
    """Collapse noise ``tau_C`` solving ``(1/2) sum_i ln(1 + lambda_i / tau_C) = ln N``.

    Parameters
    ----------
    spectrum : a :class:`CovarianceSpectrum` or a list of them (one per point).
    n_train : N (>= 2, finite), scalar or array broadcast against the spectra (empty: an
        empty result).
    dim : optional dimensions (finite, >= 1) overriding each spectrum's (the per-dimension law
        is kept).

    A point whose spectrum is flagged (:attr:`CovarianceSpectrum.converged` False) is flagged.
    """
    spectra = [spectrum] if isinstance(spectrum, CovarianceSpectrum) else list(spectrum)
    if not spectra or not all(isinstance(item, CovarianceSpectrum) for item in spectra):
        raise ParameterError("spectrum", spectrum, "a CovarianceSpectrum or a non-empty list")
    n = np.atleast_1d(require_array("n_train", n_train, low=2))  # one point never generalizes
    dims = (np.array([s.dim for s in spectra], float) if dim is None
            else np.atleast_1d(require_array("dim", dim, low=1)))
    try:
        shape = np.broadcast_shapes(n.shape, dims.shape,
                                    (len(spectra),) if len(spectra) > 1 else ())
    except ValueError:
        raise ParameterError("n_train", n.shape, "a shape broadcastable with dim and the "
                             "spectra") from None
    n_b, d_b = np.broadcast_to(n, shape).ravel(), np.broadcast_to(dims, shape).ravel()
    if n_b.size == 0:
        return CollapseResult(np.empty(shape), np.empty(shape, bool), np.empty(shape, np.int64))
    if len(spectra) == 1:
        spectra = spectra * n_b.size
    nodes, weights = _stack(spectra)
    log_n_per_d = np.log(n_b) / d_b
    alpha = weights.sum(axis=1)
    trace = np.sum(weights * nodes, axis=1)
    mean_log = np.sum(weights * np.log(nodes), axis=1) / alpha
    # brackets (theory): ln(1+x) <= x gives f(tau_hi) <= 0; ln(1+x) >= ln x gives f(tau_lo) >= 0
    log_lo, log_hi = _closed_form("collapse_bracket")(alpha, trace, mean_log, log_n_per_d)
    log_hi = log_hi + 1e-9
    log_lo = np.minimum(log_lo, log_hi - 1e-6) - 1e-9
    root = collapse_log_tau_roots(nodes, weights, log_n_per_d, log_lo, log_hi)
    converged = root.converged & np.array([item.converged for item in spectra])
    tau = np.where(converged, np.exp(root.root), np.nan)
    return CollapseResult(tau.reshape(shape), converged.reshape(shape),
                          root.iterations.reshape(shape))


def collapse_log_tau_roots(nodes, weights, log_n_per_d, log_lo, log_hi, *, xtol: float = 1e-13,
                           rtol: float = 1e-15, maxiter: int = 100) -> RootResult:
    """Roots in ``ln tau`` of ``sum_j w_j term(lambda_j, tau) = ln N / d``, one per row of
    ``nodes`` and ``weights`` (``(points, width)``; zero weights are skipped), inside the brackets
    ``[log_lo, log_hi]`` (``(points,)``): the compiled, safeguarded Newton of the
    ``collapse_root_batch`` template with the sympy slope of the term. Rows without a sign change
    in their bracket or with a non-finite residual are flagged (root NaN)."""
    nodes = np.ascontiguousarray(nodes, dtype=float)
    weights = np.ascontiguousarray(weights, dtype=float)
    rows = nodes.shape[0]
    vectors = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=float), (rows,)))
               for v in (log_n_per_d, log_lo, log_hi)]
    root, converged = np.empty(rows), np.empty(rows, dtype=np.bool_)
    iterations = np.empty(rows, dtype=np.int64)
    kernels().collapse_root_batch(vectors[1], vectors[2], nodes, weights, vectors[0],
                                  float(xtol), float(rtol), int(maxiter), root, converged,
                                  iterations)
    return RootResult(root, converged, iterations)


def collapse_residual(spectrum: CovarianceSpectrum, n_train: float, tau) -> np.ndarray:
    """``(1/d)[(1/2) sum_i ln(1 + lambda_i/tau) - ln N]`` at the given ``tau`` values (finite,
    ``> 0``; flattened), ``n_train >= 2``."""
    tau = np.atleast_1d(require_array("tau", tau, low=0, closed=(False, True))).ravel()
    n_train = require_in_range("n_train", n_train, 2, np.inf)
    module = kernels()
    nodes, weights = _stack([spectrum] * tau.size)
    return module.collapse_residual_batch(np.log(tau), nodes, weights,
                                          np.full(tau.size, np.log(n_train) / spectrum.dim))


# ----------------------------------------------------------------------------- speciation
def speciation_tau(largest_eigenvalue) -> tuple[np.ndarray, np.ndarray]:
    """``(tau_S, exists)``: ``tau_S = Lambda - 1`` where ``Lambda > 1``, NaN otherwise (flagged by
    ``exists``); ``Lambda`` finite ``> 0``."""
    lam_max = require_array("largest_eigenvalue", largest_eigenvalue, low=0, closed=(False, True))
    tau_s = _closed_form("speciation_tau")(lam_max)
    exists = lam_max > 1
    return np.where(exists, tau_s, np.nan), exists


def process_time(tau, process: str) -> np.ndarray:
    """Time of ``process`` (``ou`` or ``ve``) at noise ``tau``; NaN stays NaN."""
    proc = get_process(process)
    tau = np.asarray(tau, dtype=float)
    out = np.full(tau.shape, np.nan)
    ok = np.isfinite(tau) & (tau > 0)
    out[ok] = proc.time_from_tau(tau[ok])
    return out


# ----------------------------------------------------------------------------- cloning
def mixture_kappa(tau, m_norm2: float, sigma2: float) -> np.ndarray:
    """``kappa = |m|^2 / (tau + sigma^2)``: class signal-to-noise of the noised mixture (finite
    ``tau >= 0``, ``m_norm2 > 0``, ``sigma2 > 0``)."""
    return _closed_form("kappa")(require_array("tau", tau, low=0),
                                 require_positive("m_norm2", m_norm2),
                                 require_positive("sigma2", sigma2))


def cloning_probability(tau, m_norm2: float, sigma2: float, n_nodes: int = 200) -> np.ndarray:
    """Probability that two copies cloned at noise ``tau`` end in the same cluster of the
    two-Gaussian mixture ``+-m`` (variance ``sigma^2``): ``E_z[q^2 + (1-q)^2]`` (THEORY B)."""
    tau = require_array("tau", tau, low=0, closed=(False, True))
    require_positive("m_norm2", m_norm2)
    require_positive("sigma2", sigma2)
    n_nodes = require_count("n_nodes", n_nodes, 8, 10**5)
    kappas = np.atleast_1d(mixture_kappa(tau, m_norm2, sigma2)).ravel()
    nodes, weights = _cloning_rule(kappas, n_nodes)
    return kernels().cloning_batch(kappas, nodes, weights).reshape(tau.shape)


def _cloning_rule(kappas: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre in ``w = kappa + sqrt(kappa) z`` on the window where both the Gaussian
    (14 standard deviations) and ``sech^2 w`` (``|w| <= 25``, below 1e-21) matter; returns ``z``
    nodes and weights including the Gaussian density, one row per ``kappa``."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    root = np.sqrt(kappas)
    lo = np.maximum(-25.0, kappas - 14 * root)
    hi = np.maximum(np.minimum(25.0, kappas + 14 * root), lo)
    wn = 0.5 * (hi - lo)[:, None] * x[None, :] + 0.5 * (hi + lo)[:, None]
    z = (wn - kappas[:, None]) / root[:, None]
    dens = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi) / root[:, None]
    return z, 0.5 * (hi - lo)[:, None] * w[None, :] * dens


# ----------------------------------------------------------------------------- REM
def rem_critical_tau_displaced(direction_variance, fourth_sum, n_train, normalized: bool):
    """``tau_c`` of the REM criterion at a probe ``sqrt(tau) v`` (unit ``v`` in a direction of
    variance ``s^2``: ``C = s^2``); ``g = 0`` for sphere-normalized data, ``1`` otherwise.
    Finite ``s^2 >= 0`` and ``fourth_sum >= 0``, not both 0; ``n_train >= 2``."""
    s2 = require_array("direction_variance", direction_variance, low=0)
    n = require_array("n_train", n_train, low=2)
    fourth_sum = require_nonnegative("fourth_sum", fourth_sum)
    g = 0.0 if normalized else 1.0
    # in units of the power of two nearest the scale (tau_c scales with it; exact), so that
    # C^2 and S4 neither over- nor underflow
    scale = max(float(np.max(s2, initial=0.0)), math.sqrt(fourth_sum))
    unit = float(2.0 ** np.round(np.log2(scale))) if scale > 0 else 1.0
    return unit * _closed_form("rem_displaced")(s2 / unit, fourth_sum / unit / unit, g, n)


def latent_direction_variance(variances, spectrum: CovarianceSpectrum) -> np.ndarray:
    """Data variance along one latent direction of each group, mapped into ``R^d`` (the probe
    direction of a group's REM critical time): the latent variance ``sigma_k^2`` on orthonormal
    subspaces; ``sigma_k^2 + tr C / d`` on random ones (``d -> infinity``: with
    ``u = F e_j / |F e_j|``, ``|F e_j|^2 -> 1`` and ``u . F e_l ~ N(0, 1/d)`` for ``l != j``, so
    ``u^T C u -> sigma_j^2 + sum_l sigma_l^2 / d``). The other groups' directions leak into a
    random one at order one, not ``1/d``."""
    var = as_float_array("variances", variances)
    if np.any(var <= 0):
        raise ParameterError("variances", var, "each > 0")
    return var + (spectrum.trace_per_dim if spectrum.label == "random" else 0.0)


def sphere_normalized_moments(probe_variances, spectrum: CovarianceSpectrum,
                              step: float = 0.02) -> tuple[np.ndarray, float]:
    """Second moments of Gaussian data ``y ~ N(0, C)`` normalized to the unit sphere.

    With ``1/|y|^2 = int_0^inf exp(-t |y|^2) dt``, for a unit direction ``u``:
    ``E[(u.y)^2 / |y|^2] = int_0^inf det(I + 2tC)^(-1/2) u^T C (I + 2tC)^(-1) u dt``, so the
    normalized covariance has the eigenvectors of ``C`` and the eigenvalues
    ``m(lambda) = int_0^inf det(I + 2tC)^(-1/2) lambda / (1 + 2 t lambda) dt`` (they sum to 1).
    Returns ``(m(probe_variances), sum_i m(lambda_i)^2)``: the probe directions' moments and the
    ``S4`` of the normalized law. Exact for a probe along an eigen-direction of ``C`` (every
    latent direction of an orthonormal subspace); a probe that is not one (a latent direction of
    a random subspace) is treated as one with its variance ``u^T C u``, which is right to leading
    order in ``1/d``. The integral is the trapezoid rule in ``ln t`` (exponentially accurate:
    the integrand is analytic and decays exponentially at both ends), the variances in units of
    the largest eigenvalue (the moments are scale-free).
    """
    probe = as_float_array("probe_variances", probe_variances)
    if np.any(probe <= 0):
        raise ParameterError("probe_variances", probe.tolist(), "each > 0")
    unit = spectrum.largest
    nodes, counts = spectrum.nodes / unit, spectrum.weights * spectrum.dim
    rank = float(counts.sum())
    lowest = min(float(nodes.min()), float(probe.min()) / unit)
    # t lambda_max below e^-40: the integrand is below e^-40; past the top, det^-1/2 ~ t^-rank/2
    log_t = np.arange(-40.0, math.log(1.0 / lowest) + 80.0 / rank + 10.0, step)
    t = np.exp(log_t)
    log_det = np.zeros_like(t)
    for start in range(0, nodes.size, 512):  # memory: len(t) x 512 at a time
        chunk = slice(start, start + 512)
        log_det += np.log1p(2.0 * t[:, None] * nodes[None, chunk]) @ counts[chunk]
    weight = step * t * np.exp(-0.5 * log_det)  # dt = t d(ln t)

    def moment(lam):
        return (weight[:, None] * lam[None, :] / (1.0 + 2.0 * t[:, None] * lam[None, :])).sum(0)

    eigen_moments = np.concatenate([moment(nodes[i:i + 512]) for i in range(0, nodes.size, 512)])
    return moment(probe / unit), float(np.sum(counts * eigen_moments**2))


def rem_group_taus(variances, spectrum: CovarianceSpectrum, n_train
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group, ``(direction variance, REM tau_c raw, REM tau_c sphere)`` at a probe
    ``sqrt(tau) v`` along a latent direction of the group (:func:`latent_direction_variance`);
    sphere-normalized data use the second moments of the normalized law
    (:func:`sphere_normalized_moments`: exact on orthonormal subspaces, leading order in ``1/d``
    along a latent direction of a random one). Rows: groups;
    columns (for an array ``n_train``): its values.

    Computed in units of the power of two nearest the largest eigenvalue (``tau_c`` scales with
    the variances; the rescaling is exact), so spectra at any scale neither over- nor underflow
    (``S4`` and ``(E|y|^2)^2`` are squares of the scale)."""
    along = latent_direction_variance(variances, spectrum)
    n = np.atleast_1d(require_array("n_train", n_train, low=2))[None, :]
    unit = float(2.0 ** np.round(np.log2(spectrum.largest)))
    scaled = along[:, None] / unit
    fourth = float(spectrum.dim * np.sum(spectrum.weights * (spectrum.nodes / unit) ** 2))
    raw = unit * rem_critical_tau_displaced(scaled, fourth, n, False)
    along_sphere, fourth_sphere = sphere_normalized_moments(along, spectrum)
    sphere = rem_critical_tau_displaced(along_sphere[:, None], fourth_sphere, n, True)
    return along, raw, sphere


def rem_critical_tau(stds, n_train: float, direction, probe=None, normalized: bool = False
                     ) -> RootResult:
    """General REM ``tau_c`` at ``x(tau) = probe + sqrt(tau) direction`` for axis-aligned data of
    per-direction standard deviations ``stds`` (finite, ``>= 0``, one ``> 0``; one root per
    direction row; ``n_train >= 2``).

    ``direction``: (d,) or (K, d) finite; ``probe``: (d,) or None (origin). Roots are bracketed
    in ``ln tau`` in ``[-60, 60]``; rows that do not converge there are solved again in units of
    the largest standard deviation (``V`` is invariant under ``s, x0 -> s/u, x0/u`` with
    ``tau -> tau/u^2``) over ``[-200, 200]``; what still fails is flagged.
    """
    s = as_float_array("stds", stds)
    if np.any(s < 0) or not np.any(s > 0):
        raise ParameterError("stds", s, "each >= 0, at least one > 0")
    n_train = require_in_range("n_train", n_train, 2, np.inf)
    v = np.atleast_2d(require_array("direction", direction))
    if v.ndim != 2 or v.shape[1] != s.size:
        raise ParameterError("direction", v.shape, f"vectors of length d={s.size}")
    x0 = np.zeros(s.size) if probe is None else as_float_array("probe", probe)
    if x0.size != s.size:
        raise ParameterError("probe", x0.shape, f"a vector of length d={s.size}")
    res = _rem_roots(s, x0, v, n_train, normalized, 60.0)
    failed = ~res.converged
    if np.any(failed):
        unit = float(2.0 ** np.round(np.log2(np.max(s))))
        again = _rem_roots(s / unit, x0 / unit, v[failed], n_train, normalized, 200.0)
        res.root[failed] = again.root + 2 * np.log(unit)
        res.converged[failed] = again.converged
        res.iterations[failed] += again.iterations
    with np.errstate(over="ignore"):
        tau = np.exp(res.root)
    converged = res.converged & np.isfinite(tau)  # tau_c beyond the largest float: flagged
    return RootResult(np.where(converged, tau, np.nan), converged, res.iterations)


def _rem_roots(s, x0, v, n_train, normalized, half_width) -> RootResult:
    """Roots in ``ln tau`` on ``[-half_width, half_width]`` of the REM residual per row of ``v``."""
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: fails, solved in units
        A = np.full(v.shape[0], np.sum(x0**2 * s**2))
        B = v @ (x0 * s**2)
        C = (v**2) @ s**2
        S4 = float(np.sum(s**4))
    if np.any(B < 0):
        raise ParameterError("direction", "pointing against the probe",
                             "directions with sum x0_i v_i s_i^2 >= 0 (monotone V)")
    g = 0.0 if normalized else 1.0
    f = _closed_form("rem_residual")

    def residual(log_tau):
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return f(np.exp(log_tau), A, B, C, S4, g, float(n_train))

    res = bracketed_root(residual, np.full(v.shape[0], -half_width),
                         np.full(v.shape[0], half_width))
    return RootResult(res.root.copy(), res.converged.copy(), res.iterations.copy())


def rem_participation_ratio(tau, tau_critical) -> np.ndarray:
    """REM prediction of ``sum_mu w_mu^2``: ``1 - tau/tau_c`` below ``tau_c``, 0 above
    (``O(1/N)`` in reality); finite ``tau >= 0``, ``tau_c > 0`` (broadcast)."""
    tau = require_array("tau", tau, low=0)
    tau_critical = require_array("tau_critical", tau_critical, low=0, closed=(False, True))
    return np.clip(_closed_form("participation_ratio")(tau, tau_critical), 0.0, 1.0)


def rem_critical_tau_of_participation(tau, participation) -> np.ndarray:
    """``tau_c`` at which the REM participation ratio ``1 - tau/tau_c`` equals ``participation``
    at noise ``tau``: ``tau / (1 - participation)`` (e.g. twice the noise where it is 1/2);
    finite ``tau > 0``, ``participation`` in ``[0, 1)``."""
    return _closed_form("tau_c_of_participation")(
        require_array("tau", tau, low=0, closed=(False, True)),
        require_array("participation", participation, low=0, high=1, closed=(True, False)))
