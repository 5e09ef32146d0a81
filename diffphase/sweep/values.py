"""A command's result as the variables of one sweep cell.

Contract: :func:`flatten` turns the dict a library function returns into a flat mapping from
variable names to scalars: numbers (``float``; ``None`` becomes NaN), booleans and strings. Nested
dicts join their keys with ``_`` (``per_group`` lists of dicts and short lists of numbers get an
index: ``per_group_0_tau_c_rem_raw``, ``fixed_point_1``); ``nan_reason`` maps, conventions and
longer lists are left out (the store's attributes carry the conventions, and a long series is a
dimension of its own: sweep it). :func:`variable_kind` says how the store holds a value.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping

import numpy as np

#: lists longer than this are not split into variables
MAX_LIST = 16
#: keys never turned into variables (explanations, not values)
SKIPPED_KEYS = frozenset({"nan_reason", "conventions", "level_convention", "method",
                          "time_convention", "noise_convention", "files"})


def flatten(result: Mapping, prefix: str = "") -> dict[str, object]:
    """The scalars of ``result``, keyed by their joined names (see the module docstring)."""
    out: dict[str, object] = {}
    for key, value in result.items():
        if key in SKIPPED_KEYS:
            continue
        name = variable_name(f"{prefix}{key}")
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, (list, tuple, np.ndarray)):
            items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else value
            if len(items) > MAX_LIST:
                continue
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}_{i}_"))
                elif scalar(item) is not None:
                    out[f"{name}_{i}"] = scalar(item)
        elif scalar(value) is not None:
            out[name] = scalar(value)
    return out


def variable_name(text: str) -> str:
    """``text`` with every character but letters, digits and ``_`` replaced by ``_``
    (``predictions_d=16_tau_C`` -> ``predictions_d_16_tau_C``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", str(text))


def scalar(value: object) -> object:
    """A plain ``bool``, ``float`` or ``str`` for a scalar value (``None`` -> NaN); None for a
    value that is not a scalar."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    return None


def variable_kind(value: object) -> str:
    """``"bool"``, ``"str"`` or ``"float"``: how the store holds ``value``."""
    if isinstance(value, bool):
        return "bool"
    return "str" if isinstance(value, str) else "float"
