"""Matrix-free Jacobian spectra against dense linear algebra (THEORY E).

Every estimate is compared with ``numpy.linalg`` on the same matrix, or with the closed form of
a Gaussian score plus a chosen rotation; error statements are checked to cover the true error
and to be small enough to mean something."""

from __future__ import annotations

import numpy as np
import pytest

from diffphase.errors import ParameterError

torch = pytest.importorskip("torch")

from diffphase.simulate import matrix_free as mf  # noqa: E402
from diffphase.simulate.matrix_free_fields import (  # noqa: E402
    chunk_rows_within,
    diagnose_matrix_free,
    matrix_free_diagnostics,
    product_memory,
)
from diffphase.simulate.torch_adapter import TorchScore  # noqa: E402

D_NOISE = 0.7  # the noise variance of the fields below (a = 1, tau = D)


def gaussian_jacobian(d: int, rank: int, rate: float, seed: int) -> tuple[np.ndarray, ...]:
    """``(J, S, A)`` of the Gaussian score with covariance of ``rank`` distinct eigenvalues
    plus a rotation of ``rate / D`` (THEORY E's constructed fields): ``Jn = D J = S + A``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    variances = np.concatenate([np.geomspace(0.2, 30.0, rank), np.zeros(d - rank)])
    symmetric = -(q * (D_NOISE / (D_NOISE + variances))) @ q.T
    generator = rng.standard_normal((d, d))
    anti = rate * (generator - generator.T) / np.sqrt(2 * d)
    return (symmetric + anti) / D_NOISE, symmetric, anti


def linear_field(jacobian: np.ndarray) -> TorchScore:
    matrix = torch.as_tensor(jacobian)
    return TorchScore(lambda x, a, D: x @ matrix.T, jacobian.shape[0])


def generator(seed: int = 0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- extremes
def test_top_singular_values_match_the_dense_jacobian():
    jac, _, _ = gaussian_jacobian(48, 20, 0.3, seed=1)
    found = matrix_free_diagnostics(linear_field(jac), np.zeros((2, 48)), 1.0, D_NOISE,
                                    steps=48, probes=1, hutchinson_probes=4, top_k=5, seed=3)
    exact = np.linalg.svd(D_NOISE * jac, compute_uv=False)
    for p in range(2):
        np.testing.assert_allclose(found.singular["top"][p], exact[:5], rtol=1e-6)
        np.testing.assert_allclose(found.singular["bottom"][p], exact[::-1][:5], rtol=1e-6)
    np.testing.assert_allclose(found.eigen["top"][0],
                               np.linalg.eigvalsh(0.5 * D_NOISE * (jac + jac.T))[::-1][:5],
                               rtol=1e-6)


def test_ritz_bounds_cover_the_error_of_a_short_run():
    rng = np.random.default_rng(2)
    matrices = rng.standard_normal((3, 120, 120)) / np.sqrt(120)
    run = mf.golub_kahan(mf.DenseOperator(matrices), 25, generator(1))
    symmetric = mf.lanczos(mf.DenseOperator(matrices), 25, generator(2))
    for row in range(3):
        exact = np.linalg.svd(matrices[row], compute_uv=False)
        ritz = mf.singular_quadrature(run, row)
        nearest = np.min(np.abs(ritz.nodes[:, None] - exact[None, :]), axis=1)
        assert np.all(nearest <= ritz.bounds * (1 + 1e-9) + 1e-13)
        assert nearest[-1] < 1e-6  # the largest value has converged
        eig = np.linalg.eigvalsh(0.5 * (matrices[row] + matrices[row].T))
        ritz = mf.symmetric_quadrature(symmetric, row)
        nearest = np.min(np.abs(ritz.nodes[:, None] - eig[None, :]), axis=1)
        assert np.all(nearest <= ritz.bounds * (1 + 1e-9) + 1e-13)


def test_an_invariant_subspace_ends_the_run_exactly():
    """A Gaussian score on a rank-5 manifold has 6 distinct eigenvalues: Lanczos ends there
    and its quadrature is the exact spectral measure of the start vector."""
    _, symmetric, _ = gaussian_jacobian(40, 5, 0.0, seed=3)
    run = mf.lanczos(mf.DenseOperator(symmetric[None]), 30, generator(4))
    assert run.exact[0] and run.lengths[0] <= 8
    nodes = mf.symmetric_quadrature(run, 0).nodes
    eig = np.linalg.eigvalsh(symmetric)
    assert np.min(np.abs(nodes[:, None] - eig), axis=1).max() < 1e-10


# --------------------------------------------------------------------------- densities
def ks_distance(grid, cdf, eigenvalues):
    exact = np.searchsorted(np.sort(eigenvalues), grid, side="right") / eigenvalues.size
    return np.max(np.abs(cdf - exact)), exact


def test_stochastic_density_is_within_its_stated_error():
    jac, symmetric, _ = gaussian_jacobian(200, 120, 0.2, seed=5)
    found = matrix_free_diagnostics(linear_field(jac), np.zeros((1, 200)), 1.0, D_NOISE,
                                    steps=40, probes=6, hutchinson_probes=2, top_k=3, seed=6)
    summary = found.summary()
    grid, cdf = summary["eigenvalue_cdf"]["grid"], summary["eigenvalue_cdf"]["cdf"]
    ks, exact = ks_distance(grid, cdf, np.linalg.eigvalsh(symmetric))
    assert ks <= summary["ks_error"] < 0.2
    assert np.all(np.abs(cdf - exact) <= summary["eigenvalue_cdf"]["error"] + 1e-12)
    # the density of another spectrum is far outside that error: the test can fail
    other, _, _ = gaussian_jacobian(200, 40, 0.2, seed=5)
    far, _ = ks_distance(grid, cdf, np.linalg.eigvalsh(0.5 * D_NOISE * (other + other.T)))
    assert far > 2 * summary["ks_error"]


def test_local_dimension_is_within_its_error():
    jac, _, _ = gaussian_jacobian(160, 60, 0.1, seed=7)
    found = matrix_free_diagnostics(linear_field(jac), np.zeros((2, 160)), 1.0, D_NOISE,
                                    steps=40, probes=6, hutchinson_probes=2, top_k=3, seed=8,
                                    threshold=0.5)
    exact = int(np.sum(np.linalg.svd(D_NOISE * jac, compute_uv=False) < 0.5))
    assert 10 < exact < 150
    assert np.all(np.abs(found.local_dimension - exact) <= found.local_dimension_error)
    assert np.all(found.local_dimension_error < 0.15 * 160)


def test_widest_gap_edges_are_dense_eigenvalues():
    """Gaussian score with two variance groups: the normal atom -1, a low group near
    ``-tau/(tau + 0.15)`` and a high group near ``-tau/(tau + 28)``; the widest gap lies
    between the groups, its edges are the low group's top and the high group's bottom."""
    d, tau = 60, D_NOISE
    q, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((d, d)))
    low_group, high_group = np.linspace(0.1, 0.2, 6), np.linspace(25, 30, 6)
    variances = np.concatenate([high_group, low_group, np.zeros(48)])
    symmetric = -(q * (tau / (tau + variances))) @ q.T
    run = mf.lanczos(mf.DenseOperator(symmetric[None]), 40, generator(5))
    ritz = mf.symmetric_quadrature(run, 0)
    low, high, low_bound, high_bound = mf.widest_gap(ritz.nodes, ritz.bounds)
    assert abs(low + tau / (tau + low_group.max())) <= low_bound + 1e-12
    assert abs(high + tau / (tau + high_group.min())) <= high_bound + 1e-12
    assert max(low_bound, high_bound) < 1e-6


# --------------------------------------------------------------------------- Hutchinson
def test_nonconservativeness_matches_the_exact_ratio():
    jac, _, anti = gaussian_jacobian(100, 30, 0.25, seed=11)
    ops = mf.DenseOperator(np.stack([D_NOISE * jac, D_NOISE * 0.5 * (jac + jac.T)]))
    ratio, error = mf.hutchinson_nonconservativeness(ops, 64, generator(3))
    exact = np.linalg.norm(anti) / np.linalg.norm(D_NOISE * jac)
    assert 0.1 < exact < 0.9
    assert abs(ratio[0] - exact) <= 4 * error[0] and error[0] < 0.05 * exact
    assert ratio[1] == 0.0 and error[1] == 0.0


# --------------------------------------------------------------------------- plumbing
class NoForwardDerivative(torch.autograd.Function):
    """``tanh`` with a backward but no forward-mode derivative."""

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (1 - out**2)


def test_double_backward_replaces_forward_mode_when_it_is_missing():
    matrix = torch.as_tensor(np.random.default_rng(12).standard_normal((6, 6)))

    def function(x):
        return NoForwardDerivative.apply(x) @ matrix.T

    x = np.random.default_rng(13).standard_normal((3, 6))
    operator = mf.FunctionOperator(function, x)
    vectors = torch.as_tensor(np.random.default_rng(14).standard_normal((3, 6)))
    product = operator.apply(vectors).numpy()
    assert operator.mode == "double-backward"
    exact = np.einsum("ij,nj,nj->ni", matrix.numpy(), 1 - np.tanh(x) ** 2, vectors.numpy())
    np.testing.assert_allclose(product, exact, rtol=1e-12)


def test_memory_is_measured_and_a_small_budget_refuses_the_job():
    """A field that makes a (rows, 4096) float64 temporary per call: its products hold at least
    32 KiB per row, which the measurement must see."""
    weight = torch.as_tensor(np.random.default_rng(15).standard_normal((32, 4096)) / 64)

    def wide(x, a, D):
        return torch.tanh(x @ weight) @ weight.T

    field = TorchScore(wide, 32)
    memory = product_memory(field, 1.0, D_NOISE)
    assert 8 * 4096 <= memory.forward < 8 * 8 * 4096
    assert 8 * 4096 <= memory.reverse < 8 * 8 * 4096
    assert chunk_rows_within(1000, memory.per_row, 10 * memory.per_row) == 10
    assert chunk_rows_within(3, memory.per_row, 1e12) == 3
    with pytest.raises(ParameterError, match=r"krylov_steps.*memory budget"):
        diagnose_matrix_free(field, "ve", [0.5], points=2, rng=np.random.default_rng(0),
                             steps=2000, top_k=2, max_memory=2**22)


def test_trajectories_then_spectra_at_each_time():
    """The exact score of independent Gaussian coordinates of variances ``v``: ``Jn`` has
    singular values ``tau / (tau + v)`` at every point of every trajectory."""
    variances = np.concatenate([np.geomspace(0.05, 5.0, 6), np.zeros(18)])
    v = torch.as_tensor(variances)
    field = TorchScore(lambda x, a, D: -x / (a * a * v + D), 24)
    results = diagnose_matrix_free(field, "ve", [0.1, 1.0], points=2,
                                   rng=np.random.default_rng(1), steps=24, probes=2,
                                   hutchinson_probes=4, top_k=6, steps_per_efold=4)
    assert [r.t for r in results] == [1.0, 0.1]
    for r in results:
        tangent = np.sort(r.tau / (r.tau + variances[:6]))  # the 18 normal ones are all 1
        np.testing.assert_allclose(r.singular["bottom"][1], tangent, rtol=1e-8)
        np.testing.assert_allclose(r.singular["top"][0][0], 1.0, rtol=1e-10)
        summary = r.summary()
        assert summary["nonconservativeness"] < 1e-12
        exact = int(np.sum(variances > r.tau))  # singular values below 1/2
        assert abs(summary["local_dimension_mean"] - exact) <= summary["local_dimension_error"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs its small products on one torch thread."""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
def test_gpu_products_match_the_cpu():
    jac, _, _ = gaussian_jacobian(64, 20, 0.2, seed=17)
    matrix = torch.as_tensor(jac)
    cpu = matrix_free_diagnostics(linear_field(jac), np.zeros((2, 64)), 1.0, D_NOISE, steps=30,
                                  probes=2, hutchinson_probes=8, top_k=4, seed=1)
    gpu_field = TorchScore(lambda x, a, D: x @ matrix.to(x.device).T, 64, device="cuda")
    gpu = matrix_free_diagnostics(gpu_field, np.zeros((2, 64)), 1.0, D_NOISE, steps=30,
                                  probes=2, hutchinson_probes=8, top_k=4, seed=1)
    np.testing.assert_allclose(gpu.singular["top"], cpu.singular["top"], rtol=1e-10)
    np.testing.assert_allclose(gpu.nonconservativeness, cpu.nonconservativeness, rtol=1e-10)
