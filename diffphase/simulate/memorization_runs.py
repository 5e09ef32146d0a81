"""The memorization experiments of ``diffphase simulate memorization`` (THEORY B), as tables.

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
from ..errors import ParameterError, require_choice, require_int
from ..models import DEVICES, MEMORIZATION_EXPERIMENTS
from ..solvers import memorization as solvers
from . import memorization as sim

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
