"""``diffphase diagnose`` and ``diffphase phase-diagram fields`` (THEORY E).

``diagnose`` points the score-field diagnostics of :mod:`diffphase.simulate.fields` at a user
score (``--score package.module:function --dim D``, called as ``function(x, t)`` with ``x`` of
shape ``(n, D)`` and ``t`` in the ``--process`` convention) or a built-in score (``--model
linear-manifold``: the exact score; ``--model empirical``: the empirical score of ``--samples``
points of the same manifold). It follows backward probability-flow trajectories to each of
``--times`` and writes, per time point, the spectrum of ``Jn = D_t J``, the local dimension and
the non-conservativeness: ``fields_diagnose.csv`` (one row per time and singular-value index),
``fields_diagnose_summary.csv`` (one row per time), ``fields_diagnose.json`` and a figure.

This module parses, calls and writes: :func:`diffphase.simulate.fields.prepare_diagnosis` checks
the request and builds the score, ``run()`` computes, and
:func:`diffphase.simulate.fields.diagnosis_tables` lays out the columns.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..models import DEVICES, FIELD_SOURCES, JACOBIAN_ROUTES, PROCESSES, SCHEDULES, SUBSPACES
from ..outputs import OutputSet, run_metadata
from ..process import get_process
from .common import FLOATS, emit, output_options, phase_diagram, register_default_diagram

MODELS = FIELD_SOURCES
STEM = "fields_diagnose"


def run_diagnose(outputs: OutputSet, formats, *, score_path=None, model=None, dim=None,
                 times=(0.1, 0.5, 1.0), process="ve", schedule="linear", steps=1000,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace="random",
                 rotation=0.0, samples=200, reference=None, points=8, t_start=None,
                 data_variance=1.0, route="auto", probes=None, relative_step=1e-4,
                 threshold=0.5, steps_per_efold=40, seed=0, device="cpu",
                 stem=STEM, command="diagnose") -> dict:
    """Check the request, claim the files, run the diagnostics, write CSV/JSON/figure; return
    the summary."""
    from ..plotting import close
    from ..plotting.fields import diagnostics_figure
    from ..simulate.fields import diagnosis_tables, prepare_diagnosis

    proc = get_process(process, schedule=schedule, T=steps)
    diagnosis = prepare_diagnosis(
        proc, times, rng=np.random.default_rng(seed), points=points, t_start=t_start,
        data_variance=data_variance, threshold=threshold, route=route, probes=probes,
        relative_step=relative_step, steps_per_efold=steps_per_efold, score=score_path,
        model=model, dim=dim, fractions=fractions, variances=variances, subspace=subspace,
        rotation=rotation, samples=samples, reference=reference, device=device)
    names = [f"{stem}.csv", f"{stem}_summary.csv", f"{stem}.json"]
    names += [f"{stem}.{fmt}" for fmt in formats]
    outputs.claim(names)
    summaries = [r.summary() for r in diagnosis.run()]
    time_col = f"t_{process}" if process != "ddpm" else "step_ddpm"
    spectra, per_time = diagnosis_tables(summaries, time_col)
    outputs.write_csv(f"{stem}.csv", spectra)
    outputs.write_csv(f"{stem}_summary.csv", per_time)
    d = diagnosis.source.field.dim
    label = diagnosis.source.label
    route_used = summaries[0]["jacobian_route"]
    parameters = {"score": score_path, "model": model, "dim": d, "times": diagnosis.times,
                  "process": process, "schedule": schedule if process == "ddpm" else None,
                  "fractions": fractions if model else None,
                  "variances": variances if model else None,
                  "subspace": subspace if model else None, "rotation": rotation,
                  "samples": samples if model == "empirical" else None,
                  "reference": str(reference) if reference else None, "points": points,
                  "t_start": t_start if t_start is not None else float(diagnosis.times[0]),
                  "data_variance": data_variance, "threshold": threshold,
                  "device": device if model == "empirical" else "cpu"}
    solver = {"jacobian_route": route_used, "probes": probes if probes else d,
              "relative_step": relative_step if route_used == "central" else None,
              "trajectories": "probability-flow ODE, Heun in (x/a_t, sqrt(tau)), steps uniform "
                              "in log tau",
              "steps_per_efold": steps_per_efold,
              "time_convention": f"{time_col} ({process}); tau = D_t/a_t^2",
              "spectra_of": "Jn = D_t J"}
    summary = run_metadata(command, parameters, seed=seed, score_description=label,
                           solver=solver,
                           convergence={"points": points, "time_points": len(summaries),
                                        "nonfinite_jacobians": 0},
                           time_points=summaries)
    outputs.write_json(f"{stem}.json", summary)
    fig = diagnostics_figure(summaries, title=label)
    outputs.save_figure(fig, stem, formats)
    close(fig)
    return summary


def _diagnose_options(func):
    options = [
        click.option("--score", "score_path", default=None,
                     help="A score callable 'package.module:function', called as f(x, t)."),
        click.option("--model", type=click.Choice(MODELS), default=None,
                     help="A built-in score instead of --score."),
        click.option("--dim", type=int, default=None,
                     help="Ambient dimension (required with --score; default 16 for --model)."),
        click.option("--process", type=click.Choice(PROCESSES), default="ve", show_default=True),
        click.option("--schedule", type=click.Choice(SCHEDULES), default="linear",
                     show_default=True, help="ddpm schedule."),
        click.option("--steps", type=int, default=1000, show_default=True,
                     help="ddpm steps T."),
        click.option("--fractions", type=FLOATS, default="0.125,0.125", show_default=True,
                     help="Linear manifold: group fractions alpha_k = m_k/d."),
        click.option("--variances", type=FLOATS, default="4,0.25", show_default=True,
                     help="Linear manifold: group latent variances sigma_k^2."),
        click.option("--subspace", type=click.Choice(SUBSPACES),
                     default="random", show_default=True),
        click.option("--rotation", type=float, default=0.0, show_default=True,
                     help="Add a rotation of this rate (A = rate G / D_t) in a tangent plane."),
        click.option("--samples", type=int, default=200, show_default=True,
                     help="Training points of --model empirical."),
        click.option("--reference", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="With --score: a .npy (D, m) tangent basis."),
        click.option("--points", type=int, default=8, show_default=True,
                     help="Backward trajectories (points per time)."),
        click.option("--t-start", type=float, default=None,
                     help="Start time of the trajectories (default: the largest time)."),
        click.option("--data-variance", type=float, default=1.0, show_default=True,
                     help="With --score: start from N(0, (a^2 v + D) I)."),
        click.option("--route", type=click.Choice(JACOBIAN_ROUTES),
                     default="auto", show_default=True, help="Jacobian route."),
        click.option("--probes", type=int, default=None,
                     help="Central differences: number of random orthonormal probes (default D)."),
        click.option("--relative-step", type=float, default=1e-4, show_default=True,
                     help="Central differences: step / sqrt(D_t)."),
        click.option("--threshold", type=float, default=0.5, show_default=True,
                     help="Local dimension: count of normalized singular values below this."),
        click.option("--steps-per-efold", type=int, default=40, show_default=True,
                     help="Heun steps per unit of log tau along the trajectories."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(DEVICES), default="cpu",
                     show_default=True,
                     help="Device of --model empirical (the other scores run on the CPU)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("diagnose")
@_diagnose_options
@click.option("--times", type=FLOATS, default="0.01,0.1,1,10", show_default=True,
              help="Time points in the --process convention (ddpm: steps).")
@output_options("diffphase-out/diagnose")
def diagnose_command(outputs: OutputSet, formats, as_json: bool, **options) -> None:
    """Jacobian spectra, local dimension and non-conservativeness of a score along backward
    trajectories (THEORY E). Spectra are of the normalized Jacobian D_t J."""
    summary = run_diagnose(outputs, formats, **options)
    if as_json:
        keys = ("t", "tau", "singular_values", "eigenvalues_real", "eigenvalues_imag",
                "local_dimension", "local_dimension_gap", "nonconservativeness",
                "tangent_nonconservativeness", "normal_nonconservativeness",
                "max_principal_angle")
        summary = {**summary, "time_points": [{k: s[k] for k in keys if k in s}
                                              for s in summary["time_points"]]}
    emit(summary, as_json, outputs)


@register_default_diagram("fields")
def default_diagram(outputs: OutputSet, formats) -> dict:
    """Exact linear-manifold score (d = 16, variances 4 and 1/4) on a tau grid."""
    summary = run_diagnose(outputs, formats, model="linear-manifold",
                           times=np.geomspace(1e-3, 1e2, 26), points=4,
                           stem="fields_phase_diagram", command="phase-diagram fields")
    return {"files": [str(p) for p in outputs.written if "fields_phase_diagram" in p.name],
            "local_dimension": {f"{s['tau']:.4g}": s["local_dimension"]
                                for s in summary["time_points"]}}


@phase_diagram.command("fields")
@output_options("diffphase-out/fields")
def phase_diagram_fields(outputs: OutputSet, formats, as_json: bool) -> None:
    """Local dimension and spectrum of an exact linear-manifold score against tau."""
    summary = default_diagram(outputs, formats)
    emit(summary, as_json, outputs)


def register(cli) -> None:
    cli.add_command(diagnose_command)
