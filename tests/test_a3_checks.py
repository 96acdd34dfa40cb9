"""a3's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (tests/a3_variants.py falls back on its reference
answers while the notebook is missing), and each variant replaces one class or function of it (a backward with the
forward whose cache it reads). For each kept wrong variant we assert exactly which graded cells it must fail, that
the visible checks alone already catch it, and that the hidden checks alone catch it for a few secrets. The CNN
training cell trains two models per call: here it runs on the solution (visible) and on one wrong variant; the
others, its hidden call and the seed study behind its threshold are in tests/heavy/test_grading_a3.py.
"""

import re

import pytest
import torch

import a3_variants as v
import variants_harness as vh
from course_utils.checks import a3_optim_batchnorm as checks
from course_utils.grading import wire
from course_utils.grading.protocol import run_checks

CNN = v.CNN


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a loaded 2-core machine: one thread is much faster than two."""
    with vh.one_torch_thread():
        yield


def _without_cnn(cells):
    return {cell for cell in cells if cell != CNN}


def test_the_solution_gets_every_point():
    """Every cell, the CNN cell's visible call included (its hidden call: the heavy tier)."""
    if v.NOTEBOOK is None:
        results = v.run_cells({}, cells=[c for c in v.CELLS if c.grade_id != CNN])
    else:
        results = {g: r for g, r in run_checks("a3_optim_batchnorm", v.solution_namespace(), hidden=False).items()}
        results |= v.run_cells({}, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id != CNN])
    assert set(results) >= v.ALL_CELLS - {CNN} and set(v.ALL_CELLS) == set(v.CONTRACT_CELLS)
    assert {g: r.failure for g, r in results.items() if not r.passed} == {}


def test_the_cells_are_the_contracts():
    assert {c.grade_id: ({call.check for call in c.calls}, c.points) for c in v.CELLS} == \
        {g: ({check}, points) for g, (check, _, points) in v.CONTRACT_CELLS.items()}
    assert sum(c.points for c in v.CELLS) == 80


@pytest.mark.parametrize("name", [n for n in v.CORRECT if n != "make_cnn_global_pool"])
def test_differently_written_correct_answers_get_every_point(name):
    assert v.failing_cells(v.CORRECT[name], skip_cnn=True) == set()


@pytest.mark.parametrize("name", v.WRONG)
def test_each_kept_wrong_variant_loses_exactly_its_points(name):
    replacements, must_fail = v.WRONG[name]
    skip_cnn = name not in v.CNN_FAILS_EARLY
    assert v.failing_cells(replacements, skip_cnn=skip_cnn) == (_without_cnn(must_fail) if skip_cnn else must_fail)


@pytest.mark.parametrize("name", v.WRONG)
def test_the_visible_checks_alone_catch_each_wrong_variant(name):
    """Each rule is exercised by a visible case: `make check` shows the bug before the grader does."""
    replacements, must_fail = v.WRONG[name]
    skip_cnn = name not in v.CNN_FAILS_EARLY
    results = v.run_cells(replacements, hidden=False, skip_cnn=skip_cnn)
    assert vh.failed(results) == (_without_cnn(must_fail) if skip_cnn else must_fail)


@pytest.mark.parametrize("secret", ["", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if _without_cnn(must_fail) and not v.caught(replacements, _without_cnn(must_fail))}
    assert not missed


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by(v.WRONG)
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


def test_wrong_variants_fail_for_their_bug_not_a_crash():
    """A variant that crashed (a cache it cannot read) would prove nothing about the check."""
    for name, (replacements, must_fail) in v.WRONG.items():
        for grade_id, result in v.run_cells(replacements, hidden=False,
                                            skip_cnn=name not in v.CNN_FAILS_EARLY).items():
            if grade_id in must_fail:
                assert " raised " not in result.failure, (name, result.failure)


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_each_back_door_is_refused_and_loses_exactly_its_cells(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements, skip_cnn=True)
    assert vh.failed(results) == _without_cnn(must_fail)
    for grade_id in _without_cnn(must_fail):
        failure = results[grade_id].failure
        assert "ForbiddenReference" in failure and "cannot be used in this answer" in failure, failure


def test_the_back_doors_really_compute_the_right_answer():
    """Otherwise the test above would prove nothing: outside a check, each back door is right."""
    g = torch.Generator().manual_seed(0)
    for cls, reference in ((v.AdamByName, v.Adam), (v.AdamSubclassed, v.Adam), (v.AdamWrapped, v.Adam),
                           (v.SGDAlias, v.SGD)):
        run = checks.OptimizerRun([[3, 2], [4]], {"lr": 0.01} if reference is v.Adam else {"lr": 0.05,
                                                                                             "momentum": 0.9})
        for got, expected in zip(run(cls)["after"][100], run(reference)["after"][100], strict=True):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    schedule = checks.ScheduleRun([0.1, 0.2], {"step_size": 3, "gamma": 0.5})
    assert schedule(v.StepLRByName) == schedule(v.StepLR)
    x = torch.randn(4, 3, 2, 2, generator=g) * 2 + 1
    gamma, beta = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g)
    for forward in (v.batchnorm_forward_by_name, v.batchnorm_forward_layer_norm):
        stats, mine = (torch.zeros(3), torch.ones(3)), (torch.zeros(3), torch.ones(3))
        torch.testing.assert_close(forward(x, gamma, beta, *stats, True)[0],
                                   v.batchnorm_forward(x, gamma, beta, *mine, True)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats, mine)
    module = checks._bn_module_driver(checks.BN_MODULE_CASES[0][1], 0)
    torch.testing.assert_close(module(v.BatchNorm2dWrappingTorch), module(v.BatchNorm2d), atol=1e-4, rtol=1e-4)
    for dropout in (v.dropout_functional, v.dropout_bernoulli):
        torch.manual_seed(0)
        out = dropout(torch.ones(200, 200), 0.3, True)
        values = out.unique()
        assert len(values) == 2 and values[0] == 0 and abs(float(values[1]) - 1 / 0.7) < 1e-6
        assert abs(float((out > 0).double().mean()) - 0.7) < 0.01


# --- messages ----------------------------------------------------------------------------------------
def test_visible_failures_show_the_call_and_the_rule():
    message = v.run_cells(v.WRONG["sgd_nesterov_ignored"][0], hidden=False)["test_sgd"].failure
    assert "(params, lr=0.05, momentum=0.9, nesterov=True) on parameters of shapes [(3, 4), (5,)]" in message, message
    assert "[nesterov: the step is grad + momentum * buf]" in message and "after 1 step" in message, message
    message = v.run_cells(v.WRONG["step_lr_off_by_one"][0], hidden=False)["test_step_lr"].failure
    assert "after 2 epochs are wrong: expected [0.1], got [0.05]" in message, message
    message = v.run_cells(v.WRONG["batchnorm_running_var_biased"][0], hidden=False,
                          skip_cnn=True)["test_batchnorm_forward"].failure
    assert "running_var afterwards" in message and "x of shape (8, 3)" in message, message
    message = v.run_cells(v.WRONG["dropout_keep_probability_p"][0], hidden=False)["test_dropout"].failure
    assert "expected about 70%" in message, message
    message = v.run_cells(v.WRONG["adam_without_checks"][0], hidden=False)["test_adam"].failure
    assert "should raise ValueError (a negative lr" in message, message


def test_the_review_findings_get_messages_that_name_the_mistake():
    """Running statistics in autograd's graph, a backward pass by autograd, probabilities instead of logits, a
    closure's loss not returned, Adam without bias correction: each message says what to change."""
    for name, cells in (("batchnorm_running_stats_in_graph", ("test_batchnorm_forward", "test_batchnorm_module")),
                        ("batchnorm_module_stats_in_graph", ("test_batchnorm_module",))):
        results = v.run_cells(v.WRONG[name][0], skip_cnn=True)
        for cell in cells:
            message = results[cell].failure
            assert "running_mean became part of autograd's graph: update the running statistics under " \
                   "torch.no_grad()" in message, message
    for name in ("batchnorm_backward_by_autograd", "batchnorm_backward_by_the_engine"):
        message = v.run_cells(v.WRONG[name][0], skip_cnn=True)["test_batchnorm_backward"].failure
        assert f"{name}(dout, cache) [" in message and f"{name} must compute the gradients itself, without " \
               f"autograd" in message and " raised " not in message, message
    message = v.run_cells(v.WRONG["make_cnn_softmax"][0], hidden=False)[CNN].failure
    assert "make_cnn_softmax(True) returns probabilities" in message and "return logits (F.cross_entropy applies the " \
           "softmax)" in message, message

    class SGDReturnsNothing(v.SGD):
        def step(self, closure=None):
            super().step(closure)

    message = v.run_cells({"SGD": SGDReturnsNothing}, hidden=False)["test_sgd"].failure
    assert "step(closure) should return the closure's loss (the tensor closure() returned), got None" in message, \
        message
    message = v.run_cells(v.WRONG["adam_no_bias_correction"][0], hidden=False)["test_adam"].failure
    assert "[bias correction: m / (1 - beta1^t)" in message and "after 1 step" in message, message
    assert "|expected|). With bias correction, Adam's first step moves each coordinate by about lr (here 0.01; " \
           "yours moved by 0.02 to 0.02): m_hat_1 = g_1 and v_hat_1 = g_1^2" in message, message
    message = v.run_cells(v.WRONG["adam_weight_decay_decoupled"][0], hidden=False)["test_adam"].failure
    assert "[weight decay (L2" in message and "m_hat_1" not in message, message  # (the hint is for its own bug)


def test_the_solution_keeps_its_running_statistics_out_of_the_graph_and_copies():
    """What the notebook's part 5 does after training: copy.deepcopy of a model whose BatchNorm saw inputs that
    require grad."""
    import copy

    namespace = v.solution_namespace()
    bn = namespace["BatchNorm2d"](3)
    bn(torch.randn(4, 3, 2, 2, requires_grad=True)).sum().backward()
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    copy.deepcopy(bn)
    wrong = v._bind("BatchNorm2d", v.BatchNorm2dStatsInGraph, namespace)(3)
    wrong(torch.randn(4, 3, 2, 2, requires_grad=True))
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(wrong)


@pytest.mark.parametrize("name", ["sgd_momentum_dampened_from_zero", "adam_eps_inside_sqrt", "step_lr_off_by_one",
                                  "batchnorm_unbiased_normalization", "batchnorm_backward_missing_mean_terms",
                                  "batchnorm_module_momentum_reversed", "dropout_not_rescaled",
                                  "dropout_keep_probability_p", "exponential_lr_one_lr"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    cells = [c for c in v.CELLS if c.grade_id in _without_cnn(must_fail)]
    results = v.run_cells(replacements, only_hidden=True, cells=cells)
    rules = {r for rules in checks.hidden_rules().values() for r in rules} | {"a random setting"}
    for result in results.values():
        message = result.failure
        assert any(f"on a hidden case ({rule})" in message for rule in rules), message
        assert not re.search(r"\(\d+, \d+|=\d|shape \(|expected \[|got \[|\d%", message), message


def test_a_hidden_failure_does_not_repeat_the_students_words():
    class LeakyError(ValueError):
        pass

    class Leaky(v.SGD):
        def step(self, closure=None):
            raise LeakyError(f"the hidden shapes are {[p.shape for g in self.param_groups for p in g['params']]}")

    results = v.run_cells({"SGD": Leaky}, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id == "test_sgd"])
    message = results["test_sgd"].failure
    assert "raised ValueError" in message and "LeakyError" not in message and "shape" not in message, message


# --- the cases themselves --------------------------------------------------------------------------------
def _visible_and_hidden_rules():
    pairs = {f"check_{kind}": (checks._optimizer_cases(kind, False) + checks.INVALID_OPTIONS[kind],
                               checks._optimizer_cases(kind, True) + checks.HIDDEN_INVALID_OPTIONS[kind])
             for kind in ("sgd", "rmsprop", "adam")}
    pairs |= {f"check_{kind}": (checks.SCHEDULE_CASES[kind], checks.HIDDEN_SCHEDULE_CASES[kind])
              for kind in ("step_lr", "exponential_lr")}
    pairs |= {"check_batchnorm_forward": (checks.BN_FORWARD_CASES, checks.HIDDEN_BN_FORWARD_CASES),
              "check_batchnorm_backward": (checks.BN_BACKWARD_CASES, checks.HIDDEN_BN_BACKWARD_CASES),
              "check_batchnorm_module": (checks.BN_MODULE_CASES, checks.HIDDEN_BN_MODULE_CASES),
              "check_dropout": (checks.DROPOUT_CASES, checks.HIDDEN_DROPOUT_CASES)}
    return vh.rule_pairs(checks, pairs)


@pytest.mark.parametrize("check_name", sorted(checks.hidden_rules()))
def test_hidden_cases_test_no_rule_that_the_visible_ones_skip(check_name):
    assert vh.rules_only_hidden(*_visible_and_hidden_rules()[check_name]) == set()


def test_the_rules_the_contract_states_are_visible():
    rules = {rule for pair in _visible_and_hidden_rules().values() for rule, _ in pair[0]}
    for words in ("momentum: buf = grad on the first step", "nesterov", "weight decay (L2)", "parameter groups",
                  ".grad is None is skipped", "step(closure)", "bias correction", "eps is added to sqrt(v_hat)",
                  "nesterov=True needs momentum > 0", "a negative lr", "beta1 outside", "beta2 outside",
                  "a negative eps", "a negative weight_decay", "several parameter groups", "the default gamma 0.1",
                  "(N, C)", "(N, C, H, W)", "x requires grad: the running statistics stay outside autograd's graph",
                  "unbiased batch variance", "momentum: r = (1 - momentum) * r",
                  "not training: normalize with the running statistics and change nothing",
                  "terms of the batch mean and variance", "eval mode", "p = 0: x unchanged", "p = 1: all zeros",
                  "p outside [0, 1] raises ValueError", "the gradient flows through the kept elements",
                  "not training: x unchanged"):
        assert any(words in rule for rule in rules), words


def test_the_edge_case_inputs_are_what_their_rules_say():
    for rule, setting in checks.BN_FORWARD_CASES + checks.HIDDEN_BN_FORWARD_CASES + checks.BN_BACKWARD_CASES \
            + checks.HIDDEN_BN_BACKWARD_CASES:
        shape = setting["shape"]
        if "two values per channel" in rule:
            assert shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1) == 2, rule
        if "(N, C):" in rule or rule.startswith("not training, (N, C)"):
            assert len(shape) == 2, rule
    for rule, setting in checks._optimizer_cases("adam", False) + checks._optimizer_cases("rmsprop", False):
        if "large eps" in rule:  # sqrt(v) of the gradients is far below eps there
            assert setting["scale"] <= 1e-2 and setting["options"]["eps"] >= 1e-3
    for rule, setting in checks._optimizer_cases("sgd", False):
        if "groups" in rule:
            assert any("lr" in group for group in setting["groups"])


def _worst_ratio(kind, optimizer_class):
    """The largest |error| / tolerance against torch.optim over the visible cases, after 1, 10 and 100 steps."""
    worst = 0.0
    for _, setting in checks._optimizer_cases(kind, False):
        run = checks.OptimizerRun(**setting)
        got, expected = run(optimizer_class)["after"], run(checks._reference_optimizer(kind))["after"]
        for step in run.record:
            for a, b in zip(got[step], expected[step], strict=True):
                error = (a - b).abs() / (checks.OPTIM_ATOL + checks.OPTIM_RTOL * b.abs())
                worst = max(worst, float(error.nan_to_num(float("inf")).max()))
    return worst


def test_correct_optimizers_are_far_inside_the_tolerance_and_wrong_ones_far_outside():
    """In float32, an update written another way (out of place, m_hat / (sqrt(v_hat) + eps) spelled out, a float
    step count) differs from torch.optim by at most a quarter of the tolerance (measured: 0.004 for SGD, 0.002 for
    RMSprop, 0.12 for Adam); each kept wrong update by more than 1000 times it (3,000 to 120,000) on some case."""
    for kind, mine in (("sgd", v.SGDOutOfPlace), ("rmsprop", v.RMSpropOutOfPlace), ("adam", v.AdamHatted)):
        assert _worst_ratio(kind, mine) < 0.25, kind
    for name, (replacements, _) in v.WRONG.items():
        for label, kind in (("SGD", "sgd"), ("RMSprop", "rmsprop"), ("Adam", "adam")):
            if label in replacements and name != "adam_without_checks":  # (that one updates right)
                assert _worst_ratio(kind, replacements[label]) > 1000, name


def test_the_dropout_bands_are_many_standard_errors_wide():
    for shape in (checks.DROPOUT_SHAPE, checks.HIDDEN_DROPOUT_SHAPE):
        n_rows, n_columns = shape
        worst = 0.25  # p (1 - p) at most
        assert checks.FRACTION_BAND >= 6 * (worst / (n_rows * n_columns)) ** 0.5
        assert checks.ROW_BAND >= 7 * (worst / n_columns) ** 0.5
        assert checks.COLUMN_BAND >= 7 * (worst / n_rows) ** 0.5


def test_a_hidden_secret_changes_the_hidden_inputs(monkeypatch):
    seeds = set()
    for secret in ("one secret", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        seeds.add(tuple(str(case) for case in checks._random_optimizer_cases(
            "adam", checks._rng(True, "check_adam", "random"))) + (checks._seed(True, "check_cnn_training", "seed"),))
    assert len(seeds) == 2


# --- the drivers cross the wire ------------------------------------------------------------------------
def _drivers():
    g = torch.Generator().manual_seed(1)
    yield checks.OptimizerRun(**checks._optimizer_cases("sgd", False)[4][1], seed=3)
    yield checks.OptimizerConstruction({"betas": [1.0, 0.9]})
    yield checks.ScheduleRun([0.1, 0.01], {"step_size": 2}, epochs=5)
    yield checks._bn_forward_driver(checks.BN_FORWARD_CASES[3][1], 4)
    yield checks._bn_forward_driver(checks.BN_FORWARD_CASES[-1][1], 4)
    yield checks.BatchNormBackwardRun(torch.randn(2, 3, generator=g), v.batchnorm_forward(
        torch.randn(2, 3, generator=g), torch.ones(3), torch.zeros(3), torch.zeros(3), torch.ones(3), True)[1])
    yield checks._bn_module_driver(checks.BN_MODULE_CASES[1][1], 5)
    yield checks.DropoutRun(torch.rand(3, 4, generator=g), 0.5, True, 7, torch.randn(3, 4, generator=g))
    yield checks.CNNTraining(*checks._digits()[:3], seed=2, recipe={**checks.RECIPE, "epochs": 0})


@pytest.mark.parametrize("driver", list(_drivers()), ids=lambda d: type(d).__name__)
def test_each_driver_is_rebuilt_from_its_plain_data(driver):
    data = wire.decode(wire.encode(driver.__wire__()))
    again = type(driver)(**data)
    assert wire.encode(again.__wire__()) == wire.encode(driver.__wire__())


def test_the_cnn_driver_keeps_the_labels_in_the_grader():
    """The worker gets the training set and the validation images; the validation labels never leave."""
    images, labels, val_images, val_labels = checks._digits()
    data = checks.CNNTraining(images, labels, val_images, seed=0).__wire__()
    assert not any(isinstance(value, torch.Tensor) and value.shape == val_labels.shape for value in data.values())
    assert len(labels) + len(val_labels) == 1797 and len(val_labels) == 500
