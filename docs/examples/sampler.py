"""DDPM coefficient design (THEORY D): which designs pay for the ambient dimension?

For Gaussian data on a ``k = 4``-dimensional subspace the sampler with exact scores is linear,
and ``KL(law X_1 || law Y_1)`` is exact. The normal directions carry all of the dependence on
``d``: the ``star`` and ``ddim`` designs preserve them at every step, ``beta`` and ``ho-beta``
do not, so their error grows linearly in ``d - k``.
"""

import matplotlib.pyplot as plt
import numpy as np

from diffphase.solvers.sampler import fit_rate, sampler_error, sampler_error_grid

k, designs = 4, ["star", "ddim", "beta", "ho-beta"]
for design in designs:
    small = sampler_error(T=500, dim=64, k=k, design=design)
    large = sampler_error(T=500, dim=4096, k=k, design=design)
    print(f"{design:8s} T = 500: KL = {small.kl:.3e} (d = 64)   {large.kl:.3e} (d = 4096)   "
          f"normal part per dimension {large.kl_normal_per_dim:.2e}")

T_values = np.unique(np.geomspace(32, 8192, 12).astype(int))
grid = sampler_error_grid(T_values, [1024], [k], designs)
fig, ax = plt.subplots(figsize=(6, 3.2))
for design in designs:
    rows = grid["design"] == design
    fit = fit_rate(grid["T"][rows], grid["kl"][rows])
    print(f"{design:8s} KL ~ T^{fit.slope:.2f}")
    ax.loglog(grid["T"][rows], grid["kl"][rows], "o-", ms=3,
              label=f"{design} (slope {fit.slope:.2f})")
ax.set_xlabel("number of steps T (li-yan schedule)")
ax.set_ylabel("KL(law X_1 || law Y_1)")
ax.set_title(f"exact sampler error, d = 1024, k = {k}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig("sampler_kl.png", dpi=110)
