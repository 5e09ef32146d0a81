"""``diffphase sweep SPEC.toml``: run a parameter sweep on dask.distributed (thin: parse the
options, call :func:`diffphase.sweep.run`, report). See :mod:`diffphase.sweep` for the spec and
the store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import STAGE_DELAY, parse_size, verbosity


class SpecArgument(click.Argument):
    """The positional SPEC; like an option it answers ``hidden`` (never hidden), so code that
    lists a command's hidden parameters reads it too."""

    hidden = False


@click.command("sweep")
@click.argument("spec", cls=SpecArgument, type=click.Path(dir_okay=False))
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on this dask scheduler (e.g. tcp://host:8786) instead of a local one.")
@click.option("--workers", type=int, default=None,
              help="Worker processes of the local cluster [default: the CPU count].")
@click.option("--out", default=None, metavar="STORE",
              help="Zarr store of the results [default: SPEC's name with .zarr].")
@click.option("--resume", is_flag=True,
              help="Also compute again the cells that failed in an earlier run.")
@click.option("--force", is_flag=True, help="Replace an existing store of another spec.")
@click.option("--netcdf", default=None, metavar="PATH",
              help="Also write the results as netCDF there.")
@click.option("--max-memory", "max_memory", default=None, metavar="SIZE",
              callback=lambda ctx, param, value: None if value is None else parse_size(value),
              help="Memory budget of the sweep, e.g. 4G [default: the spec's max_memory, "
                   "else half the physical memory].")
def sweep_command(spec, scheduler, workers, out, resume, force, netcdf, max_memory) -> None:
    """Run one command over a grid of its parameters and seeds (a TOML spec); cells are written
    to one Zarr store as they finish, and a rerun computes only what is missing."""
    from ..errors import ParameterError, require_int
    from ..sweep import require_sweep_dependencies
    from ..sweep.runner import default_store
    from ..sweep.runner import run as run_sweep
    from ..sweep.spec import load_spec

    if scheduler is not None and workers is not None:
        raise ParameterError("--workers", workers, "absent with --scheduler")
    if workers is not None:
        require_int("--workers", workers, 1)
    require_sweep_dependencies()
    checked = load_spec(Path(spec), max_memory=max_memory)
    store = out or default_store(spec)
    bar = _progress()
    dataset = run_sweep(checked, out=store, resume=resume, force=force, scheduler=scheduler,
                        workers=workers, netcdf=netcdf, progress=bar)
    _report(dataset, store)


def _progress():
    """The client's progress report: called with (cells finished, cells to compute)."""
    if verbosity() == 0:
        return None
    import time

    state = {"bar": None, "last": time.monotonic()}

    def update(done: int, pending: int) -> None:
        """A tqdm bar on a terminal; elsewhere a line at most every STAGE_DELAY seconds
        (``--verbose``: every task) and at the end."""
        if sys.stderr.isatty():
            if state["bar"] is None:
                from tqdm import tqdm

                state["bar"] = tqdm(total=pending, desc="sweep", unit="cell")
            state["bar"].n = done
            state["bar"].refresh()
            return
        now = time.monotonic()
        if done == pending or verbosity() >= 2 or now - state["last"] >= STAGE_DELAY:
            state["last"] = now
            click.echo(f"sweep: {done}/{pending} cells", err=True)

    return update


def _report(dataset, store) -> None:
    import json

    counts = json.loads(dataset.attrs.get("last_run", "{}"))
    failed = json.loads(dataset.attrs.get("failed_cells", "[]"))
    click.echo(f"{store}: {counts.get('cells', 0)} cells, {counts.get('computed', 0)} computed, "
               f"{counts.get('skipped', 0)} already in the store, {len(failed)} failed")
    for cell in failed:
        click.echo(f"failed: {cell['cell']}: {cell['error']}")


def register(cli) -> None:
    cli.add_command(sweep_command)
