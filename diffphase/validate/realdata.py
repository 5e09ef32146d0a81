"""Registered checks of the theories on real data (THEORY A and B; ``diffphase analyze``).

Checks (``diffphase validate --model realdata``; they need the ``data`` extra and are reported
as skipped without it):

1. ``eigen-routes`` (toolkit): the covariance eigenvalues of scikit-learn's digits through the
   Gram matrix equal those through the covariance matrix, for all rows (``n > d``) and for a
   subset of fewer rows than features (``n < d``); the principal coordinates keep every distance
   between rows. Tolerance: rounding, ``1e-9`` of the largest eigenvalue.
2. ``gaussian-recovery`` (toolkit): Gaussian rows with a spiked spectrum (one eigenvalue 9, the
   others 1) through :func:`~diffphase.studies.analyze.analyze`: ``lambda_max`` against the
   spiked-model limit ``lambda (1 + gamma / (lambda - 1))`` within four standard deviations
   ``lambda sqrt(2 / n)``, and ``tau_C`` against the root of
   ``ln N = (1/2) sum_i ln(1 + lambda_i / tau)`` for the true spectrum, found here by bisection,
   within the finite-``n`` spread of the spectrum (5%).
3. ``digits-collapse`` (paper, [DR]): on the digits, the measured own-weight crossover (half point)
   against the Gaussian-route ``tau_C`` and against the entropy route's, within half the
   crossover's 0.2-0.8 width in ``ln tau`` (plus three standard errors of the entropy route);
   the details say whether the 0.8-0.2 window straddles each prediction.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ..data.loaders import load_rows, prepare_rows
from ..errors import MissingDependencyError
from ..studies.analyze import analyze
from ..studies.analyze_predict import data_spectrum
from .registry import CheckSkipped, Comparison, register_check

#: (rows of the wide subset, probes of the collapse curves) per tier
TIER_SIZES = {"quick": (40, 200), "full": (50, 1000)}
#: rows of the Gaussian check per tier
GAUSSIAN_ROWS = {"quick": 3000, "full": 20000}


def _digits(limit: int | None = None) -> np.ndarray:
    try:
        return prepare_rows(load_rows(dataset="digits", limit=limit).rows, "trace").rows
    except MissingDependencyError as exc:
        raise CheckSkipped(str(exc)) from None


def _pairwise(points: np.ndarray) -> np.ndarray:
    squared = np.sum(points**2, axis=1)
    return squared[:, None] + squared[None, :] - 2.0 * points @ points.T


@register_check("realdata", "eigen-routes", tiers=("quick", "full"),
                description="Gram and covariance routes give the same digits spectrum")
def check_eigen_routes(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    for limit in (None, TIER_SIZES[tier][0]):
        rows = _digits(limit)
        gram, covariance = data_spectrum(rows, "gram"), data_spectrum(rows, "covariance")
        scale = covariance.largest
        error = float(np.max(np.abs(gram.eigenvalues - covariance.eigenvalues)) / scale)
        shape = f"{rows.shape[0]} x {rows.shape[1]}"
        out.append(Comparison(f"max |eigenvalue gram - covariance| / lambda_max, {shape}", 0.0,
                              error, tolerance=1e-9, error=error,
                              details={"routes": ["gram", "covariance"],
                                       "tolerance_rule": "rounding of two eigh routes"}))
        distances = _pairwise(rows)
        kept = _pairwise(gram.coordinates)
        drift = float(np.max(np.abs(kept - distances)) / np.max(distances))
        out.append(Comparison(f"max |distance^2 change| in principal coordinates, {shape}", 0.0,
                              drift, tolerance=1e-9, error=drift,
                              details={"rank": gram.rank,
                                       "tolerance_rule": "rounding (an exact rotation)"}))
    return out


def _collapse_root(eigenvalues: np.ndarray, n_train: int) -> float:
    """``tau`` with ``(1/2) sum_i ln(1 + lambda_i / tau) = ln N``, by Brent's method."""
    def residual(log_tau):
        return 0.5 * np.sum(np.log1p(eigenvalues / np.exp(log_tau))) - np.log(n_train)

    return float(np.exp(brentq(residual, -30.0, 30.0, xtol=1e-12)))


@register_check("realdata", "gaussian-recovery", tiers=("quick", "full"),
                description="analyze recovers lambda_max and tau_C of Gaussian rows")
def check_gaussian_recovery(tier: str, rng: np.random.Generator) -> list[Comparison]:
    n, dim, spike = GAUSSIAN_ROWS[tier], 32, 9.0
    eigenvalues = np.ones(dim)
    eigenvalues[0] = spike
    rows = rng.standard_normal((n, dim)) * np.sqrt(eigenvalues)
    summary = analyze(rows, normalize="none", jacobian_probes=0,
                      seed=int(rng.integers(2**31))).summary
    limit = spike * (1.0 + (dim / n) / (spike - 1.0))
    spread = spike * np.sqrt(2.0 / n)
    exact = _collapse_root(eigenvalues, n)
    return [
        Comparison("lambda_max (spiked-model limit)", limit, summary["lambda_max"],
                   tolerance=4.0 * spread,
                   details={"rows": n, "dim": dim, "spike": spike,
                            "tolerance_rule": "4 standard deviations lambda sqrt(2/n)"}),
        Comparison("ln(tau_C analyze / tau_C of the true spectrum)", 0.0,
                   float(np.log(summary["tau_C"] / exact)), tolerance=0.05,
                   error=float(abs(np.log(summary["tau_C"] / exact))),
                   details={"tau_C_true_spectrum": exact, "tau_C": summary["tau_C"],
                            "tolerance_rule": "finite-n spread of the sample spectrum (5%)"}),
    ]


@register_check("realdata", "digits-collapse", tiers=("quick", "full"), kind="paper",
                description="[DR] collapse on the digits: crossover vs Gaussian and entropy tau_C")
def check_digits_collapse(tier: str, rng: np.random.Generator) -> list[Comparison]:
    _digits(2)  # skipped here without the data extra
    probes = TIER_SIZES[tier][1]
    summary = analyze(dataset="digits", probes=probes, jacobian_probes=0,
                      seed=int(rng.integers(2**31))).summary
    curve = summary["collapse_measured"]
    measured, width = curve["tau_half"], curve["width_ln_tau"]
    window = (curve["tau_0.8"], curve["tau_0.2"])
    tolerance = max(0.5 * width, 0.05) if width is not None else float(np.log(2.0))
    out = []
    for route, predicted, extra in (
            ("Gaussian", summary["tau_C"], 0.0),
            ("entropy", summary["tau_C_entropy"],
             3.0 * (summary["entropy_route"]["stderr_ln_tau"] or 0.0))):
        error = (abs(np.log(measured / predicted)) if measured and predicted
                 else float("inf"))
        straddles = bool(None not in window and predicted is not None
                         and window[0] <= predicted <= window[1])
        out.append(Comparison(
            f"ln(crossover / tau_C {route} route), digits N={summary['n']}", 0.0, float(error),
            tolerance=tolerance + extra, error=float(error),
            details={"tau_C": predicted, "tau_half": measured, "window_0.8_0.2": list(window),
                     "window_straddles_tau_C": straddles, "width_ln_tau": width,
                     "tolerance_rule": "half the 0.2-0.8 width in ln tau (>= 0.05)"
                                       + (" + 3 standard errors" if extra else "")}))
    return out
