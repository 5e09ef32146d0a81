"""Tests of the hierarchy model (THEORY C): generator, symbolic map, solvers, BP, population."""

from __future__ import annotations

import itertools
import json

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from diffphase.errors import ParameterError
from diffphase.solvers import hierarchy as mf
from diffphase.solvers.population import class_preservation
from diffphase.theory import hierarchy as th
from diffphase.validate.bp import belief_propagation, sample_posterior, upward_messages
from diffphase.validate.hierarchy import forward_backward
from diffphase.validate.rhm import RandomHierarchyModel, noisy_leaf_likelihood


# ----------------------------------------------------------------------------- generator
def test_n_data_matches_enumeration_and_data_are_distinct():
    model = RandomHierarchyModel(4, 2, 2, 2, n_c=3, seed=5)
    leaves, classes = model.enumerate_data()
    assert model.n_data == 3 * 2**3 == len(leaves)
    assert len({tuple(x) for x in leaves}) == len(leaves)  # unique derivations
    assert np.bincount(classes).tolist() == [8, 8, 8]


@given(st.integers(0, 10_000), st.sampled_from([(4, 2, 2, 3), (5, 3, 3, 2), (6, 6, 2, 3)]))
def test_sampled_trees_obey_rules(seed, sizes):
    model = RandomHierarchyModel(*sizes, seed=seed)
    trees = model.sample_trees(20, np.random.default_rng(seed))
    assert model.is_valid_tree(trees).all()
    assert [t.shape[1] for t in trees] == [model.s**lv for lv in range(model.L + 1)]
    for rules in model.rules:
        tuples = {tuple(r) for r in rules.reshape(-1, model.s)}
        assert len(tuples) == rules.shape[0] * model.m  # distinct within a level


@pytest.mark.parametrize("kwargs, name", [
    (dict(v=4, m=5, s=2, L=2), "m"), (dict(v=0, m=1, s=2, L=2), "v"),
    (dict(v=4, m=2, s=2, L=0), "L"), (dict(v=4, m=2, s=2, L=40), "L"),
    (dict(v=4, m=4, s=2, L=2, n_c=5), "n_c")])
def test_bad_sizes_raise_before_work(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        RandomHierarchyModel(**kwargs)


def test_noise_outside_unit_interval_is_rejected():
    with pytest.raises(ParameterError, match="noise"):
        noisy_leaf_likelihood("mask", np.zeros(3, int), 1.5, 4, np.random.default_rng(0))


# ----------------------------------------------------------------------------- theory
def test_s2_closed_form_is_a_fixed_point_found_by_mpmath():
    closed = th.unstable_fixed_point(2)
    for v_, m_ in [(32, 8), (16, 4), (10, 3)]:
        F = sp.lambdify(th.b, th.mean_field_map(2, th.v).subs({th.v: v_, th.m: m_}), "mpmath")
        with mpmath.workdps(30):
            root = mpmath.findroot(lambda x, F=F: F(x) - x, (1 / v_ + 1e-9, 1 - 1e-9),
                                      solver="anderson")
        assert_allclose(float(closed.subs({th.v: v_, th.m: m_})), float(root), rtol=1e-12)
        assert_allclose(mf.critical_point(v_, m_, 2)["fixed_point"], float(root), rtol=1e-12)


def test_large_v_limit_and_s3_closed_form():
    for s_ in (2, 3):
        assert sp.simplify(th.large_v_limit_of_map(s_) - th.large_v_map(s_)) == 0
    p_u = th.unstable_fixed_point(3, large_v=True)
    for f_ in (0.05, 0.1, 0.2):
        G = sp.lambdify(th.p, th.large_v_map(3).subs(th.f, f_), "mpmath")
        root = mpmath.findroot(lambda x, G=G: G(x) - x, (1e-9, 1 - 1e-9), solver="anderson")
        assert_allclose(float(p_u.subs(th.f, f_)), float(root), rtol=1e-12)
        assert_allclose(mf.critical_point_large_v(f_, 3)["eps_star"], 1 - float(root), rtol=1e-12)


def test_regimes_follow_the_trivial_slopes():
    assert mf.critical_point(4, 3, 2)["regime"] == "lost"  # F'(1) = 6*3/15 > 1
    assert mf.critical_point(8, 1, 2)["regime"] == "kept"
    good = mf.critical_point(32, 8, 2)
    assert good["regime"] == "transition" and good["slope"] > 1
    assert_allclose(good["nu"], np.log(2) / np.log(good["slope"]))


@given(st.floats(0.0, 1.0), st.integers(2, 40), st.integers(2, 4), st.floats(0, 1))
def test_compiled_map_matches_sympy_and_stays_in_range(eps_, v_, s_, frac):
    m_ = max(1, int(frac * v_ ** (s_ - 1)))
    levels = mf.mean_field_levels([eps_], v_, m_, s_, 3)[0]
    assert np.all(levels >= 1 / v_ - 1e-12) and np.all(levels <= 1 + 1e-12)
    expr = th.mean_field_map(s_, v_).subs({th.v: v_, th.m: m_})
    expected = float(expr.subs(th.b, levels[3]))
    assert_allclose(levels[2], expected, rtol=1e-10)


def test_mean_field_collapse_improves_with_depth():
    crit = mf.critical_point(32, 8, 2)
    x = np.linspace(-1, 0.3, 21)

    def curve(depth):
        eps = crit["eps_star"] + x * crit["slope"] ** (-depth)
        return mf.mean_field_levels(eps, 32, 8, 2, depth)[:, 0]

    assert np.abs(curve(14) - curve(12)).max() < np.abs(curve(6) - curve(4)).max()


# ----------------------------------------------------------------------------- BP
def _brute_force_class(model, nu):
    trees = []
    for c in range(model.n_c):
        nodes_sets = [[np.array([c])]]
        for level in range(model.L):
            nxt = []
            for nodes in nodes_sets[-1]:
                for pick in itertools.product(range(model.m), repeat=len(nodes)):
                    nxt.append(np.concatenate([model.rules[level][a, j]
                                               for a, j in zip(nodes, pick, strict=True)]))
            nodes_sets.append(nxt)
        trees += [(c, leaves) for leaves in nodes_sets[-1]]
    post = np.zeros(model.n_c)
    for c, leaves in trees:
        post[c] += np.prod(nu[np.arange(model.n_leaves), leaves])
    return post / post.sum()


@given(st.integers(0, 1000), st.sampled_from(["numba", "array"]))
def test_bp_class_marginal_equals_enumeration(seed, engine):
    model = RandomHierarchyModel(3, 2, 2, 2, n_c=2, seed=seed)
    nu = np.random.default_rng(seed).random((2, model.n_leaves, model.v)) ** 3
    result = belief_propagation(model.rules, nu, engine=engine)
    for b_ in range(2):
        assert_allclose(result.marginals[0][b_, 0], _brute_force_class(model, nu[b_]),
                        atol=1e-12)
    for level in range(model.L + 1):  # messages and marginals are distributions
        for arr in (result.up[level], result.down[level], result.marginals[level]):
            assert np.all(arr >= 0)
            assert_allclose(arr.sum(axis=-1), 1.0, atol=1e-12)


def test_bp_engines_agree_and_posterior_trees_are_valid():
    model = RandomHierarchyModel(6, 3, 2, 3, seed=2)
    rng = np.random.default_rng(0)
    nu = rng.random((7, model.n_leaves, model.v))
    a = belief_propagation(model.rules, nu, engine="numba")
    b_ = belief_propagation(model.rules, nu, engine="array")
    for x, y in zip(a.marginals, b_.marginals, strict=True):
        assert_allclose(x, y, atol=1e-12)
    trees = sample_posterior(model.rules, a.up, rng)
    assert model.is_valid_tree(trees).all()


def test_posterior_samples_follow_the_marginals():
    model = RandomHierarchyModel(4, 2, 2, 2, n_c=3, seed=1)
    nu = np.repeat(np.random.default_rng(3).random((1, 4, 4)), 20000, axis=0)
    result = belief_propagation(model.rules, nu[:1])
    up, _ = upward_messages(model.rules, nu)
    trees = sample_posterior(model.rules, up, np.random.default_rng(4))
    freq = np.bincount(trees[0][:, 0], minlength=3) / 20000
    assert_allclose(freq, result.marginals[0][0, 0], atol=4 * np.sqrt(0.25 / 20000))


def test_all_zero_evidence_is_guarded():
    model = RandomHierarchyModel(4, 2, 2, 2, seed=0)
    result = belief_propagation(model.rules, np.zeros((1, 4, 4)))
    assert result.n_guarded > 0
    assert np.all(np.isfinite(result.marginals[0]))


@given(st.integers(0, 500))
def test_permuting_symbol_labels_changes_nothing(seed):
    model = RandomHierarchyModel(5, 3, 2, 2, seed=seed)
    rng = np.random.default_rng(seed)
    nu = rng.random((3, model.n_leaves, model.v))
    perm = [rng.permutation(model.n_parents(lv)) for lv in range(model.L + 1)]
    new_rules = []
    for level, rules in enumerate(model.rules):
        relabeled = np.empty_like(rules)
        relabeled[perm[level]] = perm[level + 1][rules]
        new_rules.append(relabeled)
    nu_perm = np.empty_like(nu)
    nu_perm[..., perm[-1]] = nu
    a = belief_propagation(model.rules, nu).marginals[0][:, 0]
    b_ = belief_propagation(new_rules, nu_perm).marginals[0][:, 0]
    assert_allclose(b_[:, perm[0]], a, atol=1e-12)


# ----------------------------------------------------------------------------- population
def test_population_dynamics_matches_bp_for_uniform_noise():
    model = RandomHierarchyModel(8, 2, 2, 3, seed=4)
    pd = class_preservation(model, "uniform", 0.35, population=20000, repeats=3, seed=1)
    fb = forward_backward(model, "uniform", 0.35, 3000, np.random.default_rng(2))
    tol = 4 * np.hypot(pd.standard_error[0], fb["class_posterior_se"]) + 0.005
    assert abs(pd.class_preservation - fb["class_posterior"]) < tol
    up = fb["upward_true_value_belief"]
    assert_allclose(pd.true_value_belief, up, atol=0.04)


# ----------------------------------------------------------------------------- CLI
def _run(args, capsys):
    from diffphase.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr()


def test_thresholds_json_keys(capsys):
    code, out = _run(["thresholds", "--v", "32", "--m", "8", "--s", "2", "--json"], capsys)
    data = json.loads(out.out)
    assert code == 0
    assert data["regime"] == "transition"
    assert_allclose(data["eps_star"], float(th.critical_noise(2).subs({th.v: 32, th.m: 8})))
    assert {"eps_star", "slope", "nu", "regime"} <= set(data)


def test_thresholds_bad_input_exit_2(capsys):
    code, out = _run(["thresholds", "--v", "4", "--m", "5", "--s", "2"], capsys)
    assert code == 2 and "m" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = _run(["thresholds", "--channel", "mask"], capsys)
    assert code == 2 and "--depth" in out.err


def test_quick_checks_pass():
    from diffphase.validate.registry import run_checks

    results = [r for r in run_checks("hierarchy", "quick", 0) if r.check == "bp-exact"]
    assert results and all(r.status == "pass" for r in results)
