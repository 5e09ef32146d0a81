"""Commands of the spectral model (THEORY A): ``spectrum`` and ``phase-diagram spectral``.
Thin: parse, call the library (:mod:`diffphase.studies.spectral`), write CSV + JSON + PNG."""

from __future__ import annotations

from dataclasses import asdict

import click
import numpy as np

from ..errors import ParameterError
from ..models import REVERSIBLE_PROCESSES, SUBSPACES
from ..outputs import OutputSet, run_metadata
from .common import (
    FLOATS,
    emit,
    max_memory_option,
    option,
    option_names,
    output_options,
    phase_diagram,
    register_default_diagram,
    stage,
)

#: library parameter -> option, for error messages
OPTIONS = {"tau/t": "--tau/--t", "tau": "--tau", "t": "--t", "points": "--n-grid",
           "dim": "--dim", "delta": "--delta", "max_memory": "--max-memory",
           "fractions": "--fractions", "variances": "--variances", "alpha": "--alpha"}
DIAGRAM_OPTIONS = {"n_tau": "--n-tau", "n_rows": "--n-rows", "delta": "--delta",
                   "max_memory": "--max-memory"}

LAWS = {
    "uniform": lambda s: np.ones_like(s),
    "loguniform": lambda s: 1.0 / s,
}


def parse_law(text: str, alpha: float):
    """``uniform:LOW,HIGH`` / ``loguniform:LOW,HIGH`` -> a continuous
    :class:`~diffphase.solvers.spectral.VarianceLaw` of total fraction ``alpha``."""
    from ..errors import parse_float_list
    from ..solvers.spectral import VarianceLaw

    name, _, bounds = str(text).partition(":")
    if name not in LAWS:
        raise ParameterError("--law", text, "uniform:LOW,HIGH or loguniform:LOW,HIGH")
    support = parse_float_list("--law", bounds)
    if support.size != 2 or not 0 < support[0] < support[1]:
        raise ParameterError("--law", text, "two bounds LOW,HIGH with 0 < LOW < HIGH")
    return VarianceLaw.from_density(LAWS[name], (support[0], support[1]), alpha)


@click.command("spectrum")
@click.option(
    "--fractions",
    type=FLOATS,
    default="0.2,0.2",
    show_default=True,
    help="Fraction alpha_k = m_k/d of each latent group (sum <= 1).",
)
@click.option(
    "--variances",
    type=FLOATS,
    default="1,0.09",
    show_default=True,
    help="Variance sigma_k^2 of each latent group (> 0).",
)
@click.option(
    "--law",
    default=None,
    help="Continuous law of latent variances instead of groups: uniform:LOW,HIGH or "
    "loguniform:LOW,HIGH (with --alpha).",
)
@click.option("--alpha", type=float, default=0.3, show_default=True, help="Fraction for --law.")
@click.option("--tau", type=float, default=None, help="Effective noise variance D/a^2.")
@click.option("--t", "t", type=float, default=None, help="Time in --process instead of --tau.")
@click.option(
    "--process",
    type=click.Choice(REVERSIBLE_PROCESSES),
    default="ve",
    show_default=True,
    help="Process of --t (ve: t = tau; ou: tau = e^{2t} - 1).",
)
@click.option("--delta", type=float, default=0.1, show_default=True, help="Resolution in (0, 1).")
@click.option(
    "--subspace",
    type=click.Choice(SUBSPACES),
    default="random",
    show_default=True,
    help="F Gaussian (Marchenko–Pastur bulks) or axis-aligned (atoms).",
)
@click.option("--dim", type=int, default=None, help="Ambient d, to add dimension_count = d x mass.")
@option("--n-grid", "n_grid", aliases=("--points",), type=int, default=1500, show_default=True,
        help="Points of the density grid.")
@output_options("diffphase-out/spectrum")
@max_memory_option
def spectrum_command(
    fractions,
    variances,
    law,
    alpha,
    tau,
    t,
    process,
    delta,
    subspace,
    dim,
    n_grid,
    outputs,
    formats,
    as_json,
    max_memory,
) -> None:
    """Density of C and of the normalized Jacobian, edges, gaps, phase and dimension read-out."""
    from ..solvers import spectral as solver
    from ..studies.spectral import plan_spectrum, resolve_tau, run_spectrum

    law_text = law
    points = n_grid
    with option_names(OPTIONS):
        law = (
            parse_law(law_text, alpha)
            if law_text
            else solver.VarianceLaw.from_groups(fractions, variances)
        )
        tau = resolve_tau(tau, t, process)
        plan = plan_spectrum(law, tau, delta, subspace, dim, points, process, max_memory,
                             tau_name="tau" if t is None else "t")
    names = ["spectrum_covariance.csv", "spectrum_jacobian.csv", "spectrum.json"]
    outputs.claim(names + [f"spectrum.{f}" for f in formats])
    with stage("spectrum: densities"):
        tables = run_spectrum(plan)
    summary = tables.summary
    outputs.write_csv("spectrum_covariance.csv", tables.covariance)
    outputs.write_csv("spectrum_jacobian.csv", tables.jacobian)
    meta = run_metadata(
        "spectrum",
        {
            "fractions": law.fractions,
            "variances": law.variances,
            "law": law_text,
            "alpha": law.alpha,
            "tau": tau,
            "delta": delta,
            "subspace": subspace,
            "dim": dim,
            "n_grid": points,
            "process": summary["process"],
            "t": summary["t"],
        },
        solver=asdict(solver.SolverSettings()),
        convergence=summary.get("convergence", {}),
    )
    outputs.write_json("spectrum.json", {**meta, "summary": summary})
    # the first two columns: the axis and its density (or atom masses); flag columns follow
    lam, rho_c = list(tables.covariance.values())[:2]
    jn, rho_j = list(tables.jacobian.values())[:2]
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.spectral import spectrum_figure
        fig = spectrum_figure(summary, lam, rho_c, jn, rho_j, parameters={
            r"$\tau$": tau, r"$\delta$": delta, r"$\alpha_k$": law.fractions,
            r"$\sigma_k^2$": law.variances, "subspace": subspace})
        outputs.save_figure(fig, "spectrum", formats)
        close(fig)
    emit(summary, as_json, outputs)


def write_spectral_diagram(
    outputs: OutputSet, formats, delta: float = 0.1, n_tau: int = 161, n_rows: int = 50,
    max_memory: int | None = None,
) -> dict:
    """Write both spectral phase maps (two CSVs + JSON + figure) and return their summary."""
    from ..solvers.spectral import SolverSettings, check_delta
    from ..studies import spectral as diagrams

    with option_names(DIAGRAM_OPTIONS):
        check_delta(delta)
        axes = diagrams.phase_diagram_axes(n_tau, n_rows, max_memory)
    outputs.claim(
        ["phase_spectral_alpha.csv", "phase_spectral_ratio.csv", "phase_spectral.json"]
        + [f"phase_spectral.{f}" for f in formats]
    )
    with stage("phase-diagram spectral: phase maps"):
        result = diagrams.phase_diagrams(delta, axes)
    outputs.write_csv("phase_spectral_alpha.csv", result.alpha_time.columns)
    outputs.write_csv("phase_spectral_ratio.csv", result.ratio_time.columns)
    summary = result.summary()
    ranges = diagrams.DEFAULT_AXES
    meta = run_metadata(
        "phase-diagram spectral",
        {
            "delta": delta,
            "alpha_time": {
                "variance": 1.0,
                "alpha": [*ranges["alpha"], n_rows],
                "tau": [*ranges["alpha_tau"], n_tau],
            },
            "ratio_time": {
                "fractions": list(diagrams.RATIO_FRACTIONS),
                "variances": "1 and r",
                "variance_ratio": [*ranges["variance_ratio"], n_rows],
                "tau": [*ranges["ratio_tau"], n_tau],
            },
        },
        solver=asdict(SolverSettings()),
        convergence=summary.get("convergence", {}),
        time_convention="tau = D/a^2 (ve time); t_ou = ln(1 + tau)/2",
    )
    if formats:  # nothing drawn when no figure is written (--json alone)
        from ..plotting import close
        from ..plotting.spectral import phase_diagram_figure
        fig = phase_diagram_figure(result.alpha_time, result.ratio_time, delta,
                                   parameters={"grid": f"{n_rows} x {n_tau}"})
        outputs.save_figure(fig, "phase_spectral", formats)
        close(fig)
    outputs.write_json("phase_spectral.json", {**meta, "summary": summary})
    return summary


@phase_diagram.command("spectral")
@click.option("--delta", type=float, default=0.1, show_default=True)
@click.option("--n-tau", type=int, default=161, show_default=True, help="Points along tau.")
@click.option(
    "--n-rows",
    type=int,
    default=50,
    show_default=True,
    help="Points along alpha / the variance ratio.",
)
@output_options("diffphase-out/spectral")
@max_memory_option
def phase_diagram_spectral(delta, n_tau, n_rows, outputs, formats, as_json, max_memory) -> None:
    """alpha vs time (one group) and variance ratio vs time (two groups): phases with gap
    widths as contours."""
    emit(write_spectral_diagram(outputs, formats, delta, n_tau, n_rows, max_memory), as_json,
         outputs)


@register_default_diagram("spectral")
def default_spectral_diagram(outputs: OutputSet, formats, max_memory: int | None = None) -> dict:
    return write_spectral_diagram(outputs, formats, max_memory=max_memory)


def register(cli: click.Group) -> None:
    cli.add_command(spectrum_command)
