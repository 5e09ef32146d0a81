"""Reverse-time integrators for the ``ou`` and ``ve`` processes (THEORY section 0 and B).

Contract
--------
The forward process ``x_t = a_t y + sqrt(D_t) z`` is the SDE ``dx = f_t x dt + g_t dW`` with
``f_t = d ln a_t / dt`` and ``g_t^2 = dD_t/dt - 2 f_t D_t`` (``ou``: ``f = -1``, ``g^2 = 2``;
``ve``: ``f = 0``, ``g^2 = 1``). Going back from ``t`` to ``t - h``:

* :func:`reverse_sde` (Euler–Maruyama):
  ``x <- x + h (-f_t x + g_t^2 s(x, t)) + g_t sqrt(h) xi``;
* :func:`probability_flow` (Heun on ``dx/dt = f_t x - (1/2) g_t^2 s(x, t)``, backwards).

``score(x, a, D)`` is any score callable (exact Gaussian / manifold / mixture scores of
:mod:`diffphase.data.laws`, or :meth:`EmpiricalScore.score`). Both record the states at the
grid times closest to ``record_times`` and, when ``spectrum(x, a, D)`` is given, the Jacobian
spectra there. Time grids are geometric by default, so the small times where memorization happens
are resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, require_choice, require_int, require_positive
from ..models import REVERSIBLE_PROCESSES as REVERSIBLE
from ..process import get_process


def drift_and_diffusion(process: str, t: float) -> tuple[float, float]:
    """``(f_t, g_t^2)`` of the forward SDE ``dx = f_t x dt + g_t dW``."""
    require_choice("process", process, REVERSIBLE)
    if process == "ou":
        return -1.0, 2.0
    return 0.0, 1.0


def time_grid(t_start: float, t_end: float, n_steps: int, spacing: str = "geometric",
              extra_times=()) -> np.ndarray:
    """Descending times from ``t_start`` to ``t_end`` (``n_steps`` steps), with ``extra_times``
    inserted exactly (so that records fall on them)."""
    t_start, t_end = require_positive("t_start", t_start), require_positive("t_end", t_end)
    if t_end >= t_start:
        raise ParameterError("t_end", t_end, f"< t_start = {t_start}")
    n_steps = require_int("n_steps", n_steps, 1)
    require_choice("spacing", spacing, ("geometric", "linear"))
    if spacing == "geometric":
        grid = np.geomspace(t_start, t_end, n_steps + 1)
    else:
        grid = np.linspace(t_start, t_end, n_steps + 1)
    extra = np.asarray(list(extra_times), dtype=float)
    extra = extra[(extra < t_start) & (extra > t_end)]
    return np.unique(np.concatenate([grid, extra]))[::-1]


def prior_sample(process: str, t_start: float, n: int, dim: int, rng: np.random.Generator,
                 data_variance: float = 1.0) -> np.ndarray:
    """Start points: ``N(0, (a^2 v + D) I)`` with ``v`` the data variance scale."""
    proc = get_process(require_choice("process", process, REVERSIBLE))
    a = float(proc.signal_scale(t_start))
    D = float(proc.noise_variance(t_start))
    return rng.normal(size=(require_int("n", n, 1), require_int("dim", dim, 1))) * np.sqrt(
        a * a * data_variance + D)


@dataclass
class Trajectories:
    """Recorded states ``states[k]`` (M, d) at ``times[k]`` (descending), the final state, the
    spectra recorded (one entry per recorded time, or empty), and the grid used."""

    times: np.ndarray
    states: np.ndarray
    final: np.ndarray
    spectra: list = field(default_factory=list)
    grid: np.ndarray | None = None


def _record_indices(grid: np.ndarray, record_times) -> np.ndarray:
    if record_times is None:
        return np.array([], dtype=int)
    rt = np.atleast_1d(np.asarray(record_times, dtype=float))
    return np.unique([int(np.argmin(np.abs(grid - r))) for r in rt])


def _integrate(step, score, x_start, process, grid, record_times, spectrum, progress):
    require_choice("process", process, REVERSIBLE)
    proc = get_process(process)
    x = np.array(x_start, dtype=float, copy=True)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ParameterError("x_start", f"shape {np.shape(x_start)}", "finite (M, d) array")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) >= 0) or grid[-1] <= 0:
        raise ParameterError("grid", grid[:4], "strictly decreasing positive times")
    marks = set(_record_indices(grid, record_times).tolist())
    times, states, spectra = [], [], []

    def record(k):
        times.append(grid[k])
        states.append(x.copy())
        if spectrum is not None:
            t = grid[k]
            spectra.append(spectrum(x, float(proc.signal_scale(t)), float(proc.noise_variance(t))))

    if 0 in marks:
        record(0)
    for k in range(grid.size - 1):
        x = step(x, grid[k], grid[k + 1], proc, score)
        if k + 1 in marks:
            record(k + 1)
        if progress is not None:
            progress(1)
    return Trajectories(np.array(times), np.array(states) if states else np.empty((0,) + x.shape),
                        x, spectra, grid)


def reverse_sde(score: Callable, x_start, process: str, grid, rng: np.random.Generator,
                record_times=None, spectrum: Callable | None = None,
                progress: Callable | None = None) -> Trajectories:
    """Euler–Maruyama for the reverse-time SDE along the descending ``grid``."""

    def step(x, t, t_next, proc, score_fn):
        h = t - t_next
        f, g2 = drift_and_diffusion(proc.name, t)
        s = score_fn(x, float(proc.signal_scale(t)), float(proc.noise_variance(t)))
        return x + h * (-f * x + g2 * s) + np.sqrt(g2 * h) * rng.normal(size=x.shape)

    return _integrate(step, score, x_start, process, grid, record_times, spectrum, progress)


def probability_flow(score: Callable, x_start, process: str, grid, record_times=None,
                     spectrum: Callable | None = None,
                     progress: Callable | None = None) -> Trajectories:
    """Heun's method for the probability-flow ODE, backwards along ``grid``."""

    def velocity(x, t, proc, score_fn):
        f, g2 = drift_and_diffusion(proc.name, t)
        s = score_fn(x, float(proc.signal_scale(t)), float(proc.noise_variance(t)))
        return f * x - 0.5 * g2 * s

    def step(x, t, t_next, proc, score_fn):
        h = t - t_next
        k1 = velocity(x, t, proc, score_fn)
        x_pred = x - h * k1
        k2 = velocity(x_pred, t_next, proc, score_fn)
        return x - 0.5 * h * (k1 + k2)

    return _integrate(step, score, x_start, process, grid, record_times, spectrum, progress)
