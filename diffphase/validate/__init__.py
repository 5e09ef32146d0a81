"""Simulations and checks: data samplers, exact and empirical scores, BP on trees, samplers,
Jacobian diagnostics, and the check registry (:mod:`diffphase.validate.registry`)."""

from .registry import Comparison, register_check, run_checks

__all__ = ["Comparison", "register_check", "run_checks"]
