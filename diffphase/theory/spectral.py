"""Symbolic layer of the spectral-phase model (THEORY A).

Derives, with sympy and without numbers baked in:

* the self-consistent (Silverstein / replica-symmetric) equation for the Stieltjes transform
  ``g(z) = lim (1/d) tr (C - z)^{-1}`` of ``C = F Sigma F^T`` with ``K`` latent groups
  (fractions ``alpha_k``, variances ``s_k = sigma_k^2``), and its polynomial form of degree
  ``K + 1``;
* the inverse map ``z(g)`` split into a group-independent part and one per-group term (the solvers
  compile the parts once and sum them over any number of groups), and its derivatives;
* the edge condition ``z'(g) = 0`` (polynomial of degree ``2K``);
* the exact score of Gaussian data along an eigen-direction of ``C`` (eigenvalue ``lambda``),
  from the noised density ``N(0, a^2 lambda + D)``: ``s = -x / (a^2 lambda + D)``, its Jacobian
  eigenvalue ``-1 / (a^2 lambda + D)``;
* the map ``lambda -> j = -tau / (tau + lambda)`` to the normalized Jacobian ``Jn = D J`` and the
  transformed density ``rho_J(j) = (tau / j^2) rho_C(-tau (1 + j) / j)``;
* the manifold gap ``W_M``, the intermediate gap ``W_i``, its maximiser ``tau*`` and the visibility
  window ``W_i(tau) = delta``; the phase boundaries (trivial / coverage / consolidation) and the
  dimension threshold;
* the K = 1 closed form (Marchenko–Pastur with ratio ``alpha``), used only to test the solver.

Every function returns sympy objects in the module's symbols (cached: they are pure); nothing
here evaluates numbers.
"""

from __future__ import annotations

import functools

import sympy as sp

g, z = sp.symbols("g z")  # Stieltjes variable and spectral parameter (complex)
lam = sp.Symbol("lambda", positive=True)  # eigenvalue of C
j = sp.Symbol("j", negative=True)  # eigenvalue of the normalized Jacobian, in (-1, 0)
tau = sp.Symbol("tau", positive=True)  # effective noise variance
delta = sp.Symbol("delta", positive=True)  # resolution
alpha_g = sp.Symbol("alpha_g", positive=True)  # fraction of one group
s_g = sp.Symbol("s_g", positive=True)  # variance of one group
lower, upper = sp.symbols("l u", positive=True)  # bulk edges (lower of one, upper of another)
a_scale, noise_var = sp.symbols("a D", positive=True)  # signal scale a_t and noise variance D_t
x_coord = sp.Symbol("x", real=True)  # a coordinate along an eigen-direction of C


def group_symbols(K: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """``(alpha_1..alpha_K, s_1..s_K)``."""
    alphas = sp.symbols(f"alpha_1:{K + 1}", positive=True)
    variances = sp.symbols(f"s_1:{K + 1}", positive=True)
    return tuple(alphas), tuple(variances)


# ------------------------------------------------------------------ self-consistent equation
@functools.cache
def stieltjes_equation(K: int) -> sp.Eq:
    """``g = 1 / (-z + sum_k alpha_k s_k / (1 + s_k g))``."""
    alphas, variances = group_symbols(K)
    field = sum(a * s / (1 + s * g) for a, s in zip(alphas, variances, strict=True))
    return sp.Eq(g, 1 / (-z + field))


@functools.cache
def inverse_map_parts() -> tuple[sp.Expr, sp.Expr]:
    """``z(g) = base(g) + sum_k term(g; alpha_k, s_k)``: solve the self-consistent equation for
    ``z`` and split off the group-independent part. Returns ``(base, term)`` in
    ``g, alpha_g, s_g``."""
    eq1 = stieltjes_equation(1)
    (z_of_g,) = sp.solve(eq1, z)
    a1, s1 = group_symbols(1)[0][0], group_symbols(1)[1][0]
    z_of_g = sp.apart(sp.simplify(z_of_g), g)
    term_k = sp.apart(a1 * s1 / (1 + s1 * g), g)
    base = sp.simplify(z_of_g - term_k)
    if base.has(a1) or base.has(s1):  # the split must be exact
        raise AssertionError(f"inverse map does not split: base = {base}")
    return base, (a1 * s1 / (1 + s1 * g)).subs({a1: alpha_g, s1: s_g})


@functools.cache
def inverse_map(K: int) -> sp.Expr:
    """``z(g)`` for K groups, assembled from :func:`inverse_map_parts`."""
    base, term = inverse_map_parts()
    alphas, variances = group_symbols(K)
    return base + sum(
        term.subs({alpha_g: a, s_g: s}) for a, s in zip(alphas, variances, strict=True)
    )


@functools.cache
def inverse_map_derivatives() -> dict[str, sp.Expr]:
    """Parts of ``z(g)``, ``z'(g)`` and ``z''(g)``: keys ``base``, ``term``, ``dbase``, ``dterm``,
    ``d2base``, ``d2term``."""
    base, term = inverse_map_parts()
    return {
        "base": base,
        "term": term,
        "dbase": sp.diff(base, g),
        "dterm": sp.diff(term, g),
        "d2base": sp.diff(base, g, 2),
        "d2term": sp.diff(term, g, 2),
    }


@functools.cache
def stieltjes_polynomial(K: int) -> sp.Poly:
    """Polynomial form (degree ``K + 1`` in ``g``) of ``z(g) - z = 0``, cleared of denominators."""
    numerator, _ = sp.fraction(sp.together(inverse_map(K) - z))
    return sp.Poly(sp.expand(numerator), g)


@functools.cache
def inverse_map_slope(K: int) -> sp.Expr:
    """``z'(g)`` for K groups."""
    return sp.diff(inverse_map(K), g)


@functools.cache
def edge_polynomial(K: int) -> sp.Poly:
    """Polynomial (degree ``2K`` in ``g``) whose real roots are the critical points of ``z(g)``."""
    numerator, _ = sp.fraction(sp.together(inverse_map_slope(K)))
    return sp.Poly(sp.expand(numerator), g)


# ------------------------------------------------------------- exact score, normalized Jacobian
@functools.cache
def score_jacobian_eigenvalue() -> sp.Expr:
    """Eigenvalue of the exact score's Jacobian ``J = -(a^2 C + D I)^{-1}`` along an eigen-direction
    of ``C`` with eigenvalue ``lambda``: the second derivative of ``ln N(x; 0, a^2 lambda + D)``,
    ``-1 / (a^2 lambda + D)`` (the score there is this times ``x``)."""
    variance = a_scale**2 * lam + noise_var
    log_density = -x_coord**2 / (2 * variance) - sp.log(2 * sp.pi * variance) / 2
    return sp.simplify(sp.diff(log_density, x_coord, 2))


@functools.cache
def jacobian_eigenvalue() -> sp.Expr:
    """Tangent eigenvalue of ``Jn`` at an eigenvalue ``lambda`` of ``C``: ``-tau/(tau+lambda)``
    (``D`` times :func:`score_jacobian_eigenvalue` with ``D = tau a^2``, checked in the tests)."""
    return -tau / (tau + lam)


@functools.cache
def covariance_eigenvalue_of_jacobian() -> sp.Expr:
    """Inverse map ``lambda(j)``."""
    (solution,) = sp.solve(sp.Eq(j, jacobian_eigenvalue()), lam)
    return sp.simplify(solution)


@functools.cache
def jacobian_density_factor() -> sp.Expr:
    """``|d lambda / d j|``: ``rho_J(j) = factor * rho_C(lambda(j))``; equals ``tau / j^2``."""
    return sp.simplify(sp.Abs(sp.diff(covariance_eigenvalue_of_jacobian(), j)))


@functools.cache
def jacobian_density_factor_of_lambda() -> sp.Expr:
    """The same factor written in ``lambda`` (``j = j(lambda)``): ``(tau + lambda)^2 / tau``,
    kept as the product ``(tau + lambda) (1 + lambda / tau)`` so that it is finite wherever the
    result is (``tau / j^2`` is not at tiny ``tau``, where ``j^2`` underflows; the square
    ``(tau + lambda)^2`` is not at huge ``tau``)."""
    factor = sp.factor(sp.simplify(jacobian_density_factor().subs(j, jacobian_eigenvalue())))
    return sp.Mul(tau + lam, sp.expand(factor / (tau + lam)), evaluate=False)


# ------------------------------------------------------------------ gaps, phases, read-out
@functools.cache
def manifold_gap_width() -> sp.Expr:
    """Distance from the normal atom at -1 to the lowest tangent eigenvalue (``lambda = l``)."""
    return sp.simplify(jacobian_eigenvalue().subs(lam, lower) - (-1))


@functools.cache
def intermediate_gap_width() -> sp.Expr:
    """Width of the gap between tangent eigenvalues at ``lambda = u`` (upper edge of a lower bulk)
    and ``lambda = l`` (lower edge of the next bulk); in the normalized spectrum the larger
    ``lambda`` maps to the larger ``j``."""
    return sp.factor(
        sp.simplify(jacobian_eigenvalue().subs(lam, lower) - jacobian_eigenvalue().subs(lam, upper))
    )


@functools.cache
def intermediate_gap_edge_derivatives() -> tuple[sp.Expr, sp.Expr]:
    """``(dW/dl, dW/du)``: how the intermediate gap width moves with each bulk edge (used to
    propagate finite-``d`` edge fluctuations into a tolerance)."""
    width = intermediate_gap_width()
    return sp.simplify(sp.diff(width, lower)), sp.simplify(sp.diff(width, upper))


@functools.cache
def intermediate_gap_tau_max() -> sp.Expr:
    """``tau*`` maximizing :func:`intermediate_gap_width` (the positive stationary point)."""
    roots = sp.solve(sp.diff(intermediate_gap_width(), tau), tau)
    positive = [r for r in roots if r.is_positive is not False and not r.could_extract_minus_sign()]
    (root,) = positive
    return sp.simplify(root)


@functools.cache
def intermediate_gap_max_width() -> sp.Expr:
    return sp.simplify(intermediate_gap_width().subs(tau, intermediate_gap_tau_max()))


@functools.cache
def intermediate_gap_window() -> tuple[sp.Expr, sp.Expr]:
    """The two roots ``tau_lo <= tau_hi`` of ``W(tau) = delta`` (real when ``max W >= delta``)."""
    numerator, _ = sp.fraction(sp.together(intermediate_gap_width() - delta))
    roots = sp.solve(sp.Eq(numerator, 0), tau)
    if len(roots) != 2:
        raise AssertionError(f"expected a quadratic in tau, got roots {roots}")
    # order them: at u < l and small delta the root with the minus sign of the square root is lower
    probe = {lower: 4, upper: 1, delta: sp.Rational(1, 10)}
    roots = sorted(roots, key=lambda r: float(r.subs(probe)))
    return roots[0], roots[1]


@functools.cache
def trivial_phase_tau() -> sp.Expr:
    """``tau`` above which every eigenvalue is within ``delta`` of -1:
    ``tau/(tau + lambda_max) >= 1 - delta`` with ``lambda_max = u``."""
    (root,) = sp.solve(sp.Eq(-jacobian_eigenvalue().subs(lam, upper), 1 - delta), tau)
    return sp.simplify(root)


@functools.cache
def consolidation_phase_tau() -> sp.Expr:
    """``tau`` below which every tangent eigenvalue is within ``delta`` of 0:
    ``tau/(tau + l_1) <= delta``."""
    (root,) = sp.solve(sp.Eq(-jacobian_eigenvalue().subs(lam, lower), delta), tau)
    return sp.simplify(root)


@functools.cache
def dimension_threshold() -> sp.Expr:
    """Eigenvalues of ``C`` above this count in the dimension read-out (``j > -1 + delta``)."""
    (root,) = sp.solve(sp.Eq(jacobian_eigenvalue(), -1 + delta), lam)
    return sp.simplify(root)


# ------------------------------------------------------------------ K = 1 closed form
@functools.cache
def closed_form_k1() -> dict[str, sp.Expr]:
    """Marchenko–Pastur closed form for one group (``alpha_1``, ``s_1``): the density of ``C``
    on the real axis (``lambda``) and its edges, from the discriminant of the quadratic form."""
    alphas, variances = group_symbols(1)
    a, s = alphas[0], variances[0]
    poly = stieltjes_polynomial(1)
    A, B, C = (poly.coeff_monomial(g**2), poly.coeff_monomial(g), poly.coeff_monomial(1))
    disc = sp.expand(B**2 - 4 * A * C)
    # Im of the complex root pair: sqrt(-disc) / (2 |A|); the leading coefficient is -s z or s z
    density = sp.sqrt(-disc) / (2 * sp.pi * sp.Abs(A))
    edges = sp.solve(sp.Eq(disc.subs(z, lam), 0), lam)
    edges = sorted(edges, key=lambda e: float(e.subs({a: sp.Rational(1, 4), s: 1})))
    return {
        "density": sp.simplify(density.subs(z, lam)),
        "lower": sp.simplify(edges[0]),
        "upper": sp.simplify(edges[1]),
        "alpha": a,
        "s": s,
    }
