"""Fast paths give the answers of the plain ones: blocked score calls of the central-difference
Jacobian, and the expression-keyed index of generated kernel modules."""

import numpy as np
import sympy as sp

from diffphase.data.laws import LinearGaussian
from diffphase.simulate import jacobians
from diffphase.simulate.empirical import EmpiricalScore
from diffphase.simulate.fields import gaussian_score_field
from diffphase.solvers import codegen


class _CountingField:
    """A linear score ``-x C^{-1}`` that records the size of every call and states its cost."""

    def __init__(self, precision: np.ndarray, query_bytes: int):
        self.dim = precision.shape[0]
        self.precision = precision
        self.query_bytes_per_point = query_bytes
        self.calls: list[int] = []

    def score(self, x, a, D):
        self.calls.append(x.shape[0])
        return -x @ self.precision


def test_blocked_calls_give_the_exact_jacobian_of_a_linear_field():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((6, 6))
    precision = m @ m.T + 6 * np.eye(6)
    field = _CountingField(precision, query_bytes=jacobians.CACHE_BUDGET_BYTES // 10)
    x = rng.standard_normal((5, 6))
    jac = jacobians.central_difference_jacobian(field, x, 1.0, 0.5, 1e-3, probes=6)
    np.testing.assert_allclose(jac, np.broadcast_to(-precision, (5, 6, 6)), atol=1e-9)
    assert max(field.calls) == 10 and sum(field.calls) == 2 * 5 * 6


def test_blocked_empirical_jacobian_equals_one_call():
    rng = np.random.default_rng(1)
    data = LinearGaussian.manifold((0.25,), (1.0,), 8, rng=rng)
    training = data.sample(3000, rng)
    field = EmpiricalScore(training)
    assert jacobians.rows_per_call(field, 10_000) < 10_000  # the cache model splits this batch
    x = rng.standard_normal((12, 8))
    q = jacobians.orthonormal_probes(8, 8, rng)
    blocked = jacobians.central_difference_jacobian(field, x, 1.0, 0.5, 1e-4, probes=q)
    shifts = 1e-4 * q.T
    plus = field.score((x[:, None] + shifts).reshape(-1, 8), 1.0, 0.5).reshape(12, 8, 8)
    minus = field.score((x[:, None] - shifts).reshape(-1, 8), 1.0, 0.5).reshape(12, 8, 8)
    one_call = np.einsum("nki,jk->nij", (plus - minus) / 2e-4, q)
    # the score's posterior mean is a BLAS product whose last bits depend on how many rows share
    # a call: a few units of rounding of |y| per score value, divided by the step 2e-4
    rounding = 8 * np.finfo(float).eps * np.abs(training).max() / 2e-4
    np.testing.assert_allclose(blocked, one_call, rtol=0, atol=rounding)


def test_cheap_field_is_called_once():
    field = gaussian_score_field(np.eye(4))
    assert jacobians.rows_per_call(field, 4096) == 4096


def test_kernel_index_names_the_module_and_survives_damage(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFPHASE_CACHE_DIR", str(tmp_path))
    x = sp.Symbol("x")
    kernel = codegen.ScalarKernel.of("indexed_kernel", (x,), sp.exp(x) / (1 + x**2))
    module = codegen.compile_kernels([kernel], tag="indextest")
    index = codegen._index_path((kernel,), (), "indextest", False)
    assert codegen._indexed_source(index, "indextest") == codegen.module_source([kernel])
    index.write_text("garbage")
    assert codegen._indexed_source(index, "indextest") is None
    assert abs(module.indexed_kernel(0.5) - np.exp(0.5) / 1.25) < 1e-15
