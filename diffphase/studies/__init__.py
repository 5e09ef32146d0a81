"""Studies: what each command computes, as library functions returning tables. One module per
model: phase diagrams over control parameters, summaries at one point (the spectrum at one noise
level, critical times, thresholds, the sampler error), and the simulations of ``diffphase
simulate`` as a checked plan (nothing heavy runs) and a run. Built on :mod:`diffphase.solvers` and
:mod:`diffphase.simulate`; the command line writes what they return."""
