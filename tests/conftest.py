"""Shared test configuration: hypothesis profiles, a private kernel cache, GPU detection,
and one torch thread for the tests of small networks."""

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


@pytest.fixture
def one_torch_thread():
    """Small torch products run faster on one thread than on two shared ones (torch tests)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
