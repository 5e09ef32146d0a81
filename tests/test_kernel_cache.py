"""A damaged kernel cache never breaks a run: it is repaired on the first run and clean after.

Damage of every kind the cache holds: the generated ``.py`` kernel module in
``$DIFFPHASE_CACHE_DIR``, numba's index (``.nbi``) and data (``.nbc``) files of the generated
functions, and those of the package's own ``cache=True`` functions (:mod:`diffphase.solvers.bp`),
each empty, truncated and garbage. Every scenario runs the same script twice in fresh processes
with a private ``DIFFPHASE_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` (so the package's shared
``__pycache__`` is never touched): the first run succeeds with one warning line naming the
discarded files, the second succeeds without one, both with the pristine values.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = """
import json, os, sys, warnings
if len(sys.argv) > 1:
    os.umask(int(sys.argv[1], 8))
import numpy as np, sympy as sp
x = sp.Symbol("x")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from diffphase.solvers import bp  # repairs the package's numba files on import
    from diffphase.solvers.codegen import ScalarKernel, compile_kernels
    mod = compile_kernels([ScalarKernel.of(f"repair_{i}", (x,), sp.cos(x) ** (i + 2) + x)
                           for i in range(3)], tag="repairtest")
    values = [getattr(mod, f"repair_{i}")(0.25) for i in range(3)]
    child = np.array([[[0.9, 0.1], [0.2, 0.8]]])
    rules = np.array([[[0, 1]], [[1, 0]]], dtype=np.int64)
    out = np.empty((1, 1, 2))
    bp.upward_level(child, rules, out)
print(json.dumps({"values": values, "up": out.ravel().tolist(),
                  "warnings": [str(w.message) for w in caught]}))
"""

MODES = ("empty", "truncated", "garbage")


def _run(cache: Path, umask: str | None = None, numba_dir: bool = True) -> dict:
    """Run the script on ``cache``. With ``numba_dir`` numba keeps its files in ``cache/numba``
    (``NUMBA_CACHE_DIR``: the package's files land there, under a folder named by the hash of
    their source folder); without, beside the generated modules (``kernels/__pycache__``), so
    that a copy of the cache keeps them valid."""
    env = {**os.environ, "DIFFPHASE_CACHE_DIR": str(cache / "kernels")}
    env.pop("NUMBA_CACHE_DIR", None)
    if numba_dir:
        env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    args = [sys.executable, "-c", SCRIPT] + ([umask] if umask else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[bool, tuple[Path, dict]]:
    """Complete caches (kernels and numba files, with and without ``NUMBA_CACHE_DIR``) and the
    values they give."""
    caches = {}
    for numba_dir in (False, True):
        cache = tmp_path_factory.mktemp("pristine")
        first = _run(cache, numba_dir=numba_dir)
        second = _run(cache, numba_dir=numba_dir)
        assert not first["warnings"] and not second["warnings"]
        caches[numba_dir] = cache, second
    return caches


def _damage(path: Path, mode: str, seed: int) -> None:
    data = path.read_bytes()
    if mode == "empty":
        path.write_bytes(b"")
    elif mode == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(seed).bytes(max(len(data), 64)))


def _targets(cache: Path, kind: str) -> list[Path]:
    if kind == "py":
        return sorted((cache / "kernels").glob("repairtest_*.py"))
    if kind == "package":
        return sorted((cache / "numba").rglob("bp.*.nb[ic]"))
    return sorted((cache / "kernels" / "__pycache__").glob(f"repairtest_*.{kind}"))


@pytest.mark.parametrize("kind, mode", [("py", mode) for mode in MODES]
                         + [(kind, "cycled") for kind in ("nbi", "nbc", "package")])
def test_damaged_cache_is_repaired_then_clean(pristine, tmp_path, kind, mode):
    numba_dir = kind == "package"
    source, expected = pristine[numba_dir]
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    targets = _targets(cache, kind)
    assert targets, f"no {kind} files in the pristine cache"
    for i, path in enumerate(targets):  # "cycled": empty, truncated, garbage in turn
        _damage(path, MODES[i % 3] if mode == "cycled" else mode, seed=i)
    first = _run(cache, numba_dir=numba_dir)
    assert [w for w in first["warnings"] if "kernel cache: discarded damaged" in w], first
    assert all("\n" not in w for w in first["warnings"])  # one line each
    second = _run(cache, numba_dir=numba_dir)
    assert second["warnings"] == []
    for result in (first, second):
        np.testing.assert_array_equal(result["values"], expected["values"])
        np.testing.assert_array_equal(result["up"], expected["up"])


def test_kernel_modules_respect_the_umask(tmp_path):
    """Files ``0o666 & ~umask`` and folders ``0o777 & ~umask`` (not 0600 whatever the umask):
    a cache folder shared by a group works for every member."""
    _run(tmp_path, umask="002")
    folder = tmp_path / "kernels"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o775
    (module,) = folder.glob("repairtest_*.py")
    assert stat.S_IMODE(module.stat().st_mode) == 0o664
    assert not list(folder.glob(".*tmp"))  # no temporary left behind
