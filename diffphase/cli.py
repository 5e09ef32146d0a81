"""The ``diffphase`` command line (click). Thin: parse, call the library, write outputs.

Bad input (a :class:`~diffphase.errors.ParameterError`, a missing optional dependency, an
unavailable GPU, a click usage error) prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import importlib
import signal
import sys
import warnings

import click

from ._version import __version__
from .commands import common
from .commands.common import CommandGroup, OutFolder, phase_diagram, simulate
from .commands.sweep import sweep_command
from .errors import DeviceUnavailableError, MissingDependencyError
from .models import EXTRA_COMMANDS, MODEL_NAMES, TIERS

#: command modules, one per model and the extra ones; each exposes ``register(cli)``
COMMAND_MODULES = tuple(f"diffphase.commands.{name}" for name in MODEL_NAMES + EXTRA_COMMANDS)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diffphase")
def cli() -> None:
    """diffphase: when a diffusion model resolves manifolds, variances, classes and details."""


cli.add_command(phase_diagram)
cli.add_command(simulate)
cli.add_command(sweep_command)


@cli.command("validate")
@click.option("--model", default=None, help="Model whose checks to run (default: all).")
@click.option("--tier", type=click.Choice(TIERS), default="quick", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=OutFolder(),
    default=None,
    help="Also write report.md and report.json here.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing report.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def validate_command(model, tier, seed, out, force, as_json) -> None:
    """Run the registered checks; exit 0 when every toolkit check passes, 1 otherwise.

    A check of a paper's claim that disagrees with simulation is reported as `disagrees` and
    does not fail the run.
    """
    from .errors import require_int
    from .outputs import OutputSet, dumps, run_metadata
    from .validate.registry import (
        format_markdown,
        format_table,
        load_models,
        run_checks,
        summary_counts,
    )

    load_models(model)  # bad --model fails here, before anything runs
    require_int("--seed", seed, minimum=0)
    outputs = None
    if out is not None:
        outputs = OutputSet(out, force=force)
        outputs.claim(["report.md", "report.json"])
    results = run_checks(
        model, tier, seed,
        progress=(lambda name: click.echo(f"running {name}", err=True))
        if common.verbosity() > 0 else (lambda name: None),
    )
    counts = summary_counts(results)
    rows = [r.as_row() for r in results]
    if outputs is not None:
        outputs.write_text("report.md", format_markdown(results))
        outputs.write_json("report.json", {
            **run_metadata("validate", {"model": model, "tier": tier}, seed=seed),
            "tier": tier, "counts": counts, "results": rows})
    if as_json:
        click.echo(dumps({"tier": tier, "seed": seed, "counts": counts, "results": rows}))
    else:
        click.echo(format_table(results))
        click.echo(", ".join(f"{v} {k}" for k, v in counts.items() if v))
        for r in results:
            if r.status == "error":
                click.echo(f"\n{r.model}/{r.check} crashed:\n{r.message}", err=True)
            elif r.status == "skipped":
                click.echo(f"{r.model}/{r.check} skipped: {r.message}", err=True)
    if any(r.is_failure for r in results):
        raise SystemExit(1)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that model has no commands in this version
                continue
            raise
        module.register(cli)


_register_commands()


def _terminate(signum, frame) -> None:
    """SIGTERM ends the run like Ctrl-C: files being written are discarded, never left half."""
    raise KeyboardInterrupt


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return common.typed_spelling(text.splitlines()[0])


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit code 2 for bad input.

    Warnings raised while a command runs are held back and printed (one line each) only when it
    succeeds, so a failing run prints exactly one line. SIGTERM is handled like Ctrl-C.
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    common.TYPED_ALIASES.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = cli.main(args=argv, prog_name="diffphase", standalone_mode=False)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            message = (exc.format_message() or type(exc).__name__).splitlines()[0]
            click.echo(f"error: {common.typed_spelling(message)}", err=True)
            sys.exit(2)
        except (ValueError, MissingDependencyError, DeviceUnavailableError, FileExistsError) as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except MemoryError:  # an estimate fell short of a job (they are checked up front)
            click.echo("error: out of memory: this job needs more memory than the machine "
                       "gives it (lower its sizes, or --max-memory to be refused up front)",
                       err=True)
            sys.exit(2)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {exc.strerror or type(exc).__name__}{where}", err=True)
            sys.exit(2)
        finally:
            signal.signal(signal.SIGTERM, previous)
    for item in caught:
        click.echo(f"warning: {_one_line(item.message)}", err=True)
    sys.exit(code if isinstance(code, int) else 0)
