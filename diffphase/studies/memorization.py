"""Critical times and the ``(ln N / d, t)`` phase diagram of the memorization model (THEORY B).

Contract: :func:`critical_times` gives, for latent groups in ``R^d`` and ``N`` training points, the
collapse noise ``tau_C`` (``ln N = (1/2) sum_i ln(1 + lambda_i / tau_C)``), the speciation noise
``tau_S = Lambda - 1`` and per group the REM critical noise at a probe along a latent direction of
the group, for raw (``g = 1``) and sphere-normalized data (``g = 0``), each also as a time of the
``ou`` or ``ve`` process. :func:`memorization_diagram` gives the same lines over a grid of
``ln N / d`` (:func:`log_n_per_d_grid`). ``tau = D/a^2``; arguments are checked before any solve.

The memorization experiments of ``diffphase simulate memorization`` (THEORY B), as tables.

Contract
--------
:func:`plan_memorization_run` checks the arguments of one experiment (nothing heavy runs) and
returns a :class:`MemorizationPlan`; :func:`run_memorization` runs it with one generator seeded
from the plan and returns a :class:`MemorizationRun`: tidy columns (one row per measured point,
the measurement next to its prediction), the predictions per series, and the axes a figure of the
curves uses. The experiments, each built on :mod:`diffphase.simulate.memorization`:

* ``collapse``: isotropic unit-variance data at each ambient dimension, ``N = exp(d ln N / d)``;
  the own-point weight and participation ratio versus ``tau`` next to the predicted ``tau_C``;
* ``trajectories``: [DR]'s backward trajectories: the fraction that returns to its own training
  point versus the start ``tau`` (``ou`` time too), next to ``tau_C``;
* ``geometric``: the [LD] data (raw and sphere-normalized): per block the participation ratio
  next to the REM prediction, ``Jn`` along the block's direction, per-subspace mean eigenvalues and
  the dimension read-out; and, at held-out points, the read-out of the empirical and exact scores;
* ``speciation``: the cloning probability of a two-Gaussian mixture measured around ``tau_S`` next
  to its closed form.

``tau = D/a^2`` (``ve`` noise variance) throughout; ``t_ou`` columns are ``ou`` times.

Sizes and undefined values: every plan checks its arguments and its estimated memory and run
time (``*_cost``, :mod:`diffphase.studies.budget`) against ``max_memory`` before anything runs;
``ln N / d`` must give ``2 <= N`` (``N = exp(d ln N / d)``) finite at every dimension. A critical
point that a curve does not reach inside its grid is NaN (``null`` in JSON) with a
``nan_reason`` beside it (:mod:`diffphase.studies.tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_array_module
from ..errors import ParameterError, require_choice, require_finite, require_in_range, require_int
from ..models import DEVICES, MEMORIZATION_EXPERIMENTS, REVERSIBLE_PROCESSES
from ..solvers import memorization as solvers
from .budget import CostTerm, check_cost, product
from .tables import flag_nonfinite_columns, flag_summary

#: largest ``d ln N / d`` (``ln N``) for which ``N`` is a finite double
MAX_LOG_N = float(np.log(np.finfo(float).max))
#: why a prediction of an experiment can be undefined (NaN, ``null`` in JSON)
PREDICTION_REASONS = {
    "crossover": "the own weight does not cross 1/2 inside the tau grid (tau_C / 10 .. 10 tau_C)",
    "width_ln_tau": "the own weight does not cross both 0.2 and 0.8 inside the tau grid",
    "crossover_ln_stderr": "one training set only (--probes 1), or a leave-one-training-set-out "
                           "curve does not cross 1/2 inside the tau grid",
    "width_stderr": "one training set only (--probes 1), or a leave-one-training-set-out curve "
                    "does not cross both 0.2 and 0.8 inside the tau grid",
    "crossover_tau": "the return fraction does not cross 1/2 inside the start times "
                     "(tau_C / 10 .. 10 tau_C)",
    "tau_c_measured": "the participation ratio does not cross 1/2 inside the tau grid",
    "tau_S": "no speciation: the largest eigenvalue is <= 1",
    "t_S": "no speciation: the largest eigenvalue is <= 1",
}
#: why a column of the geometric experiment is undefined on some rows
GEOMETRIC_REASONS = {
    "participation_ratio": "held-out rows have no block direction",
    "rem_participation_ratio": "held-out rows have no block direction",
    "jn_along_direction": "held-out rows have no block direction",
    "dimension_readout_exact_score": "the exact-score read-out is taken at held-out points only",
}

#: why a line of the diagram is undefined (NaN) at some ``ln N / d``
LINE_REASONS = {"speciation": "no speciation: the largest eigenvalue is <= 1",
                "collapse": "the collapse equation has no root here (see collapse_solver)",
                "rem": "the REM criterion has no root at this N",
                "tau_c_rem_raw": "the REM criterion has no root at this N",
                "tau_c_rem_sphere": "the REM criterion has no root at this N"}
REM_CONVENTIONS = {
    "rem_raw": "g = 1 (unnormalized data)",
    "rem_sphere": "g = 0, second moments of the law normalized to the unit sphere (exact on "
    "orthonormal subspaces; on random ones the probe is treated as an eigen-direction of C, "
    "right to leading order in 1/d)",
    "rem_direction_variance": "data variance along a latent direction of the group in R^d: the "
    "group variance for orthonormal subspaces, group variance + tr C / d for random ones (d -> "
    "infinity)",
}


def critical_times(fractions, variances, dim: int, n_train: int, process: str = "ou",
                   subspace: str = "random") -> dict:
    """Collapse, speciation and per-group REM critical times of a latent-group data law.

    Parameters
    ----------
    fractions, variances : group fractions ``alpha_k`` and latent variances ``sigma_k^2``.
    dim, n_train : ambient dimension ``d >= 1`` and number of training points ``N >= 2``.
    process : ``ou`` or ``ve``, the convention of the ``t_*`` entries.
    subspace : ``random`` (Gaussian ``F``) or ``orthonormal``.

    Returns
    -------
    dict
        ``tau_C, t_C, tau_S, t_S, speciation_exists, log_n_per_d``, ..., ``per_group`` (one dict
        per group: ``tau_c_rem_raw``, ``t_c_rem_raw_<process>``, ``tau_c_rem_sphere``, ...).
    """
    dim, n_train = check_critical_times(fractions, variances, dim, n_train, process, subspace)
    diagram = memorization_diagram(fractions, variances, dim, [np.log(n_train) / dim], process,
                                   subspace, n_train=np.array([n_train], dtype=float))
    time = diagram.times()
    groups = []
    for k, (frac, var) in enumerate(zip(np.atleast_1d(fractions), np.atleast_1d(variances),
                                        strict=True)):
        row = {"fraction": float(frac), "variance": float(var),
               "direction_variance": float(diagram.direction_variances[k])}
        for kind in ("raw", "sphere"):
            name = f"rem_{kind}_variance_{var:g}"
            row[f"tau_c_rem_{kind}"] = float(diagram.lines[name][0])
            row[f"t_c_rem_{kind}_{process}"] = float(time[name][0])
        groups.append(row)
    return flag_summary({
            "tau_C": float(diagram.lines["collapse"][0]), "t_C": float(time["collapse"][0]),
            "tau_S": diagram.tau_S, "t_S": float(time["speciation"][0]),
            "speciation_exists": diagram.speciation_exists,
            "largest_eigenvalue": diagram.largest_eigenvalue, "process": process,
            "subspace": subspace, "dim": dim, "n_train": n_train,
            "log_n_per_d": float(np.log(n_train) / dim), "per_group": groups,
            "collapse_solver": diagram.collapse_solver,
            "conventions": {"tau": "D/a^2", "t": f"{process} process time", **REM_CONVENTIONS}},
        {**PREDICTION_REASONS, **LINE_REASONS})


def check_critical_times(fractions, variances, dim: int, n_train: int, process: str = "ou",
                         subspace: str = "random") -> tuple[int, int]:
    """Check the arguments of :func:`critical_times` (nothing is solved); ``(dim, n_train)``."""
    from ..solvers.spectral import VarianceLaw

    dim = require_int("dim", dim, minimum=1)
    n_train = require_int("n_train", n_train, minimum=2)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    require_choice("subspace", subspace, ("random", "orthonormal"))
    VarianceLaw.from_groups(fractions, variances)
    return dim, n_train


def memorization_diagram_cost(points: int, groups: int = 1) -> list[CostTerm]:
    """Estimated memory and run time of :func:`memorization_diagram` with its table written and
    its figure drawn: ``2 + 2 groups`` lines of ``points`` values each, one row of the tidy table
    per value (measured: about 1000 bytes and 0.1 ms a row)."""
    rows = product(points, 2 + 2 * groups)
    return [CostTerm("the lines (table rows, CSV text and figure)", "points", points,
                     64 * 2**20 + 1500.0 * rows, 5.0 + 2e-4 * rows)]


def log_n_per_d_grid(rate_min: float = 0.005, rate_max: float = 0.2, points: int = 60,
                     dim: int = 256, groups: int = 1,
                     max_memory: float | None = None) -> np.ndarray:
    """``points >= 2`` geometric values of ``ln N / d`` from ``rate_min > 0`` to
    ``rate_max > rate_min``; ``rate_min * dim >= ln 2`` (so that ``N >= 2``) and
    ``rate_max * dim <= ln(largest double)`` (``N`` finite). ``groups`` (the latent groups) and
    ``max_memory`` size the diagram's cost (:func:`memorization_diagram_cost`)."""
    require_in_range("rate_min", rate_min, 0, np.inf, closed=(False, True))
    require_in_range("rate_max", rate_max, 0, np.inf, closed=(False, True))
    if rate_max <= rate_min:
        raise ParameterError("rate_max", rate_max, f"> rate_min = {rate_min}")
    dim = require_int("dim", dim, minimum=1)
    if rate_min * dim < np.log(2.0):
        raise ParameterError("rate_min", rate_min,
                             f">= ln 2 / d = {np.log(2.0) / dim:.4g} (N = exp(d ln N/d) >= 2)")
    if rate_max * dim > MAX_LOG_N:
        raise ParameterError("rate_max", rate_max, f"<= ln(largest double) / d = "
                             f"{MAX_LOG_N / dim:.4g} (N = exp(d ln N/d) finite)")
    points = require_int("points", points, minimum=2)
    check_cost(memorization_diagram_cost(points, groups), max_memory)
    return np.geomspace(rate_min, rate_max, points)


@dataclass
class MemorizationDiagram:
    """``lines``: name (``collapse``, ``speciation``, ``rem_raw_variance_<v>``,
    ``rem_sphere_variance_<v>``) -> ``tau`` at each ``rates`` value (NaN where absent)."""

    rates: np.ndarray
    n_train: np.ndarray
    lines: dict[str, np.ndarray]
    process: str
    direction_variances: np.ndarray
    largest_eigenvalue: float
    collapse_solver: dict
    speciation_exists: bool
    tau_S: float

    def times(self) -> dict[str, np.ndarray]:
        """Each line as a time of :attr:`process`."""
        return {name: solvers.process_time(taus, self.process) for name, taus in self.lines.items()}

    def table(self) -> dict[str, np.ndarray]:
        """Tidy ``log_n_per_d, n_train, line, tau, t_<process>``, line after line (and a
        ``nan_reason`` column when a line is undefined somewhere)."""
        count = len(self.lines)
        lines = np.repeat(list(self.lines), self.rates.size)
        why = np.array([LINE_REASONS["speciation" if name == "speciation" else
                                     "collapse" if name == "collapse" else "rem"]
                        for name in lines])
        return flag_nonfinite_columns(
            {"log_n_per_d": np.tile(self.rates, count),
             "n_train": np.tile(self.n_train, count), "line": lines,
             "tau": np.concatenate(list(self.lines.values())),
             f"t_{self.process}": np.concatenate(list(self.times().values()))},
            {"tau": why, f"t_{self.process}": why})

    def summary(self) -> dict:
        return flag_summary({"lines": list(self.lines), "collapse_solver": self.collapse_solver,
                             "speciation_exists": self.speciation_exists, "tau_S": self.tau_S},
                            PREDICTION_REASONS)


def memorization_diagram(fractions=(0.1, 0.1), variances=(4.0, 1.0), dim: int = 256, rates=None,
                         process: str = "ou", subspace: str = "random",
                         n_train=None) -> MemorizationDiagram:
    """The lines of :func:`critical_times` over a grid of ``ln N / d``.

    Parameters
    ----------
    fractions, variances, dim, process, subspace : as in :func:`critical_times`.
    rates : ``ln N / d`` values (default :func:`log_n_per_d_grid`), each giving ``N >= 2``.
    n_train : ``N`` itself, one per rate (default ``exp(d rates)``).
    """
    dim = require_int("dim", dim, minimum=1)
    require_choice("process", process, REVERSIBLE_PROCESSES)
    rates = log_n_per_d_grid(dim=dim) if rates is None else np.asarray(rates, dtype=float)
    n_train = np.exp(rates * dim) if n_train is None else np.asarray(n_train, dtype=float)
    if rates.ndim != 1 or n_train.shape != rates.shape or np.any(~(n_train >= 2)):
        raise ParameterError("rates", rates, f"a list of values >= ln 2 / d (d = {dim})")
    spectrum = solvers.CovarianceSpectrum.from_groups(fractions, variances, dim, subspace)
    collapse = solvers.collapse_tau(spectrum, n_train)
    tau_s, exists = solvers.speciation_tau(spectrum.largest)
    lines = {"collapse": collapse.tau, "speciation": np.full(rates.size, float(tau_s))}
    along, raws, spheres = solvers.rem_group_taus(variances, spectrum, n_train)
    for var, raw, sphere in zip(np.atleast_1d(variances), raws, spheres, strict=True):
        lines[f"rem_raw_variance_{var:g}"] = raw
        lines[f"rem_sphere_variance_{var:g}"] = sphere
    return MemorizationDiagram(rates, n_train, lines, process, along, spectrum.largest,
                               collapse.summary(), bool(exists), float(tau_s))


#: a loop wrapper ``progress(items, desc)`` (a progress bar), or None for none
Progress = Callable[[Iterable, str], Iterable] | None


@dataclass(frozen=True)
class MemorizationPlan:
    """Checked arguments of one experiment (see :func:`plan_memorization_run`)."""

    experiment: str
    dims: tuple[int, ...]
    log_n_per_d: float
    n_train: int
    probes: int
    seed: int
    device: str


@dataclass
class MemorizationRun:
    """Measured and predicted curves of one experiment.

    ``columns``: tidy table (equal-length lists); ``predictions``: per series (``d=<dim>``,
    ``sphere std 1``, ...) the predicted and measured critical points; ``x_key``, ``y_keys`` and
    ``group``: the columns a figure plots against each other, one line per group value.
    """

    experiment: str
    columns: dict[str, list] = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    x_key: str = "tau"
    y_keys: list[str] = field(default_factory=list)
    group: str = ""
    seed: int = 0

    def add(self, row: dict) -> None:
        for key, value in row.items():
            self.columns.setdefault(key, []).append(value)

    def summary(self) -> dict:
        return {"experiment": self.experiment,
                "predictions": flag_summary(self.predictions, PREDICTION_REASONS),
                "seed": self.seed}



def training_sizes(dims: Sequence[int], log_n_per_d: float) -> list[float]:
    """``N = exp(d ln N / d)`` at each dimension, as floats (``inf`` beyond the double range);
    the experiments round it to an integer."""
    with np.errstate(over="ignore"):
        return [float(np.exp(product(d, log_n_per_d))) for d in dims]


def memorization_run_cost(experiment: str, dims: Sequence[int] = (32, 64),
                          log_n_per_d: float = 0.09, n_train: int = 1000,
                          probes: int = 64) -> list[CostTerm]:
    """Estimated memory and run time of one experiment of :func:`run_memorization`.

    ``collapse`` and ``trajectories`` hold the ``N x d`` training points (with the engine's
    centred copy) and ``probes x N`` posterior weights (measured: about ``3 N d + 8 probes N``
    doubles at the peak); their time is ``probes x N x d`` per ``tau`` (33) or per reverse-SDE
    step (400). ``geometric`` holds per training point its weights on the ``tau`` grid (about 6
    kB a point); ``speciation`` ten cloned pairs per probe.
    """
    if experiment in ("collapse", "trajectories"):
        terms = []
        for d, n in zip(dims, training_sizes(dims, log_n_per_d), strict=True):
            name, value = (("dims", d) if d > 4096 else
                           ("log_n_per_d", log_n_per_d) if not n < 1e9 else
                           ("probes", probes) if probes > d else ("log_n_per_d", log_n_per_d))
            memory = 8.0 * (3.0 * product(n, d) + 8.0 * product(probes, n))
            calls = 33.0 if experiment == "collapse" else 400.0
            seconds = calls * (0.06 + product(probes, n, 5e-9 * d + 5e-8))
            what = f"the training set and its weights at d = {product(d):.3g} (N = {n:.3g})"
            terms.append(CostTerm(what, name, value, 64 * 2**20 + memory, seconds))
        return terms
    if experiment == "geometric":
        return [CostTerm("the 2 x 30-dimensional training sets and their weights", "n_train",
                         n_train, 128 * 2**20 + 6000.0 * float(n_train),
                         20.0 + 1e-3 * float(n_train))]
    pairs = product(probes, 10)
    return [CostTerm("the cloned pairs", "probes", probes, 640.0 * pairs,
                     1.0 + 3600 * (1e-4 + 2e-7 * pairs))]


def plan_memorization_run(experiment: str = "collapse", dims: Sequence[float] = (32, 64),
                          log_n_per_d: float = 0.09, n_train: int = 1000, probes: int = 64,
                          seed: int = 0, device: str = "cpu",
                          max_memory: float | None = None) -> MemorizationPlan:
    """Check the arguments of one experiment and its cost before anything runs.

    Parameters
    ----------
    experiment : ``collapse``, ``trajectories``, ``geometric`` or ``speciation``.
    dims : ambient dimensions of ``collapse`` and ``trajectories`` (integers >= 2).
    log_n_per_d : ``ln N / d`` of ``collapse`` and ``trajectories``: finite, with
        ``N = exp(d ln N / d) >= 2`` at every dimension.
    n_train : training points of ``geometric`` (>= 2).
    probes : probes per point (``collapse``), trajectories per start (``trajectories``); ten times
        as many cloned pairs per ``tau`` (``speciation``); integer >= 1.
    seed : seed of the one generator the experiment draws from (>= 0).
    device : ``cpu``, ``gpu`` (an error when no GPU answers) or ``auto``.
    max_memory : memory budget in bytes (:func:`memorization_run_cost`; default half the
        physical memory).

    Every argument is checked, the ones the experiment does not use too; the cost is that of the
    experiment asked for.
    """
    require_choice("experiment", experiment, MEMORIZATION_EXPERIMENTS)
    require_choice("device", device, DEVICES)
    probes = require_int("probes", probes, minimum=1)
    seed = require_int("seed", seed, minimum=0)
    n_train = require_int("n_train", n_train, 2)
    checked_dims = tuple(require_int("dims", d, 2) for d in np.atleast_1d(dims).tolist())
    log_n_per_d = require_finite("log_n_per_d", log_n_per_d)
    smallest = min(checked_dims)
    if log_n_per_d * smallest < np.log(2.0):
        raise ParameterError("log_n_per_d", log_n_per_d,
                             f">= ln 2 / d = {np.log(2.0) / smallest:.4g} at the smallest of "
                             f"dims ({smallest}), so that N = exp(d ln N/d) >= 2")
    check_cost(memorization_run_cost(experiment, checked_dims, log_n_per_d, n_train, probes),
               max_memory)
    get_array_module(device)  # a GPU asked for but absent fails here
    if experiment not in ("collapse", "trajectories"):
        checked_dims = ()
    return MemorizationPlan(experiment, checked_dims, log_n_per_d, n_train, probes, seed, device)


def run_memorization(plan: MemorizationPlan, progress: Progress = None) -> MemorizationRun:
    """Run a planned experiment; ``progress(items, desc)`` wraps its outer loop."""
    rng = np.random.default_rng(plan.seed)
    loop = progress or (lambda items, desc: items)
    run = MemorizationRun(plan.experiment, seed=plan.seed)
    experiments = {"collapse": _collapse, "trajectories": _trajectories,
                   "geometric": _geometric, "speciation": _speciation}
    experiments[plan.experiment](plan, run, rng, loop)
    run.columns = flag_nonfinite_columns(run.columns, GEOMETRIC_REASONS)
    return run


def _collapse(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    from ..simulate import memorization as sim

    for dim in loop(plan.dims, "dims"):
        res = sim.collapse_experiment(dim, plan.log_n_per_d, rng, n_probes=plan.probes,
                                      device=plan.device)
        run.predictions[f"d={dim}"] = {k: res[k] for k in (
            "n_train", "tau_C", "crossover", "crossover_ln_stderr", "width_ln_tau",
            "width_stderr", "n_datasets")}
        curves = res["curves"]
        for i, tau in enumerate(curves["tau"]):
            run.add({"dim": dim, "n_train": res["n_train"], "tau": tau,
                     "own_weight": curves["own_weight"][i],
                     "participation_ratio": curves["participation_ratio"][i],
                     "tau_C_predicted": res["tau_C"]})
    run.y_keys, run.group = ["own_weight"], "dim"


def _trajectories(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    from ..simulate import memorization as sim

    for dim in loop(plan.dims, "dims"):
        res = sim.return_fraction(dim, max(2, int(round(np.exp(dim * plan.log_n_per_d)))), rng,
                                  n_traj=plan.probes)  # N >= 2 checked by the plan
        run.predictions[f"d={dim}"] = {"n_train": res["n_train"], "tau_C": res["tau_C"],
                                       "t_C_ou": res["t_C"], "crossover_tau": sim.crossing(
                                           res["tau"], res["return_fraction"], 0.5)}
        for i, tau in enumerate(res["tau"]):
            run.add({"dim": dim, "n_train": res["n_train"], "tau": tau, "t_ou": res["t"][i],
                     "return_fraction": res["return_fraction"][i],
                     "on_training_point": res["on_training_point"][i],
                     "tau_C_predicted": res["tau_C"]})
    run.y_keys, run.group = ["return_fraction"], "dim"


def _subspace_means(spectra: dict, i: int) -> dict[str, float]:
    return {f"jn_mean_eigenvalue_{sub.replace(' ', '_')}": float(np.mean(values[i]))
            for sub, values in spectra.items()}


def _geometric(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    from ..simulate import memorization as sim

    for normalized in loop((True, False), "data"):
        res = sim.geometric_experiment(plan.n_train, normalized, rng)
        kind = "sphere" if normalized else "raw"
        for name, block in res["blocks"].items():
            label = f"{kind} {name}"
            run.predictions[label] = {"tau_c_predicted": block["tau_c_predicted"],
                                      "tau_c_measured": block["tau_c_measured"]}
            for i, tau in enumerate(block["tau"]):
                run.add({"series": label, "tau": tau,
                         "participation_ratio": block["participation_ratio"][i],
                         "rem_participation_ratio": float(solvers.rem_participation_ratio(
                             tau, block["tau_c_predicted"])),
                         "jn_along_direction": block["jn_along_direction"][i],
                         "dimension_readout": block["dimension_readout"][i],
                         "dimension_readout_exact_score": np.nan,
                         **_subspace_means(block["subspace_spectra"], i)})
        held = res["heldout"]
        for i, tau in enumerate(held["tau"]):
            run.add({"series": f"{kind} held-out", "tau": tau, "participation_ratio": np.nan,
                     "rem_participation_ratio": np.nan, "jn_along_direction": np.nan,
                     "dimension_readout": held["dimension_readout"][i],
                     "dimension_readout_exact_score": held["dimension_readout_exact_score"][i],
                     **_subspace_means(held["subspace_spectra"], i)})
    run.y_keys, run.group = ["participation_ratio", "rem_participation_ratio"], "series"


def _speciation(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    from ..data.laws import TwoGaussianMixture
    from ..simulate import memorization as sim

    mixture = TwoGaussianMixture.create(8, 3.0, 1.0)
    tau_s = float(solvers.speciation_tau(mixture.largest_eigenvalue())[0])
    for factor in loop(np.geomspace(0.1, 10, 9), "tau"):
        tau = factor * tau_s
        run.add({"series": "cloning", "tau": tau, "tau_S": tau_s,
                 "same_cluster_measured": sim.cloning_experiment(tau, mixture, plan.probes * 10,
                                                                 rng),
                 "same_cluster_predicted": float(solvers.cloning_probability(
                     tau, mixture.mean_norm2, mixture.sigma2))})
    run.predictions["tau_S"] = tau_s
    run.y_keys, run.group = ["same_cluster_measured", "same_cluster_predicted"], "series"
