"""Shared test configuration: hypothesis profiles, a private kernel cache, GPU detection."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# A kernel cache private to the test session unless one is given (CI sets one).
os.environ.setdefault("DIFFPHASE_CACHE_DIR", tempfile.mkdtemp(prefix="diffphase-kernels-"))

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _gpu_available() -> bool:
    from diffphase.backend import gpu_available

    return gpu_available()


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU answers (cupy missing or no device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
