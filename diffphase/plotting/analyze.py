"""Figure of ``diffphase analyze`` (THEORY A and B): a dataset's timeline.

Left: the density of the normalized Jacobian ``Jn`` of the exact score of a Gaussian with the
data's covariance versus time, the phases as shaded spans, the speciation and collapse times.
Right: the predicted dimension read-out and the measured one at forward-noised rows, and the
measured own-weight collapse curve with the predicted collapse times.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm

from ..process import time_from_tau
from . import PALETTE, annotate_parameters, legend, new_figure

PHASE_COLORS = {"trivial": "0.85", "coverage": "white", "consolidation": "#dbe9f6"}


def _time(tau, process: str) -> np.ndarray:
    return np.asarray(time_from_tau(np.asarray(tau, dtype=float), process), dtype=float)


def _mark_times(ax, data: dict, process: str) -> None:
    marks = (("tau_S", "$t_S$", PALETTE[3], "--"), ("tau_C", "$t_C$ (Gaussian)", PALETTE[1], "-"),
             ("tau_C_entropy", "$t_C$ (entropy)", PALETTE[4], ":"))
    for key, label, color, style in marks:
        value = data.get(key)
        if value is not None and np.isfinite(value):
            ax.axvline(float(_time(value, process)), color=color, linestyle=style, label=label)


def _shade_phases(ax, t: np.ndarray, phases) -> None:
    phases = np.asarray(phases).astype(str)
    start = 0
    for i in range(1, phases.size + 1):
        if i == phases.size or phases[i] != phases[start]:
            ax.axvspan(t[start], t[i - 1], color=PHASE_COLORS.get(phases[start], "white"),
                       alpha=0.6, zorder=0, lw=0)
            start = i


def analysis_figure(data: dict, parameters=None):
    """The two panels described in the module docstring, from
    :attr:`~diffphase.studies.analyze_tables.AnalysisResult.figure`; ``parameters`` are written
    under the figure."""
    process = data["process"]
    t = _time(data["tau"], process)
    fig, (left, right) = new_figure(ncols=2)
    edges = np.asarray(data["jn_edges"])
    mass = np.ma.masked_less_equal(np.asarray(data["jn_mass"]).T, 0.0)
    mesh = left.pcolormesh(t, 0.5 * (edges[:-1] + edges[1:]), mass, shading="nearest",
                           cmap="viridis", norm=LogNorm(vmin=1.0 / data["dim"], vmax=1.0))
    fig.colorbar(mesh, ax=left, label="mass per bin")
    left.set_xscale("log")
    left.set_xlabel(f"$t$ ({process} process)")
    left.set_ylabel(r"eigenvalue of $J_n = D\,J$")
    left.set_title(r"density of $J_n$ (Gaussian, data covariance)")
    _mark_times(left, data, process)
    legend(left, loc="lower right")
    _shade_phases(right, t, data["phase"])
    right.plot(t, np.asarray(data["dimension"]) / data["dim"], "-", color="black",
               label="dimension / $d$, predicted")
    if data.get("measured_tau") is not None:
        right.errorbar(_time(data["measured_tau"], process),
                       np.asarray(data["measured_dimension"]) / data["dim"],
                       yerr=np.asarray(data["measured_stderr"]) / data["dim"], fmt="o",
                       color=PALETTE[0], label="dimension / $d$, measured")
    curve = data["collapse"]
    right.plot(_time(curve["tau"], process), curve["own_weight"], "-.", color=PALETTE[2],
               marker="s", markevery=max(1, len(curve["tau"]) // 8),
               label=f"own weight, measured ($N = {curve['n_train']}$)")
    _mark_times(right, data, process)
    right.set_xscale("log")
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel(f"$t$ ({process} process)")
    right.set_ylabel("fraction")
    right.set_title("phases: trivial grey, consolidation blue")
    legend(right)
    if parameters:
        annotate_parameters(fig, parameters)
    return fig
