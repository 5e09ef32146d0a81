"""Score fields in one convention, and their Jacobians by every route (THEORY 0 and E).

Contract. Every score in the library is called as ``score(x, a, D)``: the score of the noised law
of ``x = a y + sqrt(D) z`` (THEORY 0) at the ``(n, dim)`` points ``x``, an ``(n, dim)`` array.
No process is attached: the data laws of :mod:`diffphase.data.laws`, the empirical engine
(:class:`~diffphase.simulate.empirical.EmpiricalScore`), the exact fields of
:mod:`diffphase.simulate.fields` and the trained network of :mod:`diffphase.simulate.networks`
all take ``(a, D)``. A *score field* is such an object with ``dim`` and ``score``; fields that know
their Jacobian also define ``jacobian(x, a, D)`` (``(n, dim, dim)``, or one ``(dim, dim)`` matrix
that holds at every point) and name how in ``jacobian_route`` (default ``"closed-form"``;
``"autograd"`` for torch). Outputs may live on a GPU; the routes bring them to numpy.

:func:`jacobian` picks the best route available:

1. the field's own ``jacobian`` (closed form or autograd), else
2. central differences along ``k`` random orthonormal probes ``q_i``,

       J q_i ~ [s(x + h q_i) - s(x - h q_i)] / (2 h),     J ~ sum_i (J q_i) q_i^T,

   exact for fields linear in ``x`` and with an ``O(h^2)`` error otherwise; the default step is
   ``h = relative_step * sqrt(D)``, since an exact score varies on the noise scale ``sqrt(D)``.
   With ``k < dim`` probes the estimate is ``J Q Q^T``, the Jacobian restricted to the probes.

:func:`one_sided_jacobian` (forward differences, error ``O(h)``) exists only so that a test can
show its bias; :func:`jacobian` never uses it.

Edges. A score written in the time of a process, ``score(x, t)`` (a user callable, a torch network
that takes ``t``), enters through :class:`TimeScore`, which holds the process and is called as
``score(x, a, D)``; see its docstring for the exact map. :class:`CallableScore` checks a user
callable's output (shape, finiteness) and raises :class:`~diffphase.errors.ParameterError` naming
the problem.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..backend import to_numpy
from ..errors import ParameterError, require_choice, require_int, require_positive
from ..models import JACOBIAN_ROUTES
from ..process import Process

#: a ddpm step recovered from ``(a, D)`` within this distance of an integer is that integer (the
#: round trip ``k -> (a, D) -> k`` of :class:`~diffphase.process.Process` is exact to about 1e-13)
STEP_SNAP_TOL = 1e-9


@runtime_checkable
class ScoreField(Protocol):
    """A score ``s(x; a, D)`` on ``R^dim``; batched: ``(n, dim) -> (n, dim)``."""

    dim: int

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray: ...


class TimeScore:
    """A score written in the time of ``process``, ``function(x, t)``, called as ``(x, a, D)``.

    The map is exact for every ``(a, D)``. The noised law of ``a y + sqrt(D) z`` is that of the
    process at the time ``t`` with the same noise-to-signal ratio, ``tau_t = tau = D / a^2``,
    rescaled by ``c = a_t / a``; hence ``s(x; a, D) = c s_t(c x)``. On the process's own noise
    levels ``(a_t, D_t)``, as the integrators and diagnostics use them, ``c = 1`` (up to rounding;
    exactly 1 for ``ve``) and the call is ``function(x, t)``. For ``ddpm`` a step within
    :data:`STEP_SNAP_TOL` of an integer is passed as that integer, so a network indexed by step
    sees the step that ``(a, D)`` came from.

    Parameters
    ----------
    function : ``function(x, t)``, numpy or torch (only ``x * c`` and ``c * output`` are applied
        to its input and output, so autograd Jacobians come out as ``c^2 J_t(c x)``).
    process : the :class:`~diffphase.process.Process` whose time ``t`` is.
    """

    def __init__(self, function: Callable, process: Process):
        if not callable(function):
            raise ParameterError("score", function, "a callable score(x, t)")
        if not isinstance(process, Process):
            raise ParameterError("process", process, "a diffphase Process")
        self.function = function
        self.process = process

    def time_of(self, a: float, D: float) -> tuple[float, float]:
        """``(t, c)``: the process time with ``tau_t = D / a^2`` and the scale ``c = a_t / a``."""
        a, D = require_positive("a", float(a)), require_positive("D", float(D))
        t = float(self.process.time_from_tau(D / (a * a)))
        if self.process.name == "ddpm":
            step = round(t)
            if abs(t - step) <= STEP_SNAP_TOL:
                t = float(step)
        return t, float(self.process.signal_scale(t)) / a

    def __call__(self, x, a: float, D: float):
        t, scale = self.time_of(a, D)
        if scale == 1.0:
            return self.function(x, t)
        return scale * self.function(x * scale, t)


class CallableScore:
    """A user callable ``score(x, a, D) -> array`` seen as a checked :class:`ScoreField`.

    Parameters
    ----------
    function : ``function(x, a, D)`` with ``x`` of shape ``(n, dim)`` (``batched=True``) or
        ``(dim,)`` (``batched=False``, called once per point) and numpy output of the same shape.
        A callable of a process's time ``f(x, t)`` comes in as ``TimeScore(f, process)``.
    dim : ambient dimension ``d``.
    name : how errors name the callable (for example ``"--score mypkg.mod:score"``).
    """

    def __init__(self, function: Callable, dim: int, *, batched: bool = True,
                 name: str = "score"):
        if not callable(function):
            raise ParameterError(name, function, "a callable score(x, a, D) -> array")
        self.function = function
        self.dim = require_int("dim", dim, minimum=1)
        self.batched = batched
        self.name = name

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.batched:
            out = self.function(x, a, D)
        else:
            out = np.stack([np.asarray(self.function(point, a, D), dtype=float) for point in x])
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


def _values(field: ScoreField, x: np.ndarray, a: float, D: float) -> np.ndarray:
    """``field.score(x, a, D)`` as host numpy."""
    return np.asarray(to_numpy(field.score(x, a, D)), dtype=float)


def central_difference_jacobian(field: ScoreField, x: np.ndarray, a: float, D: float,
                                step: float, *, probes: np.ndarray | int | None = None,
                                rng: np.random.Generator | None = None) -> np.ndarray:
    """Central differences along orthonormal probes ``q_i``.

    ``J ~ sum_i [s(x + h q_i) - s(x - h q_i)] / (2h) q_i^T``, error ``O(h^2)``.

    Parameters
    ----------
    field : a score field; all ``2 n k`` shifted points go to it in one batched call.
    x : points, shape ``(n, dim)``.
    a, D : the noise level (``x = a y + sqrt(D) z``).
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
    values = _values(field, stacked, a, D).reshape(2, n, k, field.dim)
    directional = (values[0] - values[1]) / (2.0 * step)  # (n, k, dim): row i is J q_i
    return np.einsum("nki,jk->nij", directional, q)


def one_sided_jacobian(field: ScoreField, x: np.ndarray, a: float, D: float, step: float, *,
                       probes: np.ndarray | int | None = None,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Forward differences ``[s(x + h q_i) - s(x)]/h``: biased at ``O(h)``; never used by
    :func:`jacobian`, kept to demonstrate the bias against :func:`central_difference_jacobian`."""
    step = require_positive("step", step)
    x = _points(x, field.dim)
    q = _probe_matrix(field.dim, probes, rng)
    n, k = x.shape[0], q.shape[1]
    shifted = (x[:, None, :] + step * q.T).reshape(n * k, -1)
    values = _values(field, np.concatenate([shifted, x]), a, D)
    forward = values[: n * k].reshape(n, k, field.dim)
    base = values[n * k:]
    directional = (forward - base[:, None, :]) / step
    return np.einsum("nki,jk->nij", directional, q)


def available_route(field: ScoreField) -> str:
    """The best route ``field`` supports: its own Jacobian's route, else ``"central"``."""
    if callable(getattr(field, "jacobian", None)):
        return getattr(field, "jacobian_route", "closed-form")
    return "central"


def jacobian(field: ScoreField, x: np.ndarray, a: float, D: float, *, route: str = "auto",
             step: float | None = None, probes: np.ndarray | int | None = None,
             rng: np.random.Generator | None = None, relative_step: float = 1e-4) -> np.ndarray:
    """Jacobian of ``field`` at points ``x`` (``(n, dim)``) and noise level ``(a, D)``.

    ``route="auto"`` uses the field's closed form or autograd when it has one, else central
    differences (:func:`central_difference_jacobian`) with ``probes`` and the step ``step``
    (default ``relative_step * sqrt(D)``). Returns ``(n, dim, dim)`` numpy.
    """
    require_choice("route", route, JACOBIAN_ROUTES)
    a, D = require_positive("a", float(a)), require_positive("D", float(D))
    own = available_route(field)
    if route == "auto":
        route = own
    if route in ("closed-form", "autograd"):
        if own != route:
            raise ParameterError("route", route, f"one this field supports: {own} or central")
        x = _points(x, field.dim)
        jac = np.asarray(to_numpy(field.jacobian(x, a, D)), dtype=float)
        shape = (x.shape[0], field.dim, field.dim)
        return np.broadcast_to(jac, shape).copy() if jac.shape != shape else jac
    if step is None:
        step = require_positive("relative_step", relative_step) * float(np.sqrt(D))
    return central_difference_jacobian(field, x, a, D, step, probes=probes, rng=rng)
