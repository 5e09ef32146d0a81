"""Measurements on a dataset with its exact empirical score (THEORY B), beside the predictions of
:mod:`diffphase.studies.analyze_predict`.

Contract
--------
Every function takes the rows' principal coordinates (``n x r``, centred; see
:func:`~diffphase.studies.analyze_predict.data_spectrum`), works in the variance-exploding
convention (``a = 1``, ``D = tau``) and draws its randomness from the generator it is given.

* :func:`collapse_crossover` [DR]: the mean posterior weight of the generating training point at
  forward-noised training points ``y_mu + sqrt(tau) z`` over a ``tau`` grid
  (:func:`own_weight_curves`) for ``N`` rows (a random subset when ``N`` is below the rows),
  with its half point ``tau_half``, the points where it is 0.8 and 0.2, and the width
  ``ln(tau_0.2 / tau_0.8)``.
* :func:`entropy_collapse` [DR]: the entropy route to ``tau_C`` on the data themselves: the rows
  are split into held-out probes and a reference; the entropy of the noised law is the
  cross-entropy of the noised probes under the reference's noised empirical law, extrapolated in
  the reference size from the nested references ``R, R/2, R/4`` (the rule of
  :func:`~diffphase.simulate.memorization.entropy_collapse_tau`), and
  ``ln N / r + (1/2) ln(2 pi e tau) - h(tau) / r = 0`` is solved per ``N`` by Brent's method.
  The cross-entropy overestimates the entropy (Jensen), so the root is an upper estimate; its
  standard error comes from the probes' spread and the slope of the residual.
* :func:`jacobian_readout` [SG]: eigenvalues of ``Jn = -I + Cov_w(y)/tau`` at forward-noised
  training points, their dimension read-out (count above ``-1 + delta``) with its standard error,
  and the mean distance of the sorted eigenvalues from those of the exact score of a Gaussian
  with the data's covariance, ``-tau/(tau + lambda_i)``; the weights leave out at most
  ``JACOBIAN_NEGLECTED_MASS`` of posterior mass and the resulting bound on the eigenvalues is
  reported (``jn_error_bound``); when all the probes would cost more than
  ``JACOBIAN_WORK_BUDGET`` per ``tau``, a subsample of at least ``JACOBIAN_MIN_PROBES`` with a
  stated standard error (``probes_used``).
* :func:`rem_condensation` [LD]: per variance band, the participation ratio ``sum w^2`` at probes
  ``+-sqrt(tau) v`` along eigen-directions of the band, and the condensation noise
  ``tau_c = 2 tau`` where it crosses 1/2 (the REM's ``1 - tau/tau_c``).

The own-weight curves and the entropy route read the distances of every noised probe to every
row at every ``tau`` from two matrix products per block of probes
(:class:`~diffphase.simulate.empirical.noised.NoisedProbes`: ``|x - y|^2 = A + 2 sqrt(tau) B +
tau |z|^2``), with log-sum-exp over all rows; no row is left out of these sums.

Undefined values (a curve that does not cross inside its grid, a root that is not bracketed) are
NaN; the caller flags them.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ..backend import to_numpy
from ..simulate.empirical import EmpiricalScore
from ..simulate.empirical.noised import NoisedProbes
from ..simulate.memorization import (
    ENTROPY_MAX_EXTRAPOLATION,
    bootstrap_crossover,
    crossing,
    crossover_and_width,
    extrapolated_cross_entropy,
)
from ..solvers import memorization as collapse_solvers
from ..solvers import spectral as spectral_solvers

#: ``tau`` grid of a collapse curve: this factor below and above the predicted ``tau_C``
COLLAPSE_GRID_FACTOR = 100.0
#: fewest held-out probes and rows per nested reference of the entropy route
ENTROPY_MIN_PROBES = 10
ENTROPY_MIN_REFERENCE = 8
#: posterior mass each Jacobian read-out may leave out (the smallest weights, never more than
#: this in total); each eigenvalue of ``Jn`` then moves by at most the reported bound
#: ``jn_error_bound`` (at most ``4 R^2 / tau`` times this mass), far below the read-out's
#: resolution ``delta``; at small ``tau`` it leaves a handful of points instead of all ``N``
JACOBIAN_NEGLECTED_MASS = 1e-12
#: above this many multiply-adds per ``tau`` (``probes N r^2``: 32 probes of 60000 rows in
#: r = 784 cost 1.2e12) the Jacobian read-out takes its probes in batches of JACOBIAN_BATCH and
#: stops once JACOBIAN_MIN_PROBES are in and the standard error of the dimension read-out is at
#: most JACOBIAN_TARGET_STDERR (well inside the comparisons' tolerance max(1, 10%))
JACOBIAN_WORK_BUDGET = 2e11
JACOBIAN_BATCH = 8
JACOBIAN_MIN_PROBES = 16
JACOBIAN_TARGET_STDERR = 0.2
#: step in ``ln tau`` of the slope that converts the entropy route's spread into a standard error
ENTROPY_SLOPE_STEP = 0.05


def _engine(points: np.ndarray) -> EmpiricalScore:
    """The empirical score of points already in principal coordinates (no further reduction)."""
    return EmpiricalScore(points, reduce_subspace=False)


# ----------------------------------------------------------------------------- collapse
def collapse_grid(tau_c: float, points: int) -> np.ndarray:
    """``points`` geometric ``tau`` from ``tau_C / 100`` to ``100 tau_C``."""
    return tau_c * np.geomspace(1.0 / COLLAPSE_GRID_FACTOR, COLLAPSE_GRID_FACTOR, points)


def collapse_crossover(coordinates: np.ndarray, n_train: int, taus: np.ndarray, probes: int,
                       rng: np.random.Generator) -> dict:
    """The own-weight curve of ``n_train`` rows (all rows, or a random subset) and its
    crossover: ``tau_half``, ``tau_0.8``, ``tau_0.2``, ``width_ln_tau`` (NaN where the grid does
    not reach the level)."""
    n = coordinates.shape[0]
    chosen = coordinates if n_train >= n else coordinates[rng.choice(n, n_train, replace=False)]
    curves = own_weight_curves(chosen, taus, probes, rng)
    tau_half, width = crossover_and_width(taus, curves["own_weight"])
    ln_stderr, width_stderr = bootstrap_crossover(taus, curves["own_weight_per_probe"], rng)
    return {"n_train": int(chosen.shape[0]), "tau": taus, "own_weight": curves["own_weight"],
            "participation_ratio": curves["participation_ratio"], "tau_half": tau_half,
            "tau_half_ln_stderr": ln_stderr,
            "tau_0.8": crossing(taus, curves["own_weight"], 0.8),
            "tau_0.2": crossing(taus, curves["own_weight"], 0.2), "width_ln_tau": width,
            "width_stderr": width_stderr, "probes": int(probes)}


def own_weight_curves(rows: np.ndarray, taus: np.ndarray, probes: int,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """At ``x = y_mu + sqrt(tau) z`` (``mu`` a random row, one owner and one ``z`` per probe,
    common to every ``tau``): the mean own weight ``w_mu(x)`` and mean ``sum w^2`` per ``tau``
    over all the rows, and ``own_weight_per_probe`` ``(len(taus), probes)``; the same draws and
    values as :func:`~diffphase.simulate.memorization.own_weight_curves`, with the distances of
    every ``tau`` from two matrix products (:class:`~diffphase.simulate.empirical.noised.
    NoisedProbes`) instead of one per ``tau``."""
    n = rows.shape[0]
    owners = rng.integers(0, n, size=probes)
    noise = rng.normal(size=(probes, rows.shape[1]))
    own, purity = NoisedProbes(rows[owners], noise, rows, owners).own_weights(taus)
    return {"tau": np.asarray(taus, float), "own_weight": own.mean(axis=1),
            "participation_ratio": purity.mean(axis=1), "own_weight_per_probe": own}


# ----------------------------------------------------------------------------- entropy route
class CrossEntropy:
    """Per-probe cross-entropies ``-ln p^R(x_i) / r`` of noised held-out rows under the noised
    empirical laws of the nested references ``R, R/2, R/4`` (the reference's prefixes; all three
    from one pass over the reference, cached per ``ln tau``)."""

    def __init__(self, coordinates: np.ndarray, held_out: int, rng: np.random.Generator):
        order = rng.permutation(coordinates.shape[0])
        self.probes = coordinates[order[:held_out]]
        reference = coordinates[order[held_out:]]
        self.noise = rng.standard_normal(self.probes.shape)
        self.sizes = tuple(reference.shape[0] // k for k in (1, 2, 4))
        self.noised = NoisedProbes(self.probes, self.noise, reference)
        self.dim = coordinates.shape[1]
        self._cache: dict[float, np.ndarray] = {}

    def per_probe(self, log_tau: float, which: int = 0) -> np.ndarray:
        if log_tau not in self._cache:
            tau = float(np.exp(log_tau))
            ascending = self.sizes[::-1]
            sums = self.noised.log_sums(tau, ascending)[::-1]
            density = (sums - np.log(np.asarray(self.sizes, dtype=float))[:, None]
                       - 0.5 * self.dim * np.log(2.0 * np.pi * tau))
            self._cache[log_tau] = -density / self.dim
        return self._cache[log_tau][which]

    def entropy(self, log_tau: float, extrapolate: bool = True) -> float:
        """Entropy per dimension of the noised law: extrapolated to an infinite reference, or
        the largest reference's cross-entropy."""
        if not extrapolate:
            return float(np.mean(self.per_probe(log_tau)))
        return extrapolated_cross_entropy(*(self.per_probe(log_tau, k) for k in range(3)))[0]


def entropy_collapse(coordinates: np.ndarray, n_values, probes: int, largest: float,
                     rng: np.random.Generator) -> list[dict]:
    """The entropy route's ``tau_C`` for each ``N`` (see the module contract), with
    ``stderr_ln_tau`` (one standard error of ``ln tau_C``), ``stderr`` (of ``tau_C``),
    ``tau_C_reference`` (not extrapolated), ``extrapolation_ln_tau``, the sizes used and
    ``reliable`` (the extrapolation moved ``ln tau_C`` by less than
    ``ENTROPY_MAX_EXTRAPOLATION``). ``largest``: the largest eigenvalue, which sets the bracket
    ``ln tau`` in ``[ln largest - 30, ln largest + 10]``."""
    n = coordinates.shape[0]
    held_out = min(int(probes), n // 5)
    if held_out < ENTROPY_MIN_PROBES or (n - held_out) // 4 < ENTROPY_MIN_REFERENCE:
        return [_entropy_unavailable(n_train, n) for n_train in np.atleast_1d(n_values)]
    cross = CrossEntropy(coordinates, held_out, rng)
    bracket = (float(np.log(largest)) - 30.0, float(np.log(largest)) + 10.0)
    return [_entropy_root(cross, float(n_train), bracket) for n_train in np.atleast_1d(n_values)]


def _entropy_unavailable(n_train: float, rows: int) -> dict:
    return {"n_train": float(n_train), "tau_C": np.nan, "stderr": np.nan,
            "stderr_ln_tau": np.nan, "tau_C_reference": np.nan, "extrapolation_ln_tau": np.nan,
            "reliable": False, "held_out_probes": 0, "reference_rows": 0,
            "note": f"too few rows ({rows}) for held-out probes and nested references"}


def _entropy_root(cross: CrossEntropy, n_train: float, bracket: tuple[float, float]) -> dict:
    def residual(log_tau: float, extrapolate: bool = True) -> float:
        h = cross.entropy(log_tau, extrapolate)
        return float(collapse_solvers.entropy_residual(h, np.exp(log_tau), n_train, cross.dim))

    def root(low: float, high: float, extrapolate: bool) -> float:
        if not residual(low, extrapolate) < 0.0 < residual(high, extrapolate):
            return np.nan
        return float(brentq(residual, low, high, args=(extrapolate,), xtol=1e-7))

    out = {"n_train": n_train, "held_out_probes": int(cross.probes.shape[0]),
           "reference_rows": int(cross.sizes[0])}
    log_reference = root(*bracket, False)
    # the extrapolation only lowers the entropy: its root lies below, within a factor e^2
    log_tau = (root(log_reference - 2.0, log_reference + 1e-9, True)
               if np.isfinite(log_reference) else np.nan)
    if not np.isfinite(log_tau):
        return {**out, "tau_C": np.nan, "stderr": np.nan, "stderr_ln_tau": np.nan,
                "tau_C_reference": float(np.exp(log_reference)), "extrapolation_ln_tau": np.nan,
                "reliable": False}
    step = ENTROPY_SLOPE_STEP
    slope = (residual(log_tau + step) - residual(log_tau - step)) / (2.0 * step)
    spread = float(np.std(cross.per_probe(log_tau)))
    stderr_ln = spread / np.sqrt(cross.probes.shape[0]) / abs(slope)
    shift = float(log_reference - log_tau)
    return {**out, "tau_C": float(np.exp(log_tau)), "stderr": float(np.exp(log_tau) * stderr_ln),
            "stderr_ln_tau": float(stderr_ln), "tau_C_reference": float(np.exp(log_reference)),
            "extrapolation_ln_tau": shift, "reliable": bool(abs(shift) < ENTROPY_MAX_EXTRAPOLATION)}


# ----------------------------------------------------------------------------- Jacobian
def jacobian_readout(coordinates: np.ndarray, eigenvalues: np.ndarray, taus: np.ndarray,
                     probes: int, delta: float, rng: np.random.Generator) -> dict:
    """Per ``tau``: the mean dimension read-out of ``Jn`` at forward-noised training points, its
    standard error, the mean ``|sorted measured - sorted exact|`` over the ``r`` tangent
    eigenvalues (the other ``d - r`` are ``-1`` in both), the bound on the eigenvalues' error
    from the weights left out (``jn_error_bound``) and ``probes_used``.

    Every ``tau`` uses all ``probes`` unless they would cost more than
    ``JACOBIAN_WORK_BUDGET`` multiply-adds (``probes N r^2``, the dense covariances); then the
    probes are taken in batches of ``JACOBIAN_BATCH`` (in their drawn order, the same points at
    every ``tau``) until at least ``JACOBIAN_MIN_PROBES`` are in and the standard error of the
    read-out is at most ``JACOBIAN_TARGET_STDERR`` (the subsample's standard error is the one
    reported and used by the comparisons)."""
    engine = _engine(coordinates)
    n, rank = coordinates.shape
    owners = rng.integers(0, n, size=probes)
    noise = rng.standard_normal((probes, rank))
    exact = np.sort(spectral_solvers.formula("jacobian_eigenvalue", eigenvalues[:rank][None, :],
                                             taus[:, None]).reshape(taus.size, rank), axis=1)
    batch = probes if float(probes) * n * rank**2 <= JACOBIAN_WORK_BUDGET else JACOBIAN_BATCH
    dimension, stderr, distance, bound = (np.empty(taus.size) for _ in range(4))
    used = np.zeros(taus.size, dtype=int)
    for k, tau in enumerate(taus):
        counts, gaps, bounds = [], [], []
        for start in range(0, probes, batch):
            rows = slice(start, min(probes, start + batch))
            x = coordinates[owners[rows]] + np.sqrt(tau) * noise[rows]
            spectrum = engine.jacobian_spectrum(x, 1.0, float(tau),
                                                max_neglected_mass=JACOBIAN_NEGLECTED_MASS)
            measured = to_numpy(spectrum.eigenvalues)
            bounds.append(to_numpy(spectrum.error_bound))
            counts.append(np.sum(measured > -1.0 + delta, axis=1))
            gaps.append(np.mean(np.abs(np.sort(measured, axis=1) - exact[k][None, :]), axis=1))
            done = np.concatenate(counts)
            if (done.size >= JACOBIAN_MIN_PROBES and done.size < probes
                    and done.std(ddof=1) / np.sqrt(done.size) <= JACOBIAN_TARGET_STDERR):
                break
        done = np.concatenate(counts)
        used[k] = done.size
        dimension[k] = done.mean()
        stderr[k] = done.std(ddof=1) / np.sqrt(done.size) if done.size > 1 else np.nan
        distance[k] = float(np.mean(np.concatenate(gaps)))
        bound[k] = float(np.max(np.concatenate(bounds)))
    return {"tau": taus, "dimension": dimension, "dimension_stderr": stderr,
            "jn_mean_abs_difference": distance, "jn_error_bound": bound, "probes": int(probes),
            "probes_used": used}


# ----------------------------------------------------------------------------- REM
def rem_condensation(coordinates: np.ndarray, bands: list[dict], taus: np.ndarray) -> list[dict]:
    """Per band: the mean participation ratio over probes ``+-sqrt(tau) v`` along the band's
    first and last eigen-direction, and ``tau_c_measured`` (twice the ``tau`` where it crosses
    1/2; NaN when it does not inside ``taus``)."""
    engine = _engine(coordinates)
    center = coordinates.mean(axis=0)
    out = []
    for band in bands:
        directions = sorted({int(band["indices"][0]), int(band["indices"][-1])})
        ratio = np.zeros(taus.size)
        for index in directions:
            for sign in (1.0, -1.0):
                x = np.tile(center, (taus.size, 1))
                x[:, index] += sign * np.sqrt(taus)
                ratio += 1.0 / to_numpy(engine.moments(x, 1.0, taus).n_eff)
        ratio /= 2 * len(directions)
        half = crossing(taus, ratio, 0.5)
        measured = (float(collapse_solvers.rem_critical_tau_of_participation(half, 0.5))
                    if np.isfinite(half) else np.nan)
        out.append({"band": band["band"], "tau": taus, "participation_ratio": ratio,
                    "tau_c_measured": measured})
    return out
