"""Symbolic layer of the spectral model (THEORY A), checked by independent routes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from diffphase.theory import spectral as T


def test_inverse_map_solves_the_self_consistent_equation():
    for K in (1, 2, 3):
        eq = T.stieltjes_equation(K)
        residual = sp.simplify(eq.rhs.subs(T.z, T.inverse_map(K)) - T.g)
        assert residual == 0


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_polynomial_degrees(K):
    assert T.stieltjes_polynomial(K).degree() == K + 1
    assert T.edge_polynomial(K).degree() == 2 * K


def test_polynomial_has_the_same_roots_as_the_equation():
    alphas, variances = T.group_symbols(2)
    values = {alphas[0]: sp.Rational(1, 5), alphas[1]: sp.Rational(3, 10), variances[0]: 1,
              variances[1]: sp.Rational(1, 10), T.z: sp.Rational(7, 10) + sp.I / 3}
    poly = sp.Poly(T.stieltjes_polynomial(2).as_expr().subs(values), T.g)
    eq = T.stieltjes_equation(2)
    for root in poly.nroots(n=30):
        assert abs(complex(sp.N((eq.rhs - eq.lhs).subs(values).subs(T.g, root), 30))) < 1e-20


def test_k1_closed_form_is_marchenko_pastur():
    cf = T.closed_form_k1()
    a, s = cf["alpha"], cf["s"]
    assert sp.simplify(cf["lower"] - s * (1 - sp.sqrt(a)) ** 2) == 0
    assert sp.simplify(cf["upper"] - s * (1 + sp.sqrt(a)) ** 2) == 0
    # MP density of ratio alpha, weight alpha: sqrt((u-x)(x-l)) / (2 pi s x)
    mp = sp.sqrt((cf["upper"] - T.lam) * (T.lam - cf["lower"])) / (2 * sp.pi * s * T.lam)
    for alpha, lam in ((0.25, 1.0), (0.6, 0.3), (0.9, 2.5)):
        sub = {a: alpha, s: 1.0, T.lam: lam}
        assert float(cf["density"].subs(sub)) == pytest.approx(float(mp.subs(sub)), rel=1e-12)


def test_jacobian_map_and_density_factor():
    assert sp.simplify(T.jacobian_density_factor() - T.tau / T.j**2) == 0
    lam_of_j = T.covariance_eigenvalue_of_jacobian()
    assert sp.simplify(T.jacobian_eigenvalue().subs(T.lam, lam_of_j) - T.j) == 0


def _num(expr, **values):
    symbols = {"l": T.lower, "u": T.upper, "tau": T.tau, "delta": T.delta}
    return float(expr.subs({symbols[k]: v for k, v in values.items()}))


def test_gap_maximum_and_window_numerically():
    width = T.intermediate_gap_width()
    l, u = 3.0, 0.2
    tau_star = _num(T.intermediate_gap_tau_max(), l=l, u=u)
    assert tau_star == pytest.approx(np.sqrt(l * u))
    taus = np.geomspace(1e-3, 1e3, 20001)
    values = np.array([_num(width, l=l, u=u, tau=t) for t in taus[::50]])
    assert values.max() <= _num(T.intermediate_gap_max_width(), l=l, u=u) + 1e-12
    lo, hi = T.intermediate_gap_window()
    for root in (lo, hi):
        tau_root = _num(root, l=l, u=u, delta=0.2)
        assert _num(width, l=l, u=u, tau=tau_root) == pytest.approx(0.2, rel=1e-10)
    assert _num(lo, l=l, u=u, delta=0.2) < tau_star < _num(hi, l=l, u=u, delta=0.2)


def test_phase_boundaries_and_threshold():
    delta = 0.1
    tau_triv = _num(T.trivial_phase_tau(), u=2.0, delta=delta)
    assert tau_triv / (tau_triv + 2.0) == pytest.approx(1 - delta)
    tau_cons = _num(T.consolidation_phase_tau(), l=0.5, delta=delta)
    assert tau_cons / (tau_cons + 0.5) == pytest.approx(delta)
    thr = float(T.dimension_threshold().subs({T.tau: 0.7, T.delta: delta}))
    assert -0.7 / (0.7 + thr) == pytest.approx(-1 + delta)
    assert _num(T.manifold_gap_width(), l=0.5, tau=0.5) == pytest.approx(0.5)


def test_exact_gaussian_score_eigenvalue_gives_the_normalized_map():
    """``D`` times the score Jacobian's eigenvalue ``-1/(a^2 lambda + D)`` (from the noised
    density) is the normalized eigenvalue ``-tau/(tau + lambda)`` at ``D = tau a^2``, in every
    process convention."""
    eig = T.score_jacobian_eigenvalue()
    assert sp.simplify(eig + 1 / (T.a_scale**2 * T.lam + T.noise_var)) == 0
    normalized = (T.noise_var * eig).subs(T.noise_var, T.tau * T.a_scale**2)
    assert sp.simplify(normalized - T.jacobian_eigenvalue()) == 0
