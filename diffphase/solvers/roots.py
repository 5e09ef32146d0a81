"""Batched real root finding with per-point convergence flags (DESIGN.md, "The pipeline").

:func:`bracketed_root` solves ``f(x) = 0`` for many independent problems at once, each with its
own bracket ``[lo, hi]`` (``f(lo)`` and ``f(hi)`` of opposite signs), by Chandrupatla's method
(inverse quadratic interpolation where the last three points make it safe, bisection otherwise,
steps kept at least half a tolerance inside the bracket) vectorized over numpy arrays. ``f`` takes
and returns arrays of the bracket's shape (a compiled numba ufunc, a numpy expression).

Per-point data can be passed as ``args`` (arrays whose leading axes are the bracket's shape, as
``f(x, *args)``): then only the points still iterating are evaluated, on compressed copies of
their data, and the cost of an iteration falls with the number of active points. Without
``args`` ``f`` is called on full-shape arrays (converged points sit still).

Nothing is silent: the result carries ``converged`` and ``iterations`` per point and a count of
failures, and points whose bracket does not change sign are flagged, not guessed. Brackets with
NaN ends, negative or NaN tolerances and ``maxiter < 1`` are refused with a
:class:`~diffphase.errors.ParameterError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_array, require_int

_EPS = float(np.finfo(float).eps)


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


@dataclass
class _Brackets:
    """Compressed state of the active points: ``x1`` the newest point, ``x2`` the other end of
    the bracket, ``x3`` the discarded end (Chandrupatla's notation), ``t`` the next step."""

    index: np.ndarray
    x1: np.ndarray
    f1: np.ndarray
    x2: np.ndarray
    f2: np.ndarray
    x3: np.ndarray
    f3: np.ndarray
    t: np.ndarray

    def keep(self, mask: np.ndarray) -> _Brackets:
        return _Brackets(*(getattr(self, name)[mask] for name in self.__dataclass_fields__))


def _scalar_tolerance(name: str, value) -> float:
    """A tolerance: one finite number ``>= 0``."""
    array = require_array(name, value, low=0)
    if array.size != 1:
        raise ParameterError(name, value, "one finite number >= 0")
    return float(array.reshape(()))


def bracketed_root(
    f: Callable[..., np.ndarray],
    lo,
    hi,
    *,
    xtol: float = 1e-13,
    rtol: float = 4e-16,
    maxiter: int = 200,
    args: Sequence = (),
) -> RootResult:
    """Roots of ``f`` inside ``[lo, hi]``, elementwise.

    Converged means the bracket is narrower than ``xtol + rtol*|x|`` (never asked narrower than
    two units in the last place of ``x``) or ``f(x) == 0`` exactly. Points without a sign change,
    or where ``f`` is not finite at an end (``+-inf`` ends are allowed), are returned with
    ``converged=False`` and ``root=NaN``. ``lo``, ``hi`` (any broadcastable shapes, empty
    allowed) must not be NaN; ``xtol``, ``rtol`` finite ``>= 0``, ``maxiter >= 1``; ``f`` must
    return an array broadcastable with the bracket. ``args``: per-point arrays whose leading
    axes are the bracket's shape; ``f(x, *args)`` is then called on the active points only.
    """
    a0 = require_array("lo", lo, finite=False)
    b0 = require_array("hi", hi, finite=False)
    xtol, rtol = (_scalar_tolerance(name, value) for name, value in (("xtol", xtol),
                                                                       ("rtol", rtol)))
    maxiter = require_int("maxiter", maxiter, minimum=1)
    try:
        bracket = np.broadcast_shapes(a0.shape, b0.shape)
    except ValueError:
        raise ParameterError("hi", f"shape {b0.shape}",
                             f"broadcastable with lo of shape {a0.shape}") from None
    evaluate, shape = _evaluator(f, args, np.broadcast_to(a0, bracket))
    size = int(np.prod(shape))
    a = np.broadcast_to(a0, shape).ravel().astype(float)
    b = np.broadcast_to(b0, shape).ravel().astype(float)
    everything = np.arange(size)
    fa, fb = evaluate(a, everything), evaluate(b, everything)
    root, done, iterations = _solve(evaluate, a, fa, b, fb, xtol, rtol, maxiter)
    root = np.where(done, root, np.nan)
    return RootResult(root.reshape(shape), done.reshape(shape), iterations.reshape(shape))


class _CompressedArgs:
    """``f(x, *args)`` on a shrinking set of points: the data of the points still iterating are
    copied into compact arrays only when fewer than half of the copied points remain active (in
    between, finished points are evaluated again at their last ``x``, which costs less)."""

    def __init__(self, f, flat_args: list[np.ndarray], size: int):
        self.f, self.args = f, flat_args
        self.members = size
        self.position = np.arange(size)  # flat index -> row of the compact arrays
        self.x = np.zeros(size)

    def __call__(self, x: np.ndarray, index: np.ndarray) -> np.ndarray:
        if index.size * 2 < self.members:
            rows = self.position[index]
            self.args = [arg[rows] for arg in self.args]
            self.x = self.x[rows]
            self.members = index.size
            self.position[index] = np.arange(index.size)
        positions = self.position[index]
        self.x[positions] = x
        with np.errstate(all="ignore"):
            values = np.asarray(self.f(self.x, *self.args), dtype=float).ravel()
        return values[positions]


def _evaluator(f, args, a_full: np.ndarray):
    """``(evaluate(x, index), shape)``: ``f`` at the flat points ``index`` (sorted) of the
    problem."""
    if args:
        data = [np.asarray(arg) for arg in args]
        bracket = a_full.shape
        for position, arg in enumerate(data):
            if arg.shape[:len(bracket)] != bracket:
                raise ParameterError(f"args[{position}]", f"shape {arg.shape}",
                                     f"leading axes equal to the bracket's shape {bracket}")
        flat = [np.ascontiguousarray(arg.reshape((a_full.size,) + arg.shape[len(bracket):]))
                for arg in data]
        return _CompressedArgs(f, flat, a_full.size), bracket
    with np.errstate(all="ignore"):
        fa = np.asarray(f(a_full), dtype=float)
    try:
        shape = np.broadcast_shapes(a_full.shape, fa.shape)
    except ValueError:
        raise ParameterError("f", f"output shape {fa.shape}",
                             f"broadcastable with the bracket's shape {a_full.shape}") from None
    scratch = np.broadcast_to(a_full, shape).ravel().astype(float)

    def evaluate(x, index):
        scratch[index] = x
        with np.errstate(all="ignore"):
            values = np.asarray(f(scratch.reshape(shape)), dtype=float)
        return np.broadcast_to(values, shape).ravel()[index]

    return evaluate, shape


def _solve(evaluate, a, fa, b, fb, xtol, rtol, maxiter):
    """Chandrupatla iterations on the flat problem; returns ``(root, converged, iterations)``."""
    size = a.size
    valid = np.isfinite(fa) & np.isfinite(fb) & (np.sign(fa) * np.sign(fb) <= 0)
    done = valid & ((fa == 0) | (fb == 0))
    root = np.where(fa == 0, a, b)
    iterations = np.zeros(size, dtype=np.int64)
    active = valid & ~done
    state = _Brackets(np.flatnonzero(active), b[active], fb[active], a[active], fa[active],
                      a[active], fa[active], np.empty(0))
    state.t = _secant_step(state.f1, state.f2)
    for it in range(1, maxiter + 1):
        if state.index.size == 0:
            break
        xt = state.x1 + state.t * (state.x2 - state.x1)
        xt = np.where(np.isfinite(xt), xt, 0.5 * (state.x1 + state.x2))
        ft = evaluate(xt, state.index)
        iterations[state.index] = it
        _advance(state, xt, ft)
        best_is_1 = np.abs(state.f1) < np.abs(state.f2)
        xm = np.where(best_is_1, state.x1, state.x2)
        fm = np.where(best_is_1, state.f1, state.f2)
        width = np.abs(state.x2 - state.x1)
        tol = np.maximum(xtol + rtol * np.abs(xm), 4 * _EPS * np.abs(xm))
        finished = (fm == 0) | (width <= tol) | np.isnan(ft)
        if finished.any():
            good = finished & ~np.isnan(ft)
            root[state.index[good]] = xm[good]
            done[state.index[good]] = True
            state, tol, width = state.keep(~finished), tol[~finished], width[~finished]
        state.t = _next_step(state, 0.5 * tol / width)
    return root, done, iterations


def _advance(state: _Brackets, xt, ft) -> None:
    """Replace an end by ``xt``: the end of ``f1``'s sign moves to ``x3`` (in place)."""
    same = np.sign(ft) == np.sign(state.f1)
    state.x3 = np.where(same, state.x1, state.x2)
    state.f3 = np.where(same, state.f1, state.f2)
    state.x2 = np.where(same, state.x2, state.x1)
    state.f2 = np.where(same, state.f2, state.f1)
    state.x1, state.f1 = xt, ft


def _secant_step(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """First step: the secant (regula falsi) fraction ``f1 / (f1 - f2)`` where it lies well inside
    the bracket, else 1/2 (an infinite end value, a secant hugging an end)."""
    with np.errstate(all="ignore"):
        t = f1 / (f1 - f2)
    return np.where(np.isfinite(t) & (t > 0.01) & (t < 0.99), t, 0.5)


def _next_step(state: _Brackets, least: np.ndarray) -> np.ndarray:
    """Chandrupatla's fraction ``t`` of the way from ``x1`` to ``x2``: inverse quadratic
    interpolation where ``phi^2 < xi`` and ``(1 - phi)^2 < 1 - xi``, else 1/2; clipped to
    ``[least, 1 - least]`` so every step moves at least half a tolerance."""
    x1, f1, x2, f2, x3, f3 = state.x1, state.f1, state.x2, state.f2, state.x3, state.f3
    with np.errstate(all="ignore"):
        xi = (x1 - x2) / (x3 - x2)
        phi = (f1 - f2) / (f3 - f2)
        quadratic = (f1 / (f2 - f1) * f3 / (f2 - f3)
                     + (x3 - x1) / (x2 - x1) * f1 / (f3 - f1) * f2 / (f3 - f2))
        use = (phi * phi < xi) & ((1 - phi) * (1 - phi) < 1 - xi) & np.isfinite(quadratic)
    t = np.where(use, quadratic, 0.5)
    least = np.minimum(least, 0.5)
    return np.clip(t, least, 1 - least)
