"""Exact DDPM sampler errors as tables: one configuration and the ``(T, d)`` maps (THEORY D).

Contract: :func:`sampler_error_report` gives the exact ``KL(law X_1 || law Y_1)`` of one
configuration (Gaussian data on a ``k``-subspace of ``R^dim``), its tangent/normal split, the TV
bounds and the KL of every direction; :func:`sampler_diagram` gives the errors of every design over
a ``(T, d)`` grid (:func:`sampler_diagram_axes`) and their power laws in ``T`` at the dimension
closest to 4096. The ``custom`` design is ``eta = eta_scale (1 - alpha_t)``,
``sigma^2 = sigma2_scale sigma_star^2``. Errors are at ddpm step 1.

Arguments and the estimated memory and run time (:func:`sampler_error_cost`,
:func:`sampler_diagram_cost`, :mod:`diffphase.studies.budget`) are checked before any solve:
:func:`plan_sampler_error` then :func:`run_sampler_error` is :func:`sampler_error_report` in two
steps. A non-finite error or a failed fit has a ``nan_reason`` beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_choice, require_finite, require_int, require_positive
from ..models import ALL_DESIGNS, SCHEDULES
from ..process import make_betas
from ..solvers import sampler as sv
from .budget import CostTerm, check_cost, product
from .tables import flag_nonfinite_columns, flag_summary

RATE_DIMENSION = 4096
#: largest ambient dimension: an integer a double holds exactly
MAX_DIM = 2**53
DIAGRAM_SPECTRUM = "geometric 0.25..4"
SOLVER_METHOD = "exact per-direction relative-error recursion (compiled)"
#: why an error or a fitted rate can be undefined
NAN_REASONS = {
    "kl": "the error overflows a double at this configuration",
    "kl_slope": "fit failed: fewer than two positive finite errors (counted in failed_fits)",
    "kl_prefactor": "fit failed: fewer than two positive finite errors",
    "tv_upper_slope": "fit failed: fewer than two positive finite errors",
    "tv_upper_prefactor": "fit failed: fewer than two positive finite errors",
    "tv_lower_slope": "fit failed: fewer than two positive finite errors",
    "tv_lower_prefactor": "fit failed: fewer than two positive finite errors",
}


def schedule_parameters(schedule: str, c0: float = 2.0, c1: float = 4.0) -> dict[str, float]:
    """``{"c0": c0, "c1": c1}`` (each > 0) for ``li-yan``; ``{}`` for the other schedules."""
    if require_choice("schedule", schedule, SCHEDULES) != "li-yan":
        return {}
    return {"c0": require_positive("c0", c0), "c1": require_positive("c1", c1)}


def custom_design(betas, eta_scale: float = 1.0, sigma2_scale: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(eta, sigma^2)`` per step: the ``star`` design scaled by ``eta_scale`` and
    ``sigma2_scale >= 0``."""
    require_finite("eta_scale", eta_scale)
    if require_finite("sigma2_scale", sigma2_scale) < 0:
        raise ParameterError("sigma2_scale", sigma2_scale, ">= 0")
    eta_star, sigma2_star = sv.design_arrays("star", betas)
    return eta_scale * eta_star, sigma2_scale * sigma2_star


@dataclass
class SamplerErrorReport:
    """One configuration: its error, tangent variances and per-tangent-direction KL."""

    T: int
    dim: int
    k: int
    variances: np.ndarray
    schedule_params: dict[str, float]
    error: sv.SamplerError
    kl_tangent_directions: np.ndarray

    def table(self) -> dict[str, object]:
        """One row per tangent direction and one for the ``dim - k`` normal ones."""
        e, k = self.error, self.k
        return flag_nonfinite_columns({"direction": [f"tangent_{j}" for j in range(k)] + ["normal"],
                "data_variance": np.r_[self.variances, 0.0],
                "multiplicity": np.r_[np.ones(k, dtype=int), self.dim - k],
                "relative_variance_error_step1": np.r_[e.tangent_relative_errors,
                                                       e.normal_relative_error],
                "standardized_mean_step1": np.r_[e.tangent_means, 0.0],
                "kl_per_direction_step1": np.r_[self.kl_tangent_directions,
                                                e.kl_normal_per_dim]})

    def summary(self) -> dict:
        e = self.error
        return flag_summary({"kl": e.kl, "kl_tangent": e.kl_tangent, "kl_normal": e.kl_normal,
                             "kl_normal_per_dim": e.kl_normal_per_dim, "tv_normal": e.tv_normal,
                             "tv_lower": e.tv_lower, "tv_upper": e.tv_upper,
                             "time_convention": "ddpm steps; error between law(X_1) and "
                                                "law(Y_1)"}, NAN_REASONS)


def sampler_error_cost(T: int, k: int) -> list[CostTerm]:
    """Estimated memory and run time of :func:`sampler_error_report`: the schedule and the
    ``k + 1`` direction chains of ``T`` steps (measured: about 34 bytes a step, 2e-8 seconds a
    step and chain)."""
    return [CostTerm("the schedule and the recursion over the steps", "T", T,
                     64.0 * float(T) + 400.0 * float(k), 1.0 + product(T, k + 1, 3e-8)),
            CostTerm("the tangent directions", "k", k, 400.0 * float(k), 1e-5 * float(k))]


@dataclass(frozen=True)
class SamplerErrorPlan:
    """Checked arguments of :func:`sampler_error_report` (see :func:`plan_sampler_error`)."""

    T: int
    dim: int
    k: int
    design: str
    schedule: str
    schedule_params: dict
    variances: np.ndarray
    score_bias: float
    eta_scale: float
    sigma2_scale: float
    betas: np.ndarray


def plan_sampler_error(T: int = 1000, dim: int = 4096, k: int = 8, design: str = "star",
                       schedule: str = "li-yan", c0: float = 2.0, c1: float = 4.0,
                       variances=None, score_bias: float = 0.0, eta_scale: float = 1.0,
                       sigma2_scale: float = 1.0,
                       max_memory: float | None = None) -> SamplerErrorPlan:
    """Check the arguments of :func:`sampler_error_report` and its cost (against
    ``max_memory`` bytes), before anything is solved."""
    T, dim, k = sv.validate_configuration(T, dim, k)
    if dim > MAX_DIM:
        raise ParameterError("dim", dim, "an integer in [k, 2**53] (exact as a double)")
    require_choice("design", design, ALL_DESIGNS)
    require_finite("score_bias", score_bias)
    require_finite("eta_scale", eta_scale)
    if require_finite("sigma2_scale", sigma2_scale) < 0:
        raise ParameterError("sigma2_scale", sigma2_scale, ">= 0")
    params = schedule_parameters(schedule, c0, c1)
    check_cost(sampler_error_cost(T, k), max_memory)
    lam = sv.geometric_spectrum(k) if variances is None else sv.check_variances(variances, k)
    betas = make_betas(schedule, T, **params)  # checks the schedule at this T
    return SamplerErrorPlan(T, dim, k, design, schedule, params, lam, float(score_bias),
                            float(eta_scale), float(sigma2_scale), betas)


def run_sampler_error(plan: SamplerErrorPlan) -> SamplerErrorReport:
    """The exact error of a checked :class:`SamplerErrorPlan`."""
    betas = plan.betas
    eta, sigma2 = (custom_design(betas, plan.eta_scale, plan.sigma2_scale)
                   if plan.design == "custom" else (None, None))
    error = sv.sampler_error(plan.T, plan.dim, plan.k, plan.design, betas=betas,
                             variances=plan.variances, score_bias=plan.score_bias, eta=eta,
                             sigma2=sigma2)
    kl_directions, _ = sv.gaussian_divergences(error.tangent_relative_errors, error.tangent_means)
    return SamplerErrorReport(plan.T, plan.dim, plan.k, plan.variances, plan.schedule_params,
                              error, kl_directions)


def sampler_error_report(T: int = 1000, dim: int = 4096, k: int = 8, design: str = "star",
                         schedule: str = "li-yan", c0: float = 2.0, c1: float = 4.0,
                         variances=None, score_bias: float = 0.0, eta_scale: float = 1.0,
                         sigma2_scale: float = 1.0,
                         max_memory: float | None = None) -> SamplerErrorReport:
    """Exact error of one configuration, with the KL of every direction.

    Parameters
    ----------
    T, dim, k : steps (>= 2), ambient and subspace dimensions (``1 <= k <= dim``).
    design : one of :data:`~diffphase.models.ALL_DESIGNS`; ``custom`` uses :func:`custom_design`
        with ``eta_scale`` and ``sigma2_scale`` (ignored by the other designs).
    schedule, c0, c1 : the noise schedule (``c0``, ``c1``: ``li-yan`` only).
    variances : the ``k`` tangent variances (default geometric from 0.25 to 4).
    score_bias : constant score error along the first tangent direction.
    max_memory : memory budget in bytes (:func:`sampler_error_cost`).
    """
    return run_sampler_error(plan_sampler_error(T, dim, k, design, schedule, c0, c1, variances,
                                                score_bias, eta_scale, sigma2_scale,
                                                max_memory))


def sampler_diagram_cost(T_min: int, T_max: int, n_T: int, n_dims: int,
                         k: int) -> list[CostTerm]:
    """Estimated memory and run time of :func:`sampler_diagram` with its table written and its
    figure drawn: the schedules (the summed steps of the distinct ``T``, from the geometric
    sum), the chains of every design and direction over them, one table row per ``(T, d,
    design)`` (measured: about 40 bytes a step, 20 ms a ``T``, 600 bytes a row)."""
    count = min(float(n_T), float(T_max) - float(T_min) + 1.0)
    if count > 1:
        with np.errstate(over="ignore"):
            ratio = (float(T_max) / float(T_min)) ** (1.0 / (count - 1.0))
            steps = float(T_min) * (ratio**count - 1.0) / (ratio - 1.0)
        steps = min(steps if np.isfinite(steps) else np.inf,
                    count * (float(T_max) + float(T_min)) / 2.0 + count)
    else:
        steps = float(T_max)
    rows = product(count, n_dims, len(sv.DESIGNS))
    name = "T_max" if steps > 1e7 and count < 1e5 else "n_T"
    value = T_max if name == "T_max" else n_T
    chains = product(steps, len(sv.DESIGNS), k + 1, 5e-8)
    return [CostTerm("the schedules over all steps", name, value, 64.0 * steps + 64 * 2**20,
                     5.0 + 0.03 * count + (chains if k <= 64 else 0.0)),
            CostTerm("the chains of every design and tangent direction", "k", k, 0.0,
                     chains if k > 64 else 0.0),
            CostTerm("the table rows (one per T, dimension and design)", "dims", n_dims,
                     1000.0 * rows, 1e-3 * rows),
            CostTerm("the grid of T before its values are rounded and deduplicated", "n_T", n_T,
                     24.0 * float(n_T), 1e-8 * float(n_T))]


def sampler_diagram_axes(T_min: int = 16, T_max: int = 10_000, n_T: int = 13, dims=None,
                         k: int = 8, max_memory: float | None = None
                         ) -> tuple[np.ndarray, list[int]]:
    """``n_T`` geometric steps from ``T_min >= 2`` to ``T_max > T_min`` (integers, deduplicated)
    and the dimensions (each an integer ``>= k``; default 13 geometric values from ``k`` to
    65536); a grid beyond the budgets (:func:`sampler_diagram_cost`) is refused."""
    T_min = require_int("T_min", T_min, minimum=2)
    T_max = require_int("T_max", T_max, minimum=T_min + 1)
    n_T = require_int("n_T", n_T, minimum=2)
    k = require_int("k", k, minimum=1)
    if dims is None:
        dims = np.unique(np.geomspace(k, max(k, 65_536), 13).astype(int))
    dims = [require_int("dims", d, minimum=k) for d in np.atleast_1d(dims).tolist()]
    for d in dims:
        if d > MAX_DIM:
            raise ParameterError("dims", d, "integers in [k, 2**53] (exact as doubles)")
    check_cost(sampler_diagram_cost(T_min, T_max, n_T, len(dims), k), max_memory)
    return np.unique(np.geomspace(T_min, T_max, n_T).astype(int)), dims


def check_schedule(schedule: str, T_values: Sequence[int],
                   schedule_params: Mapping[str, float] | None = None) -> None:
    """Build the schedule at the smallest and the largest ``T`` (a schedule that does not exist
    at some ``T`` fails here, before any solve)."""
    for T in {int(min(T_values)), int(max(T_values))}:
        make_betas(schedule, T, **dict(schedule_params or {}))


@dataclass
class SamplerDiagram:
    """``grid``: tidy columns of :func:`~diffphase.solvers.sampler.sampler_error_grid`; ``fits``
    per design: ``<kl|tv_upper|tv_lower>_slope``, ``_slope_stderr``, ``_prefactor`` at
    ``dim_for_rates`` (NaN slope and prefactor where a fit fails, counted in ``failed_fits``)."""

    grid: dict[str, np.ndarray]
    fits: dict[str, dict[str, float]]
    failed_fits: int
    dim_for_rates: int

    def table(self) -> dict[str, np.ndarray]:
        g = self.grid
        return flag_nonfinite_columns(
            {"T_steps": g["T"], **{key: g[key] for key in ("dim", "k", "design", "spectrum")},
             **{f"{key}_step1": g[key] for key in ("kl", "kl_tangent", "kl_normal",
                                                   "kl_normal_per_dim", "tv_normal",
                                                   "tv_lower", "tv_upper")}})

    def summary(self) -> dict:
        return {"configurations": int(self.grid["T"].size),
                "fits": flag_summary(self.fits, NAN_REASONS),
                "dim_for_rates": self.dim_for_rates}

    def convergence(self) -> dict:
        return {"non_finite": int(np.count_nonzero(~np.isfinite(self.grid["kl"]))),
                "failed_fits": self.failed_fits}


def sampler_diagram(T_values: Sequence[int], dims: Sequence[int], k: int = 8,
                    schedule: str = "li-yan",
                    schedule_params: Mapping[str, float] | None = None) -> SamplerDiagram:
    """Exact errors of every design of :data:`~diffphase.solvers.sampler.DESIGNS` on
    ``T_values x dims`` (geometric tangent spectrum) and their power laws in ``T`` at the
    dimension closest to :data:`RATE_DIMENSION`."""
    dims = [int(d) for d in dims]
    grid = sv.sampler_error_grid(T_values, dims, [require_int("k", k, minimum=1)], sv.DESIGNS,
                                 ("geometric",), schedule, schedule_params)
    dim_for_rates = min(dims, key=lambda d: abs(d - RATE_DIMENSION))
    fits, failed = {}, 0
    for design in sv.DESIGNS:
        sel = (grid["design"] == design) & (grid["dim"] == dim_for_rates)
        fits[design] = entry = {}
        for column in ("kl", "tv_upper", "tv_lower"):
            try:
                fit = sv.fit_rate(grid["T"][sel], grid[column][sel])
            except ParameterError:
                failed += 1
                entry[f"{column}_slope"] = entry[f"{column}_prefactor"] = float("nan")
                continue
            entry.update({f"{column}_slope": fit.slope, f"{column}_slope_stderr": fit.slope_se,
                          f"{column}_prefactor": fit.prefactor})
    return SamplerDiagram(grid, fits, failed, dim_for_rates)
