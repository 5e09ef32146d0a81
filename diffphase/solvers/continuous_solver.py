"""Edges and Stieltjes transform of a continuous variance law, exactly (THEORY A).

Contract: for a :class:`~diffphase.solvers.continuous_law.VarianceContinuum` (total mass
``alpha``) the inverse map is ``z(g) = -1/g + int s f(s) / (1 + s g) ds``, summed in closed form
over the law's pieces (:mod:`diffphase.solvers.continuous_kernels`); nothing is discretized.
Everything is solved in a power-of-two unit (:func:`continuum_unit`, an exact rescaling).

Edges (:func:`continuum_edges`). Off the support the physical ``g`` is real, outside the cut
``{-1/s : s in support}`` and on a branch where ``z'(g) > 0`` (Silverstein–Choi), so the edges
are the values ``z(g*)`` at the critical points ``z'(g*) = 0`` on the real intervals outside the
cut; the poles of a group law become a cut, and critical points exist only outside it. With
``z'(g) = (1/g^2) [1 - int (s g / (1 + s g))^2 f(s) ds]``:

* on ``(-1/s_max, 0)`` every ``s g`` lies in ``(-1, 0)``, where ``(s g/(1 + s g))^2`` decreases
  as ``g`` rises; ``z'`` goes from ``-inf`` at the cut (where the density ``f`` is positive or
  vanishes linearly) to ``+inf``, so there is exactly one critical point: the upper edge;
* on ``(-inf, -1/s_min)`` every ``s g < -1`` and the same function increases with ``g`` from
  ``alpha`` (at ``-inf``) to ``+inf``: exactly one critical point (the lowest edge) when
  ``alpha < 1``, none when ``alpha = 1`` (a hard edge at 0);
* between two support components ``z'`` is ``-inf`` at both ends: no or two critical points
  (a gap between bulks), found by a sign scan clustered at both ends and bisection.

Hence a law with connected support has exactly one bulk: spurious gaps cannot occur. The real
increasing branches found on the way are kept (:class:`~diffphase.solvers.stieltjes_solver.Edges`
``branches``): off the support ``g(x)`` is the bracketed root on its branch (exact, density 0).

Stieltjes transform (:func:`continuum_lines`): inside a bulk, complex Newton with warm starts
along each line and continuation in ``Im z`` as fallback; every root is checked against
``z(g) = z``; failures are flagged, never returned as silent values.
"""

from __future__ import annotations

import functools

import numpy as np

from . import continuous_kernels as templates
from .codegen import ScalarKernel, Template, compile_kernels
from .continuous_law import VarianceContinuum

#: points of the sign scans of ``z'`` per interval of ``g``
SCAN_POINTS = 400
#: the scans reach the cut to ``exp(-CUT_DEPTH)`` of its distance scale (about 2e-15)
CUT_DEPTH = 34.0
#: blocks of pieces summed from their moments when far from the pole (``continuum_map``)
BLOCK_SIZE, BLOCK_LOG_WIDTH, MOMENTS = 32, 0.1, 28


@functools.lru_cache(maxsize=1)
def kernels():
    """The generated numba module: ``zbase_pair`` (compiled from THEORY A) and the templates."""
    from ..theory import spectral as theory

    parts = theory.inverse_map_derivatives()
    specs = [ScalarKernel.of("zbase_pair", (theory.g,), (parts["base"], parts["dbase"]))]
    names = ("log_terms", "piece_field", "block_field", "continuum_map", "continuum_slopes",
             "continuum_newton", "continuum_continuation", "_real_map", "continuum_real_root")
    loops = [Template(getattr(templates, name)) for name in names]
    loops += [Template(templates.continuum_lines, parallel=True),
              Template(templates.continuum_vertical_lines, parallel=True)]
    return compile_kernels(specs, templates=loops, tag="continuous_spectral")


def continuum_unit(law: VarianceContinuum) -> float:
    """The power of two nearest the geometric mean of the support's ends."""
    return float(2.0 ** np.round(0.5 * np.log2(law.lows[0]) + 0.5 * np.log2(law.highs[-1])))


def piece_arrays(law: VarianceContinuum) -> tuple[np.ndarray, np.ndarray]:
    """``(pieces, blocks)`` for the kernels: ``pieces`` rows lower ends, widths, ``p`` at the
    lower ends and slopes of ``p``; ``blocks`` (:func:`piece_blocks`) rows first piece, end
    piece, centre, half width and the moments ``mu_0 .. mu_MOMENTS``."""
    pieces = np.ascontiguousarray(np.stack([law.lows, law.widths, law.p_low, law.slopes]))
    return pieces, piece_blocks(law)


def piece_blocks(law: VarianceContinuum, size: int = BLOCK_SIZE,
                 log_width: float = BLOCK_LOG_WIDTH) -> np.ndarray:
    """Consecutive pieces grouped into blocks of at most ``size`` pieces spanning at most
    ``log_width`` in ``ln s``, with the moments ``mu_k = int_block p(s) t^k ds``,
    ``t = (s - centre) / half`` in ``[-1, 1]``, in closed form per piece
    (``p = p0 + p1 t`` on a piece: ``half (p0 (t_b^{k+1} - t_a^{k+1})/(k+1) +
    p1 (t_b^{k+2} - t_a^{k+2})/(k+2))``)."""
    starts = [0]
    for i in range(1, law.lows.size):
        if i - starts[-1] >= size or law.highs[i] > law.lows[starts[-1]] * np.exp(log_width):
            starts.append(i)
    starts = np.array(starts)
    stops = np.r_[starts[1:], law.lows.size]
    low, high = law.lows[starts], law.highs[stops - 1]
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    owner = np.repeat(np.arange(starts.size), stops - starts)
    t_a = (law.lows - centre[owner]) / half[owner]
    t_b = (law.highs - centre[owner]) / half[owner]
    p0 = law.p_low + law.slopes * (centre[owner] - law.lows)
    p1 = law.slopes * half[owner]
    k = np.arange(MOMENTS + 1)[:, None]
    per_piece = half[owner] * (p0 * (t_b ** (k + 1) - t_a ** (k + 1)) / (k + 1)
                               + p1 * (t_b ** (k + 2) - t_a ** (k + 2)) / (k + 2))
    moments = np.zeros((starts.size, MOMENTS + 1))
    np.add.at(moments, owner, per_piece.T)
    return np.ascontiguousarray(np.c_[starts, stops, centre, half, moments])


# ----------------------------------------------------------------------------- edges
def _slopes(gs: np.ndarray, pieces) -> np.ndarray:
    out = np.empty(gs.size)
    kernels().continuum_slopes(np.ascontiguousarray(gs, dtype=float), *pieces, out)
    return out


def _bisect_slope(point, lo: float, hi: float, pieces, iterations: int = 200) -> float:
    """Root of ``z'(point(t)) = 0`` for ``t`` in ``[lo, hi]`` (signs differ at the ends)."""
    sign_lo = np.sign(_slopes(np.array([point(lo)]), pieces)[0])
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if np.sign(_slopes(np.array([point(mid)]), pieces)[0]) == sign_lo:
            lo = mid
        else:
            hi = mid
    return float(point(0.5 * (lo + hi)))


def _upper_critical_point(law: VarianceContinuum, pieces) -> float:
    """The critical point on ``(-1/s_max, 0)``: ``g = -(1 - e^{-v}/2) / s_max``, ``v >= 0``
    (``z' > 0`` at ``v = 0``, where every ``|s g| <= 1/2``); the first sign change toward the
    cut. Without one (the density vanishes fast at ``s_max``) the edge is at the cut."""
    top = law.highs[-1]

    def point(v):
        return -(1.0 - 0.5 * np.exp(-v)) / top

    v = np.linspace(0.0, CUT_DEPTH, SCAN_POINTS)
    negative = np.nonzero(_slopes(point(v), pieces) < 0)[0]
    if negative.size == 0:
        return float(point(CUT_DEPTH))
    first = negative[0]
    return _bisect_slope(point, v[first - 1], v[first], pieces)


def _lower_critical_point(law: VarianceContinuum, pieces) -> float | None:
    """The critical point on ``(-inf, -1/s_min)``: ``g = -(1 + e^v) / s_min``; ``z' > 0`` where
    ``1 + e^v > 2 / (1 - sqrt(alpha))``; the last sign change from there toward the cut. None
    when ``alpha = 1`` (to rounding) or when ``z'`` is negative even far out (a hard edge)."""
    alpha = law.alpha
    if alpha >= 1.0 - 1e-12:
        return None
    bottom = law.lows[0]
    far = np.log(2.0 / (1.0 - np.sqrt(alpha)))

    def point(v):
        return -(1.0 + np.exp(v)) / bottom

    v = np.linspace(far, -CUT_DEPTH, SCAN_POINTS)
    slopes = _slopes(point(v), pieces)
    if slopes[0] <= 0:
        return None
    negative = np.nonzero(slopes < 0)[0]
    if negative.size == 0:
        return float(point(-CUT_DEPTH))
    first = negative[0]
    return _bisect_slope(point, v[first - 1], v[first], pieces)


def _gap_critical_points(upper_of_lower: float, lower_of_upper: float, pieces) -> list:
    """Pairs ``(g1, g2)`` bounding the increasing stretches of ``z`` between two support
    components (``g`` in ``(-1/upper_of_lower, -1/lower_of_upper)``): a sign scan with points
    clustered at both ends (``t = sigmoid(u)``, ``|u| <= CUT_DEPTH``), then bisection."""
    start, stop = -1.0 / upper_of_lower, -1.0 / lower_of_upper

    def point(u):
        near = 1.0 / (1.0 + np.exp(np.abs(u)))  # the smaller of t and 1 - t
        return np.where(u < 0, start + (stop - start) * near, stop - (stop - start) * near)

    u = np.linspace(-CUT_DEPTH, CUT_DEPTH, SCAN_POINTS)
    positive = _slopes(point(u), pieces) > 0
    rises = np.nonzero(~positive[:-1] & positive[1:])[0]
    falls = np.nonzero(positive[:-1] & ~positive[1:])[0]
    pairs = []
    for rise in rises:
        after = falls[falls > rise]
        if after.size:
            pairs.append((_bisect_slope(point, u[rise], u[rise + 1], pieces),
                          _bisect_slope(point, u[after[0]], u[after[0] + 1], pieces)))
    return pairs


def continuum_edges(law: VarianceContinuum):
    """``(bulks, critical_points, critical_values, branches)`` in the law's own unit (see the
    module docstring); ``branches`` rows ``(x_lo, x_hi, g_lo, g_hi)`` are the real increasing
    branches of ``z`` off the support, ``g_lo = -inf`` below it and ``g_hi = 0`` above it."""
    pieces = piece_arrays(law)
    mod = kernels()

    def value(gc):
        return float(mod.continuum_map(complex(gc), *pieces)[0].real)

    branches = []
    lower = _lower_critical_point(law, pieces)
    if lower is not None:
        branches.append((0.0, value(lower), -np.inf, lower))
    parts = law.components
    for (_, top), (bottom, _) in zip(parts[:-1], parts[1:], strict=True):
        for g1, g2 in _gap_critical_points(top, bottom, pieces):
            branches.append((value(g1), value(g2), g1, g2))
    upper = _upper_critical_point(law, pieces)
    branches.append((value(upper), np.inf, upper, 0.0))
    branches = np.array(branches, dtype=float)
    bulks = _bulks_from_branches(branches, lower is not None)
    critical = np.unique(branches[:, 2:].ravel())
    critical = critical[np.isfinite(critical) & (critical != 0)]
    return bulks, critical, np.array([value(gc) for gc in critical]), branches


def _bulks_from_branches(branches: np.ndarray, has_lower: bool) -> np.ndarray:
    """The spectrum between consecutive off-support stretches ``[x_lo, x_hi]`` of ``x``."""
    gaps = branches[:, :2]
    if not has_lower:
        gaps = np.r_[[[-np.inf, 0.0]], gaps]
    return np.stack([gaps[:-1, 1], gaps[1:, 0]], axis=1)


# ----------------------------------------------------------------------------- lines
def branch_codes(x: np.ndarray, eta: float, branches: np.ndarray) -> np.ndarray:
    """Per point: the index of its real branch (off the support, ``eta = 0``; the last index is
    the branch ``(0, inf)`` of ``x < 0``), ``-1`` for a complex root, ``-2`` for ``x = 0``."""
    codes = np.full(x.shape, -1, dtype=np.int64)
    if eta > 0:
        return codes
    for k, (x_lo, x_hi, _, _) in enumerate(branches):
        codes[(x > 0) & (x >= x_lo) & (x <= x_hi)] = k
    codes[x < 0] = branches.shape[0]
    codes[x == 0] = -2
    return codes


def continuum_lines(x: np.ndarray, eta: float, law: VarianceContinuum, branches: np.ndarray,
                    tol: float, maxiter: int):
    """``g(x + i eta)`` on lines ``x[line, :]`` of one law, all in the law's own unit (``x``
    rescaled by the caller). Returns ``(g, converged, iterations, fallback)``."""
    pieces = piece_arrays(law)
    bounds = np.r_[branches[:, 2:], [[0.0, np.inf]]]
    codes = branch_codes(x, eta, branches)
    g = np.empty(x.shape, np.complex128)
    iterations = np.empty(x.shape, np.int64)
    converged = np.empty(x.shape, np.bool_)
    fallback = np.empty(x.shape, np.bool_)
    eta_start = 10.0 * float(law.highs[-1]) + 10.0 * eta
    kernels().continuum_lines(np.ascontiguousarray(x), float(eta), *pieces, codes,
                              np.ascontiguousarray(bounds[:, 0]),
                              np.ascontiguousarray(bounds[:, 1]), tol, maxiter, eta_start, g,
                              iterations, converged, fallback)
    return g, converged, iterations, fallback


# ----------------------------------------------------------------------------- mass above
#: step in ``ln y`` of the trapezoid rule of :func:`continuum_mass_above` (halved to check it)
MASS_STEP = 0.25
#: the rule spans ``y`` from ``e^-32 x`` to ``e^28 (x + top edge)``; tails are added in closed form
MASS_DEPTHS = (32.0, 28.0)


def continuum_mass_above(x: np.ndarray, law: VarianceContinuum, top: float, tol: float,
                         maxiter: int, atol: float = 1e-11) -> tuple[np.ndarray, np.ndarray]:
    """Mass of the nonzero spectrum above each ``x > 0`` (1-d, in the law's own unit; ``top``
    the upper edge), with a convergence flag per point.

    With ``F(z) = int log(lambda - z) dmu`` (``F' = -g``, ``Im F(x + i0) = -pi mu(< x)``) and
    ``F ~ log(-z)`` at infinity, integrating ``g`` down the vertical line through ``x``:
    ``M(x) = 1/2 + (1/pi) Re int_0^inf g(x + i y) dy``. In ``u = ln y`` the integrand
    ``y Re g`` is analytic in the strip ``|Im u| < pi/2`` and decays at both ends, so the
    trapezoid rule converges exponentially (it never meets the density on the real axis,
    whatever its fine structure). Ends: ``int_0^y0 ~ y0 Re g(x + i y0)`` and
    ``int_Y^inf ~ -atan(x/Y) + m1 Y / (x^2 + Y^2)`` (``m1`` the first moment). Converged: every
    root found and steps ``MASS_STEP`` and ``MASS_STEP / 2`` agree within ``atol``."""
    low_depth, high_depth = MASS_DEPTHS
    u_low = np.log(x) - low_depth
    width = float(np.max(np.log(x + top) + high_depth - u_low))
    n = 2 * int(np.ceil(width / MASS_STEP))
    step = width / n
    u = u_low[:, None] + step * np.arange(n, -1, -1)[None, :]  # descending y
    ys = np.ascontiguousarray(np.exp(u))
    g = np.empty(ys.shape, np.complex128)
    ok = np.empty(ys.shape, np.bool_)
    kernels().continuum_vertical_lines(np.ascontiguousarray(x, dtype=float), ys,
                                       *piece_arrays(law), tol, maxiter, g, ok)
    f = ys * g.real
    fine = step * (f.sum(axis=1) - 0.5 * (f[:, 0] + f[:, -1]))
    coarse = 2 * step * (f[:, ::2].sum(axis=1) - 0.5 * (f[:, 0] + f[:, -1]))
    first_moment = float(np.sum(law.p_low * law.widths + 0.5 * law.slopes * law.widths**2))
    high = ys[:, 0]
    tails = f[:, -1] - np.arctan(x / high) + first_moment * high / (x**2 + high**2)
    mass = 0.5 + (fine + tails) / np.pi
    return mass, ok.all(axis=1) & (np.abs(fine - coarse) <= atol * np.pi)
