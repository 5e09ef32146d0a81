"""Collapse onto the training set (THEORY B): predicted ``tau_C`` against the exact empirical score.

Gaussian data of variance 2 on an axis-aligned 16-dimensional subspace of ``R^64``. The
Gaussian route gives the collapse time from ``ln N = (1/2) sum_i ln(1 + lambda_i / tau_C)``;
the exact empirical score measures the mean posterior weight of the training point a noised
sample came from.
Below ``tau_C`` that weight goes to one: the model has memorized.
"""

import matplotlib.pyplot as plt
import numpy as np

from diffphase.data.laws import LinearGaussian
from diffphase.simulate.empirical import EmpiricalScore
from diffphase.solvers.memorization import CovarianceSpectrum, collapse_tau, speciation_tau

dim, fractions, variances = 64, [0.25], [2.0]
rng = np.random.default_rng(0)
law = LinearGaussian.manifold(fractions, variances, dim, subspace="orthonormal", rng=rng)
spectrum = CovarianceSpectrum.from_groups(fractions, variances, dim, "orthonormal")
tau_s, exists = speciation_tau(spectrum.largest)
print(f"speciation (largest eigenvalue {spectrum.largest:g}): tau_S = {float(tau_s):.3f}")

taus = np.geomspace(1e-2, 1e1, 25)
fig, ax = plt.subplots(figsize=(6, 3.2))
for n_train in (100, 1000):
    train = law.sample(n_train, rng)
    engine = EmpiricalScore(train, device="cpu")
    tau_c = collapse_tau(spectrum, n_train).tau[0]
    own = []
    for tau in taus:
        picks = rng.integers(0, n_train, size=200)
        x = train[picks] + np.sqrt(tau) * rng.standard_normal((picks.size, dim))
        weights = engine.weights(x, 1.0, tau)          # ve convention: a = 1, D = tau
        own.append(np.mean(weights[np.arange(picks.size), picks]))
    own = np.asarray(own)
    crossing = taus[np.argmin(np.abs(own - 0.5))]
    print(f"N = {n_train:5d}: predicted tau_C = {tau_c:.3f}, "
          f"own-point weight crosses 1/2 near tau = {crossing:.3f}")
    line, = ax.semilogx(taus, own, "o-", ms=3, label=f"N = {n_train}")
    ax.axvline(tau_c, color=line.get_color(), ls="--", lw=1)
ax.set_xlabel("tau = D / a^2")
ax.set_ylabel("mean weight of the own point")
ax.set_title("collapse: measured weight (dots), predicted tau_C (dashed)")
ax.legend()
fig.tight_layout()
fig.savefig("memorization_collapse.png", dpi=110)
