"""sympy expressions -> numba, cupy and mpmath callables (DESIGN.md, "The pipeline").

* :func:`numba_module` prints scalar kernels (and optional solver *templates*) to a real ``.py``
  file in the kernel cache folder, named by the hash of its source, and imports it. Functions are
  decorated ``@njit(cache=True)``, so a second process loads machine code from numba's on-disk
  cache instead of compiling. The folder is ``$DIFFPHASE_CACHE_DIR`` or the user cache dir; files
  are written to a temporary name and renamed, so two processes compiling the same kernel at once
  both end with the same complete file.
* :func:`cupy_elementwise` turns the same expressions into a ``cupy.ElementwiseKernel`` through
  sympy's C printer (only when cupy and a GPU answer).
* :func:`mpmath_function` gives a high-precision reference evaluator.

Solver templates are ordinary Python functions (see :mod:`diffphase.solvers.newton`) whose source
is copied into the generated module, where the names they call (``residual`` ...) are bound to
generated kernels through ``aliases``. This keeps the solver loop readable in one place while
each compiled instance stays cacheable (numba cannot cache functions that receive other jitted
functions as arguments or closures).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

CODEGEN_VERSION = "1"
_MODULE_PREFIX = "diffphase_kernels"


def cache_dir() -> Path:
    """Kernel cache folder: ``$DIFFPHASE_CACHE_DIR`` or ``<user cache>/diffphase/kernels``."""
    env = os.environ.get("DIFFPHASE_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("diffphase")) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ScalarKernel:
    """A scalar function ``name(*args) -> expr`` (or a tuple when ``exprs`` has several)."""

    name: str
    args: tuple[sp.Symbol, ...]
    exprs: tuple[sp.Expr, ...]

    @classmethod
    def of(cls, name: str, args: Sequence[sp.Symbol], exprs) -> ScalarKernel:
        if isinstance(exprs, sp.Basic):
            exprs = (exprs,)
        return cls(name, tuple(args), tuple(sp.sympify(e) for e in exprs))


class _KernelPrinter(NumPyPrinter):
    """NumPy printer whose output numba compiles for real and complex scalars."""

    def _print_Pow(self, expr, rational=False):  # integer powers as products: exact and fast
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 0 < abs(int(exp)) <= 4:
            b = self.parenthesize(base, 100)
            prod = "*".join([b] * abs(int(exp)))
            return f"({prod})" if exp > 0 else f"(1.0/({prod}))"
        return super()._print_Pow(expr, rational=rational)


def hoist_reciprocals(exprs: Sequence[sp.Expr]) -> tuple[list, list[sp.Expr]]:
    """Replace every ``b**(-n)`` by ``inv_b**n`` with ``inv_b = 1/b`` computed once: one division
    per distinct denominator, however many outputs share it (complex division is costly)."""
    bases: dict[sp.Expr, sp.Symbol] = {}
    for expr in exprs:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, sp.Pow) and node.exp.is_Integer and node.exp < 0:
                bases.setdefault(node.base, sp.Symbol(f"_inv{len(bases)}"))
    if not bases:
        return [], list(exprs)
    mapping = {
        sp.Pow(b, n): inv ** (-n)
        for b, inv in bases.items()
        for expr in exprs
        for node in sp.preorder_traversal(expr)
        if isinstance(node, sp.Pow) and node.base == b and node.exp.is_Integer and node.exp < 0
        for n in [node.exp]
    }
    replaced = [expr.xreplace(mapping) for expr in exprs]
    return [(inv, 1 / b) for b, inv in bases.items()], replaced


def kernel_source(kernel: ScalarKernel) -> str:
    """Python source of one scalar kernel: reciprocals hoisted, common subexpressions shared."""
    printer = _KernelPrinter({"fully_qualified_modules": True, "inline": True})
    reciprocals, exprs = hoist_reciprocals(kernel.exprs)
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_cse"))
    args = ", ".join(str(a) for a in kernel.args)
    lines = [f"def {kernel.name}({args}):"]
    for sym, value in reciprocals:
        base = printer.doprint(value.base) if isinstance(value, sp.Pow) else printer.doprint(value)
        lines.append(f"    {sym} = reciprocal({base})")
    for sym, sub in replacements:
        lines.append(f"    {sym} = {printer.doprint(sub)}")
    outs = [printer.doprint(e) for e in reduced]
    lines.append("    return " + (outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"))
    return "\n".join(lines)


def template_source(template: Callable | str) -> str:
    return template if isinstance(template, str) else textwrap.dedent(inspect.getsource(template))


RECIPROCAL_SOURCE = '''
@njit(cache=True, inline="always")
def reciprocal(w):
    """1/w; for complex w as conj(w)/|w|^2 (one real division instead of a complex division;
    valid for |w| < 1e150)."""
    if isinstance(w, complex):
        inv = 1.0 / (w.real * w.real + w.imag * w.imag)
        return complex(w.real * inv, -w.imag * inv)
    return 1.0 / w
'''


def module_source(
    kernels: Sequence[ScalarKernel],
    templates: Sequence[Callable | str] = (),
    aliases: Mapping[str, str] | None = None,
    fastmath: bool = False,
) -> str:
    header = [
        "# generated by diffphase.solvers.codegen; do not edit (content-hashed)",
        "import math",
        "import numpy",
        "import numpy as np",
        "from numba import njit, prange",
        "",
    ]
    deco = f'@njit(cache=True, fastmath={fastmath}, error_model="numpy")'
    body = [RECIPROCAL_SOURCE] + [deco + "\n" + kernel_source(k) + "\n" for k in kernels]
    body += [f"{alias} = {target}" for alias, target in (aliases or {}).items()]
    for template in templates:
        src = template_source(template)
        if not src.lstrip().startswith("@"):
            src = deco + "\n" + src
        body.append("\n" + src)
    return "\n".join(header + body) + "\n"


def numba_module(
    kernels: Sequence[ScalarKernel],
    templates: Sequence[Callable | str] = (),
    aliases: Mapping[str, str] | None = None,
    tag: str = "k",
    fastmath: bool = False,
) -> ModuleType:
    """Write (if new) and import the generated module; its functions are numba dispatchers."""
    import numba

    source = module_source(kernels, templates, aliases, fastmath)
    digest = hashlib.sha256(
        (source + CODEGEN_VERSION + numba.__version__ + sys.version).encode()
    ).hexdigest()[:20]
    module_name = f"{_MODULE_PREFIX}.{tag}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = cache_dir() / f"{tag}_{digest}.py"
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".py.tmp", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(source)
        if path.exists() and path.read_text() == source:  # another process won the race
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    if _MODULE_PREFIX not in sys.modules:
        package = ModuleType(_MODULE_PREFIX)
        package.__path__ = []  # namespace-like container for generated modules
        sys.modules[_MODULE_PREFIX] = package
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered before it runs, as numba's cache requires
    spec.loader.exec_module(module)
    return module


def numba_function(kernel: ScalarKernel, tag: str = "f") -> Callable:
    """A single compiled scalar kernel."""
    return getattr(numba_module([kernel], tag=tag), kernel.name)


def mpmath_function(args: Sequence[sp.Symbol], expr: sp.Expr) -> Callable:
    """High-precision evaluator; call it inside ``mpmath.workdps(n)``."""
    return sp.lambdify(args, expr, modules="mpmath")


def c_operation(kernel: ScalarKernel, out_names: Sequence[str]) -> str:
    """C statements computing ``out_names`` from the kernel's args (for cupy or a C compiler)."""
    replacements, reduced = sp.cse(list(kernel.exprs), symbols=sp.numbered_symbols("_cse"))
    lines = [f"double {sym} = {sp.ccode(sub)};" for sym, sub in replacements]
    lines += [f"{name} = {sp.ccode(expr)};" for name, expr in zip(out_names, reduced, strict=True)]
    return "\n".join(lines)


def cupy_elementwise(
    kernel: ScalarKernel, out_names: Sequence[str] | None = None, dtype: str = "float64"
):
    """A ``cupy.ElementwiseKernel`` evaluating a real kernel on arrays (needs cupy and a GPU)."""
    from ..backend import get_array_module

    cupy, _ = get_array_module("gpu")
    out_names = list(out_names or [f"out{i}" for i in range(len(kernel.exprs))])
    ctype = {"float64": "float64", "float32": "float32"}[dtype]
    in_params = ", ".join(f"{ctype} {a}" for a in kernel.args)
    out_params = ", ".join(f"{ctype} {o}" for o in out_names)
    return cupy.ElementwiseKernel(
        in_params, out_params, c_operation(kernel, out_names), f"dp_{kernel.name}"
    )
