"""Notebook wall time: every lecture and solution, fast mode and default mode, kernel start in and out.

    .venv/bin/python benchmarks/bench_notebooks.py                  # 3 runs of each
    .venv/bin/python benchmarks/bench_notebooks.py lectures/01_convolution_arithmetic.ipynb --runs 1 --modes fast

Each run executes a notebook the way the tests do: ``course_utils.notebooks.run_notebook``
(a fresh kernel over IPC sockets, in the notebook's folder). nbclient's client is
replaced by a subclass that only notes the time at two moments, so one run gives:

  total         run_notebook from call to return: kernel start, every cell, kernel shutdown;
  kernel start  until the new kernel answers (``async_start_new_kernel_client`` returns);
  cells         from then until the last cell has run (shutdown excluded).

Runs are interleaved (every notebook and mode once, then again) so that a change in
the machine's load falls on all of them alike. Median of --runs with min and max.
Writes benchmarks/results/notebooks.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from measure import ROOT, load, spread, write  # noqa: E402

from nbclient.util import run_sync  # noqa: E402

from course_utils import notebooks  # noqa: E402

MARKS: dict[str, float] = {}  # this run's moments: "ready", "cells_done"


class TimedClient(notebooks.NotebookClient):
    """nbclient's client, noting when the kernel is ready and when the cells are done."""

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        MARKS["ready"] = time.perf_counter()
        return client

    async def async_execute(self, *args, **kwargs):
        nb = await super().async_execute(*args, **kwargs)
        MARKS["cells_done"] = time.perf_counter()  # run_notebook shuts the kernel down after this
        return nb

    execute = run_sync(async_execute)  # nbclient binds execute to its own async_execute


def run_once(path: Path, fast: bool) -> dict[str, float]:
    """Seconds of one run: total, kernel_start, cells."""
    MARKS.clear()
    start = time.perf_counter()
    notebooks.run_notebook(path, fast=fast)
    end = time.perf_counter()
    return {"total": end - start, "kernel_start": MARKS["ready"] - start, "cells": MARKS["cells_done"] - MARKS["ready"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all under lectures/ and solutions/)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each notebook in each mode (default 3)")
    parser.add_argument("--modes", nargs="+", default=["fast", "default"], choices=["fast", "default"])
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    start_load = load()
    paths = [p.resolve() for p in args.paths] or notebooks.stored_notebooks(folders=("lectures", "solutions"))
    notebooks.NotebookClient = TimedClient  # run_notebook looks the class up in its module at each call

    times: dict[tuple[str, str], list[dict]] = {}
    failures: list[dict] = []
    for run in range(args.runs):
        for path in paths:
            name = str(path.relative_to(ROOT))
            for mode in args.modes:
                try:
                    seconds = run_once(path, fast=mode == "fast")
                except Exception as err:  # a broken notebook is reported, the others still measured
                    failures.append({"notebook": name, "mode": mode, "run": run + 1,
                                     "error": f"{type(err).__name__}: {str(err)[:500]}"})
                    print(f"run {run + 1}/{args.runs} {mode:<7} {name}: FAILED", file=sys.stderr)
                    continue
                times.setdefault((name, mode), []).append(seconds)
                print(f"run {run + 1}/{args.runs} {mode:<7} {name}: {seconds['total']:6.1f} s "
                      f"(kernel start {seconds['kernel_start']:.1f} s)", file=sys.stderr)

    results = []
    for path in paths:
        name = str(path.relative_to(ROOT))
        entry = {"notebook": name}
        for mode in args.modes:
            runs = times.get((name, mode), [])
            if runs:
                entry[mode] = {part: spread([r[part] for r in runs]) for part in ("total", "kernel_start", "cells")}
        results.append(entry)
    out = write("notebooks", {
        "runs": args.runs, "modes": args.modes,
        "method": "run_notebook with nbclient's client subclassed to note when the kernel is ready and when "
                  "the last cell is done; total includes kernel start and shutdown, cells excludes both",
        "notebooks": results, "failures": failures}, start_load)

    print("\n| notebook | mode | total s (kernel start included) | cells s (excluded) | kernel start s |")
    print("|---|---|---:|---:|---:|")
    for entry in results:
        for mode in args.modes:
            if mode in entry:
                t, c, k = (entry[mode][p] for p in ("total", "cells", "kernel_start"))
                print(f"| {entry['notebook']} | {mode} | {t['median']:.1f} ({t['min']:.1f}-{t['max']:.1f}) "
                      f"| {c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f}) | {k['median']:.1f} |")
    for failure in failures:
        print(f"FAILED {failure['notebook']} ({failure['mode']}, run {failure['run']}): {failure['error'][:200]}")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
