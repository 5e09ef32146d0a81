"""Command line of the hierarchy model (THEORY C): ``thresholds``, ``phase-diagram hierarchy``,
``simulate hierarchy``. Thin: parse, call the library (:mod:`diffphase.studies.hierarchy`,
:mod:`diffphase.simulate.hierarchy`), write CSV + JSON + PNG.
Level 0 is the root (the class), level ``L`` the leaves, in every output."""

from __future__ import annotations

import click

from ..models import BP_ENGINES, CHANNELS, DEVICES, NOISE_CONVENTION
from ..outputs import OutputSet, dumps, run_metadata
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
)

CHANNEL_CHOICE = click.Choice(CHANNELS)
#: library parameter -> option, for error messages (``L`` is the depth of a tree)
MODEL_OPTIONS = {"v": "--v", "m": "--m", "s": "--s", "n_c": "--n-c",
                 "max_memory": "--max-memory"}
OPTIONS = {**MODEL_OPTIONS, "depth": "--depth", "L": "--depth", "channel": "--channel",
           "population": "--population", "repeats": "--repeats", "seed": "--seed"}
DIAGRAM_OPTIONS = {**MODEL_OPTIONS, "eps": "--eps", "depths": "--depths",
                   "s_values": "--s-values", "f": "--f"}
SIMULATION_OPTIONS = {**MODEL_OPTIONS, "noise": "--noise", "samples": "--samples",
                      "population": "--population", "seed": "--seed", "channel": "--channel",
                      "engine": "--engine"}


def _model_options(func):
    func = click.option("--v", type=int, default=32, show_default=True,
                        help="Vocabulary size.")(func)
    func = click.option("--m", type=int, default=8, show_default=True,
                        help="Synonyms per symbol.")(func)
    func = click.option("--s", type=int, default=2, show_default=True,
                        help="Branching factor.")(func)
    func = click.option("--n-c", "n_c", type=int, default=None,
                        help="Number of classes (default: v).")(func)
    return func


@click.command("thresholds")
@_model_options
@click.option("--channel", type=CHANNEL_CHOICE, default=None,
              help="Also compute eps_half for this noise channel (population dynamics).")
@click.option("--depth", type=int, default=None, help="Tree depth L for --channel.")
@click.option("--population", type=int, default=20000, show_default=True)
@click.option("--repeats", type=int, default=8, show_default=True,
              help="Independent eps_half runs (each its own rule draw and population); "
                   "eps_half is their mean, eps_half_stderr their spread / sqrt(repeats).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON to stdout.")
@max_memory_option
def thresholds(v, m, s, n_c, channel, depth, population, repeats, seed, as_json,
               max_memory) -> None:
    """Critical noise eps*, slope, nu and regime of the hierarchy mean-field map; with --channel
    and --depth, the noise eps_half at which the class survives with probability 1/2 (for
    gaussian: t/T of the linear ddpm schedule)."""
    from ..studies.hierarchy import hierarchy_thresholds

    with option_names(OPTIONS), stage("thresholds: fixed points and eps_half"):
        summary = hierarchy_thresholds(v, m, s, n_c, channel, depth, population, repeats, seed,
                                       max_memory)
    if as_json:
        click.echo(dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key}: {value}")


def write_hierarchy_diagram(outputs: OutputSet, formats=("png",), v: int = 32, m: int = 8,
                            s: int = 2, n_c: int | None = None, eps=None, depths=None,
                            f_values=None, s_values=(2, 3, 4),
                            max_memory: int | None = None) -> dict:
    """Write the mean-field maps (two CSVs + JSON + figure) and return their summary."""
    from ..studies import hierarchy as diagrams
    from ..studies.tables import flag_summary

    with option_names(DIAGRAM_OPTIONS):
        plan = diagrams.plan_hierarchy_diagram(v, m, s, n_c, eps, depths, f_values, s_values,
                                               max_memory)
    outputs.claim(["hierarchy_map.csv", "hierarchy_eps_star.csv", "hierarchy.json"]
                  + [f"hierarchy.{fmt}" for fmt in formats])
    with stage("phase-diagram hierarchy: mean-field maps"):
        diagram = diagrams.run_hierarchy_diagram(plan)
    outputs.write_csv("hierarchy_map.csv", diagram.map_table())
    outputs.write_csv("hierarchy_eps_star.csv", diagram.eps_star_table())
    outputs.write_json("hierarchy.json", run_metadata("phase-diagram hierarchy", {
        "v": v, "m": m, "s": s, "n_c": n_c if n_c is not None else v, "eps": diagram.eps,
        "depths": diagram.depths, "f": diagram.f_values, "s_values": list(diagram.s_values)},
        level_convention="level 0 = root (class), L = leaves", noise_convention="eps-process",
        solver={"map": "compiled mean-field map (numba)",
                "fixed_point": "numpy.roots of the reduced symbolic polynomial"},
        convergence=diagram.convergence(),
        critical_point=flag_summary(diagram.critical_point, diagrams.REGIME_REASONS)))
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.hierarchy import preservation_map_figure
        fig = preservation_map_figure(diagram.eps, diagram.depths, diagram.class_preservation,
                                      diagram.large_v["eps_star"], diagram.f_values,
                                      list(diagram.s_values), diagram.levels[-1],
                                      parameters={"$v$": v, "$m$": m, "$s$": s,
                                                  "$n_c$": n_c if n_c is not None else v})
        outputs.save_figure(fig, "hierarchy", formats)
        close(fig)
    return {**diagram.summary(), "files": [p.name for p in outputs.written]}


@register_default_diagram("hierarchy")
def default_hierarchy_diagram(outputs: OutputSet, formats, max_memory: int | None = None) -> dict:
    return write_hierarchy_diagram(outputs, formats, max_memory=max_memory)


@phase_diagram.command("hierarchy")
@_model_options
@click.option("--eps", type=FLOATS, default=None, help="eps grid (default 0..1, 101 points).")
@click.option("--depths", type=INTS, default=None, help="Depths L (default 1..12).")
@click.option("--f", "f_values", type=FLOATS, default=None, help="f grid for eps*(f, s).")
@click.option("--s-values", type=INTS, default="2,3,4", show_default=True,
              help="Branching factors s of eps*(f, s).")
@output_options("diffphase-out/hierarchy")
@max_memory_option
def phase_diagram_hierarchy(v, m, s, n_c, eps, depths, f_values, s_values, outputs, formats,
                            as_json, max_memory) -> None:
    """Class preservation over (eps, depth) and per level, and eps* over (f, s)."""
    summary = write_hierarchy_diagram(outputs, formats, v, m, s, n_c, eps, depths, f_values,
                                      s_values, max_memory)
    emit(summary, as_json, outputs)


@simulate.command("hierarchy")
@_model_options
@option("--depths", "depths", aliases=("--depth",), type=INTS, default="4", show_default=True,
        help="Tree depths L, comma-separated: one forward-backward run each.")
@click.option("--channel", type=CHANNEL_CHOICE, default="eps", show_default=True)
@click.option("--noise", type=FLOATS, default="0.1,0.3,0.5,0.6,0.7,0.8,0.9", show_default=True,
              help="Noise levels in [0, 1] (gaussian: t/T of the linear ddpm schedule).")
@click.option("--samples", type=int, default=1000, show_default=True)
@click.option("--population", type=int, default=20000, show_default=True,
              help="Population size of the population-dynamics prediction (0: skip).")
@click.option("--engine", type=click.Choice(BP_ENGINES), default="numba",
              show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@output_options("diffphase-out/hierarchy-simulation")
@max_memory_option
def simulate_hierarchy(v, m, s, n_c, depths, channel, noise, samples, population, engine,
                       device, seed, outputs, formats, as_json, max_memory) -> None:
    """Forward-backward experiments with exact BP at one or several depths; measured curves next
    to the predictions (one random rule set per depth, drawn from --seed)."""
    from ..studies import hierarchy as sim
    from ..studies.tables import flag_summary

    with option_names({**SIMULATION_OPTIONS, "depths": "--depths", "L": "--depths"}):
        plan = sim.plan_forward_backward(v, m, s, n_c, depths, channel, noise, samples,
                                         population, engine, device, seed, max_memory)
    stem = "hierarchy_simulation"
    outputs.claim([f"{stem}.csv", f"{stem}_levels.csv", f"{stem}.json"] +
                  [f"{stem}.{fmt}" for fmt in formats])
    with stage("simulate hierarchy: forward-backward runs"):
        runs = sim.run_forward_backward(plan, progress_bar(desc="forward-backward",
                                                           unit="noise"))
    columns, level_rows = sim.forward_backward_tables(runs)
    outputs.write_csv(f"{stem}.csv", columns)
    outputs.write_csv(f"{stem}_levels.csv", level_rows)
    results = flag_summary({str(run.depth): {"class_preservation": run.measured["class_posterior"],
                                             "predicted": run.predicted} for run in runs})
    meta = run_metadata("simulate hierarchy", {
        "v": v, "m": m, "s": s, "n_c": plan.models[0].n_c, "depths": plan.depths,
        "channel": channel, "noise": noise, "samples": samples, "population": population},
        seed=seed, level_convention="level 0 = root (class), L = leaves",
        noise_convention=NOISE_CONVENTION[channel],
        solver={"bp_engine": engine, "device": device,
                "population_repeats": sim.POPULATION_REPEATS},
        convergence={str(run.depth): run.convergence for run in runs}, results=results)
    outputs.write_json(f"{stem}.json", meta)
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.hierarchy import forward_backward_figure
        fig = forward_backward_figure(noise, [(run.depth, run.measured, run.predicted)
                                              for run in runs], NOISE_CONVENTION[channel],
                                      parameters={"$v$": v, "$m$": m, "$s$": s, "channel": channel,
                                                  "samples": samples, "seed": seed})
        outputs.save_figure(fig, stem, formats)
        close(fig)
    emit({"depths": results, "files": [p.name for p in outputs.written]}, as_json, outputs)


def register(cli) -> None:
    cli.add_command(thresholds)
