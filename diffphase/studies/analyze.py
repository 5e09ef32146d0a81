"""``diffphase analyze``: a user's dataset through the theories, and the same quantities measured
on the data with the exact empirical score (THEORY A and B).

Contract
--------
:func:`plan_analysis` checks every argument, reads the source's shape from its headers
(:func:`~diffphase.data.loaders.peek_shape`) and checks the job's estimated memory and run time
(:func:`analysis_cost`) against ``max_memory`` before it reads the values; then it loads the rows
(which checks them) and centres and scales them (:func:`~diffphase.data.loaders.prepare_rows`).
It returns an :class:`AnalysisPlan`, so that bad input is refused before any output is claimed.
:func:`run_analysis` computes and returns an :class:`AnalysisResult`:

* predictions from the covariance spectrum (:mod:`.analyze_predict`): ``lambda_max``,
  speciation ``tau_S``/``t_S``, the Gaussian-route collapse ``tau_C``/``t_C`` for ``N`` = the rows
  and each ``n_train``, the spectral timeline (phase, dimension read-out, gaps, visibility
  windows, the density of ``Jn``) and the REM critical times of each variance band;
* measurements on the rows (:mod:`.analyze_measure`): the entropy-route ``tau_C`` with its
  standard error, the own-weight collapse crossover, ``Jn`` read-outs at forward-noised rows, and
  per band the REM condensation point;
* each prediction next to its measurement, ``agrees`` / ``disagrees`` within a stated tolerance
  (:mod:`.analyze_tables`), and the tables the command writes.

:func:`analyze` does both steps. Times are ``tau = D/a^2`` and times of ``process``; measurements
run in the ``ve`` convention, which is the same at equal ``tau``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.loaders import (
    NORMALIZATIONS,
    LoadedRows,
    PreparedRows,
    check_source,
    load_rows,
    peek_shape,
    prepare_rows,
)
from ..errors import ParameterError, require_choice, require_count, require_in_range, require_int
from ..models import REVERSIBLE_PROCESSES
from ..simulate.empirical.noised import noised_probe_bytes
from ..simulate.empirical.routes import DEFAULT_CHUNK_BYTES, DEFAULT_FEATURE_CACHE_BYTES
from . import analyze_measure as measure
from . import analyze_predict as predict
from .analyze_tables import AnalysisResult, build_result
from .budget import CostTerm, check_cost, product

#: ``tau`` points of each measured collapse curve
COLLAPSE_POINTS = 41
#: ``tau`` points of the participation-ratio curves of the REM bands
REM_POINTS = 81
#: most extra training-set sizes in ``n_train``
MAX_EXTRA_SIZES = 16
#: cost model of :func:`analysis_cost`: floating-point operations a second of matrix products on
#: one core (double precision; 2 loaded cores measured 60-130 GFLOP/s together), seconds per
#: element of an elementwise pass, and passes per element of one ``tau`` of an own-weight curve
#: (logits, two log-sum-exps) and of one evaluation of the entropy route
BLAS_FLOPS = 2e10
PASS_SECONDS = 1e-9
OWN_WEIGHT_PASSES = 14
ENTROPY_PASSES = 10

#: a loop wrapper ``progress(items, desc)`` (a progress bar), or None
Progress = Callable[[Iterable, str], Iterable] | None


@dataclass(frozen=True, eq=False)
class AnalysisPlan:
    """Checked arguments and the loaded, prepared rows of :func:`run_analysis` (see
    :func:`plan_analysis`)."""

    source: dict
    shape: tuple[int, int]
    loaded: LoadedRows
    prepared: PreparedRows
    normalize: str
    process: str
    n_train: tuple[int, ...]
    delta: float
    bands: int | None
    n_tau: int
    probes: int
    jacobian_probes: int
    jacobian_taus: int
    seed: int

    def parameters(self) -> dict:
        """The plan as JSON-ready parameters (the sidecar's record)."""
        source = {k: (self.loaded.source if k == "path" else v)
                  for k, v in self.source.items()}
        return {**source, "rows": self.shape[0], "features": self.shape[1],
                "normalize": self.normalize, "process": self.process,
                "n_train": list(self.n_train), "delta": self.delta, "bands": self.bands,
                "n_tau": self.n_tau, "probes": self.probes,
                "jacobian_probes": self.jacobian_probes, "jacobian_taus": self.jacobian_taus,
                "seed": self.seed}


def analysis_cost(rows: int, features: int, n_measured: Sequence[int] = (), n_sizes: int = 1,
                  probes: int = 200, jacobian_probes: int = 32, jacobian_taus: int = 6,
                  n_tau: int = 49, bands: int | None = None) -> list[CostTerm]:
    """Estimated peak memory (bytes) and run time (seconds on one core) of an analysis of
    ``rows x features``, term by term for the algorithms of :mod:`.analyze_measure`.

    Time: matrix products and eigen-decompositions at ``BLAS_FLOPS`` floating-point operations a
    second, elementwise passes (log-sum-exp) at ``PASS_SECONDS`` per element. Memory: each term's
    arrays at its peak; every term but the rows is a ``stage`` (the stages run one after the
    other), so the total is the rows plus the largest stage. With ``n`` rows, ``d`` features,
    ``r = min(n, d)``:

    * the rows (read, centred, in principal coordinates): ``8 n d`` bytes a copy;
    * the eigen-decomposition of the smaller of the covariance and Gram matrices
      (``m = min(n, d)``: ``3 m^2`` doubles, ``2 n d m + 10 m^3`` flops);
    * per measured ``N``, the collapse curve: distances of the probes from two products
      (``4 probes N r`` flops; :class:`~diffphase.simulate.empirical.noised.NoisedProbes`
      keeps ``16 probes N`` bytes when they fit its cache, and a block of probes' temporaries),
      then ``OWN_WEIGHT_PASSES`` passes over ``probes x N`` per ``tau`` of the curve;
    * the entropy route: the same distances for the held-out rows against the reference, then
      ``ENTROPY_PASSES`` passes per evaluation, about ``30 + 25`` evaluations per size;
    * the Jacobian read-out, per ``tau`` and probe: the dense covariance over all rows (the
      cached features when ``8 n r (r+1)/2`` fits 2 GiB, else Gram products of the weighted
      rows, ``2 n r (r + 100)`` flops), the blocks' weights and kept sets (``24 n`` bytes per
      probe), a truncated row's gathered points (at most ``8 n r`` bytes) and ``10 r^3`` flops
      for the eigenvalues;
    * the REM condensation: ``4`` probe lines of ``REM_POINTS`` queries per band (``bands``, 8
      when by decade), two products each.
    """
    n, d = float(rows), float(features)
    m = r = min(n, d)
    blas = 1.0 / BLAS_FLOPS
    terms = [
        CostTerm("the rows (read, centred and in principal coordinates)", "limit", rows,
                 64 * 2**20 + 8.0 * product(n, d) * 4, PASS_SECONDS * product(n, d) * 10),
        CostTerm("the eigen-decomposition of the covariance (or Gram) matrix", "limit", rows,
                 8.0 * (3 * product(m, m) + product(n, d)),
                 blas * (2 * product(n, d, m) + 10 * product(m, m, m)), stage=True),
        CostTerm("the timeline and the density of the Jacobian", "n_tau", n_tau,
                 8.0 * product(n_tau, d) * 4, PASS_SECONDS * product(n_tau, d) * 100,
                 stage=True)]
    for size in n_measured:
        terms.append(CostTerm(
            f"the collapse curve of N = {size}", "probes", probes,
            8.0 * product(size, r + 1) + noised_probe_bytes(probes, size)
            + 8.0 * product(probes, 2 * r + 2 * COLLAPSE_POINTS),
            blas * 4 * product(probes, size, r)
            + PASS_SECONDS * OWN_WEIGHT_PASSES * product(COLLAPSE_POINTS, probes, size),
            stage=True))
    held = min(float(probes), n / 5)
    reference = max(n - held, 1.0)
    evaluations = 30 + 25 * n_sizes
    terms.append(CostTerm(
        "the entropy route (nested references)", "probes", probes,
        8.0 * product(reference + held, r + 1) + noised_probe_bytes(held, reference),
        blas * 4 * product(held, reference, r)
        + PASS_SECONDS * ENTROPY_PASSES * product(evaluations, held, reference), stage=True))
    terms.append(_jacobian_cost(n, r, jacobian_probes, jacobian_taus))
    lines = 4 * (8 if bands is None else bands)
    terms.append(CostTerm("the REM condensation per band", "bands", bands,
                          8.0 * (product(n, r) + 3 * product(REM_POINTS, n)),
                          blas * 4 * product(lines, REM_POINTS, n, r)
                          + PASS_SECONDS * 4 * product(lines, REM_POINTS, n), stage=True))
    return terms


def _jacobian_cost(n: float, r: float, probes: int, taus: int) -> CostTerm:
    """The Jacobian read-out's term of :func:`analysis_cost`."""
    if not probes:
        return CostTerm("the Jacobian read-out", "jacobian_probes", probes, 0.0, 0.0, stage=True)
    packed = product(n, r, r + 1) / 2
    cached = 8.0 * packed <= DEFAULT_FEATURE_CACHE_BYTES
    block = min(float(probes), 4096.0)
    # features (or one Gram chunk), the engine's centred rows, the gathered points of a
    # truncated row (at most all n), a block's weights and kept sets, the covariances
    memory = ((8.0 * packed if cached else DEFAULT_CHUNK_BYTES) + 2 * 8.0 * product(n, r)
              + 24.0 * product(block, n) + 24.0 * product(probes, r, r) + 64 * 2**20)
    per_row = 2 * product(n, packed) / n if cached else 2 * product(n, r, r + 100)
    flops = product(taus, probes) * (per_row + 10 * product(r, r, r))
    return CostTerm("the Jacobian read-out", "jacobian_probes", probes, memory, flops / BLAS_FLOPS,
                    stage=True)


def plan_analysis(data=None, dataset=None, *, key=None, limit=None, image_size=None,
                  normalize: str = "trace", process: str = "ou", n_train=(),
                  delta: float = 0.1, bands: int | None = None, n_tau: int = 49,
                  probes: int = 200, jacobian_probes: int = 32, jacobian_taus: int = 6,
                  seed: int = 0, max_memory: float | None = None) -> AnalysisPlan:
    """Check the arguments of :func:`run_analysis` and its cost, then load and prepare the rows.

    Parameters
    ----------
    data, dataset, key, limit, image_size : the source (:func:`~diffphase.data.loaders.load_rows`).
    normalize : ``trace`` (``tr C / d = 1``), ``standardize`` or ``none``.
    process : ``ou`` or ``ve``, the convention of the times ``t``.
    n_train : extra training-set sizes ``N >= 2`` (at most 16) besides the number of rows.
    delta : resolution of the phases and the dimension read-out, in ``(0, 1)``.
    bands : variance bands of the REM times (None: by decade of the eigenvalues).
    n_tau : points of the timeline (``[5, 2001]``). probes : probes of the collapse curves and
        held-out rows of the entropy route (``[10, 10^5]``). jacobian_probes : noised rows of the
        Jacobian read-out (0 skips it). jacobian_taus : its ``tau`` values (``[1, 50]``).
    seed : the one generator's seed. max_memory : memory budget in bytes (default half the
        machine's).
    """
    source = check_source(data, dataset, key, limit, image_size)
    require_choice("normalize", normalize, NORMALIZATIONS)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    delta = require_in_range("delta", delta, 0, 1, closed=(False, False))
    if bands is not None:
        bands = require_count("bands", bands, 1, 64)
    n_tau = require_count("n_tau", n_tau, 5, 2001)
    probes = require_count("probes", probes, 10, 10**5)
    jacobian_probes = require_count("jacobian_probes", jacobian_probes, 0, 4096)
    jacobian_taus = require_count("jacobian_taus", jacobian_taus, 1, 50)
    seed = require_int("seed", seed, minimum=0)
    sizes = _checked_sizes(n_train)
    shape = peek_shape(data, dataset, key, source["limit"], source["image_size"])
    if shape[0] < 2:
        where = source.get("dataset") or (
            "array" if isinstance(source["path"], np.ndarray) else source["path"])
        raise ParameterError("data", f"{where}: {shape[0]} row", "at least 2 rows (samples)")
    measured = [shape[0]] + [s for s in sizes if s < shape[0]]
    check_cost(analysis_cost(shape[0], shape[1], measured, 1 + len(sizes), probes,
                             jacobian_probes, jacobian_taus, n_tau, bands), max_memory)
    loaded = load_rows(source.get("path"), source.get("dataset"), source["key"],
                       source["limit"], source["image_size"])
    prepared = prepare_rows(loaded.rows, normalize)
    return AnalysisPlan(source, prepared.rows.shape, loaded, prepared, normalize, process, sizes,
                        float(delta), bands, n_tau, probes, jacobian_probes, jacobian_taus, seed)


def _checked_sizes(n_train) -> tuple[int, ...]:
    values = np.atleast_1d(np.asarray([] if n_train is None else n_train, dtype=object))
    if values.size > MAX_EXTRA_SIZES:
        raise ParameterError("n_train", list(values), f"at most {MAX_EXTRA_SIZES} sizes")
    sizes = []
    for value in values.tolist():
        try:
            finite = np.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite:
            raise ParameterError("n_train", value, "integers >= 2 (training-set sizes)")
        sizes.append(require_int("n_train", value, minimum=2))
    return tuple(sorted(set(sizes)))


def run_analysis(plan: AnalysisPlan, progress: Progress = None) -> AnalysisResult:
    """Predict, measure and compare (see the module contract) for a checked plan."""
    step = progress or (lambda items, desc: items)
    rng = np.random.default_rng(plan.seed)
    spectrum = predict.data_spectrum(plan.prepared.rows)
    n = spectrum.n
    sizes = (n,) + tuple(s for s in plan.n_train if s != n)
    found = {"loaded": plan.loaded, "prepared": plan.prepared, "spectrum": spectrum,
             "sizes": sizes}
    for name, task in step(list(_tasks(plan, found, rng)), "analyze"):
        found[name] = task()
    return build_result(plan, found)


def _tasks(plan: AnalysisPlan, found: dict, rng: np.random.Generator):
    """``(name, callable)`` of every computation, in order (each reads what the earlier found)."""
    spectrum, sizes = found["spectrum"], found["sizes"]
    eig, process = spectrum.eigenvalues, plan.process
    yield "speciation", lambda: predict.speciation(spectrum.largest, process)
    yield "gaussian", lambda: predict.gaussian_collapse(eig, sizes, process)
    yield "taus", lambda: predict.timeline_taus(eig, float(found["gaussian"]["tau_C"][0]),
                                                plan.delta, plan.n_tau)
    yield "law", lambda: predict.data_variance_law(eig, spectrum.dim, plan.delta)
    yield "timeline", lambda: predict.spectral_timeline(found["law"], spectrum.dim, found["taus"],
                                                        plan.delta, process)
    yield "gaps", lambda: predict.visible_gaps(found["law"], plan.delta, process)
    yield "histogram", lambda: predict.jacobian_histogram(eig, found["taus"])
    yield "bands", lambda: predict.variance_bands(eig, plan.bands)
    yield "rem", lambda: predict.rem_band_times(eig, spectrum.coordinates, found["bands"], sizes,
                                                process)
    yield "entropy", lambda: measure.entropy_collapse(spectrum.coordinates, sizes, plan.probes,
                                                      spectrum.largest, rng)
    yield "crossovers", lambda: _crossovers(plan, found, rng)
    yield "jacobian", lambda: _jacobian(plan, found, rng)
    yield "condensation", lambda: _condensation(found)


def _crossovers(plan: AnalysisPlan, found: dict, rng: np.random.Generator) -> list[dict]:
    """A collapse curve per size ``N <= rows``, on a grid around the Gaussian route's ``tau_C``
    (the entropy route's, or the largest eigenvalue's scale, where that is undefined)."""
    spectrum, gaussian = found["spectrum"], found["gaussian"]
    out = []
    for k, size in enumerate(found["sizes"]):
        if size > spectrum.n:
            continue
        center = _grid_center(gaussian["tau_C"][k], found["entropy"][k]["tau_C"],
                              spectrum.largest)
        taus = measure.collapse_grid(center, COLLAPSE_POINTS)
        out.append(measure.collapse_crossover(spectrum.coordinates, size, taus, plan.probes, rng))
    return out


def _grid_center(*candidates: float) -> float:
    return next(float(c) for c in candidates if np.isfinite(c) and c > 0)


def jacobian_taus(taus: np.ndarray, tau_c: float, largest: float, count: int) -> np.ndarray:
    """Indices of the timeline's ``tau`` nearest ``count`` geometric points from ``tau_C / 10``
    to ``30 lambda_max`` (duplicates dropped)."""
    low = tau_c / 10.0 if np.isfinite(tau_c) and tau_c > 0 else taus[0]
    targets = np.geomspace(max(low, taus[0]), min(30.0 * largest, taus[-1]), count)
    nearest = np.abs(np.log(taus)[None, :] - np.log(targets)[:, None]).argmin(axis=1)
    return np.unique(nearest)


def _jacobian(plan: AnalysisPlan, found: dict, rng: np.random.Generator) -> dict | None:
    if plan.jacobian_probes == 0:
        return None
    spectrum, taus = found["spectrum"], found["taus"]
    where = jacobian_taus(taus, float(found["gaussian"]["tau_C"][0]), spectrum.largest,
                          plan.jacobian_taus)
    readout = measure.jacobian_readout(spectrum.coordinates, spectrum.eigenvalues, taus[where],
                                       plan.jacobian_probes, plan.delta, rng)
    return {**readout, "index": where}


def _condensation(found: dict) -> list[dict]:
    """REM condensation per band for ``N`` = the rows, on a grid spanning the bands' predicted
    ``tau_c`` (raw and sphere) a factor 100 either way."""
    rows = found["spectrum"].n
    predicted = [r[key] for r in found["rem"] if r["n_train"] == rows
                 for key in ("tau_c_rem_raw", "tau_c_rem_sphere")]
    finite = [p for p in predicted if np.isfinite(p) and p > 0]
    if not finite:
        return []
    taus = np.geomspace(min(finite) / 100.0, max(finite) * 100.0, REM_POINTS)
    return measure.rem_condensation(found["spectrum"].coordinates, found["bands"], taus)


def analyze(data=None, dataset=None, **options) -> AnalysisResult:
    """Plan (every check, the cost) and run an analysis: ``analyze(dataset="digits")``,
    ``analyze("rows.npy", normalize="standardize", n_train=[100, 1000])``; ``options`` are those
    of :func:`plan_analysis` (``progress`` is passed to :func:`run_analysis`)."""
    progress = options.pop("progress", None)
    return run_analysis(plan_analysis(data, dataset, **options), progress)
