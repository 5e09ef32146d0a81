"""The summary, the comparisons and the tables of ``diffphase analyze`` (THEORY A and B).

Contract
--------
:func:`build_result` turns what :func:`~diffphase.studies.analyze.run_analysis` found into an
:class:`~diffphase.studies.analyze.AnalysisResult`: the JSON summary, the tidy tables (covariance
spectrum, timeline per ``tau``, collapse curves, REM bands, density of ``Jn``) and the arrays of
the figure. Every non-finite number has a flag beside it (:mod:`diffphase.studies.tables`).

:func:`comparisons` sets each prediction beside its measurement, as ``agrees`` / ``disagrees``
within a stated tolerance (the rules of :mod:`diffphase.validate.memorization`):

* collapse: ``|ln(tau_half / tau_C)|`` within half the crossover's 0.2-0.8 width in ``ln tau``
  (at least 0.05; ``ln 2`` when the width is not resolved), plus three standard errors for the
  entropy route;
* dimension read-out at each measured ``tau``: within one direction or 10% of the prediction,
  plus three standard errors of the measured mean (the prediction is the exact score of a Gaussian
  with the data's covariance, which the empirical score approaches above the collapse);
* REM condensation per band: within a factor 2 in ``tau``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..solvers.memorization import process_time
from ..solvers.spectral import spectrum_edges
from .tables import flag_nonfinite_columns, flag_summary


@dataclass
class AnalysisResult:
    """What :func:`~diffphase.studies.analyze.run_analysis` found: ``summary`` (the JSON summary,
    non-finite values flagged), ``tables`` (file stem -> tidy columns, flagged) and ``figure``
    (the arrays the figure of :mod:`diffphase.plotting.analyze` draws)."""

    summary: dict
    tables: dict[str, dict] = field(default_factory=dict)
    figure: dict = field(default_factory=dict)


#: why a value of the summary or of a table can be undefined
REASONS = {
    "tau_S": "no speciation: the largest eigenvalue is <= 1",
    "t_S": "no speciation: the largest eigenvalue is <= 1",
    "tau_C": "the collapse equation did not converge (collapse_converged)",
    "t_C": "the collapse equation did not converge (collapse_converged)",
    "tau_C_entropy": "the entropy-route residual has no root in its bracket, or too few rows",
    "tau_C_entropy_stderr": "no entropy-route root",
    "t_C_entropy": "no entropy-route root",
    "stderr": "no entropy-route root", "stderr_ln_tau": "no entropy-route root",
    "tau_C_reference": "no root with the largest reference",
    "extrapolation_ln_tau": "no entropy-route root",
    "tau_half": "the own weight does not cross 1/2 inside the tau grid",
    "t_half": "the own weight does not cross 1/2 inside the tau grid",
    "tau_0.8": "the own weight does not cross 0.8 inside the tau grid",
    "tau_0.2": "the own weight does not cross 0.2 inside the tau grid",
    "width_ln_tau": "the own weight does not cross both 0.2 and 0.8 inside the tau grid",
    "tau_c_measured": "the participation ratio does not cross 1/2 inside the tau grid, or N is "
                      "not the number of rows (measured for the rows only)",
    "tau_c_rem_raw": "the REM criterion has no root", "tau_c_rem_sphere": "the REM criterion "
    "has no root",
    "prediction": "the prediction is undefined", "measurement": "the measurement is undefined",
    "error": "prediction or measurement undefined",
    "dimension_measured": "measured only at the jacobian_taus points of the timeline",
    "dimension_measured_stderr": "measured only at the jacobian_taus points of the timeline",
    "jn_mean_abs_difference": "measured only at the jacobian_taus points of the timeline",
    "dimension_measured_probes": "measured only at the jacobian_taus points of the timeline",
    "tau_C_gaussian": "the collapse equation did not converge",
}
CONVENTIONS = {
    "tau": "D/a^2 (noise-to-signal ratio; the same in every process)",
    "covariance": "C = X^T X / n of the centred (and scaled) rows",
    "dimension": "d times the mass of the spectrum of Jn = D J above -1 + delta (predicted: the "
                 "data's spectrum as a variance law; measured: a count of eigenvalues; d - rank "
                 "are exactly -1)",
    "law": "the nonzero eigenvalues of C as a THEORY A variance law (orthonormal subspace)",
    "tau_half": "tau where the mean posterior weight of the generating row at y + sqrt(tau) z "
                "is 1/2",
    "rem": "critical tau at a probe sqrt(tau) v along a direction of the band; raw: g = 1 with "
           "the band's mean eigenvalue, sphere: g = 0 with the band's mean second moment of the "
           "rows normalized to the unit sphere (sphere_moment)",
    "measurements": "exact empirical score of the rows, ve convention (a = 1, D = tau)",
}


def _status(error: float, tolerance: float) -> str:
    return "agrees" if np.isfinite(error) and error <= tolerance else "disagrees"


def _comparison(quantity: str, prediction: float, measurement: float, error: float,
                tolerance: float, rule: str, **details) -> dict:
    return {"quantity": quantity, "prediction": float(prediction),
            "measurement": float(measurement), "error": float(error),
            "tolerance": float(tolerance), "status": _status(error, tolerance),
            "tolerance_rule": rule, **details}


def _log_ratio(measured: float, predicted: float) -> float:
    if np.isfinite(measured) and np.isfinite(predicted) and measured > 0 and predicted > 0:
        return float(abs(np.log(measured / predicted)))
    return float("inf")


def _crossover_tolerance(width: float) -> float:
    return max(0.5 * width, 0.05) if np.isfinite(width) else float(np.log(2.0))


def collapse_comparisons(found: dict) -> list[dict]:
    """Gaussian and entropy routes against each measured crossover."""
    out = []
    sizes = list(found["sizes"])
    for curve in found["crossovers"]:
        k = sizes.index(curve["n_train"])
        tolerance = _crossover_tolerance(curve["width_ln_tau"])
        gaussian = float(found["gaussian"]["tau_C"][k])
        entropy = found["entropy"][k]
        rule = "half the 0.2-0.8 width of the crossover in ln tau (>= 0.05; ln 2 unresolved)"
        label = f"vs crossover, N={curve['n_train']}"
        out.append(_comparison(f"collapse tau_C (Gaussian route) {label}", gaussian,
                               curve["tau_half"], _log_ratio(curve["tau_half"], gaussian),
                               tolerance, rule, error_kind="|ln(measured/predicted)|"))
        extra = 3.0 * entropy["stderr_ln_tau"] if np.isfinite(entropy["stderr_ln_tau"]) else 0.0
        out.append(_comparison(f"collapse tau_C (entropy route) {label}",
                               entropy["tau_C"], curve["tau_half"],
                               _log_ratio(curve["tau_half"], entropy["tau_C"]),
                               tolerance + extra, rule + " + 3 standard errors of the route",
                               error_kind="|ln(measured/predicted)|",
                               route_reliable=entropy["reliable"]))
    return out


def jacobian_comparisons(found: dict) -> list[dict]:
    """Predicted dimension read-out against the measured one at each measured ``tau``."""
    readout = found["jacobian"]
    if readout is None:
        return []
    timeline = found["timeline"]
    tau_half = found["crossovers"][0]["tau_half"]
    out = []
    for k, index in enumerate(readout["index"]):
        predicted = float(timeline["dimension"][index])
        measured, stderr = readout["dimension"][k], readout["dimension_stderr"][k]
        tolerance = max(1.0, 0.1 * predicted) + (3.0 * stderr if np.isfinite(stderr) else 0.0)
        tau = float(timeline["tau"][index])
        regime = ("above" if tau > tau_half else "below") if np.isfinite(tau_half) else "unknown"
        out.append(_comparison(f"dimension read-out at tau={tau:.4g}", predicted, measured,
                               abs(measured - predicted), tolerance,
                               "max(1, 10% of the prediction) + 3 standard errors",
                               tau=tau, regime=f"{regime} the measured collapse crossover"))
    return out


def rem_comparisons(found: dict) -> list[dict]:
    """REM critical noise (raw data, ``N`` = rows) against the measured condensation per band."""
    rows = found["spectrum"].n
    predicted = {r["band"]: r for r in found["rem"] if r["n_train"] == rows}
    out = []
    for band in found["condensation"]:
        row = predicted[band["band"]]
        out.append(_comparison(
            f"REM tau_c of band {band['band']} ([{row['lambda_low']:.3g}, "
            f"{row['lambda_high']:.3g}])", row["tau_c_rem_raw"], band["tau_c_measured"],
            _log_ratio(band["tau_c_measured"], row["tau_c_rem_raw"]), float(np.log(2.0)),
            "a factor 2 in tau", error_kind="|ln(measured/predicted)|",
            tau_c_rem_sphere=row["tau_c_rem_sphere"]))
    return out


def comparisons(found: dict) -> list[dict]:
    return collapse_comparisons(found) + jacobian_comparisons(found) + rem_comparisons(found)


# ----------------------------------------------------------------------------- tables
def spectrum_table(found: dict) -> dict:
    eig = found["spectrum"].eigenvalues
    band = np.full(eig.size, -1)
    for entry in found["bands"]:
        band[entry["indices"]] = entry["band"]
    total = eig.sum()
    return {"index": np.arange(1, eig.size + 1), "eigenvalue": eig,
            "explained_fraction": eig / total, "cumulative_fraction": np.cumsum(eig) / total,
            "band": band}


def timeline_table(found: dict) -> dict:
    columns = dict(found["timeline"])
    size = columns["tau"].size
    measured = {name: np.full(size, np.nan) for name in
                ("dimension_measured", "dimension_measured_stderr", "jn_mean_abs_difference",
                 "dimension_measured_probes")}
    readout = found["jacobian"]
    if readout is not None:
        index = readout["index"]
        measured["dimension_measured"][index] = readout["dimension"]
        measured["dimension_measured_stderr"][index] = readout["dimension_stderr"]
        measured["jn_mean_abs_difference"][index] = readout["jn_mean_abs_difference"]
        measured["dimension_measured_probes"][index] = readout["probes_used"]
    return flag_nonfinite_columns({**columns, **measured}, REASONS)


def collapse_table(found: dict, process: str) -> dict:
    sizes = list(found["sizes"])
    parts: dict[str, list] = {}
    for curve in found["crossovers"]:
        k = sizes.index(curve["n_train"])
        count = curve["tau"].size
        for name, values in (
                ("n_train", np.full(count, curve["n_train"])), ("tau", curve["tau"]),
                (f"t_{process}", process_time(curve["tau"], process)),
                ("own_weight", curve["own_weight"]),
                ("participation_ratio", curve["participation_ratio"]),
                ("tau_C_gaussian", np.full(count, found["gaussian"]["tau_C"][k])),
                ("tau_C_entropy", np.full(count, found["entropy"][k]["tau_C"]))):
            parts.setdefault(name, []).append(values)
    return flag_nonfinite_columns({k: np.concatenate(v) for k, v in parts.items()}, REASONS)


def rem_table(found: dict) -> tuple[dict, list[dict]]:
    """The REM rows (band x ``N``) with the measured condensation beside ``N`` = rows."""
    rows = found["spectrum"].n
    measured = {band["band"]: band["tau_c_measured"] for band in found["condensation"]}
    entries = [{**r, "tau_c_measured": measured.get(r["band"], np.nan) if r["n_train"] == rows
                else np.nan} for r in found["rem"]]
    columns = {key: np.array([e[key] for e in entries]) for key in entries[0]}
    return flag_nonfinite_columns(columns, REASONS), entries


def density_table(found: dict, process: str) -> dict:
    histogram = found["histogram"]
    return {"tau": histogram["tau"], f"t_{process}": process_time(histogram["tau"], process),
            "jn_low": histogram["jn_low"], "jn_high": histogram["jn_high"],
            "mass": histogram["mass"]}


# ----------------------------------------------------------------------------- summary
def _timeline_entries(table: dict, process: str) -> list[dict]:
    entries = []
    for i, tau in enumerate(table["tau"]):
        entry = {"tau": float(tau), "t": float(table[f"t_{process}"][i]),
                 "phase": str(table["phase"][i]), "dimension": float(table["dimension"][i]),
                 "manifold_gap": float(table["manifold_gap"][i]),
                 "visible_gaps": int(table["visible_gaps"][i])}
        if np.isfinite(table["dimension_measured"][i]):
            entry["dimension_measured"] = float(table["dimension_measured"][i])
            entry["dimension_measured_stderr"] = float(table["dimension_measured_stderr"][i])
            entry["dimension_measured_probes"] = int(table["dimension_measured_probes"][i])
        entries.append(entry)
    return entries


def _collapse_entries(found: dict, process: str) -> list[dict]:
    curves = {c["n_train"]: c for c in found["crossovers"]}
    out = []
    for k, size in enumerate(found["sizes"]):
        entropy, curve = found["entropy"][k], curves.get(size)
        entry = {"n_train": size, "tau_C": float(found["gaussian"]["tau_C"][k]),
                 "t_C": float(found["gaussian"]["t_C"][k]),
                 "collapse_converged": bool(found["gaussian"]["converged"][k]),
                 "tau_C_entropy": entropy["tau_C"], "tau_C_entropy_stderr": entropy["stderr"],
                 "entropy_reliable": entropy["reliable"], "measured": curve is not None}
        if curve is not None:
            entry.update(tau_half=curve["tau_half"], width_ln_tau=curve["width_ln_tau"])
        out.append(entry)
    return out


def law_entry(law) -> dict:
    """The variance law of the timeline: its label, whether it carries a continuous law, whether
    the orthonormal spectrum the timeline reads is its atoms, and its bulks (listed when at most
    32)."""
    edges = spectrum_edges(law, subspace="orthonormal")
    entry = {"label": law.label, "continuous": bool(getattr(law, "is_continuous", False)),
             "atoms": bool(np.all(edges[:, 0] == edges[:, 1])), "n_bulks": int(edges.shape[0])}
    if edges.shape[0] <= 32:
        entry["bulks"] = edges.tolist()
    return entry


def summary_of(plan, found: dict, rem_entries: list[dict], compared: list[dict]) -> dict:
    spectrum, prepared, loaded = found["spectrum"], found["prepared"], found["loaded"]
    process = plan.process
    curve = found["crossovers"][0]
    entropy = found["entropy"][0]
    counts = {s: sum(c["status"] == s for c in compared) for s in ("agrees", "disagrees")}
    summary = {
        "source": loaded.source, "source_kind": loaded.kind, "n": spectrum.n,
        "dim": spectrum.dim, "rank": spectrum.rank, "normalize": plan.normalize,
        "scale": prepared.scale, "constant_features": prepared.constant_features,
        "trace_per_dim": prepared.trace_per_dim, "eigenvalue_route": spectrum.route,
        "process": process, "delta": plan.delta, "seed": plan.seed,
        "lambda_max": spectrum.largest, **found["speciation"],
        "tau_C": float(found["gaussian"]["tau_C"][0]), "t_C": float(found["gaussian"]["t_C"][0]),
        "collapse_converged": bool(found["gaussian"]["converged"][0]),
        "tau_C_entropy": entropy["tau_C"], "tau_C_entropy_stderr": entropy["stderr"],
        "t_C_entropy": float(process_time(entropy["tau_C"], process)),
        "entropy_route": entropy,
        "collapse_measured": {key: curve[key] for key in (
            "n_train", "tau_half", "tau_half_ln_stderr", "tau_0.8", "tau_0.2", "width_ln_tau",
            "width_stderr", "probes")}
        | {"t_half": float(process_time(curve["tau_half"], process))},
        "collapse": _collapse_entries(found, process),
        "timeline": _timeline_entries(timeline_table(found), process),
        "spectral_law": law_entry(found["law"]),
        "gaps": found["gaps"],
        "rem_bands": rem_entries,
        "comparisons": compared, "counts": counts, "conventions": CONVENTIONS,
        **({"details": loaded.details} if loaded.details else {}),
    }
    return flag_summary(summary, REASONS)


def figure_data(plan, found: dict) -> dict:
    timeline, histogram = found["timeline"], found["histogram"]
    bins = histogram["mass"].size // timeline["tau"].size
    readout = found["jacobian"]
    return {"process": plan.process, "tau": timeline["tau"], "phase": timeline["phase"],
            "dimension": timeline["dimension"],
            "jn_edges": np.append(histogram["jn_low"][:bins], histogram["jn_high"][bins - 1]),
            "jn_mass": histogram["mass"].reshape(timeline["tau"].size, bins),
            "tau_S": found["speciation"]["tau_S"], "tau_C": float(found["gaussian"]["tau_C"][0]),
            "tau_C_entropy": found["entropy"][0]["tau_C"], "collapse": found["crossovers"][0],
            "measured_tau": None if readout is None else readout["tau"],
            "measured_dimension": None if readout is None else readout["dimension"],
            "measured_stderr": None if readout is None else readout["dimension_stderr"],
            "dim": found["spectrum"].dim}


def build_result(plan, found: dict):
    """The :class:`AnalysisResult` of a finished run."""
    compared = comparisons(found)
    rem_columns, rem_entries = rem_table(found)
    tables = {"analyze_spectrum": spectrum_table(found),
              "analyze_timeline": timeline_table(found),
              "analyze_collapse": collapse_table(found, plan.process),
              "analyze_rem": rem_columns,
              "analyze_jacobian_density": density_table(found, plan.process)}
    return AnalysisResult(summary_of(plan, found, rem_entries, compared), tables,
                          figure_data(plan, found))
