"""a5's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (tests/a5_variants.py falls back on its reference
answers while the notebook is missing), and each variant replaces one name of it. For each kept wrong variant we
assert exactly which graded cells it must fail and that the visible checks alone already catch it; the course's
widget code, captum and torchattacks (where installed) are refused. The hidden calls' catch rates over several
secrets, the grading command and the seed studies behind the thresholds are in tests/heavy/test_grading_a5.py.
"""

import re

import pytest
import torch

import a5_variants as v
import variants_harness as vh
from course_utils.checks import a5_saliency_adversarial as checks
from course_utils.grading import wire


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a loaded 2-core machine: one thread is much faster than two."""
    with vh.one_torch_thread():
        yield


def test_the_solution_gets_every_point():
    """Every cell, visible and hidden calls."""
    results = v.run_cells({}, cells=v.CELLS)
    assert set(results) == v.ALL_CELLS == set(v.CONTRACT_CELLS)
    assert {g: r.failure for g, r in results.items() if not r.passed} == {}


def test_the_cells_are_the_contracts():
    assert {c.grade_id: ({call.check for call in c.calls}, c.points) for c in v.CELLS} == \
        {g: ({check}, points) for g, (check, _, points) in v.CONTRACT_CELLS.items()}
    assert sum(c.points for c in v.CELLS) == 80


@pytest.mark.parametrize("name", v.CORRECT)
def test_differently_written_correct_answers_get_every_point(name):
    assert v.failing_cells(v.CORRECT[name], hidden=False) == set()  # (with the hidden calls: heavy tier)


@pytest.mark.parametrize("name", v.WRONG)
def test_each_kept_wrong_variant_loses_exactly_its_points_for_its_bug(name):
    """The visible checks alone: the variant loses exactly its cells (a wrong vanilla_gradient or fgsm costs nothing
    in the cell that wraps it), and it fails for its bug, not because something crashed."""
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        failure = results[grade_id].failure
        assert " raised " not in failure or "should raise ValueError" in failure, (name, failure)


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by(v.WRONG)
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


@pytest.mark.parametrize("name", ["vanilla_predicted_class", "smoothgrad_batch_range", "integrated_gradients_left_sum",
                                  "fgsm_no_clamp", "pgd_no_projection", "pgd_targeted_moves_away",
                                  "accuracy_train_mode"])
def test_the_hidden_checks_alone_catch_wrong_variants(monkeypatch, name):
    monkeypatch.setenv("COURSE_GRADING_SEED", "term-2026-spring")
    replacements, must_fail = v.WRONG[name]
    assert v.caught(replacements, must_fail)


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_the_course_widgets_captum_and_torchattacks_are_refused(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        failure = results[grade_id].failure
        assert "ForbiddenReference" in failure and "cannot be used in this answer" in failure, failure


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_the_back_doors_really_compute_the_answers():
    """Otherwise the test above would prove nothing: outside a check, each back door matches the reference."""
    model = checks.small_cnn(3).eval()
    x, y = checks._images(4, 3, 3, 10), torch.tensor([0, 3, 1])
    for name, (replacements, _) in v.BACK_DOORS.items():
        (function_name, fn), = replacements.items()
        if function_name == "vanilla_gradient":
            torch.testing.assert_close(fn(model, x, y), checks.reference_gradient(model, x, y), atol=1e-5, rtol=1e-4)
        elif function_name == "integrated_gradients":
            expected = checks.reference_integrated_gradients(model, x, y, torch.zeros_like(x), 5)
            torch.testing.assert_close(fn(model, x, y, steps=5), expected, atol=1e-5, rtol=1e-4)
        elif function_name == "fgsm":
            assert torch.equal(fn(model, x, y, 0.05), checks.reference_fgsm(model, x, y, 0.05)), name
        else:
            assert torch.equal(fn(model, x, y, 0.05, 0.02, 3), checks.reference_pgd(model, x, y, 0.05, 0.02, 3)), name


def test_the_widgets_are_refused_once_they_exist():
    for module in ("saliency", "epsilon"):
        exists = (checks._WIDGETS / f"{module}.py").exists()
        assert (f"course_utils.widgets.{module}" in checks.refused_code()) == exists
    for library in ("captum", "torchattacks"):
        assert any(name.startswith(library) for name in checks.refused_code()) == checks._importable(library)


def test_importing_the_checks_imports_neither_captum_nor_torchattacks():
    """The notebook's imports cell does not pay for them: they are resolved when the first check runs."""
    import subprocess
    import sys

    code = ("import sys, course_utils.checks.a5_saliency_adversarial; "
            "print(any(m.split('.')[0] in ('captum', 'torchattacks') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stdout + done.stderr


# --- messages ----------------------------------------------------------------------------------------
def test_failures_say_what_was_expected_and_what_was_given():
    message = v.run_cells(v.WRONG["vanilla_abs"][0], hidden=False)[v.VANILLA].failure
    assert "vanilla_abs(model, x, target) with model = the check's small CNN" in message, message
    assert "expected " in message and "got " in message and "signed" in message, message
    message = v.run_cells(v.WRONG["smoothgrad_batch_range"][0], hidden=False)[v.SMOOTH].failure
    assert "sigma is per image" in message and "image ranges" in message, message
    message = v.run_cells(v.WRONG["integrated_gradients_no_factor"][0], hidden=False)[v.IG].failure
    assert "completeness: the sums of your map" in message and "f_t(x) - f_t(x')" in message, message
    message = v.run_cells(v.WRONG["fgsm_gradient_not_sign"][0], hidden=False)[v.FGSM].failure
    assert re.search(r"\d+ of \d+ pixels differ from the reference", message) and "SIGN" in message, message
    message = v.run_cells(v.WRONG["pgd_random_start_outside_ball"][0], hidden=False)[v.PGD].failure
    assert "leaves the epsilon ball" in message, message
    message = v.run_cells(v.WRONG["pgd_targeted_moves_away"][0], hidden=False)[v.TARGETED].failure
    assert "targeted" in message and "target" in message, message
    message = v.run_cells(v.WRONG["accuracy_wrong_epsilon"][0], hidden=False)[v.ACCURACY].failure
    assert "never called with the epsilon of position" in message, message
    message = v.run_cells(v.WRONG["fgsm_returns_x_for_zero"][0], hidden=False)[v.FGSM].failure
    assert "shares memory with x" in message, message
    message = v.run_cells(v.WRONG["vanilla_requires_grad_on_x"][0], hidden=False)[v.VANILLA].failure
    assert "requires_grad=True" in message, message


@pytest.mark.parametrize("name", ["vanilla_abs", "smoothgrad_sigma_times_255", "integrated_gradients_midpoint",
                                  "fgsm_descends", "pgd_no_clamp", "accuracy_percent", "smoothgrad_uniform_noise"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id in must_fail])
    rules = {r for rules in checks.hidden_rules().values() for r in rules}
    for result in results.values():
        message = result.failure
        named = [rule for rule in rules if f"on a hidden case ({rule})" in message]
        assert named, message
        rest = message.replace(named[0], "")
        assert not re.search(r"\(\d+, \d+|=\d|shape \(|= \[|\d\.\d\d|\d%", rest), message


# --- the cases themselves --------------------------------------------------------------------------------
@pytest.mark.parametrize("check_name", sorted(checks.hidden_rules()))
def test_hidden_cases_test_no_rule_that_the_visible_ones_skip(check_name):
    assert vh.rules_only_hidden([(r, None) for r in checks.visible_rules()[check_name]],
                                [(r, None) for r in checks.hidden_rules()[check_name]]) == set()


def test_the_rules_the_contract_states_are_visible():
    rules = " | ".join(r for rs in checks.visible_rules().values() for r in rs)
    for words in ("R1:", "logit (before softmax), signed, all channels", "batched", "sigma = noise_level * (max - min)",
                  "any attribution function", "noise_level 0", "noise None", "ValueError for noise of another shape",
                  "n_samples < 1", "noise_level < 0", "right Riemann sum", "(x - baseline) factor", "(C, H, W)",
                  "scalar tensor", "default steps = 50", "completeness", "steps < 1", "sign(gradient of the cross",
                  "clamped to [0, 1]", "epsilon 0", "epsilon < 0", "ORIGINAL x", "steps 0", "alpha < 0",
                  "steps < 0", "random start", "TARGET class", "reaches its target", "in order", "eval mode"):
        assert words in rules, words


def test_a_hidden_secret_changes_the_hidden_inputs(monkeypatch):
    seeds = set()
    for secret in ("one secret", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        seeds.add(tuple(seed for _, _, seed in checks._cases([], checks.HIDDEN_PGD_CASES, True, "check_pgd")))
    assert len(seeds) == 2


def test_the_check_s_model_differs_in_train_mode_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    model = checks.small_cnn(5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(checks.small_cnn(5).state_dict().values(),
                                                 model.state_dict().values(), strict=True))
    x = checks._images(1, 4, 3, 10)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), model.train()(x))


# --- the drivers cross the wire ------------------------------------------------------------------------
def _drivers():
    x, y = checks._images(2, 2, 3, 8), torch.tensor([1, 0])
    yield checks.Call(checks._cnn(3, train=True), x, y, args=[0.1, 0.02, 2], kwargs={"random_start": True}, seed=4,
                      again=True)
    yield checks.Call(checks._checkpoint(), x, y, kwargs={"n_samples": 2, "noise_level": 0.1,
                                                         "noise": torch.randn(2, *x.shape)},
                      layout="smoothgrad", helper="notebook:vanilla_gradient", errors=True)


@pytest.mark.parametrize("driver", list(_drivers()), ids=lambda d: d.layout)
def test_each_driver_is_rebuilt_from_its_plain_data(driver):
    data = wire.decode(wire.encode(driver.__wire__()))
    again = type(driver)(**data)
    assert wire.encode(again.__wire__()) == wire.encode(driver.__wire__())
    assert wire.checks_class(wire.object_tag(type(driver))) is type(driver)


def test_a_driver_s_answer_crosses_the_wire():
    ns = v.solution_namespace()
    x, y = checks._images(2, 2, 3, 8), torch.tensor([1, 0])
    driver = checks.Call(checks._cnn(3), x, y, args=[[0.0, 0.1]], layout="accuracy", helper="notebook:fgsm")
    answer = driver(ns["accuracy_vs_epsilon"])
    assert wire.decode(wire.encode(answer))["items"] == answer["items"]
    assert [call[0] for call in answer["calls"]] == [0.0, 0.1]
