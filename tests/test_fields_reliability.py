"""``diffphase diagnose`` and the score-field library on hostile input (THEORY E).

The README's promise, class by class: user code that fails (at import, at lookup, at any call,
with a wrong output) is one line naming ``--score``; every error names the option as typed; huge
jobs are refused from the options alone; every non-finite output value has a flag beside it;
extreme but valid values compute stably or are refused with the range; the Python API raises the
typed errors of :mod:`diffphase.errors`, never a raw numpy error.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap

import numpy as np
import pytest

from diffphase.cli import main
from diffphase.commands import fields as requests
from diffphase.errors import ParameterError
from diffphase.process import get_process
from diffphase.simulate import fields as diag
from diffphase.simulate.integrators import log_tau_grid, log_tau_grid_size
from diffphase.simulate.jacobians import (
    CallableScore,
    TimeScore,
    UserCodeError,
    central_difference_jacobian,
    checked_output,
    jacobian,
    load_callable,
    orthonormal_probes,
)

MODEL = ["--model", "linear-manifold"]


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def refused(argv, capsys, tmp_path) -> str:
    """Run ``diagnose argv``; assert the promise for bad input; return the error line."""
    code, out, err = run(["diagnose", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "fields_diagnose.csv").exists()
    return lines[0]


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """Importable user modules: scores that misbehave in every way, and broken modules."""
    (tmp_path / "rel_scores.py").write_text(textwrap.dedent("""
        import numpy as np
        def good(x, t):
            return -x / (1.0 + t)
        def raises_value(x, t):
            raise ValueError("bad value\\nsecond line")
        def raises_key(x, t):
            return {}["missing"]
        def fails_late(x, t):
            if t < 0.05:
                raise RuntimeError("only at small t")
            return -x / (1.0 + t)
        def nan_late(x, t):
            return -x / (1.0 + t) if t > 0.05 else np.full_like(x, np.nan)
        def returns_none(x, t):
            return None
        def returns_text(x, t):
            return "not an array"
        def returns_complex(x, t):
            return -x + 1j
        def returns_objects(x, t):
            return np.array([object()] * x.size).reshape(x.shape)
        def returns_scalar(x, t):
            return 1.0
        def exits(x, t):
            raise SystemExit(0)
        def constant(x, t):
            return np.ones_like(x)
        def chatty(x, t):
            print("called at", t)
            return -x / (1.0 + t)
        class Broken:
            def __getattr__(self, name):
                raise RuntimeError("no attributes")
        broken = Broken()
    """))
    (tmp_path / "rel_syntax.py").write_text("def f(x, t)\n    return x\n")
    (tmp_path / "rel_import_error.py").write_text("raise ZeroDivisionError('at import')\n")
    (tmp_path / "rel_import_exit.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("rel_scores", "rel_syntax", "rel_import_error", "rel_import_exit"):
        sys.modules.pop(name, None)


# --------------------------------------------------------------------------- 1. user code
@pytest.mark.parametrize("target, words", [
    ("rel_scores:raises_value", ["ValueError", "bad value second line"]),
    ("rel_scores:raises_key", ["KeyError", "missing"]),
    ("rel_scores:fails_late", ["RuntimeError", "only at small t", "at t = 0.0"]),
    ("rel_scores:exits", ["SystemExit"]),
    ("rel_scores:nan_late", ["non-finite", "at t = 0.0"]),
    ("rel_scores:returns_none", ["output", "NoneType"]),
    ("rel_scores:returns_text", ["output", "str"]),
    ("rel_scores:returns_complex", ["output", "complex"]),
    ("rel_scores:returns_objects", ["output", "object"]),
    ("rel_scores:returns_scalar", ["output shape"]),
    ("rel_scores:broken.attribute", ["a name defined in module rel_scores"]),
    ("rel_syntax:f", ["SyntaxError"]),
    ("rel_import_error:f", ["ZeroDivisionError", "at import"]),
    ("rel_import_exit:f", ["SystemExit", "3"]),
])
def test_user_code_failures_are_one_line_naming_score(tmp_path, capsys, user_modules, target,
                                                       words):
    line = refused(["--score", target, "--dim", "3", "--times", "0.01,1", "--points", "2"],
                   capsys, tmp_path)
    assert "--score" in line
    for word in words:
        assert word in line, line


def test_user_code_errors_are_parameter_errors_from_python(user_modules):
    with pytest.raises(UserCodeError, match=r"--score rel_scores:raises_value raised ValueError"):
        requests.field_source("ve", score="rel_scores:raises_value", dim=3)
    assert issubclass(UserCodeError, ParameterError)
    field = CallableScore(TimeScore(load_callable("rel_scores:fails_late"), get_process("ve"),
                                    name="mine"), 2, name="mine")
    field.score(np.ones((1, 2)), 1.0, 1.0)
    with pytest.raises(UserCodeError, match=r"mine raised RuntimeError at t = 0\.01"):
        field.score(np.ones((1, 2)), 1.0, 0.01)
    plain = CallableScore(lambda x, a, D: 1 / 0, 2, name="plain")
    with pytest.raises(UserCodeError, match="plain raised ZeroDivisionError"):
        plain.score(np.ones((1, 2)), 1.0, 1.0)


def test_printing_user_code_keeps_stdout_for_the_results(tmp_path, capsys, user_modules):
    code, out, err = run(["diagnose", "--score", "rel_scores:chatty", "--dim", "2", "--times",
                          "1", "--points", "1", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["parameters"]["dim"] == 2
    assert "printed to stdout" in err


# --------------------------------------------------------------------------- 2. option names
BAD_VALUES = [
    ("--seed", "-1"), ("--rotation", "nan"), ("--rotation", "inf"), ("--rotation", "1e300"),
    ("--t-start", "nan"), ("--t-start", "0.001"), ("--t-start", "1e300"), ("--times", "nan"),
    ("--times", "-1"), ("--times", "0"), ("--times", "1e300"), ("--times", "1e-300"),
    ("--times", "a,b"), ("--threshold", "0"), ("--threshold", "nan"), ("--threshold", "-1"),
    ("--relative-step", "0"), ("--relative-step", "nan"), ("--relative-step", "2"),
    ("--data-variance", "-1"), ("--data-variance", "inf"), ("--data-variance", "1e300"),
    ("--points", "0"), ("--points", "-1"), ("--points", "2.5"), ("--probes", "0"),
    ("--probes", "17"), ("--dim", "1"), ("--dim", "-5"), ("--samples", "1"), ("--steps", "1"),
    ("--steps", "-1"), ("--steps-per-efold", "0"), ("--steps-per-efold", "100000"),
    ("--fractions", "0"), ("--fractions", "0.9,0.9"), ("--fractions", "nan"),
    ("--variances", "-1,1"), ("--variances", "0,1"), ("--variances", "1e300,1"),
    ("--route", "autograd"), ("--route", "nope"), ("--process", "nope"),
    ("--subspace", "nope"), ("--device", "gpu"), ("--reference", "/nonexistent.npy"),
]


@pytest.mark.parametrize("option, value", BAD_VALUES)
def test_every_bad_value_names_its_option(tmp_path, capsys, option, value):
    quick = {"--times": "0.1,1", "--points": "2"}
    line = refused([*MODEL, option, value, *(f for o, v in quick.items() if o != option
                                             for f in (o, v))], capsys, tmp_path)
    assert option in line or f"'{option}'" in line, line


@pytest.mark.parametrize("argv, option", [
    (["--score", "rel_scores:good", "--dim", "3", "--rotation", "0.5"], "--rotation"),
    (["--score", "rel_scores:good", "--dim", "3", "--route", "closed-form"], "--route"),
    (["--score", "rel_scores:good", "--dim", "3", "--probes", "4"], "--probes"),
    (["--score", "rel_scores:good", "--dim", "0"], "--dim"),
    (["--model", "empirical", "--rotation", "0.5"], "--rotation"),
    (["--process", "ddpm", *MODEL, "--times", "0.5"], "--times"),
    (["--process", "ddpm", *MODEL, "--times", "1001"], "--times"),
    (["--process", "ou", *MODEL, "--times", "40"], "--times"),
    (["--process", "ddpm", "--schedule", "li-yan", "--steps", "3", *MODEL, "--times", "2"],
     "--steps"),
])
def test_combinations_name_the_option(tmp_path, capsys, user_modules, argv, option):
    assert option in refused(argv, capsys, tmp_path)


# --------------------------------------------------------------------------- 3. size bounds
@pytest.mark.parametrize("argv, option", [
    ([*MODEL, "--points", "1000000000000"], "--points"),
    ([*MODEL, "--points", "9223372036854775808"], "--points"),
    ([*MODEL, "--dim", "100000"], "--dim"),
    ([*MODEL, "--dim", "3000", "--points", "1000"], "--dim"),
    (["--model", "empirical", "--samples", "1000000000000"], "--samples"),
    ([*MODEL, "--process", "ddpm", "--steps", "1000000000000", "--times", "5"], "--steps"),
    (["--score", "rel_scores:good", "--dim", "1000000"], "--dim"),
    ([*MODEL, "--times", ",".join(str(t) for t in np.geomspace(1e-3, 1e3, 200_000)),
      "--points", "100000"], "--points"),
])
def test_huge_jobs_are_refused_before_any_work(tmp_path, capsys, user_modules, argv, option):
    line = refused(argv, capsys, tmp_path)
    assert option in line and "budget" in line and "GiB" in line, line


def test_the_budget_is_a_parameter_and_names_the_largest_option():
    assert 0 < diag.MEMORY_BUDGET_BYTES <= max(4 * 2**30, _physical_memory())
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match=r"--points.*memory budget"):
        requests.prepare_diagnosis("ve", [1.0], rng=rng, model="linear-manifold",
                                   points=10_000, max_memory=2**20)
    with pytest.raises(ParameterError, match=r"--dim.*memory budget"):
        requests.prepare_diagnosis("ve", [1.0], rng=rng, model="linear-manifold", dim=400,
                                   max_memory=2**20)
    with pytest.raises(ParameterError, match=r"operations budget"):
        requests.prepare_diagnosis("ve", [1.0], rng=rng, model="linear-manifold",
                                   max_operations=1e3)
    field = diag.gaussian_score_field(np.eye(3))
    with pytest.raises(ParameterError, match=r"points.*memory budget"):
        diag.diagnose_field(field, "ve", [1.0], rng=rng, points=100_000, max_memory=2**20)


def _physical_memory() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_cost_estimate_counts_the_grid_and_grows_with_each_size():
    ve = get_process("ve")
    times = np.array([10.0, 0.1, 0.01])
    assert log_tau_grid_size(ve, 20.0, times, 40) == log_tau_grid(ve, 20.0, times, 40).size

    def total(**kw):
        options = {"points": 8, "dim": 16, "model": "linear-manifold", "route": "closed-form"}
        terms = diag.diagnosis_cost(ve, times, **{**options, **kw})
        return sum(t.memory for t in terms), sum(t.operations for t in terms)

    base = total()
    for change in ({"points": 80}, {"dim": 160}, {"steps_per_efold": 400}):
        bigger = total(**change)
        assert bigger[0] > base[0] and bigger[1] > base[1], change


# --------------------------------------------------------------------------- 4. flags, extremes
def _flagged_nonfinite(tmp_path, stdout_json) -> None:
    """Every NaN cell of a CSV has a flag column; every null of the JSON a flag key beside it."""
    for path in tmp_path.glob("*.csv"):
        with path.open() as handle:
            rows = list(csv.reader(handle))
        has_nan = any(c.lower() in {"nan", "inf", "-inf"} for row in rows[1:] for c in row)
        assert not has_nan or {"finite", "n_nonfinite"} & set(rows[0]), path.name
    for document in (stdout_json, json.loads((tmp_path / "fields_diagnose.json").read_text())):
        for point in document["time_points"]:
            nulls = sum(v is None or (isinstance(v, list) and None in v) for v in point.values())
            assert point["n_nonfinite"] >= nulls > 0 or nulls == 0
        assert document["convergence"]["n_nonfinite"] == sum(
            p["n_nonfinite"] for p in document["time_points"])


def test_undefined_values_are_flagged_in_every_output(tmp_path, capsys, user_modules):
    code, out, _ = run(["diagnose", "--score", "rel_scores:constant", "--dim", "3", "--times",
                        "0.1,1", "--points", "2", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    points = summary["time_points"]
    assert all(p["nonconservativeness"] is None and p["n_nonfinite"] == 1 for p in points)
    _flagged_nonfinite(tmp_path, summary)
    rows = list(csv.DictReader((tmp_path / "fields_diagnose_summary.csv").open()))
    assert all(r["nonconservativeness"] == "nan" and r["n_nonfinite"] == "1" for r in rows)
    assert all(r["finite"] == "true"
               for r in csv.DictReader((tmp_path / "fields_diagnose.csv").open()))


def test_parameters_that_do_not_apply_are_left_out_not_null(tmp_path, capsys):
    code, out, _ = run(["diagnose", *MODEL, "--times", "1", "--points", "1", "--out",
                        str(tmp_path), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and "samples" not in summary["parameters"]
    assert "relative_step" not in summary["solver"]
    assert all(v is not None for k, v in summary["parameters"].items() if k != "score")


@pytest.mark.parametrize("process, times", [("ve", "1e-30,1e-10,1e30"),
                                            ("ou", "5e-31,1e-10,34.5"), ("ddpm", "1,1000")])
def test_extreme_times_compute_stably_with_the_exact_score(tmp_path, capsys, process, times):
    code, out, err = run(["diagnose", *MODEL, "--process", process, "--times", times,
                          "--subspace", "orthonormal", "--points", "2", "--out", str(tmp_path),
                          "--json"], capsys)
    assert code == 0, err
    points = json.loads(out)["time_points"]
    assert all(p["n_nonfinite"] == 0 for p in points)
    assert points[0]["local_dimension"] == 0 and points[-1]["local_dimension"] == 4
    np.testing.assert_allclose(points[-1]["singular_values"][:12], 1.0, atol=1e-12)
    assert max(p["nonconservativeness"] for p in points) < 1e-12


@pytest.mark.parametrize("threshold, dimension", [("1e300", 16), ("5e-324", 0)])
def test_threshold_at_its_bounds(tmp_path, capsys, threshold, dimension):
    code, out, _ = run(["diagnose", *MODEL, "--threshold", threshold, "--times", "1",
                        "--points", "1", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0 and json.loads(out)["time_points"][0]["local_dimension"] == dimension


def test_central_differences_lost_to_rounding_are_refused(tmp_path, capsys):
    line = refused([*MODEL, "--route", "central", "--relative-step", "1e-300", "--times", "1"],
                   capsys, tmp_path)
    assert "--relative-step" in line and "rounding" in line
    line = refused([*MODEL, "--route", "central", "--times", "1e-25,1"], capsys, tmp_path)
    assert "--times" in line and "central differences" in line


def test_extreme_data_variance_is_within_range_or_refused(tmp_path, capsys, user_modules):
    code, out, _ = run(["diagnose", "--score", "rel_scores:good", "--dim", "2", "--times", "1",
                        "--data-variance", "1e30", "--points", "2", "--out", str(tmp_path),
                        "--json"], capsys)
    assert code == 2 or json.loads(out)["time_points"][0]["n_nonfinite"] == 0
    line = refused(["--score", "rel_scores:good", "--dim", "2", "--data-variance", "1e300"],
                   capsys, tmp_path)
    assert "--data-variance" in line and "1e+30" in line


# --------------------------------------------------------------------------- 5. Python API
def _field():
    return diag.gaussian_score_field(np.diag([2.0, 0.5, 0.0]))


@pytest.mark.parametrize("call, name", [
    (lambda: diag.diagnose_jacobians(np.zeros((0, 3, 3)), 1.0, 1.0), "jac"),
    (lambda: diag.diagnose_jacobians(np.full((1, 3, 3), np.nan), 1.0, 1.0), "jac"),
    (lambda: diag.diagnose_jacobians(np.zeros((1, 3, 2)), 1.0, 1.0), "jac"),
    (lambda: diag.diagnose_jacobians(np.zeros((3, 3)), 1.0, 1.0), "jac"),
    (lambda: diag.diagnose_jacobians(-np.eye(3)[None], 1.0, -1.0), "D"),
    (lambda: diag.diagnose_jacobians(-np.eye(3)[None], 0.0, 1.0), "a"),
    (lambda: diag.diagnose_jacobians(-np.eye(3)[None], 1.0, 1.0,
                                     reference_basis=np.ones((2, 1))), "reference_basis"),
    (lambda: diag.split_symmetric(np.zeros((2, 3))), "jac"),
    (lambda: diag.nonconservativeness(np.zeros(3)), "jac"),
    (lambda: diag.local_dimension_gap(np.array([])), "singular_values"),
    (lambda: diag.local_dimension_threshold(np.array([np.nan])), "singular_values"),
    (lambda: diag.principal_angles(np.eye(3)[:, :1], np.eye(4)[:, :1]), "basis_b"),
    (lambda: diag.complement_basis(np.ones((2, 3))), "basis"),
    (lambda: diag.local_tangent_features(-np.eye(3)[None], 4), "count"),
    (lambda: diag.plane_rotation(np.eye(3)[:, :1]), "j"),
    (lambda: diag.gaussian_score_field(np.zeros((0, 0))), "covariance"),
    (lambda: diag.gaussian_score_field(np.array([[np.nan]])), "covariance"),
    (lambda: diag.rotated_gaussian_field(np.eye(2), np.array([[0, 1], [-1, 0]]), np.nan), "rate"),
    (lambda: diag.linear_manifold_field((0.5,), (1.0,), 4, rotation=np.inf), "rotation"),
    (lambda: diag.orthonormal_basis(np.zeros((3, 0))), "matrix"),
    (lambda: _field().score(np.zeros((0, 3)), 1.0, 1.0), "x"),
    (lambda: _field().score(np.zeros((2, 4)), 1.0, 1.0), "x"),
    (lambda: _field().jacobian(np.zeros((1, 3)), 1.0, 0.0), "D"),
    (lambda: jacobian(_field(), np.zeros((0, 3)), 1.0, 1.0), "x"),
    (lambda: jacobian(_field(), np.zeros((1, 3)), -1.0, 1.0), "a"),
    (lambda: jacobian(object(), np.zeros((1, 3)), 1.0, 1.0), "field"),
    (lambda: jacobian(_field(), [[np.nan] * 3], 1.0, 1.0, route="central"), "x"),
    (lambda: central_difference_jacobian(_field(), np.zeros((1, 3)), 1.0, 1.0, 0.0), "step"),
    (lambda: central_difference_jacobian(_field(), np.zeros((1, 3)), 1.0, 1.0, 1e-3,
                                         probes=np.ones((2, 1))), "probes"),
    (lambda: orthonormal_probes(3, 2, rng=None), "rng"),
    (lambda: CallableScore(lambda x, a, D: x, 2).score(np.ones((1, 2)), 1.0, np.nan), "D"),
    (lambda: checked_output("f", np.ones(3, dtype=complex), (3,)), "f output"),
    (lambda: diag.diagnose_field(_field(), "ve", [], rng=np.random.default_rng(0)), "times"),
    (lambda: diag.diagnose_field(_field(), "ve", [1.0], rng=0), "rng"),
    (lambda: diag.diagnose_field(object(), "ve", [1.0], rng=np.random.default_rng(0)), "field"),
    (lambda: diag.diagnose_field(_field(), "ve", [1.0], rng=np.random.default_rng(0),
                                 points=0), "points"),
    (lambda: requests.diagnosis_tables([]), "summaries"),
    (lambda: requests.load_reference(np.full((3, 1), np.nan), 3), "--reference"),
])
def test_python_api_raises_typed_errors(call, name):
    with pytest.raises(ParameterError) as info:
        call()
    assert info.value.name.startswith(name), str(info.value)


def test_a_flow_that_overflows_names_the_field():
    explosive = diag.LinearField(lambda a, D: 1e150 * np.eye(2), 2, name="explosive field")
    with pytest.raises(ParameterError, match="explosive field"):
        diag.diagnose_field(explosive, "ve", [0.01, 10.0], points=2,
                            rng=np.random.default_rng(0))


def test_exact_fields_are_exact_at_extreme_noise_levels():
    """``-(a^2 C + D I)^{-1}`` without an inverse: normal directions give ``Jn = -1`` exactly and
    tangent ones ``-tau/(tau + lambda)`` at any ``tau`` in the allowed range."""
    rng = np.random.default_rng(3)
    field, data, basis = diag.linear_manifold_field((0.25,), (2.0,), 8, rng=rng)
    lam = np.clip(np.linalg.eigvalsh(basis.T @ data.covariance() @ basis), 0, None)
    for tau in diag.TAU_RANGE:
        jn = tau * field.jacobian(np.zeros((1, 8)), 1.0, tau)[0]
        eig = np.sort(np.linalg.eigvalsh(0.5 * (jn + jn.T)))
        expected = np.sort(np.concatenate([-tau / (tau + lam), -np.ones(8 - lam.size)]))
        np.testing.assert_allclose(eig, expected, rtol=1e-12, atol=1e-14)
        x = rng.standard_normal((3, 8))
        np.testing.assert_allclose(field.score(x, 1.0, tau) * tau, x @ jn.T, rtol=1e-10,
                                   atol=1e-10 * np.abs(x).max())
    assert math.isfinite(diag.gaussian_score_field(np.diag([1.0, 0.0])).matrix_at(1.0, 1e-30)[1, 1])
