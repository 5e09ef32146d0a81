"""Train a small score network on linear-manifold data and compare its Jacobian with THEORY A.

Data: ``y = F z`` in ``d = 12`` dimensions (at most 16 keeps it a few minutes on 2 CPU cores),
with two latent groups: 2 directions of variance 4 and 3 directions of variance 1/4; the other
7 directions carry no variance. The network (``diffphase.simulate.networks.DenoiserMLP``) learns
the denoiser ``E[y | u]`` at every noise level ``tau``; its score, called as ``score(x, a, D)``
like every score of the toolkit, is taken at ``a = 1, D = tau``: ``s = (den - u) / tau``.

Theory (THEORY A, exact for this finite ``d`` since ``F`` has orthonormal columns): the
normalized Jacobian ``Jn = tau J`` has eigenvalue ``-1`` on the 7 normal directions and
``-tau / (tau + sigma_k^2)`` on group ``k``. Going backwards in time the high-variance group
separates from the bulk first (its eigenvalue crosses ``-1/2`` at ``tau = 4``, the other at
``tau = 1/4``); the local dimension is 0, then 2, then 5.

Run:  python examples/train_score_network.py [--steps 4000] [--out figure.png]
(needs the torch extra: pip install 'diffphase[torch]'). The trained weights are cached, so
a second run, and the registered checks ``diffphase validate --model fields --tier full``,
reuse them.
"""

from __future__ import annotations

import argparse

import numpy as np

from diffphase.simulate.fields import diagnose_jacobians, group_bases, orthonormal_basis
from diffphase.simulate.jacobians import jacobian
from diffphase.simulate.networks import (
    TrainingConfig,
    network_score,
    trained_linear_manifold_network,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainingConfig().steps)
    parser.add_argument("--out", default=None, help="Optional PNG of the spectra vs tau.")
    args = parser.parse_args()

    config = TrainingConfig(steps=args.steps)
    net, data, losses = trained_linear_manifold_network(
        config=config, progress=lambda step, loss: print(f"step {step:5d}  loss {loss:.4f}"))
    print(f"final loss {losses[-1]:.4f} (the weighted loss has a nonzero floor)")

    score = network_score(net)
    basis = orthonormal_basis(np.asarray(data.F))
    groups = group_bases(data)
    variances = sorted(set(np.asarray(data.latent_variances).tolist()), reverse=True)  # as groups
    rng = np.random.default_rng(0)
    taus = np.geomspace(0.01, 100.0, 13)
    print(f"{'tau':>8} " + " ".join(f"{'grp' + str(k + 1) + ' net':>9} {'theory':>7}"
                                   for k in range(len(groups)))
          + f" {'dim':>4} {'|A|/|J| tan':>11} {'normal':>7}")
    rows = []
    for tau in taus:
        x = data.sample(32, rng) + np.sqrt(tau) * rng.standard_normal((32, score.dim))
        jac = jacobian(score, x, 1.0, float(tau))  # autograd, batched; (a, D) = (1, tau)
        jn = tau * jac
        sym = 0.5 * (jn + np.swapaxes(jn, 1, 2))
        measured = [float(np.mean(np.trace(g.T @ sym @ g, axis1=1, axis2=2)) / g.shape[1])
                    for g in groups]
        theory = [-tau / (tau + v) for v in variances]
        result = diagnose_jacobians(jac, 1.0, float(tau), reference_basis=basis).summary()
        rows.append((tau, measured, theory, result))
        print(f"{tau:8.3g} " + " ".join(f"{m:9.3f} {t:7.3f}" for m, t in zip(measured, theory,
                                                                          strict=True))
              + f" {result['local_dimension']:4d} {result['tangent_nonconservativeness']:11.4f}"
              f" {result['normal_nonconservativeness']:7.4f}")
    if args.out:
        from diffphase.plotting import close, new_figure

        fig, (ax,) = new_figure()
        for k in range(len(groups)):
            ax.plot(taus, [r[1][k] for r in rows], "o", label=f"network, group {k + 1}")
            ax.plot(taus, [r[2][k] for r in rows], "-", label=f"theory, sigma^2 = {variances[k]:g}")
        ax.set(xscale="log", xlabel="tau", ylabel="mean eigenvalue of tau J on the group")
        ax.legend(fontsize=8)
        fig.savefig(args.out, dpi=130, bbox_inches="tight")
        close(fig)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
