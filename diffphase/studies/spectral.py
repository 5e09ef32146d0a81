"""Phase diagrams of the spectral model (THEORY A) on grids of control parameters x ``tau``.

* :func:`alpha_time_diagram`: one latent group (variance ``s``), fraction ``alpha`` vs ``tau``:
  phase, manifold gap width and dimension read-out per point.
* :func:`ratio_time_diagram`: two groups (fractions ``a1, a2``; variances ``1`` and ``r``),
  variance ratio ``r`` vs ``tau``: phase, number of bulks, manifold and intermediate gap widths and
  whether the intermediate gap is visible at resolution ``delta``.
* :func:`phase_diagram_axes` and :func:`phase_diagrams`: both maps on the grids of
  ``diffphase phase-diagram spectral`` (:data:`DEFAULT_AXES`), with the share of each phase
  (:func:`phase_fractions`) and the solve time, as a :class:`PhaseDiagrams`.

Edges come from the exact solver for every row of the grid (never from the per-group
Marchenko–Pastur approximation); the gap/phase formulas are the compiled symbolic ones.

The spectrum of the spectral model at one noise level, as tables (THEORY A).

Contract: :func:`resolve_tau` gives ``tau = D/a^2`` from ``tau`` or from a time of the ``ou`` or
``ve`` process; :func:`spectrum_tables` gives what ``diffphase spectrum`` reports: the summary of
:func:`~diffphase.solvers.spectral.spectral_summary` (edges, gaps, phase, dimension read-out) with
the time and the solver's convergence counts, and the densities of ``C`` and of ``Jn = D J`` on a
grid clustered at the bulk edges (:func:`bulk_grid`), or the atoms at the latent variances for an
orthonormal subspace. The normal atom ``1 - alpha`` is not in the tables. A density the solver
leaves undefined is NaN with a ``nan_reason`` beside it (:mod:`diffphase.studies.tables`).

Sizes: :func:`plan_spectrum` checks every argument of :func:`spectrum_tables` and its estimated
cost (:func:`spectrum_cost`) against a memory budget before anything is solved, and
:func:`phase_diagram_cost` does the same for both maps; ``tau`` is allowed in
:data:`TAU_RANGE` times the largest latent variance (beyond, the Jacobian eigenvalues
``-tau/(tau + lambda)`` round to 0 or -1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, require_choice, require_in_range, require_int
from ..models import REVERSIBLE_PROCESSES, SUBSPACES
from ..process import get_process, time_from_tau
from ..solvers import spectral as solver
from .budget import CostTerm, check_cost, product
from .tables import flag_nonfinite_columns, flag_summary

#: ``tau`` allowed, relative to the largest latent variance: the Jacobian eigenvalues
#: ``-tau / (tau + lambda)`` are resolved from 0 and from -1 in double precision
TAU_RANGE = (1e-280, 1e12)
#: why a summary value of :func:`spectrum_tables` can be undefined
SUMMARY_REASONS = {"window": "the gap never reaches delta (see window_exists)",
                   "consolidation_below_tau": "the spectrum reaches 0: no consolidation phase"}


@dataclass
class Diagram:
    """Columns of a tidy grid (one entry per point) plus its axes and solver counts."""

    columns: dict[str, np.ndarray]
    axes: dict[str, np.ndarray]
    counts: dict = field(default_factory=dict)


def _tau_grid(tau_min: float, tau_max: float, n_tau: int) -> np.ndarray:
    if not (0 < tau_min < tau_max < np.inf):
        raise ParameterError("tau range", (tau_min, tau_max), "0 < tau_min < tau_max < inf")
    n_tau = require_int("n_tau", n_tau, minimum=2)
    return np.geomspace(tau_min, tau_max, n_tau)


def alpha_time_diagram(
    alphas=None, taus=None, variance: float = 1.0, delta: float = 0.1
) -> Diagram:
    alphas = np.linspace(0.02, 1.0, 50) if alphas is None else np.asarray(alphas, dtype=float)
    taus = _tau_grid(1e-4, 1e4, 161) if taus is None else np.asarray(taus, dtype=float)
    solver.check_delta(delta)
    if np.any((alphas <= 0) | (alphas > 1)):
        raise ParameterError("alpha", alphas, "in (0, 1]")
    phase = np.empty((alphas.size, taus.size), dtype=object)
    manifold_gap = np.empty((alphas.size, taus.size))
    dimension = np.empty((alphas.size, taus.size))
    n_bulks = np.empty(alphas.size, dtype=int)
    threshold = solver.formula("dimension_threshold", taus, delta)
    for row, alpha in enumerate(alphas):
        law = solver.VarianceLaw.from_groups([alpha], [variance])
        edges = solver.spectrum_edges(law)
        n_bulks[row] = edges.shape[0]
        phase[row] = solver.phase_of(taus, edges, delta)
        manifold_gap[row] = solver.formula("manifold_gap", edges[0, 0], taus)
        dimension[row] = solver.spectral_mass_above(threshold, law)
    grid_alpha, grid_tau = np.meshgrid(alphas, taus, indexing="ij")
    return Diagram(
        columns=flag_nonfinite_columns({
            "alpha": grid_alpha.ravel(),
            "variance": np.full(grid_tau.size, variance),
            "tau": grid_tau.ravel(),
            "t_ou": time_from_tau(grid_tau.ravel(), "ou"),
            "phase": phase.ravel(),
            "manifold_gap": manifold_gap.ravel(),
            "dimension_fraction": dimension.ravel(),
        }),
        axes={"alpha": alphas, "tau": taus},
        counts={"rows": int(alphas.size), "bulks_per_row": sorted(set(n_bulks.tolist()))},
    )


def ratio_time_diagram(ratios=None, taus=None, fractions=(0.2, 0.2), delta: float = 0.1) -> Diagram:
    ratios = np.geomspace(1e-3, 0.5, 50) if ratios is None else np.asarray(ratios, dtype=float)
    taus = _tau_grid(1e-5, 1e3, 161) if taus is None else np.asarray(taus, dtype=float)
    solver.check_delta(delta)
    if np.any((ratios <= 0) | (ratios >= 1)):
        raise ParameterError("variance ratio", ratios, "in (0, 1)")
    a1, a2 = (require_in_range("fractions", f, 0, 1, closed=(False, True)) for f in fractions)
    shape = (ratios.size, taus.size)
    phase = np.empty(shape, dtype=object)
    manifold_gap, gap, gap_visible = np.empty(shape), np.zeros(shape), np.zeros(shape, bool)
    n_bulks = np.empty(ratios.size, dtype=int)
    for row, r in enumerate(ratios):
        law = solver.VarianceLaw.from_groups([a1, a2], [1.0, r])
        edges = solver.spectrum_edges(law)
        n_bulks[row] = edges.shape[0]
        phase[row] = solver.phase_of(taus, edges, delta)
        manifold_gap[row] = solver.formula("manifold_gap", edges[0, 0], taus)
        if edges.shape[0] > 1:
            gap[row] = solver.formula("gap", edges[1, 0], edges[0, 1], taus)
            gap_visible[row] = gap[row] >= delta
    grid_r, grid_tau = np.meshgrid(ratios, taus, indexing="ij")
    return Diagram(
        columns=flag_nonfinite_columns({
            "variance_ratio": grid_r.ravel(),
            "tau": grid_tau.ravel(),
            "t_ou": time_from_tau(grid_tau.ravel(), "ou"),
            "phase": phase.ravel(),
            "n_bulks": np.repeat(n_bulks, taus.size),
            "manifold_gap": manifold_gap.ravel(),
            "intermediate_gap": gap.ravel(),
            "intermediate_gap_visible": gap_visible.ravel(),
        }),
        axes={"variance_ratio": ratios, "tau": taus},
        counts={
            "rows": int(ratios.size),
            "rows_with_separate_bulks": int(np.count_nonzero(n_bulks > 1)),
        },
    )


# ----------------------------------------------------------------------------- both maps
#: ``(first, last)`` of the axes of ``diffphase phase-diagram spectral`` (``alpha`` linear, the
#: others geometric); the ratio map has two groups of fractions ``RATIO_FRACTIONS``
DEFAULT_AXES = {"alpha": (0.02, 1.0), "alpha_tau": (1e-4, 1e4), "variance_ratio": (1e-3, 0.5),
                "ratio_tau": (1e-5, 1e3)}
RATIO_FRACTIONS = (0.2, 0.2)


def phase_diagram_cost(n_tau: int = 161, n_rows: int = 50) -> list[CostTerm]:
    """Estimated memory and run time of :func:`phase_diagrams` with the tables written and the
    figure drawn (``diffphase phase-diagram spectral``): per row of each map a solve of the
    bulk edges and of the spectral mass; per grid point (``n_rows x n_tau``, two maps) the
    columns, the CSV text and the figure's cells (measured: about 800 bytes and 0.25 ms)."""
    points = product(n_tau, n_rows)
    return [CostTerm("the solves per row", "n_rows", n_rows, 0.0, 0.2 * float(n_rows)),
            CostTerm("the grid points of both maps (tables, CSV text and figure cells)",
                     "n_tau" if n_tau >= n_rows else "n_rows",
                     n_tau if n_tau >= n_rows else n_rows,
                     64 * 2**20 + 1200.0 * points, 30.0 + 5e-4 * points)]


def phase_diagram_axes(n_tau: int = 161, n_rows: int = 50,
                       max_memory: float | None = None) -> dict[str, np.ndarray]:
    """:data:`DEFAULT_AXES` with ``n_tau >= 2`` points along ``tau`` and ``n_rows >= 2`` along
    ``alpha`` and the variance ratio; a grid beyond the budgets (:func:`phase_diagram_cost`,
    ``max_memory`` bytes) is refused."""
    n_tau = require_int("n_tau", n_tau, minimum=2)
    n_rows = require_int("n_rows", n_rows, minimum=2)
    check_cost(phase_diagram_cost(n_tau, n_rows), max_memory)
    sizes = {"alpha": n_rows, "alpha_tau": n_tau, "variance_ratio": n_rows, "ratio_tau": n_tau}
    return {name: (np.linspace if name == "alpha" else np.geomspace)(*ends, sizes[name])
            for name, ends in DEFAULT_AXES.items()}


def phase_fractions(phases) -> dict[str, float]:
    """Phase name -> share of the grid points in that phase."""
    values, counts = np.unique(np.asarray(phases).astype(str), return_counts=True)
    return {v: float(c / counts.sum()) for v, c in zip(values, counts, strict=True)}


@dataclass
class PhaseDiagrams:
    """Both maps of ``diffphase phase-diagram spectral`` and the time their solve took."""

    alpha_time: Diagram
    ratio_time: Diagram
    solve_seconds: float

    def summary(self) -> dict:
        ratio = self.ratio_time.columns
        return {"alpha_time": {"counts": self.alpha_time.counts, "phase_fractions":
                               phase_fractions(self.alpha_time.columns["phase"])},
                "ratio_time": {"counts": self.ratio_time.counts,
                               "phase_fractions": phase_fractions(ratio["phase"]),
                               "visible_gap_fraction":
                                   float(np.mean(ratio["intermediate_gap_visible"]))},
                "solve_seconds": self.solve_seconds}


def phase_diagrams(delta: float = 0.1, axes: dict[str, np.ndarray] | None = None
                   ) -> PhaseDiagrams:
    """:func:`alpha_time_diagram` (variance 1) and :func:`ratio_time_diagram` (fractions
    :data:`RATIO_FRACTIONS`) at resolution ``delta`` on ``axes`` (:func:`phase_diagram_axes`)."""
    delta = solver.check_delta(delta)
    axes = phase_diagram_axes() if axes is None else axes
    start = time.perf_counter()
    alpha = alpha_time_diagram(alphas=axes["alpha"], taus=axes["alpha_tau"], delta=delta)
    ratio = ratio_time_diagram(ratios=axes["variance_ratio"], taus=axes["ratio_tau"],
                               fractions=RATIO_FRACTIONS, delta=delta)
    return PhaseDiagrams(alpha, ratio, time.perf_counter() - start)


def resolve_tau(tau: float | None = None, t: float | None = None, process: str = "ve") -> float:
    """``tau`` itself (finite, > 0) or converted from a time ``t`` of ``process`` (an error names
    ``t`` when its ``tau`` is not a finite number > 0); exactly one of the two must be given."""
    if (tau is None) == (t is None):
        raise ParameterError("tau/t", {"tau": tau, "t": t}, "exactly one of tau or t")
    proc = get_process(process)
    if tau is None:
        with np.errstate(over="ignore", under="ignore"):
            value = float(proc.tau_from_time(t))
        if not (np.isfinite(value) and value > 0):
            largest = float(np.log(np.finfo(float).max) / 2) if process == "ou" else np.inf
            raise ParameterError("t", t, f"a time of the {process} process whose tau is finite "
                                 f"and > 0 (0 < t < {largest:.4g})")
        return value
    if not (np.isfinite(tau) and tau > 0):
        raise ParameterError("tau", tau, "> 0")
    return float(tau)


def bulk_grid(edges, points: int = 1500) -> np.ndarray:
    """About ``points`` values over the bulks ``[[l, u], ...]``, cosine-spaced in each (so
    clustered at every edge; at least 10 per bulk; log-cosine-spaced in a bulk whose ``u / l``
    exceeds :data:`~diffphase.solvers.spectral.LOG_MAP_RATIO`, so every decade is sampled),
    ascending, without duplicates or zeros."""
    edges = np.asarray(edges, dtype=float).reshape(-1, 2)
    per_bulk = max(require_int("points", points, minimum=1) // max(len(edges), 1), 10)
    theta = np.linspace(0, np.pi, per_bulk)
    grid = np.unique(np.concatenate([
        solver._log_bulk_map(lo, hi, theta)[0] if 0 < lo and hi > solver.LOG_MAP_RATIO * lo
        else lo + (hi - lo) * (1 - np.cos(theta)) / 2 for lo, hi in edges]))
    return grid[grid > 0]


@dataclass
class SpectrumTables:
    """The summary and the columns of ``C`` (``lambda``) and ``Jn`` (``jn``), each with its
    ``density`` (random subspace) or atom ``mass`` (orthonormal)."""

    summary: dict
    covariance: dict[str, np.ndarray]
    jacobian: dict[str, np.ndarray]


@dataclass(frozen=True)
class SpectrumPlan:
    """Checked arguments of :func:`spectrum_tables` (see :func:`plan_spectrum`)."""

    law: solver.VarianceLaw
    tau: float
    delta: float
    subspace: str
    dim: int | None
    points: int
    process: str


def spectrum_cost(points: int, subspace: str = "random") -> list[CostTerm]:
    """Estimated memory and run time of :func:`spectrum_tables` with its tables written: per
    point of the density grid, the Stieltjes solves of ``C`` and ``Jn`` and their columns and CSV
    text (measured: about 240 bytes and 0.07 ms; an orthonormal subspace has no grid)."""
    if subspace == "orthonormal":
        return [CostTerm("the atoms", "points", points, 0.0, 0.0)]
    return [CostTerm("the density grid (about 320 bytes a grid point)", "points", points,
                     320.0 * float(points), 1e-4 * float(points))]


def plan_spectrum(law, tau: float, delta: float = 0.1, subspace: str = "random",
                  dim: int | None = None, points: int = 1500, process: str = "ve",
                  max_memory: float | None = None, tau_name: str = "tau") -> SpectrumPlan:
    """Check the arguments of :func:`spectrum_tables` and its cost, before anything is solved.

    ``tau`` must lie in :data:`TAU_RANGE` times the largest latent variance; its error names
    ``tau_name`` (``t`` when ``tau`` came from a time). ``max_memory``: the budget in bytes.
    """
    delta = solver.check_delta(delta)
    points = require_int("points", points, minimum=10)
    if dim is not None:
        dim = require_int("dim", dim, minimum=1)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    require_choice("subspace", subspace, SUBSPACES)
    law = solver.as_law(law)
    scale = float(np.max(law.variances))
    low, high = (bound * scale for bound in TAU_RANGE)
    if not (np.isfinite(tau) and low <= tau <= high):
        raise ParameterError(tau_name, tau, f"a value with tau in [{low:.4g}, {high:.4g}] "
                             f"({TAU_RANGE[0]:g} to {TAU_RANGE[1]:g} x the largest variance "
                             f"{scale:g}; beyond, the Jacobian eigenvalues round to 0 or -1)")
    check_cost(spectrum_cost(points, subspace), max_memory)
    return SpectrumPlan(law, float(tau), delta, subspace, dim, points, process)


def spectrum_tables(law, tau: float, delta: float = 0.1, subspace: str = "random",
                    dim: int | None = None, points: int = 1500,
                    process: str = "ve", max_memory: float | None = None) -> SpectrumTables:
    """Summary and densities of ``C`` and ``Jn`` at ``tau``.

    Parameters
    ----------
    law : a :class:`~diffphase.solvers.spectral.VarianceLaw` (groups or a continuous law).
    tau, delta : effective noise variance (:func:`resolve_tau`) and resolution in ``(0, 1)``.
    subspace : ``random`` (bulks) or ``orthonormal`` (atoms at the variances).
    dim : ambient dimension, to add ``dimension_count = d x mass`` (None: not added).
    points : density grid size (>= 10); ``process``: of the summary's time ``t``.
    max_memory : memory budget in bytes (default: half the physical memory).
    """
    return run_spectrum(plan_spectrum(law, tau, delta, subspace, dim, points, process,
                                      max_memory))


def run_spectrum(plan: SpectrumPlan) -> SpectrumTables:
    """The tables of a checked :class:`SpectrumPlan`. Grid points whose Jacobian eigenvalue
    rounds to 0 or -1 (at the ends of :data:`TAU_RANGE`) are left out of the ``Jn`` table."""
    law, tau = plan.law, plan.tau
    summary = solver.spectral_summary(law, tau, plan.delta, plan.subspace, plan.dim)
    tau = summary["tau"]
    summary.update(process=plan.process, t=float(get_process(plan.process).time_from_tau(tau)))
    for gap in summary["intermediate_gaps"]:
        gap["window_exists"] = gap.get("window") is not None
    summary = flag_summary(summary, SUMMARY_REASONS)
    if plan.subspace == "orthonormal":
        lam, mass = np.sort(law.variances), law.fractions[np.argsort(law.variances)]
        summary["convergence"] = {"points": 0, "failed": 0}
        jn = solver.formula("jacobian_eigenvalue", lam, tau)
        return SpectrumTables(summary, {"lambda": lam, "mass": mass}, {"jn": jn, "mass": mass})
    lam = bulk_grid(summary["edges"], plan.points)
    rho_c, res_c = solver.covariance_density(lam, law)
    jn = np.sort(solver.formula("jacobian_eigenvalue", lam, tau))
    jn = jn[(jn > -1.0) & (jn < 0.0)]
    rho_j, res_j = solver.jacobian_density(jn, tau, law)
    summary["convergence"] = {"covariance": res_c.summary(), "jacobian": res_j.summary()}
    why = "the density solver did not converge here (counted in convergence)"
    return SpectrumTables(summary,
                          flag_nonfinite_columns({"lambda": lam, "density": rho_c},
                                                 {"density": why}),
                          flag_nonfinite_columns({"jn": jn, "density": rho_j},
                                                 {"density": why}))
