"""``diffphase analyze`` and :func:`diffphase.studies.analyze.analyze`: predictions from a dataset's
covariance and measurements with its empirical score, held against independent closed forms
(spiked-model eigenvalue limit, the collapse equation solved here by Brent's method, the REM
quadratic, the phase and dimension thresholds of THEORY A), and the command's contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.optimize import brentq

from diffphase.cli import cli, main
from diffphase.studies.analyze import analyze, plan_analysis

DIM, ROWS, SPIKE, DELTA = 32, 3000, 9.0, 0.1


def collapse_root(eigenvalues: np.ndarray, n_train: float) -> float:
    """``tau`` solving ``(1/2) sum_i ln(1 + lambda_i / tau) = ln N`` (THEORY B), by Brent."""
    eigenvalues = eigenvalues[eigenvalues > 0]

    def residual(log_tau):
        return 0.5 * np.sum(np.log1p(eigenvalues / np.exp(log_tau))) - np.log(n_train)

    return float(np.exp(brentq(residual, -40.0, 40.0, xtol=1e-13)))


def true_spectrum() -> np.ndarray:
    eigenvalues = np.ones(DIM)
    eigenvalues[0] = SPIKE
    return eigenvalues


@pytest.fixture(scope="module")
def gaussian_rows():
    """Gaussian rows with one eigenvalue 9 and 31 eigenvalues 1."""
    rng = np.random.default_rng(11)
    return rng.standard_normal((ROWS, DIM)) * np.sqrt(true_spectrum())


@pytest.fixture(scope="module")
def gaussian(gaussian_rows):
    """The rows analysed without scaling."""
    return analyze(gaussian_rows, normalize="none", n_train=[300], probes=150,
                   jacobian_probes=24, seed=5)


def test_recovers_lambda_max_and_speciation(gaussian):
    summary = gaussian.summary
    gamma = DIM / ROWS  # spiked model: lambda (1 + gamma / (lambda - 1)), sd lambda sqrt(2/n)
    limit = SPIKE * (1 + gamma / (SPIKE - 1))
    assert abs(summary["lambda_max"] - limit) <= 4 * SPIKE * np.sqrt(2 / ROWS)
    assert summary["tau_S"] == pytest.approx(summary["lambda_max"] - 1, rel=1e-12)
    assert summary["t_S"] == pytest.approx(0.5 * np.log(summary["lambda_max"]), rel=1e-12)
    assert summary["speciation_exists"] is True and summary["eigenvalue_route"] == "covariance"


def test_tau_c_matches_the_collapse_equation(gaussian):
    summary = gaussian.summary
    sample = np.asarray(gaussian.tables["analyze_spectrum"]["eigenvalue"], dtype=float)
    assert summary["tau_C"] == pytest.approx(collapse_root(sample, ROWS), rel=1e-8)
    exact = collapse_root(true_spectrum(), ROWS)  # finite-n spread of the spectrum: < 5%
    assert abs(np.log(summary["tau_C"] / exact)) < 0.05
    assert summary["t_C"] == pytest.approx(0.5 * np.log1p(summary["tau_C"]), rel=1e-12)
    small = next(c for c in summary["collapse"] if c["n_train"] == 300)
    assert small["tau_C"] == pytest.approx(collapse_root(sample, 300), rel=1e-8)


def test_measured_crossover_straddles_the_closed_form(gaussian):
    exact = collapse_root(true_spectrum(), ROWS)
    curve = gaussian.summary["collapse_measured"]
    assert curve["tau_0.8"] < exact < curve["tau_0.2"]
    assert abs(np.log(curve["tau_half"] / exact)) <= 0.5 * curve["width_ln_tau"]
    for entry in gaussian.summary["collapse"]:  # the subset of 300 rows too
        tau = collapse_root(true_spectrum(), entry["n_train"])
        assert abs(np.log(entry["tau_half"] / tau)) <= 0.5 * entry["width_ln_tau"]


def test_entropy_route_matches_the_closed_form(gaussian):
    route = gaussian.summary["entropy_route"]
    exact = collapse_root(true_spectrum(), ROWS)
    tolerance = 3 * route["stderr_ln_tau"] + abs(route["extrapolation_ln_tau"])
    assert abs(np.log(route["tau_C"] / exact)) <= tolerance
    assert route["stderr"] == pytest.approx(route["tau_C"] * route["stderr_ln_tau"])


def test_timeline_phases_and_dimension_follow_the_thresholds(gaussian):
    timeline = gaussian.tables["analyze_timeline"]
    eig = np.asarray(gaussian.tables["analyze_spectrum"]["eigenvalue"], dtype=float)
    nonzero = eig[eig > 0]
    continuous = gaussian.summary["spectral_law"]["continuous"]
    for tau, phase, dimension in zip(timeline["tau"], timeline["phase"], timeline["dimension"],
                                     strict=True):
        count = np.sum(-tau / (tau + nonzero) > -1 + DELTA)  # Jn eigenvalues above -1 + delta
        if continuous:  # the law smooths each eigenvalue's mass to its neighbours: within one
            assert abs(dimension - count) <= 1.0 + 1e-9
        else:
            assert dimension == pytest.approx(count, abs=1e-9)
        expected = ("trivial" if tau / (tau + nonzero.max()) >= 1 - DELTA else
                    "consolidation" if tau / (tau + nonzero.min()) <= DELTA else "coverage")
        assert phase == expected
    assert {"trivial", "coverage", "consolidation"} <= set(timeline["phase"])
    assert np.all(np.diff(timeline["dimension"]) <= 1e-9)  # directions are only lost


def test_visible_gaps_reach_delta():
    """Eigenvalues in two clusters a factor 10 apart: one visible gap, widest at
    ``tau* = sqrt(u l)``, with the window where ``tau (l - u) / ((tau + l)(tau + u)) = delta``."""
    rng = np.random.default_rng(8)
    scales = np.r_[np.full(10, 10.0), np.full(30, 1.0)]
    rows = rng.standard_normal((4000, 40)) * np.sqrt(scales)
    result = analyze(rows, normalize="none", probes=20, jacobian_probes=0, n_tau=9)
    eig = np.asarray(result.tables["analyze_spectrum"]["eigenvalue"], dtype=float)
    upper, lower = eig[10], eig[9]  # top of the low cluster, bottom of the high one
    (gap,) = result.summary["gaps"]
    assert gap["lower_bulk_upper_edge"] == pytest.approx(upper, rel=1e-12)
    assert gap["upper_bulk_lower_edge"] == pytest.approx(lower, rel=1e-12)
    assert gap["tau_max"] == pytest.approx(np.sqrt(upper * lower), rel=1e-10)
    for tau in gap["window"]:
        width = tau * (lower - upper) / ((tau + lower) * (tau + upper))
        assert width == pytest.approx(DELTA, rel=1e-8)


def test_rem_band_times_solve_the_rem_quadratic(gaussian, gaussian_rows):
    eig = np.asarray(gaussian.tables["analyze_spectrum"]["eigenvalue"], dtype=float)
    fourth = np.sum(eig**2)
    centred = gaussian_rows - gaussian_rows.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    coordinates = centred @ vectors[:, ::-1]
    on_sphere = np.mean(coordinates**2 / np.sum(coordinates**2, axis=1, keepdims=True), axis=0)
    decades = np.floor(np.log10(values[::-1]))
    for row in gaussian.summary["rem_bands"]:
        log_n, s2 = np.log(row["n_train"]), row["variance"]
        members = decades == sorted(set(decades), reverse=True)[row["band"]]
        assert s2 == pytest.approx(values[::-1][members].mean(), rel=1e-10)
        # V = (tau s^2 + S4/2) / tau^2 = 2 ln N (g = 1); V = m / tau = 2 ln N (g = 0)
        raw = (s2 + np.sqrt(s2**2 + 4 * log_n * fourth)) / (4 * log_n)
        assert row["tau_c_rem_raw"] == pytest.approx(raw, rel=1e-9)
        sphere = on_sphere[members].mean() / (2 * log_n)
        assert row["tau_c_rem_sphere"] == pytest.approx(sphere, rel=1e-9)
    assert len({row["band"] for row in gaussian.summary["rem_bands"]}) == len(set(decades))


def test_jacobian_readout_agrees_well_above_the_collapse(gaussian):
    tau_half = gaussian.summary["collapse_measured"]["tau_half"]
    checked = [c for c in gaussian.summary["comparisons"] if c["quantity"].startswith(
        "dimension read-out") and c["tau"] > 10 * tau_half]
    assert checked
    for comparison in checked:
        assert comparison["status"] == "agrees"
        assert abs(comparison["measurement"] - comparison["prediction"]) <= 1.0


def test_gram_route_when_rows_are_fewer_than_features():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((40, 120)) * np.linspace(0.2, 2.0, 120)
    result = analyze(rows, normalize="trace", probes=20, jacobian_probes=4, jacobian_taus=2,
                     n_tau=9)
    summary = result.summary
    assert summary["eigenvalue_route"] == "gram" and summary["rank"] == 39
    centred = rows - rows.mean(axis=0)
    centred /= np.sqrt(np.mean(centred**2) * 1.0)
    expected = np.sort(np.linalg.eigvalsh(centred.T @ centred / 40))[::-1]
    eig = np.asarray(result.tables["analyze_spectrum"]["eigenvalue"], dtype=float)
    np.testing.assert_allclose(eig[:39], expected[:39], rtol=1e-9)
    assert np.all(eig[39:] == 0.0) and summary["trace_per_dim"] == pytest.approx(1.0)


def _brute_log_weights(points, x, tau):
    """``-|x - y_mu|^2 / (2 tau)`` from explicit differences (no matrix product)."""
    diff = x[:, None, :] - points[None, :, :]
    return -np.sum(diff * diff, axis=2) / (2.0 * tau)


def test_noised_probes_match_explicit_differences():
    from scipy.special import logsumexp

    from diffphase.simulate.empirical.noised import NoisedProbes

    rng = np.random.default_rng(21)
    points = rng.standard_normal((300, 12)) * np.linspace(0.2, 3.0, 12)
    owners = rng.integers(0, 300, size=9)
    noise = rng.standard_normal((9, 12))
    for chunk, cache in ((2**16, 0), (2**27, 2**29)):  # blocks rebuilt, and kept
        probes = NoisedProbes(points[owners], noise, points, owners, chunk_bytes=chunk,
                              cache_bytes=cache)
        taus = np.array([1e-3, 0.3, 40.0])
        own, purity = probes.own_weights(taus)
        for k, tau in enumerate(taus):
            logw = _brute_log_weights(points, points[owners] + np.sqrt(tau) * noise, tau)
            w = np.exp(logw - logsumexp(logw, axis=1, keepdims=True))
            np.testing.assert_allclose(own[k], w[np.arange(9), owners], rtol=1e-9, atol=1e-300)
            np.testing.assert_allclose(purity[k], np.sum(w * w, axis=1), rtol=1e-9)
            sums = probes.log_sums(tau, [75, 150, 300])
            for j, size in enumerate((75, 150, 300)):
                np.testing.assert_allclose(sums[j], logsumexp(logw[:, :size], axis=1),
                                           rtol=1e-12, atol=1e-9)


def test_jacobian_readout_error_bound_and_gram_route():
    """The read-out's truncated weights stay within their bound of the exact eigenvalues, and
    Gram covariances (no cached features) equal the feature route's."""
    from diffphase.simulate.empirical import EmpiricalScore
    from diffphase.studies.analyze_measure import jacobian_readout

    rng = np.random.default_rng(8)
    rows = rng.standard_normal((400, 60)) * np.linspace(0.3, 2.0, 60)
    eig = np.sort(np.linalg.eigvalsh(rows.T @ rows / 400))[::-1]
    taus = np.array([0.05, 1.0, 30.0])
    readout = jacobian_readout(rows, eig, taus, 6, 0.1, np.random.default_rng(2))
    assert np.all(readout["jn_error_bound"] >= 0) and np.all(readout["jn_error_bound"] < 1e-6)
    draws = np.random.default_rng(2)  # the read-out's own draws
    owners = draws.integers(0, 400, size=6)
    noise = draws.standard_normal((6, 60))
    cached = EmpiricalScore(rows, reduce_subspace=False)
    uncached = EmpiricalScore(rows, reduce_subspace=False, feature_cache_bytes=0)
    for k, tau in enumerate(taus):
        x = rows[owners] + np.sqrt(tau) * noise
        exact = np.linalg.eigvalsh(cached.jacobian(x, 1.0, tau, normalized=True))
        gram = np.linalg.eigvalsh(uncached.jacobian(x, 1.0, tau, normalized=True))
        np.testing.assert_allclose(gram, exact, atol=1e-9)
        counts = np.sum(exact > -1.0 + 0.1, axis=1)
        assert readout["dimension"][k] == pytest.approx(counts.mean())


def test_jacobian_subsample_stops_at_its_stated_error(monkeypatch):
    """Over the work budget the read-out takes its probes in drawn order, batch by batch, and
    stops at the first batch where at least the minimum is in and the standard error is small;
    its numbers are those of exactly that subsample."""
    from diffphase.simulate.empirical import EmpiricalScore
    from diffphase.studies import analyze_measure

    monkeypatch.setattr(analyze_measure, "JACOBIAN_WORK_BUDGET", 0.0)
    rng = np.random.default_rng(9)
    rows = rng.standard_normal((300, 10)) * np.linspace(0.5, 2.0, 10)
    eig = np.sort(np.linalg.eigvalsh(rows.T @ rows / 300))[::-1]
    taus = np.array([0.02, 0.69, 4.7, 50.0])  # stops at 16, runs to 40, stops in between
    readout = analyze_measure.jacobian_readout(rows, eig, taus, 40, 0.1,
                                               np.random.default_rng(5))
    assert len(set(readout["probes_used"].tolist())) == 3
    draws = np.random.default_rng(5)
    owners = draws.integers(0, 300, size=40)
    noise = draws.standard_normal((40, 10))
    engine = EmpiricalScore(rows, reduce_subspace=False)
    batch, least, target = (analyze_measure.JACOBIAN_BATCH, analyze_measure.JACOBIAN_MIN_PROBES,
                            analyze_measure.JACOBIAN_TARGET_STDERR)
    for k, tau in enumerate(taus):
        x = rows[owners] + np.sqrt(tau) * noise
        counts = np.sum(np.linalg.eigvalsh(engine.jacobian(x, 1.0, tau, normalized=True))
                        > -0.9, axis=1)
        expected = 40
        for size in range(batch, 40, batch):
            part = counts[:size]
            if size >= least and part.std(ddof=1) / np.sqrt(size) <= target:
                expected = size
                break
        used = readout["probes_used"][k]
        assert used == expected
        assert readout["dimension"][k] == pytest.approx(counts[:used].mean())
        assert readout["dimension_stderr"][k] == pytest.approx(
            counts[:used].std(ddof=1) / np.sqrt(used))


def test_cost_bounds_the_measured_peak():
    import tracemalloc

    from diffphase.studies.analyze import analysis_cost
    from diffphase.studies.budget import total

    rng = np.random.default_rng(4)
    for n, d in ((1500, 40), (60, 150)):
        rows = rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d)
        options = {"probes": 40, "jacobian_probes": 6, "jacobian_taus": 2, "n_tau": 9}
        analyze(rows, **options)  # compile first
        tracemalloc.start()
        try:
            analyze(rows, **options)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        estimate = total(analysis_cost(n, d, [n], 1, 40, 6, 2, 9))[0]
        assert peak <= estimate <= 40 * peak + 2**28, (n, d, peak, estimate)


def test_stages_count_once_in_the_memory_total():
    from diffphase.studies.budget import CostTerm, total

    terms = [CostTerm("held", "a", 1, 100.0, 1.0), CostTerm("first", "b", 1, 30.0, 2.0, stage=True),
             CostTerm("second", "c", 1, 50.0, 4.0, stage=True)]
    assert total(terms) == (150.0, 7.0)  # held + the largest stage; every stage's seconds
    assert total(terms[:1]) == (100.0, 1.0)


# ----------------------------------------------------------------------------- command line
def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_command_json_contract_files_and_force(tmp_path):
    rows = np.random.default_rng(4).standard_normal((400, 8)) * 0.2  # lambda_max < 1
    np.save(tmp_path / "rows.npy", rows)
    args = ["analyze", "--data", str(tmp_path / "rows.npy"), "--normalize", "none",
            "--process", "ve", "--probes", "40", "--jacobian-probes", "6", "--jacobian-taus",
            "3", "--n-tau", "11", "--out", str(tmp_path / "out")]
    result = _run(args + ["--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in ("n", "dim", "normalize", "lambda_max", "t_S", "tau_S", "tau_C", "t_C",
                "tau_C_entropy", "tau_C_entropy_stderr", "collapse_measured", "timeline",
                "rem_bands"):
        assert key in summary
    assert (summary["n"], summary["dim"], summary["normalize"]) == (400, 8, "none")
    assert summary["tau_S"] is None and summary["speciation_exists"] is False
    assert "tau_S" in summary["nan_reason"] and summary["lambda_max"] < 1
    assert summary["t_C"] == pytest.approx(summary["tau_C"])  # ve: t = tau
    assert {"tau_half", "width_ln_tau"} <= set(summary["collapse_measured"])
    assert len(summary["timeline"]) == 11
    assert {"phase", "dimension"} <= set(summary["timeline"][0])
    names = ("analyze_spectrum.csv", "analyze_timeline.csv", "analyze_collapse.csv",
             "analyze_rem.csv", "analyze_jacobian_density.csv", "analyze.json", "analyze.png")
    for name in names:
        assert (tmp_path / "out" / name).stat().st_size > 0
    header = (tmp_path / "out" / "analyze_timeline.csv").read_text().splitlines()[0]
    assert "nan_reason" in header.split(",")  # measured columns are NaN off the measured taus
    before = (tmp_path / "out" / "analyze.json").read_text()
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert (tmp_path / "out" / "analyze.json").read_text() == before


def test_image_folder_end_to_end(tmp_path):
    image = pytest.importorskip("PIL.Image", reason="Pillow (the data extra) is not installed")
    rng = np.random.default_rng(6)
    (tmp_path / "imgs").mkdir()
    for i in range(30):
        pixels = rng.integers(0, 256, size=(7, 7), dtype=np.uint8)
        image.fromarray(pixels, mode="L").save(tmp_path / "imgs" / f"{i:02d}.png")
    result = _run(["analyze", "--data", str(tmp_path / "imgs"), "--image-size", "5x6",
                   "--probes", "20", "--jacobian-probes", "4", "--jacobian-taus", "2",
                   "--n-tau", "7", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["n"], summary["dim"], summary["source_kind"]) == (30, 30, "images")


def test_size_is_refused_before_loading(tmp_path, capsys):
    np.save(tmp_path / "rows.npy", np.ones((50, 4)))  # constant: refused only if it were read
    with pytest.raises(SystemExit) as info:
        main(["analyze", "--data", str(tmp_path / "rows.npy"), "--max-memory", "1M",
              "--out", str(tmp_path / "out")])
    line = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(line.splitlines()) == 1
    assert "memory budget" in line and "--" in line and not (tmp_path / "out").exists()


def test_bad_options_name_themselves(tmp_path, capsys):
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(20, 3)))
    for options, name in ((["--n-train", "1.5"], "--n-train"), (["--delta", "1"], "--delta"),
                          (["--probes", "3"], "--probes"), (["--limit", "1"], "--limit"),
                          (["--bands", "0"], "--bands"), (["--image-size", "4"], "--image-size")):
        with pytest.raises(SystemExit) as info:
            main(["analyze", "--data", str(tmp_path / "rows.npy"), *options,
                  "--out", str(tmp_path / "out")])
        line = capsys.readouterr().err.strip()
        assert info.value.code == 2 and name in line and len(line.splitlines()) == 1, line


# ----------------------------------------------------------------------------- digits
def test_digits():
    datasets = pytest.importorskip("sklearn.datasets",
                                   reason="scikit-learn (the data extra) is not installed")
    plan = plan_analysis(dataset="digits", probes=100, jacobian_probes=8, jacobian_taus=3)
    assert plan.shape == (1797, 64)
    rows = datasets.load_digits().data.astype(float)
    centred = rows - rows.mean(axis=0)
    covariance = centred.T @ centred / len(rows)
    expected = np.linalg.eigvalsh(covariance)[-1] / (np.trace(covariance) / 64)
    from diffphase.studies.analyze import run_analysis

    summary = run_analysis(plan).summary
    assert summary["lambda_max"] == pytest.approx(expected, rel=1e-10)
    assert (summary["n"], summary["dim"], summary["constant_features"]) == (1797, 64, 3)
    assert summary["t_S"] == pytest.approx(0.5 * np.log(expected), rel=1e-10)
    eig = np.asarray(np.sort(np.linalg.eigvalsh(covariance))[::-1]) / (np.trace(covariance) / 64)
    eig[eig < 1e-10] = 0.0
    assert summary["tau_C"] == pytest.approx(collapse_root(eig, 1797), rel=1e-8)
    measured = summary["collapse_measured"]
    assert np.isfinite(measured["tau_half"]) and measured["tau_0.8"] < measured["tau_0.2"]
