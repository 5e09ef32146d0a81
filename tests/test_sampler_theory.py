"""Symbolic layer of THEORY D, checked by simplification and by independent numeric routes."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from diffphase.theory import sampler as th


def _random_step(rng):
    """(alpha, abar) with 0 < abar < alpha < 1, and the matching (beta, q)."""
    alpha = rng.uniform(0.5, 0.999)
    abar = alpha * rng.uniform(0.01, 0.99)
    return alpha, abar, {th.beta: 1 - alpha, th.q: 1 - abar}


def test_star_is_the_unique_solution_and_the_ddpm_posterior_variance():
    (solution,) = th.star_solutions()
    assert sp.simplify(solution - th.ddpm_posterior_variance()) == 0
    eta_star, sigma2_star = th.design_coefficients("star")
    assert sp.simplify(th.to_alpha_abar(sigma2_star) - solution) == 0
    assert sp.simplify(th.to_alpha_abar(eta_star) - (1 - th.alpha)) == 0


def test_ddim_solves_preservation_and_matches_song_update():
    rng = np.random.default_rng(0)
    eta_ddim, sigma2_ddim = th.design_coefficients("ddim")
    assert sigma2_ddim == 0
    roots = th.ddim_solutions()
    song = th.ddim_song_eta()
    for _ in range(20):
        alpha, abar, sub = _random_step(rng)
        at = {th.alpha: alpha, th.abar: abar}
        value = float(eta_ddim.subs(sub))
        # the smaller root of the sigma = 0 condition (contraction c >= 0) is the DDIM one
        root_values = sorted(float(r.subs(at)) for r in roots)
        assert value == pytest.approx(root_values[0], rel=1e-12)
        assert value == pytest.approx(float(song.subs(at)), rel=1e-12)
        assert 1 - value / (1 - abar) >= 0


@pytest.mark.parametrize("design, preserved", [("star", True), ("ddim", True), ("beta", False),
                                               ("ho-beta", False)])
def test_normal_preservation_by_design(design, preserved):
    rng = np.random.default_rng(1)
    eta_d, sigma2_d = (th.to_alpha_abar(x) for x in th.design_coefficients(design))
    residual = th.preservation_residual(eta_d, sigma2_d)
    values = []
    for _ in range(10):
        alpha, abar, _ = _random_step(rng)
        values.append(float(residual.subs({th.alpha: alpha, th.abar: abar})))
    assert (np.max(np.abs(values)) < 1e-12) == preserved
    # and the symbolic delta of the relative-error recursion on a normal direction agrees
    _, delta = th.relative_error_coefficients(*th.design_coefficients(design), 0)
    assert (sp.simplify(delta) == 0) == preserved


def test_relative_error_recursion_equals_variance_recursion():
    e = th.rel_error
    v = th.data_variance() * (1 + e)
    lhs = th.variance_step(v=v) / th.previous_data_variance() - 1
    assert sp.simplify(lhs - th.relative_error_step()) == 0


def test_mean_and_variance_steps_match_a_linear_gaussian_update():
    """One sampler step on N(m, v) with score -x/Sigma + b, pushed through by hand."""
    rng = np.random.default_rng(2)
    for _ in range(5):
        alpha, abar, sub = _random_step(rng)
        lam, eta, sigma2, m, v, b = rng.uniform(0.1, 2.0, size=6)
        sigma_t = (1 - (1 - abar)) * lam + (1 - abar)
        # Y' = (Y + eta(-Y/Sigma + b) + sqrt(sigma2) Z)/sqrt(alpha), computed in mpmath
        with mpmath.workdps(40):
            c = 1 - mpmath.mpf(eta) / sigma_t
            mean_expected = (c * m + eta * b) / mpmath.sqrt(alpha)
            var_expected = (c**2 * v + sigma2) / alpha
        at = {**sub, th.lam: lam, th.eta: eta, th.sigma2: sigma2, th.mean: m, th.variance: v,
              th.bias: b}
        assert float(th.mean_step().subs(at)) == pytest.approx(float(mean_expected), rel=1e-12)
        assert float(th.variance_step().subs(at)) == pytest.approx(float(var_expected), rel=1e-12)


def test_ho_beta_exact_on_unit_variance_and_star_on_normal():
    rho, delta = th.relative_error_coefficients(*th.design_coefficients("ho-beta"), 1)
    assert sp.simplify(delta) == 0
    assert sp.simplify(th.initial_relative_error(1)) == 0
    _, delta_beta = th.relative_error_coefficients(*th.design_coefficients("beta"), 1)
    assert sp.simplify(delta_beta) != 0


@pytest.mark.parametrize("e, m", [(0.3, 0.0), (-0.4, 0.7), (2.5, -1.2), (1e-2, 0.1)])
def test_gaussian_kl_and_bhattacharyya_against_quadrature(e, m):
    kl = float(th.gaussian_kl_1d().subs({th.rel_error: e, th.mean: m}))
    log_bc = float(th.gaussian_log_bhattacharyya_1d().subs({th.rel_error: e, th.mean: m}))
    with mpmath.workdps(30):
        w = 1 + mpmath.mpf(e)

        def log_p(x):
            return -x**2 / 2 - mpmath.log(2 * mpmath.pi) / 2

        def log_q(x):
            return -(x - m) ** 2 / (2 * w) - mpmath.log(2 * mpmath.pi * w) / 2

        kl_ref = mpmath.quad(lambda x: mpmath.exp(log_p(x)) * (log_p(x) - log_q(x)),
                             [-mpmath.inf, 0, mpmath.inf])
        bc_ref = mpmath.quad(lambda x: mpmath.exp((log_p(x) + log_q(x)) / 2),
                             [-mpmath.inf, 0, mpmath.inf])
    assert kl == pytest.approx(float(kl_ref), rel=1e-10)
    assert log_bc == pytest.approx(float(mpmath.log(bc_ref)), rel=1e-10, abs=1e-14)


def test_small_error_series_matches_closed_form():
    kl = th.gaussian_kl_1d().subs(th.mean, 0)
    series = th.small_error_series(kl)
    with mpmath.workdps(50):
        for e in (1e-3, -1e-3, 1e-5):
            exact = mpmath.mpf("0.5") * (1 / (1 + mpmath.mpf(e)) - 1 + mpmath.log1p(e))
            assert float(series.subs(th.rel_error, e)) == pytest.approx(float(exact), rel=1e-13)


def test_equal_density_radius():
    r2 = th.equal_density_radius2(sp.Integer(3))
    e = 0.4
    radius2 = float(r2.subs(th.rel_error, e))
    from scipy.stats import multivariate_normal

    x = np.array([np.sqrt(radius2), 0.0, 0.0])
    p = multivariate_normal(np.zeros(3), np.eye(3)).logpdf(x)
    q = multivariate_normal(np.zeros(3), (1 + e) * np.eye(3)).logpdf(x)
    assert p == pytest.approx(q, abs=1e-12)
