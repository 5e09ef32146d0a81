"""Figures of DDPM coefficient design (THEORY D): (T, d) error maps and error-vs-T curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import new_figure


def sampler_phase_diagram_figure(grid: Mapping[str, np.ndarray], designs: Sequence[str],
                                 fits: Mapping[str, Mapping[str, float]], dim_for_rates: int):
    """One ``log10 KL`` map over ``(T, d)`` per design, and KL vs ``T`` at ``dim_for_rates`` with
    the fitted power laws."""
    fig, axes = new_figure(ncols=len(designs) + 1, width=4.2, height=3.6)
    T_all, dim_all = np.unique(grid["T"]), np.unique(grid["dim"])
    floor = 1e-30
    for ax, design in zip(axes, designs, strict=False):
        sel = grid["design"] == design
        table = np.full((dim_all.size, T_all.size), np.nan)
        for T, d, kl in zip(grid["T"][sel], grid["dim"][sel], grid["kl"][sel], strict=True):
            table[np.searchsorted(dim_all, d), np.searchsorted(T_all, T)] = kl
        image = ax.pcolormesh(T_all, dim_all, np.log10(np.maximum(table, floor)), shading="nearest",
                              cmap="viridis")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("steps T")
        ax.set_ylabel("ambient dimension d")
        ax.set_title(f"{design}: log10 KL(X_1 || Y_1)")
        fig.colorbar(image, ax=ax)
    ax = axes[-1]
    for design in designs:
        sel = (grid["design"] == design) & (grid["dim"] == dim_for_rates)
        order = np.argsort(grid["T"][sel])
        T, kl = grid["T"][sel][order], grid["kl"][sel][order]
        line, = ax.loglog(T, np.maximum(kl, floor), "o-", ms=3,
                          label=f"{design}: slope {fits[design]['kl_slope']:.2f}")
        ax.loglog(T, fits[design]["kl_prefactor"] * T.astype(float) ** fits[design]["kl_slope"],
                  "--", color=line.get_color(), lw=0.8)
    ax.set_xlabel("steps T")
    ax.set_ylabel(f"KL at d = {dim_for_rates}")
    ax.set_title("error vs T (fits dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sampler_error_figure(variances: np.ndarray, tangent_kl: np.ndarray, normal_kl_per_dim: float,
                         title: str):
    """Per-direction KL of one configuration: tangent directions and one normal direction."""
    fig, (ax,) = new_figure()
    positions = np.arange(variances.size + 1)
    values = np.r_[tangent_kl, normal_kl_per_dim]
    ax.bar(positions, np.maximum(values, 1e-300), color=["C0"] * variances.size + ["C3"])
    ax.set_yscale("log")
    ax.set_xticks(positions, [f"{v:.3g}" for v in variances] + ["normal"], rotation=45)
    ax.set_xlabel("data variance of the direction")
    ax.set_ylabel("KL per direction")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
