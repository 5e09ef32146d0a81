"""Commands of DDPM coefficient design (THEORY D): ``sampler-error`` and ``phase-diagram sampler``.

``sampler-error`` evaluates the exact ``KL(law X_1 || law Y_1)`` (tangent + normal split) and TV
bounds for Gaussian data on a ``k``-subspace of ``R^dim``; ``phase-diagram sampler`` maps the
error over ``(T, d)`` per design and fits its decay in ``T``. Both write CSV + JSON + PNG.
"""

from __future__ import annotations

import math

import click

from ..models import ALL_DESIGNS, SCHEDULES
from ..outputs import OutputSet, run_metadata
from .common import (
    FLOATS,
    INTS,
    emit,
    max_memory_option,
    option,
    option_names,
    output_options,
    phase_diagram,
    register_default_diagram,
    stage,
)

DESIGN_CHOICES = ALL_DESIGNS
#: library parameter -> option, for error messages
OPTIONS = {"c0": "--c0", "c1": "--c1", "score_bias": "--score-bias", "eta_scale": "--eta-scale",
           "sigma2_scale": "--sigma2-scale", "T": "--steps", "dim": "--dim", "k": "--k",
           "variances": "--variances", "max_memory": "--max-memory"}
DIAGRAM_OPTIONS = {"T_min": "--steps-min", "T_max": "--steps-max", "n_T": "--n-steps", "k": "--k",
                   "dims": "--dims", "c0": "--c0", "c1": "--c1", "max_memory": "--max-memory"}


@click.command("sampler-error")
@option("--steps", "steps", aliases=("--T",), type=int, default=1000, show_default=True,
        help="Number of sampler steps T.")
@click.option("--dim", type=int, default=4096, show_default=True, help="Ambient dimension d.")
@click.option("--k", type=int, default=8, show_default=True, help="Data subspace dimension.")
@click.option("--design", type=click.Choice(DESIGN_CHOICES), default="star", show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="li-yan", show_default=True)
@click.option("--c0", type=float, default=2.0, show_default=True, help="Li-Yan: beta_1 = T^-c0.")
@click.option("--c1", type=float, default=4.0, show_default=True, help="Li-Yan growth constant.")
@click.option("--variances", type=FLOATS, default=None,
              help="k tangent variances, comma-separated [default: geometric 0.25..4].")
@click.option("--score-bias", type=float, default=0.0, show_default=True,
              help="Constant score error b along the first tangent direction.")
@click.option("--eta-scale", type=float, default=1.0, show_default=True,
              help="custom design: eta = eta_scale (1 - alpha_t).")
@click.option("--sigma2-scale", type=float, default=1.0, show_default=True,
              help="custom design: sigma^2 = sigma2_scale * sigma_star^2.")
@output_options("diffphase-out/sampler-error")
@max_memory_option
def sampler_error_command(steps, dim, k, design, schedule, c0, c1, variances, score_bias, eta_scale,
                          sigma2_scale, outputs: OutputSet, formats, as_json: bool,
                          max_memory: int) -> None:
    """Exact KL(law X_1 || law Y_1) and TV bounds of the DDPM sampler, Gaussian data (THEORY D).

    Example: diffphase sampler-error --steps 1000 --dim 4096 --k 8 --design star --json
    """
    T = steps
    from ..solvers.sampler import SERIES_SWITCH
    from ..studies import sampler as diagrams

    with option_names(OPTIONS):
        plan = diagrams.plan_sampler_error(T, dim, k, design, schedule, c0, c1, variances,
                                           score_bias, eta_scale, sigma2_scale, max_memory)
    outputs.claim(["sampler_error.csv", "sampler_error.json"]
                  + [f"sampler_error.{f}" for f in formats])
    with stage("sampler-error: exact KL"):
        report = diagrams.run_sampler_error(plan)
    T, dim, k, result = report.T, report.dim, report.k, report.error
    outputs.write_csv("sampler_error.csv", report.table())
    summary = report.summary()
    parameters = {"steps": T, "dim": dim, "k": k, "design": design, "schedule": schedule,
                  "schedule_params": report.schedule_params, "variances": report.variances,
                  "score_bias": score_bias,
                  "eta_scale": eta_scale if design == "custom" else None,
                  "sigma2_scale": sigma2_scale if design == "custom" else None}
    outputs.write_json("sampler_error.json", {
        **run_metadata("sampler-error", parameters,
                       solver={"method": diagrams.SOLVER_METHOD,
                               "series_switch": SERIES_SWITCH, "steps": T - 1},
                       convergence={"non_finite": int(not math.isfinite(result.kl))}),
        "result": summary})
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.sampler import sampler_error_figure
        fig = sampler_error_figure(report.variances, report.kl_tangent_directions,
                                   result.kl_normal_per_dim,
                                   rf"{design}: $\mathrm{{KL}}$ = {result.kl:.3g}",
                                   parameters={"$T$": T, "$d$": dim, "$k$": k,
                                               "schedule": schedule})
        outputs.save_figure(fig, "sampler_error", formats)
        close(fig)
    emit(summary, as_json, outputs)


def write_sampler_diagram(outputs: OutputSet, formats, T_min: int = 16, T_max: int = 10_000,
                          n_T: int = 13, dims=None, k: int = 8, schedule: str = "li-yan",
                          c0: float = 2.0, c1: float = 4.0, max_memory: int | None = None) -> dict:
    """Write the ``(T, d)`` error maps per design and the fitted rates in ``T`` (CSV + JSON +
    figure) and return their summary."""
    from ..solvers.sampler import DESIGNS
    from ..studies import sampler as diagrams

    with option_names(DIAGRAM_OPTIONS):
        T_values, dims = diagrams.sampler_diagram_axes(T_min, T_max, n_T, dims, k, max_memory)
        params = diagrams.schedule_parameters(schedule, c0, c1)
        diagrams.check_schedule(schedule, T_values, params)
    stems = ["sampler_phase_diagram.csv", "sampler_phase_diagram.json"]
    outputs.claim(stems + [f"sampler_phase_diagram.{f}" for f in formats])
    with stage("phase-diagram sampler: exact KL over (T, d)"):
        diagram = diagrams.sampler_diagram(T_values, dims, k, schedule, params)
    outputs.write_csv("sampler_phase_diagram.csv", diagram.table())
    parameters = {"steps": T_values, "dims": dims, "k": k, "schedule": schedule,
                  "schedule_params": params, "designs": list(DESIGNS),
                  "spectrum": diagrams.DIAGRAM_SPECTRUM, "dim_for_rates": diagram.dim_for_rates}
    summary = diagram.summary()
    outputs.write_json("sampler_phase_diagram.json", {
        **run_metadata("phase-diagram sampler", parameters,
                       solver={"method": diagrams.SOLVER_METHOD},
                       convergence=diagram.convergence()),
        "result": summary})
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.sampler import sampler_phase_diagram_figure
        fig = sampler_phase_diagram_figure(diagram.grid, DESIGNS, diagram.fits,
                                           diagram.dim_for_rates,
                                           parameters={"$k$": k, "schedule": schedule,
                                                       "$c_0$": c0, "$c_1$": c1})
        outputs.save_figure(fig, "sampler_phase_diagram", formats)
        close(fig)
    return summary


@register_default_diagram("sampler")
def default_sampler_diagram(outputs: OutputSet, formats, max_memory: int | None = None) -> dict:
    return write_sampler_diagram(outputs, formats, max_memory=max_memory)


@phase_diagram.command("sampler")
@option("--steps-min", "steps_min", aliases=("--T-min",), type=int, default=16, show_default=True,
        help="Fewest sampler steps T.")
@option("--steps-max", "steps_max", aliases=("--T-max",), type=int, default=10_000,
        show_default=True, help="Most sampler steps T.")
@option("--n-steps", "n_steps", aliases=("--n-T",), type=int, default=13, show_default=True,
        help="Values of T (geometric).")
@click.option("--dims", type=INTS, default=None,
              help="Ambient dimensions, comma-separated [default: geometric k..65536].")
@click.option("--k", type=int, default=8, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="li-yan", show_default=True)
@click.option("--c0", type=float, default=2.0, show_default=True)
@click.option("--c1", type=float, default=4.0, show_default=True)
@output_options("diffphase-out/sampler")
@max_memory_option
def sampler_diagram_command(steps_min, steps_max, n_steps, dims, k, schedule, c0, c1,
                            outputs: OutputSet, formats, as_json: bool, max_memory: int) -> None:
    """(T, d) maps of the exact sampler error per design, and error vs T with fitted slopes."""
    summary = write_sampler_diagram(outputs, formats, steps_min, steps_max, n_steps, dims, k,
                                    schedule, c0, c1, max_memory)
    emit(summary, as_json, outputs)


def register(cli) -> None:
    """Attach ``sampler-error`` (``phase-diagram sampler`` registers on the shared group)."""
    cli.add_command(sampler_error_command)
