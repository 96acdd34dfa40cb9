"""Submissions in, as nbgrader's ``submitted/<student>/<assignment>/`` folders; originals untouched.

Accepted: a folder in nbgrader's submitted layout (``<student>/<assignment>/*.ipynb``,
what ``nbgrader collect`` makes), or LMS downloads: a zip file or a folder of
files whose path names the student. Built in are Canvas
(``doejane_12345_67890_a0_warmup.ipynb``, ``doejane_LATE_12345_67890_...``) and
Moodle (``Jane Doe_123456_assignsubmission_file_/a0_warmup.ipynb``); another
LMS needs ``pattern``: a regular expression with a ``student_id`` group (and
optionally ``file_id`` and ``late``), matched against each file's path inside
the download, then against its name alone. A per-student zip is unpacked.

What a student handed in is tidied the same way on every route:

- the assignment's notebook is found by name; a notebook renamed by the LMS or
  the student (``a0_warmup-1.ipynb``, or the only notebook there) is graded and
  recorded under the assignment's name, and flagged; other notebooks are
  flagged and not graded; ``.ipynb_checkpoints`` copies are ignored;
- the submission time is what the LMS wrote (the outer zip entry's time, and
  Canvas's ``LATE_`` marker), written as nbgrader's ``timestamp.txt`` so its late
  penalty applies; a ``timestamp.txt`` inside the student's own files is dropped;
- a malformed zip, a zip bomb (over :class:`Limits`), or a folder with no
  notebook becomes a problem for that student (a flagged CSV row), never a stop.

Copies go into the course's ``submitted/``. An earlier, different copy of a
student's submission is moved to ``.grading/replaced/<time>/`` first, never
overwritten.
"""

from __future__ import annotations

import datetime
import functools
import re
import shutil
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["Submission", "Intake", "Limits", "collect", "DEFAULT_PATTERNS", "IntakeProblem", "valid_student_id"]

#: Canvas: <student>_[LATE_]<number>_<number>_<original file name>, at any depth of the download.
CANVAS = r"^(?:.*/)?(?P<student_id>[^/_]+)_(?P<late>LATE_)?\d+_\d+_(?P<file_id>[^/]+)$"
#: Moodle: <Full Name>_<participant>_assignsubmission_file_/<original file name>
MOODLE = r"^(?:.*/)?(?P<student_id>[^/]+?)_\d+_assignsubmission_(?:file|onlinetext)_/(?:.*/)?(?P<file_id>[^/]+)$"
DEFAULT_PATTERNS = (CANVAS, MOODLE)
_IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
_TIMESTAMP = "timestamp.txt"


@dataclass(frozen=True)
class Limits:
    """What unpacking may write, so a zip bomb cannot fill the disk (sizes after decompression)."""

    student_bytes: int = 256 * 2**20      # everything one student's files unpack to
    student_members: int = 2000           # entries in one student's zip
    download_members: int = 100_000       # entries in the LMS download itself


class IntakeProblem(Exception):
    """One student's files could not be taken in; the message says why (it becomes their flagged row)."""


@dataclass
class Submission:
    student: str
    folder: Path                                   # <course>/submitted/<student>/<assignment>
    names: list[str]                               # the assignment's notebooks found there (stems)
    flags: list[str] = field(default_factory=list)
    submitted_at: str = ""                         # timestamp.txt's content ("" if none)

    def notebooks(self) -> list[Path]:
        return [self.folder / f"{name}.ipynb" for name in self.names]


@dataclass
class Intake:
    submissions: list[Submission]
    problems: dict[str, str]       # student -> why nothing of theirs can be graded
    notes: list[str]               # what the instructor should know about the download as a whole


def valid_student_id(name: str) -> str:
    """The id as used for folders and the gradebook (Unicode NFC, no outer spaces); raise if unusable."""
    student = unicodedata.normalize("NFC", name).strip()
    if not student or student in (".", "..") or student.startswith(".") or \
            any(c in student for c in "/\\\0") or any(unicodedata.category(c) == "Cc" for c in student):
        raise IntakeProblem(f"{name!r} cannot be a student id (empty, '.', '..', hidden, or a path)")
    return student


def _is_submitted_layout(folder: Path, assignment: str) -> bool:
    return any((child / assignment).is_dir() for child in folder.iterdir() if child.is_dir())


def _same_files(a: Path, b: Path) -> bool:
    files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
    return files_a.keys() == files_b.keys() and all(files_a[k].read_bytes() == files_b[k].read_bytes()
                                                    for k in files_a)


def _place(student: str, incoming: Path, root: Path, assignment: str, log: list[str]) -> Path:
    target = root / "submitted" / student / assignment
    if target.exists():
        if _same_files(incoming, target):
            return target
        keep = root / ".grading" / "replaced" / time.strftime("%Y%m%d-%H%M%S") / student / assignment
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), keep)
        log.append(f"{student}: a different earlier submission was moved to {keep}")
    shutil.copytree(incoming, target)
    return target


# --- unpacking, within limits --------------------------------------------------------------------
@dataclass
class _Budget:
    bytes_left: int

    def copy(self, source: IO[bytes], target: Path, what: str) -> None:
        with open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                self.bytes_left -= len(chunk)
                if self.bytes_left < 0:
                    raise IntakeProblem(f"{what} unpacks to more than the limit: not unpacked (a zip bomb?)")
                out.write(chunk)


def _safe_relative(name: str) -> PurePosixPath | None:
    """A member name as a relative path inside the target, or None for what is skipped (traversal, junk)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or _IGNORED_PARTS & set(path.parts):
        return None
    return path


def _unpack(archive: Path, into: Path, budget: _Budget, limits: Limits, label: str) -> None:
    """Unpack a student's zip into ``into``; IntakeProblem if it is not a zip, too big, or inconsistent."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > limits.student_members:
                raise IntakeProblem(f"{label} has {len(members)} entries (limit {limits.student_members}): "
                                    f"not unpacked")
            if sum(m.file_size for m in members) > budget.bytes_left:
                raise IntakeProblem(f"{label} unpacks to more than the limit: not unpacked (a zip bomb?)")
            for member in members:
                relative = _safe_relative(member.filename)
                if member.is_dir() or relative is None:
                    continue
                target = into.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source:
                    budget.copy(source, target, label)
    except IntakeProblem:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as err:
        raise IntakeProblem(f"{label} is not a readable zip file ({err})") from None
    except OSError as err:  # e.g. a file and a folder with the same name
        raise IntakeProblem(f"{label} could not be unpacked: {type(err).__name__}: {err.strerror or err}") from None


# --- what a student handed in: the notebooks -------------------------------------------------------
def _normal(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _tidy(folder: Path, expected: list[str], *, in_place: bool) -> tuple[list[str], list[str]]:
    """Find the assignment's notebooks in ``folder``; rename a renamed one; (names found, flags).

    Notebooks in subfolders are moved up (a zip of a folder), except in place
    (nbgrader's own layout). Raises IntakeProblem if no notebook can be graded.
    """
    flags: list[str] = []
    if not in_place:
        for nb in sorted(folder.rglob("*.ipynb")):
            if nb.parent != folder and not _IGNORED_PARTS & set(nb.relative_to(folder).parts):
                target = folder / nb.name
                if target.exists():
                    raise IntakeProblem(f"two notebooks named {nb.name} in the submission "
                                        f"({nb.relative_to(folder)} and {nb.name}): which one to grade?")
                nb.rename(target)
    candidates = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    found = [p.stem for p in candidates if p.stem in expected]
    others = [p for p in candidates if p.stem not in expected]
    for name in expected:
        if name in found:
            continue
        close = [p for p in others if _normal(name) in _normal(p.stem)]
        if len(expected) == 1 and len(others) == 1:
            close = list(others)
        if len(close) == 1:
            renamed = close[0]
            renamed.rename(folder / f"{name}.ipynb")
            others.remove(renamed)
            found.append(name)
            flags.append(f"renamed notebook: {renamed.name} was graded and recorded as {name}.ipynb")
    flags += [f"extra notebook not graded: {p.name}" for p in others]
    if not found:
        seen = ", ".join(p.name for p in candidates) or "none"
        raise IntakeProblem(f"no notebook {' or '.join(n + '.ipynb' for n in expected)} in the submission "
                            f"(notebooks there: {seen})")
    return sorted(found), flags


def _timestamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


# --- the LMS route ---------------------------------------------------------------------------------
@dataclass
class _Incoming:
    folder: Path
    budget: _Budget
    flags: list[str] = field(default_factory=list)
    problem: str | None = None
    times: list[datetime.datetime] = field(default_factory=list)
    late: bool = False


Opener = Callable[[], IO[bytes]]


def _entry_time(member: zipfile.ZipInfo) -> datetime.datetime | None:
    """The time the LMS wrote for a zip entry (a zip stores no time zone: read as UTC)."""
    try:
        return datetime.datetime(*member.date_time, tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _open_binary(path: Path) -> IO[bytes]:
    return open(path, "rb")


def _download_items(source: Path, limits: Limits) -> Iterator[tuple[str, Opener, datetime.datetime | None]]:
    """(path inside the download, open it, the time the LMS wrote for it) for every file of the download."""
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise ValueError(f"{source} is neither a folder nor a zip file")
        try:
            with zipfile.ZipFile(source) as zf:
                members = zf.infolist()
                if len(members) > limits.download_members:
                    raise ValueError(f"{source} has {len(members)} entries (limit {limits.download_members})")
                for member in members:
                    if not member.is_dir():
                        yield member.filename, functools.partial(zf.open, member), _entry_time(member)
        except zipfile.BadZipFile as err:
            raise ValueError(f"{source} is not a readable zip file ({err})") from None
    else:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield path.relative_to(source).as_posix(), functools.partial(_open_binary, path), None


def _from_lms(source: Path, staging: Path, patterns: list[re.Pattern[str]], limits: Limits,
              notes: list[str]) -> dict[str, _Incoming]:
    """Each matching file of the download, unpacked or copied into its student's staging folder."""
    students: dict[str, _Incoming] = {}
    unmatched: list[str] = []
    for name, opener, when in _download_items(source, limits):
        relative = _safe_relative(name)
        if relative is None or relative.suffix not in (".ipynb", ".zip"):
            continue
        path = relative.as_posix()
        match = next((m for p in patterns for m in (p.match(path), p.match(relative.name)) if m), None)
        if match is None:
            unmatched.append(path)
            continue
        try:
            student = valid_student_id(match.group("student_id"))
        except IntakeProblem as err:
            notes.append(f"{path}: skipped: {err}")
            continue
        incoming = students.get(student)
        if incoming is None:
            folder = staging / f"{len(students)}"
            folder.mkdir()
            incoming = students[student] = _Incoming(folder, _Budget(limits.student_bytes))
        groups = match.groupdict()
        incoming.late |= bool(groups.get("late"))
        if when is not None:
            incoming.times.append(when)
        if incoming.problem:
            continue
        file_id = groups.get("file_id") or relative.name
        try:
            if relative.suffix == ".zip":
                archive = incoming.folder.with_suffix(".zip")  # unpacked, then removed
                with opener() as stream:
                    incoming.budget.copy(stream, archive, relative.name)
                unpacked = incoming.folder / "unpacked"
                unpacked.mkdir(exist_ok=True)
                _unpack(archive, unpacked, incoming.budget, limits, relative.name)
                archive.unlink()
            else:
                target = incoming.folder / PurePosixPath(file_id).name
                if target.exists():
                    incoming.flags.append(f"two files of the download are named {target.name}: the later one in "
                                          f"the download was graded ({relative.name}); check which is meant")
                with opener() as stream:
                    incoming.budget.copy(stream, target, relative.name)
        except IntakeProblem as err:
            incoming.problem = str(err)
        except OSError as err:
            incoming.problem = f"{relative.name} could not be taken in: {type(err).__name__}: {err}"
    if unmatched:
        notes.append(f"{len(unmatched)} file(s) did not match the name pattern and were skipped: "
                     + ", ".join(unmatched[:10]))
    return students


def collect(source: Path, root: Path, assignment: str, patterns: list[str] | tuple[str, ...] = DEFAULT_PATTERNS,
            limits: Limits = Limits()) -> Intake:
    """The submissions in ``source``, placed in ``root/submitted``; students that cannot be graded; notes.

    Raises FileNotFoundError / ValueError when ``source`` as a whole cannot be read (not a zip, no such
    path, too many entries, a pattern without a ``student_id`` group).
    """
    source = Path(source).resolve()
    if not source.exists():
        raise FileNotFoundError(f"no submissions at {source}: expected a folder or a zip file")
    expected = sorted(p.stem for p in (root / "assignments" / assignment).glob("*.ipynb"))
    if not expected:
        raise ValueError(f"assignment {assignment!r} has no released notebook in {root / 'assignments' / assignment}")
    notes: list[str] = []
    problems: dict[str, str] = {}
    submissions: list[Submission] = []
    submitted = (root / "submitted").resolve()

    if source.is_dir() and _is_submitted_layout(source, assignment):
        for child in sorted(c for c in source.iterdir() if (c / assignment).is_dir()):
            try:
                student = valid_student_id(child.name)
            except IntakeProblem as err:
                notes.append(f"{child}: skipped: {err}")
                continue
            try:
                if source == submitted:  # graded where nbgrader keeps it: only a renamed notebook is renamed
                    folder = child / assignment
                    names, flags = _tidy(folder, expected, in_place=True)
                else:
                    with tempfile.TemporaryDirectory(prefix="intake-") as tmp:
                        staged = Path(tmp) / "s"
                        shutil.copytree(child / assignment, staged,
                                        ignore=shutil.ignore_patterns(*_IGNORED_PARTS))
                        names, flags = _tidy(staged, expected, in_place=True)
                        folder = _place(student, staged, root, assignment, notes)
            except IntakeProblem as err:
                problems[student] = str(err)
                continue
            stamp = folder / _TIMESTAMP
            submitted_at = stamp.read_text(encoding="utf-8", errors="replace").strip() if stamp.is_file() else ""
            submissions.append(Submission(student, folder, names, flags, submitted_at))
        return Intake(submissions, problems, notes)

    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as err:
        raise ValueError(f"the name pattern is not a regular expression: {err}") from None
    if any("student_id" not in p.groupindex for p in compiled):
        raise ValueError("the name pattern needs a group (?P<student_id>...) that captures the student's id")
    with tempfile.TemporaryDirectory(prefix="lms-") as tmp:
        incoming = _from_lms(source, Path(tmp), compiled, limits, notes)
        for student, got in sorted(incoming.items()):
            if got.problem:
                problems[student] = got.problem
                continue
            for own in got.folder.rglob(_TIMESTAMP):  # the time comes from the LMS, never from the student
                own.unlink()
                got.flags.append("a timestamp.txt in the student's own files was ignored")
            try:
                names, flags = _tidy(got.folder, expected, in_place=False)
            except IntakeProblem as err:
                problems[student] = str(err)
                continue
            shutil.rmtree(got.folder / "unpacked", ignore_errors=True)
            submitted_at = ""
            if got.times:
                submitted_at = _timestamp(max(got.times))
                (got.folder / _TIMESTAMP).write_text(submitted_at + "\n", encoding="utf-8")
            elif got.late:
                flags.append("marked LATE by the LMS, but the download holds no submission time: "
                             "no late penalty applied; apply it by hand")
            folder = _place(student, got.folder, root, assignment, notes)
            submissions.append(Submission(student, folder, names, got.flags + flags, submitted_at))
    return Intake(submissions, problems, notes)
