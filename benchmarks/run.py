"""Ratio benchmarks: each measures our method and a baseline side by side in one run.

    python benchmarks/run.py [--only NAME ...] [--quick] [--out benchmarks/results.json]

Prints ``benchmark | ours | baseline | ratio`` and writes JSON. Each ``benchmarks/bench_*.py``
module exposes ``BENCHMARKS``: a list of functions ``bench(quick: bool) -> list[dict]`` whose
rows have keys ``benchmark``, ``ours_s``, ``baseline_s``, ``ratio`` (baseline / ours, higher is
better for us), ``target`` (the ratio asked for, or None) and optional ``notes``; rows that
measure memory add ``ours_peak_mb``, ``baseline_peak_mb`` and ``memory_ratio`` (printed too).
``bench_matrix_free.py`` (``--only matrix_free``) needs the torch extra with diffusers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def best_of(func, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def load_modules():
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        yield path.stem.removeprefix("bench_"), module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="model names (bench_<name>.py)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args(argv)
    rows = []
    for name, module in load_modules():
        if args.only and name not in args.only:
            continue
        for bench in module.BENCHMARKS:
            for row in bench(args.quick):
                row.setdefault("model", name)
                rows.append(row)
                print(format_row(row), flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def format_row(row: dict) -> str:
    def fmt(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    target = row.get("target")
    verdict = ""
    if target is not None:
        met = "met" if (row.get("ratio") or 0) >= target else "MISSED"
        verdict = f"  (target >= {target:g}: {met})"
    memory = ""
    if row.get("memory_ratio") is not None:
        memory = (f" | peak {fmt(row.get('ours_peak_mb'))} MB vs "
                  f"{fmt(row.get('baseline_peak_mb'))} MB (x{fmt(row['memory_ratio'])})")
    return (
        f"{row['benchmark']:<60} | ours {fmt(row.get('ours_s'))} s | baseline "
        f"{fmt(row.get('baseline_s'))} s | ratio {fmt(row.get('ratio'))}{verdict}{memory}"
        + (f"  [{row['notes']}]" if row.get("notes") else "")
    )


if __name__ == "__main__":
    raise SystemExit(main())
