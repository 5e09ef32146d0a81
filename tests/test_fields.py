"""Score-field diagnostics (THEORY E) on fields whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from diffphase.commands import fields as requests
from diffphase.data.laws import LinearGaussian
from diffphase.errors import ParameterError
from diffphase.process import get_process
from diffphase.simulate import fields as diag
from diffphase.simulate.integrators import log_tau_grid, probability_flow
from diffphase.simulate.jacobians import (
    CallableScore,
    TimeScore,
    central_difference_jacobian,
    checked_output,
    jacobian,
    load_callable,
    one_sided_jacobian,
    orthonormal_probes,
)

VE = get_process("ve")


def random_orthogonal(d, rng):
    return orthonormal_probes(d, d, rng)


def constant_field(matrix):
    return diag.LinearField(lambda a, D: matrix, matrix.shape[0])


def level(process, t):
    """The noise level ``(a_t, D_t)`` of ``process`` at time ``t``."""
    return float(process.signal_scale(t)), float(process.noise_variance(t))


def backward(field, process, x0, t0, t1, steps_per_efold):
    """Probability flow of ``field`` from ``t0`` to ``t1``, uniform in ``log tau``."""
    grid = log_tau_grid(process, t0, [t1], steps_per_efold)
    return probability_flow(field.score, x0, process, grid).final


def tanh_field(weights):
    """``s(x) = tanh(W x)``: Jacobian ``diag(1 - tanh(Wx)^2) W`` by hand."""

    def score(x, a, D):
        return np.tanh(x @ weights.T)

    def exact(x):
        return (1 - np.tanh(x @ weights.T) ** 2)[:, :, None] * weights[None]

    return CallableScore(score, weights.shape[0]), exact


# --------------------------------------------------------------------------- Jacobian routes
def test_central_differences_exact_on_asymmetric_linear_field():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((7, 7))
    field = CallableScore(lambda x, a, D: x @ matrix.T, 7)
    x = rng.standard_normal((3, 7))
    est = jacobian(field, x, 1.0, 0.5, rng=rng)  # no closed form: central differences
    np.testing.assert_allclose(est, np.broadcast_to(matrix, (3, 7, 7)), atol=1e-8)


def test_central_is_second_order_and_one_sided_is_biased():
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((6, 6))
    field, exact = tanh_field(weights)
    x = 0.5 * rng.standard_normal((4, 6))
    truth = exact(x)
    q = orthonormal_probes(6, 6, rng)
    err = {}
    for h in (1e-2, 5e-3):
        err["central", h] = np.abs(central_difference_jacobian(field, x, 1.0, 1.0, h, probes=q)
                                   - truth).max()
        err["one", h] = np.abs(one_sided_jacobian(field, x, 1.0, 1.0, h, probes=q)
                               - truth).max()
    # halving h: central error / 4 (O(h^2)), one-sided error / 2 (O(h): a bias)
    assert 3.5 < err["central", 1e-2] / err["central", 5e-3] < 4.5
    assert 1.8 < err["one", 1e-2] / err["one", 5e-3] < 2.2
    assert err["one", 5e-3] > 50 * err["central", 5e-3]


def test_fewer_probes_give_the_restricted_jacobian():
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((5, 5))
    field = CallableScore(lambda x, a, D: x @ matrix.T, 5)
    q = orthonormal_probes(5, 3, rng)
    est = central_difference_jacobian(field, rng.standard_normal((2, 5)), 1.0, 1.0, 1e-3,
                                      probes=q)
    np.testing.assert_allclose(est[0], matrix @ q @ q.T, atol=1e-9)


def test_probes_are_orthonormal_and_bad_counts_fail():
    q = orthonormal_probes(6, 4, np.random.default_rng(3))
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    with pytest.raises(ParameterError, match="probes"):
        orthonormal_probes(3, 4, np.random.default_rng(0))


def test_route_selection():
    field = diag.gaussian_score_field(np.diag([2.0, 0.5, 0.0]))
    x = np.ones((2, 3))
    np.testing.assert_allclose(jacobian(field, x, 1.0, 0.3), field.jacobian(x, 1.0, 0.3))
    np.testing.assert_allclose(jacobian(field, x, 1.0, 0.3, route="central"),
                               field.jacobian(x, 1.0, 0.3), atol=1e-8)
    with pytest.raises(ParameterError, match="route"):
        jacobian(field, x, 1.0, 0.3, route="autograd")


# --------------------------------------------------------------------------- exact scores
@pytest.mark.parametrize("process", ["ve", "ou", "ddpm"])
def test_exact_score_normalized_eigenvalues_match_theory_a(process):
    rng = np.random.default_rng(4)
    proc = get_process(process)
    score, data, basis = diag.linear_manifold_field((0.25, 0.25), (3.0, 0.2), 8,
                                                    subspace="orthonormal", rng=rng)
    t = 300.0 if process == "ddpm" else float(proc.time_from_tau(0.4))
    tau = float(proc.tau_from_time(t))
    x = data.sample(3, rng)
    a, D = level(proc, t)
    result = diag.diagnose_jacobians(jacobian(score, x, a, D, route="central", rng=rng), a, D,
                                     t=t, reference_basis=basis)
    assert result.t == t
    np.testing.assert_allclose(result.tau, tau, rtol=1e-14)
    lam = np.array([3.0, 3.0, 0.2, 0.2, 0, 0, 0, 0])
    np.testing.assert_allclose(result.eigenvalues.real[0], np.sort(-tau / (tau + lam)), atol=1e-7)
    assert result.nonconservativeness.max() < 1e-7
    assert result.blocks["coupling"].max() < 1e-7


def test_rotation_in_tangent_plane_has_the_known_antisymmetric_part():
    rng = np.random.default_rng(5)
    rate, tau = 0.4, 0.3
    score, data, basis = diag.linear_manifold_field((0.25,), (1.0,), 8,
                                                    subspace="orthonormal", rotation=rate, rng=rng)
    jac = jacobian(score, data.sample(2, rng), 1.0, tau, route="central", rng=rng)
    _, anti = diag.split_symmetric(tau * jac)
    np.testing.assert_allclose(anti[0], rate * diag.plane_rotation(basis), atol=1e-8)
    # by hand: tangent block of Jn = -tau/(tau+1) I_2 + rate G; |G|_F^2 = 2
    tangent_sym2 = 2 * (tau / (tau + 1.0)) ** 2
    blocks = diag.block_diagnostics(tau * jac, basis)
    np.testing.assert_allclose(blocks["tangent_nonconservativeness"],
                               rate * np.sqrt(2) / np.sqrt(tangent_sym2 + 2 * rate**2), rtol=1e-7)
    assert blocks["normal_nonconservativeness"].max() < 1e-8


def test_rotation_in_normal_plane_shows_in_the_normal_block():
    cov = np.diag([1.0, 1.0, 0.0, 0.0, 0.0])
    basis = np.eye(5)[:, :2]
    normal = np.eye(5)[:, 2:]
    field = diag.rotated_gaussian_field(cov, diag.plane_rotation(normal), 0.5)
    blocks = diag.block_diagnostics(0.2 * field.jacobian(np.zeros((1, 5)), 1.0, 0.2), basis)
    assert blocks["tangent_nonconservativeness"][0] < 1e-12
    # normal block: -I_3 + 0.5 G (G in a 2-plane): |A| = 0.5 sqrt 2, |J|^2 = 3 + 0.5
    np.testing.assert_allclose(blocks["normal_nonconservativeness"][0],
                               0.5 * np.sqrt(2) / np.sqrt(3.5), rtol=1e-12)


def test_block_coupling_of_a_known_off_diagonal_block():
    jac = -np.eye(4)
    jac[0, 3] = 0.7  # tangent row (e0) <- normal column (e3)
    blocks = diag.block_diagnostics(jac[None], np.eye(4)[:, :2])
    np.testing.assert_allclose(blocks["coupling"][0], 0.7 / np.sqrt(4 + 0.49), rtol=1e-12)


# --------------------------------------------------------------------------- non-conservativeness
@given(st.integers(2, 7), st.floats(0.0, 3.0), st.integers(0, 10_000))
def test_nonconservativeness_of_chosen_symmetric_and_antisymmetric_parts(d, scale, seed):
    rng = np.random.default_rng(seed)
    sym = rng.standard_normal((d, d))
    sym = sym + sym.T
    anti = rng.standard_normal((d, d))
    anti = scale * (anti - anti.T)
    expected = np.linalg.norm(anti) / np.sqrt(np.linalg.norm(sym) ** 2 + np.linalg.norm(anti) ** 2)
    value = diag.nonconservativeness((sym + anti)[None])[0]
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-14)
    assert 0.0 <= value <= 1.0
    q = random_orthogonal(d, rng)  # invariant under a change of orthonormal basis
    np.testing.assert_allclose(diag.nonconservativeness((q.T @ (sym + anti) @ q)[None])[0],
                               value, rtol=1e-9, atol=1e-14)


def test_nonconservativeness_limits():
    rng = np.random.default_rng(7)
    m = rng.standard_normal((4, 4))
    assert diag.nonconservativeness((m + m.T)[None])[0] == 0.0
    np.testing.assert_allclose(diag.nonconservativeness((m - m.T)[None])[0], 1.0)


# --------------------------------------------------------------------------- local dimension
@given(st.integers(3, 12), st.data())
def test_local_dimension_of_a_field_with_chosen_spectrum(d, data):
    m = data.draw(st.integers(0, d - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    tangent = rng.uniform(0.0, 0.3, m)
    normal = rng.uniform(0.8, 1.0, d - m)
    q = random_orthogonal(d, rng)
    field = constant_field(q @ np.diag(-np.concatenate([tangent, normal])) @ q.T)
    result = diag.diagnose_jacobians(field.jacobian(np.zeros((1, d)), 1.0, 1.0), 1.0, 1.0)
    assert result.local_dimension_threshold[0] == m
    assert result.local_dimension_gap[0] == m


def test_gap_estimate_edge_cases():
    assert diag.local_dimension_gap(np.ones(5)) == 0  # isotropic: no manifold
    assert diag.local_dimension_gap(np.array([1, 1, 0.9, 0.1, 0.05])) == 2
    assert diag.local_dimension_threshold(np.array([1, 0.6, 0.4, 0.1]), 0.5) == 2


# --------------------------------------------------------------------------- principal angles
@given(st.integers(3, 9), st.integers(1, 3), st.integers(0, 10_000))
def test_principal_angles_match_scipy(d, k, seed):
    rng = np.random.default_rng(seed)
    a = orthonormal_probes(d, min(k + 1, d), rng)
    b = orthonormal_probes(d, k, rng)
    # scipy takes angles near 0 from the cosines only (accurate to sqrt(eps) ~ 1.5e-8 there);
    # ours uses the sines for small angles, checked to 1e-15 on exact constructions below
    np.testing.assert_allclose(diag.principal_angles(a, b),
                               np.sort(scipy.linalg.subspace_angles(a, b)), atol=3e-8)


@pytest.mark.parametrize("angle", [1e-9, 1e-4, 0.3, 1.2, np.pi / 2])
def test_principal_angle_of_a_rotated_line(angle):
    a = np.eye(4)[:, :1]
    b = (np.cos(angle) * np.eye(4)[:, 0] + np.sin(angle) * np.eye(4)[:, 1])[:, None]
    np.testing.assert_allclose(diag.principal_angles(a, b), [angle], rtol=1e-7, atol=1e-15)


def test_top_local_features_of_an_exact_score_span_the_tangent_space():
    rng = np.random.default_rng(8)
    score, data, basis = diag.linear_manifold_field((0.3,), (2.0,), 10, rng=rng)
    res = diag.diagnose_jacobians(score.jacobian(data.sample(2, rng), 1.0, 0.05), 1.0, 0.05,
                                  reference_basis=basis)
    assert res.principal_angles.max() < 1e-8


# --------------------------------------------------------------------------- trajectories
def test_probability_flow_is_second_order_against_the_closed_form():
    rng = np.random.default_rng(9)
    lam = np.array([2.0, 0.3, 0.0])
    field = diag.gaussian_score_field(np.diag(lam))
    x0 = rng.standard_normal((4, 3)) * np.sqrt(lam + 10.0)
    expected = x0 * np.sqrt((lam + 0.1) / (lam + 10.0))
    errors = [np.abs(backward(field, VE, x0, 10.0, 0.1, n) - expected).max() for n in (5, 10)]
    assert 3.5 < errors[0] / errors[1] < 4.5


def test_ddpm_trajectories_use_the_tau_frame():
    rng = np.random.default_rng(10)
    proc = get_process("ddpm")
    lam = np.array([1.5, 0.0])
    field = diag.gaussian_score_field(np.diag(lam))
    k0, k1 = 600.0, 100.0
    tau0, tau1 = float(proc.tau_from_time(k0)), float(proc.tau_from_time(k1))
    x0 = rng.standard_normal((3, 2))
    out = backward(field, proc, x0, k0, k1, 80)
    u1 = x0 / float(proc.signal_scale(k0)) * np.sqrt((lam + tau1) / (lam + tau0))
    np.testing.assert_allclose(out, u1 * float(proc.signal_scale(k1)), rtol=2e-4)


def test_diagnose_field_gives_the_staircase_along_trajectories():
    rng = np.random.default_rng(11)
    score, data, basis = diag.linear_manifold_field((0.2, 0.2), (4.0, 0.1), 10,
                                                    subspace="orthonormal", rng=rng)
    ou = get_process("ou")
    taus = {30.0: 0, 0.6: 2, 0.01: 4}
    times = [float(ou.time_from_tau(t)) for t in taus]
    results = diag.diagnose_field(score, ou, times, points=3, rng=rng, sampler=data.sample,
                                  reference_basis=basis)
    for res in results:
        expected = taus[min(taus, key=lambda t: abs(t - res.tau))]
        assert set(res.local_dimension_threshold.tolist()) == {expected}
        assert set(res.local_dimension_gap.tolist()) == {expected}


def test_empirical_score_closed_form_matches_central_differences():
    rng = np.random.default_rng(12)
    empirical = pytest.importorskip("diffphase.simulate.empirical")
    data = LinearGaussian.manifold((0.25,), (1.0,), 8, rng=rng)
    field = empirical.EmpiricalScore(data.sample(40, rng))
    x = rng.standard_normal((3, 8))
    a, D = level(get_process("ou"), 0.3)
    closed = jacobian(field, x, a, D)
    central = jacobian(field, x, a, D, route="central", rng=rng)
    np.testing.assert_allclose(closed, central, atol=1e-6 * np.abs(closed).max())
    assert diag.nonconservativeness(closed).max() < 1e-12  # an exact score of its data


def test_one_grid_node_returns_the_start_and_grids_stop_on_the_times():
    x0 = np.ones((2, 3))
    flow = probability_flow(lambda x, a, D: -x, x0, VE, [0.5], record_times=[0.5])
    np.testing.assert_array_equal(flow.final, x0)
    np.testing.assert_array_equal(flow.states[0], x0)
    ddpm = get_process("ddpm")
    grid = log_tau_grid(ddpm, 800.0, [600.0, 100.0, 800.0], 20)
    assert grid[0] == 800.0 and grid[-1] == 100.0 and 600.0 in grid.tolist()
    assert np.all(np.diff(grid) < 0)
    log_tau = np.log(ddpm.tau_from_time(grid))
    steps = np.diff(log_tau[grid >= 600.0])  # uniform in log tau between two stops
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
    assert abs(steps[0]) <= 1 / 20


class _DeviceArray:
    """Stands in for a GPU array: no numpy arithmetic, ``get()`` copies to the host."""

    def __init__(self, array):
        self.array = np.asarray(array)

    def get(self):
        return self.array


class _DeviceField:
    """A field whose outputs stay on a device, as the empirical engine's do on a GPU."""

    jacobian_route = "closed-form"

    def __init__(self, field):
        self.field, self.dim = field, field.dim

    def score(self, x, a, D):
        return _DeviceArray(self.field.score(x, a, D))

    def jacobian(self, x, a, D):
        return _DeviceArray(self.field.jacobian(x, a, D))


def test_outputs_on_a_device_are_brought_to_numpy_by_every_route():
    exact = diag.gaussian_score_field(np.diag([2.0, 0.5, 0.0]))
    field = _DeviceField(exact)
    x = np.random.default_rng(16).standard_normal((2, 3))
    for route in ("closed-form", "central"):
        np.testing.assert_allclose(jacobian(field, x, 1.0, 0.3, route=route),
                                   exact.jacobian(x, 1.0, 0.3), atol=1e-8)
    results = diag.diagnose_field(field, VE, [0.3], points=2, rng=np.random.default_rng(0))
    assert results[0].local_dimension_threshold.tolist() == [2, 2]


# --------------------------------------------------------------------------- time adapter
@pytest.mark.parametrize("process", ["ve", "ou", "ddpm"])
def test_time_adapter_recovers_the_time_of_every_noise_level(process):
    proc = get_process(process)
    times = np.arange(1.0, 1001.0) if process == "ddpm" else np.geomspace(1e-4, 20.0, 200)
    adapter = TimeScore(lambda x, t: x, proc)
    for t in times:
        back, scale = adapter.time_of(*level(proc, t))
        if process == "ddpm":
            assert back == t  # steps come back as the exact integers
        elif process == "ve":
            assert back == t and scale == 1.0
        else:
            np.testing.assert_allclose(back, t, rtol=1e-14)
        np.testing.assert_allclose(scale, 1.0, rtol=1e-14)


@pytest.mark.parametrize("process", ["ve", "ou", "ddpm"])
def test_time_adapter_is_exact_off_the_process_levels(process):
    """The exact Gaussian score written in the time of ``process`` equals the process-free
    exact score at any ``(a, D)``, including levels the process never visits."""
    proc = get_process(process)
    cov = np.diag([3.0, 0.4, 0.0])
    exact = diag.gaussian_score_field(cov)

    def in_time(x, t):
        return exact.score(x, *level(proc, t))

    field = CallableScore(TimeScore(in_time, proc), 3)
    x = np.random.default_rng(13).standard_normal((4, 3))
    for a, D in ((1.0, 0.3), (0.2, 0.5), (0.9, 0.05)):
        np.testing.assert_allclose(field.score(x, a, D), exact.score(x, a, D), rtol=1e-12)
        np.testing.assert_allclose(jacobian(field, x, a, D), exact.jacobian(x, a, D),
                                   rtol=1e-7, atol=1e-7 / D)


def test_user_time_callable_gives_the_diagnostics_of_the_exact_field():
    """A ``score(x, t)`` of ddpm steps (the route of ``--score``) and the process-free exact field
    give the same diagnostics along the same trajectories."""
    proc = get_process("ddpm")
    exact, data, basis = diag.linear_manifold_field((0.25,), (2.0,), 8, subspace="orthonormal",
                                                    rng=np.random.default_rng(14))
    steps = []

    def by_step(x, t):
        steps.append(t)
        return exact.score(x, *level(proc, t))

    user = CallableScore(TimeScore(by_step, proc), 8)
    runs = [diag.diagnose_field(f, proc, [500.0, 50.0], points=3, rng=np.random.default_rng(15),
                                sampler=data.sample, reference_basis=basis, route="central")
            for f in (exact, user)]
    assert 500.0 in steps and 50.0 in steps  # the named steps arrive as given
    for ours, theirs in zip(*runs, strict=True):
        assert ours.t == theirs.t
        np.testing.assert_allclose(theirs.singular_values, ours.singular_values, atol=1e-6)
        assert theirs.local_dimension_threshold.tolist() == ours.local_dimension_threshold.tolist()


# --------------------------------------------------------------------------- requests
def test_prepare_diagnosis_from_python_matches_the_staircase():
    plan = requests.prepare_diagnosis("ve", [0.1, 1.0], rng=np.random.default_rng(0), points=2,
                                  model="linear-manifold", subspace="orthonormal")
    assert plan.times.tolist() == [1.0, 0.1] and plan.source.field.dim == 16
    summaries = [r.summary() for r in plan.run()]
    assert [s["local_dimension"] for s in summaries] == [2, 4]
    spectra, per_time = requests.diagnosis_tables(summaries, "t_ve")
    assert spectra["t_ve"].shape == (32,) and spectra["index"].tolist()[:3] == [1, 2, 3]
    assert per_time["t_ve"] == [1.0, 0.1] and "max_principal_angle" in per_time


def test_field_source_takes_a_callable_and_a_reference_array():
    def isotropic(x, t):
        return -x / (1.0 + t)

    source = requests.field_source("ve", score=isotropic, dim=4, reference=np.eye(4)[:, :2] * 3.0)
    assert source.label.startswith("user score ") and source.label.endswith("isotropic")
    np.testing.assert_allclose(np.abs(source.reference_basis), np.eye(4)[:, :2], atol=1e-15)
    np.testing.assert_allclose(source.field.score(np.ones((1, 4)), 1.0, 0.5),
                               -np.ones((1, 4)) / 1.5)


@pytest.mark.parametrize("options, message", [
    ({"model": "linear-manifold", "probes": 17}, "--probes"),
    ({"model": "linear-manifold", "t_start": 0.5}, "--t-start"),
    ({"score": lambda x, t: x[:, :1], "dim": 3}, "output shape"),
    ({"model": "empirical", "rotation": 0.2}, "--rotation"),
    ({"score": lambda x, t: x, "dim": 3, "reference": np.ones((3, 3))}, "--reference shape"),
])
def test_prepare_diagnosis_rejects_bad_requests(options, message):
    with pytest.raises(ParameterError, match=message):
        requests.prepare_diagnosis("ve", [1.0], rng=np.random.default_rng(0), **options)


# --------------------------------------------------------------------------- bad input
def test_callable_with_wrong_shape_or_nan_is_named():
    wrong = CallableScore(lambda x, a, D: x[:, :2], 4, name="--score m:f")
    with pytest.raises(ParameterError, match=r"--score m:f output shape.*\(3, 4\)"):
        wrong.score(np.zeros((3, 4)), 1.0, 1.0)
    nan = CallableScore(lambda x, a, D: np.full_like(x, np.nan), 4)
    with pytest.raises(ParameterError, match="non-finite"):
        nan.score(np.zeros((3, 4)), 1.0, 1.0)
    with pytest.raises(ParameterError, match="numeric array"):
        checked_output("score", object(), (1,))
    with pytest.raises(ParameterError, match="callable"):
        CallableScore(3, 4)


def test_unbatched_callable_is_called_per_point():
    field = CallableScore(lambda x, a, D: -2.0 * x, 3, batched=False)
    np.testing.assert_allclose(field.score(np.ones((2, 3)), 1.0, 0.1), -2.0 * np.ones((2, 3)))


@pytest.mark.parametrize("path, message", [("nosuchmodule_xyz:f", "importable module"),
                                           ("numpy:no_such_function", "a name defined"),
                                           ("numpy", "package.module:function"),
                                           ("numpy:pi", "callable")])
def test_load_callable_errors(path, message):
    with pytest.raises(ParameterError, match=message):
        load_callable(path)


def test_bad_points_and_covariance():
    field = diag.gaussian_score_field(np.eye(3))
    with pytest.raises(ParameterError, match="x shape"):
        jacobian(field, np.zeros((2, 4)), 1.0, 1.0, route="central")
    with pytest.raises(ParameterError, match="covariance"):
        diag.gaussian_score_field(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ParameterError, match="t"):
        diag.diagnose_field(field, VE, [-1.0], rng=np.random.default_rng(0))
    with pytest.raises(ParameterError, match="D"):
        jacobian(field, np.zeros((2, 3)), 1.0, 0.0)


def test_quick_checks_pass():
    import importlib.util

    from diffphase.validate.registry import run_checks

    results = run_checks("fields", "quick", seed=3)
    # checks that need torch are reported as skipped (not failed) where torch is absent
    allowed = {"pass"} if importlib.util.find_spec("torch") else {"pass", "skipped"}
    assert results and all(r.status in allowed for r in results), [r.as_row() for r in results]
    assert any(r.status == "pass" for r in results)
