"""Command line of the memorization model (THEORY B): ``critical-times``,
``phase-diagram memorization``, ``simulate memorization``. Thin: check arguments, call the
library, write CSV + JSON (+ PNG)."""

from __future__ import annotations

import click
import numpy as np

from ..errors import ParameterError, require_in_range, require_int
from ..models import DEVICES, MEMORIZATION_EXPERIMENTS, REVERSIBLE_PROCESSES, SUBSPACES
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


def _data_options(func):
    func = click.option("--subspace", type=click.Choice(SUBSPACES),
                        default="random", show_default=True,
                        help="random: THEORY A spectrum; orthonormal: eigenvalues = "
                        "variances.")(func)
    func = click.option("--process", type=click.Choice(REVERSIBLE_PROCESSES), default="ou",
                        show_default=True, help="Time convention of the t_* outputs.")(func)
    func = click.option("--dim", type=int, default=256, show_default=True,
                        help="Ambient dimension d.")(func)
    func = click.option("--variances", type=FLOATS, default="1", show_default=True,
                        help="Latent variances sigma_k^2, comma-separated.")(func)
    func = click.option("--fractions", type=FLOATS, default="1", show_default=True,
                        help="Group fractions alpha_k = m_k/d, comma-separated.")(func)
    return func


def critical_times_summary(fractions, variances, dim: int, n_train: int, process: str = "ou",
                           subspace: str = "random") -> dict:
    """``tau_C``, ``t_C``, ``t_S`` and per-group REM critical times (both normalizations)."""
    from ..solvers import memorization as sol

    n_train = require_int("--n-train", n_train, minimum=2)
    spectrum = sol.CovarianceSpectrum.from_groups(fractions, variances, dim, subspace)
    collapse = sol.collapse_tau(spectrum, n_train)
    tau_c = float(collapse.tau[0])
    tau_s, exists = sol.speciation_tau(spectrum.largest)
    groups = []
    along, raws, spheres = sol.rem_group_taus(variances, spectrum, n_train)
    for frac, var, direction_var, raw, sphere in zip(
            np.atleast_1d(fractions), np.atleast_1d(variances), along, raws[:, 0], spheres[:, 0],
            strict=True):
        raw, sphere = float(raw), float(sphere)
        groups.append({"fraction": float(frac), "variance": float(var),
                       "direction_variance": float(direction_var),
                       "tau_c_rem_raw": raw, f"t_c_rem_raw_{process}":
                       float(sol.process_time(raw, process)),
                       "tau_c_rem_sphere": sphere, f"t_c_rem_sphere_{process}":
                       float(sol.process_time(sphere, process))})
    return {"tau_C": tau_c, "t_C": float(sol.process_time(tau_c, process)),
            "tau_S": float(tau_s), "t_S": float(sol.process_time(tau_s, process)),
            "speciation_exists": bool(exists), "largest_eigenvalue": spectrum.largest,
            "process": process, "subspace": subspace, "dim": dim, "n_train": n_train,
            "log_n_per_d": float(np.log(n_train) / dim), "per_group": groups,
            "collapse_solver": collapse.summary(),
            "conventions": {"tau": "D/a^2", "t": f"{process} process time",
                            "rem_raw": "g = 1 (unnormalized data)",
                            "rem_sphere": "g = 0, variances divided by E|y|^2",
                            "rem_direction_variance": "data variance along a latent "
                            "direction of the group in R^d: the group variance for orthonormal "
                            "subspaces, group variance + tr C / d for random ones (d -> "
                            "infinity)"}}


@click.command("critical-times")
@_data_options
@click.option("--n-train", "n_train", type=int, default=20000, show_default=True,
              help="Number of training points N.")
@output_options("diffphase-out/critical-times")
def critical_times_command(fractions, variances, dim, process, subspace, n_train,
                           outputs: OutputSet, formats, as_json: bool) -> None:
    """Collapse time t_C, speciation time t_S and per-group memorization times (THEORY B)."""
    require_int("--dim", dim, minimum=1)
    outputs.claim(["critical_times.csv", "critical_times.json"])
    summary = critical_times_summary(fractions, variances, dim, n_train, process, subspace)
    rows = summary["per_group"]
    outputs.write_csv("critical_times.csv", {k: [r[k] for r in rows] for k in rows[0]})
    params = {"fractions": fractions, "variances": variances, "dim": dim, "n_train": n_train,
              "process": process, "subspace": subspace}
    outputs.write_json("critical_times.json", {**run_metadata("critical-times", params),
                                               "result": summary})
    if as_json:
        click.echo(dumps(summary))
    else:
        click.echo(f"tau_C = {summary['tau_C']:.6g}  t_C ({process}) = {summary['t_C']:.6g}")
        click.echo(f"tau_S = {summary['tau_S']:.6g}  t_S ({process}) = {summary['t_S']:.6g}")
        for r in rows:
            click.echo(f"group variance {r['variance']:g}: tau_c REM raw = "
                       f"{r['tau_c_rem_raw']:.4g}, sphere = {r['tau_c_rem_sphere']:.4g}")
        emit(summary, False, outputs)


def memorization_diagram(outputs: OutputSet, formats, fractions=(0.1, 0.1), variances=(4.0, 1.0),
                         dim: int = 256, process: str = "ou", subspace: str = "random",
                         rate_min: float = 0.005, rate_max: float = 0.2, points: int = 60) -> dict:
    """``(ln N / d, t)`` map: collapse line, speciation line, per-group REM lines for raw and
    sphere-normalized data (the same lines as :func:`critical_times_summary`)."""
    from ..plotting.memorization import diagram_figure
    from ..solvers import memorization as sol

    require_in_range("--rate-min", rate_min, 0, np.inf, closed=(False, True))
    if rate_max <= rate_min:
        raise ParameterError("--rate-max", rate_max, f"> --rate-min = {rate_min}")
    require_int("--dim", dim, minimum=1)
    if rate_min * dim < np.log(2.0):
        raise ParameterError("--rate-min", rate_min,
                             f">= ln 2 / d = {np.log(2.0) / dim:.4g} (N = exp(d ln N/d) >= 2)")
    points = require_int("--points", points, minimum=2)
    stems = ["memorization_diagram.csv", "memorization_diagram.json"]
    outputs.claim(stems + [f"memorization_diagram.{f}" for f in formats])
    spectrum = sol.CovarianceSpectrum.from_groups(fractions, variances, dim, subspace)
    rates = np.geomspace(rate_min, rate_max, points)
    n_train = np.exp(rates * dim)
    collapse = sol.collapse_tau(spectrum, n_train)
    tau_s, exists = sol.speciation_tau(spectrum.largest)
    lines = {"collapse": collapse.tau, "speciation": np.full(points, float(tau_s))}
    _, raws, spheres = sol.rem_group_taus(variances, spectrum, n_train)
    for var, raw, sphere in zip(np.atleast_1d(variances), raws, spheres, strict=True):
        lines[f"rem_raw_variance_{var:g}"] = raw
        lines[f"rem_sphere_variance_{var:g}"] = sphere
    cols = {"log_n_per_d": [], "n_train": [], "line": [], "tau": [], f"t_{process}": []}
    for name, taus in lines.items():
        cols["log_n_per_d"] += list(rates)
        cols["n_train"] += list(n_train)
        cols["line"] += [name] * points
        cols["tau"] += list(taus)
        cols[f"t_{process}"] += list(sol.process_time(taus, process))
    outputs.write_csv("memorization_diagram.csv", cols)
    fig = diagram_figure(rates, {k: sol.process_time(v, process) for k, v in lines.items()},
                         process)
    outputs.save_figure(fig, "memorization_diagram", formats)
    params = {"fractions": list(fractions), "variances": list(variances), "dim": dim,
              "process": process, "subspace": subspace, "rate_min": rate_min,
              "rate_max": rate_max, "points": points}
    summary = {"lines": list(lines), "collapse_solver": collapse.summary(),
               "speciation_exists": bool(exists), "tau_S": float(tau_s)}
    outputs.write_json("memorization_diagram.json",
                       {**run_metadata("phase-diagram memorization", params), **summary})
    return summary


@register_default_diagram("memorization")
def default_memorization_diagram(outputs: OutputSet, formats) -> dict:
    return memorization_diagram(outputs, formats)


@phase_diagram.command("memorization")
@_data_options
@click.option("--rate-min", type=float, default=0.005, show_default=True, help="Smallest ln N/d.")
@click.option("--rate-max", type=float, default=0.2, show_default=True, help="Largest ln N/d.")
@click.option("--points", type=int, default=60, show_default=True)
@output_options("diffphase-out/memorization")
def phase_diagram_memorization(fractions, variances, dim, process, subspace, rate_min, rate_max,
                               points, outputs: OutputSet, formats, as_json: bool) -> None:
    """(ln N / d, t) map with the collapse, speciation and per-group memorization lines."""
    summary = memorization_diagram(outputs, formats, tuple(fractions), tuple(variances), dim,
                                   process, subspace, rate_min, rate_max, points)
    emit(summary, as_json, outputs)


@simulate.command("memorization")
@click.option("--experiment",
              type=click.Choice(MEMORIZATION_EXPERIMENTS),
              default="collapse", show_default=True)
@click.option("--dims", type=FLOATS, default="32,64", show_default=True,
              help="collapse, trajectories: ambient dimensions.")
@click.option("--log-n-per-d", "rate", type=float, default=0.09, show_default=True,
              help="collapse, trajectories: ln N / d.")
@click.option("--n-train", "n_train", type=int, default=1000, show_default=True,
              help="geometric: number of training points.")
@click.option("--probes", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True)
@output_options("diffphase-out/simulate-memorization")
def simulate_memorization(experiment, dims, rate, n_train, probes, seed, device,
                          outputs: OutputSet, formats, as_json: bool) -> None:
    """Measured curves next to the predictions (collapse, geometric memorization, speciation)."""
    from tqdm import tqdm

    from ..backend import get_array_module
    from ..plotting.memorization import curves_figure
    from ..simulate import memorization as sim

    get_array_module(device)  # a GPU asked for but absent fails here
    probes = require_int("--probes", probes, minimum=1)
    if seed < 0:
        raise ParameterError("--seed", seed, ">= 0")
    rng = np.random.default_rng(seed)
    stem = f"simulate_{experiment}"
    outputs.claim([f"{stem}.csv", f"{stem}.json"] + [f"{stem}.{f}" for f in formats])
    cols: dict[str, list] = {}
    predictions: dict = {}

    def add(row: dict) -> None:
        for k, v in row.items():
            cols.setdefault(k, []).append(v)

    if experiment == "collapse":
        for dim in tqdm([int(d) for d in dims], disable=not progress_enabled(), desc="dims"):
            res = sim.collapse_experiment(require_int("--dims", dim, 2), rate, rng,
                                          n_probes=probes, device=device)
            predictions[f"d={dim}"] = {k: res[k] for k in ("n_train", "tau_C", "crossover",
                                                           "width_ln_tau")}
            c = res["curves"]
            for i, tau in enumerate(c["tau"]):
                add({"dim": dim, "n_train": res["n_train"], "tau": tau,
                     "own_weight": c["own_weight"][i],
                     "participation_ratio": c["participation_ratio"][i],
                     "tau_C_predicted": res["tau_C"]})
        x_key, y_keys, group = "tau", ["own_weight"], "dim"
    elif experiment == "trajectories":
        for dim in tqdm([int(d) for d in dims], disable=not progress_enabled(), desc="dims"):
            dim = require_int("--dims", dim, 2)
            res = sim.return_fraction(dim, max(2, int(round(np.exp(dim * rate)))), rng,
                                      n_traj=probes)
            predictions[f"d={dim}"] = {"n_train": res["n_train"], "tau_C": res["tau_C"],
                                       "t_C_ou": res["t_C"], "crossover_tau": sim.crossing(
                                           res["tau"], res["return_fraction"], 0.5)}
            for i, tau in enumerate(res["tau"]):
                add({"dim": dim, "n_train": res["n_train"], "tau": tau, "t_ou": res["t"][i],
                     "return_fraction": res["return_fraction"][i],
                     "on_training_point": res["on_training_point"][i],
                     "tau_C_predicted": res["tau_C"]})
        x_key, y_keys, group = "tau", ["return_fraction"], "dim"
    elif experiment == "geometric":
        for normalized in tqdm((True, False), disable=not progress_enabled(), desc="data"):
            res = sim.geometric_experiment(require_int("--n-train", n_train, 2), normalized, rng)
            for name, b in res["blocks"].items():
                label = f"{'sphere' if normalized else 'raw'} {name}"
                predictions[label] = {"tau_c_predicted": b["tau_c_predicted"],
                                      "tau_c_measured": b["tau_c_measured"]}
                for i, tau in enumerate(b["tau"]):
                    add({"series": label, "tau": tau,
                         "participation_ratio": b["participation_ratio"][i],
                         "rem_participation_ratio": float(sim.solvers.rem_participation_ratio(
                             tau, b["tau_c_predicted"])),
                         "jn_along_direction": b["jn_along_direction"][i],
                         "dimension_readout": b["dimension_readout"][i],
                         "dimension_readout_exact_score": np.nan,
                         **{f"jn_mean_eigenvalue_{sub.replace(' ', '_')}": float(np.mean(v[i]))
                            for sub, v in b["subspace_spectra"].items()}})
            held = res["heldout"]
            label = f"{'sphere' if normalized else 'raw'} held-out"
            for i, tau in enumerate(held["tau"]):
                add({"series": label, "tau": tau, "participation_ratio": np.nan,
                     "rem_participation_ratio": np.nan, "jn_along_direction": np.nan,
                     "dimension_readout": held["dimension_readout"][i],
                     "dimension_readout_exact_score": held["dimension_readout_exact_score"][i],
                     **{f"jn_mean_eigenvalue_{sub.replace(' ', '_')}": float(np.mean(v[i]))
                        for sub, v in held["subspace_spectra"].items()}})
        x_key, y_keys, group = "tau", ["participation_ratio", "rem_participation_ratio"], "series"
    else:
        mixture = sim.TwoGaussianMixture.create(8, 3.0, 1.0)
        tau_s = float(sim.solvers.speciation_tau(mixture.largest_eigenvalue())[0])
        for factor in tqdm(np.geomspace(0.1, 10, 9), disable=not progress_enabled(), desc="tau"):
            tau = factor * tau_s
            add({"series": "cloning", "tau": tau, "tau_S": tau_s,
                 "same_cluster_measured": sim.cloning_experiment(tau, mixture, probes * 10, rng),
                 "same_cluster_predicted": float(sim.solvers.cloning_probability(
                     tau, mixture.mean_norm2, mixture.sigma2))})
        predictions["tau_S"] = tau_s
        x_key, y_keys, group = "tau", ["same_cluster_measured", "same_cluster_predicted"], "series"
    outputs.write_csv(f"{stem}.csv", cols)
    outputs.save_figure(curves_figure(cols, x_key, y_keys, group), stem, formats)
    params = {"experiment": experiment, "dims": dims, "log_n_per_d": rate, "n_train": n_train,
              "probes": probes, "device": device}
    summary = {"experiment": experiment, "predictions": predictions, "seed": seed}
    outputs.write_json(f"{stem}.json", {**run_metadata("simulate memorization", params), **summary})
    emit(summary, as_json, outputs)


def register(cli) -> None:
    """Attach ``critical-times`` (the group commands are attached to their groups above)."""
    cli.add_command(critical_times_command)
