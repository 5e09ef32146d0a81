"""Exact DDPM sampler errors as tables: one configuration and the ``(T, d)`` maps (THEORY D).

Contract: :func:`sampler_error_report` gives the exact ``KL(law X_1 || law Y_1)`` of one
configuration (Gaussian data on a ``k``-subspace of ``R^dim``), its tangent/normal split, the TV
bounds and the KL of every direction; :func:`sampler_diagram` gives the errors of every design over
a ``(T, d)`` grid (:func:`sampler_diagram_axes`) and their power laws in ``T`` at the dimension
closest to 4096. The ``custom`` design is ``eta = eta_scale (1 - alpha_t)``,
``sigma^2 = sigma2_scale sigma_star^2``. Errors are at ddpm step 1; arguments are checked first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_choice, require_finite, require_int, require_positive
from ..models import ALL_DESIGNS, SCHEDULES
from ..process import make_betas
from ..solvers import sampler as sv

RATE_DIMENSION = 4096
DIAGRAM_SPECTRUM = "geometric 0.25..4"
SOLVER_METHOD = "exact per-direction relative-error recursion (compiled)"


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
        return {"direction": [f"tangent_{j}" for j in range(k)] + ["normal"],
                "data_variance": np.r_[self.variances, 0.0],
                "multiplicity": np.r_[np.ones(k, dtype=int), self.dim - k],
                "relative_variance_error_step1": np.r_[e.tangent_relative_errors,
                                                       e.normal_relative_error],
                "standardized_mean_step1": np.r_[e.tangent_means, 0.0],
                "kl_per_direction_step1": np.r_[self.kl_tangent_directions,
                                                e.kl_normal_per_dim]}

    def summary(self) -> dict:
        e = self.error
        return {"kl": e.kl, "kl_tangent": e.kl_tangent, "kl_normal": e.kl_normal,
                "kl_normal_per_dim": e.kl_normal_per_dim, "tv_normal": e.tv_normal,
                "tv_lower": e.tv_lower, "tv_upper": e.tv_upper,
                "time_convention": "ddpm steps; error between law(X_1) and law(Y_1)"}


def sampler_error_report(T: int = 1000, dim: int = 4096, k: int = 8, design: str = "star",
                         schedule: str = "li-yan", c0: float = 2.0, c1: float = 4.0,
                         variances=None, score_bias: float = 0.0, eta_scale: float = 1.0,
                         sigma2_scale: float = 1.0) -> SamplerErrorReport:
    """Exact error of one configuration, with the KL of every direction.

    Parameters
    ----------
    T, dim, k : steps (>= 2), ambient and subspace dimensions (``1 <= k <= dim``).
    design : one of :data:`~diffphase.models.ALL_DESIGNS`; ``custom`` uses :func:`custom_design`
        with ``eta_scale`` and ``sigma2_scale`` (ignored by the other designs).
    schedule, c0, c1 : the noise schedule (``c0``, ``c1``: ``li-yan`` only).
    variances : the ``k`` tangent variances (default geometric from 0.25 to 4).
    score_bias : constant score error along the first tangent direction.
    """
    T, dim, k = sv.validate_configuration(T, dim, k)
    require_choice("design", design, ALL_DESIGNS)
    lam = sv.geometric_spectrum(k) if variances is None else sv.check_variances(variances, k)
    require_finite("score_bias", score_bias)
    params = schedule_parameters(schedule, c0, c1)
    betas = make_betas(schedule, T, **params)
    eta, sigma2 = custom_design(betas, eta_scale, sigma2_scale) if design == "custom" else (
        None, None)
    error = sv.sampler_error(T, dim, k, design, betas=betas, variances=lam,
                             score_bias=score_bias, eta=eta, sigma2=sigma2)
    kl_directions, _ = sv.gaussian_divergences(error.tangent_relative_errors, error.tangent_means)
    return SamplerErrorReport(T, dim, k, lam, params, error, kl_directions)


def sampler_diagram_axes(T_min: int = 16, T_max: int = 10_000, n_T: int = 13, dims=None,
                         k: int = 8) -> tuple[np.ndarray, list[int]]:
    """``n_T`` geometric steps from ``T_min >= 2`` to ``T_max > T_min`` (integers, deduplicated)
    and the dimensions (each ``>= k``; default 13 geometric values from ``k`` to 65536)."""
    T_min = require_int("T_min", T_min, minimum=2)
    T_max = require_int("T_max", T_max, minimum=T_min + 1)
    n_T = require_int("n_T", n_T, minimum=2)
    k = require_int("k", k, minimum=1)
    if dims is None:
        dims = np.unique(np.geomspace(k, 65_536, 13).astype(int))
    dims = [require_int("dims", d, minimum=k) for d in np.atleast_1d(dims)]
    return np.unique(np.geomspace(T_min, T_max, n_T).astype(int)), dims


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
        return {"T_steps": g["T"], **{key: g[key] for key in ("dim", "k", "design", "spectrum")},
                **{f"{key}_step1": g[key] for key in ("kl", "kl_tangent", "kl_normal",
                                                      "kl_normal_per_dim", "tv_normal",
                                                      "tv_lower", "tv_upper")}}

    def summary(self) -> dict:
        return {"configurations": int(self.grid["T"].size), "fits": self.fits,
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
