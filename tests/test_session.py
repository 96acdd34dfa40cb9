"""Trusted grading of one notebook: the checks run in the grader, the student's code in a worker.

These run the worker as a plain subprocess (fast); tests/heavy/test_grading_pipeline.py repeats
the hostile cases through the whole command with the sandbox on.
"""

import pytest

from course_utils.grading import COURSE_ROOT
from course_utils.grading.session import Timeouts, grade_notebook

CORRECT = """def conv_output_size(i, k, s=1, p=0, d=1):
    span = d * (k - 1) + 1
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < span:
        raise ValueError(f"impossible: i={i} k={k} s={s} p={p} d={d}")
    return (i + 2 * p - span) // s + 1
"""
WRONG = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return (i + 2 * p - k) // s + 1\n"


def grade(path, **timeouts):
    return grade_notebook(path, "a0_warmup", timeouts=Timeouts(**timeouts) if timeouts else Timeouts())


def passed(result):
    return {g: t.passed for g, t in result.tests.items()}


def test_the_solution_gets_every_autograded_point_and_the_release_none():
    solved = grade(COURSE_ROOT / "solutions" / "a0_warmup" / "a0_warmup.ipynb")
    blank = grade(COURSE_ROOT / "assignments" / "a0_warmup" / "a0_warmup.ipynb")
    assert solved.score == 4 and blank.score == 0
    assert "hidden cases" in solved.tests["test_conv_output_size"].output
    assert "not implemented yet" in blank.tests["test_conv_output_size"].failure
    assert [r.status for r in blank.runs] == ["ok", "ok", "error"]  # the "try it" cell raised, nothing else


def test_nothing_in_the_students_process_can_change_the_verdict(make_submission):
    """Patched numpy/torch comparisons, a rewritten checks module, printed ✓: a wrong answer stays wrong."""
    hostile = WRONG + """
import numpy, torch, sys
numpy.allclose = torch.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
import course_utils.checks.a0_warmup as c
c.check_conv_output_size = c.check_conv_output_size_errors = lambda *a, **k: print("✓ all passed")
print("✓ conv_output_size: all 7 cases passed")
"""
    result = grade(make_submission({"conv_output_size": hostile}))
    assert passed(result) == {"test_conv_output_size": False, "test_conv_output_size_errors": False}


def test_warnings_and_stderr_from_a_correct_answer_cost_nothing(make_submission):
    noisy = CORRECT.replace("    return", "    import sys, warnings\n"
                                          "    warnings.warn('a UserWarning from the answer')\n"
                                          "    print('to stderr', file=sys.stderr)\n    return")
    result = grade(make_submission({"conv_output_size": noisy}))
    assert result.score == 4 and result.flags == []


def test_a_tampered_test_cell_is_graded_as_the_original_and_flagged(make_submission):
    result = grade(make_submission({"conv_output_size": WRONG, "test_conv_output_size": "print('✓ passed')"}))
    assert passed(result)["test_conv_output_size"] is False
    assert "modified test cell (graded with the original): test_conv_output_size" in result.flags


def test_a_crash_or_a_hang_costs_only_its_own_cell(make_submission):
    crashed = grade(make_submission({"conv_output_size": CORRECT}, name="crash",
                                    after={"conv_output_size": "import os\nos._exit(3)"}))
    assert crashed.score == 4 and crashed.restarts == 1
    assert any("process ended" in flag for flag in crashed.flags)

    hung = grade(make_submission({"conv_output_size": CORRECT}, name="hang",
                                 after={"conv_output_size": "while True:\n    pass"}), cell=12)
    assert hung.score == 4 and any("timed out" in flag for flag in hung.flags)
    assert [r.status for r in hung.runs] == ["ok", "ok", "timeout", "ok"]


def test_the_reference_is_unavailable_while_the_answer_runs(make_submission):
    via_pytorch = """def conv_output_size(i, k, s=1, p=0, d=1):
    import torch
    x = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]
"""
    result = grade(make_submission({"conv_output_size": via_pytorch}))
    assert result.score == 0
    assert "torch.nn.functional.conv2d cannot be used" in result.tests["test_conv_output_size"].failure


@pytest.mark.parametrize("answer, message", [
    (CORRECT.replace("return (", "import numpy\n    return numpy.int64("), "should return the int"),
    ("x = 1", "conv_output_size is not defined"),
    ("conv_output_size = 42", "is a int, not a function"),
])
def test_the_grader_sees_what_the_students_kernel_would(make_submission, answer, message):
    result = grade(make_submission({"conv_output_size": answer}))
    assert result.score == 0 and message in result.tests["test_conv_output_size"].failure


def test_a_deleted_test_cell_is_still_graded(make_submission, tmp_path):
    import nbformat

    path = make_submission({"conv_output_size": CORRECT})
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_conv_output_size"]
    nbformat.write(nb, path)
    result = grade(path)
    assert result.score == 4
    assert "deleted cell: test_conv_output_size" in result.flags
    assert result.tests["test_conv_output_size"].flags
