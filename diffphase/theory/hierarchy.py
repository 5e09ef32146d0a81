"""Symbolic mean-field theory of the random hierarchy model (THEORY C, "Mean-field map").

Contract: pure sympy functions of symbols, no numbers baked in. They return

* the finite-``v`` map ``F(b) = [b**s + (m-1) c] / [b**s + (n m - 1) c]``,
  ``c = (1 - b**s)/(v**s - 1)`` (``n = v`` inside the tree, ``n_c`` at the root), with ``s`` a
  symbol so one compiled kernel serves every branching;
* its large-``v`` limit at fixed ``f = m / v**(s-1)``: ``G(p) = p**s / (p**s + f (1 - p**s))`` in
  ``p = (b - 1/v)/(1 - 1/v)``;
* for a given integer ``s``, the fixed-point polynomials with the trivial roots divided out
  (``b = 1`` and ``b = 1/v`` for the finite map, ``p = 0`` and ``p = 1`` for the limit map),
  whose root in the open interval is the unstable fixed point;
* closed forms where sympy finds them (``s = 2`` at finite ``v``; ``s = 2, 3`` at large ``v``),
  ``eps* = (1 - b_u)/(1 - 1/v)``, the slope ``lambda = F'(b_u)``, ``nu = ln s / ln lambda``, and
  the slopes at the trivial fixed points that decide the regime;
* the leaf belief ``1 - eps + eps/v`` the iteration starts from, the noise at which a fixed point
  is the leaf belief (``eps = (1 - b)/(1 - 1/v)``, ``1 - p`` at large ``v``) and the scaling
  variable ``(eps - eps*) lambda^L`` of the finite-depth curves.

The solvers (:mod:`diffphase.solvers.hierarchy`) compile these expressions; for every ``s`` they
find the unstable fixed point numerically as the interior root of the reduced polynomial.
"""

from __future__ import annotations

import functools

import sympy as sp

from ..errors import ParameterError

b, p, eps = sp.symbols("b p eps", real=True)
v, m, n, f = sp.symbols("v m n f", positive=True)
s = sp.Symbol("s", positive=True)
lam = sp.Symbol("lambda", positive=True)
eps_star = sp.Symbol("eps_star", real=True)
depth = sp.Symbol("L", positive=True)


def mean_field_map(branching: sp.Expr = s, parents: sp.Expr = n) -> sp.Expr:
    """``F(b)`` for a node with ``parents`` possible values (``v`` inside, ``n_c`` at the root).

    ``F(b) = [b^s + (m-1) c] / [b^s + (n m - 1) c]``, ``c = (1 - b^s)/(v^s - 1)``.
    """
    c = (1 - b**branching) / (v**branching - 1)
    return (b**branching + (m - 1) * c) / (b**branching + (parents * m - 1) * c)


def leaf_belief(alphabet: sp.Expr = v) -> sp.Expr:
    """Leaf belief on the true token under the ``eps``-process: ``1 - eps + eps/v``."""
    return 1 - eps + eps / alphabet


def large_v_map(branching: sp.Expr = s) -> sp.Expr:
    """``G(p) = p^s / (p^s + f (1 - p^s))``, the ``v -> oo`` limit at fixed ``f``."""
    return p**branching / (p**branching + f * (1 - p**branching))


def large_v_limit_of_map(branching: int) -> sp.Expr:
    """``lim_{v->oo} F`` at fixed ``f``, taken by sympy (for checking :func:`large_v_map`)."""
    fin = mean_field_map(branching, v).subs(m, f * v ** (branching - 1))
    fin = fin.subs(b, p * (1 - 1 / v) + 1 / v)
    return sp.simplify(sp.limit(sp.together(fin), v, sp.oo))


@functools.cache
def reduced_fixed_point_polynomial(branching: int) -> sp.Poly:
    """Polynomial in ``b`` (coefficients in ``v, m``) whose roots are the non-trivial fixed points.

    ``(F(b) - b) * D(b) * (v^s - 1)`` with ``n = v`` is divided by ``(b - 1)(v b - 1)``; the
    quotient has degree ``s - 1``.
    """
    num, den = sp.fraction(sp.together(mean_field_map(branching, v) - b))
    quotient, remainder = sp.div(sp.Poly(sp.expand(num), b), sp.Poly((b - 1) * (v * b - 1), b))
    if not remainder.is_zero:
        raise ArithmeticError("b = 1 and b = 1/v are not both fixed points")
    coeffs = [sp.factor(c) for c in quotient.all_coeffs()]
    content = sp.gcd_list(coeffs) if len(coeffs) > 1 else coeffs[0]
    return sp.Poly(sum(sp.cancel(c / content) * b**k for k, c in
                       enumerate(reversed(coeffs))), b)


@functools.cache
def reduced_large_v_polynomial(branching: int) -> sp.Poly:
    """Polynomial in ``p`` (coefficients in ``f``) of the non-trivial fixed points of ``G``:
    ``(G(p) - p) * denominator / (p (1 - p))`` (``= p^(s-1) - f sum_{i<s} p^i``)."""
    num, _ = sp.fraction(sp.together(large_v_map(branching) - p))
    quotient, remainder = sp.div(sp.Poly(sp.expand(num), p), sp.Poly(p * (1 - p), p))
    if not remainder.is_zero:
        raise ArithmeticError("p = 0 and p = 1 are not both fixed points")
    return quotient


def unstable_fixed_point(branching: int, large_v: bool = False) -> sp.Expr:
    """Closed form of the unstable fixed point (``b_u``, or ``p_u`` when ``large_v``) where sympy
    finds one: the root that lies in ``(1/v, 1)`` (resp. ``(0, 1)``) for small ``f``."""
    poly = reduced_large_v_polynomial(branching) if large_v else \
        reduced_fixed_point_polynomial(branching)
    var = p if large_v else b
    roots = sp.solve(poly.as_expr(), var)
    if not roots:
        raise ParameterError("branching", branching,
                             "a branching for which sympy finds a closed form (s = 2; s = 2, 3 "
                             "at large v); the numeric solvers cover every s")
    if len(roots) == 1:
        return sp.simplify(roots[0])
    # the physical branch: positive at a small test value of f (resp. large v, small m)
    test = {f: sp.Rational(1, 10)} if large_v else {v: 64, m: 4}
    good = [r for r in roots if sp.N(r.subs(test)).is_real and 0 < sp.N(r.subs(test)) < 1]
    if len(good) != 1:
        raise ParameterError("branching", branching,
                             "a branching whose closed-form roots have one physical branch")
    return sp.simplify(good[0])


def noise_of_fixed_point(large_v: bool = False) -> sp.Expr:
    """Noise whose leaf belief is ``b``: solves ``leaf_belief(v) = b`` for ``eps``, i.e.
    ``(1 - b)/(1 - 1/v)``; at large ``v`` (in ``p``) ``1 - p``. At the unstable fixed point this is
    ``eps*``."""
    if large_v:
        return 1 - p
    return (1 - b) / (1 - 1 / v)


def critical_noise(branching: int, large_v: bool = False) -> sp.Expr:
    """``eps* = (1 - b_u)/(1 - 1/v)`` (``= 1 - p_u`` at large ``v``)."""
    root = unstable_fixed_point(branching, large_v)
    return sp.simplify(noise_of_fixed_point(large_v).subs(p if large_v else b, root))


def map_slope(branching: sp.Expr = s, parents: sp.Expr = n, large_v: bool = False) -> sp.Expr:
    """``dF/db`` (or ``dG/dp``) as an expression of ``b`` (``p``)."""
    if large_v:  # written with p**(s-1) so that it evaluates at p = 0
        return sp.powsimp(sp.factor(sp.together(sp.diff(large_v_map(branching), p))))
    return sp.diff(mean_field_map(branching, parents), b)


def slope_at_fixed_point(branching: int, large_v: bool = False) -> sp.Expr:
    """``lambda = F'(b_u)`` in closed form (when the fixed point has one)."""
    var = p if large_v else b
    return sp.simplify(map_slope(branching, v, large_v).subs(var, unstable_fixed_point(
        branching, large_v)))


def slope_at_ordered() -> sp.Expr:
    """``F'(1) = s m (n - 1)/(v^s - 1)``: the map pushes beliefs off ``b = 1`` when this is > 1."""
    return sp.simplify(map_slope(s, n).subs(b, 1))


def slope_at_disordered() -> sp.Expr:
    """``F'(1/v)`` with ``n = v``: the disordered point repels when this is > 1."""
    return sp.simplify(map_slope(s, v).subs(b, 1 / v))


def correlation_exponent() -> sp.Expr:
    """``nu = ln s / ln lambda``: changed blocks grow like ``|eps - eps*|^(-nu)``."""
    return sp.log(s) / sp.log(lam)


def scaling_variable() -> sp.Expr:
    """``(eps - eps*) lambda^L``: the finite-depth curves collapse in this variable (the
    transition width shrinks like ``lambda^(-L)``)."""
    return (eps - eps_star) * lam**depth
