"""The package's layout: imports point one way, layers stay small enough to read.

Every import in ``diffphase/`` (module level or inside a function) is read with :mod:`ast`. Each
module belongs to a layer; a module may import only from its own layer or the layers before it:

    base modules (errors, models, process, backend, outputs, _version)
    -> theory -> data -> solvers -> simulate -> studies, plotting, validate -> commands -> cli

``theory/`` imports no other subpackage, ``validate/`` is imported only by the command line, no
two modules import each other through any chain, no module exceeds 800 lines and no subpackage
holds more than 30% of the package's lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffphase"
#: layer rank of each top-level part of the package (a subpackage or a base module)
LAYERS = {
    "_version": 0, "errors": 0, "models": 1, "process": 2, "backend": 2, "outputs": 2,
    "theory": 3, "data": 4, "solvers": 5, "simulate": 6,
    "studies": 7, "plotting": 7, "validate": 7, "commands": 8, "sweep": 8, "cli": 9,
    "__main__": 10,
    "__init__": 10,
}
MAX_MODULE_LINES = 800
MAX_SUBPACKAGE_SHARE = 0.30


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _from_base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """Absolute name of the module a ``from ... import`` statement reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (an imported attribute counts as its module)."""
    modules = _modules(package)

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(owner(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(name, path, node)
                targets.update(owner(f"{base}.{alias.name}") for alias in node.names)
        graph[name] = {t for t in targets if t.startswith("diffphase") and t != name}
    return graph


def _part(module: str) -> str:
    """Top-level part of the package a module belongs to (``diffphase`` itself is ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_every_part_has_a_layer():
    unknown = {_part(m) for m in _modules()} - set(LAYERS)
    assert not unknown, f"give these parts of the package a layer: {sorted(unknown)}"


def test_imports_point_one_way():
    bad = [
        f"{source} -> {target}"
        for source, targets in _imports().items()
        for target in targets
        if LAYERS[_part(target)] > LAYERS[_part(source)]
    ]
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))


def test_theory_imports_no_other_subpackage():
    bad = [
        f"{source} -> {target}"
        for source, targets in _imports().items()
        if _part(source) == "theory"
        for target in targets
        if _part(target) != "theory" and LAYERS[_part(target)] >= LAYERS["theory"]
    ]
    assert not bad, "\n".join(bad)


def test_only_the_command_line_imports_validate():
    allowed = {"validate", "commands", "sweep", "cli", "__main__"}
    bad = [
        f"{source} -> {target}"
        for source, targets in _imports().items()
        for target in targets
        if _part(target) == "validate" and _part(source) not in allowed
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_is_small_enough_to_read(module):
    lines = _lines(_modules()[module])
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines (at most {MAX_MODULE_LINES})"


def test_no_subpackage_dominates():
    totals: dict[str, int] = {}
    for module, path in _modules().items():
        totals[_part(module)] = totals.get(_part(module), 0) + _lines(path)
    whole = sum(totals.values())
    big = {part: round(n / whole, 3) for part, n in totals.items()
           if n / whole > MAX_SUBPACKAGE_SHARE}
    assert not big, f"subpackages over {MAX_SUBPACKAGE_SHARE:.0%} of {whole} lines: {big}"


def test_the_import_reader_sees_relative_and_nested_imports(tmp_path):
    """A planted upward import inside a function, written relatively, is found and resolved."""
    fake = tmp_path / "diffphase"
    for sub in ("theory", "validate"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "validate" / "registry.py").write_text("X = 1\n")
    upward = "def f():\n    from ..validate.registry import X\n"
    (fake / "theory" / "spectral.py").write_text(upward)
    (fake / "theory" / "hierarchy.py").write_text("from . import spectral\n")
    graph = _imports(fake)
    assert graph["diffphase.theory.spectral"] == {"diffphase.validate.registry"}
    assert graph["diffphase.theory.hierarchy"] == {"diffphase.theory.spectral"}


def test_every_entry_point_of_the_package_resolves():
    import diffphase

    for name, module in diffphase.ENTRY_POINTS.items():
        value = getattr(diffphase, name)
        assert value.__module__.startswith(module.rpartition(".")[0]), (name, value.__module__)
    assert set(diffphase.ENTRY_POINTS) <= set(diffphase.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        diffphase.not_a_name  # noqa: B018


def test_importing_the_package_loads_no_solver():
    import subprocess
    import sys

    code = ("import sys, diffphase; "
            "print(sorted(m for m in sys.modules if m.startswith('diffphase.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for heavy in ("diffphase.solvers", "diffphase.simulate", "diffphase.validate"):
        assert heavy not in loaded, loaded
