"""The class's grades as a CSV (the gradebook, cumulative over every run) and a summary to read first.

One row per student ever graded for the assignment (a second batch does not drop
the first), one column per graded cell (a written answer shows its hand-given
score, or ``needs manual grade``), then:

    autograded      points from the trusted grader
    manual          points given by hand so far
    pending_manual  points still awaiting hand grading
    late_penalty    nbgrader's late penalty (from the submission time)
    score           what ``nbgrader export`` reports (its ``score``: raw score minus the late penalty)
    max_points      the assignment's points
    status          graded | graded - review flags | graded - NOT RECORDED ... | NOT GRADED ... - needs review
    flags           what the instructor should look at, "; "-separated
    failures        one line per failed test cell: "<grade_id>: <the check's full message>"
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .pipeline import ClassReport
from .results import FLAG_REVIEW, NotebookResult

__all__ = ["write_csv", "print_summary", "GradebookEntry", "read_gradebook"]


@dataclass(frozen=True)
class _Cell:
    notebook: str
    grade_id: str
    points: float
    automatic: bool     # an autograded test cell (False: a written answer or manually graded code)


@dataclass
class GradebookEntry:
    """One student's submission as nbgrader's gradebook holds it."""

    scores: dict[tuple[str, str], float | None] = field(default_factory=dict)  # (notebook, grade_id) -> score
    manual: dict[tuple[str, str], bool] = field(default_factory=dict)         # ... -> given by hand
    score: float = 0.0
    late_penalty: float = 0.0


def _cells(root: Path, assignment: str) -> list[_Cell]:
    cells = []
    for release in sorted((root / "assignments" / assignment).glob("*.ipynb")):
        source = root / "solutions" / assignment / release.name
        for cell in nbformat.read(source if source.is_file() else release, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade"):
                cells.append(_Cell(release.stem, meta["grade_id"], float(meta.get("points", 0)),
                                   cell.cell_type == "code" and not meta.get("solution")))
    return cells


def read_gradebook(root: Path, assignment: str) -> dict[str, GradebookEntry]:
    """student -> their recorded submission (empty if the gradebook does not know the assignment)."""
    from nbgrader.api import Gradebook, MissingEntry

    from .gradebook import nbgrader_api
    from .store import results_folder

    entries: dict[str, GradebookEntry] = {}
    api = nbgrader_api(root, results_folder(root))
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        try:
            submissions = gradebook.assignment_submissions(assignment)
        except MissingEntry:
            return entries
        for submission in submissions:
            entry = entries[submission.student_id] = GradebookEntry(
                score=float(submission.score or 0), late_penalty=float(submission.late_submission_penalty or 0))
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    key = (notebook.name, grade.name)
                    given = grade.manual_score is not None or not grade.needs_manual_grade
                    entry.scores[key] = float(grade.score) if given else None
                    entry.manual[key] = grade.manual_score is not None
    return entries


def _number(value: float) -> str:
    return f"{value:g}"


def write_csv(report: ClassReport, root: Path, path: Path) -> None:
    """The gradebook as a CSV: every student graded so far (see the module's docstring for the columns)."""
    cells = _cells(root, report.assignment)
    recorded = read_gradebook(root, report.assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *[c.grade_id for c in cells], "autograded", "manual", "pending_manual",
                         "late_penalty", "score", "max_points", "status", "flags", "failures"])
        for student in report.students:
            writer.writerow(_row(report, student, cells, recorded.get(student)))
    temporary.replace(path)


def _row(report: ClassReport, student: str, cells: list[_Cell], entry: GradebookEntry | None) -> list[str]:
    results: dict[str, NotebookResult] = {nb: r for (s, nb), r in report.results.items() if s == student}
    graded = {nb: r for nb, r in results.items() if not r.invalid}
    in_gradebook = entry is not None and student not in report.record_errors and bool(graded)
    row, manual, pending = [student], 0.0, 0.0
    for cell in cells:
        result = graded.get(cell.notebook)
        given = entry.scores.get((cell.notebook, cell.grade_id)) if in_gradebook and entry else None
        by_hand = bool(entry and entry.manual.get((cell.notebook, cell.grade_id)))
        if result is None:
            row.append("")
        elif cell.automatic:
            test = result.tests.get(cell.grade_id)
            value = cell.points if test is not None and test.passed else 0.0
            row.append(_number(given if by_hand and given is not None else value))
        elif given is None:
            row.append("needs manual grade")
            pending += cell.points
        else:
            row.append(_number(given))
            manual += given
    autograded = sum(r.score for r in graded.values())
    flags = [f for r in results.values() for f in r.all_flags]
    if student in report.problems:
        flags.append(report.problems[student])
    if student in report.record_errors:
        flags.append(report.record_errors[student])
    if not graded:
        invalid = any(r.invalid for r in results.values())
        why = "invalid notebook" if invalid else "grader error" if student in report.errors or \
            report.problems.get(student, "").startswith("grader error") else "nothing gradable was handed in"
        status = f"NOT GRADED: {why} - needs review"
    elif student in report.record_errors:
        status = "graded - NOT RECORDED in the gradebook"
    elif flags:
        status = FLAG_REVIEW
    else:
        status = "graded"
    failures = [f"{g}: {t.failure or t.feedback or 'failed'}" for r in graded.values()
                for g, t in r.tests.items() if not t.passed]
    total = sum(c.points for c in cells)
    row += [_number(autograded) if graded else "",  # never a plain 0 for a notebook nobody graded
            _number(manual) if graded else "", _number(pending) if graded else "",
            _number(entry.late_penalty) if in_gradebook and entry else "",
            _number(entry.score - entry.late_penalty) if in_gradebook and entry else "",
            _number(total), status, "; ".join(flags), "\n".join(failures)]
    return row


def print_summary(report: ClassReport, csv_path: Path, seconds: float) -> None:
    """What this run did, each of its students' scores and flags, and what needs the instructor."""
    for note in report.notes:
        print(f"note: {note}")
    mine = {k: r for k, r in report.results.items() if k[0] in report.this_run}
    students = sorted(report.this_run)
    print(f"\n{report.graded + report.reused + len(report.errors)} notebooks of {len(students)} students: "
          f"{report.graded} graded now, {report.reused} from earlier runs, in {seconds:.1f} s")
    for reason, count in sorted(report.reasons.items()):
        verb = "to grade" if reason == "new" else "to regrade"
        print(f"  {reason}: {count} {verb}")
    for (student, notebook), result in sorted(mine.items()):
        flags = result.all_flags
        line = f"  {student:<20} {notebook:<20} {result.score:g}/{result.max_score:g}"
        if result.invalid:
            line = f"  {student:<20} {notebook:<20} NOT GRADED (invalid notebook): needs review"
        print(line + (f"  [{len(flags)} flag(s)]" if flags else ""))
        for flag in flags:
            print(f"      - {flag}")
    for student in students:
        if student in report.errors:
            print(f"  {student:<20} GRADER ERROR (not a score): {report.errors[student][:300]}")
        elif student in report.problems and not any(s == student for s, _ in mine):
            print(f"  {student:<20} NOT GRADED: {report.problems[student]}")
    for student, error in sorted(report.record_errors.items()):
        print(f"  {student:<20} NOT RECORDED in the gradebook: {error}")
    pending = _pending(csv_path)
    if pending:
        points, waiting = pending
        print(f"\n{points:g} point{'s' if points != 1 else ''} await{'s' if points == 1 else ''} hand grading "
              f"({waiting} student{'s' if waiting != 1 else ''}): grade them in formgrader, then run this "
              f"command again to update the CSV")
    if report.unprotected:
        print("\nWARNING: student code ran with these protections OFF:")
        for item in report.unprotected:
            print(f"  - {item}")
    print(f"\ngrades: {csv_path} ({len(report.students)} students graded so far)")


def _pending(csv_path: Path) -> tuple[float, int] | None:
    with open(csv_path, newline="", encoding="utf-8") as f:
        values = [float(row["pending_manual"]) for row in csv.DictReader(f) if row["pending_manual"]]
    waiting = [v for v in values if v > 0]
    return (sum(waiting), len(waiting)) if waiting else None
