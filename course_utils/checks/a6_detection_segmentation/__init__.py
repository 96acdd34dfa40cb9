"""Checks for a6_detection_segmentation: pairwise IoU, NMS (plain and per class), ROI pooling and ROI align, average
precision, the Dice score and the soft Dice loss, a U-Net and its training loop.

References. Where torchvision defines the operation, the check calls ``torchvision.ops`` itself, outside the
student's call (:func:`reference_box_iou`, :func:`reference_nms`, :func:`reference_roi_pool`,
:func:`reference_roi_align`); torchvision's NMS sorts the scores stably (equal scores: the lower index first;
tests/test_a6_checks.py verifies it on the check's tie cases), and :func:`reference_batched_nms` runs it per class
and merges by decreasing score (ties: the lower index). Where torchvision has nothing, the check computes it here:
IoU of zero-area boxes (0, where torchvision's 0/0 is nan), :func:`reference_average_precision` (COCO's greedy
matching at one threshold, all-point interpolation), :func:`reference_dice_score`, :func:`reference_soft_dice_loss`,
the reference :class:`UNet` of the contract's layout and the training recipe (:func:`reference_train_epochs`); the
tests verify them on hand-worked numbers.

Tolerances (float32): IoU and Dice atol 1e-5 + rtol 1e-4; ROI pooling 1e-6 (a maximum of the inputs); ROI align
atol 1e-5 + rtol 1e-4; the soft Dice loss and its gradient atol 1e-6 + rtol 1e-4; average precision 1e-6 (a Python
float); the U-Net's outputs atol 1e-4 + rtol 1e-3 of their largest value. Index results (NMS) must be equal, as int64
tensors. The box cases keep every IoU that decides something at least :data:`IOU_MARGIN` away from the threshold
(rounding cannot flip a decision), except the cases built to sit exactly on it (IoU 1/2 exactly).

Models never cross to the student's side: a *driver* (:class:`UNetRun`, :class:`LossRun`, :class:`TrainRun`: plain
data) runs where the student's code runs. :class:`UNetRun` builds the student's ``UNet``, compares its
``state_dict()`` keys and shapes with the reference's, fills both with the same seeded values by name
(:func:`fill_by_name`) and returns the outputs in eval and train mode. :class:`TrainRun` builds the check's own
reference U-Net (so a wrong ``UNet`` does not cost the training cell again) after ``torch.manual_seed(seed)``, calls
the student's ``train_unet`` on shapes masks and returns the losses and the trained weights; the check requires
the first epoch's loss within :data:`FIRST_EPOCH_RTOL` of its own run of the stated recipe from the same seed, the
loss to go down, and a held-out Dice of at least :data:`TRAIN_DICE_THRESHOLD` (:data:`TRAIN_RECIPE`; the seed study
behind it, in tests/heavy/test_grading_a6.py: 0.91 to 0.95 over 20 seeds, the first epoch's loss identical to the
check's own run).

Refused while the student's code runs: the operators ``torchvision::nms``, ``torchvision::roi_pool`` and
``torchvision::roi_align`` (at PyTorch's dispatcher: by name, alias or ``torch.ops.torchvision.*``), the Python code
of torchvision's box and ROI modules (:data:`TORCHVISION_CODE`: ``box_iou``, ``batched_nms``, the pure-Python
``_roi_align``...) and of the lecture's detection widget, and torchmetrics' / pycocotools' detection code where
installed (resolved at the first check). torch, nn layers, ``F.max_pool2d``, ``F.interpolate`` and
``F.grid_sample`` stay allowed.

The package: this module holds what is shared, the references and the drivers (a driver crosses to the grader's
worker as a top-level class of this module); :mod:`.boxes` checks IoU, NMS, batched NMS and average precision,
:mod:`.roi` ROI pooling and ROI align, :mod:`.segmentation` Dice, soft Dice, the U-Net and its training. Each check
has visible cases (every stated rule at least once, ValueErrors included) and hidden ones (other sizes, values and
seeds drawn from the instructor's secret); a hidden failure names the rule, never the inputs.
"""

from __future__ import annotations

import functools
import importlib
import math
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import CheckFailure, check_later, drive, expect_close, hidden_seed
from .. import type_name as _kind
from ..codeguard import importable as _importable
from ..codeguard import resolvable as _resolvable

__all__ = ["check_box_iou", "check_nms", "check_batched_nms", "check_roi_pool", "check_roi_align",
           "check_average_precision", "check_dice_score", "check_soft_dice_loss", "check_unet", "check_train_unet",
           "UNet", "UNetRun", "LossRun", "TrainRun", "fill_by_name", "unet_slots", "reference_box_iou",
           "reference_nms", "reference_batched_nms", "reference_roi_pool", "reference_roi_align",
           "reference_average_precision", "reference_dice_score", "reference_soft_dice_loss",
           "reference_train_epochs", "reference_first_order", "held_out_dice", "hidden_rules", "visible_rules",
           "refused_code",
           "REFUSED_OPS", "TORCHVISION_CODE", "IOU_MARGIN", "TRAIN_RECIPE", "TRAIN_DICE_THRESHOLD",
           "FIRST_EPOCH_RTOL"]

ASSIGNMENT = "a6_detection_segmentation"
# A hidden failure's message names the check and the rule, never an input, a size, a value or text the student's
# code chose: the grader shows it to the student (course_utils.grading.protocol).
HIDDEN_MESSAGES_NAME_THE_RULE = True
Case = tuple[str, dict]               # (the rule a case exercises, its setting)
IOU_MARGIN = 1e-3                     # an IoU that decides something stays this far from the threshold
# train_unet: the check's recipe (the data: shapes masks), its held-out Dice threshold and the first epoch's tolerance
TRAIN_RECIPE: dict[str, Any] = {"n": 512, "size": 16, "epochs": 8, "lr": 1e-2, "batch_size": 16, "held_out": 256,
                                "depth": 2, "width": 8}
TRAIN_DICE_THRESHOLD = 0.75
FIRST_EPOCH_RTOL = 0.02

# --- what the student's code may not run -------------------------------------------------------------
REFUSED_OPS: tuple[str, ...] = ("torchvision::nms", "torchvision::roi_pool", "torchvision::roi_align",
                                "torchvision::_roi_pool_backward", "torchvision::_roi_align_backward",
                                "torchvision::ps_roi_pool", "torchvision::ps_roi_align")
TORCHVISION_CODE: tuple[str, ...] = ("torchvision.ops.boxes", "torchvision.ops.roi_align", "torchvision.ops.roi_pool",
                                     "torchvision.ops.ps_roi_align", "torchvision.ops.ps_roi_pool",
                                     "torchvision.ops.poolers", "torchvision.ops._utils",
                                     "torchvision.ops._box_convert", "torchvision.models.detection._utils",
                                     "torchvision.models.detection.roi_heads")
_WIDGETS = Path(__file__).resolve().parent.parent.parent / "widgets"
WIDGET_CODE: tuple[str, ...] = tuple(f"course_utils.widgets.{m}" for m in ("detection",)
                                     if (_WIDGETS / f"{m}.py").exists())
LIBRARY_CODE: tuple[str, ...] = ("torchmetrics.detection.mean_ap", "torchmetrics.functional.detection",
                                 "torchmetrics.functional.segmentation", "torchmetrics.functional.classification.dice",
                                 "pycocotools.cocoeval", "pycocotools.mask")
WHY = ("write it yourself (torchvision.ops and the lecture's detection widget are what the check compares with; "
       "torch and nn layers stay available)")




@functools.cache
def refused_code() -> tuple[str, ...]:
    """What every check refuses (``refuse_code``): torchvision's box and ROI code, the detection widget, and
    torchmetrics' / pycocotools' detection code where installed. Resolved at the first check, not at import (a
    notebook's imports cell should not pay for torchvision's detection models)."""
    found = _resolvable(TORCHVISION_CODE) + WIDGET_CODE
    libraries = [name for name in LIBRARY_CODE if _importable(name.split(".")[0])]
    return found + _resolvable(libraries)


def _declare() -> Callable[[Callable[..., None]], Callable[..., None]]:
    """:func:`check` with the refused operators and :func:`refused_code`, declared when the check is first called."""
    return check_later(refused_code, refuse=REFUSED_OPS, why=WHY)


def _tv_ops() -> Any:
    """torchvision.ops, imported when a reference needs it."""
    return importlib.import_module("torchvision.ops")


# --- the references ------------------------------------------------------------------------------------
def reference_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """torchvision's box_iou of (N, 4) and (M, 4) -> (N, M), with 0 where the union is 0 (two zero-area boxes)."""
    return _tv_ops().box_iou(boxes1.float(), boxes2.float()).nan_to_num(0.0)


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision's nms: (K,) int64 indices of the kept boxes by decreasing score (ties: the lower index first)."""
    return _tv_ops().nms(boxes.float(), scores.float(), float(iou_threshold))


def reference_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                          iou_threshold: float) -> torch.Tensor:
    """torchvision's nms within each label, merged by decreasing score (equal scores: the lower index first)."""
    kept = [torch.nonzero(labels == label).flatten()[reference_nms(boxes[labels == label], scores[labels == label],
                                                                   iou_threshold)]
            for label in labels.unique().tolist()]
    if not kept:
        return torch.empty(0, dtype=torch.int64)
    index = torch.cat(kept).sort().values                       # by index, then a stable sort by score
    return index[torch.sort(scores[index], descending=True, stable=True).indices]


def reference_roi_pool(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
                       spatial_scale: float = 1.0) -> torch.Tensor:
    """torchvision's roi_pool: (N, C, H, W), (K, 5) -> (K, C, ph, pw)."""
    return _tv_ops().roi_pool(features, rois, output_size, spatial_scale)


def reference_roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
                        spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """torchvision's roi_align: (N, C, H, W), (K, 5) -> (K, C, ph, pw)."""
    return _tv_ops().roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def reference_average_precision(detections: Sequence[tuple[torch.Tensor, torch.Tensor]],
                                ground_truth: Sequence[torch.Tensor], iou_threshold: float = 0.5) -> float:
    """AP of one class over a dataset: all detections ranked by decreasing score (stable: image by image, then by
    index), each matched greedily to the unmatched ground-truth box of its image with the highest IoU if that IoU is
    >= iou_threshold (a true positive), else a false positive; AP = sum_k (r_k - r_{k-1}) max_{j >= k} p_j.
    nan without ground truth, 0.0 with ground truth and no detection."""
    total = sum(int(g.shape[0]) for g in ground_truth)
    if total == 0:
        return float("nan")
    ranked = [(float(s), image, index) for image, (_, scores) in enumerate(detections)
              for index, s in enumerate(scores.tolist())]
    ranked.sort(key=lambda item: -item[0])                      # Python's sort is stable
    matched = [torch.zeros(int(g.shape[0]), dtype=torch.bool) for g in ground_truth]
    tp, precision, recall = 0, [], []
    for k, (_, image, index) in enumerate(ranked, start=1):
        gt = ground_truth[image]
        if gt.shape[0]:
            iou = reference_box_iou(detections[image][0][index : index + 1], gt)[0].double()
            iou[matched[image]] = -1.0
            best = int(iou.argmax())
            if float(iou[best]) >= iou_threshold:
                matched[image][best] = True
                tp += 1
        precision.append(tp / k)
        recall.append(tp / total)
    ap, previous = 0.0, 0.0
    for k in range(len(ranked)):
        ap += (recall[k] - previous) * max(precision[k:])
        previous = recall[k]
    return float(ap)


def reference_dice_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 |A and B| / (|A| + |B|) per image of (N, H, W) binary masks; 1.0 where both are empty."""
    a, b = pred.bool().flatten(1), target.bool().flatten(1)
    both = 2.0 * (a & b).sum(1).double()
    sizes = (a.sum(1) + b.sum(1)).double()
    return torch.where(sizes > 0, both / sizes.clamp_min(1.0), torch.ones_like(sizes)).float()


def reference_soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean_n (2 sum p t + smooth) / (sum p + sum t + smooth), p = sigmoid(logits), sums per image."""
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    return 1.0 - ((2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


# --- the reference U-Net ---------------------------------------------------------------------------------
def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    """The contract's U-Net: (N, in_channels, H, W) -> (N, num_classes, H, W) logits, H and W divisible by 2^depth.

    ``encoders``: depth + 1 blocks (in -> w -> 2w -> ... -> w 2^depth, the last the bottleneck); ``upsamplers``:
    ConvTranspose2d(w 2^(l+1), w 2^l, 2, stride 2) for l = depth-1 .. 0; ``decoders``: blocks(2 w 2^l, w 2^l) for
    l = depth-1 .. 0, each on cat([skip of the same resolution, up-sampled]); ``head``: Conv2d(w, num_classes, 1)."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 2, width: int = 8) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        channels = [width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList([_block(in_channels if level == 0 else channels[level - 1], channels[level])
                                       for level in range(depth + 1)])
        self.upsamplers = nn.ModuleList([nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
                                         for level in reversed(range(depth))])
        self.decoders = nn.ModuleList([_block(2 * channels[level], channels[level])
                                       for level in reversed(range(depth))])
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.depth
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"H and W must be divisible by 2^depth = {factor}, got {tuple(x.shape[-2:])}")
        skips = []
        for encoder in self.encoders[:-1]:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.encoders[-1](x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([skip, upsample(x)], dim=1))
        return self.head(x)


Slot = list  # [key, shape, kind]: one state_dict entry of the reference U-Net


def unet_slots(in_channels: int, num_classes: int, depth: int, width: int) -> list[Slot]:
    """The reference U-Net's state_dict entries: [key, shape, kind], kind "weight", "bias", "bn_weight", "bn_bias",
    "mean", "var" or "count"."""
    with torch.device("meta"):
        model = UNet(in_channels, num_classes, depth, width)
    slots = []
    for key, value in model.state_dict().items():
        owner = model.get_submodule(key.rpartition(".")[0])
        leaf = key.rpartition(".")[2]
        if isinstance(owner, nn.BatchNorm2d):
            kind = {"weight": "bn_weight", "bias": "bn_bias", "running_mean": "mean", "running_var": "var",
                    "num_batches_tracked": "count"}[leaf]
        else:
            kind = "weight" if value.ndim >= 2 else "bias"
        slots.append([key, list(value.shape), kind])
    return slots


def fill_by_name(model: nn.Module, slots: Sequence[Slot], seed: int) -> None:
    """Fill ``model``'s state_dict entries named by ``slots`` with seeded values (each from its own generator,
    seeded by ``seed`` and the key: the same values on both sides whatever the order of the entries): weights
    N(0, 2 / fan_in), biases and BatchNorm shifts N(0, 0.1^2), BatchNorm scales U(0.5, 1.5), running means
    N(0, 0.2^2), running variances U(0.5, 1.5), counts 0."""
    state = model.state_dict()
    with torch.no_grad():
        for key, shape, kind in slots:
            tensor = state[key]
            g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{key}".encode()))
            values = torch.empty(shape, dtype=torch.float32)
            if kind == "count":
                tensor.zero_()
                continue
            if kind == "weight":
                values.normal_(0.0, math.sqrt(2.0 / max(1, math.prod(shape[1:]))), generator=g)
            elif kind in ("bn_weight", "var"):
                values.uniform_(0.5, 1.5, generator=g)
            elif kind == "mean":
                values.normal_(0.0, 0.2, generator=g)
            else:
                values.normal_(0.0, 0.1, generator=g)
            tensor.copy_(values)


# --- the drivers -----------------------------------------------------------------------------------------
def _detached(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else type(value).__name__


def _outcome(action: Callable[[], Any]) -> str:
    """"ValueError", another exception's type name, or "returned"."""
    try:
        action()
    except ValueError:
        return "ValueError"
    except Exception as err:
        return _kind(err, True)
    return "returned"


class UNetRun:
    """A driver: ``factory(*args)`` (the student's UNet class); its state_dict entries [key, shape]; if they are the
    reference's ``slots``, filled with :func:`fill_by_name` and run on ``x`` in eval mode and in train mode (the
    running statistics are left as filled: a fresh copy each time). ``bad_x``: an input whose H or W is not divisible
    by 2^depth (what forward does with it); ``bad_args``: constructor arguments with depth < 1 (what the constructor
    does). Returns plain data."""

    def __init__(self, args: Sequence[int], slots: Sequence[Slot], seed: int, x: torch.Tensor,
                 bad_x: torch.Tensor | None = None, bad_args: Sequence[int] | None = None) -> None:
        self.args, self.slots, self.seed, self.x = [int(a) for a in args], [list(s) for s in slots], int(seed), x
        self.bad_x, self.bad_args = bad_x, None if bad_args is None else [int(a) for a in bad_args]

    def __wire__(self) -> dict[str, Any]:
        return {"args": self.args, "slots": self.slots, "seed": self.seed, "x": self.x, "bad_x": self.bad_x,
                "bad_args": self.bad_args}

    def __call__(self, factory: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        bad_args, bad_x = self.bad_args, self.bad_x
        if bad_args is not None:
            result["bad_args"] = _outcome(lambda: factory(*bad_args))
            return result
        model = factory(*self.args)
        if not isinstance(model, nn.Module):
            return {"returned": type(model).__name__}
        result["entries"] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        if sorted(map(tuple, ((k, tuple(s)) for k, s in result["entries"]))) != \
                sorted((k, tuple(s)) for k, s, _ in self.slots):
            return result
        fill_by_name(model, self.slots, self.seed)
        if bad_x is not None:
            model.eval()
            with torch.no_grad():
                result["bad_x"] = _outcome(lambda: model(bad_x.clone()))
            return result
        with torch.no_grad():
            result["eval"] = _detached(model.eval()(self.x.clone()))
            result["train"] = _detached(model.train()(self.x.clone()))
        return result


class LossRun:
    """A driver: ``fn(logits, target, **kwargs)`` with ``logits`` a leaf that requires grad; returns the value and
    the gradient of the value (backward) with respect to the logits, or what went wrong (plain data)."""

    def __init__(self, logits: torch.Tensor, target: torch.Tensor, kwargs: dict | None = None) -> None:
        self.logits, self.target, self.kwargs = logits, target, dict(kwargs or {})

    def __wire__(self) -> dict[str, Any]:
        return {"logits": self.logits, "target": self.target, "kwargs": self.kwargs}

    def __call__(self, fn: Any) -> dict[str, Any]:
        logits = self.logits.detach().clone().requires_grad_(True)
        value = fn(logits, self.target.clone(), **self.kwargs)
        if not isinstance(value, torch.Tensor):
            return {"type": type(value).__name__}
        result: dict[str, Any] = {"type": "Tensor", "value": value.detach().clone(), "grad": None}
        if value.requires_grad and value.numel() == 1:
            value.sum().backward()
            result["grad"] = None if logits.grad is None else logits.grad.detach().clone()
        return result


def shapes_masks(seed: int, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n shapes images (n, 3, size, size) in [0, 1] and their masks (n, 1, size, size) as float 0/1."""
    data = importlib.import_module("course_utils.data").load("shapes", n=n, size=size, seed=seed)
    return data.images.float().contiguous(), data.masks[:, None].float().contiguous()


def _train_model(seed: int) -> UNet:
    """The check's reference U-Net for the training cell, after ``torch.manual_seed(seed)`` (its initialization)."""
    torch.manual_seed(seed)
    return UNet(3, 1, TRAIN_RECIPE["depth"], TRAIN_RECIPE["width"])


class TrainRun:
    """A driver: ``torch.manual_seed(seed)``, the check's reference U-Net, then ``train_unet(model, images, masks,
    epochs, lr=lr, batch_size=batch_size)`` on shapes masks (``data_seed``); returns what it returned (a list of
    plain numbers, or type names), the trained weights (plain data), the images of the first epoch's training-mode
    forward passes by index, and whether the images or masks were changed."""

    def __init__(self, seed: int, data_seed: int, n: int, size: int, epochs: int, lr: float,
                 batch_size: int) -> None:
        self.seed, self.data_seed, self.n, self.size = int(seed), int(data_seed), int(n), int(size)
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)

    def __wire__(self) -> dict[str, Any]:
        return {"seed": self.seed, "data_seed": self.data_seed, "n": self.n, "size": self.size,
                "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}

    def __call__(self, fn: Any) -> dict[str, Any]:
        images, masks = shapes_masks(self.data_seed, self.n, self.size)
        model = _train_model(self.seed)
        index_of = {image.numpy().tobytes(): i for i, image in enumerate(images)}
        batches: list[list[int]] = []  # the images of each training-mode forward pass, by index (-1: not one of them)

        def record(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0] if inputs else None
            if module.training and isinstance(x, torch.Tensor) and len(batches) < self.n // self.batch_size:
                batches.append([index_of.get(image.detach().cpu().numpy().tobytes(), -1) for image in x])

        hook = model.register_forward_pre_hook(record)
        try:
            losses = fn(model, images, masks, self.epochs, lr=self.lr, batch_size=self.batch_size)
        finally:
            hook.remove()
        if isinstance(losses, (list, tuple)):
            shown: Any = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
                          for v in losses]
        else:
            shown = type(losses).__name__
        fresh_images, fresh_masks = shapes_masks(self.data_seed, self.n, self.size)
        return {"losses": shown, "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "first_batches": batches, "images_changed": not torch.equal(images, fresh_images),
                "masks_changed": not torch.equal(masks, fresh_masks)}


def reference_train_epochs(seed: int, images: torch.Tensor, masks: torch.Tensor, epochs: int, lr: float,
                           batch_size: int) -> list[float]:
    """The stated recipe on the check's reference U-Net from ``torch.manual_seed(seed)``: model.train(); Adam(lr);
    each epoch perm = torch.randperm(N), batches perm[i : i + batch_size], loss = BCE with logits + soft Dice,
    zero_grad, backward, step; the mean of the batches' losses per epoch. torch's global RNG is restored after."""
    with torch.random.fork_rng(devices=[]):
        model = _train_model(seed).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(epochs):
            perm = torch.randperm(images.shape[0])
            total, batches = 0.0, 0
            for start in range(0, images.shape[0], batch_size):
                index = perm[start : start + batch_size]
                logits = model(images[index])
                loss = F.binary_cross_entropy_with_logits(logits, masks[index]) + \
                    reference_soft_dice_loss(logits, masks[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, batches = total + loss.item(), batches + 1
            losses.append(total / batches)
    return losses


def reference_first_order(seed: int, n: int) -> list[int]:
    """The order of the first epoch in the stated recipe: ``torch.randperm(n)`` drawn right after the reference
    U-Net is built from ``torch.manual_seed(seed)``. torch's global RNG is restored after."""
    with torch.random.fork_rng(devices=[]):
        _train_model(seed)
        return torch.randperm(n).tolist()


def held_out_dice(state: dict[str, torch.Tensor], images: torch.Tensor, masks: torch.Tensor) -> float:
    """The mean Dice (logits > 0, eval mode) of the reference U-Net with the weights ``state`` on held-out shapes."""
    with torch.random.fork_rng(devices=[]):
        model = UNet(3, 1, TRAIN_RECIPE["depth"], TRAIN_RECIPE["width"])
    model.load_state_dict(state)
    with torch.no_grad():
        predicted = model.eval()(images) > 0
    return float(reference_dice_score(predicted[:, 0], masks[:, 0].bool()).mean())


# --- helpers of the checks ---------------------------------------------------------------------------------
def _name(obj: Any, default: str) -> str:
    return getattr(obj, "__name__", default)


def _seed(hidden: bool, check_name: str, part: str | int) -> int:
    if hidden:
        return hidden_seed(ASSIGNMENT, check_name, part) % 2**31
    return zlib.crc32(f"{check_name}/{part}".encode())


def _rng(hidden: bool, check_name: str, part: str | int) -> random.Random:
    return random.Random(_seed(hidden, check_name, part))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _answer(thunk: Callable[[], Any], where: str, hidden: bool, hint: str = "") -> Any:
    """``thunk()``, the student's code; its exception becomes a failure that says where (not the inputs, if hidden),
    and ``hint``."""
    try:
        return thunk()
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except CheckFailure:
        raise
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} raised {_kind(err, hidden)}{detail}{hint}") from None


def _call(fn: Callable, where: str, hidden: bool, *args: Any, **kwargs: Any) -> Any:
    """Call the student's function (see :func:`_answer`)."""
    return _answer(lambda: fn(*args, **kwargs), where, hidden)


def _run(student: Any, driver: Callable[[Any], Any], where: str, hidden: bool, hint: str = "") -> Any:
    """``drive`` the student's function or class (see :func:`_answer`)."""
    return _answer(lambda: drive(student, driver), where, hidden, hint)


def _compare(got: Any, expected: torch.Tensor, where: str, hidden: bool, hint: str = "", *, atol: float = 1e-5,
             rtol: float = 1e-4) -> None:
    """expect_close; for a hidden case the message keeps what was wrong and drops shapes and values."""
    try:
        expect_close(got, expected, where, atol=atol, rtol=rtol)
    except CheckFailure as failure:
        if not hidden:
            raise CheckFailure(f"{failure}{hint}") from None
        text = str(failure)
        what = "the result has the wrong shape" if "should have shape" in text else \
            "the result is not a real-valued tensor" if "should be" in text else "some values are wrong"
        raise CheckFailure(f"{where}: {what}{hint}. The visible cases test the same rule on other inputs: make your "
                           f"code right for every size and setting, not only theirs.") from None


def _expect_value_error(fn: Callable, args: tuple, kwargs: dict, where: str, hidden: bool) -> None:
    try:
        got = fn(*args, **kwargs)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except CheckFailure:
        raise
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} should raise ValueError, but it raised {_kind(err, hidden)}{detail}") from None
    raise CheckFailure(f"{where} should raise ValueError, but it returned {_kind(got, True)}")


def _rounded(value: Any) -> Any:
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 4) if isinstance(value, float) else value


def _show(t: torch.Tensor) -> Any:
    """A tensor as nested lists, floats rounded to 4 decimals (float32's 0.8999999761581421 shown as 0.9)."""
    return _rounded(t.tolist())


def _shape(t: torch.Tensor) -> str:
    return f"a {tuple(t.shape)} tensor"


def _finish(name: str, what: str, cases: int, hidden: bool) -> None:
    passed = f"all {cases} cases passed" if cases != 1 else "its case passed"
    print(f"✓ {name}: {what}: {passed}" + (" (hidden cases)" if hidden else ""))


# --- the checks (imported last: they use the references and drivers above; the case tables re-exported for the
# tests and the instructor's guide) -----------------------------------------------------------------------------
from .boxes import (AP_CASES, BATCHED_CASES, HIDDEN_AP_CASES, HIDDEN_BATCHED_CASES,  # noqa: E402, F401
                    HIDDEN_IOU_CASES, HIDDEN_NMS_CASES, IOU_CASES, NMS_CASES, check_average_precision,
                    check_batched_nms, check_box_iou, check_nms)
from .roi import (HIDDEN_POOL_CASES, HIDDEN_ALIGN_CASES, POOL_CASES, ALIGN_CASES,  # noqa: E402, F401
                  check_roi_align, check_roi_pool)
from .segmentation import (DICE_CASES, HIDDEN_DICE_CASES, HIDDEN_SOFT_CASES, HIDDEN_TRAIN_CASES,  # noqa: E402, F401
                           HIDDEN_UNET_CASES, SOFT_CASES, TRAIN_CASES, UNET_CASES, check_dice_score,
                           check_soft_dice_loss, check_train_unet, check_unet)

_TABLES = {"check_box_iou": (IOU_CASES, HIDDEN_IOU_CASES), "check_nms": (NMS_CASES, HIDDEN_NMS_CASES),
           "check_batched_nms": (BATCHED_CASES, HIDDEN_BATCHED_CASES),
           "check_roi_pool": (POOL_CASES, HIDDEN_POOL_CASES), "check_roi_align": (ALIGN_CASES, HIDDEN_ALIGN_CASES),
           "check_average_precision": (AP_CASES, HIDDEN_AP_CASES),
           "check_dice_score": (DICE_CASES, HIDDEN_DICE_CASES), "check_soft_dice_loss": (SOFT_CASES, HIDDEN_SOFT_CASES),
           "check_unet": (UNET_CASES, HIDDEN_UNET_CASES), "check_train_unet": (TRAIN_CASES, HIDDEN_TRAIN_CASES)}


def hidden_rules() -> dict[str, Sequence[str]]:
    """The rules each check's hidden cases exercise (for the instructor's guide and the tests)."""
    return {name: [rule for rule, _ in hidden] for name, (_, hidden) in _TABLES.items()}


def visible_rules() -> dict[str, Sequence[str]]:
    """The rules each check's visible cases exercise."""
    return {name: [rule for rule, _ in visible] for name, (visible, _) in _TABLES.items()}
