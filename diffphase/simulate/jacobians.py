"""Jacobians of score fields by every route the toolkit knows (THEORY E).

Contract. A *score field* is anything with ``dim`` and ``score(x, t)`` mapping an ``(n, dim)``
array of points at time ``t`` (in the field's process convention) to an ``(n, dim)`` array.
Fields that know their Jacobian also define ``jacobian(x, t) -> (n, dim, dim)`` and say how in
``jacobian_route`` (``"closed-form"`` for exact linear fields, ``"autograd"`` for the torch
adapter). :func:`jacobian` picks the best route available:

1. the field's own ``jacobian`` (closed form or autograd), else
2. central differences along ``k`` random orthonormal probes ``q_i``,

       J q_i ~ [s(x + h q_i) - s(x - h q_i)] / (2 h),     J ~ sum_i (J q_i) q_i^T,

   exact for fields linear in ``x`` and with an ``O(h^2)`` error otherwise. With ``k < dim``
   probes the estimate is ``J Q Q^T``, the Jacobian restricted to the probed subspace.

:func:`one_sided_jacobian` (forward differences, error ``O(h)``) exists only so that a test can
show its bias; :func:`jacobian` never uses it.

User callables are wrapped by :class:`CallableScore`, which checks that the output has the
input's shape and is finite, and raises :class:`~diffphase.errors.ParameterError` naming the
problem otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ParameterError, require_choice, require_int, require_positive
from ..models import JACOBIAN_ROUTES

ROUTES = JACOBIAN_ROUTES


@runtime_checkable
class ScoreField(Protocol):
    """A score ``s(x, t)`` on ``R^dim``; batched: ``(n, dim) -> (n, dim)``."""

    dim: int

    def score(self, x: np.ndarray, t: float) -> np.ndarray: ...


class CallableScore:
    """A user callable ``score(x, t) -> array`` seen as a checked :class:`ScoreField`.

    Parameters
    ----------
    function : ``function(x, t)`` with ``x`` of shape ``(n, dim)`` (``batched=True``) or
        ``(dim,)`` (``batched=False``, called once per point) and numpy output of the same shape.
    dim : ambient dimension ``d``.
    name : how errors name the callable (for example ``"--score mypkg.mod:score"``).
    """

    def __init__(self, function: Callable, dim: int, *, batched: bool = True,
                 name: str = "score"):
        if not callable(function):
            raise ParameterError(name, function, "a callable score(x, t) -> array")
        self.function = function
        self.dim = require_int("dim", dim, minimum=1)
        self.batched = batched
        self.name = name

    def score(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.batched:
            out = self.function(x, t)
        else:
            out = np.stack([np.asarray(self.function(point, t), dtype=float) for point in x])
        return checked_output(self.name, out, x.shape)


def checked_output(name: str, output, expected_shape: tuple[int, ...]) -> np.ndarray:
    """``output`` as a float array of ``expected_shape`` with finite entries, or a clear error."""
    try:
        array = np.asarray(output, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} output", type(output).__name__,
                             "a numeric array (numpy in, numpy out)") from None
    if array.shape != tuple(expected_shape):
        raise ParameterError(f"{name} output shape", array.shape,
                             f"{tuple(expected_shape)} (the shape of its input x)")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ParameterError(f"{name} output", f"{bad} non-finite entries (NaN or inf)",
                             "finite numbers at every point")
    return array


def load_callable(path: str) -> Callable:
    """Import ``"package.module:function"`` (attribute paths with dots allowed after ``:``)."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ParameterError("--score", path, "'package.module:function'")
    module_name, attribute = path.split(":")
    if not module_name or not attribute:
        raise ParameterError("--score", path, "'package.module:function'")
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise ParameterError("--score", path,
                             f"an importable module ({type(exc).__name__}: {exc})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ParameterError("--score", path, f"a name defined in module {module_name}")
        target = getattr(target, part)
    if not callable(target):
        raise ParameterError("--score", path, "a callable score(x, t) -> array")
    return target


# --------------------------------------------------------------------------- probes
def orthonormal_probes(dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random orthonormal columns ``Q`` (Haar distributed), shape ``(dim, count)``."""
    dim = require_int("dim", dim, minimum=1)
    count = require_int("probes", count, minimum=1)
    if count > dim:
        raise ParameterError("probes", count, f"an integer in [1, {dim}] (the dimension)")
    gaussian = rng.standard_normal((dim, count))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))  # sign fix makes the law Haar, not QR-convention dependent


def _points(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ParameterError("x shape", x.shape, f"(n, {dim})")
    if not np.all(np.isfinite(x)):
        raise ParameterError("x", "non-finite entries", "finite points")
    return x


def _probe_matrix(dim: int, probes: np.ndarray | int | None,
                  rng: np.random.Generator | None) -> np.ndarray:
    if probes is None:
        probes = dim
    if isinstance(probes, (int, np.integer)):
        return orthonormal_probes(dim, int(probes), rng or np.random.default_rng())
    q = np.asarray(probes, dtype=float)
    if q.ndim != 2 or q.shape[0] != dim or q.shape[1] > dim:
        raise ParameterError("probes shape", q.shape, f"(dim={dim}, k <= {dim})")
    if not np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-10):
        raise ParameterError("probes", "columns not orthonormal", "orthonormal columns")
    return q


def central_difference_jacobian(field: ScoreField, x: np.ndarray, t: float, step: float, *,
                                probes: np.ndarray | int | None = None,
                                rng: np.random.Generator | None = None) -> np.ndarray:
    """Central differences along orthonormal probes ``q_i``.

    ``J ~ sum_i [s(x + h q_i) - s(x - h q_i)] / (2h) q_i^T``, error ``O(h^2)``.

    Parameters
    ----------
    field : a score field; all ``2 n k`` shifted points go to it in one batched call.
    x : points, shape ``(n, dim)``.
    t : time in the field's process convention.
    step : the finite-difference step ``h`` (absolute).
    probes : a ``(dim, k)`` orthonormal matrix, or a count ``k`` of random probes (default ``dim``).

    Returns
    -------
    ``(n, dim, dim)``: the Jacobian ``J`` (``k = dim``) or ``J Q Q^T`` (``k < dim``).
    """
    step = require_positive("step", step)
    x = _points(x, field.dim)
    q = _probe_matrix(field.dim, probes, rng)
    n, k = x.shape[0], q.shape[1]
    shifts = step * q.T  # (k, dim)
    stacked = np.concatenate([(x[:, None, :] + shifts).reshape(n * k, -1),
                              (x[:, None, :] - shifts).reshape(n * k, -1)])
    values = field.score(stacked, t).reshape(2, n, k, field.dim)
    directional = (values[0] - values[1]) / (2.0 * step)  # (n, k, dim): row i is J q_i
    return np.einsum("nki,jk->nij", directional, q)


def one_sided_jacobian(field: ScoreField, x: np.ndarray, t: float, step: float, *,
                       probes: np.ndarray | int | None = None,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Forward differences ``[s(x + h q_i) - s(x)]/h``: biased at ``O(h)``; never used by
    :func:`jacobian`, kept to demonstrate the bias against :func:`central_difference_jacobian`."""
    step = require_positive("step", step)
    x = _points(x, field.dim)
    q = _probe_matrix(field.dim, probes, rng)
    n, k = x.shape[0], q.shape[1]
    shifted = (x[:, None, :] + step * q.T).reshape(n * k, -1)
    values = field.score(np.concatenate([shifted, x]), t)
    forward = values[: n * k].reshape(n, k, field.dim)
    base = values[n * k:]
    directional = (forward - base[:, None, :]) / step
    return np.einsum("nki,jk->nij", directional, q)


def available_route(field: ScoreField) -> str:
    """The best route ``field`` supports: its own Jacobian's route, else ``"central"``."""
    if callable(getattr(field, "jacobian", None)):
        return getattr(field, "jacobian_route", "closed-form")
    return "central"


def jacobian(field: ScoreField, x: np.ndarray, t: float, *, route: str = "auto",
             step: float | None = None, probes: np.ndarray | int | None = None,
             rng: np.random.Generator | None = None, relative_step: float = 1e-4) -> np.ndarray:
    """Jacobian of ``field`` at points ``x`` (``(n, dim)``) by the best or the named route.

    ``route="auto"`` uses the field's closed form or autograd when it has one, else central
    differences. The default step is ``relative_step * sqrt(D_t)`` when the field knows its
    process (``field.process``), since an exact score varies on the noise scale ``sqrt(D_t)``;
    otherwise ``relative_step`` times the root-mean-square norm of the points per coordinate (at
    least ``relative_step``).
    """
    require_choice("route", route, ROUTES)
    own = available_route(field)
    if route == "auto":
        route = own
    if route in ("closed-form", "autograd"):
        if own != route:
            raise ParameterError("route", route, f"one this field supports: {own} or central")
        x = _points(x, field.dim)
        return np.asarray(field.jacobian(x, t), dtype=float)
    if step is None:
        step = default_step(field, x, t, relative_step)
    return central_difference_jacobian(field, x, t, step, probes=probes, rng=rng)


def default_step(field: ScoreField, x: np.ndarray, t: float, relative_step: float = 1e-4) -> float:
    """Finite-difference step: ``relative_step * sqrt(D_t)`` (or the points' scale, see above)."""
    require_positive("relative_step", relative_step)
    process = getattr(field, "process", None)
    if process is not None:
        return relative_step * float(np.sqrt(process.noise_variance(t)))
    scale = float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=float)))))
    return relative_step * max(scale, 1.0)
