"""The instructor's command end to end on a tiny class: gradebook, cumulative CSV, late penalty, regrading.

The hostile class (tampering, crashes, timeouts, LMS zips, feedback) is in tests/heavy/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.grading import COURSE_ROOT, cli, nbgrader_env, pipeline, store
from course_utils.grading.results import NotebookResult
from course_utils.grading.sandbox import bubblewrap_problem
from course_utils.grading.session import Timeouts

SECRET = secrets.token_hex(16)  # a strong secret, new for every test session
SANDBOX = [] if bubblewrap_problem() is None else ["--no-sandbox"]
CORRECT = """def conv_output_size(i, k, s=1, p=0, d=1):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1
"""
# A course-wide late policy as an instructor writes it: 10% of the score for any late submission.
LATE_POLICY = '''
from nbgrader.plugins import LateSubmissionPlugin


class TenPercentLate(LateSubmissionPlugin):
    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return 0.1 * score if total_seconds_late > 0 else 0.0


c.AssignLatePenalties.plugin_class = TenPercentLate
'''


def run_grader(course: Path, source: str = "subs", *extra: str, env: dict | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "a0_warmup", source, "--root", str(course),
                           "--jobs", "2", *SANDBOX, *extra], cwd=course, capture_output=True, text=True,
                          timeout=600, env=nbgrader_env({"COURSE_GRADING_SEED": SECRET, **(env or {})}))
    return done.returncode, done.stdout + done.stderr


def new_course(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("nbgrader_config.py", "solutions", "assignments"):
        (shutil.copytree if (COURSE_ROOT / name).is_dir() else shutil.copy)(COURSE_ROOT / name, root / name)
    return root


def test_nothing_matched_is_an_error_that_writes_nothing(tmp_path):
    course = new_course(tmp_path / "course")
    download = tmp_path / "download"
    download.mkdir()
    (download / "notes.ipynb").write_text("{}")
    before = sorted(p.relative_to(course) for p in course.rglob("*"))
    code, output = run_grader(course, str(download))
    assert code == 2 and "0 notebooks matched" in output and "notes.ipynb" in output and "Traceback" not in output
    assert sorted(p.relative_to(course) for p in course.rglob("*")) == before  # no CSV, gradebook or results


def test_bad_arguments_say_what_was_expected(tmp_path):
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "a0_warmup", "subs", "--root",
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "expected nbgrader_config.py there" in done.stderr


def test_a_missing_submissions_folder_is_named(tmp_path):
    course = new_course(tmp_path / "course")
    code, output = run_grader(course, "nowhere")
    assert code == 2 and "no submissions at" in output and "Traceback" not in output


@pytest.fixture
def bare_course(tmp_path, monkeypatch):
    """A course folder where grading stops right after the refusals (there are no submissions)."""
    course = new_course(tmp_path / "course")
    monkeypatch.setenv("PATH", os.environ["PATH"])
    return course


def grade_nothing(course: Path, *extra: str) -> list[str]:
    return ["a0_warmup", str(course / "nowhere"), "--root", str(course), *extra]


def test_grading_without_bubblewrap_is_refused_unless_asked(bare_course, monkeypatch, capsys):
    from course_utils.grading import sandbox

    monkeypatch.setenv("COURSE_GRADING_SEED", SECRET)
    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda: "bubblewrap not found: install it")
    assert cli.main(grade_nothing(bare_course)) == 2
    err = capsys.readouterr().err
    assert "refused: the sandbox cannot run here: bubblewrap not found" in err and "--no-sandbox" in err
    assert cli.main(grade_nothing(bare_course, "--no-sandbox")) == 2
    assert "no submissions at" in capsys.readouterr().err  # it went on to grading


@pytest.mark.parametrize("secret", [None, "", "20240917", "my course secret"])
def test_a_weak_secret_is_refused_for_official_grading(bare_course, monkeypatch, capsys, secret):
    if secret is None:
        monkeypatch.delenv("COURSE_GRADING_SEED", raising=False)
    else:
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    assert cli.main(grade_nothing(bare_course, "--no-sandbox")) == 2
    err = capsys.readouterr().err
    assert "refused: COURSE_GRADING_SEED is too weak for official grading" in err and "token_hex(16)" in err
    assert "--practice" in err and "no submissions at" not in err
    assert cli.main(grade_nothing(bare_course, "--no-sandbox", "--practice")) == 2
    err = capsys.readouterr().err
    assert "PRACTICE RUN" in err and "not official" in err and "no submissions at" in err


def test_notebook_timeout_reaches_the_session(monkeypatch, bare_course):
    seen = {}

    def fake_grade_class(*args, timeouts, **kwargs):
        seen["timeouts"] = timeouts
        raise ValueError("stop here")

    monkeypatch.setenv("COURSE_GRADING_SEED", SECRET)
    monkeypatch.setattr(pipeline, "grade_class", fake_grade_class)
    cli.main(grade_nothing(bare_course, "--no-sandbox", "--notebook-timeout", "42", "--cell-timeout", "7"))
    assert (seen["timeouts"].notebook, seen["timeouts"].cell) == (42, 7)


@pytest.mark.parametrize("flag, gpu", [([], False), (["--gpu"], True)], ids=["cpu", "gpu"])
def test_gpu_is_opt_in_and_reaches_each_sandbox(monkeypatch, bare_course, tmp_path, flag, gpu):
    from course_utils.grading.sandbox import Sandbox

    seen = {}

    def fake_grade_class(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setenv("COURSE_GRADING_SEED", SECRET)
    monkeypatch.setattr(pipeline, "grade_class", fake_grade_class)
    cli.main(grade_nothing(bare_course, "--no-sandbox", *flag))
    assert seen["gpu"] is gpu
    box = pipeline._sandbox_factory(True, gpu)(tmp_path, {})
    assert isinstance(box, Sandbox) and box.gpu is gpu


# --- the results store's fingerprint -----------------------------------------------------------------
@pytest.fixture
def parts(monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", SECRET)

    def make(**changes) -> dict[str, str]:
        options = {"timeouts": Timeouts(), "sandboxed": True, "submitted_at": ""} | changes
        return store.key_parts(COURSE_ROOT, "a0_warmup", "a0_warmup", "abc", **options)

    return make


def stored(parts: dict[str, str]) -> NotebookResult:
    return NotebookResult("a0_warmup", student="s", key=store.fingerprint(parts), key_parts=parts)


def test_a_stored_result_stands_while_nothing_that_decides_it_changes(parts):
    assert store.why_regrade(stored(parts()), parts()) is None
    assert store.why_regrade(None, parts()) == "new"


@pytest.mark.parametrize("change, reason", [
    (lambda mp: mp.setattr(store, "checks_digest", lambda folder, assignment: "x"), "checks changed"),
    (lambda mp: mp.setattr(store, "package_digest",
                           lambda f, real=store.package_digest: "x" if f.name == "grading" else real(f)),
     "grader changed"),
    (lambda mp: mp.setenv("COURSE_GRADING_SEED", secrets.token_hex(16)), "secret changed"),
    (lambda mp: mp.setattr(store, "checkpoints_digest", lambda *args: "rebuilt"), "course checkpoints changed"),
])
def test_a_change_of_code_or_secret_regrades(parts, monkeypatch, change, reason):
    before = stored(parts())
    change(monkeypatch)
    assert store.why_regrade(before, parts()) == reason


@pytest.mark.parametrize("changes, reason", [
    ({"timeouts": Timeouts(cell=301)}, "timeouts and limits changed"),
    ({"sandboxed": False}, "sandbox changed"),
    ({"submitted_at": "2026-02-11 09:00:00.000000 UTC"}, "submission time changed"),
])
def test_a_change_of_settings_regrades(parts, changes, reason):
    assert store.why_regrade(stored(parts()), parts(**changes)) == reason


def test_every_source_of_a_verdict_is_in_the_fingerprint(parts):
    assert set(parts()) == {"submission", "source notebook", "release notebook", "checks", "course checkpoints",
                            "grader", "timeouts and limits", "sandbox", "secret", "submission time", "versions"}
    assert store.package_digest(COURSE_ROOT / "course_utils" / "checks") != \
        store.package_digest(COURSE_ROOT / "course_utils" / "grading")


def test_the_checks_digest_covers_the_shared_modules_and_the_assignments_own_and_imported_ones(tmp_path):
    import shutil

    folder = tmp_path / "checks"
    shutil.copytree(COURSE_ROOT / "course_utils" / "checks", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "a9_later.py").write_text("X = 1\n")
    before = {a: store.checks_digest(folder, a) for a in ("a0_warmup", "a1_convolutions")}

    def after(edit: str) -> dict[str, bool]:
        """Which assignments' digests an appended comment in ``edit`` changes (the file is restored after)."""
        text = (folder / edit).read_text()
        (folder / edit).write_text(text + "# edited\n")
        try:
            return {a: store.checks_digest(folder, a) != before[a] for a in before}
        finally:
            (folder / edit).write_text(text)

    assert after("__init__.py") == {"a0_warmup": True, "a1_convolutions": True}     # shared: everyone
    assert after("guard.py") == {"a0_warmup": True, "a1_convolutions": True}
    assert after("a0_warmup.py") == {"a0_warmup": True, "a1_convolutions": True}    # a1 imports a0's cases
    assert after("a1_convolutions.py") == {"a0_warmup": False, "a1_convolutions": True}
    assert after("a9_later.py") == {"a0_warmup": False, "a1_convolutions": False}   # another assignment's


def test_an_assignment_whose_checks_are_a_package_is_digested_as_one_module(tmp_path):
    import shutil

    folder = tmp_path / "checks"
    shutil.copytree(COURSE_ROOT / "course_utils" / "checks", folder, ignore=shutil.ignore_patterns("__pycache__"))
    package = folder / "a9_package"
    package.mkdir()
    (package / "__init__.py").write_text("from .parts import X\nfrom ..a0_warmup import check_output_size\n")
    (package / "parts.py").write_text("X = 1\n")
    before = {a: store.checks_digest(folder, a) for a in ("a0_warmup", "a1_convolutions", "a9_package")}

    def edited(path):
        text = path.read_text()
        path.write_text(text + "# edited\n")
        try:
            return {a: store.checks_digest(folder, a) != before[a] for a in before}
        finally:
            path.write_text(text)

    # a file deep in the package changes that assignment's digest only, not the shared ones'
    assert edited(package / "parts.py") == {"a0_warmup": False, "a1_convolutions": False, "a9_package": True}
    # what the package imports from another assignment's checks counts for it
    assert edited(folder / "a0_warmup.py") == {"a0_warmup": True, "a1_convolutions": True, "a9_package": True}


def test_the_course_checkpoints_count_only_for_assignments_whose_checks_load_them(tmp_path):
    checks_folder = tmp_path / "checks"
    checks_folder.mkdir()
    (checks_folder / "a1_x.py").write_text("X = 1\n")
    (checks_folder / "a4_y").mkdir()
    (checks_folder / "a4_y" / "__init__.py").write_text("from course_utils import pretrained\n")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "m.pt").write_bytes(b"weights")
    assert store.checkpoints_digest(checks_folder, checkpoints, "a1_x") == "unused"
    first = store.checkpoints_digest(checks_folder, checkpoints, "a4_y")
    (checkpoints / "m.pt").write_bytes(b"rebuilt")
    assert store.checkpoints_digest(checks_folder, checkpoints, "a4_y") not in ("unused", first)


def test_a_result_is_read_back_whole_or_not_at_all(tmp_path):
    results = store.ResultStore(tmp_path, "a0_warmup")
    result = NotebookResult("a0_warmup", student="s", key="k", key_parts={"checks": "c"})
    results.save(result)
    assert results.load("s", "a0_warmup") == result
    results.path("s", "a0_warmup").write_text('{"tests": [')  # damaged: graded again, never a crash
    assert results.load("s", "a0_warmup") is None


# --- one submission never stops a class run -------------------------------------------------------
class Gone(BaseException):
    """Like the session's StudentGone and GradingError: not an Exception."""


@pytest.mark.parametrize("error", [Gone("the worker died again on restart"), RecursionError("deep"), KeyError(None)])
def test_grade_one_turns_any_failure_into_a_grader_error_row(tmp_path, monkeypatch, error):
    from course_utils.grading import session

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(session, "grade_notebook", explode)
    job = pipeline._Job("s", tmp_path / "a0_warmup.ipynb", {"submission": "abc"}, ())
    done, result, message = pipeline._grade_one(str(tmp_path), "a0_warmup", job, Timeouts(), False, str(tmp_path))
    assert done == job and result is None and message.startswith(type(error).__name__)
    assert not list(tmp_path.rglob("*.json"))  # no score stored
