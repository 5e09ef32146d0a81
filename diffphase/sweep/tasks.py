"""What a worker runs: a task of cells, and the plugin that loads the compiled kernels.

Contract: :func:`run_cells` computes its cells one after another with the command's library
call; a cell that raises is computed again up to ``retries`` times, then returned as failed with
its message (a task never raises for a cell). It returns one :class:`CellOutcome` per cell.
Inside a worker, a task's parallel kernels use the worker's thread count
(:func:`match_worker_threads`).
:class:`KernelWarmup` is a ``distributed`` worker plugin: on each worker, once, before its first
task (and again on a worker started to replace a dead one), it computes the command's ``warm``
cell, so that compiled kernels are loaded (or compiled into the shared cache) once per worker
rather than once per task, and it sets the worker's allocator back to the thresholds a plain
Python process uses (:func:`restore_allocator_thresholds`). This module imports ``distributed``
only when the plugin is made.
"""

from __future__ import annotations

import ctypes
import sys
import time
import warnings
from dataclasses import dataclass, field

from .commands import SweepCommand


@dataclass
class CellOutcome:
    """The result of one cell: ``status`` is ``done`` or ``failed``; ``values`` the flat
    outputs; ``message`` the error (failed) or the first warning (done)."""

    index: tuple[int, ...]
    status: str
    values: dict = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    attempts: int = 1


def run_cell(command: SweepCommand, index: tuple[int, ...], params: dict,
             retries: int) -> CellOutcome:
    """One cell, retried ``retries`` times when it raises."""
    started = time.perf_counter()
    message = ""
    for attempt in range(1, retries + 2):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                values = command.compute(dict(params))
        except Exception as exc:  # noqa: BLE001  (recorded with its message, never fatal)
            text = str(exc).strip().splitlines()
            message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
            continue
        note = str(caught[0].message).splitlines()[0] if caught else ""
        return CellOutcome(index, "done", values, note, time.perf_counter() - started, attempt)
    return CellOutcome(index, "failed", {}, message, time.perf_counter() - started, retries + 1)


def run_cells(command: SweepCommand, cells: list[tuple[tuple[int, ...], dict]],
              retries: int) -> list[CellOutcome]:
    """A task: each ``(index, parameters)`` cell in turn (see the module docstring)."""
    match_worker_threads()
    return [run_cell(command, index, params, retries) for index, params in cells]


def match_worker_threads() -> None:
    """Inside a dask worker: the parallel (numba) kernels of this thread use as many threads as
    the worker runs tasks at once, not every core, so that several single-threaded workers on
    one machine do not oversubscribe it. Outside a worker nothing changes."""
    try:
        from distributed import get_worker

        threads = int(get_worker().state.nthreads)
    except Exception:  # noqa: BLE001  (not in a worker, or a worker without that state)
        return
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


#: glibc ``mallopt`` parameters and the values restored in a worker: arrays up to 32 MiB come
#: from the heap (glibc's own adaptive ceiling on 64-bit), and free memory above 64 MiB at the
#: heap's top goes back to the system.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
WORKER_MMAP_THRESHOLD = 32 * 2**20
WORKER_TRIM_THRESHOLD = 64 * 2**20


def restore_allocator_thresholds() -> bool:
    """Undo the effect of ``MALLOC_TRIM_THRESHOLD_`` on glibc's allocator in this process.

    A dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any glibc
    threshold switches off its adaptive mmap threshold, so every array above 128 KiB is then
    mapped on allocation and unmapped on release, and each new use of it page-faults: the
    cells of a sweep measured 1.6-1.7x slower in such a worker than in the calling process,
    with 7x the page faults and 3-4x the system time. Setting the mmap threshold explicitly
    (and a trim threshold above it) restores the plain process's behaviour. Returns whether the
    thresholds were set (False off glibc, where nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to undo
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD))


def warm_up(command: SweepCommand) -> None:
    """Compute the command's ``warm`` cell, ignoring any error (a cell will report it)."""
    if not command.warm:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            command.compute(command.complete(dict(command.warm)))
    except Exception:  # noqa: BLE001, S110  (warming is best effort)
        pass


def kernel_warmup_plugin(command: SweepCommand):
    """A :class:`distributed.WorkerPlugin` that runs :func:`warm_up` on every worker."""
    from distributed import WorkerPlugin

    class KernelWarmup(WorkerPlugin):
        """Loads the compiled kernels of one sweep command once per worker."""

        name = f"diffphase-kernels-{command.name}"

        def __init__(self, command: SweepCommand):
            self.command = command

        def setup(self, worker) -> None:
            restore_allocator_thresholds()
            warm_up(self.command)

    return KernelWarmup(command)
