"""Compiled numeric layer: :mod:`~diffphase.solvers.codegen` turns the expressions of
:mod:`diffphase.theory` into numba, cupy and mpmath callables; the model modules solve them on
whole grids (batched Newton, bracketed roots, continuation) with per-point convergence flags.
Exact belief propagation on trees (:mod:`~diffphase.solvers.bp`) and population dynamics
(:mod:`~diffphase.solvers.population`) are solvers too."""
