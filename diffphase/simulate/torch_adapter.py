"""Torch score models as score fields with autograd Jacobians (optional ``torch`` extra; THEORY E).

Contract. :class:`TorchScore` wraps a torch function ``function(x, a, D) -> tensor`` (``x`` a
``(n, dim)`` tensor, ``a`` and ``D`` Python floats: the library's convention of
:mod:`diffphase.simulate.jacobians`) as a :class:`~diffphase.simulate.jacobians.ScoreField`:
``score(x, a, D)`` takes and returns numpy arrays (checked for shape and finiteness), and
``jacobian(x, a, D)`` returns the exact autograd Jacobian of every point in one batched call
(``torch.func.vmap`` of ``torch.func.jacrev``), so :func:`diffphase.simulate.jacobians.jacobian`
uses it by default (route ``"autograd"``). A network that takes the time ``t`` of a process,
``network(x, t)``, comes in as ``TorchScore(TimeScore(network, process), dim)``:
:class:`~diffphase.simulate.jacobians.TimeScore` holds the process and maps ``(a, D)`` to ``t``
exactly, and autograd differentiates through that map.

Calls into ``function`` (user code) go through
:func:`~diffphase.simulate.jacobians.call_user_code`: an exception there is a
:class:`~diffphase.simulate.jacobians.UserCodeError` naming ``name``; points and noise levels are
checked before the call, outputs after it.

torch is imported only when a :class:`TorchScore` is built; importing :mod:`diffphase` never
imports it. Without torch, :func:`require_torch` raises
:class:`~diffphase.errors.MissingDependencyError` naming the ``torch`` extra.
:func:`torch_device` maps the library's device names (``cpu``, ``gpu``, ``auto``) to a torch
device. Networks that predict epsilon, v or x0 at their own noise levels (diffusers models) come
in through :mod:`diffphase.simulate.network_scores`.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable

import numpy as np

from ..errors import DeviceUnavailableError, MissingDependencyError, require_choice, require_int
from ..models import DEVICES
from .jacobians import call_user_code, checked_level, checked_output, checked_points


def torch_available() -> bool:
    """Whether torch is installed (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def require_torch():
    """Import and return torch, or raise :class:`MissingDependencyError` naming the extra."""
    if not torch_available():
        raise MissingDependencyError("torch", "torch")
    import torch

    return torch


class TorchScore:
    """A torch score function seen as a score field with an autograd Jacobian.

    Parameters
    ----------
    function : ``function(x: Tensor (n, dim), a: float, D: float) -> Tensor (n, dim)``, the score
        at the noise level ``(a, D)``; it must be differentiable in ``x`` and act row by row.
    dim : ambient dimension.
    dtype : ``"float64"`` (default; finite-difference comparisons need it) or ``"float32"``.
    device : a torch device string (``"cpu"``, ``"cuda"``).
    """

    jacobian_route = "autograd"

    def __init__(self, function: Callable, dim: int, *, dtype: str = "float64",
                 device: str = "cpu", name: str = "torch score"):
        self.torch = require_torch()
        self.function = function
        self.dim = require_int("dim", dim, minimum=1)
        self.dtype = getattr(self.torch, require_choice("dtype", dtype, ("float64", "float32")))
        self.device = self.torch.device(device)
        self.name = name

    def _tensor(self, x: np.ndarray):
        return self.torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def _call(self, *args):
        if getattr(self.function, "guards_user_code", False):
            return self.function(*args)
        return call_user_code(self.name, self.function, *args)

    @staticmethod
    def _host(value):
        """A tensor's values as numpy (anything else unchanged, for :func:`checked_output`)."""
        return value.detach().cpu().numpy() if hasattr(value, "detach") else value

    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x, (a, D) = checked_points(x, self.dim), checked_level(a, D)
        with self.torch.no_grad():
            out = self._call(self._tensor(x), a, D)
        return checked_output(self.name, self._host(out), x.shape)

    def jacobian(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        """``(n, dim, dim)``: ``J[p, i, j] = d s_i / d x_j`` per point (reverse-mode autograd)."""
        x, (a, D) = checked_points(x, self.dim), checked_level(a, D)
        func = self.torch.func

        def single(point):
            return self.function(point[None, :], a, D)[0]

        jac = call_user_code(self.name, lambda: func.vmap(func.jacrev(single))(self._tensor(x)))
        return checked_output(f"{self.name} Jacobian", self._host(jac),
                              (x.shape[0], self.dim, self.dim))


def torch_device(device: str = "cpu"):
    """The torch device of ``device``: ``cpu``; ``gpu`` (CUDA, else
    :class:`~diffphase.errors.DeviceUnavailableError`); ``auto`` (CUDA when torch sees one, else
    the CPU with a warning)."""
    torch = require_torch()
    require_choice("device", device, DEVICES)
    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "gpu":
        raise DeviceUnavailableError("device 'gpu' requested but torch sees no CUDA device")
    warnings.warn("device 'auto': torch sees no CUDA device; running on the CPU", RuntimeWarning,
                  stacklevel=2)
    return torch.device("cpu")
