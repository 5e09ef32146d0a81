"""Shared command-line plumbing: output options, list parsing, the phase-diagram group.

Every command writes into ``--out DIR`` (CSV + JSON + figure), refuses to overwrite without
``--force``, and prints its summary to stdout with ``--json`` (DESIGN.md, "Outputs").
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import parse_float_list
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
