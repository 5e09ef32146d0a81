"""Shared command-line plumbing: output options, list parsing, the memory budget, option spelling
in errors, the phase-diagram and simulate groups.

Every command writes into ``--out DIR`` (CSV + JSON + figure), refuses to overwrite without
``--force``, and prints its summary to stdout with ``--json`` (DESIGN.md, "Outputs"). The files of
one command appear together when it ends (:meth:`~diffphase.outputs.OutputSet.commit`, the JSON
sidecar last); an interrupted command leaves none of them.

A command parses its options, calls the library, and writes, in this order: the library checks
every argument and estimates the job's memory and run time against ``--max-memory``
(:mod:`diffphase.studies.budget`), then every output file is claimed, then it computes. So bad
input, a job too large, or an existing file is refused before any work, and bad input never
leaves a folder behind. The library checks its arguments under their Python names
(``n_train``); :func:`option_names` reports those errors under the options' spelling
(``--n-train``).

``phase-diagram all`` learns every model's files and checks every model's arguments first
(:class:`~diffphase.outputs.ClaimProbe`), claims them all, then computes; rerun into the same
``--out`` it resumes: a model whose files are all there is skipped (and named on stderr and in
the summary), ``--force`` recomputes everything.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import click

from ..errors import ParameterError, parse_float_list
from ..outputs import ClaimProbe, ClaimReached, OutputSet, dumps

#: name -> function(out: OutputSet, formats[, max_memory=bytes]) -> dict summary, run by
#: ``phase-diagram all``; it must claim its files before any heavy work
DEFAULT_DIAGRAMS: dict[str, Callable[..., dict]] = {}


def register_default_diagram(name: str):
    def decorate(func):
        DEFAULT_DIAGRAMS[name] = func
        return func

    return decorate


class FloatList(click.ParamType):
    """``0.2,0.2`` -> numpy array, with the parameter named on failure."""

    name = "floats"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        return parse_float_list(param.opts[0] if param is not None else "value", value)


FLOATS = FloatList()


class OutFolder(click.Path):
    """The ``--out`` folder: a path that is not a file; an empty name is refused (click would
    read it as the current folder)."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty folder name: give a folder, e.g. --out results", param, ctx)
        return super().convert(value, param, ctx)


#: byte multiples of ``--max-memory`` (binary: ``1K = 1024``)
SIZE_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str, name: str = "--max-memory") -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"2e9"`` -> bytes (``> 0``); errors name ``name``."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    try:
        value = float(match.group(1)) * SIZE_UNITS[match.group(2).upper()] if match else None
    except ValueError:
        value = None
    if value is None or not (0 < value < 2**63):
        raise ParameterError(name, text, "a size in bytes > 0 with an optional unit K, M, G or "
                             "T (powers of 1024), e.g. 4G or 512M")
    return int(value)


def max_memory_option(func):
    """``--max-memory SIZE``: the memory budget of the job (bytes, passed as ``max_memory``;
    default half the physical memory, see :func:`diffphase.studies.budget.default_memory_budget`).
    A job whose estimated peak exceeds it is refused before it starts."""

    def convert(ctx, param, value):
        from ..studies.budget import default_memory_budget

        return default_memory_budget() if value is None else parse_size(value)

    return click.option(
        "--max-memory", "max_memory", default=None, callback=convert, metavar="SIZE",
        help="Memory budget, e.g. 4G or 512M; a larger job is refused before it starts "
        "[default: half the physical memory].")(func)


def output_options(default_out: str):
    """``--out DIR``, ``--force``, ``--json``, ``--svg`` for a command writing files."""

    def decorate(func):
        @click.option(
            "--out",
            "out",
            type=OutFolder(),
            default=default_out,
            show_default=True,
            help="Folder for CSV, JSON, figures.",
        )
        @click.option("--force", is_flag=True, help="Overwrite existing output files.")
        @click.option(
            "--json", "as_json", is_flag=True, help="Print the summary as JSON to stdout."
        )
        @click.option("--svg", is_flag=True, help="Also write the figure as SVG.")
        @functools.wraps(func)
        def wrapper(*args, out, force, as_json, svg, **kwargs):
            outputs = OutputSet(out, force=force, defer=True)
            formats = ("png", "svg") if svg else ("png",)
            try:
                result = func(*args, outputs=outputs, formats=formats, as_json=as_json,
                              **kwargs)
                outputs.commit()
            except BaseException:
                outputs.discard()
                raise
            return result

        return wrapper

    return decorate


def emit(summary: dict, as_json: bool, outputs: OutputSet) -> None:
    """Put the files in place (:meth:`~diffphase.outputs.OutputSet.commit`), then print the
    summary (JSON) or the list of files written."""
    outputs.commit()
    if as_json:
        click.echo(dumps(summary))
    else:
        for path in outputs.written:
            click.echo(f"wrote {path}", err=False)


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def progress_bar(**options) -> Callable[[Iterable], Iterable] | None:
    """A ``tqdm`` wrapper for library loops when stderr is a terminal, else ``None``;
    ``options`` (``desc``, ``unit``) are tqdm's, and a ``desc`` given per loop overrides them."""
    if not progress_enabled():
        return None
    from tqdm import tqdm

    def wrap(items: Iterable, desc: str | None = None) -> Iterable:
        return tqdm(items, **{**options, **({"desc": desc} if desc else {})})

    return wrap


def _respelling(names: Mapping[str, str]) -> dict[str, str]:
    """Word -> option spelling; a combined name (``tau/t`` -> ``--tau/--t``) also maps its
    parts, so an allowed range that names them (``exactly one of tau or t``) reads right."""
    words = dict(names)
    for name, option in names.items():
        parts, options = name.split("/"), option.split("/")
        if len(parts) > 1 and len(parts) == len(options):
            words.update({p: o for p, o in zip(parts, options, strict=True) if p not in words})
    return words


@contextlib.contextmanager
def option_names(names: Mapping[str, str]) -> Iterator[None]:
    """Report a library :class:`~diffphase.errors.ParameterError` under the option's spelling.

    ``names`` maps a parameter name to its option (``{"n_train": "--n-train"}``). An error whose
    name is mapped is raised again with the option's name, and mapped names inside its allowed
    range (``> rate_min = 0.1``) are respelled too; any other error passes unchanged. Wrap only
    calls whose errors under a mapped name come from their own argument checks: an error raised
    deeper under a mapped name would be respelled as well.
    """
    try:
        yield
    except ParameterError as exc:
        if exc.name not in names:
            raise
        words = _respelling(names)
        pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        allowed = re.sub(rf"(?<![\w-])(?:{pattern})(?![\w-])",
                         lambda match: words[match.group(0)], str(exc.allowed))
        raise ParameterError(names[exc.name], exc.value, allowed) from None


@click.group("phase-diagram")
def phase_diagram() -> None:
    """Phase diagrams (CSV + JSON + PNG) of each model, or all of them."""


def run_build(build: Callable[..., dict], outputs: OutputSet, formats,
              max_memory: int | None = None) -> dict:
    """Call a default diagram's build, with ``max_memory`` when it takes one."""
    if "max_memory" in inspect.signature(build).parameters:
        return build(outputs, formats, max_memory=max_memory)
    return build(outputs, formats)


def planned_files(build: Callable[..., dict], folder: Path, formats, force: bool = False,
                  max_memory: int | None = None) -> list[str]:
    """The files ``build`` claims in ``folder``, learnt by running it up to its claim (its
    arguments and size are checked on the way; nothing is computed or written)."""
    probe = ClaimProbe(folder, force=force)
    try:
        run_build(build, probe, formats, max_memory)
    except ClaimReached:
        return probe.claimed
    raise RuntimeError(f"{getattr(build, '__name__', build)} returned without claiming its files")


@phase_diagram.command("all")
@output_options("diffphase-out")
@max_memory_option
def phase_diagram_all(outputs: OutputSet, formats, as_json: bool, max_memory: int) -> None:
    """Every model's default phase diagram, each in its own subfolder of --out.

    Every model's arguments and files are checked before any is computed. Rerun into the same
    --out, it resumes: models whose files are all there are skipped (--force recomputes them).
    """
    plans = {}
    for name, build in DEFAULT_DIAGRAMS.items():
        folder = outputs.out_dir / name
        files = planned_files(build, folder, formats, outputs.force, max_memory)
        plans[name] = (build, OutputSet(folder, force=outputs.force, defer=True), files)
    skipped = [name for name, (_, sub, files) in plans.items()
               if not outputs.force and len(sub.existing(files)) == len(files)]
    for name, (_, sub, files) in plans.items():
        present = sub.existing(files)
        if name not in skipped and present and not outputs.force:
            raise ParameterError("--out", str(outputs.out_dir), f"a folder where each model's "
                                 f"files are all there or none: {name}/ has "
                                 f"{', '.join(present)} but not "
                                 f"{', '.join(sorted(set(files) - set(present)))} (pass "
                                 "--force to recompute it)")
    for name, (_, sub, files) in plans.items():
        if name not in skipped:
            sub.claim(files)
    if skipped:
        click.echo(f"phase-diagram all: skipped {', '.join(skipped)} (their files in "
                   f"{outputs.out_dir} are complete; --force recomputes them)", err=True)
    summaries = {}
    try:
        for name, (build, sub, _) in plans.items():
            if name in skipped:
                continue
            summaries[name] = run_build(build, sub, formats, max_memory)
            sub.commit()
            outputs.written.extend(sub.written)
    except BaseException:
        for _, sub, _ in plans.values():
            sub.discard()
        raise
    emit({"diagrams": summaries, "skipped": skipped}, as_json, outputs)


@click.group("simulate")
def simulate() -> None:
    """Run a model's simulations and write the measured curves next to the predictions."""
