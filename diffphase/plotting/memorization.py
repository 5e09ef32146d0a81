"""Figures of the memorization model (THEORY B): the ``(ln N / d, t)`` diagram and measured
curves next to their predictions."""

from __future__ import annotations

import numpy as np

from . import new_figure


def diagram_figure(rates: np.ndarray, lines: dict[str, np.ndarray], process: str):
    """Collapse, speciation and per-group memorization lines in the ``(ln N / d, t)`` plane."""
    fig, (ax,) = new_figure()
    for name, times in lines.items():
        style = {"collapse": "-", "speciation": "--"}.get(name, ":")
        ax.plot(rates, times, style, label=name.replace("_", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ln N / d")
    ax.set_ylabel(f"t ({process} process)")
    ax.set_title("memorization phase diagram")
    ax.legend(fontsize=7)
    return fig


def curves_figure(columns: dict[str, list], x_key: str, y_keys: list[str], group_key: str):
    """One line per ``(group, quantity)``: measured and predicted curves against ``x_key``."""
    fig, (ax,) = new_figure()
    groups = np.asarray(columns[group_key])
    x = np.asarray(columns[x_key], dtype=float)
    for g in dict.fromkeys(groups.tolist()):
        sel = groups == g
        for key in y_keys:
            ax.plot(x[sel], np.asarray(columns[key], dtype=float)[sel],
                    "-" if "predicted" not in key and "rem" not in key else "--",
                    label=f"{g} {key}".replace("_", " "))
    ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.legend(fontsize=6)
    return fig
