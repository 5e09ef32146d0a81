"""Array backend: numpy always, cupy when it is installed and a GPU answers.

``get_array_module("cpu" | "gpu" | "auto")`` returns ``(xp, name)``. ``gpu`` without a working GPU
raises :class:`~diffphase.errors.DeviceUnavailableError`; ``auto`` falls back to the CPU and says so
(a ``RuntimeWarning``). See DESIGN.md, "Errors".
"""

from __future__ import annotations

import functools
import os
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


# --------------------------------------------------------------------------- memory budget
#: budget when the physical memory cannot be read
FALLBACK_MEMORY_BYTES = 4 * 2**30


def _address_space_in_use() -> int:
    """The virtual memory this process maps now (bytes; 0 when unknown)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def default_memory_budget() -> int:
    """Half the machine's physical memory (4 GiB when it cannot be read), and at most half of
    what an address-space limit (``ulimit -v``) on this process leaves free."""
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        budget = 0
    budget = budget if budget > 0 else FALLBACK_MEMORY_BYTES
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            budget = min(budget, max(soft - _address_space_in_use(), 0) // 2)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    return int(budget)
