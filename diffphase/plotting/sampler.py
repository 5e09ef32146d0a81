"""Figures of DDPM coefficient design (THEORY D): (T, d) error maps and error-vs-T curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from . import annotate_parameters, curve_style, legend, new_figure, prediction_style

#: plotted floor of a KL that underflows (log axes)
KL_FLOOR = 1e-30


def sampler_phase_diagram_figure(grid: Mapping[str, np.ndarray], designs: Sequence[str],
                                 fits: Mapping[str, Mapping[str, float]], dim_for_rates: int,
                                 parameters: Mapping | None = None):
    """One ``log10 KL`` map over ``(T, d)`` per design, and KL vs ``T`` at ``dim_for_rates`` with
    the fitted power laws (thin, in the design's colour), on a grid of three panels a
    row; ``parameters`` are written under the figure."""
    ncols = 3
    nrows = -(-(len(designs) + 1) // ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows)
    T_all, dim_all = np.unique(grid["T"]), np.unique(grid["dim"])
    for ax, design in zip(axes, designs, strict=False):
        sel = grid["design"] == design
        table = np.full((dim_all.size, T_all.size), np.nan)
        for T, d, kl in zip(grid["T"][sel], grid["dim"][sel], grid["kl"][sel], strict=True):
            table[np.searchsorted(dim_all, d), np.searchsorted(T_all, T)] = kl
        image = ax.pcolormesh(T_all, dim_all, np.log10(np.maximum(table, KL_FLOOR)),
                              shading="nearest", cmap="viridis")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("steps $T$")
        ax.set_ylabel("ambient dimension $d$")
        ax.set_title(design)
        fig.colorbar(image, ax=ax, label=r"$\log_{10}\,\mathrm{KL}(X_1\,\|\,Y_1)$")
    ax = axes[len(designs)]
    for index, design in enumerate(designs):
        sel = (grid["design"] == design) & (grid["dim"] == dim_for_rates)
        order = np.argsort(grid["T"][sel])
        T, kl = grid["T"][sel][order], grid["kl"][sel][order]
        ax.loglog(T, np.maximum(kl, KL_FLOOR), **curve_style(index),
                  label=f"{design}: slope {fits[design]['kl_slope']:.2f}")
        ax.loglog(T, fits[design]["kl_prefactor"] * T.astype(float) ** fits[design]["kl_slope"],
                  **prediction_style(index))
    ax.set_xlabel("steps $T$")
    ax.set_ylabel(rf"$\mathrm{{KL}}$ at $d = {dim_for_rates}$")
    ax.set_title("error vs $T$ (thin: fits)")
    ax.xaxis.set_minor_formatter(NullFormatter())
    spare = axes[len(designs) + 1:]
    for extra in spare:
        extra.set_axis_off()
    if spare:  # the legend in the free panel, off the curves
        spare[0].legend(*ax.get_legend_handles_labels(), loc="center")
    else:
        legend(ax)
    annotate_parameters(fig, {**(parameters or {}), "$d$ of the fits": dim_for_rates})
    return fig


def sampler_error_figure(variances: np.ndarray, tangent_kl: np.ndarray, normal_kl_per_dim: float,
                         title: str, parameters: Mapping | None = None):
    """Per-direction KL of one configuration: tangent directions and one normal direction."""
    from . import PALETTE

    fig, (ax,) = new_figure()
    positions = np.arange(variances.size + 1)
    values = np.r_[tangent_kl, normal_kl_per_dim]
    ax.bar(positions, np.maximum(values, 1e-300),
           color=[PALETTE[0]] * variances.size + [PALETTE[1]])
    ax.set_yscale("log")
    ax.set_xticks(positions, [f"{v:.3g}" for v in variances] + ["normal"], rotation=45)
    ax.set_xlabel(r"data variance $\sigma^2$ of the direction")
    ax.set_ylabel(r"$\mathrm{KL}$ per direction")
    ax.set_title(title)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig
