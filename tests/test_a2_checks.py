"""a2's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (tests/a2_variants.py falls back on its reference
answers while the notebook is missing), and each variant replaces one function of it (with the matching forward
where a backward reads its own cache). For each kept wrong variant we assert exactly which graded cells it must
fail, that the visible checks alone already catch it (every rule the task states has a visible case), and that
the hidden checks alone catch it for every secret tried (here a handful; 150 in tests/heavy/test_a2_catch_rate.py).
"""

import re

import numpy as np
import pytest

import a2_variants as v
import variants_harness as vh
from course_utils.checks import a2_backprop_init as checks
from course_utils.grading.protocol import run_checks
from course_utils.grading.static_scan import suspicious_code


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 references on a loaded 2-core machine: one thread is much faster than two."""
    with vh.one_torch_thread():
        yield


def test_the_solution_gets_every_point():
    namespace = v.solution_namespace()
    if v.NOTEBOOK is None:
        results = v.run_cells({}, cells=v.CELLS)
    else:
        results = run_checks("a2_backprop_init", namespace)
    assert set(results) == v.ALL_CELLS == set(v.CONTRACT_CELLS)
    assert {g: r.failure for g, r in results.items() if not r.passed} == {}


def test_the_cells_are_the_contracts():
    assert {c.grade_id: ({call.check for call in c.calls}, c.points) for c in v.CELLS} == \
        {g: ({check}, points) for g, (check, _, points) in v.CONTRACT_CELLS.items()}
    assert sum(c.points for c in v.CELLS) == 80


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


@pytest.mark.parametrize("secret", ["", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if not v.caught(replacements, must_fail)}
    assert not missed


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by(v.WRONG)
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


def test_wrong_variants_fail_for_their_bug_not_a_crash():
    """A variant that crashed (a cache it cannot read) would prove nothing about the check."""
    for name, (replacements, must_fail) in v.WRONG.items():
        for grade_id, result in v.run_cells(replacements, hidden=False).items():
            if grade_id in must_fail:
                assert " raised " not in result.failure, (name, result.failure)


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_each_back_door_is_refused_and_loses_exactly_its_cells(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        assert "Write it with NumPy" in results[grade_id].failure, results[grade_id].failure


def test_the_back_doors_really_compute_the_right_answer():
    """Otherwise the test above would prove nothing: outside a check, each back door is right."""
    g = np.random.default_rng(0)
    x, w, b = g.standard_normal((4, 3)), g.standard_normal((2, 3)), g.standard_normal(2)
    dout = g.standard_normal((4, 2))
    for got, expected in zip(v.linear_backward_autograd(dout, (x, w, b)), v.linear_backward(dout, (x, w, b)),
                             strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-12)
    z, y = g.standard_normal((4, 5)), g.integers(0, 5, 4)
    for got, expected in zip(v.softmax_cross_entropy_by_name(z, y), v.softmax_cross_entropy(z, y), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-12)
    x, w, b = g.standard_normal((2, 3, 7, 6)), g.standard_normal((4, 3, 3, 2)), g.standard_normal(4)
    out, cache = v.conv2d_forward(x, w, b, stride=2, padding=1)
    dout = g.standard_normal(out.shape)
    for got, expected in zip(v.conv2d_backward_torch_grad(dout, cache), v.conv2d_backward(dout, cache), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-10)
    out, cache = v.max_pool2d_forward(x, 3, 2)
    dout = g.standard_normal(out.shape)
    np.testing.assert_allclose(v.max_pool2d_backward_autograd(dout, cache), v.max_pool2d_backward(dout, cache))
    weights = v.kaiming_normal_torch_init(2000, 300, g)
    assert weights.shape == (300, 2000) and abs(weights.var() * 2000 / 2 - 1) < 0.03


def test_a_library_convolution_is_flagged_by_the_static_scan():
    """scipy.signal.correlate2d dispatches no PyTorch operator (the guard cannot see it): the scan must name it."""
    flags = suspicious_code(v.SCIPY_CONV_BACKWARD_SOURCE)
    assert any("scipy.signal.correlate2d" in flag for flag in flags), flags


# --- messages ----------------------------------------------------------------------------------------
def test_visible_failures_show_the_call_and_the_rule():
    message = v.run_cells(v.WRONG["relu_gradient_one_at_zero"][0], hidden=False)["test_relu"].failure
    assert "relu_backward(dout=(3, 6), cache)" in message, message
    assert "[inputs exactly 0: ReLU's gradient there is 0, as PyTorch's]" in message, message
    message = v.run_cells(v.WRONG["conv_padding_not_cropped"][0], hidden=False)["test_conv2d_backward"].failure
    assert "should have shape (2, 2, 5, 4), got (2, 2, 7, 6)" in message, message
    message = v.run_cells(v.WRONG["softmax_without_max_subtraction"][0],
                          hidden=False)["test_softmax_cross_entropy"].failure
    assert "logits of magnitude 1000" in message and "the loss is wrong" in message, message
    message = v.run_cells(v.WRONG["numerical_not_restoring_x"][0], hidden=False)["test_numerical_gradient"].failure
    assert "x was changed by the call" in message, message
    message = v.run_cells(v.WRONG["kaiming_is_lecun"][0], hidden=False)["test_kaiming_normal"].failure
    assert "the variance is" in message and "expected 0.002" in message, message


@pytest.mark.parametrize("name", ["relu_gradient_one_at_zero", "conv_padding_not_cropped", "pool_overlaps_overwritten",
                                  "softmax_without_max_subtraction", "relative_error_without_floor",
                                  "numerical_forward_difference", "linear_dw_transposed"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    cells = [c for c in v.CELLS if c.grade_id in must_fail and c.grade_id != "test_two_layer_training"]
    results = v.run_cells(replacements, only_hidden=True, cells=cells)
    rules = {r for rules in checks.hidden_rules().values() for r in rules} | {"a random setting"}
    for result in results.values():
        message = result.failure
        assert any(f"on a hidden case ({rule})" in message for rule in rules), message
        assert not re.search(r"\(\d+, \d+|=\d|shape \(", message), message  # no sizes, settings or shapes


def test_a_hidden_failure_does_not_repeat_the_students_words():
    class LeakyError(ValueError):
        pass

    def leaky(dout, cache):
        raise LeakyError(f"the hidden input has shape {cache[0].shape}")

    results = v.run_cells({"max_pool2d_backward": leaky}, only_hidden=True,
                          cells=[c for c in v.CELLS if c.grade_id == "test_max_pool2d_backward"])
    message = results["test_max_pool2d_backward"].failure
    assert "raised ValueError" in message and "LeakyError" not in message and "shape" not in message, message


# --- the cases themselves --------------------------------------------------------------------------------
def _visible_and_hidden_rules():
    pairs = {"check_linear": (checks.LINEAR_CASES, checks.HIDDEN_LINEAR_CASES),
             "check_relu": (checks.RELU_CASES, checks.HIDDEN_RELU_CASES),
             "check_sigmoid": (checks.SQUASH_CASES, checks.HIDDEN_SQUASH_CASES),
             "check_tanh": (checks.SQUASH_CASES, checks.HIDDEN_SQUASH_CASES),
             "check_softmax_cross_entropy": (checks.SOFTMAX_CASES, checks.HIDDEN_SOFTMAX_CASES),
             "check_conv2d_backward": (checks.CONV_CASES, checks.HIDDEN_CONV_CASES),
             "check_max_pool2d_backward": (checks.POOL_CASES, checks.HIDDEN_POOL_CASES),
             "check_numerical_gradient": (checks.NUMERICAL_CASES, checks.HIDDEN_NUMERICAL_CASES),
             "check_relative_error": (checks.RELATIVE_CASES, checks.HIDDEN_RELATIVE_CASES),
             "check_two_layer_loss": (checks.TWO_LAYER_CASES, checks.HIDDEN_TWO_LAYER_CASES)}
    return vh.rule_pairs(checks, pairs)


@pytest.mark.parametrize("check_name", sorted(checks.hidden_rules()))
def test_hidden_cases_test_no_rule_that_the_visible_ones_skip(check_name):
    assert vh.rules_only_hidden(*_visible_and_hidden_rules()[check_name]) == set()


def test_the_edge_cases_the_task_states_are_visible():
    rules = {rule for rule, _ in checks.RELU_CASES + checks.SQUASH_CASES + checks.SOFTMAX_CASES + checks.CONV_CASES
             + checks.POOL_CASES + checks.NUMERICAL_CASES + checks.RELATIVE_CASES + checks.LINEAR_CASES}
    for rule in ("inputs exactly 0: ReLU's gradient there is 0, as PyTorch's",
                 "inputs of magnitude up to 1000: finite values, no overflow",
                 "logits of magnitude 1000: log-sum-exp keeps them finite", "a row of equal logits: probabilities 1/n_cls",
                 "a stride with a remainder: input rows and columns never read get 0 gradient",
                 "padding: dx is shaped like x (the padding's gradient is cropped)",
                 "overlapping windows (stride < kernel size) that share a maximum: the gradients add up",
                 "the step h is the argument's", "values near zero: the denominator is at least 1e-8",
                 "two zero arrays: 0, not nan", "a square weight (D_in = D_out): a transposed dw shows in its values"):
        assert rule in rules, rule


def test_the_edge_case_inputs_are_what_their_rules_say():
    g = np.random.default_rng(1)
    for _, (shape, values) in checks.RELU_CASES + checks.HIDDEN_RELU_CASES:
        if values == "zeros":
            x = checks._activation_input(g, shape, values)
            assert (x == 0).any() and (x > 0).any() and (x < 0).any()
    x = checks._activation_input(g, (3, 6), "large")
    assert x.max() == 1000 and x.min() == -1000
    for n, c, h, w, k, s in [case for _, case in checks.POOL_CASES + checks.HIDDEN_POOL_CASES] + [(2, 2, 7, 9, 3, 1)]:
        x = checks._pool_input(g, n, c, h, w, k, s)
        assert np.unique(x).size == x.size  # no ties
        if s < k:  # the largest value of each slice is read by more than one window in each direction
            flat = x.reshape(n * c, -1).argmax(axis=1)
            for r, q in zip(*np.unravel_index(flat, (h, w)), strict=True):
                assert sum(1 for i in range((h - k) // s + 1) if i * s <= r < i * s + k) > 1
                assert sum(1 for j in range((w - k) // s + 1) if j * s <= q < j * s + k) > 1
    for rule, (_, _, h, w, _, kh, kw, s, p) in checks.CONV_CASES + checks.HIDDEN_CONV_CASES:
        if "remainder" in rule:
            assert (h + 2 * p - kh) % s and (w + 2 * p - kw) % s


def test_the_numerical_gradient_tolerance_separates_central_from_forward_differences():
    """For every visible and hidden setting: a central difference is within the tolerance of the expected
    value, a forward difference outside it (on every entry), with margins."""
    g = np.random.default_rng(2)
    for _, (shape, h) in checks.NUMERICAL_CASES + checks.HIDDEN_NUMERICAL_CASES:
        h = 1e-5 if h is None else h
        for _ in range(20):
            f = checks.Objective(g.uniform(0.5, 1.5, shape), g.uniform(-1, 1, shape))
            x = g.uniform(0.5, 1.5, shape)
            expected = f.central_difference(x, h)
            allowed = checks.NUMERICAL_ATOL + checks.NUMERICAL_RTOL * np.abs(expected)
            central = v.numerical_gradient(f, x.copy(), h)
            forward = v.numerical_forward_difference(f, x.copy(), h)
            assert np.all(np.abs(central - expected) < allowed / 10)
            assert np.all(np.abs(forward - expected) > 10 * allowed)


def test_correct_initializers_are_far_inside_the_statistical_bands():
    """The bands are many standard errors wide: the statistics of correct answers sit near their centres."""
    g = np.random.default_rng(3)
    for fan_in, fan_out in (checks.LARGE.values(), checks.HIDDEN_LARGE.values()):
        n = fan_in * fan_out
        assert math_sqrt(2 / n) * 10 < checks.VARIANCE_BAND
        assert math_sqrt(24 / n) * 10 < checks.KURTOSIS["normal"][1]
        assert math_sqrt(1 / n) * 10 < checks.MEAN_BAND
        w = v.glorot_uniform(fan_in, fan_out, g)
        assert abs(w.var() * (fan_in + fan_out) / 2 - 1) < checks.VARIANCE_BAND / 5


def math_sqrt(x):
    return float(np.sqrt(x))


def test_a_hidden_secret_changes_the_hidden_inputs(monkeypatch):
    outputs = set()
    for secret in ("one secret", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        namespace = v.solution_namespace()
        printed = v.run_cells({}, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id == "test_kaiming_normal"])
        outputs.add(printed["test_kaiming_normal"].output)
        assert namespace
    assert len(outputs) == 2


def test_the_course_gradient_checker_is_no_answer_to_the_gradient_checking_questions():
    from course_utils.checks import CheckFailure, ForbiddenReference
    from course_utils.checks import gradients as course_gradients

    for check, answer in ((checks.check_numerical_gradient, course_gradients.numerical_gradient),
                          (checks.check_relative_error, course_gradients.relative_error)):
        with pytest.raises((CheckFailure, ForbiddenReference), match="own gradient checker"):
            check(answer)
