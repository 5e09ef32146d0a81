"""Command-line fuzzing: every command and option, with valid, boundary, extreme and invalid values.

Each run is a fresh ``python -m diffphase`` process under a memory limit (address space) and a
time limit. A run is judged by the README's promise about input handling:

* exit 0: no traceback; the JSON printed with ``--json`` parses, and every non-finite number in
  it (``null``) and every ``nan``/``inf`` cell of a CSV written has a flag beside it (a key or
  column whose name says so: ``converged``, ``failed``, ``finite``, ``flag``, ``exists`` ...);
* exit 2: exactly one line on stderr, starting ``error:``, naming an option of that command;
* exit 1: only ``validate`` (a failed check);
* anything else (a traceback, a time-out, a kill for memory, another exit code) is a failure.

``tests/test_cli_fuzz.py`` runs a quick profile in CI. The long profile is run by hand::

    python tests/cli_fuzz.py --runs 2000 --seed 1 --report fuzz-report.json

and prints the counts: runs, failing runs, and distinct failures (command, first option, kind).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

#: limits of one run: address space (bytes) and wall time (seconds)
MEMORY_LIMIT_BYTES = 8 * 2**30
TIME_LIMIT_SECONDS = 120.0
#: key or column names that flag a non-finite value beside it
FLAG_PATTERN = re.compile(
    r"converged|failed|failure|finite|flag|exists|valid|status|note|reason|n_nan|nonfinite",
    re.IGNORECASE)
#: options every run sets itself
MANAGED = {"--out", "--force", "--json", "--svg", "--help", "--version", "--quiet", "--verbose",
           "--format", "--dpi", "--style"}

FLOAT_VALUES = {
    "boundary": ["0", "1", "-1", "0.5", "2"],
    "extreme": ["1e-300", "1e300", "-1e300", "inf", "-inf", "nan", "5e-324", "1e-30", "1e30",
                "-0"],
    "invalid": ["abc", "", "1,2", "0x"],
}
INT_VALUES = {
    "boundary": ["0", "1", "-1", "2", "3"],
    "extreme": ["1000000000000", "-1000000000000", "9223372036854775808", "100000"],
    "invalid": ["2.5", "x", "", "1e3"],
}
LIST_VALUES = {
    "boundary": ["0", "1", "0,0", "1,1", "0.5", "2", "0.995", "0.2,0.2", "32.7", "2.9"],
    "extreme": ["1e300", "1e-300,1", "nan", "inf", "1e-8,1e8", "0.999999", "-1", "1e-8,1,1e8",
                "1e-30,1e30", "1e-12,1e-11", "5e-324"],
    "invalid": ["a,b", ",", "", "1,,2", "1;2"],
}
TEXT_VALUES = {
    "--model": {"valid": ["spectral", "memorization", "hierarchy", "sampler", "fields"],
                "invalid": ["nope", ""]},
    "--law": {"valid": ["uniform:0.1,1", "loguniform:0.01,1"],
              "invalid": ["uniform", "uniform:1,0.1", "bad:1,2", "uniform:0,1", ""]},
    "--score": {"valid": ["numpy:multiply", "numpy:full_like", "numpy:arctan2", "numpy:subtract"],
                "invalid": ["nonexistent_pkg.mod:f", "math:nope", "math:pi", "os", ":",
                            "math:sqrt", "json:loads", "sys:exit", "builtins:input",
                            "numpy:power", "numpy:sum", "numpy:outer", "numpy:vdot",
                            "numpy:reshape", "numpy:ldexp", "numpy:emath.sqrt", "this:s"]},
}


@dataclass
class Option:
    name: str
    kind: str  # float | int | list | choice | text | path | flag
    default: object
    choices: tuple[str, ...] = ()


@dataclass
class Command:
    path: tuple[str, ...]
    options: list[Option] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {o.name for o in self.options} | MANAGED


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    seconds: float
    verdict: str  # ok | failure kind
    detail: str = ""


def commands() -> list[Command]:
    """Every leaf command of the CLI with its options, read from the click tree."""
    from diffphase.cli import cli

    found: list[Command] = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, path + (name,))
            return
        command = Command(path)
        for param in cmd.params:
            if (not isinstance(param, click.Option) or param.opts[0] in MANAGED
                    or param.hidden):
                continue
            command.options.append(Option(param.opts[0], _kind(param), param.default,
                                          tuple(getattr(param.type, "choices", ()) or ())))
        found.append(command)

    walk(cli, ())
    return found


def _kind(param: click.Option) -> str:
    if param.is_flag:
        return "flag"
    name = getattr(param.type, "name", "")
    return {"float": "float", "integer": "int", "floats": "list", "choice": "choice",
            "text": "text", "file": "path", "directory": "path", "path": "path"}.get(name, "text")


def values_for(option: Option, category: str) -> list[str]:
    """Candidate values of one option in a category (``valid``, ``boundary``, ``extreme``,
    ``invalid``); empty when the category does not apply."""
    default = option.default
    has_default = default is not None and not isinstance(default, bool) and \
        "Sentinel" not in repr(default)
    if option.kind == "choice":
        if option.name == "--tier":  # the full tier is a workstation job by design
            return ["quick"] if category == "valid" else (["nope"] if category == "invalid" else [])
        return list(option.choices) if category == "valid" else (
            ["nope", ""] if category == "invalid" else [])
    if option.kind == "text":
        table = TEXT_VALUES.get(option.name, {"valid": [], "invalid": ["", "x"]})
        return table.get(category, [])
    if option.kind == "path":
        return {"invalid": ["/nonexistent/file.npy", "/proc/self"],
                "boundary": [""]}.get(category, [])
    if option.kind == "flag":
        return []
    table = {"float": FLOAT_VALUES, "int": INT_VALUES, "list": LIST_VALUES}[option.kind]
    if category == "valid":
        return [_text(default)] if has_default else []
    return table.get(category, [])


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run(argv: list[str], timeout: float = TIME_LIMIT_SECONDS) -> tuple[int | None, str, str,
                                                                         float]:
    """Run ``python -m diffphase argv`` under the limits; code ``None`` on a time-out."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="default")
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "diffphase", *argv], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=_limit_memory, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return None, _decode(exc.stdout), _decode(exc.stderr), time.monotonic() - start
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def _decode(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def judge(command: Command, argv: list[str], code, stdout: str, stderr: str,
          out_dir: Path | None, timeout: float = TIME_LIMIT_SECONDS) -> tuple[str, str]:
    """``("ok", "")`` or ``(failure kind, detail)`` for one run."""
    if code is None:
        return "timeout", f"no result within {timeout:.0f} s"
    if "Traceback" in stderr:
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1]
        return "traceback", last[:200]
    if code == 2:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        if len(lines) != 1:
            return "not-one-line", " | ".join(lines)[:300]
        line = lines[0]
        if not line.startswith("error:"):
            return "not-an-error-line", line[:200]
        if not _names_an_option(line, command):
            return "names-no-option", line[:200]
        return "ok", ""
    if code == 1 and command.path == ("validate",):
        return "ok", ""
    if code != 0:
        return f"exit-{code}", stderr.strip()[-200:]
    if "--json" in argv:
        try:
            payload = json.loads(stdout)
        except json.JSONDecodeError as exc:
            return "bad-json", f"{exc}: {stdout[:120]!r}"
        unflagged = _unflagged_nulls(payload, "")
        if unflagged:
            return "unflagged-null", ", ".join(unflagged[:5])
    if out_dir is not None:
        for path in sorted(out_dir.rglob("*.csv")):
            bad = _unflagged_csv(path)
            if bad:
                return "unflagged-nan-csv", f"{path.name}: {bad}"
    return "ok", ""


def _names_an_option(line: str, command: Command) -> bool:
    text = line.lower()
    if "no such option" in text or "no such command" in text or "missing" in text:
        return True
    for name in command.names:
        bare = name.lstrip("-").lower()
        variants = {name.lower(), bare, bare.replace("-", "_"), f"'{bare}'"}
        if any(re.search(rf"(?<![a-z_]){re.escape(v)}(?![a-z_])", text) for v in variants):
            return True
    return False


def _unflagged_nulls(node, where: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        flagged = any(FLAG_PATTERN.search(str(k)) for k in node)
        for key, value in node.items():
            if value is None and not flagged and not _optional_by_name(key):
                found.append(f"{where}.{key}")
            elif isinstance(value, list) and any(v is None for v in value) and not flagged:
                found.append(f"{where}.{key}[]")
            elif isinstance(value, (dict, list)):
                found.extend(_unflagged_nulls(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, (dict, list)):
                found.extend(_unflagged_nulls(value, f"{where}[{i}]"))
    return found


def _optional_by_name(key: str) -> bool:
    """Keys that are ``null`` when not given (parameters left unset), not non-finite results."""
    return key in {"seed", "n_c", "channel", "depth", "tau", "t", "law", "dim", "model",
                   "score", "reference", "probes", "t_start", "variances", "eps", "depths",
                   "f", "dims", "out", "schedule", "steps", "T", "message"}


def _unflagged_csv(path: Path) -> str:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return ""
    header = rows[0]
    if any(FLAG_PATTERN.search(h) for h in header):
        return ""
    for row in rows[1:]:
        for name, cell in zip(header, row, strict=False):
            if cell.strip().lower() in {"nan", "inf", "-inf"}:
                return f"column {name} = {cell} with no flag column"
    return ""


def draw_argv(command: Command, rng: random.Random, out_dir: Path,
              categories=("valid", "boundary", "extreme", "invalid")) -> list[str]:
    """One command line: up to three of the command's options with drawn values."""
    argv = list(command.path)
    chosen = rng.sample(command.options, k=min(len(command.options), rng.randint(1, 3))) \
        if command.options else []
    for option in chosen:
        if option.kind == "flag":
            argv.append(option.name)
            continue
        pool = [(c, v) for c in categories for v in values_for(option, c)]
        if pool:
            _, value = rng.choice(pool)
            argv.extend([option.name, value])
    if "--out" in _all_option_names(command):
        argv.extend(["--out", str(out_dir), "--force"])
    argv.append("--json")
    return argv


def _all_option_names(command: Command) -> set[str]:
    from diffphase.cli import cli

    node = cli
    for part in command.path:
        node = node.commands[part]
    return {p.opts[0] for p in node.params if isinstance(p, click.Option)}


def fuzz_once(command: Command, argv: list[str], out_dir: Path,
              timeout: float = TIME_LIMIT_SECONDS) -> Outcome:
    code, stdout, stderr, seconds = run(argv, timeout)
    verdict, detail = judge(command, argv, code, stdout, stderr,
                            out_dir if out_dir.exists() else None, timeout)
    return Outcome(argv, code, seconds, verdict, detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=TIME_LIMIT_SECONDS)
    parser.add_argument("--only", nargs="*", default=None, help="command paths, e.g. spectrum")
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool = [c for c in commands() if args.only is None or " ".join(c.path) in args.only]
    outcomes: list[Outcome] = []
    for i in range(args.runs):
        command = rng.choice(pool)
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = Path(tmp) / "out"
            argv = draw_argv(command, rng, out_dir)
            outcome = fuzz_once(command, argv, out_dir, args.timeout)
        outcomes.append(outcome)
        mark = "." if outcome.verdict == "ok" else "F"
        print(f"{i:5d} {mark} {outcome.seconds:6.1f}s {' '.join(argv)[:110]}"
              + ("" if mark == "." else f"\n        {outcome.verdict}: {outcome.detail}"),
              flush=True)
    failing = [o for o in outcomes if o.verdict != "ok"]
    distinct = sorted({(o.argv[0] if o.argv[0] not in ("phase-diagram", "simulate")
                        else " ".join(o.argv[:2]), o.verdict) for o in failing})
    print(f"\n{len(outcomes)} runs, {len(failing)} failing, {len(distinct)} distinct "
          "(command, kind):")
    for item in distinct:
        print("  ", *item)
    if args.report:
        args.report.write_text(json.dumps({"runs": len(outcomes), "failing": len(failing),
                                           "distinct": distinct,
                                           "outcomes": [asdict(o) for o in outcomes]},
                                          indent=1, default=str))


if __name__ == "__main__":
    main()
