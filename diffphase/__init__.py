"""diffphase: statistical-physics theory of generative diffusion on structured data.

Derive (:mod:`diffphase.theory`), solve (:mod:`diffphase.solvers`), simulate
(:mod:`diffphase.data`, :mod:`diffphase.simulate`), check (:mod:`diffphase.validate`). The main
entry points are importable from here, e.g. ``from diffphase import VarianceLaw, spectral_summary``.
They load on first use (so ``import diffphase`` and the command line start fast); the table
:data:`ENTRY_POINTS` says which module each comes from.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ParameterError
from .process import Process, get_process, tau_from_time, time_from_tau

#: public name -> the module that defines it (loaded on first attribute access)
ENTRY_POINTS: dict[str, str] = {
    # a user's dataset through the theories, next to measurements on it (THEORY A, B)
    "analyze": "diffphase.studies.analyze",
    # spectral phases (THEORY A)
    "spectrum_tables": "diffphase.studies.spectral",
    "VarianceLaw": "diffphase.solvers.spectral",
    "spectral_summary": "diffphase.solvers.spectral",
    "covariance_density": "diffphase.solvers.spectral",
    "jacobian_density": "diffphase.solvers.spectral",
    "bulk_edges": "diffphase.solvers.spectral",
    # memorization (THEORY B)
    "critical_times": "diffphase.studies.memorization",
    "CovarianceSpectrum": "diffphase.solvers.memorization",
    "collapse_tau": "diffphase.solvers.memorization",
    "speciation_tau": "diffphase.solvers.memorization",
    "rem_critical_tau": "diffphase.solvers.memorization",
    "EmpiricalScore": "diffphase.simulate.empirical",
    "entropy_collapse_tau": "diffphase.simulate.memorization",
    # hierarchy (THEORY C)
    "hierarchy_thresholds": "diffphase.studies.hierarchy",
    "RandomHierarchyModel": "diffphase.data.rhm",
    "noisy_leaf_likelihood": "diffphase.data.channels",
    "belief_propagation": "diffphase.solvers.bp",
    "sample_posterior": "diffphase.solvers.bp",
    "critical_point": "diffphase.solvers.hierarchy",
    "half_point": "diffphase.solvers.population",
    "forward_backward": "diffphase.simulate.hierarchy",
    # sampler design (THEORY D)
    "sampler_error_report": "diffphase.studies.sampler",
    "sampler_error": "diffphase.solvers.sampler",
    "simulate_sampler": "diffphase.simulate.sampler",
    # score-field geometry (THEORY E)
    "diagnose_field": "diffphase.simulate.fields",
    "jacobian": "diffphase.simulate.jacobians",
    # data laws and integrators
    "LinearGaussian": "diffphase.data.laws",
    "SphereNormalized": "diffphase.data.laws",
    "TwoGaussianMixture": "diffphase.data.laws",
    "reverse_sde": "diffphase.simulate.integrators",
    "probability_flow": "diffphase.simulate.integrators",
}

__all__ = ["ParameterError", "Process", "get_process", "tau_from_time", "time_from_tau",
           "__version__", *ENTRY_POINTS]


def __getattr__(name: str):
    module = ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffphase' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(ENTRY_POINTS))
