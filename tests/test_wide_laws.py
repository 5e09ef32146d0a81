"""Continuous laws of latent variances spanning many decades (THEORY A), solved exactly.

Independent routes: the closed-form piece integrals and the roots ``g`` against THEORY A's term
``alpha s / (1 + s g)`` integrated over the law at 30 digits (mpmath); the contour-integral mass
against quadrature of the density; and the spectrum of the matrix ``C = F Sigma F^T`` itself
(``F`` iid ``N(0, 1/d)``, ``d = 4000``, the latent variances at the law's quantiles), whose
nonzero eigenvalues are those of ``Sigma^(1/2) F^T F Sigma^(1/2)``; the tangent eigenvalues of
``Jn`` are ``-tau / (tau + lambda)`` of them (checked on matrices in
``tests/test_spectral_solver.py``), so the manifold gap is read off the smallest one.

Finite-``d`` tolerances (stated once, used for every edge). The extreme eigenvalue differs from
the theory's edge by Tracy–Widom fluctuations and by the discreteness of the latent quantiles near
the end of the law; both live on the scale over which the theory expects O(1) eigenvalues. So the
smallest eigenvalue must lie within ``w = x_k - l`` of the lowest edge ``l``, where
``d (alpha - M(x_k)) = k = 4`` eigenvalues lie below ``x_k`` (``M`` the theory's mass above); the
upper edge likewise from above. For a square-root edge ``w`` shrinks like ``d^(-2/3)``; a uniform
law ending at ``s = 1e-3`` has almost no mass near its end, so ``w`` is wide there (at ``d = 4000``
its smallest eigenvalue sits 44% above the edge with half a theory eigenvalue below it). The
manifold gap ``l / (tau + l)`` gets the tolerance of ``l`` through its slope. Further in, the
finite spectrum must hold the theory's count below ``x_20`` and ``x_100`` (and above their mirror
images) within 3: eigenvalue counts are rigid (fluctuations of order ``sqrt(ln m) / pi``, below
one eigenvalue) up to the rounding of the latent quantiles. Bulks of the finite spectrum: a
spacing of log-eigenvalues more than 15 times the median spacing of the 10 eigenvalues on each
side (no theory input; the sparse tail at an edge grows gradually and does not count).
"""

from __future__ import annotations

import functools
import json
import time

import mpmath
import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.optimize import brentq

from diffphase.cli import cli
from diffphase.data.laws import LinearGaussian
from diffphase.errors import ParameterError
from diffphase.simulate.spectral import tangent_covariance_eigenvalues
from diffphase.solvers import continuous_solver as C
from diffphase.solvers import spectral as S
from diffphase.solvers.continuous_law import VarianceContinuum
from diffphase.solvers.memorization import CovarianceSpectrum
from diffphase.theory import spectral as T

DIM = 4000
TAU = 0.01
EDGE_COUNT = 4  # theory eigenvalues between an edge and the end of its tolerance


def loguniform(low, high, alpha):
    return S.VarianceLaw.from_density(lambda s: 1.0 / s, (low, high), alpha)


def uniform(low, high, alpha):
    return S.VarianceLaw.from_density(lambda s: np.ones_like(s), (low, high), alpha)


def with_hole(alpha):  # log-uniform on [1e-6, 1e-4] and [0.1, 1], nothing between
    return S.VarianceLaw.from_density(
        lambda s: np.where((s < 1e-4) | (s > 1e-1), 1.0 / s, 0.0), (1e-6, 1.0), alpha)


CASES = {  # name -> (law, slow)
    "six decades, loguniform:1e-6,1 alpha 0.5": (lambda: loguniform(1e-6, 1.0, 0.5), True),
    "example 1, loguniform:0.001,10 alpha 0.5": (lambda: loguniform(1e-3, 10.0, 0.5), True),
    "example 2, uniform:0.001,1 alpha 0.3": (lambda: uniform(1e-3, 1.0, 0.3), False),
    "example 3, loguniform:0.0001,1 alpha 0.2": (lambda: loguniform(1e-4, 1.0, 0.2), False),
    "a hole of three decades, alpha 0.4": (lambda: with_hole(0.4), False),
}


@pytest.fixture(scope="module", autouse=True)
def warm_jit():
    law = loguniform(0.1, 1.0, 0.3)
    S.covariance_density(np.linspace(0.05, 2, 5), law)
    S.spectral_mass_above(0.5, law)


# ----------------------------------------------------------------------------- finite matrices
def law_quantiles(law: S.VarianceLaw, m: int) -> np.ndarray:
    """The ``m`` latent variances at the mid-quantiles of the law (its exact CDF inverted)."""
    c = law.continuum
    grid = np.geomspace(c.lows[0], c.highs[-1], 400001)
    cdf = 1.0 - c.mass_above(grid) / c.alpha
    return np.interp((np.arange(m) + 0.5) / m, cdf, grid)


def finite_spectrum(latent: np.ndarray, seed: int = 0) -> np.ndarray:
    """Ascending nonzero eigenvalues of ``C = F Sigma F^T`` at ``d = DIM``."""
    rng = np.random.default_rng(seed)
    manifold = LinearGaussian(rng.standard_normal((DIM, latent.size)) / np.sqrt(DIM), latent)
    return np.sort(tangent_covariance_eigenvalues(manifold))


def finite_bulks(eigenvalues: np.ndarray, window: int = 10, factor: float = 15.0) -> int:
    """Separate bulks of a finite spectrum (module docstring)."""
    spacing = np.diff(np.log(eigenvalues))
    gaps = 0
    for i in range(window, spacing.size - window):
        local = max(np.median(spacing[i - window:i]), np.median(spacing[i + 1:i + 1 + window]))
        gaps += spacing[i] > factor * local
    return 1 + gaps


def counted_from_edge(law: S.VarianceLaw, bulks: np.ndarray, count: float,
                      from_top: bool = False) -> float:
    """The ``x`` with ``count`` theory eigenvalues (at ``d = DIM``) below it (above it when
    ``from_top``), inside the lowest (top) bulk."""
    low, high = (bulks[-1, 0], bulks[-1, 1]) if from_top else (bulks[0, 0], bulks[0, 1])

    def excess(v):
        mass = float(S.spectral_mass_above(np.exp(v), law))
        return DIM * (mass if from_top else law.alpha - mass) - count

    inner = (np.log(low), np.log(high) - 1e-12) if from_top else (np.log(low) + 1e-12,
                                                                    np.log(high))
    return float(np.exp(brentq(excess, *inner, xtol=1e-12)))


def edge_tolerances(law: S.VarianceLaw, bulks: np.ndarray) -> tuple[float, float]:
    """``(w_low, w_high)``: distances from the lowest and the top edge holding ``EDGE_COUNT``
    theory eigenvalues (module docstring)."""
    return (counted_from_edge(law, bulks, EDGE_COUNT) - bulks[0, 0],
            bulks[-1, 1] - counted_from_edge(law, bulks, EDGE_COUNT, from_top=True))


@functools.cache
def compared(name: str) -> dict:
    """Theory and finite-matrix numbers of one case of :data:`CASES`."""
    law = CASES[name][0]()
    m = int(round(law.alpha * DIM))
    start = time.perf_counter()
    eigenvalues = finite_spectrum(law_quantiles(law, m))
    matrix_seconds = time.perf_counter() - start
    bulks = S.spectrum_edges(law)
    w_low, w_high = edge_tolerances(law, bulks)
    gap = S.formula("manifold_gap", bulks[0, 0], TAU)
    return {"law": law, "bulks": bulks, "eigenvalues": eigenvalues, "w_low": w_low,
            "w_high": w_high, "gap": float(gap),
            "gap_tolerance": float(S.formula("manifold_gap", bulks[0, 0] + w_low, TAU) - gap),
            "summary": S.spectral_summary(law, TAU), "matrix_seconds": matrix_seconds}


def _report(name: str, case: dict) -> None:
    eig = case["eigenvalues"]
    print(f"\n{name}: bulks theory {case['bulks'].shape[0]} / d={DIM} {finite_bulks(eig)}; "
          f"lowest edge {case['bulks'][0, 0]:.5g} / {eig[0]:.5g} (tol {case['w_low']:.3g}); "
          f"top edge {case['bulks'][-1, 1]:.5g} / {eig[-1]:.5g} (tol {case['w_high']:.3g}); "
          f"manifold gap at tau={TAU}: {case['gap']:.5g} / {eig[0] / (TAU + eig[0]):.5g}; "
          f"matrix {case['matrix_seconds']:.1f} s")


def _assert_matches_finite_matrix(name: str) -> None:
    case = compared(name)
    _report(name, case)
    eig, bulks = case["eigenvalues"], case["bulks"]
    assert case["summary"]["n_bulks"] == bulks.shape[0] == finite_bulks(eig)
    assert abs(eig[0] - bulks[0, 0]) <= case["w_low"]
    assert abs(eig[-1] - bulks[-1, 1]) <= case["w_high"]
    measured_gap = float(S.formula("manifold_gap", eig[0], TAU))
    assert case["summary"]["manifold_gap"] == pytest.approx(case["gap"], rel=1e-12)
    assert abs(measured_gap - case["gap"]) <= case["gap_tolerance"]
    for (_, upper), (lower, _) in zip(bulks[:-1], bulks[1:], strict=True):  # gaps are empty
        assert np.count_nonzero((eig > upper) & (eig < lower)) <= 2 * EDGE_COUNT
    law = case["law"]
    for count in (20, 100):  # the edge regions hold the theory's counts (rigid: +-1, quantiles)
        below = counted_from_edge(law, bulks, count)
        above = counted_from_edge(law, bulks, count, from_top=True)
        assert abs(np.count_nonzero(eig < below) - count) <= 3
        assert abs(np.count_nonzero(eig > above) - count) <= 3


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, (_, slow) in CASES.items() if slow])
def test_wide_laws_match_random_matrices(name):
    _assert_matches_finite_matrix(name)


@pytest.mark.parametrize("name", [n for n, (_, slow) in CASES.items() if not slow])
def test_examples_match_random_matrices(name):
    _assert_matches_finite_matrix(name)


def test_example_edges_and_bulks():
    """The three examples of the issue and the six-decade law: one bulk each (the 48-group
    discretization reported 3 and 8 bulks), the lowest edge below the law's smallest variance
    and the top edge above its largest (the edges themselves are held against random matrices
    above)."""
    for name in ("example 1, loguniform:0.001,10 alpha 0.5",
                 "example 3, loguniform:0.0001,1 alpha 0.2",
                 "six decades, loguniform:1e-6,1 alpha 0.5",
                 "example 2, uniform:0.001,1 alpha 0.3"):
        law = CASES[name][0]()
        bulks = S.spectrum_edges(law)
        assert bulks.shape[0] == 1
        assert bulks[0, 0] < law.continuum.lows[0] and bulks[0, 1] > law.continuum.highs[-1]


@pytest.mark.slow
def test_empirical_spectrum_matches_random_matrices():
    """An empirical spectrum as the law (``from_samples``): the latent variances of the matrix
    themselves, a power law ``i^-2`` over 6.4 decades; one bulk, edges within tolerance."""
    m = 1600
    latent = np.arange(1, m + 1, dtype=float) ** -2.0
    law = S.VarianceLaw.from_samples(latent, alpha=m / DIM)
    eig = finite_spectrum(latent, seed=1)
    bulks = S.spectrum_edges(law)
    w_low, w_high = edge_tolerances(law, bulks)
    print(f"\nsamples i^-2: bulks {bulks.shape[0]} / {finite_bulks(eig)}; lowest edge "
          f"{bulks[0, 0]:.5g} / {eig[0]:.5g} (tol {w_low:.3g}); top {bulks[0, 1]:.5g} / "
          f"{eig[-1]:.5g} (tol {w_high:.3g})")
    assert bulks.shape[0] == finite_bulks(eig) == 1
    assert abs(eig[0] - bulks[0, 0]) <= w_low and abs(eig[-1] - bulks[0, 1]) <= w_high


def test_empirical_spectrum_with_a_gap():
    """``gap_ratio`` keeps a real gap of the samples: two support components, two bulks, as in
    the finite matrix; without it the law spans the gap and the theory shows one bulk."""
    m = 1200
    latent = np.r_[np.geomspace(1e-6, 1e-5, m // 2), np.geomspace(0.1, 1.0, m // 2)]
    split = S.VarianceLaw.from_samples(latent, alpha=m / DIM, gap_ratio=100.0)
    joined = S.VarianceLaw.from_samples(latent, alpha=m / DIM)
    eig = finite_spectrum(latent, seed=2)
    assert split.continuum.components.shape[0] == 2
    assert S.spectrum_edges(split).shape[0] == finite_bulks(eig) == 2
    assert S.spectrum_edges(joined).shape[0] == 1
    lower_count = np.count_nonzero(eig < S.spectrum_edges(split)[0, 1] * 1.5)
    assert abs(lower_count - m // 2) <= 2 * EDGE_COUNT


# ----------------------------------------------------------------------------- exactness
def _mp_piece(g, a, h, pa, slope, derivative=False):
    """``int_a^{a+h}`` of THEORY A's term ``alpha_g s_g / (1 + s_g g)`` with
    ``alpha_g -> f(s) ds = p(s)/s ds`` (its ``g``-derivative when asked), at 30 digits, the
    range split around the pole."""
    _, term = T.inverse_map_parts()
    per_fraction = (term / T.alpha_g).subs(T.s_g, T.lam)
    expr = sp.diff(per_fraction, T.g) if derivative else per_fraction
    integrand = sp.lambdify((T.lam, T.g), expr / T.lam, "mpmath")
    with mpmath.workdps(30):
        gm = mpmath.mpc(g)
        pole = float((-1 / gm).real)
        points = [a, a + h]
        if a < pole < a + h:
            width = abs(float(gm.imag / gm.real)) * pole
            points = [a] + [p for p in (pole - 100 * width, pole - width, pole, pole + width,
                                        pole + 100 * width) if a < p < a + h] + [a + h]
        value = mpmath.quad(lambda s: (pa + slope * (s - a)) * integrand(s, gm), points)
    return complex(value)


@pytest.mark.parametrize("g", [-0.3 + 0.01j, 2 + 1j, -1e-6 + 0j, -50 + 1e-3j, -1.5 + 1e-9j,
                               -0.999 + 1e-8j, -2000 + 0j])
@pytest.mark.parametrize("piece", [(1.0, 1.0, 0.5, 0.3), (0.3, 1e-3, 1.0, -100.0),
                                   (1e-3, 10.0, 0.2, 0.0), (0.5, 1.0, 0.0, 0.7)])
def test_piece_integrals_match_the_defining_integral(g, piece):
    """The closed form of a piece (series for ``|w| < 0.2``, logarithms beyond) against THEORY
    A's term integrated over the piece at 30 digits, value and ``g``-derivative."""
    a, h, pa, slope = piece
    value, derivative = C.kernels().piece_field(complex(g), a, h, pa, slope)
    assert value == pytest.approx(_mp_piece(g, a, h, pa, slope), rel=1e-12, abs=1e-300)
    assert derivative == pytest.approx(_mp_piece(g, a, h, pa, slope, True), rel=1e-12)


def test_block_sums_match_the_piece_sums():
    """Blocks of pieces summed from moments (far from the pole) agree with the closed forms of
    every piece, for an empirical spectrum of 5000 samples."""
    law = S.VarianceLaw.from_samples(np.arange(1, 5001) ** -1.5, 0.5).continuum
    fast = C.piece_arrays(law)
    exact = (fast[0], C.piece_blocks(law, size=1))
    assert fast[1].shape[0] < exact[1].shape[0] / 5
    rng = np.random.default_rng(4)
    poles = np.geomspace(1e-7, 3, 80)
    for g in np.r_[-1 / poles * (1 + 1j * rng.choice([1e-6, 1e-3, 1.0], poles.size)),
                   -1 / np.geomspace(1e-8, 1e-7, 5), -1 / np.geomspace(1.01, 10, 5)]:
        a, b = C.kernels().continuum_map(g, *fast), C.kernels().continuum_map(g, *exact)
        assert abs(a[0] - b[0]) <= 1e-13 * b[2] and abs(a[1] - b[1]) <= 1e-12 * abs(b[1])


def test_roots_solve_the_self_consistent_equation_at_30_digits():
    """``z(g) = x`` for the solver's ``g(x + i0)``, with ``z`` from THEORY A's term integrated
    over the six-decade law at 30 digits."""
    law = loguniform(1e-6, 1.0, 0.5)
    (low, high), = S.spectrum_edges(law)
    x = np.geomspace(low, high, 9)[1:-1]
    res = S.stieltjes_transform(x.astype(complex), law)
    assert res.converged.all() and np.all(res.g.imag > 0)
    a, b = law.continuum.lows[0], law.continuum.highs[0]
    p = law.continuum.p_low[0]
    for xi, g in zip(x, res.g, strict=True):
        with mpmath.workdps(30):
            gm = mpmath.mpc(g)
            z = -1 / gm + mpmath.quad(lambda s, gm=gm: p / (1 + s * gm),
                                      np.geomspace(a, b, 13).tolist())
        assert abs(complex(z) - xi) <= 1e-12 * (xi + abs(1 / g))


def test_mass_by_contour_matches_quadrature_of_the_density():
    law = uniform(1e-3, 1.0, 0.3)
    (low, high), = S.spectrum_edges(law)
    thresholds = np.geomspace(low, high, 6)[1:-1]
    mass = S.spectral_mass_above(thresholds, law)
    for threshold, value in zip(thresholds, mass, strict=True):
        integral, _ = quad(lambda v: np.exp(v) * S.covariance_density(np.exp(v), law)[0],
                           np.log(threshold), np.log(high), limit=400, epsabs=1e-12)
        assert value == pytest.approx(integral, rel=1e-7)
    assert float(S.spectral_mass_above(low * (1 + 1e-9), law)) == pytest.approx(0.3, rel=1e-9)


@given(low=st.floats(-9, 1), decades=st.floats(0.1, 12), alpha=st.floats(0.01, 0.99),
       family=st.sampled_from(["uniform", "loguniform"]))
def test_connected_support_has_exactly_one_bulk(low, decades, alpha, family):
    """Provable for any law with connected support (``continuous_solver`` docstring): one
    critical point on each side of the cut, one bulk; density positive inside, zero outside."""
    law = (uniform if family == "uniform" else loguniform)(10**low, 10 ** (low + decades), alpha)
    edges = S.bulk_edges(law)
    assert edges.n_bulks == 1 and edges.critical_points.size == 2 and edges.bulks[0, 0] > 0
    lo, hi = edges.bulks[0]
    inside = np.geomspace(lo, hi, 40)[1:-1]
    outside = np.r_[lo * np.array([0.5, 0.9]), hi * np.array([1.1, 3.0])]
    rho, res = S.covariance_density(np.r_[inside, outside], law)
    assert res.n_failed == 0 and np.all(rho[:-4] > 0) and np.all(rho[-4:] == 0)


def test_full_rank_law_has_a_hard_edge():
    (lo, hi), = S.spectrum_edges(loguniform(1e-3, 1.0, 1.0))
    assert lo == 0.0 and hi > 1.0


def test_narrow_uniform_law_tends_to_marchenko_pastur():
    for alpha in (0.1, 0.5, 0.9):
        (lo, hi), = S.spectrum_edges(uniform(1.0, 1.0 + 1e-8, alpha))
        np.testing.assert_allclose([lo, hi], [(1 - alpha**0.5) ** 2 * (1 + 5e-9),
                                              (1 + alpha**0.5) ** 2 * (1 + 5e-9)], rtol=1e-8)


def test_uniform_and_loguniform_are_exact_at_any_number_of_pieces():
    for build in (lambda s: np.ones_like(s), lambda s: 1.0 / s):
        laws = [S.VarianceLaw.from_density(build, (1e-5, 2.0), 0.4, n_pieces=n)
                for n in (4, 256, 2048)]
        assert all(law.continuum.lows.size == 1 for law in laws)
        for law in laws[1:]:
            np.testing.assert_allclose(S.spectrum_edges(law), S.spectrum_edges(laws[0]),
                                       rtol=1e-13)


def test_general_density_converges_at_second_order():
    def edges(n):
        return S.spectrum_edges(S.VarianceLaw.from_density(lambda s: np.exp(-s), (0.01, 3.0),
                                                           0.4, n_pieces=n))[0]
    reference = edges(8192)
    errors = [np.max(np.abs(edges(n) / reference - 1)) for n in (64, 256)]
    assert errors[1] < errors[0] / 8 and errors[1] < 1e-5


# ----------------------------------------------------------------------------- read-outs, CLI
def test_readouts_of_a_continuous_law():
    law = loguniform(1e-6, 1.0, 0.5)
    summary = S.spectral_summary(law, TAU, dim=DIM)
    assert summary["dimension_converged"] and summary["phase"] == "coverage"
    threshold = S.formula("dimension_threshold", TAU, 0.1)
    assert summary["dimension"] == pytest.approx(float(S.spectral_mass_above(threshold, law)))
    spectrum = CovarianceSpectrum.from_law(law, DIM, "random")
    assert spectrum.converged and spectrum.weights.sum() == pytest.approx(0.5, rel=1e-6)
    orthonormal = S.spectral_summary(law, TAU, subspace="orthonormal")
    assert orthonormal["edges"] == [[1e-6, 1.0]] and orthonormal["n_bulks"] == 1
    assert orthonormal["dimension"] == pytest.approx(
        0.5 * np.log(1.0 / (TAU * 0.1 / 0.9)) / np.log(1e6), rel=1e-12)
    samples = S.VarianceLaw.from_samples([1.0, 2.0, 4.0], 0.3)
    assert S.spectrum_edges(samples, subspace="orthonormal").tolist() == [
        [1.0, 1.0], [2.0, 2.0], [4.0, 4.0]]


def test_routes_without_continuous_laws_refuse_them():
    law = loguniform(0.1, 1.0, 0.3)
    for call in (lambda: S.bulk_edges_polynomial(law),
                 lambda: S.physical_root_polynomial([1.0 + 0j], law),
                 lambda: S.covariance_density_array([0.5], law)):
        with pytest.raises(ParameterError, match="law"):
            call()


@pytest.mark.parametrize("law_text, alpha", [("loguniform:0.001,10", "0.5"),
                                             ("uniform:0.001,1", "0.3"),
                                             ("loguniform:0.0001,1", "0.2")])
def test_command_line_examples(tmp_path, law_text, alpha):
    result = CliRunner().invoke(cli, ["spectrum", "--law", law_text, "--alpha", alpha, "--tau",
                                      str(TAU), "--out", str(tmp_path), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["n_bulks"] == 1 and summary["dimension_converged"]
    assert summary["convergence"]["covariance"]["failed"] == 0
    assert summary["convergence"]["jacobian"]["failed"] == 0


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, name", [
    (lambda: S.VarianceLaw.from_density(lambda s: s, (0.0, 1.0), 0.3), "support"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (2.0, 1.0), 0.3), "support"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (1.0, np.inf), 0.3), "support"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, ("a", 1.0), 0.3), "support"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (1.0, 2.0), 0.0), "alpha"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (1.0, 2.0), 1.5), "alpha"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (1.0, 2.0), np.nan), "alpha"),
    (lambda: S.VarianceLaw.from_density(lambda s: -s, (1.0, 2.0), 0.3), "pdf"),
    (lambda: S.VarianceLaw.from_density(lambda s: s * np.nan, (1.0, 2.0), 0.3), "pdf"),
    (lambda: S.VarianceLaw.from_density(lambda s: 0 * s, (1.0, 2.0), 0.3), "pdf"),
    (lambda: S.VarianceLaw.from_density(lambda s: s, (1.0, 2.0), 0.3, n_pieces=0), "n_pieces"),
    (lambda: S.VarianceLaw.from_samples([], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([1.0, np.nan], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([1.0, np.inf], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([1.0, 0.0, 2.0], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([1.0, -2.0], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([2.0, 2.0], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples(["x"], 0.3), "samples"),
    (lambda: S.VarianceLaw.from_samples([1.0, 2.0], 0.0), "alpha"),
    (lambda: S.VarianceLaw.from_samples([1.0, 2.0], 2.0), "alpha"),
    (lambda: S.VarianceLaw.from_samples([1.0, 2.0], 0.3, gap_ratio=0.5), "gap_ratio"),
    (lambda: VarianceContinuum([1.0], [0.5], [1.0], [1.0]), "support"),
    (lambda: VarianceContinuum([1.0], [2.0], [-1.0], [1.0]), "density"),
    (lambda: VarianceContinuum([1.0], [2.0], [5.0], [5.0]), "alpha"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ParameterError, match=name):
        call()
