"""What grading one notebook produces, as types: written once by the grader, read by the store, report and gradebook.

A :class:`NotebookResult` is saved as JSON (``to_json``) the moment it is ready
and read back with :meth:`NotebookResult.from_json`; the score, the flags and
the status are computed here and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["StepKind", "CellResult", "CellRun", "NotebookResult", "FLAG_REVIEW"]


class StepKind(enum.Enum):
    """What the grader does at one step of a submission's plan."""

    EXEC = "exec"     # run one of the student's (or a released locked) cells in the worker
    TEST = "test"     # run a graded test cell's checks in the grader


@dataclass
class CellResult:
    """The outcome of one graded test cell."""

    grade_id: str
    passed: bool
    output: str = ""                # what the checks printed (the ✓ lines)
    failure: str | None = None      # the full message of the first failing call (for the instructor)
    feedback: str | None = None     # what the student may see (hidden inputs are not revealed)
    error_name: str | None = None   # CheckFailure, ForbiddenReference, StudentGone, ...
    hidden_failed: bool = False
    flags: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        return cls(**_known(cls, data))


@dataclass
class CellRun:
    """One of the student's own cells as the worker ran it."""

    index: int                 # position in the submitted notebook
    grade_id: str | None
    status: str                # ok | error | timeout | died | refused (a forged or oversized answer) | skipped
    # (hidden checks run after the notebook's last cell, so no cell's output can hold their inputs)
    stdout: str = ""
    error: dict | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRun:
        return cls(**_known(cls, data))


FLAG_REVIEW = "graded - review flags"

@dataclass
class NotebookResult:
    """Everything the grader learned about one submitted notebook."""

    notebook: str
    tests: dict[str, CellResult] = field(default_factory=dict)
    runs: list[CellRun] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    points: dict[str, float] = field(default_factory=dict)   # grade_id -> points of every autograded cell
    invalid: bool = False
    restarts: int = 0
    seconds: float = 0.0
    # Set by the class run when the result is stored:
    student: str = ""
    key: str = ""                  # the fingerprint of everything that decided it (see the results store)
    key_parts: dict[str, str] = field(default_factory=dict)
    submission_sha256: str = ""

    @property
    def score(self) -> float:
        """Autograded points earned (0 for an invalid notebook, which is never graded)."""
        if self.invalid:
            return 0.0
        return sum(self.points.get(g, 0.0) for g, r in self.tests.items() if r.passed)

    @property
    def max_score(self) -> float:
        return sum(self.points.values())

    @property
    def all_flags(self) -> list[str]:
        """The notebook's flags, then each test cell's."""
        return self.flags + [f for test in self.tests.values() for f in test.flags]

    @property
    def status(self) -> str:
        if self.invalid:
            return "NOT GRADED: invalid notebook - needs review"
        return FLAG_REVIEW if self.all_flags else "graded"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotebookResult:
        """Read back what :meth:`to_json` wrote (unknown keys of older results are ignored)."""
        values = _known(cls, data)
        values["tests"] = {g: CellResult.from_json(t) for g, t in data.get("tests", {}).items()}
        values["runs"] = [CellRun.from_json(r) for r in data.get("runs", [])]
        return cls(**values)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
