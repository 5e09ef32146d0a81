"""What the theories predict for a dataset, from its covariance spectrum (THEORY A and B).

Contract
--------
* :func:`data_spectrum`: all ``d`` eigenvalues of ``C = X^T X / n`` of centred rows ``X``
  (descending; exact zeros for directions the rows do not span), by ``eigh`` of the covariance
  (``d x d``) when ``n >= d`` and of the Gram matrix ``X X^T / n`` (``n x n``, the same nonzero
  eigenvalues) when ``n < d``; and the rows' principal coordinates (``n x r``, ``r`` nonzero
  eigenvalues). The rows lie in the span of those ``r`` directions, so the empirical score needs
  only these coordinates: a noise component off the span shifts every log-weight equally, its
  normalized-Jacobian eigenvalues are exactly ``-1`` and its entropy is exactly Gaussian.
* :func:`data_variance_law`: the spectrum as a THEORY A variance law with atoms at the
  eigenvalues (orthonormal subspace: the exact spectrum of a Gaussian with the data's covariance;
  the one place the law is built).
* :func:`speciation` ([DR], ``tau_S = Lambda - 1``) and :func:`gaussian_collapse` ([DR],
  ``ln N = (1/2) sum_i ln(1 + lambda_i / tau_C)``) call the memorization solvers.
* :func:`spectral_timeline`: per ``tau``, the phase, the dimension read-out (mass of ``Jn``
  above ``-1 + delta``, times ``d``), the manifold gap and the number of intermediate gaps wider
  than ``delta`` [SG]; :func:`visible_gaps` lists the gaps between bulks that reach ``delta`` at
  some ``tau``, with ``tau*`` and the window; :func:`jacobian_histogram` gives the density of
  the ``d`` eigenvalues of ``Jn`` (exact, finite ``d``) versus ``tau`` as binned masses.
* :func:`variance_bands` groups the eigen-directions into bands of variance (by decade or into
  ``bands`` equal widths in ``ln lambda``); :func:`rem_band_times` gives the REM critical noise of
  each band [LD] for raw (``g = 1``) and sphere-normalized (``g = 0``; the rows' measured second
  moments on the sphere, :func:`sphere_moments`) data.

All formulas come from :mod:`diffphase.solvers.spectral` and :mod:`diffphase.solvers.memorization`;
``tau = D / a^2``; times are converted with :func:`~diffphase.solvers.memorization.process_time`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..errors import ParameterError, require_int
from ..solvers import memorization as collapse_solvers
from ..solvers import spectral as spectral_solvers

#: an eigenvalue at most this many rounding units (``eps max(n, d) lambda_max``) counts as 0
ZERO_EIGENVALUE_ROUNDING = 100.0
#: bins of the density of ``Jn`` on ``[-1, 0]``
JACOBIAN_BINS = 40
#: eigen-routes of :func:`data_spectrum`
EIGEN_ROUTES = ("auto", "covariance", "gram")


@dataclass
class DataSpectrum:
    """Eigenvalues (``dim``, descending, zeros included) of the rows' covariance, the principal
    coordinates of the rows (``n x rank``, columns in the same order) and the route used."""

    eigenvalues: np.ndarray
    coordinates: np.ndarray
    route: str

    @property
    def n(self) -> int:
        return int(self.coordinates.shape[0])

    @property
    def dim(self) -> int:
        return int(self.eigenvalues.size)

    @property
    def rank(self) -> int:
        return int(self.coordinates.shape[1])

    @property
    def nonzero(self) -> np.ndarray:
        return self.eigenvalues[: self.rank]

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[0])


def data_spectrum(rows: np.ndarray, route: str = "auto") -> DataSpectrum:
    """Exact covariance eigenvalues and principal coordinates of centred ``rows`` (n, d).

    ``route``: ``covariance`` (``eigh`` of ``X^T X / n``), ``gram`` (``eigh`` of ``X X^T / n``)
    or ``auto`` (the smaller of the two matrices). Eigenvalues below
    ``ZERO_EIGENVALUE_ROUNDING * eps * max(n, d) * lambda_max`` are set to 0.
    """
    if route not in EIGEN_ROUTES:
        raise ParameterError("route", route, "one of " + ", ".join(EIGEN_ROUTES))
    n, dim = rows.shape
    if route == "auto":
        route = "covariance" if n >= dim else "gram"
    if route == "covariance":
        values, vectors = np.linalg.eigh(rows.T @ rows / n)
    else:
        values, vectors = np.linalg.eigh(rows @ rows.T / n)
    values, vectors = values[::-1], vectors[:, ::-1]
    floor = ZERO_EIGENVALUE_ROUNDING * np.finfo(float).eps * max(n, dim) * max(values[0], 0.0)
    rank = int(np.count_nonzero(values > floor))
    if rank == 0:
        raise ParameterError("data", "rows without variance", "rows that vary")
    eigenvalues = np.zeros(dim)
    eigenvalues[:rank] = values[:rank]
    if route == "covariance":
        coordinates = rows @ vectors[:, :rank]
    else:  # X = sqrt(n) U Lambda^(1/2) V^T, so X V = sqrt(n) U Lambda^(1/2)
        coordinates = vectors[:, :rank] * np.sqrt(n * values[:rank])
    return DataSpectrum(eigenvalues, coordinates, route)


def visible_gap_ratio(delta: float) -> float:
    """Ratio ``l / u`` of two variances above which the gap between them in the normalized
    spectrum reaches ``delta`` at its widest: the root of ``max_tau W(tau; l, u) = delta`` in
    ``ln(l / u)`` (the compiled gap formula of THEORY A, solved by Brent's method); at least
    ``1 + 1e-12`` (a tiny ``delta`` sees every gap)."""
    def excess(log_ratio: float) -> float:
        return float(spectral_solvers.formula("gap_max", np.exp(log_ratio), 1.0)) - delta

    low, high = 1e-12, 200.0
    if excess(low) >= 0.0:
        return float(np.exp(low))
    return float(np.exp(brentq(excess, low, high, xtol=1e-15, rtol=1e-13)))


def data_variance_law(eigenvalues: np.ndarray, dim: int, delta: float):
    """The THEORY A variance law of a covariance spectrum, for the orthonormal subspace (the
    eigenvalues of ``C`` are the law's variances; the zero eigenvalues are the normal atom
    ``1 - r/d``); the one place the law is built.

    With two or more distinct nonzero eigenvalues: ``VarianceLaw.from_samples``, the continuous
    law the ``r`` nonzero eigenvalues are samples of, of mass ``r/d``, split into separate
    support components where consecutive eigenvalues are further apart than
    :func:`visible_gap_ratio` (a gap that reaches ``delta``), so that its gaps are the visible
    ones and its dimension read-out is smooth. Otherwise: an atom of mass ``1/d`` at each nonzero
    eigenvalue."""
    law_type = spectral_solvers.VarianceLaw
    nonzero = np.asarray(eigenvalues, dtype=float)
    nonzero = nonzero[nonzero > 0]
    if np.unique(nonzero).size >= 2:
        return law_type.from_samples(nonzero, alpha=nonzero.size / dim,
                                     gap_ratio=visible_gap_ratio(delta), label="data spectrum")
    return law_type.from_groups(np.full(nonzero.size, 1.0 / dim), nonzero)


# ----------------------------------------------------------------------------- [DR]
def speciation(largest: float, process: str) -> dict:
    """``tau_S = Lambda - 1`` and ``t_S`` (``(1/2) ln Lambda`` in ``ou``); null when
    ``Lambda <= 1`` (``speciation_exists`` False)."""
    tau_s, exists = collapse_solvers.speciation_tau(largest)
    tau_s = float(np.asarray(tau_s).ravel()[0])
    return {"tau_S": tau_s, "t_S": float(collapse_solvers.process_time(tau_s, process)),
            "speciation_exists": bool(np.asarray(exists).ravel()[0])}


def gaussian_collapse(eigenvalues: np.ndarray, n_values, process: str) -> dict[str, np.ndarray]:
    """Per ``N`` of ``n_values``: the Gaussian-route ``tau_C``, ``t_C`` and the solver's flag."""
    spectrum = collapse_solvers.CovarianceSpectrum.from_eigenvalues(eigenvalues, "data")
    result = collapse_solvers.collapse_tau(spectrum, np.asarray(n_values, dtype=float))
    tau = np.atleast_1d(result.tau).astype(float)
    return {"tau_C": tau, "t_C": collapse_solvers.process_time(tau, process),
            "converged": np.atleast_1d(result.converged)}


# ----------------------------------------------------------------------------- [SG]
def timeline_taus(eigenvalues: np.ndarray, tau_c: float, delta: float, points: int
                  ) -> np.ndarray:
    """``points`` geometric noise levels from below the collapse and the consolidation boundary
    (the smallest nonzero eigenvalue's) to 100 times the largest eigenvalue (trivial phase);
    never below ``1e-9`` times the largest eigenvalue."""
    nonzero = eigenvalues[eigenvalues > 0]
    top = float(nonzero.max())
    consolidation = float(spectral_solvers.formula("consolidation_tau", nonzero.min(), delta))
    low = min(consolidation / 3.0, tau_c / 30.0 if np.isfinite(tau_c) else np.inf)
    return np.geomspace(max(low, 1e-9 * top), 100.0 * top, points)


def spectral_timeline(law, dim: int, taus: np.ndarray, delta: float,
                      process: str) -> dict[str, np.ndarray]:
    """Tidy columns per ``tau`` for a law of :func:`data_variance_law`: ``t_<process>``,
    ``phase``, ``dimension`` (``d`` times the mass of ``Jn`` above ``-1 + delta``),
    ``dimension_fraction``, ``manifold_gap`` and ``visible_gaps`` (intermediate gaps wider than
    ``delta`` at that ``tau``)."""
    edges = spectral_solvers.spectrum_edges(law, subspace="orthonormal")
    fraction = spectral_solvers.dimension_fraction(taus, law, delta=delta, subspace="orthonormal")
    upper, lower = _consecutive_pairs(edges)
    widths = spectral_solvers.formula("gap", lower[None, :], upper[None, :], taus[:, None])
    return {"tau": taus, f"t_{process}": collapse_solvers.process_time(taus, process),
            "phase": spectral_solvers.phase_of(taus, edges, delta),
            "dimension": np.round(fraction * dim, 9), "dimension_fraction": fraction,
            "manifold_gap": spectral_solvers.formula("manifold_gap", edges[0, 0], taus),
            "visible_gaps": np.sum(np.asarray(widths).reshape(taus.size, -1) >= delta, axis=1)}


def _consecutive_pairs(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(u_i, l_{i+1})``: upper edge of each bulk (atom) and lower edge of the next."""
    return edges[:-1, 1], edges[1:, 0]


def visible_gaps(law, delta: float, process: str) -> list[dict]:
    """Gaps between consecutive bulks (support components, or atoms) of a law of
    :func:`data_variance_law` whose largest width reaches ``delta``, ascending in variance: the
    edges on each side, ``tau_max`` (``tau*``, also as a time), ``max_width`` and the window
    ``[tau_lo, tau_hi]`` where the width is at least ``delta``."""
    upper, lower = _consecutive_pairs(spectral_solvers.spectrum_edges(law, subspace="orthonormal"))
    widest = np.atleast_1d(spectral_solvers.formula("gap_max", lower, upper))
    keep = widest >= delta
    upper, lower, widest = upper[keep], lower[keep], widest[keep]
    if not keep.any():
        return []
    tau_max = np.atleast_1d(spectral_solvers.formula("gap_tau_max", lower, upper))
    low, high = (np.broadcast_to(np.asarray(v, dtype=float), upper.shape)
                 for v in spectral_solvers.formula("gap_window", lower, upper, delta))
    return [{"lower_bulk_upper_edge": float(u), "upper_bulk_lower_edge": float(l),
             "max_width": float(w),
             "tau_max": float(tm), f"t_max_{process}": float(
                 collapse_solvers.process_time(tm, process)), "window": [float(a), float(b)]}
            for u, l, w, tm, a, b in zip(upper, lower, widest, tau_max, low, high, strict=True)]


def jacobian_histogram(eigenvalues: np.ndarray, taus: np.ndarray,
                       bins: int = JACOBIAN_BINS) -> dict[str, np.ndarray]:
    """Density of the ``d`` eigenvalues of ``Jn`` (``-tau/(tau + lambda)``, and ``-1`` for the
    zero eigenvalues) per ``tau`` as masses in ``bins`` equal bins of ``[-1, 0]`` (tidy: one row
    per ``(tau, bin)``; masses of a ``tau`` sum to 1)."""
    dim = eigenvalues.size
    nonzero = eigenvalues[eigenvalues > 0]
    values = spectral_solvers.formula("jacobian_eigenvalue", nonzero[None, :], taus[:, None])
    edges = np.linspace(-1.0, 0.0, bins + 1)
    masses = np.empty((taus.size, bins))
    for row, jn in enumerate(np.asarray(values).reshape(taus.size, -1)):
        counts, _ = np.histogram(np.clip(jn, -1.0, 0.0), bins=edges)
        counts[0] += dim - nonzero.size  # the normal atom at -1
        masses[row] = counts / dim
    return {"tau": np.repeat(taus, bins), "jn_low": np.tile(edges[:-1], taus.size),
            "jn_high": np.tile(edges[1:], taus.size), "mass": masses.ravel()}


# ----------------------------------------------------------------------------- [LD]
def variance_bands(eigenvalues: np.ndarray, bands: int | None = None) -> list[dict]:
    """Bands of eigen-directions by variance, highest first: by decade of ``lambda`` when
    ``bands`` is None, else ``bands >= 1`` equal widths in ``ln lambda`` between the smallest
    and largest nonzero eigenvalue (empty bands dropped). Each band: ``band`` (0 = highest),
    ``lambda_low``, ``lambda_high``, ``directions``, ``variance`` (mean eigenvalue) and
    ``indices`` (positions in the descending spectrum)."""
    nonzero = eigenvalues[eigenvalues > 0]
    logs = np.log10(nonzero)
    if bands is None:
        labels = np.floor(logs).astype(int)
    else:
        bands = require_int("bands", bands, minimum=1)
        span = logs.max() - logs.min()
        scaled = (logs.max() - logs) / span * bands if span > 0 else np.zeros(logs.size)
        labels = -np.minimum(np.floor(scaled), bands - 1).astype(int)
    out = []
    for label in sorted(set(labels.tolist()), reverse=True):
        indices = np.flatnonzero(labels == label)
        members = nonzero[indices]
        out.append({"band": len(out), "lambda_low": float(members.min()),
                    "lambda_high": float(members.max()), "directions": int(indices.size),
                    "variance": float(members.mean()), "indices": indices})
    return out


def sphere_moments(coordinates: np.ndarray) -> np.ndarray:
    """Per principal direction ``k``, ``E[c_k^2 / |c|^2]`` over the rows (centred, in principal
    coordinates) normalized to the unit sphere: the measured second moments THEORY B asks for
    (dividing the eigenvalues by ``tr C`` is only an approximation). Rows at the mean are left
    out; the moments sum to 1."""
    squared = coordinates**2
    norms = squared.sum(axis=1)
    keep = norms > 0
    return np.mean(squared[keep] / norms[keep, None], axis=0)


def rem_band_times(eigenvalues: np.ndarray, coordinates: np.ndarray, bands: list[dict],
                   n_values, process: str) -> list[dict]:
    """REM critical noise per band and ``N`` [LD] at a probe ``sqrt(tau) v`` along a direction
    of the band: ``tau_c_rem_raw`` (``g = 1``, the band's mean eigenvalue as ``C``) and
    ``tau_c_rem_sphere`` (``g = 0``, the band's mean :func:`sphere_moments` as ``C``), each also
    as a time; one row per band and ``N``."""
    spectrum = collapse_solvers.CovarianceSpectrum.from_eigenvalues(eigenvalues, "data")
    variances = np.array([band["variance"] for band in bands])
    n_values = np.atleast_1d(np.asarray(n_values, dtype=float))
    _, raw, _ = collapse_solvers.rem_group_taus(variances, spectrum, n_values)
    moments = sphere_moments(coordinates)
    along = np.array([moments[band["indices"]].mean() for band in bands])
    sphere = collapse_solvers.rem_critical_tau_displaced(
        along[:, None], float(np.sum(moments**2)), n_values[None, :], True)
    rows = []
    for b, band in enumerate(bands):
        for k, n_train in enumerate(n_values):
            rows.append({key: band[key] for key in ("band", "lambda_low", "lambda_high",
                                                    "directions", "variance")}
                        | {"sphere_moment": float(along[b]), "n_train": float(n_train),
                           "tau_c_rem_raw": float(raw[b, k]),
                           f"t_c_rem_raw_{process}": float(
                               collapse_solvers.process_time(raw[b, k], process)),
                           "tau_c_rem_sphere": float(sphere[b, k]),
                           f"t_c_rem_sphere_{process}": float(
                               collapse_solvers.process_time(sphere[b, k], process))})
    return rows
