"""a0's checks, called directly: correct variants pass, kept wrong variants fail with a clear message."""

import math

import pytest

from course_utils.checks import CheckFailure
from course_utils.checks import a0_warmup as checks


def _validate(i, k, s, p, d):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("impossible convolution settings")


# --- correct, written differently from the solution -------------------------------------------
def by_counting(i, k, s=1, p=0, d=1):
    """Count the window positions one by one."""
    _validate(i, k, s, p, d)
    span, start, count = d * (k - 1) + 1, 0, 0
    while start + span <= i + 2 * p:
        count, start = count + 1, start + s
    return count


def by_math_floor(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return int(math.floor((i + 2 * p - d * (k - 1) - 1) / s)) + 1


# --- wrong ------------------------------------------------------------------------------------
def no_dilation(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return (i + 2 * p - k) // s + 1


def ceil_not_floor(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return -(-(i + 2 * p - d * (k - 1) - 1) // s) + 1


def padding_one_side(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return (i + p - d * (k - 1) - 1) // s + 1


def returns_float(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return (i + 2 * p - d * (k - 1) - 1) / s + 1


def never_raises(i, k, s=1, p=0, d=1):
    return (i + 2 * p - d * (k - 1) - 1) // max(s, 1) + 1


def raises_on_remainder(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    if (i + 2 * p - d * (k - 1) - 1) % s:
        raise ValueError("does not fit")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def not_implemented(i, k, s=1, p=0, d=1):
    raise NotImplementedError()


CORRECT = [by_counting, by_math_floor]
CHECKS = [checks.check_conv_output_size, checks.check_conv_output_size_errors]


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("answer", CORRECT)
def test_correct_variants_pass(answer, check, hidden, capsys):
    check(answer, hidden=hidden)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("answer, message", [
    (no_dilation, "expected"),
    (ceil_not_floor, "expected"),
    (padding_one_side, "expected"),
    (returns_float, "should return the int"),
    (not_implemented, "not implemented yet"),
])
def test_wrong_sizes_fail_the_size_check(answer, message, hidden):
    with pytest.raises(CheckFailure, match=message):
        checks.check_conv_output_size(answer, hidden=hidden)


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("answer, message", [
    (never_raises, "should raise ValueError"),
    (raises_on_remainder, r"raises_on_remainder\(7, 3, s=3, p=0, d=1\) should return 2, but it raised ValueError"),
    (not_implemented, "not implemented yet"),
])
def test_wrong_error_handling_fails_the_error_check(answer, message, hidden):
    with pytest.raises(CheckFailure, match=message):
        checks.check_conv_output_size_errors(answer, hidden=hidden)


def test_failure_message_names_the_call_the_expected_and_the_given():
    with pytest.raises(CheckFailure) as info:
        checks.check_conv_output_size(no_dilation)
    assert str(info.value) == "no_dilation(5, 3, s=1, p=0, d=2): expected 1, got 3"


def test_hidden_cases_follow_the_instructors_secret(monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", "5f0c" * 8)
    first = checks._hidden_cases()
    monkeypatch.setenv("COURSE_GRADING_SEED", "9a1e" * 8)
    assert checks._hidden_cases() != first
    monkeypatch.setenv("COURSE_GRADING_SEED", "5f0c" * 8)
    assert checks._hidden_cases() == first
    assert not set(first) <= set(checks.VISIBLE_CASES)
    monkeypatch.delenv("COURSE_GRADING_SEED")
    assert checks._hidden_cases() != first  # the public default secret: the same for everyone
    assert checks._hidden_cases() == checks._hidden_cases()


def test_hidden_draws_are_keyed_by_assignment_and_check(monkeypatch):
    from course_utils.checks import hidden_seed

    monkeypatch.setenv("COURSE_GRADING_SEED", "5f0c" * 8)
    used = []
    real = checks.hidden_random

    def spy(*tag):
        used.append(tag)
        return real(*tag)

    monkeypatch.setattr(checks, "hidden_random", spy)
    checks.check_conv_output_size(by_counting, hidden=True)
    checks.check_conv_output_size_errors(by_counting, hidden=True)
    assert used == [("a0_warmup", "check_conv_output_size", "cases"),
                    ("a0_warmup", "check_conv_output_size_errors", "errors")]
    assert len({hidden_seed(*tag) for tag in used}) == 2


def test_every_wrong_variant_fails_at_least_one_check():
    for wrong in (no_dilation, ceil_not_floor, padding_one_side, returns_float, never_raises,
                  raises_on_remainder, not_implemented):
        failures = 0
        for check in CHECKS:
            try:
                check(wrong)
            except CheckFailure:
                failures += 1
        assert failures, f"{wrong.__name__} passed every visible check"


def calls_pytorch(i, k, s=1, p=0, d=1):
    """Correct numbers, but by running PyTorch's convolution: not an answer."""
    import torch
    import torch.nn.functional as F
    x, w = torch.empty(1, 1, i + 2 * p, i + 2 * p, device="meta"), torch.empty(1, 1, k, k, device="meta")
    return F.conv2d(x, w, stride=s, dilation=d).shape[-1]


@pytest.mark.parametrize("check", CHECKS)
def test_pytorch_convolution_is_unavailable_inside_the_check(check):
    with pytest.raises(CheckFailure, match=r"convolution \(PyTorch operator aten::convolution\) cannot be used"):
        check(calls_pytorch)
    # ... and is back afterwards, for the student's other cells and for the check's own references.
    assert calls_pytorch(7, 3, s=3) == 2


# --- the same, through the protocol's direct-call helper (what every unit's tests use) -------------
from course_utils.grading.protocol import run_checks  # noqa: E402

KEPT_WRONG = [no_dilation, ceil_not_floor, padding_one_side, returns_float, never_raises, raises_on_remainder,
              not_implemented, calls_pytorch]


@pytest.mark.parametrize("answer", CORRECT)
def test_correct_variants_get_every_autograded_cell(answer):
    results = run_checks("a0_warmup", {"conv_output_size": answer})
    assert all(r.passed for r in results.values()), {g: r.failure for g, r in results.items()}


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = {grade_id: [] for grade_id in run_checks("a0_warmup", {"conv_output_size": by_counting})}
    for wrong in KEPT_WRONG:
        results = run_checks("a0_warmup", {"conv_output_size": wrong})
        assert not all(r.passed for r in results.values()), f"{wrong.__name__} got full marks"
        for grade_id, result in results.items():
            if not result.passed:
                failing[grade_id].append(wrong.__name__)
    assert all(failing.values()), f"cells no wrong variant fails: {[g for g, w in failing.items() if not w]}"
