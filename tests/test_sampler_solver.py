"""Exact sampler error (THEORY D): compiled recursions vs mpmath, TV vs quadrature, properties."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from diffphase.errors import ParameterError
from diffphase.process import make_betas
from diffphase.solvers import sampler as sv
from diffphase.theory import sampler as th


def _mp_end_error(betas, design, lam, bias=0.0):
    """Direct (v, m) recursion of THEORY D at 40 digits, in (alpha, abar)."""
    with mpmath.workdps(40):
        alphas = [1 - mpmath.mpf(float(b)) for b in betas]
        abars, acc = [], mpmath.mpf(1)
        for a in alphas:
            acc *= a
            abars.append(acc)
        eta_e, sigma2_e = (th.to_alpha_abar(x) for x in th.design_coefficients(design))
        eta_f = sp.lambdify((th.alpha, th.abar), eta_e, "mpmath")
        sigma2_f = sp.lambdify((th.alpha, th.abar), sigma2_e, "mpmath")
        v, m = mpmath.mpf(1), mpmath.mpf(0)
        for t in range(len(betas) - 1, 0, -1):
            a, ab = alphas[t], abars[t]
            eta, sigma2 = eta_f(a, ab), sigma2_f(a, ab)
            c = 1 - eta / (ab * lam + 1 - ab)
            v = (c**2 * v + sigma2) / a
            m = (c * m + eta * bias) / mpmath.sqrt(a)
        target = abars[0] * lam + 1 - abars[0]
        return float(v / target - 1), float(m / mpmath.sqrt(target))


@pytest.mark.parametrize("schedule, T", [("li-yan", 40), ("linear", 60), ("cosine", 30)])
@pytest.mark.parametrize("design", sv.DESIGNS)
def test_chains_match_mpmath_recursion(schedule, T, design):
    betas = make_betas(schedule, T)
    lams = [0.0, 0.3, 1.0, 3.7]
    chains = [sv.Chain(0, sv.DESIGNS.index(design), lam, 0.25 if lam == 0.3 else 0.0)
              for lam in lams]
    e, mu = sv.run_chains([betas], chains)
    for j, lam in enumerate(lams):
        e_ref, mu_ref = _mp_end_error(betas, design, lam, chains[j].bias)
        assert e[j] == pytest.approx(e_ref, rel=1e-9, abs=1e-15)
        assert mu[j] == pytest.approx(mu_ref, rel=1e-9, abs=1e-15)


def test_custom_design_reproduces_named_design():
    betas = make_betas("li-yan", 50)
    eta, sigma2 = sv.design_arrays("beta", betas)
    named = sv.sampler_error(50, 20, 3, "beta", betas=betas)
    custom = sv.sampler_error(50, 20, 3, "custom", betas=betas, eta=eta, sigma2=sigma2)
    assert custom.kl == pytest.approx(named.kl, rel=1e-12)


def test_divergence_kernels_match_symbolic():
    e = np.array([-0.5, -1e-4, 1e-7, 5e-4, 2e-3, 0.0099, 0.0101, 0.7, 4.0])
    mu = np.array([0.0, 0.3, 0.0, -0.2, 0.0, 0.0, 0.0, 1.0, 0.5])
    kl, log_bc = sv.gaussian_divergences(e, mu)
    with mpmath.workdps(40):
        for i in range(e.size):
            at = {th.rel_error: sp.Rational(str(e[i])), th.mean: sp.Rational(str(mu[i]))}
            kl_ref = sp.N(th.gaussian_kl_1d().subs(at), 30)
            bc_ref = sp.N(th.gaussian_log_bhattacharyya_1d().subs(at), 30)
            assert kl[i] == pytest.approx(float(kl_ref), rel=1e-10, abs=1e-300)
            assert log_bc[i] == pytest.approx(float(bc_ref), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("e, n", [(0.3, 1), (-0.2, 5), (1e-3, 50), (1e-8, 1000), (2.0, 3)])
def test_isotropic_tv_against_mpmath(e, n):
    with mpmath.workdps(50):
        ee = mpmath.mpf(e)
        r2 = n * (1 + ee) * mpmath.log1p(ee) / ee

        def cdf(x):
            return mpmath.gammainc(mpmath.mpf(n) / 2, 0, x / 2, regularized=True)

        ref = abs(cdf(r2) - cdf(r2 / (1 + ee)))
    assert float(sv.isotropic_tv(e, n)) == pytest.approx(float(ref), rel=1e-8)


@pytest.mark.parametrize("e, mu", [(0.5, 0.0), (-0.3, 0.4), (0.0, 0.8), (1.2, -1.5), (1e-4, 0.01)])
def test_gaussian_tv_1d_against_quadrature(e, mu):
    from scipy.stats import norm

    def half_abs(x):
        return 0.5 * abs(norm.pdf(x) - norm.pdf(x, mu, np.sqrt(1 + e)))

    ref = integrate.quad(half_abs, -30, 30, points=[-3, 0, 3], limit=400, epsabs=1e-13)[0]
    assert float(sv.gaussian_tv_1d(e, mu)) == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_ho_beta_is_exact_for_unit_variances_only():
    unit = sv.sampler_error(200, 50, 4, "ho-beta", variances=np.ones(4))
    spread = sv.sampler_error(200, 50, 4, "ho-beta")
    assert unit.kl_tangent == 0.0
    assert spread.kl_tangent > 1e-8


def test_star_and_ddim_do_not_grow_with_dimension_beta_does():
    small = {d: sv.sampler_error(500, 8, 8, d) for d in sv.DESIGNS}
    large = {d: sv.sampler_error(500, 100_000, 8, d) for d in sv.DESIGNS}
    for design in ("star", "ddim"):
        assert large[design].kl - small[design].kl < 1e-3 * small[design].kl
    for design in ("beta", "ho-beta"):
        slope = (large[design].kl - small[design].kl) / (100_000 - 8)
        assert slope == pytest.approx(large[design].kl_normal_per_dim, rel=1e-9)
        assert large[design].kl > 100 * small[design].kl


def test_grid_matches_single_configurations():
    grid = sv.sampler_error_grid([30, 300], [8, 64], [2, 4], ("star", "beta"))
    assert grid["kl"].size == 2 * 2 * 2 * 2
    for i in range(grid["kl"].size):
        single = sv.sampler_error(int(grid["T"][i]), int(grid["dim"][i]), int(grid["k"][i]),
                                  str(grid["design"][i]))
        assert grid["kl"][i] == pytest.approx(single.kl, rel=1e-12)
        assert grid["tv_upper"][i] == pytest.approx(single.tv_upper, rel=1e-12)
        assert grid["tv_lower"][i] == pytest.approx(single.tv_lower, rel=1e-12)


def test_score_bias_adds_the_mean_term():
    clean = sv.sampler_error(100, 10, 2, "star")
    biased = sv.sampler_error(100, 10, 2, "star", score_bias=0.3)
    assert biased.kl > clean.kl
    assert biased.tangent_means[0] != 0 and biased.tangent_means[1] == 0


def test_fit_rate_recovers_a_power_law():
    T = np.geomspace(10, 1e4, 12)
    fit = sv.fit_rate(T, 3.0 * T**-1.25)
    assert fit.slope == pytest.approx(-1.25, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-10)


@given(T=st.integers(20, 400), dim=st.integers(1, 5000), k=st.integers(1, 6),
       design=st.sampled_from(sv.DESIGNS), low=st.floats(0.01, 1.0), ratio=st.floats(1.0, 50.0))
def test_divergence_properties(T, dim, k, design, low, ratio):
    k = min(k, dim)
    lam = np.geomspace(low, low * ratio, k)
    result = sv.sampler_error(T, dim, k, design, variances=lam)
    assert result.kl >= 0 and result.kl_tangent >= 0 and result.kl_normal >= 0
    assert 0.0 <= result.tv_lower <= result.tv_upper <= 1.0
    assert result.tv_normal <= result.tv_lower + 1e-15
    if dim > k:
        bigger = sv.sampler_error(T, dim + 100, k, design, variances=lam)
        # non-adaptive in d: the same per-direction errors, more normal directions
        assert bigger.kl >= result.kl
        assert bigger.kl_tangent == result.kl_tangent
        assert bigger.tv_normal >= result.tv_normal
        assert bigger.tv_lower >= result.tv_lower and bigger.tv_upper >= result.tv_upper


@given(T=st.integers(5, 200), dim=st.integers(1, 2000), k=st.integers(1, 5),
       eta_scale=st.floats(0.0, 2.0), sigma2_scale=st.floats(0.0, 3.0),
       bias=st.floats(-1.0, 1.0))
def test_divergence_properties_for_custom_designs(T, dim, k, eta_scale, sigma2_scale, bias):
    """KL >= 0 and ordered TV bounds in [0, 1] hold for any (eta, sigma^2), not only the named
    designs: scaled star coefficients, a score error, and a few normal directions more."""
    k = min(k, dim)
    betas = make_betas("linear", T)
    eta_star, sigma2_star = sv.design_arrays("star", betas)
    kwargs = {"betas": betas, "design": "custom", "eta": eta_scale * eta_star,
              "sigma2": sigma2_scale * sigma2_star, "score_bias": bias}
    result = sv.sampler_error(T, dim, k, **kwargs)
    assert np.isfinite(result.kl)
    assert result.kl >= 0 and result.kl_tangent >= 0 and result.kl_normal >= 0
    assert 0.0 <= result.tv_lower <= result.tv_upper <= 1.0
    bigger = sv.sampler_error(T, dim + 50, k, **kwargs)
    assert bigger.kl >= result.kl and bigger.tv_lower >= result.tv_lower


@pytest.mark.parametrize("kwargs, name", [
    ({"T": 1}, "T"), ({"k": 9, "dim": 4}, "k"), ({"variances": [1.0, -2.0], "k": 2}, "variances"),
    ({"design": "nope"}, "design"), ({"schedule": "li-yan", "T": 6}, "li-yan schedule beta"),
    ({"betas": np.r_[0.1, 1.2, 0.1], "T": 3}, "schedule beta"),
    ({"schedule_params": {"c0": -1.0}}, "c0"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    args = {"T": 100, "dim": 16, "k": 2, **kwargs}
    with pytest.raises(ParameterError, match=name):
        sv.sampler_error(**args)


def test_tv_bounds_are_the_symbolic_bounds():
    """Hellinger, Pinsker and Bretagnolle–Huber as compiled from the theory module, combined with
    the exact block TVs into the lower and upper bounds."""
    rng = np.random.default_rng(5)
    kl = rng.uniform(0, 3, 12)
    log_bc = -rng.uniform(0, 2, 12)
    tv_normal, tv_max, tv_sum = rng.uniform(0, 0.3, (3, 12))
    lower, upper = sv.tv_bounds(kl, log_bc, tv_normal, tv_max, tv_sum + tv_max)
    symbolic = th.tv_bounds()
    for i in range(12):
        at = {th.kl_value: kl[i], th.log_bc_value: log_bc[i]}
        value = {name: float(expr.evalf(30, subs=at)) for name, expr in symbolic.items()}
        expected_lower = max(tv_normal[i], tv_max[i], value["hellinger_lower"])
        expected_upper = min(1.0, value["hellinger_upper"], value["pinsker"],
                             value["bretagnolle_huber"], tv_normal[i] + tv_sum[i] + tv_max[i])
        assert lower[i] == pytest.approx(expected_lower, rel=1e-14)
        assert upper[i] == pytest.approx(max(expected_upper, expected_lower), rel=1e-14)
    # BC = 1 up to rounding: the Hellinger upper bound is 0, never NaN
    assert sv.tv_bounds(0.0, 1e-17, 0.0, 0.0, 0.0) == (0.0, 0.0)


def test_compiled_chain_updates_and_tv_forms_match_the_symbolic_ones():
    """The per-step updates of the chain loop, the chi-square window of the isotropic TV and the
    Gaussian log-density ratio of the one-dimensional TV, against the theory expressions."""
    rng = np.random.default_rng(6)
    mod = sv.compiled_kernels()
    forms = sv._window_and_bounds()
    x = sp.Symbol("x", real=True)
    log_p, log_q = th._gaussian_log_densities(x, th.variance_q)
    for _ in range(6):
        beta, q = sorted(rng.uniform(0.01, 0.9, 2))
        lam, c, eta, m, b, e, rho, delta = rng.uniform(-1, 2, 8)
        lam, n, w = abs(lam) + 0.1, int(rng.integers(1, 500)), 1 + abs(e)
        at = {th.beta: beta, th.q: q, th.lam: lam, th.contraction_c: c, th.eta: eta,
              th.mean: m, th.bias: b, th.rel_error: e, th.rho_t: rho, th.delta_t: delta,
              th.n_dim: n, th.variance_q: w}
        assert mod.mean_update(beta, c, eta, m, b) == pytest.approx(
            float(th.mean_step(c=th.contraction_c).subs(at)), rel=1e-14)
        assert mod.error_update(rho, delta, e) == pytest.approx(
            float(th.relative_error_step(coefficients=(th.rho_t, th.delta_t)).subs(at)),
            rel=1e-14, abs=1e-15)
        assert mod.standardized_mean(q, lam, m) == pytest.approx(
            float(th.standardized_mean().subs(at)), rel=1e-14)
        radius2 = float(th.equal_density_radius2().subs(at))
        scaled, upper, centre, half = forms.window(e, n)
        np.testing.assert_allclose([scaled, upper, centre, abs(half)],
                                   [radius2 / (1 + e), radius2, radius2 * (2 + e) / (2 + 2 * e),
                                    abs(radius2 * e / (2 + 2 * e))], rtol=1e-13)
        a_coef, b_coef, c_coef = forms.log_ratio(w, m)
        for xv in rng.normal(size=3):
            ratio = float((log_p - log_q).subs({**at, x: xv}))
            assert a_coef * xv**2 + b_coef * xv + c_coef == pytest.approx(ratio, rel=1e-12,
                                                                             abs=1e-13)
