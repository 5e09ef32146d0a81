"""Forward processes, DDPM schedules and time <-> tau conversions (THEORY section 0).

Every forward process is written ``x_t = a_t y + sqrt(D_t) z``. Gaussian-data formulas depend on
time only through the effective noise variance ``tau = D_t / a_t**2``; the toolkit computes in
``tau`` and converts at the edges with the exact, round-tripping maps defined here.

=========  ==============  ==================  ===================================
process    a_t             D_t                 tau(t)
=========  ==============  ==================  ===================================
``ou``     exp(-t)         1 - exp(-2t)        exp(2t) - 1
``ve``     1               t                   t
``ddpm``   sqrt(abar_k)    1 - abar_k          (1 - abar_k) / abar_k   (k = 1..T)
=========  ==============  ==================  ===================================

Schedules have ``2 <= T <= MAX_STEPS`` steps; the Li–Yan schedule exists only where
``c1 ln T / T < 1`` and ``T^-c0`` is a positive float, and says so (:func:`li_yan_betas`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ParameterError, require_choice, require_count, require_positive
from .models import PROCESSES, SCHEDULES

# --------------------------------------------------------------------------- schedules
#: the longest schedule built (one array of this many floats per schedule)
MAX_STEPS = 10**7


def check_steps(T) -> int:
    """``T``: an integer in ``[2, MAX_STEPS]``."""
    return require_count("T", T, 2, MAX_STEPS)


def linear_betas(T: int = 1000, beta_min: float = 1e-4, beta_max: float = 0.02) -> np.ndarray:
    """``beta_k`` rising linearly from ``beta_min`` (k = 1) to ``beta_max`` (k = T)."""
    T = check_steps(T)
    return _checked_betas(np.linspace(beta_min, beta_max, T), "linear")


def li_yan_betas(T: int = 1000, c0: float = 2.0, c1: float = 4.0) -> np.ndarray:
    """Li–Yan schedule (THEORY D): ``beta_1 = T**-c0``,
    ``beta_{t+1} = (c1 ln T / T) * min(beta_1 (1 + c1 ln T / T)**t, 1)``.

    It is a schedule (every ``beta_t`` in ``(0, 1)``) exactly when ``c1 ln T / T < 1`` (for the
    default ``c1 = 4``: ``T >= 9``; for ``c1 <= e``: every ``T >= 2``) and ``T**-c0`` is a
    positive float (``c0 ln T <= 708``); other ``T`` or ``c0`` raise a
    :class:`~diffphase.errors.ParameterError` that states this range."""
    T = check_steps(T)
    require_positive("c0", c0)
    require_positive("c1", c1)
    rate = c1 * np.log(T) / T
    if rate >= 1:
        raise ParameterError("T", T, f"T >= {li_yan_min_steps(c1)} for c1 = {c1:g}: the li-yan "
                             "schedule beta_t reaches c1 ln T / T, which must be < 1")
    c0_max = -np.log(np.finfo(float).tiny) / np.log(T)
    if c0 > c0_max:
        raise ParameterError("c0", c0, f"<= {c0_max:.4g} at T = {T} (beta_1 = T^-c0 must not "
                             "underflow to 0)")
    beta1 = float(T) ** (-c0)
    steps = np.arange(1, T)
    # (1 + rate)**t can overflow for long chains; the min() caps it at 1 anyway.
    with np.errstate(over="ignore"):
        growth = np.exp(np.minimum(steps * np.log1p(rate), 700.0))
    rest = rate * np.minimum(beta1 * growth, 1.0)
    return _checked_betas(np.concatenate([[beta1], rest]), "li-yan")


def li_yan_min_steps(c1: float) -> int:
    """Smallest ``T`` from which on every ``T`` has ``c1 ln T / T < 1`` (2 when ``c1 <= e``;
    else just above the larger root of ``T = c1 ln T``, ``-c1 W_{-1}(-1/c1)``)."""
    c1 = require_positive("c1", c1)
    if c1 <= np.e:
        return 2
    from scipy.special import lambertw

    steps = int(np.floor(-c1 * lambertw(-1.0 / c1, -1).real))
    while c1 * np.log(steps) >= steps:  # the root rounded down; step past it
        steps += 1
    return steps


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol–Dhariwal cosine schedule: ``abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2)``."""
    T = check_steps(T)
    grid = np.arange(T + 1) / T
    f = np.cos((grid + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    betas = 1.0 - abar[1:] / abar[:-1]
    return _checked_betas(np.clip(betas, 1e-12, max_beta), "cosine")


def _checked_betas(betas: np.ndarray, schedule: str) -> np.ndarray:
    betas = np.asarray(betas, dtype=float)
    if not np.all((betas > 0) & (betas < 1)):
        bad = betas[~((betas > 0) & (betas < 1))][0]
        raise ParameterError(f"{schedule} schedule beta", bad, "in (0, 1)")
    return betas


def make_betas(schedule: str, T: int = 1000, **params: float) -> np.ndarray:
    """Betas of a named schedule (``linear``, ``li-yan``, ``cosine``)."""
    require_choice("schedule", schedule, SCHEDULES)
    if schedule == "linear":
        return linear_betas(T, **params)
    if schedule == "li-yan":
        return li_yan_betas(T, **params)
    return cosine_betas(T, **params)


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Process:
    """A forward process. ``name`` is ``ou``, ``ve`` or ``ddpm``.

    For ``ddpm`` the time is the step ``k`` (1..T) of the schedule; fractional steps interpolate
    ``log tau`` linearly between integer steps, so the conversion is monotone and exact at integers.
    """

    name: str
    schedule: str = "linear"
    T: int = 1000
    betas: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_choice("process", self.name, PROCESSES)
        if self.name == "ddpm" and self.betas is None:
            object.__setattr__(self, "betas", make_betas(self.schedule, self.T))

    # -- ddpm helpers
    @property
    def alpha_bar(self) -> np.ndarray:
        """``abar_k`` for k = 1..T (ddpm only)."""
        if self.name != "ddpm":
            raise ParameterError("process", self.name, "ddpm for alpha_bar")
        return np.cumprod(1.0 - self.betas)

    @property
    def _ddpm_log_tau(self) -> np.ndarray:
        abar = self.alpha_bar
        return np.log(-np.expm1(np.cumsum(np.log1p(-self.betas)))) - np.log(abar)

    def time_range(self) -> tuple[float, float]:
        if self.name == "ddpm":
            return 1.0, float(len(self.betas))
        return 0.0, np.inf

    def _check_time(self, t: np.ndarray) -> None:
        lo, hi = self.time_range()
        if self.name == "ddpm":
            if np.any((t < lo) | (t > hi)):
                raise ParameterError("t", t, f"a step in [1, {int(hi)}] for ddpm")
        elif np.any(~(t > 0)) or np.any(~np.isfinite(t)):
            raise ParameterError("t", t, f"> 0 for the {self.name} process")

    def signal_scale(self, t) -> np.ndarray:
        """``a_t``."""
        t = np.asarray(t, dtype=float)
        self._check_time(t)
        if self.name == "ou":
            return np.exp(-t)
        if self.name == "ve":
            return np.ones_like(t)
        return np.sqrt(1.0 / (1.0 + self.tau_from_time(t)))

    def noise_variance(self, t) -> np.ndarray:
        """``D_t``."""
        t = np.asarray(t, dtype=float)
        self._check_time(t)
        if self.name == "ou":
            return -np.expm1(-2.0 * t)
        if self.name == "ve":
            return t.copy()
        tau = self.tau_from_time(t)
        return tau / (1.0 + tau)

    def tau_from_time(self, t) -> np.ndarray:
        """Effective noise variance ``tau = D_t / a_t**2``."""
        t = np.asarray(t, dtype=float)
        self._check_time(t)
        if self.name == "ou":
            return np.expm1(2.0 * t)
        if self.name == "ve":
            return t.copy()
        steps = np.arange(1, len(self.betas) + 1, dtype=float)
        return np.exp(np.interp(t, steps, self._ddpm_log_tau))

    def time_from_tau(self, tau) -> np.ndarray:
        """Inverse of :meth:`tau_from_time`."""
        tau = np.asarray(tau, dtype=float)
        if np.any(~(tau > 0)) or np.any(~np.isfinite(tau)):
            raise ParameterError("tau", tau, "> 0 and finite")
        if self.name == "ou":
            return 0.5 * np.log1p(tau)
        if self.name == "ve":
            return tau.copy()
        log_tau = self._ddpm_log_tau
        if np.any((np.log(tau) < log_tau[0] - 1e-12) | (np.log(tau) > log_tau[-1] + 1e-12)):
            raise ParameterError(
                "tau",
                tau,
                f"in [{np.exp(log_tau[0]):.3g}, {np.exp(log_tau[-1]):.3g}] for this ddpm schedule",
            )
        steps = np.arange(1, len(self.betas) + 1, dtype=float)
        return np.interp(np.log(tau), log_tau, steps)


def get_process(name: str, schedule: str = "linear", T: int = 1000) -> Process:
    """Build a :class:`Process` by name, checking the arguments."""
    return Process(require_choice("process", name, PROCESSES), schedule=schedule, T=T)


def tau_from_time(t, process: str = "ve") -> np.ndarray:
    """Shortcut: ``tau`` at time ``t`` of a named continuous process."""
    return get_process(process).tau_from_time(t)


def time_from_tau(tau, process: str = "ve") -> np.ndarray:
    """Shortcut: time of a named continuous process at noise variance ``tau``."""
    return get_process(process).time_from_tau(tau)
