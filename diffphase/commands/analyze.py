"""Command line of ``diffphase analyze`` (THEORY A and B): a dataset through the theories, with
the same quantities measured on it. Thin: parse, call :mod:`diffphase.studies.analyze`, write
CSV + JSON + PNG."""

from __future__ import annotations

import click

from ..data.loaders import DATASETS, NORMALIZATIONS
from ..models import REVERSIBLE_PROCESSES
from ..outputs import OutputSet, run_metadata
from .common import INTS, emit, max_memory_option, option_names, output_options, progress_bar, stage

#: library parameter -> option, for error messages
OPTIONS = {"data": "--data", "dataset": "--dataset", "key": "--key", "limit": "--limit",
           "image_size": "--image-size", "normalize": "--normalize", "process": "--process",
           "n_train": "--n-train", "delta": "--delta", "bands": "--bands", "n_tau": "--n-tau",
           "probes": "--probes", "jacobian_probes": "--jacobian-probes",
           "jacobian_taus": "--jacobian-taus", "seed": "--seed", "max_memory": "--max-memory"}
#: the tables written, one CSV each
TABLES = ("analyze_spectrum", "analyze_timeline", "analyze_collapse", "analyze_rem",
          "analyze_jacobian_density")


@click.command("analyze")
@click.option("--data", "data", default=None, metavar="PATH",
              help=".npy, .npz (with --key), numeric .csv, or a folder of PNG/JPEG images.")
@click.option("--dataset", type=click.Choice(tuple(DATASETS)), default=None,
              help="A bundled dataset instead of --data (scikit-learn's 8x8 digits).")
@click.option("--key", default=None, help="Array of an .npz archive.")
@click.option("--limit", type=int, default=None, help="Keep the first N rows (images).")
@click.option("--image-size", "image_size", default=None, metavar="H[xW]",
              help="Resize images to H x W (or H x H).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default="trace",
              show_default=True, help="After centring: tr C / d = 1, unit variances, or none.")
@click.option("--process", type=click.Choice(REVERSIBLE_PROCESSES), default="ou",
              show_default=True, help="Time convention of the t outputs.")
@click.option("--n-train", "n_train", type=INTS, default=None,
              help="Extra training-set sizes N, comma-separated (the rows are always one).")
@click.option("--delta", type=float, default=0.1, show_default=True,
              help="Resolution of the phases and the dimension read-out.")
@click.option("--bands", type=int, default=None,
              help="Variance bands of the REM times [default: one per decade].")
@click.option("--n-tau", "n_tau", type=int, default=49, show_default=True,
              help="Points of the timeline.")
@click.option("--probes", type=int, default=200, show_default=True,
              help="Probes of the collapse curves; held-out rows of the entropy route.")
@click.option("--jacobian-probes", "jacobian_probes", type=int, default=32, show_default=True,
              help="Noised rows of the Jacobian read-out (0 skips it).")
@click.option("--jacobian-taus", "jacobian_taus", type=int, default=6, show_default=True,
              help="Noise levels of the Jacobian read-out.")
@click.option("--seed", type=int, default=0, show_default=True)
@output_options("diffphase-out/analyze")
@max_memory_option
def analyze_command(outputs: OutputSet, formats, as_json: bool, **options) -> None:
    """A dataset's speciation, collapse, spectral phases and REM times, predicted from its
    covariance and measured with its exact empirical score (THEORY A, B)."""
    from ..studies.analyze import plan_analysis, run_analysis

    with option_names(OPTIONS):
        plan = plan_analysis(**options)
    outputs.claim([f"{name}.csv" for name in TABLES] + ["analyze.json"]
                  + [f"analyze.{fmt}" for fmt in formats])
    with stage("analyze: predictions and measurements"):
        result = run_analysis(plan, progress_bar(desc="analyze"))
    for name in TABLES:
        outputs.write_csv(f"{name}.csv", result.tables[name])
    summary = result.summary
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.analyze import analysis_figure
        figure = analysis_figure(result.figure, parameters={
            "$n$": summary.get("n"), "$d$": summary.get("dim"),
            "normalize": summary.get("normalize"), "process": options["process"],
            "seed": options["seed"]})
        outputs.save_figure(figure, "analyze", formats)
        close(figure)
    outputs.write_json("analyze.json", {**run_metadata("analyze", plan.parameters(),
                                                       seed=options["seed"]),
                                        "result": result.summary})
    if not as_json:
        _print_lines(result.summary)
    emit(result.summary, as_json, outputs)


def _print_lines(summary: dict) -> None:
    def number(key, where=summary):
        value = where.get(key)
        return "undefined" if value is None else f"{value:.4g}"

    click.echo(f"{summary['n']} rows x {summary['dim']} features (rank {summary['rank']}), "
               f"normalize {summary['normalize']}, lambda_max = {number('lambda_max')}")
    click.echo(f"t_S = {number('t_S')}  t_C = {number('t_C')}  tau_C = {number('tau_C')} "
               f"(entropy route {number('tau_C_entropy')} +- "
               f"{number('tau_C_entropy_stderr')}; crossover measured "
               f"{number('tau_half', summary['collapse_measured'])})")
    counts = summary["counts"]
    click.echo(f"comparisons: {counts['agrees']} agree, {counts['disagrees']} disagree")


def register(cli) -> None:
    """Attach ``analyze``."""
    cli.add_command(analyze_command)
