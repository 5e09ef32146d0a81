"""A 200-cell ``simulate`` sweep (hierarchy forward-backward, 20000 samples, one noise level
and seed a cell, about 0.3 s a cell on one thread) on dask.distributed: 2 workers against 1
(speed-up >= 1.7 on 2 cores), and 1 worker against the same cells computed in one process, one
after another, on one thread as a single-threaded worker computes them (the sweep's per-task
overhead: <= 10%, i.e. ratio >= 1 / 1.1). Each cluster is started and its workers' kernels
loaded outside the timing, as the loop's are; the timed sweep includes creating the store,
registering the worker plugin again, the tasks and the writes to the store (one chunk file per
cell and variable). The in-process loop runs numba and BLAS on one thread, as a
single-threaded worker does. Needs the ``sweep`` extra. Contract: see
benchmarks/run.py."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

SPEC = {"command": "simulate", "model": "hierarchy",
        "parameters": {"v": 16, "m": 4, "s": 2, "depth": 4, "samples": 20000, "population": 0},
        "grid": {"noise": {"start": 0.05, "stop": 0.95, "num": 20}},
        "seeds": {"start": 0, "stop": 9, "step": 1}}
QUICK_SPEC = {**SPEC, "grid": {"noise": {"start": 0.1, "stop": 0.9, "num": 5}},
              "seeds": [0, 1, 2, 3]}


def _sweep_seconds(spec, workers: int, folder: Path) -> float:
    from distributed import Client, LocalCluster

    from diffphase.sweep import run
    from diffphase.sweep.spec import load_spec
    from diffphase.sweep.tasks import kernel_warmup_plugin

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        # Outside the clock, as the in-process loop's warm-up: the workers load the kernels
        # (the plugin that run() registers again finds them loaded) and this process imports
        # the store's libraries. The clock then counts the per-task costs.
        client.register_plugin(kernel_warmup_plugin(load_spec(spec).command))
        import xarray  # noqa: F401
        import zarr  # noqa: F401

        start = time.perf_counter()
        ds = run(spec, client, out=folder / f"sweep-{workers}.zarr")
        seconds = time.perf_counter() - start
    assert (ds["status"].values == "done").all()
    return seconds


def _in_process_seconds(spec) -> float:
    import numba

    from diffphase.sweep.spec import load_spec
    from diffphase.sweep.tasks import warm_up

    checked = load_spec(spec)
    warm_up(checked.command)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # as in a single-threaded worker, whose nanny also sets
    try:                      # OMP/MKL/OPENBLAS_NUM_THREADS=1 for BLAS
        with _one_blas_thread():
            start = time.perf_counter()
            for cell in checked.cells():
                checked.command.compute(dict(cell.parameters))
            return time.perf_counter() - start
    finally:
        numba.set_num_threads(threads)


def _one_blas_thread():
    """BLAS limited to one thread (threadpoolctl, when installed), as in a dask worker."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def bench_sweep(quick: bool) -> list[dict]:
    from diffphase.sweep.spec import load_spec

    spec = QUICK_SPEC if quick else SPEC
    cells = load_spec(spec).size
    load = os.getloadavg()[0]
    rounds = 1 if quick else 2  # interleaved; the best of each, as other processes come and go
    loops, ones, twos = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            loops.append(_in_process_seconds(spec))
            ones.append(_sweep_seconds(spec, 1, Path(folder) / f"round-{round_}"))
            twos.append(_sweep_seconds(spec, 2, Path(folder) / f"round-{round_}"))
    loop, one, two = min(loops), min(ones), min(twos)
    each = "; ".join(f"round {k + 1}: loop {a:.1f} s, 1 worker {b:.1f} s, 2 workers {c:.1f} s"
                     for k, (a, b, c) in enumerate(zip(loops, ones, twos, strict=True)))
    return [
        {"benchmark": f"sweep simulate hierarchy, {cells} cells: 2 workers vs 1",
         "ours_s": two, "baseline_s": one, "ratio": one / two, "target": 1.7,
         "notes": f"speed-up of the same sweep; {os.cpu_count()} cores, load average "
                  f"{load:.1f} before the run (other processes share the cores); best of "
                  f"{rounds} interleaved rounds ({each})"},
        {"benchmark": f"sweep simulate hierarchy, {cells} cells: 1 worker vs in-process loop",
         "ours_s": one, "baseline_s": loop, "ratio": loop / one, "target": round(1 / 1.1, 4),
         "notes": f"per-task overhead {100 * (one / loop - 1):+.1f}% "
                  f"({1000 * (one - loop) / cells:+.1f} ms a cell; target <= 10%)"},
    ]


BENCHMARKS = [bench_sweep]
