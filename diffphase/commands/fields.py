"""``diffphase diagnose`` and ``diffphase phase-diagram fields`` (THEORY E).

``diagnose`` points the score-field diagnostics of :mod:`diffphase.simulate.fields` at a user
score (``--score package.module:function --dim D``, called as ``function(x, t)`` with ``x`` of
shape ``(n, D)`` and ``t`` in the ``--process`` convention) or a built-in score (``--model
linear-manifold``: the exact score; ``--model empirical``: the empirical score of ``--samples``
points of the same manifold). It follows backward probability-flow trajectories to each of
``--times`` and writes, per time point, the spectrum of ``Jn = D_t J``, the local dimension and
the non-conservativeness: ``fields_diagnose.csv`` (one row per time and singular-value index),
``fields_diagnose_summary.csv`` (one row per time), ``fields_diagnose.json`` and a figure.

This module parses the request and builds it, then calls the library and writes. The request
layer (:func:`prepare_diagnosis`, from Python too) checks every option before any work: the
library's checks (:func:`diffphase.simulate.fields.check_request`, the estimated memory and work
of :func:`~diffphase.simulate.fields.diagnosis_cost` against the budget ``max_memory``) are
reported under the options' spelling (:func:`~diffphase.commands.common.option_names`), the
source's own (exactly one of ``--score`` and ``--model``, the options that go with each) are
checked here; then :func:`field_source` imports and probes a user score (any exception of user
code is one line naming ``--score``, see :mod:`diffphase.simulate.jacobians`) or builds a model,
and ``--probes`` and ``--route`` are checked against it. Only then are the files claimed and
``run()`` computes. :func:`diagnosis_tables` lays out the columns. The JSON lists only the
parameters that apply to the request, and every value that can be undefined (NaN) has a flag
beside it: ``n_nonfinite`` per time point and in ``convergence``, ``finite`` per spectrum row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from ..errors import (
    DeviceUnavailableError,
    ParameterError,
    as_float_array,
    require_choice,
    require_finite,
    require_int,
)
from ..models import DEVICES, FIELD_SOURCES, JACOBIAN_ROUTES, PROCESSES, SCHEDULES, SUBSPACES
from ..outputs import OutputSet, run_metadata
from ..process import Process
from ..simulate.fields import (
    TAU_RANGE,
    CostTerm,
    TimeDiagnostics,
    check_cost,
    check_probes,
    check_request,
    diagnose_field,
    diagnosis_cost,
    linear_manifold_field,
    orthonormal_basis,
    resolve_route,
    source_cost_terms,
)
from ..simulate.integrators import as_process
from ..simulate.jacobians import CallableScore, ScoreField, TimeScore, checked_array, load_callable
from .common import (
    FLOATS,
    emit,
    option_names,
    output_options,
    phase_diagram,
    register_default_diagram,
)

MODELS = FIELD_SOURCES
STEM = "fields_diagnose"
#: the library's names of the options of ``diagnose``, reported under the options' spelling
OPTION_NAMES = {"times": "--times", "t_start": "--t-start", "points": "--points",
                "threshold": "--threshold", "relative_step": "--relative-step",
                "data_variance": "--data-variance", "route": "--route", "probes": "--probes",
                "steps_per_efold": "--steps-per-efold", "dim": "--dim", "samples": "--samples",
                "T": "--steps", "process": "--process", "schedule": "--schedule",
                "fractions": "--fractions", "variances": "--variances",
                "subspace": "--subspace", "rotation": "--rotation"}


# --------------------------------------------------------------------------- the request
@dataclass
class FieldSource:
    """A score field to diagnose: the field, a label, the data sampler ``sample(n, rng)`` when
    the data law is known (exact start points), and a reference tangent basis when known."""

    field: ScoreField
    label: str
    sampler: Callable | None = None
    reference_basis: np.ndarray | None = None


def load_reference(reference, dim: int) -> np.ndarray:
    """Orthonormal basis of the span of a ``(dim, m)`` matrix (``1 <= m < dim``), given as an
    array or as the path of a ``.npy`` file (its shape is read before its data)."""
    if isinstance(reference, (str, Path)):
        try:
            reference = np.load(reference, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ParameterError("--reference", str(reference),
                                 f"a readable .npy file ({reason})") from None
    shape = np.shape(reference)
    if len(shape) != 2 or shape[0] != dim or not 1 <= shape[1] < dim:
        raise ParameterError("--reference shape", shape, f"({dim}, m) with 1 <= m < {dim}")
    matrix = checked_array("--reference", reference, ndim=2)
    basis = orthonormal_basis(matrix)
    if basis.shape[1] == 0:
        raise ParameterError("--reference", "a zero matrix", "a matrix of rank >= 1")
    return basis


def _checked_source(*, score, model, dim, fractions, variances, subspace, rotation, samples,
                    reference, device) -> tuple[str | None, int, int]:
    """Check the options of :func:`field_source` without building anything; ``(model, dim,
    samples)``."""
    if (score is None) == (model is None):
        raise ParameterError("--score/--model", f"{score}/{model}", "exactly one of the two")
    require_choice("--device", device, DEVICES)
    if device == "gpu" and model != "empirical":
        # only the empirical score has a cupy path; the others would silently run on the CPU
        raise ParameterError("--device", device, "cpu or auto unless --model empirical (the only "
                             "score computed on a GPU)")
    rotation = require_finite("--rotation", rotation)
    samples = require_int("--samples", samples, minimum=2)
    if score is not None:
        if dim is None:
            raise ParameterError("--dim", None, "an integer >= 1 (required with --score)")
        if rotation:
            raise ParameterError("--rotation", rotation, "0 unless --model linear-manifold")
        return None, require_int("--dim", dim, minimum=1), samples
    require_choice("--model", model, FIELD_SOURCES)
    dim = 16 if dim is None else require_int("--dim", dim, minimum=2)
    if rotation and model != "linear-manifold":
        raise ParameterError("--rotation", rotation, "0 unless --model linear-manifold")
    if reference is not None:
        raise ParameterError("--reference", str(reference),
                             "only with --score (a built-in model has its own tangent basis)")
    require_choice("--subspace", subspace, SUBSPACES)
    as_float_array("--fractions", fractions)
    (low, high), values = TAU_RANGE, as_float_array("--variances", variances)
    if np.any((values < low) | (values > high)):
        raise ParameterError("--variances", values, f"each in [{low:g}, {high:g}]")
    return model, dim, samples


def field_source(process: str | Process, *, score: str | Callable | None = None,
                 model: str | None = None, dim: int | None = None,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace: str = "random",
                 rotation: float = 0.0, samples: int = 200, reference=None,
                 device: str = "cpu", rng: np.random.Generator | None = None,
                 max_memory: float | None = None) -> FieldSource:
    """The field of a user score or of a built-in model (exactly one of ``score``, ``model``).

    ``score`` is a callable ``f(x, t)`` with ``t`` a time of ``process`` (wrapped in
    :class:`~diffphase.simulate.jacobians.TimeScore` and checked by
    :class:`~diffphase.simulate.jacobians.CallableScore`), or its import path
    ``"package.module:function"``; ``dim`` is then required, ``reference`` optional (see
    :func:`load_reference`), and the callable is tried once on two zero points at ``tau = 1``
    (``ddpm``: step 1) so that an exception, a wrong shape or NaN fails before any work. ``model``
    is ``"linear-manifold"`` (the exact score of :func:`linear_manifold_field`, ``dim`` default 16)
    or ``"empirical"`` (the empirical score of ``samples`` points of the same manifold, on
    ``device``: the only source computed on a GPU). The setup's memory is checked against
    ``max_memory`` first (:func:`check_cost`).
    """
    proc = as_process(process)
    rng = np.random.default_rng() if rng is None else rng
    model, dim, samples = _checked_source(
        score=score, model=model, dim=dim, fractions=fractions, variances=variances,
        subspace=subspace, rotation=rotation, samples=samples, reference=reference, device=device)
    with option_names(OPTION_NAMES):
        check_cost(source_cost_terms(model, dim, samples if model == "empirical" else 0),
                   {"dim": dim, "samples": samples}, max_memory=max_memory)
    if score is not None:
        name = score if isinstance(score, str) else getattr(score, "__qualname__", repr(score))
        function = load_callable(score) if isinstance(score, str) else score
        label = f"--score {name}"
        user = CallableScore(TimeScore(function, proc, name=label), dim, name=label)
        t_probe = float(proc.time_from_tau(1.0)) if proc.name != "ddpm" else 1.0
        user.score(np.zeros((2, user.dim)), float(proc.signal_scale(t_probe)),
                   float(proc.noise_variance(t_probe)))  # errors before any work
        basis = None if reference is None else load_reference(reference, user.dim)
        return FieldSource(user, f"user score {name}", None, basis)
    with option_names(OPTION_NAMES):
        exact, data, basis = linear_manifold_field(fractions, variances, dim, subspace=subspace,
                                                   rotation=rotation, rng=rng)
    if model == "empirical":
        from ..simulate.empirical import EmpiricalScore

        try:
            empirical = EmpiricalScore(data.sample(samples, rng), device)
        except DeviceUnavailableError as exc:
            raise DeviceUnavailableError(f"--device {device}: {exc}") from None
        return FieldSource(empirical, f"empirical score of {samples} linear-manifold points",
                           data.sample, basis)
    label = "exact linear-manifold score" + (f" + rotation {rotation:g}" if rotation else "")
    return FieldSource(exact, label, data.sample, basis)


@dataclass
class FieldDiagnosis:
    """A checked request (from :func:`prepare_diagnosis`): ``run()`` gives the diagnostics."""

    source: FieldSource
    process: Process
    times: np.ndarray  # descending
    rng: np.random.Generator
    options: dict  # the remaining keyword options of diagnose_field

    def run(self) -> list[TimeDiagnostics]:
        try:
            with option_names(OPTION_NAMES):
                return diagnose_field(self.source.field, self.process, self.times, rng=self.rng,
                                      sampler=self.source.sampler,
                                      reference_basis=self.source.reference_basis,
                                      **self.options)
        except MemoryError:  # the estimate of diagnosis_cost was too low for this machine
            raise ParameterError("--points", self.options["points"],
                                 "a smaller job: this one ran out of memory (fewer --points "
                                 "or --times, or a smaller --dim)") from None


def request_process(process: str, schedule: str = "linear", steps: int = 1000, *,
                    max_memory: float | None = None) -> Process:
    """The process of a request (``--process``, ``--schedule``, ``--steps``), checked under the
    options' names; a ddpm schedule's memory is checked against ``max_memory`` first."""
    steps = require_int("--steps", steps, minimum=2)
    require_choice("--process", process, PROCESSES)
    require_choice("--schedule", schedule, SCHEDULES)
    if process == "ddpm":
        with option_names(OPTION_NAMES):
            check_cost([CostTerm("the ddpm noise levels", ("T",), 80.0 * steps, 0.0)], {"T": steps},
                       max_memory=max_memory)
    try:
        return Process(process, schedule=schedule, T=steps)
    except ParameterError as exc:  # a schedule that has no valid betas at these steps
        detail = (f"{exc.allowed} (T = --steps)" if exc.name == "T" else
                  f"a number of steps for which every beta of the {schedule} schedule is in "
                  f"(0, 1) ({exc.name} = {exc.value})")
        raise ParameterError("--steps", steps, detail) from None


def prepare_diagnosis(process: str | Process, times: Sequence[float], *,
                      rng: np.random.Generator, points: int = 8, t_start: float | None = None,
                      data_variance: float = 1.0, threshold: float = 0.5, route: str = "auto",
                      probes: int | None = None, relative_step: float = 1e-4,
                      steps_per_efold: int = 40, max_memory: float | None = None,
                      max_operations: float | None = None, **source) -> FieldDiagnosis:
    """Check the options of :func:`diagnose_field` and of the source (:func:`field_source` with
    the keywords ``source``), refuse a request whose estimated cost (:func:`diagnosis_cost`)
    exceeds ``max_memory`` or ``max_operations``, then build the source (importing and probing a
    user score) and check ``probes`` and ``route`` against it: every input error is raised
    here, before any heavy work."""
    proc = as_process(process)
    options = {"points": points, "t_start": t_start, "data_variance": data_variance,
               "threshold": threshold, "route": route, "probes": probes,
               "relative_step": relative_step, "steps_per_efold": steps_per_efold}
    with option_names(OPTION_NAMES):
        times = check_request(proc, times, **options)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("rng", type(rng).__name__, "a numpy.random.Generator")
    checked = {"score": None, "model": None, "dim": None, "fractions": (0.125, 0.125),
               "variances": (4.0, 0.25), "subspace": "random", "rotation": 0.0, "samples": 200,
               "reference": None, "device": "cpu", **source}
    model, dim, samples = _checked_source(**checked)
    rotation = float(checked["rotation"])
    if abs(rotation) > steps_per_efold / 4:
        raise ParameterError("--rotation", rotation, f"in [-{steps_per_efold / 4:g}, "
                             f"{steps_per_efold / 4:g}] with --steps-per-efold "
                             f"{steps_per_efold} (Heun steps of at most 1/8 turn)")
    used = route if route != "auto" else ("central" if model is None else "closed-form")
    with option_names(OPTION_NAMES):
        check_probes(probes, dim)
        check_cost(diagnosis_cost(proc, times, points=points, dim=dim, t_start=t_start,
                                  probes=probes, route=used, steps_per_efold=steps_per_efold,
                                  model=model, samples=samples),
                   {"points": points, "dim": dim, "probes": probes, "times": len(times),
                    "steps_per_efold": steps_per_efold, "samples": samples,
                    "T": len(proc.betas) if proc.name == "ddpm" else None},
                   max_memory=max_memory, max_operations=max_operations)
    built = field_source(proc, rng=rng, max_memory=max_memory, **source)
    with option_names(OPTION_NAMES):
        resolve_route(route, built.field)
    options.update(max_memory=max_memory, max_operations=max_operations)
    return FieldDiagnosis(built, proc, times, rng, options)


#: per-time values of :meth:`TimeDiagnostics.summary` in the per-time table, when present
SUMMARY_COLUMNS = ("local_dimension", "local_dimension_gap", "local_dimension_mean",
                   "nonconservativeness", "tangent_nonconservativeness",
                   "normal_nonconservativeness", "coupling", "max_principal_angle",
                   "central_difference_roundoff", "n_nonfinite")


def diagnosis_tables(summaries: Sequence[dict], time_column: str = "t") -> tuple[dict, dict]:
    """Tidy columns of :meth:`TimeDiagnostics.summary` dicts: ``(spectra, per_time)``.

    ``spectra`` has one row per time and singular-value index (normalized singular values and
    eigenvalues, point-averaged) and a ``finite`` flag per row; ``per_time`` one row per time
    (:data:`SUMMARY_COLUMNS`; NaN where a value is undefined, counted in ``n_nonfinite``).
    """
    if len(summaries) == 0:
        raise ParameterError("summaries", [], "at least one time point")
    d = len(summaries[0]["singular_values"])
    t = [s["t"] for s in summaries]
    tau = [s["tau"] for s in summaries]
    spectra = {
        time_column: np.repeat(t, d), "tau": np.repeat(tau, d),
        "index": np.tile(np.arange(1, d + 1), len(summaries)),
        "singular_value_normalized": np.concatenate([s["singular_values"] for s in summaries]),
        "eigenvalue_normalized_real": np.concatenate([s["eigenvalues_real"] for s in summaries]),
        "eigenvalue_normalized_imag": np.concatenate([s["eigenvalues_imag"] for s in summaries]),
    }
    values = np.stack([np.asarray(v, dtype=float) for k, v in spectra.items() if k != "index"])
    spectra["finite"] = np.all(np.isfinite(values), axis=0)
    per_time = {time_column: t, "tau": tau}
    for key in SUMMARY_COLUMNS:
        if key in summaries[0]:
            per_time[key] = [np.nan if s.get(key) is None else s[key] for s in summaries]
    return spectra, per_time


# --------------------------------------------------------------------------- the command
def run_diagnose(outputs: OutputSet, formats, *, score_path=None, model=None, dim=None,
                 times=(0.1, 0.5, 1.0), process="ve", schedule="linear", steps=1000,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace="random",
                 rotation=0.0, samples=200, reference=None, points=8, t_start=None,
                 data_variance=1.0, route="auto", probes=None, relative_step=1e-4,
                 threshold=0.5, steps_per_efold=40, seed=0, device="cpu", max_memory=None,
                 stem=STEM, command="diagnose") -> dict:
    """Check the request, claim the files, run the diagnostics, write CSV/JSON/figure; return
    the summary. ``max_memory`` (bytes) overrides the library's memory budget."""
    from ..plotting import close
    from ..plotting.fields import diagnostics_figure

    seed = require_int("--seed", seed, minimum=0)
    proc = request_process(process, schedule, steps, max_memory=max_memory)
    diagnosis = prepare_diagnosis(
        proc, times, rng=np.random.default_rng(seed), points=points, t_start=t_start,
        data_variance=data_variance, threshold=threshold, route=route, probes=probes,
        relative_step=relative_step, steps_per_efold=steps_per_efold, score=score_path,
        model=model, dim=dim, fractions=fractions, variances=variances, subspace=subspace,
        rotation=rotation, samples=samples, reference=reference, device=device,
        max_memory=max_memory)
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
    applies = {  # parameters that apply to this request (the others are left out, not null)
        "schedule": process == "ddpm", "steps": process == "ddpm",
        "fractions": bool(model), "variances": bool(model), "subspace": bool(model),
        "samples": model == "empirical", "reference": reference is not None,
        "data_variance": model is None}
    parameters = {"score": score_path, "model": model, "dim": d, "times": diagnosis.times,
                  "process": process, "schedule": schedule, "steps": steps,
                  "fractions": fractions, "variances": variances, "subspace": subspace,
                  "rotation": rotation, "samples": samples,
                  "reference": str(reference) if reference else None, "points": points,
                  "t_start": t_start if t_start is not None else float(diagnosis.times[0]),
                  "data_variance": data_variance, "threshold": threshold,
                  "device": device if model == "empirical" else "cpu"}
    parameters = {k: v for k, v in parameters.items() if applies.get(k, True)}
    solver = {"jacobian_route": route_used, "probes": probes if probes else d,
              "trajectories": "probability-flow ODE, Heun in (x/a_t, sqrt(tau)), steps uniform "
                              "in log tau",
              "steps_per_efold": steps_per_efold,
              "time_convention": f"{time_col} ({process}); tau = D_t/a_t^2",
              "spectra_of": "Jn = D_t J"}
    if route_used == "central":
        solver["relative_step"] = relative_step
    summary = run_metadata(command, parameters, seed=seed, score_description=label,
                           solver=solver,
                           convergence={"points": points, "time_points": len(summaries),
                                        "nonfinite_jacobians": 0,
                                        "n_nonfinite": sum(s["n_nonfinite"] for s in summaries)},
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
                "max_principal_angle", "central_difference_roundoff", "n_nonfinite")
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
