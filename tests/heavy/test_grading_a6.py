"""a6_detection_segmentation through the grading command with the sandbox on: hostile submissions cost exactly their
points.

Each student starts from the full solution and changes something; the table says which graded cells that must cost
(the pattern of test_grading_a5.py). Six submissions: the correct one, and the issue's wrong answers: IoU without
clamping the intersection (the notebook's nms, batched_nms and average_precision call its box_iou, so those cells
fall too), NMS across classes, ROI pooling with the wrong spatial scale together with ROI align ignoring
sampling_ratio, Dice on logits in the soft Dice loss (train_unet uses it: that cell falls too) together with a U-Net
whose skips come at the wrong resolution, and torchvision reached by an imported name and through
torch.ops.torchvision (refused at the dispatcher: nms, and batched_nms which calls it, and roi_align).

Below the grading run: what the fast tier leaves out (the slow training variants, the hidden calls' catch rates over
several secrets, the correct variants' hidden calls) and the seed study behind train_unet's threshold.
"""

import math
import secrets
import sys

import pytest
import torch

from course_utils.checks import a6_detection_segmentation as checks
from course_utils.grading import COURSE_ROOT

sys.path.insert(0, str(COURSE_ROOT / "tests"))
import a6_variants as v  # noqa: E402
import variants_harness as vh  # noqa: E402

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a6_detection_segmentation"
POINTS = {cell.grade_id: cell.points for cell in v.CELLS}
IOU, NMS, BATCHED, POOL, ALIGN, AP = v.IOU, v.NMS, v.BATCHED, v.POOL, v.ALIGN, v.AP
SOFT, UNET, TRAIN = v.SOFT, v.UNET, v.TRAIN

_NO_CLAMP = ("def box_iou(boxes1, boxes2):\n"
             "    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])\n"
             "    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])\n"
             "    wh = torch.min(boxes1[:, None, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, None, :2], boxes2[:, :2])\n"
             "    inter = wh[..., 0] * wh[..., 1]  # no clamp: two negative sides make a positive area\n"
             "    union = area1[:, None] + area2 - inter\n"
             "    return torch.where(union > 0, inter / union, torch.zeros_like(union))\n")
_ACROSS_CLASSES = ("def batched_nms(boxes, scores, labels, iou_threshold):\n"
                   "    return nms(boxes, scores, iou_threshold)  # labels ignored\n")
_POOL_AND_ALIGN = ("_roi_pool, _roi_align = roi_pool, roi_align\n"
                   "def roi_pool(features, rois, output_size, spatial_scale=1.0):\n"
                   "    return _roi_pool(features, rois, output_size, 1.0)  # the scale ignored\n"
                   "def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):\n"
                   "    return _roi_align(features, rois, output_size, spatial_scale, 2, aligned)  # always 2 x 2\n")
_LOGITS_AND_SKIPS = ("def soft_dice_loss(logits, target, smooth=1.0):\n"
                     "    p, t = logits.flatten(1), target.flatten(1)  # no sigmoid\n"
                     "    return 1 - ((2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()\n"
                     "_Base = UNet\n"
                     "class UNet(_Base):\n"
                     "    def forward(self, x):\n"
                     "        if x.shape[2] % 2 ** len(self.upsamplers) or x.shape[3] % 2 ** len(self.upsamplers):\n"
                     "            raise ValueError('H and W must be divisible by 2^depth')\n"
                     "        skips = []\n"
                     "        for encoder in self.encoders[:-1]:\n"
                     "            x = encoder(x)\n"
                     "            skips.append(x)\n"
                     "            x = F.max_pool2d(x, 2)\n"
                     "        x = self.encoders[-1](x)\n"
                     "        for i, (up, decoder) in enumerate(zip(self.upsamplers, self.decoders)):\n"
                     "            x = up(x)\n"
                     "            skip = F.interpolate(skips[i], size=x.shape[-2:])  # the wrong level, resized\n"
                     "            x = decoder(torch.cat([skip, x], dim=1))\n"
                     "        return self.head(x)\n")
_TORCHVISION = ("from torchvision.ops import nms as _tv_nms\n"
                "def nms(boxes, scores, iou_threshold):\n"
                "    return _tv_nms(boxes, scores, iou_threshold)\n"
                "def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):\n"
                "    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size\n"
                "    return torch.ops.torchvision.roi_align(features, rois, spatial_scale, ph, pw, sampling_ratio,"
                " aligned)\n")
# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "iou_without_clamp": ({}, ("box_iou", _NO_CLAMP), {IOU, NMS, BATCHED, AP}, None),
    "nms_across_classes": ({}, ("batched_nms", _ACROSS_CLASSES), {BATCHED}, None),
    "roi_scale_and_sampling_ratio": ({}, ("roi_align", _POOL_AND_ALIGN), {POOL, ALIGN}, None),
    "dice_on_logits_and_skips": ({}, ("unet", _LOGITS_AND_SKIPS), {SOFT, UNET, TRAIN}, None),
    "torchvision_by_name_and_torch_ops": ({}, ("roi_align", _TORCHVISION), {NMS, BATCHED, ALIGN}, None),
}


def _not_ready() -> str | None:
    ready = v.NOTEBOOK is not None and (COURSE_ROOT / "assignments" / ASSIGNMENT).exists()
    return None if ready else "the a6 solution or release notebook is not there yet"


(graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
 test_each_submission_loses_exactly_its_points) = vh.hostile_class(
    ASSIGNMENT, CLASS, POINTS, cell_timeout=300, call_timeout=200, timeout=3600, missing=_not_ready)


# --- what the fast tier leaves out -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(v.SLOW_WRONG))
def test_the_slow_wrong_variants_lose_exactly_their_points(name):
    torch.set_num_threads(1)
    replacements, must_fail = v.WRONG[name]
    results = v.run_cells(replacements, hidden=False)
    assert vh.failed(results) == must_fail
    for grade_id in must_fail:
        assert " raised " not in results[grade_id].failure, results[grade_id].failure


@pytest.mark.parametrize("secret", ["", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    torch.set_num_threads(1)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if not v.caught(replacements, must_fail)}
    assert not missed


@pytest.mark.parametrize("name", v.CORRECT)
def test_differently_written_correct_answers_pass_their_hidden_calls_for_several_secrets(monkeypatch, name):
    torch.set_num_threads(1)
    if name in v.SLOW_CORRECT:
        assert v.failing_cells(v.CORRECT[name], hidden=False) == set(), name
    for secret in ("term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3", "another term"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        assert v.failing_cells(v.CORRECT[name], only_hidden=True) == set(), (name, secret)


def test_the_reference_answers_of_the_variants_module_get_every_point():
    """tests/a6_variants.py's own answers (written apart from the notebook's), visible and hidden calls."""
    torch.set_num_threads(1)
    replacements = {**v.REFERENCE, "UNet": v.UNet}
    assert v.failing_cells(replacements) == set()


# --- the seed study behind train_unet's threshold -------------------------------------------------------------
def test_train_unet_reaches_the_dice_threshold_far_above_it_on_20_seeds():
    """The solution's train_unet through the check's own driver and recipe (TRAIN_RECIPE: 512 shapes 16x16, 8
    epochs, batch 16, lr 1e-2) for 20 seeds: the held-out Dice, and the first epoch's loss against the check's own
    run of the recipe. Measured (1 thread): Dice 0.912 to 0.950, the first epoch's loss identical to the check's
    (drift 0); threshold 0.75, tolerance 2 %."""
    torch.set_num_threads(1)
    train_unet = v.solution_namespace()["train_unet"]
    r = checks.TRAIN_RECIPE
    dice, drift = [], []
    for seed in range(100, 120):
        got = checks.TrainRun(seed, 7 + seed, r["n"], r["size"], r["epochs"], r["lr"], r["batch_size"])(train_unet)
        images, masks = checks.shapes_masks(7 + seed, r["n"], r["size"])
        first = checks.reference_train_epochs(seed, images, masks, 1, r["lr"], r["batch_size"])[0]
        drift.append(abs(got["losses"][0] - first) / first)
        dice.append(checks.held_out_dice(got["state"], *checks.shapes_masks(7 + seed + 100_003, r["held_out"],
                                                                            r["size"])))
        assert got["losses"][-1] < got["losses"][0]
    print(f"held-out Dice {min(dice):.3f} to {max(dice):.3f}; first-epoch drift at most {max(drift):.2e}")
    assert min(dice) >= checks.TRAIN_DICE_THRESHOLD + 0.1, dice
    assert max(drift) <= checks.FIRST_EPOCH_RTOL / 10, drift


def test_an_untrained_or_bce_only_model_stays_below_the_threshold_or_off_the_recipe():
    """What the threshold and the first-epoch comparison separate: the check's U-Net untrained reaches a Dice far
    below 0.75; trained on the cross-entropy alone its first epoch's loss is far outside 2 % of the recipe's."""
    torch.set_num_threads(1)
    r = checks.TRAIN_RECIPE
    untrained = checks._train_model(3)
    state = {k: t.detach().clone() for k, t in untrained.state_dict().items()}
    held = checks.shapes_masks(10 + 100_003, r["held_out"], r["size"])
    assert checks.held_out_dice(state, *held) < checks.TRAIN_DICE_THRESHOLD / 2
    got = checks.TrainRun(3, 10, r["n"], r["size"], 1, r["lr"], r["batch_size"])(v.train_unet_bce_only)
    images, masks = checks.shapes_masks(10, r["n"], r["size"])
    first = checks.reference_train_epochs(3, images, masks, 1, r["lr"], r["batch_size"])[0]
    assert abs(got["losses"][0] - first) > 5 * checks.FIRST_EPOCH_RTOL * first
    assert math.isfinite(got["losses"][0])


def test_the_solution_passes_its_hidden_calls_for_5_random_secrets(monkeypatch):
    torch.set_num_threads(1)
    failures = {}
    for _ in range(5):
        secret = secrets.token_hex(16)
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        results = v.run_cells({}, only_hidden=True, cells=v.CELLS)
        failures.update({(secret, g): r.failure for g, r in results.items() if not r.passed})
    assert failures == {}
