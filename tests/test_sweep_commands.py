"""The commands of a sweep compute what the library computes (issue 15), cell by cell, in this
process (no cluster): each adapter's outputs equal the flattened result of the library call
with the same parameters."""

from __future__ import annotations

import math

from diffphase.studies.hierarchy import plan_forward_backward, run_forward_backward
from diffphase.studies.memorization import critical_times
from diffphase.studies.sampler import sampler_error_report
from diffphase.sweep.spec import load_spec
from diffphase.sweep.tasks import run_cells
from diffphase.sweep.values import flatten


def _outcomes(spec: dict):
    checked = load_spec(spec)
    cells = list(checked.cells())
    outcomes = run_cells(checked.command, [(c.index, c.parameters) for c in cells], 0)
    assert [o.status for o in outcomes] == ["done"] * len(cells), [o.message for o in outcomes]
    return cells, outcomes


def _same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == value, key


def test_sampler_error_cells_equal_the_library_with_steps_for_T():
    cells, outcomes = _outcomes({"command": "sampler-error", "parameters": {"dim": 64},
                                 "grid": {"steps": [50, 200], "design": ["star", "ddim"]}})
    kls = set()
    for cell, outcome in zip(cells, outcomes, strict=True):
        p = cell.parameters
        expected = flatten(sampler_error_report(p["steps"], 64, design=p["design"]).summary())
        _same(outcome.values, expected)
        kls.add(outcome.values["kl"])
    assert len(kls) == 4  # four different configurations, not one repeated


def test_critical_times_cells_equal_the_library_along_a_zipped_axis():
    cells, outcomes = _outcomes({
        "command": "critical-times", "parameters": {"dim": 64, "n_train": 1000},
        "zip": {"law": {"fractions": [[1.0], [0.5, 0.5]], "variances": [[1.0], [4.0, 1.0]]}}})
    for cell, outcome in zip(cells, outcomes, strict=True):
        p = cell.parameters
        _same(outcome.values, flatten(critical_times(p["fractions"], p["variances"], 64, 1000)))
    assert "per_group_1_tau_c_rem_raw" in outcomes[1].values  # the two-group law has both


def test_simulate_hierarchy_cell_is_one_noise_level_of_the_experiment():
    cells, outcomes = _outcomes({
        "command": "simulate", "model": "hierarchy",
        "parameters": {"v": 8, "m": 2, "s": 2, "depth": 3, "samples": 40, "population": 0},
        "grid": {"noise": [0.2, 0.7]}, "seeds": [0, 1]})
    for cell, outcome in zip(cells, outcomes, strict=True):
        p = cell.parameters
        run = run_forward_backward(plan_forward_backward(8, 2, 2, None, [3], "eps",
                                                         [p["noise"]], 40, 0, seed=p["seed"]))
        assert outcome.values["class_preservation_posterior"] == \
            run[0].columns["class_preservation_posterior"][0]
        assert outcome.values["class_preservation_mean_field"] == \
            run[0].columns["class_preservation_mean_field"][0]
