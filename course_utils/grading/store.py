"""The results store: one JSON file per graded notebook, keyed by a fingerprint of everything that decided it.

    .grading/results/<assignment>/<student>/<notebook>.json   a NotebookResult (results.py)
    .grading/results/<assignment>/problems.json             students with no gradable notebook, and why
    .grading/results/<assignment>/recorded.json             which results are in nbgrader's gradebook

A stored result is reused only while its fingerprint (:func:`key_parts`) is the
same: the submission, the instructor's source and release notebooks, the checks
and the grader (both packages by content), the timeouts, sandbox on or off, the
instructor's secret (as a hash), the submission time and the versions of
Python, PyTorch and NumPy. When anything of it changes, the notebook is graded
again, and :func:`why_regrade` names the parts that changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import re
from pathlib import Path

from .. import checks
from .results import NotebookResult

__all__ = ["ResultStore", "results_folder", "key_parts", "fingerprint", "why_regrade", "package_digest", "file_digest"]

_PACKAGES = Path(__file__).resolve().parent.parent   # course_utils/


def results_folder(root: Path) -> Path:
    """Where a course keeps its grading results."""
    return Path(root) / ".grading" / "results"


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def package_digest(folder: Path) -> str:
    """sha256 over every ``.py`` file under ``folder`` (relative names and contents, in sorted order)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*.py") if "__pycache__" not in p.parts):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


_ASSIGNMENT_MODULE = re.compile(r"a\d+_\w+")


def _owner(path: Path, folder: Path) -> str | None:
    """The assignment a file of the checks package belongs to (``a1_convolutions.py``, or any file of a package
    ``a4_architectures_transfer/``), or None for the shared modules."""
    first = path.relative_to(folder).parts[0]
    name = first[:-3] if first.endswith(".py") else first
    return name if _ASSIGNMENT_MODULE.fullmatch(name) else None


def checks_digest(folder: Path, assignment: str) -> str:
    """sha256 over what decides an assignment's checks: the shared modules of the checks package (the guard,
    the comparisons), the assignment's own module (a file, or a package folder) and the assignment modules it
    imports (a1 reuses a0's cases), but not the checks of other assignments, so adding a3's checks does not
    regrade a0."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    wanted, todo = set(), [assignment]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for path in files:
            if _owner(path, folder) == name:
                todo += re.findall(r"^\s*from \.{1,2}(a\d+_\w+) import", path.read_text(), re.MULTILINE)
    h = hashlib.sha256()
    for path in files:
        owner = _owner(path, folder)
        if owner is not None and owner not in wanted:
            continue
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def checkpoints_digest(checks_folder: Path, checkpoints: Path, assignment: str) -> str:
    """sha256 over the course checkpoints (``course_utils/checkpoints/``) when the assignment's checks load them
    (their code mentions ``pretrained``), else ``"unused"``: a rebuilt checkpoint regrades a4, not a1."""
    own = [p for p in sorted(Path(checks_folder).rglob("*.py"))
           if "__pycache__" not in p.parts and _owner(p, Path(checks_folder)) == assignment]
    if not any("pretrained" in p.read_text() for p in own):
        return "unused"
    h = hashlib.sha256()
    for path in sorted(Path(checkpoints).glob("*")):
        if path.is_file():
            h.update(path.name.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def key_parts(root: Path, assignment: str, notebook: str, submission_digest: str, *, timeouts: object,
              sandboxed: bool, submitted_at: str = "") -> dict[str, str]:
    """What decides the grade of one notebook, part by part (the values are digests or short settings).

    ``timeouts`` is the session's ``Timeouts`` dataclass (every field counts); ``submitted_at`` is the
    submission time nbgrader reads (``timestamp.txt``), which decides the late penalty.
    """
    source = root / "solutions" / assignment / f"{notebook}.ipynb"
    if not source.is_file():
        source = root / "solutions" / assignment / f"{assignment}.ipynb"
    release = root / "assignments" / assignment / source.name
    limits = dataclasses.asdict(timeouts) if dataclasses.is_dataclass(timeouts) and not isinstance(timeouts, type) \
        else {"timeouts": str(timeouts)}
    return {
        "submission": submission_digest,
        "source notebook": file_digest(source),
        "release notebook": file_digest(release) if release.is_file() else "absent",
        "checks": checks_digest(_PACKAGES / "checks", assignment),
        "course checkpoints": checkpoints_digest(_PACKAGES / "checks", _PACKAGES / "checkpoints", assignment),
        "grader": package_digest(_PACKAGES / "grading"),
        "timeouts and limits": json.dumps(limits, sort_keys=True),
        "sandbox": "on" if sandboxed else "off",
        "secret": checks.secret_fingerprint(),
        "submission time": submitted_at,
        "versions": f"python {platform.python_version()}, torch {_version('torch')}, numpy {_version('numpy')}",
    }


def fingerprint(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def why_regrade(earlier: NotebookResult | None, parts: dict[str, str]) -> str | None:
    """None if ``earlier`` still stands; else why the notebook is graded (again), e.g. ``"checks changed"``."""
    if earlier is None:
        return "new"
    if earlier.key == fingerprint(parts) and earlier.key_parts == parts:
        return None
    changed = [name for name in parts if earlier.key_parts.get(name) != parts[name]]
    if not changed:  # a result stored before the parts were kept, or edited by hand
        return "stored result out of date"
    if changed == ["submission"]:
        return "submission changed"
    return " and ".join(name for name in changed) + " changed"


class ResultStore:
    """The results of one assignment under ``<results_dir>/<assignment>/`` (``<course>/.grading/results``)."""

    def __init__(self, results_dir: Path, assignment: str) -> None:
        self.results_dir, self.assignment = Path(results_dir), assignment
        self.folder = self.results_dir / assignment

    @classmethod
    def of(cls, root: Path, assignment: str) -> ResultStore:
        return cls(results_folder(root), assignment)

    def path(self, student: str, notebook: str) -> Path:
        return self.folder / student / f"{notebook}.json"

    def load(self, student: str, notebook: str) -> NotebookResult | None:
        """The stored result, or None if there is none or it cannot be read (then it is graded again)."""
        path = self.path(student, notebook)
        try:
            return NotebookResult.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def save(self, result: NotebookResult) -> Path:
        """Write atomically: a result file is whole or absent."""
        path = self.path(result.student, result.notebook)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
        temporary.replace(path)
        return path

    def all_results(self) -> dict[tuple[str, str], NotebookResult]:
        """Every stored result: (student, notebook) -> result (cumulative over all runs)."""
        out = {}
        for path in sorted(self.folder.glob("*/*.json")):
            result = self.load(path.parent.name, path.stem)
            if result is not None:
                out[(path.parent.name, path.stem)] = result
        return out

    def remove_other_notebooks(self, student: str, keep: set[str]) -> None:
        """Drop a student's results for notebooks that are no longer graded (e.g. an extra one)."""
        for path in (self.folder / student).glob("*.json"):
            if path.stem not in keep:
                path.unlink()

    # --- students with nothing to grade, and what is in the gradebook -------------------------------
    def _read(self, name: str) -> dict[str, str]:
        try:
            data = json.loads((self.folder / name).read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _write(self, name: str, data: dict[str, str]) -> None:
        exists = (self.folder / name).exists()
        if (exists and data == self._read(name)) or (not exists and not data):
            return  # unchanged: left as it is
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f"{name}.tmp"
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        temporary.replace(self.folder / name)

    def problems(self) -> dict[str, str]:
        """student -> why nothing of theirs could be graded (kept until they are graded)."""
        return self._read("problems.json")

    def set_problems(self, problems: dict[str, str]) -> None:
        self._write("problems.json", problems)

    def recorded(self) -> dict[str, str]:
        """"<student>/<notebook>" -> the key of the result nbgrader's gradebook holds."""
        return self._read("recorded.json")

    def set_recorded(self, recorded: dict[str, str]) -> None:
        self._write("recorded.json", recorded)
