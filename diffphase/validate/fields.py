"""Registered checks of score-field geometry (THEORY E).

Fields are called as ``score(x, a, D)``; the checks at a given ``tau`` use the ``ve`` noise
level ``(a, D) = (1, tau)``, and the trajectory check runs every process."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..process import get_process
from ..simulate.fields import (
    diagnose_field,
    diagnose_jacobians,
    gaussian_score_field,
    group_bases,
    linear_manifold_field,
    orthonormal_basis,
    split_symmetric,
)
from ..simulate.integrators import log_tau_grid, probability_flow, start_points
from ..simulate.jacobians import jacobian
from ..simulate.torch_adapter import torch_available
from .registry import CheckSkipped, Comparison, register_check

#: the linear manifold of the checks: d = 12, groups of 2 and 3 directions, variances 4 and 1/4
CHECK_MANIFOLD = {"fractions": (2 / 12, 3 / 12), "variances": (4.0, 0.25), "dim": 12}


def _check_field(rng: np.random.Generator, subspace: str = "orthonormal", rotation: float = 0.0):
    return linear_manifold_field(CHECK_MANIFOLD["fractions"], CHECK_MANIFOLD["variances"],
                                 CHECK_MANIFOLD["dim"], subspace=subspace, rotation=rotation,
                                 rng=rng)


@register_check("fields", "exact-score-spectrum", tiers=("quick", "full"),
                description="Central-difference Jacobian of the exact linear-manifold score: "
                            "normalized eigenvalues -tau/(tau+lambda) and -1, A = 0.")
def check_exact_score_spectrum(tier: str, rng: np.random.Generator) -> list[Comparison]:
    score, data, _ = _check_field(rng, subspace="random")
    lam = np.linalg.eigvalsh(data.covariance())
    worst_eig, worst_nc = 0.0, 0.0
    for tau in (0.03, 0.5, 8.0):
        x = data.sample(4, rng) + np.sqrt(tau) * rng.standard_normal((4, score.dim))
        jac = jacobian(score, x, 1.0, tau, route="central", rng=rng)
        diag = diagnose_jacobians(jac, 1.0, tau)
        predicted = np.sort(-tau / (tau + np.clip(lam, 0.0, None)))  # THEORY A, exact for finite d
        worst_eig = max(worst_eig, float(np.abs(diag.eigenvalues.real - predicted).max()))
        worst_nc = max(worst_nc, float(diag.nonconservativeness.max()))
    return [Comparison("max |eig(Jn) - (-tau/(tau+lambda))|", 0.0, worst_eig, 1e-6,
                       details={"route": "central", "taus": [0.03, 0.5, 8.0]}),
            Comparison("|A|_F/|J|_F of an exact score", 0.0, worst_nc, 1e-6)]


@register_check("fields", "rotation-known-asymmetry", tiers=("quick", "full"),
                description="Exact score plus a rotation of rate w in a tangent plane: "
                            "|A|/|J| and its tangent/normal blocks against the closed form.")
def check_rotation_known_asymmetry(tier: str, rng: np.random.Generator) -> list[Comparison]:
    rate, tau = 0.3, 0.5
    score, data, basis = _check_field(rng, rotation=rate)
    exact = gaussian_score_field(data.covariance())
    sym_n = tau * exact.matrix_at(1.0, tau)
    # A = rate G with |G|_F^2 = 2; S is the exact normalized Jacobian; |J|^2 = |S|^2 + |A|^2
    predicted = rate * np.sqrt(2) / np.sqrt(np.sum(sym_n ** 2) + 2 * rate ** 2)
    sym_tt = basis.T @ sym_n @ basis
    predicted_tt = rate * np.sqrt(2) / np.sqrt(np.sum(sym_tt ** 2) + 2 * rate ** 2)
    x = data.sample(3, rng) + np.sqrt(tau) * rng.standard_normal((3, score.dim))
    diag = diagnose_jacobians(jacobian(score, x, 1.0, tau, route="central", rng=rng), 1.0, tau,
                              reference_basis=basis)
    return [Comparison("|A|_F/|J|_F", predicted, float(diag.nonconservativeness.mean()), 1e-6),
            Comparison("tangent |A_TT|/|J_TT|", predicted_tt,
                       float(diag.blocks["tangent_nonconservativeness"].mean()), 1e-6),
            Comparison("normal |A_NN|/|J_NN|", 0.0,
                       float(diag.blocks["normal_nonconservativeness"].mean()), 1e-6)]


@register_check("fields", "probability-flow-closed-form", tiers=("quick", "full"),
                description="Backward probability-flow trajectories of the exact Gaussian score "
                            "against u(tau) = u0 sqrt((lambda+tau)/(lambda+tau0)) per eigenvector.")
def check_probability_flow(tier: str, rng: np.random.Generator) -> list[Comparison]:
    comparisons = []
    for name in ("ve", "ou", "ddpm"):  # ddpm: steps of the linear schedule, T = 1000
        process = get_process(name)
        score, data, _ = linear_manifold_field(CHECK_MANIFOLD["fractions"],
                                               CHECK_MANIFOLD["variances"], CHECK_MANIFOLD["dim"],
                                               subspace="random", rng=rng)
        lam, vec = np.linalg.eigh(data.covariance())
        lam = np.clip(lam, 0.0, None)
        t0, t1 = float(process.time_from_tau(20.0)), float(process.time_from_tau(0.05))
        x0 = start_points(5, score.dim, process, t0, rng, sampler=data.sample)
        x1 = probability_flow(score.score, x0, process, log_tau_grid(process, t0, [t1], 80)).final
        u0 = (x0 / float(process.signal_scale(t0))) @ vec
        u1 = u0 * np.sqrt((lam + 0.05) / (lam + 20.0))
        expected = (u1 @ vec.T) * float(process.signal_scale(t1))
        error = float(np.abs(x1 - expected).max() / np.abs(expected).max())
        # Heun in (x / a_t, sqrt(tau)), second order in h = 1/80 per unit of log tau over ~6
        # e-folds: a few 1e-6 (exact off the data span, where x / a_t is proportional to sqrt(tau))
        comparisons.append(Comparison(f"relative trajectory error ({name}, 80 Heun steps/e-fold)",
                                      0.0, error, 1e-4))
    return comparisons


@register_check("fields", "local-dimension-windows", tiers=("quick", "full"),
                description="Exact score along backward trajectories: local dimension (threshold "
                            "1/2 and gap) in each THEORY A gap window, and principal angles.")
def check_local_dimension_windows(tier: str, rng: np.random.Generator) -> list[Comparison]:
    score, data, basis = _check_field(rng)
    var = np.asarray(CHECK_MANIFOLD["variances"])
    sizes = [g.shape[1] for g in group_bases(data)]
    # window centres: above sigma_1^2 nothing is resolved; between, group 1; below sigma_2^2, all
    windows = {10 * var[0]: 0, float(np.sqrt(var[0] * var[1])): sizes[0], var[1] / 10: sum(sizes)}
    diags = diagnose_field(score, "ve", list(windows), points=4, rng=rng, sampler=data.sample,
                           t_start=100.0, reference_basis=basis)
    comparisons = []
    for diag in diags:
        expected = windows[diag.t]
        measured = float(np.mean(diag.local_dimension_threshold))
        comparisons.append(Comparison(f"local dimension (threshold) at tau={diag.t:.3g}",
                                      expected, measured, 0.0))
        comparisons.append(Comparison(f"local dimension (gap) at tau={diag.t:.3g}",
                                      expected, float(np.mean(diag.local_dimension_gap)), 0.0))
    smallest = diags[-1]
    comparisons.append(Comparison(f"max principal angle, tau={smallest.t:.3g} (rad)", 0.0,
                                  float(smallest.principal_angles.max()), 1e-8))
    return comparisons


def _require_torch() -> None:
    if not torch_available():
        raise CheckSkipped("torch is not installed (pip install 'diffphase[torch]')")


def _torch_checks() -> None:
    """Checks of the torch adapter and of a trained network (skipped without torch)."""

    @register_check("fields", "autograd-vs-central", tiers=("quick", "full"),
                    description="Autograd Jacobian of a random torch MLP score against central "
                                "differences along random orthonormal probes (float64).")
    def check_autograd_vs_central(tier: str, rng: np.random.Generator) -> list[Comparison]:
        _require_torch()
        from ..simulate.networks import DenoiserMLP, network_score, torch

        torch.manual_seed(int(rng.integers(2**31)))
        net = DenoiserMLP(6, width=32, depth=2)
        score = network_score(net)
        ou = get_process("ou")  # the noise level of ou at t = 0.4
        a, D = float(ou.signal_scale(0.4)), float(ou.noise_variance(0.4))
        x = rng.standard_normal((4, 6))
        auto = jacobian(score, x, a, D)
        central = jacobian(score, x, a, D, route="central", rng=rng, relative_step=1e-4)
        error = float(np.abs(auto - central).max() / np.abs(auto).max())
        return [Comparison("relative |J_autograd - J_central|", 0.0, error, 1e-6)]

    @register_check("fields", "trained-network-spectrum", tiers=("full",), kind="paper",
                    description="A trained score network's Jacobian spectrum against THEORY A "
                                "[SG]: group eigenvalues -tau/(tau+sigma_k^2), gap order, windows.")
    def check_trained_spectrum(tier: str, rng: np.random.Generator) -> list[Comparison]:
        _require_torch()
        return trained_network_comparisons(rng)[0]

    @register_check("fields", "trained-network-nonconservative-inside", tiers=("full",),
                    kind="paper",
                    description="[WM]: trained fields mix non-conservatively inside the manifold "
                                "and act conservatively (projecting) off it.")
    def check_trained_nonconservative(tier: str, rng: np.random.Generator) -> list[Comparison]:
        _require_torch()
        return trained_network_comparisons(rng)[1]


def trained_network_comparisons(rng: np.random.Generator,
                                taus: Sequence[float] | None = None
                                ) -> tuple[list[Comparison], list[Comparison]]:
    """Measure the cached default trained network (see :mod:`diffphase.simulate.networks`).

    Returns ``(spectrum comparisons, non-conservativeness comparisons)``.
    """
    from ..simulate.networks import DEFAULT_MANIFOLD, network_score, trained_linear_manifold_network

    net, data, _ = trained_linear_manifold_network()
    score = network_score(net)
    basis = orthonormal_basis(np.asarray(data.F))
    groups = group_bases(data)
    var = np.sort(np.asarray(DEFAULT_MANIFOLD["variances"]))[::-1]
    taus = np.geomspace(0.01, 100.0, 25) if taus is None else np.asarray(taus)
    group_eig, tangent_nc, normal_nc, dims = [], [], [], {}
    for tau in taus:
        x = data.sample(32, rng) + np.sqrt(tau) * rng.standard_normal((32, score.dim))
        jac = jacobian(score, x, 1.0, float(tau))
        jn = tau * jac
        sym, _ = split_symmetric(jn)
        group_eig.append([float(np.mean(np.trace(g.T @ sym @ g, axis1=-2, axis2=-1)) / g.shape[1])
                          for g in groups])
        diag = diagnose_jacobians(jac, 1.0, float(tau), reference_basis=basis)
        tangent_nc.append(float(np.mean(diag.blocks["tangent_nonconservativeness"])))
        normal_nc.append(float(np.mean(diag.blocks["normal_nonconservativeness"])))
        dims[float(tau)] = float(np.mean(diag.local_dimension_threshold))
    group_eig = np.asarray(group_eig)
    spectrum = []
    predicted = -taus[:, None] / (taus[:, None] + var[None, :])
    spectrum.append(Comparison("max |<Jn>_group - (-tau/(tau+sigma_k^2))| over tau grid", 0.0,
                               float(np.abs(group_eig - predicted).max()), 0.03,
                               details={"taus": taus, "measured": group_eig,
                                        "predicted": predicted}))
    crossings = [_crossing_tau(taus, group_eig[:, k], -0.5) for k in range(len(var))]
    for k, (v, cross) in enumerate(zip(var, crossings, strict=True)):
        spectrum.append(Comparison(f"log tau where group {k + 1} eigenvalue = -1/2 (pred log "
                                   f"sigma^2)", float(np.log(v)), float(np.log(cross)), 0.1))
    spectrum.append(Comparison("gap order: log(tau_cross_1 / tau_cross_2) (> 0: high variance "
                               "first)", float(np.log(var[0] / var[1])),
                               float(np.log(crossings[0] / crossings[1])), 0.2))
    sizes = [g.shape[1] for g in groups]
    for tau, expected in ((10 * var[0], 0), (float(np.sqrt(var[0] * var[1])), sizes[0]),
                          (var[1] / 10, sum(sizes))):
        x = data.sample(32, rng) + np.sqrt(tau) * rng.standard_normal((32, score.dim))
        diag = diagnose_jacobians(jacobian(score, x, 1.0, tau), 1.0, tau)
        spectrum.append(Comparison(f"local dimension at tau={tau:.3g} (window centre)", expected,
                                   float(np.mean(diag.local_dimension_threshold)), 0.25))
    small = taus < float(var[1])
    inside, outside = float(np.mean(np.asarray(tangent_nc)[small])), float(
        np.mean(np.asarray(normal_nc)[small]))
    details = {"taus": taus, "tangent_nonconservativeness": tangent_nc,
               "normal_nonconservativeness": normal_nc}
    ratio = inside / outside
    nonconservative = [Comparison(f"|A_TT|/|J_TT| over |A_NN|/|J_NN|, tau < {var[1]:g} "
                                  "(WM: > 1)", 1.0, ratio, 0.0, error=max(0.0, 1.0 - ratio),
                                  passed=bool(ratio > 1.0), details=details)]
    return spectrum, nonconservative


def _crossing_tau(taus: np.ndarray, values: np.ndarray, level: float) -> float:
    """``tau`` where ``values`` (decreasing in tau) first crosses ``level``, log-interpolated."""
    above = np.nonzero(values <= level)[0]
    if above.size == 0 or above[0] == 0:
        return float("nan")
    i = above[0]
    frac = (level - values[i - 1]) / (values[i] - values[i - 1])
    return float(np.exp(np.log(taus[i - 1]) + frac * (np.log(taus[i]) - np.log(taus[i - 1]))))


_torch_checks()
