"""The check registry: every theory prediction paired with a simulation that measures it.

A check is a function ``check(tier, rng) -> list[Comparison]`` registered with
:func:`register_check`. Each :class:`Comparison` holds a prediction, a measurement and a tolerance
(the tolerance states the finite-size and sampling error it allows). ``kind="toolkit"`` checks
test the toolkit (a failure is a bug: ``pass``/``fail``); ``kind="paper"`` checks test a paper's
heuristic claim (``agrees``/``disagrees``; a disagreement is a finding, not a failure).

Model modules register their checks on import; :data:`MODEL_MODULES` lists them.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, require_choice
from ..models import CHECK_KINDS as KINDS
from ..models import EXTRA_CHECK_FAMILIES, MODEL_NAMES, TIERS

#: model name -> module that registers its checks (one per model, same names as every layer,
#: and one per extra check family)
MODEL_MODULES: dict[str, str] = {
    name: f"diffphase.validate.{name}"
    for name in MODEL_NAMES + EXTRA_CHECK_FAMILIES
}


def available_models() -> list[str]:
    """Models whose check module exists in this version."""
    return [name for name, module in MODEL_MODULES.items() if importlib.util.find_spec(module)]


class CheckSkipped(Exception):
    """Raised by a check that cannot run here (a missing optional dependency); reported as
    ``skipped`` with the reason, never as a failure."""


@dataclass
class Comparison:
    """One prediction/measurement pair. ``error`` defaults to ``|prediction - measurement|``;
    ``passed`` defaults to ``error <= tolerance``."""

    quantity: str
    prediction: float
    measurement: float
    tolerance: float
    error: float | None = None
    passed: bool | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.error is None:
            self.error = abs(float(self.prediction) - float(self.measurement))
        if self.passed is None:
            self.passed = bool(math.isfinite(self.error) and self.error <= self.tolerance)


@dataclass
class CheckResult:
    model: str
    check: str
    kind: str
    comparison: Comparison | None
    status: str  # pass | fail | agrees | disagrees | error | skipped
    seconds: float
    message: str = ""

    @property
    def is_failure(self) -> bool:
        """Toolkit failures and crashes fail a run; a paper disagreement does not."""
        return self.status in ("fail", "error")

    def as_row(self) -> dict:
        c = self.comparison
        return {
            "model": self.model,
            "check": self.check,
            "kind": self.kind,
            "quantity": c.quantity if c else "",
            "prediction": c.prediction if c else None,
            "measurement": c.measurement if c else None,
            "error": c.error if c else None,
            "tolerance": c.tolerance if c else None,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "details": c.details if c else {},
        }


@dataclass
class RegisteredCheck:
    model: str
    name: str
    func: Callable[[str, np.random.Generator], list[Comparison]]
    tiers: tuple[str, ...]
    kind: str
    description: str


_CHECKS: dict[tuple[str, str], RegisteredCheck] = {}


def register_check(
    model: str, name: str, *, tiers=TIERS, kind: str = "toolkit", description: str = ""
):
    """Decorator registering ``func(tier, rng) -> list[Comparison]`` under ``(model, name)``."""
    require_choice("kind", kind, KINDS)

    def decorate(func):
        _CHECKS[(model, name)] = RegisteredCheck(
            model, name, func, tuple(tiers), kind, description or (func.__doc__ or "").strip()
        )
        return func

    return decorate


def load_models(model: str | None = None) -> list[str]:
    names = available_models() if model is None else [model]
    for name in names:
        require_choice("model", name, available_models())
        importlib.import_module(MODEL_MODULES[name])
    return names


def registered_checks(model: str | None = None, tier: str = "quick") -> list[RegisteredCheck]:
    require_choice("tier", tier, TIERS)
    models = load_models(model)
    return [c for c in _CHECKS.values() if c.model in models and tier in c.tiers]


def run_checks(
    model: str | None = None,
    tier: str = "quick",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Run every registered check of ``model`` (all models when None) in ``tier``."""
    if seed < 0:
        raise ParameterError("seed", seed, ">= 0")
    results: list[CheckResult] = []
    for check in registered_checks(model, tier):
        if progress:
            progress(f"{check.model}/{check.name}")
        rng = np.random.default_rng([seed, _stable_hash(check.model + "/" + check.name)])
        start = time.perf_counter()
        try:
            comparisons = check.func(tier, rng)
        except Exception as exc:  # a skip is reported; a crash is a toolkit failure, not raised
            skipped = isinstance(exc, CheckSkipped)
            message = (
                str(exc) if skipped else (f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            )
            results.append(
                CheckResult(
                    check.model,
                    check.name,
                    check.kind,
                    None,
                    "skipped" if skipped else "error",
                    time.perf_counter() - start,
                    message,
                )
            )
            continue
        elapsed = (time.perf_counter() - start) / max(len(comparisons), 1)
        for comp in comparisons:
            if check.kind == "paper":
                status = "agrees" if comp.passed else "disagrees"
            else:
                status = "pass" if comp.passed else "fail"
            results.append(CheckResult(check.model, check.name, check.kind, comp, status, elapsed))
    return results


def _stable_hash(text: str) -> int:
    value = 0
    for ch in text.encode():
        value = (value * 131 + ch) % (2**31 - 1)
    return value


HEADER = ("check", "quantity", "prediction", "measurement", "error", "tolerance", "status")


def _cells(result: CheckResult) -> tuple[str, ...]:
    """One result as the table's cells (``-`` where a crashed or skipped check has no numbers)."""
    c = result.comparison
    name = f"{result.model}/{result.check}"
    if c is None:
        return (name, "-", "-", "-", "-", "-", result.status)
    return (
        name,
        c.quantity,
        _num(c.prediction),
        _num(c.measurement),
        _num(c.error),
        _num(c.tolerance),
        result.status,
    )


def format_table(results: list[CheckResult]) -> str:
    """Plain-text table: check, quantity, prediction, measurement, error, tolerance, status."""
    rows = [HEADER] + [_cells(r) for r in results]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_counts(results: list[CheckResult]) -> dict[str, int]:
    counts = {s: 0 for s in ("pass", "fail", "agrees", "disagrees", "error", "skipped")}
    for r in results:
        counts[r.status] += 1
    return counts


def format_markdown(results: list[CheckResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    counts = summary_counts(results)
    lines += ["", ", ".join(f"{v} {k}" for k, v in counts.items() if v)]
    errors = [r for r in results if r.status == "error"]
    for r in errors:
        lines += ["", f"### {r.model}/{r.check} crashed", "```", r.message, "```"]
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
