"""a6's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (tests/a6_variants.py falls back on its reference
answers while the notebook is missing), and each variant replaces one name of it. For each kept wrong variant we
assert exactly which graded cells it must fail and that the visible checks alone already catch it; torchvision.ops
(by attribute, imported name, alias, torch.ops.torchvision, its pure-Python roi_align) and the lecture's detection
widget are refused. The check's own references are verified against torchvision and hand-worked numbers. The slow
training variants, the hidden calls' catch rates over several secrets, the grading command and the seed study behind
train_unet's threshold are in tests/heavy/test_grading_a6.py.
"""

import math
import re

import pytest
import torch
import torchvision

import a6_variants as v
import variants_harness as vh
from course_utils.checks import ForbiddenReference
from course_utils.checks import a6_detection_segmentation as checks
from course_utils.checks.guard import guarded_call
from course_utils.grading import wire

SLOW_WRONG, SLOW_CORRECT, RAISES = v.SLOW_WRONG, v.SLOW_CORRECT, v.RAISES


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


@pytest.mark.parametrize("name", sorted(set(v.CORRECT) - SLOW_CORRECT))
def test_differently_written_correct_answers_get_every_point(name):
    assert v.failing_cells(v.CORRECT[name], hidden=False) == set()  # (with the hidden calls: heavy tier)


def test_there_are_two_correct_variants_per_function():
    per_function = [name for replacements in v.CORRECT.values() for name in replacements]
    assert {f: per_function.count(f) for f in per_function} == dict.fromkeys(
        [f for _, functions, _ in v.CONTRACT_CELLS.values() for f in functions], 2)


@pytest.mark.parametrize("name", sorted(set(v.WRONG) - SLOW_WRONG))
def test_each_kept_wrong_variant_loses_exactly_its_points_for_its_bug(name):
    """The visible checks alone: the variant loses exactly its cells, for its bug, not because something crashed."""
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        failure = results[grade_id].failure
        assert name in RAISES or " raised " not in failure or "should raise ValueError" in failure, (name, failure)
        if name in RAISES:
            assert "the skip of the same resolution" in failure, failure


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    failing = vh.cells_failed_by({n: w for n, w in v.WRONG.items() if n not in SLOW_WRONG})
    assert failing == v.ALL_CELLS, v.ALL_CELLS - failing


@pytest.mark.parametrize("name", ["iou_no_clamp", "nms_keeps_the_lower_score", "batched_nms_ignores_labels",
                                  "roi_pool_wrong_scale", "roi_align_sampling_ratio_always_one", "ap_duplicates_count",
                                  "dice_over_the_batch", "soft_dice_on_logits", "unet_cat_swapped"])
def test_the_hidden_checks_alone_catch_wrong_variants(monkeypatch, name):
    monkeypatch.setenv("COURSE_GRADING_SEED", "term-2026-spring")
    replacements, must_fail = v.WRONG[name]
    assert v.caught(replacements, must_fail)


# --- back doors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.BACK_DOORS)
def test_torchvision_ops_and_the_widget_are_refused(name):
    replacements, must_fail = v.BACK_DOORS[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        failure = results[grade_id].failure
        assert "ForbiddenReference" in failure and "cannot be used in this answer" in failure, failure


def test_the_back_doors_really_compute_the_answers():
    """Otherwise the test above would prove nothing: outside a check, each back door matches the reference."""
    g = torch.Generator().manual_seed(3)
    boxes = checks.boxes.random_boxes(g, 12, extent=20.0)
    scores, labels = torch.rand(12, generator=g), torch.randint(3, (12,), generator=g)
    features = torch.randn(2, 3, 9, 9, generator=g)
    rois = torch.tensor([[0, 2, 2, 12, 12], [1, 5.5, 1, 16, 9.3], [1, 0, 3, 7, 15]])  # inside the map at scale 1/2
    # (outside it, torchvision's pure-Python _roi_align does not follow its C++ kernel's border rule: measured)
    for name, (replacements, _) in v.BACK_DOORS.items():
        (function_name, fn), = replacements.items()
        if function_name == "box_iou":
            expected, got = checks.reference_box_iou(boxes, boxes[:5]), fn(boxes, boxes[:5])
        elif function_name == "nms":
            expected, got = checks.reference_nms(boxes, scores, 0.3), fn(boxes, scores, 0.3)
        elif function_name == "batched_nms":
            expected, got = checks.reference_batched_nms(boxes, scores, labels, 0.3), fn(boxes, scores, labels, 0.3)
        elif function_name == "roi_pool":
            expected, got = checks.reference_roi_pool(features, rois, 2, 0.5), fn(features, rois, 2, 0.5)
        else:
            expected = checks.reference_roi_align(features, rois, (2, 3), 0.5, 2, True)
            got = fn(features, rois, (2, 3), 0.5, 2, True)
        torch.testing.assert_close(got, expected, msg=name)


@pytest.mark.parametrize("how", ["imported name", "alias", "torch.ops.torchvision", "attribute"])
def test_the_operators_alone_are_refused_however_they_are_reached(how):
    """Without the code refusal: the dispatch mode sees torchvision's operators (guard.py needs no change for the
    torchvision namespace) whether reached by a name imported earlier, an alias or torch.ops.torchvision."""
    b, s = torch.tensor([[0, 0, 4, 4], [1, 1, 5, 5.0]]), torch.tensor([0.9, 0.8])
    features, rois = torch.randn(1, 2, 6, 6), torch.tensor([[0, 0, 0, 4, 4.0]])
    calls = {"imported name": (v.imported_nms, (b, s, 0.5)), "alias": (v.the_pool, (features, rois, 2)),
             "torch.ops.torchvision": (torch.ops.torchvision.roi_align, (features, rois, 1.0, 2, 2, 2, False)),
             "attribute": (torchvision.ops.roi_align, (features, rois, 2))}
    fn, args = calls[how]
    with pytest.raises(ForbiddenReference, match=r"PyTorch operator torchvision::"):
        guarded_call(fn, args, {}, refuse=checks.REFUSED_OPS)


def test_what_is_refused():
    refused = checks.refused_code()
    for name in ("torchvision.ops.boxes", "torchvision.ops.roi_align", "torchvision.ops.roi_pool",
                 "course_utils.widgets.detection"):
        assert name in refused
    for library in ("torchmetrics", "pycocotools"):
        assert any(n.startswith(library) for n in refused) == checks._importable(library)
    assert {"torchvision::nms", "torchvision::roi_pool", "torchvision::roi_align"} <= set(checks.REFUSED_OPS)
    assert checks.check_nms.refuse == checks.REFUSED_OPS


def test_importing_the_checks_does_not_import_torchvision():
    """The notebook's imports cell does not pay for it: references import it when a check first runs."""
    import subprocess
    import sys

    code = ("import sys, course_utils.checks.a6_detection_segmentation; "
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stdout + done.stderr


# --- the check's own references ----------------------------------------------------------------------------
def test_torchvision_nms_keeps_ties_in_index_order_on_the_check_s_cases():
    """The rule the notebook states (equal scores: the lower index first) is what torchvision's nms does on every
    tie case of the checks (a stable greedy reference written here agrees), and the per-label reference is
    torchvision's batched_nms."""
    def stable_greedy(boxes, scores, threshold):
        iou, keep, gone = checks.reference_box_iou(boxes, boxes), [], set()
        for i in sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i)):
            if i not in gone:
                keep.append(i)
                gone |= {j for j in range(len(scores)) if float(iou[i, j]) > threshold}
        return keep

    for hidden, table in ((False, checks.NMS_CASES), (True, checks.HIDDEN_NMS_CASES)):
        for index, (_, setting) in enumerate(table):
            boxes, scores, _ = checks.boxes._nms_inputs(setting, checks._seed(hidden, "check_nms", index))
            assert checks.reference_nms(boxes, scores, setting["threshold"]).tolist() == \
                stable_greedy(boxes, scores, setting["threshold"])
    for hidden, table in ((False, checks.BATCHED_CASES), (True, checks.HIDDEN_BATCHED_CASES)):
        for index, (rule, setting) in enumerate(table):
            boxes, scores, labels = checks.boxes._nms_inputs(setting, checks._seed(hidden, "check_batched_nms", index))
            ours = checks.reference_batched_nms(boxes, scores, labels, setting["threshold"])
            theirs = torchvision.ops.batched_nms(boxes, scores, labels, setting["threshold"])
            if "negative coordinates" in rule:
                # torchvision's offset trick shifts by label * (largest coordinate + 1): it assumes coordinates >= 0,
                # and here its labels overlap (the case the notebook warns about)
                assert not torch.equal(ours, theirs) and sorted(ours.tolist()) == [0, 1]
            else:
                assert torch.equal(ours, theirs)


def test_the_average_precision_reference_on_hand_worked_cases():
    """The visible cases worked by hand (precision, recall after each ranked detection, then the area)."""
    expected = {0: 0.5,               # TP FP FP TP of 3: p 1, 1/2, 1/3, 1/2; r 1/3, 1/3, 1/3, 2/3 -> 1/3 + 1/3 * 1/2
                1: 2 / 3,             # FP TP TP of 2: p 0, 1/2, 2/3 -> interpolated 2/3 for both steps of 1/2
                2: 11 / 12,           # TP TP FP TP of 3 (image by image it would be FP TP TP TP: 3/4)
                3: 5 / 6,             # TP FP(duplicate) TP: 1/2 * 1 + 1/2 * 2/3
                4: 1.0, 5: 1.0,       # second-best unmatched box; IoU exactly 0.5
                6: 5 / 9,             # at 0.75: TP FP TP of 3: 1/3 * 1 + 1/3 * 2/3
                7: 1 / 3, 8: 0.0}     # one of three objects found; matched against another image's box: none
    for index, value in expected.items():
        _, setting = checks.AP_CASES[index]
        detections, ground_truth, threshold = checks.boxes._ap_inputs(setting, 0)
        assert checks.reference_average_precision(detections, ground_truth, threshold) == pytest.approx(value), index
    assert math.isnan(checks.reference_average_precision([(torch.zeros(1, 4), torch.ones(1))], [torch.zeros(0, 4)]))


def test_the_other_references_on_hand_worked_numbers():
    a = torch.tensor([[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]], [[1, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    b = torch.tensor([[[1, 0, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    assert checks.reference_dice_score(a, b).tolist() == pytest.approx([0.5, 1.0, 0.0])
    logits, target = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # p = 1/2 everywhere: (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5
    assert float(checks.reference_soft_dice_loss(logits, target)) == pytest.approx(0.5)
    assert checks.reference_box_iou(torch.tensor([[0.0, 0, 2, 2], [1, 1, 1, 1]]),
                                    torch.tensor([[1.0, 1, 3, 3], [1, 1, 1, 1]])).flatten().tolist() == \
        pytest.approx([1 / 7, 0.0, 0.0, 0.0])
    features = torch.arange(16.0).view(1, 1, 4, 4)   # ROI 0..3 at scale 1: bins of 2x2, max at the bottom right
    assert checks.reference_roi_pool(features, torch.tensor([[0, 0, 0, 3, 3.0]]), 2).flatten().tolist() == \
        [5.0, 7.0, 13.0, 15.0]


def test_the_reference_unet_is_the_contract_s_layout():
    model = checks.UNet(3, 2, depth=2, width=8)
    names = [k for k in model.state_dict() if k.endswith("weight") and "." in k]
    assert names[:2] == ["encoders.0.0.weight", "encoders.0.1.weight"]
    assert tuple(model.upsamplers[0].weight.shape) == (32, 16, 2, 2)     # deepest first
    assert tuple(model.decoders[0][0].weight.shape) == (16, 32, 3, 3)
    assert tuple(model.head.weight.shape) == (2, 8, 1, 1)
    assert model(torch.rand(2, 3, 8, 12)).shape == (2, 2, 8, 12)
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 8, 10))
    with pytest.raises(ValueError):
        checks.UNet(3, 1, depth=0)


def test_filling_by_name_does_not_depend_on_the_order_of_the_entries():
    slots = checks.unet_slots(3, 1, 1, 4)
    a, b = checks.UNet(3, 1, 1, 4), checks.UNet(3, 1, 1, 4)
    checks.fill_by_name(a, slots, 5)
    checks.fill_by_name(b, slots[::-1], 5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# --- messages ----------------------------------------------------------------------------------------
def test_failures_say_what_was_expected_and_what_was_given():
    message = v.run_cells(v.WRONG["nms_not_greedy"][0], hidden=False)[v.NMS].failure
    assert "expected the indices [0, 2, 3], got [0, 3]" in message and "scores = [0.9, 0.8, 0.7, 0.6]" in message
    message = v.run_cells(v.WRONG["iou_no_clamp"][0], hidden=False)[v.IOU].failure
    assert "clamp its width and its height at 0" in message, message
    message = v.run_cells(v.WRONG["roi_pool_torch_round"][0], hidden=False)[v.POOL].failure
    assert "rounding half away from zero" in message and "expected" in message, message
    message = v.run_cells(v.WRONG["ap_not_interpolated"][0], hidden=False)[v.AP].failure
    assert "expected AP 0.666667, got 0.58333" in message, message
    message = v.run_cells(v.WRONG["soft_dice_detached"][0], hidden=False)[v.SOFT].failure
    assert "not differentiable" in message, message
    message = v.run_cells(v.WRONG["unet_bilinear"][0], hidden=False)[v.UNET].failure
    assert "missing ['upsamplers.0.bias', 'upsamplers.0.weight'" in message, message
    message = v.run_cells(v.WRONG["train_unet_bce_only"][0], hidden=False)[v.TRAIN].failure
    assert "first epoch's mean loss is not the recipe's: expected about" in message, message


@pytest.mark.parametrize("name", ["iou_plus_one", "nms_suppresses_at_equality", "roi_pool_truncates",
                                  "roi_align_nearest", "ap_ranked_per_image", "dice_nan_when_both_empty",
                                  "soft_dice_batch_sums", "unet_bilinear"])
def test_hidden_failures_name_the_rule_never_the_inputs(name):
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, only_hidden=True, cells=[c for c in v.CELLS if c.grade_id in must_fail])
    rules = {r for rules in checks.hidden_rules().values() for r in rules}
    for result in results.values():
        message = result.failure
        assert not result.passed
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
    for words in ("clamped at 0", "touching", "zero-area", "empty inputs", "not (K, 4)", "x2 < x1", "vectorized",
                  "strictly greater", "equal scores: the lower index first", "decreasing order of score",
                  "different labels never suppress", "an empty int64 tensor", "rounding half away from zero",
                  "spatial_scale", "empty bin gives 0", "batch index", "(ph, pw)", "sampling_ratio <= 0",
                  "sampling_ratio 1", "aligned=True", "no minimum size", "counts as 1 pixel", "outside the map",
                  "whole dataset", "duplicate", "UNMATCHED", "exactly iou_threshold", "another iou_threshold",
                  "recall over all ground-truth", "interpolated", "stable sort", "nan", "no detections: 0.0",
                  "per image", "any dtype", "both masks empty", "ValueError when the shapes differ",
                  "sigmoid(logits)", "gradient", "(N, 1, H, W)", "smooth in both", "scalar tensor",
                  "the stated layout", "the skip of the same resolution", "train mode", "depth 1", "depth 3",
                  "non-square", "not divisible by 2^depth", "depth < 1", "held-out Dice"):
        assert words in rules, words


def test_a_hidden_secret_changes_the_hidden_inputs(monkeypatch):
    seen = set()
    for secret in ("one secret", "another secret"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        boxes, _, _ = checks.boxes._nms_inputs(checks.HIDDEN_NMS_CASES[0][1], checks._seed(True, "check_nms", 0))
        seen.add(tuple(boxes.flatten().tolist()))
    assert len(seen) == 2


def test_the_random_cases_keep_every_iou_away_from_the_threshold():
    for hidden, table in ((False, checks.NMS_CASES), (True, checks.HIDDEN_NMS_CASES)):
        for index, (_, setting) in enumerate(table):
            if "clusters" in setting:
                boxes, _, _ = checks.boxes._nms_inputs(setting, checks._seed(hidden, "check_nms", index))
                assert checks.boxes._far_from_threshold(boxes, setting["threshold"])


# --- the drivers cross the wire ------------------------------------------------------------------------
def _drivers():
    yield checks.UNetRun([3, 1, 2, 4], checks.unet_slots(3, 1, 2, 4), 3, torch.rand(1, 3, 8, 8))
    yield checks.UNetRun([3, 1, 2, 4], checks.unet_slots(3, 1, 2, 4), 3, torch.zeros(0), bad_args=[3, 1, 0, 4])
    yield checks.LossRun(torch.randn(2, 3, 3), torch.ones(2, 3, 3), {"smooth": 0.5})
    yield checks.TrainRun(1, 2, 32, 16, 1, 1e-2, 16)


@pytest.mark.parametrize("driver", list(_drivers()), ids=lambda d: type(d).__name__)
def test_each_driver_is_rebuilt_from_its_plain_data(driver):
    data = wire.decode(wire.encode(driver.__wire__()))
    again = type(driver)(**data)
    assert wire.encode(again.__wire__()) == wire.encode(driver.__wire__())
    assert wire.checks_class(wire.object_tag(type(driver))) is type(driver)


def test_a_driver_s_answer_crosses_the_wire():
    ns = v.solution_namespace()
    driver = checks.UNetRun([3, 1, 1, 4], checks.unet_slots(3, 1, 1, 4), 3, torch.rand(2, 3, 4, 4))
    answer = driver(ns["UNet"])
    again = wire.decode(wire.encode(answer))
    assert torch.equal(again["eval"], answer["eval"]) and again["entries"] == answer["entries"]
