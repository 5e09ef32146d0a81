"""Figures of the hierarchy model (THEORY C): class-preservation maps, eps* over (f, s), and
measured forward-backward curves next to the predictions. Level 0 is the root (the class)."""

from __future__ import annotations

import numpy as np

from . import new_figure


def preservation_map_figure(noise: np.ndarray, depths: np.ndarray, preservation: np.ndarray,
                            eps_star_f: np.ndarray, f_values: np.ndarray, s_values,
                            levels: np.ndarray | None = None, noise_label: str = "eps"):
    """Left: class preservation over (noise, depth); middle: per-level beliefs at the deepest
    depth; right: eps* of the large-v map against f for each s."""
    fig, (ax0, ax1, ax2) = new_figure(3, 1, width=4.6)
    image = ax0.pcolormesh(noise, depths, preservation, shading="nearest", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax0, label="class preservation (mean field)")
    ax0.set_xlabel(noise_label)
    ax0.set_ylabel("depth L")
    if levels is not None:
        for lv in range(levels.shape[1]):
            ax1.plot(noise, levels[:, lv], label=f"level {lv}")
        ax1.set_xlabel(noise_label)
        ax1.set_ylabel("belief on true value (level 0 = class)")
        ax1.legend(fontsize=6)
    for row, s in zip(eps_star_f, s_values, strict=True):
        ax2.plot(f_values, row, label=f"s={s}")
    ax2.set_xlabel("f = m / v^(s-1)")
    ax2.set_ylabel("eps* (large v)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def forward_backward_figure(noise: np.ndarray, runs: list, noise_label: str = "noise"):
    """Left: class preservation vs noise at each depth, measured (BP posterior samples, with
    standard errors) and predicted. Right: per-level P(node unchanged) at the deepest tree.

    ``runs`` is a list of ``(depth, measured, predicted)``."""
    fig, (ax0, ax1) = new_figure(2, 1)
    for index, (depth, measured, predicted) in enumerate(runs):
        color = f"C{index % 10}"
        ax0.errorbar(noise, measured["class_posterior"], yerr=measured["class_posterior_se"],
                     fmt="o", color=color, label=f"L={depth}: BP (measured)")
        for style, (name, values) in zip(("-", "--", ":"), predicted.items(), strict=False):
            ax0.plot(noise, values, style, color=color, label=f"L={depth}: {name}")
    ax0.set_xlabel(noise_label)
    ax0.set_ylabel("class preservation")
    ax0.legend(fontsize=6)
    depth, measured, _ = max(runs, key=lambda run: run[0])
    unchanged = np.asarray(measured["unchanged"])  # (noise, levels)
    for lv in range(unchanged.shape[1]):
        ax1.plot(noise, unchanged[:, lv], marker=".", label=f"level {lv}")
    ax1.set_xlabel(noise_label)
    ax1.set_ylabel(f"P(node unchanged), BP posterior sample, L={depth}")
    ax1.legend(fontsize=6)
    fig.tight_layout()
    return fig
