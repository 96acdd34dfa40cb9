"""Intake: LMS downloads and nbgrader folders into submitted/, every malformed submission a flagged problem."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from course_utils.grading.intake import CANVAS, IntakeProblem, Limits, collect, valid_student_id

ASSIGNMENT = "a0_warmup"
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
WHEN = (2026, 2, 14, 9, 30, 0)


@pytest.fixture
def root(tmp_path):
    """A course with one released notebook (its content does not matter to the intake)."""
    course = tmp_path / "course"
    (course / "assignments" / ASSIGNMENT).mkdir(parents=True)
    (course / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text(NOTEBOOK)
    return course


def lms_zip(path: Path, files: dict[str, bytes | str], when: tuple = WHEN) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


def inner_zip(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def submitted(root: Path, student: str) -> dict[str, str]:
    folder = root / "submitted" / student / ASSIGNMENT
    return {p.relative_to(folder).as_posix(): p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()}


def test_canvas_zip_is_placed_with_the_lms_submission_time(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {
        "doejane_123_456_a0_warmup.ipynb": NOTEBOOK,
        "roejohn_LATE_124_457_a0_warmup.ipynb": NOTEBOOK,
    })
    intake = collect(download, root, ASSIGNMENT)
    assert [s.student for s in intake.submissions] == ["doejane", "roejohn"] and intake.problems == {}
    for submission in intake.submissions:
        assert submission.names == [ASSIGNMENT] and submission.flags == []
        assert submission.submitted_at == "2026-02-14 09:30:00.000000 UTC"
        assert submitted(root, submission.student) == {f"{ASSIGNMENT}.ipynb": NOTEBOOK,
                                                        "timestamp.txt": submission.submitted_at + "\n"}


def test_a_timestamp_inside_the_students_zip_is_never_trusted(root, tmp_path):
    forged = inner_zip({f"{ASSIGNMENT}.ipynb": NOTEBOOK, "timestamp.txt": "2020-01-01 00:00:00 UTC"})
    intake = collect(lms_zip(tmp_path / "a0.zip", {"doejane_1_2_work.zip": forged}), root, ASSIGNMENT)
    (jane,) = intake.submissions
    assert submitted(root, "doejane")["timestamp.txt"].startswith("2026-02-14 09:30:00")
    assert any("timestamp.txt in the student's own files was ignored" in f for f in jane.flags)


def test_late_marker_without_a_time_is_flagged(root, tmp_path):
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "roejohn_LATE_1_2_a0_warmup.ipynb").write_text(NOTEBOOK)
    (john,) = collect(folder, root, ASSIGNMENT).submissions
    assert "timestamp.txt" not in submitted(root, "roejohn")
    assert any("marked LATE" in f and "by hand" in f for f in john.flags)


@pytest.mark.parametrize("files, expected", [
    ({"doejane_1_2_work.zip": b"this is not a zip"}, "is not a readable zip file"),
    ({"doejane_1_2_work.zip": inner_zip({"a0_warmup.ipynb": NOTEBOOK, "a0_warmup.ipynb/inner.txt": "x"})},
     "could not be unpacked"),
    ({"doejane_1_2_work.zip": inner_zip({"a0_warmup.ipynb/inner.txt": "x", "a0_warmup.ipynb": NOTEBOOK})},
     "could not be unpacked"),
    ({"doejane_1_2_work.zip": inner_zip({"notes.txt": "no notebook here"})}, "no notebook a0_warmup.ipynb"),
    ({"doejane_1_2_work.zip": inner_zip({"a/a0_warmup.ipynb": NOTEBOOK, "b/a0_warmup.ipynb": NOTEBOOK})},
     "two notebooks named a0_warmup.ipynb"),
])
def test_a_malformed_submission_is_a_problem_for_that_student_only(root, tmp_path, files, expected):
    download = lms_zip(tmp_path / "a0.zip", {**files, "roejohn_3_4_a0_warmup.ipynb": NOTEBOOK})
    intake = collect(download, root, ASSIGNMENT)
    assert expected in intake.problems["doejane"], intake.problems
    assert [s.student for s in intake.submissions] == ["roejohn"]  # everyone else is taken in
    assert not (root / "submitted" / "doejane").exists()


def test_zip_bombs_are_not_unpacked(root, tmp_path):
    bomb = inner_zip({f"{ASSIGNMENT}.ipynb": NOTEBOOK, "zeros.bin": bytes(4 * 2**20)})  # 4 MiB: a few KiB zipped
    many = inner_zip({f"{ASSIGNMENT}.ipynb": NOTEBOOK, **{f"f{i}.txt": "x" for i in range(50)}})
    download = lms_zip(tmp_path / "a0.zip", {"bomb_1_2_work.zip": bomb, "many_1_2_work.zip": many,
                                             "fine_1_2_a0_warmup.ipynb": NOTEBOOK})
    assert len(bomb) < 2**20
    intake = collect(download, root, ASSIGNMENT, limits=Limits(student_bytes=2**20, student_members=20))
    assert "more than the limit" in intake.problems["bomb"]
    assert "51 entries (limit 20)" in intake.problems["many"]
    assert [s.student for s in intake.submissions] == ["fine"]
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 2**20


def test_a_download_with_too_many_entries_is_refused(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {f"s{i}_1_2_a0_warmup.ipynb": NOTEBOOK for i in range(5)})
    with pytest.raises(ValueError, match="5 entries"):
        collect(download, root, ASSIGNMENT, limits=Limits(download_members=4))


def test_paths_outside_the_submission_are_never_written(root, tmp_path):
    evil = inner_zip({f"{ASSIGNMENT}.ipynb": NOTEBOOK, "../../../../escaped.ipynb": NOTEBOOK,
                      "/tmp/absolute.ipynb": NOTEBOOK})
    intake = collect(lms_zip(tmp_path / "a0.zip", {"doejane_1_2_work.zip": evil}), root, ASSIGNMENT)
    assert [s.student for s in intake.submissions] == ["doejane"]
    assert not list(tmp_path.rglob("escaped.ipynb")) and not Path("/tmp/absolute.ipynb").exists()
    assert set(submitted(root, "doejane")) == {f"{ASSIGNMENT}.ipynb", "timestamp.txt"}


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\\b", "tab\there"])
def test_unusable_student_ids_are_rejected(name):
    with pytest.raises(IntakeProblem, match="cannot be a student id"):
        valid_student_id(name)


def test_dot_ids_in_an_lms_zip_are_skipped_with_a_note(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {".._1_2_a0_warmup.ipynb": NOTEBOOK, "._1_2_a0_warmup.ipynb": NOTEBOOK,
                                             "ok_1_2_a0_warmup.ipynb": NOTEBOOK})
    intake = collect(download, root, ASSIGNMENT)
    assert [s.student for s in intake.submissions] == ["ok"]
    assert sum("cannot be a student id" in n for n in intake.notes) == 2
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["ok"]


def test_non_ascii_names_get_a_submission(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {"müllerjürgen_1_2_a0_warmup.ipynb": NOTEBOOK,
                                             "ñandú_3_4_a0_warmup.ipynb": NOTEBOOK})
    intake = collect(download, root, ASSIGNMENT)
    assert sorted(s.student for s in intake.submissions) == ["müllerjürgen", "ñandú"]


def test_moodle_folders_name_the_student(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {
        "Jane Doe_123456_assignsubmission_file_/a0_warmup.ipynb": NOTEBOOK,
        "John Roe_123457_assignsubmission_file_/work.zip": inner_zip({"a0_warmup.ipynb": NOTEBOOK}),
    })
    intake = collect(download, root, ASSIGNMENT)
    assert [s.student for s in intake.submissions] == ["Jane Doe", "John Roe"] and intake.notes == []


def test_a_custom_pattern_is_matched_against_the_path(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {"by-student/jdoe/a0_warmup.ipynb": NOTEBOOK})
    intake = collect(download, root, ASSIGNMENT, [r"^by-student/(?P<student_id>[^/]+)/(?P<file_id>[^/]+)$"])
    assert [s.student for s in intake.submissions] == ["jdoe"]
    with pytest.raises(ValueError, match="student_id"):
        collect(download, root, ASSIGNMENT, [r"^(?P<who>.*)$"])


def test_renamed_extra_and_checkpoint_notebooks(root, tmp_path):
    download = lms_zip(tmp_path / "a0.zip", {
        "renamed_1_2_a0_warmup-1.ipynb": NOTEBOOK,                      # Canvas's resubmission suffix
        "untitled_1_2_Untitled.ipynb": NOTEBOOK,                        # the only notebook there
        "extra_1_2_a0_warmup.ipynb": NOTEBOOK, "extra_1_2_scratch.ipynb": "{}",
        "ckpt_1_2_work.zip": inner_zip({"a0_warmup.ipynb": NOTEBOOK,
                                        ".ipynb_checkpoints/a0_warmup-checkpoint.ipynb": "{}"}),
    })
    intake = {s.student: s for s in collect(download, root, ASSIGNMENT).submissions}
    assert intake["renamed"].flags == ["renamed notebook: a0_warmup-1.ipynb was graded and recorded as "
                                       "a0_warmup.ipynb"]
    assert "renamed notebook: Untitled.ipynb" in intake["untitled"].flags[0]
    assert intake["extra"].flags == ["extra notebook not graded: scratch.ipynb"]
    assert intake["ckpt"].flags == []
    for student, submission in intake.items():
        assert submission.notebooks() == [root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"]
        assert submission.notebooks()[0].read_text() == NOTEBOOK
    assert not list((root / "submitted").rglob(".ipynb_checkpoints"))


def test_nbgrader_layout_in_place_keeps_its_timestamp_and_renames_a_renamed_notebook(root):
    folder = root / "submitted" / "jdoe" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "a0_warmup (1).ipynb").write_text(NOTEBOOK)
    (folder / "timestamp.txt").write_text("2026-02-10 17:30:10.000000 UTC")  # written by nbgrader collect
    (jdoe,) = collect(root / "submitted", root, ASSIGNMENT).submissions
    assert jdoe.notebooks() == [folder / f"{ASSIGNMENT}.ipynb"] and "renamed notebook" in jdoe.flags[0]
    assert jdoe.submitted_at == "2026-02-10 17:30:10.000000 UTC"


def test_a_second_download_moves_a_different_earlier_copy_aside(root, tmp_path):
    collect(lms_zip(tmp_path / "one.zip", {"doejane_1_2_a0_warmup.ipynb": NOTEBOOK}), root, ASSIGNMENT)
    later = (2026, 2, 15, 10, 0, 0)
    intake = collect(lms_zip(tmp_path / "two.zip", {"doejane_1_2_a0_warmup.ipynb": NOTEBOOK}, later), root,
                     ASSIGNMENT)
    assert intake.submissions[0].submitted_at.startswith("2026-02-15 10:00:00")
    assert list((root / ".grading" / "replaced").rglob(f"{ASSIGNMENT}.ipynb"))
    assert any("moved to" in n for n in intake.notes)


def test_nothing_matched_gives_no_submissions(root, tmp_path):
    intake = collect(lms_zip(tmp_path / "a0.zip", {"stray.ipynb": "{}"}), root, ASSIGNMENT)
    assert intake.submissions == [] and intake.problems == {} and "stray.ipynb" in intake.notes[0]


def test_canvas_pattern_reads_the_late_marker():
    import re

    match = re.match(CANVAS, "doejane_LATE_12345_67890_a0_warmup.ipynb")
    assert match and match["student_id"] == "doejane" and match["late"] and match["file_id"] == "a0_warmup.ipynb"
    on_time = re.match(CANVAS, "doejane_12345_67890_a0_warmup.ipynb")
    assert on_time and not on_time["late"]


def test_two_files_of_one_student_with_the_same_name_are_flagged(root, tmp_path):
    """Two attempts in one download that map to the same notebook: the later entry is graded, and flagged."""
    first, second = NOTEBOOK.replace("{}", '{"attempt": 1}', 1), NOTEBOOK.replace("{}", '{"attempt": 2}', 1)
    download = lms_zip(tmp_path / "a0.zip", {"doejane_1_2_a0_warmup.ipynb": first,
                                             "sub/doejane_3_4_a0_warmup.ipynb": second})
    (submission,) = collect(download, root, ASSIGNMENT).submissions
    assert any("two files of the download are named a0_warmup.ipynb" in flag for flag in submission.flags)
    assert submitted(root, "doejane")[f"{ASSIGNMENT}.ipynb"] == second
