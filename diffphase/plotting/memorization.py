"""Figures of the memorization model (THEORY B): the ``(ln N / d, t)`` diagram and measured
curves next to their predictions (predicted critical times drawn as vertical lines)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import PALETTE, annotate_parameters, curve_style, legend, new_figure

#: column names -> axis labels in math text
LABELS = {
    "tau": r"$\tau = D/a^2$",
    "dim": "$d$",
    "own_weight": "weight of the own training point",
    "return_fraction": "fraction returned to the start point",
    "participation_ratio": "participation ratio",
    "rem_participation_ratio": "participation ratio (REM)",
    "same_cluster_measured": "$P$(same cluster)",
    "same_cluster_predicted": "$P$(same cluster)",
}
#: names of the diagram's lines -> legend labels
LINE_LABELS = {"collapse": r"collapse $t_C$", "speciation": r"speciation $t_S$"}


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def _line_label(name: str) -> str:
    if name in LINE_LABELS:
        return LINE_LABELS[name]
    parts = name.split("_")  # rem_raw_variance_4 -> REM raw, sigma^2 = 4
    if parts[0] == "rem" and len(parts) >= 4:
        return rf"REM {parts[1]}, $\sigma^2 = {parts[-1]}$"
    return name.replace("_", " ")


def diagram_figure(rates: np.ndarray, lines: dict[str, np.ndarray], process: str,
                   parameters: Mapping | None = None):
    """Collapse, speciation and per-group memorization lines in the ``(ln N / d, t)`` plane,
    each with its own colour and line style."""
    fig, (ax,) = new_figure()
    for index, (name, times) in enumerate(lines.items()):
        ax.plot(rates, times, **curve_style(index, points=len(rates)), label=_line_label(name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\ln N / d$")
    ax.set_ylabel(rf"$t$ ({process} process)")
    ax.set_title("memorization phase diagram")
    legend(ax)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig


def _is_prediction(key: str) -> bool:
    return "predicted" in key or key.startswith("rem_")


def curves_figure(columns: dict[str, list], x_key: str, y_keys: list[str], group_key: str,
                  parameters: Mapping | None = None):
    """Measured curves (solid, markers) and predicted ones (dotted), one colour per group value,
    and the predicted critical times (``tau_C_predicted``, ``tau_S`` columns) as vertical lines
    in the group's colour."""
    fig, (ax,) = new_figure()
    groups = np.asarray(columns[group_key])
    x = np.asarray(columns[x_key], dtype=float)
    names = list(dict.fromkeys(groups.tolist()))
    # with several groups the legend names each group once (by colour) and keys the line styles
    # of measured and predicted once, so that it stays short
    keyed = len(names) > 2 and len(y_keys) > 1
    for index, g in enumerate(names):
        sel = groups == g
        colour, turn = PALETTE[index % (len(PALETTE) - 1)], index // (len(PALETTE) - 1)
        name = f"$d = {g}$" if group_key == "dim" else str(g)
        for key in y_keys:
            values = np.asarray(columns[key], dtype=float)[sel]
            if _is_prediction(key):
                ax.plot(x[sel], values, color=colour, linestyle=(":", "--")[turn % 2],
                        label="_predicted" if keyed else f"{name}: predicted")
            else:
                ax.plot(x[sel], values, color=colour, linestyle=("-", "-.")[turn % 2],
                        marker="o", markevery=max(1, int(sel.sum()) // 8),
                        label=name if keyed else f"{name}: measured")
        for key, symbol in (("tau_C_predicted", r"$\tau_C$"), ("tau_S", r"$\tau_S$")):
            if key in columns:
                value = np.asarray(columns[key], dtype=float)[sel]
                if value.size and np.isfinite(value[0]):
                    ax.axvline(value[0], color=colour, linestyle="--", linewidth=1.0,
                               label=f"{name}: {symbol} predicted")
    if keyed:
        ax.plot([], [], color="black", linestyle="-", marker="o", label="measured")
        ax.plot([], [], color="black", linestyle=":", label="predicted")
    ax.set_xscale("log")
    ax.set_xlabel(_label(x_key))
    measured = [k for k in y_keys if not _is_prediction(k)] or y_keys
    ax.set_ylabel(_label(measured[0]))
    legend(ax)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig
