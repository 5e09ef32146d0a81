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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_array_module
from ..data.laws import TwoGaussianMixture
from ..errors import ParameterError, require_choice, require_in_range, require_int
from ..models import DEVICES, MEMORIZATION_EXPERIMENTS, REVERSIBLE_PROCESSES
from ..simulate import memorization as sim
from ..solvers import memorization as solvers

REM_CONVENTIONS = {
    "rem_raw": "g = 1 (unnormalized data)",
    "rem_sphere": "g = 0, variances divided by E|y|^2",
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
    dim = require_int("dim", dim, minimum=1)
    n_train = require_int("n_train", n_train, minimum=2)
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
    return {"tau_C": float(diagram.lines["collapse"][0]), "t_C": float(time["collapse"][0]),
            "tau_S": diagram.tau_S, "t_S": float(time["speciation"][0]),
            "speciation_exists": diagram.speciation_exists,
            "largest_eigenvalue": diagram.largest_eigenvalue, "process": process,
            "subspace": subspace, "dim": dim, "n_train": n_train,
            "log_n_per_d": float(np.log(n_train) / dim), "per_group": groups,
            "collapse_solver": diagram.collapse_solver,
            "conventions": {"tau": "D/a^2", "t": f"{process} process time", **REM_CONVENTIONS}}


def log_n_per_d_grid(rate_min: float = 0.005, rate_max: float = 0.2, points: int = 60,
                     dim: int = 256) -> np.ndarray:
    """``points >= 2`` geometric values of ``ln N / d`` from ``rate_min > 0`` to
    ``rate_max > rate_min``; ``rate_min * dim >= ln 2`` (so that ``N >= 2``)."""
    require_in_range("rate_min", rate_min, 0, np.inf, closed=(False, True))
    if rate_max <= rate_min:
        raise ParameterError("rate_max", rate_max, f"> rate_min = {rate_min}")
    dim = require_int("dim", dim, minimum=1)
    if rate_min * dim < np.log(2.0):
        raise ParameterError("rate_min", rate_min,
                             f">= ln 2 / d = {np.log(2.0) / dim:.4g} (N = exp(d ln N/d) >= 2)")
    return np.geomspace(rate_min, rate_max, require_int("points", points, minimum=2))


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
        """Tidy ``log_n_per_d, n_train, line, tau, t_<process>``, line after line."""
        count = len(self.lines)
        return {"log_n_per_d": np.tile(self.rates, count),
                "n_train": np.tile(self.n_train, count),
                "line": np.repeat(list(self.lines), self.rates.size),
                "tau": np.concatenate(list(self.lines.values())),
                f"t_{self.process}": np.concatenate(list(self.times().values()))}

    def summary(self) -> dict:
        return {"lines": list(self.lines), "collapse_solver": self.collapse_solver,
                "speciation_exists": self.speciation_exists, "tau_S": self.tau_S}


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
        return {"experiment": self.experiment, "predictions": self.predictions,
                "seed": self.seed}


def plan_memorization_run(experiment: str = "collapse", dims: Sequence[float] = (32, 64),
                          log_n_per_d: float = 0.09, n_train: int = 1000, probes: int = 64,
                          seed: int = 0, device: str = "cpu") -> MemorizationPlan:
    """Check the arguments of one experiment before anything runs.

    Parameters
    ----------
    experiment : ``collapse``, ``trajectories``, ``geometric`` or ``speciation``.
    dims : ambient dimensions of ``collapse`` and ``trajectories`` (each truncated to an integer,
        then >= 2).
    log_n_per_d : ``ln N / d`` of ``collapse`` and ``trajectories``.
    n_train : training points of ``geometric`` (>= 2).
    probes : probes per point (``collapse``), trajectories per start (``trajectories``); ten times
        as many cloned pairs per ``tau`` (``speciation``); integer >= 1.
    seed : seed of the one generator the experiment draws from (>= 0).
    device : ``cpu``, ``gpu`` (an error when no GPU answers) or ``auto``.
    """
    require_choice("experiment", experiment, MEMORIZATION_EXPERIMENTS)
    require_choice("device", device, DEVICES)
    get_array_module(device)  # a GPU asked for but absent fails here
    probes = require_int("probes", probes, minimum=1)
    if seed < 0:
        raise ParameterError("seed", seed, ">= 0")
    checked_dims: tuple[int, ...] = ()
    if experiment in ("collapse", "trajectories"):
        checked_dims = tuple(require_int("dims", int(d), 2) for d in dims)
    if experiment == "geometric":
        n_train = require_int("n_train", n_train, 2)
    return MemorizationPlan(experiment, checked_dims, log_n_per_d, n_train, probes, seed, device)


def run_memorization(plan: MemorizationPlan, progress: Progress = None) -> MemorizationRun:
    """Run a planned experiment; ``progress(items, desc)`` wraps its outer loop."""
    rng = np.random.default_rng(plan.seed)
    loop = progress or (lambda items, desc: items)
    run = MemorizationRun(plan.experiment, seed=plan.seed)
    experiments = {"collapse": _collapse, "trajectories": _trajectories,
                   "geometric": _geometric, "speciation": _speciation}
    experiments[plan.experiment](plan, run, rng, loop)
    return run


def _collapse(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    for dim in loop(plan.dims, "dims"):
        res = sim.collapse_experiment(dim, plan.log_n_per_d, rng, n_probes=plan.probes,
                                      device=plan.device)
        run.predictions[f"d={dim}"] = {k: res[k] for k in ("n_train", "tau_C", "crossover",
                                                           "width_ln_tau")}
        curves = res["curves"]
        for i, tau in enumerate(curves["tau"]):
            run.add({"dim": dim, "n_train": res["n_train"], "tau": tau,
                     "own_weight": curves["own_weight"][i],
                     "participation_ratio": curves["participation_ratio"][i],
                     "tau_C_predicted": res["tau_C"]})
    run.y_keys, run.group = ["own_weight"], "dim"


def _trajectories(plan: MemorizationPlan, run: MemorizationRun, rng, loop) -> None:
    for dim in loop(plan.dims, "dims"):
        res = sim.return_fraction(dim, max(2, int(round(np.exp(dim * plan.log_n_per_d)))), rng,
                                  n_traj=plan.probes)
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
