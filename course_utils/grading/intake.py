"""Submissions in, as nbgrader's ``submitted/<student>/<assignment>/`` folders; originals untouched.

Accepted: a folder in nbgrader's submitted layout (``<student>/<assignment>/*.ipynb``,
what ``nbgrader collect`` makes), or LMS downloads: a zip file or a folder of
files named after the student, e.g. Canvas's ``doejane_12345_67890_a0_warmup.ipynb``;
a per-student zip is unpacked. The file-name pattern is a regular expression
with a ``student_id`` group (as for ``nbgrader zip_collect``).

Copies go into the course's ``submitted/``. An earlier, different copy of a
student's submission is moved to ``.grading/replaced/<time>/`` first, never
overwritten.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Submission", "collect", "DEFAULT_PATTERN"]

#: Canvas-style names: <student>_[LATE_]<number>_<number>_<original file name>
DEFAULT_PATTERN = r"^(?P<student_id>[A-Za-z0-9.\-]+?)_(?:LATE_)?\d+_\d+_(?P<file_id>.+)$"


@dataclass(frozen=True)
class Submission:
    student: str
    folder: Path        # <course>/submitted/<student>/<assignment>

    def notebooks(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.ipynb"))


def _is_submitted_layout(folder: Path, assignment: str) -> bool:
    return any((child / assignment).is_dir() for child in folder.iterdir() if child.is_dir())


def _same_files(a: Path, b: Path) -> bool:
    files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
    return files_a.keys() == files_b.keys() and all(files_a[k].read_bytes() == files_b[k].read_bytes()
                                                    for k in files_a)


def _place(student: str, incoming: Path, root: Path, assignment: str, log: list[str]) -> Submission:
    target = root / "submitted" / student / assignment
    if target.exists():
        if _same_files(incoming, target):
            return Submission(student, target)
        keep = root / ".grading" / "replaced" / time.strftime("%Y%m%d-%H%M%S") / student / assignment
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), keep)
        log.append(f"{student}: a different earlier submission was moved to {keep}")
    shutil.copytree(incoming, target)
    return Submission(student, target)


def _unpack(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = Path(member.filename)
            if member.is_dir() or name.is_absolute() or ".." in name.parts or "__MACOSX" in name.parts:
                continue
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def collect(source: Path, root: Path, assignment: str, pattern: str = DEFAULT_PATTERN) -> tuple[list[Submission], list[str]]:
    """The submissions in ``source``, placed in ``root/submitted``; and notes on what was done."""
    source = Path(source).resolve()
    if not source.exists():
        raise FileNotFoundError(f"no submissions at {source}: expected a folder or a zip file")
    notebook_names = sorted(p.name for p in (root / "assignments" / assignment).glob("*.ipynb"))
    if not notebook_names:
        raise ValueError(f"assignment {assignment!r} has no released notebook in {root / 'assignments' / assignment}")
    log: list[str] = []
    submitted = (root / "submitted").resolve()
    if source.is_dir() and _is_submitted_layout(source, assignment):
        students = sorted(c.name for c in source.iterdir() if (c / assignment).is_dir())
        if source == submitted:
            return [Submission(s, submitted / s / assignment) for s in students], log
        return [_place(s, source / s / assignment, root, assignment, log) for s in students], log

    with tempfile.TemporaryDirectory(prefix="lms-") as tmp:
        flat = Path(tmp) / "files"
        flat.mkdir()
        if source.is_file():
            if not zipfile.is_zipfile(source):
                raise ValueError(f"{source} is neither a folder nor a zip file")
            _unpack(source, flat)
        else:
            shutil.copytree(source, flat, dirs_exist_ok=True)
        regexp = re.compile(pattern)
        per_student: dict[str, Path] = {}
        unmatched = []
        for item in sorted(p for p in flat.rglob("*") if p.is_file()):
            match = regexp.match(item.name)
            if not match or item.suffix not in (".ipynb", ".zip"):
                if item.suffix in (".ipynb", ".zip"):
                    unmatched.append(item.name)
                continue
            student = match.group("student_id")
            folder = per_student.setdefault(student, Path(tmp) / "by-student" / student)
            folder.mkdir(parents=True, exist_ok=True)
            if item.suffix == ".zip":
                _unpack(item, folder)
                for nb in list(folder.rglob("*.ipynb")):  # flatten: notebooks sit in the folder itself
                    if nb.parent != folder:
                        shutil.move(str(nb), folder / nb.name)
                continue
            file_id = match.groupdict().get("file_id") or item.name
            name = file_id if file_id in notebook_names or len(notebook_names) > 1 else notebook_names[0]
            shutil.copy(item, folder / name)
        if unmatched:
            log.append(f"{len(unmatched)} file(s) did not match the name pattern {pattern!r} and were skipped: "
                       + ", ".join(unmatched[:10]))
        return [_place(s, f, root, assignment, log) for s, f in sorted(per_student.items())], log
