"""Error types and argument checks shared by every layer.

Contract: bad input raises :class:`ParameterError` (a ``ValueError``) whose message names the
parameter, the offending value and the allowed range, *before* any heavy work starts. The CLI
turns these into one line on stderr and exit code 2. See DESIGN.md, "Errors".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


class ParameterError(ValueError):
    """A parameter is outside its allowed range.

    Parameters
    ----------
    name : the parameter's name as the user spells it (``"variances"``, ``"--tau"``).
    value : the offending value.
    allowed : the allowed range in words (``"> 0"``, ``"in [0, 1]"``).
    """

    def __init__(self, name: str, value: object, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"invalid {name} = {_short(value)}: allowed {allowed}")


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed: install the optional extra with "
            f"pip install 'diffphase[{extra}]'"
        )


class DeviceUnavailableError(RuntimeError):
    """A GPU was requested explicitly but none answers."""


def _short(value: object) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, value, "a number") from None


def require_finite(name: str, value: float) -> float:
    value = _number(name, value)
    if not math.isfinite(value):
        raise ParameterError(name, value, "a finite number")
    return value


def require_positive(name: str, value: float) -> float:
    value = require_finite(name, value)
    if value <= 0:
        raise ParameterError(name, value, "> 0")
    return value


def require_nonnegative(name: str, value: float) -> float:
    value = require_finite(name, value)
    if value < 0:
        raise ParameterError(name, value, ">= 0")
    return value


def require_in_range(
    name: str, value: float, low: float, high: float, *, closed: tuple[bool, bool] = (True, True)
) -> float:
    """Check ``low <= value <= high`` (open ends where ``closed`` says False)."""
    value = require_finite(name, value)
    ok_low = value >= low if closed[0] else value > low
    ok_high = value <= high if closed[1] else value < high
    if not (ok_low and ok_high):
        bracket = ("[" if closed[0] else "(") + f"{low:g}, {high:g}" + ("]" if closed[1] else ")")
        raise ParameterError(name, value, f"in {bracket}")
    return value


def require_int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not _number(name, value).is_integer():
        raise ParameterError(name, value, "an integer")
    value = int(value)  # type: ignore[arg-type]
    if minimum is not None and value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")
    return value


def require_choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(name, value, "one of " + ", ".join(choices))
    return value


def as_float_array(name: str, values: Sequence[float] | np.ndarray | float) -> np.ndarray:
    """A finite 1-d float array (a scalar becomes length 1)."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise ParameterError(name, values, "a list of numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ParameterError(name, values, "a non-empty list of numbers")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(name, arr, "finite numbers")
    return arr


def parse_float_list(name: str, text: str) -> np.ndarray:
    """Parse ``"0.2,0.2"`` into an array, naming ``name`` on failure."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ParameterError(name, text, "comma-separated numbers, e.g. 0.2,0.2") from None
    return as_float_array(name, values)


class KernelCacheWarning(UserWarning):
    """A damaged entry of the compiled-kernel cache was discarded; it is rebuilt."""


def require_array(name: str, values, *, low: float = -math.inf, high: float = math.inf,
                  closed: tuple[bool, bool] = (True, True), finite: bool = True) -> np.ndarray:
    """A float array of any shape (empty allowed) with every entry in ``[low, high]`` (open ends
    where ``closed`` says False) and finite unless ``finite`` is False (then only NaN is refused);
    the error names ``name``, the offending entries and the range."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(name, values, "numbers") from None
    ok_low = arr >= low if closed[0] else arr > low
    ok_high = arr <= high if closed[1] else arr < high
    bad = ~(ok_low & ok_high) | (~np.isfinite(arr) if finite else np.isnan(arr))
    if np.any(bad):
        bracket = ("[" if closed[0] else "(") + f"{low:g}, {high:g}" + ("]" if closed[1] else ")")
        allowed = f"{'finite ' if finite else ''}numbers in {bracket}"
        raise ParameterError(name, arr[bad] if arr.ndim else float(arr), allowed)
    return arr


class ConvergenceWarning(UserWarning):
    """A solver kept a best estimate it could not converge; the result says so too."""


def require_count(name: str, value: object, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (a size whose upper end bounds memory or time)."""
    value = require_int(name, value)
    if not low <= value <= high:
        raise ParameterError(name, value, f"an integer in [{low}, {high}]")
    return value
