"""Autograde seconds per submission for every assignment in solutions/, with the course's grading command.

    .venv/bin/python benchmarks/bench_autograde.py                    # every assignment, 3 runs
    .venv/bin/python benchmarks/bench_autograde.py --runs 1 --copies 1 a1_convolutions

For each assignment a class of 2 x --copies students is made: the solution
notebook (full marks) and the untouched release (zero) in turn. Each run grades
it with ``python -m course_utils.grading <id> subs --root <fresh course>``,
sandbox on, one job per core, a fresh course so nothing comes from the results
cache. Two figures per assignment:

  one submission   the grader's own time for one notebook, sandbox start to last
                   check (``seconds`` in its result), mean over the copies of a kind:
                   what one submission costs whatever the number of cores. The
                   goal is judged on this figure for the solution (the slower kind).
  class / N        the command's wall time divided by the number of submissions
                   (parallel jobs, intake, gradebook recording and CSV included).

Assignments alternate run after run. Median of --runs with min and max.
Writes benchmarks/results/autograde.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT, load, spread, write

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from course_utils.grading.nbgrader_course import assignment_ids, nbgrader_env  # noqa: E402

SEED = secrets.token_hex(16)  # official grading refuses a guessable secret
GOALS = {"a1": 30, "a2": 30, "a3": 60, "a4": 90, "a5": 60, "a6": 60}  # seconds per submission, from issue #6
KINDS = ("solution", "blank")


def goal(assignment: str) -> float | None:
    match = re.match(r"a\d+", assignment)
    return GOALS.get(match.group()) if match else None


def make_class(folder: Path, assignment: str, copies: int) -> dict[str, str]:
    """{student: kind}: the solution and the untouched release, ``copies`` of each, in turn."""
    notebooks = {"solution": ROOT / "solutions" / assignment / f"{assignment}.ipynb",
                 "blank": ROOT / "assignments" / assignment / f"{assignment}.ipynb"}
    students = {}
    for n in range(2 * copies):
        student, kind = f"s{n + 1:03d}", KINDS[n % 2]
        target = folder / student / assignment
        target.mkdir(parents=True)
        shutil.copy(notebooks[kind], target / f"{assignment}.ipynb")
        students[student] = kind
    return students


def grade(parent: Path, assignment: str, subs: Path) -> dict:
    """One run of the grading command on a fresh course: wall seconds and each notebook's result."""
    root = parent / "course"
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root)
    for part in ("solutions", "assignments"):
        shutil.copytree(ROOT / part / assignment, root / part / assignment)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", assignment, str(subs), "--root", str(root)],
                          cwd=root, env=nbgrader_env({"COURSE_GRADING_SEED": SEED}), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"grading {assignment} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                           f"{done.stderr[-2000:]}")
    results = {p.parent.name: json.loads(p.read_text())
               for p in (root / ".grading" / "results" / assignment).glob(f"*/{assignment}.json")}
    return {"seconds": seconds, "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: every folder in solutions/)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per assignment (default 3)")
    parser.add_argument("--copies", type=int, default=2, help="students of each kind (default 2: 4 submissions)")
    args = parser.parse_args()
    if args.runs < 1 or args.copies < 1:
        parser.error("--runs and --copies must be at least 1")
    start_load = load()
    from course_utils.grading.sandbox import bubblewrap_problem

    sandbox = bubblewrap_problem() or "on"
    assignments = args.assignments or assignment_ids()
    raw: dict[str, list[dict]] = {a: [] for a in assignments}
    unexpected: dict[str, list[str]] = {a: [] for a in assignments}
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        classes = {}
        for assignment in assignments:
            classes[assignment] = make_class(Path(tmp) / "subs" / assignment, assignment, args.copies)
        for run in range(args.runs):
            for assignment in assignments:
                folder = Path(tmp) / f"run-{run}-{assignment}"
                folder.mkdir()
                outcome = grade(folder, assignment, Path(tmp) / "subs" / assignment)
                shutil.rmtree(folder)
                per_kind = {kind: [] for kind in KINDS}
                for student, kind in classes[assignment].items():
                    result = outcome["results"][student]
                    per_kind[kind].append(result["seconds"])
                    passed = [t["passed"] for t in result["tests"].values()]
                    if (kind == "solution" and not all(passed)) or (kind == "blank" and any(passed)):
                        unexpected[assignment].append(f"run {run + 1} {student} ({kind}): "
                                                      f"{sum(passed)}/{len(passed)} checks passed")
                n = len(classes[assignment])
                raw[assignment].append({"class_seconds": outcome["seconds"],
                                        **{f"{k}_seconds": statistics.mean(v) for k, v in per_kind.items()}})
                print(f"run {run + 1}/{args.runs} {assignment}: {outcome['seconds']:.1f} s for {n} submissions; "
                      f"one solution {raw[assignment][-1]['solution_seconds']:.1f} s", file=sys.stderr)

    results = {}
    for assignment, runs in raw.items():
        n = 2 * args.copies
        results[assignment] = {
            "submissions": n, "goal_seconds": goal(assignment),
            "one_submission_seconds": {kind: spread([r[f"{kind}_seconds"] for r in runs]) for kind in KINDS},
            "class_seconds_per_submission": spread([r["class_seconds"] / n for r in runs]),
            "unexpected_scores": unexpected[assignment], "raw": runs}
    out = write("autograde", {"runs": args.runs, "copies": args.copies, "sandbox": sandbox,
                              "jobs": "one per core", "assignments": results}, start_load)

    print("\n| assignment | one solution s | one blank s | class wall / N s | goal | met |")
    print("|---|---:|---:|---:|---|---|")
    for assignment, entry in results.items():
        s, b, c = (entry["one_submission_seconds"]["solution"], entry["one_submission_seconds"]["blank"],
                   entry["class_seconds_per_submission"])
        g = entry["goal_seconds"]
        met = "" if g is None else ("yes" if s["median"] < g else "no")
        print(f"| {assignment} | {s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}) | {b['median']:.1f} "
              f"| {c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f}) | {'' if g is None else f'< {g} s'} | {met} |")
        for problem in entry["unexpected_scores"]:
            print(f"  unexpected score: {problem}")
    print(f"\nsandbox {sandbox}; wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
