"""diffphase: statistical-physics theory of generative diffusion on structured data.

Derive (``diffphase.theory``), solve (``diffphase.solvers``), check (``diffphase.validate``).
The public API is re-exported here; see the README for a tour.
"""

__version__ = "0.1.0"

from .errors import ParameterError  # noqa: E402
from .process import Process, get_process, tau_from_time, time_from_tau  # noqa: E402

__all__ = ["ParameterError", "Process", "get_process", "tau_from_time", "time_from_tau",
           "__version__"]
