"""Exact error of the DDPM sampler on Gaussian data supported on a subspace (THEORY D).

Contract. Data ``y ~ N(0, U diag(lam) U^T)`` with ``U`` a ``d x k`` orthonormal frame (``k``
tangent variances ``lam_j > 0``; the ``d - k`` normal directions have ``lam = 0``). With the
exact score the sampler ``Y_{t-1} = (Y_t + eta_t s_t(Y_t) + sigma_t Z_t)/sqrt(alpha_t)``,
``Y_T ~ N(0, I)``, is linear and decouples over the eigen-directions; each direction follows the
relative-error recursion ``e_{t-1} = rho_t e_t + delta_t`` derived in
:mod:`diffphase.theory.sampler` (compiled here with :mod:`diffphase.solvers.codegen`), and an
optional constant score bias ``b`` along the first tangent direction adds the mean recursion
``m_{t-1} = (c_t m_t + eta_t b)/sqrt(alpha_t)``.

From the per-direction end errors at step 1 this module computes

* ``KL(law X_1 || law Y_1) = sum_j kl(e_j, mu_j) + (d - k) kl(e_normal)`` (tangent + normal);
* the exact TV of the normal part (two centred isotropic Gaussians in ``d - k`` dimensions,
  through the chi-square window of the theory module), exact one-dimensional TVs, and
  lower/upper bounds on the total TV (:func:`tv_bounds`: Hellinger, Pinsker, Bretagnolle–Huber
  from the theory module, subadditivity over independent blocks);
* these on ``(T, d, k, design, spectrum)`` grids in one compiled pass over the distinct chains
  ``(T, design, lam)`` (``d`` enters only as the multiplicity of the normal term);
* fitted power laws in ``T``.

Designs: ``star``, ``beta``, ``ho-beta``, ``ddim`` (see the theory module) and ``custom`` with
user arrays ``eta_t``, ``sigma_t^2``. Schedules come from :func:`diffphase.process.make_betas`.

Extremes: where a step's ``(beta, q, lam)`` coefficients leave the floating-point range (``q_t``
below ``1e-100``: a Li–Yan schedule with a large ``c0``) the chain switches to the bounded
variables ``r = beta/q``, ``nu = q/Sigma_t`` of
:func:`~diffphase.theory.sampler.scaled_relative_error_coefficients`; a result that still has
non-finite numbers is flagged (:attr:`SamplerError.non_finite`, the grid's ``finite`` column).
Public functions check their arguments (:class:`~diffphase.errors.ParameterError`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from ..data.tangent import check_variances
from ..errors import (
    ParameterError,
    as_float_array,
    require_array,
    require_choice,
    require_finite,
    require_in_range,
    require_int,
)
from ..models import ALL_DESIGNS, DESIGNS, SCHEDULES
from ..process import check_steps, make_betas
from ..theory import sampler as th
from .codegen import ScalarKernel, Template, compile_kernel, compile_kernels

#: below this |e| the divergences use their degree-9 Taylor series (the closed forms lose
#: ~1e-16/e^2 relatively; the series truncation is ~e^8 relatively)
SERIES_SWITCH = 1e-2
#: most tangent directions of one configuration (each runs its own chain)
MAX_TANGENT = 10**5
#: default tangent spectrum: geometric from 0.25 to 4 (unit variances make ho-beta exact)
DEFAULT_SPECTRUM = (0.25, 4.0)


def geometric_spectrum(k: int, low: float = DEFAULT_SPECTRUM[0],
                       high: float = DEFAULT_SPECTRUM[1]) -> np.ndarray:
    """``k`` variances geometric from ``low`` to ``high`` (one variance: their geometric mean)."""
    k = require_int("k", k, minimum=1)
    low = require_in_range("low", low, 0, np.inf, closed=(False, False))
    high = require_in_range("high", high, low, np.inf, closed=(True, False))
    if k == 1:
        return np.array([np.sqrt(low * high)])
    return np.geomspace(low, high, k)


def schedule_arrays(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(beta_t, q_t = 1 - abar_t)`` for t = 1..T (``betas``: at least 2, each in ``(0, 1)``)
    with ``q`` computed without cancellation."""
    betas = require_array("schedule beta", betas, low=0, high=1, closed=(False, False))
    if betas.ndim != 1 or betas.size < 2:
        raise ParameterError("betas", f"{betas.size} steps", "a list of >= 2 steps (T >= 2)")
    return betas, -np.expm1(np.cumsum(np.log1p(-betas)))


# --------------------------------------------------------------------------- compiled kernels
def chain_end_errors(betas, qs, starts, lengths, chain_schedule, chain_design, chain_lam,
                     chain_bias, custom_start, custom_eta, custom_sigma2, out_e,
                     out_m):  # pragma: no cover - numba template
    """End errors ``e_1`` and standardized means ``mu_1`` of each chain (numba template: the
    step coefficients and updates are the kernels compiled next to it)."""
    for j in prange(chain_lam.size):  # noqa: F821
        s = chain_schedule[j]
        start = starts[s]
        T = lengths[s]
        lam = chain_lam[j]
        code = chain_design[j]
        b = chain_bias[j]
        e = initial_error(qs[start + T - 1], lam)  # noqa: F821
        m = 0.0
        for t in range(T - 1, 0, -1):
            be = betas[start + t]
            qq = qs[start + t]
            if code == 0:
                rho, delta, c, eta = coefficients_star(be, qq, lam)  # noqa: F821
            elif code == 1:
                rho, delta, c, eta = coefficients_beta(be, qq, lam)  # noqa: F821
            elif code == 2:
                rho, delta, c, eta = coefficients_ho_beta(be, qq, lam)  # noqa: F821
            elif code == 3:
                rho, delta, c, eta = coefficients_ddim(be, qq, lam)  # noqa: F821
            else:
                eta = custom_eta[custom_start[j] + t]
                rho, delta, c = coefficients_custom(be, qq, lam, eta,  # noqa: F821
                                                    custom_sigma2[custom_start[j] + t])
            if not (np.isfinite(rho) and np.isfinite(delta)):  # tiny q: bounded variables
                r, nu = be / qq, qq / (lam * (1.0 - qq) + qq)
                if code == 0:
                    rho, delta = scaled_star(r, nu, qq)  # noqa: F821
                elif code == 1:
                    rho, delta = scaled_beta(r, nu, qq)  # noqa: F821
                elif code == 2:
                    rho, delta = scaled_ho_beta(r, nu, qq)  # noqa: F821
                elif code == 3:
                    rho, delta = scaled_ddim(r, nu, qq)  # noqa: F821
                else:
                    rho, delta = scaled_custom(r, nu, qq, eta / qq,  # noqa: F821
                                               custom_sigma2[custom_start[j] + t] / qq)
            e = error_update(rho, delta, e)  # noqa: F821
            m = mean_update(be, c, eta, m, b)  # noqa: F821
        out_e[j] = e
        out_m[j] = standardized_mean(qs[start], lam, m)  # noqa: F821


def divergences_batch(e, mu, switch, out_kl, out_log_bc):  # pragma: no cover - numba template
    """KL and log BC per direction: the Taylor series below ``switch``, else the closed form."""
    for i in range(e.size):
        if abs(e[i]) < switch:
            out_kl[i] = kl_series(e[i], mu[i])  # noqa: F821
            out_log_bc[i] = log_bc_series(e[i], mu[i])  # noqa: F821
        else:
            out_kl[i] = kl_closed(e[i], mu[i])  # noqa: F821
            out_log_bc[i] = log_bc_closed(e[i], mu[i])  # noqa: F821


@functools.lru_cache(maxsize=1)
def compiled_kernels():
    """The generated numba module: per-design step coefficients, the error and mean updates,
    divergences, and the loops :func:`chain_end_errors` and :func:`divergences_batch`."""
    kernels = [ScalarKernel.of("initial_error", (th.q, th.lam), th.initial_relative_error())]
    for name in DESIGNS:
        eta_expr, sigma2_expr = th.design_coefficients(name)
        rho, delta = th.relative_error_coefficients(eta_expr, sigma2_expr)
        kernels.append(ScalarKernel.of(f"coefficients_{name.replace('-', '_')}",
                                       (th.beta, th.q, th.lam),
                                       (rho, delta, th.contraction(eta_expr), eta_expr)))
    scaled_args = (th.ratio, th.noise_share, th.q)
    for name in DESIGNS:
        kernels.append(ScalarKernel.of(f"scaled_{name.replace('-', '_')}", scaled_args,
                                       th.scaled_relative_error_coefficients(name)))
    kernels.append(ScalarKernel.of("scaled_custom", (*scaled_args, th.eta_ratio,
                                                     th.sigma2_ratio),
                                   th.scaled_relative_error_coefficients()))
    rho, delta = th.relative_error_coefficients()
    kernels.append(ScalarKernel.of("coefficients_custom",
                                   (th.beta, th.q, th.lam, th.eta, th.sigma2),
                                   (rho, delta, th.contraction())))
    kernels += [
        ScalarKernel.of("error_update", (th.rho_t, th.delta_t, th.rel_error),
                        th.relative_error_step(coefficients=(th.rho_t, th.delta_t))),
        ScalarKernel.of("mean_update", (th.beta, th.contraction_c, th.eta, th.mean, th.bias),
                        th.mean_step(c=th.contraction_c)),
        ScalarKernel.of("standardized_mean", (th.q, th.lam, th.mean), th.standardized_mean()),
    ]
    kl = th.gaussian_kl_1d()
    log_bc = th.gaussian_log_bhattacharyya_1d()
    args = (th.rel_error, th.mean)
    kernels += [
        ScalarKernel.of("kl_closed", args, kl),
        ScalarKernel.of("kl_series", args, th.small_error_series(kl)),
        ScalarKernel.of("log_bc_closed", args, log_bc),
        ScalarKernel.of("log_bc_series", args, th.small_error_series(log_bc)),
    ]
    loops = [Template(chain_end_errors, parallel=True), Template(divergences_batch)]
    return compile_kernels(kernels, templates=loops, tag="sampler")


@functools.cache
def _design_functions(design: str):
    """numpy ``(eta_t, sigma_t^2)`` of a named design as functions of ``(beta_t, q_t)``."""
    return compile_kernel(ScalarKernel.of(f"design_{design.replace('-', '_')}", (th.beta, th.q),
                                          th.design_coefficients(design)), "numpy")


@functools.lru_cache(maxsize=1)
def _window_and_bounds():
    """numpy forms of the exact TVs and the TV bounds (theory module): the chi-square window of
    the isotropic TV, the log-density ratio of two one-dimensional Gaussians, the bounds."""
    window, bounds = th.chi_square_window(), th.tv_bounds()
    return compile_kernels([
        ScalarKernel.of("window", (th.rel_error, th.n_dim), tuple(window.values())),
        ScalarKernel.of("log_ratio", (th.variance_q, th.mean), th.gaussian_log_ratio_1d()),
        ScalarKernel.of("bounds", (th.kl_value, th.log_bc_value), tuple(bounds.values())),
    ], "numpy")


def design_arrays(design: str, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(eta_t, sigma_t^2)`` for t = 1..T of a named design; entry 0 belongs to step 1, which the
    sampler never takes (it stops at ``Y_1``), and is set to 0."""
    require_choice("design", design, DESIGNS)
    betas, qs = schedule_arrays(betas)
    with np.errstate(invalid="ignore"):  # step 1 (q = beta) is never taken; it may round
        values = _design_functions(design)(betas[1:], qs[1:])
    out = []
    for value in values:
        full = np.zeros(betas.shape)
        full[1:] = value
        out.append(full)
    return out[0], out[1]


# --------------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Chain:
    """One sampler chain: schedule index, design code, data variance along the direction, bias."""

    schedule: int
    design: int
    lam: float
    bias: float = 0.0


def run_chains(schedules: Sequence[np.ndarray], chains: Sequence[Chain],
               custom: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """End relative errors ``e_1`` and standardized means ``mu_1 = m_1 / sqrt(Sigma_1)``.

    ``schedules`` are beta arrays; ``custom[schedule_index] = (eta, sigma2)`` arrays of the same
    length are used by chains with design code 4 (``custom``). Each chain names an existing
    schedule and a design code 0..4 and has a finite ``lam >= 0`` and a finite bias. With an
    extremely small noise ``q_t`` (a schedule starting near the smallest float) the steps switch
    to the bounded variables of
    :func:`~diffphase.theory.sampler.scaled_relative_error_coefficients`.
    """
    kernels = compiled_kernels()
    pairs = [schedule_arrays(b) for b in schedules]
    if not pairs or not chains:
        return np.empty(0), np.empty(0)
    lengths = np.array([p[0].size for p in pairs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    betas = np.concatenate([p[0] for p in pairs])
    qs = np.concatenate([p[1] for p in pairs])
    n = len(chains)
    chain_schedule = np.array([c.schedule for c in chains], dtype=np.int64)
    chain_design = np.array([c.design for c in chains], dtype=np.int64)
    chain_lam = np.array([c.lam for c in chains], dtype=float)
    chain_bias = np.array([c.bias for c in chains], dtype=float)
    if np.any((chain_schedule < 0) | (chain_schedule >= len(pairs))):
        raise ParameterError("chains", chain_schedule, f"schedule indices in [0, {len(pairs)})")
    if np.any((chain_design < 0) | (chain_design > len(DESIGNS))):
        raise ParameterError("chains", chain_design, f"design codes in [0, {len(DESIGNS)}]")
    require_array("lam", chain_lam, low=0)
    require_array("bias", chain_bias)
    custom = dict(custom or {})
    custom_keys = sorted(custom)
    custom_offsets = {}
    eta_parts, sigma_parts, offset = [np.zeros(1)], [np.zeros(1)], 1
    for key in custom_keys:
        eta_c, sigma2_c = (require_array(name, a).ravel()
                           for name, a in zip(("eta", "sigma2"), custom[key], strict=True))
        if eta_c.size != lengths[key] or sigma2_c.size != lengths[key] or np.any(sigma2_c < 0):
            raise ParameterError("eta/sigma2", (eta_c.size, sigma2_c.size),
                                 f"{lengths[key]} values each (sigma2 >= 0)")
        custom_offsets[key] = offset
        eta_parts.append(eta_c)
        sigma_parts.append(sigma2_c)
        offset += eta_c.size
    custom_start = np.array([custom_offsets.get(c.schedule, 0) if c.design == 4 else 0
                             for c in chains], dtype=np.int64)
    if np.any((chain_design == 4) & (custom_start == 0)):
        raise ParameterError("design", "custom", "custom (eta, sigma2) arrays for its schedule")
    out_e, out_m = np.empty(n), np.empty(n)
    kernels.chain_end_errors(betas, qs, starts, lengths, chain_schedule, chain_design, chain_lam,
                             chain_bias, custom_start, np.concatenate(eta_parts),
                             np.concatenate(sigma_parts), out_e, out_m)
    return out_e, out_m


def gaussian_divergences(e: np.ndarray, mu: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per-direction ``KL(N(0,S) || N(mu sqrt(S), S (1 + e)))`` and ``log BC`` (Bhattacharyya),
    for relative errors ``e > -1`` (``+inf`` allowed: an infinite divergence) and finite means
    ``mu`` of the same size (flattened)."""
    e = require_array("e", e, low=-1, closed=(False, True), finite=False).ravel()
    mu = np.zeros_like(e) if mu is None else require_array("mu", mu).ravel()
    if mu.size != e.size:
        raise ParameterError("mu", f"{mu.size} values", f"one per relative error ({e.size})")
    return _divergences(e, mu)


def _divergences(e: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kl, log_bc = np.empty_like(e), np.empty_like(e)
    with np.errstate(all="ignore"):
        compiled_kernels().divergences_batch(np.ascontiguousarray(e, dtype=float),
                                             np.ascontiguousarray(mu, dtype=float),
                                             SERIES_SWITCH, kl, log_bc)
    return kl, log_bc


# --------------------------------------------------------------------------- total variation
def isotropic_tv(e, n) -> np.ndarray:
    """Exact ``TV(N(0, I_n), N(0, (1 + e) I_n))``.

    The first density is larger inside ``|x|^2 < r^2``, ``r^2 = n (1+e) log(1+e)/e``, so
    ``TV = |F_n(r^2) - F_n(r^2/(1+e))|`` with ``F_n`` the chi-square CDF (the window of
    :func:`diffphase.theory.sampler.chi_square_window`, compiled). Where the two arguments are
    close (``|log(1+e)| < 0.05``) the difference is integrated by 16-point Gauss–Legendre on the
    chi-square density instead (the window's centre and half-width are cancellation-free), which
    keeps full relative precision. ``e > -1`` (``+inf``: TV 1), ``n >= 0``.
    """
    e = require_array("e", e, low=-1, closed=(False, True), finite=False)
    e, n = np.broadcast_arrays(e, require_array("n", n, low=0))
    out = np.zeros(e.shape)
    width = np.abs(np.log1p(e))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # e = 0 or huge: unused
        x_low, x_high, centre, half_width = _window_and_bounds().window(e, n)
    lo, hi = np.minimum(x_low, x_high), np.maximum(x_low, x_high)
    wide = (width >= 0.05) & (n > 0)
    out[wide] = special.gammainc(n[wide] / 2, hi[wide] / 2) - special.gammainc(n[wide] / 2,
                                                                               lo[wide] / 2)
    wide &= np.isfinite(e)
    out[np.isinf(e) & (n > 0)] = 1.0
    narrow = (~wide) & (n > 0) & (e != 0) & np.isfinite(e)
    if np.any(narrow):
        nodes, weights = np.polynomial.legendre.leggauss(16)
        k = n[narrow]
        mid, half = centre[narrow], np.abs(half_width[narrow])
        x = mid[:, None] + half[:, None] * nodes[None, :]
        log_pdf = ((k[:, None] / 2 - 1) * np.log(x) - x / 2 - (k[:, None] / 2) * np.log(2)
                   - special.gammaln(k[:, None] / 2))
        out[narrow] = half * np.sum(weights[None, :] * np.exp(log_pdf), axis=1)
    return np.clip(out, 0.0, 1.0)


def gaussian_tv_1d(e, mu) -> np.ndarray:
    """Exact ``TV(N(0, 1), N(mu, 1 + e))``: the densities cross where a quadratic vanishes;
    TV is the difference of the two laws' masses on the set where the first is larger
    (``e > -1``, ``+inf`` allowed; finite ``mu``)."""
    e = require_array("e", e, low=-1, closed=(False, True), finite=False)
    e, mu = np.broadcast_arrays(e, require_array("mu", mu))
    out = np.array(isotropic_tv(e, 1.0), dtype=float)
    shifted = (mu != 0) & np.isfinite(e)
    if np.any(shifted):
        from scipy.stats import norm

        ee, mm = e[shifted], mu[shifted]
        w = 1 + ee
        # log p - log q = A x^2 + B x + C (theory module)
        a_coef, b_coef, c_coef = _window_and_bounds().log_ratio(w, mm)
        tv = np.empty(ee.size)
        linear = np.abs(a_coef) < 1e-14
        # equal variances: p > q on one side of x0 = m/2
        x0 = -c_coef[linear] / b_coef[linear]
        p_mass = np.where(b_coef[linear] > 0, norm.sf(x0), norm.cdf(x0))
        q_mass = np.where(b_coef[linear] > 0, norm.sf((x0 - mm[linear]) / np.sqrt(w[linear])),
                          norm.cdf((x0 - mm[linear]) / np.sqrt(w[linear])))
        tv[linear] = p_mass - q_mass
        quad = ~linear
        aq, bq, cq, mq, wq = a_coef[quad], b_coef[quad], c_coef[quad], mm[quad], w[quad]
        disc = np.maximum(bq**2 - 4 * aq * cq, 0.0)
        r1 = (-bq - np.sqrt(disc)) / (2 * aq)
        r2 = (-bq + np.sqrt(disc)) / (2 * aq)
        x1, x2 = np.minimum(r1, r2), np.maximum(r1, r2)
        p_in = norm.cdf(x2) - norm.cdf(x1)
        q_in = norm.cdf((x2 - mq) / np.sqrt(wq)) - norm.cdf((x1 - mq) / np.sqrt(wq))
        # inside the roots the sign of A x^2 + ... is opposite to A: p > q inside iff A < 0
        tv[quad] = np.where(aq < 0, p_in - q_in, q_in - p_in)
        out[shifted] = tv
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------- single configuration
@dataclass
class SamplerError:
    """Exact error of one configuration (Gaussian data). ``non_finite`` counts the entries
    (numbers and per-direction errors) that are not finite: 0 unless the chain left the
    floating-point range; such a result is flagged, never silently NaN."""

    kl: float
    kl_tangent: float
    kl_normal: float
    kl_normal_per_dim: float
    tv_normal: float
    tv_lower: float
    tv_upper: float
    tangent_relative_errors: np.ndarray
    normal_relative_error: float
    tangent_means: np.ndarray
    non_finite: int = 0

    @property
    def finite(self) -> bool:
        return self.non_finite == 0


def combine_errors(e_tangent: np.ndarray, mu_tangent: np.ndarray, e_normal: float,
                   n_normal: int) -> SamplerError:
    """KL split and TV bounds from the per-direction end errors (one configuration); entries
    that are not finite are counted in ``non_finite``."""
    e_tangent, mu_tangent = np.asarray(e_tangent, float), np.asarray(mu_tangent, float)
    n_normal = require_int("n_normal", n_normal, minimum=0)
    if not np.all(np.isfinite([*e_tangent, *mu_tangent, e_normal])):
        return _non_finite_error(e_tangent, mu_tangent, float(e_normal))
    kl_t, lbc_t = gaussian_divergences(e_tangent, mu_tangent)
    kl_n, lbc_n = gaussian_divergences(np.array([e_normal]))
    kl_tangent = float(np.sum(kl_t))
    kl_normal_per_dim = float(kl_n[0])
    kl_normal = n_normal * kl_normal_per_dim
    kl = kl_tangent + kl_normal
    tv_normal = float(isotropic_tv(e_normal, n_normal)) if n_normal > 0 else 0.0
    tv_tangent_1d = gaussian_tv_1d(e_tangent, mu_tangent)
    log_bc = float(np.sum(lbc_t) + n_normal * lbc_n[0])
    lower, upper = tv_bounds(kl, log_bc, tv_normal, float(np.max(tv_tangent_1d, initial=0.0)),
                             float(np.sum(tv_tangent_1d)))
    numbers = [kl, kl_tangent, kl_normal, kl_normal_per_dim, tv_normal, float(lower),
               float(upper)]
    return SamplerError(*numbers, e_tangent, float(e_normal), mu_tangent,
                        int(np.count_nonzero(~np.isfinite(numbers))))


def _non_finite_error(e_tangent, mu_tangent, e_normal) -> SamplerError:
    """A flagged result for end errors outside the floating-point range (NaN divergences)."""
    bad = int(np.count_nonzero(~np.isfinite([*e_tangent, *mu_tangent, e_normal])))
    nan = float("nan")
    return SamplerError(nan, nan, nan, nan, nan, nan, nan, e_tangent, e_normal, mu_tangent,
                        7 + bad)


def tv_bounds(kl, log_bc, tv_normal, tv_tangent_max, tv_tangent_sum):
    """Lower and upper bounds on the total TV of independent blocks (arrays broadcast;
    ``kl >= 0``, ``log_bc <= 0`` up to rounding, TVs in ``[0, 1]``; ``+inf`` divergences allowed).

    ``lower = max(TV_normal, max_j TV_j, 1 - BC)``;
    ``upper = min(1, sqrt(1 - BC^2), sqrt(KL / 2), sqrt(1 - exp(-KL)), TV_normal + sum_j TV_j)``
    (Hellinger, Pinsker, Bretagnolle–Huber: the compiled
    :func:`diffphase.theory.sampler.tv_bounds`; subadditivity), never below ``lower``.
    """
    kl = require_array("kl", kl, low=0, finite=False)
    log_bc = require_array("log_bc", log_bc, high=1e-12, finite=False)
    for name, value in (("tv_normal", tv_normal), ("tv_tangent_max", tv_tangent_max),
                        ("tv_tangent_sum", tv_tangent_sum)):
        require_array(name, value, low=0)
    with np.errstate(invalid="ignore", over="ignore"):
        h_lower, h_upper, pinsker, bretagnolle_huber = _window_and_bounds().bounds(kl, log_bc)
    h_upper = np.where(log_bc < 0, h_upper, 0.0)  # BC <= 1; a rounded log BC >= 0 gives 0
    lower = np.maximum(np.maximum(tv_normal, tv_tangent_max), h_lower)
    upper = np.minimum.reduce([np.ones(np.shape(lower)), h_upper, pinsker, bretagnolle_huber,
                               tv_normal + tv_tangent_sum])
    return lower, np.maximum(lower, upper)


def _check_tangent_dimension(k) -> int:
    k = require_int("k", k, minimum=1)
    if k > MAX_TANGENT:
        raise ParameterError("k", k, f"an integer in [1, {MAX_TANGENT}] (one chain each)")
    return k


def validate_configuration(T: int, dim: int, k: int) -> tuple[int, int, int]:
    """``2 <= T <= MAX_STEPS``, ``dim >= 1``, ``1 <= k <= min(dim, MAX_TANGENT)``."""
    T = check_steps(T)
    dim = require_int("dim", dim, minimum=1)
    k = _check_tangent_dimension(k)
    if k > dim:
        raise ParameterError("k", k, f"<= dim = {dim}")
    return T, dim, k


def sampler_error(T: int = 1000, dim: int = 4096, k: int = 8, design: str = "star",
                  schedule: str = "li-yan", variances=None, score_bias: float = 0.0,
                  schedule_params: Mapping[str, float] | None = None, betas=None,
                  eta=None, sigma2=None) -> SamplerError:
    """Exact ``KL(law X_1 || law Y_1)`` and TV bounds for Gaussian data on a ``k``-subspace of
    ``R^dim`` (THEORY D).

    Parameters
    ----------
    T, dim, k : steps, ambient dimension, subspace dimension (``2 <= T``, ``1 <= k <= dim``).
    design : ``star``, ``beta``, ``ho-beta``, ``ddim`` or ``custom`` (then ``eta`` and ``sigma2``
        are arrays of length ``T``; entry ``t - 1`` is used at step ``t``).
    schedule : ``li-yan`` (``schedule_params`` ``c0``, ``c1``), ``linear`` or ``cosine``; or pass
        ``betas`` explicitly.
    variances : the ``k`` tangent variances (default geometric from 0.25 to 4).
    score_bias : constant error ``b`` added to the score along the first tangent direction.
    """
    T, dim, k = validate_configuration(T, dim, k)
    require_choice("design", design, ALL_DESIGNS)
    lam = geometric_spectrum(k) if variances is None else check_variances(variances, k)
    require_finite("score_bias", score_bias)
    if betas is None:
        require_choice("schedule", schedule, SCHEDULES)
        betas = make_betas(schedule, T, **dict(schedule_params or {}))
    betas = schedule_arrays(betas)[0]
    if betas.size != T:
        raise ParameterError("betas", betas.size, f"length T = {T}")
    custom = None
    code = ALL_DESIGNS.index(design)
    if design == "custom":
        if eta is None or sigma2 is None:
            raise ParameterError("design", design, "custom with both eta and sigma2 arrays")
        eta_arr, sigma2_arr = as_float_array("eta", eta), as_float_array("sigma2", sigma2)
        if eta_arr.size != T or sigma2_arr.size != T:
            raise ParameterError("eta/sigma2", (eta_arr.size, sigma2_arr.size), f"length T = {T}")
        if np.any(sigma2_arr < 0):
            raise ParameterError("sigma2", sigma2_arr, ">= 0")
        custom = {0: (eta_arr, sigma2_arr)}
    chains = [Chain(0, code, float(v), score_bias if j == 0 else 0.0) for j, v in enumerate(lam)]
    chains.append(Chain(0, code, 0.0))
    e, mu = run_chains([betas], chains, custom)
    return combine_errors(e[:-1], mu[:-1], float(e[-1]), dim - k)


# --------------------------------------------------------------------------- grids
def sampler_error_grid(T_values: Sequence[int], dims: Sequence[int], ks: Sequence[int],
                       designs: Sequence[str] = DESIGNS, spectra: Sequence[str] = ("geometric",),
                       schedule: str = "li-yan",
                       schedule_params: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Exact errors on the product grid ``T x dim x k x design x spectrum`` (tidy columns).

    ``spectra`` are names: ``geometric`` (0.25 to 4) or ``unit`` (all ones). Configurations with
    ``k > dim`` are skipped. Each distinct chain ``(T, design, lam)`` runs once, compiled. The
    column ``finite`` flags each row (False: a chain left the floating-point range; its numbers
    are NaN). Every list must be non-empty.
    """
    for name, values in (("T_values", T_values), ("dims", dims), ("ks", ks),
                         ("designs", designs), ("spectra", spectra)):
        if len(values) == 0:
            raise ParameterError(name, list(values), "a non-empty list")
    T_values = [check_steps(T) for T in T_values]
    dims = [require_int("dim", d, minimum=1) for d in dims]
    ks = [_check_tangent_dimension(k) for k in ks]
    for design in designs:
        require_choice("design", design, DESIGNS)
    for name in spectra:
        require_choice("spectrum", name, ("geometric", "unit"))
    if schedule not in SCHEDULES:
        require_choice("schedule", schedule, SCHEDULES)
    params = dict(schedule_params or {})
    schedules = [make_betas(schedule, T, **params) for T in T_values]
    spectrum_of = {"geometric": geometric_spectrum, "unit": lambda k: np.ones(k)}
    lam_index: dict[tuple[int, int, float], int] = {}
    chains: list[Chain] = []

    def chain_id(s: int, code: int, lam: float) -> int:
        key = (s, code, lam)
        if key not in lam_index:
            lam_index[key] = len(chains)
            chains.append(Chain(s, code, lam))
        return lam_index[key]

    plan = []
    for s, _ in enumerate(T_values):
        for design in designs:
            code = DESIGNS.index(design)
            normal = chain_id(s, code, 0.0)
            for k in ks:
                for name in spectra:
                    ids = [chain_id(s, code, float(v)) for v in spectrum_of[name](k)]
                    plan.append((s, design, k, name, ids, normal))
    e, mu = run_chains(schedules, chains)
    good = np.isfinite(e) & np.isfinite(mu)
    kl_dir, lbc_dir = _divergences(e, mu)
    tv_dir = np.full(e.shape, np.nan)
    tv_dir[good] = gaussian_tv_1d(e[good], mu[good])
    rows: dict[str, list] = {key: [] for key in (
        "T", "dim", "k", "design", "spectrum", "kl", "kl_tangent", "kl_normal",
        "kl_normal_per_dim", "tv_normal", "tv_lower", "tv_upper", "finite")}
    for s, design, k, name, ids, normal in plan:
        if not (good[ids].all() and good[normal]):
            kl_dir[ids + [normal]] = lbc_dir[ids + [normal]] = np.nan
        kl_t = float(np.sum(kl_dir[ids]))
        lbc_t = float(np.sum(lbc_dir[ids]))
        tv_t_sum, tv_t_max = float(np.sum(tv_dir[ids])), float(np.max(tv_dir[ids]))
        valid_dims = [d for d in dims if d >= k]
        n_normal = np.array([d - k for d in valid_dims], dtype=float)
        if n_normal.size == 0:
            continue
        kl_n = n_normal * kl_dir[normal]
        kl = kl_t + kl_n
        log_bc = lbc_t + n_normal * lbc_dir[normal]
        if np.isfinite(kl_t) and np.isfinite(kl_dir[normal]):
            tv_n = isotropic_tv(np.full(n_normal.shape, e[normal]), n_normal)
            lower, upper = tv_bounds(kl, log_bc, tv_n, tv_t_max, tv_t_sum)
        else:
            tv_n = lower = upper = np.full(n_normal.shape, np.nan)
        finite = np.isfinite(kl) & np.isfinite(lower) & np.isfinite(upper) & np.isfinite(tv_n)
        for i, d in enumerate(valid_dims):
            rows["T"].append(T_values[s])
            rows["dim"].append(d)
            rows["k"].append(k)
            rows["design"].append(design)
            rows["spectrum"].append(name)
            rows["kl"].append(kl[i])
            rows["kl_tangent"].append(kl_t)
            rows["kl_normal"].append(kl_n[i])
            rows["kl_normal_per_dim"].append(kl_dir[normal])
            rows["tv_normal"].append(tv_n[i])
            rows["tv_lower"].append(lower[i])
            rows["tv_upper"].append(upper[i])
            rows["finite"].append(bool(finite[i]))
    return {key: np.asarray(val) for key, val in rows.items()}


@dataclass
class RateFit:
    """``error ~ C T^slope`` fitted by least squares in log-log; ``slope_se`` its standard error."""

    slope: float
    slope_se: float
    prefactor: float
    points: int


def fit_rate(T_values, errors, weights=None) -> RateFit:
    """Fit ``log error = log C + slope log T`` (optionally weighted); points with error <= 0 or
    non-finite are dropped (at least two must remain). ``T_values`` finite ``> 0``, one per
    error; ``weights`` (one per error) finite ``>= 0``."""
    T_values = require_array("T_values", T_values, low=0, closed=(False, True)).ravel()
    errors = require_array("errors", errors, finite=False).ravel()
    if errors.size != T_values.size:
        raise ParameterError("errors", f"{errors.size} values", f"one per T ({T_values.size})")
    if weights is not None:
        weights = require_array("weights", weights, low=0).ravel()
        if weights.size != errors.size:
            raise ParameterError("weights", f"{weights.size} values", "one per error")
    ok = np.isfinite(errors) & (errors > 0) & (T_values > 0)
    if np.count_nonzero(ok) < 2:
        raise ParameterError("errors", errors, "at least two positive finite values to fit a rate")
    x, y = np.log(T_values[ok]), np.log(errors[ok])
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)[ok]
    design = np.stack([np.ones_like(x), x], axis=1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)
    resid = y - (coef[0] + coef[1] * x)
    dof = max(x.size - 2, 1)
    sigma2 = float(np.sum(w * resid**2) / dof)
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    return RateFit(float(coef[1]), float(np.sqrt(max(cov[1, 1], 0.0))), float(np.exp(coef[0])),
                   int(x.size))
