"""The instructor's grading command: a whole class, in parallel, sandboxed, resumable.

    python -m course_utils.grading a0_warmup submitted/            # nbgrader's collect layout
    python -m course_utils.grading a0_warmup ~/Downloads/a0.zip    # LMS download
    python -m course_utils.grading a0_warmup submitted/ --feedback --jobs 4

1. Submissions are placed in ``submitted/`` (intake.py; originals are never changed).
2. Each notebook is graded by ``session.grade_notebook`` in its own sandbox, one
   per core, with a progress bar. A result is saved the moment it is ready, under
   ``.grading/results/``, keyed by the submission, the assignment's source, its
   checks and the grading seed: a re-run grades only what is new or changed, and
   an interrupted run loses nothing.
3. nbgrader's gradebook gets the official scores (gradebook.py); formgrader,
   manual grading, ``generate_feedback`` (hidden tests removed) and ``export`` work
   as usual.
4. A CSV (one row per student, one column per graded cell, plus flags) and a
   summary of everything that needs a look.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..checks import GRADING_SEED_VAR, grading_seed
from .gradebook import file_digest, record_grades, result_path
from .intake import DEFAULT_PATTERN, collect
from .nbgrader_course import COURSE_ROOT
from .protocol import checks_module, source_notebook
from .session import Timeouts

__all__ = ["main", "grade_class", "ClassReport"]

GRADER_VERSION = "1"
_SLOT = 0


def _set_slot(slots) -> None:
    global _SLOT
    _SLOT = slots.get()


def _sandbox_factory(sandboxed: bool):
    if not sandboxed:
        return None
    from .sandbox import Sandbox, default_readable

    def make(scratch: Path, env: dict):
        return Sandbox(scratch, readable=default_readable(), slot=_SLOT, env=env)

    return make


def _grade_one(root: str, assignment: str, student: str, notebook: str, out: str, key: str, digest: str,
               timeouts: Timeouts, sandboxed: bool) -> dict:
    from .session import GradingError, grade_notebook

    try:
        result = grade_notebook(Path(notebook), assignment, root=Path(root), timeouts=timeouts,
                                sandbox_factory=_sandbox_factory(sandboxed)).to_json()
    except (Exception, GradingError) as err:  # the grader's fault (or a bug here): say so, store no score
        kind = "" if isinstance(err, GradingError) else f"{type(err).__name__}: "
        return {"student": student, "notebook": Path(notebook).stem, "grader_error": f"{kind}{err}"}
    result.update(student=student, key=key, submission_sha256=digest)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=1), encoding="utf-8")
    temporary.replace(path)  # atomic: a result file is whole or absent
    return result


@dataclass
class ClassReport:
    results: dict[tuple[str, str], dict]   # (student, notebook) -> result
    graded: int                            # graded in this run (the rest came from earlier runs)
    notes: list[str]
    unprotected: list[str]
    errors: dict[str, str]                 # student -> the grader's own failure (no score stored)
    record_errors: dict[str, str]          # student -> why nbgrader could not record the grades


def _key(root: Path, assignment: str, digest: str, sandboxed: bool) -> str:
    h = hashlib.sha256()
    for part in (GRADER_VERSION, str(sandboxed), digest, file_digest(source_notebook(assignment, root)),
                 file_digest(Path(checks_module(assignment).__file__)), str(grading_seed())):
        h.update(part.encode())
    return h.hexdigest()


def grade_class(assignment: str, source: Path, *, root: Path = COURSE_ROOT, jobs: int | None = None,
                timeouts: Timeouts = Timeouts(), sandboxed: bool = True, pattern: str = DEFAULT_PATTERN,
                progress: bool = True) -> ClassReport:
    """Grade every submission of ``assignment`` in ``source``; record the grades in nbgrader's gradebook."""
    from tqdm.auto import tqdm

    submissions, notes = collect(source, root, assignment, pattern)
    results_dir = root / ".grading" / "results"
    unprotected = []
    if sandboxed:
        from .sandbox import Sandbox

        probe = root / ".grading" / "probe"
        probe.mkdir(parents=True, exist_ok=True)
        unprotected = [f"{p.name}: {p.detail}" for p in Sandbox(probe).unprotected()]
    else:
        unprotected = ["everything: the sandbox was switched off (--no-sandbox)"]

    results: dict[tuple[str, str], dict] = {}
    todo = []
    for submission in submissions:
        for notebook in submission.notebooks():
            digest = file_digest(notebook)
            key = _key(root, assignment, digest, sandboxed)
            out = result_path(results_dir, assignment, submission.student, notebook.stem)
            earlier = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
            if earlier and earlier.get("key") == key:
                results[(submission.student, notebook.stem)] = earlier
            else:
                todo.append((submission.student, notebook, out, key, digest))

    jobs = jobs or os.cpu_count() or 1
    errors: dict[str, str] = {}
    if todo:
        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in range(jobs):
            slots.put(slot)
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context, initializer=_set_slot,
                                 initargs=(slots,)) as pool:
            futures = [pool.submit(_grade_one, str(root), assignment, student, str(nb), str(out), key, digest,
                                   timeouts, sandboxed) for student, nb, out, key, digest in todo]
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"grading {assignment}",
                               unit="notebook", disable=not progress):
                result = future.result()
                if "grader_error" in result:
                    errors[result["student"]] = result["grader_error"]
                else:
                    results[(result["student"], result["notebook"])] = result

    recorded_path = results_dir / assignment / "recorded.json"
    recorded = json.loads(recorded_path.read_text()) if recorded_path.is_file() else {}
    record_errors: dict[str, str] = {}
    to_record = sorted({s for (s, nb), r in results.items()
                        if not r.get("invalid") and recorded.get(f"{s}/{nb}") != r["key"]})
    if to_record:
        record_errors = record_grades(root, assignment, to_record, results_dir)
        for (s, nb), r in results.items():
            if s in to_record and s not in record_errors:
                recorded[f"{s}/{nb}"] = r["key"]
        recorded_path.parent.mkdir(parents=True, exist_ok=True)
        recorded_path.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    return ClassReport(results, len(todo) - len(errors), notes, unprotected, errors, record_errors)


def _manual_scores(root: Path, assignment: str) -> dict[tuple[str, str, str], float | None]:
    """(student, notebook, grade_id) -> the hand-given score, or None while it still needs grading."""
    from .gradebook import _api
    from nbgrader.api import Gradebook

    scores = {}
    api = _api(root, root / ".grading" / "results")
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.cell_type != "code" or grade.needs_manual_grade:
                        value = None if grade.needs_manual_grade else grade.score
                        scores[(submission.student_id, notebook.name, grade.name)] = value
    return scores


def write_csv(report: ClassReport, root: Path, assignment: str, path: Path) -> None:
    """One row per student: each graded cell's score, the totals, the flags."""
    import nbformat

    source = nbformat.read(source_notebook(assignment, root), as_version=4)
    cells = [(c.metadata["nbgrader"]["grade_id"], float(c.metadata["nbgrader"].get("points", 0)),
              c.cell_type == "code" and not c.metadata["nbgrader"].get("solution"))
             for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")]
    manual = _manual_scores(root, assignment)
    students = sorted({s for s, _ in report.results} | set(report.errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *[g for g, _, _ in cells], "autograded", "max_points", "status", "flags"])
        for student in students:
            result = next((r for (s, _), r in report.results.items() if s == student), None)
            row, auto, status = [student], 0.0, "graded"
            if result is None or result.get("invalid"):
                status = "NOT GRADED: " + ("grader error" if result is None else "invalid notebook") + \
                    " - needs review"
                row += [""] * len(cells)
            else:
                for grade_id, points, automatic in cells:
                    if automatic:
                        test = result["tests"].get(grade_id)
                        value = points if test and test["passed"] else 0.0
                        auto += value
                        row.append(f"{value:g}")
                    else:
                        given = manual.get((student, result["notebook"], grade_id))
                        row.append("needs manual grade" if given is None else f"{given:g}")
                if result["flags"] or any(t.get("flags") for t in result["tests"].values()):
                    status = "graded - review flags"
            flags = [] if result is None else result["flags"] + \
                [f for t in result["tests"].values() for f in t.get("flags", [])]
            if student in report.errors:
                flags.append(f"grader error: {report.errors[student][:300]}")
            if student in report.record_errors:
                flags.append(report.record_errors[student])
                status = "graded - NOT RECORDED in the gradebook"
            graded = result is not None and not result.get("invalid")
            total = f"{auto:g}" if graded else ""  # never a plain 0 for a notebook nobody graded
            row += [total, f"{sum(p for _, p, _ in cells):g}", status, "; ".join(flags)]
            writer.writerow(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.split("\n")[0])
    parser.add_argument("assignment", help="assignment id, e.g. a0_warmup")
    parser.add_argument("submissions", type=Path, help="nbgrader's submitted/ folder, or an LMS zip or folder")
    parser.add_argument("--jobs", type=int, default=None, help="parallel graders (default: one per core)")
    parser.add_argument("--cell-timeout", type=float, default=Timeouts.cell, help="seconds per student cell")
    parser.add_argument("--call-timeout", type=float, default=Timeouts.call,
                        help="seconds per call of a student's function by a check")
    parser.add_argument("--pattern", default=DEFAULT_PATTERN, help="LMS file-name regexp with a student_id group")
    parser.add_argument("--csv", type=Path, help="where to write the grades (default: grades-<assignment>.csv)")
    parser.add_argument("--feedback", action="store_true", help="also write feedback/ (hidden tests removed)")
    parser.add_argument("--no-sandbox", action="store_true", help="run student code unsandboxed (not advised)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course directory (default: here)")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"{root} is not a course directory: expected nbgrader_config.py there (use --root)")
    from ..assignments import CourseError, resolve

    try:
        args.assignment = resolve(args.assignment, root, folder="solutions")  # "a0" -> "a0_warmup"
    except CourseError as err:
        parser.error(str(err))
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs its helpers (alembic) by name
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    if not os.environ.get(GRADING_SEED_VAR):
        print(f"WARNING: {GRADING_SEED_VAR} is not set: the hidden checks use the public default seed.",
              file=sys.stderr)
    start = time.perf_counter()
    try:
        report = grade_class(args.assignment, args.submissions, root=root, jobs=args.jobs,
                             timeouts=Timeouts(cell=args.cell_timeout, call=args.call_timeout),
                             sandboxed=not args.no_sandbox, pattern=args.pattern)
    except (FileNotFoundError, ValueError) as err:  # no submissions there, not a zip, bad pattern...
        parser.error(str(err))
    csv_path = args.csv or root / f"grades-{args.assignment}.csv"
    write_csv(report, root, args.assignment, csv_path)
    if args.feedback:
        from .gradebook import _api

        outcome = _api(root, root / ".grading" / "results").generate_feedback(args.assignment)
        if not outcome["success"]:
            print(f"feedback failed:\n{outcome.get('error')}", file=sys.stderr)
    _print_summary(report, csv_path, time.perf_counter() - start)
    return 1 if report.errors or report.record_errors else 0


def _print_summary(report: ClassReport, csv_path: Path, seconds: float) -> None:
    for note in report.notes:
        print(f"note: {note}")
    students = sorted({s for s, _ in report.results})
    print(f"\n{len(report.results)} notebooks of {len(students)} students: {report.graded} graded now, "
          f"{len(report.results) - report.graded} from earlier runs, in {seconds:.1f} s")
    for (student, notebook), result in sorted(report.results.items()):
        flags = result["flags"] + [f for t in result["tests"].values() for f in t.get("flags", [])]
        score = sum(result["points"][g] for g, t in result["tests"].items() if t["passed"])
        total = sum(result["points"].values())
        line = f"  {student:<20} {notebook:<20} {score:g}/{total:g}"
        if result.get("invalid"):
            line = f"  {student:<20} {notebook:<20} NOT GRADED (invalid notebook): needs review"
        print(line + (f"  [{len(flags)} flag(s)]" if flags else ""))
        for flag in flags:
            print(f"      - {flag}")
    for student, error in sorted(report.errors.items()):
        print(f"  {student:<20} GRADER ERROR (not a score): {error[:300]}")
    for student, error in sorted(report.record_errors.items()):
        print(f"  {student:<20} NOT RECORDED in the gradebook: {error}")
    if report.unprotected:
        print("\nWARNING: student code ran with these protections OFF:")
        for item in report.unprotected:
            print(f"  - {item}")
    print(f"\ngrades: {csv_path}")
