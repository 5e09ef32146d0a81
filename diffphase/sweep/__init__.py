"""Parameter sweeps on dask.distributed, with the results in one labelled store.

Contract: :func:`run` takes a spec (one command, a grid of its parameters and seeds; see
:mod:`diffphase.sweep.spec`), runs its cells on a ``distributed`` cluster and returns the store
as an ``xarray.Dataset`` whose dimensions are the swept parameters (and ``seed``) and whose
variables are the command's outputs. :func:`load_spec` checks a spec without running it.
Importing this package imports neither dask nor xarray (they load when a sweep runs); they come
with the optional extra ``diffphase[sweep]``.
"""

from __future__ import annotations

from ..errors import MissingDependencyError

__all__ = ["load_spec", "run", "require_sweep_dependencies"]


def require_sweep_dependencies() -> None:
    """Raise :class:`~diffphase.errors.MissingDependencyError` naming the ``sweep`` extra when
    dask.distributed, xarray or zarr is missing."""
    import importlib.util

    for module, package in (("distributed", "dask[distributed]"), ("xarray", "xarray"),
                            ("zarr", "zarr")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, "sweep")


def load_spec(spec, **options):
    """See :func:`diffphase.sweep.spec.load_spec`."""
    from .spec import load_spec as load

    return load(spec, **options)


def run(spec, client=None, **options):
    """See :func:`diffphase.sweep.runner.run`."""
    require_sweep_dependencies()
    from .runner import run as run_sweep

    return run_sweep(spec, client, **options)
