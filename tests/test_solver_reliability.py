"""The solver layer on valid but extreme inputs: results (with flags) or a ParameterError.

Each reported class of failure has its test: single groups close to full rank, variances
spanning sixteen decades, laws at the ends of the floating-point range, extreme ``tau``, huge
``c0`` and short chains of the Li–Yan schedule, CDFs that cannot converge, direct construction
of a :class:`VarianceLaw`. A hypothesis test feeds the public functions of the solver modules
empty, NaN, negative and huge inputs and asserts either a :class:`ParameterError` or a result
whose every non-finite number is flagged.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from diffphase.errors import ConvergenceWarning, ParameterError
from diffphase.models import DESIGNS
from diffphase.process import li_yan_betas, li_yan_min_steps
from diffphase.solvers import hierarchy as H
from diffphase.solvers import memorization as M
from diffphase.solvers import population as P
from diffphase.solvers import roots as R
from diffphase.solvers import sampler as SV
from diffphase.solvers import spectral as S
from diffphase.solvers.codegen import ScalarKernel, compile_kernels
from diffphase.theory import sampler as TS
from diffphase.theory import spectral as T


def _inside(edges, n=40) -> np.ndarray:
    """Points strictly inside every bulk (geometric between the edges)."""
    return np.concatenate([np.geomspace(lo, hi, n + 2)[1:-1] if lo > 0 else
                           np.linspace(lo, hi, n + 2)[1:-1] for lo, hi in edges])


@pytest.fixture(scope="module")
def closed_form():
    k1 = T.closed_form_k1()
    args = (T.lam, k1["alpha"], k1["s"])
    return {key: sp.lambdify(args[1:] if key != "density" else args, k1[key], "mpmath")
            for key in ("density", "lower", "upper")}


# ----------------------------------------------------------------------------- spectral
@pytest.mark.parametrize("alpha", [0.991, 0.995, 0.999, 0.99999])
def test_single_group_close_to_full_rank(alpha, closed_form):
    """Every single-group fraction from 0.991 up: exact edges (the critical point at
    ``g = -1/(s (1 - sqrt(alpha)))`` lies far out), the density, and a converged dimension
    read-out equal to the Marchenko–Pastur mass above the threshold."""
    law = S.VarianceLaw.from_groups([alpha], [1.0])
    (lo, hi), = S.bulk_edges(law).bulks
    assert lo == pytest.approx(float(closed_form["lower"](alpha, 1.0)), rel=1e-9)
    assert hi == pytest.approx(float(closed_form["upper"](alpha, 1.0)), rel=1e-12)
    lam = _inside([[lo, hi]])
    rho, res = S.covariance_density(lam, law)
    assert res.n_failed == 0
    with mpmath.workdps(40):
        expected = [float(mpmath.re(closed_form["density"](x, alpha, 1.0))) for x in lam]
    # next to the lower edge z(g) = -1/g + alpha s/(1 + s g) cancels to ~(1 - alpha) of its
    # terms: the attainable accuracy there is ~1e-16/(1 - alpha) amplified by the edge
    np.testing.assert_allclose(rho, expected, rtol=1e-8 if alpha <= 0.999 else 1e-6)
    summary = S.spectral_summary(law, 0.1)
    assert summary["dimension_converged"]
    threshold = 0.1 * 0.1 / 0.9
    with mpmath.workdps(30):
        knots = np.geomspace(max(lo, threshold), hi, 40)
        mass = mpmath.quad(lambda x: mpmath.re(closed_form["density"](x, alpha, 1.0)),
                           list(knots))
    assert summary["dimension"] == pytest.approx(float(mass), rel=1e-7)
    assert float(S.spectral_mass_above(0.0, law)) == pytest.approx(alpha, rel=1e-9)


@pytest.mark.parametrize("fractions, variances", [((0.2, 0.2), (1e-8, 1e8)),
                                                  ((0.3, 0.3, 0.3), (1e-8, 1.0, 1e8)),
                                                  ((0.5, 0.5), (1e-8, 1e8))])
def test_variances_spanning_sixteen_decades(fractions, variances):
    """Every critical point is found (geometric scan next to the poles), each separated bulk
    holds its group's mass exactly, and the density converges at every point."""
    law = S.VarianceLaw.from_groups(fractions, variances)
    edges = S.bulk_edges(law).bulks
    assert edges.shape[0] == len(variances)
    if law.K == 2:
        np.testing.assert_allclose(edges, S.bulk_edges_polynomial(law).bulks, rtol=1e-9)
    rho, res = S.covariance_density(_inside(edges), law)
    assert res.n_failed == 0 and np.all(np.isfinite(rho)) and np.all(rho > 0)
    upper_masses = np.cumsum(law.fractions)  # groups by descending variance
    gaps = [0.5 * (u + l) for (_, u), (l, _) in zip(edges[:-1], edges[1:], strict=True)]
    mass = S.spectral_mass_above(np.array([0.0, *gaps]), law)
    np.testing.assert_allclose(mass, [law.alpha, *upper_masses[-2::-1]], rtol=1e-7)
    assert S.spectral_cdf_converged(law)


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_laws_at_the_ends_of_the_float_range_are_rescaled_unit_laws(scale):
    """``z(g)`` is covariant under a change of variance unit: edges, densities, the collapse
    noise and the REM times scale; sphere-normalized REM times do not."""
    unit = S.VarianceLaw.from_groups([0.3, 0.5], [1.0, 0.25])
    big = S.VarianceLaw.from_groups([0.3, 0.5], [scale, 0.25 * scale])
    np.testing.assert_allclose(S.bulk_edges(big).bulks / scale, S.bulk_edges(unit).bulks,
                               rtol=1e-12)
    lam = _inside(S.bulk_edges(unit).bulks)
    rho_unit, _ = S.covariance_density(lam, unit)
    rho_big, res = S.covariance_density(lam * scale, big)
    assert res.n_failed == 0
    np.testing.assert_allclose(rho_big * scale, rho_unit, rtol=1e-9)
    spectra = [M.CovarianceSpectrum.from_law(law, 64, "random") for law in (unit, big)]
    assert all(s.converged for s in spectra)
    taus = [M.collapse_tau(s, 1000).tau[0] for s in spectra]
    assert taus[1] / scale == pytest.approx(taus[0], rel=1e-9)
    rem = [M.rem_group_taus([1.0, 0.25], spectra[0], 1000),
           M.rem_group_taus([scale, 0.25 * scale], spectra[1], 1000)]
    np.testing.assert_allclose(rem[1][1] / scale, rem[0][1], rtol=1e-9)
    np.testing.assert_allclose(rem[1][2], rem[0][2], rtol=1e-9)


def test_variance_law_is_checked_however_built():
    for fractions, variances in [([0.5], [-1.0]), ([0.7, 0.6], [1.0, 2.0]), ([np.nan], [1.0]),
                                 ([], []), ([0.5], [1.0, 2.0]), ([0.5], [np.inf])]:
        with pytest.raises(ParameterError):
            S.VarianceLaw(np.array(fractions), np.array(variances))
    law = S.VarianceLaw(np.array([0.1, 0.2, 0.05]), np.array([1.0, 4.0, 1.0]))
    np.testing.assert_array_equal(law.variances, [4.0, 1.0])
    np.testing.assert_allclose(law.fractions, [0.2, 0.15])


def test_jacobian_density_at_extreme_tau():
    """Tiny ``tau``: ``j^2`` underflows, the factor is taken as ``(tau + lambda)^2 / tau``; huge
    ``tau``: ``j`` rounds to -1, the density comes from ``lambda`` itself; beyond the float
    range the density overflows and is flagged."""
    law = S.VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09])
    lam = _inside(S.spectrum_edges(law), 10)
    rho_c, _ = S.covariance_density(lam, law)
    for tau in (1e-300, 1e-200):
        jn = -tau / (tau + lam)
        rho, res = S.jacobian_density(jn, tau, law)
        assert res.n_failed == 0
        np.testing.assert_allclose(rho, (tau + lam) * (1 + lam / tau) * rho_c, rtol=1e-9)
    jn, rho, res = S.jacobian_density_of_covariance(lam, 1e300, law)
    assert np.all(jn == -1.0) and res.n_failed == 0
    np.testing.assert_allclose(rho, (1e300 + lam) * (1 + lam / 1e300) * rho_c, rtol=1e-12)
    jn, rho, res = S.jacobian_density_of_covariance(lam, 1e308, law)
    assert res.n_failed == np.count_nonzero(~np.isfinite(rho)) > 0
    ordinary = np.sort(S.formula("jacobian_eigenvalue", lam, 0.1))
    jn, rho, _ = S.jacobian_density_of_covariance(lam, 0.1, law)
    np.testing.assert_array_equal(jn, ordinary)
    np.testing.assert_array_equal(rho, S.jacobian_density(ordinary, 0.1, law)[0])


def test_cdf_that_cannot_converge_is_flagged():
    law = S.VarianceLaw.from_groups([0.37], [1.7])  # a law no other test uses
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        tables = S._bulk_cdf_tables(law, 5, rtol=0.0, max_nodes=9)
    assert not tables[0][-1]
    assert not S.spectral_cdf_converged(law, n_nodes=5)
    S._CDF_CACHE.clear()


def test_dimension_fraction_checks_its_arguments():
    law = S.VarianceLaw.from_groups([0.2], [1.0])
    for kwargs in ({"tau": -1.0}, {"tau": np.nan}, {"tau": 1.0, "delta": 2.0},
                   {"tau": [0.1, np.inf]}):
        with pytest.raises(ParameterError):
            S.dimension_fraction(law=law, **kwargs)
    assert S.dimension_fraction([], law).shape == (0,)
    assert S.covariance_density([], law)[0].shape == (0,)


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("c0", [50.0, 100.0])
def test_huge_c0_gives_finite_errors(design, c0):
    """``beta_1 = T^-c0`` near the smallest float: the process barely noises, the error is huge
    but finite (the steps switch to bounded variables), and nothing is flagged."""
    result = SV.sampler_error(1000, 4096, 8, design, schedule_params={"c0": c0})
    assert result.finite and result.non_finite == 0
    assert math.isfinite(result.kl) and result.kl > 1e5
    assert 0.0 <= result.tv_lower <= result.tv_upper <= 1.0


@pytest.mark.parametrize("design", DESIGNS)
def test_bounded_step_variables_match_high_precision(design):
    """The chain on a schedule with ``q_t ~ 1e-250`` (where the ``(beta, q)`` forms overflow)
    against the same recursion evaluated in mpmath at 50 digits from the symbolic forms."""
    betas = li_yan_betas(50, c0=147.0)
    code = DESIGNS.index(design)
    eta, sigma2 = TS.design_coefficients(design)
    rho, delta = TS.relative_error_coefficients(eta, sigma2)
    ref = compile_kernels([ScalarKernel.of("step", (TS.beta, TS.q, TS.lam), (rho, delta)),
                           ScalarKernel.of("start", (TS.q, TS.lam),
                                           TS.initial_relative_error())], "mpmath")
    for lam in (0.0, 0.25):
        (e_float,), _ = SV.run_chains([betas], [SV.Chain(0, code, lam)])
        with mpmath.workdps(50):
            b = [mpmath.mpf(float(x)) for x in betas]
            qs, log_keep = [], mpmath.mpf(0)
            for x in b:  # q_t = 1 - prod(1 - beta), without cancellation at beta ~ 1e-250
                log_keep += mpmath.log1p(-x)
                qs.append(-mpmath.expm1(log_keep))
            e = ref.start(qs[-1], mpmath.mpf(lam))
            for t in range(len(b) - 1, 0, -1):
                r, d = ref.step(b[t], qs[t], mpmath.mpf(lam))
                e = r * e + d
        assert e_float == pytest.approx(float(e), rel=1e-9), lam


def test_li_yan_schedule_states_its_real_range():
    for c1 in (3.0, 4.0, 10.0):
        first = li_yan_min_steps(c1)
        for steps in range(2, first):
            if c1 * math.log(steps) >= steps:
                with pytest.raises(ParameterError, match=f"T >= {first}"):
                    li_yan_betas(steps, c1=c1)
        for steps in (first, first + 1, 10 * first):
            betas = li_yan_betas(steps, c1=c1)
            assert np.all((betas > 0) & (betas < 1))
    with pytest.raises(ParameterError, match="c0"):
        li_yan_betas(1000, c0=200.0)
    assert li_yan_min_steps(2.0) == 2


# ----------------------------------------------------------------------------- property test
LAW = S.VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09])
BAD = [[], np.nan, [np.nan, 1.0], -1.0, [-1.0], 0.0, 1e308, [1e308], np.inf, -np.inf, 1e-308,
       10**9, "x", None]


def _flagged_spectral(result):
    values, res = result
    bad = ~np.isfinite(np.ravel(values))
    return not np.any(bad & np.ravel(res.converged))


def _finite(result):
    return bool(np.all(np.isfinite(np.asarray(result, dtype=float))))


CALLS = {
    "VarianceLaw.fractions": (lambda v: S.VarianceLaw.from_groups(v, [1.0]), lambda r: True),
    "VarianceLaw.variances": (lambda v: S.VarianceLaw.from_groups([0.5], v), lambda r: True),
    "covariance_density": (lambda v: S.covariance_density(v, LAW), _flagged_spectral),
    "jacobian_density.jn": (lambda v: S.jacobian_density(v, 0.1, LAW), _flagged_spectral),
    "jacobian_density.tau": (lambda v: S.jacobian_density([-0.5], v, LAW), _flagged_spectral),
    "dimension_fraction.tau": (lambda v: S.dimension_fraction(v, LAW), _finite),
    "dimension_fraction.delta": (lambda v: S.dimension_fraction(0.1, LAW, delta=v), _finite),
    "spectral_mass_above": (lambda v: S.spectral_mass_above(v, LAW), _finite),
    "spectral_summary.tau": (lambda v: S.spectral_summary(LAW, v), lambda r: True),
    "stieltjes_transform": (lambda v: S.stieltjes_transform(v, LAW),
                            lambda r: not np.any(~np.isfinite(r.g) & r.converged)),
    "phase_of": (lambda v: S.phase_of(v, S.spectrum_edges(LAW), 0.1), lambda r: True),
    "bulk_edges.n_samples": (lambda v: S.bulk_edges(LAW, n_samples=v), lambda r: True),
    "quadrature.n_nodes": (lambda v: S.covariance_spectrum_quadrature(LAW, n_nodes=v),
                           lambda r: _finite(r[1])),
    "collapse_tau": (lambda v: M.collapse_tau(M.CovarianceSpectrum.from_eigenvalues([1.0, 2.0]),
                                              v),
                     lambda r: not np.any(~np.isfinite(r.tau) & r.converged)),
    "from_eigenvalues": (lambda v: M.CovarianceSpectrum.from_eigenvalues(v), lambda r: True),
    "speciation_tau": (lambda v: M.speciation_tau(v),
                       lambda r: not np.any(~np.isfinite(r[0]) & r[1])),
    "cloning_probability": (lambda v: M.cloning_probability(v, 1.0, 1.0), _finite),
    "rem_critical_tau": (lambda v: M.rem_critical_tau(v, 100, [1.0]),
                         lambda r: not np.any(~np.isfinite(r.root) & r.converged)),
    "rem_displaced": (lambda v: M.rem_critical_tau_displaced(v, 1.0, 100, False), _finite),
    "participation": (lambda v: M.rem_participation_ratio(v, 1.0), _finite),
    "sampler_error.T": (lambda v: SV.sampler_error(v, 16, 2),
                        lambda r: r.finite or r.non_finite > 0),
    "sampler_error.bias": (lambda v: SV.sampler_error(16, 16, 2, score_bias=v),
                           lambda r: r.finite or r.non_finite > 0),
    "gaussian_divergences": (lambda v: SV.gaussian_divergences(v), lambda r: True),
    "isotropic_tv": (lambda v: SV.isotropic_tv(v, 3), _finite),
    "fit_rate": (lambda v: SV.fit_rate([10, 100], v), lambda r: True),
    "schedule_arrays": (lambda v: SV.schedule_arrays(v), _finite),
    "mean_field_levels": (lambda v: H.mean_field_levels(v, 4, 2, 2, 3), _finite),
    "critical_point.v": (lambda v: H.critical_point(v, 2, 2), lambda r: True),
    "critical_grid_large_v": (lambda v: H.critical_grid_large_v(v, 2), lambda r: True),
    "collapse_variable": (lambda v: H.collapse_variable(0.5, 0.3, v, 4), _finite),
    "bracketed_root.lo": (lambda v: R.bracketed_root(lambda x: x - 0.5, v, 1.0),
                          lambda r: not np.any(~np.isfinite(r.root) & r.converged)),
    "bracketed_root.xtol": (lambda v: R.bracketed_root(lambda x: x - 0.5, 0.0, 1.0, xtol=v),
                            lambda r: bool(np.all(r.converged))),
    "population.noise": (lambda v: P.class_preservation(_tiny_model(), "eps", v, 100, 1),
                         lambda r: math.isfinite(r.class_preservation)),
}


def _tiny_model():
    from diffphase.data.rhm import RandomHierarchyModel

    return RandomHierarchyModel(4, 2, 2, 2, seed=0)


@settings(max_examples=300)
@given(name=st.sampled_from(sorted(CALLS)), value=st.sampled_from(BAD))
def test_public_functions_flag_or_refuse_bad_inputs(name, value):
    """Empty, NaN, negative, zero, huge, infinite and non-numeric inputs: a
    :class:`ParameterError`, or a result in which every non-finite number is flagged."""
    call, flagged = CALLS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            result = call(value)
        except ParameterError:
            return
    assert flagged(result), (name, value, result)
