"""Matplotlib figures in one style (Agg backend, never opens a window); one module per model.

Contract: ``new_figure`` is the only entry point the models use to get axes, so every figure
shares its size, fonts and the non-interactive backend.

- Sizes: paper column widths, :data:`ONE_COLUMN` (3.4 in) and :data:`TWO_COLUMN` (7.0 in); a
  figure with one panel a row is one column wide, one with more panels a row two columns.
- Fonts: at least :data:`MIN_FONT_PT` (8 pt) at print size (``paper`` style); the ``talk`` style
  scales every font up. Labels are matplotlib math text (``$\\tau$``), never raw identifiers.
- Curves: :func:`curve_style` gives the i-th curve a colour of the colour-blind-safe palette
  :data:`PALETTE` (Okabe and Ito) *and* a line style and marker, so that no two curves of a
  panel share both and a curve drawn over another still shows; :func:`prediction_style` draws
  the prediction for a measured curve in its colour with another line style. Predicted
  critical times are vertical lines on the measured plots.
- Parameters: :func:`annotate_parameters` writes a figure's key parameters on it (a text
  artist with the gid ``parameters``).
- Vector formats keep text as text: ``svg.fonttype = none``, ``pdf.fonttype = 42``.

:func:`figure_style` sets the style for the figures drawn inside it (``--style``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import matplotlib
import numpy as np

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402

#: column widths of a two-column paper, inches
ONE_COLUMN = 3.4
TWO_COLUMN = 7.0
#: smallest font at print size, points
MIN_FONT_PT = 8.0
#: Okabe-Ito colour-blind-safe palette (black last: kept for single predicted curves)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")
#: line styles cycled against the palette (named ones, so a saved figure can be read back)
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
#: the gid of the parameter annotation of a figure
PARAMETERS_GID = "parameters"

_BASE = {
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "figure.titlesize": 10.0,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.8,
    "legend.frameon": False,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "image.cmap": "viridis",
}
#: rcParams of each ``--style``; ``scale`` multiplies figure sizes
STYLES: dict[str, dict] = {
    "paper": {"rc": _BASE, "scale": 1.0},
    "talk": {"rc": {**_BASE, **{k: v * 1.4 for k, v in _BASE.items() if k.endswith("size")
                                and isinstance(v, float) and "marker" not in k},
                    "lines.linewidth": 2.0},
             "scale": 1.4},
}
_current = {"style": "paper"}


@contextlib.contextmanager
def figure_style(style: str = "paper") -> Iterator[None]:
    """Draw the figures made inside in ``style`` (``paper`` or ``talk``)."""
    if style not in STYLES:
        raise ValueError(f"style: {style!r} is not one of {', '.join(STYLES)}")
    previous = _current["style"]
    _current["style"] = style
    try:
        with plt.rc_context(STYLES[style]["rc"]):
            yield
    finally:
        _current["style"] = previous


def new_figure(ncols: int = 1, nrows: int = 1, width: float | None = None,
               height: float | None = None):
    """A figure and a flat list of axes, one column wide for one panel a row and two columns
    wide for more (``width``, ``height`` in inches override it; ``talk`` scales them)."""
    style = STYLES[_current["style"]]
    with plt.rc_context(style["rc"]):
        if width is None:
            width = (ONE_COLUMN if ncols == 1 else TWO_COLUMN) * style["scale"]
        else:
            width = width * style["scale"]
        if height is None:
            panel = width / ncols
            height = max(2.2, min(0.8 * panel, 3.0)) * nrows * style["scale"]
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False,
                                 layout="constrained")
    fig._diffphase_style = _current["style"]
    return fig, list(axes.ravel())


def curve_style(index: int, marker: bool = True, points: int | None = None) -> dict:
    """Colour, line style and marker of the ``index``-th curve of a panel: the colour cycles
    through the palette (black excepted) and the line style with it, shifted by two at each turn
    of the palette, so the first 28 curves have distinct ``(colour, linestyle)`` pairs. With
    ``points`` (the curve's length) about eight markers are drawn, else one per point."""
    colours = PALETTE[:-1]
    colour = colours[index % len(colours)]
    linestyle = LINESTYLES[(index + 2 * (index // len(colours))) % len(LINESTYLES)]
    style = {"color": colour, "linestyle": linestyle}
    if marker:
        style["marker"] = MARKERS[index % len(MARKERS)]
        if points is not None:
            style["markevery"] = max(1, int(points) // 8)
    return style


def prediction_style(index: int = 0) -> dict:
    """Style of the prediction for the ``index``-th measured curve (:func:`curve_style`): its
    colour, thinner, in another line style, so the pair still differs from every curve."""
    measured = curve_style(index, marker=False)
    other = LINESTYLES[(LINESTYLES.index(measured["linestyle"]) + 2) % len(LINESTYLES)]
    return {**measured, "linestyle": other, "linewidth": 0.9}


def format_value(value) -> str:
    """A parameter value for an annotation: numbers with 4 significant digits, lists joined."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and
                                            getattr(value, "ndim", 0) > 0):
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        shown = ", ".join(format_value(v) for v in items[:4])
        return shown + (", ..." if len(items) > 4 else "")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def annotate_parameters(fig, parameters: Mapping[str, object]) -> None:
    """Write ``name = value`` of the key ``parameters`` under the figure (names in math text,
    e.g. ``$d$``), as one text artist with the gid :data:`PARAMETERS_GID`."""
    text = ",  ".join(f"{name} = {format_value(value)}" for name, value in parameters.items())
    artist = fig.text(0.5, 0.0, text, ha="center", va="top",
                      fontsize=max(MIN_FONT_PT, plt.rcParams["font.size"] - 1))
    artist.set_gid(PARAMETERS_GID)
    artist.set_in_layout(True)


#: where :func:`legend` tries a panel's legend, in order, before it puts it beside the panel
LEGEND_PLACES = ("upper right", "upper left", "lower left", "lower right", "center right",
                 "center left", "upper center", "lower center", "center")


def legend(ax, **options) -> None:
    """A legend in the style's font (no smaller than :data:`MIN_FONT_PT`), when there is
    something to label. Without a ``loc`` it goes to the first of :data:`LEGEND_PLACES` where,
    with the figure laid out, it covers no part of a drawn curve; where every place covers one
    it goes beside the panel, on its right."""
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    if "loc" in options or "bbox_to_anchor" in options:
        ax.legend(**options)
        return
    fig = ax.figure
    made = ax.legend(loc=LEGEND_PLACES[0], **options)
    fig.draw_without_rendering()  # the layout; a legend inside the panel does not change it
    renderer = fig.canvas.get_renderer()
    for place in LEGEND_PLACES:
        made.set_loc(place)
        if not covers_a_curve(fig, made.get_window_extent(renderer)):
            return
    made.remove()
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **options)


def covers_a_curve(fig, box, spacing: float = 4.0) -> bool:
    """Whether the display-space ``box`` covers a point of a visible line of ``fig``
    inside its axes (each segment sampled every ``spacing`` pixels)."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_visible():
                continue
            x = np.asarray(line.get_xdata(), dtype=float).ravel()
            y = np.asarray(line.get_ydata(), dtype=float).ravel()
            if x.size == 0 or x.size != y.size:
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                shown = line.get_transform().transform(np.column_stack([x, y]))
            if line.get_linestyle() not in ("None", "", " ") and len(shown) > 1:
                shown = _densified(shown, spacing)
            shown = shown[np.isfinite(shown).all(axis=1)]
            inside_axes = ((shown[:, 0] >= ax.bbox.x0) & (shown[:, 0] <= ax.bbox.x1)
                           & (shown[:, 1] >= ax.bbox.y0) & (shown[:, 1] <= ax.bbox.y1))
            shown = shown[inside_axes]
            if np.any((shown[:, 0] >= box.x0) & (shown[:, 0] <= box.x1)
                      & (shown[:, 1] >= box.y0) & (shown[:, 1] <= box.y1)):
                return True
    return False


def _densified(points: np.ndarray, spacing: float) -> np.ndarray:
    """The polyline ``points`` with extra points so that neighbours are at most ``spacing``
    apart (segments with a non-finite end are left out)."""
    parts = [points[:1]]
    for start, end in zip(points[:-1], points[1:], strict=True):
        if not (np.isfinite(start).all() and np.isfinite(end).all()):
            parts.append(end[None])
            continue
        steps = max(1, int(np.ceil(np.hypot(*(end - start)) / spacing)))
        t = np.arange(1, steps + 1)[:, None] / steps
        parts.append(start + t * (end - start))
    return np.concatenate(parts)


def close(fig) -> None:
    plt.close(fig)
