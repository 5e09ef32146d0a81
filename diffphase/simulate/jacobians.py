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
callable's output (shape, real dtype, finiteness) and raises
:class:`~diffphase.errors.ParameterError` naming the problem.

User code. Every call into a user's code (importing it in :func:`load_callable`, calling it in
:class:`CallableScore` and :class:`TimeScore`) goes through :func:`call_user_code`: whatever it
raises comes back as :class:`UserCodeError`, a :class:`~diffphase.errors.ParameterError` whose one
line names the callable (``--score mypkg.mod:f``), the exception's type and message, and the time
of the call when known.

Inputs. Public functions check their arguments (:func:`checked_array`, :func:`checked_points`,
:func:`checked_level`, :func:`check_field`) and raise :class:`~diffphase.errors.ParameterError`
for empty or misshapen arrays, non-finite entries, ``a <= 0`` or ``D <= 0``, never a raw numpy
error. :func:`central_difference_roundoff` estimates the rounding error of a difference step.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import warnings
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


# --------------------------------------------------------------------------- input checks
def checked_array(name: str, value, *, ndim: int | tuple[int, ...],
                  shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """``value`` as a non-empty finite float array with ``ndim`` axes (one of them when a tuple)
    and, where ``shape`` gives a size, that size; else a :class:`ParameterError` naming ``name``."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(name, type(value).__name__, "an array of real numbers") from None
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        raise ParameterError(f"{name} shape", array.shape,
                             f"an array with {' or '.join(map(str, allowed))} axes")
    if shape is not None and any(want is not None and want != got
                                 for want, got in zip(shape, array.shape, strict=False)):
        wanted = ", ".join("n" if want is None else str(want) for want in shape)
        raise ParameterError(f"{name} shape", array.shape, f"({wanted})")
    if array.size == 0:
        raise ParameterError(f"{name} shape", array.shape, "a non-empty array")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ParameterError(name, f"{bad} non-finite entries (NaN or inf)", "finite numbers")
    return array


def checked_level(a, D) -> tuple[float, float]:
    """The noise level ``(a, D)`` as finite positive floats (``x = a y + sqrt(D) z``)."""
    level = []
    for name, value in (("a", a), ("D", D)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(name, value, "a finite number > 0") from None
        level.append(require_positive(name, number))
    return level[0], level[1]


def check_field(field) -> int:
    """``field.dim`` when ``field`` is a score field (an integer ``dim >= 1`` and a callable
    ``score``); else a :class:`ParameterError`."""
    dim = getattr(field, "dim", None)
    if not callable(getattr(field, "score", None)) or dim is None:
        raise ParameterError("field", type(field).__name__,
                             "a score field: an object with dim and score(x, a, D)")
    return require_int("field dim", dim, minimum=1)


# --------------------------------------------------------------------------- user code
class UserCodeError(ParameterError):
    """User code (a ``--score`` callable, its module) raised an exception; the message names the
    callable, the exception's type and message, and where the call happened."""

    def __init__(self, name: str, exc: BaseException, where: str = ""):
        message = " ".join(str(exc).split()) or "(no message)"
        if len(message) > 240:
            message = message[:237] + "..."
        super().__init__(name, f"{type(exc).__name__}: {message}",
                         "code that runs without raising")
        self.exception = exc
        at = f" {where}" if where else ""
        self.args = (f"{name} raised {type(exc).__name__}{at}: {message}",)

    def __str__(self) -> str:
        return self.args[0]


def call_user_code(name: str, function: Callable, *args, where: str = ""):
    """``function(*args)``; any exception it raises (``SystemExit`` included, ``KeyboardInterrupt``
    not) comes back as :class:`UserCodeError` naming ``name``. A :class:`UserCodeError` from an
    inner guard passes unchanged. What it prints is kept off stdout (:func:`_quiet`)."""
    try:
        with _quiet(name):
            return function(*args)
    except UserCodeError:
        raise
    except (Exception, SystemExit) as exc:
        raise UserCodeError(name, exc, where) from exc


@contextlib.contextmanager
def _quiet(name: str):
    """Hold what user code prints off stdout (which carries the results, ``--json``); when it
    printed anything, one warning says so."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        yield
    if captured.getvalue():
        warnings.warn(f"{name} printed to stdout; that output was dropped (stdout carries the "
                      "results)", stacklevel=3)


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
    name : how errors name the function; every call goes through :func:`call_user_code`.
    """

    #: calls into ``function`` are guarded here, so a wrapper need not guard them again
    guards_user_code = True

    def __init__(self, function: Callable, process: Process, name: str = "score"):
        if not callable(function):
            raise ParameterError(name, function, "a callable score(x, t)")
        if not isinstance(process, Process):
            raise ParameterError("process", process, "a diffphase Process")
        self.function = function
        self.process = process
        self.name = name

    def time_of(self, a: float, D: float) -> tuple[float, float]:
        """``(t, c)``: the process time with ``tau_t = D / a^2`` and the scale ``c = a_t / a``."""
        a, D = checked_level(a, D)
        t = float(self.process.time_from_tau(D / (a * a)))
        if self.process.name == "ddpm":
            step = round(t)
            if abs(t - step) <= STEP_SNAP_TOL:
                t = float(step)
        return t, float(self.process.signal_scale(t)) / a

    def where(self, a: float, D: float) -> str:
        """``"at t = ..."``: the time of the level ``(a, D)``, for messages."""
        return f"at t = {self.time_of(a, D)[0]:.6g}"

    def __call__(self, x, a: float, D: float):
        t, scale = self.time_of(a, D)
        where = f"at t = {t:.6g}"
        if scale == 1.0:
            return call_user_code(self.name, self.function, x, t, where=where)
        return call_user_code(self.name, lambda: scale * self.function(x * scale, t),
                              where=where)


class CallableScore:
    """A user callable ``score(x, a, D) -> array`` seen as a checked :class:`ScoreField`.

    Parameters
    ----------
    function : ``function(x, a, D)`` with ``x`` of shape ``(n, dim)`` (``batched=True``) or
        ``(dim,)`` (``batched=False``, called once per point) and numpy output of the same shape.
        A callable of a process's time ``f(x, t)`` comes in as ``TimeScore(f, process)``.
    dim : ambient dimension ``d``.
    name : how errors name the callable (for example ``"--score mypkg.mod:score"``).

    Every call is guarded (:func:`call_user_code`) and its output checked (:func:`checked_output`).
    """

    def __init__(self, function: Callable, dim: int, *, batched: bool = True,
                 name: str = "score"):
        if not callable(function):
            raise ParameterError(name, function, "a callable score(x, a, D) -> array")
        self.function = function
        self.dim = require_int("dim", dim, minimum=1)
        self.batched = batched
        self.name = name

    def _call(self, x, a: float, D: float):
        if getattr(self.function, "guards_user_code", False):
            return self.function(x, a, D)
        return call_user_code(self.name, self.function, x, a, D)

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x = checked_points(x, self.dim)
        a, D = checked_level(a, D)
        def where() -> str:
            if isinstance(self.function, TimeScore):
                return self.function.where(a, D)
            return f"at a = {a:.6g}, D = {D:.6g}"

        if self.batched:
            return checked_output(self.name, self._call(x, a, D), x.shape, where)
        return np.stack([checked_output(self.name, self._call(point, a, D), point.shape, where)
                         for point in x])


def checked_output(name: str, output, expected_shape: tuple[int, ...],
                   where: str | Callable[[], str] = "") -> np.ndarray:
    """``output`` as a float array of ``expected_shape`` with finite real entries, or a clear
    error naming ``name`` (a non-numeric output, a complex or object dtype, a wrong shape, NaN)
    and ``where`` the call happened (``"at t = 0.5"``, or a function giving it, called only
    for an error)."""

    def at() -> str:
        text = where() if callable(where) else where
        return f" {text}" if text else ""

    try:
        array = np.asarray(output)
    except Exception:  # an object whose conversion itself fails
        array = None
    if array is None or array.dtype.kind not in "iuf":
        kind = type(output).__name__
        if isinstance(output, np.ndarray) or (array is not None and array.ndim > 0):
            kind += f" of dtype {array.dtype}"
        raise ParameterError(f"{name} output", kind + at(),
                             "a real numeric array (numpy in, numpy out)")
    array = array.astype(float, copy=False)
    if array.shape != tuple(expected_shape):
        raise ParameterError(f"{name} output shape", array.shape,
                             f"{tuple(expected_shape)} (the shape of its input x){at()}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ParameterError(f"{name} output", f"{bad} non-finite entries (NaN or inf){at()}",
                             "finite numbers at every point")
    return array


def load_callable(path: str) -> Callable:
    """Import ``"package.module:function"`` (attribute paths with dots allowed after ``:``).

    Any failure of the user's module (a syntax error, an exception at import, a failing
    attribute lookup) is a :class:`ParameterError` naming ``--score``, the exception's type and
    its message."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ParameterError("--score", path, "'package.module:function'")
    module_name, attribute = path.split(":")
    if not module_name.strip() or not attribute.strip():
        raise ParameterError("--score", path, "'package.module:function'")
    try:
        with _quiet("--score"):
            target = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ParameterError("--score", path, f"an importable module ({reason})") from None
    for part in attribute.split("."):
        try:
            found = hasattr(target, part)
        except (Exception, SystemExit):
            found = False
        if not found:
            raise ParameterError("--score", path, f"a name defined in module {module_name}")
        target = call_user_code(f"--score {path}", getattr, target, part,
                                where="when looked up")
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
    if not isinstance(rng, np.random.Generator):
        raise ParameterError("rng", type(rng).__name__, "a numpy.random.Generator")
    gaussian = rng.standard_normal((dim, count))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))  # sign fix makes the law Haar, not QR-convention dependent


def checked_points(x: np.ndarray, dim: int) -> np.ndarray:
    """Points ``x`` as a finite ``(n, dim)`` float array with ``n >= 1`` (one ``(dim,)`` point
    becomes ``(1, dim)``)."""
    try:
        x = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError("x", type(x).__name__, f"an (n, {dim}) array of numbers") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ParameterError("x shape", x.shape, f"(n, {dim}) with n >= 1")
    if not np.all(np.isfinite(x)):
        raise ParameterError("x", "non-finite entries", "finite points")
    return x


def _probe_matrix(dim: int, probes: np.ndarray | int | None,
                  rng: np.random.Generator | None) -> np.ndarray:
    if probes is None:
        probes = dim
    if isinstance(probes, (int, np.integer)) and not isinstance(probes, bool):
        return orthonormal_probes(dim, int(probes), rng or np.random.default_rng())
    q = checked_array("probes", probes, ndim=2)
    if q.shape[0] != dim or q.shape[1] > dim:
        raise ParameterError("probes shape", q.shape, f"(dim={dim}, k <= {dim})")
    if not np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-10):
        raise ParameterError("probes", "columns not orthonormal", "orthonormal columns")
    return q


def _values(field: ScoreField, x: np.ndarray, a: float, D: float) -> np.ndarray:
    """``field.score(x, a, D)`` as host numpy."""
    return np.asarray(to_numpy(field.score(x, a, D)), dtype=float)


def _difference_setup(field, x, a, D, step, probes, rng):
    """Checked ``(dim, a, D, step, x, q)`` of a finite-difference Jacobian (``q``: the probes)."""
    dim = check_field(field)
    a, D = checked_level(a, D)
    step = require_positive("step", step)
    x = checked_points(x, dim)
    return dim, a, D, step, x, _probe_matrix(dim, probes, rng)


def central_difference_jacobian(field: ScoreField, x: np.ndarray, a: float, D: float,
                                step: float, *, probes: np.ndarray | int | None = None,
                                rng: np.random.Generator | None = None) -> np.ndarray:
    """Central differences along orthonormal probes ``q_i``.

    ``J ~ sum_i [s(x + h q_i) - s(x - h q_i)] / (2h) q_i^T``, error ``O(h^2)``.

    Parameters
    ----------
    field : a score field; the ``2 n k`` shifted points go to it in batched calls of
        :func:`rows_per_call` points (one call when they fit the cache model).
    x : points, shape ``(n, dim)``.
    a, D : the noise level (``x = a y + sqrt(D) z``).
    step : the finite-difference step ``h`` (absolute).
    probes : a ``(dim, k)`` orthonormal matrix, or a count ``k`` of random probes (default ``dim``).

    Returns
    -------
    ``(n, dim, dim)``: the Jacobian ``J`` (``k = dim``) or ``J Q Q^T`` (``k < dim``).
    """
    dim, a, D, step, x, q = _difference_setup(field, x, a, D, step, probes, rng)
    n, k = x.shape[0], q.shape[1]
    shifts = step * q.T[:, None, :]  # (k, 1, dim)
    # probe-major rows: a block of n rows is one probe's shift of every point, the baseline's
    # own call, so that the cache model's choice of n rows a call costs what that loop costs
    stacked = np.concatenate([(x + shifts).reshape(k * n, -1), (x - shifts).reshape(k * n, -1)])
    values = _values_in_blocks(field, stacked, a, D, n).reshape(2, k, n, dim)
    directional = (values[0] - values[1]) / (2.0 * step)  # (k, n, dim): row i is J q_i
    return np.matmul(directional.transpose(1, 2, 0), q.T)  # sum_i (J q_i) q_i^T


#: bytes of a query's temporaries that should stay in a core's cache (half of a 1 MiB L2)
CACHE_BUDGET_BYTES = 1 << 19


def query_bytes(field: ScoreField) -> int:
    """Bytes of temporaries one query point costs inside ``field.score`` (the cache model of
    :func:`rows_per_call`): ``field.query_bytes_per_point`` when the field states it, else for a
    field over ``N`` training points (``field.points.n_points``) two float rows of length ``N``
    (log-weights and weights), else two float rows of length ``dim``."""
    stated = getattr(field, "query_bytes_per_point", None)
    if stated is not None:
        return max(1, int(stated))
    n_points = getattr(getattr(field, "points", None), "n_points", None)
    if isinstance(n_points, (int, np.integer)):
        return 16 * int(n_points)
    return 16 * int(field.dim)


def rows_per_call(field: ScoreField, total: int, least: int = 8) -> int:
    """Points per batched score call: all of them on a GPU or when they fit the cache budget,
    else as many as keep one call's temporaries within :data:`CACHE_BUDGET_BYTES` (a batch that
    spills the cache costs several times more per point than the same points in blocks), and
    never fewer than ``least`` (per-call overhead)."""
    if getattr(field, "device", "cpu") not in ("cpu", None):
        return total
    return int(min(total, max(least, CACHE_BUDGET_BYTES // query_bytes(field))))


def _values_in_blocks(field: ScoreField, x: np.ndarray, a: float, D: float,
                      least: int) -> np.ndarray:
    """``field.score`` of the rows of ``x`` in blocks of :func:`rows_per_call` rows (at least
    ``least``: the points of one probe, so there are never more calls than probes)."""
    rows = rows_per_call(field, x.shape[0], least)
    if rows >= x.shape[0]:
        return _values(field, x, a, D)
    return np.concatenate([_values(field, x[start:start + rows], a, D)
                           for start in range(0, x.shape[0], rows)])


def one_sided_jacobian(field: ScoreField, x: np.ndarray, a: float, D: float, step: float, *,
                       probes: np.ndarray | int | None = None,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Forward differences ``[s(x + h q_i) - s(x)]/h``: biased at ``O(h)``; never used by
    :func:`jacobian`, kept to demonstrate the bias against :func:`central_difference_jacobian`."""
    dim, a, D, step, x, q = _difference_setup(field, x, a, D, step, probes, rng)
    n, k = x.shape[0], q.shape[1]
    shifted = (x[:, None, :] + step * q.T).reshape(n * k, -1)
    values = _values(field, np.concatenate([shifted, x]), a, D)
    forward = values[: n * k].reshape(n, k, dim)
    base = values[n * k:]
    directional = (forward - base[:, None, :]) / step
    return np.einsum("nki,jk->nij", directional, q)


def central_difference_roundoff(x: np.ndarray, step: float) -> float:
    """Relative rounding error of a central difference of step ``step`` at the points ``x``:
    ``eps |x| / h`` (largest over the points), the error from the rounding of ``x + h q`` and of
    the score values, relative to the Jacobian (THEORY E; the truncation error is ``O(h^2)``)."""
    size = float(np.max(np.linalg.norm(np.asarray(x, dtype=float), axis=-1)))
    return float(np.finfo(float).eps * size / float(step)) if math.isfinite(size) else math.inf


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
    dim = check_field(field)
    require_choice("route", route, JACOBIAN_ROUTES)
    a, D = checked_level(a, D)
    own = available_route(field)
    if route == "auto":
        route = own
    if route in ("closed-form", "autograd"):
        if own != route:
            raise ParameterError("route", route, f"one this field supports: {own} or central")
        x = checked_points(x, dim)
        jac = np.asarray(to_numpy(field.jacobian(x, a, D)), dtype=float)
        shape = (x.shape[0], dim, dim)
        if jac.shape not in (shape, shape[1:]):
            raise ParameterError("field jacobian shape", jac.shape, f"{shape} or {shape[1:]}")
        return np.broadcast_to(jac, shape).copy() if jac.shape != shape else jac
    if step is None:
        step = require_positive("relative_step", relative_step) * math.sqrt(D)
    return central_difference_jacobian(field, x, a, D, step, probes=probes, rng=rng)
