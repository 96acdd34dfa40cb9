"""The checking vocabulary: blocked references, the check decorator, comparisons that explain."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import (CheckFailure, ForbiddenReference, blocked, check, expect_close, expect_equal,
                                 expect_raises)


def test_blocked_references_refuse_and_come_back():
    x, w = torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2)
    with blocked(["torch.nn.functional.conv2d", "torch.Tensor.unfold"]):
        with pytest.raises(ForbiddenReference, match="torch.nn.functional.conv2d cannot be used"):
            F.conv2d(x, w)
        with pytest.raises(ForbiddenReference, match="torch.Tensor.unfold"):
            x.unfold(2, 2, 1)
        assert torch.conv2d(x, w).shape == (1, 1, 2, 2)  # only what was named is blocked
    assert F.conv2d(x, w).shape == (1, 1, 2, 2) and x.unfold(2, 2, 1).shape == (1, 1, 2, 3, 2)


def test_blocked_restores_even_when_the_code_inside_fails():
    with pytest.raises(ZeroDivisionError), blocked(["numpy.allclose"]):
        1 / 0
    assert np.allclose([1.0], [1.0])


def test_blocked_rejects_a_name_that_does_not_exist():
    with pytest.raises(ValueError, match="expected a dotted path to an attribute"):
        with blocked(["torch.nn.functional.no_such_function"]):
            pass


def test_check_blocks_only_while_the_students_function_runs():
    @check(forbid=["torch.nn.functional.conv2d"])
    def check_uses_reference(student):
        expected = F.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))  # the check itself may use it
        expect_equal(student, (), {}, int(expected.sum()))

    check_uses_reference(lambda: 4)
    with pytest.raises(CheckFailure, match="ForbiddenReference"):
        check_uses_reference(lambda: int(F.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)).sum()))
    assert check_uses_reference.forbid == ("torch.nn.functional.conv2d",)


def test_check_hands_the_forbidden_list_to_a_grading_proxy():
    class Proxy:
        __name__ = "proxy"
        seen = None

        def with_forbidden(self, forbid):
            Proxy.seen = tuple(forbid)
            return lambda: 1

        def __call__(self):
            raise AssertionError("the unwrapped proxy must not be called")

    @check(forbid=["numpy.allclose"])
    def check_one(student):
        expect_equal(student, (), {}, 1)

    check_one(Proxy())
    assert Proxy.seen == ("numpy.allclose",)


def test_expect_equal_and_raises_say_what_was_expected_and_given():
    with pytest.raises(CheckFailure, match=r"<lambda>\(2\): expected 4, got 5"):
        expect_equal(lambda n: n + 3, (2,), {}, 4)
    with pytest.raises(CheckFailure, match="should return the int 4, got float 4.0"):
        expect_equal(lambda: 4.0, (), {}, 4)
    with pytest.raises(CheckFailure, match="not implemented yet"):
        expect_equal(lambda: (_ for _ in ()).throw(NotImplementedError()), (), {}, 1)
    with pytest.raises(CheckFailure, match=r"should raise ValueError \(sizes\), but it returned 3"):
        expect_raises(lambda: 3, (), {}, ValueError, "sizes")
    expect_raises(lambda: int("x"), (), {}, ValueError, "sizes")


def test_expect_close_reports_shape_type_and_the_worst_value():
    expected = torch.zeros(2, 3)
    expect_close(expected + 1e-7, expected, "out")
    expect_close(np.zeros((2, 3), dtype=np.float32), expected, "out")  # arrays are accepted
    with pytest.raises(CheckFailure, match=r"out should have shape \(2, 3\), got \(3, 2\)"):
        expect_close(torch.zeros(3, 2), expected, "out")
    with pytest.raises(CheckFailure, match="out should be a tensor of shape"):
        expect_close([[0.0] * 3] * 2, expected, "out")
    worse = expected.clone()
    worse[1, 2], worse[0, 0] = 0.5, 0.1
    with pytest.raises(CheckFailure, match=r"2 of 6 values are off; the largest error is 0.5 at index \(1, 2\) "
                                           r"\(got 0.5, expected 0"):
        expect_close(worse, expected, "out")
    with pytest.raises(CheckFailure, match="1 of 6 values are off"):
        expect_close(torch.tensor([[0, 0, 0], [0, 0, float("nan")]]), expected, "out")


def test_warnings_and_stderr_of_the_students_function_stay_quiet_in_a_check(capsys):
    import sys
    import warnings

    def noisy():
        warnings.warn("deprecated thing")
        print("debug", file=sys.stderr)
        return 1

    @check()
    def check_noisy(student):
        expect_equal(student, (), {}, 1)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_noisy(noisy)
    assert seen == [] and capsys.readouterr().err == ""


def test_blocking_an_inherited_method_leaves_the_class_as_it_was():
    assert "unfold" not in vars(torch.Tensor)  # defined on the C base class
    with blocked(["torch.Tensor.unfold"]):
        with pytest.raises(ForbiddenReference):
            torch.ones(4).unfold(0, 2, 1)
    assert "unfold" not in vars(torch.Tensor)
    assert torch.ones(4).unfold(0, 2, 1).shape == (3, 2)
