"""a1's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (so these tests follow it), and each variant in
tests/a1_variants.py replaces one function of it. For each kept wrong variant we assert exactly which graded
cells it must fail, that the visible checks alone already catch it (every rule the task states has a visible
case), and that the hidden checks alone catch it for every secret tried (here a handful; 1,000 in
tests/heavy/test_a1_catch_rate.py).
"""

import re

import pytest
import torch
import torch.nn.functional as F

import a1_variants as v
import variants_harness as vh
from course_utils.checks import a1_convolutions as checks
from course_utils.checks.a0_warmup import reference_output_size
from course_utils.grading.protocol import run_checks


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 references on a loaded 2-core machine: one thread is 100x faster than two."""
    with vh.one_torch_thread():
        yield


def test_the_solution_gets_every_point():
    results = run_checks("a1_convolutions", v.solution_namespace())
    assert set(results) == v.ALL_CELLS
    assert vh.failed(results) == set()


@pytest.mark.parametrize("name", v.CORRECT)
def test_differently_written_correct_answers_get_every_point(name):
    assert v.failing_cells(**v.CORRECT[name]) == set()


@pytest.mark.parametrize("name", v.WRONG)
def test_each_kept_wrong_variant_loses_exactly_its_points(name):
    replacements, must_fail = v.WRONG[name]
    assert v.failing_cells(**replacements) == must_fail


@pytest.mark.parametrize("name", v.WRONG)
def test_the_visible_checks_alone_catch_each_wrong_variant(name):
    """Each rule is exercised by a visible case: `make check` shows the bug before the grader does."""
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail


@pytest.mark.parametrize("secret", ["", "term-2026-spring", "0" * 32, "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3",
                                    "a stronger secret than most"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if not v.caught(replacements, must_fail)}
    assert not missed


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by(v.WRONG)
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_each_back_door_is_refused_and_loses_exactly_its_cells(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        assert "cannot be used in this answer" in results[grade_id].failure, results[grade_id].failure


@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_the_back_doors_really_compute_the_right_answer(name):
    """Otherwise the test above would prove nothing: outside a check, each back door is correct."""
    replacements, _ = v.BACK_DOORS[name]
    g = torch.Generator().manual_seed(0)
    for function, variant in replacements.items():
        reference = v.reference_for(function)
        if function == "max_pool2d":
            x = torch.randn(2, 3, 7, 6, generator=g)
            assert torch.equal(variant(x, 3, 2, 1), reference(x, 3, 2, 1))
        elif function == "conv_transpose2d":
            y, w = torch.randn(2, 3, 3, 4, generator=g), torch.randn(3, 2, 3, 3, generator=g)
            assert torch.allclose(variant(y, w, stride=2, padding=1, output_padding=1),
                                  reference(y, w, stride=2, padding=1, output_padding=1), atol=1e-5)
        else:
            x, w = torch.randn(2, 3, 7, 6, generator=g), torch.randn(4, 3, 3, 2, generator=g)
            assert torch.allclose(variant(x, w, stride=2, padding=1), reference(x, w, stride=2, padding=1), atol=1e-5)


# --- vectorization by operation counts -----------------------------------------------------------------
def test_a_loop_over_positions_fails_only_the_vectorization_cell_and_says_which_size_grew():
    results = v.run_cells({"conv2d_vectorized": v.loops_over_positions})
    assert vh.failed(results) == {"test_conv2d_vectorized_fast"}
    message = results["test_conv2d_vectorized_fast"].failure
    assert "is not vectorized" in message and "with a larger output H' x W'" in message, message
    message = v.run_cells({"conv2d_vectorized": v.loop_over_images})["test_conv2d_vectorized_fast"].failure
    assert "with a larger batch N" in message, message
    message = v.run_cells({"conv_transpose2d": v.transpose_loops_over_input_channels}
                          )["test_conv_transpose2d_vectorized"].failure
    assert "with more input channels C" in message, message


def test_loops_that_the_rules_allow_pass_the_vectorization_checks():
    """Kernel taps (both solutions), input channels in conv2d, output channels in the transposed conv."""
    assert v.failing_cells(conv2d_vectorized=v.conv2d_loop_over_input_channels) == set()
    assert v.failing_cells(conv_transpose2d=v.conv_transpose2d_loop_over_output_channels) == set()


def test_operation_counts_do_not_depend_on_the_load_or_the_secret(monkeypatch):
    namespace = v.solution_namespace()
    counts = set()
    for secret in ("", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        for hidden in (False, True):
            printed = run_checks("a1_convolutions", namespace, hidden=hidden)["test_conv2d_vectorized_fast"].output
            counts |= set(re.findall(r"vectorized: (\d+) PyTorch operations", printed))
    assert len(counts) == 1, counts


# --- messages ----------------------------------------------------------------------------------------
def test_visible_failures_show_the_call_and_the_rule():
    results = v.run_cells({"conv2d_naive": v.padding_one_side}, hidden=False)
    message = results["test_conv2d_naive_stride_padding"].failure
    assert "should have shape (2, 4, 4, 4), got (2, 4, 3, 3)" in message
    assert "[stride 2 and padding: the windows fit exactly]" in message
    message = v.run_cells({"conv2d_naive": v.flipped_kernel}, hidden=False)["test_conv2d_naive_basic"].failure
    assert re.search(r"values are off; the largest error is [\d.]+ at index \(", message)
    message = v.run_cells({"conv_transpose_output_size": v.transpose_size_rejects_op_ge_stride},
                          hidden=False)["test_conv_transpose_output_size"].failure
    assert "output_padding smaller than the dilation but not the stride (allowed)" in message, message


@pytest.mark.parametrize("name", ["transpose_output_padding_by_slicing", "pool_zeros_to_minus_inf",
                                  "size_truncating_division", "matrix_wraps_rows", "kernel_must_fit_unpadded"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id in must_fail])
    for result in results.values():
        message = result.failure
        rules = {r for rules in checks.hidden_rules().values() for r in rules} | {"a random setting"}
        assert any(f"on a hidden case ({rule})" in message for rule in rules), message
        assert not re.search(r"\(\d+, \d+|=\d|shape \(", message), message  # no sizes, settings or shapes


def test_a_hidden_failure_does_not_repeat_the_students_words():
    class LeakyError(ValueError):
        pass

    def leaky(x, kernel_size, stride=None, padding=0):
        raise LeakyError(f"the hidden input has shape {tuple(x.shape)}")

    results = v.run_cells({"max_pool2d": leaky}, only_hidden=True, cells=[c for c in v.CELLS
                                                                          if c.grade_id == "test_max_pool2d"])
    message = results["test_max_pool2d"].failure
    assert "raised ValueError" in message and "LeakyError" not in message and "shape" not in message, message


# --- the cases themselves --------------------------------------------------------------------------------
def _visible_and_hidden_rules():
    pairs = {"check_conv_output_size": (checks.SIZE_CASES, checks.HIDDEN_SIZE_CASES),
             "check_conv_output_size_errors": (checks.SIZE_ERRORS, checks.HIDDEN_SIZE_ERRORS),
             "check_conv_transpose_output_size": (checks.TRANSPOSE_SIZES + checks.TRANSPOSE_SIZE_ERRORS,
                                                  checks.HIDDEN_TRANSPOSE_SIZES + checks.HIDDEN_TRANSPOSE_ERRORS),
             "check_conv2d_basic": (checks.CONV_BASIC, checks.HIDDEN_CONV_BASIC),
             "check_conv2d_stride_padding": (checks.CONV_STRIDE_PADDING, checks.HIDDEN_CONV_STRIDE_PADDING),
             "check_conv2d_dilation": (checks.CONV_DILATION, checks.HIDDEN_CONV_DILATION),
             "check_conv2d_bias": (checks.CONV_BIAS, checks.HIDDEN_CONV_BIAS),
             "check_conv_matrix": (checks.MATRIX_CASES, checks.HIDDEN_MATRIX_CASES),
             "check_conv_transpose2d_via_matrix": (checks.VIA_MATRIX_CASES, checks.HIDDEN_VIA_MATRIX_CASES),
             "check_conv_transpose2d": (checks.TRANSPOSE_BASIC, checks.HIDDEN_TRANSPOSE_BASIC),
             "check_conv_transpose2d_options": (checks.TRANSPOSE_OPTIONS, checks.HIDDEN_TRANSPOSE_OPTIONS),
             "check_max_pool2d": (checks.POOL_CASES, checks.HIDDEN_POOL_CASES)}
    return vh.rule_pairs(checks, pairs)


@pytest.mark.parametrize("check_name", sorted(checks.hidden_rules()))
def test_hidden_cases_test_no_rule_that_the_visible_ones_skip(check_name):
    assert vh.rules_only_hidden(*_visible_and_hidden_rules()[check_name]) == set()


def test_size_cases_agree_with_pytorch_on_what_has_an_output():
    for _, (i, k, s, p, d) in checks.SIZE_CASES + checks.HIDDEN_SIZE_CASES:
        assert reference_output_size(i, k, s, p, d) >= 1
    for _, (i, k, s, p, d) in checks.SIZE_ERRORS + checks.HIDDEN_SIZE_ERRORS:
        if min(k, s, d) >= 1 and p >= 0:  # (the argument rules are the course's: PyTorch accepts some, e.g. k = 0)
            with pytest.raises(RuntimeError):
                reference_output_size(i, k, s, p, d)
    for _, case in checks.TRANSPOSE_SIZES + checks.HIDDEN_TRANSPOSE_SIZES:
        assert checks.reference_transpose_size(*case) >= 1
    for _, (i, k, s, p, d, op) in checks.TRANSPOSE_SIZE_ERRORS + checks.HIDDEN_TRANSPOSE_ERRORS:
        with pytest.raises(RuntimeError):  # real tensors: PyTorch has no output for any of them
            F.conv_transpose2d(torch.ones(1, 1, i, i), torch.ones(1, 1, k, k), stride=s, padding=p,
                               output_padding=op, dilation=d)


def test_the_edge_cases_the_issue_lists_are_visible():
    rules = {rule for rule, _ in checks.SIZE_ERRORS + checks.CONV_STRIDE_PADDING + checks.TRANSPOSE_SIZES
             + checks.TRANSPOSE_SIZE_ERRORS + checks.TRANSPOSE_OPTIONS + checks.POOL_CASES}
    for rule in ("the kernel is larger than the padded input, with stride > 1 (no output, not 1)",
                 "the output would be exactly 0", "padding makes a kernel larger than the input fit",
                 "output_padding smaller than the dilation but not the stride (allowed)",
                 "windows of exact zeros next to the padding (a ReLU's output)",
                 "output_padding without padding: the extra rows receive only the bias",
                 "output_padding smaller than the dilation, stride 1", "stride = kernel size with padding"):
        assert rule in rules, rule


def test_a_sparse_conv_matrix_is_compared_by_its_value():
    w = torch.tensor([[0., 1.], [2., 3.]])
    assert v.conv_matrix_sparse(w, (3, 3)).is_sparse
    assert torch.equal(v.conv_matrix_sparse(w, (3, 3)).to_dense(), v.SOLUTION["conv_matrix"](w, (3, 3)))
