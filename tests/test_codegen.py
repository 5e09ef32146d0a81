"""The compile pipeline: numba (with a cache that survives processes), mpmath, C printing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

from diffphase.errors import KernelCacheWarning
from diffphase.solvers import codegen
from diffphase.solvers.codegen import (
    BACKENDS,
    ScalarKernel,
    Template,
    c_operation,
    compile_kernel,
    compile_kernels,
    compile_module,
    module_source,
)

x, y = sp.symbols("x y")
EXPR = sp.exp(-x**2) * sp.sin(y) / (1 + x**2) + sp.sqrt(1 + y**2)


def test_numba_kernel_matches_sympy_at_sampled_points():
    f = compile_kernel(ScalarKernel.of("sample_kernel", (x, y), EXPR))
    rng = np.random.default_rng(1)
    for xv, yv in rng.normal(size=(20, 2)):
        expected = float(EXPR.subs({x: xv, y: yv}).evalf(30))
        assert f(xv, yv) == pytest.approx(expected, rel=1e-14)


def test_numba_kernel_complex_arguments():
    f = compile_kernel(ScalarKernel.of("complex_kernel", (x,), 1 / (1 + x) - sp.sqrt(x)))
    value = f(0.3 + 0.7j)
    expected = complex(sp.N((1 / (1 + x) - sp.sqrt(x)).subs(x, 0.3 + 0.7 * sp.I), 30))
    assert value == pytest.approx(expected, rel=1e-14)


def test_multiple_outputs_and_common_subexpressions():
    kernel = ScalarKernel.of("pair_kernel", (x, y), (sp.exp(x + y) + 1, sp.exp(x + y) * 2))
    assert "_cse" in module_source([kernel])
    a, b = compile_kernel(kernel)(0.5, 0.25)
    assert a == pytest.approx(np.exp(0.75) + 1) and b == pytest.approx(2 * np.exp(0.75))


def test_mpmath_function_at_30_digits():
    f = compile_kernel(ScalarKernel.of("mp_kernel", (x, y), EXPR), "mpmath")
    with mpmath.workdps(30):
        value = f(mpmath.mpf("0.5"), mpmath.mpf("1.25"))
        exact = mpmath.exp(-0.25) * mpmath.sin(mpmath.mpf("1.25")) / mpmath.mpf("1.25") + \
            mpmath.sqrt(1 + mpmath.mpf("1.25") ** 2)
        assert abs(value - exact) < mpmath.mpf(10) ** -28


def test_c_operation_prints_valid_c(tmp_path):
    """The C text used for cupy kernels compiles with a C compiler and gives the same numbers."""
    from shutil import which

    if which("cc") is None:
        pytest.skip("no C compiler on this machine")
    kernel = ScalarKernel.of("c_kernel", (x, y), EXPR)
    source = textwrap.dedent(f"""
        #include <math.h>
        #include <stdio.h>
        int main(void) {{
            double x = 0.5, y = 1.25, out0;
            {c_operation(kernel, ["out0"])}
            printf("%.17g\\n", out0);
            return 0;
        }}""")
    (tmp_path / "k.c").write_text(source)
    subprocess.run(["cc", "-O1", "-o", str(tmp_path / "k"), str(tmp_path / "k.c"), "-lm"],
                   check=True)
    printed = float(subprocess.run([str(tmp_path / "k")], capture_output=True, text=True,
                                   check=True).stdout)
    assert printed == pytest.approx(float(EXPR.subs({x: 0.5, y: 1.25})), rel=1e-14)


CACHE_SCRIPT = """
import json, sympy as sp
from diffphase.solvers.codegen import ScalarKernel, compile_kernels
x = sp.Symbol("x")
mod = compile_kernels([ScalarKernel.of("cached_kernel", (x,), sp.cos(x) ** 3 + x)],
                      tag="cachetest")
value = mod.cached_kernel(0.25)
stats = mod.cached_kernel.stats
print(json.dumps({"value": value, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _run_in_subprocess(cache_dir) -> dict:
    env = {**os.environ, "DIFFPHASE_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compiled_kernel_cache_survives_processes(tmp_path):
    first = _run_in_subprocess(tmp_path)
    assert first["misses"] == 1 and first["hits"] == 0  # compiled and saved
    second = _run_in_subprocess(tmp_path)
    assert second["hits"] == 1 and second["misses"] == 0  # loaded machine code, no compile
    assert second["value"] == first["value"]


def test_two_processes_compiling_the_same_kernel_at_once(tmp_path):
    env = {**os.environ, "DIFFPHASE_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_SCRIPT], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results[0]["value"] == results[1]["value"]
    generated = list(tmp_path.glob("cachetest_*.py"))
    assert len(generated) == 1 and not list(tmp_path.glob(".*tmp"))


def test_compile_module_skips_the_build_while_its_sources_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFPHASE_CACHE_DIR", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return [ScalarKernel.of("module_square", (x,), x**2 + 1)], []

    module = compile_module("moduletest", build, ("solvers/codegen.py",))
    assert module.module_square(3.0) == 10.0 and len(calls) == 1
    assert compile_module("moduletest", build, ("solvers/codegen.py",)) is module
    assert len(calls) == 1  # read from the source-keyed index
    compile_module("moduletest", build, ("theory",))  # other sources: another key, built
    assert len(calls) == 2
    (Path(module.__file__)).write_text("# damaged\n")  # an index naming an altered module
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.warns(KernelCacheWarning):
        rebuilt = compile_module("moduletest", build, ("solvers/codegen.py",))
    assert len(calls) == 3 and rebuilt.module_square(3.0) == 10.0


WARM_SCRIPT = """
import json, sys
import numpy as np
from diffphase.solvers import memorization as m
value = m.kernels().collapse_residual_batch(np.zeros(1), np.full((1, 2), 2.0),
                                            np.full((1, 2), 0.5), np.full(1, 0.1))
print(json.dumps({"value": float(value[0]), "sympy": "sympy" in sys.modules}))
"""


def test_warm_process_loads_model_kernels_without_sympy(tmp_path):
    env = {**os.environ, "DIFFPHASE_CACHE_DIR": str(tmp_path)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", WARM_SCRIPT], env=env,
                                      capture_output=True, text=True, check=True
                                      ).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0]["sympy"] and not runs[1]["sympy"]  # built once, then read
    np.testing.assert_allclose(runs[1]["value"], np.log(3.0) / 2 - 0.1, rtol=1e-14)
    assert runs[0]["value"] == runs[1]["value"]


def test_same_source_same_module():
    kernel = ScalarKernel.of("same_kernel", (x,), x**2 + 1)
    assert compile_kernels([kernel]) is compile_kernels([kernel])


@pytest.mark.gpu
def test_cupy_elementwise_matches_numba():
    import cupy

    kernel = ScalarKernel.of("gpu_kernel", (x, y), EXPR)
    ew = compile_kernel(kernel, "cupy-elementwise")
    xs = np.linspace(-1, 1, 101)
    ys = np.linspace(0, 2, 101)
    got = cupy.asnumpy(ew(cupy.asarray(xs), cupy.asarray(ys)))
    f = compile_kernel(kernel)
    np.testing.assert_allclose(got, [f(a, b) for a, b in zip(xs, ys, strict=True)], rtol=1e-13)


def test_every_backend_evaluates_the_same_kernels():
    """One entry point: numba, numpy, math and mpmath agree on one- and two-output kernels."""
    single = ScalarKernel.of("backend_single", (x, y), EXPR)
    pair = ScalarKernel.of("backend_pair", (x, y), (EXPR, sp.log(1 + x**2) * y))
    rng = np.random.default_rng(4)
    points = rng.normal(size=(10, 2))
    for backend in ("numba", "numpy", "math", "mpmath"):
        f, g = (compile_kernel(k, backend) for k in (single, pair))
        for xv, yv in points:
            expected = EXPR.subs({x: xv, y: yv}).evalf(30)
            assert float(f(xv, yv)) == pytest.approx(float(expected), rel=1e-14), backend
            first, second = g(xv, yv)
            assert float(first) == pytest.approx(float(expected), rel=1e-14), backend
            assert float(second) == pytest.approx(np.log1p(xv**2) * yv, rel=1e-13), backend
    vectorized = compile_kernel(single, "numpy")(points[:, 0], points[:, 1])
    np.testing.assert_allclose(vectorized, [compile_kernel(single)(a, b) for a, b in points],
                               rtol=1e-14)


def _template_sum(values):  # pragma: no cover - numba template
    total = 0.0
    for i in range(values.shape[0]):
        total += template_kernel(values[i])  # noqa: F821
    return total


def _template_map(values, out):  # pragma: no cover - numba template
    for i in prange(values.shape[0]):  # noqa: F821
        out[i] = template_kernel(values[i])  # noqa: F821


def test_templates_are_instantiated_next_to_their_kernels():
    """A hand-written loop calls the generated kernel by name, serial and parallel."""
    kernel = ScalarKernel.of("template_kernel", (x,), sp.exp(-x) * x**2)
    module = compile_kernels([kernel], templates=[Template(_template_sum),
                                                  Template(_template_map, parallel=True)],
                             tag="templatetest")
    values = np.linspace(0.0, 3.0, 17)
    expected = compile_kernel(kernel, "numpy")(values)
    out = np.empty_like(values)
    module._template_map(values, out)
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    assert module._template_sum(values) == pytest.approx(expected.sum(), rel=1e-14)
    assert "parallel=True" in module_source([kernel], [Template(_template_map, parallel=True)])


def test_unknown_backend_and_templates_off_numba_are_refused():
    kernel = ScalarKernel.of("refused_kernel", (x,), x + 1)
    with pytest.raises(ValueError, match="unknown backend 'fortran'"):
        compile_kernels([kernel], "fortran")
    with pytest.raises(ValueError, match="templates are numba functions"):
        compile_kernels([kernel], "numpy", templates=[_template_sum])
    assert set(BACKENDS) >= {"numba", "numpy", "math", "cupy", "mpmath", "cupy-elementwise"}


def test_array_and_reference_backends_are_compiled_once():
    kernel = ScalarKernel.of("once_kernel", (x, y), x * y + 1)
    for backend in ("numpy", "math", "mpmath"):
        assert compile_kernels([kernel], backend) is compile_kernels([kernel], backend)


def test_the_list_of_cached_modules_is_every_module_with_cache_true():
    """The package modules whose numba caches are checked at start-up are exactly those whose
    source asks numba to cache (besides the code generator, whose templates only print it)."""
    root = Path(codegen.__file__).resolve().parents[1]
    found = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.py")
                   if "cache=True" in path.read_text() and path.name != "codegen.py")
    assert found == sorted(codegen.CACHED_MODULES)
