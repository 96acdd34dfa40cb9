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

from .static_scan import scan_notebook

__all__ = ["Integrity", "read_submission", "repair_metadata", "compare_with_release"]


@dataclass
class Integrity:
    modified_locked: list[str] = field(default_factory=list)
    modified_tests: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    changed_metadata: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    kernelspec: str | None = None                      # the submission's, when it is not the release's
    suspicious: list[str] = field(default_factory=list)  # code that reaches for the grader's machinery

    @property
    def flags(self) -> list[str]:
        out = [f"kernelspec changed to {self.kernelspec!r} (graded with python3)"] if self.kernelspec else []
        out += [f"suspected tampering: {what}" for what in self.suspicious]
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
    except (OSError, ValueError, RecursionError) as err:
        return None, [f"invalid notebook: not readable as JSON ({type(err).__name__}: {str(err)[:120]}); "
                      f"not graded, needs review"]
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, ["invalid notebook: no list of cells; not graded, needs review"]
    problems = _drop_deep_parts(raw)
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as err:  # nbformat raises several types for broken files
        return None, [f"invalid notebook: {type(err).__name__}: {str(err)[:160]}; not graded, needs review"]
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid notebook format ({err.message[:120]}); graded from its cells, please review")
    except RecursionError:  # metadata nested deeper than the validator goes
        problems.append("invalid notebook format (nested too deeply to validate); graded from its cells, please "
                        "review")
    for cell in nb.cells:
        if not isinstance(cell.get("source"), str) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return None, ["invalid notebook: a cell has no source or an unknown type; not graded, needs review"]
    return nb, problems + repair_metadata(nb)


_MAX_NESTING = 64  # levels of metadata or outputs a real notebook never comes near


def _nesting(value: object) -> int:
    """How deeply lists and dicts nest in ``value`` (counted without recursion: it may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)) and depth > deepest:
            deepest = depth
            if deepest > _MAX_NESTING:
                break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack += [(child, depth + 1) for child in children if isinstance(child, (dict, list))]
    return deepest


def _drop_deep_parts(raw: dict) -> list[str]:
    """Empty, in place, any metadata, outputs or attachments nested too deeply to read; a flag for each."""
    problems = []
    if _nesting(raw.get("metadata")) > _MAX_NESTING:
        raw["metadata"] = {}
        problems.append("notebook metadata nested too deeply: ignored")
    for index, cell in enumerate(raw["cells"]):
        if not isinstance(cell, dict):
            continue
        for key, empty in (("metadata", {}), ("outputs", []), ("attachments", {})):
            if key in cell and _nesting(cell[key]) > _MAX_NESTING:
                cell[key] = type(empty)()
                problems.append(f"{key} of cell {index} nested too deeply: ignored" +
                                (", graded as the student's own cell" if key == "metadata" else ""))
    return problems


def repair_metadata(nb: nbformat.NotebookNode) -> list[str]:
    """Make the metadata the grader reads well-formed, in place; a flag for each thing dropped.

    Afterwards every cell's ``metadata`` and ``metadata.nbgrader`` are dicts and a
    grade_id is a non-empty str: a cell whose grading metadata was corrupted is
    graded as a cell of the student's own (a test cell from the source notebook).
    """
    problems = []
    if not isinstance(nb.get("metadata"), dict):
        nb["metadata"] = nbformat.NotebookNode()
        problems.append("corrupted notebook metadata: ignored")
    if not isinstance(nb.metadata.get("kernelspec", {}), dict):
        del nb.metadata["kernelspec"]
        problems.append("corrupted kernelspec: ignored (graded with python3)")
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = nbformat.NotebookNode()
            problems.append(f"corrupted grading metadata in cell {index}: ignored, graded as the student's own cell")
            continue
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or "grade_id" in meta and not (isinstance(grade_id, str) and grade_id) or \
                any(key in meta and not isinstance(meta[key], bool) for key in ("grade", "solution", "locked")) or \
                "points" in meta and (isinstance(meta["points"], bool) or not isinstance(meta["points"], (int, float))):
            del cell.metadata["nbgrader"]
            problems.append(f"corrupted grading metadata in cell {index} ({str(meta)[:80]!r}): ignored, graded as "
                            f"the student's own cell")
    return problems


def _grading_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return {key: meta.get(key) for key in ("grade", "solution", "locked", "points", "task")}


def _same_source(a: str, b: str) -> bool:
    return [line.rstrip() for line in a.strip().splitlines()] == [line.rstrip() for line in b.strip().splitlines()]


def _scan(submission: nbformat.NotebookNode) -> list[str]:
    """What the static scan (``static_scan``) notes in the code cells, aliases followed from cell to cell;
    code it cannot analyse is itself worth a look."""
    try:
        return scan_notebook(submission)
    except Exception as err:  # the scan notes what it cannot read itself; this is the last resort
        return [f"the code could not be analysed ({type(err).__name__}: {str(err)[:80]}); please look at it"]


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
    kernel = submission.metadata.get("kernelspec", {}).get("name")
    if kernel != release.metadata.get("kernelspec", {}).get("name"):
        report.kernelspec = str(kernel)
    report.suspicious = _scan(submission)
    seen = set()
    for cell, grade_id in zip(submission.cells, ids, strict=True):
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
