"""Numeric layer of the spectral model: densities, edges, gaps, phases (THEORY A)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffphase.data.laws import LinearGaussian
from diffphase.errors import ParameterError
from diffphase.simulate.spectral import tangent_covariance_eigenvalues
from diffphase.solvers import spectral as S

ONE = S.VarianceLaw.from_groups([0.25], [1.0])
TWO = S.VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09])
THREE = S.VarianceLaw.from_groups([0.2, 0.2, 0.3], [1.0, 0.3, 0.01])


@pytest.fixture(scope="module", autouse=True)
def warm_jit():
    S.covariance_density(np.linspace(0.3, 2, 5), ONE)


def mp_density(alpha, s, lam):
    lo, hi = s * (1 - np.sqrt(alpha)) ** 2, s * (1 + np.sqrt(alpha)) ** 2
    inside = (lam > lo) & (lam < hi)
    out = np.zeros_like(lam)
    out[inside] = np.sqrt((hi - lam[inside]) * (lam[inside] - lo)) / (2 * np.pi * s * lam[inside])
    return out


@pytest.mark.parametrize("alpha,s", [(0.25, 1.0), (0.05, 2.0), (0.7, 0.3), (1.0, 1.0)])
def test_k1_density_matches_closed_form(alpha, s):
    law = S.VarianceLaw.from_groups([alpha], [s])
    lam = np.linspace(1e-3, 5 * s, 3001)
    rho, res = S.covariance_density(lam, law)
    assert res.n_failed == 0
    np.testing.assert_allclose(rho, mp_density(alpha, s, lam), rtol=1e-9, atol=1e-9)


def test_k1_edges_match_closed_form():
    for alpha in (0.01, 0.25, 0.6, 0.99):
        edges = S.bulk_edges([alpha], [1.0]).bulks
        np.testing.assert_allclose(
            edges, [[(1 - alpha**0.5) ** 2, (1 + alpha**0.5) ** 2]], rtol=1e-12
        )
    assert S.bulk_edges([1.0], [1.0]).bulks.tolist() == [[0.0, pytest.approx(4.0)]]


@pytest.mark.parametrize("law", [TWO, THREE, S.VarianceLaw.from_groups([0.3, 0.3], [1, 0.5])])
def test_edges_two_routes_agree(law):
    scan, poly = S.bulk_edges(law), S.bulk_edges_polynomial(law)
    assert scan.n_bulks == poly.n_bulks
    np.testing.assert_allclose(scan.bulks, poly.bulks, rtol=1e-10)


def test_bulks_merge_when_variances_are_close():
    assert S.bulk_edges([0.2, 0.2], [1.0, 0.09]).n_bulks == 2
    assert S.bulk_edges([0.2, 0.2], [1.0, 0.5]).n_bulks == 1


def test_density_vanishes_exactly_outside_the_bulks():
    edges = S.bulk_edges(TWO)
    lam = np.linspace(1e-4, 3, 4001)
    rho, _ = S.covariance_density(lam, TWO)
    outside = ~edges.contains(lam)
    assert np.all(rho[outside] == 0) and np.all(rho[~outside] > 0)


@pytest.mark.parametrize("law", [ONE, TWO, THREE])
def test_newton_matches_mpmath_at_30_digits_away_from_edges(law):
    edges = S.bulk_edges(law).bulks
    points = []
    for lo, hi in edges:
        points += list(lo + (hi - lo) * np.array([0.1, 0.37, 0.5, 0.81, 0.9]))
    points += [edges[-1, 1] * 1.5, edges[0, 0] * 0.5]  # off the support
    res = S.stieltjes_transform(np.array(points, dtype=complex), law)
    for x, g in zip(points, res.g, strict=True):
        ref = complex(S.stieltjes_mpmath(x, law))
        assert abs(g - ref) <= 1e-10 * abs(ref), (x, g, ref)


def test_error_near_edges_is_small_and_reported():
    lo, hi = S.bulk_edges(ONE).bulks[0]
    offsets = np.array([1e-4, 1e-6, 1e-8])
    res = S.stieltjes_transform(lo + offsets * (hi - lo) + 0j, ONE)
    errors = [
        abs(g - complex(S.stieltjes_mpmath(x, ONE))) / abs(complex(S.stieltjes_mpmath(x, ONE)))
        for x, g in zip(lo + offsets * (hi - lo), res.g, strict=True)
    ]
    print("relative error at distance 1e-4, 1e-6, 1e-8 (x bulk width) from the edge:", errors)
    assert max(errors) < 1e-6 and res.converged.all()


def test_polynomial_route_agrees_with_newton():
    z = np.concatenate([np.linspace(0.01, 3, 200) + 0j, np.linspace(-1, 3, 50) + 0.3j])
    for law in (ONE, TWO, THREE):
        newton = S.stieltjes_transform(z, law)
        roots = S.physical_root_polynomial(z, law)
        np.testing.assert_allclose(newton.g, roots, rtol=1e-8, atol=1e-10)


@given(x=st.floats(-10, 10), eta=st.floats(1e-6, 10))
def test_upper_half_plane_maps_to_upper_half_plane(x, eta):
    res = S.stieltjes_transform(np.array([x + 1j * eta]), TWO)
    assert res.converged.all() and res.g[0].imag > 0


@given(r=st.floats(1e3, 1e7), phi=st.floats(0.01, np.pi - 0.01))
def test_large_z_asymptotics(r, phi):
    z = r * np.exp(1j * phi)
    g = S.stieltjes_transform(np.array([z]), THREE).g[0]
    assert abs(g * z + 1) < 10 / r  # g = -1/z - m1/z^2 + ..., m1 = sum alpha_k s_k < 1


@given(a1=st.floats(0.02, 0.5), a2=st.floats(0.02, 0.45), s2=st.floats(1e-3, 0.9))
def test_density_nonnegative_and_mass_alpha(a1, a2, s2):
    law = S.VarianceLaw.from_groups([a1, a2], [1.0, s2])
    lam = np.linspace(1e-4, 5, 257)
    rho, res = S.covariance_density(lam, law)
    assert res.n_failed == 0 and np.all(rho >= 0)
    assert float(S.spectral_mass_above(0.0, law)) == pytest.approx(law.alpha, rel=1e-7)


def test_mass_matches_mpmath_integral_of_closed_form():
    alpha = 0.3
    lo, hi = (1 - alpha**0.5) ** 2, (1 + alpha**0.5) ** 2
    law = S.VarianceLaw.from_groups([alpha], [1.0])
    for threshold in (0.5, 1.0, 2.0):
        exact = mpmath.quad(
            lambda x: mpmath.sqrt((hi - x) * (x - lo)) / (2 * mpmath.pi * x), [threshold, hi]
        )
        assert float(S.spectral_mass_above(threshold, law)) == pytest.approx(float(exact), rel=1e-8)


def test_jacobian_density_integrates_to_alpha():
    from scipy.integrate import quad

    tau = 0.3
    total, _ = quad(
        lambda j: float(S.jacobian_density(np.array([j]), tau, TWO)[0][0]),
        -1 + 1e-9,
        -1e-9,
        points=[-tau / (tau + e) for e in S.bulk_edges(TWO).bulks.ravel()],
        limit=400,
    )
    assert total == pytest.approx(TWO.alpha, rel=1e-5)


@given(tau=st.floats(1e-8, 1e8))
def test_gap_widths_vanish_at_extreme_times(tau):
    edges = S.spectrum_edges(TWO)
    small, large = 1e-9, 1e9
    assert S.formula("gap", edges[1, 0], edges[0, 1], small) < 1e-7
    assert S.formula("gap", edges[1, 0], edges[0, 1], large) < 1e-7
    assert S.formula("manifold_gap", edges[0, 0], large) < 1e-9
    assert 0 <= S.formula("gap", edges[1, 0], edges[0, 1], tau) <= 1


def test_dimension_readout_is_monotone_in_tau():
    taus = np.geomspace(1e-4, 1e3, 300)
    for law in (ONE, TWO, THREE):
        fraction = S.dimension_fraction(taus, law)
        assert np.all(np.diff(fraction) <= 1e-12)
        assert fraction[0] == pytest.approx(law.alpha) and fraction[-1] < 1e-6


def test_phases_in_order_along_time():
    edges = S.spectrum_edges(TWO)
    phases = S.phase_of(np.geomspace(1e-6, 1e4, 50), edges, 0.1)
    order = {"consolidation": 0, "coverage": 1, "trivial": 2}
    codes = [order[p] for p in phases]
    assert codes == sorted(codes) and set(codes) == {0, 1, 2}


def test_higher_variance_group_separates_first():
    """The gap between the bulks is visible at larger tau than ... the manifold gap closes."""
    summary = S.spectral_summary(TWO, tau=1.0)
    (gap,) = summary["intermediate_gaps"]
    assert gap["window"][0] < gap["tau_max"] < gap["window"][1]


def test_orthonormal_edges_are_the_variances():
    summary = S.spectral_summary(TWO, tau=0.1, subspace="orthonormal")
    assert summary["edges"] == [[0.09, 0.09], [1.0, 1.0]]
    assert summary["intermediate_gaps"][0]["tau_max"] == pytest.approx(0.3)


def test_continuous_law_against_finite_matrix():
    law = S.VarianceLaw.from_density(lambda s: np.ones_like(s), (0.2, 1.0), alpha=0.3)
    rng = np.random.default_rng(3)
    d = 1200
    m = int(0.3 * d)
    latent = 0.2 + 0.8 * (np.arange(m) + 0.5) / m  # quantiles of the uniform law
    manifold = LinearGaussian(rng.standard_normal((d, m)) / np.sqrt(d), latent)
    eig = np.sort(tangent_covariance_eigenvalues(manifold))
    cdf = 1 - S.spectral_mass_above(eig, law) / law.alpha
    assert np.max(np.abs(cdf - (np.arange(1, m + 1) - 0.5) / m)) < 2 * np.log(m) / m


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(fractions=[0.2], variances=[-1.0]), "variances"),
        (dict(fractions=[0.7, 0.5], variances=[1.0, 2.0]), "fractions"),
        (dict(fractions=[0.2, 0.2], variances=[1.0]), "fractions"),
    ],
)
def test_bad_laws_name_the_parameter(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        S.VarianceLaw.from_groups(**kwargs)


def test_bad_tau_and_delta():
    with pytest.raises(ParameterError, match="tau"):
        S.spectral_summary(TWO, tau=-1.0)
    with pytest.raises(ParameterError, match="delta"):
        S.spectral_summary(TWO, tau=1.0, delta=1.5)


@given(a1=st.floats(0.05, 0.5), a2=st.floats(0.05, 0.45))
def test_atom_at_zero_has_mass_one_minus_alpha(a1, a2):
    """``eta Im g(i eta) -> 1 - alpha`` as ``eta -> 0``: the normal directions' atom (the solver
    never sees the atom explicitly; it comes out of the self-consistent equation)."""
    law = S.VarianceLaw.from_groups([a1, a2], [1.0, 0.05])
    eta = 1e-7
    g = S.stieltjes_transform(np.array([1j * eta]), law).g[0]
    assert eta * g.imag == pytest.approx(1 - law.alpha, abs=1e-5)


@pytest.mark.parametrize("law", [ONE, TWO, THREE])
def test_array_backend_solver_matches_compiled_solver(law):
    lam = np.linspace(1e-3, 3.0, 400)
    rho_array, converged, iterations = S.covariance_density_array(lam, law, device="cpu")
    rho, res = S.covariance_density(lam, law)
    assert converged.all() and res.converged.all()
    np.testing.assert_allclose(rho_array, rho, rtol=1e-9, atol=1e-11)
    assert iterations.max() > 0


@pytest.mark.gpu
def test_array_backend_solver_on_gpu():
    lam = np.linspace(1e-3, 3.0, 4000)
    rho_gpu, converged, _ = S.covariance_density_array(lam, THREE, device="gpu")
    rho, _ = S.covariance_density(lam, THREE)
    assert converged.all()
    np.testing.assert_allclose(rho_gpu, rho, rtol=1e-9, atol=1e-11)


def test_stieltjes_templates_match_the_symbolic_inverse_map():
    """The hand-written loops sum the compiled parts of ``z(g)`` over groups; with the Newton
    function ``F(g) = g (z(g) - z)`` they use ``F' = (z(g) - z) + g z'`` and
    ``F'' = 2 z' + g z''``. Both are compared with the symbolic ``z(g)`` of THREE groups."""
    import sympy as sp

    from diffphase.theory import spectral as T

    alphas, variances = T.group_symbols(THREE.K)
    z_of_g = T.inverse_map(THREE.K)
    values = dict(zip(alphas + variances, [*THREE.fractions, *THREE.variances], strict=True))
    derivatives = [z_of_g.subs(values), sp.diff(z_of_g, T.g).subs(values),
                   sp.diff(z_of_g, T.g, 2).subs(values)]
    newton = T.g * (z_of_g - T.z)
    assert sp.simplify(sp.diff(newton, T.g) - (z_of_g - T.z + T.g * sp.diff(z_of_g, T.g))) == 0
    assert sp.simplify(sp.diff(newton, T.g, 2) - (2 * sp.diff(z_of_g, T.g)
                                                  + T.g * sp.diff(z_of_g, T.g, 2))) == 0
    mod = S.kernels()
    rng = np.random.default_rng(8)
    for gv in rng.normal(size=4) + 1j * rng.uniform(0.05, 2, 4):
        got = mod.inverse_map_value(gv, THREE.fractions, THREE.variances)[:3]
        expected = [complex(d.evalf(30, subs={T.g: gv})) for d in derivatives]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    for gv in -rng.uniform(0.01, 0.5, 4):
        slope, curvature = mod.inverse_map_curvature(gv, THREE.fractions, THREE.variances)
        expected = [float(d.evalf(30, subs={T.g: gv})) for d in derivatives[1:]]
        np.testing.assert_allclose([slope, curvature], expected, rtol=1e-11)
        assert mod.inverse_map_slope(gv, THREE.fractions, THREE.variances) == pytest.approx(
            expected[0], rel=1e-12)


def test_hand_written_gaussian_scores_match_the_symbolic_eigenvalues():
    """``LinearGaussian`` (data layer, numpy) forms ``-(a^2 C + D I)^{-1}`` and ``Jn`` by hand:
    their eigenvalues are the compiled THEORY A expressions ``-1/(a^2 lambda + D)`` and
    ``-tau/(tau + lambda)``, which agree with each other at ``D = tau a^2``."""
    rng = np.random.default_rng(9)
    manifold = LinearGaussian.manifold([0.25, 0.25], [4.0, 0.5], 12, "random", rng)
    lam = manifold.covariance_eigenvalues()
    for a, D in ((0.8, 0.3), (1.0, 2.5)):
        expected = np.sort(S.formula("score_jacobian_eigenvalue", lam, a, D))
        np.testing.assert_allclose(np.linalg.eigvalsh(manifold.jacobian(None, a, D)), expected,
                                   rtol=1e-10)
        x = rng.normal(size=(3, 12))
        vals, vecs = np.linalg.eigh(manifold.covariance())
        coefficient = S.formula("score_jacobian_eigenvalue", np.clip(vals, 0, None), a, D)
        np.testing.assert_allclose(manifold.score(x, a, D),
                                   ((x @ vecs) * coefficient) @ vecs.T, rtol=1e-10, atol=1e-12)
        tau = D / a**2
        np.testing.assert_allclose(manifold.normalized_jacobian_eigenvalues(tau),
                                   np.sort(S.formula("jacobian_eigenvalue", lam, tau)),
                                   rtol=1e-14)


@pytest.mark.parametrize("scale", [1.0, 1e-300, 1e300])
def test_compiled_residual_check_agrees_with_numpy_at_every_scale(scale):
    from diffphase.solvers import stieltjes_solver as SS

    law = S.VarianceLaw.from_groups([0.3, 0.5], [scale, 0.25 * scale])
    x = np.linspace(-0.5, 4.0, 300)[None, :] * scale
    res = S.stieltjes_lines(np.ascontiguousarray(x), law)
    alphas, variances = law.fractions[None, :], law.variances[None, :]
    rng = np.random.default_rng(0)
    g = res.g * np.where(rng.random(x.shape) < 0.3, 1 + 1e-3 * rng.standard_normal(x.shape), 1)
    g[0, :5] = [np.nan, np.inf, 0.0, 1e-320, 1e200]
    compiled = SS._residual_small(x, 0.0, alphas, variances, g)
    reference = SS._residual_small_numpy(x[0], 0.0, np.repeat(alphas, x.size, 0),
                                         np.repeat(variances, x.size, 0), g[0], 1e-7)
    np.testing.assert_array_equal(compiled[0], reference)
    assert 0 < compiled.sum() < compiled.size  # both outcomes are exercised
