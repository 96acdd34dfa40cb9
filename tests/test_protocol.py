"""The checking protocol: test cells are data; checks run directly on Python functions in milliseconds."""

import pytest

from course_utils.grading import assignment_ids
from course_utils.grading.protocol import (ProtocolError, checks_module, graded_cells, parse_test_cell, run_checks,
                                           source_notebook)

CORRECT = "def conv_output_size(i, k, s=1, p=0, d=1):\n" \
          "    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:\n" \
          "        raise ValueError('impossible')\n" \
          "    return (i + 2 * p - d * (k - 1) - 1) // s + 1\n"


def test_a_test_cell_is_read_as_calls_with_visible_and_hidden_parts():
    calls = parse_test_cell("checks.check_a(f, g)\n"
                            "### BEGIN HIDDEN TESTS\n"
                            "checks.check_a(f, g, hidden=True, tolerance=1e-5)\n"
                            "checks.check_b(f)\n"
                            "### END HIDDEN TESTS\n")
    assert [(c.check, c.functions, c.hidden) for c in calls] == [
        ("check_a", ("f", "g"), False), ("check_a", ("f", "g"), True), ("check_b", ("f",), True)]
    assert calls[1].options == {"hidden": True, "tolerance": 1e-5}


@pytest.mark.parametrize("source, message", [
    ("print('✓ passed')", "expected only lines like checks.check_name"),
    ("assert conv_output_size(7, 3) == 5", "expected only lines like"),
    ("checks.check_a(f(1))", "positional arguments must be names"),
    ("checks.check_a(f, tol=1 + x)", "must be a literal"),
    ("checks.check_a(f, **options)", "no \\*\\*options"),
    ("import os\nchecks.check_a(f)", "line 1"),
    ("", "calls no checks"),
    ("checks.check_a(f", "not valid Python"),
])
def test_anything_else_in_a_test_cell_is_a_protocol_error(source, message):
    with pytest.raises(ProtocolError, match=message):
        parse_test_cell(source, "test_x")


@pytest.mark.parametrize("assignment", assignment_ids())
def test_every_assignment_follows_the_protocol(assignment):
    """Each autograded cell of each source notebook parses, names an existing check and has hidden calls."""
    module = checks_module(assignment)
    cells = graded_cells(source_notebook(assignment))
    assert cells, f"{assignment} has no autograded test cells"
    for cell in cells:
        assert cell.points > 0
        assert any(not c.hidden for c in cell.calls), f"{cell.grade_id}: no visible check for students"
        assert any(c.hidden for c in cell.calls), f"{cell.grade_id}: no hidden check"
        for call in cell.calls:
            assert callable(getattr(module, call.check, None)), f"{cell.grade_id}: no checks.{call.check}"


def test_run_checks_grades_python_functions_directly():
    namespace = {}
    exec(CORRECT, namespace)
    results = run_checks("a0_warmup", namespace)
    assert list(results) == ["test_conv_output_size", "test_conv_output_size_errors"]
    assert all(r.passed for r in results.values())
    assert "hidden cases" in results["test_conv_output_size"].output


def test_run_checks_reports_a_missing_function_clearly():
    results = run_checks("a0_warmup", {})
    assert not any(r.passed for r in results.values())
    assert "conv_output_size is not defined" in results["test_conv_output_size"].failure


def test_a_hidden_failure_is_not_revealed_to_the_student():
    def only_visible(i, k, s=1, p=0, d=1):
        table = {(32, 5, 1, 2, 1): 32, (7, 3, 1, 0, 1): 5, (7, 3, 2, 0, 1): 3, (7, 3, 3, 0, 1): 2,
                 (227, 11, 4, 0, 1): 55, (5, 3, 1, 0, 2): 1, (1, 1, 1, 0, 1): 1}
        return table.get((i, k, s, p, d), 0)

    result = run_checks("a0_warmup", {"conv_output_size": only_visible})["test_conv_output_size"]
    assert not result.passed and result.hidden_failed
    assert "✓ conv_output_size: all 7 cases passed" in result.output  # the visible part passed
    assert "expected" in result.failure  # the instructor sees the inputs ...
    assert "not shown" in result.feedback and "expected" not in result.feedback  # ... the student does not
    assert run_checks("a0_warmup", {"conv_output_size": only_visible}, hidden=False)["test_conv_output_size"].passed


def test_unknown_assignments_are_named():
    with pytest.raises(ValueError, match="no assignment 'a9'"):
        run_checks("a9", {})
    with pytest.raises(ValueError, match="course_utils/checks/a9.py"):
        checks_module("a9")


def _a0_cell(grade_id="test_conv_output_size"):
    from course_utils.grading.protocol import source_notebook

    return next(c for c in graded_cells(source_notebook("a0_warmup")) if c.grade_id == grade_id)


@pytest.mark.parametrize("fault, shown", [("BadAnswer", "the grader refused what your code sent back"),
                                          ("StudentGone", "your code stopped the grader's worker")])
def test_no_answer_at_all_fails_the_cell_with_a_flag(fault, shown):
    """A check catches the student's errors as wrong answers; a StudentFault passes through it to a flag."""
    from course_utils.grading import protocol

    def resolve(name):
        def proxy(*args, **kwargs):
            raise getattr(protocol, fault)("the answer to a call was forged")
        return proxy

    result = protocol.run_test_cell(_a0_cell(), checks_module("a0_warmup"), resolve)
    assert not result.passed and result.error_name == fault
    assert result.failure == f"{shown}: the answer to a call was forged"
    assert result.flags == [f"test_conv_output_size: {shown}: the answer to a call was forged"]


def test_the_grader_hears_of_the_first_hidden_call_before_it_runs():
    from course_utils.grading.protocol import run_test_cell

    namespace, events = {}, []
    exec(CORRECT, namespace)

    def resolve(name):
        def traced(*args, **kwargs):
            events.append("call")
            return namespace[name](*args, **kwargs)
        return traced

    result = run_test_cell(_a0_cell(), checks_module("a0_warmup"), resolve, on_hidden=lambda: events.append("hidden"))
    assert result.passed and "hidden" in events
    first_hidden = events.index("hidden")
    assert 0 < first_hidden < len(events) - 1 and "call" in events[first_hidden:]
    assert events.count("hidden") == sum(c.hidden for c in _a0_cell().calls)
    events.clear()
    run_test_cell(_a0_cell(), checks_module("a0_warmup"), resolve, hidden=False, on_hidden=lambda: events.append("x"))
    assert "x" not in events


def test_hidden_feedback_names_the_rule_where_the_checks_promise_it_and_never_a_number_the_student_chose():
    """a1's hidden failures name their rule (HIDDEN_MESSAGES_NAME_THE_RULE); a number the student's code
    returned, which could spell the hidden inputs, never reaches the feedback. a0 keeps a fixed sentence."""
    from course_utils.checks import a0_warmup, a1_convolutions
    from course_utils.grading.protocol import run_checks, solution_namespace

    visible_cases = {"a0_warmup": set(a0_warmup.VISIBLE_CASES),
                     "a1_convolutions": {case for _, case in a1_convolutions.SIZE_CASES}}
    for assignment, promised in (("a1_convolutions", True), ("a0_warmup", False)):
        right, visible = solution_namespace(assignment)["conv_output_size"], visible_cases[assignment]

        def spells_its_inputs(i, k, s=1, p=0, d=1, right=right, visible=visible):
            size = right(i, k, s=s, p=p, d=d)
            return size if (i, k, s, p, d) in visible else 987650 + i

        namespace = {**solution_namespace(assignment), "conv_output_size": spells_its_inputs}
        cell = run_checks(assignment, namespace)["test_conv_output_size"]
        assert not cell.passed and cell.hidden_failed, (assignment, cell)
        assert "98765" not in cell.feedback, cell.feedback
        assert ("on a hidden case" in cell.feedback) is promised, cell.feedback
