"""Hand-written exact scores and likelihoods of the data layer against the symbolic expressions
of ``theory/`` (the data layer sits below the compiler, so these stay hand-written)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from diffphase.data.channels import noisy_leaf_likelihood
from diffphase.data.tangent import GaussianTangent
from diffphase.theory import hierarchy as TH
from diffphase.theory import spectral as TS

positive = st.floats(1e-3, 1e3)


@given(lam=positive, a=st.floats(1e-2, 10.0), D=positive, x=st.floats(-10.0, 10.0))
def test_gaussian_tangent_score_is_the_symbolic_score(lam, a, D, x):
    expr = TS.score_jacobian_eigenvalue() * TS.x_coord
    expected = float(expr.subs({TS.lam: lam, TS.a_scale: a, TS.noise_var: D, TS.x_coord: x}))
    got = GaussianTangent(np.array([lam])).score(np.array([[x]]), a, D)[0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)


@given(noise=st.floats(0.0, 1.0), v=st.integers(2, 40))
def test_eps_channel_belief_on_the_truth_is_the_symbolic_leaf_belief(noise, v):
    tokens = np.arange(v) % v
    nu = noisy_leaf_likelihood("eps", tokens, noise, v, np.random.default_rng(0))
    expected = float(TH.leaf_belief().subs({TH.eps: noise, TH.v: v}))
    np.testing.assert_allclose(nu[np.arange(v), tokens], expected, rtol=1e-12)
    off = float((TH.eps / TH.v).subs({TH.eps: noise, TH.v: v}))  # the rest, spread evenly
    mask = np.ones_like(nu, dtype=bool)
    mask[np.arange(v), tokens] = False
    np.testing.assert_allclose(nu[mask], off, rtol=1e-12, atol=1e-300)
