"""``diffphase diagnose`` and ``diffphase phase-diagram fields`` (THEORY E).

``diagnose`` points the score-field diagnostics of :mod:`diffphase.simulate.fields` at a user
score (``--score package.module:function --dim D``, called as ``function(x, t)`` with ``x`` of
shape ``(n, D)`` and ``t`` in the ``--process`` convention), a trained network (``--torch
package.module:factory`` or ``--diffusers DIR``, :mod:`diffphase.studies.fields`) or a built-in
score (``--model linear-manifold``: the exact score; ``--model empirical``: the empirical score
of ``--n-train`` points of the same manifold). It follows ``--trajectories`` backward
probability-flow trajectories to each of ``--times`` and writes, per time point, the spectrum of
``Jn = D_t J``, the local dimension and the non-conservativeness: ``fields_diagnose.csv`` (one
row per time and singular-value index; matrix-free: per time, end and index of the extreme values),
``fields_diagnose_summary.csv`` (one row per time), ``fields_diagnose.json`` and a figure; with
``--spectra matrix-free`` also ``fields_diagnose_density.csv`` (the spectral CDFs), and with
``--data`` the comparison with theory, ``fields_diagnose_theory.csv`` and its figure.

This module parses the request and builds it, then calls the library and writes. The request
layer (:func:`prepare_diagnosis`, from Python too) checks every option before any work: the
library's checks (:func:`diffphase.simulate.fields.check_request`, the estimated memory and work
of :func:`~diffphase.simulate.fields.diagnosis_cost` against the budget ``max_memory``) are
reported under the options' spelling (:func:`~diffphase.commands.common.option_names`), the
source's own (exactly one of ``--score`` and ``--model``, the options that go with each) are
checked here; then :func:`field_source` imports and probes a user score (any exception of user
code is one line naming ``--score``, see :mod:`diffphase.simulate.jacobians`) or builds a model,
and ``--difference-probes`` and ``--route`` are checked against it; a network is loaded, its times
checked against its trained range, the spectra route chosen (``--spectra``) and its memory
checked, and the training set's size read before it is loaded. Only then are the files claimed
and ``run()`` computes. :func:`diagnosis_tables` lays out the columns. The JSON lists only the
parameters that apply to the request, and every value that can be undefined (NaN) has a flag
beside it: ``n_nonfinite`` per time point and in ``convergence``, ``finite`` per spectrum row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from ..data.loaders import DATASETS
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
    DENSE_DIMENSION_LIMIT,
    MEMORY_BUDGET_BYTES,
    TAU_RANGE,
    CostTerm,
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
from ..simulate.matrix_free_fields import (
    check_krylov,
    chunk_rows_within,
    diagnose_matrix_free,
    matrix_free_cost,
    product_memory,
)
from ..studies.budget import format_bytes
from .common import (
    FLOATS,
    emit,
    max_memory_option,
    option,
    option_names,
    output_options,
    phase_diagram,
    progress_enabled,
    register_default_diagram,
    stage,
    verbosity,
)
from .fields_outputs import json_parameters, json_solver, write_figures

MODELS = FIELD_SOURCES


def _network_study():
    """:mod:`diffphase.studies.fields`, imported when a diagnosis needs it (it brings SciPy's
    optimizers and the spectral solver, which every other command's start would pay for)."""
    from ..studies import fields

    return fields

STEM = "fields_diagnose"
#: the library's names of the options of ``diagnose``, reported under the options' spelling
OPTION_NAMES = {"times": "--times", "t_start": "--t-start", "points": "--points",
                "threshold": "--threshold", "relative_step": "--relative-step",
                "data_variance": "--data-variance", "route": "--route", "probes": "--probes",
                "steps_per_efold": "--steps-per-efold", "dim": "--dim", "samples": "--samples",
                "T": "--steps", "process": "--process", "schedule": "--schedule",
                "fractions": "--fractions", "variances": "--variances",
                "subspace": "--subspace", "rotation": "--rotation", "spectra": "--spectra",
                "krylov_steps": "--krylov-steps", "krylov_probes": "--krylov-probes",
                "hutchinson_probes": "--hutchinson-probes", "top_k": "--top-k",
                "data": "--data", "dataset": "--dataset", "key": "--key", "limit": "--limit",
                "max_memory": "--max-memory"}
#: how the spectra are computed (``auto``: matrix-free for networks above
#: :data:`~diffphase.simulate.fields.DENSE_DIMENSION_LIMIT` dimensions)
SPECTRA = ("auto", "dense", "matrix-free")
#: the dtypes a network may run in
NETWORK_DTYPES = ("float32", "float64")
#: extreme values reported per time point (``--top-k``)
TOP_K = 8


# --------------------------------------------------------------------------- the request
@dataclass
class FieldSource:
    """A score field to diagnose: the field, a label, the data sampler ``sample(n, rng)`` when
    the data law is known (exact start points), and a reference tangent basis when known."""

    field: ScoreField
    label: str
    sampler: Callable | None = None
    reference_basis: np.ndarray | None = None
    network: dict | None = None  # what a --torch or --diffusers network predicts, its levels


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
                    reference, device, torch=None, diffusers=None, dtype="float32"
                    ) -> tuple[str | None, int | None, int]:
    """Check the options of :func:`field_source` without building anything; ``(model, dim,
    samples)`` (``dim`` None for a network: its input shape sets it)."""
    given = [name for name, value in (("--score", score), ("--model", model),
                                      ("--torch", torch), ("--diffusers", diffusers))
             if value is not None]
    if len(given) != 1:
        raise ParameterError("--score/--model/--torch/--diffusers", "/".join(given) or None,
                             "exactly one of the four")
    require_choice("--device", device, DEVICES)
    network = torch is not None or diffusers is not None
    if device == "gpu" and model != "empirical" and not network:
        # only the empirical score and the networks have a GPU path
        raise ParameterError("--device", device, "cpu or auto unless --model empirical, --torch "
                             "or --diffusers (the scores computed on a GPU)")
    rotation = require_finite("--rotation", rotation)
    samples = require_int("--samples", samples, minimum=2)
    if network:
        require_choice("--dtype", dtype, NETWORK_DTYPES)
        if dim is not None:
            raise ParameterError("--dim", dim, "not given with --torch or --diffusers (the "
                                 "network's input shape sets it)")
        if rotation:
            raise ParameterError("--rotation", rotation, "0 unless --model linear-manifold")
        return None, None, samples
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
                             "only with --score, --torch or --diffusers (a built-in model has "
                             "its own tangent basis)")
    require_choice("--subspace", subspace, SUBSPACES)
    as_float_array("--fractions", fractions)
    (low, high), values = TAU_RANGE, as_float_array("--variances", variances)
    if np.any((values < low) | (values > high)):
        raise ParameterError("--variances", values, f"each in [{low:g}, {high:g}]")
    return model, dim, samples


def _network_source(proc: Process, *, torch, diffusers, dtype, device,
                    reference) -> FieldSource:
    """A ``--torch`` or ``--diffusers`` network, loaded, with its reference basis."""
    try:
        network = _network_study().network_field(torch=torch, diffusers=diffusers, dtype=dtype,
                                              device=device)
    except DeviceUnavailableError as exc:
        raise DeviceUnavailableError(f"--device {device}: {exc}") from None
    label = f"--torch {torch}" if torch is not None else f"--diffusers {diffusers}"
    basis = None if reference is None else load_reference(reference, network.dim)
    return FieldSource(network, f"network {label}", None, basis, network.describe())


def field_source(process: str | Process, *, score: str | Callable | None = None,
                 model: str | None = None, dim: int | None = None,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace: str = "random",
                 rotation: float = 0.0, samples: int = 200, reference=None,
                 device: str = "cpu", rng: np.random.Generator | None = None,
                 max_memory: float | None = None, torch: str | None = None,
                 diffusers=None, dtype: str = "float32") -> FieldSource:
    """The field of a user score, a network or a built-in model (exactly one of ``score``,
    ``torch``, ``diffusers``, ``model``).

    ``torch`` (``package.module:factory``) and ``diffusers`` (a folder) load a network
    (:func:`diffphase.studies.fields.network_field`, in ``dtype`` on ``device``); ``reference``
    is optional as for a user score.

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
        subspace=subspace, rotation=rotation, samples=samples, reference=reference, device=device,
        torch=torch, diffusers=diffusers, dtype=dtype)
    if torch is not None or diffusers is not None:
        return _network_source(proc, torch=torch, diffusers=diffusers, dtype=dtype,
                               device=device, reference=reference)
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
    """A checked request (from :func:`prepare_diagnosis`): ``run()`` gives the diagnostics,
    ``summaries()`` their point-averaged values, ``compare()`` the comparison with the training
    set when one was given."""

    source: FieldSource
    process: Process
    times: np.ndarray  # descending
    rng: np.random.Generator
    options: dict  # the remaining keyword options of diagnose_field
    spectra: str = "dense"  # or "matrix-free"
    krylov: dict = field(default_factory=dict)  # the options of diagnose_matrix_free
    rows: np.ndarray | None = None  # the training set (--data), in the field's units
    data: dict | None = None  # its description
    estimate: tuple[float, float] | None = None  # (bytes, operations), checked before running

    def run(self) -> list:
        try:
            with option_names(OPTION_NAMES):
                if self.spectra == "matrix-free":
                    shared = {k: self.options[k] for k in (
                        "points", "t_start", "data_variance", "threshold", "steps_per_efold",
                        "max_memory")}
                    return diagnose_matrix_free(self.source.field, self.process, self.times,
                                                rng=self.rng, sampler=self.source.sampler,
                                                **shared, **self.krylov)
                return diagnose_field(self.source.field, self.process, self.times, rng=self.rng,
                                      sampler=self.source.sampler,
                                      reference_basis=self.source.reference_basis,
                                      **self.options)
        except MemoryError:  # the estimate of diagnosis_cost was too low for this machine
            raise ParameterError("--points", self.options["points"],
                                 "a smaller job: this one ran out of memory (fewer --points "
                                 "or --times, or a smaller --dim)") from None

    def summaries(self) -> list[dict]:
        """:meth:`run`'s point-averaged values; a network's also name its own time input at
        each time (``model_time``)."""
        summaries = [r.summary() for r in self.run()]
        network = self.source.field
        if hasattr(network, "model_time"):
            for s in summaries:
                a = float(self.process.signal_scale(s["t"]))
                s["model_time"] = network.model_time(a, float(self.process.noise_variance(s["t"])))
        return summaries

    def compare(self, summaries: Sequence[dict]) -> dict | None:
        """The comparison with the training set (:func:`~diffphase.studies.fields.
        data_comparison`), or None without one."""
        if self.rows is None:
            return None
        return _network_study().data_comparison(
            self.rows, summaries, self.process, points=self.options["points"], rng=self.rng,
            t_start=self.options["t_start"], steps_per_efold=self.options["steps_per_efold"],
            threshold=self.options["threshold"], top_k=self.krylov.get("top_k", TOP_K))


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


def _prepared_network(proc: Process, times: np.ndarray, source: dict, *, rng, points, t_start,
                      route, probes, steps_per_efold, spectra, krylov, max_memory,
                      max_operations) -> tuple[FieldSource, str]:
    """Load the network, check its times and the spectra route, and its cost on that route
    (the matrix-free route's rows per network call go into ``krylov``)."""
    built = field_source(proc, rng=rng, max_memory=max_memory, **source)
    network = built.field
    with option_names(OPTION_NAMES):
        _network_study().check_network_times(network, proc, times, t_start)
        used = _network_study().spectra_route(spectra, network)
        sizes = {"points": points, "krylov_probes": krylov["probes"],
                 "krylov_steps": krylov["steps"], "times": len(times),
                 "steps_per_efold": steps_per_efold, "probes": probes}
        if used == "dense":
            check_probes(probes, network.dim)
            jacobian_route = resolve_route(route, network)
            krylov["estimate"] = check_cost(
                diagnosis_cost(proc, times, points=points, dim=network.dim, t_start=t_start,
                               probes=probes, route=jacobian_route,
                               steps_per_efold=steps_per_efold)
                + _network_study().dense_network_cost(network, points), sizes,
                max_memory=max_memory, max_operations=max_operations)
            return built, used
        if route not in ("auto", "autograd"):
            raise ParameterError("route", route, "auto or autograd with matrix-free spectra "
                                 "(they use Jacobian-vector products)")
        if built.reference_basis is not None:
            raise ParameterError("--reference", str(source.get("reference")), "only with dense "
                                 "spectra (--spectra dense): the blocks need the whole Jacobian")
        start = float(times[0]) if t_start is None else float(t_start)
        memory = product_memory(network, float(proc.signal_scale(start)),
                                float(proc.noise_variance(start)))
        budget = MEMORY_BUDGET_BYTES if max_memory is None else float(max_memory)
        krylov["chunk_rows"] = chunk_rows_within(
            points * max(2 * krylov["probes"], krylov["hutchinson_probes"]), memory.per_row,
            0.5 * budget)
        krylov["estimate"] = check_cost(
            matrix_free_cost(points=points, probes=krylov["probes"], steps=krylov["steps"],
                             hutchinson_probes=krylov["hutchinson_probes"], dim=network.dim,
                             memory=memory, chunk_rows=krylov["chunk_rows"]), sizes,
            max_memory=max_memory, max_operations=max_operations)
    return built, used


def prepare_diagnosis(process: str | Process, times: Sequence[float], *,
                      rng: np.random.Generator, points: int = 8, t_start: float | None = None,
                      data_variance: float = 1.0, threshold: float = 0.5, route: str = "auto",
                      probes: int | None = None, relative_step: float = 1e-4,
                      steps_per_efold: int = 40, spectra: str = "auto", krylov_steps: int = 60,
                      krylov_probes: int = 4, hutchinson_probes: int = 16, top_k: int = TOP_K,
                      data=None, dataset: str | None = None, key: str | None = None,
                      limit: int | None = None, max_memory: float | None = None,
                      max_operations: float | None = None, **source) -> FieldDiagnosis:
    """Check the options of :func:`diagnose_field` and of the source (:func:`field_source` with
    the keywords ``source``), refuse a request whose estimated cost (:func:`diagnosis_cost`)
    exceeds ``max_memory`` or ``max_operations``, then build the source (importing and probing a
    user score) and check ``probes`` and ``route`` against it: every input error is raised
    here, before any heavy work.

    A network (``torch``, ``diffusers`` in ``source``) is loaded first (its dimension sets the
    cost), its times checked against its trained range, and its spectra computed densely or
    matrix-free (``spectra``; the Krylov options ``krylov_steps``, ``krylov_probes``,
    ``hutchinson_probes``, ``top_k`` of :func:`~diffphase.simulate.matrix_free_fields.
    diagnose_matrix_free`). ``data``, ``dataset``, ``key``, ``limit`` (with a user score or a
    network) give the training set: trajectories start from its noised rows and ``compare()``
    sets the diagnostics beside the theory's predictions and the empirical score."""
    proc = as_process(process)
    options = {"points": points, "t_start": t_start, "data_variance": data_variance,
               "threshold": threshold, "route": route, "probes": probes,
               "relative_step": relative_step, "steps_per_efold": steps_per_efold}
    krylov = {"steps": krylov_steps, "probes": krylov_probes,
              "hutchinson_probes": hutchinson_probes, "top_k": top_k}
    with option_names(OPTION_NAMES):
        times = check_request(proc, times, **options)
        check_krylov(krylov_steps, krylov_probes, hutchinson_probes, top_k, threshold)
        require_choice("spectra", spectra, SPECTRA)
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
    if model is not None and (data is not None or dataset is not None):
        raise ParameterError("--data", data if data is not None else dataset, "only with "
                             "--score, --torch or --diffusers (a built-in model has its data)")
    if dim is None:
        built, used_spectra = _prepared_network(
            proc, times, source, rng=rng, points=points, t_start=t_start, route=route,
            probes=probes, steps_per_efold=steps_per_efold, spectra=spectra, krylov=krylov,
            max_memory=max_memory, max_operations=max_operations)
        estimate = krylov.pop("estimate")
    else:
        with option_names(OPTION_NAMES):
            used_spectra = _network_study().spectra_route(spectra, None)
        built, estimate = _prepared_score(
            proc, times, source, rng=rng, model=model, dim=dim, samples=samples, points=points,
            t_start=t_start, route=route, probes=probes, steps_per_efold=steps_per_efold,
            max_memory=max_memory, max_operations=max_operations)
    rows, described = None, None
    if data is not None or dataset is not None:
        with option_names(OPTION_NAMES):
            rows, described = _network_study().training_rows(
                data, dataset, key=key, limit=limit, dim=built.field.dim, max_memory=max_memory)
        built.sampler = _network_study().rows_sampler(rows)
    options.update(max_memory=max_memory, max_operations=max_operations)
    return FieldDiagnosis(built, proc, times, rng, options, used_spectra, krylov, rows,
                          described, estimate)


def _prepared_score(proc: Process, times: np.ndarray, source: dict, *, rng, model, dim, samples,
                    points, t_start, route, probes, steps_per_efold, max_memory,
                    max_operations) -> tuple[FieldSource, tuple[float, float]]:
    """A user score or a built-in model: the cost from the options (returned with the source,
    as ``(bytes, operations)``), then the source built and the route checked against it."""
    used = route if route != "auto" else ("central" if model is None else "closed-form")
    with option_names(OPTION_NAMES):
        check_probes(probes, dim)
        estimate = check_cost(diagnosis_cost(proc, times, points=points, dim=dim, t_start=t_start,
                                  probes=probes, route=used, steps_per_efold=steps_per_efold,
                                  model=model, samples=samples),
                   {"points": points, "dim": dim, "probes": probes, "times": len(times),
                    "steps_per_efold": steps_per_efold, "samples": samples,
                    "T": len(proc.betas) if proc.name == "ddpm" else None},
                   max_memory=max_memory, max_operations=max_operations)
    built = field_source(proc, rng=rng, max_memory=max_memory, **source)
    with option_names(OPTION_NAMES):
        resolve_route(route, built.field)
    return built, estimate


#: per-time values of :meth:`TimeDiagnostics.summary` in the per-time table, when present
SUMMARY_COLUMNS = ("model_time", "local_dimension", "local_dimension_gap", "local_dimension_mean",
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
                 torch_path=None, diffusers=None, dtype="float32",
                 times=(0.1, 0.5, 1.0), process="ve", schedule="linear", steps=1000,
                 fractions=(0.125, 0.125), variances=(4.0, 0.25), subspace="random",
                 rotation=0.0, samples=200, reference=None, points=8, t_start=None,
                 data_variance=1.0, route="auto", probes=None, relative_step=1e-4,
                 threshold=0.5, steps_per_efold=40, spectra="auto", krylov_steps=60,
                 krylov_probes=4, hutchinson_probes=16, top_k=TOP_K, data=None, dataset=None,
                 key=None, limit=None, seed=0, device="cpu", max_memory=None,
                 stem=STEM, command="diagnose") -> dict:
    """Check the request, claim the files, run the diagnostics, write CSV/JSON/figures; return
    the summary. ``max_memory`` (bytes) overrides the library's memory budget."""
    seed = require_int("--seed", seed, minimum=0)
    proc = request_process(process, schedule, steps, max_memory=max_memory)
    diagnosis = prepare_diagnosis(
        proc, times, rng=np.random.default_rng(seed), points=points, t_start=t_start,
        data_variance=data_variance, threshold=threshold, route=route, probes=probes,
        relative_step=relative_step, steps_per_efold=steps_per_efold, spectra=spectra,
        krylov_steps=krylov_steps, krylov_probes=krylov_probes,
        hutchinson_probes=hutchinson_probes, top_k=top_k, data=data, dataset=dataset, key=key,
        limit=limit, score=score_path, model=model, dim=dim, torch=torch_path,
        diffusers=diffusers, dtype=dtype, fractions=fractions, variances=variances,
        subspace=subspace, rotation=rotation, samples=samples, reference=reference,
        device=device, max_memory=max_memory)
    matrix_free = diagnosis.spectra == "matrix-free"
    names = [f"{stem}.csv", f"{stem}_summary.csv", f"{stem}.json"]
    names += [f"{stem}_density.csv"] if matrix_free else []
    names += [f"{stem}_theory.csv"] if diagnosis.rows is not None else []
    names += [f"{stem}.{fmt}" for fmt in formats]
    names += [f"{stem}_theory.{fmt}" for fmt in formats] if diagnosis.rows is not None else []
    outputs.claim(names)
    if diagnosis.estimate is not None and (progress_enabled() or verbosity() >= 2):
        budget = MEMORY_BUDGET_BYTES if max_memory is None else float(max_memory)
        click.echo(f"estimated peak memory {format_bytes(diagnosis.estimate[0])} (budget "
                   f"{format_bytes(budget)})", err=True)
    with stage(f"{command}: Jacobian spectra along the trajectories"):
        summaries = diagnosis.summaries()
    time_col = f"t_{process}" if process != "ddpm" else "step_ddpm"
    _write_tables(outputs, stem, summaries, time_col, matrix_free)
    comparison = diagnosis.compare(summaries)
    if comparison is not None:
        outputs.write_csv(f"{stem}_theory.csv", _network_study().comparison_table(
            comparison, time_col, diagnosis.krylov["top_k"]))
    parameters = json_parameters(diagnosis, locals())
    solver = json_solver(diagnosis, summaries, time_col, process, relative_step,
                          steps_per_efold, probes)
    convergence = {"points": points, "time_points": len(summaries), "nonfinite_jacobians": 0,
                   "n_nonfinite": sum(s["n_nonfinite"] for s in summaries)}
    if matrix_free:
        convergence["jacobian_products"] = sum(s["jacobian_products"] for s in summaries)
    extra = {"network": diagnosis.source.network} if diagnosis.source.network else {}
    if comparison is not None:
        extra["comparison"] = {"data": diagnosis.data, "data_rank": comparison["rank"],
                               "data_eigenvalues_top": comparison["eigenvalues"][:top_k],
                               "grid": comparison["grid"],
                               "time_points": comparison["time_points"]}
    summary = run_metadata(command, parameters, seed=seed,
                           score_description=diagnosis.source.label, solver=solver,
                           convergence=convergence, **extra, time_points=summaries)
    outputs.write_json(f"{stem}.json", summary)
    write_figures(outputs, stem, formats, summaries, comparison, diagnosis.source.label,
                   matrix_free, {"$d$": diagnosis.source.field.dim, "process": process,
                                 "trajectories": points, "seed": seed})
    return summary


def _write_tables(outputs: OutputSet, stem: str, summaries, time_col: str,
                  matrix_free: bool) -> None:
    if matrix_free:
        extremes, per_time, density = _network_study().matrix_free_tables(summaries, time_col)
        outputs.write_csv(f"{stem}_density.csv", density)
    else:
        extremes, per_time = diagnosis_tables(summaries, time_col)
    outputs.write_csv(f"{stem}.csv", extremes)
    outputs.write_csv(f"{stem}_summary.csv", per_time)


def _diagnose_options(func):
    options = [
        click.option("--score", "score_path", default=None,
                     help="A score callable 'package.module:function', called as f(x, t)."),
        click.option("--model", type=click.Choice(MODELS), default=None,
                     help="A built-in score instead of --score."),
        click.option("--torch", "torch_path", default=None, metavar="MODULE:FACTORY",
                     help="A torch network: factory() returns (module, info) saying what it "
                          "predicts (epsilon, v, x0, score) and its time convention."),
        click.option("--diffusers", default=None, metavar="DIR",
                     type=click.Path(path_type=Path),
                     help="A diffusers model and its scheduler saved with save_pretrained "
                          "(read from the local folder only)."),
        click.option("--dtype", type=click.Choice(NETWORK_DTYPES), default="float32",
                     show_default=True, help="Arithmetic of --torch and --diffusers networks."),
        click.option("--spectra", type=click.Choice(SPECTRA), default="auto",
                     show_default=True,
                     help="Dense Jacobians, or matrix-free Krylov estimates (networks; auto: "
                          f"matrix-free above {DENSE_DIMENSION_LIMIT} dimensions)."),
        click.option("--krylov-steps", type=int, default=60, show_default=True,
                     help="Matrix-free: Lanczos steps per run."),
        click.option("--krylov-probes", type=int, default=4, show_default=True,
                     help="Matrix-free: random starts per point (spectral densities)."),
        click.option("--hutchinson-probes", type=int, default=16, show_default=True,
                     help="Matrix-free: Rademacher probes per point for |A|/|J|."),
        click.option("--top-k", type=int, default=TOP_K, show_default=True,
                     help="Matrix-free: extreme singular values and eigenvalues reported."),
        click.option("--data", default=None, metavar="PATH",
                     help="The training set (.npy, .npz, .csv or images; rows in the network's "
                          "units and input layout): start points and comparison with theory."),
        click.option("--dataset", type=click.Choice(tuple(DATASETS)), default=None,
                     help="A bundled training set instead of --data."),
        click.option("--key", default=None, help="Array of an .npz --data."),
        click.option("--limit", type=int, default=None, help="Keep the first N rows of --data."),
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
        option("--n-train", "n_train", aliases=("--samples",), reported_as="--samples",
               type=int, default=200, show_default=True,
               help="Training points of --model empirical."),
        click.option("--reference", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="With --score: a .npy (D, m) tangent basis."),
        option("--trajectories", "trajectories", aliases=("--points",), reported_as="--points",
               type=int, default=8, show_default=True,
               help="Backward trajectories (points per time)."),
        click.option("--t-start", type=float, default=None,
                     help="Start time of the trajectories (default: the largest time)."),
        click.option("--data-variance", type=float, default=1.0, show_default=True,
                     help="With --score: start from N(0, (a^2 v + D) I)."),
        click.option("--route", type=click.Choice(JACOBIAN_ROUTES),
                     default="auto", show_default=True, help="Jacobian route."),
        option("--difference-probes", "difference_probes", aliases=("--probes",),
               reported_as="--probes", type=int, default=None,
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
                     help="Device of --model empirical, --torch and --diffusers (the other "
                          "scores run on the CPU)."),
    ]
    for decorator in reversed(options):
        func = decorator(func)
    return func


@click.command("diagnose")
@_diagnose_options
@click.option("--times", type=FLOATS, default="0.01,0.1,1,10", show_default=True,
              help="Time points in the --process convention (ddpm: steps).")
@output_options("diffphase-out/diagnose")
@max_memory_option
def diagnose_command(outputs: OutputSet, formats, as_json: bool, **options) -> None:
    """Jacobian spectra, local dimension and non-conservativeness of a score along backward
    trajectories (THEORY E). Spectra are of the normalized Jacobian D_t J."""
    options["points"] = options.pop("trajectories")
    options["samples"] = options.pop("n_train")
    options["probes"] = options.pop("difference_probes")
    summary = run_diagnose(outputs, formats, **options)
    if as_json:
        summary = {**summary, "time_points": [{k: s[k] for k in JSON_KEYS if k in s}
                                              for s in summary["time_points"]]}
        if "comparison" in summary:
            summary["comparison"] = _network_study().comparison_brief(summary["comparison"])
    emit(summary, as_json, outputs)


#: per-time keys printed by ``--json`` (those a time point has)
JSON_KEYS = ("t", "tau", "model_time", "singular_values", "eigenvalues_real", "eigenvalues_imag",
             "singular_values_top", "singular_values_top_error", "singular_values_bottom",
             "singular_values_bottom_error", "eigenvalues_top", "eigenvalues_top_error",
             "eigenvalues_bottom", "eigenvalues_bottom_error", "gap_lower", "gap_upper",
             "gap_lower_error", "gap_upper_error", "local_dimension", "local_dimension_gap",
             "local_dimension_mean", "local_dimension_error", "nonconservativeness",
             "nonconservativeness_error", "tangent_nonconservativeness",
             "normal_nonconservativeness", "max_principal_angle", "central_difference_roundoff",
             "ks_error", "n_nonfinite")


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
