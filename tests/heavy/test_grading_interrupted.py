"""A class of 30 graded with an interruption in the middle: nothing is lost, nothing is graded twice.

The grading command is killed (SIGKILL, the worst case: no clean-up at all) once a few results are
saved; the next run grades only the rest, and a third run grades nothing. The scores, the CSV and
the gradebook come out as if there had been no interruption.
"""

import csv
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from course_utils.grading import COURSE_ROOT, nbgrader_env
from course_utils.grading.sandbox import bubblewrap_problem


ASSIGNMENT = "a0_warmup"
CORRECT = """def conv_output_size(i, k, s=1, p=0, d=1):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1
"""
NO_ERRORS = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return (i + 2 * p - d * (k - 1) - 1) // s + 1\n"
KINDS = {"correct": (CORRECT, 4), "no_errors": (NO_ERRORS, 3), "blank": (None, 0)}


ENV = nbgrader_env({"COURSE_GRADING_SEED": secrets.token_hex(16)})
SANDBOX = [] if bubblewrap_problem() is None else ["--no-sandbox"]


def command(course):
    return [sys.executable, "-m", "course_utils.grading", ASSIGNMENT, "subs", "--root", str(course), "--jobs", "2",
            *SANDBOX]


@pytest.fixture(scope="module")
def course(tmp_path_factory, make_submission_module):
    root = tmp_path_factory.mktemp("class30")
    for name in ("nbgrader_config.py", "solutions", "assignments"):
        (shutil.copytree if (COURSE_ROOT / name).is_dir() else shutil.copy)(COURSE_ROOT / name, root / name)
    expected = {}
    for n in range(30):
        kind = list(KINDS)[n % 3]
        code, points = KINDS[kind]
        student = f"s{n:02d}_{kind}"
        folder = root / "subs" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy(make_submission_module({"conv_output_size": code} if code else {}, name=student),
                    folder / f"{ASSIGNMENT}.ipynb")
        expected[student] = points
    return root, expected


@pytest.fixture(scope="module")
def make_submission_module(tmp_path_factory):
    import nbformat

    def make(answers, name):
        nb = nbformat.read(COURSE_ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in answers:
                cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
        path = tmp_path_factory.mktemp(name) / f"{ASSIGNMENT}.ipynb"
        nbformat.write(nb, path)
        return path

    return make


def saved_results(course):
    folder = course / ".grading" / "results" / ASSIGNMENT
    return sorted(p.parent.name for p in folder.glob("*/*.json")) if folder.is_dir() else []


def test_an_interrupted_class_is_finished_by_the_next_run_without_loss(course):
    root, expected = course
    started = subprocess.Popen(command(root), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, env=ENV)
    deadline = time.monotonic() + 300
    while len(saved_results(root)) < 6 and time.monotonic() < deadline and started.poll() is None:
        time.sleep(0.2)
    os.killpg(started.pid, signal.SIGKILL)  # the grader and all its workers, mid-flight
    started.wait()
    before = saved_results(root)
    assert 6 <= len(before) < 30, f"interrupted too late or too early: {len(before)} results"

    done = subprocess.run(command(root), cwd=root, capture_output=True, text=True, timeout=900, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"30 notebooks of 30 students: {30 - len(before)} graded now, {len(before)} from earlier runs" \
        in done.stdout, done.stdout[-2000:]

    assert not list((root / ".grading" / "results").rglob("*.tmp"))  # a half-written result was redone
    rows = {r["student"]: r for r in csv.DictReader(open(root / f"grades-{ASSIGNMENT}.csv", encoding="utf-8"))}
    assert {s: float(r["autograded"]) for s, r in rows.items()} == expected

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        recorded = {s.student_id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}
    assert recorded == expected  # no manual answers given: the written question scores 0 automatically

    again = subprocess.run(command(root), cwd=root, capture_output=True, text=True, timeout=900, env=ENV)
    assert again.returncode == 0 and "30 notebooks of 30 students: 0 graded now, 30 from earlier runs" \
        in again.stdout, again.stdout[-2000:]
