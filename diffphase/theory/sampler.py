"""Symbolic layer of DDPM coefficient design on low-dimensional data (THEORY D).

Contract: pure functions returning sympy expressions (no numbers baked in) for

* the one-step sampler ``Y_{t-1} = (Y_t + eta s_t(Y_t) + sigma Z) / sqrt(alpha_t)`` acting on one
  eigen-direction of Gaussian data of variance ``lam`` (``lam = 0``: a normal direction);
* the per-direction variance recursion ``v_{t-1} = (c_t^2 v_t + sigma_t^2) / alpha_t`` with
  ``c_t = 1 - eta_t / (abar_t lam + 1 - abar_t)`` and the mean recursion under a constant score
  bias ``b`` (``s = s* + b``): ``m_{t-1} = (c_t m_t + eta_t b) / sqrt(alpha_t)``;
* the same recursion written for the *relative error* ``e_t = v_t / Sigma_t - 1`` (``Sigma_t`` the
  variance of ``X_t``): ``e_{t-1} = rho_t e_t + delta_t``; ``delta_t`` is simplified symbolically
  so that it is evaluated without cancellation (it vanishes identically for ``star`` on a normal
  direction);
* the normal-direction preservation condition
  ``(1 - abar - eta)^2 / (1 - abar) + sigma^2 = alpha - abar``, its unique solution with
  ``eta = 1 - alpha`` (the ``star`` design, equal to the DDPM posterior variance) and its
  ``sigma = 0`` solution (``ddim``, equal to the DDIM update of Song et al.);
* the designs ``star``, ``beta``, ``ho-beta``, ``ddim`` as ``(eta, sigma^2)``;
* one-dimensional Gaussian divergences as functions of the relative error (KL, log Bhattacharyya
  coefficient) with their Taylor series for small errors, the radius where two centred
  isotropic Gaussians have equal density and the chi-square window it gives (for the exact TV of
  the normal part), and the bounds on TV from KL and the Bhattacharyya coefficient.

Step variables are written in the numerically safe pair ``beta = 1 - alpha_t`` and
``q = 1 - abar_t`` (so ``alpha - abar = q - beta``); all expressions are checked against the
``(alpha, abar)`` form in the tests.
"""

from __future__ import annotations

import functools

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.core import random as sympy_random

from ..models import DESIGNS

#: step variables: beta_t = 1 - alpha_t, q_t = 1 - abar_t
beta, q = sp.symbols("beta q", positive=True)
#: data variance along a direction (0 for normal directions), relative error, score bias, mean
lam = sp.Symbol("lam", nonnegative=True)
rel_error = sp.Symbol("e", real=True)
bias, mean = sp.symbols("b m", real=True)
#: design coefficients and the output variance of the sampler at step t
eta, sigma2, variance = sp.symbols("eta sigma2 v", real=True)
#: the contraction c_t and the coefficients of e_{t-1} = rho_t e_t + delta_t, as symbols (the
#: compiled chain loop evaluates them once per step and passes them on)
contraction_c, rho_t, delta_t = sp.symbols("c rho delta", real=True)
#: a KL divergence and the log of a Bhattacharyya coefficient (bounds on TV)
kl_value = sp.Symbol("kl", nonnegative=True)
log_bc_value = sp.Symbol("log_bc", nonpositive=True)
#: dimension of an isotropic block; the variance ``1 + e`` of a second one-dimensional law
n_dim = sp.Symbol("n", positive=True)
variance_q = sp.Symbol("w", positive=True)
#: the textbook pair, used to state conditions and to cross-check the (beta, q) forms
alpha, abar = sp.symbols("alpha abar", positive=True)

SERIES_ORDER = 10


def to_alpha_abar(expr: sp.Expr) -> sp.Expr:
    """Rewrite an expression in ``(beta, q)`` with ``beta = 1 - alpha``, ``q = 1 - abar``."""
    return expr.subs({beta: 1 - alpha, q: 1 - abar}, simultaneous=True)


def data_variance(lam_: sp.Expr = lam) -> sp.Expr:
    """``Sigma_t = abar_t lam + 1 - abar_t``: the variance of ``X_t`` along a direction."""
    return (1 - q) * lam_ + q


def previous_data_variance(lam_: sp.Expr = lam) -> sp.Expr:
    """``Sigma_{t-1} = abar_{t-1} lam + 1 - abar_{t-1}`` with ``abar_{t-1} = abar_t / alpha_t``."""
    return ((1 - q) * lam_ + q - beta) / (1 - beta)


def contraction(eta_: sp.Expr = eta, lam_: sp.Expr = lam) -> sp.Expr:
    """``c_t = 1 - eta_t / Sigma_t`` (the exact score is ``-x / Sigma_t`` on a Gaussian
    direction)."""
    return 1 - eta_ / data_variance(lam_)


def variance_step(eta_: sp.Expr = eta, sigma2_: sp.Expr = sigma2, lam_: sp.Expr = lam,
                  v: sp.Expr = variance) -> sp.Expr:
    """``v_{t-1} = (c_t^2 v_t + sigma_t^2) / alpha_t`` (THEORY D)."""
    return (contraction(eta_, lam_) ** 2 * v + sigma2_) / (1 - beta)


def mean_step(eta_: sp.Expr = eta, lam_: sp.Expr = lam, m: sp.Expr = mean,
              b: sp.Expr = bias, c: sp.Expr | None = None) -> sp.Expr:
    """``m_{t-1} = (c_t m_t + eta_t b) / sqrt(alpha_t)`` for the biased score ``s* + b``
    (``c`` defaults to :func:`contraction` ``(eta, lam)``)."""
    c = contraction(eta_, lam_) if c is None else c
    return (c * m + eta_ * b) / sp.sqrt(1 - beta)


def standardized_mean(lam_: sp.Expr = lam, m: sp.Expr = mean) -> sp.Expr:
    """``mu = m / sqrt(Sigma_t)``: a mean in units of the data's standard deviation."""
    return m / sp.sqrt(data_variance(lam_))


def relative_error_coefficients(eta_: sp.Expr = eta, sigma2_: sp.Expr = sigma2,
                                lam_: sp.Expr = lam) -> tuple[sp.Expr, sp.Expr]:
    """``(rho_t, delta_t)`` of ``e_{t-1} = rho_t e_t + delta_t`` for ``e_t = v_t / Sigma_t - 1``.

    ``rho = c^2 Sigma_t / (alpha Sigma_{t-1})`` and
    ``delta = (c^2 Sigma_t + sigma^2 - alpha Sigma_{t-1}) / (alpha Sigma_{t-1})``, the numerator
    expanded and collected so that exact cancellations happen symbolically.
    """
    sig_t, sig_prev = data_variance(lam_), previous_data_variance(lam_)
    c2 = contraction(eta_, lam_) ** 2
    scale = (1 - beta) * sig_prev
    sympy_random.seed(0)  # sympy's factorization is randomized: fix its path (and its run time)
    rho = sp.factor(sp.cancel(c2 * sig_t / scale))
    delta = sp.factor(sp.cancel(sp.together(c2 * sig_t + sigma2_ - scale) / scale))
    return rho, delta


#: bounded step variables for chains whose noise ``q_t`` is tiny: ``r = beta / q`` and
#: ``nu = q / Sigma_t`` (the noise's share of the variance of ``X_t``), both in (0, 1], and a
#: custom design's ``eta / q``, ``sigma^2 / q``
ratio, noise_share = sp.symbols("r nu", positive=True)
eta_ratio, sigma2_ratio = sp.symbols("eta_r sigma2_r", real=True)


def scaled_relative_error_coefficients(name: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    """``(rho_t, delta_t)`` of a named design (``None``: a custom ``(eta, sigma^2)``, in
    :data:`eta_ratio`, :data:`sigma2_ratio`) in the bounded variables ``(r, nu, q)``
    (``beta = r q``, ``lam = q (1 - nu) / (nu (1 - q))``).

    When ``q`` is tiny (a schedule starting at ``T^-c0`` with a large ``c0``) ``beta``, ``q``, the
    design's coefficients and, on a normal direction, the data variance are all of its order, and
    the forms in ``(beta, q, lam)`` divide products of several of them, which under- or overflow
    once ``q < 1e-100``; here every power of ``q`` has cancelled symbolically."""
    if name is None:
        eta_, sigma2_ = eta_ratio * q, sigma2_ratio * q
    else:
        eta_, sigma2_ = design_coefficients(name)
    scaled = {beta: ratio * q, lam: q * (1 - noise_share) / (noise_share * (1 - q))}
    return tuple(sp.factor(sp.cancel(sp.simplify(e.subs(scaled))))
                 for e in relative_error_coefficients(eta_, sigma2_))


def initial_relative_error(lam_: sp.Expr = lam) -> sp.Expr:
    """``e_T = 1 / Sigma_T - 1``: the sampler starts from ``Y_T ~ N(0, 1)``, the data from
    ``X_T`` of variance ``Sigma_T``."""
    return sp.factor(sp.cancel(1 / data_variance(lam_) - 1))


def relative_error_step(eta_: sp.Expr = eta, sigma2_: sp.Expr = sigma2,
                        lam_: sp.Expr = lam, e: sp.Expr = rel_error,
                        coefficients: tuple[sp.Expr, sp.Expr] | None = None) -> sp.Expr:
    """``e_{t-1} = rho_t e_t + delta_t`` (``coefficients = (rho, delta)`` defaults to
    :func:`relative_error_coefficients`)."""
    rho, delta = coefficients or relative_error_coefficients(eta_, sigma2_, lam_)
    return rho * e + delta


# --------------------------------------------------------------------------- preservation
def preservation_residual(eta_: sp.Expr = eta, sigma2_: sp.Expr = sigma2) -> sp.Expr:
    """Normal-direction preservation condition, as ``lhs - rhs`` in ``(alpha, abar)``:
    ``(1 - abar - eta)^2 / (1 - abar) + sigma^2 - (alpha - abar)``."""
    return (1 - abar - eta_) ** 2 / (1 - abar) + sigma2_ - (alpha - abar)


@functools.cache
def star_solutions() -> tuple[sp.Expr, ...]:
    """All ``sigma^2`` solving the preservation condition with ``eta = 1 - alpha``
    (a single one: the condition is linear in ``sigma^2``)."""
    return tuple(sp.factor(s) for s in sp.solve(preservation_residual(1 - alpha, sigma2), sigma2))


def ddpm_posterior_variance() -> sp.Expr:
    """``sigma^2 = alpha Var[x_{t-1} | x_t, x_0] = alpha beta_t (1 - abar_{t-1}) / (1 - abar_t)``:
    the DDPM posterior variance rescaled to this sampler's form."""
    abar_prev = abar / alpha
    return alpha * (1 - alpha) * (1 - abar_prev) / (1 - abar)


@functools.cache
def ddim_solutions() -> tuple[sp.Expr, ...]:
    """Both roots ``eta`` of the preservation condition with ``sigma = 0``."""
    return tuple(sp.solve(preservation_residual(eta, 0), eta))


def ddim_song_eta() -> sp.Expr:
    """``eta`` of the DDIM update
    ``Y_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1}) eps_hat`` with
    ``x0_hat = (x + (1 - abar) s)/sqrt(abar)`` and ``eps_hat = -sqrt(1 - abar) s``, written as
    ``(x + eta s)/sqrt(alpha)``."""
    x, s = sp.symbols("x s", real=True)
    abar_prev = abar / alpha
    x0_hat = (x + (1 - abar) * s) / sp.sqrt(abar)
    eps_hat = -sp.sqrt(1 - abar) * s
    update = sp.sqrt(abar_prev) * x0_hat + sp.sqrt(1 - abar_prev) * eps_hat
    coefficient_of_s = sp.expand(update * sp.sqrt(alpha)).coeff(s)
    return sp.simplify(coefficient_of_s)


# --------------------------------------------------------------------------- designs
def design_coefficients(name: str) -> tuple[sp.Expr, sp.Expr]:
    """``(eta_t, sigma_t^2)`` of a named design in the safe variables ``(beta, q)``.

    * ``star``: ``eta = 1 - alpha``, ``sigma^2 = (1 - alpha)(alpha - abar)/(1 - abar)``;
    * ``beta``: ``eta = 1 - alpha``, ``sigma^2 = 1 - alpha``;
    * ``ho-beta``: ``eta = 1 - alpha``, ``sigma^2 = alpha (1 - alpha)``;
    * ``ddim``: ``sigma = 0``, ``eta = (1 - abar) - sqrt((alpha - abar)(1 - abar))``, written in the
      rationalized form ``q beta / (q + sqrt(q (q - beta)))`` (no cancellation for small beta).
    """
    if name == "star":
        return beta, beta * (q - beta) / q
    if name == "beta":
        return beta, beta
    if name == "ho-beta":
        return beta, (1 - beta) * beta
    if name == "ddim":
        return q * beta / (q + sp.sqrt(q * (q - beta))), sp.Integer(0)
    raise ValueError(f"unknown design {name!r}: allowed {', '.join(DESIGNS)}")


# --------------------------------------------------------------------------- divergences
def _gaussian_log_densities(x: sp.Expr, w: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """``log p(x)``, ``log q(x)`` for ``P = N(0, 1)`` and ``Q = N(m, w)``."""
    log_p = -x**2 / 2 - sp.log(2 * sp.pi) / 2
    log_q = -(x - mean) ** 2 / (2 * w) - sp.log(2 * sp.pi * w) / 2
    return log_p, log_q


def gaussian_log_ratio_1d() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(A, B, C)`` with ``log p(x) - log q(x) = A x^2 + B x + C`` for ``P = N(0, 1)`` and
    ``Q = N(m, w)`` (``w = 1 + e``, the symbol :data:`variance_q`): ``P`` has the larger density
    where the quadratic is positive, so the exact TV is a difference of the two laws' masses
    between its roots."""
    x = sp.Symbol("x", real=True)
    log_p, log_q = _gaussian_log_densities(x, variance_q)
    poly = sp.Poly(sp.expand(log_p - log_q), x)
    return tuple(poly.coeff_monomial(x**k) for k in (2, 1, 0))


def gaussian_kl_1d() -> sp.Expr:
    """``KL(N(0, S) || N(m, S(1 + e)))`` per unit ``S`` of mean shift: with ``m`` measured in
    units of ``sqrt(S)``, ``0.5 (1/(1+e) - 1 + log(1+e) + m^2/(1+e))``.

    Derived from the two densities, not typed: ``E_P[log p - log q]`` for one-dimensional
    Gaussians ``P = N(0, 1)`` and ``Q = N(m, 1 + e)``.
    """
    x = sp.Symbol("x", real=True)
    log_p, log_q = _gaussian_log_densities(x, 1 + rel_error)
    # E_P[x] = 0 and E_P[x^2] = 1 for P = N(0, 1)
    integrand = sp.expand(log_p - log_q)
    poly = sp.Poly(integrand, x)
    moments = {0: 1, 1: 0, 2: 1}
    expectation = sum(coef * moments[deg[0]] for deg, coef in zip(poly.monoms(), poly.coeffs(),
                                                                     strict=True))
    return sp.simplify(sp.expand_log(expectation, force=True))


def gaussian_log_bhattacharyya_1d() -> sp.Expr:
    """``log BC(N(0, 1), N(m, 1 + e))`` from ``BC = int sqrt(p q) dx``:
    ``(1/4) log(1+e) - (1/2) log(1 + e/2) - m^2 / (4 (2 + e))``."""
    x = sp.Symbol("x", real=True)
    log_p, log_q = _gaussian_log_densities(x, variance_q)
    bc = sp.integrate(sp.exp(sp.expand((log_p + log_q) / 2)), (x, -sp.oo, sp.oo), conds="none")
    log_bc = sp.expand_log(sp.log(sp.simplify(bc)), force=True)
    return sp.simplify(log_bc.subs(variance_q, 1 + rel_error))


def small_error_series(expr: sp.Expr, order: int = SERIES_ORDER) -> sp.Expr:
    """Taylor polynomial in ``e`` (at ``e = 0``, expanded) used where the closed form cancels."""
    return sp.expand(sp.series(expr, rel_error, 0, order).removeO())


def equal_density_radius2(n: sp.Expr | None = None) -> sp.Expr:
    """``r^2`` with ``N(0, I_n)`` and ``N(0, (1 + e) I_n)`` of equal density on ``|x|^2 = r^2``:
    ``r^2 = n (1 + e) log(1 + e) / e``; the first density is larger inside."""
    n = n_dim if n is None else n
    r2 = sp.Symbol("r2", positive=True)
    log_ratio = (-r2 / 2) - (-r2 / (2 * (1 + rel_error)) - n * sp.log(1 + rel_error) / 2)
    (solution,) = sp.solve(sp.Eq(log_ratio, 0), r2)
    return sp.simplify(solution)


@functools.cache
def chi_square_window() -> dict[str, sp.Expr]:
    """``TV(N(0, I_n), N(0, (1 + e) I_n)) = |F_n(r^2) - F_n(r^2 / (1 + e))|`` (``F_n`` the
    chi-square CDF, ``r^2`` from :func:`equal_density_radius2`): the window's ends ``scaled``
    (``r^2 / (1 + e)``, where the second law's ``|x|^2 / (1 + e)`` crosses) and ``radius2``
    (``r^2``), and its ``centre`` and ``half_width`` simplified so that they evaluate without
    cancellation for small ``e``; written with ``log1p``."""
    r2 = equal_density_radius2(n_dim)
    scaled = sp.simplify(r2 / (1 + rel_error))
    window = {"scaled": scaled, "radius2": r2, "centre": sp.simplify((r2 + scaled) / 2),
              "half_width": sp.simplify((r2 - scaled) / 2)}
    return {k: v.subs(sp.log(1 + rel_error), log1p(rel_error)) for k, v in window.items()}


def tv_bounds() -> dict[str, sp.Expr]:
    """Bounds on ``TV(P, Q)`` from ``kl = KL(P || Q)`` and ``BC = exp(log_bc)`` (the Bhattacharyya
    coefficient), written with ``expm1`` (no cancellation for close laws):

    * ``hellinger_lower``: ``TV >= H^2 = 1 - BC``;
    * ``hellinger_upper``: ``TV <= H sqrt(2 - H^2) = sqrt(1 - BC^2)``;
    * ``pinsker``: ``TV <= sqrt(kl / 2)``;
    * ``bretagnolle_huber``: ``TV <= sqrt(1 - exp(-kl))``.

    The lower bound and the exact TVs of independent blocks give ``max``; the upper bounds, 1 and
    the sum of the blocks' TVs (subadditivity) give ``min``.
    """
    return {"hellinger_lower": -expm1(log_bc_value),
            "hellinger_upper": sp.sqrt(-expm1(2 * log_bc_value)),
            "pinsker": sp.Pow(kl_value / 2, sp.Rational(1, 2), evaluate=False),
            "bretagnolle_huber": sp.sqrt(-expm1(-kl_value))}
