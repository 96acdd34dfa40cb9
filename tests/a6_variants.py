"""a6 student variants, shared by tests/test_a6_checks.py (fast tier) and tests/heavy/test_grading_a6.py.

The solution is the notebook's (solutions/a6_detection_segmentation/a6_detection_segmentation.ipynb) when it exists,
else the reference answers below (the first correct variant: written independently of the notebook's), run in a
namespace of their own like a notebook's cells. WRONG maps a variant's name to the replacements and exactly the
graded cells it must fail; CORRECT lists differently written right answers (at least two per function, every point);
BACK_DOORS lists answers that reach torchvision.ops (by attribute, by a name imported earlier, by an alias, through
torch.ops.torchvision, through its pure-Python _roi_align) or the lecture's detection widget: each loses exactly its
cells' points, told that the reference is not available.

A variant runs the cells whose check calls name a replaced function. The solution's batched_nms may call its nms,
nms and average_precision its box_iou, train_unet its soft_dice_loss: a wrong helper may cost those cells too in a real
submission (tests/heavy/test_grading_a6.py shows it); the variants here leave those cells out.
"""

from __future__ import annotations

import importlib
import math
import types
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells

ASSIGNMENT = "a6_detection_segmentation"
# the contract's test cells: grade_id -> (check, functions, points)
CONTRACT_CELLS = {
    "test_box_iou": ("check_box_iou", ("box_iou",), 8),
    "test_nms": ("check_nms", ("nms",), 8),
    "test_batched_nms": ("check_batched_nms", ("batched_nms",), 6),
    "test_roi_pool": ("check_roi_pool", ("roi_pool",), 10),
    "test_roi_align": ("check_roi_align", ("roi_align",), 12),
    "test_average_precision": ("check_average_precision", ("average_precision",), 10),
    "test_dice_score": ("check_dice_score", ("dice_score",), 4),
    "test_soft_dice_loss": ("check_soft_dice_loss", ("soft_dice_loss",), 6),
    "test_unet": ("check_unet", ("UNet",), 8),
    "test_train_unet": ("check_train_unet", ("train_unet",), 8),
}
IOU, NMS, BATCHED, POOL, ALIGN = "test_box_iou", "test_nms", "test_batched_nms", "test_roi_pool", "test_roi_align"
AP, DICE, SOFT, UNET, TRAIN = ("test_average_precision", "test_dice_score", "test_soft_dice_loss", "test_unet",
                               "test_train_unet")

NOTEBOOK = vh.solution_notebook_or_none(ASSIGNMENT)
CELLS = graded_cells(NOTEBOOK) if NOTEBOOK is not None else vh.contract_cells(CONTRACT_CELLS)
ALL_CELLS = {cell.grade_id for cell in CELLS}


# --- the reference answers (the first correct variant) -------------------------------------------------
def _check_boxes(boxes):
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (K, 4), got {tuple(boxes.shape)}")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError("a box has x2 < x1 or y2 < y1")


def box_iou(boxes1, boxes2):
    _check_boxes(boxes1)
    _check_boxes(boxes2)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])          # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes, scores, iou_threshold):
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes, scores, labels, iou_threshold):
    keep = [torch.nonzero(labels == c).flatten()[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
            for c in labels.unique()]
    if not keep:
        return torch.empty(0, dtype=torch.int64)
    keep = torch.cat(keep).sort().values
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


def _round_half_away(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def roi_pool(features, rois, output_size, spatial_scale=1.0):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, C, H, W = features.shape
    out = torch.zeros(len(rois), C, ph, pw, dtype=features.dtype)
    for k, roi in enumerate(rois.tolist()):
        b = int(roi[0])
        x1, y1, x2, y2 = (_round_half_away(v * spatial_scale) for v in roi[1:])
        bin_w, bin_h = max(x2 - x1 + 1, 1) / pw, max(y2 - y1 + 1, 1) / ph
        for i in range(ph):
            h0 = min(max(math.floor(i * bin_h) + y1, 0), H)
            h1 = min(max(math.ceil((i + 1) * bin_h) + y1, 0), H)
            for j in range(pw):
                w0 = min(max(math.floor(j * bin_w) + x1, 0), W)
                w1 = min(max(math.ceil((j + 1) * bin_w) + x1, 0), W)
                if h1 > h0 and w1 > w0:
                    out[k, :, i, j] = features[b, :, h0:h1, w0:w1].amax(dim=(1, 2))
    return out


def _bilinear(fmap, y, x):
    """fmap (C, H, W) at the points y, x (P,): torchvision's rule, (C, P)."""
    H, W = fmap.shape[-2:]
    outside = (y < -1) | (y > H) | (x < -1) | (x > W)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.floor().long(), x.floor().long()
    y_edge, x_edge = y0 >= H - 1, x0 >= W - 1
    y0, x0 = torch.where(y_edge, H - 1, y0), torch.where(x_edge, W - 1, x0)
    y1, x1 = torch.where(y_edge, y0, y0 + 1), torch.where(x_edge, x0, x0 + 1)
    y, x = torch.where(y_edge, y0.to(y.dtype), y), torch.where(x_edge, x0.to(x.dtype), x)
    ly, lx = y - y0, x - x0
    value = ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
             + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])
    return torch.where(outside, torch.zeros_like(value), value)


def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = torch.zeros(len(rois), features.shape[1], ph, pw, dtype=features.dtype)
    offset = 0.5 if aligned else 0.0
    for k, roi in enumerate(rois):
        b = int(roi[0])
        x1, y1, x2, y2 = (roi[1:] * spatial_scale - offset).tolist()
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / pw, roi_h / ph
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)
        if gh * gw == 0:
            continue
        iy = torch.arange(ph)[:, None] * bin_h + (torch.arange(gh)[None, :] + 0.5) * bin_h / gh + y1   # (ph, gh)
        ix = torch.arange(pw)[:, None] * bin_w + (torch.arange(gw)[None, :] + 0.5) * bin_w / gw + x1   # (pw, gw)
        y = iy.reshape(ph, 1, gh, 1).expand(ph, pw, gh, gw).reshape(-1).to(features.dtype)
        x = ix.reshape(1, pw, 1, gw).expand(ph, pw, gh, gw).reshape(-1).to(features.dtype)
        values = _bilinear(features[b], y, x).reshape(-1, ph, pw, gh * gw)
        out[k] = values.sum(-1) / max(gh * gw, 1)
    return out


def average_precision(detections, ground_truth, iou_threshold=0.5):
    total = sum(len(g) for g in ground_truth)
    if total == 0:
        return float("nan")
    ranked = sorted(((float(s), i, j) for i, (_, scores) in enumerate(detections) for j, s in enumerate(scores)),
                    key=lambda t: -t[0])
    used = [torch.zeros(len(g), dtype=torch.bool) for g in ground_truth]
    tp = []
    for _, i, j in ranked:
        hit = False
        if len(ground_truth[i]):
            iou = box_iou(detections[i][0][j : j + 1], ground_truth[i])[0].masked_fill(used[i], -1.0)
            best = int(iou.argmax())
            if iou[best] >= iou_threshold:
                used[i][best], hit = True, True
        tp.append(hit)
    if not tp:
        return 0.0
    tps = torch.tensor(tp, dtype=torch.float64).cumsum(0)
    precision = tps / torch.arange(1, len(tp) + 1, dtype=torch.float64)
    recall = tps / total
    envelope = precision.flip(0).cummax(0).values.flip(0)
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * envelope).sum())


def dice_score(pred, target):
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    a, b = pred.bool().flatten(1), target.bool().flatten(1)
    inter, sizes = (a & b).sum(1).float(), (a.sum(1) + b.sum(1)).float()
    return torch.where(sizes == 0, torch.ones_like(sizes), 2 * inter / sizes.clamp(min=1))


def soft_dice_loss(logits, target, smooth=1.0):
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    return 1 - ((2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def _block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, in_channels, num_classes, depth=2, width=8):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        chans = [width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList([_block(in_channels, chans[0])] +
                                      [_block(chans[level - 1], chans[level]) for level in range(1, depth + 1)])
        self.upsamplers = nn.ModuleList([nn.ConvTranspose2d(chans[level + 1], chans[level], 2, stride=2)
                                         for level in range(depth - 1, -1, -1)])
        self.decoders = nn.ModuleList([_block(2 * chans[level], chans[level]) for level in range(depth - 1, -1, -1)])
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        if x.shape[2] % 2**self.depth or x.shape[3] % 2**self.depth:
            raise ValueError(f"H and W must be divisible by 2**depth = {2**self.depth}")
        skips = []
        for encoder in self.encoders[:-1]:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.encoders[-1](x)
        for up, decoder in zip(self.upsamplers, self.decoders, strict=True):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def train_unet(model, images, masks, epochs, lr=1e-2, batch_size=32):
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(images))
        batch_losses = []
        for start in range(0, len(images), batch_size):
            index = perm[start : start + batch_size]
            logits = model(images[index])
            loss = F.binary_cross_entropy_with_logits(logits, masks[index]) + soft_dice_loss(logits, masks[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
        losses.append(sum(batch_losses) / len(batch_losses))
    return losses


# what a variant builds on, under names no replacement takes
_box_iou, _nms, _roi_pool, _roi_align, _soft_dice_loss, _average_precision = (box_iou, nms, roi_pool, roi_align,
                                                                             soft_dice_loss, average_precision)
_UNet, _train_unet, _dice_score, _batched_nms = UNet, train_unet, dice_score, batched_nms
REFERENCE = {name: globals()[name] for name in ("box_iou", "nms", "batched_nms", "roi_pool", "roi_align",
                                                "average_precision", "dice_score", "soft_dice_loss", "train_unet")}


def solution_namespace() -> dict:
    """The solution's names in a fresh namespace: the notebook's code cells (fast mode) or the reference answers."""
    namespace: dict[str, Any] = {**globals(), "__name__": f"solution_{ASSIGNMENT}"}  # (the variants' helpers)
    if NOTEBOOK is not None:
        with vh.environment("COURSE_FAST", "1"):
            vh.exec_solution(ASSIGNMENT, NOTEBOOK, namespace, quiet_stdout=True, quiet_stderr=True)
    else:
        namespace.update({name: vh.rebound(fn, namespace) for name, fn in REFERENCE.items()})
        namespace["UNet"] = UNet
    return namespace


def run_cells(replacements: dict[str, Any], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None) -> dict[str, CellResult]:
    """The graded cells whose checks name a replaced function, run on the solution
    with the replacements (each rebound to the solution's namespace, as a redefinition in the notebook would be)."""
    namespace = solution_namespace()
    namespace.update({name: vh.rebound(value, namespace) if isinstance(value, types.FunctionType) else value
                      for name, value in replacements.items()})
    cells = cells if cells is not None else vh.cells_using(CELLS, {}, replacements)
    return vh.run_cells_in(ASSIGNMENT, namespace, cells, hidden, only_hidden)


def failing_cells(replacements: dict[str, Any], **options: Any) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's names are replaced."""
    return vh.failed(run_cells(replacements, **options))


# --- correct, written differently ----------------------------------------------------------------------
def box_iou_unbind(boxes1, boxes2):
    """Corners unbound, intersection with clamp_min on each side, nan_to_num for an empty union, float64 inside."""
    for b in (boxes1, boxes2):
        if b.dim() != 2 or b.size(-1) != 4:
            raise ValueError("expected (K, 4) boxes")
        if bool(((b[:, 2:] - b[:, :2]) < 0).any()):
            raise ValueError("x2 < x1 or y2 < y1")
    ax1, ay1, ax2, ay2 = boxes1.double().unbind(1)
    bx1, by1, bx2, by2 = boxes2.double().unbind(1)
    iw = (torch.minimum(ax2[:, None], bx2) - torch.maximum(ax1[:, None], bx1)).clamp_min(0)
    ih = (torch.minimum(ay2[:, None], by2) - torch.maximum(ay1[:, None], by1)).clamp_min(0)
    inter = iw * ih
    union = ((ax2 - ax1) * (ay2 - ay1))[:, None] + (bx2 - bx1) * (by2 - by1) - inter
    return (inter / union).nan_to_num(0.0).float()


def box_iou_relu(boxes1, boxes2):
    """relu of the overlap, areas by prod, division where the union is positive."""
    if boxes1.shape[-1:] != (4,) or boxes2.shape[-1:] != (4,) or boxes1.ndim != 2 or boxes2.ndim != 2:
        raise ValueError("boxes must be (K, 4)")
    sides1, sides2 = boxes1[:, 2:] - boxes1[:, :2], boxes2[:, 2:] - boxes2[:, :2]
    if (sides1 < 0).any() or (sides2 < 0).any():
        raise ValueError("x2 < x1 or y2 < y1")
    overlap = torch.relu(torch.min(boxes1[:, None, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, None, :2], boxes2[:, :2]))
    inter = overlap.prod(-1)
    union = sides1.prod(-1)[:, None] + sides2.prod(-1)[None] - inter
    iou = torch.zeros_like(inter)
    positive = union > 0
    iou[positive] = inter[positive] / union[positive]
    return iou


def nms_masks(boxes, scores, iou_threshold):
    """A shrinking tensor of candidates: keep the first, drop those overlapping it, until none is left."""
    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        if rest.numel() == 0:
            break
        overlap = _box_iou(boxes[best][None], boxes[rest])[0]
        order = rest[overlap <= iou_threshold]
    return torch.as_tensor(keep, dtype=torch.long)


def nms_python_sort(boxes, scores, iou_threshold):
    """Python's stable sort by (-score, index), a matrix of IoUs, a list of suppressed flags."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    iou = _box_iou(boxes, boxes).tolist()
    removed, keep = set(), []
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        removed.update(j for j in order if iou[i][j] > iou_threshold)
    return torch.tensor(keep, dtype=torch.int64).reshape(-1)


def batched_nms_offsets(boxes, scores, labels, iou_threshold):
    """The coordinate-offset trick: shift each label's boxes far apart, then one nms."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = labels.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def batched_nms_loop(boxes, scores, labels, iou_threshold):
    """Per label with the notebook's nms, then Python's stable sort of all kept (score, index) pairs."""
    kept = []
    for label in set(labels.tolist()):
        index = (labels == label).nonzero().flatten()
        kept += index[nms(boxes[index], scores[index], iou_threshold)].tolist()
    kept.sort(key=lambda i: (-float(scores[i]), i))
    return torch.tensor(kept, dtype=torch.int64).reshape(-1)


def roi_pool_masked(features, rois, output_size, spatial_scale=1.0):
    """All bins of a ROI at once: a (ph, H) and a (pw, W) membership mask, the max over masked values."""
    ph, pw = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    _, C, H, W = features.shape
    outs = []
    for roi in rois:
        b = int(roi[0])
        x1, y1, x2, y2 = torch.floor(roi[1:].double() * spatial_scale + 0.5).long().tolist()  # (>= 0 in the cases
        # that matter; floor(v + 0.5) is half away from zero for v >= 0)
        bw, bh = max(x2 - x1 + 1, 1) / pw, max(y2 - y1 + 1, 1) / ph
        rows = torch.arange(H)[None, :]
        cols = torch.arange(W)[None, :]
        i, j = torch.arange(ph)[:, None], torch.arange(pw)[:, None]
        in_rows = (rows >= torch.floor(i * bh) + y1) & (rows < torch.ceil((i + 1) * bh) + y1)        # (ph, H)
        in_cols = (cols >= torch.floor(j * bw) + x1) & (cols < torch.ceil((j + 1) * bw) + x1)        # (pw, W)
        mask = in_rows[:, None, :, None] & in_cols[None, :, None, :]                                 # (ph, pw, H, W)
        values = features[b][:, None, None].masked_fill(~mask, float("-inf"))                       # (C, ph, pw, H, W)
        best = values.amax(dim=(-2, -1))
        outs.append(torch.where(mask.any(-1).any(-1), best, torch.zeros_like(best)))
    return torch.stack(outs) if outs else features.new_zeros(0, C, ph, pw)


def roi_pool_bins(features, rois, output_size, spatial_scale=1.0):
    """Bin edges computed with numpy-free integer arithmetic via round() of Decimal-free helpers."""
    ph, pw = (output_size,) * 2 if isinstance(output_size, int) else tuple(output_size)
    res = features.new_zeros(rois.shape[0], features.shape[1], ph, pw)
    H, W = features.shape[-2:]

    def edges(start, length, bins, limit):
        size = length / bins
        return [(min(max(start + math.floor(k * size), 0), limit),
                 min(max(start + math.ceil((k + 1) * size), 0), limit)) for k in range(bins)]

    for k in range(rois.shape[0]):
        b, *corners = rois[k].tolist()
        x1, y1, x2, y2 = [int(math.copysign(math.floor(abs(c * spatial_scale) + 0.5), c)) for c in corners]
        for i, (h0, h1) in enumerate(edges(y1, max(y2 - y1 + 1, 1), ph, H)):
            for j, (w0, w1) in enumerate(edges(x1, max(x2 - x1 + 1, 1), pw, W)):
                if h0 < h1 and w0 < w1:
                    res[k, :, i, j] = features[int(b), :, h0:h1, w0:w1].reshape(features.shape[1], -1).max(1).values
    return res


def roi_align_points(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Point by point, in plain Python floats, as the formula reads."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = features.shape
    out = features.new_zeros(len(rois), C, ph, pw)
    shift = 0.5 if aligned else 0.0

    def sample(fmap, y, x):
        if y < -1.0 or y > H or x < -1.0 or x > W:
            return fmap.new_zeros(C)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= H - 1:
            yl = yh = H - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= W - 1:
            xl = xh = W - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        return ((1 - ly) * (1 - lx) * fmap[:, yl, xl] + (1 - ly) * lx * fmap[:, yl, xh]
                + ly * (1 - lx) * fmap[:, yh, xl] + ly * lx * fmap[:, yh, xh])

    for k in range(len(rois)):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = (float(v) * spatial_scale - shift for v in rois[k, 1:])
        w, h = x2 - x1, y2 - y1
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(h / ph)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(w / pw)
        for i in range(ph):
            for j in range(pw):
                total = features.new_zeros(C)
                for a in range(gy):
                    for c in range(gx):
                        y, x = y1 + (i + (a + 0.5) / gy) * h / ph, x1 + (j + (c + 0.5) / gx) * w / pw
                        total += sample(features[b], y, x)
                out[k, :, i, j] = total / max(gy * gx, 1)
    return out


def roi_align_grid_sample(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """F.grid_sample at the sampling points, with torchvision's border rule applied by hand (clamp, then zero
    beyond one pixel outside); align_corners=True maps pixel index i to -1 + 2i / (size - 1)."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = features.shape
    out = features.new_zeros(len(rois), C, ph, pw)
    for k in range(len(rois)):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = (rois[k, 1:] * spatial_scale - (0.5 if aligned else 0.0)).tolist()
        w, h = (x2 - x1, y2 - y1) if aligned else (max(x2 - x1, 1.0), max(y2 - y1, 1.0))
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(h / ph)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(w / pw)
        if gy * gx == 0:
            continue
        ys = y1 + (torch.arange(ph * gy, dtype=torch.float64) + 0.5) * h / (ph * gy)
        xs = x1 + (torch.arange(pw * gx, dtype=torch.float64) + 0.5) * w / (pw * gx)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        outside = (yy < -1) | (yy > H) | (xx < -1) | (xx > W)
        yy, xx = yy.clamp(0, H - 1), xx.clamp(0, W - 1)
        grid = torch.stack([2 * xx / max(W - 1, 1) - 1, 2 * yy / max(H - 1, 1) - 1], -1)[None].to(features.dtype)
        values = F.grid_sample(features[b : b + 1], grid, mode="bilinear", align_corners=True)[0]
        values = values.masked_fill(outside[None], 0.0)
        out[k] = values.reshape(C, ph, gy, pw, gx).mean(dim=(2, 4))
    return out


def average_precision_lists(detections, ground_truth, iou_threshold=0.5):
    """Plain Python lists; the interpolation as a backward running maximum."""
    n_gt = sum(int(g.shape[0]) for g in ground_truth)
    if n_gt == 0:
        return float("nan")
    items = []
    for image, (_, scores) in enumerate(detections):
        for index in range(len(scores)):
            items.append((-float(scores[index]), image, index))
    items.sort(key=lambda t: t[0])  # stable
    taken = [set() for _ in ground_truth]
    flags = []
    for _, image, index in items:
        gt = ground_truth[image]
        ious = _box_iou(detections[image][0][index].view(1, 4), gt).view(-1).tolist() if len(gt) else []
        candidates = [(iou, g) for g, iou in enumerate(ious) if g not in taken[image]]
        best = max(candidates, default=(0.0, -1), key=lambda t: t[0])
        if best[1] >= 0 and best[0] >= iou_threshold:
            taken[image].add(best[1])
            flags.append(1)
        else:
            flags.append(0)
    precisions, recalls, hits = [], [], 0
    for k, flag in enumerate(flags, start=1):
        hits += flag
        precisions.append(hits / k)
        recalls.append(hits / n_gt)
    for k in range(len(precisions) - 2, -1, -1):
        precisions[k] = max(precisions[k], precisions[k + 1])
    ap, last = 0.0, 0.0
    for p, r in zip(precisions, recalls, strict=True):
        ap, last = ap + (r - last) * p, r
    return ap


def average_precision_tensors(detections, ground_truth, iou_threshold=0.5):
    """Concatenated tensors, torch.sort(stable=True) for the ranking, the area summed where recall changes."""
    total = sum(len(g) for g in ground_truth)
    if total == 0:
        return float("nan")
    scores = torch.cat([s.reshape(-1).float() for _, s in detections]) if detections else torch.zeros(0)
    if scores.numel() == 0:
        return 0.0
    image_of = torch.cat([torch.full((len(s),), i) for i, (_, s) in enumerate(detections)])
    index_of = torch.cat([torch.arange(len(s)) for _, s in detections])
    order = torch.sort(scores, descending=True, stable=True).indices
    matched = {i: torch.zeros(len(g), dtype=torch.bool) for i, g in enumerate(ground_truth)}
    tp = torch.zeros(len(order), dtype=torch.float64)
    for rank, d in enumerate(order.tolist()):
        i, j = int(image_of[d]), int(index_of[d])
        if len(ground_truth[i]) == 0:
            continue
        iou = _box_iou(detections[i][0][j : j + 1], ground_truth[i])[0]
        iou = torch.where(matched[i], torch.full_like(iou, -1.0), iou)
        if iou.max() >= iou_threshold:
            matched[i][iou.argmax()] = True
            tp[rank] = 1.0
    cum = tp.cumsum(0)
    precision = cum / torch.arange(1, len(tp) + 1)
    recall = cum / total
    interpolated = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    previous = torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])
    return (((recall - previous) * interpolated).sum()).item()


def dice_score_float(pred, target):
    """Float sums over (H, W), nan_to_num for the both-empty images."""
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError("pred and target must have the same shape")
    p, t = (pred != 0).float(), (target != 0).float()
    dice = 2 * (p * t).sum(dim=(1, 2)) / (p.sum(dim=(1, 2)) + t.sum(dim=(1, 2)))
    return dice.nan_to_num(1.0)


def dice_score_logical(pred, target):
    if pred.size() != target.size():
        raise ValueError(f"shapes differ: {pred.size()} and {target.size()}")
    a, b = pred.reshape(len(pred), -1).to(torch.bool), target.reshape(len(target), -1).to(torch.bool)
    both = torch.logical_and(a, b).sum(-1).double()
    sizes = a.sum(-1).double() + b.sum(-1).double()
    out = torch.ones(len(pred), dtype=torch.float64)
    nonempty = sizes > 0
    out[nonempty] = 2 * both[nonempty] / sizes[nonempty]
    return out


def soft_dice_loss_dims(logits, target, smooth=1.0):
    """Sums over every dimension but the first, written out."""
    p = logits.sigmoid()
    dims = tuple(range(1, p.dim()))
    numerator = 2.0 * (p * target).sum(dim=dims) + smooth
    denominator = p.sum(dim=dims) + target.sum(dim=dims) + smooth
    return (1.0 - numerator / denominator).mean()


def soft_dice_loss_einsum(logits, target, smooth=1.0):
    p = torch.sigmoid(logits).reshape(logits.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    inter = torch.einsum("nk,nk->n", p, t)
    d = (2 * inter + smooth) / (p.sum(-1) + t.sum(-1) + smooth)
    return 1 - d.sum() / len(d)


class UNetRecursive(nn.Module):
    """The same modules, built in loops with appends; forward indexes the skips from the end."""

    def __init__(self, in_channels, num_classes, depth=2, width=8):
        super().__init__()
        if not depth >= 1:
            raise ValueError(f"depth >= 1 needed, got {depth}")
        self.depth = depth
        self.encoders, self.upsamplers, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for level in range(depth + 1):
            self.encoders.append(_block(c, width * 2**level))
            c = width * 2**level
        for level in reversed(range(depth)):
            self.upsamplers.append(nn.ConvTranspose2d(width * 2 ** (level + 1), width * 2**level, kernel_size=2,
                                                      stride=2))
            self.decoders.append(_block(width * 2 ** (level + 1), width * 2**level))
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x):
        n = 2**self.depth
        if x.shape[-1] % n != 0 or x.shape[-2] % n != 0:
            raise ValueError(f"H and W must be multiples of {n}")
        skips = []
        for level in range(self.depth):
            skips.append(self.encoders[level](x))
            x = F.max_pool2d(skips[-1], kernel_size=2, stride=2)
        x = self.encoders[self.depth](x)
        for i in range(self.depth):
            x = self.decoders[i](torch.cat((skips[-1 - i], self.upsamplers[i](x)), 1))
        return self.head(x)


class UNetNested(nn.Module):
    """Blocks as named Sequentials (the same keys), the forward pass as a recursion over levels."""

    def __init__(self, in_channels, num_classes, depth=2, width=8):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        chans = [in_channels] + [width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(_block(chans[i], chans[i + 1]) for i in range(depth + 1))
        self.upsamplers = nn.ModuleList(nn.ConvTranspose2d(chans[level + 2], chans[level + 1], 2, 2)
                                        for level in reversed(range(depth)))
        self.decoders = nn.ModuleList(_block(2 * chans[level + 1], chans[level + 1])
                                      for level in reversed(range(depth)))
        self.head = nn.Conv2d(width, num_classes, 1)

    def _level(self, x, level):
        x = self.encoders[level](x)
        if level == self.depth:
            return x
        deeper = self._level(nn.functional.max_pool2d(x, 2), level + 1)
        i = self.depth - 1 - level
        return self.decoders[i](torch.cat([x, self.upsamplers[i](deeper)], dim=1))

    def forward(self, x):
        if any(s % (1 << self.depth) for s in x.shape[2:]):
            raise ValueError("H and W must be divisible by 2^depth")
        return self.head(self._level(x, 0))


def train_unet_weighted(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """The epoch's loss weighted by batch size; images[perm] sliced; zero_grad(set_to_none=True) first."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr)
    history = []
    n = images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        shuffled_x, shuffled_m = images[perm], masks[perm]
        total = 0.0
        for i in range(0, n, batch_size):
            xb, mb = shuffled_x[i : i + batch_size], shuffled_m[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.binary_cross_entropy_with_logits(out, mb) + soft_dice_loss(out, mb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        history.append(total / n)
    return history


def train_unet_split(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """torch.split of the permutation; losses gathered as detached tensors, turned into floats at the end."""
    optimizer = torch.optim.Adam(params=model.parameters(), lr=lr)
    model.train(True)
    out = []
    for _ in range(epochs):
        batch_losses = []
        for index in torch.split(torch.randperm(len(images)), batch_size):
            logits = model(images[index])
            loss = F.binary_cross_entropy_with_logits(logits, masks[index])
            loss = loss + soft_dice_loss(logits, masks[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
        out.append(float(torch.stack(batch_losses).mean()))
    return out


CORRECT: dict[str, dict[str, Any]] = {
    "box_iou_unbind": {"box_iou": box_iou_unbind}, "box_iou_relu": {"box_iou": box_iou_relu},
    "nms_masks": {"nms": nms_masks}, "nms_python_sort": {"nms": nms_python_sort},
    "batched_nms_offsets": {"batched_nms": batched_nms_offsets}, "batched_nms_loop": {"batched_nms": batched_nms_loop},
    "roi_pool_masked": {"roi_pool": roi_pool_masked}, "roi_pool_bins": {"roi_pool": roi_pool_bins},
    "roi_align_points": {"roi_align": roi_align_points}, "roi_align_grid_sample": {"roi_align": roi_align_grid_sample},
    "average_precision_lists": {"average_precision": average_precision_lists},
    "average_precision_tensors": {"average_precision": average_precision_tensors},
    "dice_score_float": {"dice_score": dice_score_float}, "dice_score_logical": {"dice_score": dice_score_logical},
    "soft_dice_loss_dims": {"soft_dice_loss": soft_dice_loss_dims},
    "soft_dice_loss_einsum": {"soft_dice_loss": soft_dice_loss_einsum},
    "unet_recursive": {"UNet": UNetRecursive}, "unet_nested": {"UNet": UNetNested},
    "train_unet_weighted": {"train_unet": train_unet_weighted}, "train_unet_split": {"train_unet": train_unet_split},
}


# --- wrong ---------------------------------------------------------------------------------------------
def _iou_from(inter_fn, union_fn=None, checks=True):
    """A box_iou whose intersection (and union) are computed by the given functions of the two (N, M, 4) grids."""
    def box_iou(boxes1, boxes2):
        if checks:
            _check_boxes(boxes1)
            _check_boxes(boxes2)
        a = boxes1[:, None, :].expand(-1, len(boxes2), -1)
        b = boxes2[None, :, :].expand(len(boxes1), -1, -1)
        inter = inter_fn(a, b)
        area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        union = union_fn(a, b) if union_fn else area_a + area_b - inter
        return torch.where(union > 0, inter / union, torch.zeros_like(inter))
    return box_iou


def _sides(a, b):
    return (torch.min(a[..., 2], b[..., 2]) - torch.max(a[..., 0], b[..., 0]),
            torch.min(a[..., 3], b[..., 3]) - torch.max(a[..., 1], b[..., 1]))


iou_no_clamp = _iou_from(lambda a, b: _sides(a, b)[0] * _sides(a, b)[1])
iou_clamp_the_product = _iou_from(lambda a, b: (_sides(a, b)[0] * _sides(a, b)[1]).clamp(min=0))
iou_plus_one = _iou_from(lambda a, b: (_sides(a, b)[0] + 1).clamp(min=0) * (_sides(a, b)[1] + 1).clamp(min=0),
                         lambda a, b: ((a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
                                       + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
                                       - (_sides(a, b)[0] + 1).clamp(min=0) * (_sides(a, b)[1] + 1).clamp(min=0)))
iou_no_checks = _iou_from(lambda a, b: _sides(a, b)[0].clamp(min=0) * _sides(a, b)[1].clamp(min=0), checks=False)


def iou_nan_for_zero_area(boxes1, boxes2):
    """inter / union with no care for a zero union: nan for two zero-area boxes."""
    _check_boxes(boxes1)
    _check_boxes(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(-1)
    return inter / (area1[:, None] + area2[None, :] - inter)


def iou_loop(boxes1, boxes2):
    """Right values, one pair at a time."""
    _check_boxes(boxes1)
    _check_boxes(boxes2)
    out = torch.zeros(len(boxes1), len(boxes2))
    for i in range(len(boxes1)):
        for j in range(len(boxes2)):
            out[i, j] = _box_iou(boxes1[i : i + 1], boxes2[j : j + 1])[0, 0]
    return out


def _nms_with(order_fn, suppress_fn, keep_order=None):
    def nms(boxes, scores, iou_threshold):
        order = order_fn(scores)
        iou = _box_iou(boxes, boxes)
        suppressed = torch.zeros(len(scores), dtype=torch.bool)
        keep = []
        for i in order.tolist():
            if suppressed[i]:
                continue
            keep.append(i)
            suppressed |= suppress_fn(iou[i], iou_threshold)
        if keep_order:
            keep = keep_order(keep)
        return torch.tensor(keep, dtype=torch.int64)
    return nms


def _stable_desc(scores):
    return torch.sort(scores, descending=True, stable=True).indices


nms_keeps_the_lower_score = _nms_with(lambda s: torch.sort(s, stable=True).indices, lambda row, t: row > t)
nms_suppresses_at_equality = _nms_with(_stable_desc, lambda row, t: row >= t)
nms_ties_higher_index_first = _nms_with(lambda s: torch.tensor(sorted(range(len(s)), key=lambda i: (-float(s[i]), -i)),
                                                               dtype=torch.int64), lambda row, t: row > t)
nms_in_index_order = _nms_with(_stable_desc, lambda row, t: row > t, keep_order=sorted)


def nms_not_greedy(boxes, scores, iou_threshold):
    """A box is dropped when any higher-scoring box (kept or not) overlaps it too much."""
    order = _stable_desc(scores)
    iou = _box_iou(boxes, boxes)
    keep = [int(i) for k, i in enumerate(order) if not (iou[i, order[:k]] > iou_threshold).any()]
    return torch.tensor(keep, dtype=torch.int64)


def nms_float_indices(boxes, scores, iou_threshold):
    return _nms(boxes, scores, iou_threshold).float()


def batched_nms_ignores_labels(boxes, scores, labels, iou_threshold):
    return _nms(boxes, scores, iou_threshold)


def batched_nms_offset_by_the_largest_coordinate(boxes, scores, labels, iou_threshold):
    """The offset trick with label * (largest coordinate + 1): with negative coordinates, labels overlap."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    return _nms(boxes + (labels.to(boxes) * (boxes.max() + 1))[:, None], scores, iou_threshold)


def batched_nms_grouped_by_label(boxes, scores, labels, iou_threshold):
    """Per label, concatenated label by label (not re-sorted by score)."""
    keep = [torch.nonzero(labels == c).flatten()[_nms(boxes[labels == c], scores[labels == c], iou_threshold)]
            for c in labels.unique()]
    return torch.cat(keep) if keep else torch.empty(0, dtype=torch.int64)


def _pool_with(rounding=None, scale_fn=None, plus_one=1, zero_init=False, image=None):
    def roi_pool(features, rois, output_size, spatial_scale=1.0):
        ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
        _, C, H, W = features.shape
        out = torch.zeros(len(rois), C, ph, pw, dtype=features.dtype)
        scale = scale_fn(spatial_scale) if scale_fn else spatial_scale
        for k, roi in enumerate(rois.tolist()):
            b = int(roi[0]) if image is None else image
            x1, y1, x2, y2 = ((rounding or _round_half_away)(v * scale) for v in roi[1:])
            bin_w, bin_h = max(x2 - x1 + plus_one, 1) / pw, max(y2 - y1 + plus_one, 1) / ph
            for i in range(ph):
                h0 = min(max(math.floor(i * bin_h) + y1, 0), H)
                h1 = min(max(math.ceil((i + 1) * bin_h) + y1, 0), H)
                for j in range(pw):
                    w0 = min(max(math.floor(j * bin_w) + x1, 0), W)
                    w1 = min(max(math.ceil((j + 1) * bin_w) + x1, 0), W)
                    if h1 > h0 and w1 > w0:
                        region = features[b, :, h0:h1, w0:w1].amax(dim=(1, 2))
                        out[k, :, i, j] = region.clamp(min=0) if zero_init else region
        return out
    return roi_pool


roi_pool_wrong_scale = _pool_with(scale_fn=lambda s: 1.0 / s)
roi_pool_scale_ignored = _pool_with(scale_fn=lambda s: 1.0)
roi_pool_torch_round = _pool_with(rounding=lambda v: int(torch.round(torch.tensor(v))))
roi_pool_truncates = _pool_with(rounding=int)
roi_pool_no_plus_one = _pool_with(plus_one=0)
roi_pool_clamped_at_zero = _pool_with(zero_init=True)
roi_pool_first_image_only = _pool_with(image=0)


def _align_with(sr_fn=None, scale_fn=None, aligned_fn=None, nearest=False, min_size_always=False,
                zero_outside=False):
    def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
        N, C, H, W = features.shape
        out = torch.zeros(len(rois), C, ph, pw, dtype=features.dtype)
        scale = scale_fn(spatial_scale) if scale_fn else spatial_scale
        aligned = aligned_fn(aligned) if aligned_fn else aligned
        for k in range(len(rois)):
            b = int(rois[k, 0])
            x1, y1, x2, y2 = (float(v) * scale - (0.5 if aligned else 0.0) for v in rois[k, 1:])
            w, h = x2 - x1, y2 - y1
            if not aligned or min_size_always:
                w, h = max(w, 1.0), max(h, 1.0)
            sr = sr_fn(sampling_ratio) if sr_fn else sampling_ratio
            gy = sr if sr > 0 else math.ceil(h / ph)
            gx = sr if sr > 0 else math.ceil(w / pw)
            for i in range(ph):
                for j in range(pw):
                    total = torch.zeros(C, dtype=features.dtype)
                    for a in range(gy):
                        for c in range(gx):
                            y = y1 + i * h / ph + (a + 0.5) * h / ph / gy
                            x = x1 + j * w / pw + (c + 0.5) * w / pw / gx
                            if zero_outside and (y < 0 or y > H - 1 or x < 0 or x > W - 1):
                                continue
                            if nearest:
                                if -1 <= y <= H and -1 <= x <= W:
                                    total += features[b, :, min(max(round(y), 0), H - 1), min(max(round(x), 0), W - 1)]
                            else:
                                total += _bilinear(features[b], torch.tensor([y], dtype=features.dtype),
                                                   torch.tensor([x], dtype=features.dtype))[:, 0]
                    out[k, :, i, j] = total / max(gy * gx, 1)
        return out
    return roi_align


roi_align_sampling_ratio_always_adaptive = _align_with(sr_fn=lambda s: -1)
roi_align_sampling_ratio_always_one = _align_with(sr_fn=lambda s: 1)
roi_align_wrong_scale = _align_with(scale_fn=lambda s: 1.0 / s)
roi_align_aligned_ignored = _align_with(aligned_fn=lambda a: False)
roi_align_nearest = _align_with(nearest=True)
roi_align_minimum_size_when_aligned = _align_with(min_size_always=True)
roi_align_zero_beyond_the_border = _align_with(zero_outside=True)


def _ap_with(match="unmatched", recall_over="gt", interpolate=True, per_image=False, strict=False, empty=None,
             as_tensor=False):
    def average_precision(detections, ground_truth, iou_threshold=0.5):
        total = sum(len(g) for g in ground_truth)
        if total == 0:
            return empty if empty is not None else float("nan")
        ranked = [(float(s), i, j) for i, (_, scores) in enumerate(detections) for j, s in enumerate(scores)]
        if per_image:
            ranked = [t for i in range(len(detections)) for t in sorted((t for t in ranked if t[1] == i),
                                                                        key=lambda t: -t[0])]
        else:
            ranked.sort(key=lambda t: -t[0])
        used = [torch.zeros(len(g), dtype=torch.bool) for g in ground_truth]
        tp = []
        for _, i, j in ranked:
            hit = False
            if len(ground_truth[i]):
                iou = _box_iou(detections[i][0][j : j + 1], ground_truth[i])[0]
                if match == "unmatched":
                    iou = iou.masked_fill(used[i], -1.0)
                best = int(iou.argmax())
                good = iou[best] > iou_threshold if strict else iou[best] >= iou_threshold
                if good and not (match == "voc" and used[i][best]):
                    hit = True
                    used[i][best] = True
            tp.append(hit)
        if not tp:
            return 0.0
        tps = torch.tensor(tp, dtype=torch.float64).cumsum(0)
        precision = tps / torch.arange(1, len(tp) + 1)
        denominator = total if recall_over == "gt" else max(int(sum(u.any() for u in used)), 1)
        recall = tps / denominator
        if interpolate:
            precision = precision.flip(0).cummax(0).values.flip(0)
        steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
        value = (steps * precision).sum()
        return value if as_tensor else float(value)
    return average_precision


ap_duplicates_count = _ap_with(match="any")
ap_voc_best_box_only = _ap_with(match="voc")
ap_recall_over_detected_images = _ap_with(recall_over="detected")
ap_not_interpolated = _ap_with(interpolate=False)
ap_ranked_per_image = _ap_with(per_image=True)
ap_strict_threshold = _ap_with(strict=True)
ap_zero_without_ground_truth = _ap_with(empty=0.0)
ap_returns_a_tensor = _ap_with(as_tensor=True)


def dice_over_the_batch(pred, target):
    if pred.shape != target.shape:
        raise ValueError("shapes differ")
    a, b = pred.bool(), target.bool()
    return 2 * (a & b).sum().float() / (a.sum() + b.sum()).float().clamp(min=1)


def dice_nan_when_both_empty(pred, target):
    if pred.shape != target.shape:
        raise ValueError("shapes differ")
    a, b = pred.float().flatten(1), target.float().flatten(1)
    return 2 * (a * b).sum(1) / (a.sum(1) + b.sum(1))


def dice_no_shape_check(pred, target):
    a, b = pred.bool(), target.bool()
    inter, sizes = (a & b).flatten(1).sum(1).float(), (a.flatten(1).sum(1) + b.flatten(1).sum(1)).float()
    return torch.where(sizes == 0, torch.ones_like(sizes), 2 * inter / sizes.clamp(min=1))


def dice_integer_division(pred, target):
    if pred.shape != target.shape:
        raise ValueError("shapes differ")
    a, b = pred.long().flatten(1), target.long().flatten(1)
    sizes = a.sum(1) + b.sum(1)
    return torch.where(sizes == 0, torch.ones_like(sizes), 2 * (a * b).sum(1) // sizes.clamp(min=1))


def soft_dice_on_logits(logits, target, smooth=1.0):
    p, t = logits.flatten(1), target.flatten(1)
    return 1 - ((2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def soft_dice_batch_sums(logits, target, smooth=1.0):
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)


def soft_dice_smooth_in_numerator_only(logits, target, smooth=1.0):
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    return 1 - ((2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1))).mean()


def soft_dice_no_smooth(logits, target, smooth=1.0):
    return _soft_dice_loss(logits, target, 0.0)


def soft_dice_detached(logits, target, smooth=1.0):
    """Right value, through numpy: no gradient."""
    p = torch.sigmoid(logits).detach().numpy().reshape(len(logits), -1)
    t = target.numpy().reshape(len(target), -1)
    d = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return torch.tensor(1 - d.mean())


class _UNetForward(UNet):
    """The reference layout with another forward pass (``mode``)."""

    mode = ""

    def forward(self, x):
        if self.mode != "no error" and (x.shape[2] % 2**self.depth or x.shape[3] % 2**self.depth):
            raise ValueError("H and W must be divisible by 2**depth")
        skips = []
        for encoder in self.encoders[:-1]:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.encoders[-1](x)
        for i, (up, decoder) in enumerate(zip(self.upsamplers, self.decoders, strict=True)):
            x = up(x)
            skip = skips[i] if self.mode in ("skips not reversed", "interpolated") else skips[-1 - i]
            if self.mode == "interpolated":
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip] if self.mode == "cat swapped" else [skip, x], dim=1))
        return self.head(x)


class UNetSkipsNotReversed(_UNetForward):
    mode = "skips not reversed"


class UNetSkipInterpolated(_UNetForward):
    """The skips in encoder order, resized to fit: a skip of the wrong resolution."""
    mode = "interpolated"


class UNetCatSwapped(_UNetForward):
    mode = "cat swapped"


class UNetNoValueError(_UNetForward):
    mode = "no error"


class UNetBilinear(nn.Module):
    """Bilinear up-sampling and a 1x1 convolution instead of ConvTranspose2d."""

    def __init__(self, in_channels, num_classes, depth=2, width=8):
        super().__init__()
        if depth < 1:
            raise ValueError("depth")
        self.depth = depth
        chans = [width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList([_block(in_channels if i == 0 else chans[i - 1], chans[i])
                                       for i in range(depth + 1)])
        self.upsamplers = nn.ModuleList([nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                                       nn.Conv2d(chans[i + 1], chans[i], 1))
                                         for i in reversed(range(depth))])
        self.decoders = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(width, num_classes, 1)

    forward = UNet.forward


class UNetDepthIgnored(UNet):
    def __init__(self, in_channels, num_classes, depth=2, width=8):
        if depth < 1:
            raise ValueError("depth")
        super().__init__(in_channels, num_classes, 2, width)


def train_unet_bce_only(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """Only the cross-entropy: soft_dice_loss left out."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(images))
        total = []
        for start in range(0, len(images), batch_size):
            index = perm[start : start + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(images[index]), masks[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total.append(loss.item())
        losses.append(sum(total) / len(total))
    return losses


def train_unet_sums_the_batches(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """The sum of the batches' losses, not their mean."""
    _per_epoch = _train_unet(model, images, masks, epochs, lr, batch_size)
    return [value * math.ceil(len(images) / batch_size) for value in _per_epoch]


def train_unet_on_a_copy(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """Trains a copy: the caller's model is left untrained."""
    import copy

    return _train_unet(copy.deepcopy(model), images, masks, epochs, lr, batch_size)


def train_unet_tensors(model, images, masks, epochs, lr=1e-2, batch_size=32):
    return [torch.tensor(v) for v in _train_unet(model, images, masks, epochs, lr, batch_size)]


def train_unet_lr_ignored(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """Adam's default learning rate."""
    return _train_unet(model, images, masks, epochs, 1e-3, batch_size)


def train_unet_draws_before_shuffling(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """One draw from torch's global RNG (a random crop, a dropout of its own...) before the first randperm: its
    first epoch's loss can still land within 2 % of the recipe's; its batches are not the recipe's."""
    torch.rand(1)
    return _train_unet(model, images, masks, epochs, lr, batch_size)


def train_unet_smooths_the_masks_in_place(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """Label smoothing written into the caller's masks."""
    masks.mul_(0.9).add_(0.05)
    return _train_unet(model, images, masks, epochs, lr, batch_size)


def train_unet_no_zero_grad(model, images, masks, epochs, lr=1e-2, batch_size=32):
    """Gradients accumulate over the batches."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(images))
        total = []
        for start in range(0, len(images), batch_size):
            index = perm[start : start + batch_size]
            logits = model(images[index])
            loss = F.binary_cross_entropy_with_logits(logits, masks[index]) + soft_dice_loss(logits, masks[index])
            loss.backward()
            optimizer.step()
            total.append(loss.item())
        losses.append(sum(total) / len(total))
    return losses


WRONG: dict[str, tuple[dict[str, Any], set[str]]] = {
    "iou_no_clamp": ({"box_iou": iou_no_clamp}, {IOU}),
    "iou_clamp_the_product": ({"box_iou": iou_clamp_the_product}, {IOU}),
    "iou_plus_one": ({"box_iou": iou_plus_one}, {IOU}),
    "iou_no_checks": ({"box_iou": iou_no_checks}, {IOU}),
    "iou_nan_for_zero_area": ({"box_iou": iou_nan_for_zero_area}, {IOU}),
    "iou_loop": ({"box_iou": iou_loop}, {IOU}),
    "nms_keeps_the_lower_score": ({"nms": nms_keeps_the_lower_score}, {NMS}),
    "nms_suppresses_at_equality": ({"nms": nms_suppresses_at_equality}, {NMS}),
    "nms_ties_higher_index_first": ({"nms": nms_ties_higher_index_first}, {NMS}),
    "nms_in_index_order": ({"nms": nms_in_index_order}, {NMS}),
    "nms_not_greedy": ({"nms": nms_not_greedy}, {NMS}),
    "nms_float_indices": ({"nms": nms_float_indices}, {NMS}),
    "batched_nms_ignores_labels": ({"batched_nms": batched_nms_ignores_labels}, {BATCHED}),
    "batched_nms_grouped_by_label": ({"batched_nms": batched_nms_grouped_by_label}, {BATCHED}),
    "batched_nms_offset_by_the_largest_coordinate": ({"batched_nms": batched_nms_offset_by_the_largest_coordinate},
                                                     {BATCHED}),
    "roi_pool_wrong_scale": ({"roi_pool": roi_pool_wrong_scale}, {POOL}),
    "roi_pool_scale_ignored": ({"roi_pool": roi_pool_scale_ignored}, {POOL}),
    "roi_pool_torch_round": ({"roi_pool": roi_pool_torch_round}, {POOL}),
    "roi_pool_truncates": ({"roi_pool": roi_pool_truncates}, {POOL}),
    "roi_pool_no_plus_one": ({"roi_pool": roi_pool_no_plus_one}, {POOL}),
    "roi_pool_clamped_at_zero": ({"roi_pool": roi_pool_clamped_at_zero}, {POOL}),
    "roi_pool_first_image_only": ({"roi_pool": roi_pool_first_image_only}, {POOL}),
    "roi_align_sampling_ratio_always_adaptive": ({"roi_align": roi_align_sampling_ratio_always_adaptive}, {ALIGN}),
    "roi_align_sampling_ratio_always_one": ({"roi_align": roi_align_sampling_ratio_always_one}, {ALIGN}),
    "roi_align_wrong_scale": ({"roi_align": roi_align_wrong_scale}, {ALIGN}),
    "roi_align_aligned_ignored": ({"roi_align": roi_align_aligned_ignored}, {ALIGN}),
    "roi_align_nearest": ({"roi_align": roi_align_nearest}, {ALIGN}),
    "roi_align_minimum_size_when_aligned": ({"roi_align": roi_align_minimum_size_when_aligned}, {ALIGN}),
    "roi_align_zero_beyond_the_border": ({"roi_align": roi_align_zero_beyond_the_border}, {ALIGN}),
    "ap_duplicates_count": ({"average_precision": ap_duplicates_count}, {AP}),
    "ap_voc_best_box_only": ({"average_precision": ap_voc_best_box_only}, {AP}),
    "ap_recall_over_detected_images": ({"average_precision": ap_recall_over_detected_images}, {AP}),
    "ap_not_interpolated": ({"average_precision": ap_not_interpolated}, {AP}),
    "ap_ranked_per_image": ({"average_precision": ap_ranked_per_image}, {AP}),
    "ap_strict_threshold": ({"average_precision": ap_strict_threshold}, {AP}),
    "ap_zero_without_ground_truth": ({"average_precision": ap_zero_without_ground_truth}, {AP}),
    "ap_returns_a_tensor": ({"average_precision": ap_returns_a_tensor}, {AP}),
    "dice_over_the_batch": ({"dice_score": dice_over_the_batch}, {DICE}),
    "dice_nan_when_both_empty": ({"dice_score": dice_nan_when_both_empty}, {DICE}),
    "dice_no_shape_check": ({"dice_score": dice_no_shape_check}, {DICE}),
    "dice_integer_division": ({"dice_score": dice_integer_division}, {DICE}),
    "soft_dice_on_logits": ({"soft_dice_loss": soft_dice_on_logits}, {SOFT}),
    "soft_dice_batch_sums": ({"soft_dice_loss": soft_dice_batch_sums}, {SOFT}),
    "soft_dice_smooth_in_numerator_only": ({"soft_dice_loss": soft_dice_smooth_in_numerator_only}, {SOFT}),
    "soft_dice_no_smooth": ({"soft_dice_loss": soft_dice_no_smooth}, {SOFT}),
    "soft_dice_detached": ({"soft_dice_loss": soft_dice_detached}, {SOFT}),
    "unet_skips_not_reversed": ({"UNet": UNetSkipsNotReversed}, {UNET}),
    "unet_skip_interpolated": ({"UNet": UNetSkipInterpolated}, {UNET}),
    "unet_cat_swapped": ({"UNet": UNetCatSwapped}, {UNET}),
    "unet_no_value_error": ({"UNet": UNetNoValueError}, {UNET}),
    "unet_bilinear": ({"UNet": UNetBilinear}, {UNET}),
    "unet_depth_ignored": ({"UNet": UNetDepthIgnored}, {UNET}),
    "train_unet_bce_only": ({"train_unet": train_unet_bce_only}, {TRAIN}),
    "train_unet_sums_the_batches": ({"train_unet": train_unet_sums_the_batches}, {TRAIN}),
    "train_unet_on_a_copy": ({"train_unet": train_unet_on_a_copy}, {TRAIN}),
    "train_unet_tensors": ({"train_unet": train_unet_tensors}, {TRAIN}),
    "train_unet_lr_ignored": ({"train_unet": train_unet_lr_ignored}, {TRAIN}),
    "train_unet_no_zero_grad": ({"train_unet": train_unet_no_zero_grad}, {TRAIN}),
    "train_unet_smooths_the_masks_in_place": ({"train_unet": train_unet_smooths_the_masks_in_place}, {TRAIN}),
    "train_unet_draws_before_shuffling": ({"train_unet": train_unet_draws_before_shuffling}, {TRAIN}),
}


# --- back doors: torchvision.ops however it is reached, and the lecture's detection widget -------------------------
import torchvision  # noqa: E402
import torchvision.ops as tv_ops  # noqa: E402
from torchvision.ops import nms as imported_nms  # noqa: E402
from torchvision.ops.roi_align import _roi_align as pure_python_roi_align  # noqa: E402

the_pool = torchvision.ops.roi_pool  # an alias taken before any check runs
_DETECTION_WIDGET = importlib.import_module("course_utils.widgets.detection")


def box_iou_from_torchvision(boxes1, boxes2):
    _check_boxes(boxes1)
    _check_boxes(boxes2)
    return torchvision.ops.box_iou(boxes1, boxes2).nan_to_num(0.0)


def nms_by_an_imported_name(boxes, scores, iou_threshold):
    return imported_nms(boxes, scores, iou_threshold)


def nms_through_torch_ops(boxes, scores, iou_threshold):
    """The dispatcher operator itself, no torchvision Python code on the way."""
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def batched_nms_from_torchvision(boxes, scores, labels, iou_threshold):
    return tv_ops.boxes.batched_nms(boxes, scores, labels, iou_threshold)


def batched_nms_from_the_widget(boxes, scores, labels, iou_threshold):
    """The lecture's NMS explorer on a scene made of the inputs: its kept mask, ordered by score."""
    scene = _DETECTION_WIDGET.Proposals(gt_boxes=boxes[:1], gt_labels=labels[:1], boxes=boxes, labels=labels,
                                        scores=scores)
    kept = _DETECTION_WIDGET.nms_view(iou_threshold, 0.0, scene=scene).kept.nonzero().flatten()
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def roi_pool_by_an_alias(features, rois, output_size, spatial_scale=1.0):
    return the_pool(features, rois, output_size, spatial_scale)


def roi_align_through_torch_ops(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    return torch.ops.torchvision.roi_align(features, rois, spatial_scale, ph, pw, sampling_ratio, aligned)


def roi_align_pure_python(features, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision's own pure-PyTorch roi_align, unwrapped from its lazy torch.compile: only aten operators, so only
    its code gives it away."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    return pure_python_roi_align.__wrapped__(features, rois, spatial_scale, ph, pw, sampling_ratio, aligned)


BACK_DOORS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "box_iou_from_torchvision": ({"box_iou": box_iou_from_torchvision}, {IOU}),
    "nms_by_an_imported_name": ({"nms": nms_by_an_imported_name}, {NMS}),
    "nms_through_torch_ops": ({"nms": nms_through_torch_ops}, {NMS}),
    "batched_nms_from_torchvision": ({"batched_nms": batched_nms_from_torchvision}, {BATCHED}),
    "batched_nms_from_the_widget": ({"batched_nms": batched_nms_from_the_widget}, {BATCHED}),
    "roi_pool_by_an_alias": ({"roi_pool": roi_pool_by_an_alias}, {POOL}),
    "roi_align_through_torch_ops": ({"roi_align": roi_align_through_torch_ops}, {ALIGN}),
    "roi_align_pure_python": ({"roi_align": roi_align_pure_python}, {ALIGN}),
}

# each of these trains a U-Net (seconds): the fast tier keeps one wrong one, the heavy tier runs these
SLOW_WRONG = {"train_unet_sums_the_batches", "train_unet_tensors", "train_unet_lr_ignored", "train_unet_no_zero_grad",
              "train_unet_on_a_copy", "train_unet_smooths_the_masks_in_place", "train_unet_draws_before_shuffling"}
SLOW_CORRECT = {"train_unet_split", "train_unet_weighted"}
# wrong U-Nets whose forward pass fails on a mismatched concatenation: the failure says it raised
RAISES = {"unet_skips_not_reversed", "unet_skip_interpolated"}


def caught(replacements: dict[str, Any], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it."""
    return vh.catch_rates(caught, WRONG, secrets, names)
