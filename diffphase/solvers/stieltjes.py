"""numba templates: batched Stieltjes-transform solvers for ``z = z(g)`` (THEORY A).

These functions are *templates*: :mod:`diffphase.solvers.spectral` copies their source into a
generated, cached numba module where ``zbase``, ``zterm``, ``dzbase``, ``dzterm`` are the kernels
compiled from :func:`diffphase.theory.spectral.inverse_map_derivatives`
(``z(g) = zbase(g) + sum_k zterm(g; alpha_k, s_k)``). They are plain Python and run uncompiled too.

* ``newton_stieltjes``: complex Newton on ``z(g) - z`` from a start ``g``.
* ``continuation_stieltjes``: follows the physical branch (``Im g > 0``, ``g ~ -1/z``) from
  ``Im z = eta_start`` down to ``eta_floor`` geometrically, then polishes at ``Im z = eta``.
* ``stieltjes_lines``: many points arranged in lines (a grid axis); each point warm-starts from
  its converged neighbour on the same line and falls back to continuation when the warm start fails
  or lands off the physical branch. Lines run in parallel. Per point: root, iterations, convergence
  flag and whether the fallback was used.
* ``critical_points``: real roots of ``z'(g) = 0`` on ``g < 0`` (bulk edges are ``z`` there), by a
  sign scan in each interval between the poles ``-1/s_k`` and bisection.
"""

# ruff: noqa: F821  (zbase, zterm, dzbase, dzterm, d2zbase, d2zterm are bound in the generated module)

import numpy as np
from numba import prange


def inverse_map_value(g, alphas, variances):
    """``(z(g), z'(g), size)``; ``size`` bounds the magnitude of the summed terms (rounding scale)."""
    val = zbase(g)
    der = dzbase(g)
    size = abs(val)
    for k in range(alphas.shape[0]):
        term = zterm(g, alphas[k], variances[k])
        val += term
        size += abs(term)
        der += dzterm(g, alphas[k], variances[k])
    return val, der, size


def inverse_map_curvature(g, alphas, variances):
    """``(z'(g), z''(g))`` for real ``g``."""
    der = dzbase(g)
    der2 = d2zbase(g)
    for k in range(alphas.shape[0]):
        der += dzterm(g, alphas[k], variances[k])
        der2 += d2zterm(g, alphas[k], variances[k])
    return der, der2


def newton_stieltjes(zc, g, alphas, variances, tol, maxiter):
    """Converged when the step is below ``tol * |g|`` or the residual is at rounding level (near
    an edge ``z'(g)`` is small and the step cannot get below the attainable accuracy)."""
    for it in range(1, maxiter + 1):
        val, der, size = inverse_map_value(g, alphas, variances)
        residual = val - zc
        if abs(residual) <= 4e-16 * (size + abs(zc)):
            return g, it, True
        if der == 0.0:
            return g, it, False
        step = residual / der
        g = g - step
        if not (abs(g) < 1e300) or g == 0.0:
            return g, it, False
        if abs(step) <= tol * abs(g):
            return g, it, True
    return g, maxiter, False


def continuation_stieltjes(x, eta, alphas, variances, eta_start, eta_floor, n_stages, tol,
                           maxiter):
    zc = x + 1j * eta_start
    g = -1.0 / zc
    total = 0
    ratio = (eta_floor / eta_start) ** (1.0 / n_stages)
    level = eta_start
    for _stage in range(n_stages + 1):
        g, it, ok = newton_stieltjes(x + 1j * level, g, alphas, variances, tol, maxiter)
        total += it
        if not ok or g.imag <= 0.0:
            return g, total, False
        level *= ratio
    g, it, ok = newton_stieltjes(x + 1j * eta, g, alphas, variances, tol, maxiter)
    return g, total + it, ok


def is_physical(g, inside, eta, alphas, variances):
    """Branch test. ``eta > 0``: ``Im g > 0`` (unique root in the upper half plane).
    ``eta == 0``: inside a bulk the root must be non-real; outside it must be real with
    ``z'(g) > 0`` (the Stieltjes transform increases off the support)."""
    if eta > 0.0:
        return g.imag > 0.0
    if inside:
        return g.imag > 1e-13 * abs(g)
    if abs(g.imag) > 1e-10 * abs(g):
        return False
    der, _ = inverse_map_curvature(g.real, alphas, variances)
    return der > 0.0


def stieltjes_lines(x, eta, alphas, variances, inside, tol, maxiter, eta_start, eta_floor,
                    n_stages, g_out, iters_out, converged_out, fallback_out):
    """Solve on ``x[line, i]`` with per-line parameters ``alphas[line]``, ``variances[line]``."""
    n_lines, n_points = x.shape
    for line in prange(n_lines):
        a = alphas[line]
        s = variances[line]
        have_prev = False
        g_prev = 0j
        for i in range(n_points):
            xi = x[line, i]
            ok = False
            iters = 0
            g = g_prev
            if have_prev:
                g, iters, ok = newton_stieltjes(xi + 1j * eta, g_prev, a, s, tol, maxiter)
                if ok and eta == 0.0 and g.imag < 0.0:
                    g = np.conj(g)  # real coefficients: the conjugate is also a root
                ok = ok and is_physical(g, inside[line, i], eta, a, s)
            used_fallback = False
            if not ok:
                used_fallback = True
                floor = max(eta_floor[line], eta)  # descend no lower than the target
                g, it2, ok = continuation_stieltjes(xi, eta, a, s, eta_start[line], floor,
                                                    n_stages, tol, maxiter)
                iters += it2
                if ok and eta == 0.0 and g.imag < 0.0:
                    g = np.conj(g)
                ok = ok and is_physical(g, inside[line, i], eta, a, s)
            if ok and eta == 0.0 and not inside[line, i]:
                g = complex(g.real, 0.0)  # off the support the root is real
            g_out[line, i] = g
            iters_out[line, i] = iters
            converged_out[line, i] = ok
            fallback_out[line, i] = used_fallback
            have_prev = ok
            g_prev = g


def _critical_in_interval(lo, hi, left_infinite, alphas, variances, n_samples, out, count):
    """Sign changes of z' on one interval of g (mapped from t in (0, 1)), refined by bisection.
    Writes at most ``out.shape[0] - count`` points."""
    prev_t = 0.0
    prev_d = 0.0
    have = False
    for i in range(1, n_samples):
        t = 0.5 - 0.5 * np.cos(np.pi * i / n_samples)
        g = (hi / t) if left_infinite else (lo + (hi - lo) * t)
        d, _ = inverse_map_curvature(g, alphas, variances)
        if not np.isfinite(d):
            have = False
            continue
        if have and ((d > 0.0) != (prev_d > 0.0)) and count < out.shape[0]:
            a_t, b_t, fa = prev_t, t, prev_d
            for _ in range(200):
                m_t = 0.5 * (a_t + b_t)
                gm = (hi / m_t) if left_infinite else (lo + (hi - lo) * m_t)
                dm, _ = inverse_map_curvature(gm, alphas, variances)
                if (dm > 0.0) == (fa > 0.0):
                    a_t, fa = m_t, dm
                else:
                    b_t = m_t
                if b_t - a_t <= 1e-16 * max(abs(m_t), 1e-300):
                    break
            m_t = 0.5 * (a_t + b_t)
            out[count] = (hi / m_t) if left_infinite else (lo + (hi - lo) * m_t)
            count += 1
        prev_t, prev_d, have = t, d, True
    return count


def critical_points(alphas, variances, n_samples, out):
    """Fill ``out`` with the critical points of ``z(g)`` on ``g < 0`` (ascending); return count.

    ``variances`` must be distinct and sorted descending; the poles ``-1/s_k`` then ascend in
    reverse order: ``-1/s_K < ... < -1/s_1 < 0``."""
    count = 0
    K = variances.shape[0]
    # (-inf, -1/s_K): g = (-1/s_K) / t, t in (0, 1)
    count = _critical_in_interval(0.0, -1.0 / variances[K - 1], True, alphas, variances,
                                  n_samples, out, count)
    for k in range(K - 1, 0, -1):
        count = _critical_in_interval(-1.0 / variances[k], -1.0 / variances[k - 1], False, alphas,
                                      variances, n_samples, out, count)
    count = _critical_in_interval(-1.0 / variances[0], 0.0, False, alphas, variances,
                                  n_samples, out, count)
    return count
