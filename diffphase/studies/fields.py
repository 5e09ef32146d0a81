"""What ``diffphase diagnose`` computes for a trained network, and its comparison with theory
when the training set is known (THEORY E, with A and B for the predictions).

Contract
--------
* :func:`network_field`: a ``--torch package.module:factory`` or ``--diffusers DIR`` network as a
  :class:`~diffphase.simulate.network_scores.NetworkScore` (the loaders of
  :mod:`diffphase.simulate.network_loaders`; their errors name the option).
* :func:`check_network_times`: every requested time (and the start) of the process has its
  ``tau`` inside the range the network was trained on; else an error naming ``times`` or
  ``t_start``. :func:`spectra_route`: ``dense`` or ``matrix-free`` (``auto``: matrix-free for
  torch fields of more than :data:`~diffphase.simulate.fields.DENSE_DIMENSION_LIMIT` dimensions).
  :func:`dense_network_cost`: the network's activations in a dense reverse-mode Jacobian.
* :func:`training_rows`: the training set (``data`` / ``dataset`` of
  :func:`~diffphase.data.loaders.load_rows`, rows in the network's units and input layout),
  its size checked from the headers against the network's dimension and the memory budget
  before it is read.
* :func:`data_comparison`: per time point, beside the network's diagnostics, (a) the exact
  normalized Jacobian of a Gaussian with the data's covariance (eigenvalues ``-tau/(tau +
  lambda_i)``, THEORY A with the covariance eigenvalues as variances: its local dimension is the
  number of ``lambda_i > tau (1/threshold - 1)``), (b) the THEORY A dimension read-out of the
  data's variance law (:func:`~diffphase.studies.analyze_predict.data_variance_law` and
  :func:`~diffphase.studies.analyze_predict.spectral_timeline` at ``delta = 1 - threshold``, the
  read-out that counts the same directions), and (c) the exact empirical score of the rows along
  its own backward trajectories (THEORY B; symmetric ``Jn``, so its singular values are the
  absolute eigenvalues). Each gives the local dimension, the ``top_k`` largest eigenvalues of
  ``Jn`` and the CDF of its eigenvalues on a shared grid.
* :func:`matrix_free_tables` and :func:`comparison_table`: the tidy columns written by the
  command.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.loaders import check_source, load_rows, peek_shape, prepare_rows
from ..errors import ParameterError
from ..process import Process
from ..simulate.fields import DENSE_DIMENSION_LIMIT, CostTerm, check_cost, source_cost_terms
from ..simulate.integrators import log_tau_grid, probability_flow, start_points
from .analyze_predict import data_spectrum, data_variance_law, spectral_timeline

#: the grid of the eigenvalue CDFs compared across sources
COMPARISON_GRID = np.linspace(-1.1, 0.1, 241)


# --------------------------------------------------------------------------- the network
def network_field(*, torch: str | None = None, diffusers=None, dtype: str = "float32",
                  device: str = "cpu"):
    """The network of ``torch`` (``package.module:factory``) or ``diffusers`` (a folder)."""
    from ..simulate.network_loaders import load_diffusers, load_torch_factory

    if (torch is None) == (diffusers is None):
        raise ParameterError("--torch/--diffusers", f"{torch}/{diffusers}", "exactly one")
    if torch is not None:
        return load_torch_factory(torch, dtype=dtype, device=device)
    return load_diffusers(diffusers, dtype=dtype, device=device)


def check_network_times(field, process: Process, times, t_start: float | None) -> None:
    """Every time (and ``t_start``) inside the network's trained range of ``tau``."""
    low, high = field.levels.tau_range
    for name, values in (("times", times), ("t_start", [] if t_start is None else [t_start])):
        for t in np.atleast_1d(values):
            if not field.levels.contains(float(process.tau_from_time(t))):
                allowed = (f"a time whose tau = D_t/a_t^2 is in [{low:.6g}, {high:.6g}], the "
                           "range the network was trained on (its scheduler's)")
                raise ParameterError(name, float(t), allowed)


def spectra_route(spectra: str, field) -> str:
    """``dense`` or ``matrix-free`` for ``spectra`` (``auto``, ``dense``, ``matrix-free``) and
    the score ``field`` (None: a score that is not a torch network)."""
    torch_field = field is not None and (hasattr(field, "torch_score")
                                         or type(field).__name__ == "TorchScore")
    if spectra == "matrix-free" and not torch_field:
        raise ParameterError("spectra", spectra, "dense (or auto) unless the score is a torch "
                             "network (--torch or --diffusers): matrix-free spectra need "
                             "Jacobian-vector products")
    if spectra == "auto":
        return "matrix-free" if torch_field and field.dim > DENSE_DIMENSION_LIMIT else "dense"
    return spectra


def dense_network_cost(field, points: int) -> list[CostTerm]:
    """The network's saved activations while its dense Jacobian is formed (``batch_rows``
    (point, row) pairs per reverse pass)."""
    from ..simulate.matrix_free_fields import product_memory

    low, _ = field.levels.tau_range
    memory = product_memory(field, 1.0, 2.0 * low)
    rows = min(field.batch_rows, points * field.dim)
    return [CostTerm("the network's reverse passes", ("points",),
                     memory.reverse * rows + memory.shared, 0.0)]


# --------------------------------------------------------------------------- training rows
def training_rows(data=None, dataset=None, *, key=None, limit=None, dim: int,
                  max_memory: float | None = None) -> tuple[np.ndarray, dict]:
    """The training rows ``(n, dim)`` and a description; the shape is read from the headers
    and checked against ``dim`` and the memory of the empirical score first."""
    source = check_source(data, dataset, key, limit)
    rows, features = peek_shape(data, dataset, key, source["limit"])
    if features != dim:
        raise ParameterError("data", f"rows of {features} features", f"rows of {dim} features, "
                             "the network's input size (in its units and layout)")
    check_cost(source_cost_terms("empirical", dim, rows), {"samples": rows, "dim": dim},
               max_memory=max_memory)
    loaded = load_rows(source.get("path"), source.get("dataset"), source["key"], source["limit"])
    where = source.get("dataset") or ("array" if isinstance(data, np.ndarray) else str(data))
    return loaded.rows, {"source": where, "rows": int(loaded.rows.shape[0]),
                         "features": int(features)}


# --------------------------------------------------------------------------- predictions
def _cdf(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Empirical CDF of ``values`` (last axis, averaged over the others) on ``grid``."""
    values = np.sort(np.atleast_2d(values), axis=-1)
    counts = np.stack([np.searchsorted(row, grid, side="right") for row in values])
    return counts.mean(axis=0) / values.shape[-1]


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` largest of each row (descending), averaged over the rows."""
    ordered = -np.sort(-np.atleast_2d(values), axis=-1)
    return ordered[:, :count].mean(axis=0)


def gaussian_predictions(eigenvalues: np.ndarray, taus, threshold: float, top_k: int,
                         grid: np.ndarray = COMPARISON_GRID) -> list[dict]:
    """Per ``tau``: the exact ``Jn`` of a Gaussian with these covariance eigenvalues (THEORY A,
    finite ``d``): local dimension, the ``top_k`` largest eigenvalues and the CDF."""
    lam = np.asarray(eigenvalues, dtype=float)
    out = []
    for tau in np.atleast_1d(taus):
        jn = -tau / (tau + lam)
        out.append({"tau": float(tau), "local_dimension": int(np.sum(np.abs(jn) < threshold)),
                    "eigenvalues_top": _top(jn, top_k), "cdf": _cdf(jn, grid)})
    return out


def law_readout(eigenvalues: np.ndarray, taus, threshold: float) -> np.ndarray:
    """THEORY A dimension read-out of the data's variance law at ``delta = 1 - threshold``
    (the mass of ``Jn`` above ``-1 + delta`` times ``d``: the directions with singular value
    below ``threshold``); NaN where ``threshold >= 1`` leaves no read-out."""
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    if not 0.0 < threshold < 1.0:
        return np.full(taus.size, np.nan)
    dim, delta = eigenvalues.size, 1.0 - threshold
    law = data_variance_law(eigenvalues, dim, delta)
    return np.asarray(spectral_timeline(law, dim, taus, delta, "ve")["dimension"], dtype=float)


def empirical_along_trajectories(rows: np.ndarray, process: Process, times, *, points: int,
                                 rng: np.random.Generator, t_start: float | None,
                                 steps_per_efold: int, threshold: float, top_k: int,
                                 grid: np.ndarray = COMPARISON_GRID) -> list[dict]:
    """The exact empirical score of ``rows`` (THEORY B) along ``points`` backward trajectories
    started from noised rows: per time, the local dimension (most common and mean over points),
    the ``top_k`` largest eigenvalues of ``Jn`` and their CDF."""
    from ..simulate.empirical import EmpiricalScore

    engine = EmpiricalScore(rows)
    times = np.asarray(times, dtype=float)
    start = float(times[0]) if t_start is None else float(t_start)

    x0 = start_points(points, rows.shape[1], process, start, rng, sampler=rows_sampler(rows))
    flow = probability_flow(engine.score, x0, process,
                            log_tau_grid(process, start, times, steps_per_efold),
                            record_times=times)
    along = dict(zip(flow.times.tolist(), flow.states, strict=True))
    out = []
    for t in times:
        a, D = float(process.signal_scale(t)), float(process.noise_variance(t))
        eig = np.asarray(engine.jacobian_spectrum(along[float(t)], a, D).eigenvalues)
        counts = np.sum(np.abs(eig) < threshold, axis=1)
        values, frequency = np.unique(counts, return_counts=True)
        out.append({"t": float(t), "tau": D / (a * a),
                    "local_dimension": int(values[np.argmax(frequency)]),
                    "local_dimension_mean": float(counts.mean()),
                    "eigenvalues_top": _top(eig, top_k), "cdf": _cdf(eig, grid)})
    return out


def network_comparison_entry(summary: dict, top_k: int,
                             grid: np.ndarray = COMPARISON_GRID) -> dict:
    """The network's values of one time point in the comparison's form (dense or matrix-free
    summary): local dimension (and its error), top eigenvalues of ``Jn`` (of its symmetric
    part when matrix-free), their CDF on ``grid`` and the non-conservativeness."""
    if summary.get("spectra_route") == "matrix-free":
        cdf = summary["eigenvalue_cdf"]
        return {"local_dimension": summary["local_dimension_mean"],
                "local_dimension_error": summary["local_dimension_error"],
                "eigenvalues_top": np.asarray(summary["eigenvalues_top"])[:top_k],
                "cdf": np.interp(grid, cdf["grid"], cdf["cdf"], left=0.0, right=1.0),
                "cdf_error": np.interp(grid, cdf["grid"], cdf["error"]),
                "nonconservativeness": summary["nonconservativeness"],
                "nonconservativeness_error": summary["nonconservativeness_error"]}
    eig = np.asarray(summary["eigenvalues_real"])
    return {"local_dimension": float(summary["local_dimension_mean"]),
            "local_dimension_error": 0.0, "eigenvalues_top": _top(eig, top_k),
            "cdf": _cdf(eig, grid), "nonconservativeness": summary["nonconservativeness"]}


def data_comparison(rows: np.ndarray, summaries: Sequence[dict], process: Process, *,
                    points: int, rng: np.random.Generator, t_start: float | None,
                    steps_per_efold: int, threshold: float, top_k: int) -> dict:
    """The network's time points (``summaries``) beside the three predictions of the module
    contract; ``{"eigenvalues", "rank", "grid", "time_points": [{"t", "tau", "network",
    "empirical", "gaussian", "theory_readout"}]}``."""
    centred = prepare_rows(rows, "none").rows
    spectrum = data_spectrum(centred)
    times = [s["t"] for s in summaries]
    taus = np.array([s["tau"] for s in summaries])
    gaussian = gaussian_predictions(spectrum.eigenvalues, taus, threshold, top_k)
    readout = law_readout(spectrum.eigenvalues, taus, threshold)
    empirical = empirical_along_trajectories(
        rows, process, times, points=points, rng=rng, t_start=t_start,
        steps_per_efold=steps_per_efold, threshold=threshold, top_k=top_k)
    entries = [{"t": s["t"], "tau": s["tau"], "network": network_comparison_entry(s, top_k),
                "empirical": e, "gaussian": g, "theory_readout": float(r)}
               for s, e, g, r in zip(summaries, empirical, gaussian, readout, strict=True)]
    return {"eigenvalues": spectrum.eigenvalues, "rank": spectrum.rank,
            "grid": COMPARISON_GRID, "time_points": entries}


def rows_sampler(rows: np.ndarray):
    """``sample(n, rng)``: ``n`` training rows drawn uniformly (exact start points)."""
    def sample(n: int, generator: np.random.Generator) -> np.ndarray:
        return rows[generator.integers(0, rows.shape[0], size=n)]

    return sample


# --------------------------------------------------------------------------- tables
def comparison_brief(comparison: dict) -> dict:
    """A comparison without its CDFs: per time, each source's local dimension, top eigenvalues
    and non-conservativeness."""
    keys = ("local_dimension", "local_dimension_error", "local_dimension_mean",
            "eigenvalues_top", "nonconservativeness", "nonconservativeness_error")

    def brief(values: dict) -> dict:
        return {k: v for k, v in values.items() if k in keys}

    points = [{"t": e["t"], "tau": e["tau"], "network": brief(e["network"]),
               "empirical": brief(e["empirical"]), "gaussian": brief(e["gaussian"]),
               "theory_readout": e["theory_readout"]} for e in comparison["time_points"]]
    return {k: v for k, v in comparison.items() if k not in ("grid", "time_points")} | {
        "time_points": points}



def comparison_table(comparison: dict, time_column: str, top_k: int) -> dict:
    """One row per time point and source (``network``, ``empirical``, ``gaussian``,
    ``theory-A``): local dimension, its error, non-conservativeness and the ``top_k`` largest
    eigenvalues of ``Jn`` (NaN where a source has no such value)."""
    columns: dict[str, list] = {time_column: [], "tau": [], "source": [], "local_dimension": [],
                                "local_dimension_error": [], "nonconservativeness": []}
    tops = [f"eigenvalue_top_{i + 1}" for i in range(top_k)]
    columns.update({name: [] for name in tops})
    for entry in comparison["time_points"]:
        sources = {"network": entry["network"], "empirical": entry["empirical"],
                   "gaussian": entry["gaussian"],
                   "theory-A": {"local_dimension": entry["theory_readout"]}}
        for source, values in sources.items():
            columns[time_column].append(entry["t"])
            columns["tau"].append(entry["tau"])
            columns["source"].append(source)
            columns["local_dimension"].append(float(values["local_dimension"]))
            columns["local_dimension_error"].append(values.get("local_dimension_error", np.nan))
            columns["nonconservativeness"].append(
                values.get("nonconservativeness", np.nan if source == "network" else 0.0))
            top = np.full(top_k, np.nan)
            found = np.asarray(values.get("eigenvalues_top", []), dtype=float)[:top_k]
            top[: found.size] = found
            for name, value in zip(tops, top, strict=True):
                columns[name].append(float(value))
    return columns


def matrix_free_tables(summaries: Sequence[dict], time_column: str
                       ) -> tuple[dict, dict, dict]:
    """``(extremes, per_time, density)`` of matrix-free summaries: one row per time, end
    (``top``, ``bottom``) and index with the singular values of ``Jn`` and eigenvalues of its
    symmetric part and their Ritz bounds; one row per time; one row per time, spectrum and grid
    point of the CDFs with their errors."""
    extremes: dict[str, list] = {k: [] for k in (
        time_column, "tau", "end", "index", "singular_value_normalized", "singular_value_bound",
        "eigenvalue_symmetric_normalized", "eigenvalue_symmetric_bound", "finite")}
    for s in summaries:
        for end in ("top", "bottom"):
            values = [np.asarray(s[key], dtype=float) for key in (
                f"singular_values_{end}", f"singular_values_{end}_error", f"eigenvalues_{end}",
                f"eigenvalues_{end}_error")]
            for i, row in enumerate(zip(*values, strict=True)):
                for key, value in zip(("singular_value_normalized", "singular_value_bound",
                                       "eigenvalue_symmetric_normalized",
                                       "eigenvalue_symmetric_bound"), row, strict=True):
                    extremes[key].append(float(value))
                extremes[time_column].append(s["t"])
                extremes["tau"].append(s["tau"])
                extremes["end"].append(end)
                extremes["index"].append(i + 1)
                extremes["finite"].append(bool(np.all(np.isfinite(row))))
    keys = ("model_time", "local_dimension", "local_dimension_mean", "local_dimension_error",
            "nonconservativeness", "nonconservativeness_error", "gap_lower", "gap_upper",
            "gap_lower_error", "gap_upper_error", "ks_error", "jacobian_products", "n_nonfinite")
    per_time = {time_column: [s["t"] for s in summaries], "tau": [s["tau"] for s in summaries]}
    for key in keys:
        if key in summaries[0]:
            per_time[key] = [np.nan if s.get(key) is None else s[key] for s in summaries]
    density: dict[str, list] = {k: [] for k in (time_column, "tau", "spectrum", "x", "cdf",
                                                "cdf_error")}
    for s in summaries:
        for spectrum, key in (("eigenvalue_symmetric", "eigenvalue_cdf"),
                              ("singular_value", "singular_value_cdf")):
            grid = np.asarray(s[key]["grid"])
            density[time_column] += [s["t"]] * grid.size
            density["tau"] += [s["tau"]] * grid.size
            density["spectrum"] += [spectrum] * grid.size
            density["x"] += grid.tolist()
            density["cdf"] += np.asarray(s[key]["cdf"]).tolist()
            density["cdf_error"] += np.asarray(s[key]["error"]).tolist()
    return extremes, per_time, density
