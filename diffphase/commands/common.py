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

One name per concept: :func:`option` keeps retired names as hidden aliases (errors name the
spelling typed, :func:`typed_spelling`); lists of depths or dimensions are whole numbers
(:data:`INTS`). ``--json`` without ``--out`` writes nothing. Every command takes ``--quiet`` and
``--verbose`` (:class:`CommandGroup`); :func:`stage` and :func:`progress_bar` report long stages
on standard error whether or not it is a terminal, and stay silent for quick ones, so a failing
command prints its one error line only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import click
import numpy as np

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


class ListOption(click.ParamType):
    """A comma-separated list (``0.2,0.2``; ``4,6``) read by ``parse(name, text)`` into a numpy
    array, with the parameter named on failure."""

    def __init__(self, name: str, parse):
        self.name, self._parse = name, parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        return self._parse(param.opts[0] if param is not None else "value", value)


FLOATS = ListOption("floats", parse_float_list)


def parse_int_list(name: str, text) -> np.ndarray:
    """``"4,6"`` -> an integer array; a value that is not a whole number (``2.5``, ``inf``,
    beyond 64 bits) is refused naming ``name``."""
    values = parse_float_list(name, text) if isinstance(text, str) else np.asarray(text)
    ok = values.size and np.all(np.isfinite(values)) and np.all(np.abs(values) < 2.0**62)
    if not ok or np.any(np.asarray(values, dtype=float) != np.round(values)):
        raise ParameterError(name, text, "comma-separated whole numbers, e.g. 4,6")
    return np.asarray(values, dtype=np.int64)


#: integer lists (depths, dimensions, sizes)
INTS = ListOption("integers", parse_int_list)


# --------------------------------------------------------------------------- hidden aliases
#: option name in an error -> the name to show instead, in this invocation: an option given
#: under a retired name reads as typed, and a retired name the library's errors use reads as the
#: option's one name when that was typed (:func:`typed_spelling`; reset by ``main``)
TYPED_ALIASES: dict[str, str] = {}
_ALIAS_VALUES = "diffphase.alias_values"


def typed_spelling(message: str) -> str:
    """``message`` with the option names of :data:`TYPED_ALIASES` respelled (``--steps`` ->
    ``--T`` after ``--T 1``)."""
    for canonical, alias in TYPED_ALIASES.items():
        message = re.sub(rf"(?<![\w-]){re.escape(canonical)}(?![\w-])", alias, message)
    return message


def option(*param_decls, aliases: Sequence[str] = (), reported_as: str | None = None, **attrs):
    """:func:`click.option` with retired names kept as hidden aliases of the same parameter.

    The first long name is the option's one name (shown in help, the docs and completion);
    each alias takes the same type and feeds the same parameter, and errors name the spelling
    typed. Giving the option under two names is a usage error. ``reported_as`` is the name the
    library's own errors use for it (a retired one): on the command line it reads as typed."""
    dest = next((d for d in param_decls if not d.startswith("-")),
                param_decls[0].lstrip("-").replace("-", "_").lower())
    canonical = next(d for d in param_decls if d.startswith("--"))

    def record(ctx, param, value):
        if value is not None and not (isinstance(value, tuple) and not value):
            given = ctx.meta.setdefault(_ALIAS_VALUES, {})
            if dest in given:
                raise click.UsageError(f"{given[dest][0]} and {param.opts[0]} are the same "
                                       "option: give it once", ctx)
            given[dest] = (param.opts[0], value)
        return value

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            ctx = click.get_current_context()
            given = ctx.meta.get(_ALIAS_VALUES, {})
            if reported_as and dest not in given:
                TYPED_ALIASES[reported_as] = canonical
            if dest in given:
                alias, value = given[dest]
                if ctx.get_parameter_source(dest) is click.core.ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"{canonical} and {alias} are the same option: give "
                                           "one of them", ctx)
                kwargs[dest] = value
                TYPED_ALIASES[canonical] = alias
            return func(*args, **kwargs)

        wrapped = wrapper if aliases else func
        alias_attrs = {k: v for k, v in attrs.items() if k in ("type", "is_flag", "multiple")}
        for index, alias in enumerate(reversed(aliases)):
            wrapped = click.option(alias, f"alias_{dest}_{index}", hidden=True,
                                   expose_value=False, callback=record, default=None,
                                   **alias_attrs)(wrapped)
        return click.option(*param_decls, **attrs)(wrapped)

    return decorate


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


#: figure file formats of ``--format`` (repeatable)
FIGURE_FORMATS = ("png", "pdf", "svg")
#: figure styles of ``--style`` (:mod:`diffphase.plotting`)
FIGURE_STYLES = ("paper", "talk")
#: resolution of raster figures, dots per inch
DEFAULT_DPI = 200


def output_options(default_out: str, figures: bool = True):
    """``--out DIR``, ``--force``, ``--json`` for a command writing files, and for one that
    draws figures ``--format`` (repeatable; ``--svg`` is a hidden alias of ``--format png
    --format svg``), ``--dpi`` and ``--style``.

    Without ``--out``, ``--json`` prints the summary and writes nothing
    (:class:`~diffphase.outputs.NoOutputs`; the commands get no formats and draw no figure,
    so matplotlib is not even imported); otherwise the files go to ``--out``, by default
    ``default_out``. The figures are drawn in ``--style`` and saved at ``--dpi``."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, out, force, as_json, **kwargs):
            from ..outputs import NoOutputs

            chosen = tuple(kwargs.pop("figure_format", None) or ())
            svg = kwargs.pop("svg", False)
            dpi = kwargs.pop("dpi", DEFAULT_DPI)
            style = kwargs.pop("style", "paper")
            formats = tuple(dict.fromkeys((chosen or ("png",)) + (("svg",) if svg else ())))
            formats = formats if figures else ()
            if out is None and as_json:  # nothing written, so no figure drawn either
                outputs, formats = NoOutputs(), ()
            else:
                outputs = OutputSet(default_out if out is None else out, force=force,
                                    defer=True)
            outputs.dpi = dpi
            try:
                with _figure_style(style if formats else None):
                    result = func(*args, outputs=outputs, formats=formats, as_json=as_json,
                                  **kwargs)
                outputs.commit()
            except BaseException:
                outputs.discard()
                raise
            return result

        options = [
            click.option("--out", "out", type=OutFolder(), default=None,
                         help=f"Folder for CSV, JSON, figures [default: {default_out}; with "
                              "--json and no --out nothing is written]."),
            click.option("--force", is_flag=True, help="Overwrite existing output files."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print the summary as JSON to stdout."),
        ]
        if figures:
            options += [
                click.option("--format", "figure_format", type=click.Choice(FIGURE_FORMATS),
                             multiple=True, metavar="png|pdf|svg",
                             help="Figure format; repeat for several [default: png]."),
                click.option("--svg", is_flag=True, hidden=True,
                             help="The same as --format png --format svg."),
                click.option("--dpi", type=click.IntRange(10, 2400), default=DEFAULT_DPI,
                             show_default=True, help="Resolution of PNG figures."),
                click.option("--style", type=click.Choice(FIGURE_STYLES), default="paper",
                             show_default=True,
                             help="paper: print sizes and fonts; talk: larger fonts."),
            ]
        for option_decorator in reversed(options):
            wrapper = option_decorator(wrapper)
        return wrapper

    return decorate


@contextlib.contextmanager
def _figure_style(style: str | None) -> Iterator[None]:
    """The figures drawn inside use ``style`` (:func:`diffphase.plotting.figure_style`)."""
    if style is None:
        yield
        return
    from ..plotting import figure_style

    with figure_style(style):
        yield


def emit(summary: dict, as_json: bool, outputs: OutputSet) -> None:
    """Put the files in place (:meth:`~diffphase.outputs.OutputSet.commit`), then print the
    summary (JSON) or the list of files written (not with ``--quiet``)."""
    outputs.commit()
    if as_json:
        click.echo(dumps(summary))
    elif verbosity() > 0:
        for path in outputs.written:
            click.echo(f"wrote {path}", err=False)


# --------------------------------------------------------------------------- verbosity, progress
_VERBOSITY = "diffphase.verbosity"
#: seconds a stage runs before its progress line is printed (``--verbose``: at once)
STAGE_DELAY = 2.0


def verbosity() -> int:
    """0 with ``--quiet``, 2 with ``--verbose``, else 1 (also outside a command)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return 1
    flags = ctx.meta.get(_VERBOSITY, {})
    return 0 if flags.get("quiet") else 2 if flags.get("verbose") else 1


def _set_verbosity(ctx, param, value):
    flags = ctx.meta.setdefault(_VERBOSITY, {})
    flags[param.name] = bool(value) or flags.get(param.name, False)
    if flags.get("quiet") and flags.get("verbose"):
        raise click.UsageError("--quiet and --verbose exclude each other", ctx)
    return value


def add_verbosity_options(command: click.Command) -> None:
    """Give ``command`` (and every command under it) ``--quiet`` and ``--verbose``."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity_options(sub)
    names = {name for p in command.params for name in p.opts}
    for flag, text in (("--quiet", "No progress lines and no list of files written."),
                       ("--verbose", "Progress of every stage at once, with its duration.")):
        if flag not in names:
            command.params.append(click.Option([flag, flag[2:]], is_flag=True, default=False,
                                               expose_value=False, is_eager=True,
                                               callback=_set_verbosity, help=text))


class CommandGroup(click.Group):
    """A group whose commands, added in any way, all take ``--quiet`` and ``--verbose``."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_verbosity_options(cmd)
        super().add_command(cmd, name)


def _echo_progress(text: str) -> None:
    """A progress line on the process's standard error (``sys.__stderr__``): it reaches the
    person running the command, terminal or log file, and never mixes into a captured
    ``sys.stderr`` that a caller parses."""
    stream = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    click.echo(text, file=stream)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Report a stage of a command on stderr, terminal or not: a stage still running after
    :data:`STAGE_DELAY` seconds prints ``name ...`` and, when it ends, its duration
    (``--verbose``: at once; ``--quiet``: never). A quick command prints nothing, so a failing
    one still prints its single error line."""
    import threading
    import time

    level = verbosity()
    if level == 0:
        yield
        return
    started = time.monotonic()
    announced = threading.Event()

    def announce() -> None:
        announced.set()
        _echo_progress(f"{name} ...")

    timer = None
    if level >= 2:
        announce()
    else:
        timer = threading.Timer(STAGE_DELAY, announce)
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
    if announced.is_set():
        _echo_progress(f"{name}: done in {time.monotonic() - started:.1f} s")


def progress_enabled() -> bool:
    """A terminal on stderr and not ``--quiet``: progress bars and estimates are shown."""
    return sys.stderr.isatty() and verbosity() > 0


def progress_bar(**options) -> Callable[[Iterable], Iterable] | None:
    """A wrapper for library loops reporting on stderr, or ``None`` with ``--quiet``.

    On a terminal a ``tqdm`` bar (``options`` are tqdm's: ``desc``, ``unit``; a ``desc`` given
    per loop overrides them); elsewhere one line ``desc: i/n`` at most every
    :data:`STAGE_DELAY` seconds once a loop has run that long (``--verbose``: every item)."""
    if verbosity() == 0:
        return None
    if sys.stderr.isatty():
        from tqdm import tqdm

        def bar(items: Iterable, desc: str | None = None) -> Iterable:
            return tqdm(items, **{**options, **({"desc": desc} if desc else {})})

        return bar
    every = 0.0 if verbosity() >= 2 else STAGE_DELAY

    def lines(items: Iterable, desc: str | None = None) -> Iterator:
        import time

        label = desc or options.get("desc") or "progress"
        total = len(items) if hasattr(items, "__len__") else None
        started = last = time.monotonic()
        for index, item in enumerate(items, 1):
            yield item
            now = time.monotonic()
            if now - last >= every or (index == total and now - started >= every):
                _echo_progress(f"{label}: {index}" + (f"/{total}" if total else ""))
                last = now

    return lines


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


@click.group("phase-diagram", cls=CommandGroup)
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
        plans[name] = (build, outputs.child(name), files)
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
    if skipped and verbosity() > 0:
        click.echo(f"phase-diagram all: skipped {', '.join(skipped)} (their files in "
                   f"{outputs.out_dir} are complete; --force recomputes them)", err=True)
    summaries = {}
    try:
        for name, (build, sub, _) in plans.items():
            if name in skipped:
                continue
            with stage(f"phase-diagram all: {name}"):
                summaries[name] = run_build(build, sub, formats, max_memory)
            sub.commit()
            outputs.written.extend(sub.written)
    except BaseException:
        for _, sub, _ in plans.values():
            sub.discard()
        raise
    emit({"diagrams": summaries, "skipped": skipped}, as_json, outputs)


@click.group("simulate", cls=CommandGroup)
def simulate() -> None:
    """Run a model's simulations and write the measured curves next to the predictions."""
