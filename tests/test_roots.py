"""Batched bracketed root finding."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffphase.errors import ParameterError
from diffphase.solvers.roots import bracketed_root


def test_cube_roots_and_flags_for_missing_sign_change():
    targets = np.array([2.0, 3.0, 5.0, -1.0])
    result = bracketed_root(lambda v: v**3 - targets, 0.0, 3.0)
    np.testing.assert_allclose(result.root[:3], np.cbrt(targets[:3]), rtol=1e-13)
    assert result.converged.tolist() == [True, True, True, False]
    assert np.isnan(result.root[3]) and result.n_failed == 1


@given(st.lists(st.floats(-50, 50), min_size=1, max_size=20))
def test_log_equation_roots(values):
    c = np.array(values)
    result = bracketed_root(lambda v: np.log(v) - c, np.exp(c) / 3, np.exp(c) * 2, xtol=0.0)
    assert result.converged.all()
    np.testing.assert_allclose(result.root, np.exp(c), rtol=1e-12)


def test_steep_function_converges():
    c = np.array([1.0, 10.0, 100.0, 1e4])
    result = bracketed_root(lambda v: np.tan(v) - c, 0.0, np.pi / 2 - 1e-12)
    np.testing.assert_allclose(result.root, np.arctan(c), atol=2e-12)
    assert result.iterations.max() < 100


def test_summary_counts():
    result = bracketed_root(lambda v: v - np.array([0.5, 2.0]), 0.0, 1.0)
    assert result.summary() == {"points": 2, "failed": 1, "max_iterations": pytest.approx(
        result.iterations.max())}


def _collapse_like(x, lam, w, rate):
    """``sum_j w_j ln(1 + lam_j e^{-x}) / 2 - rate`` per row (decreasing in ``x``)."""
    return np.sum(w * np.log1p(lam * np.exp(-x)[:, None]), axis=1) / 2 - rate


def test_per_point_args_match_the_closure_and_mpmath():
    import mpmath

    rng = np.random.default_rng(3)
    lam = np.exp(rng.uniform(-4, 2, (500, 3)))
    w = rng.dirichlet(np.ones(3), 500)
    rate = rng.uniform(0.01, 0.2, 500)
    lo, hi = np.full(500, -40.0), np.full(500, 40.0)
    with_args = bracketed_root(_collapse_like, lo, hi, args=(lam, w, rate))
    closure = bracketed_root(lambda x: _collapse_like(x, lam, w, rate), lo, hi)
    assert with_args.converged.all() and closure.converged.all()
    np.testing.assert_array_equal(with_args.root, closure.root)
    assert np.median(with_args.iterations) <= 20
    for i in range(0, 500, 97):
        exact = mpmath.findroot(lambda u, i=i: sum(
            w[i, j] * mpmath.log1p(lam[i, j] * mpmath.exp(-u)) for j in range(3)) / 2 - rate[i],
            float(with_args.root[i]))
        assert abs(float(exact) - with_args.root[i]) < 1e-12


def test_args_must_lead_with_the_bracket_shape():
    with pytest.raises(ParameterError):
        bracketed_root(lambda x, c: x - c, np.zeros(3), np.ones(3), args=(np.ones(4),))


def test_nan_inside_the_bracket_is_flagged_not_guessed():
    result = bracketed_root(lambda v: np.where(np.abs(v - 0.5) < 0.3, np.nan, v - 0.5),
                            np.array([0.0, 0.0]), np.array([1.0, 0.9]))
    assert not result.converged.any() and np.isnan(result.root).all()
