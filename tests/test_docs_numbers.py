"""Every number the README states in prose is computed here and compared with the text.

Each :class:`Claim` finds its numbers in the README by a pattern (whitespace-insensitive) and
recomputes them. An exact claim matches when each stated number is the computed value rounded to
the digits stated; a Monte Carlo claim matches within three reported standard errors plus the
rounding. Editing a number in the README (or changing the code behind it) fails this test, and
:func:`test_an_edited_number_is_caught` shows that it does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Claim:
    name: str
    pattern: str  # regex over the README with runs of whitespace collapsed to one space
    compute: Callable[[], tuple[list[float], list[float]]]  # (values, standard errors)
    rel: float = 0.0  # for "about" claims: a relative tolerance on top of the rounding


def _text(path: Path = README) -> str:
    return re.sub(r"\s+", " ", path.read_text())


def _stated(claim: Claim, text: str) -> list[str]:
    found = re.search(claim.pattern, text)
    assert found, f"{claim.name}: the README no longer states this claim (pattern not found)"
    return list(found.groups())


def _mismatches(stated: list[str], values: list[float], errors: list[float],
                rel: float = 0.0) -> list[str]:
    bad = []
    for text, value, error in zip(stated, values, errors, strict=True):
        decimals = len(text.split(".")[1]) if "." in text else 0
        allowed = 0.5 * 10.0**-decimals * (1 + 1e-9) + 3.0 * error + rel * abs(value)
        if not abs(float(text) - value) <= allowed:
            bad.append(f"stated {text}, computed {value:.6g} (+- {error:.2g})")
    return bad


def _assert_claim(claim: Claim) -> None:
    values, errors = claim.compute()
    bad = _mismatches(_stated(claim, _text()), values, errors, claim.rel)
    assert not bad, (claim.name, bad)


# ----------------------------------------------------------------------------- computations
def _worked_example():
    from diffphase.solvers.spectral import VarianceLaw, spectral_summary

    return spectral_summary(VarianceLaw.from_groups([0.2, 0.2], [1.0, 0.09]), tau=0.1,
                            delta=0.1)


def _edges():
    edges = np.ravel(_worked_example()["edges"]).tolist()
    return edges, [0.0] * 4


def _gaps():
    summary = _worked_example()
    gap = summary["intermediate_gaps"][0]
    return [summary["manifold_gap"], gap["width"]], [0.0, 0.0]


def _widest_gap():
    gap = _worked_example()["intermediate_gaps"][0]
    return [gap["max_width"], gap["tau_max"], *gap["window"]], [0.0] * 4


def _merge_ratio():
    """Variance ratio at which the two bulks of the default ratio map (fractions 0.2, 0.2;
    variances 1 and r) merge, by bisection on the number of bulks."""
    from diffphase.solvers.spectral import VarianceLaw, spectrum_edges

    def bulks(ratio):
        return spectrum_edges(VarianceLaw.from_groups([0.2, 0.2], [1.0, ratio])).shape[0]

    lo, hi = 0.1, 0.5
    assert bulks(lo) == 2 and bulks(hi) == 1
    while hi - lo > 1e-7:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if bulks(mid) == 2 else (lo, mid)
    return [0.5 * (lo + hi)], [0.0]


def _hierarchy_half_points():
    """thresholds at (16, 4, 2), L = 5 with its defaults: masking, uniform and Gaussian noise."""
    from diffphase.studies.hierarchy import hierarchy_thresholds

    values, errors = [], []
    for channel in ("mask", "uniform", "gaussian"):
        summary = hierarchy_thresholds(16, 4, 2, None, channel, 5)
        values.append(summary["eps_half"])
        errors.append(summary["eps_half_stderr"])
    return values + [summary["eps_star"]], errors + [0.0]


def _slope_16_16_3():
    from diffphase.solvers import hierarchy as mf

    return [mf.critical_point(16, 16, 3)["slope"]], [0.0]


def _digits():
    """analyze on the bundled digits with its defaults (seed 0)."""
    pytest.importorskip("sklearn")
    from diffphase.studies.analyze import analyze

    summary = analyze(dataset="digits").summary
    measured = summary["collapse_measured"]
    return ([summary["n"], summary["dim"], summary["rank"], summary["lambda_max"],
             summary["tau_S"], summary["tau_C"], summary["tau_C_entropy"], measured["tau_half"]],
            [0, 0, 0, 0, 0, 0, summary["tau_C_entropy_stderr"],
             measured["tau_half"] * measured["tau_half_ln_stderr"]])


CLAIMS = [
    Claim("worked example: bulk edges",
          r"two separate bulks, `\[([\d.]+), ([\d.]+)\]` and `\[([\d.]+), ([\d.]+)\]`", _edges),
    Claim("worked example: manifold and intermediate gap widths",
          r"manifold gap of width ([\d.]+), and an intermediate gap of width ([\d.]+)", _gaps),
    Claim("worked example: widest gap, its tau and the visibility window",
          r"widest \(([\d.]+)\) at `tau\* = sqrt\(u_1 l_2\) = ([\d.]+)` and wider than "
          r"`delta = 0.1` for `tau` in `\[([\d.]+), ([\d.]+)\]`", _widest_gap),
    Claim("two-group bulk merge ratio",
          r"where the two bulks merge, at a variance ratio of ([\d.]+)\)", _merge_ratio),
    Claim("hierarchy half points of masking, uniform and Gaussian noise",
          r"half points ([\d.]+), ([\d.]+) and `t/T = ([\d.]+)` against `eps\* = ([\d.]+)` for "
          r"`\(16, 4, 2\)`", _hierarchy_half_points),
    Claim("mean-field slope at (16, 16, 3)", r"the slope ([\d.]+) amplifies", _slope_16_16_3),
    Claim("analyze on the digits",
          r"On the digits \((\d+) rows, `d = (\d+)`, rank (\d+) after centring\): `lambda_max = "
          r"([\d.]+)`, so speciation at `tau_S = ([\d.]+)`; the Gaussian route puts collapse at "
          r"`tau_C = ([\d.]+)` and the entropy route at ([\d.]+), and the measured crossover is "
          r"at `tau_half = ([\d.]+)`", _digits),
]


# ----------------------------------------------------------------------------- full tier
@functools.cache
def _full_tier(model: str) -> list[dict]:
    """``diffphase validate --model MODEL --tier full --seed 0``: one row per comparison."""
    from diffphase.validate.registry import run_checks

    rows = []
    for result in run_checks(model, "full", seed=0):
        comparison = result.comparison
        rows.append(result.as_row() | {"details": comparison.details if comparison else {}})
    return rows


def _rows(model: str, check: str, contains: str) -> list[dict]:
    rows = [r for r in _full_tier(model) if r["check"] == check and contains in r["quantity"]]
    assert rows, (model, check, contains)
    return rows


def _condensation_factors(data: str, blocks: tuple[str, ...]):
    """Predicted over measured condensation tau over N (and blocks): the smallest, the largest."""
    factors = [r["prediction"] / r["measurement"]
               for block in blocks
               for r in _rows("memorization", "geometric", f"tau_c {block} (condensation), {data}")]
    return [min(factors), max(factors)], [0.0, 0.0]


def _collapse_offsets():
    """Percent by which the own-weight crossover lies below tau_C at most, and above it at most;
    then the mean crossover width per d over its three N (with the error of the mean)."""
    rows = _rows("memorization", "collapse", "ln(crossover/tau_C), d=")
    above = [100.0 * (r["details"]["crossover"] / r["details"]["tau_C"] - 1.0) for r in rows]
    above = [-min(above), max(above)]
    widths, errors = [], []
    for dim in (32, 64, 128):
        mine = [r["details"] for r in rows if f"d={dim}," in r["quantity"]]
        widths.append(float(np.mean([d["width_ln_tau"] for d in mine])))
        errors.append(float(np.sqrt(np.sum([d["width_stderr"] ** 2 for d in mine])) / len(mine)))
    return [*above, *widths], [0.0, 0.0, *errors]


def _non_gaussian_collapse():
    """Percent by which the entropy-route tau_C lies below the measured crossover and the
    crossovers' half-widths (d = 32, then d = 16), and the entropy route's deviation from the
    Gaussian closed form in percent (d = 16, then d = 32)."""
    by_dim = {dim: _rows("memorization", "collapse-non-gaussian", f"sphere d={dim},")[0]
              for dim in (16, 32)}
    below = [100.0 * (by_dim[d]["details"]["crossover"] / by_dim[d]["details"]["tau_C"] - 1.0)
             for d in (32, 16)]
    half = [0.5 * by_dim[d]["details"]["width_ln_tau"] for d in (32, 16)]
    gaussian = [100.0 * (np.exp(_rows("memorization", "entropy-route", f"d={d},")[0][
        "measurement"]) - 1.0) for d in (16, 32)]
    return [*below, *half, *gaussian], [0.0] * 6


def _bp_at_eps_star():
    """BP class preservation at eps* for (16, 16, 3), depths 6-8, and the mean-field value."""
    rows = [_rows("hierarchy", "bp-vs-mean-field", f"(v=16,m=16,s=3,L={L})")[0] for L in (6, 7, 8)]
    return [r["measurement"] for r in rows] + [rows[0]["prediction"]], [0.0] * 4


def _level_width_ratio():
    row = [r for r in _rows("hierarchy", "unchanged-widths", "width(class)/width(level 6)")
           if "P(unchanged)" in r["quantity"]][0]
    return [row["measurement"], row["prediction"]], [0.0, 0.0]


def _gaussian_tv_exponents():
    """The fitted decay exponents in T of the exact Gaussian TV bounds (upper, lower), k = 8."""
    return [-_rows("sampler", "rate-in-T", f"gaussian exact ({bound}, k=8)")[0]["measurement"]
            for bound in ("tv_upper", "tv_lower")], [0.0, 0.0]


FULL_TIER_CLAIMS = [
    Claim("geometric memorization on the sphere: std-1 block",
          r"the std-1 block condenses about ([\d.]+)x to ([\d.]+)x later",
          lambda: _condensation_factors("sphere", ("std 1",)), rel=0.05),
    Claim("geometric memorization on raw data: both blocks",
          r"condense together as predicted but about ([\d.]+)x to ([\d.]+)x later",
          lambda: _condensation_factors("raw", ("std 1", "std 0.3")), rel=0.05),
    Claim("collapse crossover offsets and widths",
          r"lies between ([\d.]+)% below and ([\d.]+)% above `tau_C` for `d = 32, 64, 128` and "
          r"sharpens with "
          r"`d` \(mean widths ([\d.]+), ([\d.]+), ([\d.]+) in `ln tau`", _collapse_offsets),
    Claim("collapse of non-Gaussian data",
          r"lies ([\d.]+)% \(`d = 32`, `N = 1000`\) and ([\d.]+)% \(`d = 16`, `N = 300`\) below "
          r"the measured own-weight crossover, inside its half-width \(([\d.]+), ([\d.]+) in "
          r"`ln tau`\): agrees. The same route reproduces the Gaussian closed form to ([\d.]+)% "
          r"\(`d = 16`\) and ([\d.]+)% \(`d = 32`\)", _non_gaussian_collapse),
    Claim("hierarchy: BP at eps* for (16, 16, 3)",
          r"BP gives ([\d.]+), ([\d.]+), ([\d.]+) against ([\d.]+)", _bp_at_eps_star),
    Claim("sampler: exact Gaussian TV decay in T",
          r"the exact Gaussian TV bounds fall as `T\^-([\d.]+)` and `T\^-([\d.]+)`",
          _gaussian_tv_exponents),
    Claim("hierarchy: class/level width ratio",
          r"class/level width ratio ([\d.]+) against ([\d.]+)", _level_width_ratio),
]


@pytest.mark.slow
@pytest.mark.parametrize("claim", FULL_TIER_CLAIMS, ids=[c.name for c in FULL_TIER_CLAIMS])
def test_readme_findings_are_what_the_full_tier_computes(claim):
    _assert_claim(claim)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.name for c in CLAIMS])
def test_readme_numbers_are_what_the_code_computes(claim):
    _assert_claim(claim)


def test_an_edited_number_is_caught():
    """Moving any stated number of an exact claim by two units of its last digit fails it."""
    text = _text()
    for claim in CLAIMS:
        if claim.compute in (_hierarchy_half_points, _digits) or claim.rel or (
                claim in FULL_TIER_CLAIMS):  # Monte Carlo or "about": wider tolerances
            continue
        values, errors = claim.compute()
        found = re.search(claim.pattern, text)
        for i, number in enumerate(found.groups()):
            decimals = len(number.split(".")[1]) if "." in number else 0
            start, end = found.span(i + 1)
            edited = f"{float(number) + 2 * 10.0**-decimals:.{decimals}f}"
            edited_text = text[:start] + edited + text[end:]
            assert _mismatches(_stated(claim, edited_text), values, errors), (claim.name, edited)
