"""The spectrum of the spectral model at one noise level, as tables (THEORY A).

Contract: :func:`resolve_tau` gives ``tau = D/a^2`` from ``tau`` or from a time of the ``ou`` or
``ve`` process; :func:`spectrum_tables` gives what ``diffphase spectrum`` reports: the summary of
:func:`~diffphase.solvers.spectral.spectral_summary` (edges, gaps, phase, dimension read-out) with
the time and the solver's convergence counts, and the densities of ``C`` and of ``Jn = D J`` on a
grid clustered at the bulk edges (:func:`bulk_grid`), or the atoms at the latent variances for an
orthonormal subspace. The normal atom ``1 - alpha`` is not in the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require_choice, require_int
from ..models import REVERSIBLE_PROCESSES
from ..process import get_process
from . import spectral as solver


def resolve_tau(tau: float | None = None, t: float | None = None, process: str = "ve") -> float:
    """``tau`` itself (finite, > 0) or converted from a time ``t`` of ``process``; exactly one of
    the two must be given."""
    if (tau is None) == (t is None):
        raise ParameterError("tau/t", {"tau": tau, "t": t}, "exactly one of tau or t")
    proc = get_process(process)
    if tau is None:
        return float(proc.tau_from_time(t))
    if not (np.isfinite(tau) and tau > 0):
        raise ParameterError("tau", tau, "> 0")
    return float(tau)


def bulk_grid(edges, points: int = 1500) -> np.ndarray:
    """About ``points`` values over the bulks ``[[l, u], ...]``, cosine-spaced in each (so
    clustered at every edge; at least 10 per bulk), ascending, without duplicates or zeros."""
    edges = np.asarray(edges, dtype=float).reshape(-1, 2)
    per_bulk = max(require_int("points", points, minimum=1) // max(len(edges), 1), 10)
    theta = np.linspace(0, np.pi, per_bulk)
    grid = np.unique(np.concatenate([lo + (hi - lo) * (1 - np.cos(theta)) / 2
                                     for lo, hi in edges]))
    return grid[grid > 0]


@dataclass
class SpectrumTables:
    """The summary and the columns of ``C`` (``lambda``) and ``Jn`` (``jn``), each with its
    ``density`` (random subspace) or atom ``mass`` (orthonormal)."""

    summary: dict
    covariance: dict[str, np.ndarray]
    jacobian: dict[str, np.ndarray]


def spectrum_tables(law, tau: float, delta: float = 0.1, subspace: str = "random",
                    dim: int | None = None, points: int = 1500,
                    process: str = "ve") -> SpectrumTables:
    """Summary and densities of ``C`` and ``Jn`` at ``tau``.

    Parameters
    ----------
    law : a :class:`~diffphase.solvers.spectral.VarianceLaw` (groups or a continuous law).
    tau, delta : effective noise variance (:func:`resolve_tau`) and resolution in ``(0, 1)``.
    subspace : ``random`` (bulks) or ``orthonormal`` (atoms at the variances).
    dim : ambient dimension, to add ``dimension_count = d x mass`` (None: not added).
    points : density grid size (>= 10); ``process``: of the summary's time ``t``.
    """
    delta = solver.check_delta(delta)
    points = require_int("points", points, minimum=10)
    if dim is not None:
        dim = require_int("dim", dim, minimum=1)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    law = solver.as_law(law)
    summary = solver.spectral_summary(law, tau, delta, subspace, dim)
    tau = summary["tau"]
    summary.update(process=process, t=float(get_process(process).time_from_tau(tau)))
    if subspace == "orthonormal":
        lam, mass = np.sort(law.variances), law.fractions[np.argsort(law.variances)]
        summary["convergence"] = {"points": 0, "failed": 0}
        jn = solver.formula("jacobian_eigenvalue", lam, tau)
        return SpectrumTables(summary, {"lambda": lam, "mass": mass}, {"jn": jn, "mass": mass})
    lam = bulk_grid(summary["edges"], points)
    rho_c, res_c = solver.covariance_density(lam, law)
    jn = np.sort(solver.formula("jacobian_eigenvalue", lam, tau))
    rho_j, res_j = solver.jacobian_density(jn, tau, law)
    summary["convergence"] = {"covariance": res_c.summary(), "jacobian": res_j.summary()}
    return SpectrumTables(summary, {"lambda": lam, "density": rho_c},
                          {"jn": jn, "density": rho_j})
