"""The instructor's command on a class that arrives in batches (moved here from tests/test_grading_cli.py: about 40
seconds on 2 cores, the slowest test of the fast tier): the gradebook and the cumulative CSV across batches, an LMS
download graded late with nbgrader's late penalty, and regrading when the checks change."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_grading_cli import (CORRECT, LATE_POLICY, SANDBOX, SECRET, new_course,  # noqa: E402
                              run_grader)

from course_utils.grading import cli, nbgrader_env, store  # noqa: E402


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_a_class_graded_in_batches_ends_in_one_csv_that_is_the_gradebook(tmp_path, make_submission, monkeypatch,
                                                                         capsys):
    course = new_course(tmp_path / "course")
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as f:
        f.write(LATE_POLICY)
    subprocess.run([sys.executable, "-m", "nbgrader", "db", "assignment", "add", "a0_warmup",
                    "--duedate=2026-02-10 17:00:00 UTC"], cwd=course, env=nbgrader_env(), check=True,
                   capture_output=True, timeout=300)
    alice = {"conv_output_size": CORRECT, "leftover_answer": "Two; the last column is never used."}
    for student, answers in {"alice": alice, "bob": {}}.items():
        target = course / "subs" / student / "a0_warmup"
        target.mkdir(parents=True)
        shutil.copy(make_submission(answers, name=student), target / "a0_warmup.ipynb")
    carol = course / "subs" / "carol" / "a0_warmup"
    carol.mkdir(parents=True)
    (carol / "a0_warmup.ipynb").write_text('{"cells": [', encoding="utf-8")  # cut off mid-upload
    originals = {p: p.read_bytes() for p in (course / "subs").rglob("*.ipynb")}

    # 1. the first batch
    code, output = run_grader(course)
    assert code == 0, output
    assert "3 notebooks of 3 students: 3 graded now" in output and "new: 3 to grade" in output
    assert "carol" in output and "NOT GRADED (invalid notebook): needs review" in output
    assert "1 point awaits hand grading (1 student)" in output
    first = rows(course / "grades-a0_warmup.csv")
    assert (first["alice"]["test_conv_output_size"], first["alice"]["test_conv_output_size_errors"]) == ("3", "1")
    assert first["alice"]["leftover_answer"] == "needs manual grade" and first["alice"]["autograded"] == "4"
    assert (first["alice"]["pending_manual"], first["alice"]["score"], first["alice"]["late_penalty"]) == \
        ("1", "4", "0")
    assert first["bob"]["autograded"] == "0" and first["bob"]["status"] == "graded"
    assert first["bob"]["pending_manual"] == "0"  # an unanswered written question scores 0 by itself
    failures = first["bob"]["failures"].splitlines()  # one full message per failed check
    assert [f.split(":")[0] for f in failures] == ["test_conv_output_size", "test_conv_output_size_errors"]
    assert all("is not implemented yet" in f for f in failures)
    assert first["carol"]["status"].startswith("NOT GRADED") and first["carol"]["test_conv_output_size"] == ""
    assert {p: p.read_bytes() for p in originals} == originals  # the submissions were not touched

    # 2. a second batch from the LMS, late: the first batch stays, nbgrader's late penalty applies
    download = tmp_path / "late.zip"
    with zipfile.ZipFile(download, "w") as zf:
        entry = zipfile.ZipInfo("davedoe_LATE_1_2_a0_warmup.ipynb", date_time=(2026, 2, 11, 9, 0, 0))
        zf.writestr(entry, make_submission({"conv_output_size": CORRECT}, name="dave").read_bytes())
    code, output = run_grader(course, str(download))
    assert code == 0, output
    assert "1 notebooks of 1 students: 1 graded now" in output
    second = rows(course / "grades-a0_warmup.csv")
    assert sorted(second) == ["alice", "bob", "carol", "davedoe"]
    assert {k: v for k, v in second.items() if k != "davedoe"} == first
    assert (second["davedoe"]["autograded"], second["davedoe"]["late_penalty"], second["davedoe"]["score"]) == \
        ("4", "0.4", "3.6")

    # 3. hand grading reaches the CSV on the next run, with nothing graded again
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("a0_warmup", "alice").score == 4
        grade = gradebook.find_grade("leftover_answer", "a0_warmup", "a0_warmup", "alice")
        assert grade.needs_manual_grade
        grade.manual_score, grade.needs_manual_grade = 1, False  # what formgrader's grade form does
        gradebook.db.commit()
    code, output = run_grader(course)
    assert code == 0 and "0 graded now, 3 from earlier runs" in output, output
    assert "await" not in output
    third = rows(course / "grades-a0_warmup.csv")
    assert (third["alice"]["leftover_answer"], third["alice"]["manual"], third["alice"]["pending_manual"],
            third["alice"]["score"]) == ("1", "1", "0", "5")

    # the CSV's score is nbgrader export's, student by student
    subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=course, env=nbgrader_env(), check=True,
                   capture_output=True, timeout=300)
    exported = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv", encoding="utf-8"))}
    for student in ("alice", "bob", "davedoe"):
        assert float(third[student]["score"]) == pytest.approx(float(exported[student]["score"]))
    assert "carol" not in exported and third["carol"]["score"] == ""  # never a plain 0 for an ungraded notebook

    # 4. the checks change (their package digest, as after an edit of checks/__init__.py): regraded, and why
    monkeypatch.setattr(store, "checks_digest", lambda folder, assignment: "edited")
    monkeypatch.setenv("COURSE_GRADING_SEED", SECRET)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    capsys.readouterr()
    assert cli.main(["a0_warmup", str(download), "--root", str(course), "--jobs", "1", *SANDBOX]) == 0
    output = capsys.readouterr().out
    assert "1 graded now, 0 from earlier runs" in output and "checks changed: 1 to regrade" in output, output
    kept = store.ResultStore.of(course, "a0_warmup").load("davedoe", "a0_warmup")
    assert kept is not None and kept.key_parts["checks"] == "edited"
