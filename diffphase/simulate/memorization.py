"""Memorization experiments with the exact empirical score (THEORY B).

Contract. Each function draws its own data from the ``rng`` it is given and measures one quantity
that a memorization check (``diffphase.validate.memorization``) or the ``simulate memorization``
command compares with theory:

* :func:`own_weight_curves` / :func:`collapse_experiment`: the own-point posterior weight and the
  participation ratio ``sum w^2`` at forward-noised training points versus ``tau``, and the
  crossover (own weight 1/2) with its width in ``ln tau`` (:func:`crossover_and_width`), each
  with a standard error: over the probes for one training set (:func:`bootstrap_crossover`), over
  independent training sets for the ensemble (:func:`collapse_experiment`, jackknife);
* :func:`entropy_collapse_tau`: [DR]'s entropy criterion for the collapse time of any sampler, with
  the entropy of the noised law estimated by Monte Carlo from an independent reference sample,
  extrapolated in the reference size and returned with its sampling error;
* :func:`return_fraction`: the fraction of backward trajectories already committed to the
  training point they end on;
* :func:`cloning_experiment`: the cloning probability of the two-Gaussian mixture (speciation);
* :func:`geometric_experiment`: per-block condensation points and ``Jn`` read-outs on the [LD]
  data (``d = 30``, blocks of std 1, 0.3 and 0.01);
* :func:`convergence_experiment`: the empirical ``Jn`` spectrum against THEORY A's as ``N`` grows.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ..backend import to_numpy
from ..data.laws import LinearGaussian, SphereNormalized, TwoGaussianMixture
from ..errors import ParameterError
from ..solvers import memorization as solvers
from ..solvers import spectral as spectral_solver
from .empirical import EmpiricalScore
from .integrators import reverse_sde, time_grid

LD_STDS = np.array([1.0] * 2 + [0.3] * 5 + [0.01] * 23)
LD_BLOCKS = {"std 1": np.arange(0, 2), "std 0.3": np.arange(2, 7)}
LD_SUBSPACES = {**LD_BLOCKS, "std 0.01": np.arange(7, 30)}
#: entropy route of the collapse time: largest decay ratio 2^-p of the cross-entropy excess per
#: halving of the reference (p >= 1/2: measured p = 0.50-0.55 near collapse for Gaussian data in
#: d = 32, M = 5000-80000; a slower cap let noise in the nested differences overshoot), and the
#: extrapolation in ln tau beyond which the reference is deemed too small
ENTROPY_MAX_DECAY_RATIO = 2.0**-0.5
ENTROPY_MAX_EXTRAPOLATION = 0.2
#: (d, N, reference size M, probes) of the entropy-route checks per tier
ENTROPY_ROUTE_CASES = {"quick": ((16, 300, 8000, 500),),
                       "full": ((16, 300, 8000, 500), (32, 1000, 20000, 1000))}


# ----------------------------------------------------------------------------- helpers
def crossing(taus: np.ndarray, values: np.ndarray, level: float) -> float:
    """``tau`` where a curve decreasing in ``tau`` crosses ``level`` (linear in ``ln tau``);
    NaN when it does not cross inside the grid."""
    taus, values = np.asarray(taus, float), np.asarray(values, float)
    above = values >= level
    if above.all() or not above.any():
        return float("nan")
    k = int(np.argmax(~above))  # first point below the level
    if k == 0:
        return float("nan")
    x0, x1 = np.log(taus[k - 1]), np.log(taus[k])
    y0, y1 = values[k - 1], values[k]
    return float(np.exp(x0 + (level - y0) * (x1 - x0) / (y1 - y0)))


def crossover_and_width(taus: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``(tau at level 1/2, width ln(tau_0.2 / tau_0.8))`` of a curve falling from 1 to 0 as
    ``tau`` grows (the collapse crossovers); NaN where the grid does not resolve them."""
    width = float(np.log(crossing(taus, values, 0.2) / crossing(taus, values, 0.8)))
    return crossing(taus, values, 0.5), width


def own_weight_curves(data: np.ndarray, taus: np.ndarray, n_probes: int,
                      rng: np.random.Generator, device: str = "cpu") -> dict[str, np.ndarray]:
    """At ``x = y_mu + sqrt(tau) z`` (VE, ``mu`` a random training point; one owner and one
    ``z`` per probe, common to every ``tau``): mean own weight ``w_mu(x)`` and mean ``sum w^2``
    per ``tau``, and ``own_weight_per_probe`` ``(len(taus), n_probes)`` (for
    :func:`bootstrap_crossover`)."""
    engine = EmpiricalScore(data, device=device)
    n = data.shape[0]
    owners = rng.integers(0, n, size=n_probes)
    noise = rng.normal(size=(n_probes, data.shape[1]))
    own, pr = [], []
    for tau in taus:
        x = data[owners] + np.sqrt(tau) * noise
        w = np.exp(to_numpy(engine.log_weights(x, 1.0, tau)))
        own.append(w[np.arange(n_probes), owners])
        pr.append(float(np.mean(np.sum(w * w, axis=1))))
    own = np.array(own)
    return {"tau": np.asarray(taus, float), "own_weight": own.mean(axis=1),
            "participation_ratio": np.array(pr), "own_weight_per_probe": own}


def bootstrap_crossover(taus: np.ndarray, per_probe: np.ndarray, rng: np.random.Generator,
                        n_boot: int = 400) -> tuple[float, float]:
    """Standard errors ``(of ln crossover, of the width)`` of :func:`crossover_and_width` on
    the probe mean of ``per_probe`` ``(len(taus), n_probes)``, by resampling the probes: the
    error of the measurement for this training set (the probes are its only randomness).
    NaN when fewer than half the resamples resolve the crossing."""
    n = per_probe.shape[1]
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, size=n)
        t_half, width = crossover_and_width(taus, per_probe[:, pick].mean(axis=1))
        draws.append((np.log(t_half), width))
    draws = np.array(draws)
    ok = np.all(np.isfinite(draws), axis=1)
    if ok.sum() < n_boot / 2:
        return float("nan"), float("nan")
    return float(draws[ok, 0].std(ddof=1)), float(draws[ok, 1].std(ddof=1))


def _jackknife(estimates: np.ndarray) -> float:
    """Delete-one jackknife standard error from the leave-one-out estimates."""
    k = estimates.size
    return float(np.sqrt((k - 1) / k * np.sum((estimates - estimates.mean()) ** 2)))


def collapse_experiment(dim: int, log_n_per_d: float, rng: np.random.Generator,
                        n_probes: int = 64, n_taus: int = 33, device: str = "cpu",
                        n_datasets: int = 4) -> dict:
    """One point of check 1: isotropic unit-variance data, ``N = round(exp(d * log_n_per_d))``.

    The probes are split over ``min(n_datasets, n_probes)`` independent training sets; the
    crossover and width are read from the pooled own-weight curve, and their standard errors
    (``crossover_ln_stderr``, the error of ``ln crossover``, and ``width_stderr``) are the
    delete-one-training-set jackknife: they cover both the probes and the draw of the training
    set, so they match the spread between seeds (NaN with a single training set, or where a
    leave-one-out curve does not resolve the crossing).
    """
    if n_datasets < 1:
        raise ParameterError("n_datasets", n_datasets, ">= 1")
    n_datasets = min(int(n_datasets), int(n_probes))
    n_train = max(2, int(round(np.exp(dim * log_n_per_d))))
    spectrum = solvers.CovarianceSpectrum.from_groups([1.0], [1.0], dim, "orthonormal")
    tau_c = float(solvers.collapse_tau(spectrum, n_train).tau[0])
    taus = tau_c * np.geomspace(0.1, 10.0, n_taus)
    own, ratio = [], []
    for count in np.diff(np.linspace(0, n_probes, n_datasets + 1).astype(int)):
        data = LinearGaussian.isotropic(dim).sample(n_train, rng)
        curves = own_weight_curves(data, taus, int(count), rng, device=device)
        own.append(curves["own_weight"] * count)
        ratio.append(curves["participation_ratio"] * count)
    own, ratio = np.array(own), np.array(ratio)
    curves = {"tau": taus, "own_weight": own.sum(0) / n_probes,
              "participation_ratio": ratio.sum(0) / n_probes}
    t_half, width = crossover_and_width(taus, curves["own_weight"])
    counts = np.diff(np.linspace(0, n_probes, n_datasets + 1).astype(int))
    leave_out = [crossover_and_width(taus, (own.sum(0) - own[i]) / (n_probes - counts[i]))
                 for i in range(n_datasets)]
    leave_out = np.array([(np.log(t), w) for t, w in leave_out])
    errors = [_jackknife(leave_out[:, j]) if n_datasets > 1 and np.all(np.isfinite(
        leave_out[:, j])) else np.nan for j in range(2)]
    return {"dim": dim, "n_train": n_train, "tau_C": tau_c, "crossover": t_half,
            "crossover_ln_stderr": errors[0], "width_ln_tau": width, "width_stderr": errors[1],
            "n_datasets": n_datasets, "curves": curves}


def extrapolated_cross_entropy(h_full, h_half, h_quarter):
    """Per-probe cross-entropies at nested reference sizes ``M, M/2, M/4`` -> the mean
    extrapolated to ``M -> infinity`` (see :func:`entropy_collapse_tau`) and its correction."""
    mean = float(np.mean(h_full))
    step1 = float(np.mean(h_half)) - mean
    step2 = float(np.mean(h_quarter)) - float(np.mean(h_half))
    if step1 <= 0.0 or step2 <= step1:  # no resolved decay: keep the largest reference
        return mean, 0.0
    ratio = min(step1 / step2, ENTROPY_MAX_DECAY_RATIO)  # 2^-p, p >= 1/2
    correction = step1 * ratio / (1.0 - ratio)
    return mean - correction, correction


def entropy_collapse_tau(sampler, n_train: int, rng: np.random.Generator,
                         n_reference: int = 20000, n_probes: int = 1000,
                         device: str = "cpu") -> dict:
    """Collapse ``tau_C`` of any data law by the entropy criterion of [DR] (THEORY B), with the
    entropy of the noised law estimated by Monte Carlo from the empirical log-density.

    ``f(tau) = ln N / d + (1/2) ln(2 pi e tau) - h(tau) / d`` with ``h(tau)`` the entropy of
    ``y + sqrt(tau) z`` (the same in every process at equal ``tau``); collapse where ``f = 0``
    (for Gaussian data this is ``ln N = (1/2) sum_i ln(1 + lambda_i/tau)``).

    ``h`` is estimated by the cross-entropy ``-mean ln p^M(x_i)`` at fresh probes
    ``x_i = y_i + sqrt(tau) z_i``, with ``p^M`` the noised empirical law of ``M = n_reference``
    independent points. By Jensen ``E ln p^M <= ln p``, so it overestimates ``h`` and the
    resulting ``tau_C`` is an upper estimate; the excess decays with ``M`` more slowly than
    ``1/M`` near collapse (about ``M^-0.5`` for Gaussian data in ``d = 32``). The estimate is
    therefore made with the nested references ``M``, ``M/2``, ``M/4`` (same probes, so their
    differences carry little noise) and extrapolated as a power law ``c M^-p`` with
    ``p >= 1/2``; where no decay is resolved (noise-dominated differences: the excess is already
    below the probes' resolution) the ``M`` value is kept. The same random numbers
    serve every ``tau``, so ``f`` is smooth and the root is found by Brent's method.

    Returns ``tau_C`` (extrapolated), ``tau_C_reference`` (at ``M``, not extrapolated: an upper
    estimate), ``sampling_error_ln_tau`` (one standard error of ``ln tau_C`` from the probe
    variance and the slope of ``f``), ``extrapolation_ln_tau`` (``ln(tau_C_reference/tau_C)``)
    and ``reliable``: whether the extrapolation moved ``ln tau_C`` by less than
    ``ENTROPY_MAX_EXTRAPOLATION`` (beyond it ``M`` is too small for the data and ``N``).
    """
    n_train = int(n_train)
    if n_train < 2:
        raise ParameterError("n_train", n_train, ">= 2")
    if int(n_reference) < 4 * n_train:
        raise ParameterError("n_reference", n_reference, f">= 4 n_train = {4 * n_train}")
    if int(n_probes) < 10:
        raise ParameterError("n_probes", n_probes, ">= 10")
    m = int(n_reference)
    reference = sampler.sample(m, rng)
    dim = reference.shape[1]
    probes = sampler.sample(int(n_probes), rng)
    noise = rng.standard_normal(probes.shape)
    engines = [EmpiricalScore(reference[:size], device=device) for size in (m, m // 2, m // 4)]
    cache: dict[tuple[float, int], np.ndarray] = {}

    def cross_entropy(log_tau, which):
        """Per-probe ``-ln p^M(x_i) / d`` for reference ``which`` (0: M, 1: M/2, 2: M/4)."""
        if (log_tau, which) not in cache:
            tau = float(np.exp(log_tau))
            density = engines[which].log_density(probes + np.sqrt(tau) * noise, 1.0, tau)
            cache[log_tau, which] = -to_numpy(density) / dim
        return cache[log_tau, which]

    def residual(log_tau, extrapolate=True):
        if extrapolate:
            h = extrapolated_cross_entropy(*(cross_entropy(log_tau, k) for k in range(3)))[0]
        else:
            h = float(np.mean(cross_entropy(log_tau, 0)))
        return float(solvers.entropy_residual(h, np.exp(log_tau), n_train, dim))

    def root(lo, hi, extrapolate):
        if not (residual(lo, extrapolate) < 0 < residual(hi, extrapolate)):
            return float("nan")
        return float(np.exp(brentq(residual, lo, hi, args=(extrapolate,), xtol=1e-7)))

    tau_m = root(-12.0, 12.0, False)
    # the extrapolation only lowers h, so its root lies below tau_m; searched within a factor
    # e^2 (further down the reference is far too small and the result is not reported)
    tau_c = (root(np.log(tau_m) - 2.0, np.log(tau_m) + 1e-9, True) if np.isfinite(tau_m)
             else float("nan"))
    out = {"tau_C": tau_c, "tau_C_reference": tau_m, "n_train": n_train, "n_reference": m,
           "n_probes": int(n_probes), "dim": dim}
    if np.isfinite(tau_c) and np.isfinite(tau_m):
        step = 0.05
        slope = (residual(np.log(tau_c) + step) - residual(np.log(tau_c) - step)) / (2 * step)
        spread = float(np.std(cross_entropy(np.log(tau_c), 0)))
        out["sampling_error_ln_tau"] = spread / np.sqrt(probes.shape[0]) / abs(slope)
        out["extrapolation_ln_tau"] = float(np.log(tau_m / tau_c))
        out["reliable"] = bool(abs(out["extrapolation_ln_tau"]) < ENTROPY_MAX_EXTRAPOLATION)
    else:
        out.update(sampling_error_ln_tau=float("nan"), extrapolation_ln_tau=float("nan"),
                   reliable=False)
    return out


def return_fraction(dim: int, n_train: int, rng: np.random.Generator, n_times: int = 10,
                    n_traj: int = 48, n_steps: int = 40, t_end: float = 1e-3) -> dict:
    """[DR]'s collapse experiment: at each start time ``t`` (``ou``), noise random training points
    ``x_t = a_t y_mu + sqrt(D_t) z`` and run the reverse SDE with the empirical score down to
    ``t_end``; measure the fraction of trajectories that end on the training point they started
    from (top posterior weight at ``t_end``). Start times span ``t_C / 10 .. 10 t_C`` in ``tau``.
    Also returned: the fraction that end on any training point (own weight > 1/2)."""
    from ..process import get_process

    proc = get_process("ou")
    data = LinearGaussian.isotropic(dim).sample(n_train, rng)
    engine = EmpiricalScore(data)
    spectrum = solvers.CovarianceSpectrum.from_groups([1.0], [1.0], dim, "orthonormal")
    tau_c = float(solvers.collapse_tau(spectrum, n_train).tau[0])
    taus = tau_c * np.geomspace(0.1, 10.0, n_times)
    times = proc.time_from_tau(taus)
    a_end, d_end = float(proc.signal_scale(t_end)), float(proc.noise_variance(t_end))
    back, on_point = [], []
    for t in times:
        owners = rng.integers(0, n_train, size=n_traj)
        a, D = float(proc.signal_scale(t)), float(proc.noise_variance(t))
        x = a * data[owners] + np.sqrt(D) * rng.normal(size=(n_traj, dim))
        final = reverse_sde(engine.score, x, "ou", time_grid(float(t), t_end, n_steps), rng).final
        w = np.exp(np.asarray(engine.log_weights(final, a_end, d_end)))
        back.append(float(np.mean(np.argmax(w, axis=1) == owners)))
        on_point.append(float(np.mean(np.max(w, axis=1) > 0.5)))
    return {"dim": dim, "n_train": n_train, "tau_C": tau_c, "tau": taus, "t": times,
            "t_C": float(proc.time_from_tau(tau_c)), "return_fraction": np.array(back),
            "on_training_point": np.array(on_point)}


def cloning_experiment(tau: float, mixture: TwoGaussianMixture, n_pairs: int,
                       rng: np.random.Generator, n_steps: int = 200) -> float:
    """Fraction of cloned pairs (from a common ``x_t``, ``ou`` process) that end with the same
    sign of ``m.x`` after independent reverse-SDE runs with the exact score."""
    from ..process import get_process

    proc = get_process("ou")
    t = float(proc.time_from_tau(tau))
    y, _ = mixture.sample_with_labels(n_pairs, rng)
    a, D = float(proc.signal_scale(t)), float(proc.noise_variance(t))
    xt = a * y + np.sqrt(D) * rng.normal(size=y.shape)
    grid = time_grid(t, 1e-3, n_steps)
    ends = [reverse_sde(mixture.score, xt, "ou", grid, rng).final @ mixture.mean for _ in range(2)]
    return float(np.mean(np.sign(ends[0]) == np.sign(ends[1])))


def ld_data(normalized: bool):
    base = LinearGaussian.axis_aligned(LD_STDS)
    return SphereNormalized(base) if normalized else base


def _block_spectra(jn: np.ndarray) -> dict[str, np.ndarray]:
    """Ascending eigenvalues of the sub-matrix of ``Jn`` on each [LD] block (``(M, |block|)``)."""
    return {name: np.linalg.eigvalsh(jn[:, idx][:, :, idx]) for name, idx in LD_SUBSPACES.items()}


def geometric_experiment(n_train: int, normalized: bool, rng: np.random.Generator,
                         n_taus: int = 49, repeats: int = 2, delta: float = 0.1,
                         n_heldout: int = 16) -> dict:
    """Check 3 for one ``(N, normalization)``.

    Per block: the REM ``tau_c`` predicted at probes ``sqrt(tau) e`` along the block's axes and the
    measured condensation point (``sum w^2`` crosses 1/2, i.e. ``tau_c / 2`` in the REM), the
    per-subspace Jacobian spectra at those probes (eigenvalues of ``Jn`` restricted to each block,
    averaged over probes), the direction's own ``Jn_ii``, the dimension read-out (eigenvalues of
    ``Jn`` above ``-1 + delta``) and the ``tau`` below which the direction is lost
    (``Jn_ii < -1 + delta`` at half the probes). Also, at held-out data points noised to ``tau``,
    the per-subspace spectra and the dimension read-out versus ``tau`` next to the read-out of
    the exact score (``N -> infinity``; Gaussian with the per-direction variances, exact for the
    raw data, an approximation for sphere data).
    """
    sampler = ld_data(normalized)
    variances = np.mean(sampler.sample(200_000, rng) ** 2, axis=0)  # per-direction s_i^2
    fourth = float(np.sum(variances**2))
    out = {"n_train": n_train, "normalized": normalized, "blocks": {}}
    taus = np.geomspace(1e-7, 10.0, n_taus)
    engines = [EmpiricalScore(sampler.sample(n_train, rng)) for _ in range(repeats)]
    for name, idx in LD_BLOCKS.items():
        s2 = float(np.mean(variances[idx]))
        predicted = float(solvers.rem_critical_tau_displaced(s2, fourth, n_train, normalized))
        pr, along, dims, lost = (np.zeros(n_taus) for _ in range(4))
        sub = {b: np.zeros((n_taus, i.size)) for b, i in LD_SUBSPACES.items()}
        count = 0
        for engine in engines:
            for i in idx:
                for sign in (1.0, -1.0):
                    e = np.zeros(sampler.dim)
                    e[i] = sign
                    x = np.sqrt(taus)[:, None] * e[None, :]
                    pr += 1.0 / np.asarray(engine.moments(x, 1.0, taus).n_eff)
                    jn = np.asarray(engine.jacobian(x, 1.0, taus, normalized=True))
                    along += jn[:, i, i]
                    lost += jn[:, i, i] < -1 + delta
                    dims += np.sum(np.linalg.eigvalsh(jn) > -1 + delta, axis=1)
                    for b, spec in _block_spectra(jn).items():
                        sub[b] += spec
                    count += 1
        pr, along, dims, lost = pr / count, along / count, dims / count, lost / count
        half = _crossing_increasing(taus, pr)
        out["blocks"][name] = {
            "variance": s2, "tau_c_predicted": predicted,
            # REM: sum w^2 = 1 - tau/tau_c crosses 1/2 at tau_c / 2
            "tau_c_measured": float(solvers.rem_critical_tau_of_participation(half, 0.5)),
            "tau": taus, "participation_ratio": pr, "jn_along_direction": along,
            "dimension_readout": dims, "fraction_lost": lost,
            "tau_lost_jacobian": _crossing_increasing(taus, lost),
            "subspace_spectra": {b: v / count for b, v in sub.items()}}
    out["heldout"] = _heldout_readout(sampler, engines, variances, taus, n_heldout, delta, rng)
    return out


def _heldout_readout(sampler, engines, variances, taus, n_probes, delta, rng) -> dict:
    """Dimension read-out and per-subspace ``Jn`` spectra at held-out points ``x0 + sqrt(tau) z``
    versus ``tau``, with the exact-score read-out ``#{i: -tau / (tau + s_i^2) > -1 + delta}``
    (THEORY A's eigenvalue map, compiled)."""
    dims = np.zeros(taus.size)
    sub = {b: np.zeros((taus.size, i.size)) for b, i in LD_SUBSPACES.items()}
    for engine in engines:
        x0 = sampler.sample(n_probes, rng)
        z = rng.normal(size=x0.shape)
        for k, tau in enumerate(taus):
            jn = np.asarray(engine.jacobian(x0 + np.sqrt(tau) * z, 1.0, tau, normalized=True))
            dims[k] += np.mean(np.sum(np.linalg.eigvalsh(jn) > -1 + delta, axis=1))
            for b, spec in _block_spectra(jn).items():
                sub[b][k] += np.mean(spec, axis=0)
    eigenvalues = spectral_solver.formula("jacobian_eigenvalue", variances[None, :], taus[:, None])
    exact = np.sum(eigenvalues > -1 + delta, axis=1)
    return {"tau": taus, "dimension_readout": dims / len(engines),
            "dimension_readout_exact_score": exact.astype(float),
            "subspace_spectra": {b: v / len(engines) for b, v in sub.items()}}


def _crossing_increasing(taus, values) -> float:
    """``tau`` where ``values`` (large at small ``tau``, falling) last crosses 1/2."""
    values = np.asarray(values, dtype=float)
    return crossing(taus, values, 0.5)


def convergence_experiment(n_values, tau: float, rng: np.random.Generator, dim: int = 8,
                           n_probes: int = 32) -> dict:
    """Mean absolute deviation of sorted empirical ``Jn`` eigenvalues from the exact ones."""
    sampler = LinearGaussian.manifold([0.5], [1.0], dim, "orthonormal")
    exact = sampler.normalized_jacobian_eigenvalues(tau)
    errors = []
    for n in n_values:
        engine = EmpiricalScore(sampler.sample(int(n), rng))
        x = sampler.sample(n_probes, rng) + np.sqrt(tau) * rng.normal(size=(n_probes, dim))
        eig = np.asarray(engine.jacobian_spectrum(x, 1.0, tau).eigenvalues)
        errors.append(float(np.mean(np.abs(eig - exact[None, :]))))
    return {"n_train": np.asarray(n_values), "error": np.array(errors), "exact": exact}


# ----------------------------------------------------------------------------- checks
