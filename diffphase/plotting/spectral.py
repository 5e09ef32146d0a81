"""Figures of the spectral model (THEORY A): densities with edges and gaps; phase diagrams."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap

from . import PALETTE, annotate_parameters, curve_style, legend, new_figure

#: phase colours (light, colour-blind safe: grey, sky blue, orange of the palette, lightened)
PHASE_COLORS = {"trivial": "#d9d9d9", "coverage": "#a6d4f0", "consolidation": "#f5cd8a"}


def spectrum_figure(summary: dict, lam, rho_c, jn, rho_j, parameters: dict | None = None):
    """Left: density of C (nonzero part) with bulk edges; right: normalized Jacobian density with
    the normal atom at -1, the manifold gap and intermediate gaps shaded. ``parameters`` are
    written under the figure."""
    fig, (ax_c, ax_j) = new_figure(ncols=2)
    edges = np.asarray(summary["edges"])
    if summary["subspace"] == "orthonormal":
        ax_c.vlines(lam, 0, rho_c, lw=2, color=PALETTE[0])
        ax_j.vlines(jn, 0, rho_j, lw=2, color=PALETTE[0])
    else:
        ax_c.plot(lam, rho_c, **curve_style(0, marker=False))
        ax_j.plot(jn, rho_j, **curve_style(0, marker=False))
    for lo, hi in edges:
        for x in (lo, hi):
            ax_c.axvline(x, color="k", ls=":", lw=0.8)
    ax_c.set(
        xlabel=r"$\lambda$ (eigenvalue of $C$)",
        ylabel=r"$\rho_C(\lambda)$",
        title=f"$C$: {summary['n_bulks']} bulk(s), atom {1 - summary['alpha']:.2g} at 0",
    )
    jedges = np.asarray(summary["edges_jacobian"])
    ax_j.axvspan(-1, jedges[0, 0], color=PALETTE[1], alpha=0.15, label="manifold gap")
    for (_, hi), (lo, _) in zip(jedges[:-1], jedges[1:], strict=True):
        ax_j.axvspan(hi, lo, color=PALETTE[2], alpha=0.2, label="intermediate gap")
    ax_j.axvline(-1, color=PALETTE[1], lw=2, label=f"normal atom {1 - summary['alpha']:.2g}")
    ax_j.set(
        xlim=(-1.05, 0.02),
        xlabel=r"eigenvalue of $J_n = D\,J$",
        ylabel=r"$\rho_{J_n}$",
        title=rf"$\tau$ = {summary['tau']:.3g}: {summary['phase']}",
    )
    handles, labels = ax_j.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax_j.legend(unique.values(), unique.keys(), loc="upper left")
    if parameters:
        annotate_parameters(fig, parameters)
    return fig


def phase_map(ax, x, y, phase_grid, contour_grid=None, contour_label="", levels=(0.1, 0.3, 0.5)):
    """Categorical phase map with optional contours (x: tau on a log axis)."""
    names = list(PHASE_COLORS)
    codes = np.vectorize(names.index)(phase_grid)
    cmap = ListedColormap([PHASE_COLORS[n] for n in names])
    ax.pcolormesh(x, y, codes, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, shading="auto")
    if contour_grid is not None:
        cs = ax.contour(x, y, contour_grid, levels=levels, colors="k", linewidths=0.8)
        ax.clabel(cs, fmt=f"{contour_label} = %.1f", inline_spacing=2)
    ax.set_xscale("log")
    for name in names:
        ax.plot([], [], "s", color=PHASE_COLORS[name], label=name, ms=8)
    legend(ax, loc="lower left", frameon=True, framealpha=0.9)


def _diagram_panel(ax, diagram, row_axis: str, contour: str, label: str, levels) -> None:
    """One phase map of a :class:`~diffphase.studies.spectral.Diagram` (rows x tau)."""
    shape = (diagram.axes[row_axis].size, diagram.axes["tau"].size)
    phase_map(
        ax,
        diagram.axes["tau"],
        diagram.axes[row_axis],
        diagram.columns["phase"].reshape(shape),
        diagram.columns[contour].reshape(shape),
        label,
        levels=levels,
    )


def phase_diagram_figure(alpha_diag, ratio_diag, delta: float, parameters: dict | None = None):
    """The two phase maps (one group: alpha vs tau; two groups: variance ratio vs tau) with the
    gap widths as contours."""
    fig, (ax1, ax2) = new_figure(ncols=2)
    _diagram_panel(ax1, alpha_diag, "alpha", "manifold_gap", "$W_M$", (0.1, 0.3, 0.5))
    ax1.set(
        xlabel=r"$\tau$",
        ylabel=r"$\alpha = m/d$",
        title="one group; contours: manifold gap $W_M$",
    )
    _diagram_panel(ax2, ratio_diag, "variance_ratio", "intermediate_gap", "$W$", (0.1, 0.2, 0.4))
    ax2.set_yscale("log")
    ax2.set(
        xlabel=r"$\tau$",
        ylabel=r"variance ratio $\sigma_2^2/\sigma_1^2$",
        title="two groups; contours: intermediate gap $W$",
    )
    annotate_parameters(fig, {r"$\delta$": delta, r"$\sigma^2$ (one group)": 1.0,
                              r"$\alpha_k$ (two groups)": "0.2, 0.2", **(parameters or {})})
    return fig
