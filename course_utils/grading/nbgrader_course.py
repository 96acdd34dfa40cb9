"""nbgrader round trips in a throw-away course folder, for tests and instructors.

    with TempCourse("a0_warmup") as course:
        release = course.generate()                    # nbgrader generate_assignment
        problems = release_differences(release, COURSE_ROOT / "assignments" / "a0_warmup")
        course.submit("alice", COURSE_ROOT / "solutions/a0_warmup/a0_warmup.ipynb")
        scores = course.autograde("alice")             # {grade_id: CellScore}

Everything happens under a temporary directory: the course's own solutions/,
assignments/ and gradebook are never touched. nbgrader is run as a separate
process (its command-line tools), exactly as an instructor runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .gradebook_url import URL_VAR, course_directory, gradebook_url

__all__ = ["CellScore", "TempCourse", "release_differences", "assignment_ids", "nbgrader_env", "run_nbgrader",
           "COURSE_ROOT"]

COURSE_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class CellScore:
    """One graded cell of one submission, as nbgrader's gradebook stores it."""

    score: float
    max_score: float
    autograded: bool  # a code test cell (False: a written answer graded by hand)
    needs_manual_grade: bool


def assignment_ids(root: Path = COURSE_ROOT) -> list[str]:
    """The assignments that have a source folder in ``solutions/``, sorted."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


def nbgrader_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for nbgrader's tools: this Python's bin folder first on PATH.

    nbgrader starts helper programs (``alembic`` for the gradebook) by name, so
    they must be found in the same environment as nbgrader itself.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def run_nbgrader(args: list[str], cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``cwd``; raise with nbgrader's own output if it fails."""
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=nbgrader_env(env),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or "[ERROR]" in result.stderr or "| ERROR]" in result.stderr:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}) in {cwd}:\n"
                           f"{result.stderr[-4000:]}")
    return result


class TempCourse:
    """A temporary nbgrader course holding one assignment's source from this course.

    assignment: an id with a folder in ``source_root/solutions``.
    env:        extra environment for nbgrader (e.g. ``COURSE_GRADING_SEED``).
    db_url:     the gradebook (nbgrader's ``CourseDirectory.db_url``), written into the temporary course's
                nbgrader_config.py; default: ``env``'s ``COURSE_GRADEBOOK_URL``, else as the course is configured
                (SQLite in the temporary folder unless ``COURSE_GRADEBOOK_URL`` or ~/.jupyter says otherwise).
                A PostgreSQL database is not emptied afterwards: give each TempCourse a database of its own.
    """

    def __init__(self, assignment: str, source_root: Path = COURSE_ROOT, env: dict[str, str] | None = None,
                 keep: bool = False, db_url: str | None = None) -> None:
        source = source_root / "solutions" / assignment
        if not source.is_dir():
            raise ValueError(f"no assignment {assignment!r}: expected a folder {source}; "
                             f"known: {assignment_ids(source_root)}")
        self.assignment, self.source_root, self.env, self.keep = assignment, source_root, env or {}, keep
        self.root = Path(tempfile.mkdtemp(prefix=f"course-{assignment}-"))
        shutil.copy(source_root / "nbgrader_config.py", self.root / "nbgrader_config.py")
        db_url = db_url or self.env.get(URL_VAR)
        if db_url:  # in the course's own config, so nbgrader's tools and scores() read the same gradebook
            with open(self.root / "nbgrader_config.py", "a", encoding="utf-8") as f:
                f.write(f"\nc.CourseDirectory.db_url = {db_url!r}  # TempCourse(db_url=...)\n")
        shutil.copytree(source, self.root / "solutions" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))

    @property
    def db_url(self) -> str:
        """The gradebook nbgrader uses in this course (``CourseDirectory.db_url``)."""
        return gradebook_url(self.root)

    def __enter__(self) -> TempCourse:
        return self

    def __exit__(self, *exc) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def generate(self) -> Path:
        """``nbgrader generate_assignment``: returns the release folder it wrote."""
        run_nbgrader(["generate_assignment", self.assignment, "--force"], self.root, self.env)
        return self.root / "assignments" / self.assignment

    def submit(self, student: str, notebook: Path | str, name: str | None = None) -> Path:
        """Place a notebook in ``submitted/<student>/<assignment>/`` as nbgrader's collect would."""
        folder = self.root / "submitted" / student / self.assignment
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (name or f"{self.assignment}.ipynb")
        shutil.copy(notebook, target)
        return target

    def autograde(self, student: str, timeout: float = 900) -> dict[str, CellScore]:
        """``nbgrader autograde`` one student; return their scores per graded cell (by grade_id)."""
        run_nbgrader(["autograde", self.assignment, "--student", student, "--force"], self.root, self.env,
                     timeout=timeout)
        return self.scores(student)

    def scores(self, student: str) -> dict[str, CellScore]:
        """Per-cell scores of every notebook this student submitted, read from the course's gradebook."""
        from nbgrader.api import Gradebook

        out: dict[str, CellScore] = {}
        coursedir = course_directory(self.root)
        with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
            submission = gradebook.find_submission(self.assignment, student)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    out[grade.name] = CellScore(float(grade.score), float(grade.max_score),
                                                grade.cell_type == "code", bool(grade.needs_manual_grade))
        return out


def _notebook_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def release_differences(generated: Path, committed: Path) -> list[str]:
    """How a freshly generated release differs from the committed one (empty if identical).

    Notebooks are compared as parsed JSON, other files byte for byte.
    """
    if not committed.is_dir():
        return [f"{committed} does not exist: run `make release` and commit it"]
    files = {p.relative_to(generated) for p in generated.rglob("*") if p.is_file()}
    stored = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    problems = [f"missing from {committed}: {p}" for p in sorted(files - stored)]
    problems += [f"not produced by generate_assignment but in {committed}: {p}" for p in sorted(stored - files)]
    for rel in sorted(files & stored):
        new, old = generated / rel, committed / rel
        if rel.suffix == ".ipynb":
            a, b = _notebook_json(new), _notebook_json(old)
            if a != b:
                cells_a, cells_b = a.get("cells", []), b.get("cells", [])
                where = next((i for i, (x, y) in enumerate(zip(cells_a, cells_b, strict=False)) if x != y),
                             min(len(cells_a), len(cells_b)))
                problems.append(f"{committed / rel} differs from the generated release (first at cell {where}); "
                                f"run `make release`")
        elif new.read_bytes() != old.read_bytes():
            problems.append(f"{committed / rel} differs from the generated release; run `make release`")
    return problems
