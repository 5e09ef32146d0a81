"""Every number the README states in prose is computed here and compared with the text.

Each :class:`Claim` finds its numbers in the README by a pattern (whitespace-insensitive) and
recomputes them. An exact claim matches when each stated number is the computed value rounded to
the digits stated; a Monte Carlo claim matches within three reported standard errors plus the
rounding. Editing a number in the README (or changing the code behind it) fails this test, and
:func:`test_an_edited_number_is_caught` shows that it does.
"""

from __future__ import annotations

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


def _text(path: Path = README) -> str:
    return re.sub(r"\s+", " ", path.read_text())


def _stated(claim: Claim, text: str) -> list[str]:
    found = re.search(claim.pattern, text)
    assert found, f"{claim.name}: the README no longer states this claim (pattern not found)"
    return list(found.groups())


def _mismatches(stated: list[str], values: list[float], errors: list[float]) -> list[str]:
    bad = []
    for text, value, error in zip(stated, values, errors, strict=True):
        decimals = len(text.split(".")[1]) if "." in text else 0
        allowed = 0.5 * 10.0**-decimals * (1 + 1e-9) + 3.0 * error
        if not abs(float(text) - value) <= allowed:
            bad.append(f"stated {text}, computed {value:.6g} (+- {error:.2g})")
    return bad


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


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.name for c in CLAIMS])
def test_readme_numbers_are_what_the_code_computes(claim):
    stated = _stated(claim, _text())
    values, errors = claim.compute()
    assert not _mismatches(stated, values, errors), (claim.name,
                                                      _mismatches(stated, values, errors))


def test_an_edited_number_is_caught():
    """Moving any stated number of an exact claim by two units of its last digit fails it."""
    text = _text()
    for claim in CLAIMS:
        if claim.compute in (_hierarchy_half_points, _digits):  # Monte Carlo: 3 stderr
            continue
        values, errors = claim.compute()
        found = re.search(claim.pattern, text)
        for i, number in enumerate(found.groups()):
            decimals = len(number.split(".")[1]) if "." in number else 0
            start, end = found.span(i + 1)
            edited = f"{float(number) + 2 * 10.0**-decimals:.{decimals}f}"
            edited_text = text[:start] + edited + text[end:]
            assert _mismatches(_stated(claim, edited_text), values, errors), (claim.name, edited)
