"""Command line of the memorization model (THEORY B): ``critical-times``,
``phase-diagram memorization``, ``simulate memorization``. Thin: parse, call the library
(:mod:`diffphase.studies.memorization`),
write CSV + JSON (+ PNG)."""

from __future__ import annotations

import click

from ..models import DEVICES, MEMORIZATION_EXPERIMENTS, REVERSIBLE_PROCESSES, SUBSPACES
from ..outputs import OutputSet, dumps, run_metadata
from ..studies.memorization import check_critical_times, critical_times
from .common import (
    FLOATS,
    INTS,
    emit,
    max_memory_option,
    option,
    option_names,
    output_options,
    phase_diagram,
    progress_bar,
    register_default_diagram,
    simulate,
    stage,
    verbosity,
)

#: library parameter -> option, for error messages
OPTIONS = {"dim": "--dim", "n_train": "--n-train", "rate_min": "--log-n-per-d-min",
           "rate_max": "--log-n-per-d-max", "points": "--n-log-n-per-d", "dims": "--dims",
           "probes": "--probes", "seed": "--seed", "log_n_per_d": "--log-n-per-d",
           "fractions": "--fractions", "variances": "--variances",
           "max_memory": "--max-memory"}


def critical_times_summary(fractions, variances, dim: int, n_train: int, process: str = "ou",
                           subspace: str = "random") -> dict:
    """:func:`~diffphase.studies.memorization.critical_times` with errors spelled as
    the options of ``critical-times``."""
    with option_names(OPTIONS):
        return critical_times(fractions, variances, dim, n_train, process, subspace)


def _data_options(fractions: str = "1", variances: str = "1"):
    """``--fractions --variances --dim --process --subspace`` with these defaults."""
    return lambda func: _with_data_options(func, fractions, variances)


def _with_data_options(func, fractions: str, variances: str):
    func = click.option("--subspace", type=click.Choice(SUBSPACES),
                        default="random", show_default=True,
                        help="random: THEORY A spectrum; orthonormal: eigenvalues = "
                        "variances.")(func)
    func = click.option("--process", type=click.Choice(REVERSIBLE_PROCESSES), default="ou",
                        show_default=True, help="Time convention of the t_* outputs.")(func)
    func = click.option("--dim", type=int, default=256, show_default=True,
                        help="Ambient dimension d.")(func)
    func = click.option("--variances", type=FLOATS, default=variances, show_default=True,
                        help="Latent variances sigma_k^2, comma-separated.")(func)
    func = click.option("--fractions", type=FLOATS, default=fractions, show_default=True,
                        help="Group fractions alpha_k = m_k/d, comma-separated.")(func)
    return func


@click.command("critical-times")
@_data_options()
@click.option("--n-train", "n_train", type=int, default=20000, show_default=True,
              help="Number of training points N.")
@output_options("diffphase-out/critical-times", figures=False)
def critical_times_command(fractions, variances, dim, process, subspace, n_train,
                           outputs: OutputSet, formats, as_json: bool) -> None:
    """Collapse time t_C, speciation time t_S and per-group memorization times (THEORY B)."""
    from ..studies.tables import flag_nonfinite_columns

    with option_names(OPTIONS):
        check_critical_times(fractions, variances, dim, n_train, process, subspace)
    outputs.claim(["critical_times.csv", "critical_times.json"])
    summary = critical_times_summary(fractions, variances, dim, n_train, process, subspace)
    rows = summary["per_group"]
    keys = [k for k in rows[0] if k != "nan_reason"]
    outputs.write_csv("critical_times.csv", flag_nonfinite_columns(
        {k: [r[k] for r in rows] for k in keys}))
    params = {"fractions": fractions, "variances": variances, "dim": dim, "n_train": n_train,
              "process": process, "subspace": subspace}
    outputs.write_json("critical_times.json", {**run_metadata("critical-times", params),
                                               "result": summary})
    outputs.commit()
    if as_json:
        click.echo(dumps(summary))
    elif verbosity() > 0:
        click.echo(f"tau_C = {summary['tau_C']:.6g}  t_C ({process}) = {summary['t_C']:.6g}")
        click.echo(f"tau_S = {summary['tau_S']:.6g}  t_S ({process}) = {summary['t_S']:.6g}")
        for r in rows:
            click.echo(f"group variance {r['variance']:g}: tau_c REM raw = "
                       f"{r['tau_c_rem_raw']:.4g}, sphere = {r['tau_c_rem_sphere']:.4g}")
        emit(summary, False, outputs)


def write_memorization_diagram(outputs: OutputSet, formats, fractions=(0.1, 0.1),
                               variances=(4.0, 1.0), dim: int = 256, process: str = "ou",
                               subspace: str = "random", rate_min: float = 0.005,
                               rate_max: float = 0.2, points: int = 60,
                               max_memory: int | None = None) -> dict:
    """Write the ``(ln N / d, t)`` map (CSV + JSON + figure) and return its summary."""
    from ..studies import memorization as diagrams

    with option_names(OPTIONS):
        check_critical_times(fractions, variances, dim, 2, process, subspace)
        rates = diagrams.log_n_per_d_grid(rate_min, rate_max, points, dim, len(fractions),
                                          max_memory)
    stems = ["memorization_diagram.csv", "memorization_diagram.json"]
    outputs.claim(stems + [f"memorization_diagram.{f}" for f in formats])
    with stage("phase-diagram memorization: critical times over ln N/d"):
        diagram = diagrams.memorization_diagram(fractions, variances, dim, rates, process,
                                                subspace)
    outputs.write_csv("memorization_diagram.csv", diagram.table())
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.memorization import diagram_figure
        fig = diagram_figure(rates, diagram.times(), process, parameters={
            "$d$": dim, r"$\alpha_k$": list(fractions), r"$\sigma_k^2$": list(variances),
            "subspace": subspace})
        outputs.save_figure(fig, "memorization_diagram", formats)
        close(fig)
    params = {"fractions": list(fractions), "variances": list(variances), "dim": dim,
              "process": process, "subspace": subspace, "log_n_per_d_min": rate_min,
              "log_n_per_d_max": rate_max, "n_log_n_per_d": points}
    summary = diagram.summary()
    outputs.write_json("memorization_diagram.json",
                       {**run_metadata("phase-diagram memorization", params,
                                       solver={"collapse": summary.get("collapse_solver")}),
                        **summary})
    return summary


@register_default_diagram("memorization")
def default_memorization_diagram(outputs: OutputSet, formats,
                                 max_memory: int | None = None) -> dict:
    return write_memorization_diagram(outputs, formats, max_memory=max_memory)


@phase_diagram.command("memorization")
@_data_options(fractions="0.1,0.1", variances="4,1")
@option("--log-n-per-d-min", "log_n_per_d_min", aliases=("--rate-min",), type=float,
        default=0.005, show_default=True, help="Smallest ln N / d.")
@option("--log-n-per-d-max", "log_n_per_d_max", aliases=("--rate-max",), type=float,
        default=0.2, show_default=True, help="Largest ln N / d.")
@option("--n-log-n-per-d", "n_log_n_per_d", aliases=("--points",), type=int, default=60,
        show_default=True, help="Points along ln N / d.")
@output_options("diffphase-out/memorization")
@max_memory_option
def phase_diagram_memorization(fractions, variances, dim, process, subspace, log_n_per_d_min,
                               log_n_per_d_max, n_log_n_per_d, outputs: OutputSet, formats,
                               as_json: bool, max_memory: int) -> None:
    """(ln N / d, t) map with the collapse, speciation and per-group memorization lines."""
    summary = write_memorization_diagram(outputs, formats, tuple(fractions), tuple(variances),
                                         dim, process, subspace, log_n_per_d_min,
                                         log_n_per_d_max, n_log_n_per_d, max_memory)
    emit(summary, as_json, outputs)


@simulate.command("memorization")
@click.option("--experiment",
              type=click.Choice(MEMORIZATION_EXPERIMENTS),
              default="collapse", show_default=True)
@click.option("--dims", type=INTS, default="32,64", show_default=True,
              help="collapse, trajectories: ambient dimensions.")
@click.option("--log-n-per-d", "log_n_per_d", type=float, default=0.09, show_default=True,
              help="collapse, trajectories: ln N / d.")
@click.option("--n-train", "n_train", type=int, default=1000, show_default=True,
              help="geometric: number of training points.")
@click.option("--probes", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True)
@output_options("diffphase-out/simulate-memorization")
@max_memory_option
def simulate_memorization(experiment, dims, log_n_per_d, n_train, probes, seed, device,
                          outputs: OutputSet, formats, as_json: bool, max_memory: int) -> None:
    """Measured curves next to the predictions (collapse, geometric memorization, speciation)."""
    from ..studies.memorization import plan_memorization_run, run_memorization

    rate = log_n_per_d

    with option_names(OPTIONS):
        plan = plan_memorization_run(experiment, dims, rate, n_train, probes, seed, device,
                                     max_memory)
    stem = f"simulate_{experiment}"
    outputs.claim([f"{stem}.csv", f"{stem}.json"] + [f"{stem}.{f}" for f in formats])
    with stage(f"simulate memorization: {experiment}"):
        run = run_memorization(plan, progress_bar(desc=experiment))
    outputs.write_csv(f"{stem}.csv", run.columns)
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.memorization import curves_figure
        fig = curves_figure(run.columns, run.x_key, run.y_keys, run.group, parameters={
            "experiment": experiment, "$d$": dims, r"$\ln N / d$": rate, "probes": probes,
            "seed": seed})
        outputs.save_figure(fig, stem, formats)
        close(fig)
    params = {"experiment": experiment, "dims": dims, "log_n_per_d": rate, "n_train": n_train,
              "probes": probes, "device": device}
    summary = run.summary()
    outputs.write_json(f"{stem}.json", {**run_metadata("simulate memorization", params,
                                                       seed=seed), **summary})
    emit(summary, as_json, outputs)


def register(cli) -> None:
    """Attach ``critical-times`` (the group commands are attached to their groups above)."""
    cli.add_command(critical_times_command)
