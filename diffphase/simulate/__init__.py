"""Simulation engines: the exact empirical score (:mod:`~diffphase.simulate.empirical`), reverse
SDE and probability flow (:mod:`~diffphase.simulate.integrators`), Jacobian routes and score-field
diagnostics (:mod:`~diffphase.simulate.jacobians`, :mod:`~diffphase.simulate.fields`), the DDPM
sampler (:mod:`~diffphase.simulate.sampler`), forward-backward and memorization experiments
(:mod:`~diffphase.simulate.hierarchy`, :mod:`~diffphase.simulate.memorization`) and the torch
adapters. Engines take a score as ``score(x, a, D)``, with ``x = a y + sqrt(D) z``."""
