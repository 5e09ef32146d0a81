"""Figures of score-field geometry diagnostics (THEORY E): spectra, local dimension and
non-conservativeness of ``Jn = D_t J`` against ``tau``."""

from __future__ import annotations

import numpy as np

from . import new_figure


def diagnostics_figure(summaries: list[dict], title: str = ""):
    """Three panels against ``tau``: normalized singular values, local dimension (threshold and
    gap estimates), non-conservativeness (total, and tangent/normal blocks when known)."""
    order = np.argsort([s["tau"] for s in summaries])
    rows = [summaries[i] for i in order]
    tau = np.array([s["tau"] for s in rows])
    fig, (ax_sv, ax_dim, ax_nc) = new_figure(ncols=3, width=4.6, height=3.6)
    sv = np.array([s["singular_values"] for s in rows])
    marker = "o" if len(rows) < 12 else None
    for k in range(sv.shape[1]):
        ax_sv.plot(tau, sv[:, k], color="tab:blue", alpha=0.6, lw=1, marker=marker, ms=3)
    ax_sv.set(xscale="log", xlabel="tau = D_t / a_t^2", ylabel="singular values of D_t J",
              title="normalized spectrum")
    ax_dim.step(tau, [s["local_dimension"] for s in rows], where="mid", label="threshold")
    ax_dim.step(tau, [s["local_dimension_gap"] for s in rows], where="mid", ls="--", label="gap")
    ax_dim.set(xscale="log", xlabel="tau", ylabel="local dimension", title="local dimension")
    ax_dim.legend(fontsize=8)
    ax_nc.plot(tau, [s["nonconservativeness"] for s in rows], marker=marker, label="|A|/|J|")
    for key, label in (("tangent_nonconservativeness", "tangent block"),
                       ("normal_nonconservativeness", "normal block")):
        values = [s.get(key) for s in rows]
        if any(v is not None for v in values):
            ax_nc.plot(tau, [np.nan if v is None else v for v in values], marker=marker, ls=":",
                       label=label)
    ax_nc.set(xscale="log", xlabel="tau", ylabel="|A|_F / |J|_F", title="non-conservativeness")
    ax_nc.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
