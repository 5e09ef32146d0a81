"""The commands a sweep can run, each as a :class:`SweepCommand`: its parameters, a cheap check
of one cell and the library call that computes it.

Contract: ``check(params)`` raises :class:`~diffphase.errors.ParameterError` for a cell that the
command would refuse, doing no heavy work (it runs on the client for every cell before any task
starts); ``compute(params)`` calls the library function behind the command (never the command
line) and returns its outputs as a flat mapping of scalars
(:func:`~diffphase.sweep.values.flatten`); ``warm`` is a small cell whose computation loads the
command's compiled kernels in a worker. Parameters not set by the spec take the library's
defaults. The names are the command line's (``thresholds``, ``simulate``, ``steps`` for the
sampler's ``T``, ...); ``model`` selects the model of ``simulate``, ``phase-diagram`` and
``validate``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import ParameterError, require_choice
from .values import flatten


@dataclass(frozen=True)
class SweepCommand:
    """One command of ``diffphase sweep``.

    ``parameters``: the names a spec may set (with their defaults, None when required);
    ``seeded``: whether the command takes ``seed`` (then ``seeds`` may be swept);
    ``required``: the parameters a spec must set;
    ``check``/``compute``: see the module docstring; ``warm``: a cell computed once per worker.
    """

    name: str
    parameters: Mapping[str, object]
    check: Callable[[dict], None]
    compute: Callable[[dict], dict]
    seeded: bool = True
    required: tuple[str, ...] = ()
    warm: Mapping[str, object] = field(default_factory=dict)
    summary: str = ""

    def complete(self, params: Mapping) -> dict:
        """``params`` with the defaults of the parameters it leaves out."""
        return {**self.parameters, **params}


def _required(target: str) -> tuple[str, ...]:
    """The parameters of ``module:function`` without a default."""
    module, _, name = target.partition(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    return tuple(p.name for p in signature.parameters.values()
                 if p.default is inspect.Parameter.empty)


def _defaults(target: str, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """The keyword defaults of ``module:function`` (None for a parameter without one)."""
    module, _, name = target.partition(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in signature.parameters.values() if p.name not in skip}


# ----------------------------------------------------------------------------- thresholds
def _thresholds_check(p: dict) -> None:
    """The checks :func:`~diffphase.studies.hierarchy.hierarchy_thresholds` makes before it
    solves: sizes, population-dynamics settings, seed and cost."""
    from ..studies.hierarchy import check_thresholds

    check_thresholds(**p)


def _thresholds(p: dict) -> dict:
    from ..studies.hierarchy import hierarchy_thresholds

    return flatten(hierarchy_thresholds(**p))


# ----------------------------------------------------------------------------- critical-times
def _critical_times_check(p: dict) -> None:
    from ..studies.memorization import check_critical_times

    check_critical_times(**p)


def _critical_times(p: dict) -> dict:
    from ..studies.memorization import critical_times

    return flatten(critical_times(**p))


# ----------------------------------------------------------------------------- sampler-error
#: the command line's name of a library parameter (one name per concept, as ``--steps``)
SAMPLER_NAMES = {"T": "steps"}


def _library_names(p: dict, names: Mapping[str, str]) -> dict:
    inverse = {spelled: name for name, spelled in names.items()}
    return {inverse.get(k, k): v for k, v in p.items()}


def _spelled(parameters: Mapping[str, object], names: Mapping[str, str]) -> dict:
    return {names.get(k, k): v for k, v in parameters.items()}


def _sampler_error_check(p: dict) -> None:
    from ..studies.sampler import plan_sampler_error

    try:
        plan_sampler_error(**_library_names(p, SAMPLER_NAMES))
    except ParameterError as exc:
        name = SAMPLER_NAMES.get(exc.name, exc.name)
        raise ParameterError(name, exc.value, exc.allowed) from None


def _sampler_error(p: dict) -> dict:
    from ..studies.sampler import sampler_error_report

    return flatten(sampler_error_report(**_library_names(p, SAMPLER_NAMES)).summary())


# ----------------------------------------------------------------------------- simulate
#: per model of ``simulate``: (plan function, its parameters as a sweep sets them)
SIMULATE_MODELS = {
    "hierarchy": "diffphase.studies.hierarchy:plan_forward_backward",
    "memorization": "diffphase.studies.memorization:plan_memorization_run",
}
#: the one-value parameters of ``simulate hierarchy`` in a sweep (a cell is one noise level at
#: one depth, so that every output is a scalar)
SIMULATE_SCALARS = {"noise": "noise", "depth": "depths"}


def _simulate_args(p: dict) -> tuple[str, dict]:
    model = require_choice("model", p["model"], tuple(SIMULATE_MODELS))
    target = SIMULATE_MODELS[model]
    names = _defaults(target)
    args = {k: v for k, v in p.items() if k in names and v is not None}  # None: the default
    if model == "hierarchy":
        if p.get("noise") is None:
            raise ParameterError("noise", None, "a noise level in each cell (set it in "
                                 "[parameters] or sweep it in [grid])")
        for scalar, plural in SIMULATE_SCALARS.items():
            value = p.get(scalar)
            if isinstance(value, (list, tuple)):
                raise ParameterError(scalar, value, "one number per cell (sweep it in [grid])")
            args[plural] = [names[plural][0] if value is None else value]
    extra = set(p) - set(names) - {"model", *SIMULATE_SCALARS}
    for key in extra:
        if p[key] is not None:
            raise ParameterError(key, p[key], f"not a parameter of simulate {model}")
    return model, args


def _simulate_check(p: dict) -> None:
    model, args = _simulate_args(p)
    module, _, name = SIMULATE_MODELS[model].partition(":")
    getattr(importlib.import_module(module), name)(**args)


def _simulate(p: dict) -> dict:
    model, args = _simulate_args(p)
    if model == "hierarchy":
        from ..studies.hierarchy import plan_forward_backward, run_forward_backward

        run = run_forward_backward(plan_forward_backward(**args))[0]
        row = {k: v[0] for k, v in run.columns.items() if k not in ("noise",)}
        return flatten({**row, **run.convergence})
    from ..studies.memorization import plan_memorization_run, run_memorization

    return flatten(run_memorization(plan_memorization_run(**args)).summary())


def _simulate_parameters() -> dict[str, object]:
    params: dict[str, object] = {"model": None}
    for target in SIMULATE_MODELS.values():
        params.update({k: None for k in _defaults(target)})
    params.update({"noise": None, "depth": None})
    params.pop("depths", None)
    return params


# ----------------------------------------------------------------------------- phase-diagram
def _diagram_function(model: str) -> Callable[..., object]:
    from ..studies import hierarchy, memorization, sampler  # noqa: F401  (the diagram modules)

    functions = {"hierarchy": "diffphase.studies.hierarchy:hierarchy_diagram",
                 "memorization": "diffphase.studies.memorization:memorization_diagram"}
    require_choice("model", model, tuple(functions))
    module, _, name = functions[model].partition(":")
    return getattr(importlib.import_module(module), name)


def _diagram_args(p: dict) -> tuple[Callable, dict]:
    function = _diagram_function(p["model"])
    names = set(inspect.signature(function).parameters)
    for key, value in p.items():
        if key not in names and key != "model" and value is not None:
            raise ParameterError(key, value, f"not a parameter of phase-diagram {p['model']}")
    return function, {k: v for k, v in p.items() if k in names and v is not None}


def _diagram_check(p: dict) -> None:
    _diagram_args(p)


def _diagram(p: dict) -> dict:
    function, args = _diagram_args(p)
    return flatten(function(**args).summary())


# ----------------------------------------------------------------------------- validate
def _validate_check(p: dict) -> None:
    from ..errors import require_int
    from ..models import TIERS
    from ..validate.registry import load_models

    load_models(p["model"])
    require_choice("tier", p["tier"], TIERS)
    require_int("seed", p["seed"], 0)


def _validate(p: dict) -> dict:
    from ..validate.registry import run_checks, summary_counts

    results = run_checks(p["model"], p["tier"], p["seed"])
    values: dict[str, object] = {f"n_{k}": v for k, v in summary_counts(results).items()}
    seen: dict[str, int] = {}
    for r in results:  # a check with several comparisons: _1, _2, ... after the first
        row = r.as_row()
        stem = f"{r.model}_{r.check}"
        seen[stem] = seen.get(stem, 0) + 1
        stem += f"_{seen[stem] - 1}" if seen[stem] > 1 else ""
        for key in ("status", "measurement", "prediction", "error"):
            values[f"{stem}_{key}"] = row[key]
    return flatten(values)


def _analyze_check(p: dict) -> None:
    from ..studies.analyze import plan_analysis

    plan_analysis(**p)


def _analyze(p: dict) -> dict:
    from ..studies.analyze import plan_analysis, run_analysis

    return flatten(run_analysis(plan_analysis(**p)).summary)


def _build() -> dict[str, SweepCommand]:
    hierarchy = "diffphase.studies.hierarchy:hierarchy_thresholds"
    commands = [
        SweepCommand("thresholds", _defaults(hierarchy), _thresholds_check, _thresholds,
                     required=_required(hierarchy),
                     warm={"v": 16, "m": 4, "s": 2},
                     summary="hierarchy_thresholds: eps*, slope, nu, regime (THEORY C)"),
        SweepCommand("critical-times", _defaults("diffphase.studies.memorization:critical_times"),
                     _critical_times_check, _critical_times, seeded=False,
                     required=_required("diffphase.studies.memorization:critical_times"),
                     warm={"fractions": [1.0], "variances": [1.0], "dim": 16, "n_train": 100},
                     summary="critical_times: tau_C, tau_S and REM times (THEORY B)"),
        SweepCommand("sampler-error", _spelled(_defaults(
            "diffphase.studies.sampler:sampler_error_report"), SAMPLER_NAMES),
                     _sampler_error_check, _sampler_error, seeded=False,
                     warm={"steps": 16, "dim": 8, "k": 2},
                     summary="sampler_error_report: KL and TV of the DDPM sampler (THEORY D)"),
        SweepCommand("simulate", _simulate_parameters(), _simulate_check, _simulate,
                     required=("model",),
                     warm={"model": "hierarchy", "v": 8, "m": 2, "s": 2, "depth": 2,
                           "noise": 0.3, "samples": 10, "population": 0},
                     summary="one noise level at one depth of simulate hierarchy; or one "
                             "simulate memorization experiment"),
        SweepCommand("phase-diagram", {"model": None, **{k: None for k in (
            "v", "m", "s", "n_c", "eps", "depths", "f_values", "s_values", "fractions",
            "variances", "dim", "rates", "process", "subspace", "max_memory")}},
            _diagram_check, _diagram, seeded=False, required=("model",),
            summary="the summary of a hierarchy or memorization diagram"),
        SweepCommand("validate", {"model": None, "tier": "quick", "seed": 0}, _validate_check,
                     _validate, summary="counts and per-check status of validate"),
        SweepCommand("analyze", _defaults("diffphase.studies.analyze:plan_analysis"),
                     _analyze_check, _analyze, summary="the summary of analyze"),
    ]
    return {c.name: c for c in commands}


_COMMANDS: dict[str, SweepCommand] = {}


def sweep_commands() -> dict[str, SweepCommand]:
    """Name -> :class:`SweepCommand` of every command a sweep can run (built on first use)."""
    if not _COMMANDS:
        _COMMANDS.update(_build())
    return _COMMANDS


def get_command(name: object) -> SweepCommand:
    """The command called ``name`` (a :class:`SweepCommand` is returned as it is)."""
    if isinstance(name, SweepCommand):
        return name
    names = ("thresholds", "critical-times", "sampler-error", "simulate", "phase-diagram",
             "validate", "analyze")
    require_choice("command", name, names)
    return sweep_commands()[name]
