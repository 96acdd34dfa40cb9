"""a6's box checks: pairwise IoU (vectorized), NMS, per-class NMS and average precision for one class."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import CheckFailure, operations
from .. import case_label as _where
from .. import type_name as _kind
from . import (IOU_MARGIN, Case, _call, _compare, _declare, _expect_value_error, _finish, _generator, _name, _seed,
               _shape, _show, reference_average_precision, reference_batched_nms, reference_box_iou, reference_nms)


def _t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def random_boxes(g: torch.Generator, n: int, extent: float = 40.0, smallest: float = 2.0,
                 largest: float = 16.0) -> torch.Tensor:
    """(n, 4) boxes (x1, y1, x2, y2) with continuous corners in [0, extent + largest) and sides in [smallest,
    largest)."""
    corner = torch.rand(n, 2, generator=g) * extent
    size = smallest + torch.rand(n, 2, generator=g) * (largest - smallest)
    return torch.cat([corner, corner + size], dim=1)


def _disjoint(g: torch.Generator, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """boxes1 left of and above x = y = 20, boxes2 right of and below it (disjoint in both directions), plus pairs
    disjoint in one direction only (a column of boxes2 under boxes1)."""
    b1 = random_boxes(g, n, extent=8.0, largest=10.0)                          # inside [0, 18)
    b2 = random_boxes(g, m, extent=8.0, largest=10.0) + 22.0                   # inside [22, 40)
    side = b1[: max(1, n // 2)].clone()
    side[:, 1::2] += 22.0                                                      # same columns, rows below
    return b1, torch.cat([b2, side])


def _iou_inputs(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if "boxes1" in setting:
        return _t(setting["boxes1"]), _t(setting["boxes2"])
    g = _generator(seed)
    n, m = setting["n"], setting["m"]
    kind = setting["kind"]
    if kind == "disjoint":
        return _disjoint(g, n, m)
    if kind == "touching":
        b1 = random_boxes(g, n)
        b2 = b1.clone()
        width = b1[:, 2] - b1[:, 0]
        b2[:, 0::2] += width[:, None]                                         # shares b1's right edge
        return b1, b2
    b1, b2 = random_boxes(g, n), random_boxes(g, m)
    if kind == "zero-area":
        b1[::2, 2] = b1[::2, 0]                                               # no width
        b2[::3, 3] = b2[::3, 1]                                               # no height
        b2[1::3] = b1[(torch.arange(1, m, 3) % n), :].clone()
        b2[1::3, 2] = b2[1::3, 0]
    return b1, b2


# --- 1. box_iou --------------------------------------------------------------------------------------------------
IOU_CASES: list[Case] = [
    ("overlapping boxes: intersection area over union area, continuous coordinates (width = x2 - x1)",
     {"boxes1": [[0, 0, 4, 4]], "boxes2": [[2, 2, 6, 6], [0, 0, 4, 4], [1, 0, 3, 4], [0.5, 1.5, 2.5, 3.0]]}),
    ("pairwise: (N, 4) and (M, 4) give (N, M), every box of boxes1 with every box of boxes2",
     {"n": 5, "m": 7, "kind": "random"}),
    ("disjoint boxes: the intersection's width and height are clamped at 0 (IoU 0), in x, in y and in both",
     {"boxes1": [[0, 0, 2, 2], [10, 10, 12, 13]], "boxes2": [[5, 5, 8, 9], [3, 0, 5, 2], [0, 4, 2, 6],
                                                              [20, 1, 22, 4]]}),
    ("disjoint boxes: the intersection's width and height are clamped at 0 (IoU 0), in x, in y and in both",
     {"n": 6, "m": 5, "kind": "disjoint"}),
    ("touching boxes (a shared edge or corner): IoU 0",
     {"boxes1": [[0, 0, 2, 2]], "boxes2": [[2, 0, 4, 2], [0, 2, 2, 4], [2, 2, 3, 3]]}),
    ("zero-area boxes: IoU 0, never nan (also when the union is 0)",
     {"boxes1": [[1, 1, 1, 3], [0, 0, 4, 4], [2, 2, 2, 2]], "boxes2": [[1, 1, 1, 3], [0, 0, 4, 4], [2, 2, 2, 2],
                                                                    [0, 1, 4, 1]]}),
    ("empty inputs: an (0, M) or (N, 0) tensor", {"boxes1": [], "boxes2": [[0, 0, 1, 1], [2, 2, 3, 3]]}),
    ("empty inputs: an (0, M) or (N, 0) tensor", {"boxes1": [[0, 0, 1, 1]], "boxes2": []}),
]
IOU_ERRORS: list[Case] = [
    ("ValueError when an input is not (K, 4)", {"shape1": (3, 5)}),
    ("ValueError when an input is not (K, 4)", {"shape2": (4,)}),
    ("ValueError when a box has x2 < x1 or y2 < y1", {"bad1": "x"}),
    ("ValueError when a box has x2 < x1 or y2 < y1", {"bad2": "y"}),
]
IOU_HINT = (" (intersection: clamp its width and its height at 0 before multiplying them; union = area1 + area2 - "
            "intersection; the IoU is 0 where the union is 0)")
VECTORIZED_RULE = "vectorized: no Python loop over boxes (the same number of operations on small and large inputs)"
IOU_SIZES = [(3, 4), (12, 9), (40, 70)]
HIDDEN_IOU_CASES: list[Case] = [
    ("pairwise: (N, 4) and (M, 4) give (N, M), every box of boxes1 with every box of boxes2",
     {"n": 9, "m": 4, "kind": "random"}),
    ("pairwise: (N, 4) and (M, 4) give (N, M), every box of boxes1 with every box of boxes2",
     {"n": 1, "m": 13, "kind": "random"}),
    ("disjoint boxes: the intersection's width and height are clamped at 0 (IoU 0), in x, in y and in both",
     {"n": 7, "m": 3, "kind": "disjoint"}),
    ("touching boxes (a shared edge or corner): IoU 0", {"n": 5, "m": 5, "kind": "touching"}),
    ("zero-area boxes: IoU 0, never nan (also when the union is 0)", {"n": 6, "m": 8, "kind": "zero-area"}),
    ("empty inputs: an (0, M) or (N, 0) tensor", {"boxes1": [], "boxes2": [[1, 2, 3, 5]] * 3}),
]
_HIDDEN_VECTORIZED: list[Case] = [(VECTORIZED_RULE, {"sizes": [(2, 5), (25, 31)]})]
_VECTORIZED: list[Case] = [(VECTORIZED_RULE, {"sizes": IOU_SIZES})]
HIDDEN_IOU_CASES += IOU_ERRORS + _HIDDEN_VECTORIZED     # (the error cases draw other boxes from the secret)
IOU_CASES += IOU_ERRORS + _VECTORIZED


def _bad_iou_inputs(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    b1, b2 = random_boxes(g, 3), random_boxes(g, 4)
    if "shape1" in setting:
        b1 = torch.rand(setting["shape1"], generator=g) * 10
    if "shape2" in setting:
        b2 = torch.rand(setting["shape2"], generator=g) * 10
    if setting.get("bad1") == "x":
        b1[1, 2] = b1[1, 0] - 1.0
    if setting.get("bad2") == "y":
        b2[2, 3] = b2[2, 1] - 0.5
    return b1, b2


@_declare()
def check_box_iou(box_iou: Callable, hidden: bool = False) -> None:
    """box_iou(boxes1, boxes2): (N, M) IoU of (N, 4) and (M, 4) boxes (x1, y1, x2, y2); disjoint and touching boxes
    and zero-area boxes 0; empty inputs (0, M) / (N, 0); ValueError for a shape other than (K, 4) or a box with
    x2 < x1 or y2 < y1; vectorized (the same number of operators on small and large inputs)."""
    name = _name(box_iou, "box_iou")
    cases = HIDDEN_IOU_CASES if hidden else IOU_CASES
    for index, (rule, setting) in enumerate(cases):
        seed = _seed(hidden, "check_box_iou", index)
        if "sizes" in setting:
            _vectorized(box_iou, name, setting["sizes"], seed, rule, hidden)
            continue
        if any(key in setting for key in ("shape1", "shape2", "bad1", "bad2")):
            b1, b2 = _bad_iou_inputs(setting, seed)
            where = _where(name, f"{name}(boxes1, boxes2) with boxes1 = {_show(b1)}, boxes2 = {_show(b2)}",
                           rule, hidden)
            _expect_value_error(box_iou, (b1, b2), {}, where, hidden)
            continue
        b1, b2 = _iou_inputs(setting, seed)
        where = _where(name, f"{name}(boxes1, boxes2) with boxes1 = {_show(b1)}, boxes2 = {_show(b2)}", rule,
                       hidden)
        got = _call(box_iou, where, hidden, b1.clone(), b2.clone())
        _compare(got, reference_box_iou(b1, b2), where, hidden, IOU_HINT)
    _finish(name, "pairwise IoU", len(cases), hidden)


def _vectorized(box_iou: Callable, name: str, sizes: list, seed: int, rule: str, hidden: bool) -> None:
    counts = []
    g = _generator(seed)
    for n, m in sizes:
        b1, b2 = random_boxes(g, n), random_boxes(g, m)
        where = _where(name, f"{name}(boxes1, boxes2) with boxes1 {_shape(b1)}, boxes2 {_shape(b2)}", rule, hidden)
        try:
            got, ops = operations(box_iou, b1.clone(), b2.clone())
        except NotImplementedError:
            raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
        except Exception as err:
            raise CheckFailure(f"{where} raised {_kind(err, hidden)}" + ("" if hidden else f": {err}")) from None
        _compare(got, reference_box_iou(b1, b2), where, hidden)
        counts.append(ops)
    if len(set(counts)) > 1:
        if hidden:
            raise CheckFailure(f"{name} is not vectorized, on a hidden case: the number of PyTorch operations it "
                               f"dispatched grew with the number of boxes, so there is a Python loop over boxes.")
        raise CheckFailure(f"{name} is not vectorized: it dispatched {counts} PyTorch operations on inputs of "
                           f"{sizes} boxes. A vectorized version (broadcasting (N, 1) against (1, M)) does the same "
                           f"work whatever the sizes; this grows with them, so there is a Python loop over boxes.")


# --- 2. and 3. nms and batched_nms --------------------------------------------------------------------------------
def _far_from_threshold(boxes: torch.Tensor, threshold: float) -> bool:
    iou = reference_box_iou(boxes, boxes)
    return bool(((iou - threshold).abs() >= IOU_MARGIN).all())


def _nms_inputs(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """boxes, scores and labels of a case: explicit, or random clusters (boxes jittered around a few centres, so that
    many overlap) with every IoU at least IOU_MARGIN from the threshold."""
    if "boxes" in setting:
        boxes = _t(setting["boxes"])
        labels = torch.tensor(setting.get("labels", [0] * boxes.shape[0]), dtype=torch.int64)
        return boxes, torch.tensor(setting["scores"], dtype=torch.float32).reshape(-1), labels
    g = _generator(seed)
    if setting.get("exact"):                      # pairs with IoU exactly the threshold (1 / an integer): exact sums
        ratio = round(1 / setting["threshold"])
        pairs = []
        for i in range(setting["n"] // 2):
            x, y, w, h = (int(v) for v in torch.randint(1, 5, (4,), generator=g))
            x += 30 * i
            pairs += [[x, y, x + ratio * w, y + h], [x, y, x + w, y + h]]
        boxes = _t(pairs)
        order = torch.randperm(boxes.shape[0], generator=g)
        return boxes[order], torch.rand(boxes.shape[0], generator=g), torch.zeros(boxes.shape[0], dtype=torch.int64)
    for _ in range(1000):
        centres = random_boxes(g, setting["clusters"], extent=30.0, smallest=6.0, largest=14.0)
        pick = torch.randint(setting["clusters"], (setting["n"],), generator=g)
        boxes = centres[pick] + torch.randn(setting["n"], 4, generator=g) * setting.get("jitter", 1.5)
        boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:] - 1.0), boxes[:, 2:]], dim=1)
        if _far_from_threshold(boxes, setting["threshold"]):
            break
    if setting.get("ties"):
        scores = torch.randint(0, 3, (setting["n"],), generator=g).float() / 4 + 0.25
    else:
        scores = torch.rand(setting["n"], generator=g)
    labels = torch.randint(setting.get("classes", 1), (setting["n"],), generator=g) * setting.get("label_step", 1)
    return boxes, scores, labels


def _expect_indices(got: Any, expected: torch.Tensor, where: str, hidden: bool, hint: str) -> None:
    if not isinstance(got, torch.Tensor):
        raise CheckFailure(f"{where} should return an int64 tensor of indices, got {_kind(got, hidden)}")
    if got.dtype != torch.int64:
        raise CheckFailure(f"{where} should return an int64 (long) tensor of indices, got {got.dtype}")
    if got.ndim != 1:
        raise CheckFailure(f"{where} should return a 1-D tensor of indices" +
                           ("" if hidden else f", got shape {tuple(got.shape)}"))
    if not torch.equal(got.cpu(), expected):
        if hidden:
            raise CheckFailure(f"{where}: the kept indices or their order are wrong{hint}. The visible cases test the "
                               f"same rule on other inputs.")
        raise CheckFailure(f"{where}: expected the indices {expected.tolist()}, got {got.tolist()}{hint}")


NMS_HINT = (" (greedy: take the highest-scoring remaining box, drop every remaining box whose IoU with it is "
            "strictly greater than iou_threshold, repeat; kept indices in decreasing order of score)")
NMS_CASES: list[Case] = [
    ("greedy: a box suppressed by a kept box suppresses nothing itself (A drops B, so B cannot drop C)",
     {"boxes": [[0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10], [30, 30, 40, 40]], "scores": [0.9, 0.8, 0.7, 0.6],
      "threshold": 0.5}),
    ("the kept indices in decreasing order of score (not in index order)",
     {"boxes": [[0, 0, 4, 4], [10, 10, 14, 14], [20, 0, 24, 4], [0.5, 0.5, 4.5, 4.5]], "scores": [0.3, 0.9, 0.6, 0.5],
      "threshold": 0.5}),
    ("a box with IoU exactly iou_threshold is kept: only IoU strictly greater suppresses",
     {"boxes": [[0, 0, 2, 1], [0, 0, 1, 1], [1, 0, 2, 1]], "scores": [0.9, 0.8, 0.7], "threshold": 0.5}),
    ("touching boxes (IoU 0) are never suppressed, even at iou_threshold 0",
     {"boxes": [[0, 0, 2, 2], [2, 0, 4, 2], [1, 1, 3, 3]], "scores": [0.9, 0.8, 0.7], "threshold": 0.0}),
    ("equal scores: the lower index first", {"boxes": [[0, 0, 4, 4], [0, 0, 4, 4.2], [10, 0, 14, 4], [10, 0, 14, 4]],
                                             "scores": [0.5, 0.5, 0.7, 0.7], "threshold": 0.5}),
    ("random overlapping boxes, iou_threshold 0.5", {"n": 30, "clusters": 6, "threshold": 0.5}),
    ("random overlapping boxes, another iou_threshold (0.3, 0.7)", {"n": 25, "clusters": 5, "threshold": 0.3}),
    ("random overlapping boxes, another iou_threshold (0.3, 0.7)", {"n": 25, "clusters": 4, "threshold": 0.7}),
    ("equal scores: the lower index first", {"n": 20, "clusters": 4, "threshold": 0.4, "ties": True}),
    ("no boxes: an empty int64 tensor", {"boxes": [], "scores": [], "threshold": 0.5}),
]
HIDDEN_NMS_CASES: list[Case] = [
    ("random overlapping boxes, iou_threshold 0.5", {"n": 40, "clusters": 7, "threshold": 0.5}),
    ("a box with IoU exactly iou_threshold is kept: only IoU strictly greater suppresses",
     {"n": 8, "exact": True, "threshold": 0.25}),
    ("random overlapping boxes, another iou_threshold (0.3, 0.7)", {"n": 22, "clusters": 3, "threshold": 0.65}),
    ("equal scores: the lower index first", {"n": 24, "clusters": 5, "threshold": 0.45, "ties": True}),
    ("no boxes: an empty int64 tensor", {"boxes": [], "scores": [], "threshold": 0.3}),
]


@_declare()
def check_nms(nms: Callable, hidden: bool = False) -> None:
    """nms(boxes, scores, iou_threshold): the int64 indices of the kept boxes in decreasing order of score; greedy;
    IoU strictly greater than the threshold suppresses; equal scores: the lower index first; no boxes: empty."""
    name = _name(nms, "nms")
    cases = HIDDEN_NMS_CASES if hidden else NMS_CASES
    for index, (rule, setting) in enumerate(cases):
        boxes, scores, _ = _nms_inputs(setting, _seed(hidden, "check_nms", index))
        threshold = setting["threshold"]
        where = _where(name, f"{name}(boxes, scores, {threshold}) with boxes = {_show(boxes)}, scores = "
                             f"{_show(scores)}", rule, hidden)
        got = _call(nms, where, hidden, boxes.clone(), scores.clone(), threshold)
        _expect_indices(got, reference_nms(boxes, scores, threshold), where, hidden, NMS_HINT)
    _finish(name, "greedy non-maximum suppression", len(cases), hidden)


BATCHED_HINT = (" (NMS within each label: boxes of different labels never suppress each other; all kept indices in "
                "decreasing order of score, equal scores the lower index first)")
BATCHED_CASES: list[Case] = [
    ("boxes of different labels never suppress each other",
     {"boxes": [[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]], "scores": [0.9, 0.8, 0.7, 0.6],
      "labels": [0, 1, 0, 1], "threshold": 0.5}),
    ("the kept indices of all labels together in decreasing order of score (not grouped by label)",
     {"boxes": [[0, 0, 4, 4], [10, 10, 14, 14], [20, 0, 24, 4], [0, 10, 4, 14]], "scores": [0.3, 0.9, 0.6, 0.5],
      "labels": [1, 0, 1, 0], "threshold": 0.5}),
    ("any integer labels (not only 0 .. C-1)", {"n": 24, "clusters": 4, "threshold": 0.5, "classes": 3,
                                                "label_step": 7}),
    ("negative coordinates: boxes of different labels still never suppress each other",
     {"boxes": [[-10, -10, 2, 2], [-10, -10, -5, -5]], "scores": [0.9, 0.8], "labels": [0, 1], "threshold": 0.1}),
    ("per-label greedy NMS on random overlapping boxes", {"n": 36, "clusters": 5, "threshold": 0.4, "classes": 3}),
    ("equal scores: the lower index first", {"n": 20, "clusters": 3, "threshold": 0.5, "classes": 2, "ties": True}),
    ("no boxes: an empty int64 tensor", {"boxes": [], "scores": [], "labels": [], "threshold": 0.5}),
]
HIDDEN_BATCHED_CASES: list[Case] = [
    ("per-label greedy NMS on random overlapping boxes", {"n": 40, "clusters": 6, "threshold": 0.55, "classes": 4}),
    ("any integer labels (not only 0 .. C-1)", {"n": 18, "clusters": 3, "threshold": 0.35, "classes": 2,
                                                "label_step": 5}),
    ("equal scores: the lower index first", {"n": 22, "clusters": 4, "threshold": 0.5, "classes": 3, "ties": True}),
    ("negative coordinates: boxes of different labels still never suppress each other",
     {"boxes": [[-24, -18, 1, 3], [-22, -16, -12, -8]], "scores": [0.7, 0.95], "labels": [3, 4], "threshold": 0.05}),
]


@_declare()
def check_batched_nms(batched_nms: Callable, hidden: bool = False) -> None:
    """batched_nms(boxes, scores, labels, iou_threshold): NMS within each label, the kept int64 indices of all labels
    in decreasing order of score (equal scores: the lower index first)."""
    name = _name(batched_nms, "batched_nms")
    cases = HIDDEN_BATCHED_CASES if hidden else BATCHED_CASES
    for index, (rule, setting) in enumerate(cases):
        boxes, scores, labels = _nms_inputs(setting, _seed(hidden, "check_batched_nms", index))
        threshold = setting["threshold"]
        where = _where(name, f"{name}(boxes, scores, labels, {threshold}) with boxes = {_show(boxes)}, scores = "
                             f"{_show(scores)}, labels = {_show(labels)}", rule, hidden)
        got = _call(batched_nms, where, hidden, boxes.clone(), scores.clone(), labels.clone(), threshold)
        _expect_indices(got, reference_batched_nms(boxes, scores, labels, threshold), where, hidden, BATCHED_HINT)
    _finish(name, "non-maximum suppression per label", len(cases), hidden)


# --- 6. average precision -----------------------------------------------------------------------------------------
def _ap_inputs(setting: dict, seed: int) -> tuple[list, list, float]:
    """(detections, ground_truth, iou_threshold): explicit, or random images: ground-truth boxes, detections jittered
    around them (some twice: duplicates), false alarms elsewhere, every detection's IoUs at least IOU_MARGIN from the
    threshold."""
    threshold = setting.get("threshold", 0.5)
    if "gt" in setting:
        detections = [(_t(d), torch.tensor(s, dtype=torch.float32).reshape(-1)) for d, s in setting["dets"]]
        return detections, [_t(g) for g in setting["gt"]], threshold
    g = _generator(seed)
    if setting.get("pattern"):
        return _ap_pattern(setting, g) + (threshold,)
    detections, ground_truth = [], []
    for _ in range(setting["images"]):
        for _ in range(1000):
            gt = random_boxes(g, int(torch.randint(0, setting["objects"] + 1, (1,), generator=g)), extent=50.0,
                              smallest=6.0, largest=16.0)
            copies = gt.repeat(2, 1)[: int(gt.shape[0] * 1.5)]
            hits = copies + torch.randn(copies.shape, generator=g) * setting.get("jitter", 1.5)
            alarms = random_boxes(g, int(torch.randint(0, 3, (1,), generator=g)), extent=50.0)
            boxes = torch.cat([hits, alarms])
            boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:] - 1.0), boxes[:, 2:]], dim=1)
            if gt.shape[0] == 0 or bool(((reference_box_iou(boxes, gt) - threshold).abs() >= IOU_MARGIN).all()):
                break
        order = torch.randperm(boxes.shape[0], generator=g)
        detections.append((boxes[order], torch.rand(boxes.shape[0], generator=g)))
        ground_truth.append(gt)
    return detections, ground_truth, threshold


def _ap_pattern(setting: dict, g: torch.Generator) -> tuple[list, list]:
    """Images built around one rule. "second": two overlapping objects A, B (IoU 3/7); a detection equal to A, then one
    whose best box is A (IoU 17/23) and whose second best is B (IoU 3/5): a true positive on B. "exact": a detection
    twice as wide as its object (integer corners: IoU exactly 1/2). A false alarm far away in each image."""
    detections, ground_truth = [], []
    for _ in range(setting["images"]):
        x, y = (float(v) for v in torch.randint(0, 40, (2,), generator=g))
        s = float(torch.randint(1, 4, (1,), generator=g))
        if setting["pattern"] == "second":
            gt = _t([[x, y, x + 10 * s, y + 10 * s], [x + 4 * s, y, x + 14 * s, y + 10 * s]])
            boxes = _t([[x, y, x + 10 * s, y + 10 * s], [x + 1.5 * s, y, x + 11.5 * s, y + 10 * s], [90, 90, 95, 95]])
        else:
            gt = _t([[x, y, x + s, y + 2 * s]])
            boxes = _t([[x, y, x + 2 * s, y + 2 * s], [90, 90, 95, 95]])
        detections.append((boxes, torch.rand(boxes.shape[0], generator=g)))
        ground_truth.append(gt)
    return detections, ground_truth


AP_HINT = (" (rank all detections of all images by decreasing score; a detection is a true positive when the best "
           "unmatched ground-truth box of its image has IoU >= iou_threshold; AP = sum over k of (r_k - r_(k-1)) times "
           "the maximum precision at rank k or later)")
_BOX = [0, 0, 10, 10]
AP_CASES: list[Case] = [
    ("a worked example: ranking, greedy matching and the all-point interpolated area",
     {"dets": [([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [41, 40, 51, 50]], [0.9, 0.8, 0.7, 0.6])],
      "gt": [[[0, 0, 10, 10], [40, 40, 50, 50], [70, 70, 80, 80]]]}),
    ("precision interpolated: the maximum precision at this recall or any higher one",
     {"dets": [([[30, 30, 40, 40], [0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.8, 0.7])],
      "gt": [[[0, 0, 10, 10], [20, 0, 30, 10]]]}),
    ("ranked over the whole dataset, not image by image",
     {"dets": [([[50, 50, 60, 60], [0, 0, 10, 10]], [0.6, 0.5]), ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8])],
      "gt": [[_BOX], [_BOX, [20, 20, 30, 30]]]}),
    ("a duplicate of an already matched object is a false positive",
     {"dets": [([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.7])],
      "gt": [[[0, 0, 10, 10], [20, 20, 30, 30]]]}),
    ("the best UNMATCHED ground-truth box of the detection's image: a second object it overlaps enough still counts",
     {"dets": [([[0, 0, 10, 10], [1.5, 0, 11.5, 10]], [0.9, 0.8])], "gt": [[[0, 0, 10, 10], [4, 0, 14, 10]]]}),
    ("IoU exactly iou_threshold counts as a match (>=)",
     {"dets": [([[0, 0, 2, 1], [10, 10, 11, 11]], [0.9, 0.8])], "gt": [[[0, 0, 1, 1], [10, 10, 11, 11]]]}),
    ("another iou_threshold (0.75): a detection with IoU 2/3 is a false positive",
     {"dets": [([[0, 0, 10, 10], [22, 0, 32, 10], [40, 0, 50, 10]], [0.9, 0.8, 0.7])],
      "gt": [[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]], "threshold": 0.75}),
    ("recall over all ground-truth boxes: objects never detected lower it",
     {"dets": [([[0, 0, 10, 10]], [0.9]), ([], [])], "gt": [[_BOX, [20, 20, 30, 30]], [_BOX]]}),
    ("a detection matches only the ground truth of its own image",
     {"dets": [([[0, 0, 10, 10]], [0.9]), ([[40, 40, 50, 50]], [0.8])], "gt": [[[40, 40, 50, 50]], [_BOX]]}),
    ("equal scores: in the order given, image by image, then by index (a stable sort)",
     {"dets": [([[50, 50, 60, 60], [0, 0, 10, 10]], [0.5, 0.5]), ([[0, 0, 10, 10]], [0.5])],
      "gt": [[_BOX], [_BOX]]}),
    ("images without detections or without ground truth",
     {"dets": [([], []), ([[0, 0, 10, 10], [30, 30, 40, 40]], [0.8, 0.9]), ([[5, 5, 9, 9]], [0.7])],
      "gt": [[_BOX], [], [_BOX, [30, 30, 40, 40]]]}),
    ("random images: jittered detections, duplicates and false alarms", {"images": 5, "objects": 4}),
    ("no ground-truth box at all: nan", {"dets": [([[0, 0, 10, 10]], [0.9]), ([], [])], "gt": [[], []]}),
    ("ground truth but no detections: 0.0", {"dets": [([], []), ([], [])], "gt": [[_BOX], []]}),
]
HIDDEN_AP_CASES: list[Case] = [
    ("random images: jittered detections, duplicates and false alarms", {"images": 6, "objects": 4}),
    ("random images: jittered detections, duplicates and false alarms", {"images": 4, "objects": 6, "jitter": 2.5}),
    ("another iou_threshold (0.75): a detection with IoU 2/3 is a false positive",
     {"images": 5, "objects": 3, "threshold": 0.75}),
    ("the best UNMATCHED ground-truth box of the detection's image: a second object it overlaps enough still counts",
     {"images": 3, "pattern": "second"}),
    ("IoU exactly iou_threshold counts as a match (>=)", {"images": 3, "pattern": "exact"}),
    ("no ground-truth box at all: nan", {"dets": [([[3, 3, 9, 12]], [0.4])] * 3, "gt": [[], [], []]}),
    ("ground truth but no detections: 0.0", {"dets": [([], [])], "gt": [[[2, 2, 8, 9], [10, 1, 15, 4]]]}),
]


def _describe_ap(detections: list, ground_truth: list, threshold: float) -> str:
    dets = [(_show(b), _show(s)) for b, s in detections]
    return f"(detections = {dets}, ground_truth = {[_show(g) for g in ground_truth]}, iou_threshold={threshold})"


@_declare()
def check_average_precision(average_precision: Callable, hidden: bool = False) -> None:
    """average_precision(detections, ground_truth, iou_threshold): one class's AP over a dataset (see the
    reference): a Python float, nan without ground truth, 0.0 without detections."""
    name = _name(average_precision, "average_precision")
    cases = HIDDEN_AP_CASES if hidden else AP_CASES
    for index, (rule, setting) in enumerate(cases):
        detections, ground_truth, threshold = _ap_inputs(setting, _seed(hidden, "check_average_precision", index))
        where = _where(name, name + _describe_ap(detections, ground_truth, threshold), rule, hidden)
        copies = ([(b.clone(), s.clone()) for b, s in detections], [g.clone() for g in ground_truth])
        got = _call(average_precision, where, hidden, *copies, iou_threshold=threshold)
        expected = reference_average_precision(detections, ground_truth, threshold)
        if isinstance(got, bool) or not isinstance(got, float):
            raise CheckFailure(f"{where} should return a Python float (e.g. float(ap) or ap.item()), got "
                               f"{_kind(got, hidden)}")
        if math.isnan(expected):
            if not math.isnan(got):
                raise CheckFailure(f"{where}: with no ground-truth box at all AP is undefined: return float('nan')"
                                   + ("" if hidden else f", got {got!r}"))
            continue
        if not abs(got - expected) <= 1e-6:
            if hidden:
                raise CheckFailure(f"{where}: the AP is wrong{AP_HINT}. The visible cases test the same rule on "
                                   f"other inputs.")
            raise CheckFailure(f"{where}: expected AP {expected:.6f}, got {got!r}{AP_HINT}")
    _finish(name, "average precision", len(cases), hidden)
