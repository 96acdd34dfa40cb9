"""make start / check / student-bundle, through course_utils.assignments, in a copy of the course."""

import re
import shutil
import zipfile

import pytest

from course_utils import assignments
from course_utils.grading import COURSE_ROOT


@pytest.fixture
def course(tmp_path):
    """A minimal copy of the course (released assignments and what the bundle needs)."""
    root = tmp_path / "course"
    for item in ("assignments", "lectures", "course_utils", "docs", "solutions"):
        shutil.copytree(COURSE_ROOT / item, root / item, ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("requirements.txt", "environment.yml", "pyproject.toml", "Makefile", "LICENSE",
                 "nbgrader_config.py"):
        shutil.copy(COURSE_ROOT / item, root / item)
    return root


def test_resolve_accepts_ids_and_unique_prefixes(course):
    assert assignments.resolve("a0_warmup", course) == "a0_warmup"
    assert assignments.resolve("a0", course) == "a0_warmup"
    with pytest.raises(assignments.CourseError, match="no assignment 'z9'.*known.*a0_warmup"):
        assignments.resolve("z9", course)
    with pytest.raises(assignments.CourseError, match="which assignment"):
        assignments.resolve(None, course)


def test_start_copies_once_and_never_overwrites(course, capsys):
    target = assignments.start("a0", course)
    notebook = target / "a0_warmup.ipynb"
    assert notebook.read_bytes() == (course / "assignments/a0_warmup/a0_warmup.ipynb").read_bytes()
    notebook.write_text("my precious work")
    assignments.start("a0", course)
    assert notebook.read_text() == "my precious work"
    assert "your work is kept" in capsys.readouterr().out


def test_check_needs_a_started_copy(course):
    with pytest.raises(assignments.CourseError, match="make start a0_warmup"):
        assignments.check("a0", course)


@pytest.mark.nbgrader
def test_check_validates_the_students_copy(course):
    target = assignments.start("a0", course)
    assert assignments.check("a0", course) is False  # nothing written yet
    shutil.copy(course / "solutions/a0_warmup/a0_warmup.ipynb", target / "a0_warmup.ipynb")
    assert assignments.check("a0", course) is True


def test_student_bundle_has_no_solutions(course):
    out = assignments.bundle(course, course / "dist" / "bundle.zip")
    names = zipfile.ZipFile(out).namelist()
    assert "dl4cv/README.md" in names and "dl4cv/assignments/a0_warmup/a0_warmup.ipynb" in names
    assert "dl4cv/course_utils/checks/a0_warmup.py" in names
    assert not [n for n in names if "solutions/" in n or n.startswith("dl4cv/tests/")]
    assert "dl4cv/docs/instructor.md" not in names
    released = zipfile.ZipFile(out).read("dl4cv/assignments/a0_warmup/a0_warmup.ipynb").decode()
    assert "BEGIN SOLUTION" not in released and "HIDDEN TESTS" not in released


def test_student_bundle_has_the_students_makefile(course, tmp_path):
    import subprocess

    out = assignments.bundle(course, course / "dist" / "bundle.zip")
    zipfile.ZipFile(out).extractall(tmp_path / "unpacked")
    makefile = (tmp_path / "unpacked" / "dl4cv" / "Makefile").read_text()
    assert makefile == (COURSE_ROOT / "docs" / "student_Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):(?!=)", makefile, flags=re.M))
    assert targets == {"help", "env", "lab", "start", "check"}
    shown = subprocess.run(["make", "help"], cwd=tmp_path / "unpacked" / "dl4cv", capture_output=True, text=True)
    assert shown.returncode == 0 and "make check a0" in shown.stdout and "make test" not in shown.stdout


WRONG_SIZE = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return i - k + 1\n"


@pytest.mark.nbgrader
def test_check_prints_each_failure_in_full_and_names_unanswered_questions(course, capsys):
    import nbformat

    target = assignments.start("a0", course)
    nb = nbformat.read(target / "a0_warmup.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "conv_output_size":
            cell.source = WRONG_SIZE
    nbformat.write(nb, target / "a0_warmup.ipynb")
    capsys.readouterr()
    assert assignments.check("a0", course) is False
    out = capsys.readouterr().out
    failures = [line for line in out.splitlines() if line.startswith("  ✗ test_conv_output_size")]
    assert len(failures) == 2 and all(len(line) > 90 for line in failures), out  # nothing cut at 90 characters
    assert "CheckFailure: conv_output_size(" in out and "expected" in out
    assert "Traceback" not in out and "File " not in out and "---->" not in out and "..." not in out
    assert "not answered yet: leftover_answer" in out and "Success!" not in out
