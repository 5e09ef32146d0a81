"""Symbolic layer of the memorization model (THEORY B): collapse, speciation, geometric
memorization.

Derives, with sympy and without numbers baked in:

* the collapse criterion [DR] ``ln N = (1/2) sum_i ln(1 + lambda_i / tau_C)`` as a per-eigenvalue
  term (the solvers sum it over any spectrum) and a bracket of its root in ``ln tau`` from
  ``ln x <= ln(1 + x) <= x``; the isotropic closed form
  ``tau_C = sigma^2 / (N^(2/m) - 1)`` for ``m`` equal nonzero eigenvalues; the equivalence with the
  entropy form ``f(t) = ln N / d + (1/2) ln(2 pi e D_t) - s(t)`` for Gaussian data, and that form
  in ``tau`` for any data law (its entropy estimated by Monte Carlo in the validation layer);
* the speciation time ``t_S = (1/2) ln Lambda`` (``ou``), i.e. ``tau_S = Lambda - 1``;
* the two-Gaussian-mixture score ``s(x) = -x/G + (a m/G) tanh(a m.x/G)``, ``G = D + sigma^2 a^2``,
  its signal-to-noise ratio ``kappa = a^2 |m|^2 / G = |m|^2 / (tau + sigma^2)`` and the cloning
  integrand: two copies cloned at ``tau`` end in the same cluster with probability
  ``phi = E_z[q^2 + (1 - q)^2]``, ``q = 1 / (1 + exp(-2 (kappa + sqrt(kappa) z)))``,
  ``z ~ N(0, 1)``;
* the random-energy-model (REM) criterion of geometric memorization [LD]: the variance of the
  log-weights at probe ``x(tau) = x0 + sqrt(tau) v`` for axis-aligned data of per-direction
  standard deviations ``s_i``,
  ``V = (A + 2 sqrt(tau) B + tau C + g S4 / 2) / tau^2`` with ``A = sum x0_i^2 s_i^2``,
  ``B = sum x0_i v_i s_i^2``, ``C = sum v_i^2 s_i^2``, ``S4 = sum s_i^4`` (``g = 0`` for data on the
  unit sphere, ``1`` otherwise); condensation at ``V = 2 ln N``; the closed form for ``x0 = 0``;
  the REM participation ratio ``1 - tau / tau_c`` below ``tau_c`` and its inverse (``tau_c`` from
  a measured participation ratio).

Every function returns sympy objects in the module's symbols.
"""

from __future__ import annotations

import functools

import sympy as sp

tau = sp.Symbol("tau", positive=True)
lam = sp.Symbol("lam", positive=True)  # one nonzero covariance eigenvalue
n_train = sp.Symbol("N", positive=True)
m_dim = sp.Symbol("m", positive=True)  # number of equal nonzero eigenvalues
d_dim = sp.Symbol("d", positive=True)
sigma2 = sp.Symbol("sigma2", positive=True)  # a variance
t = sp.Symbol("t", positive=True)
big_lambda = sp.Symbol("Lambda", positive=True)  # largest covariance eigenvalue
kappa = sp.Symbol("kappa", positive=True)
zvar = sp.Symbol("z", real=True)
m_norm2 = sp.Symbol("mnorm2", positive=True)  # |m|^2 of the mixture
a_sym, D_sym = sp.symbols("a D", positive=True)
u_proj = sp.Symbol("u", real=True)  # m.x
# REM aggregates
rem_A, rem_C, rem_S4 = sp.symbols("A C S4", nonnegative=True)
rem_B = sp.Symbol("B", real=True)
g_norm = sp.Symbol("g", nonnegative=True)
tau_c = sp.Symbol("tau_c", positive=True)
participation = sp.Symbol("P", positive=True)  # a participation ratio sum_mu w_mu^2
# aggregates of a spectrum with per-dimension weights w_j: sum w_j, sum w_j lambda_j,
# (sum w_j ln lambda_j) / sum w_j, and ln N / d
w_total, w_trace, w_mean_log = sp.symbols("alpha trace mean_log", positive=True)
rate = sp.Symbol("rate", positive=True)
log_tau = sp.Symbol("log_tau", real=True)
h_dim = sp.Symbol("h", real=True)  # entropy per dimension of the noised law


# ------------------------------------------------------------------ collapse
def collapse_term() -> sp.Expr:
    """Contribution of one eigenvalue to ``(1/2) sum_i ln(1 + lambda_i / tau)``."""
    return sp.log(1 + lam / tau) / 2


def collapse_term_log_slope() -> sp.Expr:
    """``d term / d ln tau = tau d term / d tau`` (negative: the sum decreases in ``tau``; its
    second derivative is positive, so Newton's iterates in ``ln tau`` from below the root rise
    to it monotonically)."""
    return sp.simplify(tau * sp.diff(collapse_term(), tau))


def collapse_log_tau_bracket() -> tuple[sp.Expr, sp.Expr]:
    """``(ln tau_lo, ln tau_hi)`` bracketing the root of ``sum_j w_j term(lambda_j, tau) = ln N/d``
    (weights ``w_j`` per dimension; the sum decreases in ``tau``).

    ``term <= lambda / (2 tau)`` (from ``ln(1 + x) <= x``): the sum is below ``rate`` at
    ``tau_hi = trace / (2 rate)``; ``term >= (ln lambda - ln tau)/2`` (from ``ln(1 + x) >= ln x``):
    it is above ``rate`` at ``ln tau_lo = mean_log - 2 rate / alpha``.
    """
    (upper,) = sp.solve(sp.Eq(w_trace / (2 * tau) - rate, 0), tau)
    (lower,) = sp.solve(sp.Eq(w_total * (w_mean_log - log_tau) / 2 - rate, 0), log_tau)
    return lower, sp.log(upper)


def collapse_residual_isotropic() -> sp.Expr:
    """``m * term(sigma^2, tau) - ln N`` for ``m`` equal nonzero eigenvalues ``sigma^2``."""
    return m_dim * collapse_term().subs(lam, sigma2) - sp.log(n_train)


@functools.lru_cache(maxsize=1)
def collapse_tau_isotropic() -> sp.Expr:
    """Closed form of ``tau_C`` for ``m`` equal eigenvalues ``sigma^2``: solved by sympy."""
    solutions = sp.solve(sp.Eq(collapse_residual_isotropic(), 0), tau)
    if len(solutions) != 1:
        raise RuntimeError(f"expected one positive solution, got {solutions}")
    return sp.simplify(solutions[0])


def entropy_form_residual() -> sp.Expr:
    """[DR]'s collapse residual in ``tau`` for any data law: ``f = ln N / d + (1/2) ln(2 pi e tau)
    - h``, ``h`` the entropy per dimension of ``y + sqrt(tau) z`` (in ``ou`` at time ``t`` both
    ``(1/2) ln(2 pi e D_t)`` and ``s(t)`` exceed these by ``ln a_t``, so ``f`` is the same)."""
    return sp.log(n_train) / d_dim + sp.log(2 * sp.pi * sp.E * tau) / 2 - h_dim


def entropy_form_residual_gaussian_isotropic() -> sp.Expr:
    """[DR]'s ``f(t) = ln N / d + (1/2) ln(2 pi e D) - s`` for ``p_t = N(0, (a^2 sigma^2 + D) I_m)
    x N(0, D I_{d-m})`` with ``s`` its entropy per dimension, written in ``a, D``."""
    entropy = (m_dim * sp.log(2 * sp.pi * sp.E * (a_sym**2 * sigma2 + D_sym))
               + (d_dim - m_dim) * sp.log(2 * sp.pi * sp.E * D_sym)) / (2 * d_dim)
    return sp.log(n_train) / d_dim + sp.log(2 * sp.pi * sp.E * D_sym) / 2 - entropy


# ------------------------------------------------------------------ speciation
def speciation_time_ou() -> sp.Expr:
    """``t_S = (1/2) ln Lambda`` in the ``ou`` process."""
    return sp.log(big_lambda) / 2


def speciation_tau() -> sp.Expr:
    """``tau_S = exp(2 t_S) - 1 = Lambda - 1`` (process independent)."""
    return sp.simplify(sp.exp(2 * speciation_time_ou()) - 1)


# ------------------------------------------------------------------ two-Gaussian mixture
def mixture_variance_G() -> sp.Expr:
    """``G = D + sigma^2 a^2``: variance of each noised mixture component."""
    return D_sym + sigma2 * a_sym**2


def mixture_log_density_projected() -> sp.Expr:
    """``ln p_t(x)`` up to ``x``-independent constants, as a function of ``|x|^2 -> r2`` and
    ``u = m.x``: ``-r2/(2G) + ln cosh(a u / G)`` (the ``|m|^2`` term is constant)."""
    r2 = sp.Symbol("r2", nonnegative=True)
    G = mixture_variance_G()
    return -r2 / (2 * G) + sp.log(sp.cosh(a_sym * u_proj / G))


def mixture_score_coefficients() -> tuple[sp.Expr, sp.Expr]:
    """``s(x) = c_x x + c_m m`` with ``(c_x, c_m) = (-1/G, (a/G) tanh(a m.x/G))``, from the
    gradient of :func:`mixture_log_density_projected` (``d r2/dx = 2x``, ``du/dx = m``)."""
    r2 = sp.Symbol("r2", nonnegative=True)
    logp = mixture_log_density_projected()
    c_x = sp.simplify(2 * sp.diff(logp, r2))
    c_m = sp.simplify(sp.diff(logp, u_proj))
    return c_x, c_m


def mixture_kappa() -> sp.Expr:
    """Signal-to-noise of the class in the projection: ``a^2 |m|^2 / G`` in terms of ``tau``."""
    G = mixture_variance_G()
    expr = a_sym**2 * m_norm2 / G
    return sp.simplify(expr.subs(D_sym, tau * a_sym**2))


def cloning_integrand() -> sp.Expr:
    """``(q^2 + (1 - q)^2) exp(-z^2/2) / sqrt(2 pi)`` with ``q = P(class + | x)`` at
    ``m.x / |m| = a|m| + sqrt(G) z`` (given class +): ``q = sigmoid(2 (kappa + sqrt(kappa) z))``."""
    q = 1 / (1 + sp.exp(-2 * (kappa + sp.sqrt(kappa) * zvar)))
    return (q**2 + (1 - q) ** 2) * sp.exp(-zvar**2 / 2) / sp.sqrt(2 * sp.pi)


def cloning_same_cluster_given_z() -> sp.Expr:
    """``q^2 + (1 - q)^2 = 1 - (1/2) sech^2(kappa + sqrt(kappa) z)`` (Gaussian weight dropped)."""
    arg = kappa + sp.sqrt(kappa) * zvar
    return 1 - sp.Rational(1, 2) / sp.cosh(arg) ** 2


# ------------------------------------------------------------------ REM criterion [LD]
def rem_log_weight_variance() -> sp.Expr:
    """``V(tau) = (A + 2 sqrt(tau) B + tau C + g S4 / 2) / tau^2`` at ``x = x0 + sqrt(tau) v``."""
    return (rem_A + 2 * sp.sqrt(tau) * rem_B + tau * rem_C + g_norm * rem_S4 / 2) / tau**2


def rem_residual() -> sp.Expr:
    """``ln V - ln(2 ln N)``: zero at the condensation threshold, decreasing in ``tau`` when
    ``B >= 0``."""
    return sp.log(rem_log_weight_variance()) - sp.log(2 * sp.log(n_train))


@functools.lru_cache(maxsize=1)
def rem_critical_tau_displaced() -> sp.Expr:
    """Closed form of ``tau_c`` for a probe ``x = sqrt(tau) v`` (``A = B = 0``): the positive root
    of ``2 ln N tau^2 - C tau - g S4 / 2 = 0``."""
    V = rem_log_weight_variance().subs({rem_A: 0, rem_B: 0})
    poly = sp.expand(sp.numer(sp.together(V - 2 * sp.log(n_train))))
    roots = sp.solve(poly, tau)
    positive = [r for r in roots if sp.simplify(r.subs({rem_C: 1, rem_S4: 1, g_norm: 1,
                                                         n_train: 10})).is_positive]
    if len(positive) != 1:
        raise RuntimeError(f"expected one positive root, got {roots}")
    return sp.simplify(positive[0])


def rem_participation_ratio() -> sp.Expr:
    """REM ``sum_mu w_mu^2`` in the condensed phase: ``1 - tau / tau_c`` (for ``tau < tau_c``)."""
    return 1 - tau / tau_c


def rem_critical_tau_of_participation() -> sp.Expr:
    """``tau_c`` at which the REM participation ratio at ``tau`` equals ``P``:
    ``tau / (1 - P)`` (``2 tau`` where ``P = 1/2``)."""
    (solution,) = sp.solve(sp.Eq(rem_participation_ratio(), participation), tau_c)
    return solution
