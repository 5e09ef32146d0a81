"""The check registry and the registered checks: one module per model, each pairing a theory
prediction with a simulation that measures it (:mod:`diffphase.validate.registry`). Only the
command line imports this layer; the engines the checks run live in :mod:`diffphase.simulate`."""

from .registry import Comparison, register_check, run_checks

__all__ = ["Comparison", "register_check", "run_checks"]
