"""The NMS explorer (lecture 11): a detector's raw boxes, a score threshold, non-maximum suppression, and the
precision and recall that result.

A detector proposes many overlapping boxes for each object, each with a score. Two thresholds decide which survive:

- the **score threshold**: boxes scoring below it are dropped;
- **non-maximum suppression (NMS)**, per class, at an **IoU threshold**: going down the list by score, a box is
  kept unless it overlaps an already kept box of the same class with IoU > the threshold
  (``torchvision.ops.batched_nms``).

The kept boxes are matched to the ground truth at IoU >= ``MATCH_IOU`` (0.5), best score first, each ground-truth
box at most once and only by a box of its own class (PASCAL VOC's rule): precision = matched / kept,
recall = matched / ground-truth boxes.

The scene is synthetic and fixed: ``N_OBJECTS`` ground-truth boxes of two classes in a 64x64 image, and around each
a handful of jittered copies whose score falls with the jitter (a few with the wrong class), plus a few stray boxes
with low scores. :func:`nms_view` computes everything with torchvision.ops, :func:`nms_figure` draws it and
:func:`nms_explorer` is the widget. Assignment a6 asks for IoU and NMS written by hand; this module only calls them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision import ops

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["SIZE", "CLASSES", "MATCH_IOU", "N_OBJECTS", "SCENE_SEED", "Proposals", "NmsView", "proposals",
           "nms_view", "nms_figure", "nms_explorer"]

SIZE = 64  # the scene is SIZE x SIZE pixels
CLASSES = ("square", "circle")
MATCH_IOU = 0.5  # a kept box is a true positive when IoU >= this with an unmatched ground-truth box of its class
N_OBJECTS = 4
SCENE_SEED = 3
COPIES = 6  # jittered boxes around each object
STRAYS = 4  # boxes on no object
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the sliders: 0.05, 0.10, ..., 0.95


@dataclass(frozen=True)
class Proposals:
    """A fixed scene: ground truth and a detector's raw (before NMS) boxes.

    gt_boxes (G, 4), boxes (B, 4): float32 (x1, y1, x2, y2) in pixels;  gt_labels (G,), labels (B,): int64 class
    indices into ``CLASSES``;  scores (B,) float32 in (0, 1).
    """

    gt_boxes: Tensor
    gt_labels: Tensor
    boxes: Tensor
    labels: Tensor
    scores: Tensor


@functools.cache
def proposals(seed: int = SCENE_SEED) -> Proposals:
    """The explorer's scene: ``N_OBJECTS`` objects, ``COPIES`` jittered boxes each and ``STRAYS`` stray boxes."""
    g = torch.Generator().manual_seed(seed)
    # ground truth: two pairs of overlapping objects (different classes within a pair), so NMS across classes would hurt
    gt = torch.tensor([[6, 8, 30, 30], [20, 16, 42, 40], [38, 36, 58, 58], [44, 6, 60, 24]], dtype=torch.float32)
    gt_labels = torch.tensor([0, 1, 1, 0])
    boxes, labels, scores = [], [], []
    certainty = (1.0, 0.85, 0.6, 0.75)  # how sure the detector is of each object: some objects are harder
    for box, label, sure in zip(gt, gt_labels, certainty, strict=True):
        w, h = box[2] - box[0], box[3] - box[1]
        jitter = torch.randn(COPIES, 4, generator=g) * 0.1 * torch.stack([w, h, w, h])  # (COPIES, 4), pixels
        jitter[0] = 0.03 * jitter[0]  # one copy almost exact
        b = box + jitter
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 2)  # keep x2 > x1, y2 > y1
        iou = ops.box_iou(b, box[None])[:, 0]  # (COPIES,)
        s = (sure * (0.25 + 0.7 * iou ** 2) + 0.05 * torch.rand(COPIES, generator=g)).clamp(0.05, 0.98)
        lab = torch.full((COPIES,), int(label))
        lab[-1] = 1 - int(label)  # one copy with the wrong class, and a lower score
        s[-1] = 0.6 * s[-1]
        boxes.append(b), labels.append(lab), scores.append(s)
    centre = torch.rand(STRAYS, 2, generator=g) * (SIZE - 16) + 8
    half = torch.rand(STRAYS, 2, generator=g) * 6 + 4
    boxes.append(torch.cat([centre - half, centre + half], 1))
    labels.append(torch.randint(0, 2, (STRAYS,), generator=g))
    scores.append(torch.rand(STRAYS, generator=g) * 0.35 + 0.05)
    boxes = torch.cat(boxes).clamp(0, SIZE)
    return Proposals(gt, gt_labels, boxes, torch.cat(labels), torch.cat(scores))


@dataclass(frozen=True)
class NmsView:
    """What the explorer shows for one (NMS IoU threshold, score threshold).

    above (B,) bool: score >= score threshold;  kept (B,) bool: above and survives per-class NMS;
    matched (B,) bool: kept and a true positive at IoU >= ``MATCH_IOU``;  best_iou (B,): each raw box's largest
    IoU with a ground-truth box of its own class (0 when there is none).
    """

    nms_iou: float
    score_threshold: float
    scene: Proposals
    above: Tensor
    kept: Tensor
    matched: Tensor
    best_iou: Tensor

    @property
    def true_positives(self) -> int:
        return int(self.matched.sum())

    @property
    def precision(self) -> float:
        """matched / kept (1 when nothing is kept: no false claims)."""
        n = int(self.kept.sum())
        return self.true_positives / n if n else 1.0

    @property
    def recall(self) -> float:
        """matched / ground-truth boxes."""
        return self.true_positives / len(self.scene.gt_boxes)


def _check_threshold(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def nms_view(nms_iou: float = 0.5, score_threshold: float = 0.3, scene: Proposals | None = None) -> NmsView:
    """Score threshold, then per-class NMS at ``nms_iou``, then matching to the ground truth at IoU 0.5."""
    nms_iou = _check_threshold("nms_iou", nms_iou)
    score_threshold = _check_threshold("score_threshold", score_threshold)
    s = scene or proposals()
    above = s.scores >= score_threshold  # (B,)
    index = above.nonzero()[:, 0]
    keep = index[ops.batched_nms(s.boxes[index], s.scores[index], s.labels[index], nms_iou)]  # by falling score
    kept = torch.zeros_like(above)
    kept[keep] = True
    same_class = s.labels[:, None] == s.gt_labels[None, :]  # (B, G)
    iou = ops.box_iou(s.boxes, s.gt_boxes) * same_class  # (B, G): IoU with ground truth of the same class only
    matched = torch.zeros_like(above)
    taken = torch.zeros(len(s.gt_boxes), dtype=torch.bool)
    for b in keep.tolist():  # best score first: each ground-truth box is claimed once
        candidates = iou[b].masked_fill(taken, -1.0)
        g = int(candidates.argmax())
        if candidates[g] >= MATCH_IOU:
            taken[g] = matched[b] = True
    return NmsView(nms_iou, score_threshold, s, above, kept, matched, iou.max(1).values)


def _box(ax, box, **style) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))


def nms_figure(nms_iou: float = 0.5, score_threshold: float = 0.3) -> Figure:
    """Left: ground truth (grey, filled), kept boxes (solid, class colour, with scores), suppressed boxes (dotted),
    boxes under the score threshold (faint). Right: every raw box's score against its IoU with the ground truth."""
    view = nms_view(nms_iou, score_threshold)
    s = view.scene
    colours = (PALETTE[0], PALETTE[1])
    suppressed = view.above & ~view.kept
    with styled():
        fig, (ax, ax_pts) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained", width_ratios=(1, 1.15))
        for box in s.gt_boxes:
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, color="0.85", zorder=0))
            _box(ax, box, edgecolor="black", linewidth=1, linestyle="--", zorder=1)
        for i in range(len(s.boxes)):
            colour = colours[int(s.labels[i])]
            if view.kept[i]:
                _box(ax, s.boxes[i], edgecolor=colour, linewidth=2.5, zorder=3)
                x1, y1 = s.boxes[i, :2].tolist()
                ax.text(x1 + 0.5, y1 + 0.5, f"{s.scores[i]:.2f}", color="white", fontsize=8, va="top",
                        zorder=4 + float(s.scores[i]),  # the higher score's label on top
                        bbox={"facecolor": colour, "edgecolor": "none", "pad": 1})
            elif suppressed[i]:
                _box(ax, s.boxes[i], edgecolor=colour, linewidth=1.2, linestyle=":", zorder=2)
            else:
                _box(ax, s.boxes[i], edgecolor=colour, linewidth=0.6, alpha=0.25, zorder=2)
        ax.set_xlim(0, SIZE)
        ax.set_ylim(SIZE, 0)  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
        ax.set_title(f"kept {int(view.kept.sum())}, suppressed {int(suppressed.sum())}, "
                     f"under the score threshold {int((~view.above).sum())}", fontsize=10)
        handles = [Line2D([], [], color="black", linestyle="--", label="ground truth (grey area)"),
                   Line2D([], [], color="0.3", linewidth=2.5, label="kept"),
                   Line2D([], [], color="0.3", linestyle=":", label="suppressed by NMS"),
                   Line2D([], [], color="0.3", alpha=0.3, label="score too low")]
        handles += [Line2D([], [], color=c, linewidth=2.5, label=f"class: {n}")
                    for c, n in zip(colours, CLASSES, strict=True)]
        ax.legend(handles=handles, fontsize=7, loc="lower left", framealpha=0.9)

        for mask, marker, name in ((view.matched, "o", "kept, true positive"),
                                   (view.kept & ~view.matched, "X", "kept, false positive"),
                                   (suppressed, "s", "suppressed"), (~view.above, ".", "score too low")):
            filled = name.startswith("kept")
            ax_pts.scatter(view.best_iou[mask], s.scores[mask], marker=marker, s=60 if filled else 30,
                           facecolors=[colours[int(c)] for c in s.labels[mask]] if filled else "none",
                           edgecolors=[colours[int(c)] for c in s.labels[mask]])
        # the legend in neutral grey: on this side colour means the class (as on the left), the marker the outcome
        point_handles = [Line2D([], [], linestyle="none", marker=marker, markersize=ms, color="0.3",
                                markerfacecolor="0.3" if filled else "none", label=name)
                         for marker, ms, filled, name in (("o", 7, True, "kept, true positive"),
                                                          ("X", 7, True, "kept, false positive"),
                                                          ("s", 5, False, "suppressed"),
                                                          (".", 5, False, "score too low"))]
        point_handles += [Line2D([], [], linestyle="none", marker="o", markersize=7, color=c, label=f"class: {n}")
                          for c, n in zip(colours, CLASSES, strict=True)]
        ax_pts.axhline(score_threshold, color="grey", linestyle="--", linewidth=1)
        ax_pts.axvline(MATCH_IOU, color="grey", linestyle=":", linewidth=1)
        ax_pts.text(1.0, score_threshold, f" score threshold {score_threshold:.2f}", fontsize=8, va="bottom",
                    ha="right", color="0.3")
        ax_pts.set_xlim(-0.02, 1.02)
        ax_pts.set_ylim(0, 1.02)
        ax_pts.set_xlabel("IoU with the best ground-truth box of its class")
        ax_pts.set_ylabel("score")
        ax_pts.legend(handles=point_handles, fontsize=7, loc="upper left")
        ax_pts.set_title(f"precision {view.precision:.2f}, recall {view.recall:.2f} (match at IoU >= {MATCH_IOU})",
                         fontsize=10)
        fig.suptitle(f"Per-class NMS at IoU threshold {nms_iou:.2f}, score threshold {score_threshold:.2f}")
    return fig


@demo(figure=nms_figure)
def nms_explorer(nms_iou: float = 0.5, score_threshold: float = 0.3):
    """Sliders for :func:`nms_figure`. ``explorer.result`` is (kept boxes, precision, recall)."""
    import ipywidgets as widgets

    nms_view(nms_iou, score_threshold)  # refuses a bad starting value with a clear message
    style = {"description_width": "9em"}
    controls = {
        "nms_iou": widgets.FloatSlider(value=nms_iou, min=0.05, max=0.95, step=0.05, readout_format=".2f",
                                       description="NMS IoU threshold", style=style, continuous_update=False),
        "score_threshold": widgets.FloatSlider(value=score_threshold, min=0.0, max=0.95, step=0.05,
                                               readout_format=".2f", description="score threshold", style=style,
                                               continuous_update=False),
    }

    def show(nms_iou, score_threshold):
        fig = nms_figure(nms_iou, score_threshold)
        plt.show()
        plt.close(fig)
        view = nms_view(nms_iou, score_threshold)
        return int(view.kept.sum()), view.precision, view.recall

    return widgets.interactive(show, **controls)
