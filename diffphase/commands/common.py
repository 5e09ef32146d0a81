"""Shared command-line plumbing: output options, list parsing, option spelling in errors, the
phase-diagram and simulate groups.

Every command writes into ``--out DIR`` (CSV + JSON + figure), refuses to overwrite without
``--force``, and prints its summary to stdout with ``--json`` (DESIGN.md, "Outputs").

A command parses its options, calls the library, and writes. The library checks its arguments
under their Python names (``n_train``); :func:`option_names` reports those errors under the
options' spelling (``--n-train``). A quick computation (under a second or so) runs before the
output files are claimed; a longer one first builds its grid or plan through the library (which
checks every argument), then the files are claimed, then it runs: an overwrite refusal never
follows heavy work, and bad input never leaves a folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import click

from ..errors import ParameterError, parse_float_list
from ..outputs import OutputSet, dumps

#: name -> function(out: OutputSet, formats) -> dict summary, run by ``phase-diagram all``
DEFAULT_DIAGRAMS: dict[str, Callable[[OutputSet, tuple[str, ...]], dict]] = {}


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
        return parse_float_list("--" + (param.name if param else "value").replace("_", "-"), value)


FLOATS = FloatList()


def output_options(default_out: str):
    """``--out DIR``, ``--force``, ``--json``, ``--svg`` for a command writing files."""

    def decorate(func):
        @click.option(
            "--out",
            "out",
            type=click.Path(file_okay=False, path_type=Path),
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
            outputs = OutputSet(out, force=force)
            formats = ("png", "svg") if svg else ("png",)
            return func(*args, outputs=outputs, formats=formats, as_json=as_json, **kwargs)

        return wrapper

    return decorate


def emit(summary: dict, as_json: bool, outputs: OutputSet) -> None:
    """Print the summary (JSON) or the list of files written."""
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


@phase_diagram.command("all")
@output_options("diffphase-out")
def phase_diagram_all(outputs: OutputSet, formats, as_json: bool) -> None:
    """Every model's default phase diagram, each in its own subfolder of --out."""
    summaries = {}
    for name, build in DEFAULT_DIAGRAMS.items():
        sub = OutputSet(outputs.out_dir / name, force=outputs.force)
        summaries[name] = build(sub, formats)
        outputs.written.extend(sub.written)
    emit({"diagrams": summaries}, as_json, outputs)


@click.group("simulate")
def simulate() -> None:
    """Run a model's simulations and write the measured curves next to the predictions."""
