"""Test-suite wall time: `make test` (goal: under 10 minutes) and `make test-heavy`.

    .venv/bin/python benchmarks/bench_suite.py                      # each target once (about 11 minutes)
    .venv/bin/python benchmarks/bench_suite.py --runs 3 --targets test

Each target runs as a subprocess from the repository root, exactly as a user types
it (pytest-xdist, one worker per core), and is timed from start to exit. A
failing suite is timed all the same: its exit status and pytest's last line
are recorded beside the time. Targets alternate run after run. Median of --runs
with min and max. Writes benchmarks/results/suite.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from measure import ROOT, load, spread, write

GOALS = {"test": 600.0}  # seconds; the heavy tier has none


def run_target(target: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line.strip("= ") for line in done.stdout.splitlines() if line.startswith("=")]
    return {"seconds": seconds, "returncode": done.returncode, "pytest": lines[-1] if lines else done.stderr[-300:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each target (default 1: they take minutes)")
    parser.add_argument("--targets", nargs="+", default=["test", "test-heavy"], choices=["test", "test-heavy"])
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    start_load = load()
    raw: dict[str, list[dict]] = {target: [] for target in args.targets}
    for run in range(args.runs):
        for target in args.targets:
            outcome = run_target(target)
            raw[target].append(outcome)
            print(f"run {run + 1}/{args.runs} make {target}: {outcome['seconds']:.0f} s, exit {outcome['returncode']}"
                  f" ({outcome['pytest']})", file=sys.stderr)

    targets = {target: {"seconds": spread([r["seconds"] for r in runs]), "goal_seconds": GOALS.get(target),
                        "all_passed": all(r["returncode"] == 0 for r in runs), "raw": runs}
               for target, runs in raw.items()}
    out = write("suite", {"runs": args.runs, "targets": targets}, start_load)

    print("\n| target | median s | min s | max s | goal | result of the last run |")
    print("|---|---:|---:|---:|---|---|")
    for target, entry in targets.items():
        s, goal = entry["seconds"], entry["goal_seconds"]
        shown = f"< {goal:.0f} s" if goal else ""
        print(f"| make {target} | {s['median']:.0f} | {s['min']:.0f} | {s['max']:.0f} | {shown} | "
              f"{entry['raw'][-1]['pytest']} |")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
