"""Command-line commands, one module per model (``spectral``, ``memorization``, ...).

Each module defines its click commands and a ``register(cli)`` that attaches them to the main
group; default phase diagrams register themselves with
:func:`diffphase.commands.common.register_default_diagram` so ``phase-diagram all`` finds them.
"""
