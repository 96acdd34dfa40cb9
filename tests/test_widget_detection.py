"""The NMS explorer (lecture 11): its kept boxes are those of a greedy per-class NMS written out here, its precision
and recall follow from a matching at IoU 0.5 done by hand, thresholds act the way the lecture says, the figure labels
what it shows, and bad thresholds are refused."""

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import widgets
from course_utils.widgets import detection as det


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, written out."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _greedy_nms(boxes, scores, labels, above, threshold) -> set[int]:
    """Per-class greedy NMS over the boxes that pass the score threshold: the set of kept indices."""
    order = sorted((i for i in range(len(boxes)) if above[i]), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(labels[j] != labels[i] or _iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return set(kept)


@pytest.mark.parametrize("nms_iou, score_threshold", [(0.5, 0.3), (0.2, 0.0), (0.75, 0.45), (0.95, 0.1)])
def test_kept_boxes_are_those_of_a_greedy_per_class_nms(nms_iou, score_threshold):
    view = det.nms_view(nms_iou, score_threshold)
    s = view.scene
    boxes, scores, labels = s.boxes.tolist(), s.scores.tolist(), s.labels.tolist()
    above = [x >= score_threshold for x in scores]
    assert view.above.tolist() == above
    assert set(view.kept.nonzero()[:, 0].tolist()) == _greedy_nms(boxes, scores, labels, above, nms_iou)


@pytest.mark.parametrize("nms_iou, score_threshold", [(0.5, 0.3), (0.9, 0.0), (0.95, 0.2)])
def test_precision_and_recall_follow_from_matching_at_iou_one_half(nms_iou, score_threshold):
    # loose NMS keeps duplicates and wrong-class copies: each true box may be claimed once, by its own class only
    view = det.nms_view(nms_iou, score_threshold)
    s = view.scene
    kept = sorted(view.kept.nonzero()[:, 0].tolist(), key=lambda i: -float(s.scores[i]))
    taken, hits = set(), 0
    for i in kept:
        options = [(_iou(s.boxes[i].tolist(), g.tolist()), k) for k, g in enumerate(s.gt_boxes)
                   if s.gt_labels[k] == s.labels[i] and k not in taken]
        if options and max(options)[0] >= det.MATCH_IOU:
            taken.add(max(options)[1])
            hits += 1
    assert view.true_positives == hits
    assert view.precision == pytest.approx(hits / len(kept))
    assert view.recall == pytest.approx(hits / len(s.gt_boxes))


def test_nms_is_per_class_and_thresholds_act_as_the_lecture_says():
    s = det.proposals()
    # two ground-truth objects of different classes overlap: even the harshest NMS keeps one box per class there
    assert _iou(s.gt_boxes[0].tolist(), s.gt_boxes[1].tolist()) > 0.1 and s.gt_labels[0] != s.gt_labels[1]
    harsh = det.nms_view(0.05, 0.0)
    assert harsh.recall == 1.0
    # a looser NMS threshold keeps more duplicates; a higher score threshold keeps fewer boxes
    kept = [int(det.nms_view(t, 0.3).kept.sum()) for t in (0.3, 0.5, 0.7, 0.9)]
    assert kept == sorted(kept) and kept[-1] > kept[0]
    kept = [int(det.nms_view(0.5, t).kept.sum()) for t in (0.0, 0.3, 0.5, 0.7)]
    assert kept == sorted(kept, reverse=True) and kept[-1] < kept[0]
    # the trade-off the explorer is for: a high score threshold is precise but misses an object
    loose, strict = det.nms_view(0.5, 0.3), det.nms_view(0.5, 0.6)
    assert strict.precision > loose.precision and strict.recall < loose.recall == 1.0
    assert det.nms_view(0.5, 0.99).precision == 1.0 and det.nms_view(0.5, 0.99).recall == 0.0


def test_bad_thresholds_say_what_is_expected():
    with pytest.raises(ValueError, match="nms_iou must be a number from 0 to 1, got 1.5"):
        det.nms_view(1.5)
    with pytest.raises(ValueError, match="score_threshold must be a number from 0 to 1, got -0.1"):
        det.nms_view(0.5, -0.1)
    with pytest.raises(ValueError, match="nms_iou must be a number"):
        det.nms_view(True)


def test_the_figure_labels_its_axes_and_counts_what_it_draws():
    fig = det.nms_figure(0.5, 0.3)
    ax, ax_pts = fig.axes
    view = det.nms_view(0.5, 0.3)
    kept, suppressed = int(view.kept.sum()), int((view.above & ~view.kept).sum())
    assert ax.get_title().startswith(f"kept {kept}, suppressed {suppressed}")
    assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)"
    assert ax.get_ylim() == (64, 0), "image coordinates: y grows downwards"
    assert f"precision {view.precision:.2f}, recall {view.recall:.2f}" in ax_pts.get_title()
    assert ax_pts.get_ylabel() == "score" and "IoU" in ax_pts.get_xlabel()
    assert len(ax.patches) == len(view.scene.boxes) + 2 * len(view.scene.gt_boxes)
    assert "0.50" in fig.get_suptitle() and "0.30" in fig.get_suptitle()


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["nms_explorer"].figure is det.nms_figure
    assert widgets.nms_explorer is det.nms_explorer
    widget = det.nms_explorer(nms_iou=0.4, score_threshold=0.5)
    assert widget.kwargs == {"nms_iou": 0.4, "score_threshold": 0.5}
    view = det.nms_view(0.4, 0.5)
    assert widget.result == (int(view.kept.sum()), view.precision, view.recall)
    widget.close()
    with pytest.raises(ValueError, match="score_threshold must be a number"):
        det.nms_explorer(score_threshold=2)


def test_matching_rules_on_a_scene_made_for_them():
    def scene(boxes, labels, scores):
        return det.Proposals(torch.tensor([[10.0, 10.0, 30.0, 30.0]]), torch.tensor([0]),
                             torch.tensor(boxes), torch.tensor(labels), torch.tensor(scores))

    exact = [10.0, 10.0, 30.0, 30.0]
    wrong_class = det.nms_view(0.5, 0.0, scene([exact], [1], [0.9]))
    assert (wrong_class.precision, wrong_class.recall) == (0.0, 0.0), "a box of the wrong class finds nothing"
    near = [10.0, 10.0, 30.0, 28.0]  # IoU 0.9 with the exact box: NMS at 0.95 keeps both
    twice = det.nms_view(0.95, 0.0, scene([exact, near], [0, 0], [0.9, 0.8]))
    assert int(twice.kept.sum()) == 2 and twice.true_positives == 1, "a true box is found once; the duplicate is false"
    assert twice.matched.tolist() == [True, False], "the higher score claims it"
    assert (twice.precision, twice.recall) == (0.5, 1.0)
    loose = det.nms_view(0.5, 0.0, scene([[10.0, 10.0, 30.0, 20.0]], [0], [0.9]))  # IoU exactly 0.5: a match
    assert loose.recall == 1.0
