"""One figure style: every figure of :mod:`diffphase.plotting`, drawn from small synthetic
inputs, is inspected as matplotlib objects: paper sizes, fonts of at least 8 pt at print size,
every axis labelled in math text (no raw identifiers), a distinct (colour, line style) for each
curve of a panel, the parameters written on the figure, predictions drawn on measured plots,
and text kept as text in SVG and PDF."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.text import Text

from diffphase import plotting
from diffphase.plotting import analyze as analyze_plots
from diffphase.plotting import fields as field_plots
from diffphase.plotting import hierarchy as hierarchy_plots
from diffphase.plotting import memorization as memorization_plots
from diffphase.plotting import sampler as sampler_plots
from diffphase.plotting import spectral as spectral_plots

PARAMETERS = {"$d$": 16, "seed": 0}
TAU = np.geomspace(1e-2, 1e2, 9)


def _spectrum():
    summary = {"edges": [[0.5, 1.5]], "subspace": "random", "n_bulks": 1, "alpha": 0.4,
               "edges_jacobian": [[-0.6, -0.1]], "tau": 0.1, "phase": "coverage"}
    lam = np.linspace(0.5, 1.5, 50)
    jn = np.linspace(-0.6, -0.1, 50)
    return spectral_plots.spectrum_figure(summary, lam, np.ones(50), jn, np.ones(50),
                                          parameters=PARAMETERS)


def _spectral_diagram():
    names = np.array(["trivial", "coverage", "consolidation"])
    alpha, ratio = np.linspace(0.1, 0.9, 4), np.geomspace(0.01, 1, 4)
    phases = names[np.arange(4 * 9) % 3]
    gap = np.linspace(0, 0.6, 36)
    alpha_diag = SimpleNamespace(axes={"alpha": alpha, "tau": TAU},
                                 columns={"phase": phases, "manifold_gap": gap})
    ratio_diag = SimpleNamespace(axes={"variance_ratio": ratio, "tau": TAU},
                                 columns={"phase": phases, "intermediate_gap": gap})
    return spectral_plots.phase_diagram_figure(alpha_diag, ratio_diag, 0.1,
                                               parameters=PARAMETERS)


def _memorization_diagram():
    rates = np.geomspace(0.005, 0.2, 8)
    lines = {"collapse": rates * 10, "speciation": np.full(8, 0.7),
             **{f"rem_{kind}_variance_{v}": rates * v for kind in ("raw", "sphere")
                for v in (4, 1)}}
    return memorization_plots.diagram_figure(rates, lines, "ou", parameters=PARAMETERS)


def _collapse_curves():
    tau = np.tile(TAU, 2)
    columns = {"dim": [8] * 9 + [16] * 9, "tau": tau, "own_weight": np.exp(-tau),
               "tau_C_predicted": [0.5] * 9 + [0.8] * 9}
    return memorization_plots.curves_figure(columns, "tau", ["own_weight"], "dim",
                                            parameters=PARAMETERS)


def _geometric_curves():
    series = [f"raw block {i}" for i in range(9)]
    tau = np.tile(TAU, len(series))
    columns = {"series": np.repeat(series, 9), "tau": tau,
               "participation_ratio": np.exp(-tau), "rem_participation_ratio": np.exp(-2 * tau)}
    return memorization_plots.curves_figure(
        columns, "tau", ["participation_ratio", "rem_participation_ratio"], "series",
        parameters=PARAMETERS)


def _hierarchy_map():
    eps = np.linspace(0, 1, 11)
    depths = np.arange(1, 13)
    f_values = np.linspace(0.1, 1, 5)
    levels = np.linspace(1, 0.5, 11)[:, None] * np.ones((1, 13))
    return hierarchy_plots.preservation_map_figure(
        eps, depths, np.ones((12, 11)) * 0.5, np.ones((3, 5)) * 0.7, f_values, [2, 3, 4],
        levels, parameters=PARAMETERS)


def _forward_backward():
    noise = np.linspace(0.1, 0.9, 5)
    runs = [(depth, {"class_posterior": 1 - noise / depth, "class_posterior_se": noise * 0.01,
                     "unchanged": np.ones((5, depth + 1)) * 0.9},
             {"mean_field": 1 - noise, "population_dynamics": 1 - noise ** 2})
            for depth in (2, 4, 6)]
    return hierarchy_plots.forward_backward_figure(noise, runs, "mask_probability",
                                                   parameters=PARAMETERS)


def _sampler_diagram():
    designs = ("star", "beta", "ho-beta", "ddim", "custom")
    T, dims = np.array([16, 64, 256, 1024]), np.array([8, 64, 512])
    grid = {k: [] for k in ("T", "dim", "design", "kl")}
    for design in designs:
        for t in T:
            for d in dims:
                grid["T"].append(t)
                grid["dim"].append(d)
                grid["design"].append(design)
                grid["kl"].append(d / t)
    grid = {k: np.asarray(v) for k, v in grid.items()}
    fits = {d: {"kl_slope": -1.0, "kl_prefactor": 64.0 + i} for i, d in enumerate(designs)}
    return sampler_plots.sampler_phase_diagram_figure(grid, designs, fits, 64,
                                                      parameters=PARAMETERS)


def _sampler_error():
    return sampler_plots.sampler_error_figure(np.array([0.25, 1.0, 4.0]),
                                              np.array([1e-3, 1e-4, 1e-5]), 1e-8, "star",
                                              parameters=PARAMETERS)


def _diagnostics():
    summaries = [{"tau": t, "singular_values": np.linspace(0.1, 1, 6) * (1 + i),
                  "local_dimension": 2, "local_dimension_gap": 3,
                  "nonconservativeness": 0.1 * i, "tangent_nonconservativeness": 0.0,
                  "normal_nonconservativeness": 0.05} for i, t in enumerate(TAU)]
    return field_plots.diagnostics_figure(summaries, title="exact score",
                                          parameters=PARAMETERS)


def _matrix_free():
    grid = np.linspace(-1, 0, 20)
    summaries = [{"tau": t, "singular_values_top": [1.0, 0.9], "singular_values_top_error":
                  [0.01, 0.01], "singular_values_bottom": [0.1, 0.2],
                  "singular_values_bottom_error": [0.01, 0.01], "local_dimension_mean": 2.0,
                  "local_dimension_error": 0.1, "nonconservativeness": 0.1,
                  "nonconservativeness_error": 0.01,
                  "eigenvalue_cdf": {"grid": grid, "cdf": np.linspace(0, 1, 20),
                                     "error": np.full(20, 0.02)}} for t in TAU[:4]]
    return field_plots.matrix_free_figure(summaries, title="network", parameters=PARAMETERS)


def _comparison():
    grid = np.linspace(-1, 0, 20)
    entries = [{"tau": t, "theory_readout": 2.0,
                "network": {"local_dimension": 2.0, "local_dimension_error": 0.1,
                            "eigenvalues_top": [-0.1, -0.2, -0.3], "nonconservativeness": 0.05,
                            "nonconservativeness_error": 0.01, "cdf": np.linspace(0, 1, 20)},
                "empirical": {"local_dimension_mean": 1.5, "eigenvalues_top": [-0.1, -0.3, -0.5],
                              "cdf": np.linspace(0, 1, 20) ** 2},
                "gaussian": {"local_dimension": 2.5, "eigenvalues_top": [-0.2, -0.3, -0.4],
                             "cdf": np.sqrt(np.linspace(0, 1, 20))}} for t in TAU[:4]]
    return field_plots.comparison_figure({"time_points": entries, "grid": grid},
                                         title="network", parameters=PARAMETERS)


def _analysis():
    edges = np.linspace(-1, 0, 11)
    data = {"process": "ou", "tau": TAU, "jn_edges": edges, "jn_mass": np.full((9, 10), 0.1),
            "dim": 16, "tau_S": 1.0, "tau_C": 0.1, "tau_C_entropy": 0.12,
            "phase": ["consolidation"] * 3 + ["coverage"] * 3 + ["trivial"] * 3,
            "dimension": np.linspace(16, 2, 9), "measured_tau": TAU[::2],
            "measured_dimension": np.linspace(16, 2, 5), "measured_stderr": np.full(5, 0.5),
            "collapse": {"tau": TAU, "own_weight": np.exp(-TAU), "n_train": 100}}
    return analyze_plots.analysis_figure(data, parameters=PARAMETERS)


FIGURES = {"spectrum": _spectrum, "spectral diagram": _spectral_diagram,
           "memorization diagram": _memorization_diagram, "collapse": _collapse_curves,
           "geometric": _geometric_curves, "hierarchy map": _hierarchy_map,
           "forward-backward": _forward_backward, "sampler diagram": _sampler_diagram,
           "sampler error": _sampler_error, "diagnostics": _diagnostics,
           "matrix-free": _matrix_free, "comparison": _comparison, "analysis": _analysis}


@pytest.fixture(params=sorted(FIGURES))
def figure(request):
    with plotting.figure_style("paper"):
        fig = FIGURES[request.param]()
    fig.canvas.draw()
    yield fig
    plotting.close(fig)


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def test_a_figure_is_one_or_two_paper_columns_wide(figure):
    width, height = figure.get_size_inches()
    assert width in (plotting.ONE_COLUMN, plotting.TWO_COLUMN)
    assert 1.5 <= height <= 9.0


def test_every_text_is_at_least_8_pt(figure):
    small = [(t.get_text(), t.get_fontsize()) for t in figure.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize()
             < plotting.MIN_FONT_PT]
    assert small == []


def _outside_math(text: str) -> str:
    return re.sub(r"\$[^$]*\$", "", text)


def test_every_axis_is_labelled_in_math_text(figure):
    for ax in _data_axes(figure):
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax.get_title()
    for ax in figure.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel().strip() or ax.get_xlabel().strip()
    labels = [ax.get_xlabel() for ax in figure.axes] + [ax.get_ylabel() for ax in figure.axes]
    labels += [t.get_text() for ax in figure.axes if ax.get_legend()
               for t in ax.get_legend().get_texts()]
    raw = [label for label in labels if "_" in _outside_math(label)]
    assert raw == []


def test_no_two_curves_of_a_panel_share_colour_and_line_style(figure):
    for ax in figure.axes:
        styles = []
        for line in ax.get_lines():
            if len(np.atleast_1d(line.get_xdata())) < 3 or not line.get_visible():
                continue
            if line.get_linestyle() in ("None", "", " "):
                styles.append((to_hex(line.get_color()), "markers", line.get_marker()))
            else:
                styles.append((to_hex(line.get_color()), str(line.get_linestyle())))
        assert len(styles) == len(set(styles)), (ax.get_title(), styles)


def test_the_parameters_are_written_on_the_figure(figure):
    notes = [t for t in figure.texts if t.get_gid() == plotting.PARAMETERS_GID]
    assert len(notes) == 1
    assert "$d$ = 16" in notes[0].get_text() and "seed = 0" in notes[0].get_text()


def test_the_first_28_curves_get_distinct_styles():
    styles = [plotting.curve_style(i) for i in range(28)]
    assert len({(s["color"], str(s["linestyle"])) for s in styles}) == 28
    predictions = [plotting.prediction_style(i) for i in range(7)]
    assert not {(s["color"], s["linestyle"]) for s in predictions} & {
        (s["color"], s["linestyle"]) for s in styles[:7]}
    assert all(s["color"] != plotting.PALETTE[-1] for s in styles)  # black: predictions


def test_predictions_are_drawn_on_the_measured_plots():
    with plotting.figure_style("paper"):
        fig = _collapse_curves()
    (ax,) = fig.axes
    vertical = [line for line in ax.get_lines()
                if len(set(np.atleast_1d(line.get_xdata()).tolist())) == 1]
    assert sorted(line.get_xdata()[0] for line in vertical) == [0.5, 0.8]
    assert all("predicted" in line.get_label() for line in vertical)
    assert ax.get_ylabel() and "tau" in ax.get_xlabel()
    plotting.close(fig)
    with plotting.figure_style("paper"):
        fig = _forward_backward()
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any("mean field" in label for label in labels)
    plotting.close(fig)


def test_the_talk_style_is_larger():
    with plotting.figure_style("paper"):
        paper = _spectrum()
    with plotting.figure_style("talk"):
        talk = _spectrum()
    assert talk.get_size_inches()[0] > paper.get_size_inches()[0]
    assert talk.axes[0].xaxis.label.get_fontsize() > paper.axes[0].xaxis.label.get_fontsize()
    plotting.close(paper)
    plotting.close(talk)
    with pytest.raises(ValueError, match="style"):
        with plotting.figure_style("poster"):
            pass


def test_vector_formats_keep_text_as_text():
    with plotting.figure_style("paper"):
        fig = _sampler_error()
        svg, pdf = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg")
        fig.savefig(pdf, format="pdf")
    plotting.close(fig)
    text = svg.getvalue().decode()
    assert "<text" in text and "data variance" in text
    assert b"/FontFile2" in pdf.getvalue() and b"/Type3" not in pdf.getvalue()


def test_the_command_line_writes_each_format_at_the_dpi(tmp_path, capsys):
    from diffphase.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main(["sampler-error", "--steps", "50", "--dim", "8", "--k", "2", *args])
        assert info.value.code == 0, capsys.readouterr().err

    run("--out", tmp_path / "a", "--format", "pdf", "--format", "svg", "--dpi", "50")
    assert sorted(p.suffix for p in (tmp_path / "a").glob("sampler_error.*")) == [
        ".csv", ".json", ".pdf", ".svg"]
    run("--out", tmp_path / "b", "--svg", "--dpi", "50")  # the older spelling of svg
    assert sorted(p.suffix for p in (tmp_path / "b").glob("sampler_error.*")) == [
        ".csv", ".json", ".png", ".svg"]
    run("--out", tmp_path / "c", "--dpi", "100", "--style", "talk")
    json.loads((tmp_path / "c" / "sampler_error.json").read_text())

    def png_width(path):
        return int.from_bytes(path.read_bytes()[16:20], "big")

    narrow, wide = png_width(tmp_path / "b" / "sampler_error.png"), png_width(
        tmp_path / "c" / "sampler_error.png")
    assert wide > 2 * narrow  # twice the dpi, and the talk style's larger figure


def test_a_curve_is_a_line2d_with_its_own_style():
    with plotting.figure_style("paper"):
        fig = _hierarchy_map()
    lines = [line for line in fig.axes[1].get_lines() if isinstance(line, Line2D)]
    assert len(lines) == 13
    assert len({(to_hex(line.get_color()), str(line.get_linestyle())) for line in lines}) == 13
    plotting.close(fig)


def test_a_curve_of_one_point_is_drawn():
    with plotting.figure_style("paper"):
        fig = hierarchy_plots.preservation_map_figure(
            np.linspace(0, 1, 3), np.arange(1, 3), np.ones((2, 3)), np.ones((1, 1)),
            np.array([0.5]), [2], np.ones((3, 3)))
        fig.savefig(io.BytesIO(), format="png")
    assert len(fig.axes[2].get_lines()) == 1
    plotting.close(fig)


def test_saved_vector_figures_keep_text_outside_the_style_too(tmp_path):
    """A figure saved through an output set keeps its text as text whatever the rcParams."""
    import matplotlib.pyplot as plt

    from diffphase.outputs import OutputSet

    with plt.rc_context({"svg.fonttype": "path", "pdf.fonttype": 3}):
        fig = _sampler_error()
        paths = OutputSet(tmp_path).save_figure(fig, "f", ("svg", "pdf"))
    plotting.close(fig)
    svg, pdf = (p.read_bytes() for p in paths)
    assert b"<text" in svg and b"/FontFile2" in pdf and b"/Type3" not in pdf


def _points_under_legend(fig) -> list[tuple[str, int]]:
    """``(line label, count)`` of the drawn data points (vertices of visible lines) that lie
    inside some legend's box, in display coordinates."""
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    boxes = [legend.get_window_extent(renderer) for legend in legends]
    covered = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_visible():
                continue
            xy = np.column_stack([np.atleast_1d(line.get_xdata()).astype(float),
                                  np.atleast_1d(line.get_ydata()).astype(float)])
            xy = xy[np.isfinite(xy).all(axis=1)]
            if not len(xy):
                continue
            shown = line.get_transform().transform(xy)
            inside_axes = ax.bbox.contains
            shown = shown[[inside_axes(*p) for p in shown]]
            for box in boxes:
                count = sum(box.contains(*p) for p in shown)
                if count:
                    covered.append((line.get_label(), int(count)))
    return covered


def test_no_legend_covers_a_curve(figure):
    assert _points_under_legend(figure) == []
