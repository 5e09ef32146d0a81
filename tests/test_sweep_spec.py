"""Sweep specs (issue 15): grid expansion (lists, ranges, zipped axes, seeds) and every class of
spec error, refused before any task runs with one line and exit code 2. No cluster starts
here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffphase.cli import main
from diffphase.errors import ParameterError
from diffphase.sweep.runner import TASKS_PER_WORKER, chunk_cells, task_sizes
from diffphase.sweep.spec import load_spec, range_length, range_values


def _cli(args, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_ranges_zipped_axes_and_seeds_expand_in_order():
    spec = load_spec({"command": "thresholds", "parameters": {"m": 2},
                      "grid": {"v": {"start": 8, "stop": 16, "step": 4}},
                      "zip": {"shape": {"s": [2, 3], "n_c": [4, 8]}}, "seeds": [0, 7]})
    assert spec.dims == ("v", "shape", "seed") and spec.shape == (3, 2, 2)
    cells = list(spec.cells())
    assert len(cells) == 12
    assert cells[0].index == (0, 0, 0)
    assert {k: cells[0].parameters[k] for k in ("v", "m", "s", "n_c", "seed")} == \
        {"v": 8, "m": 2, "s": 2, "n_c": 4, "seed": 0}
    last = cells[-1].parameters
    assert (last["v"], last["s"], last["n_c"], last["seed"]) == (16, 3, 8, 7)
    # zipped parameters move together: never s = 2 with n_c = 8
    assert {(c.parameters["s"], c.parameters["n_c"]) for c in cells} == {(2, 4), (3, 8)}


@pytest.mark.parametrize("table, expected", [
    ({"start": 0.0, "stop": 1.0, "num": 5}, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ({"start": 1.0, "stop": 100.0, "num": 3, "log": True}, [1.0, 10.0, 100.0]),
    ({"start": 2, "stop": 11, "step": 3}, [2, 5, 8, 11]),
    ({"start": 0.1, "stop": 0.3, "step": 0.1}, [0.1, 0.2, 0.3]),
])
def test_range_values(table, expected):
    values = range_values("x", table)
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert range_length("x", table) == len(expected)


#: one spec per error class, with a word the one-line message must contain
SPEC_ERRORS = {
    "unknown command": ('command = "thresholdz"\n', "thresholdz"),
    "unknown parameter": ('command = "thresholds"\n[grid]\nv = [16]\nm = [4]\ns = [2]\n'
                          'w = [1]\n', "'w'"),
    "unknown spec key": ('command = "thresholds"\ngird = 1\n', "gird"),
    "missing parameter": ('command = "thresholds"\n[grid]\nv = [16]\nm = [4]\n', "s = None"),
    "invalid value in the last cell": (
        'command = "thresholds"\n[grid]\nv = [16, 32]\nm = [4, 8]\ns = [2, 3]\n'
        '[parameters]\nn_c = 40\n', "grid cell v=16, m=8, s=2"),
    "invalid value deep in the grid": (
        'command = "sampler-error"\n[grid]\nsteps = [100, 200]\nk = [2, 600]\n'
        '[parameters]\ndim = 512\n', "k (grid cell steps=100, k=600)"),
    "grid over the memory budget": (
        'command = "thresholds"\nmax_memory = "1M"\n[grid]\nv = {start = 2, stop = 2000, '
        'step = 1}\nm = [1, 2, 3]\ns = [2]\n', "memory budget"),
    "bad range": ('command = "thresholds"\n[grid]\nv = {start = 2, stop = 9}\n', "range"),
    "empty axis": ('command = "thresholds"\n[grid]\nv = []\n', "non-empty"),
    "zip of unequal lengths": ('command = "thresholds"\n[grid]\nv = [16]\n[zip.shape]\n'
                               'm = [4, 8]\ns = [2]\n', "one length"),
    "seeds of an unseeded command": ('command = "critical-times"\nseeds = [0, 1]\n', "seed"),
    "set twice": ('command = "thresholds"\n[parameters]\nv = 16\n[grid]\nv = [32]\n',
                  "set once"),
    "not TOML": ('command = "thresholds\n', "TOML"),
}


@pytest.mark.parametrize("name", sorted(SPEC_ERRORS))
def test_every_spec_error_is_one_line_exit_2_before_any_task(name, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, word = SPEC_ERRORS[name]
    (tmp_path / "spec.toml").write_text(text)
    code, err = _cli(["sweep", "spec.toml", "--out", "store.zarr", "--workers", "2"], capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert word in err[0], err
    assert not (tmp_path / "store.zarr").exists()  # nothing was created, nothing ran


def test_a_spec_error_is_a_parameter_error_from_python():
    with pytest.raises(ParameterError, match="a parameter of thresholds"):
        load_spec({"command": "thresholds", "grid": {"q": [1]}})


def test_options_that_exclude_each_other(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text('command = "thresholds"\n')
    code, err = _cli(["sweep", "spec.toml", "--scheduler", "tcp://localhost:1",
                      "--workers", "2"], capsys)
    assert code == 2 and len(err) == 1 and "--workers" in err[0]
    code, err = _cli(["sweep", "missing.toml"], capsys)
    assert code == 2 and len(err) == 1 and "missing.toml" in err[0]


def test_importing_the_package_or_the_sweep_loads_no_dask():
    code = ("import sys, diffphase, diffphase.sweep, diffphase.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'xarray', 'zarr')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


@settings(max_examples=200, deadline=None)
@given(cells=st.integers(1, 5000), workers=st.integers(1, 64))
def test_guided_task_sizes_cover_the_cells_and_shrink_to_one(cells, workers):
    sizes = task_sizes(cells, workers)
    cap = max(1, cells // (TASKS_PER_WORKER * workers))
    assert sum(sizes) == cells and min(sizes) >= 1 and max(sizes) <= cap
    assert all(a >= b for a, b in zip(sizes[:-1], sizes[1:], strict=True))  # long ones first
    assert sizes[-1] == 1  # the last task is one cell: no worker waits on a long one
    # enough tasks to keep every worker busy, and not many more than the cap implies
    assert len(sizes) >= min(cells, workers)
    remaining = cells
    for size in sizes:  # never more than the rest shared by twice the workers
        assert size <= max(1, -(-remaining // (2 * workers)))
        remaining -= size


def test_fixed_task_sizes_and_groups_of_cells():
    assert task_sizes(10, 2, per_task=4) == [4, 4, 2]
    # 200 // (8 tasks x 2 workers) = 12 until the rest shared by 4 is less: ceil(44 / 4) = 11,
    # ceil(33 / 4) = 9, ceil(24 / 4) = 6, ... (the example of docs/sweep.rst)
    assert task_sizes(200, 2) == [12] * 13 + [11, 9, 6, 5, 4, 3, 2, 1, 1, 1, 1]
    groups = chunk_cells(list(range(7)), [3, 2, 1, 1])
    assert groups == [[0, 1, 2], [3, 4], [5], [6]]
