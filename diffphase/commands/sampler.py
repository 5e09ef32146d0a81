"""Commands of DDPM coefficient design (THEORY D): ``sampler-error`` and ``phase-diagram sampler``.

``sampler-error`` evaluates the exact ``KL(law X_1 || law Y_1)`` (tangent + normal split) and TV
bounds for Gaussian data on a ``k``-subspace of ``R^dim``; ``phase-diagram sampler`` maps the
error over ``(T, d)`` per design and fits its decay in ``T``. Both write CSV + JSON + PNG.
"""

from __future__ import annotations

import click
import numpy as np

from ..errors import ParameterError, require_finite, require_int, require_positive
from ..models import ALL_DESIGNS, SCHEDULES
from ..outputs import OutputSet, run_metadata
from .common import FLOATS, emit, output_options, phase_diagram, register_default_diagram

DESIGN_CHOICES = ALL_DESIGNS


def _schedule_params(schedule: str, c0: float, c1: float) -> dict:
    if schedule != "li-yan":
        return {}
    return {"c0": require_positive("--c0", c0), "c1": require_positive("--c1", c1)}


def _custom_design(betas: np.ndarray, eta_scale: float, sigma2_scale: float):
    """``eta = eta_scale (1 - alpha)``, ``sigma^2 = sigma2_scale * sigma_star^2``."""
    from ..solvers.sampler import design_arrays

    require_finite("--eta-scale", eta_scale)
    if require_finite("--sigma2-scale", sigma2_scale) < 0:
        raise ParameterError("--sigma2-scale", sigma2_scale, ">= 0")
    eta_star, sigma2_star = design_arrays("star", betas)
    eta, sigma2 = eta_scale * eta_star, sigma2_scale * sigma2_star
    return eta, sigma2


@click.command("sampler-error")
@click.option("--T", "T", type=int, default=1000, show_default=True, help="Number of steps.")
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
def sampler_error_command(T, dim, k, design, schedule, c0, c1, variances, score_bias, eta_scale,
                          sigma2_scale, outputs: OutputSet, formats, as_json: bool) -> None:
    """Exact KL(law X_1 || law Y_1) and TV bounds of the DDPM sampler, Gaussian data (THEORY D).

    Example: diffphase sampler-error --T 1000 --dim 4096 --k 8 --design star --json
    """
    from ..plotting import close
    from ..plotting.sampler import sampler_error_figure
    from ..process import make_betas
    from ..solvers.sampler import (
        SERIES_SWITCH,
        check_variances,
        gaussian_divergences,
        geometric_spectrum,
        sampler_error,
        validate_configuration,
    )

    T, dim, k = validate_configuration(T, dim, k)
    lam = geometric_spectrum(k) if variances is None else check_variances(variances, k)
    require_finite("--score-bias", score_bias)
    params = _schedule_params(schedule, c0, c1)
    betas = make_betas(schedule, T, **params)
    eta = sigma2 = None
    if design == "custom":
        eta, sigma2 = _custom_design(betas, eta_scale, sigma2_scale)
    outputs.claim(["sampler_error.csv", "sampler_error.json"]
                  + [f"sampler_error.{f}" for f in formats])
    result = sampler_error(T, dim, k, design, betas=betas, variances=lam, score_bias=score_bias,
                           eta=eta, sigma2=sigma2)
    kl_tangent_dir, _ = gaussian_divergences(result.tangent_relative_errors, result.tangent_means)
    outputs.write_csv("sampler_error.csv", {
        "direction": [f"tangent_{j}" for j in range(k)] + ["normal"],
        "data_variance": np.r_[lam, 0.0],
        "multiplicity": np.r_[np.ones(k, dtype=int), dim - k],
        "relative_variance_error_step1": np.r_[result.tangent_relative_errors,
                                               result.normal_relative_error],
        "standardized_mean_step1": np.r_[result.tangent_means, 0.0],
        "kl_per_direction_step1": np.r_[kl_tangent_dir, result.kl_normal_per_dim],
    })
    summary = {
        "kl": result.kl, "kl_tangent": result.kl_tangent, "kl_normal": result.kl_normal,
        "kl_normal_per_dim": result.kl_normal_per_dim, "tv_normal": result.tv_normal,
        "tv_lower": result.tv_lower, "tv_upper": result.tv_upper,
        "time_convention": "ddpm steps; error between law(X_1) and law(Y_1)",
    }
    parameters = {"T": T, "dim": dim, "k": k, "design": design, "schedule": schedule,
                  "schedule_params": params, "variances": lam, "score_bias": score_bias,
                  "eta_scale": eta_scale if design == "custom" else None,
                  "sigma2_scale": sigma2_scale if design == "custom" else None}
    outputs.write_json("sampler_error.json", {
        **run_metadata("sampler-error", parameters), "result": summary,
        "solver": {"method": "exact per-direction relative-error recursion (compiled)",
                   "series_switch": SERIES_SWITCH, "steps": T - 1},
        "convergence": {"non_finite": int(not np.isfinite(result.kl))}, "seed": None})
    fig = sampler_error_figure(lam, kl_tangent_dir, result.kl_normal_per_dim,
                               f"{design}, T={T}, d={dim}, k={k}: KL={result.kl:.3g}")
    outputs.save_figure(fig, "sampler_error", formats)
    close(fig)
    emit(summary, as_json, outputs)


def build_sampler_diagram(outputs: OutputSet, formats, T_min: int = 16, T_max: int = 10_000,
                          n_T: int = 13, dims=None, k: int = 8, schedule: str = "li-yan",
                          c0: float = 2.0, c1: float = 4.0) -> dict:
    """The ``(T, d)`` error maps per design and the fitted rates in ``T`` (writes the files)."""
    from ..plotting import close
    from ..plotting.sampler import sampler_phase_diagram_figure
    from ..solvers.sampler import DESIGNS, fit_rate, sampler_error_grid

    T_min = require_int("--T-min", T_min, minimum=2)
    T_max = require_int("--T-max", T_max, minimum=T_min + 1)
    n_T = require_int("--n-T", n_T, minimum=2)
    k = require_int("--k", k, minimum=1)
    if dims is None:
        dims = np.unique(np.geomspace(k, 65_536, 13).astype(int))
    dims = [require_int("--dims", d, minimum=k) for d in np.atleast_1d(dims)]
    params = _schedule_params(schedule, c0, c1)
    T_values = np.unique(np.geomspace(T_min, T_max, n_T).astype(int))
    stems = ["sampler_phase_diagram.csv", "sampler_phase_diagram.json"]
    outputs.claim(stems + [f"sampler_phase_diagram.{f}" for f in formats])
    grid = sampler_error_grid(T_values, dims, [k], DESIGNS, ("geometric",), schedule, params)
    dim_for_rates = min(dims, key=lambda d: abs(d - 4096))
    fits, failed = {}, 0
    for design in DESIGNS:
        sel = (grid["design"] == design) & (grid["dim"] == dim_for_rates)
        entry = {}
        for column in ("kl", "tv_upper", "tv_lower"):
            try:
                fit = fit_rate(grid["T"][sel], grid[column][sel])
                entry[f"{column}_slope"] = fit.slope
                entry[f"{column}_slope_stderr"] = fit.slope_se
                entry[f"{column}_prefactor"] = fit.prefactor
            except ParameterError:
                failed += 1
                entry[f"{column}_slope"] = entry[f"{column}_prefactor"] = float("nan")
        fits[design] = entry
    outputs.write_csv("sampler_phase_diagram.csv", {
        "T_steps": grid["T"], "dim": grid["dim"], "k": grid["k"], "design": grid["design"],
        "spectrum": grid["spectrum"], "kl_step1": grid["kl"],
        "kl_tangent_step1": grid["kl_tangent"],
        "kl_normal_step1": grid["kl_normal"], "kl_normal_per_dim_step1": grid["kl_normal_per_dim"],
        "tv_normal_step1": grid["tv_normal"], "tv_lower_step1": grid["tv_lower"],
        "tv_upper_step1": grid["tv_upper"]})
    parameters = {"T_values": T_values, "dims": dims, "k": k, "schedule": schedule,
                  "schedule_params": params, "designs": list(DESIGNS),
                  "spectrum": "geometric 0.25..4", "dim_for_rates": dim_for_rates}
    summary = {"configurations": int(grid["T"].size), "fits": fits,
               "dim_for_rates": dim_for_rates}
    outputs.write_json("sampler_phase_diagram.json", {
        **run_metadata("phase-diagram sampler", parameters), "result": summary,
        "solver": {"method": "exact per-direction relative-error recursion (compiled)"},
        "convergence": {"non_finite": int(np.count_nonzero(~np.isfinite(grid["kl"]))),
                        "failed_fits": failed}, "seed": None})
    fig = sampler_phase_diagram_figure(grid, DESIGNS, fits, dim_for_rates)
    outputs.save_figure(fig, "sampler_phase_diagram", formats)
    close(fig)
    return summary


@register_default_diagram("sampler")
def default_sampler_diagram(outputs: OutputSet, formats) -> dict:
    return build_sampler_diagram(outputs, formats)


@phase_diagram.command("sampler")
@click.option("--T-min", "T_min", type=int, default=16, show_default=True)
@click.option("--T-max", "T_max", type=int, default=10_000, show_default=True)
@click.option("--n-T", "n_T", type=int, default=13, show_default=True, help="T values (geometric).")
@click.option("--dims", type=FLOATS, default=None,
              help="Ambient dimensions, comma-separated [default: geometric k..65536].")
@click.option("--k", type=int, default=8, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="li-yan", show_default=True)
@click.option("--c0", type=float, default=2.0, show_default=True)
@click.option("--c1", type=float, default=4.0, show_default=True)
@output_options("diffphase-out/sampler")
def sampler_diagram_command(T_min, T_max, n_T, dims, k, schedule, c0, c1, outputs: OutputSet,
                            formats, as_json: bool) -> None:
    """(T, d) maps of the exact sampler error per design, and error vs T with fitted slopes."""
    summary = build_sampler_diagram(outputs, formats, T_min, T_max, n_T, dims, k, schedule, c0, c1)
    emit(summary, as_json, outputs)


def register(cli) -> None:
    """Attach ``sampler-error`` (``phase-diagram sampler`` registers on the shared group)."""
    cli.add_command(sampler_error_command)
