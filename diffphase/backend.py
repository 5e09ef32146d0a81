"""Array backend: numpy always, cupy when it is installed and a GPU answers.

``get_array_module("cpu" | "gpu" | "auto")`` returns ``(xp, name)``. ``gpu`` without a working GPU
raises :class:`~diffphase.errors.DeviceUnavailableError`; ``auto`` falls back to the CPU and says so
(a ``RuntimeWarning``). See DESIGN.md, "Errors".
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

import numpy as np

from .errors import DeviceUnavailableError, require_choice
from .models import DEVICES


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """``(available, reason)``: whether cupy imports and sees at least one CUDA device."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install
        return (
            False,
            f"cupy is not importable ({type(exc).__name__}: {exc}); install diffphase[gpu]",
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device answers ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "cupy sees no CUDA device"
    return True, f"{count} CUDA device(s)"


def gpu_available() -> bool:
    return gpu_status()[0]


def get_array_module(device: str = "cpu") -> tuple[ModuleType, str]:
    """Array module for ``device``: ``(numpy, "cpu")`` or ``(cupy, "gpu")``."""
    require_choice("device", device, DEVICES)
    if device == "cpu":
        return np, "cpu"
    ok, reason = gpu_status()
    if ok:
        import cupy

        return cupy, "gpu"
    if device == "gpu":
        raise DeviceUnavailableError(f"device 'gpu' requested but unavailable: {reason}")
    warnings.warn(
        f"device 'auto': no GPU ({reason}); running on the CPU", RuntimeWarning, stacklevel=2
    )
    return np, "cpu"


def to_numpy(array) -> np.ndarray:
    """Bring an array from any backend to host numpy."""
    if hasattr(array, "get") and not isinstance(array, np.ndarray):
        return array.get()
    return np.asarray(array)
