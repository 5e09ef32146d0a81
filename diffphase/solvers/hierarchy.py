"""Mean-field solvers for the random hierarchy model (THEORY C, "Mean-field map").

Contract:

* :func:`mean_field_levels` iterates the compiled map ``F`` (from
  :func:`diffphase.theory.hierarchy.mean_field_map`, printed by :mod:`diffphase.solvers.codegen`
  into a cached numba module) from the leaves ``b_L = 1 - eps + eps/v`` (the compiled
  :func:`~diffphase.theory.hierarchy.leaf_belief`) to the root on a grid of ``eps``; it returns
  the belief on the true value at every level (level 0 the root, ``L`` the leaves).
* :func:`critical_point` and :func:`critical_point_large_v` return ``eps*``, the slope
  ``lambda = F'(b_u)``, ``nu = ln s / ln lambda`` and the regime, for one parameter point;
  :func:`critical_grid_large_v` broadcasts over grids of ``(f, s)``. The unstable fixed point is
  the root in the open interval of the symbolic reduced polynomial (trivial roots divided out),
  found with ``numpy.roots`` and explicit branch selection; ``eps*`` and ``nu`` are the compiled
  :func:`~diffphase.theory.hierarchy.noise_of_fixed_point` and
  :func:`~diffphase.theory.hierarchy.correlation_exponent` there.
* :func:`collapse_variable` is the compiled scaling variable ``(eps - eps*) lambda^L``.

Every generated module is loaded through :func:`~diffphase.solvers.codegen.compile_module`: a
warm process reads it without importing sympy or building the expressions (an edit to the
theory or to this file rebuilds them).

Ranges: ``2 <= s <= MAX_BRANCHING`` (the fixed-point polynomial of degree ``s - 1`` is derived per
``s``), ``v**s <= 1e300`` for the finite-``v`` map (the large-``v`` map beyond), ``f >= 1e-150``
for the large-``v`` map, ``L <= MAX_DEPTH``; outside them a
:class:`~diffphase.errors.ParameterError` states the range.

Regimes: ``transition`` (``0 < eps* < 1``), ``lost`` (``F'(1) > 1``: any noise destroys the class,
``eps* = 0``), ``kept`` (``F'(1/v) > 1``: no noise does, ``eps* = 1``), ``partial`` (both trivial
fixed points unstable; a stable interior fixed point, ``eps*`` undefined).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import ParameterError, as_float_array, require_array, require_in_range, require_int
from ..models import REGIMES as MODEL_REGIMES
from .codegen import ScalarKernel, Template, compile_module

REGIMES = MODEL_REGIMES


def levels_batch(eps, v, m, s, n_root, depth):  # pragma: no cover - numba template
    """Beliefs at every level for each ``eps`` (the loop of :func:`mean_field_levels`), with
    ``leaf_belief`` and ``mean_field_map`` the kernels compiled next to it."""
    out = np.empty((eps.shape[0], depth + 1))
    for i in range(eps.shape[0]):
        belief = leaf_belief(eps[i], v)  # noqa: F821
        out[i, depth] = belief
        for level in range(depth - 1, -1, -1):
            parents = n_root if level == 0 else v
            belief = mean_field_map(belief, v, m, s, parents)  # noqa: F821
            out[i, level] = belief
    return out


#: the package files whose code decides the generated modules (their index key)
_SOURCES = ("theory", "solvers/hierarchy.py")


@functools.lru_cache(maxsize=1)
def compiled_map():
    """The numba module with ``mean_field_map``, ``mean_field_slope``, ``leaf_belief`` and
    ``levels_batch``."""
    return compile_module("hierarchy_mf", _map_kernels, _SOURCES)


def _map_kernels():
    from ..theory import hierarchy as th

    args = (th.b, th.v, th.m, th.s, th.n)
    kernels = [ScalarKernel.of("mean_field_map", args, th.mean_field_map()),
               ScalarKernel.of("mean_field_slope", args, th.map_slope()),
               ScalarKernel.of("leaf_belief", (th.eps, th.v), th.leaf_belief())]
    return kernels, [Template(levels_batch)]


@functools.lru_cache(maxsize=1)
def _scalar_formulas():
    """Closed forms (numpy, called on numbers or arrays): ``eps`` of a fixed point (finite and
    large ``v``), ``nu``, the large-``v`` slope ``G'(p)`` and the scaling variable."""
    return compile_module("hierarchy_formulas", _formula_kernels, _SOURCES, backend="numpy")


def _formula_kernels():
    from ..theory import hierarchy as th

    return [
        ScalarKernel.of("noise", (th.b, th.v), th.noise_of_fixed_point()),
        ScalarKernel.of("noise_large_v", (th.p,), th.noise_of_fixed_point(large_v=True)),
        ScalarKernel.of("nu", (th.s, th.lam), th.correlation_exponent()),
        ScalarKernel.of("slope_large_v", (th.p, th.f, th.s), th.map_slope(large_v=True)),
        ScalarKernel.of("scaling_variable", (th.eps, th.eps_star, th.lam, th.depth),
                        th.scaling_variable()),
    ], []


#: deepest tree iterated (the result has ``L + 1`` columns per noise level)
MAX_DEPTH = 10**5
#: largest branching handled: the fixed-point polynomial has degree ``s - 1`` (derived
#: symbolically per ``s``)
MAX_BRANCHING = 64


def check_branching(s) -> int:
    s = require_int("s", s, 2)
    if s > MAX_BRANCHING:
        raise ParameterError("s", s, f"an integer in [2, {MAX_BRANCHING}]")
    return s


def check_map_parameters(v: float, m: float, s: int, n_c: float | None = None) -> tuple:
    """``2 <= s <= MAX_BRANCHING`` integer, ``v >= 2`` with ``v**s <= 1e300`` (the map's
    floating-point range; larger vocabularies: the large-``v`` map), ``1 <= m <= v**(s-1)``,
    ``n_c >= 1``."""
    s = check_branching(s)
    v = require_in_range("v", v, 2, 10 ** (300 / s))
    m = require_in_range("m", m, 1, v ** (s - 1))
    n_c = v if n_c is None else require_in_range("n_c", n_c, 1, math.inf)
    return float(v), float(m), s, float(n_c)


def mean_field_levels(eps, v: float, m: float, s: int, L: int,
                      n_c: float | None = None) -> np.ndarray:
    """Mean-field belief on the true value at every level, shape ``(len(eps), L + 1)``.

    ``b_L = 1 - eps + eps/v``; ``b_l = F(b_{l+1})`` with ``n = v`` for ``l >= 1`` and ``n = n_c``
    at the root. Column ``l`` is level ``l`` (0 the class, ``L`` the leaves). Column 0 is the
    mean-field class-preservation probability. ``1 <= L <= MAX_DEPTH``; ``eps`` non-empty.
    """
    v, m, s, n_c = check_map_parameters(v, m, s, n_c)
    L = require_int("L", L, 1)
    if L > MAX_DEPTH:
        raise ParameterError("L", L, f"an integer in [1, {MAX_DEPTH}]")
    eps = as_float_array("eps", eps)
    if np.any((eps < 0) | (eps > 1)):
        raise ParameterError("eps", eps, "in [0, 1]")
    return compiled_map().levels_batch(eps, v, m, float(s), n_c, L)


@functools.cache
def _polynomial_coefficients(s: int, large_v: bool):
    """Coefficients (highest degree first, a tuple: the degree is ``s - 1 >= 1``) of the reduced
    fixed-point polynomial: a function of ``f`` (large ``v``) or of ``(v, m)``, on numbers (one
    generated module per ``s``)."""
    name = f"reduced_coefficients_s{s}"

    def build():
        from ..theory import hierarchy as th

        poly = th.reduced_large_v_polynomial(s) if large_v else th.reduced_fixed_point_polynomial(s)
        params = (th.f,) if large_v else (th.v, th.m)
        return [ScalarKernel.of(name, params, poly.all_coeffs())], []

    tag = f"hierarchy_{'large_v' if large_v else 'finite_v'}_s{s}"
    return getattr(compile_module(tag, build, _SOURCES, backend="numpy"), name)


def _interior_root(coeffs: list[float], lo: float, hi: float) -> float:
    roots = np.roots(coeffs) if len(coeffs) > 1 else np.array([])
    real = roots[np.abs(roots.imag) <= 1e-10 * np.maximum(1, np.abs(roots.real))].real
    inside = real[(real > lo) & (real < hi)]
    return float(inside[0]) if inside.size == 1 else math.nan


def critical_point(v: float, m: float, s: int) -> dict:
    """``eps*``, ``slope`` (``lambda = F'(b_u)``), ``nu``, ``regime`` of the finite-``v`` map.

    Returns ``b_u`` too, and the slopes at the trivial fixed points (``slope_at_1``,
    ``slope_at_uniform``). Outside the ``transition`` regime ``slope`` and ``nu`` are NaN.
    """
    v, m, s, _ = check_map_parameters(v, m, s)
    mod = compiled_map()
    slope_one = mod.mean_field_slope(1.0, v, m, float(s), v)
    slope_uniform = mod.mean_field_slope(1.0 / v, v, m, float(s), v)
    coeffs = list(_polynomial_coefficients(s, False)(v, m))
    b_u = _interior_root(coeffs, 1.0 / v, 1.0)
    noise = _scalar_formulas().noise
    return _classify(b_u, slope_one, slope_uniform, lambda x: mod.mean_field_slope(
        x, v, m, float(s), v), s, lambda x: noise(x, v))


def critical_point_large_v(f: float, s: int) -> dict:
    """The same for the large-``v`` map ``G(p) = p^s / (p^s + f (1 - p^s))``; ``eps* = 1 - p_u``."""
    f = require_in_range("f", f, 1e-150, 1)  # the slopes divide by f^2
    s = check_branching(s)
    formulas = _scalar_formulas()
    slope = formulas.slope_large_v
    coeffs = list(_polynomial_coefficients(s, True)(f))
    p_u = _interior_root(coeffs, 0.0, 1.0)
    return _classify(p_u, slope(1.0, f, s), slope(0.0, f, s), lambda x: slope(x, f, s), s,
                     formulas.noise_large_v)


def _classify(root, slope_one, slope_uniform, slope, s, to_eps) -> dict:
    out = {"fixed_point": root, "slope_at_1": slope_one, "slope_at_uniform": slope_uniform,
           "eps_star": math.nan, "slope": math.nan, "nu": math.nan}
    unstable_one, unstable_uniform = slope_one > 1.0, slope_uniform > 1.0
    if unstable_one and unstable_uniform:
        out["regime"] = "partial"
    elif unstable_one:
        out.update(regime="lost", eps_star=0.0)
    elif unstable_uniform:
        out.update(regime="kept", eps_star=1.0)
    elif math.isfinite(root):
        lam = slope(root)
        out.update(regime="transition", eps_star=to_eps(root), slope=lam,
                   nu=_scalar_formulas().nu(s, lam) if lam > 1 else math.nan)
    else:  # both trivial points stable and no interior root: cannot happen for this map
        out["regime"] = "partial"
    return out


def critical_grid_large_v(f, s) -> dict[str, np.ndarray]:
    """:func:`critical_point_large_v` broadcast over arrays ``f, s`` (any shape, empty allowed:
    empty columns); each pair is checked as there."""
    f, s = np.broadcast_arrays(require_array("f", f), require_array("s", s))
    results = [critical_point_large_v(a, check_branching(c)) for a, c in zip(f.ravel(), s.ravel(),
                                                                          strict=True)]
    if not results:
        keys = ("fixed_point", "slope_at_1", "slope_at_uniform", "eps_star", "slope", "nu")
        return {**{key: np.empty(f.shape) for key in keys},
                "regime": np.empty(f.shape, dtype="<U10")}
    return _stack(results, f.shape)


def _stack(results: list[dict], shape) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in results]).reshape(shape) for key in results[0]}


def collapse_variable(eps, eps_star: float, slope: float, L: int) -> np.ndarray:
    """Scaling variable ``(eps - eps*) * lambda^L`` of the finite-depth curves (the compiled
    :func:`~diffphase.theory.hierarchy.scaling_variable`): ``eps``, ``eps_star`` in ``[0, 1]``
    (``eps`` any shape), a finite ``slope > 0``, depth ``L >= 1`` with ``lambda^L`` a float
    (``L ln lambda <= 700``)."""
    eps = require_array("eps", eps, low=0, high=1)
    eps_star = require_in_range("eps_star", eps_star, 0, 1)
    slope = require_in_range("slope", slope, 0, math.inf, closed=(False, False))
    L = require_int("L", L, 1)
    if L * math.log(slope) > 700:
        raise ParameterError("L", L, f"L ln(slope) <= 700 (slope = {slope:g}: L <= "
                             f"{int(700 / math.log(slope))})")
    return _scalar_formulas().scaling_variable(eps, eps_star, slope, L)
