"""The instructor's command end to end on a tiny class: scores in the gradebook and the CSV, resumable.

The hostile class (tampering, crashes, timeouts, LMS zips, feedback) is in tests/heavy/.
"""

import csv
import shutil
import subprocess
import sys

import pytest

from course_utils.grading import COURSE_ROOT
from course_utils.grading.sandbox import bubblewrap_problem

CORRECT = """def conv_output_size(i, k, s=1, p=0, d=1):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1
"""


def run_grader(course, *extra):
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "a0_warmup", "subs", "--root", str(course),
                           "--jobs", "2", *extra], cwd=course, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    for name in ("nbgrader_config.py", "solutions", "assignments"):
        (shutil.copytree if (COURSE_ROOT / name).is_dir() else shutil.copy)(COURSE_ROOT / name, root / name)
    return root


def test_a_class_is_graded_into_the_gradebook_and_the_csv(course, make_submission):
    alice = {"conv_output_size": CORRECT, "leftover_answer": "Two; the last column is never used."}
    for student, answers in {"alice": alice, "bob": {}}.items():
        target = course / "subs" / student / "a0_warmup"
        target.mkdir(parents=True)
        shutil.copy(make_submission(answers, name=student), target / "a0_warmup.ipynb")
    carol = course / "subs" / "carol" / "a0_warmup"
    carol.mkdir(parents=True)
    (carol / "a0_warmup.ipynb").write_text('{"cells": [', encoding="utf-8")  # cut off mid-upload
    originals = {p: p.read_bytes() for p in (course / "subs").rglob("*.ipynb")}

    sandbox = [] if bubblewrap_problem() is None else ["--no-sandbox"]
    code, output = run_grader(course, *sandbox)
    assert code == 0, output
    assert "3 notebooks of 3 students: 3 graded now" in output
    assert "carol" in output and "NOT GRADED (invalid notebook): needs review" in output

    rows = {row["student"]: row for row in csv.DictReader(open(course / "grades-a0_warmup.csv", encoding="utf-8"))}
    assert (rows["alice"]["test_conv_output_size"], rows["alice"]["test_conv_output_size_errors"]) == ("3", "1")
    assert rows["alice"]["leftover_answer"] == "needs manual grade" and rows["alice"]["autograded"] == "4"
    assert rows["bob"]["autograded"] == "0" and rows["bob"]["status"] == "graded"
    assert rows["carol"]["status"].startswith("NOT GRADED") and rows["carol"]["test_conv_output_size"] == ""

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("a0_warmup", "alice").score == 4
        assert gradebook.find_submission("a0_warmup", "bob").score == 0
        assert gradebook.find_grade("leftover_answer", "a0_warmup", "a0_warmup", "alice").needs_manual_grade
    assert {p: p.read_bytes() for p in originals} == originals  # the submissions were not touched

    code, output = run_grader(course, *sandbox)  # nothing new: nothing is graded again
    assert code == 0 and "0 graded now" in output, output


def test_bad_arguments_say_what_was_expected(tmp_path):
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "a0_warmup", "subs", "--root",
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "expected nbgrader_config.py there" in done.stderr


def test_a_missing_submissions_folder_is_named(course):
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "a0", "nowhere", "--root", str(course)],
                          cwd=course, capture_output=True, text=True)
    assert done.returncode == 2 and "no submissions at" in done.stderr and "Traceback" not in done.stderr
