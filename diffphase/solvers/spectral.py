"""Numeric layer of the spectral-phase model (THEORY A): densities, edges, gaps, phases.

Everything is compiled from :mod:`diffphase.theory.spectral`:

* :class:`VarianceLaw`, :func:`bulk_edges`, :func:`stieltjes_transform` and the batched line
  solver come from :mod:`diffphase.solvers.stieltjes_solver` (re-exported here): ``z = z(g)`` is
  solved on grids with the warm-started Newton of :mod:`diffphase.solvers.stieltjes`
  (continuation in ``Im z`` as fallback, a second pass alone for what fails), for any number of
  groups; a continuous variance law (:meth:`VarianceLaw.from_density`,
  :meth:`VarianceLaw.from_samples`) is solved exactly, in closed form over the law, by
  :mod:`diffphase.solvers.continuous_solver` (edges from the critical points outside the cut;
  a law with connected support has exactly one bulk, so no spurious gaps). Results carry
  per-point convergence flags; a density is ``nan`` only where its flag says so.
* :func:`covariance_density`, :func:`jacobian_density` and
  :func:`jacobian_density_of_covariance` (stable at any ``tau``) give the densities.
* :func:`physical_root_polynomial` is the second route: all roots of the degree ``K + 1``
  polynomial form (companion matrices) with explicit branch selection.
* :func:`spectral_mass_above` and :func:`covariance_spectrum_quadrature` integrate the density
  (cosine map through the square-root edges; log-cosine map when a lower edge lies decades below
  the upper one), with convergence flags; for a continuous law the mass above a threshold is
  the contour integral of :func:`~diffphase.solvers.continuous_solver.continuum_mass_above`.
* :func:`spectral_summary` gives the manifold and intermediate gap widths, ``tau*``, visibility
  windows, the phase and the dimension read-out, from the symbolic formulas compiled (``numpy``
  backend of :mod:`diffphase.solvers.codegen`) and evaluated by name with :func:`formula`.

Two subspace models: ``random`` (``F`` Gaussian; Marchenko–Pastur-type bulks) and ``orthonormal``
(``F`` axis-aligned; the nonzero eigenvalues of ``C`` are exactly the latent variances, atoms).
Public functions check their arguments (:class:`~diffphase.errors.ParameterError`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np

from ..errors import (
    ConvergenceWarning,
    ParameterError,
    require_array,
    require_choice,
    require_count,
    require_in_range,
    require_int,
    require_nonnegative,
)
from ..models import SUBSPACES
from .codegen import ScalarKernel, compile_kernel, compile_module
from .stieltjes_solver import (  # noqa: F401  (re-exported: the public names of the model)
    Edges,
    SolverSettings,
    StieltjesResult,
    VarianceLaw,
    _cached_edges,
    _check_z,
    _edges_at,
    as_law,
    bulk_edges,
    kernels,
    stieltjes_lines,
    stieltjes_transform,
    variance_unit,
)


def _formulas(theory) -> dict:
    """name -> (symbolic expression builder, argument symbols) of the gap/phase formulas."""
    return {
        "manifold_gap": (theory.manifold_gap_width, (theory.lower, theory.tau)),
        "gap": (theory.intermediate_gap_width, (theory.lower, theory.upper, theory.tau)),
        "gap_dl": (
            lambda: theory.intermediate_gap_edge_derivatives()[0],
            (theory.lower, theory.upper, theory.tau),
        ),
        "gap_du": (
            lambda: theory.intermediate_gap_edge_derivatives()[1],
            (theory.lower, theory.upper, theory.tau),
        ),
        "gap_tau_max": (theory.intermediate_gap_tau_max, (theory.lower, theory.upper)),
        "gap_max": (theory.intermediate_gap_max_width, (theory.lower, theory.upper)),
        "gap_window": (theory.intermediate_gap_window, (theory.lower, theory.upper, theory.delta)),
        "trivial_tau": (theory.trivial_phase_tau, (theory.upper, theory.delta)),
        "consolidation_tau": (theory.consolidation_phase_tau, (theory.lower, theory.delta)),
        "dimension_threshold": (theory.dimension_threshold, (theory.tau, theory.delta)),
        "jacobian_eigenvalue": (theory.jacobian_eigenvalue, (theory.lam, theory.tau)),
        "score_jacobian_eigenvalue": (theory.score_jacobian_eigenvalue,
                                      (theory.lam, theory.a_scale, theory.noise_var)),
        "lambda_of_j": (theory.covariance_eigenvalue_of_jacobian, (theory.j, theory.tau)),
        "jacobian_factor": (theory.jacobian_density_factor, (theory.j, theory.tau)),
        "jacobian_factor_lambda": (theory.jacobian_density_factor_of_lambda,
                                   (theory.lam, theory.tau)),
    }


@functools.lru_cache(maxsize=1)
def _formula_module():
    """All formulas of :func:`_formulas` compiled into one generated numpy module; a warm process
    loads it without sympy (:func:`~.codegen.compile_module`)."""

    def build():
        from ..theory import spectral as theory

        return [ScalarKernel.of(name, args, make()) for name, (make, args)
                in _formulas(theory).items()], []

    return compile_module("spectral_formulas", build, ("theory", "solvers/spectral.py"),
                          backend="numpy")


def _compiled_formula(name: str) -> Callable:
    """numpy function of one gap/phase formula of :mod:`diffphase.theory.spectral`."""
    return getattr(_formula_module(), name)


def formula(name: str, *args):
    """Evaluate a compiled formula of :mod:`diffphase.theory.spectral` by name (the keys of
    :func:`_formulas`); a formula with two results (``gap_window``) returns a tuple."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _compiled_formula(name)(*args)


def bulk_edges_polynomial(law, variances=None) -> Edges:
    """Second route for the edges: real negative roots of the degree-2K edge polynomial, polished
    by Newton on ``z'(g) = 0``. For moderate ``K`` (the polynomial is ill-conditioned for many
    groups); used to test :func:`bulk_edges`."""
    law = _groups_only(as_law(law, variances), "the polynomial route")
    unit = variance_unit(law)
    law = law.rescaled(unit)
    coeffs = _edge_polynomial_coefficients(law.K)(*law.fractions, *law.variances)
    roots = np.roots(np.asarray(coeffs, dtype=float))
    real = roots[np.abs(roots.imag) <= 1e-7 * np.maximum(1, np.abs(roots))].real
    poles = -1.0 / law.variances
    real = real[(real < 0) & np.all(np.abs(real[:, None] - poles[None, :]) > 1e-12, axis=1)]
    mod = kernels()
    polished = []
    for gc in real:
        for _ in range(50):
            d1, d2 = mod.inverse_map_curvature(gc, law.fractions, law.variances)
            if d2 == 0:
                break
            step = d1 / d2
            gc -= step
            if abs(step) <= 1e-15 * abs(gc):
                break
        polished.append(gc)
    crit = np.sort(np.array(polished))
    return _edges_at(crit, law, unit)


def _groups_only(law: VarianceLaw, route: str) -> VarianceLaw:
    """``law`` when it is made of groups; a continuous law has no polynomial form."""
    if law.is_continuous:
        raise ParameterError("law", law.label, f"latent groups ({route} has no continuous laws)")
    return law


@functools.cache
def _edge_polynomial_coefficients(K: int) -> Callable:
    from ..theory import spectral as theory

    alphas, variances = theory.group_symbols(K)
    coeffs = theory.edge_polynomial(K).all_coeffs()
    return compile_kernel(ScalarKernel.of("edge_coefficients", (*alphas, *variances), coeffs),
                          "numpy")


@functools.cache
def _stieltjes_polynomial_coefficients(K: int, backend: str = "numpy") -> Callable:
    """Coefficients (highest degree first) of the polynomial form at ``z`` (args: ``z``, the
    fractions, the variances)."""
    from ..theory import spectral as theory

    alphas, variances = theory.group_symbols(K)
    coeffs = theory.stieltjes_polynomial(K).all_coeffs()
    return compile_kernel(ScalarKernel.of("stieltjes_coefficients",
                                          (theory.z, *alphas, *variances), coeffs), backend)


@functools.cache
def _inverse_map_slope_mpmath(K: int) -> Callable:
    """``z'(g)`` for ``K`` groups, evaluated in mpmath (args: ``g``, fractions, variances)."""
    from ..theory import spectral as theory

    alphas, variances = theory.group_symbols(K)
    return compile_kernel(ScalarKernel.of("inverse_map_slope", (theory.g, *alphas, *variances),
                                          theory.inverse_map_slope(K)), "mpmath")


def physical_root_polynomial(zc, law, variances=None) -> np.ndarray:
    """All ``K + 1`` roots of the polynomial form at each ``z``, with explicit branch selection:
    the root of largest ``Im g`` (for ``Im z > 0`` the unique one in the upper half plane; on the
    real axis the member of the complex pair with ``Im g > 0`` inside a bulk, and off the support
    the real root where ``z'(g) > 0``). ``z`` finite (any shape); NaN where no root qualifies."""
    law = _groups_only(as_law(law, variances), "the polynomial route")
    zc = _check_z(zc)
    if zc.size == 0:
        return np.empty(zc.shape, complex)
    coeff_fn = _stieltjes_polynomial_coefficients(law.K)
    coeffs = [
        np.broadcast_to(np.asarray(c, dtype=complex), zc.shape)
        for c in coeff_fn(zc, *law.fractions, *law.variances)
    ]
    coeffs = np.stack(coeffs, axis=-1)  # (..., K+2) highest first
    degree = coeffs.shape[-1] - 1
    companion = np.zeros(zc.shape + (degree, degree), dtype=complex)
    companion[..., 0, :] = -coeffs[..., 1:] / coeffs[..., :1]
    if degree > 1:
        idx = np.arange(degree - 1)
        companion[..., idx + 1, idx] = 1.0
    roots = np.linalg.eigvals(companion)
    best = np.take_along_axis(roots, np.argmax(roots.imag, axis=-1)[..., None], axis=-1)[..., 0]
    real_axis = np.abs(zc.imag) == 0
    scale = np.maximum(np.abs(roots), 1e-300)
    all_real = np.all(np.abs(roots.imag) <= 1e-9 * scale, axis=-1)
    pick_real = real_axis & all_real
    if np.any(pick_real):
        mod = kernels()
        for index in zip(*np.nonzero(pick_real), strict=True):
            candidates = roots[index].real
            slopes = np.array(
                [mod.inverse_map_curvature(c, law.fractions, law.variances)[0] for c in candidates]
            )
            good = candidates[slopes > 0]
            # off the support the physical g is continuous in x and tends to -1/x: among the
            # increasing branches, the one closest to -1/x is followed from infinity
            target = -1.0 / zc[index].real
            best[index] = good[np.argmin(np.abs(good - target))] if good.size else np.nan
    return best


# ----------------------------------------------------------------------------- densities
def covariance_density(
    lam, law, variances=None, settings=None
) -> tuple[np.ndarray, StieltjesResult]:
    """Density ``rho_C(lambda) = Im g(lambda + i0) / pi`` of the nonzero spectrum of ``C``
    (random subspace) at finite ``lambda`` (any shape, empty allowed); the atom ``1 - alpha`` at
    0 is not included. ``nan`` where the solver did not converge (flagged in the result)."""
    law = as_law(law, variances)
    lam = require_array("lambda", lam)
    res = stieltjes_transform(lam.ravel().astype(complex), law, settings=settings)
    density = np.where(res.converged, np.maximum(res.g.imag, 0.0) / np.pi, np.nan)
    return density.reshape(lam.shape), res


def jacobian_density(jn, tau: float, law, variances=None, settings=None):
    """Density of the tangent part of the normalized Jacobian spectrum at ``jn`` in ``(-1, 0)``:
    ``rho_J(j) = (tau / j^2) rho_C(lambda(j))``; the normal atom ``1 - alpha`` sits at ``-1``.
    Where ``j^2`` leaves the normal floating-point range (tiny ``tau``) the factor is taken in its
    ``lambda`` form ``(tau + lambda)^2 / tau``."""
    tau = _check_tau(tau)
    jn = require_array("jn", jn, low=-1, high=0, closed=(False, False))
    lam = formula("lambda_of_j", jn, tau)
    rho, res = covariance_density(lam, law, variances, settings)
    return _flag_overflow(_jacobian_factor(jn, lam, tau), rho, res)


def jacobian_density_of_covariance(lam, tau: float, law, variances=None, settings=None):
    """``(jn, density, result)``: the tangent density of ``Jn`` at the images
    ``j = -tau / (tau + lambda)`` of covariance eigenvalues ``lambda > 0`` (ascending ``lambda``
    gives ascending ``j``). Stable at any ``tau``: where the round trip ``lambda -> j -> lambda``
    is faithful the result is :func:`jacobian_density` at ``j``; where it is not (``j`` rounds to
    ``-1`` at huge ``tau``) the density is evaluated at ``lambda`` itself with the factor
    ``(tau + lambda)^2 / tau``."""
    tau = _check_tau(tau)
    lam = require_array("lambda", lam, low=0, closed=(False, True))
    jn = formula("jacobian_eigenvalue", lam, tau)
    back = formula("lambda_of_j", jn, tau)
    faithful = np.abs(back - lam) <= 1e-6 * lam
    at = np.where(faithful, back, lam)
    rho, res = covariance_density(at, law, variances, settings)
    return (jn, *_flag_overflow(_jacobian_factor(jn, at, tau, faithful), rho, res))


def _flag_overflow(factor, rho, res: StieltjesResult):
    """``factor * rho``; a converged point whose density overflows (``tau`` near the largest
    float) is flagged as not converged, so that every non-finite density is counted."""
    with np.errstate(over="ignore", invalid="ignore"):
        density = factor * rho
    res.converged &= np.isfinite(density).ravel()
    return density, res


def _jacobian_factor(jn, lam, tau, faithful=True) -> np.ndarray:
    """``tau / j^2``, or ``(tau + lambda)^2 / tau`` where ``j^2`` is not a normal float or where
    ``faithful`` (a mask) is False (``lambda`` did not come from ``j``)."""
    factor = formula("jacobian_factor", jn, tau)
    exact = np.isfinite(factor) & (np.abs(jn) > 1e-150) & np.asarray(faithful)
    if np.all(exact):
        return factor
    return np.where(exact, factor, formula("jacobian_factor_lambda", lam, tau))


def jacobian_density_grid(
    jn, taus, laws: list[VarianceLaw], settings: SolverSettings | None = None
):
    """Tangent density of ``Jn`` on the grid ``laws x taus x jn`` (shape ``(L, T, n)``): one line
    per ``(law, tau)``, solved in parallel with warm starts along ``jn`` (``-1 < jn < 0``, finite
    ``taus > 0``, at least one law). Returns the density (``nan`` where not converged) and the
    :class:`StieltjesResult` (lines in the same order, ``lambda`` ascending)."""
    jn = require_array("jn", jn, low=-1, high=0, closed=(False, False)).ravel()
    taus = require_array("taus", taus, low=0, closed=(False, True)).ravel()
    laws = [as_law(law) for law in laws]
    if not laws:
        raise ParameterError("laws", laws, "at least one VarianceLaw")
    order = np.argsort(formula("lambda_of_j", jn, 1.0))  # lambda ascends along each line
    jn_sorted = jn[order]
    lam_tau = formula("lambda_of_j", jn_sorted[None, :], taus[:, None])  # (T, n)
    lam = np.ascontiguousarray(
        np.broadcast_to(lam_tau, (len(laws),) + lam_tau.shape).reshape(-1, jn.size)
    )
    line_laws = [law for law in laws for _ in taus]
    res = stieltjes_lines(lam, line_laws, settings=settings)
    factor = _jacobian_factor(jn_sorted[None, :], lam_tau, taus[:, None]) / np.pi
    rho = np.maximum(res.g.imag, 0.0)  # one new array: 10^6 points are 8 MB a pass
    if not res.converged.all():
        rho[~res.converged] = np.nan
    rho = rho.reshape(len(laws), taus.size, jn.size)
    rho *= factor
    if np.any(order != np.arange(order.size)):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        rho = rho[..., inverse]
    return rho, res


def _check_tau(tau) -> float:
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise ParameterError("tau", tau, "a number > 0") from None
    if not (np.isfinite(tau) and tau > 0):
        raise ParameterError("tau", tau, "> 0 and finite")
    return tau


# ----------------------------------------------------------------------------- quadrature
#: a bulk ``[l, u]`` with ``u / l`` above this is integrated in the log-cosine map: its density
#: varies on the scale of ``l``, which the cosine map cannot resolve with a few hundred nodes
LOG_MAP_RATIO = 1e4


def _log_bulk_map(lo: float, hi: float, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lambda = l (u/l)^((1 - cos theta)/2)`` and ``d lambda / d theta``: geometric spacing
    resolves every scale between ``l > 0`` and ``u``, and the square-root edges stay smooth."""
    span = np.log(hi / lo)
    lam = lo * np.exp(span * (1 - np.cos(theta)) / 2)
    return lam, lam * span * np.sin(theta) / 2


def _log_bulk_angle(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_log_bulk_map` (``x`` inside the bulk)."""
    return np.arccos(np.clip(1 - 2 * np.log(x / lo) / np.log(hi / lo), -1, 1))


def covariance_spectrum_quadrature(
    law, variances=None, n_nodes: int = 256, subspace: str = "random", lower: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """Nodes ``lambda_j``, weights ``w_j`` and the number of nodes where the density solver did
    not converge (their weights are 0; the count flags the result), with
    ``sum_j w_j f(lambda_j) ~ int_{lambda > lower} f(lambda) rho_C(lambda) d lambda`` over the
    nonzero spectrum (weights sum to ``alpha`` when ``lower = 0``), so that
    ``(1/d) sum_i f(lambda_i) -> sum_j w_j f(lambda_j)``.

    Random subspace: on each bulk ``[l, u]`` (cut at ``lower``) substitute
    ``lambda = l + (u - l)(1 - cos theta)/2`` (smooth through the square-root edges; the
    log-cosine map of :func:`_log_bulk_map` when ``u / l > LOG_MAP_RATIO``) and use
    Gauss–Legendre in ``theta``. Orthonormal: the atoms themselves."""
    law = as_law(law, variances)
    n_nodes = require_count("n_nodes", n_nodes, 2, 10**5)
    lower = require_nonnegative("lower", lower)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        keep = law.variances > lower
        return law.variances[keep].copy(), law.fractions[keep].copy(), 0
    edges = _cached_edges(law)
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    nodes, weights = [], []
    for lo, hi in edges.bulks:
        if hi <= lower:
            continue
        if lo > 0 and hi / lo > LOG_MAP_RATIO:
            theta_lo = 0.0 if lower <= lo else float(_log_bulk_angle(lo, hi, lower))
            theta = 0.5 * (np.pi - theta_lo) * x + 0.5 * (np.pi + theta_lo)
            lam, jac = _log_bulk_map(lo, hi, theta)
            jac = 0.5 * (np.pi - theta_lo) * jac
        else:
            theta_lo = 0.0 if lower <= lo else np.arccos(1 - 2 * (lower - lo) / (hi - lo))
            theta = 0.5 * (np.pi - theta_lo) * x + 0.5 * (np.pi + theta_lo)
            lam = lo + (hi - lo) * (1 - np.cos(theta)) / 2
            jac = 0.5 * (np.pi - theta_lo) * (hi - lo) * np.sin(theta) / 2
        nodes.append(lam)
        weights.append(w * jac)
    if not nodes:
        return np.empty(0), np.empty(0), 0
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    rho, res = covariance_density(nodes, law)
    return nodes, np.where(res.converged, weights * rho, 0.0), res.n_failed


def spectral_mass_above(
    threshold, law, variances=None, subspace: str = "random", n_nodes: int = 1025
) -> np.ndarray:
    """Mass of the nonzero spectrum of ``C`` above ``threshold`` (vectorized over thresholds;
    ``nan`` thresholds are refused, ``+-inf`` allowed).

    Continuous law: :func:`continuum_spectral_mass` (``n_nodes`` unused). Groups, random
    subspace: one density solve per bulk on ``n_nodes`` points uniform in ``theta``
    (``lambda = l + (u - l)(1 - cos theta)/2``, smooth through the square-root edges), a
    cumulative Simpson integral in ``theta``, and cubic interpolation at the thresholds (mapped to
    ``theta``). The grid is refined until the mass converges (:func:`spectral_cdf_converged`
    says whether it did; if not, the best estimate is returned with a
    :class:`~diffphase.errors.ConvergenceWarning`). Orthonormal: the sum of the atoms above (the
    exact mass of the continuous law when its groups are only a quadrature of it)."""
    law = as_law(law, variances)
    thresholds = require_array("threshold", threshold, finite=False)
    n_nodes = require_count("n_nodes", n_nodes, 5, 65537)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        if law.quadrature:
            return law.continuum.mass_above(thresholds)
        above = law.variances[None, :] > thresholds.reshape(-1, 1)
        return (above @ law.fractions).reshape(thresholds.shape)
    if law.is_continuous:
        return continuum_spectral_mass(thresholds, law)[0]
    flat = thresholds.ravel()
    mass = np.zeros(flat.shape)
    for lo, hi, theta, cumulative, log_map, _ in _bulk_cdf_tables(law, n_nodes):
        total = cumulative[-1]
        below_lo, above_hi = flat <= lo, flat >= hi
        inside = ~(below_lo | above_hi)
        mass[below_lo] += total
        if np.any(inside):
            if log_map:
                t = _log_bulk_angle(lo, hi, flat[inside])
            else:
                t = np.arccos(np.clip(1 - 2 * (flat[inside] - lo) / (hi - lo), -1, 1))
            mass[inside] += total - _cubic_interp(theta, cumulative, t)
    return mass.reshape(thresholds.shape)


def spectral_cdf_converged(law, variances=None, n_nodes: int = 1025) -> bool:
    """Whether every bulk's table of :func:`spectral_mass_above` met its tolerance (continuous
    law: whether the mass above the middle of each bulk converged)."""
    law = as_law(law, variances)
    if law.is_continuous:
        middles = np.sqrt(np.prod(np.maximum(_cached_edges(law).bulks, 1e-300), axis=1))
        return bool(np.all(continuum_spectral_mass(middles, law, warn=False)[1]))
    return all(table[-1] for table in _bulk_cdf_tables(law, n_nodes))


def continuum_spectral_mass(thresholds, law: VarianceLaw, settings: SolverSettings | None = None,
                            warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(mass above each threshold, converged)`` for a continuous law (random subspace):
    ``alpha`` below the lowest edge, 0 above the top edge, else the contour integral of
    :func:`~diffphase.solvers.continuous_solver.continuum_mass_above` in the law's unit. A
    threshold that did not converge keeps its best estimate, with a
    :class:`~diffphase.errors.ConvergenceWarning` (unless ``warn`` is False)."""
    from .continuous_solver import continuum_mass_above, continuum_unit

    settings = settings or SolverSettings()
    flat = np.asarray(thresholds, dtype=float).ravel()
    bulks = _cached_edges(law).bulks
    mass = np.where(flat <= bulks[0, 0], law.continuum.alpha, 0.0)
    converged = np.ones(flat.shape, dtype=bool)
    inside = (flat > bulks[0, 0]) & (flat < bulks[-1, 1])
    if np.any(inside):
        unit = continuum_unit(law.continuum)
        mass[inside], converged[inside] = continuum_mass_above(
            flat[inside] / unit, law.continuum.rescaled(unit), bulks[-1, 1] / unit,
            settings.tol, settings.maxiter)
    if warn and not converged.all():
        warnings.warn(f"mass above {np.count_nonzero(~converged)} threshold(s) did not converge; "
                      "the values are estimates", ConvergenceWarning, stacklevel=3)
    shape = np.shape(thresholds)
    return mass.reshape(shape), converged.reshape(shape)


def _bulk_cdf_tables(law: VarianceLaw, n_nodes: int, rtol: float = 1e-10, max_nodes: int = 65537):
    """Per bulk: ``(l, u, theta, cumulative mass, log_map, converged)``. The grid is doubled from
    ``n_nodes`` until the bulk's total mass changes by less than ``rtol * alpha`` (narrow internal
    features of nearly-separated bulks need fine grids). A bulk with ``l > 0`` that does not
    converge in the cosine map is redone in the log-cosine map (:func:`_log_bulk_map`: a lower
    edge far below the upper one); a table that converges in neither is kept (the finer of the
    last two) with ``converged = False`` and a :class:`~diffphase.errors.ConvergenceWarning`."""
    key = (*law.cache_key, n_nodes)
    if key not in _CDF_CACHE:
        if len(_CDF_CACHE) > 1024:
            _CDF_CACHE.clear()
        tables = []
        for lo, hi in _cached_edges(law).bulks:
            for log_map in (False, True) if lo > 0 else (False,):
                n, previous = n_nodes, None
                while True:
                    theta, cumulative, ok = _bulk_cdf(law, lo, hi, n, log_map)
                    converged = ok and previous is not None and (
                        abs(cumulative[-1] - previous) <= rtol * law.alpha)
                    if converged or 2 * n - 1 > max_nodes:
                        break
                    previous, n = cumulative[-1], 2 * n - 1
                if converged:
                    break
            if not converged:
                warnings.warn(f"spectral CDF of bulk [{lo:g}, {hi:g}] did not converge with {n} "
                              "nodes; its mass is an estimate", ConvergenceWarning, stacklevel=3)
            tables.append((lo, hi, theta, cumulative, log_map, converged))
        _CDF_CACHE[key] = tables
    return _CDF_CACHE[key]


def _bulk_cdf(law: VarianceLaw, lo: float, hi: float, n: int, log_map: bool = False):
    """``(theta, cumulative mass, every density node converged)`` on ``n`` nodes of one bulk
    (nodes where the density solver failed count 0)."""
    from scipy.integrate import cumulative_simpson

    theta = np.linspace(0, np.pi, n)
    if log_map:
        lam, jac = _log_bulk_map(lo, hi, theta)
    else:
        lam = lo + (hi - lo) * (1 - np.cos(theta)) / 2
    rho, res = covariance_density(lam[1:-1], law)
    rho = np.where(res.converged, rho, 0.0)
    integrand = np.zeros(n)
    if log_map:
        integrand[1:-1] = rho * jac[1:-1]
    else:
        integrand[1:-1] = rho * (hi - lo) * np.sin(theta[1:-1]) / 2
    # endpoint values by quadratic extrapolation: 0 at a soft (square-root) edge, finite at the
    # hard edge lambda = 0 of a full-rank spectrum, where rho ~ lambda^(-1/2)
    integrand[0] = 3 * integrand[1] - 3 * integrand[2] + integrand[3]
    integrand[-1] = 3 * integrand[-2] - 3 * integrand[-3] + integrand[-4]
    return theta, cumulative_simpson(integrand, x=theta, initial=0.0), res.n_failed == 0


_CDF_CACHE: dict[tuple, list] = {}


def _cubic_interp(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    from scipy.interpolate import CubicSpline

    return CubicSpline(x, y)(at)


# ----------------------------------------------------------------------------- gaps and phases
def spectrum_edges(law, variances=None, subspace: str = "random") -> np.ndarray:
    """Ascending ``[[l, u], ...]`` of the nonzero spectrum of ``C``: exact bulks (random) or the
    latent variances as degenerate bulks ``[s, s]`` (orthonormal; the support components of a
    continuous law whose groups are only a quadrature of it)."""
    law = as_law(law, variances)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        if law.quadrature:
            return law.continuum.components.copy()
        s = np.sort(law.variances)
        return np.stack([s, s], axis=1)
    return _cached_edges(law).bulks.copy()


def _check_edges(edges) -> np.ndarray:
    edges = require_array("edges", edges, low=0)
    if edges.ndim != 2 or edges.shape[0] == 0 or edges.shape[1] != 2 or np.any(
            np.diff(edges.ravel()) < 0):
        raise ParameterError("edges", edges, "ascending bulks [[l_1, u_1], [l_2, u_2], ...]")
    return edges


def phase_of(tau, edges: np.ndarray, delta: float) -> np.ndarray:
    """``trivial`` / ``coverage`` / ``consolidation`` at each ``tau`` (THEORY A, toolkit rule);
    ``tau`` finite ``> 0`` (any shape), ``edges`` as :func:`spectrum_edges` gives them."""
    tau = require_array("tau", tau, low=0, closed=(False, True))
    edges, delta = _check_edges(edges), check_delta(delta)
    lowest, highest = edges[0, 0], edges[-1, 1]
    trivial = tau >= formula("trivial_tau", highest, delta)
    consolidation = (lowest > 0) & (tau <= formula("consolidation_tau", lowest, delta))
    return np.where(trivial, "trivial", np.where(consolidation, "consolidation", "coverage"))


def intermediate_gaps(tau, edges: np.ndarray, delta: float) -> list[dict]:
    """Gaps between consecutive bulks, ascending in variance: width at ``tau``, ``tau_max``,
    ``max_width`` and the visibility window ``[tau_lo, tau_hi]`` (None when never >= delta)."""
    tau = _check_tau(tau)
    edges, delta = _check_edges(edges), check_delta(delta)
    gaps = []
    for (_, u), (l, _) in zip(edges[:-1], edges[1:], strict=True):
        max_width = float(formula("gap_max", l, u))
        window = None
        if max_width >= delta:
            lo, hi = np.asarray(formula("gap_window", l, u, delta), dtype=float).ravel()
            window = [float(lo), float(hi)]
        gaps.append(
            {
                "lower_bulk_upper_edge": float(u),
                "upper_bulk_lower_edge": float(l),
                "width": float(formula("gap", l, u, tau)),
                "tau_max": float(formula("gap_tau_max", l, u)),
                "max_width": max_width,
                "window": window,
            }
        )
    return gaps


def dimension_fraction(
    tau, law, variances=None, delta: float = 0.1, subspace: str = "random"
) -> np.ndarray:
    """Dimension read-out per ambient dimension: mass of the normalized spectrum above
    ``-1 + delta``, i.e. of ``rho_C`` above ``lambda_th = tau delta / (1 - delta)``; ``tau``
    finite ``> 0`` (any shape, empty allowed), ``0 < delta < 1``."""
    tau = require_array("tau", tau, low=0, closed=(False, True))
    threshold = formula("dimension_threshold", tau, check_delta(delta))
    return spectral_mass_above(threshold, law, variances, subspace=subspace)


def check_delta(delta: float) -> float:
    return require_in_range("delta", delta, 0, 1, closed=(False, False))


def _dimension_readout(tau: float, law: VarianceLaw, delta: float, subspace: str):
    """``(dimension fraction, converged)`` at one ``tau``."""
    if subspace == "random" and law.is_continuous:
        threshold = formula("dimension_threshold", tau, delta)
        mass, converged = continuum_spectral_mass(threshold, law)
        return float(mass), bool(converged)
    fraction = float(dimension_fraction(tau, law, delta=delta, subspace=subspace))
    return fraction, subspace == "orthonormal" or spectral_cdf_converged(law)


def spectral_summary(
    law, tau: float, delta: float = 0.1, subspace: str = "random", dim: int | None = None
) -> dict:
    """Everything ``diffphase spectrum --json`` reports at one ``tau``; ``dimension_converged``
    flags the dimension read-out (:func:`spectral_cdf_converged`, or the read-out's own flag for
    a continuous law)."""
    law = as_law(law)
    tau = _check_tau(tau)
    delta = check_delta(delta)
    require_choice("subspace", subspace, SUBSPACES)
    if dim is not None:
        dim = require_int("dim", dim, minimum=1)
    edges = spectrum_edges(law, subspace=subspace)
    fraction, converged = _dimension_readout(tau, law, delta, subspace)
    jac_edges = formula("jacobian_eigenvalue", edges, tau)
    summary = {
        "tau": tau,
        "delta": delta,
        "subspace": subspace,
        "alpha": law.alpha,
        "fractions": law.fractions,
        "variances": law.variances,
        "edges": edges.tolist(),
        "n_bulks": int(edges.shape[0]),
        "edges_jacobian": jac_edges.tolist(),
        "manifold_gap": float(formula("manifold_gap", edges[0, 0], tau)),
        "intermediate_gaps": intermediate_gaps(tau, edges, delta),
        "phase": str(phase_of(tau, edges, delta)),
        "phase_boundaries": {
            "trivial_above_tau": float(formula("trivial_tau", edges[-1, 1], delta)),
            "consolidation_below_tau": float(formula("consolidation_tau", edges[0, 0], delta)),
        },
        "dimension": fraction,
        "dimension_converged": converged,
    }
    if dim is not None:
        summary["dimension_count"] = fraction * dim
    return summary


# ----------------------------------------------------------------------------- mpmath reference
def stieltjes_mpmath(zc: complex, law, variances=None, dps: int = 30):
    """High-precision reference ``g(z)``: all roots of the polynomial form by ``mpmath.polyroots``
    at ``dps`` digits (coefficients compiled from the symbolic polynomial with ``mpmath``), and
    the physical one picked as in :func:`physical_root_polynomial` (largest ``Im g``; on the real
    axis outside the support, the real root with ``z'(g) > 0`` nearest ``-1/x``)."""
    import mpmath

    law = _groups_only(as_law(law, variances), "the polynomial route")
    zc = complex(_check_z(zc).ravel()[0]) if np.size(zc) == 1 else _check_z(zc)
    if not isinstance(zc, complex):
        raise ParameterError("z", zc, "one complex number")
    dps = require_int("dps", dps, minimum=15)
    coefficients = _stieltjes_polynomial_coefficients(law.K, "mpmath")
    with mpmath.workdps(dps):
        args = [mpmath.mpf(float(v)) for v in (*law.fractions, *law.variances)]
        zm = mpmath.mpc(complex(zc).real, complex(zc).imag)
        coeffs = list(coefficients(zm, *args))
        roots = mpmath.polyroots(coeffs, maxsteps=400, extraprec=4 * dps)
        best = max(roots, key=lambda r: mpmath.im(r))
        if complex(zc).imag == 0 and abs(mpmath.im(best)) < mpmath.mpf(10) ** (-dps // 2):
            dz = _inverse_map_slope_mpmath(law.K)
            real = [mpmath.re(r) for r in roots]
            increasing = [r for r in real if dz(r, *args) > 0]
            best = min(increasing, key=lambda r: abs(r + 1 / zm.real))
        return mpmath.mpc(best)


def covariance_density_array(lam, law, variances=None, device: str = "cpu"):
    """:func:`covariance_density` by the array-backend solver (numpy, or cupy on a GPU):
    independent points, continuation in ``Im z`` for each. Returns ``(density, converged,
    iterations)``."""
    from .stieltjes_array import stieltjes_array

    law = _groups_only(as_law(law, variances), "the array route")
    lam = require_array("lambda", lam)
    flat = lam.ravel()
    n = flat.size
    alphas = np.broadcast_to(law.fractions, (n, law.K))
    groups = np.broadcast_to(law.variances, (n, law.K))
    inside = _cached_edges(law).contains(flat)
    g, converged, iterations = stieltjes_array(flat, alphas, groups, inside, device=device)
    density = np.maximum(g.imag, 0.0) / np.pi
    return density.reshape(lam.shape), converged.reshape(lam.shape), iterations.reshape(lam.shape)
