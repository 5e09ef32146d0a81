"""numba templates: batched Stieltjes-transform solvers for ``z = z(g)`` (THEORY A).

These functions are hand-written numba loops (sympy cannot emit them), instantiated as
:class:`~diffphase.solvers.codegen.Template` s by :func:`diffphase.solvers.spectral.kernels`
through :func:`diffphase.solvers.codegen.compile_kernels`: their source is copied into the
generated, cached numba module where ``zbase_triple``, ``zterm_triple``, ``dzbase``, ... are the
kernels compiled from :func:`diffphase.theory.spectral.inverse_map_derivatives`
(``z(g) = base(g) + sum_k term(g; alpha_k, s_k)`` and derivatives). The sums over groups and the
derivatives of the Newton function ``F(g) = g (z(g) - z)`` written here are compared with the
symbolic expressions in ``tests/test_spectral_solver.py``.

* ``newton_stieltjes``: complex Newton on ``z(g) - z`` from a start ``g``.
* ``continuation_stieltjes``: follows the physical branch (``Im g > 0``, ``g ~ -1/z``) from
  ``Im z = eta_start`` down to ``eta_floor`` geometrically, then polishes at ``Im z = eta``.
* ``stieltjes_lines``: many points arranged in lines (a grid axis); each point warm-starts from
  its converged neighbour on the same line and falls back to continuation when the warm start fails
  or lands off the physical branch. Lines run in parallel. Per point: root, iterations, convergence
  flag and whether the fallback was used.
* ``critical_points``: real roots of ``z'(g) = 0`` on ``g < 0`` (bulk edges are ``z`` there), by a
  sign scan in each interval between the poles ``-1/s_k`` (uniform, then geometric towards both
  ends for points the uniform scan misses when the variances span many decades) and bisection.
  ``critical_points_values`` also evaluates ``z`` there, so that the edges take one compiled call
  (each further function called from Python costs a cache load in a new process).
"""

# ruff: noqa: F821  (zbase_triple, zterm_triple, dzbase, dzterm, d2zbase, d2zterm, reciprocal:
#                    bound in the generated module)

import numpy as np
from numba import prange


def inverse_map_value(g, alphas, variances):
    """``(z(g), z'(g), z''(g), size)``; ``size`` (an L1 bound on the summed terms) sets the
    rounding scale. ``zbase_triple`` / ``zterm_triple`` return a part and its first two
    derivatives sharing one reciprocal."""
    val, der, der2 = zbase_triple(g)
    size = abs(val.real) + abs(val.imag)
    for k in range(alphas.shape[0]):
        term, dterm, d2term = zterm_triple(g, alphas[k], variances[k])
        val += term
        der += dterm
        der2 += d2term
        size += abs(term.real) + abs(term.imag)
    return val, der, der2, size


def inverse_map_slope(g, alphas, variances):
    """``z'(g)`` for real ``g``."""
    der = dzbase(g)
    for k in range(alphas.shape[0]):
        der += dzterm(g, alphas[k], variances[k])
    return der


def inverse_map_slope_size(g, alphas, variances):
    """``(z'(g), size)`` for real ``g``; ``size`` (the summed magnitudes of the parts) sets the
    rounding scale: a slope within ``1.5e-14 size`` (about 64 eps) of 0 has no reliable sign."""
    der = dzbase(g)
    size = abs(der)
    for k in range(alphas.shape[0]):
        term = dzterm(g, alphas[k], variances[k])
        der += term
        size += abs(term)
    return der, size


def inverse_map_curvature(g, alphas, variances):
    """``(z'(g), z''(g))`` for real ``g``."""
    der = dzbase(g)
    der2 = d2zbase(g)
    for k in range(alphas.shape[0]):
        der += dzterm(g, alphas[k], variances[k])
        der2 += d2zterm(g, alphas[k], variances[k])
    return der, der2


def newton_stieltjes(zc, g, alphas, variances, tol, maxiter):
    """Newton on ``F(g) = g (z(g) - zc) = 0`` (the same roots as ``z(g) = zc``, but linear in
    ``g`` near the atom at 0 where ``z(g) ~ -(1 - alpha)/g``, so far starts do not overshoot).

    Converged when the residual is at rounding level, when the step is below ``tol * |g|``, or
    when the a-priori estimate of the error left after the step, ``|F''| |s|^2 / (2 |F'|)``, is
    below ``tol * |g|`` (so a good start needs one evaluation). Near an edge ``F'`` is small, the
    estimate is large and the residual test ends the iteration at attainable accuracy.
    Magnitudes are L1 norms (cheap; within a factor sqrt 2)."""
    zc_size = abs(zc.real) + abs(zc.imag)
    for it in range(1, maxiter + 1):
        val, der, der2, size = inverse_map_value(g, alphas, variances)
        residual = val - zc
        if abs(residual.real) + abs(residual.imag) <= 6e-16 * (size + zc_size):
            return g, it, True
        slope = residual + g * der  # F'
        if slope == 0.0:
            return g, it, False
        inv_slope = reciprocal(slope)
        step = g * residual * inv_slope
        curvature = 2.0 * der + g * der2  # F''
        g = g - step
        size_g = abs(g.real) + abs(g.imag)
        if not (size_g < 1e300) or size_g == 0.0:
            return g, it, False
        current = abs(step.real) + abs(step.imag)
        if current <= tol * size_g:
            return g, it, True
        leftover = (
            0.5
            * (abs(curvature.real) + abs(curvature.imag))
            * current
            * current
            * (abs(inv_slope.real) + abs(inv_slope.imag))
        )
        if leftover <= tol * size_g:
            return g, it, True
    return g, maxiter, False


def continuation_stieltjes(x, eta, alphas, variances, eta_start, eta_floor, n_stages, tol, maxiter):
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
    size = abs(g.real) + abs(g.imag)  # L1: no square root, within sqrt 2 of |g|
    if inside:
        return g.imag > 1e-13 * size
    if abs(g.imag) > 1e-10 * size:
        return False
    return inverse_map_slope(g.real, alphas, variances) > 0.0


def stieltjes_lines(
    x,
    eta,
    alphas,
    variances,
    inside,
    tol,
    maxiter,
    eta_start,
    eta_floor,
    n_stages,
    g_out,
    iters_out,
    converged_out,
    fallback_out,
):
    """Solve on ``x[line, i]`` with per-line parameters ``alphas[line]``, ``variances[line]``.

    Each point starts from the quadratic (else linear) extrapolation of its converged predecessors
    on the line (when they lie on the same side of a bulk edge), else from its predecessor;
    continuation
    from large ``Im z`` is the fallback."""
    n_lines, n_points = x.shape
    for line in prange(n_lines):
        a = alphas[line]
        s = variances[line]
        n_prev = 0
        g_prev = 0j
        g_prev2 = 0j
        g_prev3 = 0j
        for i in range(n_points):
            xi = x[line, i]
            ok = False
            iters = 0
            g = g_prev
            if n_prev >= 1:
                start = g_prev
                if eta == 0.0 and inside[line, i] != inside[line, i - 1]:
                    # crossing a square-root edge: leave the real axis (entering a bulk) or
                    # return to it (leaving one); Newton alone cannot change realness
                    if inside[line, i]:
                        start = complex(g_prev.real, 1e-3 * abs(g_prev))
                    else:
                        start = complex(g_prev.real, 0.0)
                elif (
                    n_prev >= 3
                    and inside[line, i] == inside[line, i - 1]
                    and inside[line, i - 1] == inside[line, i - 3]
                ):
                    # quadratic (Lagrange) extrapolation through the last three roots
                    x1, x2, x3 = x[line, i - 1], x[line, i - 2], x[line, i - 3]
                    if x1 != x2 and x2 != x3 and x1 != x3:
                        l1 = (xi - x2) * (xi - x3) / ((x1 - x2) * (x1 - x3))
                        l2 = (xi - x1) * (xi - x3) / ((x2 - x1) * (x2 - x3))
                        l3 = (xi - x1) * (xi - x2) / ((x3 - x1) * (x3 - x2))
                        start = l1 * g_prev + l2 * g_prev2 + l3 * g_prev3
                elif (
                    n_prev >= 2
                    and inside[line, i] == inside[line, i - 1]
                    and inside[line, i - 1] == inside[line, i - 2]
                    and x[line, i - 1] != x[line, i - 2]
                ):
                    start = g_prev + (g_prev - g_prev2) * (xi - x[line, i - 1]) / (
                        x[line, i - 1] - x[line, i - 2]
                    )
                g, iters, ok = newton_stieltjes(xi + 1j * eta, start, a, s, tol, maxiter)
                if ok and eta == 0.0 and g.imag < 0.0:
                    g = np.conj(g)  # real coefficients: the conjugate is also a root
                ok = ok and is_physical(g, inside[line, i], eta, a, s)
            if not ok and eta == 0.0 and not inside[line, i] and xi > 0.0:
                # off the support a real root with z'(g) > 0 is the physical one (it is unique:
                # each increasing branch of z(g) covers one gap), so start from the asymptotes
                # g ~ -(1 - alpha)/x (below the support) and g ~ -1/x (above it)
                mass = 0.0
                for k in range(a.shape[0]):
                    mass += a[k]
                for guess in (-(1.0 - mass) / xi, -1.0 / xi):
                    if guess == 0.0:
                        continue
                    g, it3, ok = newton_stieltjes(xi + 0j, guess + 0j, a, s, tol, maxiter)
                    iters += it3
                    ok = ok and is_physical(g, False, eta, a, s)
                    if ok:
                        break
            used_fallback = False
            if not ok:
                used_fallback = True
                floor = max(eta_floor[line], eta)  # descend no lower than the target
                g, it2, ok = continuation_stieltjes(
                    xi, eta, a, s, eta_start[line], floor, n_stages, tol, maxiter
                )
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
            if ok:
                n_prev += 1
                g_prev3 = g_prev2
                g_prev2 = g_prev
                g_prev = g
            else:
                n_prev = 0


def residual_small_lines(x, eta, alphas, variances, g, rtol, out):
    """``out[line, i]``: whether ``|z(g) - z| <= rtol (|z| + size)`` at ``z = x[line, i] + i eta``
    with every number finite (``size`` the summed magnitudes of the parts of ``z(g)``; every
    magnitude an L1 norm ``|re| + |im|``, within a factor sqrt 2 of the modulus): the
    check, independent of Newton's stopping rules, that a reported root is one. False also where
    a part is not finite: the compiled parts take reciprocals as ``conj(w) / |w|^2``, which
    over- or underflows for ``|w|`` beyond about ``1e+-150``, so a False is only a "not shown
    here" (the caller decides those points in numpy)."""
    n_lines, n_points = x.shape
    for line in prange(n_lines):
        for i in range(n_points):
            gi = g[line, i]
            value = zbase_value(gi) + 0j
            size = abs(value.real) + abs(value.imag)
            for k in range(alphas.shape[1]):
                term = zterm_value(gi, alphas[line, k], variances[line, k])
                value += term
                size += abs(term.real) + abs(term.imag)
            residual = value - complex(x[line, i], eta)
            bound = rtol * (abs(x[line, i]) + eta + size)
            out[line, i] = np.isfinite(bound) and abs(residual.real) + abs(residual.imag) <= bound


def _interval_point(lo, hi, left_infinite, geometric, t):
    """The point of parameter ``t`` in (0, 1) of an interval of ``g``. Plain: ``lo + (hi - lo) t``
    (``hi / t`` when the interval is ``(-inf, hi)``). Geometric (``t = sigmoid(u)`` with ``u``
    uniform, clustered at both ends down to ``e^-40`` of the width, so that critical points next to
    a pole or to 0 are seen whatever the ratio of the variances): distances to the nearer end are
    formed directly, without cancellation."""
    if not geometric:
        return (hi / t) if left_infinite else (lo + (hi - lo) * t)
    u = 80.0 * t - 40.0
    near = 1.0 / (1.0 + np.exp(abs(u)))  # the smaller of t and 1 - t
    if left_infinite:
        return hi / near if u < 0.0 else hi / (1.0 - near)
    return lo + (hi - lo) * near if u < 0.0 else hi - (hi - lo) * near


def _critical_in_interval(lo, hi, left_infinite, alphas, variances, n_samples, out, count,
                          geometric=False, first=0):
    """Sign changes of z' on one interval of g (mapped from t in (0, 1) by
    :func:`_interval_point`), refined by bisection. Writes at most ``out.shape[0] - count``
    points; with ``first < count``, a point within ``1e-9 |g|`` (plus ``1e-12`` of the interval's
    width: the plain scan's resolution) of ``out[first:count]`` (found by another scan of the
    same interval) is not written again."""
    prev_t = 0.0
    prev_d = 0.0
    have = False
    known = count
    for i in range(1, n_samples):
        t = 0.5 - 0.5 * np.cos(np.pi * i / n_samples)
        g = _interval_point(lo, hi, left_infinite, geometric, t)
        d, size = inverse_map_slope_size(g, alphas, variances)
        if not np.isfinite(d):
            have = False
            continue
        if abs(d) <= 1.5e-14 * size:  # no reliable sign here: compare across it
            continue
        if have and ((d > 0.0) != (prev_d > 0.0)) and count < out.shape[0]:
            a_t, b_t, fa = prev_t, t, prev_d
            for _ in range(200):
                m_t = 0.5 * (a_t + b_t)
                gm = _interval_point(lo, hi, left_infinite, geometric, m_t)
                dm, _ = inverse_map_curvature(gm, alphas, variances)
                if (dm > 0.0) == (fa > 0.0):
                    a_t, fa = m_t, dm
                else:
                    b_t = m_t
                if b_t - a_t <= 1e-16 * max(abs(m_t), 1e-300):
                    break
            root = _interval_point(lo, hi, left_infinite, geometric, 0.5 * (a_t + b_t))
            duplicate = False
            tol = 1e-9 * abs(root) + (0.0 if left_infinite else 1e-12 * (hi - lo))
            for k in range(first, known):
                if abs(out[k] - root) <= tol:
                    duplicate = True
            if not duplicate:
                out[count] = root
                count += 1
        prev_t, prev_d, have = t, d, True
    return count


def _critical_scans(lo, hi, left_infinite, alphas, variances, n_samples, out, count):
    """Both scans of one interval: plain, then geometric for what the plain one missed."""
    first = count
    count = _critical_in_interval(lo, hi, left_infinite, alphas, variances, n_samples, out,
                                  count)
    return _critical_in_interval(lo, hi, left_infinite, alphas, variances, n_samples, out,
                                 count, True, first)


def critical_points(alphas, variances, n_samples, out):
    """Fill ``out`` with the critical points of ``z(g)`` on ``g < 0``; return their count.

    ``variances`` must be distinct and sorted descending; the poles ``-1/s_k`` then ascend in
    reverse order: ``-1/s_K < ... < -1/s_1 < 0``. Each interval between poles is scanned twice
    (:func:`_critical_scans`); the caller sorts the points."""
    count = 0
    K = variances.shape[0]
    # (-inf, -1/s_K): g = (-1/s_K) / t, t in (0, 1)
    count = _critical_scans(
        0.0, -1.0 / variances[K - 1], True, alphas, variances, n_samples, out, count
    )
    for k in range(K - 1, 0, -1):
        count = _critical_scans(
            -1.0 / variances[k],
            -1.0 / variances[k - 1],
            False,
            alphas,
            variances,
            n_samples,
            out,
            count,
        )
    count = _critical_scans(
        -1.0 / variances[0], 0.0, False, alphas, variances, n_samples, out, count
    )
    return count


def critical_points_values(alphas, variances, n_samples, out, values):
    """:func:`critical_points` into ``out`` and ``z`` at each of them into ``values``; return
    their count."""
    count = critical_points(alphas, variances, n_samples, out)
    for i in range(count):
        values[i] = inverse_map_value(out[i], alphas, variances)[0]
    return count
