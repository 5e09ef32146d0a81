"""Reverse-time integrators: the probability flow of every process and the reverse SDE
(THEORY 0; used by the memorization experiments of B and the field diagnostics of E).

Contract
--------
``score(x, a, D)`` is any score in the library's convention (THEORY 0, ``x = a y + sqrt(D) z``):
the exact scores of :mod:`diffphase.data.laws`, :meth:`EmpiricalScore.score`, a field's ``score``
(:mod:`diffphase.simulate.fields`), or a score of a process's time through
:class:`~diffphase.simulate.jacobians.TimeScore`. Its output is brought to numpy. ``grid`` is a
descending array of times of ``process`` (a name or a :class:`~diffphase.process.Process`;
``ddpm`` times are steps, fractional steps interpolating ``log tau``).

* :func:`probability_flow` integrates the probability-flow ODE written in ``u = x / a_t`` and
  ``tau = D_t / a_t^2``, where every process is variance exploding. With ``sigma = sqrt(tau)``
  and the denoiser ``den(u) = u + tau a_t s(a_t u; a_t, D_t)`` (Tweedie),

      du/dtau = -(a_t / 2) s(a_t u; a_t, D_t),     du/dsigma = (u - den(u)) / sigma,

  and Heun's method in ``(u, sigma)`` steps between consecutive grid nodes
  ``sigma_k = sqrt(tau(t_k))``; the score is evaluated at the nodes only, at the process's own
  ``(a_t, D_t)``. Second order in the step, and exact wherever ``u`` is linear in ``sigma``: where
  the denoiser is constant (pure noise at large ``tau``) and off the span of linear-manifold data
  (``den = 0`` there), so the large steps in ``tau`` of a grid uniform in ``t`` lose little
  accuracy. It serves ``ou``, ``ve`` and ``ddpm``.
* :func:`reverse_sde` (``ou`` and ``ve``): the forward process is the SDE
  ``dx = f_t x dt + g_t dW`` with ``f_t = d ln a_t / dt`` and ``g_t^2 = dD_t/dt - 2 f_t D_t``
  (``ou``: ``f = -1``, ``g^2 = 2``; ``ve``: ``f = 0``, ``g^2 = 1``); Euler–Maruyama from ``t`` to
  ``t - h``: ``x <- x + h (-f_t x + g_t^2 s(x; a_t, D_t)) + g_t sqrt(h) xi``.

Both record the states at the grid times closest to ``record_times`` and, when
``spectrum(x, a, D)`` is given, whatever it returns there. A state that leaves the finite range
(a score too large for the step) stops the run with :class:`NonFiniteTrajectory`, a
:class:`~diffphase.errors.ParameterError` that says at which time. Grids: :func:`time_grid`
(geometric or linear in ``t``, so the small times where memorization happens are resolved) and
:func:`log_tau_grid` (uniform in ``log tau`` through given times; :func:`log_tau_grid_size`
counts its nodes without building it). :func:`start_points` draws the start of backward
trajectories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backend import to_numpy
from ..errors import (
    ParameterError,
    as_float_array,
    require_choice,
    require_int,
    require_positive,
)
from ..models import PROCESSES
from ..models import REVERSIBLE_PROCESSES as REVERSIBLE
from ..process import Process, get_process


def as_process(process: str | Process) -> Process:
    """``process`` itself, or the named process with its default schedule."""
    if isinstance(process, Process):
        return process
    return get_process(require_choice("process", process, PROCESSES))


def drift_and_diffusion(process: str, t: float) -> tuple[float, float]:
    """``(f_t, g_t^2)`` of the forward SDE ``dx = f_t x dt + g_t dW``."""
    require_choice("process", process, REVERSIBLE)
    if process == "ou":
        return -1.0, 2.0
    return 0.0, 1.0


# --------------------------------------------------------------------------- grids and starts
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


def _log_tau_gaps(proc: Process, t_start: float, times, steps_per_efold: int):
    """Stops below ``t_start`` (descending), the ``tau`` of ``t_start`` and of each stop, and the
    number of steps of each gap (what :func:`log_tau_grid` builds and :func:`log_tau_grid_size`
    counts)."""
    steps_per_efold = require_int("steps_per_efold", steps_per_efold, minimum=1)
    stops = np.unique(as_float_array("times", times))[::-1]
    t_start = float(t_start)
    if stops[0] > t_start:
        raise ParameterError("t_start", t_start, f">= the largest time {stops[0]:g}")
    stops = stops[stops < t_start]
    taus = np.atleast_1d(proc.tau_from_time(np.concatenate([[t_start], stops])))
    counts = np.maximum(1.0, np.ceil(steps_per_efold * np.log(taus[:-1] / taus[1:])))
    return stops, taus, counts


def log_tau_grid_size(process: str | Process, t_start: float, times: Sequence[float],
                      steps_per_efold: int = 40) -> int:
    """The number of nodes of :func:`log_tau_grid` with these arguments, without building it."""
    _, _, counts = _log_tau_gaps(as_process(process), t_start, times, steps_per_efold)
    return 1 + int(counts.sum())


def log_tau_grid(process: str | Process, t_start: float, times: Sequence[float],
                 steps_per_efold: int = 40) -> np.ndarray:
    """Descending times from ``t_start`` through each of ``times``, uniform in ``log tau``.

    Between consecutive stops the grid has ``max(1, ceil(steps_per_efold * ln(tau_0 / tau_1)))``
    steps, so the Heun error of :func:`probability_flow` is about the same per unit of
    ``log tau`` in every process. ``t_start`` and ``times`` are nodes exactly.
    """
    proc = as_process(process)
    stops, taus, counts = _log_tau_gaps(proc, t_start, times, steps_per_efold)
    nodes = [np.array([float(t_start)])]
    for t, tau_now, tau_end, count in zip(stops, taus[:-1], taus[1:], counts, strict=True):
        inner = np.exp(np.linspace(np.log(tau_now), np.log(tau_end), int(count) + 1))[1:-1]
        nodes += [np.atleast_1d(proc.time_from_tau(inner)) if inner.size else inner, [t]]
    return np.concatenate(nodes).astype(float)


def start_points(n: int, dim: int, process: str | Process, t_start: float,
                 rng: np.random.Generator, data_variance: float = 1.0,
                 sampler: Callable | None = None) -> np.ndarray:
    """Points at ``t_start``: ``a y + sqrt(D) z`` with ``y`` from ``sampler(n, rng)`` (exact),
    else ``N(0, (a^2 data_variance + D) I)`` (an isotropic approximation of ``p_t``)."""
    proc = as_process(process)
    a = float(proc.signal_scale(t_start))
    noise = float(proc.noise_variance(t_start))
    z = rng.standard_normal((require_int("n", n, 1), require_int("dim", dim, 1)))
    if sampler is not None:
        y = np.asarray(sampler(n, rng), dtype=float)
        if y.shape != z.shape:
            raise ParameterError("sampler output shape", y.shape, f"{z.shape}")
        return a * y + np.sqrt(noise) * z
    return np.sqrt(a * a * require_positive("data_variance", data_variance) + noise) * z


# --------------------------------------------------------------------------- integrators
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
    """Indices of the (descending) ``grid`` nodes closest to each of ``record_times`` (a tie goes
    to the larger time), found by bisection."""
    if record_times is None:
        return np.array([], dtype=int)
    rt = np.atleast_1d(np.asarray(record_times, dtype=float)).ravel()
    ascending = grid[::-1]
    right = np.clip(np.searchsorted(ascending, rt), 0, ascending.size - 1)
    left = np.clip(right - 1, 0, ascending.size - 1)
    closer_left = np.abs(ascending[left] - rt) < np.abs(ascending[right] - rt)
    return np.unique(ascending.size - 1 - np.where(closer_left, left, right))


class NonFiniteTrajectory(ParameterError):
    """A trajectory left the finite range (NaN or inf) at ``time`` (the score, or the step
    along it, was too large); ``name`` is ``"score"``, to be renamed by the caller."""

    def __init__(self, time: float, count: int):
        super().__init__("score", f"{count} non-finite state entries at t = {time:.6g}",
                         "a score whose probability flow stays finite")
        self.time = time


def _integrate(step, x_start, proc: Process, grid, record_times, spectrum,
               progress) -> Trajectories:
    """Run ``x <- step(x, k)`` from node ``k`` to ``k + 1`` along ``grid``, recording; a
    non-finite state raises :class:`NonFiniteTrajectory`."""
    x = np.array(x_start, dtype=float, copy=True)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ParameterError("x_start", f"shape {np.shape(x_start)}", "finite (M, d) array")
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
        with np.errstate(over="ignore", invalid="ignore"):
            x = step(x, k)
        if not np.all(np.isfinite(x)):
            raise NonFiniteTrajectory(float(grid[k + 1]), int(np.count_nonzero(~np.isfinite(x))))
        if k + 1 in marks:
            record(k + 1)
        if progress is not None:
            progress(1)
    return Trajectories(np.array(times), np.array(states) if states else np.empty((0,) + x.shape),
                        x, spectra, grid)


def _checked_grid(grid, proc: Process) -> np.ndarray:
    grid = np.atleast_1d(np.asarray(grid, dtype=float))
    if grid.ndim != 1 or grid.size < 1 or np.any(np.diff(grid) >= 0):
        raise ParameterError("grid", grid[:4], "strictly decreasing times")
    proc.tau_from_time(grid)  # each time in the process's range
    return grid


def reverse_sde(score: Callable, x_start, process: str | Process, grid, rng: np.random.Generator,
                record_times=None, spectrum: Callable | None = None,
                progress: Callable | None = None) -> Trajectories:
    """Euler–Maruyama for the reverse-time SDE along the descending ``grid`` (``ou``, ``ve``)."""
    proc = as_process(process)
    require_choice("process", proc.name, REVERSIBLE)
    grid = _checked_grid(grid, proc)

    def step(x, k):
        t, h = grid[k], grid[k] - grid[k + 1]
        f, g2 = drift_and_diffusion(proc.name, t)
        s = to_numpy(score(x, float(proc.signal_scale(t)), float(proc.noise_variance(t))))
        return x + h * (-f * x + g2 * s) + np.sqrt(g2 * h) * rng.normal(size=x.shape)

    return _integrate(step, x_start, proc, grid, record_times, spectrum, progress)


def probability_flow(score: Callable, x_start, process: str | Process, grid, record_times=None,
                     spectrum: Callable | None = None,
                     progress: Callable | None = None) -> Trajectories:
    """Heun's method for the probability-flow ODE in ``(u = x / a_t, sigma = sqrt(tau))``,
    backwards along ``grid`` (any process; see the module docstring)."""
    proc = as_process(process)
    grid = _checked_grid(grid, proc)
    # one vectorized conversion per quantity (elementwise the same numbers as node by node)
    sigma = np.sqrt(proc.tau_from_time(grid)).tolist()
    scale = proc.signal_scale(grid).tolist()
    noise = proc.noise_variance(grid).tolist()

    def velocity(u, k):  # du/dsigma = -sigma a s(a u; a, D)
        a = scale[k]
        return -sigma[k] * a * np.asarray(to_numpy(score(a * u, a, noise[k])), dtype=float)

    def step(x, k):
        u = x / scale[k]
        h = sigma[k + 1] - sigma[k]
        k0 = velocity(u, k)
        predicted = u + h * k0
        if not np.all(np.isfinite(predicted)):
            raise NonFiniteTrajectory(float(grid[k + 1]),
                                      int(np.count_nonzero(~np.isfinite(predicted))))
        k1 = velocity(predicted, k + 1)
        return (u + 0.5 * h * (k0 + k1)) * scale[k + 1]

    return _integrate(step, x_start, proc, grid, record_times, spectrum, progress)
