"""Numeric layer of the spectral-phase model (THEORY A): densities, edges, gaps, phases.

Everything is compiled from :mod:`diffphase.theory.spectral`:

* :func:`stieltjes_transform` / :func:`covariance_density` / :func:`jacobian_density` solve
  ``z = z(g)`` on grids with the batched warm-started Newton of :mod:`diffphase.solvers.stieltjes`
  (continuation in ``Im z`` as fallback), for any number of groups and for a continuous variance
  law (discretized by Gauss–Legendre nodes). Results carry per-point convergence flags.
* :func:`physical_root_polynomial` is the second route: all roots of the degree ``K + 1``
  polynomial form (companion matrices) with explicit branch selection.
* :func:`bulk_edges` gives the exact edges ``z(g*)`` at the critical points ``z'(g*) = 0``.
* :func:`gap_summary` gives the manifold and intermediate gap widths, ``tau*``, visibility windows,
  the phase and the dimension read-out, from the symbolic formulas compiled (``numpy`` backend
  of :mod:`diffphase.solvers.codegen`) and evaluated by name with :func:`formula`.

Two subspace models: ``random`` (``F`` Gaussian; Marchenko–Pastur-type bulks) and ``orthonormal``
(``F`` axis-aligned; the nonzero eigenvalues of ``C`` are exactly the latent variances, atoms).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, as_float_array, require_choice, require_in_range, require_int
from ..models import SUBSPACES
from ..theory import spectral as theory
from . import stieltjes as templates
from .codegen import ScalarKernel, Template, compile_kernel, compile_kernels


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class VarianceLaw:
    """Latent groups: fraction ``alpha_k = m_k / d`` and variance ``s_k = sigma_k^2`` each.

    Groups with equal variances are merged and groups are stored by descending variance.
    """

    fractions: np.ndarray
    variances: np.ndarray
    label: str = field(default="groups", compare=False)

    @classmethod
    def from_groups(cls, fractions, variances) -> VarianceLaw:
        fractions = as_float_array("fractions", fractions)
        variances = as_float_array("variances", variances)
        if fractions.size != variances.size:
            raise ParameterError(
                "fractions",
                fractions.tolist(),
                f"one fraction per variance ({variances.size} variances given)",
            )
        if np.any(fractions <= 0):
            raise ParameterError("fractions", fractions.tolist(), "each > 0")
        if fractions.sum() > 1 + 1e-12:
            raise ParameterError("fractions", fractions.tolist(), "summing to at most 1")
        if np.any(variances <= 0):
            raise ParameterError("variances", variances.tolist(), "each > 0")
        unique, inverse = np.unique(variances, return_inverse=True)
        merged = np.zeros(unique.size)
        np.add.at(merged, inverse, fractions)
        order = np.argsort(-unique)
        return cls(merged[order], unique[order])

    @classmethod
    def from_density(
        cls,
        pdf: Callable[[np.ndarray], np.ndarray],
        support: tuple[float, float],
        alpha: float,
        n_nodes: int = 48,
    ) -> VarianceLaw:
        """A continuous law of latent variances with density ``pdf`` on ``support`` (normalized
        here) and total fraction ``alpha``, discretized by Gauss–Legendre nodes."""
        lo, hi = (float(v) for v in support)
        if not (0 < lo < hi < np.inf):
            raise ParameterError("support", support, "0 < low < high < inf")
        require_in_range("alpha", alpha, 0, 1, closed=(False, True))
        n_nodes = require_int("n_nodes", n_nodes, minimum=2)
        nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
        s = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        w = 0.5 * (hi - lo) * weights * np.asarray(pdf(s), dtype=float)
        if np.any(w < 0) or w.sum() <= 0:
            raise ParameterError("pdf", "callable", "non-negative with positive mass on support")
        law = cls.from_groups(alpha * w / w.sum(), s)
        return cls(law.fractions, law.variances, label=f"continuous on [{lo:g}, {hi:g}]")

    @property
    def alpha(self) -> float:
        return float(self.fractions.sum())

    @property
    def K(self) -> int:
        return int(self.fractions.size)


def as_law(law_or_fractions, variances=None) -> VarianceLaw:
    if isinstance(law_or_fractions, VarianceLaw):
        return law_or_fractions
    return VarianceLaw.from_groups(law_or_fractions, variances)


# ----------------------------------------------------------------------------- compiled kernels
@functools.lru_cache(maxsize=1)
def kernels():
    """The generated numba module: inverse-map parts and the solver templates."""
    parts = theory.inverse_map_derivatives()
    g, a, s = theory.g, theory.alpha_g, theory.s_g
    specs = [
        ScalarKernel.of("zbase_triple", (g,), (parts["base"], parts["dbase"], parts["d2base"])),
        ScalarKernel.of(
            "zterm_triple", (g, a, s), (parts["term"], parts["dterm"], parts["d2term"])
        ),
        ScalarKernel.of("dzbase", (g,), parts["dbase"]),
        ScalarKernel.of("d2zbase", (g,), parts["d2base"]),
        ScalarKernel.of("dzterm", (g, a, s), parts["dterm"]),
        ScalarKernel.of("d2zterm", (g, a, s), parts["d2term"]),
    ]
    loops = [
        Template(templates.inverse_map_value),
        Template(templates.inverse_map_slope),
        Template(templates.inverse_map_curvature),
        Template(templates.newton_stieltjes),
        Template(templates.continuation_stieltjes),
        Template(templates.is_physical),
        Template(templates._critical_in_interval),
        Template(templates.critical_points),
        Template(templates.stieltjes_lines, parallel=True),
    ]
    return compile_kernels(specs, templates=loops, tag="spectral")


_FORMULAS = {  # name -> (symbolic expression builder, argument symbols)
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
}


@functools.cache
def _compiled_formula(name: str) -> Callable:
    """numpy function of one gap/phase formula of :mod:`diffphase.theory.spectral`."""
    build, args = _FORMULAS[name]
    return compile_kernel(ScalarKernel.of(name, args, build()), "numpy")


def formula(name: str, *args):
    """Evaluate a compiled formula of :mod:`diffphase.theory.spectral` by name (the keys of
    ``_FORMULAS``); a formula with two results (``gap_window``) returns a tuple."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _compiled_formula(name)(*args)


# ----------------------------------------------------------------------------- edges
@dataclass
class Edges:
    """Ascending bulk edges of the nonzero spectrum of ``C``: ``[[l_1, u_1], [l_2, u_2], ...]``."""

    bulks: np.ndarray
    critical_points: np.ndarray

    @property
    def n_bulks(self) -> int:
        return int(self.bulks.shape[0])

    def contains(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        inside = np.zeros(x.shape, dtype=bool)
        for lo, hi in self.bulks:
            inside |= (x > lo) & (x < hi)
        return inside


def bulk_edges(law, variances=None, n_samples: int = 512) -> Edges:
    """Exact bulk edges (random subspace): ``z(g*)`` at the critical points of ``z(g)``, ``g* < 0``.

    With ``alpha = 1`` an odd number of critical points means a hard edge at ``lambda = 0``."""
    law = as_law(law, variances)
    mod = kernels()
    out = np.empty(2 * law.K + 2)
    count = mod.critical_points(law.fractions, law.variances, n_samples, out)
    crit = np.sort(out[:count])
    return _edges_at(crit, law)


def _edges_at(crit: np.ndarray, law: VarianceLaw) -> Edges:
    """Edges ``z(g*)`` at the critical points, ascending and paired; with ``alpha = 1`` an odd
    count means a hard edge at ``lambda = 0``."""
    mod = kernels()
    values = np.sort([mod.inverse_map_value(gc, law.fractions, law.variances)[0] for gc in crit])
    if values.size % 2 == 1:
        values = np.concatenate([[0.0], values])
    return Edges(values.reshape(-1, 2), crit)


def bulk_edges_polynomial(law, variances=None) -> Edges:
    """Second route for the edges: real negative roots of the degree-2K edge polynomial, polished
    by Newton on ``z'(g) = 0``. For moderate ``K`` (the polynomial is ill-conditioned for many
    groups); used to test :func:`bulk_edges`."""
    law = as_law(law, variances)
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
            step = d1 / d2
            gc -= step
            if abs(step) <= 1e-15 * abs(gc):
                break
        polished.append(gc)
    crit = np.sort(np.array(polished))
    return _edges_at(crit, law)


@functools.cache
def _edge_polynomial_coefficients(K: int) -> Callable:
    alphas, variances = theory.group_symbols(K)
    coeffs = theory.edge_polynomial(K).all_coeffs()
    return compile_kernel(ScalarKernel.of("edge_coefficients", (*alphas, *variances), coeffs),
                          "numpy")


@functools.cache
def _stieltjes_polynomial_coefficients(K: int, backend: str = "numpy") -> Callable:
    """Coefficients (highest degree first) of the polynomial form at ``z`` (args: ``z``, the
    fractions, the variances)."""
    alphas, variances = theory.group_symbols(K)
    coeffs = theory.stieltjes_polynomial(K).all_coeffs()
    return compile_kernel(ScalarKernel.of("stieltjes_coefficients",
                                          (theory.z, *alphas, *variances), coeffs), backend)


@functools.cache
def _inverse_map_slope_mpmath(K: int) -> Callable:
    """``z'(g)`` for ``K`` groups, evaluated in mpmath (args: ``g``, fractions, variances)."""
    alphas, variances = theory.group_symbols(K)
    return compile_kernel(ScalarKernel.of("inverse_map_slope", (theory.g, *alphas, *variances),
                                          theory.inverse_map_slope(K)), "mpmath")


def physical_root_polynomial(zc, law, variances=None) -> np.ndarray:
    """All ``K + 1`` roots of the polynomial form at each ``z``, with explicit branch selection:
    the root of largest ``Im g`` (for ``Im z > 0`` the unique one in the upper half plane; on the
    real axis the member of the complex pair with ``Im g > 0`` inside a bulk, and off the support
    the real root where ``z'(g) > 0``)."""
    law = as_law(law, variances)
    zc = np.atleast_1d(np.asarray(zc, dtype=complex))
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
@dataclass
class StieltjesResult:
    """``g`` on a grid with per-point ``converged``, ``iterations`` and ``fallback`` flags."""

    g: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    fallback: np.ndarray

    @property
    def n_failed(self) -> int:
        return int(self.converged.size - np.count_nonzero(self.converged))

    def summary(self) -> dict:
        return {
            "points": int(self.converged.size),
            "failed": self.n_failed,
            "fallbacks": int(np.count_nonzero(self.fallback)),
            "mean_iterations": float(self.iterations.mean()) if self.iterations.size else 0.0,
        }


@dataclass
class SolverSettings:
    tol: float = 1e-13
    maxiter: int = 100
    n_stages: int = 40
    eta_floor_rel: float = 1e-10


def stieltjes_lines(
    x: np.ndarray,
    laws: list[VarianceLaw] | VarianceLaw,
    eta: float = 0.0,
    settings: SolverSettings | None = None,
) -> StieltjesResult:
    """``g(x + i eta)`` on lines ``x[line, :]`` (warm starts along each line), one law per line.

    All laws must have the same number of groups (pad by splitting is not done)."""
    settings = settings or SolverSettings()
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=float)))
    n_lines = x.shape[0]
    if isinstance(laws, VarianceLaw):
        laws = [laws] * n_lines
    if len(laws) != n_lines:
        raise ParameterError("laws", len(laws), f"one per line ({n_lines})")
    K = laws[0].K
    if any(law.K != K for law in laws):
        raise ParameterError("laws", [law.K for law in laws], "the same number of groups per line")
    alphas = np.ascontiguousarray([law.fractions for law in laws])
    variances = np.ascontiguousarray([law.variances for law in laws])
    inside = np.zeros(x.shape, dtype=np.bool_)
    if eta == 0.0:
        groups: dict[int, list[int]] = {}
        for line, law in enumerate(laws):
            groups.setdefault(id(law), []).append(line)
        for lines in groups.values():
            inside[lines] = _cached_edges(laws[lines[0]]).contains(x[lines])
    scale = np.array([max(float(np.max(law.variances)), 1.0) for law in laws])
    eta_start = 10.0 * scale * (1.0 + np.max(np.abs(x), axis=1) / scale)
    eta_floor = settings.eta_floor_rel * scale
    g = np.empty(x.shape, dtype=np.complex128)
    iters = np.empty(x.shape, dtype=np.int64)
    conv = np.empty(x.shape, dtype=np.bool_)
    fallback = np.empty(x.shape, dtype=np.bool_)
    import numba

    previous_chunk = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(8)  # lines differ in cost: hand them out in small chunks
    try:
        kernels().stieltjes_lines(
            x,
            float(eta),
            alphas,
            variances,
            inside,
            settings.tol,
            settings.maxiter,
            eta_start,
            eta_floor,
            settings.n_stages,
            g,
            iters,
            conv,
            fallback,
        )
    finally:
        numba.set_parallel_chunksize(previous_chunk)
    return StieltjesResult(g, conv, iters, fallback)


_EDGE_CACHE: dict[tuple, Edges] = {}


def _cached_edges(law: VarianceLaw) -> Edges:
    key = (law.fractions.tobytes(), law.variances.tobytes())
    if key not in _EDGE_CACHE:
        if len(_EDGE_CACHE) > 4096:
            _EDGE_CACHE.clear()
        _EDGE_CACHE[key] = bulk_edges(law)
    return _EDGE_CACHE[key]


def stieltjes_transform(zc, law, variances=None, settings=None) -> StieltjesResult:
    """``g(z)`` at complex points ``z`` (``Im z >= 0``) for one law; 1-d input is one line."""
    law = as_law(law, variances)
    zc = np.atleast_1d(np.asarray(zc, dtype=complex))
    etas = np.unique(zc.imag)
    if np.any(etas < 0):
        raise ParameterError("z", "Im z < 0", "Im z >= 0 (the physical branch is defined there)")
    out = None
    for eta in etas:  # one solve per distinct Im z; points sorted along the real axis
        mask = zc.imag == eta
        xs = zc.real[mask]
        order = np.argsort(xs)
        res = stieltjes_lines(xs[order][None, :], law, eta=float(eta), settings=settings)
        if out is None:
            out = StieltjesResult(
                np.empty(zc.shape, complex),
                np.empty(zc.shape, bool),
                np.empty(zc.shape, np.int64),
                np.empty(zc.shape, bool),
            )
        for name in ("g", "converged", "iterations", "fallback"):
            target = getattr(out, name)
            values = np.empty(order.size, dtype=target.dtype)
            values[order] = getattr(res, name)[0]
            target[mask] = values
    return out


def covariance_density(
    lam, law, variances=None, settings=None
) -> tuple[np.ndarray, StieltjesResult]:
    """Density ``rho_C(lambda) = Im g(lambda + i0) / pi`` of the nonzero spectrum of ``C``
    (random subspace); the atom ``1 - alpha`` at 0 is not included."""
    law = as_law(law, variances)
    lam = np.asarray(lam, dtype=float)
    res = stieltjes_transform(lam.ravel().astype(complex), law, settings=settings)
    density = np.maximum(res.g.imag, 0.0) / np.pi
    return density.reshape(lam.shape), res


def jacobian_density(jn, tau: float, law, variances=None, settings=None):
    """Density of the tangent part of the normalized Jacobian spectrum at ``j`` in ``(-1, 0)``:
    ``rho_J(j) = (tau / j^2) rho_C(lambda(j))``; the normal atom ``1 - alpha`` sits at ``-1``."""
    tau = _check_tau(tau)
    jn = np.asarray(jn, dtype=float)
    if np.any((jn <= -1) | (jn >= 0)):
        raise ParameterError("j", "values", "in (-1, 0)")
    lam = formula("lambda_of_j", jn, tau)
    rho, res = covariance_density(lam, law, variances, settings)
    return formula("jacobian_factor", jn, tau) * rho, res


def jacobian_density_grid(
    jn, taus, laws: list[VarianceLaw], settings: SolverSettings | None = None
):
    """Tangent density of ``Jn`` on the grid ``laws x taus x jn`` (shape ``(L, T, n)``): one line
    per ``(law, tau)``, solved in parallel with warm starts along ``jn``. Returns the density and
    the :class:`StieltjesResult` (lines in the same order, ``lambda`` ascending)."""
    jn = np.asarray(jn, dtype=float)
    taus = np.asarray(taus, dtype=float)
    if np.any((jn <= -1) | (jn >= 0)):
        raise ParameterError("j", "values", "in (-1, 0)")
    if np.any(~(taus > 0)):
        raise ParameterError("tau", taus, "> 0")
    order = np.argsort(formula("lambda_of_j", jn, 1.0))  # lambda ascends along each line
    jn_sorted = jn[order]
    lam_tau = formula("lambda_of_j", jn_sorted[None, :], taus[:, None])  # (T, n)
    lam = np.ascontiguousarray(
        np.broadcast_to(lam_tau, (len(laws),) + lam_tau.shape).reshape(-1, jn.size)
    )
    line_laws = [law for law in laws for _ in taus]
    res = stieltjes_lines(lam, line_laws, settings=settings)
    factor = formula("jacobian_factor", jn_sorted[None, :], taus[:, None]) / np.pi
    rho = np.maximum(res.g.imag, 0.0).reshape(len(laws), taus.size, jn.size)
    rho *= factor
    if np.any(order != np.arange(order.size)):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        rho = rho[..., inverse]
    return rho, res


def _check_tau(tau) -> float:
    tau = float(tau)
    if not (np.isfinite(tau) and tau > 0):
        raise ParameterError("tau", tau, "> 0 and finite")
    return tau


# ----------------------------------------------------------------------------- quadrature
def covariance_spectrum_quadrature(
    law, variances=None, n_nodes: int = 256, subspace: str = "random", lower: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``lambda_j`` and weights ``w_j`` with ``sum_j w_j f(lambda_j) ~ int_{lambda > lower}
    f(lambda) rho_C(lambda) d lambda`` over the nonzero spectrum (weights sum to ``alpha`` when
    ``lower = 0``), so that ``(1/d) sum_i f(lambda_i) -> sum_j w_j f(lambda_j)``.

    Random subspace: on each bulk ``[l, u]`` (cut at ``lower``) substitute
    ``lambda = l + (u - l)(1 - cos theta)/2`` (smooth through the square-root edges) and use
    Gauss–Legendre in ``theta``. Orthonormal: the atoms themselves."""
    law = as_law(law, variances)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        keep = law.variances > lower
        return law.variances[keep].copy(), law.fractions[keep].copy()
    edges = _cached_edges(law)
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    nodes, weights = [], []
    for lo, hi in edges.bulks:
        if hi <= lower:
            continue
        theta_lo = 0.0 if lower <= lo else np.arccos(1 - 2 * (lower - lo) / (hi - lo))
        theta = 0.5 * (np.pi - theta_lo) * x + 0.5 * (np.pi + theta_lo)
        lam = lo + (hi - lo) * (1 - np.cos(theta)) / 2
        jac = 0.5 * (np.pi - theta_lo) * (hi - lo) * np.sin(theta) / 2
        nodes.append(lam)
        weights.append(w * jac)
    if not nodes:
        return np.empty(0), np.empty(0)
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    rho, res = covariance_density(nodes, law)
    if res.n_failed:
        raise RuntimeError(f"density solver failed at {res.n_failed} quadrature nodes")
    return nodes, weights * rho


def spectral_mass_above(
    threshold, law, variances=None, subspace: str = "random", n_nodes: int = 1025
) -> np.ndarray:
    """Mass of the nonzero spectrum of ``C`` above ``threshold`` (vectorized over thresholds).

    Random subspace: one density solve per bulk on ``n_nodes`` points uniform in ``theta``
    (``lambda = l + (u - l)(1 - cos theta)/2``, smooth through the square-root edges), a
    cumulative Simpson integral in ``theta``, and cubic interpolation at the thresholds (mapped to
    ``theta``). Orthonormal: the sum of the atoms above."""
    law = as_law(law, variances)
    thresholds = np.asarray(threshold, dtype=float)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        above = law.variances[None, :] > thresholds.reshape(-1, 1)
        return (above @ law.fractions).reshape(thresholds.shape)
    flat = thresholds.ravel()
    mass = np.zeros(flat.shape)
    for lo, hi, theta, cumulative in _bulk_cdf_tables(law, n_nodes):
        total = cumulative[-1]
        below_lo, above_hi = flat <= lo, flat >= hi
        inside = ~(below_lo | above_hi)
        mass[below_lo] += total
        if np.any(inside):
            t = np.arccos(np.clip(1 - 2 * (flat[inside] - lo) / (hi - lo), -1, 1))
            mass[inside] += total - _cubic_interp(theta, cumulative, t)
    return mass.reshape(thresholds.shape)


def _bulk_cdf_tables(law: VarianceLaw, n_nodes: int, rtol: float = 1e-10, max_nodes: int = 65537):
    """Per bulk: ``(l, u, theta, cumulative mass)``. The grid is doubled from ``n_nodes`` until
    the bulk's total mass changes by less than ``rtol * alpha`` (narrow internal features of
    nearly-separated bulks need fine grids); a table that does not converge raises."""
    key = (law.fractions.tobytes(), law.variances.tobytes(), n_nodes)
    if key not in _CDF_CACHE:
        if len(_CDF_CACHE) > 1024:
            _CDF_CACHE.clear()
        tables = []
        for lo, hi in _cached_edges(law).bulks:
            n, previous = n_nodes, None
            while True:
                theta, cumulative = _bulk_cdf(law, lo, hi, n)
                if previous is not None and abs(cumulative[-1] - previous) <= rtol * law.alpha:
                    break
                if 2 * n - 1 > max_nodes:
                    raise RuntimeError(
                        f"spectral CDF of bulk [{lo:g}, {hi:g}] did not converge with {n} nodes"
                    )
                previous, n = cumulative[-1], 2 * n - 1
            tables.append((lo, hi, theta, cumulative))
        _CDF_CACHE[key] = tables
    return _CDF_CACHE[key]


def _bulk_cdf(law: VarianceLaw, lo: float, hi: float, n: int):
    from scipy.integrate import cumulative_simpson

    theta = np.linspace(0, np.pi, n)
    lam = lo + (hi - lo) * (1 - np.cos(theta)) / 2
    rho, res = covariance_density(lam[1:-1], law)
    if res.n_failed:
        raise RuntimeError(f"density solver failed at {res.n_failed} of {lam.size} nodes")
    integrand = np.zeros(n)
    integrand[1:-1] = rho * (hi - lo) * np.sin(theta[1:-1]) / 2
    # endpoint values by quadratic extrapolation: 0 at a soft (square-root) edge, finite at the
    # hard edge lambda = 0 of a full-rank spectrum, where rho ~ lambda^(-1/2)
    integrand[0] = 3 * integrand[1] - 3 * integrand[2] + integrand[3]
    integrand[-1] = 3 * integrand[-2] - 3 * integrand[-3] + integrand[-4]
    return theta, cumulative_simpson(integrand, x=theta, initial=0.0)


_CDF_CACHE: dict[tuple, list] = {}


def _cubic_interp(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    from scipy.interpolate import CubicSpline

    return CubicSpline(x, y)(at)


# ----------------------------------------------------------------------------- gaps and phases
def spectrum_edges(law, variances=None, subspace: str = "random") -> np.ndarray:
    """Ascending ``[[l, u], ...]`` of the nonzero spectrum of ``C``: exact bulks (random) or the
    latent variances as degenerate bulks ``[s, s]`` (orthonormal)."""
    law = as_law(law, variances)
    require_choice("subspace", subspace, SUBSPACES)
    if subspace == "orthonormal":
        s = np.sort(law.variances)
        return np.stack([s, s], axis=1)
    return _cached_edges(law).bulks.copy()


def phase_of(tau, edges: np.ndarray, delta: float) -> np.ndarray:
    """``trivial`` / ``coverage`` / ``consolidation`` at each ``tau`` (THEORY A, toolkit rule)."""
    tau = np.asarray(tau, dtype=float)
    lowest, highest = edges[0, 0], edges[-1, 1]
    trivial = tau >= formula("trivial_tau", highest, delta)
    consolidation = (lowest > 0) & (tau <= formula("consolidation_tau", lowest, delta))
    return np.where(trivial, "trivial", np.where(consolidation, "consolidation", "coverage"))


def intermediate_gaps(tau, edges: np.ndarray, delta: float) -> list[dict]:
    """Gaps between consecutive bulks, ascending in variance: width at ``tau``, ``tau_max``,
    ``max_width`` and the visibility window ``[tau_lo, tau_hi]`` (None when never >= delta)."""
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
    ``-1 + delta``, i.e. of ``rho_C`` above ``lambda_th = tau delta / (1 - delta)``."""
    threshold = formula("dimension_threshold", np.asarray(tau, dtype=float), delta)
    return spectral_mass_above(threshold, law, variances, subspace=subspace)


def check_delta(delta: float) -> float:
    return require_in_range("delta", delta, 0, 1, closed=(False, False))


def spectral_summary(
    law, tau: float, delta: float = 0.1, subspace: str = "random", dim: int | None = None
) -> dict:
    """Everything ``diffphase spectrum --json`` reports at one ``tau``."""
    law = as_law(law)
    tau = _check_tau(tau)
    delta = check_delta(delta)
    edges = spectrum_edges(law, subspace=subspace)
    fraction = float(dimension_fraction(tau, law, delta=delta, subspace=subspace))
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

    law = as_law(law, variances)
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

    law = as_law(law, variances)
    lam = np.asarray(lam, dtype=float)
    flat = lam.ravel()
    n = flat.size
    alphas = np.broadcast_to(law.fractions, (n, law.K))
    groups = np.broadcast_to(law.variances, (n, law.K))
    inside = _cached_edges(law).contains(flat)
    g, converged, iterations = stieltjes_array(flat, alphas, groups, inside, device=device)
    density = np.maximum(g.imag, 0.0) / np.pi
    return density.reshape(lam.shape), converged.reshape(lam.shape), iterations.reshape(lam.shape)
