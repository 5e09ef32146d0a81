"""The check registry: statuses, failure semantics, report formats."""

from __future__ import annotations

import numpy as np
import pytest

from diffphase.validate import registry
from diffphase.validate.registry import CheckSkipped, Comparison, register_check


@pytest.fixture
def toy_model(monkeypatch):
    """A throw-away model whose checks exercise every status."""
    monkeypatch.setitem(registry.MODEL_MODULES, "toy", "diffphase.validate.registry")
    monkeypatch.setattr(registry, "available_models", lambda: ["toy"])
    saved = dict(registry._CHECKS)

    @register_check("toy", "within", description="passes")
    def within(tier, rng):
        return [Comparison("x", 1.0, 1.05, 0.1)]

    @register_check("toy", "outside")
    def outside(tier, rng):
        return [Comparison("x", 1.0, 2.0, 0.1)]

    @register_check("toy", "claim", kind="paper")
    def claim(tier, rng):
        return [Comparison("y", 0.0, 1.0, 0.1), Comparison("y", 0.0, 0.01, 0.1)]

    @register_check("toy", "crash")
    def crash(tier, rng):
        raise RuntimeError("boom")

    @register_check("toy", "optional")
    def optional(tier, rng):
        raise CheckSkipped("needs an optional package")

    @register_check("toy", "full-only", tiers=("full",))
    def full_only(tier, rng):
        return [Comparison("z", 0.0, 0.0, 0.0)]

    yield
    registry._CHECKS.clear()
    registry._CHECKS.update(saved)


def test_statuses_and_failure_semantics(toy_model):
    results = registry.run_checks("toy", "quick")
    status = {(r.check, r.comparison.measurement if r.comparison else None): r.status
              for r in results}
    assert status[("within", 1.05)] == "pass"
    assert status[("outside", 2.0)] == "fail"
    assert status[("claim", 1.0)] == "disagrees" and status[("claim", 0.01)] == "agrees"
    assert status[("crash", None)] == "error"
    assert status[("optional", None)] == "skipped"
    assert "full-only" not in {r.check for r in results}
    failing = {r.check for r in results if r.is_failure}
    assert failing == {"outside", "crash"}  # a paper disagreement or a skip does not fail a run
    counts = registry.summary_counts(results)
    assert counts["skipped"] == 1 and counts["disagrees"] == 1
    table = registry.format_table(results)
    assert "toy/outside" in table and "fail" in table
    markdown = registry.format_markdown(results)
    assert "crashed" in markdown and "boom" in markdown


def test_seeds_are_reproducible(toy_model):
    @register_check("toy", "random")
    def random_check(tier, rng):
        return [Comparison("u", 0.0, float(rng.random()), 1.0)]

    first = [r.comparison.measurement for r in registry.run_checks("toy", "quick", seed=3)
             if r.check == "random"]
    again = [r.comparison.measurement for r in registry.run_checks("toy", "quick", seed=3)
             if r.check == "random"]
    other = [r.comparison.measurement for r in registry.run_checks("toy", "quick", seed=4)
             if r.check == "random"]
    assert first == again and first != other


def test_comparison_defaults():
    c = Comparison("q", 2.0, 2.5, 0.4)
    assert c.error == 0.5 and c.passed is False
    assert Comparison("q", 1.0, np.nan, 1.0).passed is False
