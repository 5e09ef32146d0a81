"""Command line of the hierarchy model (THEORY C): ``thresholds``, ``phase-diagram hierarchy``,
``simulate hierarchy``. Thin: check arguments, call the library, write CSV + JSON + PNG.
Level 0 is the root (the class), level ``L`` the leaves, in every output."""

from __future__ import annotations

import click
import numpy as np

from ..errors import ParameterError, require_in_range
from ..models import BP_ENGINES, CHANNELS, DEVICES, NOISE_CONVENTION
from ..outputs import OutputSet, dumps, run_metadata
from .common import (
    FLOATS,
    emit,
    output_options,
    phase_diagram,
    progress_enabled,
    register_default_diagram,
    simulate,
)

CHANNEL_CHOICE = click.Choice(CHANNELS)


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


def thresholds_summary(v: int, m: int, s: int, n_c: int | None = None, channel: str | None = None,
                       depth: int | None = None, population: int = 20000, repeats: int = 2,
                       seed: int = 0) -> dict:
    """Mean-field ``eps*``, slope, ``nu``, regime; with a channel and depth also ``eps_half``."""
    from ..data.rhm import check_rhm_sizes
    from ..solvers import hierarchy as mf

    if channel is not None and depth is None:
        raise ParameterError("--depth", None, "an integer >= 1 when --channel is given")
    if depth is not None:
        check_rhm_sizes(v, m, s, depth, n_c)
    crit = mf.critical_point(v, m, s)
    f = m / v ** (s - 1)
    large = mf.critical_point_large_v(f, s)
    summary = {"v": v, "m": m, "s": s, "n_c": n_c if n_c is not None else v, "f": f,
               "eps_star": crit["eps_star"], "slope": crit["slope"], "nu": crit["nu"],
               "regime": crit["regime"], "fixed_point": crit["fixed_point"],
               "slope_at_1": crit["slope_at_1"], "slope_at_uniform": crit["slope_at_uniform"],
               "eps_star_large_v": large["eps_star"], "slope_large_v": large["slope"],
               "nu_large_v": large["nu"], "level_convention": "level 0 = root, L = leaves"}
    if channel is not None:
        from ..data.rhm import RandomHierarchyModel
        from ..solvers.population import half_point

        model = RandomHierarchyModel(v, m, s, depth, n_c, seed=seed)
        half = half_point(model, channel, population=population, repeats=repeats, seed=seed)
        summary.update(channel=channel, depth=depth, eps_half=half.noise,
                       eps_half_converged=half.converged, eps_half_bracket=half.bracket,
                       noise_convention=NOISE_CONVENTION[channel], population=population,
                       repeats=repeats, seed=seed, method="population dynamics (quenched rules)")
        if channel == "eps":
            grid = np.linspace(0, 1, 2001)
            b0 = mf.mean_field_levels(grid, v, m, s, depth, n_c)[:, 0]
            below = np.nonzero(b0 < 0.5)[0]
            summary["eps_half_mean_field"] = float(grid[below[0]]) if below.size else None
    return summary


@click.command("thresholds")
@_model_options
@click.option("--channel", type=CHANNEL_CHOICE, default=None,
              help="Also compute eps_half for this noise channel (population dynamics).")
@click.option("--depth", type=int, default=None, help="Tree depth L for --channel.")
@click.option("--population", type=int, default=20000, show_default=True)
@click.option("--repeats", type=int, default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def thresholds(v, m, s, n_c, channel, depth, population, repeats, seed, as_json) -> None:
    """Critical noise eps*, slope, nu and regime of the hierarchy mean-field map; with --channel
    and --depth, the noise eps_half at which the class survives with probability 1/2 (for
    gaussian: t/T of the linear ddpm schedule)."""
    summary = thresholds_summary(v, m, s, n_c, channel, depth, population, repeats, seed)
    if as_json:
        click.echo(dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key}: {value}")


def hierarchy_diagram(outputs: OutputSet, formats=("png",), v: int = 32, m: int = 8, s: int = 2,
                      n_c: int | None = None, eps=None, depths=None, f_values=None,
                      s_values=(2, 3, 4)) -> dict:
    """Mean-field class preservation over (eps, depth), per-level beliefs, eps* over (f, s)."""
    from ..plotting import close
    from ..plotting.hierarchy import preservation_map_figure
    from ..solvers import hierarchy as mf

    eps = np.linspace(0, 1, 101) if eps is None else np.asarray(eps, float)
    depths = np.arange(1, 13) if depths is None else np.asarray(depths).astype(int)
    f_values = np.linspace(0.01, 0.99, 99) if f_values is None else np.asarray(f_values, float)
    for x in f_values:
        require_in_range("--f", x, 0, 1, closed=(False, True))
    mf.check_map_parameters(v, m, s, n_c)
    names = ["hierarchy_map.csv", "hierarchy_eps_star.csv", "hierarchy.json"] + [
        f"hierarchy.{fmt}" for fmt in formats]
    outputs.claim(names)
    per_depth = [mf.mean_field_levels(eps, v, m, s, int(d), n_c) for d in depths]
    rows = {"eps": [], "depth_L": [], "level": [], "true_value_belief_mean_field": []}
    for d, levels in zip(depths, per_depth, strict=True):
        for lv in range(int(d) + 1):
            rows["eps"].extend(eps)
            rows["depth_L"].extend([int(d)] * eps.size)
            rows["level"].extend([lv] * eps.size)
            rows["true_value_belief_mean_field"].extend(levels[:, lv])
    outputs.write_csv("hierarchy_map.csv", rows)
    grid_f, grid_s = np.meshgrid(f_values, np.asarray(s_values, int))
    large = mf.critical_grid_large_v(grid_f, grid_s)
    outputs.write_csv("hierarchy_eps_star.csv", {
        "f": grid_f.ravel(), "s": grid_s.ravel(), "eps_star_large_v": large["eps_star"].ravel(),
        "slope": large["slope"].ravel(), "nu": large["nu"].ravel(),
        "regime": large["regime"].ravel()})
    crit = mf.critical_point(v, m, s)
    summary = run_metadata("phase-diagram hierarchy", {
        "v": v, "m": m, "s": s, "n_c": n_c if n_c is not None else v, "eps": eps,
        "depths": depths, "f": f_values, "s_values": list(s_values)},
        level_convention="level 0 = root (class), L = leaves", noise_convention="eps-process",
        solver={"map": "compiled mean-field map (numba)", "fixed_point": "numpy.roots of the "
                "reduced symbolic polynomial"},
        convergence={"eps_star_points": int(grid_f.size),
                     "regimes": {r: int((large["regime"] == r).sum()) for r in
                                 ("transition", "lost", "kept", "partial")}},
        critical_point=crit, seed=None)
    outputs.write_json("hierarchy.json", summary)
    preservation = np.stack([levels[:, 0] for levels in per_depth])
    fig = preservation_map_figure(eps, depths, preservation, large["eps_star"], f_values,
                                  list(s_values), per_depth[-1])
    outputs.save_figure(fig, "hierarchy", formats)
    close(fig)
    return {"eps_star": crit["eps_star"], "slope": crit["slope"], "nu": crit["nu"],
            "regime": crit["regime"], "files": [p.name for p in outputs.written]}


@register_default_diagram("hierarchy")
def default_hierarchy_diagram(outputs: OutputSet, formats) -> dict:
    return hierarchy_diagram(outputs, formats)


@phase_diagram.command("hierarchy")
@_model_options
@click.option("--eps", type=FLOATS, default=None, help="eps grid (default 0..1, 101 points).")
@click.option("--depths", type=FLOATS, default=None, help="Depths L (default 1..12).")
@click.option("--f", "f_values", type=FLOATS, default=None, help="f grid for eps*(f, s).")
@click.option("--s-values", type=FLOATS, default="2,3,4", show_default=True)
@output_options("diffphase-out/hierarchy")
def phase_diagram_hierarchy(v, m, s, n_c, eps, depths, f_values, s_values, outputs, formats,
                            as_json) -> None:
    """Class preservation over (eps, depth) and per level, and eps* over (f, s)."""
    if eps is not None:
        for x in eps:
            require_in_range("--eps", x, 0, 1)
    if depths is not None:
        for d in depths:
            if d < 1 or d != int(d) or 3 ** d > 1e300:
                raise ParameterError("--depths", d, "integers >= 1")
    s_values = tuple(int(x) for x in s_values)
    for x in s_values:
        if x < 2:
            raise ParameterError("--s-values", x, "integers >= 2")
    summary = hierarchy_diagram(outputs, formats, v, m, s, n_c, eps, depths, f_values, s_values)
    emit(summary, as_json, outputs)


@simulate.command("hierarchy")
@_model_options
@click.option("--depth", "--depths", "depths", type=FLOATS, default="4", show_default=True,
              help="Tree depth L, or several (comma-separated): one forward-backward run each.")
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
def simulate_hierarchy(v, m, s, n_c, depths, channel, noise, samples, population, engine, device,
                       seed, outputs, formats, as_json) -> None:
    """Forward-backward experiments with exact BP at one or several depths; measured curves next
    to the predictions (one random rule set per depth, drawn from --seed)."""
    from ..backend import get_array_module
    from ..data.rhm import RandomHierarchyModel
    from ..plotting import close
    from ..plotting.hierarchy import forward_backward_figure
    from ..solvers.bp import bp_batch_size

    for x in noise:
        require_in_range("--noise", x, 0, 1)
    depth_list = []
    for d in depths:
        if not float(d).is_integer() or d < 1:
            raise ParameterError("--depth", d, "integers >= 1")
        depth_list.append(int(d))
    if samples < 1:
        raise ParameterError("--samples", samples, "an integer >= 1")
    if population != 0 and population < 100:
        raise ParameterError("--population", population, "0 (skip) or an integer >= 100")
    models = [RandomHierarchyModel(v, m, s, depth, n_c, seed=seed) for depth in depth_list]
    for model in models:  # a tree too large: error now, before any run
        bp_batch_size(model.v, model.n_c, model.s, model.L, samples)
    get_array_module(device)
    stem = "hierarchy_simulation"
    outputs.claim([f"{stem}.csv", f"{stem}_levels.csv", f"{stem}.json"] +
                  [f"{stem}.{fmt}" for fmt in formats])
    progress = None
    if progress_enabled():
        from tqdm import tqdm

        def progress(items):
            return tqdm(items, desc="forward-backward", unit="noise")
    runs = [_forward_backward_at_depth(model, channel, noise, samples, population, engine,
                                       device, seed, progress) for model in models]
    columns: dict[str, list] = {}
    level_rows: dict[str, list] = {}
    for depth, run in zip(depth_list, runs, strict=True):
        _extend(columns, {"depth_L": [depth] * len(noise), **run["columns"]})
        _extend(level_rows, {"depth_L": [depth] * len(run["levels"]["noise"]), **run["levels"]})
    outputs.write_csv(f"{stem}.csv", columns)
    outputs.write_csv(f"{stem}_levels.csv", level_rows)
    meta = run_metadata("simulate hierarchy", {
        "v": v, "m": m, "s": s, "n_c": models[0].n_c, "depths": depth_list, "channel": channel,
        "noise": noise, "samples": samples, "population": population},
        seed=seed, level_convention="level 0 = root (class), L = leaves",
        noise_convention=NOISE_CONVENTION[channel],
        solver={"bp_engine": engine, "device": device, "population_repeats": 2},
        convergence={str(d): run["convergence"] for d, run in zip(depth_list, runs, strict=True)},
        results={str(d): {"class_preservation": run["measured"]["class_posterior"],
                          "predicted": run["predicted"]}
                 for d, run in zip(depth_list, runs, strict=True)})
    outputs.write_json(f"{stem}.json", meta)
    fig = forward_backward_figure(noise, [(d, run["measured"], run["predicted"])
                                          for d, run in zip(depth_list, runs, strict=True)],
                                  NOISE_CONVENTION[channel])
    outputs.save_figure(fig, stem, formats)
    close(fig)
    emit({"depths": {str(d): {"class_preservation": run["measured"]["class_posterior"],
                              "predicted": run["predicted"]}
                     for d, run in zip(depth_list, runs, strict=True)},
          "files": [p.name for p in outputs.written]}, as_json, outputs)


def _extend(table: dict, rows: dict) -> None:
    for key, values in rows.items():
        table.setdefault(key, []).extend(list(values))


def _forward_backward_at_depth(model, channel, noise, samples, population, engine, device, seed,
                               progress) -> dict:
    """Measured curves, predictions, tidy columns and convergence counts at one depth."""
    from ..simulate.hierarchy import forward_backward_curves
    from ..solvers import hierarchy as mf
    from ..solvers.population import preservation_curve

    depth = model.L
    rng = np.random.default_rng([seed, depth])
    runs = forward_backward_curves(model, channel, noise, samples, rng, progress=progress,
                                   engine=engine, device=device)
    predicted = {}
    if channel == "eps":
        predicted["mean field"] = mf.mean_field_levels(noise, model.v, model.m, model.s, depth,
                                                       model.n_c)[:, 0]
    pd_runs = []
    if population:
        pd_runs = preservation_curve(model, channel, noise, population, repeats=2, seed=seed)
        predicted["population dynamics"] = np.array([r.class_preservation for r in pd_runs])
    measured = {key: np.array([r[key] for r in runs]) for key in
                ("unchanged", "true_value_belief", "upward_true_value_belief", "class_posterior",
                 "class_posterior_se", "class_preservation", "susceptibility")}
    # the susceptibility is measured only: the toolkit has no prediction for it (THEORY C)
    columns = {"noise": list(noise),
               "noise_convention": [NOISE_CONVENTION[channel]] * len(noise),
               "class_preservation_sampled": measured["class_preservation"],
               "class_preservation_posterior": measured["class_posterior"],
               "class_preservation_posterior_se": measured["class_posterior_se"],
               "susceptibility_var_changed_leaves_over_d": measured["susceptibility"]}
    for name, values in predicted.items():
        columns["class_preservation_" + name.replace(" ", "_")] = values
    levels = {"noise": [], "level": [], "p_unchanged": [], "true_value_marginal": [],
              "upward_true_value_belief": [],
              "upward_true_value_belief_population_dynamics": []}
    for i, x in enumerate(noise):
        for lv in range(depth + 1):
            levels["noise"].append(x)
            levels["level"].append(lv)
            levels["p_unchanged"].append(measured["unchanged"][i, lv])
            levels["true_value_marginal"].append(measured["true_value_belief"][i, lv])
            levels["upward_true_value_belief"].append(measured["upward_true_value_belief"][i, lv])
            levels["upward_true_value_belief_population_dynamics"].append(
                pd_runs[i].true_value_belief[lv] if pd_runs else np.nan)
    convergence = {"bp_guarded_messages": int(sum(r["n_guarded"] for r in runs)),
                   "population_guarded_messages": int(sum(r.n_guarded for r in pd_runs)),
                   "population_class_standard_error": [float(r.standard_error[0])
                                                       for r in pd_runs]}
    return {"measured": measured, "predicted": predicted, "columns": columns, "levels": levels,
            "convergence": convergence}


def register(cli) -> None:
    cli.add_command(thresholds)
