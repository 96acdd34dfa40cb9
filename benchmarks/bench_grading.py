"""Grading a class of a0 submissions: stock nbgrader autograde versus the course's sandboxed grader.

    .venv/bin/python benchmarks/bench_grading.py                  # 30 submissions, 3 runs of each
    .venv/bin/python benchmarks/bench_grading.py --runs 1 --submissions 12

The same simulated class (correct, wrong and blank answers in turn) is graded,
run after run, side by side:

(a) stock ``nbgrader autograde a0_warmup``, sequential, every notebook in a
    Jupyter kernel; the course is registered first with ``nbgrader
    generate_assignment a0_warmup --force``, which is not timed;
(b) ``python -m course_utils.grading a0_warmup subs``, sandbox on, a fresh
    course (so a fresh results cache) each run; timed as a whole: intake,
    grading (one job per core), recording into the gradebook, the CSV. It runs
    through ``cli.main`` with ``record_grades`` wrapped in a timer, so the
    nbgrader autograde step it contains (its Execute step replaced by the
    trusted results) is reported on its own.

Both must give every student the same score, or the numbers mean nothing: the
script checks. The speed-up is given both as the ratio of the medians and as the
median of each run's own ratio. Prints a markdown table; writes
``benchmarks/results/grading.json`` (with the date, the machine and the load
average at the start and the end).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import nbformat  # noqa: E402

from measure import load, write  # noqa: E402

from course_utils.grading.nbgrader_course import nbgrader_env  # noqa: E402

ASSIGNMENT = "a0_warmup"
SEED = secrets.token_hex(16)  # official grading refuses a guessable secret
OUT = ROOT / "benchmarks" / "results" / "grading.json"

WRONG = '''
def conv_output_size(i, k, s=1, p=0, d=1):
    if k < 1 or s < 1 or d < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output for these settings")
    return (i + 2 * p - k) // s + 1     # forgets the dilation
'''
KINDS = ("correct", "wrong", "blank")
EXPECTED = {"correct": 4.0, "wrong": 1.0, "blank": 0.0}  # autograded points of each kind

# cli.main with nbgrader's recording step timed; the seconds go to the file named in argv[1]
PIPELINE = """
import json, sys, time
from course_utils.grading import cli, pipeline
spent = []
record = pipeline.record_grades
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return record(*args, **kwargs)
    finally:
        spent.append(time.perf_counter() - start)
pipeline.record_grades = timed
code = cli.main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump({"record_seconds": sum(spent)}, f)
sys.exit(code)
"""


def solution() -> str:
    nb = nbformat.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_output_size")
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


def make_class(folder: Path, count: int) -> dict[str, str]:
    """``count`` submissions in nbgrader's submitted layout under ``folder``: {student: kind}."""
    release = nbformat.read(ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answer = next(i for i, c in enumerate(release.cells)
                  if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_output_size")
    sources = {"correct": solution(), "wrong": WRONG, "blank": None}
    students = {}
    for n in range(count):
        student, kind = f"s{n + 1:03d}", KINDS[n % len(KINDS)]
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        if sources[kind] is not None:
            nb.cells[answer].source = sources[kind]
        path = folder / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        students[student] = kind
    return students


def new_course(parent: Path, name: str) -> Path:
    root = parent / name
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root)
    for part in ("solutions", "assignments"):
        shutil.copytree(ROOT / part / ASSIGNMENT, root / part / ASSIGNMENT)
    return root


def run(argv: list[str], cwd: Path) -> float:
    """Seconds ``argv`` took; raises with its output if it failed."""
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, cwd=cwd, env=nbgrader_env({"COURSE_GRADING_SEED": SEED}),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "[ERROR]" in done.stderr:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds


def scores(root: Path) -> dict[str, float]:
    """Autograded points per student, from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="dl4cv") as gradebook:
        return {s.student_id: float(s.code_score) for s in gradebook.assignment_submissions(ASSIGNMENT)}


def stock(parent: Path, subs: Path) -> dict:
    """(a): nbgrader generate_assignment (untimed), then nbgrader autograde (timed)."""
    root = new_course(parent, "stock")
    run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"], root)
    shutil.copytree(subs, root / "submitted")
    seconds = run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], root)
    return {"seconds": seconds, "scores": scores(root)}


def pipeline(parent: Path, subs: Path) -> dict:
    """(b): the course's grading command, sandbox on, fresh course and results cache."""
    root = new_course(parent, "pipeline")
    timings = parent / "pipeline-timings.json"
    from course_utils.grading.sandbox import bubblewrap_problem

    unsandboxed = ["--no-sandbox"] if bubblewrap_problem() else []  # refused otherwise; warned about in main()
    seconds = run([sys.executable, "-c", PIPELINE, str(timings), ASSIGNMENT, str(subs), "--root", str(root),
                   *unsandboxed], root)
    results = sorted((root / ".grading" / "results" / ASSIGNMENT).glob(f"*/{ASSIGNMENT}.json"))
    from course_utils.grading.results import NotebookResult

    per_notebook = [NotebookResult.from_json(json.loads(p.read_text())).seconds for p in results]
    return {"seconds": seconds, "record_seconds": json.loads(timings.read_text())["record_seconds"],
            "notebook_seconds": statistics.mean(per_notebook), "scores": scores(root)}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--submissions", type=int, default=30, help="notebooks in the class (default 30)")
    args = parser.parse_args()
    if args.runs < 1 or args.submissions < 1:
        parser.error("--runs and --submissions must be at least 1")
    start_load = load()
    from course_utils.grading.sandbox import bubblewrap_problem

    problem = bubblewrap_problem()
    if problem:
        print(f"WARNING: the sandbox is not complete here ({problem}); (b) runs with --no-sandbox", file=sys.stderr)

    n = args.submissions
    runs: dict[str, list[dict]] = {"stock": [], "pipeline": []}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs = Path(tmp) / "subs"
        students = make_class(subs, n)
        for i in range(args.runs):  # side by side: a, b, a, b, ...
            for name, grade in (("stock", stock), ("pipeline", pipeline)):
                folder = Path(tmp) / f"{name}-{i}"
                folder.mkdir()
                outcome = grade(folder, subs)
                wrong = {s: (outcome["scores"].get(s), EXPECTED[k]) for s, k in students.items()
                         if outcome["scores"].get(s) != EXPECTED[k]}
                if wrong:
                    raise SystemExit(f"{name} run {i + 1} gave unexpected scores (got, expected): {wrong}")
                del outcome["scores"]
                runs[name].append(outcome)
                print(f"run {i + 1}/{args.runs} {name:<8}: {outcome['seconds']:6.1f} s", file=sys.stderr)
                shutil.rmtree(folder)

    per = {name: spread([r["seconds"] / n for r in rs]) for name, rs in runs.items()}
    record = spread([r["record_seconds"] / n for r in runs["pipeline"]])
    notebook = spread([r["notebook_seconds"] for r in runs["pipeline"]])
    speedup = per["stock"]["median"] / per["pipeline"]["median"]
    per_run = [a["seconds"] / b["seconds"] for a, b in zip(runs["stock"], runs["pipeline"], strict=True)]
    report = {
        "assignment": ASSIGNMENT, "submissions": n, "runs": args.runs,
        "mix": {k: sum(v == k for v in students.values()) for k in KINDS},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "sandbox": problem or "on",
        "seconds_per_submission": per,
        "pipeline_nbgrader_autograde_seconds_per_submission": record,
        "pipeline_seconds_per_notebook_graded": notebook,
        "speedup": speedup,
        "speedup_per_run": spread(per_run),  # (a)/(b) within each run, side by side
        "raw": runs,
    }
    write("grading", report, start_load)

    def row(what: str, s: dict) -> str:
        return f"| {what} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} |"

    print(f"\nGrading {n} a0_warmup submissions ({report['mix']}), {args.runs} run(s), "
          f"{os.cpu_count()} CPUs, sandbox {report['sandbox']}\n")
    print("| seconds per submission | median | min | max |")
    print("|---|---:|---:|---:|")
    print(row("(a) stock `nbgrader autograde` (sequential)", per["stock"]))
    print(row(f"(b) `python -m course_utils.grading` (sandboxed, {os.cpu_count()} jobs)", per["pipeline"]))
    print(row("&nbsp;&nbsp;of which nbgrader autograde with trusted results (recording)", record))
    print(row("(b) one notebook, sandbox start to last check (per job)", notebook))
    print(f"\nspeed-up (a)/(b), medians: {speedup:.2f}x; within each run: {spread(per_run)['median']:.2f}x "
          f"({spread(per_run)['min']:.2f}-{spread(per_run)['max']:.2f})")
    print(f"written: {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
