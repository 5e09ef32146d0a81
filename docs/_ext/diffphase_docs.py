"""Sphinx helpers for the diffphase documentation.

* ``builder-inited``: writes one API page per public module into ``api/generated/`` (only when
  its text changes, so incremental builds stay incremental).
* ``autodoc-process-docstring``: renders the package's numpy-style sections, whose entries are
  written ``name : description`` (a description, not a type, after the colon), as a rubric and
  a list, and escapes the ``|x|`` of norms and absolute values so that reST does not read them
  as substitutions (the same escaping applies to the command help shown by sphinx-click).
* ``.. run-example:: examples/NAME.py``: runs the script at build time in a fresh Python process
  (working folder: a temporary directory, ``MPLBACKEND=Agg``) and inserts its source, its
  printed output, its run time and every PNG it wrote. A script that fails or runs past
  ``diffphase_example_timeout`` seconds is a build error.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

#: packages documented module by module (recursively), then single modules
API_PACKAGES = ("diffphase.theory", "diffphase.data", "diffphase.solvers", "diffphase.simulate",
                "diffphase.studies")
API_MODULES = ("diffphase.validate.registry",)


#: numpy-style section titles whose entries are ``name : description`` items
ITEM_SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Raises", "Attributes",
                 "Warns", "Keys", "Fields", "Columns"}
#: other section titles, kept as a rubric and their text
TEXT_SECTIONS = {"Notes", "Note", "Examples", "Example", "References", "See Also", "Warnings",
                 "Contract", "Methods", "Usage", "Theory"}
_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_][\w.]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w.]*)*)\s*(?::\s*(.*))?$")
#: objects left out of the API pages because their docstring is not valid reST (see the report)
def escape_bars(line: str) -> str:
    """Escape ``|`` outside inline literals (no docstring of the package uses substitutions)."""
    parts = line.split("``")
    for i in range(0, len(parts), 2):  # even parts are outside ``literals``
        parts[i] = re.sub(r"(?<!\\)\|", r"\\|", parts[i])
    return "``".join(parts)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _literal_after_colon(lines: list[str]) -> list[str]:
    """``text:`` + blank line + a more indented block: make the block a literal block."""
    out = list(lines)
    for i, line in enumerate(out):
        if not line.rstrip().endswith(":") or line.rstrip().endswith("::"):
            continue
        j = i + 1
        if j >= len(out) or out[j].strip():
            continue
        while j < len(out) and not out[j].strip():
            j += 1
        if j < len(out) and _indent(out[j]) > _indent(line) and not line.lstrip().startswith(
                (":", "..", "*", "-")):
            out[i] = line.rstrip() + ":"
    return out


def convert_sections(lines: list[str]) -> list[str]:
    """Numpy-style ``Title`` / ``-----`` sections -> rubric + bullet list (or text)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        title = line.strip()
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        is_header = (title and underline and set(underline) == {"-"}
                     and len(underline) >= len(title) and _indent(line) == 0)
        if not is_header:
            out.append(line)
            i += 1
            continue
        out += [f".. rubric:: {title}", ""]
        i += 2
        if title not in ITEM_SECTIONS:
            continue  # text section: its body follows unchanged
        items: list[list[str]] = []
        while i < len(lines):
            current = lines[i]
            if not current.strip():
                nxt = next((x for x in lines[i + 1:] if x.strip()), "")
                if not nxt or (_indent(nxt) == 0 and not _ITEM.match(nxt.strip())):
                    break  # blank line, then free text: the section ends
                if _indent(nxt) == 0 and i + 2 < len(lines) and set(
                        lines[i + 2].strip() or "x") == {"-"}:
                    break
                i += 1
                continue
            if _indent(current) == 0:
                if i + 1 < len(lines) and set(lines[i + 1].strip() or "x") == {"-"}:
                    break  # the next section's title
                match = _ITEM.match(current.strip())
                if not match:
                    break
                name, rest = match.group(1), match.group(2)
                head = f"* **{name}**" + (f" -- {rest}" if rest else "")
                items.append([head])
            elif items:
                items[-1].append("  " + current.strip())
            else:
                out.append(current)
            i += 1
        for item in items:
            out += item
        out.append("")
    return out


def escape_bars_outside_literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    block_indent = None  # indentation of the ``::`` line while inside its literal block
    opened = False
    for line in lines:
        if block_indent is not None:
            if not line.strip() or (_indent(line) > block_indent):
                opened = opened or bool(line.strip())
                out.append(line)
                continue
            block_indent = None
        out.append(escape_bars(line))
        if line.rstrip().endswith("::"):
            block_indent, opened = _indent(line), False
    return out


def process_docstring(app, what, name, obj, options, lines) -> None:
    lines[:] = escape_bars_outside_literal_blocks(convert_sections(_literal_after_colon(lines)))


def process_click_lines(app, ctx, lines) -> None:
    lines[:] = [escape_bars(x) for x in lines]


def public_modules() -> list[str]:
    """Every module of :data:`API_PACKAGES` (the packages included) and :data:`API_MODULES`."""
    names: list[str] = []
    for package_name in API_PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                names.append(info.name)
    return sorted(set(names)) + list(API_MODULES)


def _missing_extra(module: str) -> str | None:
    """The optional dependency a module needs and that is not installed here (None: it
    imports)."""
    from diffphase.errors import MissingDependencyError

    try:
        importlib.import_module(module)
    except MissingDependencyError as exc:
        return str(exc)
    return None


def _page(module: str) -> str:
    title = f"``{module}``"
    head = f"{title}\n{'=' * len(title)}\n\n"
    missing = _missing_extra(module)
    if missing:  # documented where its extra is installed
        return head + f"This module needs an optional dependency: {missing}.\n"
    return head + f".. automodule:: {module}\n   :members:\n   :ignore-module-all:\n"


def _package_page() -> str:
    import diffphase

    lines = ["``diffphase``", "=============", "",
             ".. automodule:: diffphase", "   :no-members:", "",
             "Names importable from the package itself, and the module that defines "
             "(and documents) each:", "",
             ".. list-table::", "   :header-rows: 1", "",
             "   * - name", "     - defined in"]
    for name, module in diffphase.ENTRY_POINTS.items():
        home = getattr(getattr(diffphase, name), "__module__", module) or module
        lines += [f"   * - :py:obj:`~{home}.{name}`", f"     - :py:mod:`{home}`"]
    base = [("ParameterError", "diffphase.errors"), ("Process", "diffphase.process"),
            ("get_process", "diffphase.process"), ("tau_from_time", "diffphase.process"),
            ("time_from_tau", "diffphase.process")]
    for name, module in base:
        lines += [f"   * - ``{name}``", f"     - ``{module}``"]
    lines += ["", "Forward processes and times", "---------------------------", "",
              ".. automodule:: diffphase.process", "   :members:", "   :ignore-module-all:",
              "", "Errors", "------", "",
              ".. automodule:: diffphase.errors", "   :members:", "   :ignore-module-all:", ""]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api_pages(app) -> None:
    out = Path(app.srcdir) / "api" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    pages = {"diffphase": _package_page()}
    pages.update({m: _page(m) for m in public_modules()})
    for stale in out.glob("*.rst"):
        if stale.stem not in pages:
            stale.unlink()
    for module, text in pages.items():
        _write_if_changed(out / f"{module}.rst", text)


class RunExample(SphinxDirective):
    """``.. run-example:: examples/spectral.py`` (path relative to the documentation root)."""

    required_arguments = 1
    option_spec = {"timeout": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        srcdir = Path(self.env.srcdir)
        script = (srcdir / self.arguments[0]).resolve()
        if not script.is_file():
            raise self.error(f"run-example: no script {self.arguments[0]}")
        self.env.note_dependency(str(script))
        timeout = self.options.get("timeout", self.config.diffphase_example_timeout)
        figures = srcdir / "_generated" / "gallery" / script.stem
        shutil.rmtree(figures, ignore_errors=True)
        figures.mkdir(parents=True)
        env = dict(os.environ, MPLBACKEND="Agg")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(srcdir.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
        with tempfile.TemporaryDirectory(prefix="diffphase-example-") as work:
            start = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise self.error(f"run-example: {script.name} ran past {timeout} s") from exc
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise self.error(f"run-example: {script.name} exited with {done.returncode}:\n"
                                 f"{done.stderr[-3000:]}")
            pngs = sorted(Path(work).glob("*.png"))
            for png in pngs:
                shutil.copy2(png, figures / png.name)
        source = script.read_text(encoding="utf-8")
        code = nodes.literal_block(source, source, language="python")
        out_text = done.stdout.rstrip() or "(no output)"
        output = nodes.literal_block(out_text, out_text, language="text")
        result: list[nodes.Node] = [
            nodes.rubric(text=f"Source: {script.name}"), code,
            nodes.rubric(text=f"Output (ran in {seconds:.1f} s when these pages were built)"),
            output,
        ]
        for png in pngs:
            uri = f"/_generated/gallery/{script.stem}/{png.name}"
            result.append(nodes.image(uri=uri, alt=png.stem.replace("_", " ")))
        return result


def setup(app):
    app.add_config_value("diffphase_example_timeout", 120, "env")
    app.add_directive("run-example", RunExample)
    app.connect("builder-inited", write_api_pages)
    app.connect("autodoc-process-docstring", process_docstring)
    for part in ("description", "options", "usage", "epilog", "arguments", "envvars"):
        app.connect(f"sphinx-click-process-{part}", process_click_lines)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
