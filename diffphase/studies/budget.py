"""Size budgets: a job whose estimated memory or run time is too large is refused before it starts.

Contract: each study module estimates, next to the computation it bounds, the peak memory (bytes
beyond what the process holds before the job) and the run time (seconds on one core of an
ordinary CPU) of a job from its arguments alone, as a list of :class:`CostTerm` (functions named
``*_cost``). :func:`check_cost` adds the terms up (the memory of the terms marked ``stage``, which
run one after the other and free their arrays, counts once, as the largest of them) and compares
the totals with the budgets:
``max_memory`` (default :func:`default_memory_budget`: half the physical memory, and at most half
of what an address-space limit leaves free) and :data:`MAX_SECONDS` (a day: only obviously huge
jobs are refused for time). A refusal is a :class:`~diffphase.errors.ParameterError` naming the
argument behind the largest term, with the estimate and the budget, so the command line reports
it under the option's spelling (:func:`~diffphase.commands.common.option_names`).

Estimates are upper bounds of the measured peaks within a small factor (tests measure them on
small cases with :mod:`tracemalloc` and scale); they are computed in floating point, so that
absurd sizes (``--points 1e30``) give a large number, never an overflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..backend import default_memory_budget
from ..errors import ParameterError

#: run time (seconds) above which a job is refused as obviously too long
MAX_SECONDS = 86_400.0
@dataclass(frozen=True)
class CostTerm:
    """One part of a job: ``memory`` bytes held at the peak and ``seconds`` of work, set mostly
    by the argument ``name`` (whose value is ``value``); ``what`` says what it is. A ``stage``
    holds its memory only while it runs (one stage at a time)."""

    what: str
    name: str
    value: object
    memory: float
    seconds: float
    stage: bool = False


def format_bytes(size: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``, ``1e+30 bytes``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and (unit != "TiB" or size < 2**60):
            return f"{size / scale:.3g} {unit}"
    return f"{size:.3g} bytes" if size >= 2**60 else f"{size:.0f} bytes"


def format_seconds(seconds: float) -> str:
    """``45 seconds``, ``12 minutes``, ``3.2 hours``, ``4.1e+03 days`` (words, never a bare
    letter that could read as an option)."""
    if seconds < 120:
        return f"{seconds:.3g} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.3g} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} hours"
    return f"{seconds / 86400:.3g} days"


def total(terms: Sequence[CostTerm]) -> tuple[float, float]:
    """``(bytes, seconds)`` of all the terms: the memory held throughout plus that of the
    largest stage, and all the seconds."""
    held = sum(float(t.memory) for t in terms if not t.stage)
    stages = max((float(t.memory) for t in terms if t.stage), default=0.0)
    return float(held + stages), float(sum(float(t.seconds) for t in terms))


def check_cost(terms: Sequence[CostTerm], max_memory: float | None = None,
               max_seconds: float = MAX_SECONDS) -> tuple[float, float]:
    """Refuse a job whose estimated memory exceeds ``max_memory`` (bytes; default
    :func:`default_memory_budget`) or whose run time exceeds ``max_seconds``; return the
    estimated ``(bytes, seconds)``. The error names the argument of the largest term."""
    budget = default_memory_budget() if max_memory is None else float(max_memory)
    memory, seconds = total(terms)
    for kind, amount, limit in (("memory", memory, budget), ("seconds", seconds, max_seconds)):
        if not amount > limit:  # a NaN estimate is a bug of the estimate, not of the input
            continue
        term = max(terms, key=lambda t: float(getattr(t, kind)))
        if kind == "memory":
            need = (f"a job within the memory budget: this one needs about "
                    f"{format_bytes(amount)}, mostly for {term.what}, and max_memory is "
                    f"{format_bytes(limit)}")
        else:
            need = (f"a job of at most {format_seconds(limit)}: this one would run about "
                    f"{format_seconds(amount)}, mostly for {term.what}")
        raise ParameterError(term.name, term.value, need)
    return memory, seconds


def product(*factors: float) -> float:
    """The product of sizes in floating point (never an integer overflow); ``inf`` for
    non-finite factors."""
    out = 1.0
    for factor in factors:
        try:
            out *= float(factor)
        except OverflowError:  # an integer beyond the float range
            out *= math.inf
    return out if math.isfinite(out) else math.inf
