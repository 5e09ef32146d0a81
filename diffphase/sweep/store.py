"""The labelled store of a sweep: one xarray Dataset in Zarr, written cell by cell.

Contract: the dimensions are the spec's axes (:class:`~diffphase.sweep.spec.Axis`), with each
swept parameter as a coordinate; every variable is chunked one cell per chunk, so that writing a
cell touches only that cell's files. Two variables always exist: ``status`` (``""`` not run,
``"done"``, ``"failed"``) and ``error`` (the failed cell's message); ``seconds`` is the time a
cell took. A command's outputs become variables the first time a cell returns them (float64,
NaN where a cell has none; bool; or strings); outputs named like a parameter set by the spec
(echoes of the input) are left out, as the coordinates and the attributes hold them. A cell's
values are written before its ``status``, so a cell marked ``done`` always has its values,
whatever interrupts the sweep; only the process that runs the sweep writes. The attributes
carry the provenance: the spec, its digest, the fixed parameters, the seeds, the package
version, the command, ``run_metadata`` (the envelope of every JSON sidecar: versions of Python,
the platform and the dependencies), ``convergence`` (per ``*converged*`` flag, its counts over
the done cells), the failed cells and the counts of the last run. The store is Zarr
format 2 with consolidated metadata (``xarray.open_zarr`` reads it).
"""

from __future__ import annotations

import datetime
import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..outputs import dependency_versions, run_metadata, to_jsonable
from .spec import SweepSpec
from .values import variable_kind

#: width of the stored error messages and string outputs (longer ones are cut)
MESSAGE_WIDTH = 200
STRING_WIDTH = 64
#: distributions whose versions the store records besides the package's own
SWEEP_DEPENDENCIES = ("dask", "distributed", "xarray", "zarr")
#: variables every store has
STATUS, ERROR, SECONDS = "status", "error", "seconds"


def _zarr_options() -> dict:
    return {"zarr_format": 2, "consolidated": True}


class SweepStore:
    """A sweep's Zarr store at ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path, spec: SweepSpec):
        self.path = Path(path)
        self.spec = spec
        self._group = None
        self._kinds: dict[str, str] = {}
        self._arrays: dict = {}

    # ------------------------------------------------------------------ opening
    def prepare(self, force: bool = False) -> None:
        """Create the store, or open an existing one of the same spec (a different spec is an
        error unless ``force``, which starts over)."""
        if self.path.exists() and not force:
            found = self._attribute("spec_digest")
            if found is None:
                raise FileExistsError(f"{self.path} exists and is not a sweep store "
                                      "(use --force to replace it)")
            if found != self.spec.digest():
                raise ParameterError("--out", str(self.path), "a store of this spec (it holds "
                                     "another sweep; --force starts over)")
            self._open()
            return
        self._create()

    def _attribute(self, name: str):
        import zarr

        try:
            return zarr.open_group(str(self.path), mode="r", zarr_format=2).attrs.get(name)
        except Exception:  # noqa: BLE001  (not a readable group: not a store of ours)
            return None

    def _create(self) -> None:
        import xarray as xr

        from .._version import __version__

        spec = self.spec
        coords: dict[str, tuple] = {}
        for axis in spec.axes:
            for name, values in axis.coordinates().items():
                coords[name] = (axis.dim, values)
            if axis.dim not in axis.values:
                coords[axis.dim] = (axis.dim, np.arange(len(axis)))
        shape, dims = spec.shape, spec.dims
        data = {STATUS: (dims, np.full(shape, "", dtype="<U6")),
                ERROR: (dims, np.full(shape, "", dtype=f"<U{MESSAGE_WIDTH}")),
                SECONDS: (dims, np.full(shape, np.nan))}
        ds = xr.Dataset(data, coords=coords)
        ds.attrs.update({
            "diffphase_version": __version__, "command": spec.command.name,
            "spec": json.dumps(spec.source, sort_keys=True, default=str),
            "spec_digest": spec.digest(),
            "fixed_parameters": json.dumps(spec.fixed, sort_keys=True, default=str),
            "seeds": json.dumps([int(s) for s in _seeds(spec)]),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "run_metadata": json.dumps(to_jsonable(run_metadata(
                f"sweep {spec.command.name}", spec.fixed,
                dependencies_of_the_sweep=dependency_versions(SWEEP_DEPENDENCIES))),
                default=str),
            "convergence": "{}",
            "failed_cells": "[]", "last_run": "{}"})
        chunks = {name: {"chunks": (1,) * len(dims)} for name in data}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(str(self.path), mode="w", encoding=chunks, **_zarr_options())
        self._open()

    def _open(self) -> None:
        import zarr

        self._group = zarr.open_group(str(self.path), mode="r+", zarr_format=2)
        self._arrays = dict(self._group.arrays())
        self._kinds = {name: ("str" if arr.dtype.kind == "U" else
                              "bool" if arr.dtype.kind == "b" else "float")
                       for name, arr in self._arrays.items()}

    # ------------------------------------------------------------------ reading
    def completed(self) -> np.ndarray:
        """Boolean array over the cells: True where the cell is done."""
        return self.statuses() == "done"

    def statuses(self) -> np.ndarray:
        """The ``status`` of every cell (``""``, ``"done"`` or ``"failed"``)."""
        return np.asarray(self._arrays[STATUS][...])

    def errors(self) -> np.ndarray:
        """The ``error`` message of every cell (empty unless it failed)."""
        return np.asarray(self._arrays[ERROR][...])

    def attribute(self, name: str, default=None):
        """One attribute of the store."""
        return self._group.attrs.get(name, default)

    def dataset(self):
        """The store as a lazily loaded xarray Dataset."""
        import xarray as xr

        return xr.open_zarr(str(self.path), consolidated=True)

    # ------------------------------------------------------------------ writing
    def write_cell(self, index: tuple[int, ...], status: str, values: dict, message: str = "",
                   seconds: float = math.nan) -> None:
        """Write one cell: its values first, then its status (see the module docstring)."""
        self.write_cells([(index, status, values, message, seconds)])

    def write_cells(self, cells) -> None:
        """Write several cells ``(index, status, values, message, seconds)`` with one call per
        variable: every cell's values first, then their statuses (see the module docstring)."""
        cells = list(cells)
        if not cells:
            return
        reserved = self._reserved()
        columns: dict[str, list] = {}
        for position, (_, _, values, _, _) in enumerate(cells):
            for name, value in values.items():
                if name in reserved:  # an echo of a parameter: the coordinate holds it
                    continue
                kind = self._kinds.get(name) or self._add_variable(name, value)
                columns.setdefault(name, []).append((position, _coerce(value, kind)))
        selection = tuple(np.array([cell[0][axis] for cell in cells], dtype=np.int64)
                          for axis in range(len(self.spec.dims)))
        for name, entries in columns.items():
            positions = [position for position, _ in entries]
            picked = tuple(axis[positions] for axis in selection)
            self._arrays[name].set_coordinate_selection(picked, [v for _, v in entries])
        self._arrays[SECONDS].set_coordinate_selection(selection, [c[4] for c in cells])
        self._arrays[ERROR].set_coordinate_selection(
            selection, [str(c[3])[:MESSAGE_WIDTH] for c in cells])
        self._arrays[STATUS].set_coordinate_selection(selection, [c[1] for c in cells])

    def _reserved(self) -> set[str]:
        names = {STATUS, ERROR, SECONDS, *self.spec.dims, *self.spec.fixed}
        for axis in self.spec.axes:
            names.update(axis.values)
        return names

    def _add_variable(self, name: str, value: object) -> str:
        import xarray as xr

        kind = variable_kind(value)
        dtype = {"bool": bool, "str": f"<U{STRING_WIDTH}", "float": float}[kind]
        fill = {"bool": False, "str": "", "float": np.nan}[kind]
        dims, shape = self.spec.dims, self.spec.shape
        ds = xr.Dataset({name: (dims, np.full(shape, fill, dtype=dtype))},
                        attrs=dict(self._group.attrs))  # appending rewrites the attributes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(str(self.path), mode="a", encoding={name: {"chunks": (1,) * len(dims)}},
                       **_zarr_options())
        self._open()
        return kind

    def finish(self, counts: dict, failed: list[dict]) -> None:
        """Record the counts of this run and the failed cells in the attributes."""
        import zarr

        self._group.attrs.update({"last_run": json.dumps(counts),
                                  "failed_cells": json.dumps(failed, default=str),
                                  "convergence": json.dumps(self.convergence())})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(self.path), zarr_format=2)

    def convergence(self) -> dict[str, dict[str, int]]:
        """For each flag output whose name says ``converged``: how many done cells have it
        True and False."""
        done = self.completed()
        counts = {}
        for name, kind in self._kinds.items():
            if kind == "bool" and "converged" in name:
                flags = np.asarray(self._arrays[name][...])[done]
                counts[name] = {"true": int(flags.sum()), "false": int((~flags).sum())}
        return counts

    def write_netcdf(self, path: str | Path) -> Path:
        """A netCDF copy of the store (64-bit integers as 32-bit where they fit)."""
        ds = self.dataset().load()
        for name in list(ds.variables):
            if ds[name].dtype == np.int64:
                values = ds[name].values
                if values.size == 0 or np.abs(values).max() < 2**31:
                    ds[name] = ds[name].astype(np.int32)
            elif ds[name].dtype == bool:
                ds[name] = ds[name].astype(np.int8)
        target = Path(path)
        temp = target.with_name(target.name + ".diffphase-tmp")
        ds.to_netcdf(temp)
        temp.replace(target)
        return target


def _coerce(value: object, kind: str):
    if kind == "float":
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan
    if kind == "bool":
        return bool(value)
    return str(value)[:STRING_WIDTH]


def _seeds(spec: SweepSpec) -> list:
    for axis in spec.axes:
        if "seed" in axis.values:
            return list(axis.values["seed"])
    seed = spec.command.complete(spec.fixed).get("seed")
    return [] if seed is None else [seed]
