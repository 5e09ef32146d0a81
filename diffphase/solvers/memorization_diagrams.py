"""Critical times and the ``(ln N / d, t)`` phase diagram of the memorization model (THEORY B).

Contract: :func:`critical_times` gives, for latent groups in ``R^d`` and ``N`` training points, the
collapse noise ``tau_C`` (``ln N = (1/2) sum_i ln(1 + lambda_i / tau_C)``), the speciation noise
``tau_S = Lambda - 1`` and per group the REM critical noise at a probe along a latent direction of
the group, for raw (``g = 1``) and sphere-normalized data (``g = 0``), each also as a time of the
``ou`` or ``ve`` process. :func:`memorization_diagram` gives the same lines over a grid of
``ln N / d`` (:func:`log_n_per_d_grid`). ``tau = D/a^2``; arguments are checked before any solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_choice, require_in_range, require_int
from ..models import REVERSIBLE_PROCESSES
from . import memorization as sol

REM_CONVENTIONS = {
    "rem_raw": "g = 1 (unnormalized data)",
    "rem_sphere": "g = 0, variances divided by E|y|^2",
    "rem_direction_variance": "data variance along a latent direction of the group in R^d: the "
    "group variance for orthonormal subspaces, group variance + tr C / d for random ones (d -> "
    "infinity)",
}


def critical_times(fractions, variances, dim: int, n_train: int, process: str = "ou",
                   subspace: str = "random") -> dict:
    """Collapse, speciation and per-group REM critical times of a latent-group data law.

    Parameters
    ----------
    fractions, variances : group fractions ``alpha_k`` and latent variances ``sigma_k^2``.
    dim, n_train : ambient dimension ``d >= 1`` and number of training points ``N >= 2``.
    process : ``ou`` or ``ve``, the convention of the ``t_*`` entries.
    subspace : ``random`` (Gaussian ``F``) or ``orthonormal``.

    Returns
    -------
    dict
        ``tau_C, t_C, tau_S, t_S, speciation_exists, log_n_per_d``, ..., ``per_group`` (one dict
        per group: ``tau_c_rem_raw``, ``t_c_rem_raw_<process>``, ``tau_c_rem_sphere``, ...).
    """
    dim = require_int("dim", dim, minimum=1)
    n_train = require_int("n_train", n_train, minimum=2)
    diagram = memorization_diagram(fractions, variances, dim, [np.log(n_train) / dim], process,
                                   subspace, n_train=np.array([n_train], dtype=float))
    time = diagram.times()
    groups = []
    for k, (frac, var) in enumerate(zip(np.atleast_1d(fractions), np.atleast_1d(variances),
                                        strict=True)):
        row = {"fraction": float(frac), "variance": float(var),
               "direction_variance": float(diagram.direction_variances[k])}
        for kind in ("raw", "sphere"):
            name = f"rem_{kind}_variance_{var:g}"
            row[f"tau_c_rem_{kind}"] = float(diagram.lines[name][0])
            row[f"t_c_rem_{kind}_{process}"] = float(time[name][0])
        groups.append(row)
    return {"tau_C": float(diagram.lines["collapse"][0]), "t_C": float(time["collapse"][0]),
            "tau_S": diagram.tau_S, "t_S": float(time["speciation"][0]),
            "speciation_exists": diagram.speciation_exists,
            "largest_eigenvalue": diagram.largest_eigenvalue, "process": process,
            "subspace": subspace, "dim": dim, "n_train": n_train,
            "log_n_per_d": float(np.log(n_train) / dim), "per_group": groups,
            "collapse_solver": diagram.collapse_solver,
            "conventions": {"tau": "D/a^2", "t": f"{process} process time", **REM_CONVENTIONS}}


def log_n_per_d_grid(rate_min: float = 0.005, rate_max: float = 0.2, points: int = 60,
                     dim: int = 256) -> np.ndarray:
    """``points >= 2`` geometric values of ``ln N / d`` from ``rate_min > 0`` to
    ``rate_max > rate_min``; ``rate_min * dim >= ln 2`` (so that ``N >= 2``)."""
    require_in_range("rate_min", rate_min, 0, np.inf, closed=(False, True))
    if rate_max <= rate_min:
        raise ParameterError("rate_max", rate_max, f"> rate_min = {rate_min}")
    dim = require_int("dim", dim, minimum=1)
    if rate_min * dim < np.log(2.0):
        raise ParameterError("rate_min", rate_min,
                             f">= ln 2 / d = {np.log(2.0) / dim:.4g} (N = exp(d ln N/d) >= 2)")
    return np.geomspace(rate_min, rate_max, require_int("points", points, minimum=2))


@dataclass
class MemorizationDiagram:
    """``lines``: name (``collapse``, ``speciation``, ``rem_raw_variance_<v>``,
    ``rem_sphere_variance_<v>``) -> ``tau`` at each ``rates`` value (NaN where absent)."""

    rates: np.ndarray
    n_train: np.ndarray
    lines: dict[str, np.ndarray]
    process: str
    direction_variances: np.ndarray
    largest_eigenvalue: float
    collapse_solver: dict
    speciation_exists: bool
    tau_S: float

    def times(self) -> dict[str, np.ndarray]:
        """Each line as a time of :attr:`process`."""
        return {name: sol.process_time(taus, self.process) for name, taus in self.lines.items()}

    def table(self) -> dict[str, np.ndarray]:
        """Tidy ``log_n_per_d, n_train, line, tau, t_<process>``, line after line."""
        count = len(self.lines)
        return {"log_n_per_d": np.tile(self.rates, count),
                "n_train": np.tile(self.n_train, count),
                "line": np.repeat(list(self.lines), self.rates.size),
                "tau": np.concatenate(list(self.lines.values())),
                f"t_{self.process}": np.concatenate(list(self.times().values()))}

    def summary(self) -> dict:
        return {"lines": list(self.lines), "collapse_solver": self.collapse_solver,
                "speciation_exists": self.speciation_exists, "tau_S": self.tau_S}


def memorization_diagram(fractions=(0.1, 0.1), variances=(4.0, 1.0), dim: int = 256, rates=None,
                         process: str = "ou", subspace: str = "random",
                         n_train=None) -> MemorizationDiagram:
    """The lines of :func:`critical_times` over a grid of ``ln N / d``.

    Parameters
    ----------
    fractions, variances, dim, process, subspace : as in :func:`critical_times`.
    rates : ``ln N / d`` values (default :func:`log_n_per_d_grid`), each giving ``N >= 2``.
    n_train : ``N`` itself, one per rate (default ``exp(d rates)``).
    """
    dim = require_int("dim", dim, minimum=1)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    rates = log_n_per_d_grid(dim=dim) if rates is None else np.asarray(rates, dtype=float)
    n_train = np.exp(rates * dim) if n_train is None else np.asarray(n_train, dtype=float)
    if rates.ndim != 1 or n_train.shape != rates.shape or np.any(~(n_train >= 2)):
        raise ParameterError("rates", rates, f"a list of values >= ln 2 / d (d = {dim})")
    spectrum = sol.CovarianceSpectrum.from_groups(fractions, variances, dim, subspace)
    collapse = sol.collapse_tau(spectrum, n_train)
    tau_s, exists = sol.speciation_tau(spectrum.largest)
    lines = {"collapse": collapse.tau, "speciation": np.full(rates.size, float(tau_s))}
    along, raws, spheres = sol.rem_group_taus(variances, spectrum, n_train)
    for var, raw, sphere in zip(np.atleast_1d(variances), raws, spheres, strict=True):
        lines[f"rem_raw_variance_{var:g}"] = raw
        lines[f"rem_sphere_variance_{var:g}"] = sphere
    return MemorizationDiagram(rates, n_train, lines, process, along, spectrum.largest,
                               collapse.summary(), bool(exists), float(tau_s))
