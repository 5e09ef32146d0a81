"""Run a sweep on dask.distributed and collect its cells into the store.

Contract: :func:`run` checks the spec (:func:`~diffphase.sweep.spec.load_spec`: every error
before any task), opens or creates the store (:class:`~diffphase.sweep.store.SweepStore`),
leaves out the cells already done (and the failed ones unless ``resume``), groups the rest into
tasks of consecutive cells (:func:`task_sizes`: shrinking towards the end, so that the workers
finish together) and submits them, in order, to a ``distributed`` client: the one given, one
connected to ``scheduler`` (an address), or an embedded ``LocalCluster`` of ``workers``
single-threaded processes that is closed at the end. Each finished task's cells are written to
the store at once, by this process only; a task lost with its worker is run again elsewhere by
the scheduler, and a task that fails as a whole (a worker killed too often) records its cells as
failed. Ctrl-C cancels what is left and keeps what is written. ``progress(done, total)`` is
called after each task; the return value is the store as a Dataset, with the failed cells
listed in ``attrs["failed_cells"]`` and the counts of this run in ``attrs["last_run"]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .spec import Cell, SweepSpec, cell_label, load_spec
from .store import SweepStore
from .tasks import CellOutcome, kernel_warmup_plugin, run_cells

#: tasks per worker a sweep is cut into by default (enough to balance, few enough that the
#: per-task overhead stays small)
TASKS_PER_WORKER = 8


def default_store(spec_path: str | Path | None) -> Path:
    """``NAME.zarr`` in the working folder, named after the spec file (``sweep.zarr`` for a
    spec that is not a file)."""
    stem = Path(spec_path).stem if spec_path else "sweep"
    return Path(f"{stem}.zarr")


def pending_cells(spec: SweepSpec, store: SweepStore, resume: bool) -> list[Cell]:
    """The cells still to compute: not done, and (unless ``resume``) never attempted."""
    status = store.statuses()
    skip = {"done"} if resume else {"done", "failed"}
    return [cell for cell in spec.cells() if status[cell.index] not in skip]


def task_sizes(n_cells: int, n_workers: int, per_task: int | None = None) -> list[int]:
    """How many cells each task computes, in the order the tasks are submitted.

    ``per_task`` given (the spec's ``cells_per_task``): that many each (the last one the rest).
    Otherwise guided: at most ``n_cells // (TASKS_PER_WORKER * n_workers)`` cells a task (so
    that an interrupted sweep has written most of what it computed), and never more than the
    remaining cells divided by twice the workers, so that the tasks shrink to one cell at the
    end and no worker waits idle for another's last long task."""
    if per_task is not None:
        return [min(per_task, n_cells - start) for start in range(0, n_cells, per_task)]
    cap = max(1, n_cells // (TASKS_PER_WORKER * n_workers))
    sizes, remaining = [], n_cells
    while remaining:
        size = min(cap, -(-remaining // (2 * n_workers)))
        sizes.append(size)
        remaining -= size
    return sizes


def chunk_cells(cells: list[Cell], sizes: list[int]) -> list[list[Cell]]:
    """Consecutive groups of cells of the given ``sizes`` (which sum to ``len(cells)``)."""
    groups, start = [], 0
    for size in sizes:
        groups.append(cells[start:start + size])
        start += size
    return groups


@contextlib.contextmanager
def sweep_client(client=None, scheduler: str | None = None,
                 workers: int | None = None) -> Iterator[object]:
    """The client to use: ``client`` as given, one connected to ``scheduler``, or an embedded
    ``LocalCluster`` of ``workers`` processes (default: the CPU count); the ones made here are
    closed on exit."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as made:
            yield made
        return
    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as made:
        yield made


def run(spec, client=None, *, out: str | Path | None = None, resume: bool = False,
        force: bool = False, scheduler: str | None = None, workers: int | None = None,
        netcdf: str | Path | None = None, max_memory: float | None = None,
        progress: Callable[[int, int], None] | None = None):
    """Run a sweep and return its store as an ``xarray.Dataset`` (see the module docstring).

    Parameters
    ----------
    spec : a path to a TOML spec, TOML text, a mapping or a checked ``SweepSpec``.
    client : a ``distributed.Client`` to run on (default: see ``scheduler`` and ``workers``).
    out : the Zarr store (default ``<spec name>.zarr``); an existing store of the same spec is
        continued, one of another spec is an error unless ``force``.
    resume : also compute again the cells that failed in an earlier run.
    netcdf : also write a netCDF copy of the store there at the end.
    max_memory : memory budget in bytes (default the spec's, else half the machine's memory).
    """
    spec_path = spec if isinstance(spec, (str, Path)) and str(spec).endswith(".toml") else None
    spec = load_spec(spec, max_memory=max_memory)
    if netcdf is not None and Path(netcdf).exists() and not force:
        raise FileExistsError(f"{netcdf} exists (use --force to overwrite it)")
    store = SweepStore(out or default_store(spec_path), spec)
    store.prepare(force=force)
    cells = pending_cells(spec, store, resume)
    counts = {"cells": spec.size, "skipped": spec.size - len(cells), "computed": 0,
              "failed": 0, "interrupted": False}
    try:
        if cells:
            with sweep_client(client, scheduler, workers) as active:
                _submit_and_collect(spec, store, cells, active, counts, progress)
    except BaseException:
        counts["interrupted"] = True
        raise
    finally:
        store.finish(counts, _failed_cells(spec, store) if cells else _recorded(store))
    result = store.dataset()
    if netcdf is not None:
        store.write_netcdf(netcdf)
    return result


def _submit_and_collect(spec: SweepSpec, store: SweepStore, cells: list[Cell], client,
                        counts: dict, progress) -> None:
    """Submit the cells in tasks and write each task's cells as it finishes."""
    from distributed import as_completed

    n_workers = max(1, sum(client.nthreads().values()))
    groups = chunk_cells(cells, task_sizes(len(cells), n_workers, spec.cells_per_task))
    client.register_plugin(kernel_warmup_plugin(spec.command))
    futures = {}
    for position, group in enumerate(groups):
        payload = [(cell.index, cell.parameters) for cell in group]
        future = client.submit(run_cells, spec.command, payload, spec.retries, pure=False,
                               retries=spec.retries, priority=len(groups) - position)
        futures[future] = group
    done = 0
    try:
        for future in as_completed(futures):
            group = futures.pop(future)
            try:
                outcomes = future.result()
            except Exception as exc:  # noqa: BLE001  (a task lost as a whole: its cells fail)
                text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                outcomes = [CellOutcome(c.index, "failed", {}, text) for c in group]
            store.write_cells((o.index, o.status, o.values, o.message, o.seconds)
                              for o in outcomes)
            for outcome in outcomes:
                counts["computed" if outcome.status == "done" else "failed"] += 1
            done += len(group)
            if progress is not None:
                progress(done, len(cells))
    finally:
        for future in futures:
            future.cancel()


def _failed_cells(spec: SweepSpec, store: SweepStore) -> list[dict]:
    status, errors = store.statuses(), store.errors()
    return [{"cell": cell_label(spec, cell), "index": list(cell.index),
             "error": str(errors[cell.index])}
            for cell in spec.cells() if status[cell.index] == "failed"]


def _recorded(store: SweepStore) -> list[dict]:
    return json.loads(store.attribute("failed_cells", "[]"))
