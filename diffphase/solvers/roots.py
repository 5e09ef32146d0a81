"""Batched real root finding with per-point convergence flags (DESIGN.md, "The pipeline").

:func:`bracketed_root` solves ``f(x) = 0`` for many independent problems at once, each with its
own bracket ``[lo, hi]`` (``f(lo)`` and ``f(hi)`` of opposite signs), by a safeguarded
Illinois (regula falsi) / bisection iteration vectorized over numpy arrays. ``f`` takes and returns
arrays of the bracket's shape (a compiled numba ufunc, a numpy expression). Nothing is silent: the
result carries ``converged`` and ``iterations`` per point and a count of failures, and points whose
bracket does not change sign are flagged, not guessed. Brackets with NaN ends, negative or NaN
tolerances and ``maxiter < 1`` are refused with a :class:`~diffphase.errors.ParameterError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_array, require_int


@dataclass
class RootResult:
    """``root`` (NaN only where ``converged`` is False), per-point ``iterations`` and flags."""

    root: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray

    @property
    def n_failed(self) -> int:
        return int(np.size(self.converged) - np.count_nonzero(self.converged))

    def summary(self) -> dict:
        return {
            "points": int(np.size(self.converged)),
            "failed": self.n_failed,
            "max_iterations": int(np.max(self.iterations, initial=0)),
        }


def bracketed_root(
    f: Callable[[np.ndarray], np.ndarray],
    lo,
    hi,
    *,
    xtol: float = 1e-13,
    rtol: float = 4e-16,
    maxiter: int = 200,
) -> RootResult:
    """Roots of ``f`` inside ``[lo, hi]``, elementwise.

    Converged means the bracket is narrower than ``xtol + rtol*|x|`` or ``f(x) == 0`` exactly.
    Points without a sign change, or where ``f`` is not finite at an end (``+-inf`` ends are
    allowed), are returned with ``converged=False`` and ``root=NaN``. ``lo``, ``hi`` (any
    broadcastable shapes, empty allowed) must not be NaN; ``xtol``, ``rtol`` finite ``>= 0``,
    ``maxiter >= 1``; ``f`` must return an array broadcastable with the bracket.
    """
    a0 = require_array("lo", lo, finite=False)
    b0 = require_array("hi", hi, finite=False)
    require_array("xtol", xtol, low=0)
    require_array("rtol", rtol, low=0)
    maxiter = require_int("maxiter", maxiter, minimum=1)
    try:
        bracket = np.broadcast_shapes(a0.shape, b0.shape)
    except ValueError:
        raise ParameterError("hi", f"shape {b0.shape}",
                             f"broadcastable with lo of shape {a0.shape}") from None
    with np.errstate(all="ignore"):
        fa = np.asarray(f(np.broadcast_to(a0, bracket)), dtype=float)
    try:
        shape = np.broadcast_shapes(bracket, fa.shape)
    except ValueError:
        raise ParameterError("f", f"output shape {fa.shape}",
                             f"broadcastable with the bracket's shape {bracket}") from None
    a, b = np.broadcast_to(a0, shape).copy(), np.broadcast_to(b0, shape).copy()
    fa = np.broadcast_to(fa, shape).copy()
    with np.errstate(all="ignore"):
        fb = np.broadcast_to(np.asarray(f(b), dtype=float), shape).copy()
    valid = np.isfinite(fa) & np.isfinite(fb) & (np.sign(fa) * np.sign(fb) <= 0)
    done = valid & ((fa == 0) | (fb == 0))
    root = np.where(fa == 0, a, b)
    iterations = np.zeros(shape, dtype=np.int64)
    kept = np.zeros(shape, dtype=np.int8)  # Illinois: which end was kept at the last step
    active = valid & ~done
    for it in range(1, maxiter + 1):
        if not active.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            x = b - fb * (b - a) / (fb - fa)
        lo_, hi_ = np.minimum(a, b), np.maximum(a, b)
        bisect = ~np.isfinite(x) | (x <= lo_) | (x >= hi_) | (it % 4 == 0)
        x = np.where(bisect, 0.5 * (a + b), x)
        x = np.where(active, x, root)  # f is evaluated everywhere; inactive points sit still
        with np.errstate(all="ignore"):
            fx = np.asarray(f(x), dtype=float)
        iterations[active] = it
        same_as_b = np.sign(fx) == np.sign(fb)
        upd = active
        # f(x) has b's sign: the root is in [a, x]; a is kept (down-weight fa if kept twice)
        new_fa = np.where(same_as_b, np.where(kept == 1, fa / 2, fa), fb)
        new_a = np.where(same_as_b, a, b)
        new_b, new_fb = x, fx
        kept = np.where(upd, np.where(same_as_b, 1, -1), kept).astype(np.int8)
        a = np.where(upd, new_a, a)
        fa = np.where(upd, new_fa, fa)
        b = np.where(upd, new_b, b)
        fb = np.where(upd, new_fb, fb)
        width = np.abs(b - a)
        hit = upd & ((fx == 0) | (width <= xtol + rtol * np.abs(x)))
        root = np.where(upd, x, root)
        done |= hit
        active &= ~hit
    root = np.where(done, root, np.nan)
    return RootResult(root=root, converged=done, iterations=iterations)
