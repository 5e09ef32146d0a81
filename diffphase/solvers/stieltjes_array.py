"""Array-backend (numpy or cupy) batched Stieltjes solver for ``z = z(g)`` (THEORY A).

The GPU route of :mod:`diffphase.solvers.stieltjes`: every point is solved at once with whole-array
operations, so the same code runs on numpy (CPU, used to test it) and on cupy (GPU, selected with
``device="gpu" | "auto"`` through :mod:`diffphase.backend`). Points are independent, so there is no
warm start along the grid: each point follows the physical branch by continuation in ``Im z``
from ``eta_start`` (where ``g ~ -1/z``) down to ``eta_floor`` with a fixed number of Newton steps
per stage, then Newton at the target ``Im z``, then the same branch test as the compiled solver
(inside a bulk ``Im g > 0``; outside, a real root with ``z'(g) > 0``). The inverse-map parts are
the symbolic ones of :func:`diffphase.theory.spectral.inverse_map_derivatives`, compiled for the
array module by :func:`diffphase.solvers.codegen.compile_kernels` (``numpy`` or ``cupy``
backend). Per-point convergence flags and iteration counts are returned, as everywhere.
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import get_array_module, to_numpy
from ..theory import spectral as theory
from .codegen import ScalarKernel, compile_kernels


@functools.cache
def _parts(module_name: str):
    """``zbase(g) -> (base, base')`` and ``zterm(g, alpha, s) -> (term, term')`` on arrays."""
    parts = theory.inverse_map_derivatives()
    g, a, s = theory.g, theory.alpha_g, theory.s_g
    backend = "cupy" if module_name == "cupy" else "numpy"
    return compile_kernels([ScalarKernel.of("zbase", (g,), (parts["base"], parts["dbase"])),
                            ScalarKernel.of("zterm", (g, a, s), (parts["term"], parts["dterm"]))],
                           backend)


def _inverse_map(xp, g, alphas, variances):
    """``z(g)`` and ``z'(g)`` for arrays ``g (n,)`` and per-point groups ``(n, K)``."""
    parts = _parts(xp.__name__)
    base, term = parts.zbase, parts.zterm
    val, der = base(g)
    val = val + 0 * g
    der = der + 0 * g
    for k in range(alphas.shape[1]):
        t, dt = term(g, alphas[:, k], variances[:, k])
        val = val + t
        der = der + dt
    return val, der


def _newton(xp, zc, g, alphas, variances, steps, tol, active):
    """``steps`` Newton iterations on ``g (z(g) - zc)`` for the ``active`` points."""
    iterations = xp.zeros(g.shape, dtype=xp.int64)
    converged = xp.zeros(g.shape, dtype=bool)
    for _ in range(steps):
        val, der = _inverse_map(xp, g, alphas, variances)
        residual = val - zc
        slope = residual + g * der
        step = xp.where(slope != 0, g * residual / xp.where(slope != 0, slope, 1), 0)
        moving = active & ~converged
        g = xp.where(moving, g - step, g)
        iterations = iterations + moving
        converged = converged | (moving & (xp.abs(step) <= tol * xp.abs(g)))
        if not bool(xp.any(active & ~converged)):
            break
    return g, iterations, converged


def stieltjes_array(
    x,
    alphas,
    variances,
    inside,
    eta: float = 0.0,
    device: str = "cpu",
    eta_start=None,
    eta_floor=None,
    n_stages: int = 40,
    steps_per_stage: int = 6,
    final_steps: int = 60,
    tol: float = 1e-13,
):
    """``g(x + i eta)`` for points ``x (n,)`` with per-point groups ``alphas``, ``variances``
    ``(n, K)`` and the flag ``inside`` (``x`` inside a bulk; needed only at ``eta = 0``).

    Returns host arrays ``(g, converged, iterations)``."""
    xp, _ = get_array_module(device)
    x = xp.asarray(np.asarray(x, dtype=float))
    alphas = xp.asarray(np.atleast_2d(np.asarray(alphas, dtype=float)))
    variances = xp.asarray(np.atleast_2d(np.asarray(variances, dtype=float)))
    inside = xp.asarray(np.asarray(inside, dtype=bool))
    scale = xp.maximum(xp.max(variances, axis=1), 1.0)
    start = xp.asarray(eta_start) if eta_start is not None else 10.0 * (scale + xp.abs(x))
    floor = xp.asarray(eta_floor) if eta_floor is not None else 1e-10 * scale
    floor = xp.maximum(floor, eta)
    g = -1.0 / (x + 1j * start)
    iterations = xp.zeros(x.shape, dtype=xp.int64)
    active = xp.ones(x.shape, dtype=bool)
    for stage in range(n_stages + 1):
        level = start * (floor / start) ** (stage / n_stages)
        g, its, _ = _newton(xp, x + 1j * level, g, alphas, variances, steps_per_stage, tol, active)
        iterations = iterations + its
    g, its, converged = _newton(xp, x + 1j * eta, g, alphas, variances, final_steps, tol, active)
    iterations = iterations + its
    if eta == 0.0:
        g = xp.where(g.imag < 0, xp.conj(g), g)
        _, der_real = _inverse_map(xp, g.real + 0j, alphas, variances)
        real_ok = (xp.abs(g.imag) <= 1e-10 * xp.abs(g)) & (der_real.real > 0)
        physical = xp.where(inside, g.imag > 1e-13 * xp.abs(g), real_ok)
        g = xp.where(inside, g, g.real + 0j)
    else:
        physical = g.imag > 0
    converged = converged & physical
    return to_numpy(g), to_numpy(converged), to_numpy(iterations)
