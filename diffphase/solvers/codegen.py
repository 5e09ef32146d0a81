"""sympy expressions -> callables: the one compile entry point (DESIGN.md, "The pipeline").

Contract. :func:`compile_kernels` turns :class:`ScalarKernel` s (a name, argument symbols, one or
more sympy expressions) into callables on one of :data:`BACKENDS` and returns a namespace of them
by name; :func:`compile_kernel` returns the callable of one kernel. A kernel with one expression
returns a value, one with several a tuple. Results are cached per ``(kernels, backend)``.

* ``numba``: the kernels (reciprocals hoisted, common subexpressions shared) are printed to a real
  ``.py`` file in :func:`cache_dir` (``$DIFFPHASE_CACHE_DIR`` or the user cache dir), named by the
  hash of its source, written to a temporary name with the umask's permissions and renamed (two
  processes compiling at once end with the same complete file; a cache folder can be shared), and
  imported; ``@njit(cache=True)`` lets a second process load machine code instead of compiling.
  A damaged cache never breaks a run: a module file whose bytes differ from its source is
  rewritten, and numba cache files (``.nbi``, ``.nbc``) that are not complete pickles are
  discarded (:func:`repair_numba_cache`; for the package's own ``cache=True`` modules too), each
  repair said in one :class:`~diffphase.errors.KernelCacheWarning`. Hand-written loops that sympy
  cannot emit are :class:`Template` s, instantiated in the same module where the names they call
  are the generated kernels (numba cannot cache functions that take jitted functions as
  arguments).
* ``numpy``, ``cupy``: vectorized array functions; ``math``: scalar functions of Python floats;
  ``mpmath``: high-precision references (call inside ``mpmath.workdps(n)``).
* ``cupy-elementwise``: ``cupy.ElementwiseKernel`` s (``float64``) from sympy's C printer.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import inspect
import io
import os
import pickletools
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

from ..errors import KernelCacheWarning
from ..outputs import remove_stale_temporaries, temporary_file

if TYPE_CHECKING:  # sympy is imported where expressions are handled (a warm start skips it)
    import sympy as sp

CODEGEN_VERSION = "1"
_MODULE_PREFIX = "diffphase_kernels"
#: the backends of :func:`compile_kernels`
BACKENDS = ("numba", "numpy", "math", "cupy", "mpmath", "cupy-elementwise")


def cache_dir() -> Path:
    """Kernel cache folder: ``$DIFFPHASE_CACHE_DIR`` or ``<user cache>/diffphase/kernels``
    (created with the umask's permissions)."""
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
        import sympy as sp

        if isinstance(exprs, sp.Basic):
            exprs = (exprs,)
        return cls(name, tuple(args), tuple(sp.sympify(e) for e in exprs))


@dataclass(frozen=True)
class Template:
    """A hand-written numba function (a loop sympy cannot emit) instantiated in the generated
    module next to the kernels it calls by name. ``function`` is a plain Python function of its
    home module; its source is copied, decorated ``@njit(cache=True, ...)`` (``parallel=True``
    when it uses ``prange``)."""

    function: Callable
    parallel: bool = False

    def source(self, fastmath: bool = False) -> str:
        options = f'cache=True, fastmath={fastmath}, error_model="numpy"'
        if self.parallel:
            options += ", parallel=True"
        return f"@njit({options})\n" + textwrap.dedent(inspect.getsource(self.function))


@functools.cache
def _kernel_printer_class():
    """NumPy printer whose output numba compiles for real and complex scalars (built on first
    use: sympy is imported only when a kernel is printed)."""
    from sympy.printing.numpy import NumPyPrinter

    class _KernelPrinter(NumPyPrinter):
        def _print_Pow(self, expr, rational=False):  # integer powers as products: exact, fast
            base, exp = expr.as_base_exp()
            if exp.is_Integer and 0 < abs(int(exp)) <= 4:
                b = self.parenthesize(base, 100)
                prod = "*".join([b] * abs(int(exp)))
                return f"({prod})" if exp > 0 else f"(1.0/({prod}))"
            return super()._print_Pow(expr, rational=rational)

    return _KernelPrinter


def hoist_reciprocals(exprs: Sequence[sp.Expr]) -> tuple[list, list[sp.Expr]]:
    """Replace every ``b**(-n)`` by ``inv_b**n`` with ``inv_b = 1/b`` computed once: one division
    per distinct denominator, however many outputs share it (complex division is costly)."""
    import sympy as sp

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
    import sympy as sp

    printer = _kernel_printer_class()({"fully_qualified_modules": True, "inline": True})
    kernel = _valid_argument_names(kernel)
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


def _valid_argument_names(kernel: ScalarKernel) -> ScalarKernel:
    """The kernel with every argument whose name is not a Python identifier (``lambda``, a
    keyword) replaced by a symbol ``_argN`` of the same assumptions."""
    import keyword

    import sympy as sp

    renamed = {a: sp.Symbol(f"_arg{i}", **a.assumptions0) for i, a in enumerate(kernel.args)
               if keyword.iskeyword(str(a)) or not str(a).isidentifier()}
    if not renamed:
        return kernel
    return ScalarKernel(kernel.name, tuple(renamed.get(a, a) for a in kernel.args),
                        tuple(e.xreplace(renamed) for e in kernel.exprs))


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


def module_source(kernels: Sequence[ScalarKernel], templates: Sequence[Template | Callable] = (),
                  fastmath: bool = False) -> str:
    """Source of the generated numba module: the kernels, then the templates."""
    header = ["# generated by diffphase.solvers.codegen; do not edit (content-hashed)",
              "import math", "import numpy", "import numpy as np", "from numba import njit, prange",
              ""]
    deco = f'@njit(cache=True, fastmath={fastmath}, error_model="numpy")'
    body = [RECIPROCAL_SOURCE] + [deco + "\n" + kernel_source(k) + "\n" for k in kernels]
    for template in templates:
        template = template if isinstance(template, Template) else Template(template)
        body.append("\n" + template.source(fastmath))
    return "\n".join(header + body) + "\n"


def _numba_module(kernels: Sequence[ScalarKernel], templates: Sequence[Template | Callable],
                  tag: str, fastmath: bool) -> ModuleType:
    """Write (if new, or to replace a damaged copy) and import the generated module; its functions
    are numba dispatchers. Damaged numba cache files of the module are discarded first."""
    index = _index_path(kernels, templates, tag, fastmath)
    source = _indexed_source(index, tag)
    source_was_printed = source is None
    if source_was_printed:
        source = module_source(kernels, templates, fastmath)
    module = _load_module_source(source, tag)
    if source_was_printed:
        _write_index(index, Path(module.__file__).name)
    return module


def _load_module_source(source: str, tag: str, numba: bool = True) -> ModuleType:
    """Import the generated module of ``source`` (its file written or repaired first; damaged
    numba cache files of it discarded)."""
    digest = _source_digest(source)
    module_name = f"{_MODULE_PREFIX}.{tag}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if numba:
        repair_package_numba_caches()
    path = cache_dir() / f"{tag}_{digest}.py"
    _ensure_file(path, source.encode())
    if numba:
        repair_numba_cache(path)
    if _MODULE_PREFIX not in sys.modules:
        package = ModuleType(_MODULE_PREFIX)
        package.__path__ = []  # namespace-like container for generated modules
        sys.modules[_MODULE_PREFIX] = package
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name,
                                                                                    path))
    sys.modules[module_name] = module  # registered before it runs, as numba's cache requires
    try:  # compiled from the verified text: no bytecode cache (.pyc) to be damaged
        exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _source_digest(source: str) -> str:
    """Name digest of a generated module: its source, this printer's and numba's versions."""
    import numba

    key = source + CODEGEN_VERSION + numba.__version__ + sys.version
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _index_path(kernels: Sequence[ScalarKernel], templates: Sequence[Template | Callable],
                tag: str, fastmath: bool) -> Path:
    """Index file naming the generated module of these kernels, keyed by the expressions' trees
    (``srepr``, cheap) rather than by the printed source (common-subexpression elimination and
    printing cost a tenth of a second or more): a warm process reads the module's text from the
    index instead of printing it again."""
    import numba
    import sympy as sp

    parts = [CODEGEN_VERSION, numba.__version__, sys.version, tag, str(fastmath)]
    for kernel in kernels:
        parts += [kernel.name, repr(kernel.args)] + [sp.srepr(e) for e in kernel.exprs]
    for template in templates:
        template = template if isinstance(template, Template) else Template(template)
        parts.append(template.source(fastmath))
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:20]
    return cache_dir() / "index" / f"{tag}.{digest}"


def _indexed_source(index: Path, tag: str) -> str | None:
    """Source of the module an index names, when both files exist and the module's text still
    hashes to its name (anything else: None, and the source is printed again)."""
    try:
        name = index.read_text()
        source = (index.parent.parent / name).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return source if name == f"{tag}_{_source_digest(source)}.py" else None


def _write_index(index: Path, module_file: str) -> None:
    """Point ``index`` at ``module_file`` (temporary name, then rename; last writer wins, and
    any complete index is valid since :func:`_indexed_source` checks what it names)."""
    index.parent.mkdir(exist_ok=True)
    fd, tmp = temporary_file(index)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(module_file)
        os.replace(tmp, index)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _ensure_file(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``: written to a temporary name with the umask's permissions and
    renamed (two processes end with the same complete file). A file of the same content-hashed
    name with other bytes (empty, truncated, garbage) is damage: it is replaced, with a warning."""
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current == data:
        return
    remove_stale_temporaries(path.parent)  # left by processes killed while writing
    fd, tmp = temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if current is None and path.exists() and path.read_bytes() == data:
            os.unlink(tmp)  # another process won the race
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if current is not None:
        _warn_repaired([path])


def _warn_repaired(paths: Sequence[Path]) -> None:
    names = ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more"
                                                   if len(paths) > 3 else "")
    warnings.warn(f"kernel cache: discarded damaged {names} in {paths[0].parent}; rebuilt",
                  KernelCacheWarning, stacklevel=3)


def numba_cache_dir(source_file: str | os.PathLike) -> Path | None:
    """Folder where numba keeps the machine code of the ``cache=True`` functions of
    ``source_file``: the first of numba's own locators that accepts the file (``NUMBA_CACHE_DIR``
    when set, else ``__pycache__`` beside the file when writable, else the user-wide cache)."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    for locator_class in impl._locator_classes:
        locator = locator_class.from_function(_numba_module, str(source_file))
        if locator is not None:
            return Path(locator.get_cache_path())
    return None


def _complete_pickles(data: bytes, count: int) -> bool:
    """Whether ``data`` is exactly ``count`` complete pickle streams (parsed, never executed)."""
    stream = io.BytesIO(data)
    try:
        for _ in range(count):
            for _op in pickletools.genops(stream):
                pass
    except Exception:  # truncated or unknown opcodes: pickletools raises ValueError and others
        return False
    return stream.tell() == len(data)


def repair_numba_cache(source_file: str | os.PathLike) -> list[Path]:
    """Discard damaged numba cache files of the functions of ``source_file``: an index (``.nbi``,
    two pickles: numba's version and the entries) or a data file (``.nbc``, one pickle) that is
    empty, truncated or not a pickle. numba then compiles those functions again and saves them.
    Says so in one :class:`~diffphase.errors.KernelCacheWarning`; returns the files removed."""
    folder = numba_cache_dir(source_file)
    if folder is None or not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.glob(glob.escape(Path(source_file).stem) + ".*.nb[ic]")):
        try:
            if not _complete_pickles(entry.read_bytes(), 2 if entry.suffix == ".nbi" else 1):
                entry.unlink()
                removed.append(entry)
        except OSError:  # vanished meanwhile, or not ours to remove: numba decides
            continue
    if removed:
        _warn_repaired(removed)
    return removed


#: the modules of this package (relative to its folder) that define ``cache=True`` numba
#: functions themselves; ``tests/test_codegen.py`` checks the list against the sources
CACHED_MODULES = ("simulate/empirical/kernels.py", "solvers/bp.py")


@functools.cache
def repair_package_numba_caches() -> None:
    """:func:`repair_numba_cache` for every module of :data:`CACHED_MODULES` (once per process;
    called before generated kernels load and by those modules)."""
    root = Path(__file__).resolve().parents[1]
    for name in CACHED_MODULES:
        repair_numba_cache(root / name)


def c_operation(kernel: ScalarKernel, out_names: Sequence[str]) -> str:
    """C statements computing ``out_names`` from the kernel's args (for cupy or a C compiler)."""
    import sympy as sp

    replacements, reduced = sp.cse(list(kernel.exprs), symbols=sp.numbered_symbols("_cse"))
    lines = [f"double {sym} = {sp.ccode(sub)};" for sym, sub in replacements]
    lines += [f"{name} = {sp.ccode(expr)};" for name, expr in zip(out_names, reduced, strict=True)]
    return "\n".join(lines)


def _cupy_elementwise(kernel: ScalarKernel):
    """``cupy.ElementwiseKernel`` with ``float64`` inputs (the args) and outputs ``out0, ...``."""
    from ..backend import get_array_module

    cupy, _ = get_array_module("gpu")
    out_names = [f"out{i}" for i in range(len(kernel.exprs))]
    in_params = ", ".join(f"float64 {a}" for a in kernel.args)
    out_params = ", ".join(f"float64 {o}" for o in out_names)
    return cupy.ElementwiseKernel(in_params, out_params, c_operation(kernel, out_names),
                                  f"dp_{kernel.name}")


def _lambdified(kernel: ScalarKernel, backend: str) -> Callable:
    """``sympy.lambdify`` on the module named ``backend`` (numpy, math, cupy, mpmath)."""
    import sympy as sp

    exprs = kernel.exprs[0] if len(kernel.exprs) == 1 else kernel.exprs
    return sp.lambdify(kernel.args, exprs, modules=backend)


_COMPILED: dict[tuple, SimpleNamespace] = {}


def compile_kernels(kernels: Sequence[ScalarKernel], backend: str = "numba", *,
                    templates: Sequence[Template | Callable] = (), tag: str = "k",
                    fastmath: bool = False) -> ModuleType | SimpleNamespace:
    """Compile ``kernels`` for ``backend``; the result's attributes are the kernels by name.

    Parameters
    ----------
    kernels : the scalar kernels (names unique).
    backend : one of :data:`BACKENDS`.
    templates : hand-written numba functions instantiated in the same module (``numba`` only);
        a plain function is ``Template(function)``.
    tag : prefix of the generated file's name (``numba``).
    fastmath : numba's ``fastmath`` for kernels and templates.
    """
    kernels = tuple(kernels)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: allowed {', '.join(BACKENDS)}")
    if backend == "numba":
        return _numba_module(kernels, tuple(templates), tag, fastmath)
    if templates:
        raise ValueError("templates are numba functions: use backend='numba'")
    key = (kernels, backend)
    if key not in _COMPILED:
        elementwise = backend == "cupy-elementwise"
        _COMPILED[key] = SimpleNamespace(**{
            k.name: _cupy_elementwise(k) if elementwise else _lambdified(k, backend)
            for k in kernels})
    return _COMPILED[key]


def numpy_module_source(kernels: Sequence[ScalarKernel]) -> str:
    """Source of a generated numpy module: each kernel printed as for numba (common
    subexpressions shared, reciprocals hoisted), without decorators; the functions take arrays
    (broadcasting) or numbers."""
    header = ["# generated by diffphase.solvers.codegen; do not edit (content-hashed)",
              "import numpy", "", "", "def reciprocal(w):", "    return 1.0 / w", "", ""]
    return "\n".join(header + [kernel_source(k) + "\n\n" for k in kernels])


def compile_module(tag: str, build: Callable[[], tuple[Sequence[ScalarKernel], Sequence]],
                   sources: Sequence[str], *, fastmath: bool = False,
                   backend: str = "numba") -> ModuleType:
    """The generated module of ``compile_kernels(*build(), tag=tag)`` (``backend`` ``numba``) or
    of :func:`numpy_module_source` (``numpy``, no templates), loaded without calling ``build``
    when possible.

    ``build()`` returns ``(kernels, templates)``; ``sources`` name the package files (relative
    to the package folder, e.g. ``"solvers/memorization.py"``; a folder stands for its ``.py``
    files) whose code decides them. An index keyed by the bytes of those files and of this
    module, the versions of sympy, numba and Python, ``tag`` and ``fastmath`` names the module
    that ``build`` gave last time: a warm process reads and imports that module without building
    the expressions, and so without importing sympy (a tenth to a half of a second). Any edit to
    a listed file changes the key, and the slow path (build, print or read by expression tree)
    runs and records the new module; an index whose module is missing or altered is ignored.
    """
    if backend not in ("numba", "numpy"):
        raise ValueError(f"compile_module: backend 'numba' or 'numpy', not {backend!r}")
    index = _source_index_path(f"{tag}-{backend}", sources, fastmath)
    source = _indexed_source(index, tag)
    if source is not None:
        return _load_module_source(source, tag, numba=backend == "numba")
    kernels, templates = build()
    if backend == "numba":
        module = compile_kernels(kernels, templates=templates, tag=tag, fastmath=fastmath)
    elif templates:
        raise ValueError("templates are numba functions: use backend='numba'")
    else:
        module = _load_module_source(numpy_module_source(kernels), tag, numba=False)
    _write_index(index, Path(module.__file__).name)
    return module


def _source_index_path(tag: str, sources: Sequence[str], fastmath: bool) -> Path:
    """Index of :func:`compile_module`: keyed by the files that decide the module's text."""
    import numba

    root = Path(__file__).resolve().parents[1]
    files = [Path(__file__).resolve()]
    for name in sources:
        path = root / name
        files += sorted(path.glob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for part in (CODEGEN_VERSION, numba.__version__, _sympy_version(), sys.version, tag,
                 str(fastmath)):
        digest.update(part.encode() + b"\x00")
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\x00" + path.read_bytes())
    return cache_dir() / "index" / f"{tag}.src.{digest.hexdigest()[:20]}"


@functools.cache
def _sympy_version() -> str:
    """sympy's version from its installed metadata (without importing sympy)."""
    from importlib import metadata

    try:
        return metadata.version("sympy")
    except metadata.PackageNotFoundError:  # pragma: no cover - sympy is a dependency
        import sympy

        return sympy.__version__


def compile_kernel(kernel: ScalarKernel, backend: str = "numba", *, tag: str = "f",
                   fastmath: bool = False) -> Callable:
    """The callable of one kernel: ``compile_kernels([kernel], backend, ...).<name>``."""
    return getattr(compile_kernels([kernel], backend, tag=tag, fastmath=fastmath), kernel.name)
