"""Checks of the spectral-phase model (THEORY A) against finite-``d`` exact Jacobians.

:meth:`diffphase.data.laws.LinearGaussian.manifold` samples ``F`` (random Gaussian
``N(0, 1/d)`` entries, or orthonormal axis-aligned columns) and the latent variances;
:func:`diffphase.simulate.spectral.normalized_jacobian` forms the exact
``Jn = D J = -D (a^2 C + D I)^{-1}`` as a matrix (independently of the eigenvalue map used by the
theory) and diagonalizes it. The registered
checks compare, at ``d = 500`` (quick) and ``d = 500, 2000`` (full), over several seeds:

* ``cdf``: Kolmogorov distance between the empirical tangent spectrum of ``C`` and the theory CDF;
* ``edges``: extreme tangent eigenvalues vs the exact edges, within the ``d^{-2/3}`` edge scale;
* ``gaps``: the intermediate gap width at ``tau*`` measured from the eigenvalues vs theory;
* ``phases``: the phase read off the finite-``d`` spectrum at ``tau`` inside each phase;
* ``dimension``: the count of eigenvalues above ``-1 + delta`` vs ``d`` times the theory mass;
* ``bulks``: the number of separate bulks.

Tolerances are stated in each comparison's ``details``.
"""

from __future__ import annotations

import numpy as np

from ..data.laws import LinearGaussian
from ..models import PHASES
from ..simulate.spectral import normalized_jacobian, tangent_covariance_eigenvalues, theory_cdf
from ..solvers import spectral as solver
from .registry import Comparison, register_check

CASES = {  # name -> (fractions, variances)
    "one-group": ([0.25], [1.0]),
    "two-groups": ([0.2, 0.2], [1.0, 0.09]),
}


def _sizes(tier: str) -> tuple[list[int], int]:
    return ([500], 2) if tier == "quick" else ([500, 2000], 4)


def _manifolds(tier, rng, case):
    fractions, variances = CASES[case]
    dims, seeds = _sizes(tier)
    for d in dims:
        for seed in range(seeds):
            yield d, seed, LinearGaussian.manifold(fractions, variances, d, "random", rng)


@register_check("spectral", "cdf", description="Kolmogorov distance, finite-d spectrum vs theory")
def check_cdf(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    for case in CASES:
        law = solver.VarianceLaw.from_groups(*CASES[case])
        for d, seed, manifold in _manifolds(tier, rng, case):
            eig = np.sort(tangent_covariance_eigenvalues(manifold))
            m = eig.size
            cdf = theory_cdf(law, eig)
            empirical_hi = np.arange(1, m + 1) / m
            distance = float(
                np.max(np.maximum(np.abs(empirical_hi - cdf), np.abs(empirical_hi - 1 / m - cdf)))
            )
            # eigenvalue counting fluctuations are O(log m / m); allow 1.5 log(m)/m
            tol = 1.5 * np.log(m) / m
            out.append(
                Comparison(
                    f"{case} d={d} seed={seed}: sup|F_d - F|",
                    0.0,
                    distance,
                    tol,
                    details={"m": m, "tolerance_rule": "1.5 ln(m)/m"},
                )
            )
    return out


@register_check("spectral", "edges", description="extreme tangent eigenvalues vs exact edges")
def check_edges(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    for case in CASES:
        law = solver.VarianceLaw.from_groups(*CASES[case])
        edges = solver.spectrum_edges(law)
        for d, seed, manifold in _manifolds(tier, rng, case):
            eig = tangent_covariance_eigenvalues(manifold)
            m = eig.size
            for name, predicted, measured in (
                ("lowest", edges[0, 0], eig.min()),
                ("highest", edges[-1, 1], eig.max()),
            ):
                # Tracy–Widom scale: fluctuations ~ edge * m^(-2/3); allow 4 of them
                tol = 4 * max(predicted, edges[-1, 1] * 0.05) * m ** (-2 / 3)
                out.append(
                    Comparison(
                        f"{case} d={d} seed={seed}: {name} edge",
                        predicted,
                        measured,
                        tol,
                        details={"tolerance_rule": "4 x edge x m^-2/3"},
                    )
                )
    return out


@register_check("spectral", "bulks", description="number of separate bulks")
def check_bulks(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    for case in CASES:
        law = solver.VarianceLaw.from_groups(*CASES[case])
        edges = solver.spectrum_edges(law)
        for d, seed, manifold in _manifolds(tier, rng, case):
            eig = np.sort(tangent_covariance_eigenvalues(manifold))
            # a gap in the finite spectrum: a spacing of log-eigenvalues wider than 15 times
            # their median spacing (scale-free; no theory input)
            spacing = np.diff(np.log(eig))
            wide = spacing > 15 * np.median(spacing)
            measured = 1 + int(np.count_nonzero(wide))
            out.append(
                Comparison(f"{case} d={d} seed={seed}: bulks", edges.shape[0], measured, 0.0)
            )
    return out


@register_check("spectral", "gaps", description="intermediate gap over its visibility window")
def check_gaps(tier: str, rng: np.random.Generator) -> list[Comparison]:
    """The gap between the two bulks, measured as the widest spacing of the finite-``d`` tangent
    spectrum of ``Jn``, at the window start ``tau_lo``, at ``tau*`` and at the window end
    ``tau_hi`` (predicted widths ``delta``, maximum, ``delta``)."""
    out = []
    delta = 0.1
    law = solver.VarianceLaw.from_groups(*CASES["two-groups"])
    edges = solver.spectrum_edges(law)
    (gap,) = solver.intermediate_gaps(1.0, edges, delta)
    lo_edge, up_edge = gap["upper_bulk_lower_edge"], gap["lower_bulk_upper_edge"]
    points = {
        "window start": gap["window"][0],
        "tau*": gap["tau_max"],
        "window end": gap["window"][1],
    }
    for d, seed, manifold in _manifolds(tier, rng, "two-groups"):
        m = manifold.intrinsic_dim
        for label, tau in points.items():
            jn = np.linalg.eigvalsh(normalized_jacobian(manifold, tau))
            measured = float(np.diff(np.sort(jn)[-m:]).max())  # the gap is the widest spacing
            predicted = float(solver.formula("gap", lo_edge, up_edge, tau))
            # each edge e moves by ~ 4 e m^(-2/3) (see check_edges); propagated through the
            # symbolic derivatives dW/dl and dW/du
            sensitivity = lo_edge * abs(solver.formula("gap_dl", lo_edge, up_edge, tau)) + (
                up_edge * abs(solver.formula("gap_du", lo_edge, up_edge, tau))
            )
            tol = 4 * m ** (-2 / 3) * sensitivity
            out.append(
                Comparison(
                    f"two-groups d={d} seed={seed}: gap width at {label} (tau={tau:.3g})",
                    predicted,
                    measured,
                    tol,
                    details={"tolerance_rule": "4 m^-2/3 sum_e e |dW/de|"},
                )
            )
    return out


def finite_d_phase(jn_eigenvalues: np.ndarray, m: int, delta: float) -> str:
    """The phase read off a finite spectrum of ``Jn`` with ``m`` tangent directions."""
    tangent = np.sort(jn_eigenvalues)[-m:]
    if np.all(jn_eigenvalues <= -1 + delta):
        return "trivial"
    if np.all(tangent >= -delta):
        return "consolidation"
    return "coverage"


@register_check("spectral", "phases", description="phase read off the finite-d spectrum")
def check_phases(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    delta = 0.1
    for case in CASES:
        law = solver.VarianceLaw.from_groups(*CASES[case])
        edges = solver.spectrum_edges(law)
        t_cons = solver.formula("consolidation_tau", edges[0, 0], delta)
        t_triv = solver.formula("trivial_tau", edges[-1, 1], delta)
        taus = {
            "consolidation": t_cons / 4,
            "coverage": np.sqrt(t_cons * t_triv),
            "trivial": t_triv * 4,
        }
        for d, seed, manifold in _manifolds(tier, rng, case):
            for expected, tau in taus.items():
                jn = np.linalg.eigvalsh(normalized_jacobian(manifold, tau))
                measured = finite_d_phase(jn, manifold.intrinsic_dim, delta)
                predicted = str(solver.phase_of(tau, edges, delta))
                out.append(
                    Comparison(
                        f"{case} d={d} seed={seed}: phase at tau={tau:.3g}",
                        float(PHASES.index(predicted)),
                        float(PHASES.index(measured)),
                        0.0,
                        details={
                            "predicted": predicted,
                            "measured": measured,
                            "intended": expected,
                        },
                    )
                )
    return out


@register_check("spectral", "dimension", description="dimension read-out vs d x theory mass")
def check_dimension(tier: str, rng: np.random.Generator) -> list[Comparison]:
    out = []
    delta = 0.1
    law = solver.VarianceLaw.from_groups(*CASES["two-groups"])
    taus = np.array([0.05, 0.3, 1.0, 3.0])
    predicted_fraction = solver.dimension_fraction(taus, law, delta=delta)
    for d, seed, manifold in _manifolds(tier, rng, "two-groups"):
        for tau, fraction in zip(taus, predicted_fraction, strict=True):
            jn = np.linalg.eigvalsh(normalized_jacobian(manifold, tau))
            measured = int(np.count_nonzero(jn > -1 + delta))
            # counting error: O(log m) eigenvalues near the threshold, plus the rounding of m_k
            tol = np.log(manifold.intrinsic_dim) + 1
            out.append(
                Comparison(
                    f"two-groups d={d} seed={seed}: dimension at tau={tau:g}",
                    float(fraction * d),
                    float(measured),
                    tol,
                    details={"tolerance_rule": "ln(m) + 1 eigenvalues"},
                )
            )
    return out
