"""Flags beside non-finite values in the tables and summaries the commands write.

Contract: no output holds a NaN or an infinity without a flag beside it that says why.
:func:`flag_nonfinite_columns` adds a ``nan_reason`` column to tidy columns when some cell of a
numeric column is not finite (per row: the columns undefined there and why; empty where all are
finite); :func:`flag_nonfinite_entries` adds a ``nan_reason`` entry to a summary dict when some
value (or an entry of a list value) is not finite or ``None`` (the undefined keys and why), and
:func:`flag_summary` does so in every dict of a nested summary. Tables without such values are
returned unchanged, so ordinary outputs keep their columns and keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: name of the flag column and entry
FLAG = "nan_reason"


def _nonfinite(values) -> np.ndarray | None:
    """Mask of the non-finite cells of a numeric column (None for a non-numeric one)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":
        return ~np.isfinite(arr)
    if arr.dtype.kind == "O":
        return np.array([isinstance(v, (float, np.floating)) and not math.isfinite(v)
                         for v in arr.ravel()], dtype=bool).reshape(arr.shape)
    return None


def flag_nonfinite_columns(columns: Mapping[str, Sequence],
                           reasons: Mapping[str, str | Sequence[str]] | None = None
                           ) -> dict[str, Sequence]:
    """``columns`` with a ``nan_reason`` column when some numeric cell is not finite.

    ``reasons`` maps a column to why it can be undefined: one text for the whole column or one
    per row (a column not listed is "not finite"). A row's flag lists ``column: reason`` for
    each of its non-finite cells, separated by a semicolon and a space; it is empty where the
    row is finite.
    """
    reasons = dict(reasons or {})
    masks = {key: m for key, values in columns.items() if key != FLAG
             for m in [_nonfinite(values)] if m is not None and m.any()}
    if not masks:
        return dict(columns)
    size = len(next(iter(masks.values())))
    flags = []
    for row in range(size):
        parts = []
        for key, mask in masks.items():
            if mask[row]:
                why = reasons.get(key, "not finite")
                why = why if isinstance(why, str) else str(why[row])
                parts.append(f"{key}: {why}")
        flags.append("; ".join(parts))
    return {**columns, FLAG: flags}


def _undefined(value) -> bool:
    """A non-finite number or ``None``, or a list/array holding one."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v))
                   for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.any(~np.isfinite(value)))
    return False


def flag_nonfinite_entries(summary: dict, reasons: Mapping[str, str] | None = None) -> dict:
    """``summary`` with a ``nan_reason`` entry (key -> why) when some value is a non-finite
    number or ``None`` (or a list holding one); ``reasons`` says why per key (a key not listed
    is "not finite")."""
    reasons = dict(reasons or {})
    undefined = {key: reasons.get(key, "not finite") for key, value in summary.items()
                 if key != FLAG and _undefined(value)}
    if not undefined:
        return summary
    return {**summary, FLAG: {**summary.get(FLAG, {}), **undefined}}


def flag_summary(node, reasons: Mapping[str, str] | None = None):
    """:func:`flag_nonfinite_entries` in every dict of a nested summary (dicts and lists)."""
    if isinstance(node, Mapping):
        inner = {key: flag_summary(value, reasons) for key, value in node.items()}
        return flag_nonfinite_entries(inner, reasons)
    if isinstance(node, list):
        return [flag_summary(value, reasons) for value in node]
    return node
