"""Figures of the hierarchy model (THEORY C): class-preservation maps, eps* over (f, s), and
measured forward-backward curves next to the predictions. Level 0 is the root (the class)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import PALETTE, annotate_parameters, curve_style, legend, new_figure

#: noise conventions -> axis labels in math text
NOISE_LABELS = {"eps": r"noise $\epsilon$", "noise": "noise",
                "mask_probability": "mask probability $p$",
                "replace_probability": "replacement probability $p$",
                "t_over_T_linear_ddpm": "$t/T$ (linear DDPM schedule)"}


def _noise_label(label: str) -> str:
    return NOISE_LABELS.get(label, label.replace("_", " "))


def preservation_map_figure(noise: np.ndarray, depths: np.ndarray, preservation: np.ndarray,
                            eps_star_f: np.ndarray, f_values: np.ndarray, s_values,
                            levels: np.ndarray | None = None, noise_label: str = "eps",
                            parameters: Mapping | None = None):
    """Left: class preservation over (noise, depth); middle: per-level beliefs at the deepest
    depth; right: eps* of the large-v map against f for each s."""
    fig, (ax0, ax1, ax2) = new_figure(3, 1)
    image = ax0.pcolormesh(noise, depths, preservation, shading="nearest", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax0, label="class preservation")
    ax0.set_xlabel(_noise_label(noise_label))
    ax0.set_ylabel("depth $L$")
    ax0.set_title("mean field")
    if levels is not None:
        for lv in range(levels.shape[1]):
            ax1.plot(noise, levels[:, lv], **curve_style(lv), label=f"level {lv}")
        ax1.set_xlabel(_noise_label(noise_label))
        ax1.set_ylabel("belief on the true value")
        ax1.set_title(f"levels at $L = {levels.shape[1] - 1}$ (0: class)")
        legend(ax1, ncols=2 if levels.shape[1] > 6 else 1)
    else:
        ax1.set_axis_off()
    for index, (row, s) in enumerate(zip(eps_star_f, s_values, strict=True)):
        ax2.plot(f_values, row, **curve_style(index), label=f"$s = {s}$")
    ax2.set_xlabel(r"$f = m / v^{s-1}$")
    ax2.set_ylabel(r"$\epsilon^*$ (large $v$)")
    legend(ax2)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig


def forward_backward_figure(noise: np.ndarray, runs: list, noise_label: str = "noise",
                            parameters: Mapping | None = None):
    """Left: class preservation vs noise at each depth, measured (BP posterior samples, with
    standard errors, markers) and predicted (lines in the depth's colour, one line style per
    prediction). Right: per-level P(node unchanged) at the deepest tree.

    ``runs`` is a list of ``(depth, measured, predicted)``."""
    fig, (ax0, ax1) = new_figure(2, 1)
    styles = ("-", "--", ":", "-.")
    for index, (depth, measured, predicted) in enumerate(runs):
        colour = PALETTE[index % (len(PALETTE) - 1)]
        ax0.errorbar(noise, measured["class_posterior"], yerr=measured["class_posterior_se"],
                     fmt="o", color=colour, label=f"$L = {depth}$: BP (measured)")
        for style, (name, values) in zip(styles, predicted.items(), strict=False):
            ax0.plot(noise, values, linestyle=style, color=colour,
                     label=f"$L = {depth}$: {name.replace('_', ' ')}")
    ax0.set_xlabel(_noise_label(noise_label))
    ax0.set_ylabel("class preservation")
    legend(ax0)
    depth, measured, _ = max(runs, key=lambda run: run[0])
    unchanged = np.asarray(measured["unchanged"])  # (noise, levels)
    for lv in range(unchanged.shape[1]):
        ax1.plot(noise, unchanged[:, lv], **curve_style(lv), label=f"level {lv}")
    ax1.set_xlabel(_noise_label(noise_label))
    ax1.set_ylabel("$P$(node unchanged)")
    ax1.set_title(f"BP posterior sample, $L = {depth}$")
    legend(ax1, ncols=2 if unchanged.shape[1] > 6 else 1)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig
