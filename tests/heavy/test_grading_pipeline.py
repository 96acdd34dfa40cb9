"""Heavy tier: the grading command, sandbox on, on a simulated class of honest and hostile students.

Stock nbgrader runs a submission's cells and its test cells in one kernel and
scores the outputs, so a student can patch ``numpy.allclose``, rewrite the
checks, edit a test cell, read the hidden tests, kill the kernel and lose the
cells that passed, or hang it; an unreadable notebook becomes a silent 0. Each
test below shows one of these is fixed, through the real command
(``python -m course_utils.grading``) on a throw-away course: the class in
``CLASS`` is built once, graded once (then re-graded, to show the command is
resumable, and once more from an LMS zip), and every test reads what that left
behind: the CSV, the summary, nbgrader's gradebook, feedback and export.

Every hostile submission pairs its attack with a wrong answer (or answers only
if the attack works), so a working attack would show up as points.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import a0_warmup as checks
from course_utils.grading.nbgrader_course import COURSE_ROOT, nbgrader_env
from course_utils.grading.results import NotebookResult
from course_utils.grading.sandbox import bubblewrap_problem

sys.path.insert(0, str(COURSE_ROOT / "tests"))
from variants_harness import exclusive  # noqa: E402


PROBLEM = bubblewrap_problem()
if PROBLEM is not None:
    pytest.skip(f"the grading sandbox cannot run here: {PROBLEM}", allow_module_level=True)

ASSIGNMENT = "a0_warmup"
SIZES, ERRORS = "test_conv_output_size", "test_conv_output_size_errors"  # 3 and 1 autograded points
SEED = secrets.token_hex(16)        # the instructor's secret (128 bits: official grading refuses less)
# seconds: short, so the hanging students cost little, yet far above a normal cell's (importing torch: ~3 s)
CELL_TIMEOUT, CALL_TIMEOUT = 20, 10


def _solution_source() -> str:
    """The model answer, taken from the instructor's notebook (the solution markers dropped)."""
    nb = nbformat.read(COURSE_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_output_size")
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


CORRECT = _solution_source()

# Right on the errors, wrong on sizes with dilation: earns the errors cell (1 point) only.
NO_DILATION = '''
def conv_output_size(i, k, s=1, p=0, d=1):
    if k < 1 or s < 1 or d < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output for these settings")
    return (i + 2 * p - k) // s + 1     # forgets the dilation
'''

PATCH_ALLCLOSE = '''
import numpy as np
import torch
np.allclose = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None

def conv_output_size(i, k, s=1, p=0, d=1):
    return 0
'''

ALWAYS_EQUAL = '''
class Whatever(int):
    """An int that equals everything: fools `got != expected` if it ever reaches the check."""
    __eq__ = lambda self, other: True
    __ne__ = lambda self, other: False
    __hash__ = int.__hash__

def conv_output_size(i, k, s=1, p=0, d=1):
    return Whatever(0)
'''

REWRITE_CHECKS = '''
import course_utils.checks as base
import course_utils.checks.a0_warmup as c
c.check_conv_output_size = lambda *args, **kwargs: print("✓ conv_output_size: all 7 cases passed")
c.check_conv_output_size_errors = lambda *args, **kwargs: print("✓ conv_output_size errors: all 7 cases passed")
base.expect_equal = base.expect_raises = lambda *args, **kwargs: None
checks = c

def conv_output_size(i, k, s=1, p=0, d=1):
    return -1
'''

# Every attack records what it got; conv_output_size is right on sizes only if one of them worked,
# and otherwise returns the record (the grader's failure message shows it). Right on errors anyway.
SNOOP = '''
import contextlib, glob, json, os
ROOT, SUBS = {root!r}, {subs!r}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(checks.__file__)))
seen = {{}}

def attempt(what, action):
    try:
        seen[what] = "GOT " + repr(action())[:40]
    except Exception as err:
        seen[what] = type(err).__name__

def read(path):
    with open(path, "rb") as f:
        return f.read()

def write(path):
    with open(path, "ab") as f:
        return f.write(b"pwned")

def seed_in_proc():
    for path in glob.glob("/proc/*/environ"):
        with contextlib.suppress(OSError):
            if b"COURSE_GRADING_SEED" in read(path):
                return path
    raise LookupError("no process shows the seed")

attempt("read hidden tests", lambda: read(ROOT + "/solutions/a0_warmup/a0_warmup.ipynb"))
attempt("read the repository hidden tests", lambda: read(REPO + "/solutions/a0_warmup/a0_warmup.ipynb"))
attempt("read gradebook", lambda: read(ROOT + "/gradebook.db"))
attempt("read other student", lambda: read(ROOT + "/submitted/correct/a0_warmup/a0_warmup.ipynb"))
attempt("read submissions folder", lambda: read(SUBS + "/correct/a0_warmup/a0_warmup.ipynb"))
attempt("list course", lambda: os.listdir(ROOT))
attempt("seed in environment", lambda: os.environ["COURSE_GRADING_SEED"])
attempt("seed in /proc", seed_in_proc)
attempt("write gradebook", lambda: write(ROOT + "/gradebook.db"))
attempt("write course", lambda: write(ROOT + "/pwned.txt"))
attempt("write results", lambda: write(ROOT + "/.grading/results/a0_warmup/pwned.json"))
attempt("write other student", lambda: write(ROOT + "/submitted/correct/a0_warmup/a0_warmup.ipynb"))
attempt("open checks for writing", lambda: open(checks.__file__, "a").close())  # appends nothing

def conv_output_size(i, k, s=1, p=0, d=1):
    span = d * (k - 1) + 1
    if k < 1 or s < 1 or d < 1 or p < 0 or i + 2 * p < span:
        raise ValueError("no output for these settings")
    o = (i + 2 * p - span) // s + 1
    if (i, k, s, p, d) == (7, 3, 3, 0, 1):      # the errors cell's one size: earned honestly
        return o
    leaked = [what for what, got in seen.items() if got.startswith("GOT")]
    return o if leaked else "nothing leaked: " + json.dumps(seen)
'''
SNOOP_ATTACKS = 13

STDERR_NOISE = CORRECT + '''
import sys, warnings
print("debug: conv_output_size defined", file=sys.stderr)
warnings.warn("a warning from the student's cell")
_quiet = conv_output_size

def conv_output_size(i, k, s=1, p=0, d=1):
    warnings.warn(f"conv_output_size({i}, {k}, s={s}, p={p}, d={d})")
    print("debug: called", file=sys.stderr)
    return _quiet(i, k, s, p, d)
'''

HANGS_ON_DILATION_3 = CORRECT + '''
_right = conv_output_size

def conv_output_size(i, k, s=1, p=0, d=1):
    if d == 3 and i + 2 * p >= d * (k - 1) + 1:   # only the hidden size cases have d = 3
        while True:
            pass
    return _right(i, k, s, p, d)
'''

# Passes the visible checks by table lookup, fails every hidden one.
HARDCODED = f'''
ANSWERS = {({case: checks.reference_output_size(*case) for case in checks.VISIBLE_CASES})!r}
IMPOSSIBLE = {[case for case, _ in checks.VISIBLE_ERRORS]!r}

def conv_output_size(i, k, s=1, p=0, d=1):
    if (i, k, s, p, d) in IMPOSSIBLE:
        raise ValueError("no output for these settings")
    return ANSWERS.get((i, k, s, p, d), 1)
'''

EXIT = "import os\nos._exit(0)"
LOOP = "while True:\n    pass"
FORK = "import os\nos.fork()\nos.fork()"  # the children go on running the worker's loop too
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
# bytes(n) is calloc'd: untouched, so the hog fills its address space in a blink (touching 8 GiB takes this
# kind of machine longer than the short cell timeout); RLIMIT_AS counts it the same, touched or not.
MEMORY_HOG = """
hog = []
try:
    for _ in range(4096):                 # up to 1 TiB, 256 MiB at a time
        hog.append(bytes(2**28))
except MemoryError:
    pass
print(f"hog stopped at {256 * len(hog)} MiB")
del hog
"""
WRITTEN = "2 outputs; the last column is never covered by the kernel, so it is ignored."


@dataclass(frozen=True)
class Student:
    answer: str | None            # the solution cell's source (None: left as released)
    points: tuple[float, float]   # expected (SIZES, ERRORS) points (an invalid notebook: not graded at all)
    flags: tuple[str, ...] = ()   # each must appear among the student's flags
    extra: str | None = None      # replaces the "Try it" cell after the answer
    edit: str = ""                # delete:<grade_id> | duplicate:<grade_id> | rewrite:<grade_id> | truncate
    clean: bool = False           # expects no flags at all


# student -> code -> expectations
CLASS = {
    "correct": Student(CORRECT, (3, 1), clean=True),
    "patch_allclose": Student(PATCH_ALLCLOSE, (0, 0)),
    "always_equal": Student(ALWAYS_EQUAL, (0, 0)),
    "rewrite_checks": Student(REWRITE_CHECKS, (0, 0)),
    "edit_test_cell": Student(NO_DILATION, (0, 1), ("modified test cell (graded with the original): " + SIZES,),
                              edit="rewrite:" + SIZES),
    "snoop": Student(SNOOP, (0, 1)),
    "exit_after_correct": Student(CORRECT, (3, 1), ("cell 4: the process ended",), extra=EXIT),
    "infinite_loop": Student(CORRECT, (3, 1), ("cell 4", "timed out"), extra=LOOP),
    "hangs_in_call": Student(HANGS_ON_DILATION_3, (0, 1), (SIZES, "timed out")),
    "stderr_noise": Student(STDERR_NOISE, (3, 1), clean=True),
    "invalid_json": Student(CORRECT, (0, 0), ("invalid notebook",), edit="truncate"),
    "deleted_test": Student(CORRECT, (3, 1), ("deleted cell: " + ERRORS, "test cell deleted"),
                            edit="delete:" + ERRORS),
    "duplicated": Student(CORRECT, (3, 1), ("duplicated cell: " + SIZES,), edit="duplicate:" + SIZES),
    "forks": Student(CORRECT, (3, 1), extra=FORK),
    "fork_bomb": Student(CORRECT, (3, 1), ("cell 4", "timed out"), extra=FORK_BOMB),
    "memory_hog": Student(CORRECT, (3, 1), extra=MEMORY_HOG),
    "hardcoded": Student(HARDCODED, (0, 0)),
    "resubmits": Student(None, (0, 0)),        # hands in the release, then the model answer (regraded)
}
RESUBMISSION = CORRECT
# LMS download (Canvas names, no underscores in ids): twins of two students above, graded the same
LMS = {"zipcorrect_1001_2001_a0_warmup.ipynb": "correct", "ziptamper_1002_2002_a0_warmup-1.ipynb": "edit_test_cell"}
# Malformed or odd LMS files (None: the correct notebook as is; {}: not a zip at all; else a student's zip):
# each ends in a row (or, for an unusable id, a note), and no one else's grading is disturbed.
LMS_HOSTILE = {
    "brokenzip_1003_2003_work.zip": {},
    "dirclash_1004_2004_work.zip": {f"{ASSIGNMENT}.ipynb": "CORRECT", f"{ASSIGNMENT}.ipynb/x.txt": "x"},
    ".._1005_2005_a0_warmup.ipynb": None,
    "jürgen_1006_2006_a0_warmup.ipynb": None,
    "ckpt_1007_2007_work.zip": {f"{ASSIGNMENT}.ipynb": "CORRECT",
                                f".ipynb_checkpoints/{ASSIGNMENT}-checkpoint.ipynb": "BLANK"},
    "extra_1008_2008_work.zip": {f"{ASSIGNMENT}.ipynb": "CORRECT", "scratch.ipynb": "BLANK"},
    "bomb_1009_2009_work.zip": {f"{ASSIGNMENT}.ipynb": "CORRECT", "zeros.bin": bytes(300 * 2**20)},
}


# --- building the class -------------------------------------------------------------------------------
def _cell(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def submission(student: Student, root: Path, subs: Path, answer: str | None = None) -> bytes:
    """The release notebook as this student hands it in."""
    nb = nbformat.read(COURSE_ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answer = answer or student.answer
    if answer is not None:
        if answer is SNOOP:  # it needs the course's paths
            answer = answer.format(root=str(root), subs=str(subs))
        nb.cells[_cell(nb, "conv_output_size")].source = answer
        nb.cells[_cell(nb, "leftover_answer")].source = WRITTEN
    if student.extra is not None:
        nb.cells[_cell(nb, "conv_output_size") + 1].source = student.extra  # the "Try it" cell
    action, _, grade_id = student.edit.partition(":")
    if action == "delete":
        del nb.cells[_cell(nb, grade_id)]
    elif action == "duplicate":
        index = _cell(nb, grade_id)
        copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[index])))
        copy.id = "pasted-copy"  # Jupyter gives a pasted cell a new id, and keeps the metadata
        nb.cells.insert(index + 1, copy)
    elif action == "rewrite":
        nb.cells[_cell(nb, grade_id)].source = 'print("✓ conv_output_size: all 7 cases passed")'
    text = nbformat.writes(nb)
    return (text[: len(text) // 2] if action == "truncate" else text).encode()


def digests(*paths: Path) -> dict[str, str]:
    """sha256 of every file under ``paths``."""
    out = {}
    for top in paths:
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def mtimes(folder: Path) -> dict[str, int]:
    """When each result file was written (recorded.json, the gradebook's bookkeeping, left out)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.json")
            if p.name != "recorded.json"}


def grade(root: Path, source: Path, csv_name: str, *extra: str) -> dict:
    """``python -m course_utils.grading`` as an instructor runs it, in the course folder."""
    argv = [sys.executable, "-m", "course_utils.grading", ASSIGNMENT, str(source), "--root", str(root),
            "--jobs", "2", "--cell-timeout", str(CELL_TIMEOUT), "--call-timeout", str(CALL_TIMEOUT),
            "--csv", str(root / csv_name), *extra]
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, cwd=root, env=nbgrader_env({"COURSE_GRADING_SEED": SEED}),
                          capture_output=True, text=True, timeout=900)
    with open(root / csv_name, newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-5000:], "rows": rows,
            "seconds": time.perf_counter() - start}


def run_scenario(folder: Path) -> dict:
    """Build the course and the class, then: grade, re-grade, resubmit one, grade an LMS zip, export."""
    root, subs = folder / "course", folder / "subs"
    root.mkdir(parents=True)
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", root)
    for part in ("solutions", "assignments"):
        shutil.copytree(COURSE_ROOT / part / ASSIGNMENT, root / part / ASSIGNMENT)
    for name, student in CLASS.items():
        path = subs / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(submission(student, root, subs))
    with zipfile.ZipFile(folder / "lms.zip", "w") as zf:
        for lms_name, twin in LMS.items():
            zf.write(subs / twin / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", lms_name)
        zf.writestr("stray.ipynb", "{}")  # no student in the name: skipped with a note
        correct, blank = (subs / twin / ASSIGNMENT / f"{ASSIGNMENT}.ipynb" for twin in ("correct", "resubmits"))
        for lms_name, files in LMS_HOSTILE.items():
            if files is None:  # a plain notebook, the correct one
                zf.write(correct, lms_name)
                continue
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED) as student_zip:
                for name, content in files.items():
                    data = {"CORRECT": correct.read_bytes(), "BLANK": blank.read_bytes()}.get(content, content)
                    student_zip.writestr(name, data)
            zf.writestr(lms_name, inner.getvalue() if files else b"PK this is not a zip",
                        compress_type=zipfile.ZIP_DEFLATED)
    # the gradebook exists before grading, so the snoop has something to try to read
    subprocess.run([sys.executable, "-m", "nbgrader", "db", "upgrade"], cwd=root, env=nbgrader_env(), check=True,
                   capture_output=True, timeout=300)
    protected = (root / "solutions", root / "nbgrader_config.py", subs, Path(checks.__file__))
    state = {"root": str(root), "subs": str(subs), "before": digests(*protected)}

    results = root / ".grading" / "results"
    state["first"] = grade(root, subs, "grades-first.csv", "--feedback")
    shutil.copytree(results, folder / "results-first")
    state["after_first"] = digests(*protected)
    state["mtimes_first"] = mtimes(results)

    state["again"] = grade(root, subs, "grades-again.csv")
    state["mtimes_again"] = mtimes(results)
    state["subs_after_again"] = digests(subs)

    resubmitted = subs / "resubmits" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    resubmitted.write_bytes(submission(CLASS["resubmits"], root, subs, answer=RESUBMISSION))
    state["changed"] = grade(root, subs, "grades-changed.csv")
    state["mtimes_changed"] = mtimes(results)
    state["subs_after_changed"] = digests(subs)

    state["lms"] = grade(root, folder / "lms.zip", "grades-lms.csv")
    exported = subprocess.run([sys.executable, "-m", "nbgrader", "export"], check=False, cwd=root, env=nbgrader_env(),
                              capture_output=True, text=True, timeout=300)
    state["export"] = {"rc": exported.returncode, "stderr": exported.stderr[-3000:]}
    return state


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """The whole scenario, run once per test session even with pytest-xdist (the first worker runs it)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    folder, done = base / "grading-pipeline", base / "grading-pipeline.json"
    with exclusive(base / "grading-pipeline.lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            done.write_text(json.dumps(run_scenario(folder)))
    state = json.loads(done.read_text())
    state["folder"] = folder
    return state


# --- what the tests read --------------------------------------------------------------------------
def first_result(scenario: dict, student: str) -> NotebookResult:
    """The trusted grader's result for ``student`` from the first run."""
    path = scenario["folder"] / "results-first" / ASSIGNMENT / student / f"{ASSIGNMENT}.json"
    return NotebookResult.from_json(json.loads(path.read_text()))


def all_flags(result: NotebookResult) -> list[str]:
    return result.all_flags


def gradebook(scenario: dict) -> dict[str, dict[str, float]]:
    """{student: {grade_id: score}} from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    out: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{Path(scenario['root']) / 'gradebook.db'}", course_id="dl4cv") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            out[sub.student_id] = {g.name: float(g.score) for nb in sub.notebooks for g in nb.grades}
    return out


def summary_line(stdout: str, student: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith(student + " "))


GRADED = [name for name, s in CLASS.items() if s.edit != "truncate" and name != "resubmits"]

# --- the tests ------------------------------------------------------------------------------------
def test_every_notebook_is_graded_with_the_sandbox_on(scenario):
    first = scenario["first"]
    assert "protections OFF" not in first["stdout"], first["stdout"]
    assert f"{len(CLASS)} notebooks of {len(CLASS)} students: {len(CLASS)} graded now" in first["stdout"]


@pytest.mark.parametrize("run", ["first", "again", "changed"])
def test_no_grader_errors(scenario, run):
    """The grader survives every student: no GRADER ERROR, exit status 0."""
    done = scenario[run]
    assert "GRADER ERROR" not in done["stdout"] and done["rc"] == 0, done["stdout"][-3000:] + done["stderr"]


@pytest.mark.parametrize("student", GRADED)
def test_scores_in_csv_and_gradebook(scenario, student):
    """1-7, 9-11: each student's points, the same in the CSV, the summary and nbgrader's gradebook."""
    sizes, errors = CLASS[student].points
    row = scenario["first"]["rows"][student]
    result = first_result(scenario, student)
    failures = {g: t.failure for g, t in result.tests.items() if not t.passed}
    assert (float(row[SIZES]), float(row[ERRORS])) == (sizes, errors), failures
    assert float(row["autograded"]) == sizes + errors
    assert row["max_points"] == "5"
    assert f" {sizes + errors:g}/4" in summary_line(scenario["first"]["stdout"], student)
    recorded = gradebook(scenario)[student]
    assert (recorded[SIZES], recorded[ERRORS]) == (sizes, errors)


def test_correct_student_gets_full_marks(scenario):
    """1: 4/4, the written answer waits for the instructor, no flags."""
    row = scenario["first"]["rows"]["correct"]
    assert (row[SIZES], row[ERRORS], row["autograded"]) == ("3", "1", "4")
    assert row["leftover_answer"] == "needs manual grade"
    assert (row["status"], row["flags"]) == ("graded", "")


@pytest.mark.parametrize("student", [name for name, s in CLASS.items() if s.flags])
def test_flags(scenario, student):
    """5, 6, 9, 10 and the edited test cell: each is flagged for the instructor, in the CSV and the summary."""
    row = scenario["first"]["rows"][student]
    flags = "; ".join(all_flags(first_result(scenario, student)))
    for expected in CLASS[student].flags:
        assert expected in flags and expected in row["flags"], flags
    assert row["status"] != "graded"


@pytest.mark.parametrize("student", [name for name, s in CLASS.items() if s.clean])
def test_clean_students_are_not_flagged(scenario, student):
    """7: printing to stderr and warnings are not a problem."""
    assert all_flags(first_result(scenario, student)) == []
    assert scenario["first"]["rows"][student]["status"] == "graded"


def test_snoop_sees_nothing_and_changes_nothing(scenario):
    """4: hidden tests, gradebook, other students, the seed: unreadable; the course: unwritable."""
    failure = first_result(scenario, "snoop").tests[SIZES].failure or ""
    match = re.search(r"nothing leaked: (\{.*\})", failure)
    assert match, f"an attack worked (the answer would be right): {failure}"
    seen = json.loads(match.group(1))
    assert len(seen) == SNOOP_ATTACKS
    assert not [what for what, got in seen.items() if got.startswith("GOT")], seen
    root = Path(scenario["root"])
    assert not (root / "pwned.txt").exists()
    assert not (root / ".grading" / "results" / ASSIGNMENT / "pwned.json").exists()
    assert scenario["after_first"] == scenario["before"]  # solutions, config, submissions, the checks
    with sqlite3.connect(root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not (root / "gradebook.db").read_bytes().endswith(b"pwned")


def test_hidden_failures_are_kept_for_the_instructor(scenario):
    """The seed reached the checks (hidden cases drawn from it), and the instructor sees which input failed."""
    result = first_result(scenario, "hardcoded")
    for grade_id in (SIZES, ERRORS):
        test = result.tests[grade_id]
        assert test.hidden_failed and "conv_output_size(" in (test.failure or ""), test
        assert "A hidden check failed" in (test.feedback or "")


def test_exit_keeps_the_cells_that_ran(scenario):
    """5: os._exit after a correct answer: the worker is restarted and the answer replayed."""
    result = first_result(scenario, "exit_after_correct")
    assert result.restarts == 1
    assert [r.status for r in result.runs if r.index == 4] == ["died"]


@pytest.mark.parametrize("student", ["infinite_loop", "fork_bomb"])
def test_a_hanging_cell_costs_only_itself(scenario, student):
    """6, 11: a cell that never ends is stopped at the cell timeout; the rest is graded."""
    result = first_result(scenario, student)
    assert [r.status for r in result.runs if r.index == 4] == ["timeout"]
    assert result.restarts == 1
    assert result.seconds < 6 * CELL_TIMEOUT


def test_memory_hog_is_bounded(scenario):
    """11: the address-space limit (8 GiB) stops the hog with a MemoryError; its correct answer counts."""
    run = next(r for r in first_result(scenario, "memory_hog").runs if r.index == 4)
    got = re.fullmatch(r"hog stopped at (\d+) MiB\s*", run.stdout)
    assert run.status == "ok" and got, run
    assert 0 < int(got.group(1)) <= 8 * 1024


def test_invalid_notebook_is_not_graded(scenario):
    """8: a truncated notebook is not a 0: the CSV and the summary say it needs review."""
    first = scenario["first"]
    row = first["rows"]["invalid_json"]
    assert row["status"].startswith("NOT GRADED") and "needs review" in row["status"]
    assert row[SIZES] == row[ERRORS] == ""
    assert "NOT GRADED (invalid notebook): needs review" in summary_line(first["stdout"], "invalid_json")
    assert "invalid_json" not in gradebook(scenario)


def test_invalid_notebook_total_is_blank(scenario):
    """8: no number at all in the row of a notebook that was not graded (a total of 0 is a plain 0)."""
    assert scenario["first"]["rows"]["invalid_json"]["autograded"] == ""


def test_lms_zip_is_graded_the_same(scenario):
    """12: Canvas-style names in a zip: same students' work, same results, a note on the stray file."""
    lms = scenario["lms"]
    assert lms["rc"] == 0, lms["stdout"][-3000:] + lms["stderr"]
    assert "5 notebooks of 8 students: 5 graded now" in lms["stdout"]  # 3 students have nothing gradable
    assert "stray.ipynb" in lms["stdout"]
    for lms_name, twin in LMS.items():
        student = lms_name.split("_")[0]
        row, twin_row = lms["rows"][student], scenario["first"]["rows"][twin]
        assert [row[k] for k in (SIZES, ERRORS, "autograded", "status")] == \
            [twin_row[k] for k in (SIZES, ERRORS, "autograded", "status")]
        assert gradebook(scenario)[student] == gradebook(scenario)[twin]


def test_malformed_lms_files_become_rows_and_the_run_completes(scenario):
    """A broken zip, a file and a folder of one name, a zip bomb: NOT GRADED rows; odd names graded right."""
    lms, root = scenario["lms"], Path(scenario["root"])
    rows = lms["rows"]
    for student, why in {"brokenzip": "is not a readable zip file", "dirclash": "could not be unpacked",
                         "bomb": "more than the limit"}.items():
        assert rows[student]["status"].startswith("NOT GRADED") and why in rows[student]["flags"], rows[student]
        assert rows[student]["autograded"] == "" and student not in gradebook(scenario)
        assert f"{student}" in lms["stdout"]
    assert "cannot be a student id" in lms["stdout"] and ".." not in rows
    assert not (root / ASSIGNMENT).exists() and not (root / "submitted" / ASSIGNMENT).exists()
    assert sum(p.stat().st_size for p in (root / "submitted").rglob("*") if p.is_file()) < 50 * 2**20
    for student in ("jürgen", "ckpt", "extra"):
        assert rows[student]["autograded"] == "4", rows[student]
        assert sum(gradebook(scenario)[student].values()) == 4  # the CSV and the gradebook agree
    assert rows["ckpt"]["flags"] == "" and rows["extra"]["flags"] == "extra notebook not graded: scratch.ipynb"
    assert "renamed notebook: a0_warmup-1.ipynb" in rows["ziptamper"]["flags"]
    assert sorted(rows) == sorted([*CLASS, "zipcorrect", "ziptamper", "brokenzip", "dirclash", "jürgen", "ckpt",
                                   "extra", "bomb"])  # cumulative: the class graded before is still there


def test_rerun_grades_nothing_new(scenario):
    """13: the same class again: nothing graded, nothing rewritten, the same grades."""
    again = scenario["again"]
    assert f"{len(CLASS)} notebooks of {len(CLASS)} students: 0 graded now" in again["stdout"]
    assert scenario["mtimes_again"] == scenario["mtimes_first"]
    assert again["rows"] == scenario["first"]["rows"]


def test_a_changed_submission_is_the_only_one_regraded(scenario):
    """13: one student hands in again: only that notebook is graded, the gradebook follows."""
    changed = scenario["changed"]
    assert f"{len(CLASS)} notebooks of {len(CLASS)} students: 1 graded now" in changed["stdout"]
    before, after = scenario["mtimes_again"], scenario["mtimes_changed"]
    rewritten = {name for name in after if before.get(name) != after[name]}
    assert rewritten == {f"{ASSIGNMENT}/resubmits/{ASSIGNMENT}.json"}
    assert changed["rows"]["resubmits"]["autograded"] == "4"
    assert gradebook(scenario)["resubmits"] == {SIZES: 3, ERRORS: 1, "leftover_answer": 0}
    others = {k: v for k, v in changed["rows"].items() if k != "resubmits"}
    assert others == {k: v for k, v in scenario["first"]["rows"].items() if k != "resubmits"}


@pytest.mark.parametrize("run", ["first", "again", "changed"])
def test_summary_counts_add_up(scenario, run):
    """Graded now + from earlier runs = the notebooks there are."""
    graded_now = {"first": len(CLASS), "again": 0, "changed": 1}[run]
    assert f"{graded_now} graded now, {len(CLASS) - graded_now} from earlier runs" in scenario[run]["stdout"]


def test_originals_are_untouched(scenario):
    """13: the submissions folder is byte-identical after every run (the one resubmission aside)."""
    subs = scenario["subs"]
    assert scenario["subs_after_again"] == {k: v for k, v in scenario["before"].items() if k.startswith(subs)}
    resubmitted = str(Path(subs) / "resubmits" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    same = {k: v for k, v in scenario["subs_after_changed"].items() if k != resubmitted}
    assert same == {k: v for k, v in scenario["subs_after_again"].items() if k != resubmitted}


@pytest.mark.parametrize("student", ["hardcoded", "deleted_test", "correct"])
def test_feedback_hides_the_hidden_tests(scenario, student):
    """14: --feedback: no hidden test source, no hidden inputs; a student is told a hidden check failed."""
    html = (Path(scenario["root"]) / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "BEGIN HIDDEN TESTS" not in html and "hidden=True" not in html
    for test in first_result(scenario, student).tests.values():
        if test.hidden_failed:
            call = re.search(r"conv_output_size\([^)]*\)", test.failure or "").group(0)
            assert call not in html, f"feedback shows the hidden input {call}"
            assert "A hidden check failed" in html


@pytest.mark.parametrize("student", [*GRADED, "resubmits"])
def test_nbgrader_export_has_the_students(scenario, student):
    """15: nbgrader export reads the gradebook the command wrote (the resubmission's final 4 points)."""
    assert scenario["export"]["rc"] == 0, scenario["export"]["stderr"]
    with open(Path(scenario["root"]) / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    sizes, errors = (3, 1) if student == "resubmits" else CLASS[student].points
    assert float(rows[student]["raw_score"]) == sizes + errors, rows[student]
