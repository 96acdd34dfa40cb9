"""For every assignment: generate the release, compare it with assignments/, autograde
the solution (full marks) and the untouched release (zero, no crash)."""

import pytest

from course_utils.grading import COURSE_ROOT, TempCourse, assignment_ids, release_differences

pytestmark = pytest.mark.nbgrader


@pytest.mark.parametrize("assignment", assignment_ids())
def test_round_trip(assignment):
    with TempCourse(assignment) as course:
        release = course.generate()
        assert release_differences(release, COURSE_ROOT / "assignments" / assignment) == []

        course.submit("solution", COURSE_ROOT / "solutions" / assignment / f"{assignment}.ipynb")
        solution = course.autograde("solution")
        autograded = {k: v for k, v in solution.items() if v.autograded}
        assert autograded, "an assignment needs autograded cells"
        lost = {k: (v.score, v.max_score) for k, v in autograded.items() if v.score != v.max_score}
        assert lost == {}, f"the solution lost points: {lost}"
        # Written answers wait for a person.
        assert all(v.needs_manual_grade for v in solution.values() if not v.autograded)

        course.submit("blank", release / f"{assignment}.ipynb")
        blank = course.autograde("blank")
        assert set(blank) == set(solution)
        earned = {k: v.score for k, v in blank.items() if v.score != 0}
        assert earned == {}, f"the untouched release earned points: {earned}"


def test_release_differences_finds_drift(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.ipynb").write_text('{"cells": [{"source": "1"}]}')
    (b / "x.ipynb").write_text('{"cells": [{"source": "2"}]}')
    (a / "data.txt").write_text("new")
    problems = release_differences(a, b)
    assert any("differs" in p and "cell 0" in p for p in problems)
    assert any("missing" in p and "data.txt" in p for p in problems)
    assert "does not exist" in release_differences(a, tmp_path / "none")[0]


def test_unknown_assignment_is_explained():
    with pytest.raises(ValueError, match="no assignment 'a9'.*known"):
        TempCourse("a9")
