"""Figures of score-field geometry diagnostics (THEORY E): spectra, local dimension and
non-conservativeness of ``Jn = D_t J`` against ``tau``.

:func:`diagnostics_figure` draws dense diagnostics (every singular value);
:func:`matrix_free_figure` the matrix-free ones (extreme values with their Ritz bounds, the local
dimension and non-conservativeness with their errors, the spectral CDFs with their error bands);
:func:`comparison_figure` a network beside the predictions from its training set's covariance
(THEORY A), the empirical score (THEORY B) and the THEORY A read-out, in one figure."""

from __future__ import annotations

import numpy as np

from . import annotate_parameters, curve_style, legend, new_figure

TAU = r"$\tau = D_t / a_t^2$"
NONCONSERVATIVE = r"$\|A\|_F\, /\, \|J\|_F$"


def diagnostics_figure(summaries: list[dict], title: str = "", parameters=None):
    """Three panels against ``tau``: normalized singular values, local dimension (threshold and
    gap estimates), non-conservativeness (total, and tangent/normal blocks when known)."""
    order = np.argsort([s["tau"] for s in summaries])
    rows = [summaries[i] for i in order]
    tau = np.array([s["tau"] for s in rows])
    fig, (ax_sv, ax_dim, ax_nc) = new_figure(ncols=3)
    sv = np.array([s["singular_values"] for s in rows])
    marker = "o" if len(rows) < 12 else None
    for k in range(sv.shape[1]):
        ax_sv.plot(tau, sv[:, k], **curve_style(k, marker=False), lw=1, marker=marker, ms=3)
    ax_sv.set(xscale="log", xlabel=TAU, ylabel="singular values of $D_t J$",
              title="normalized spectrum")
    ax_dim.step(tau, [s["local_dimension"] for s in rows], where="mid", label="threshold",
                **curve_style(0, marker=False))
    ax_dim.step(tau, [s["local_dimension_gap"] for s in rows], where="mid", label="gap",
                **curve_style(1, marker=False))
    ax_dim.set(xscale="log", xlabel=TAU, ylabel="local dimension", title="local dimension")
    legend(ax_dim)
    ax_nc.plot(tau, [s["nonconservativeness"] for s in rows], **curve_style(0, marker=False),
               marker=marker, label="whole")
    for index, (key, label) in enumerate((("tangent_nonconservativeness", "tangent block"),
                                          ("normal_nonconservativeness", "normal block")), 1):
        values = [s.get(key) for s in rows]
        if any(v is not None for v in values):
            ax_nc.plot(tau, [np.nan if v is None else v for v in values], marker=marker,
                       **curve_style(index, marker=False), label=label)
    ax_nc.set(xscale="log", xlabel=TAU, ylabel=NONCONSERVATIVE, title="non-conservativeness")
    legend(ax_nc)
    return _titled(fig, title, parameters)


def _sorted_by_tau(summaries: list[dict]) -> tuple[list[dict], np.ndarray]:
    rows = [summaries[i] for i in np.argsort([s["tau"] for s in summaries])]
    return rows, np.array([s["tau"] for s in rows])


def _array(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.asarray(s[key], dtype=float) for s in rows])


def matrix_free_figure(summaries: list[dict], title: str = "", parameters=None):
    """Four panels: the top and bottom singular values of ``Jn`` (bars: Ritz bounds), the local
    dimension (band: its error), the non-conservativeness (bars: standard error) against
    ``tau``, and the CDF of the eigenvalues of the symmetric part at each time (bands: errors)."""
    rows, tau = _sorted_by_tau(summaries)
    fig, (ax_sv, ax_dim, ax_nc, ax_cdf) = new_figure(ncols=2, nrows=2)
    index = 0
    for end in ("top", "bottom"):
        values, bounds = _array(rows, f"singular_values_{end}"), _array(
            rows, f"singular_values_{end}_error")
        for k in range(values.shape[1]):
            style = curve_style(index, marker=False)
            ax_sv.errorbar(tau, values[:, k], yerr=bounds[:, k], color=style["color"],
                           linestyle=style["linestyle"], lw=1, marker="o", ms=2,
                           label=end if k == 0 else None)
            index += 1
    ax_sv.set(xscale="log", xlabel=TAU, ylabel="singular values of $D_t J$",
              title="extreme singular values")
    legend(ax_sv)
    dimension, error = _array(rows, "local_dimension_mean"), _array(rows, "local_dimension_error")
    ax_dim.plot(tau, dimension, marker="o", ms=3)
    ax_dim.fill_between(tau, dimension - error, dimension + error, alpha=0.3)
    ax_dim.set(xscale="log", xlabel=TAU, ylabel="local dimension", title="local dimension")
    ax_nc.errorbar(tau, _array(rows, "nonconservativeness"),
                   yerr=_array(rows, "nonconservativeness_error"), marker="o", ms=3)
    ax_nc.set(xscale="log", xlabel=TAU, ylabel=NONCONSERVATIVE, title="non-conservativeness")
    colors = plt_colors(len(rows))
    for s, color in zip(rows, colors, strict=True):
        cdf = s["eigenvalue_cdf"]
        grid, values, band = (np.asarray(cdf[k]) for k in ("grid", "cdf", "error"))
        ax_cdf.plot(grid, values, color=color, lw=1, label=rf"$\tau$ = {s['tau']:.3g}")
        ax_cdf.fill_between(grid, np.clip(values - band, 0, 1), np.clip(values + band, 0, 1),
                            color=color, alpha=0.2)
    ax_cdf.set(xlabel="eigenvalue of the symmetric part of $D_t J$", ylabel="CDF",
               title="spectral CDF (stochastic Lanczos)")
    legend(ax_cdf)
    return _titled(fig, title, parameters)


def plt_colors(count: int) -> list:
    """``count`` colors along the viridis map (one per time point)."""
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(count, 1))][:count]


def comparison_figure(comparison: dict, title: str = "", parameters=None):
    """The network beside its training set's predictions against ``tau``: local dimension
    (network, empirical score, Gaussian with the data covariance, THEORY A read-out), the
    largest eigenvalues of ``Jn``, the non-conservativeness, and the eigenvalue CDFs at each
    time (solid: network, dashed: empirical score, dotted: Gaussian)."""
    entries = sorted(comparison["time_points"], key=lambda e: e["tau"])
    tau = np.array([e["tau"] for e in entries])
    fig, (ax_dim, ax_top, ax_nc, ax_cdf) = new_figure(ncols=2, nrows=2)
    network = np.array([e["network"]["local_dimension"] for e in entries], dtype=float)
    error = np.array([e["network"].get("local_dimension_error", 0.0) for e in entries])
    ax_dim.errorbar(tau, network, yerr=error, ms=3, label="network", **curve_style(0))
    ax_dim.plot(tau, [e["empirical"]["local_dimension_mean"] for e in entries],
                ms=3, label="empirical score", **curve_style(1))
    ax_dim.plot(tau, [e["gaussian"]["local_dimension"] for e in entries],
                label="Gaussian, data covariance", **curve_style(2))
    ax_dim.plot(tau, [e["theory_readout"] for e in entries], label="THEORY A read-out",
                **curve_style(3))
    ax_dim.set(xscale="log", xlabel=TAU, ylabel="local dimension",
               title="local dimension")
    legend(ax_dim)
    for key, style, label in (("network", "-", "network"), ("empirical", "--", "empirical"),
                              ("gaussian", ":", "Gaussian")):
        top = np.array([np.asarray(e[key]["eigenvalues_top"], dtype=float) for e in entries])
        for k, colour in zip(range(top.shape[1]), plt_colors(top.shape[1]), strict=True):
            ax_top.plot(tau, top[:, k], ls=style, lw=1, color=colour,
                        label=label if k == 0 else None)
    ax_top.set(xscale="log", xlabel=TAU, ylabel="largest eigenvalues of $D_t J$",
               title="top of the spectrum")
    legend(ax_top)
    ax_nc.errorbar(tau, [e["network"]["nonconservativeness"] for e in entries],
                   yerr=[e["network"].get("nonconservativeness_error", 0.0) for e in entries],
                   marker="o", ms=3, label="network")
    ax_nc.axhline(0.0, color="gray", lw=1, ls="--", label="exact scores")
    ax_nc.set(xscale="log", xlabel=TAU, ylabel=NONCONSERVATIVE, title="non-conservativeness")
    legend(ax_nc)
    grid = np.asarray(comparison["grid"])
    for entry, color in zip(entries, plt_colors(len(entries)), strict=True):
        ax_cdf.plot(grid, entry["network"]["cdf"], color=color, lw=1.2,
                    label=rf"$\tau$ = {entry['tau']:.3g}")
        ax_cdf.plot(grid, entry["empirical"]["cdf"], color=color, lw=1, ls="--")
        ax_cdf.plot(grid, entry["gaussian"]["cdf"], color=color, lw=1, ls=":")
    ax_cdf.set(xlabel="eigenvalue of $D_t J$", ylabel="CDF",
               title="network -, empirical --, Gaussian :")
    legend(ax_cdf)
    return _titled(fig, title, parameters)


def _titled(fig, title: str | None, parameters: dict | None):
    """The figure with its title and its parameters written under it."""
    if title:
        fig.suptitle(title)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig
