"""A sweep specification: one command, its fixed parameters, a grid of the others, and seeds.

Contract: :func:`load_spec` reads a TOML file (a path), TOML text or a mapping into a checked
:class:`SweepSpec`, or raises :class:`~diffphase.errors.ParameterError` naming the key at fault,
before any task runs. It checks, in order: the keys, the command, every parameter name, the
axes (``[grid]``: lists or ranges; ``[zip.NAME]``: equal-length lists swept together along one
dimension ``NAME``; ``seeds``: a list or a range, the dimension ``seed``), the size of the sweep
against the memory budget (before anything is expanded), then every cell with the command's own
check (:mod:`diffphase.sweep.commands`): an invalid value anywhere in the grid is reported with
its cell. A range is ``{start, stop, num}`` (``num`` evenly spaced values, both ends included;
``log = true`` for geometric spacing) or ``{start, stop, step}`` (``start, start + step, ...``
up to ``stop`` included).

The cells are the product of the axes in the order they are written (grid, zipped axes, seeds);
each is a mapping of parameters and its index in the store's array.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParameterError, require_int
from .commands import SweepCommand, get_command

#: top-level keys of a spec
SPEC_KEYS = ("command", "model", "parameters", "grid", "zip", "seeds", "cells_per_task",
             "retries", "max_memory")
#: bytes the client, the scheduler and the returned Dataset hold per cell (measured: the
#: scheduler's task state and the cell's variables; an upper bound)
BYTES_PER_CELL = 4096.0
#: retries of a raising cell before it is recorded as failed
DEFAULT_RETRIES = 2
#: spec size units (powers of 1024)
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Axis:
    """One dimension of the store: ``dim`` and the parameters it sets, value by value (one
    parameter, or several for a zipped axis)."""

    dim: str
    values: Mapping[str, tuple]

    def __len__(self) -> int:
        return len(next(iter(self.values.values())))

    def coordinates(self) -> dict[str, np.ndarray]:
        """Parameter -> its values along the axis (lists become ``"a,b"`` strings)."""
        return {name: coordinate_array(vals) for name, vals in self.values.items()}


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its index in the store and the command's parameters there."""

    index: tuple[int, ...]
    parameters: dict


@dataclass(frozen=True)
class SweepSpec:
    """A checked spec (see :func:`load_spec`)."""

    command: SweepCommand
    fixed: dict
    axes: tuple[Axis, ...]
    retries: int = DEFAULT_RETRIES
    cells_per_task: int | None = None
    max_memory: float | None = None
    source: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(a.dim for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def cells(self) -> Iterator[Cell]:
        """Every cell, in C order of the store's arrays."""
        for index in itertools.product(*(range(n) for n in self.shape)):
            params = dict(self.fixed)
            for axis, i in zip(self.axes, index, strict=True):
                params.update({name: vals[i] for name, vals in axis.values.items()})
            yield Cell(index, self.command.complete(params))

    def digest(self) -> str:
        """A hash of what the spec computes (its source, without the execution settings)."""
        kept = {k: v for k, v in self.source.items() if k not in ("cells_per_task", "retries")}
        text = json.dumps(kept, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(spec, *, max_memory: float | None = None,
              commands: Mapping[str, SweepCommand] | None = None) -> SweepSpec:
    """Read and check a spec: a :class:`SweepSpec` (returned as it is), a path to a TOML file,
    TOML text or a mapping. ``commands`` adds commands by name (a custom
    :class:`~diffphase.sweep.commands.SweepCommand`); ``max_memory`` (bytes) overrides the
    spec's budget."""
    if isinstance(spec, SweepSpec):
        return spec
    source = _read(spec)
    unknown = sorted(set(source) - set(SPEC_KEYS))
    if unknown:
        raise ParameterError("spec key", unknown[0], "one of " + ", ".join(SPEC_KEYS))
    if "command" not in source:
        raise ParameterError("command", None, "a command name in the spec")
    name = source["command"]
    command = (commands or {}).get(name) if isinstance(name, str) else None
    command = command or get_command(name)
    fixed = _table(source, "parameters")
    if "model" in source:
        fixed["model"] = source["model"]
    axes = [_grid_axis(k, v) for k, v in _table(source, "grid").items()]
    axes += [_zip_axis(k, v) for k, v in _table(source, "zip").items()]
    if "seeds" in source:
        if not command.seeded:
            raise ParameterError("seeds", source["seeds"], f"absent: {command.name} takes no seed")
        axes.append(Axis("seed", {"seed": _values("seeds", source["seeds"])}))
    _check_names(command, fixed, axes)
    retries = require_int("retries", source.get("retries", DEFAULT_RETRIES), 0)
    per_task = source.get("cells_per_task")
    if per_task is not None:
        per_task = require_int("cells_per_task", per_task, 1)
    budget = parse_memory(source.get("max_memory")) if max_memory is None else max_memory
    if budget is not None and "max_memory" in command.parameters:
        fixed.setdefault("max_memory", budget)
    result = SweepSpec(command, fixed, tuple(axes), retries, per_task, budget, source)
    check_size(result)
    for cell in result.cells():
        check_cell(result, cell)
    return result


def _read(spec) -> dict:
    if isinstance(spec, Mapping):
        return json.loads(json.dumps(dict(spec), default=_plain))
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec
                                  and spec.endswith(".toml")):
        path = Path(spec)
        if not path.is_file():
            raise ParameterError("SPEC", str(spec), "an existing TOML file")
        text = path.read_text()
    else:
        text = str(spec)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError("SPEC", str(spec)[:60], f"valid TOML ({exc})") from None


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else str(value)


def _table(source: Mapping, key: str) -> dict:
    value = source.get(key, {})
    if not isinstance(value, Mapping):
        raise ParameterError(key, value, "a table")
    return dict(value)


def _values(name: str, value) -> tuple:
    """The values of one axis: a non-empty list or a range table."""
    if isinstance(value, Mapping):
        return tuple(range_values(name, value))
    if not isinstance(value, list) or not value:
        raise ParameterError(name, value, "a non-empty list or a range {start, stop, num}")
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


def range_length(name: str, table: Mapping) -> int:
    """Number of values of a range table, computed without building it."""
    keys = set(table) - {"log"}
    if keys not in ({"start", "stop", "num"}, {"start", "stop", "step"}):
        raise ParameterError(name, dict(table), "a range {start, stop, num} or "
                                                "{start, stop, step} (log = true with num)")
    for key in keys:
        if not isinstance(table[key], (int, float)) or not math.isfinite(table[key]):
            raise ParameterError(f"{name}.{key}", table[key], "a finite number")
    if "num" in keys:
        return require_int(f"{name}.num", table["num"], 1)
    step = table["step"]
    span = (table["stop"] - table["start"]) / step if step else -1.0
    if not span >= 0:
        raise ParameterError(f"{name}.step", step, "a step from start towards stop")
    return int(math.floor(span * (1 + 1e-12) + 1e-9)) + 1


def range_values(name: str, table: Mapping) -> list:
    """The values of a range table (see the module docstring)."""
    n = range_length(name, table)
    start, stop = table["start"], table["stop"]
    if "num" in table:
        if table.get("log"):
            if start <= 0 or stop <= 0:
                raise ParameterError(f"{name}.start", start, "> 0 (with stop) for log = true")
            values = np.geomspace(start, stop, n)
        else:
            values = np.linspace(start, stop, n)
    else:
        values = start + table["step"] * np.arange(n)
    integral = all(isinstance(table[k], int) for k in table if k in ("start", "stop", "step"))
    if integral and "num" not in table:
        return [int(v) for v in values]
    return [float(v) for v in values]


def _grid_axis(name: str, value) -> Axis:
    return Axis(name, {name: _values(name, value)})


def _zip_axis(dim: str, table) -> Axis:
    if not isinstance(table, Mapping) or not table:
        raise ParameterError(f"zip.{dim}", table, "a table of equal-length lists")
    values = {name: _values(name, v) for name, v in table.items()}
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values())) != 1:
        raise ParameterError(f"zip.{dim}", lengths, "lists of one length")
    return Axis(dim, values)


def _check_names(command: SweepCommand, fixed: Mapping, axes: list[Axis]) -> None:
    allowed = set(command.parameters)
    seen: set[str] = set(fixed)
    for name in fixed:
        if name not in allowed:
            raise ParameterError("parameter", name, f"a parameter of {command.name}: "
                                 + ", ".join(sorted(allowed)))
    dims: set[str] = set()
    for axis in axes:
        if axis.dim in dims:
            raise ParameterError("dimension", axis.dim, "each name once")
        dims.add(axis.dim)
        for name in axis.values:
            if name not in allowed:
                raise ParameterError("parameter", name, f"a parameter of {command.name}: "
                                     + ", ".join(sorted(allowed)))
            if name in seen:
                raise ParameterError("parameter", name, "set once (fixed or swept, not both)")
            seen.add(name)
    for name in command.required:
        if name not in seen:
            raise ParameterError(name, None, f"a value: {command.name} needs it (set it in "
                                 "[parameters] or sweep it in [grid])")


def parse_memory(value) -> float | None:
    """A budget in bytes from a number or a size such as ``"4G"`` (None stays None)."""
    if value is None:
        return None
    text = str(value).strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in UNITS else ""
    try:
        size = float(text[: len(text) - len(unit)]) * UNITS[unit]
    except ValueError:
        size = math.nan
    if not (0 < size < 2**63):
        raise ParameterError("max_memory", value, "a size in bytes > 0, e.g. 4G or 512M")
    return size


def check_size(spec: SweepSpec) -> None:
    """Refuse a sweep whose bookkeeping (:data:`BYTES_PER_CELL` a cell) exceeds the memory
    budget, before the grid is expanded."""
    from ..backend import default_memory_budget
    from ..studies.budget import format_bytes

    budget = spec.max_memory if spec.max_memory is not None else default_memory_budget()
    need = float(math.prod(float(n) for n in spec.shape)) * BYTES_PER_CELL
    if need > budget:
        widest = max(spec.axes, key=len)
        raise ParameterError("grid", f"{'x'.join(str(n) for n in spec.shape)} cells",
                             f"a sweep within the memory budget: this one needs about "
                             f"{format_bytes(need)} (largest axis: {widest.dim}, {len(widest)} "
                             f"values) and max_memory is {format_bytes(budget)}")


def cell_label(spec: SweepSpec, cell: Cell) -> str:
    """``v=16, m=4`` for a cell (its swept parameters)."""
    parts = []
    for axis, i in zip(spec.axes, cell.index, strict=True):
        parts += [f"{name}={vals[i]}" for name, vals in axis.values.items()]
    return ", ".join(parts)


def check_cell(spec: SweepSpec, cell: Cell) -> None:
    """The command's check of one cell; an error names the cell."""
    try:
        spec.command.check(dict(cell.parameters))
    except ParameterError as exc:
        label = cell_label(spec, cell)
        where = f"{exc.name} (grid cell {label})" if label else exc.name
        raise ParameterError(where, exc.value, exc.allowed) from None
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"grid cell {cell_label(spec, cell)}", str(exc).splitlines()[0],
                             "values the command accepts") from None


def coordinate_array(values: tuple) -> np.ndarray:
    """Values of one parameter along an axis as a numpy array (lists as ``"a,b"`` strings,
    None as ``"none"``, mixed types as strings)."""
    if any(isinstance(v, (tuple, list)) for v in values):
        return np.array([",".join(f"{x:g}" if isinstance(x, (int, float)) else str(x)
                                  for x in v) if isinstance(v, (tuple, list)) else str(v)
                         for v in values])
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float)
    return np.array(["none" if v is None else str(v) for v in values])
