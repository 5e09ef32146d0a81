"""Empirical-score engine: brute force, finite differences, exact large-N limit, invariants."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffphase.backend import gpu_available
from diffphase.data.laws import LinearGaussian
from diffphase.errors import DeviceUnavailableError, ParameterError
from diffphase.simulate.empirical import (
    EmpiricalScore,
    empirical_score,
    exact_subspace,
    routes,
)


def brute_force(x, data, a, D):
    """Per-query loop straight from THEORY B (independent of the engine's blocked algebra)."""
    out_w, out_s, out_j = [], [], []
    for xi, ai, di in zip(x, np.broadcast_to(a, len(x)), np.broadcast_to(D, len(x)), strict=True):
        logw = np.array([-np.sum((xi - ai * y) ** 2) / (2 * di) for y in data])
        w = np.exp(logw - logw.max())
        w /= w.sum()
        ybar = w @ data
        cov = sum(wk * np.outer(y - ybar, y - ybar) for wk, y in zip(w, data, strict=True))
        out_w.append(w)
        out_s.append((ai * ybar - xi) / di)
        out_j.append(-np.eye(len(xi)) / di + ai**2 / di**2 * cov)
    return np.array(out_w), np.array(out_s), np.array(out_j)


@pytest.fixture
def problem():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(60, 4)) * [2.0, 1.0, 0.5, 0.1] + 5.0
    x = rng.normal(size=(9, 4)) * 2 + 4.0
    a = rng.uniform(0.3, 1.0, size=9)
    D = rng.uniform(0.05, 2.0, size=9)
    return data, x, a, D


def test_matches_brute_force_with_per_query_times(problem):
    data, x, a, D = problem
    engine = EmpiricalScore(data)
    w, s, j = brute_force(x, data, a, D)
    np.testing.assert_allclose(engine.weights(x, a, D), w, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(engine.score(x, a, D), s, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(engine.jacobian(x, a, D), j, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(empirical_score(x, data, a, D), s, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(engine.n_eff(x, a, D), 1 / np.sum(w**2, axis=1), rtol=1e-9)
    ent = -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0), axis=1)
    np.testing.assert_allclose(engine.entropy(x, a, D), ent, rtol=1e-8, atol=1e-12)
    eig = np.linalg.eigvalsh(D[:, None, None] * j)
    np.testing.assert_allclose(engine.jacobian_spectrum(x, a, D).eigenvalues, eig, atol=1e-8)


def test_single_query_shapes(problem):
    data, x, _, _ = problem
    engine = EmpiricalScore(data)
    assert engine.score(x[0], 0.5, 0.3).shape == (4,)
    assert engine.jacobian(x[0], 0.5, 0.3).shape == (4, 4)
    assert engine.weights(x[0], 0.5, 0.3).shape == (60,)


def test_jacobian_equals_central_differences(problem):
    data, x, a, D = problem
    engine = EmpiricalScore(data)
    h = 1e-5
    for i in range(3):
        fd = np.array([(engine.score(x[i] + h * e, a[i], D[i]) - engine.score(x[i] - h * e, a[i],
                        D[i])) / (2 * h) for e in np.eye(4)]).T
        np.testing.assert_allclose(engine.jacobian(x[i], a[i], D[i]), fd, rtol=1e-5, atol=1e-5)


def test_large_n_limit_is_the_exact_gaussian_score():
    rng = np.random.default_rng(0)
    sampler = LinearGaussian.axis_aligned([1.5, 1.0, 0.5])
    engine = EmpiricalScore(sampler.sample(200_000, rng))
    a, D = 0.6, 0.64  # tau = 1.78, far above collapse
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(engine.score(x, a, D), sampler.score(x, a, D), atol=0.03)
    np.testing.assert_allclose(engine.jacobian(x, a, D), np.broadcast_to(
        sampler.jacobian(None, a, D), (5, 3, 3)), atol=0.05)


@pytest.fixture
def truncation_always_tried(monkeypatch):
    """Small test problems have few features per point, where the engine skips truncation (dense
    is cheaper); these tests exercise the truncated route itself."""
    monkeypatch.setattr(routes, "DENSE_ONLY_MAX_FEATURES", 0)


def test_truncation_not_tried_where_dense_is_cheaper():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2000, 6))
    engine = EmpiricalScore(data)
    x = data[:10] + 0.1 * rng.normal(size=(10, 6))
    spec = engine.jacobian_spectrum(x, 1.0, 0.01, max_neglected_mass=1e-3)
    assert spec.methods == ["dense"]
    assert np.all(np.asarray(spec.kept) == 2000) and np.all(spec.neglected_mass == 0)
    assert np.all(spec.error_bound == 0)


@pytest.mark.usefixtures("truncation_always_tried")
def test_truncation_is_exact_to_its_tolerance_and_reports_mass():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(4000, 16))
    engine = EmpiricalScore(data)
    x = data[:20] + 0.3 * rng.normal(size=(20, 16))
    for tau, tol in ((0.02, 1e-9), (0.2, 1e-6)):
        dense = engine.jacobian_spectrum(x, 1.0, tau)
        trunc = engine.jacobian_spectrum(x, 1.0, tau, tol=tol)
        assert trunc.methods[0] in ("truncated", "mixed")
        kept = np.asarray(trunc.kept)
        assert np.any(kept < 4000)
        assert np.all(trunc.error_bound <= tol * (1 + 1e-12))
        assert np.all(trunc.neglected_mass >= 0)
        assert np.max(np.abs(trunc.eigenvalues - dense.eigenvalues)) <= tol + 1e-10


def _minimal_kept(weights_row, eps):
    """Fewest largest weights whose complement weighs at most eps, by a full sort."""
    tail = np.concatenate([np.cumsum(np.sort(weights_row))[::-1][1:], [0.0]])  # tail[k-1]
    return int(np.argmax(tail <= eps)) + 1


@pytest.mark.usefixtures("truncation_always_tried")
@pytest.mark.parametrize("mode", ["tol", "mass"])
def test_truncation_bound_is_rigorous_and_the_kept_sets_minimal(mode):
    rng = np.random.default_rng(11)
    data = rng.normal(size=(3000, 10)) * np.linspace(0.2, 2.0, 10)
    engine = EmpiricalScore(data)
    # queries around the first points, so that low indices sit inside many kept sets
    x = data[np.arange(40) % 5] + 0.4 * rng.normal(size=(40, 10))
    for tau in (0.05, 0.1):
        option = {"tol": 1e-7} if mode == "tol" else {"max_neglected_mass": 1e-5}
        dense = engine.jacobian_spectrum(x, 1.0, tau)
        trunc = engine.jacobian_spectrum(x, 1.0, tau, **option)
        kept = np.asarray(trunc.kept)
        assert np.any(kept < 3000)
        error = np.max(np.abs(trunc.eigenvalues - dense.eigenvalues), axis=1)
        assert np.all(error <= trunc.error_bound + 1e-12)
        if mode == "tol":
            assert np.all(trunc.error_bound <= 1e-7 * (1 + 1e-9))
            eps = 1e-7 * tau / (4 * engine.radius**2)
        else:
            assert np.all(trunc.neglected_mass <= 1e-5)
            eps = 1e-5
        weights = engine.weights(x, 1.0, tau)
        for row in np.nonzero(kept < 3000)[0]:
            assert kept[row] == _minimal_kept(weights[row], eps)
            dropped = np.sort(weights[row])[: 3000 - kept[row]].sum()
            np.testing.assert_allclose(trunc.neglected_mass[row], dropped, rtol=1e-9, atol=1e-18)
        moments = engine.moments(x, 1.0, tau, covariance=True, **option)
        exact = engine.moments(x, 1.0, tau, covariance=True)
        gap = np.linalg.norm(moments.covariance - exact.covariance, ord=2, axis=(1, 2))
        assert np.all(gap <= moments.covariance_error_bound + 1e-12)


def test_selection_kernel_matches_a_full_sort():
    from diffphase.simulate.empirical.kernels import smallest_sufficient_sets

    rng = np.random.default_rng(12)
    logw = 6.0 * rng.normal(size=(30, 500))  # heavy-tailed, as in the condensed phase
    weights = np.exp(logw - logw.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    eps = 10.0 ** rng.uniform(-12, -2, size=30)
    cap = 200
    candidates = np.zeros((30, cap), dtype=np.int64)
    kept, neglected = np.empty(30, dtype=np.int64), np.empty(30)
    smallest_sufficient_sets(weights, eps, cap, candidates, kept, neglected)
    for row in range(30):
        assert kept[row] == _minimal_kept(weights[row], eps[row])
        shown = min(kept[row], cap)
        chosen = candidates[row, :shown]
        assert np.unique(chosen).size == shown
        if kept[row] <= cap:  # exactly the kept[row] largest weights
            np.testing.assert_array_equal(np.sort(weights[row, chosen]),
                                          np.sort(weights[row])[::-1][:shown][::-1])
        dropped = np.sort(weights[row])[: weights.shape[1] - kept[row]].sum()
        np.testing.assert_allclose(neglected[row], dropped, rtol=1e-12, atol=1e-300)
        assert neglected[row] <= eps[row]


def test_bad_truncation_options():
    engine = EmpiricalScore(np.random.default_rng(0).normal(size=(50, 3)))
    x = np.zeros((2, 3))
    for bad in (0.0, 0.5, -1e-3, float("nan")):
        with pytest.raises(ParameterError, match="max_neglected_mass"):
            engine.jacobian_spectrum(x, 1.0, 0.1, max_neglected_mass=bad)
    with pytest.raises(ParameterError, match="tol"):
        engine.jacobian_spectrum(x, 1.0, 0.1, tol=0.0)


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(3000, 12))
    x = rng.normal(size=(40, 12))
    big = EmpiricalScore(data)
    small = EmpiricalScore(data, chunk_bytes=2**16)  # forces 1-query blocks and tiny N-chunks
    np.testing.assert_allclose(small.jacobian(x, 0.9, 0.5), big.jacobian(x, 0.9, 0.5), atol=1e-12)
    np.testing.assert_allclose(small.score(x, 0.9, 0.5), big.score(x, 0.9, 0.5), atol=1e-12)


def _manifold_points(n, dim, rank, rng, offset=3.0):
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
    return rng.normal(size=(n, rank)) * np.linspace(2.0, 0.5, rank) @ basis.T + offset, basis


def test_subspace_found_with_its_rank_and_residual():
    rng = np.random.default_rng(21)
    data, basis = _manifold_points(500, 12, 3, rng)
    centred = data - data.mean(axis=0)
    found, residual = exact_subspace(centred)
    assert found.shape == (12, 3)
    # the same span: projecting the true basis onto the found one loses nothing
    np.testing.assert_allclose(np.linalg.norm(found.T @ basis, axis=0), 1.0, atol=1e-12)
    radius = np.max(np.linalg.norm(centred, axis=1))
    assert residual <= 1e-12 * radius
    # a point off the span by more than the tolerance keeps the full dimension
    noisy = centred + 1e-9 * rng.normal(size=centred.shape)
    assert exact_subspace(noisy) == (None, 0.0)
    # N <= d: the centred points span at most N - 1 dimensions
    few = rng.normal(size=(5, 9))
    assert exact_subspace(few - few.mean(axis=0))[0].shape == (9, 4)


def test_subspace_reduction_matches_brute_force():
    rng = np.random.default_rng(22)
    data, _ = _manifold_points(80, 10, 3, rng)
    x = data[:6] + rng.normal(size=(6, 10))  # off the manifold
    a = rng.uniform(0.3, 1.0, size=6)
    D = rng.uniform(0.01, 2.0, size=6)
    engine = EmpiricalScore(data)
    assert engine.rank == 3 and engine.basis.shape == (10, 3)
    w, s, j = brute_force(x, data, a, D)
    np.testing.assert_allclose(engine.weights(x, a, D), w, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(engine.score(x, a, D), s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(engine.jacobian(x, a, D), j, rtol=1e-8, atol=1e-8)
    spec = engine.jacobian_spectrum(x, a, D)
    np.testing.assert_allclose(spec.eigenvalues, np.linalg.eigvalsh(D[:, None, None] * j),
                               atol=1e-8)
    # Cov_w vanishes off the 3-dimensional span: 7 eigenvalues of Jn are exactly -1
    np.testing.assert_array_equal(spec.eigenvalues[:, :7], -1.0)
    full = EmpiricalScore(data, reduce_subspace=False)
    assert full.rank == 10 and full.basis is None
    for name in ("log_density", "entropy", "n_eff"):
        np.testing.assert_allclose(getattr(engine, name)(x, a, D), getattr(full, name)(x, a, D),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("truncation_always_tried")
def test_subspace_residual_enters_the_error_bound(monkeypatch):
    """Points off their span by 1e-6 R, accepted by a loosened tolerance: the reduced results
    differ from the unreduced ones by at most the reported bound, which stays informative."""
    monkeypatch.setattr(routes, "SUBSPACE_RESIDUAL_RTOL", 1e-5)
    rng = np.random.default_rng(23)
    data, _ = _manifold_points(3000, 8, 2, rng)
    data = data + 1e-6 * rng.normal(size=data.shape)
    reduced = EmpiricalScore(data)
    full = EmpiricalScore(data, reduce_subspace=False)
    assert reduced.rank == 2 and reduced.subspace_residual > 1e-7
    x = data[:20] + 0.5 * rng.normal(size=(20, 8))
    for tau, option in ((1e-4, {}), (1e-3, {}), (0.01, {"max_neglected_mass": 1e-6})):
        got = reduced.jacobian_spectrum(x, 1.0, tau, **option)
        ref = full.jacobian_spectrum(x, 1.0, tau)
        error = np.max(np.abs(got.eigenvalues - ref.eigenvalues), axis=1)
        assert np.all(error <= got.error_bound)
        assert np.max(error) > 1e-9  # the perturbation is visible, so the check can fail
        visible = error > 1e-9  # elsewhere the bound's delta^2 term dominates a zero error
        assert np.all(got.error_bound[visible] <= 1e3 * error[visible])
        moments = reduced.moments(x, 1.0, tau, covariance=True, **option)
        exact = full.moments(x, 1.0, tau, covariance=True)
        gap = np.linalg.norm(moments.covariance - exact.covariance, ord=2, axis=(1, 2))
        assert np.all(gap <= moments.covariance_error_bound)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("tau", [1e-40, 1e-200])
def test_subspace_error_bound_stays_finite_far_below_the_residual(monkeypatch, tau):
    """At tau far below the squared residual the perturbation bound of the module notes is
    astronomically large; the reported bound is then the a-priori one, ``(R + delta)^2``, with no
    overflow, and it still covers the difference from the unreduced engine."""
    monkeypatch.setattr(routes, "SUBSPACE_RESIDUAL_RTOL", 1e-5)
    rng = np.random.default_rng(29)
    data, _ = _manifold_points(400, 6, 2, rng)
    data = data + 1e-6 * rng.normal(size=data.shape)
    reduced = EmpiricalScore(data)
    full = EmpiricalScore(data, reduce_subspace=False)
    assert reduced.rank == 2 and reduced.subspace_residual > 1e-7
    x = data[:10] + 0.3 * rng.normal(size=(10, 6))
    moments = reduced.moments(x, 1.0, tau, covariance=True)
    exact = full.moments(x, 1.0, tau, covariance=True)
    cap = (reduced.radius + reduced.subspace_residual) ** 2
    assert np.all(np.isfinite(moments.covariance_error_bound))
    assert np.all(moments.covariance_error_bound <= cap * (1 + 1e-12))
    gap = np.linalg.norm(moments.covariance - exact.covariance, ord=2, axis=(1, 2))
    assert np.all(gap <= moments.covariance_error_bound)


@pytest.mark.usefixtures("truncation_always_tried")
def test_truncated_route_recomputes_weights_where_the_product_form_loses_digits(monkeypatch):
    """Both ways of getting the kept weights (reused from the block, recomputed from exact
    differences) against brute force. At tau = 1e-7, with pairs of points sqrt(tau) apart so
    that the weights stay split, reusing the product-form weights errs by about 3e-9; the engine
    must recompute there."""
    rng = np.random.default_rng(31)
    base = rng.normal(size=(150, 12)) * 3.0
    default = routes.PRODUCT_FORM_LOGW_TOL
    for tau, tolerance in ((0.05, default), (0.05, 0.0), (1e-7, default)):
        monkeypatch.setattr(routes, "PRODUCT_FORM_LOGW_TOL", tolerance)  # 0: always recompute
        data = np.concatenate([base, base + np.sqrt(tau / 12) * rng.normal(size=base.shape)])
        engine = EmpiricalScore(data)
        x = base[:6] + 0.5 * np.sqrt(tau) * rng.normal(size=(6, 12))
        _, _, j = brute_force(x, data, 1.0, tau)
        exact = np.linalg.eigvalsh(tau * j)
        spec = engine.jacobian_spectrum(x, 1.0, tau, max_neglected_mass=1e-9)
        assert spec.methods != ["dense"]
        assert np.max(exact[:, -1]) > -0.95  # the weights are split: Cov is not zero
        error = np.max(np.abs(spec.eigenvalues - exact), axis=1)
        assert np.all(error <= spec.error_bound + 1e-11)


def test_stable_at_tiny_tau():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, 64))
    engine = EmpiricalScore(data)
    x = data[:5] + 1e-3 * rng.normal(size=(5, 64))
    for tau in (1e-6, 1e-8):
        w = engine.weights(x, 1.0, tau)
        assert np.all(np.isfinite(w))
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        np.testing.assert_array_equal(np.argmax(w, axis=1), np.arange(5))
        spec = engine.jacobian_spectrum(x, 1.0, tau, tol=1e-8)
        assert np.all(np.isfinite(spec.eigenvalues))
        np.testing.assert_allclose(engine.n_eff(x, 1.0, tau), 1.0)


@given(n=st.integers(1, 25), d=st.integers(1, 5), log_tau=st.floats(-6, 3),
       seed=st.integers(0, 2**16))
def test_invariants(n, d, log_tau, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
    x = rng.normal(size=(4, d)) * 2
    tau = 10.0**log_tau
    engine = EmpiricalScore(data)
    w = engine.weights(x, 1.0, tau)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    n_eff = engine.n_eff(x, 1.0, tau)
    assert np.all(n_eff >= 1 - 1e-9) and np.all(n_eff <= n * (1 + 1e-9))
    eig = engine.jacobian_spectrum(x, 1.0, tau).eigenvalues
    assert np.all(eig >= -1 - 1e-7 * max(1.0, 1e-6 / tau))
    perm = rng.permutation(n)
    np.testing.assert_allclose(EmpiricalScore(data[perm]).score(x, 1.0, tau),
                               engine.score(x, 1.0, tau), rtol=1e-9, atol=1e-9 / min(tau, 1))


@pytest.mark.parametrize("data, message", [
    (np.empty((0, 3)), "N"), (np.ones(5), "data"), (np.array([[1.0, np.nan]]), "data")])
def test_bad_data(data, message):
    with pytest.raises(ParameterError, match=message):
        EmpiricalScore(data)


def test_bad_queries_and_times():
    engine = EmpiricalScore(np.ones((3, 2)))
    with pytest.raises(ParameterError, match="x"):
        engine.score(np.ones((2, 3)), 1.0, 1.0)
    with pytest.raises(ParameterError, match="D"):
        engine.score(np.ones((2, 2)), 1.0, 0.0)
    with pytest.raises(ParameterError, match="D"):
        engine.score(np.ones((2, 2)), 1.0, np.array([1.0, -1.0]))
    with pytest.raises(ParameterError, match="a"):
        engine.score(np.ones((2, 2)), np.ones(3), 1.0)
    with pytest.raises(ParameterError, match="x"):
        engine.score(np.array([[np.inf, 0.0]]), 1.0, 1.0)


class _NumpyAsArrayModule(types.ModuleType):
    """numpy under another name: the engine then takes its array (cupy) branches."""

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.usefixtures("truncation_always_tried")
def test_array_route_of_the_gpu_matches_the_compiled_route():
    """The GPU code path is array code; run with numpy it must agree with the compiled kernels
    (weights, selection, gather, reduction), so its logic is checked without a GPU."""
    rng = np.random.default_rng(41)
    full_rank = rng.normal(size=(3000, 16))
    low_rank = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 20))
    for data in (full_rank, low_rank):
        compiled, array = EmpiricalScore(data), EmpiricalScore(data)
        array.xp = _NumpyAsArrayModule("numpy_as_array_module")
        for tau, option in ((0.3, {"max_neglected_mass": 1e-6}), (0.2, {"tol": 1e-8}), (1.0, {})):
            x = data[:40] + np.sqrt(tau) * rng.normal(size=(40, data.shape[1]))
            want = compiled.jacobian_spectrum(x, 1.0, tau, **option)
            got = array.jacobian_spectrum(x, 1.0, tau, **option)
            assert got.methods == want.methods
            if option:  # truncated sets of several points were compared
                assert np.any((want.kept > 1) & (want.kept < data.shape[0]))
            np.testing.assert_array_equal(got.kept, want.kept)
            np.testing.assert_allclose(got.eigenvalues, want.eigenvalues, atol=1e-11)
            np.testing.assert_allclose(got.error_bound, want.error_bound, rtol=1e-6,
                                       atol=1e-15)
            got_m = array.moments(x, 1.0, tau, covariance=True, **option)
            want_m = compiled.moments(x, 1.0, tau, covariance=True, **option)
            for name in ("covariance", "score", "entropy", "n_eff", "neglected_mass"):
                np.testing.assert_allclose(getattr(got_m, name), getattr(want_m, name),
                                           rtol=1e-10, atol=1e-11)


@pytest.mark.skipif(gpu_available(), reason="a GPU answers here")
def test_gpu_absent_is_an_error_and_auto_falls_back():
    with pytest.raises(DeviceUnavailableError):
        EmpiricalScore(np.ones((3, 2)), device="gpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = EmpiricalScore(np.ones((3, 2)), device="auto")
    assert engine.device == "cpu"
    assert any("CPU" in str(w.message) for w in caught)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    from diffphase.backend import to_numpy

    rng = np.random.default_rng(5)
    data = rng.normal(size=(2000, 16))
    x = rng.normal(size=(32, 16))
    cpu, gpu = EmpiricalScore(data), EmpiricalScore(data, device="gpu")
    for tau, tol in ((1.0, None), (1e-3, 1e-9)):
        on_gpu = gpu.jacobian_spectrum(x, 1.0, tau, tol=tol).eigenvalues
        np.testing.assert_allclose(to_numpy(on_gpu),
                                   cpu.jacobian_spectrum(x, 1.0, tau, tol=tol).eigenvalues,
                                   atol=1e-8)
        np.testing.assert_allclose(to_numpy(gpu.score(x, 1.0, tau)), cpu.score(x, 1.0, tau),
                                   rtol=1e-9, atol=1e-9)
