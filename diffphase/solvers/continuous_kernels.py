"""numba templates: the inverse map and Stieltjes solvers of a continuous variance law (THEORY A).

Hand-written loops (sympy cannot emit them), instantiated as
:class:`~diffphase.solvers.codegen.Template` s by
:func:`diffphase.solvers.continuous_solver.kernels` next to ``zbase_pair`` (the group-independent
part ``-1/g`` of :func:`diffphase.theory.spectral.inverse_map_parts` and its derivative, compiled).

The law (:class:`~diffphase.solvers.continuous_law.VarianceContinuum`) enters through its pieces:
lower end ``a``, width ``h``, weighted density ``p(s) = s f(s) = p_a + m (s - a)``. With
``u = s - a``, ``c = 1 + a g`` and ``w = h g / c`` a piece adds to ``z(g)`` (THEORY A with the sum
over groups replaced by the integral over the law)

    int_0^h (p_a + m u) / (c + u g) du = p_a log(1 + w) / g + m c psi(w) / g^2

and to ``z'(g)`` minus ``int_0^h (a + u)(p_a + m u) / (c + u g)^2 du``
``= -[a p_a K0 + (p_a + a m) K1 + m K2]`` with ``K0 = h / (c^2 (1 + w))``,
``K1 = chi(w) / g^2`` and ``K2 = c omega(w) / g^3``, where ``psi = w - log(1 + w)``,
``chi = log(1 + w) - w/(1 + w)`` and ``omega = w - 2 log(1 + w) + w/(1 + w)`` are summed as
series for ``|w| < 0.2`` (no cancellation) and the principal logarithm is exact: the segment
``c + u g`` (``0 <= u <= h``) never crosses the negative axis off the cut. These formulas are
compared with the defining integral at 30 digits in ``tests/test_wide_laws.py``. A law of
many pieces (an empirical spectrum) is also cut into blocks of consecutive pieces
(:func:`~diffphase.solvers.continuous_solver.piece_blocks`); a block far from the pole ``-1/g``
is summed from its moments (``block_field``: a geometric series of ratio at most 1/4, truncated
at rounding level), so an evaluation costs the pieces near the pole plus one short series per
block, not one logarithm per piece.

* ``continuum_map``: ``(z(g), z'(g), size)`` (``size`` the summed magnitudes of the parts;
  ``pieces`` and ``blocks`` as :func:`~diffphase.solvers.continuous_solver.piece_arrays`).
* ``continuum_slopes``: ``z'`` at real points (the edge scans).
* ``continuum_newton`` / ``continuum_continuation``: complex Newton on ``g (z(g) - z)`` and its
  continuation from large ``Im z`` (halving ``Im z`` per stage down to ``1e-12 |z|``).
* ``continuum_real_root``: the real root on an increasing branch of ``z(g)`` (off the support),
  by Newton safeguarded by a bracket; infinite ends are bracketed by doubling.
* ``continuum_lines``: lines of points (warm starts along each; lines in parallel).
* ``continuum_vertical_lines``: ``g`` down vertical lines ``x + i y`` (the mass above ``x``).
"""

# ruff: noqa: F821  (zbase_pair: bound in the generated module)

import numpy as np
from numba import prange


def log_terms(w):
    """``(log(1 + w), psi(w), chi(w), omega(w))``: series in ``-w`` for ``|w| < 0.2``."""
    if abs(w) < 0.2:
        power = -w
        log1p = w
        psi = 0j
        chi = 0j
        omega = 0j
        floor = 1e-17 * abs(w) ** 3
        for k in range(2, 80):
            power = power * (-w)
            term = power / k
            log1p -= term
            psi += term
            chi += (k - 1) * term
            omega -= (k - 2) * term
            if abs(power) <= floor:
                break
        return log1p, psi, chi, omega
    log1p = np.log(1.0 + w)
    ratio = w / (1.0 + w)
    return log1p, w - log1p, log1p - ratio, w - 2.0 * log1p + ratio


def piece_field(g, a, h, pa, m):
    """A piece's part of ``z(g)`` and of ``z'(g)`` (module docstring)."""
    c = 1.0 + a * g
    w = h * g / c
    log1p, psi, chi, omega = log_terms(w)
    inv = 1.0 / g
    value = pa * log1p * inv + m * c * psi * inv * inv
    k0 = h / (c * c * (1.0 + w))
    k1 = chi * inv * inv
    k2 = c * omega * inv * inv * inv
    return value, -(a * pa * k0 + (pa + a * m) * k1 + m * k2)


def block_field(c, r, centre, half, moments):
    """A block's part of ``z(g)`` and ``z'(g)`` from its moments ``mu_k = int p t^k ds``
    (``t = (s - centre) / half``): with ``c = 1 + centre g`` and ``r = -half g / c`` (``|r| <=
    1/4``), ``1/(1 + s g) = (1/c) sum_k (r t)^k``, so the part is ``(1/c) sum_k r^k mu_k`` and
    its derivative ``-(1/c^2) sum_k (k + 1) r^k (centre mu_k + half mu_{k+1})``; the sums stop
    when ``(k + 2) |r|^k`` is below ``1e-16`` (``|mu_k| <= mu_0``)."""
    power = 1.0 + 0j
    value = 0j
    slope = 0j
    for k in range(moments.shape[0] - 1):
        value += power * moments[k]
        slope += (k + 1) * power * (centre * moments[k] + half * moments[k + 1])
        power *= r
        if (k + 3) * abs(power) <= 1e-16:
            break
    inv = 1.0 / c
    return value * inv, -slope * inv * inv


def continuum_map(g, pieces, blocks):
    """``(z(g), z'(g), size)`` for complex ``g`` off the cut. ``pieces`` rows: lower ends,
    widths, ``p`` at the lower ends, slopes of ``p``; ``blocks`` rows: first piece, end piece,
    centre, half width, moments. A block of at least 8 pieces far from the pole ``-1/g``
    (``|r| <= 1/4``) is summed from its moments, any other piece by its closed form."""
    val, der = zbase_pair(g)
    size = abs(val)
    for b in range(blocks.shape[0]):
        first = int(blocks[b, 0])
        stop = int(blocks[b, 1])
        c = 1.0 + blocks[b, 2] * g
        r = -blocks[b, 3] * g / c
        if stop - first >= 8 and abs(r) <= 0.25:
            term, dterm = block_field(c, r, blocks[b, 2], blocks[b, 3], blocks[b, 4:])
            val += term
            der += dterm
            size += abs(term)
            continue
        for i in range(first, stop):
            term, dterm = piece_field(g, pieces[0, i], pieces[1, i], pieces[2, i], pieces[3, i])
            val += term
            der += dterm
            size += abs(term)
    return val, der, size


def continuum_slopes(gs, pieces, blocks, out):
    """``out[i] = z'(gs[i])`` for real ``gs`` off the cut."""
    for i in range(gs.shape[0]):
        out[i] = continuum_map(complex(gs[i], 0.0), pieces, blocks)[1].real


def continuum_newton(zc, g, pieces, blocks, tol, maxiter):
    """Newton on ``F(g) = g (z(g) - zc)`` (linear near the atom at 0); converged when the
    step is below ``tol |g|`` or the residual is at rounding level: ``4e-15`` of the summed
    magnitudes, or ``1e-13`` of them after 10 steps (next to an edge ``z'`` is small and the
    steps stall at that level)."""
    for it in range(1, maxiter + 1):
        val, der, size = continuum_map(g, pieces, blocks)
        residual = val - zc
        level = abs(residual) / (size + abs(zc))
        if level <= 4e-15 or (it > 10 and level <= 1e-13):
            return g, it, True
        slope = residual + g * der
        if slope == 0.0:
            return g, it, False
        step = g * residual / slope
        g = g - step
        if not (abs(g) < 1e300) or g == 0.0:
            return g, it, False
        if abs(step) <= tol * abs(g):
            return g, it, True
    return g, maxiter, False


def continuum_continuation(x, eta, pieces, blocks, eta_start, tol, maxiter):
    """From ``Im z = eta_start`` (where ``g ~ -1/z``) down to ``max(eta, 1e-12 |x|)``, halving
    ``Im z`` per stage and requiring ``Im g > 0`` at each, then Newton at ``x + i eta``."""
    floor = max(eta, 1e-12 * abs(x), 1e-300)
    level = eta_start
    g = -1.0 / complex(x, level)
    total = 0
    while True:
        g, it, ok = continuum_newton(complex(x, level), g, pieces, blocks, tol, maxiter)
        total += it
        if not ok or g.imag <= 0.0:
            return g, total, False
        if level <= floor:
            break
        level = max(0.5 * level, floor)
    g, it, ok = continuum_newton(complex(x, eta), g, pieces, blocks, tol, maxiter)
    return g, total + it, ok


def _real_map(g, x, pieces, blocks):
    val, der, size = continuum_map(complex(g, 0.0), pieces, blocks)
    return val.real - x, der.real, size


def continuum_real_root(x, g_lo, g_hi, guess, pieces, blocks, tol, maxiter):
    """Root of ``z(g) = x`` on an increasing branch ``(g_lo, g_hi)`` of ``z`` (real ``g``).
    Open ends: ``g_lo = -inf`` (below the support, ``z -> 0+``), ``g_hi = 0`` (above it,
    ``z -> +inf``), ``(0, +inf)`` (``x < 0``); they are bracketed by doubling first."""
    lo, hi = g_lo, g_hi
    if lo == 0.0 and hi == np.inf:  # x < 0: z increases from -inf (g -> 0+) to 0- (g -> inf)
        lo = hi = 1.0 / abs(x)
        for _ in range(2100):
            if _real_map(lo, x, pieces, blocks)[0] < 0.0:
                break
            lo *= 0.5
        for _ in range(2100):
            if _real_map(hi, x, pieces, blocks)[0] > 0.0:
                break
            hi *= 2.0
    elif lo == -np.inf:
        lo = 2.0 * hi
        for _ in range(2100):
            if _real_map(lo, x, pieces, blocks)[0] < 0.0:
                break
            lo *= 2.0
    elif hi == 0.0:
        hi = 0.5 * lo
        for _ in range(2100):
            if _real_map(hi, x, pieces, blocks)[0] > 0.0:
                break
            hi *= 0.5
    g = guess if lo < guess < hi else 0.5 * (lo + hi)
    for it in range(1, 4 * maxiter + 1):
        f, der, size = _real_map(g, x, pieces, blocks)
        if abs(f) <= 4e-16 * (size + abs(x)):
            return g, it, True
        if f > 0.0:
            hi = g
        else:
            lo = g
        step = f / der if der > 0.0 else 0.0
        candidate = g - step
        if not (der > 0.0 and lo < candidate < hi):
            same_sign = lo * hi > 0.0 and max(lo / hi, hi / lo) > 2.0
            candidate = -np.sqrt(lo * hi) if same_sign and lo < 0.0 else (
                np.sqrt(lo * hi) if same_sign else 0.5 * (lo + hi))
        elif abs(step) <= tol * abs(candidate):
            return candidate, it, True
        if hi - lo <= 4e-16 * max(abs(lo), abs(hi)):
            return candidate, it, True
        g = candidate
    return g, 4 * maxiter, False


def continuum_lines(x, eta, pieces, blocks, branch, branch_lo, branch_hi, tol, maxiter,
                    eta_start, g_out, iters_out, converged_out, fallback_out):
    """Solve on ``x[line, i] + i eta``. ``branch[line, i]``: ``k >= 0`` a real root on the
    increasing branch ``(branch_lo[k], branch_hi[k])`` (off the support at ``eta = 0``), ``-1``
    the complex root (``Im g > 0``; warm start from the line's last complex root, continuation
    as fallback), ``-2`` no root (flagged)."""
    n_lines, n_points = x.shape
    for line in prange(n_lines):
        have = 0
        g_prev = 0j
        g_prev2 = 0j
        for i in range(n_points):
            xi = x[line, i]
            code = branch[line, i]
            used_fallback = False
            iters = 0
            ok = False
            g = complex(np.nan, np.nan)
            if code >= 0:
                guess = g_prev.real if have >= 1 and branch[line, i - 1] == code else np.nan
                root, iters, ok = continuum_real_root(xi, branch_lo[code], branch_hi[code],
                                                      guess, pieces, blocks, tol, maxiter)
                g = complex(root, 0.0)
            elif code == -1:
                if have >= 1 and branch[line, i - 1] == -1:
                    start = g_prev
                    if have >= 2 and branch[line, i - 2] == -1 and x[line, i - 1] != x[line, i - 2]:
                        start = g_prev + (g_prev - g_prev2) * (xi - x[line, i - 1]) / (
                            x[line, i - 1] - x[line, i - 2])
                    g, iters, ok = continuum_newton(complex(xi, eta), start, pieces, blocks, tol,
                                                    maxiter)
                    if eta == 0.0 and g.imag < 0.0:
                        g = np.conj(g)
                    ok = ok and g.imag > (1e-13 * abs(g) if eta == 0.0 else 0.0)
                if not ok:
                    used_fallback = True
                    g, more, ok = continuum_continuation(xi, eta, pieces, blocks,
                                                         eta_start + 10.0 * abs(xi), tol, maxiter)
                    iters += more
                    if eta == 0.0 and g.imag < 0.0:
                        g = np.conj(g)
                    ok = ok and g.imag > (1e-13 * abs(g) if eta == 0.0 else 0.0)
            if ok:  # independent of the stopping rules: the root solves z(g) = x + i eta
                val, _, size = continuum_map(g, pieces, blocks)
                zc = complex(xi, eta)
                ok = abs(val - zc) <= 1e-7 * (abs(zc) + size)
            g_out[line, i] = g
            iters_out[line, i] = iters
            converged_out[line, i] = ok
            fallback_out[line, i] = used_fallback
            if ok:
                have += 1
                g_prev2 = g_prev
                g_prev = g
            else:
                have = 0


def continuum_vertical_lines(x, ys, pieces, blocks, tol, maxiter, g_out, ok_out):
    """``g(x[line] + i ys[line, k])`` down each vertical line (``ys`` descending): each point
    starts from the root above it (continuation in ``Im z``), the first from ``-1/z``."""
    n_lines, n_points = ys.shape
    for line in prange(n_lines):
        g = -1.0 / complex(x[line], ys[line, 0])
        ok = True
        for k in range(n_points):
            zc = complex(x[line], ys[line, k])
            if ok:
                g, _, ok = continuum_newton(zc, g, pieces, blocks, tol, maxiter)
                ok = ok and g.imag > 0.0
            g_out[line, k] = g
            ok_out[line, k] = ok
