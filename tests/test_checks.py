"""The checking vocabulary: the check decorator and its guard, hidden inputs, comparisons that explain."""

import secrets
import traceback

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import course_utils.checks as checks
from course_utils.checks import (PUBLIC_SECRET, CheckFailure, ForbiddenReference, blocked, check, expect_close,
                                 expect_equal, expect_raises, hidden_generator, hidden_random, hidden_seed,
                                 operations, secret_fingerprint, secret_problem)


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
        _ = 1 / 0
    assert np.allclose([1.0], [1.0])


def test_blocked_rejects_a_name_that_does_not_exist():
    with pytest.raises(ValueError, match="expected a dotted path to an attribute"):
        with blocked(["torch.nn.functional.no_such_function"]):
            pass


def test_check_refuses_operators_only_while_the_students_function_runs():
    @check(refuse=["convolution"])
    def check_uses_reference(student):
        expected = F.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))  # the check itself may use it
        expect_equal(student, (), {}, int(expected.sum()))

    check_uses_reference(lambda: 4)
    with pytest.raises(CheckFailure, match=r"raised ForbiddenReference: convolution \(PyTorch operator "
                                           r"aten::convolution\) cannot be used"):
        check_uses_reference(lambda: int(torch.ops.aten.convolution(
            torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1).sum()))
    assert check_uses_reference.refuse == ("convolution",) and check_uses_reference.forbid == ()
    assert F.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)).sum() == 4


def test_check_blocks_dotted_names_outside_torch():
    @check(forbid=["numpy.allclose"])
    def check_one(student):
        expect_equal(student, (), {}, 1)

    check_one(lambda: 1)
    with pytest.raises(CheckFailure, match="numpy.allclose cannot be used"):
        check_one(lambda: int(np.allclose([1.0], [1.0])))
    assert np.allclose([1.0], [1.0])


def test_check_hands_its_guard_to_a_grading_proxy():
    class Proxy:
        __name__ = "proxy"
        seen = None

        def with_guard(self, refuse, forbid):
            Proxy.seen = (tuple(refuse), tuple(forbid))
            return lambda: 1

        def __call__(self):
            raise AssertionError("the unwrapped proxy must not be called")

    @check(refuse=["im2col"], forbid=["numpy.allclose"])
    def check_one(student):
        expect_equal(student, (), {}, 1)

    check_one(Proxy())
    assert Proxy.seen == (("im2col",), ("numpy.allclose",))


def test_an_older_proxy_without_with_guard_still_gets_its_forbidden_names():
    class OlderProxy:
        seen = None

        def with_forbidden(self, forbid):
            OlderProxy.seen = tuple(forbid)
            return lambda: 1

        def __call__(self):
            raise AssertionError("the unwrapped proxy must not be called")

    @check(refuse=["im2col"], forbid=["numpy.allclose"])
    def check_one(student):
        expect_equal(student, (), {}, 1)

    check_one(OlderProxy())
    assert OlderProxy.seen == ("numpy.allclose",)


def test_operations_counts_a_local_function_and_asks_a_proxy():
    counts = {}

    @check()
    def check_counts(student):
        for n in (4, 400):
            counts[n] = operations(student, torch.arange(float(n)))

    check_counts(lambda x: (x * 2).sum())
    assert counts[4][1] == counts[400][1] > 0 and float(counts[400][0]) == 2 * sum(range(400))

    class Proxy:
        def with_guard(self, refuse, forbid):
            return self

        def counted(self, *args, **kwargs):
            return "value", 17

    check_counts(Proxy())
    assert counts[4] == ("value", 17)
    with pytest.raises(TypeError, match="a student function as a check received it"):
        operations(lambda: 1)


def _failing_check():
    @check()
    def check_fails(student):
        expect_equal(student, (2,), {}, 4)

    return check_fails


def test_a_failure_keeps_its_type_and_message_without_the_checks_frames():
    with pytest.raises(CheckFailure) as info:
        _failing_check()(lambda n: n + 3)
    assert str(info.value) == "<lambda>(2): expected 4, got 5"
    frames = traceback.extract_tb(info.value.__traceback__)
    inside = [f for f in frames if "course_utils/checks" in f.filename.replace("\\", "/")]
    # only the check's own entry point, marked __tracebackhide__ for IPython and pytest
    assert [f.name for f in inside] == ["run"], [(f.filename, f.name) for f in frames]
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_failure_in_a_kernel_shows_its_message_and_no_frames_of_the_checks(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    shell.user_ns["check_fails"] = _failing_check()
    try:
        result = shell.run_cell("check_fails(lambda n: n + 3)", store_history=False)
    finally:
        del shell.user_ns["check_fails"]
    shown = capsys.readouterr().out
    assert isinstance(result.error_in_exec, CheckFailure)
    assert "CheckFailure: <lambda>(2): expected 4, got 5" in shown
    assert "course_utils" not in shown, shown


# --- hidden inputs ---------------------------------------------------------------------------------
def test_hidden_draws_are_fixed_for_one_secret_and_differ_between_secrets(monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", "a" * 8 + secrets.token_hex(16))
    tag = ("a0_warmup", "check_conv_output_size", "cases")
    first = (hidden_seed(*tag), hidden_random(*tag).random(), torch.rand(3, generator=hidden_generator(*tag)))
    assert first[0] == hidden_seed(*tag) and first[1] == hidden_random(*tag).random()
    assert torch.equal(first[2], torch.rand(3, generator=hidden_generator(*tag)))
    monkeypatch.setenv("COURSE_GRADING_SEED", secrets.token_hex(16))
    assert hidden_seed(*tag) != first[0] and hidden_random(*tag).random() != first[1]
    monkeypatch.delenv("COURSE_GRADING_SEED")
    public = hidden_seed(*tag)
    monkeypatch.setenv("COURSE_GRADING_SEED", PUBLIC_SECRET)
    assert hidden_seed(*tag) == public  # no variable: the public default secret


def test_one_checks_seed_tells_nothing_about_anothers(monkeypatch):
    """Different tags give unrelated seeds: no fixed offset or bit pattern links them across secrets."""
    offsets, differing_bits = set(), []
    for _ in range(200):
        monkeypatch.setenv("COURSE_GRADING_SEED", secrets.token_hex(16))
        a = hidden_seed("a1_convolutions", "check_conv_matrix", "cases")
        b = hidden_seed("a1_convolutions", "check_conv_matrix", "values")
        offsets.add((b - a) % 2**64)
        differing_bits.append(bin(a ^ b).count("1"))
    assert len(offsets) == 200
    assert 30 < sum(differing_bits) / len(differing_bits) < 34  # 32 of 64 bits on average, as for random seeds
    seeds = [hidden_seed("a0_warmup", "check", n) for n in range(2000)]
    assert len(set(seeds)) == 2000 and max(seeds) >= 2**63 // 2 and min(seeds) >= 0 and max(seeds) < 2**64


def test_tags_are_strings_and_ints():
    assert hidden_seed("a", 1) != hidden_seed("a", "1") != hidden_seed("a1")
    for bad in ((), (1.5,), (True,), (("a",),)):
        with pytest.raises(TypeError, match="strings and ints"):
            hidden_seed(*bad)


# Drawn when the test runs, not when it is collected (pytest-xdist's workers must collect the same ids).
@pytest.mark.parametrize("make", [lambda: secrets.token_hex(16), lambda: secrets.token_urlsafe(16),
                                  lambda: secrets.token_hex(32), lambda: str(secrets.randbits(140)).zfill(43)],
                         ids=["hex16", "urlsafe16", "hex32", "decimal140"])
def test_a_random_128_bit_secret_is_strong(make):
    for _ in range(20):
        secret = make()
        assert secret_problem(secret) is None, secret


@pytest.mark.parametrize("secret, why", [
    ("", "empty"), ("   ", "empty"), ("7", "about 3 bits"), ("12345678", "about 27 bits"),
    ("correct horse", "bits"), ("93851ddc53860045b97fadfba016ba", "about 120 bits"), ("ab" * 40, "repeats"),
    (PUBLIC_SECRET, "public default"),
])
def test_a_weak_secret_is_refused_with_a_way_to_make_one(secret, why):
    problem = secret_problem(secret)
    assert problem is not None and why in problem and "secrets.token_hex(16)" in problem


def test_the_fingerprint_tells_secrets_apart_and_hides_them(monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    first = secret_fingerprint()
    assert first == secret_fingerprint() and len(first) == 16 and int(first, 16) >= 0
    assert secret[:8] not in first
    monkeypatch.setenv("COURSE_GRADING_SEED", secrets.token_hex(16))
    assert secret_fingerprint() != first


def test_grading_seed_is_gone():
    assert not hasattr(checks, "grading_seed")


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
        warnings.warn("deprecated thing", stacklevel=2)
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
