"""What a submission did to the notebook it was given: read it safely, compare it with the release.

Flags are for the instructor; none of them changes a score by itself (the
grader runs the released locked cells and the source's test cells anyway).
A student's copy of a test cell is compared with the *release*, which has no
hidden tests, so the routine restore of hidden tests at grading time is never
mistaken for tampering.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = ["Integrity", "read_submission", "compare_with_release"]


@dataclass
class Integrity:
    modified_locked: list[str] = field(default_factory=list)
    modified_tests: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    changed_metadata: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        out = []
        for label, ids in (("modified locked cell", self.modified_locked),
                           ("modified test cell (graded with the original)", self.modified_tests),
                           ("deleted cell", self.deleted), ("duplicated cell", self.duplicated),
                           ("changed grading metadata (graded with the original)", self.changed_metadata),
                           ("cell with an unknown grade_id", self.unknown)):
            out += [f"{label}: {grade_id}" for grade_id in ids]
        return out


def read_submission(path: Path) -> tuple[nbformat.NotebookNode | None, list[str]]:
    """The notebook, or None if it cannot be read at all; plus what is wrong with it."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        return None, [f"invalid notebook: not readable as JSON ({type(err).__name__}: {str(err)[:120]}); "
                      f"not graded, needs review"]
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, ["invalid notebook: no list of cells; not graded, needs review"]
    problems = []
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as err:  # nbformat raises several types for broken files
        return None, [f"invalid notebook: {type(err).__name__}: {str(err)[:160]}; not graded, needs review"]
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid notebook format ({err.message[:120]}); graded from its cells, please review")
    for cell in nb.cells:
        if not isinstance(cell.get("source"), str) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return None, ["invalid notebook: a cell has no source or an unknown type; not graded, needs review"]
    return nb, problems


def _grading_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return {key: meta.get(key) for key in ("grade", "solution", "locked", "points", "task")}


def _same_source(a: str, b: str) -> bool:
    return [line.rstrip() for line in a.strip().splitlines()] == [line.rstrip() for line in b.strip().splitlines()]


def compare_with_release(submission: nbformat.NotebookNode, release: nbformat.NotebookNode) -> Integrity:
    """Locked and test cells changed, cells deleted or duplicated, grading metadata changed."""
    released = {c.metadata["nbgrader"]["grade_id"]: c for c in release.cells
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")}
    ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in submission.cells]
    counts = Counter(i for i in ids if i)
    report = Integrity()
    report.deleted = [g for g in released if g not in counts]
    report.duplicated = sorted(g for g, n in counts.items() if n > 1)
    report.unknown = sorted(g for g in counts if g not in released)
    seen = set()
    for cell, grade_id in zip(submission.cells, ids):
        if grade_id not in released or grade_id in seen:
            continue
        seen.add(grade_id)
        original = released[grade_id]
        meta = original.metadata["nbgrader"]
        if _grading_meta(cell) != _grading_meta(original) or cell.cell_type != original.cell_type:
            report.changed_metadata.append(grade_id)
        if meta.get("solution") or _same_source(cell.source, original.source):
            continue
        if meta.get("grade"):
            report.modified_tests.append(grade_id)
        elif meta.get("locked"):
            report.modified_locked.append(grade_id)
    return report
