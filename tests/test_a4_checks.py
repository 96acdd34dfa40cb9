"""a4's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (tests/a4_variants.py falls back on its reference
answers while the notebook is missing), and each variant replaces one name of it (a wrong BasicBlock reaches
make_resnet and make_residual too). For each kept wrong variant we assert exactly which graded cells it must fail
and that the visible checks alone already catch it; torchvision's model code reached by any name is refused. The
cells that train (residual vs plain, feature extraction, fine-tuning) run here on the solution and on the variants
that fail before any training; the others, the hidden calls' catch rates and the seed studies behind the
thresholds are in tests/heavy/test_grading_a4.py.
"""

import re

import pytest
import torch

import a4_variants as v
import variants_harness as vh
from course_utils.checks import a4_architectures_transfer as checks
from course_utils.grading import wire


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a loaded 2-core machine: one thread is much faster than two."""
    with vh.one_torch_thread():
        yield


def _skip(name):
    """The training cells a variant's run leaves out in the fast tier (it fails before training, or not at all)."""
    return () if name in v.FAILS_EARLY else v.TRAINING


def test_the_solution_gets_every_point():
    """Every cell, visible and hidden calls, the training cells included."""
    results = v.run_cells({}, cells=v.CELLS)
    assert set(results) == v.ALL_CELLS == set(v.CONTRACT_CELLS)
    assert {g: r.failure for g, r in results.items() if not r.passed} == {}


def test_the_cells_are_the_contracts():
    assert {c.grade_id: ({call.check for call in c.calls}, c.points) for c in v.CELLS} == \
        {g: ({check}, points) for g, (check, _, points) in v.CONTRACT_CELLS.items()}
    assert sum(c.points for c in v.CELLS) == 80


@pytest.mark.parametrize("name", v.CORRECT)
def test_differently_written_correct_answers_get_every_point(name):
    replacements = v.CORRECT[name]
    skip = () if {"make_plain", "feature_extractor", "fine_tune_param_groups"} & set(replacements) else v.TRAINING
    assert v.failing_cells(replacements, skip=skip, hidden=False) == set()  # (with the hidden calls: heavy tier)


@pytest.mark.parametrize("name", v.WRONG)
def test_each_kept_wrong_variant_loses_exactly_its_points_for_its_bug(name):
    """The visible checks alone: each rule is exercised by a visible case (`make check` shows the bug before the
    grader does), the variant loses exactly its cells, and it fails for its bug, not because something crashed.
    (Its hidden calls: a few below, all of them in the heavy tier.)"""
    replacements, must_fail = v.WRONG[name]
    skip = _skip(name)
    results = v.run_cells(replacements, hidden=False, skip=skip)
    assert vh.failed(results) == must_fail - set(skip)
    for grade_id in must_fail - set(skip) - v.CRASHES.get(name, set()):
        assert " raised " not in results[grade_id].failure, (name, results[grade_id].failure)


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by(v.WRONG)
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


@pytest.mark.parametrize("name", ["inception_default_eps", "basic_block_relu_before_add", "bottleneck_v1_stride",
                                  "receptive_field_no_jump", "plain_with_skips",
                                  "feature_extractor_statistics_update", "fine_tune_rates_swapped"])
def test_the_hidden_checks_alone_catch_wrong_variants(monkeypatch, name):
    monkeypatch.setenv("COURSE_GRADING_SEED", "term-2026-spring")
    replacements, must_fail = v.WRONG[name]
    assert v.caught(replacements, must_fail - set(_skip(name)))


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_torchvision_model_code_is_refused_and_loses_exactly_its_cells(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements, skip=v.TRAINING - must_fail)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        failure = results[grade_id].failure
        assert "ForbiddenReference" in failure and "cannot be used in this answer" in failure, failure


def test_the_back_doors_really_build_torchvision_s_models():
    """Otherwise the test above would prove nothing: outside a check, each back door matches the reference."""
    ns = v.solution_namespace()
    for factory, args in ((v.make_vgg_torchvision, ([16, "M", 512, "M"], 5, True)),
                          (v.InceptionSubclassed, (8, 4, 4, 8, 2, 4, 3)), (v.BasicBlockSubclassed, (8, 16, 2)),
                          (v.BottleneckWrapping, (16, 8, 2)), (v.make_resnet_torchvision, (ns["Bottleneck"],
                                                                                            [1, 1, 1, 1], 7))):
        assert sum(p.numel() for p in factory(*args).parameters()) > 0
    x = torch.randn(2, 8, 6, 6)
    mine, theirs = ns["BasicBlock"](8, 16, 2), v.BasicBlockSubclassed(8, 16, 2)
    theirs.load_state_dict(mine.state_dict())
    mine.eval(), theirs.eval()
    torch.testing.assert_close(mine(x), theirs(x))


# --- messages ----------------------------------------------------------------------------------------
def test_a_shape_mismatch_names_the_position_the_key_and_both_shapes():
    message = v.run_cells(v.WRONG["bottleneck_expansion_2"][0], hidden=False)["test_bottleneck"].failure
    assert re.search(r"state_dict entry \d+ is 'conv3.weight' of shape \(32, 16, 1, 1\) \(in a Conv2d\), expected "
                     r"shape \(64, 16, 1, 1\) \(torchvision's 'conv3.weight'", message), message
    message = v.run_cells(v.WRONG["basic_block_conv_bias"][0], hidden=False, skip=v.TRAINING)["test_basic_block"]\
        .failure
    assert "'conv1.bias'" in message and "bias=False" in message, message
    message = v.run_cells(v.WRONG["basic_block_option_a"][0], hidden=False)["test_basic_block"].failure
    assert "its state_dict ends too early (12 entries, torchvision's has 18): torchvision's next is " \
           "'downsample.0.weight' of shape (32, 16, 1, 1)" in message, message
    message = v.run_cells(v.WRONG["inception_torchvision_3x3"][0], hidden=False)["test_inception"].failure
    assert "of shape (6, 4, 3, 3)" in message and "expected shape (6, 4, 5, 5)" in message, message


def test_value_failures_say_which_mode_and_what_was_expected():
    message = v.run_cells(v.WRONG["basic_block_relu_before_add"][0], hidden=False)["test_basic_block"].failure
    assert "BasicBlock(16, 16, 1) on x of shape (2, 16, 8, 8) [same channels, stride 1" in message, message
    assert "the output in eval mode" in message and "got " in message and "expected " in message, message
    message = v.run_cells(v.WRONG["vgg_dropout_first"][0], hidden=False)["test_vgg"].failure
    assert "in train mode" in message and "dropout after the same torch.manual_seed" in message, message
    message = v.run_cells(v.WRONG["vgg_configs_d_short"][0], hidden=False)["test_vgg"].failure
    assert "VGG_CONFIGS['D'][8] should be 256" in message, message
    message = v.run_cells(v.WRONG["receptive_field_adds_padding"][0], hidden=False)["test_receptive_field"].failure
    assert "expected (3, 1), got (5, 1)" in message, message
    message = v.run_cells(v.WRONG["feature_extractor_statistics_update"][0], hidden=False)[v.FEATURES].failure
    assert "BatchNorm running statistics moved" in message and "eval mode" in message, message
    message = v.run_cells(v.WRONG["fine_tune_head_in_both_groups"][0], hidden=False)[v.FINE_TUNE].failure
    assert "group 0 should hold exactly the body's parameters; it also holds ['fc.weight', 'fc.bias']" in message, \
        message


@pytest.mark.parametrize("name", ["inception_default_eps", "bottleneck_expansion_2", "receptive_field_no_jump",
                                  "basic_block_relu_before_add"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    cells = [c for c in v.CELLS if c.grade_id in must_fail - v.TRAINING]  # (a training cell reports its own numbers)
    results = v.run_cells(replacements, only_hidden=True, cells=cells)
    rules = {r for rules in checks.hidden_rules().values() for r in rules} | {"a random setting"}
    rules |= {r for r, _ in checks._random_resnet_cases(__import__("random").Random(0))}
    for result in results.values():
        message = result.failure
        named = [rule for rule in rules if f"on a hidden case ({rule})" in message]
        assert named, message
        rest = message.replace(named[0], "")
        assert not re.search(r"\(\d+, \d+|=\d|shape \(|expected \[|got \[|\d%", rest), message


# --- the cases themselves --------------------------------------------------------------------------------
def _visible_and_hidden_rules():
    pairs = {"check_vgg": (checks.VGG_CASES, checks.HIDDEN_VGG_CASES),
             "check_inception": (checks.INCEPTION_CASES, checks.HIDDEN_INCEPTION_CASES),
             "check_basic_block": (checks.BLOCK_CASES["basic"], checks.HIDDEN_BLOCK_CASES["basic"]),
             "check_bottleneck": (checks.BLOCK_CASES["bottleneck"], checks.HIDDEN_BLOCK_CASES["bottleneck"]),
             "check_receptive_field": (checks.RECEPTIVE_FIELD_CASES + checks.RECEPTIVE_FIELD_ERRORS,
                                       checks.HIDDEN_RECEPTIVE_FIELD_CASES + checks.HIDDEN_RECEPTIVE_FIELD_ERRORS)}
    return vh.rule_pairs(checks, pairs)


@pytest.mark.parametrize("check_name", sorted(checks.hidden_rules()))
def test_hidden_cases_test_no_rule_that_the_visible_ones_skip(check_name):
    assert vh.rules_only_hidden(*_visible_and_hidden_rules()[check_name]) == set()


def test_random_hidden_cases_test_visible_rules():
    rng = __import__("random").Random(3)
    visible = {r for pair in _visible_and_hidden_rules().values() for r, _ in pair[0]} | {r for r, _ in
                                                                                          checks.RESNET_CASES}
    for rule, _ in (checks._random_vgg_cases(rng) + checks._random_inception_cases(rng)
                    + checks._random_resnet_cases(rng)):
        assert rule in visible, rule


def test_the_rules_the_contract_states_are_visible():
    rules = {rule for pair in _visible_and_hidden_rules().values() for rule, _ in pair[0]}
    rules |= {rule for rule, _ in checks.RESNET_CASES}
    for words in ("configuration A", "configuration B", "configuration D", "configuration E", "batch_norm=True",
                  "eval and train mode (dropout)", "[1x1], [1x1 -> 3x3], [1x1 -> 5x5 (padding 2)]",
                  "BatchNorm2d(eps=0.001)", "identity shortcut, ReLU after the addition", "stride 2: projection",
                  "channels change at stride 1", "stride 2 with the same channels", "expansion 4",
                  "stride 2 in the 3x3 convolution (v1.5)", "ResNet-18 = (BasicBlock, [2, 2, 2, 2])",
                  "ResNet-50 = (Bottleneck, [3, 4, 6, 3])", "padding changes neither", "dilation d",
                  "a stride multiplies the jump", "a kernel below 1", "a stride below 1", "a dilation below 1",
                  "a negative padding", "no layers"):
        assert any(words in rule for rule in rules), words


def test_the_parameter_counts_are_torchvision_s():
    import torchvision.models as tvm

    for (kind, layers), count in checks.RESNET_PARAMETERS.items():
        with torch.device("meta"):
            model = checks._resnet_reference(kind, layers, 1000)()
        assert sum(p.numel() for p in model.parameters()) == count
    with torch.device("meta"):
        assert sum(p.numel() for p in tvm.vgg16().parameters()) == checks.VGG_PARAMETERS["D"]


def test_the_receptive_field_recurrence_agrees_with_the_measurement():
    rng = __import__("random").Random(0)
    for _ in range(30):
        layers = checks._random_receptive_field_cases(rng, 1)[0][1]["layers"]
        assert checks.receptive_field_recurrence(layers) == checks.measured_receptive_field(layers), layers


def test_the_fill_is_the_same_on_both_sides_and_decided_by_torchvision_s_entries():
    """A student's model with other keys gets the values torchvision's gets, position by position."""
    ns = v.solution_namespace()
    mine, theirs = v.BottleneckSequential(16, 8, 2), checks._block_reference("bottleneck", 16, 8, 2)()
    slots = checks.reference_slots(theirs)
    checks.fill_by_order(mine, slots, 5)
    checks.fill_by_order(theirs, slots, 5)
    for a, b in zip(mine.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    variances = [t for (_, _, kind, _), t in zip(slots, theirs.state_dict().values(), strict=True) if kind == "var"]
    assert all(float(t.min()) >= 0.5 for t in variances)
    assert ns["Bottleneck"] is not None


def test_a_hidden_secret_changes_the_hidden_inputs(monkeypatch):
    seeds = set()
    for secret in ("one secret", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        seeds.add(str(checks._random_vgg_cases(checks._rng(True, "check_vgg", "random")))
                  + str(checks._seed(True, "transfer", "seed")))
    assert len(seeds) == 2


# --- the drivers cross the wire ------------------------------------------------------------------------
def _drivers():
    g = torch.Generator().manual_seed(1)
    slots = checks.reference_slots(checks._block_reference("basic", 4, 4, 1)())
    yield checks.ModelRun([None, [2, 2, 2, 2]], {"num_classes": 3}, slots, 3, torch.randn(1, 4, 5, 5, generator=g),
                          notebook={0: "BasicBlock"}, attributes=["expansion"])
    yield checks.NotebookValue("VGG_CONFIGS")
    yield checks.DepthProbe([4, 8], 8, torch.rand(2, 1, 8, 8, generator=g), 4, invalid=[5, 2])
    yield checks.ResidualTraining(*checks.residual_training_data(0, 8), seed=2, recipe={**checks.RESIDUAL_RECIPE,
                                                                                         "epochs": 0})
    images, labels, test_images, _ = checks.transfer_data(0)
    yield checks.FeatureExtractorRun(images[:4], labels[:4], test_images[:4], test_images[:2], seed=1)
    yield checks.FineTuneRun(images[:4], labels[:4], test_images[:4], seed=1)


@pytest.mark.parametrize("driver", list(_drivers()), ids=lambda d: type(d).__name__)
def test_each_driver_is_rebuilt_from_its_plain_data(driver):
    data = wire.decode(wire.encode(driver.__wire__()))
    again = type(driver)(**data)
    assert wire.encode(again.__wire__()) == wire.encode(driver.__wire__())
    assert wire.checks_class(wire.object_tag(type(driver))) is type(driver)


def test_the_transfer_drivers_keep_the_test_labels_in_the_grader():
    images, labels, test_images, test_labels = checks.transfer_data(0)
    for driver in (checks.FeatureExtractorRun(images, labels, test_images, test_images[:16], 0),
                   checks.FineTuneRun(images, labels, test_images, 0)):
        data = driver.__wire__()
        assert not any(isinstance(value, torch.Tensor) and value.shape == test_labels.shape and torch.equal(
            value, test_labels) for value in data.values())



@pytest.mark.parametrize("name", ["depth_in_blocks", "plain_with_skips"])
def test_hidden_residual_probe_failures_name_no_depth_or_width(name):
    """The residual cell's structural probe fails before any training: its hidden message names the rule, and
    neither the hidden depths and width nor counts that reveal them (the review's finding 1)."""
    replacements, _ = v.WRONG[name]
    cell = [c for c in v.CELLS if c.grade_id == v.RESIDUAL]
    (result,) = v.run_cells(replacements, only_hidden=True, cells=cell).values()
    assert not result.passed and "on a hidden case (" in result.failure, result.failure
    depths = checks.training.PROBE_DEPTHS[True]
    assert not re.search(r"\(\d+, \d+\)|" + "|".join(rf"\b{d} layers" for d in depths) + r"|\d,\d{3}",
                         result.failure), result.failure
