"""What a submission did to the notebook it was given: read it safely, compare it with the release.

Flags are for the instructor; none of them changes a score by itself (the
grader runs the released locked cells and the source's test cells anyway).
A student's copy of a test cell is compared with the *release*, which has no
hidden tests, so the routine restore of hidden tests at grading time is never
mistaken for tampering.
"""

from __future__ import annotations

import ast
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
    kernel = submission.metadata.get("kernelspec", {}).get("name")
    if kernel != release.metadata.get("kernelspec", {}).get("name"):
        report.kernelspec = str(kernel)
    report.suspicious = [f"cell {i}: {what}" for i, cell in enumerate(submission.cells) if cell.cell_type == "code"
                         for what in suspicious_code(cell.source)]
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


# Modules whose attributes a submission has no business replacing: the comparisons and the checks.
_GUARDED = {"numpy", "np", "torch", "math", "builtins", "course_utils", "checks", "sys", "unittest", "pytest"}
_CALLS = {"os._exit": "ends the process (os._exit)", "sys.exit": "ends the process (sys.exit)",
          "setattr": "setattr(...) on a module", "importlib.reload": "reloads a module"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def suspicious_code(source: str) -> list[str]:
    """What in one cell looks like an attempt on the grader (for a person to look at, never a score).

    Replacing attributes of numpy / torch / course_utils / builtins, touching
    ``sys.modules``, ending the process, or ``setattr`` on a module.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # IPython syntax (magics) or a plain error: nothing to say here
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            name = _dotted(target.value if isinstance(target, ast.Subscript) else target)
            if "." in name and name.split(".")[0] in _GUARDED or name.startswith("sys.modules"):
                found.append(f"line {node.lineno}: assigns {name}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _CALLS and (name != "setattr" or (node.args and _dotted(node.args[0]).split(".")[0]
                                                         in _GUARDED)):
                found.append(f"line {node.lineno}: {_CALLS[name]}")
    return found
