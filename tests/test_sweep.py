"""Sweeps on a LocalCluster of two single-threaded worker processes (issue 15): cell-by-cell
agreement with the sequential library calls, interruption and resume, a worker killed
mid-task, failing cells recorded without stopping the sweep, and the store as xarray reads it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")

from diffphase.errors import ParameterError, require_finite  # noqa: E402
from diffphase.studies.hierarchy import hierarchy_thresholds  # noqa: E402
from diffphase.sweep import run  # noqa: E402
from diffphase.sweep.commands import SweepCommand  # noqa: E402
from diffphase.sweep.spec import load_spec  # noqa: E402
from diffphase.sweep.values import flatten  # noqa: E402

THRESHOLDS_2D = {"command": "thresholds", "parameters": {"s": 2},
                 "grid": {"v": [8, 16, 32], "m": [2, 4]}}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as made:
        yield made


def _square_command(name: str, compute) -> SweepCommand:
    """A small command of one parameter ``x`` computed by ``compute`` (run in the workers)."""

    def check(params: dict) -> None:
        require_finite("x", params["x"])

    return SweepCommand(name, {"x": None, "marker": None}, check, compute, seeded=False,
                        required=("x",))


def test_smallest_spec_of_the_issue_opens_with_open_zarr(client, tmp_path):
    spec = tmp_path / "smallest.toml"
    spec.write_text('command = "thresholds"\n[grid]\nv = [16, 32]\nm = [4, 8]\ns = [2, 3]\n')
    run(str(spec), client, out=tmp_path / "smallest.zarr")
    ds = xr.open_zarr(tmp_path / "smallest.zarr")
    assert ds["eps_star"].dims == ("v", "m", "s")
    assert (ds["status"].values == "done").all()
    np.testing.assert_array_equal(ds["v"].values, [16, 32])
    # provenance: the spec and the package version travel with the store
    assert json.loads(ds.attrs["spec"])["grid"]["s"] == [2, 3]
    assert ds.attrs["diffphase_version"]
    assert "xarray" in json.loads(ds.attrs["run_metadata"])["dependencies_of_the_sweep"]


def test_thresholds_sweep_equals_the_sequential_results_cell_by_cell(client, tmp_path):
    ds = run(THRESHOLDS_2D, client, out=tmp_path / "t.zarr").load()
    assert ds["eps_star"].dims == ("v", "m")
    compared = 0
    for v in (8, 16, 32):
        for m in (2, 4):
            expected = flatten(hierarchy_thresholds(v, m, 2))
            cell = ds.sel(v=v, m=m)
            assert cell["status"].item() == "done"
            for name, value in expected.items():
                if name in ("v", "m", "s"):
                    continue
                got = cell[name].item()
                if isinstance(value, str):
                    assert got == value, (v, m, name)
                else:
                    np.testing.assert_array_equal(got, value, err_msg=f"{v} {m} {name}")
                compared += 1
    assert compared >= 6 * 8
    # the regimes differ across the grid, so the comparison is not of one repeated cell
    assert len(np.unique(ds["eps_star"].values[np.isfinite(ds["eps_star"].values)])) > 2


def test_a_second_identical_run_computes_nothing(client, tmp_path):
    out = tmp_path / "twice.zarr"
    run(THRESHOLDS_2D, client, out=out)
    before = xr.open_zarr(out)["seconds"].values.copy()
    again = run(THRESHOLDS_2D, client, out=out)
    counts = json.loads(again.attrs["last_run"])
    assert counts["computed"] == 0 and counts["skipped"] == 6
    np.testing.assert_array_equal(xr.open_zarr(out)["seconds"].values, before)


def test_an_interrupted_sweep_resumes_to_the_full_store(client, tmp_path):
    spec = {**THRESHOLDS_2D, "cells_per_task": 1}
    out = tmp_path / "interrupted.zarr"

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(spec, client, out=out, progress=stop_after_two)
    partial = xr.open_zarr(out)
    kept = partial["status"].values == "done"
    assert 2 <= kept.sum() < 6  # what finished is kept, the rest is missing
    first_seconds = partial["seconds"].values.copy()
    assert json.loads(partial.attrs["last_run"])["interrupted"] is True

    full = run(spec, client, out=out, resume=True)
    counts = json.loads(full.attrs["last_run"])
    assert counts["computed"] == 6 - kept.sum()  # no cell computed twice
    assert counts["skipped"] == kept.sum()
    assert (full["status"].values == "done").all()  # no cell missing
    np.testing.assert_array_equal(full["seconds"].values[kept], first_seconds[kept])
    reference = run(THRESHOLDS_2D, client, out=tmp_path / "straight.zarr")
    np.testing.assert_array_equal(full["eps_star"].values, reference["eps_star"].values)


def test_a_failing_cell_is_recorded_and_the_sweep_finishes(client, tmp_path):
    marker = tmp_path / "first-attempt"

    def compute(params: dict) -> dict:
        x = params["x"]
        if x == 3:
            raise ValueError(f"no value at x = {x}")
        if x == 2 and not os.path.exists(params["marker"]):  # fails once, then succeeds
            Path(params["marker"]).touch()
            raise RuntimeError("transient")
        return {"square": x * x}

    command = _square_command("flaky", compute)
    spec = load_spec({"command": "flaky", "parameters": {"marker": str(marker)},
                      "grid": {"x": [1, 2, 3, 4]}, "retries": 1}, commands={"flaky": command})
    ds = run(spec, client, out=tmp_path / "flaky.zarr").load()
    status = dict(zip(ds["x"].values.tolist(), ds["status"].values.tolist(), strict=True))
    assert status == {1: "done", 2: "done", 3: "failed", 4: "done"}
    np.testing.assert_array_equal(ds["square"].sel(x=[1, 2, 4]).values, [1, 4, 16])
    assert np.isnan(ds["square"].sel(x=3).item())
    assert "ValueError: no value at x = 3" in ds["error"].sel(x=3).item()
    failed = json.loads(ds.attrs["failed_cells"])
    assert [f["cell"] for f in failed] == ["x=3"] and "no value" in failed[0]["error"]
    # without --resume a failed cell stays recorded; with it, it is computed again
    assert json.loads(run(spec, client, out=tmp_path / "flaky.zarr").attrs["last_run"])[
        "failed"] == 0
    again = run(spec, client, out=tmp_path / "flaky.zarr", resume=True)
    assert json.loads(again.attrs["last_run"])["failed"] == 1


def test_a_worker_killed_mid_task_loses_nothing(client, tmp_path):
    marker = tmp_path / "killed-once"

    def compute(params: dict) -> dict:
        x = params["x"]
        if x == 5 and not os.path.exists(params["marker"]):
            Path(params["marker"]).touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        return {"square": x * x}

    command = _square_command("killer", compute)
    spec = load_spec({"command": "killer", "parameters": {"marker": str(marker)},
                      "grid": {"x": list(range(8))}, "cells_per_task": 1},
                     commands={"killer": command})
    out = tmp_path / "killed.zarr"
    ds = run(spec, client, out=out)
    assert marker.exists()  # the kill happened
    assert (ds["status"].values == "done").all()
    np.testing.assert_array_equal(xr.open_zarr(out)["square"].values, np.arange(8) ** 2)
    client.wait_for_workers(2, timeout=60)  # the nanny replaced the worker


def test_a_spec_error_runs_nothing(client, tmp_path):
    bad = {"command": "thresholds", "grid": {"v": [16, 32], "m": [4, 8], "s": [2, 99]}}
    with pytest.raises(ParameterError, match=r"s \(grid cell v=16, m=4, s=99\)"):
        run(bad, client, out=tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()


def test_the_command_line_runs_the_smallest_spec_on_its_own_cluster(tmp_path):
    import subprocess
    import sys

    (tmp_path / "small.toml").write_text(
        'command = "thresholds"\n[grid]\nv = [16, 32]\nm = [4, 8]\ns = [2, 3]\n')
    command = [sys.executable, "-m", "diffphase", "sweep", "small.toml", "--workers", "2",
               "--quiet"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "8 cells, 8 computed" in first.stdout
    ds = xr.open_zarr(tmp_path / "small.zarr")  # named after the spec
    assert ds["eps_star"].dims == ("v", "m", "s")
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "0 computed, 8 already in the store" in second.stdout


def test_netcdf_copy_holds_the_same_cells(client, tmp_path):
    ds = run(THRESHOLDS_2D, client, out=tmp_path / "n.zarr", netcdf=tmp_path / "n.nc")
    copy = xr.open_dataset(tmp_path / "n.nc")
    np.testing.assert_array_equal(copy["eps_star"].values, ds["eps_star"].values)
    assert list(copy["regime"].values.ravel()) == list(ds["regime"].values.ravel())


GLIBC = os.sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
FAULTS_PER_ARRAY = """
import resource
import numpy as np

def faults_per_array(repeats=50):
    np.ones(2**18).sum()  # 2 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        np.ones(2**18).sum()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats
"""


def _faults_per_array() -> float:
    """Minor page faults per 2 MiB array made, filled and freed (about 512 when each array is
    freshly mapped, about 0 when the heap reuses the memory)."""
    namespace: dict = {}
    exec(FAULTS_PER_ARRAY, namespace)  # noqa: S102  (the same text runs in the subprocess)
    return namespace["faults_per_array"]()


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_allocator_thresholds_undo_the_nannys_trim_setting():
    import subprocess
    import sys

    script = FAULTS_PER_ARRAY + """
from diffphase.sweep.tasks import restore_allocator_thresholds
before = faults_per_array()
assert restore_allocator_thresholds()
print(before, faults_per_array())
"""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}  # as a dask nanny sets it
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    before, after = map(float, done.stdout.split())
    assert before > 256  # every array mapped afresh: one fault per 4 KiB page
    assert after < 16


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_sweep_workers_reuse_heap_memory(client, tmp_path):
    run(THRESHOLDS_2D, client, out=tmp_path / "heap.zarr")  # registers the worker plugin
    faults = client.run(_faults_per_array)
    assert len(faults) == 2 and max(faults.values()) < 16, faults
