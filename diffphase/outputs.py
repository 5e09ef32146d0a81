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
from). :class:`ClaimProbe` learns the names a command claims without running it.
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
        self, fig, stem: str, formats: Iterable[str] = ("png",), dpi: int = 130
    ) -> list[Path]:
        paths = []
        for fmt in formats:
            path = self._target(f"{stem}.{fmt}")
            fd, tmp = temporary_file(path)
            try:
                with os.fdopen(fd, "wb") as handle:
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


def run_metadata(command: str, parameters: Mapping, **extra) -> dict:
    """The JSON sidecar's common header: command, parameters, package version."""
    from ._version import __version__

    return {
        "command": command,
        "diffphase_version": __version__,
        "parameters": dict(parameters),
        **extra,
    }
