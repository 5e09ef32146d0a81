"""Writing results: tidy CSV, JSON sidecar, figures; atomic and never overwriting by accident.

Contract (DESIGN.md, "Outputs"): every file lands in ``--out DIR``; all target paths are claimed
up front with :meth:`OutputSet.claim`, which fails *before* heavy work, with a
:class:`~diffphase.errors.ParameterError` naming ``--out``, if any target exists and ``force`` is
off, if a target is a folder, or if the folder cannot be created or written (it is probed with a
temporary file). Each file is written to a temporary name in the same folder
(``.<name>.<pid>.<random>.diffphase-tmp``) and renamed, so an interrupted run never leaves a
half-written file; temporaries left by a process that no longer runs (killed before it could
clean up) are removed by the next claim on that folder. Files get the permissions the umask
allows (``0666 & ~umask``), as any file a program creates.

The command line defers the renames (``OutputSet(..., defer=True)``) to :meth:`OutputSet.commit`
at the end of a command, which renames the JSON sidecar last: a command's outputs appear
together, and a sidecar present means its set is complete (what ``phase-diagram all`` resumes
from). :class:`ClaimProbe` learns the names a command claims without running it;
:class:`NoOutputs` is the output set of ``--json`` without ``--out`` (nothing is written).

Every JSON sidecar starts with one envelope, :func:`run_metadata` (schema version, time stamp,
package, Python and dependency versions, parameters, seed, solver settings, convergence),
published as the JSON Schema ``diffphase/schemas/sidecar.schema.json`` and checked by
:func:`schema_errors`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import ParameterError


def to_jsonable(obj):
    """Convert numpy scalars/arrays, Paths and non-finite floats to JSON-safe values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


#: suffix of this package's temporary files (written, then renamed over the target)
TEMP_SUFFIX = ".diffphase-tmp"


def _umask_mode() -> int:
    """``0o666`` less the process's umask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_file(path: Path) -> tuple[int, str]:
    """An open temporary file beside ``path``, named with this process's id so that a later run
    can tell a stale one (see :func:`remove_stale_temporaries`), with umask permissions."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                               dir=path.parent)
    os.fchmod(fd, _umask_mode())
    return fd, tmp


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete this package's temporary files in ``folder`` whose writing process has ended."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.glob(f".*{TEMP_SUFFIX}"):
        parts = entry.name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or _process_alive(int(parts[1])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


class OutputSet:
    """The files one command writes into ``out_dir``.

    With ``defer`` the files written stay under temporary names until :meth:`commit` renames
    them all, JSON sidecars last, so that a set of outputs appears whole (its sidecar marks it
    complete) or not at all; :meth:`discard` deletes them instead (an interrupted run).
    """

    def __init__(self, out_dir: str | os.PathLike, force: bool = False, defer: bool = False):
        if str(out_dir) == "":
            raise ParameterError("--out", "", "a folder name (not empty)")
        self.out_dir = Path(out_dir)
        self.force = force
        self.defer = defer
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ParameterError("--out", str(self.out_dir), "a folder (this path is a file)")
        blocking = next((p for p in self.out_dir.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ParameterError("--out", str(self.out_dir),
                                 f"a folder path ({blocking} is a file)")
        self.written: list[Path] = []
        self._pending: list[tuple[str, Path]] = []
        #: resolution of raster figures (``--dpi``)
        self.dpi = 200

    def child(self, name: str) -> OutputSet:
        """A deferred output set in the subfolder ``name`` (``phase-diagram all``), with the same
        ``force`` and figure resolution."""
        child = OutputSet(self.out_dir / name, force=self.force, defer=True)
        child.dpi = self.dpi
        return child

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def existing(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that exist in the folder now."""
        return [n for n in names if self.path(n).exists()]

    def claim(self, names: Iterable[str]) -> None:
        """Fail now, before any work, unless every target can be written: none exists (or
        ``force``), none is a folder, and the folder exists or can be created and takes a file.
        Stale temporaries of this package in the folder are removed."""
        names = list(names)
        folders = [n for n in names if self.path(n).is_dir()]
        if folders:
            raise ParameterError("--out", str(self.out_dir),
                                 f"a folder where {', '.join(folders)} can be a file "
                                 "(a folder of that name is in the way)")
        if not self.force:
            existing = self.existing(names)
            if existing:
                raise ParameterError(
                    "--out",
                    str(self.out_dir),
                    f"a folder without {', '.join(existing)} (pass --force to overwrite)",
                )
        self._ensure_writable()
        remove_stale_temporaries(self.out_dir)

    def _ensure_writable(self) -> None:
        """Create the folder and probe it with a temporary file; errors name ``--out``."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = temporary_file(self.out_dir / "write-probe")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ParameterError("--out", str(self.out_dir),
                                 f"a folder this process can create and write ({reason})") from None

    def _target(self, name: str) -> Path:
        path = self.path(name)
        if path.exists() and not self.force and path not in self.written:
            raise ParameterError(
                "--out", str(self.out_dir), f"a folder without {name} (pass --force)"
            )
        if not self.out_dir.is_dir():
            self._ensure_writable()
        return path

    def _finish(self, tmp: str, path: Path) -> None:
        """Rename a written temporary onto its target now, or at :meth:`commit`."""
        if self.defer:
            self._pending.append((tmp, path))
        else:
            os.replace(tmp, path)
        if path not in self.written:
            self.written.append(path)

    def write_text(self, name: str, text: str) -> Path:
        path = self._target(name)
        fd, tmp = temporary_file(path)
        try:
            with os.fdopen(fd, "w", newline="") as handle:
                handle.write(text)
            self._finish(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, dumps(obj) + "\n")

    def write_csv(
        self, name: str, columns: Mapping[str, Iterable], float_format: str = ".10g"
    ) -> Path:
        """Tidy CSV: one row per entry, one column per key (all columns the same length)."""
        cols = {k: np.asarray(v).ravel() for k, v in columns.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in cols.items()} }")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(cols.keys())
        for row in zip(*cols.values(), strict=True):
            writer.writerow([_fmt(x, float_format) for x in row])
        return self.write_text(name, buffer.getvalue())

    def save_figure(
        self, fig, stem: str, formats: Iterable[str] = ("png",), dpi: int | None = None
    ) -> list[Path]:
        """Save ``fig`` once per format (``png``, ``pdf``, ``svg``) at ``dpi`` (default
        :attr:`dpi`); text stays text in the vector formats (see :mod:`diffphase.plotting`)."""
        dpi = self.dpi if dpi is None else dpi
        paths = []
        for fmt in formats:
            path = self._target(f"{stem}.{fmt}")
            fd, tmp = temporary_file(path)
            try:
                with os.fdopen(fd, "wb") as handle, _vector_text():
                    fig.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
                self._finish(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(path)
        return paths

    def commit(self) -> list[Path]:
        """Rename the deferred files onto their targets, JSON sidecars last; return them."""
        pending = sorted(self._pending, key=lambda item: item[1].suffix == ".json")
        self._pending = []
        done = []
        try:
            for tmp, path in pending:
                os.replace(tmp, path)
                done.append(path)
        except BaseException:
            for tmp, _ in pending:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            raise
        return done

    def discard(self) -> None:
        """Delete the deferred files (nothing of them reaches the folder)."""
        for tmp, path in self._pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if path in self.written:
                self.written.remove(path)
        self._pending = []


def _vector_text():
    """Keep text as text in SVG and PDF files (fonts embedded as TrueType, not outlines)."""
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42,
                                  "ps.fonttype": 42})


class NoOutputs(OutputSet):
    """The outputs of a ``--json`` run without ``--out``: claims always succeed and nothing is
    written (no folder, no file); the summary printed is the only result."""

    def __init__(self):
        super().__init__(Path("."), force=True)

    def child(self, name: str) -> NoOutputs:
        return NoOutputs()

    def existing(self, names: Iterable[str]) -> list[str]:
        return []

    def claim(self, names: Iterable[str]) -> None:
        return None

    def write_text(self, name: str, text: str) -> Path:
        return self.path(name)

    def save_figure(self, fig, stem: str, formats: Iterable[str] = ("png",),
                    dpi: int | None = None) -> list[Path]:
        return [self.path(f"{stem}.{fmt}") for fmt in formats]

    def commit(self) -> list[Path]:
        return []

    def discard(self) -> None:
        return None


class ClaimReached(Exception):
    """Raised by :meth:`ClaimProbe.claim`: the names a command will write are known."""


class ClaimProbe(OutputSet):
    """An output set that records the names a command claims and stops it there, before any
    heavy work (so nothing is computed or written): ``phase-diagram all`` learns every model's
    files, and checks every model's arguments, before it computes any."""

    def __init__(self, out_dir: str | os.PathLike, force: bool = False):
        super().__init__(out_dir, force=force)
        self.claimed: list[str] = []

    def claim(self, names: Iterable[str]) -> None:
        self.claimed = list(names)
        raise ClaimReached(self.out_dir)

    def _target(self, name: str) -> Path:
        raise RuntimeError(f"{name} written before its outputs were claimed")


def _fmt(value, float_format: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "nan" if not math.isfinite(value) else format(float(value), float_format)
    return str(value)


#: version of the sidecar envelope (``diffphase/schemas/sidecar.schema.json``); raised when a
#: key of the envelope changes meaning or is removed
SIDECAR_SCHEMA_VERSION = "1.0"
#: the dependencies whose versions every sidecar records
RECORDED_DEPENDENCIES = ("numpy", "scipy", "sympy", "numba", "mpmath", "matplotlib", "click",
                         "pandas", "torch", "cupy")


def dependency_versions(names: Iterable[str] = RECORDED_DEPENDENCIES) -> dict[str, str]:
    """Installed version of each distribution in ``names`` (one not installed is left out),
    read from the package metadata without importing the packages."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_metadata(command: str, parameters: Mapping, *, seed: int | None = None,
                 solver: Mapping | None = None, convergence: Mapping | None = None,
                 **extra) -> dict:
    """The envelope every JSON sidecar starts with (the schema
    ``diffphase/schemas/sidecar.schema.json``, version :data:`SIDECAR_SCHEMA_VERSION`).

    ``schema_version``, ``command``, ``timestamp`` (UTC, ISO 8601), ``diffphase_version``,
    ``python_version``, ``platform``, ``dependencies`` (:func:`dependency_versions`),
    ``parameters``, ``seed`` (an integer for a command with randomness, None for one without),
    ``solver`` (the numerical settings; empty when a command has none) and ``convergence``
    (counts of converged and failed points; empty when nothing iterates); then ``extra``, the
    command's own keys."""
    import datetime
    import platform

    from ._version import __version__

    reserved = {"schema_version", "timestamp", "diffphase_version", "python_version",
                "platform", "dependencies", "parameters", "command"}
    clash = reserved & set(extra)
    if clash:
        raise ValueError(f"run_metadata: {', '.join(sorted(clash))} belong to the envelope")
    return {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "command": command,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "diffphase_version": __version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(terse=True),
        "dependencies": dependency_versions(),
        "parameters": dict(parameters),
        "seed": None if seed is None else int(seed),
        "solver": dict(solver or {}),
        "convergence": dict(convergence or {}),
        **extra,
    }


#: the JSON Schema of the sidecar envelope, shipped inside the package
SIDECAR_SCHEMA = Path(__file__).resolve().parent / "schemas" / "sidecar.schema.json"


def load_sidecar_schema() -> dict:
    """The published JSON Schema of the sidecar envelope (:data:`SIDECAR_SCHEMA`)."""
    return json.loads(SIDECAR_SCHEMA.read_text())


_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(instance, schema: Mapping, where: str = "$") -> list[str]:
    """Where ``instance`` breaks ``schema``: one message per violation, empty when it is valid.

    Covers the part of JSON Schema (draft 2020-12) the published schemas use: ``type`` (a name
    or a list), ``required``, ``properties``, ``additionalProperties`` (a boolean or a schema),
    ``items``, ``enum``, ``const``, ``pattern``, ``minLength``, ``minimum``; annotations
    (``title``, ``description``, ``$id``, ``$schema``) are ignored, any other keyword is an
    error (so a schema never silently checks less than it says)."""
    import re

    known = {"type", "required", "properties", "additionalProperties", "items", "enum", "const",
             "pattern", "minLength", "minimum", "title", "description", "$id", "$schema"}
    unknown = set(schema) - known
    if unknown:
        return [f"{where}: schema keyword(s) not supported: {', '.join(sorted(unknown))}"]
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES[name](instance) for name in names):
            return [f"{where}: {type(instance).__name__} {instance!r:.60} is not of type "
                    f"{' or '.join(names)}"]
    errors = []
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r:.60} is not one of {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{where}: {instance!r:.60} is not {schema['const']!r}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{where}: {instance!r:.60} does not match {schema['pattern']}")
    if _JSON_TYPES["number"](instance) and "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{where}: {instance} is below the minimum {schema['minimum']}")
    if isinstance(instance, dict):
        errors += [f"{where}: {key!r} is required" for key in schema.get("required", ())
                   if key not in instance]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                errors += schema_errors(value, properties[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: {key!r} is not allowed")
            elif isinstance(extra, Mapping):
                errors += schema_errors(value, extra, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for index, value in enumerate(instance):
            errors += schema_errors(value, schema["items"], f"{where}[{index}]")
    return errors
