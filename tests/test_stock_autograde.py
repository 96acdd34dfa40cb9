"""Stock `nbgrader autograde` agrees with the course's grader on a correct answer that logs to stderr."""

import pytest

from course_utils.grading import COURSE_ROOT, TempCourse

LOGGING_ANSWER = '''import logging

logging.basicConfig(level=logging.INFO)   # a handler on the kernel's stderr, created before any check runs
log = logging.getLogger("conv")


def conv_output_size(i, k, s=1, p=0, d=1):
    log.info("conv_output_size(%s, %s, s=%s, p=%s, d=%s)", i, k, s, p, d)
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        log.warning("no output")
        raise ValueError("no output")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1
'''


@pytest.mark.nbgrader
def test_a_correct_answer_that_logs_to_stderr_keeps_its_points(make_submission):
    with TempCourse("a0_warmup") as course:
        course.generate()
        course.submit("logs", make_submission({"conv_output_size": LOGGING_ANSWER}, name="logs"))
        logs = course.autograde("logs")
    assert {g: s.score for g, s in logs.items() if s.autograded} == \
        {"test_conv_output_size": 3, "test_conv_output_size_errors": 1}


def test_only_a_test_cells_stderr_is_dropped_never_its_error():
    import nbformat

    from course_utils.grading.stock import IgnoreStderrInTests

    stderr = nbformat.v4.new_output("stream", name="stderr", text="INFO:conv:called\n")
    stdout = nbformat.v4.new_output("stream", name="stdout", text="✓ passed\n")
    error = nbformat.v4.new_output("error", ename="CheckFailure", evalue="wrong", traceback=[])
    test = nbformat.v4.new_code_cell("check()", outputs=[stdout, stderr, error])
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t", "points": 1}
    answer = nbformat.v4.new_code_cell("def f(): ...", outputs=[stderr])
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "grade_id": "a"}
    nb = nbformat.v4.new_notebook(cells=[answer, test])
    IgnoreStderrInTests().preprocess(nb, {})
    assert test.outputs == [stdout, error]       # still fails: the error stays
    assert answer.outputs == [stderr]            # the student's own cell is left as it ran


def test_the_course_config_uses_it():
    config = (COURSE_ROOT / "nbgrader_config.py").read_text()
    assert "c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS" in config
