"""Matplotlib figures (Agg backend, never opens a window); one module per model.

``new_figure`` is the only entry point the models use to get axes, so every figure shares size,
fonts and the non-interactive backend.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.6, height: float = 4.0):
    """A figure and a flat list of axes."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.ravel())


def close(fig) -> None:
    plt.close(fig)
