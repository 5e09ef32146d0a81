"""The names every layer shares: models, processes, channels, subspaces, designs and the like.

Contract: this module imports nothing (not even numpy), so the command line, the registry, the
engines and the documentation can all read it cheaply. A name list is defined here once and
imported everywhere else; adding a model means adding it to :data:`MODELS` (see
``CONTRIBUTING.md``), and the registry and the command line find its modules by that name:
``diffphase.theory.<model>``, ``diffphase.solvers.<model>``, ``diffphase.validate.<model>``,
``diffphase.commands.<model>``.
"""

from __future__ import annotations

#: model name -> the THEORY section it implements; the same names in every layer
MODELS: dict[str, str] = {
    "spectral": "A",  # spectral gaps and geometric phases of the score Jacobian
    "memorization": "B",  # collapse, speciation, geometric memorization
    "hierarchy": "C",  # class reconstruction on hierarchical data
    "sampler": "D",  # DDPM coefficients adapted to low intrinsic dimension
    "fields": "E",  # local geometry of score fields
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
#: commands beyond one module per model: the theories on a user's data (``diffphase analyze``)
EXTRA_COMMANDS: tuple[str, ...] = ("analyze",)
#: check families beyond the models' (``diffphase validate --model realdata``)
EXTRA_CHECK_FAMILIES: tuple[str, ...] = ("realdata",)

# --------------------------------------------------------------------------- forward processes
#: forward processes (THEORY 0); times convert exactly through ``tau = D_t / a_t^2``
PROCESSES = ("ou", "ve", "ddpm")
#: processes with a continuous-time reverse SDE (``reverse_sde`` covers these; the probability
#: flow covers every process)
REVERSIBLE_PROCESSES = ("ou", "ve")
#: ddpm noise schedules
SCHEDULES = ("linear", "li-yan", "cosine")

# --------------------------------------------------------------------------- data geometry
#: how the subspace of linear-manifold data is drawn: Gaussian ``F`` or axis-aligned columns
SUBSPACES = ("random", "orthonormal")
#: the three geometric phases of the normalized score Jacobian (THEORY A)
PHASES = ("trivial", "coverage", "consolidation")

# --------------------------------------------------------------------------- hierarchy (C)
#: noise channels on tokens (THEORY C, "Noise on tokens")
CHANNELS = ("eps", "mask", "uniform", "gaussian")
#: channel -> the name of its noise parameter in outputs
NOISE_CONVENTION = {"eps": "eps", "mask": "mask_probability", "uniform": "replace_probability",
                    "gaussian": "t_over_T_linear_ddpm"}
#: belief-propagation engines: compiled per tree (numba) or batched arrays (numpy or cupy)
BP_ENGINES = ("numba", "array")
#: regimes of the mean-field map
REGIMES = ("transition", "lost", "kept", "partial")
#: rules in population dynamics: fixed (the instance's) or redrawn per update
RULE_MODES = ("quenched", "annealed")

# --------------------------------------------------------------------------- sampler (D)
#: DDPM coefficient designs with a closed form; ``custom`` takes user arrays
DESIGNS = ("star", "beta", "ho-beta", "ddim")
ALL_DESIGNS = DESIGNS + ("custom",)

# --------------------------------------------------------------------------- memorization (B)
#: experiments of ``diffphase simulate memorization``
MEMORIZATION_EXPERIMENTS = ("collapse", "trajectories", "geometric", "speciation")

# --------------------------------------------------------------------------- fields (E)
#: routes to a score field's Jacobian
JACOBIAN_ROUTES = ("auto", "closed-form", "autograd", "central")
#: built-in score fields of ``diffphase diagnose``
FIELD_SOURCES = ("linear-manifold", "empirical")

# --------------------------------------------------------------------------- execution
#: where heavy simulations run; ``auto`` falls back to the CPU when no GPU answers
DEVICES = ("cpu", "gpu", "auto")
#: validation tiers and kinds of check
TIERS = ("quick", "full")
CHECK_KINDS = ("toolkit", "paper")
