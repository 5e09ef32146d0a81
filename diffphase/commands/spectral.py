"""Commands of the spectral model (THEORY A): ``spectrum`` and ``phase-diagram spectral``."""

from __future__ import annotations

import time
from dataclasses import asdict

import click
import numpy as np

from ..errors import ParameterError, require_int
from ..models import REVERSIBLE_PROCESSES, SUBSPACES
from ..outputs import OutputSet, run_metadata
from ..process import get_process
from .common import FLOATS, emit, output_options, phase_diagram, register_default_diagram

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


def resolve_tau(tau: float | None, t: float | None, process: str) -> tuple[float, dict]:
    """``tau`` from either ``--tau`` or ``--t`` in ``--process``; both conventions for the JSON."""
    if (tau is None) == (t is None):
        raise ParameterError("--tau/--t", {"tau": tau, "t": t}, "exactly one of --tau or --t")
    proc = get_process(process)
    if tau is None:
        tau = float(proc.tau_from_time(t))
    elif not (np.isfinite(tau) and tau > 0):
        raise ParameterError("--tau", tau, "> 0")
    return float(tau), {"process": process, "t": float(proc.time_from_tau(tau))}


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
@click.option("--points", type=int, default=1500, show_default=True, help="Density grid size.")
@output_options("diffphase-out/spectrum")
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
    points,
    outputs,
    formats,
    as_json,
) -> None:
    """Density of C and of the normalized Jacobian, edges, gaps, phase and dimension read-out."""
    from ..plotting import close
    from ..plotting.spectral import spectrum_figure
    from ..solvers import spectral as solver

    law_text = law
    law = (
        parse_law(law_text, alpha)
        if law_text
        else solver.VarianceLaw.from_groups(fractions, variances)
    )
    tau, time_info = resolve_tau(tau, t, process)
    solver.check_delta(delta)
    points = require_int("--points", points, minimum=10)
    if dim is not None:
        dim = require_int("--dim", dim, minimum=1)
    names = ["spectrum_covariance.csv", "spectrum_jacobian.csv", "spectrum.json"]
    outputs.claim(names + [f"spectrum.{f}" for f in formats])

    summary = solver.spectral_summary(law, tau, delta, subspace, dim)
    summary.update(time_info)
    edges = np.asarray(summary["edges"])
    if subspace == "orthonormal":
        lam, rho_c = np.sort(law.variances), law.fractions[np.argsort(law.variances)]
        jn = solver.formula("jacobian_eigenvalue", lam, tau)
        rho_j, convergence = rho_c, {"points": 0, "failed": 0}
        cov_cols = {"lambda": lam, "mass": rho_c}
        jac_cols = {"jn": jn, "mass": rho_j}
    else:
        lam = _bulk_grid(edges, points)
        rho_c, res_c = solver.covariance_density(lam, law)
        jn = np.sort(solver.formula("jacobian_eigenvalue", lam, tau))
        rho_j, res_j = solver.jacobian_density(jn, tau, law)
        convergence = {"covariance": res_c.summary(), "jacobian": res_j.summary()}
        cov_cols = {"lambda": lam, "density": rho_c}
        jac_cols = {"jn": jn, "density": rho_j}
    summary["convergence"] = convergence
    outputs.write_csv("spectrum_covariance.csv", cov_cols)
    outputs.write_csv("spectrum_jacobian.csv", jac_cols)
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
            "points": points,
            **time_info,
        },
        solver=asdict(solver.SolverSettings()),
    )
    outputs.write_json("spectrum.json", {**meta, "summary": summary})
    fig = spectrum_figure(summary, lam, rho_c, jn, rho_j)
    outputs.save_figure(fig, "spectrum", formats)
    close(fig)
    emit(summary, as_json, outputs)


def _bulk_grid(edges: np.ndarray, points: int) -> np.ndarray:
    """Points clustered at every edge (cosine spacing per bulk), plus zeros in the gaps."""
    per_bulk = max(points // max(len(edges), 1), 10)
    pieces = []
    for lo, hi in edges:
        theta = np.linspace(0, np.pi, per_bulk)
        pieces.append(lo + (hi - lo) * (1 - np.cos(theta)) / 2)
    grid = np.unique(np.concatenate(pieces))
    return grid[grid > 0]


def build_spectral_diagram(
    outputs: OutputSet, formats, delta: float = 0.1, n_tau: int = 161, n_rows: int = 50
) -> dict:
    from ..plotting import close
    from ..plotting.spectral import phase_diagram_figure
    from ..solvers import spectral_diagrams as diagrams

    outputs.claim(
        ["phase_spectral_alpha.csv", "phase_spectral_ratio.csv", "phase_spectral.json"]
        + [f"phase_spectral.{f}" for f in formats]
    )
    start = time.perf_counter()
    alpha_diag = diagrams.alpha_time_diagram(
        alphas=np.linspace(0.02, 1.0, n_rows), taus=np.geomspace(1e-4, 1e4, n_tau), delta=delta
    )
    ratio_diag = diagrams.ratio_time_diagram(
        ratios=np.geomspace(1e-3, 0.5, n_rows), taus=np.geomspace(1e-5, 1e3, n_tau), delta=delta
    )
    seconds = time.perf_counter() - start
    outputs.write_csv("phase_spectral_alpha.csv", alpha_diag.columns)
    outputs.write_csv("phase_spectral_ratio.csv", ratio_diag.columns)
    summary = {
        "alpha_time": {
            "counts": alpha_diag.counts,
            "phase_fractions": _fractions(alpha_diag.columns["phase"]),
        },
        "ratio_time": {
            "counts": ratio_diag.counts,
            "phase_fractions": _fractions(ratio_diag.columns["phase"]),
            "visible_gap_fraction": float(np.mean(ratio_diag.columns["intermediate_gap_visible"])),
        },
        "solve_seconds": seconds,
    }
    meta = run_metadata(
        "phase-diagram spectral",
        {
            "delta": delta,
            "alpha_time": {
                "variance": 1.0,
                "alpha": [0.02, 1.0, n_rows],
                "tau": [1e-4, 1e4, n_tau],
            },
            "ratio_time": {
                "fractions": [0.2, 0.2],
                "variances": "1 and r",
                "variance_ratio": [1e-3, 0.5, n_rows],
                "tau": [1e-5, 1e3, n_tau],
            },
        },
        time_convention="tau = D/a^2 (ve time); t_ou = ln(1 + tau)/2",
    )
    outputs.write_json("phase_spectral.json", {**meta, "summary": summary})
    fig = phase_diagram_figure(alpha_diag, ratio_diag, delta)
    outputs.save_figure(fig, "phase_spectral", formats)
    close(fig)
    return summary


def _fractions(phases: np.ndarray) -> dict:
    values, counts = np.unique(phases.astype(str), return_counts=True)
    return {v: float(c / phases.size) for v, c in zip(values, counts, strict=True)}


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
def phase_diagram_spectral(delta, n_tau, n_rows, outputs, formats, as_json) -> None:
    """alpha vs time (one group) and variance ratio vs time (two groups): phases with gap
    widths as contours."""
    from ..solvers.spectral import check_delta

    check_delta(delta)
    n_tau = require_int("--n-tau", n_tau, minimum=2)
    n_rows = require_int("--n-rows", n_rows, minimum=2)
    emit(build_spectral_diagram(outputs, formats, delta, n_tau, n_rows), as_json, outputs)


@register_default_diagram("spectral")
def default_spectral_diagram(outputs: OutputSet, formats) -> dict:
    return build_spectral_diagram(outputs, formats)


def register(cli: click.Group) -> None:
    cli.add_command(spectrum_command)
