"""Batched bracketed root finding."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
