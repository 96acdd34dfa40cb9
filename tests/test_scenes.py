"""Properties of course_utils.scenes: multi-object scenes with boxes, labels, instance and semantic masks."""
from __future__ import annotations

import hashlib
from functools import cache

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_utils import data, scenes, shapes
from course_utils.seeding import COURSE_SEED


@cache
def gen(n: int, **kwargs) -> scenes.Scenes:
    """Cached generate_scenes(); the tests only read it."""
    return scenes.generate_scenes(n, **kwargs)


def extent(mask: torch.Tensor) -> list[float]:
    """(x1, y1, x2, y2) of a (H, W) bool mask, x2 = last column + 1, computed the plain way."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


# ---------------------------------------------------------------- API, shapes, dtypes
@pytest.mark.parametrize("size, family", [(64, "basic"), (48, "extra"), (32, "basic")])
def test_scenes_shapes_dtypes_and_ranges(size, family):
    s = gen(40, size=size, seed=1, family=family)
    assert len(s) == 40 and s.classes == shapes.class_names(family) and s.num_classes == 10
    assert s.images.shape == (40, 3, size, size) and s.images.dtype == torch.float32
    assert 0 <= s.images.min() and s.images.max() <= 1
    assert s.semantic.shape == (40, size, size) and s.semantic.dtype == torch.int64
    for b, lab, m in zip(s.boxes, s.labels, s.instance_masks, strict=True):
        k = lab.shape[0]
        assert 1 <= k <= 4
        assert b.shape == (k, 4) and b.dtype == torch.float32
        assert lab.dtype == torch.int64 and 0 <= lab.min() and lab.max() < 10
        assert m.shape == (k, size, size) and m.dtype == torch.bool
    assert repr(s).startswith(f"Scenes('scenes{'' if family == 'basic' else '-extra'}': 40 scenes of 3x{size}x{size}")


def test_boxes_are_the_visible_masks_extents():
    s = gen(200, seed=2)
    checked = 0
    for b, m in zip(s.boxes, s.instance_masks, strict=True):
        for box, mask in zip(b, m, strict=True):
            assert box.tolist() == extent(mask)
            checked += 1
    assert checked > 400


def test_semantic_mask_agrees_with_instances_and_occlusion_order():
    s = gen(200, seed=2)
    for i in range(len(s)):
        masks, labels = s.instance_masks[i], s.labels[i]
        assert masks.sum(0).max() <= 1, "visible masks overlap"
        assert masks.flatten(1).any(1).all(), "an object with no visible pixel"
        expected = torch.zeros_like(s.semantic[i])
        for mask, label in zip(masks, labels, strict=True):
            expected[mask] = label + 1
        assert torch.equal(s.semantic[i], expected)


def capture_placement(monkeypatch) -> list[dict]:
    """Record what the renderer placed (its colours and full coverage windows), chunk by chunk."""
    placed: list[dict] = []
    place = scenes._place
    monkeypatch.setattr(scenes, "_place", lambda *a, **k: placed.append(place(*a, **k)) or placed[-1])
    return placed


def test_images_show_the_top_object_where_the_masks_say(monkeypatch):
    """Without noise and texture, a pixel fully covered by the top object has exactly that object's colour;
    every such pixel must lie in that object's visible mask (a wrong occlusion order puts it in another's)."""
    placed = capture_placement(monkeypatch)
    s = scenes.generate_scenes(60, seed=4, noise=0.0, texture=False)
    colours = torch.from_numpy(placed[0]["colours"]).float()         # (60, hi, 3) painted colours
    for i in range(len(s)):
        k = len(s.labels[i])
        for a in range(k):
            for b in range(a):
                assert (colours[i, a] - colours[i, b]).norm() >= scenes.MIN_COLOUR_DISTANCE
        for j, mask in enumerate(s.instance_masks[i]):
            painted = (s.images[i] - colours[i, j, :, None, None]).abs().amax(0) < 1e-4   # (H, W)
            assert painted[mask].any(), f"scene {i}: object {j}'s mask shows no pixel of its own colour"
            assert not (painted & ~mask).any(), f"scene {i}: object {j}'s pixels lie outside its visible mask"


@pytest.mark.parametrize("min_visible", [0.6, 0.95])
def test_every_object_keeps_min_visible_of_its_area(monkeypatch, min_visible):
    """Each object's full (amodal) area comes from the renderer's own coverage windows, captured here."""
    placed = capture_placement(monkeypatch)
    s = scenes.generate_scenes(120, seed=5, objects=(3, 4), min_visible=min_visible, noise=0.0)
    p = placed[0]
    size, w = 64, p["cover"].shape[-1]
    worst = 1.0
    for i in range(len(s)):
        for k, mask in enumerate(s.instance_masks[i]):
            full = torch.zeros(size + 2 * w, size + 2 * w, dtype=torch.bool)   # the window, clipped to the image
            r, c = (p["corner"][i, k] + w).tolist()
            full[r:r + w, c:c + w] = torch.from_numpy(p["cover"][i, k] >= 0.5)
            area = full[w:w + size, w:w + size].sum().item()
            worst = min(worst, mask.sum().item() / area)
    assert min_visible <= worst < 1.0  # some objects are partly hidden, none more than allowed
    cover = p["cover"]                                               # (m, hi, W, W): no shape cut by its window
    assert not cover[..., [0, -1], :].any() and not cover[..., :, [0, -1]].any()


def test_a_scene_with_no_room_left_raises_clearly():
    with pytest.raises(RuntimeError, match=r"could not place 6 objects with min_visible=1.0 in scene \d+ after"):
        scenes.generate_scenes(40, seed=0, objects=(6, 6), min_visible=1.0)


def test_object_counts_are_uniform_within_objects():
    counts = gen(400, seed=6).num_objects
    assert counts.min() >= 1 and counts.max() <= 4
    histogram = torch.bincount(counts, minlength=5)[1:]
    assert (histogram > 60).all(), f"counts 1-4 should be about equally common, got {histogram.tolist()}"
    few = scenes.generate_scenes(50, seed=6, objects=(2, 3)).num_objects
    assert set(few.tolist()) == {2, 3}
    assert (scenes.generate_scenes(20, seed=6, objects=(4, 4)).num_objects == 4).all()


def same_scenes(a: scenes.Scenes, b: scenes.Scenes) -> bool:
    return (torch.equal(a.images, b.images) and torch.equal(a.semantic, b.semantic)
            and len(a.boxes) == len(b.boxes)
            and all(torch.equal(x, y) for x, y in zip(a.boxes + a.labels, b.boxes + b.labels, strict=True)))


def test_deterministic_prefix_stable_and_seeded():
    n = scenes.CHUNK + 5                                             # reaches into a second chunk
    whole = scenes.generate_scenes(n, seed=3)
    assert same_scenes(scenes.generate_scenes(5, seed=3), whole.subset(range(5)))
    assert same_scenes(scenes.generate_scenes(n - 3, seed=3), whole.subset(range(n - 3)))
    other = scenes.generate_scenes(5, seed=4)
    assert not same_scenes(other, whole.subset(range(5)))
    assert not torch.equal(other.images, whole.images[:5]) and not torch.equal(other.semantic, whole.semantic[:5])


def test_noise_and_texture_change_pixels_not_objects():
    plain = scenes.generate_scenes(30, seed=8, noise=0.0, texture=False)
    busy = gen(30, seed=8)
    assert torch.equal(plain.semantic, busy.semantic)
    assert not torch.equal(plain.images, busy.images)


# ---------------------------------------------------------------- dataset, loader, data.load
def test_items_collate_and_subset():
    s = gen(40, seed=1)
    image, target = s[3]
    assert torch.equal(image, s.images[3]) and set(target) == {"boxes", "labels", "masks"}
    assert torch.equal(target["boxes"], s.boxes[3]) and torch.equal(s[-1][1]["labels"], s.labels[39])
    images, targets = scenes.collate([s[0], s[1], s[2]])
    assert images.shape == (3, 3, 64, 64) and [t["labels"].shape for t in targets] == [x.shape for x in s.labels[:3]]
    sub = s.subset([5, 1])
    assert torch.equal(sub.images, s.images[[5, 1]]) and torch.equal(sub.boxes[0], s.boxes[5]) and len(sub) == 2
    loader = data.make_loader(s, batch_size=16, shuffle=True)
    batches = list(loader)
    assert [len(t) for _, t in batches] == [16, 16, 8] and batches[0][0].shape == (16, 3, 64, 64)
    with pytest.raises(IndexError, match="out of range for 40 scenes"):
        s[40]
    with pytest.raises(TypeError, match="subset"):
        s[[0, 1]]
    with pytest.raises(ValueError, match="at least one"):
        scenes.collate([])


def test_data_load_routes_to_generate_scenes(fast_mode):
    s = data.load("scenes")
    assert isinstance(s, scenes.Scenes) and len(s) == 300 and s.images.shape[-1] == 64
    small = data.load("scenes", n=6, size=48, objects=(2, 2), noise=0.0)
    same = scenes.generate_scenes(6, size=48, seed=COURSE_SEED, objects=(2, 2), noise=0.0)
    assert torch.equal(small.images, same.images) and torch.equal(small.semantic, same.semantic)
    assert data.available()["scenes"] == "offline"
    with pytest.raises(ValueError, match="n must be a positive int"):
        data.load("scenes", n=0)


def test_data_load_default_is_two_thousand(default_mode, monkeypatch):
    seen = {}
    monkeypatch.setattr(scenes, "generate_scenes", lambda n, **kwargs: seen.update(n=n, **kwargs))
    data.load("scenes")
    assert seen == {"n": 2000, "size": 64, "seed": COURSE_SEED}


@pytest.mark.parametrize("kwargs, message", [
    ({"n": -1}, "n must be an integer >= 0"),
    ({"n": 2.5}, "n must be an integer"),
    ({"size": 16}, "size must be an integer >= 32"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"family": "animals"}, "unknown family 'animals'; expected one of 'basic', 'extra'"),
    ({"objects": (0, 2)}, r"objects must be a pair \(lo, hi\) of ints with 1 <= lo <= hi <= 6"),
    ({"objects": (3, 2)}, "objects must be a pair"),
    ({"objects": (1, 7)}, "objects must be a pair"),
    ({"objects": 3}, "objects must be a pair"),
    ({"min_visible": 0}, r"min_visible must be a number in \(0, 1\]"),
    ({"min_visible": 1.5}, "min_visible must be a number"),
    ({"noise": -0.1}, "noise must be a finite number >= 0"),
])
def test_bad_arguments_say_what_was_expected(kwargs, message):
    args = {"n": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        scenes.generate_scenes(args.pop("n"), **args)


def test_scenes_validates_its_fields():
    s = gen(40, seed=1)
    with pytest.raises(ValueError, match="boxes must be a list of one tensor per image"):
        scenes.Scenes(s.images[:2], s.boxes[:1], s.labels[:2], s.instance_masks[:2], s.semantic[:2], s.classes)
    with pytest.raises(ValueError, match=r"scene 0: expected labels \(k,\), boxes \(k, 4\)"):
        scenes.Scenes(s.images[:1], [s.boxes[0][:, :2]], s.labels[:1], s.instance_masks[:1], s.semantic[:1],
                      s.classes)


# ---------------------------------------------------------------- drawing
def test_draw_puts_one_box_and_tag_per_object():
    s = gen(40, seed=1)
    image, target = s[0]
    k = len(target["labels"])
    scores = torch.linspace(0.9, 0.5, k)
    ax = scenes.draw(image, target["boxes"], target["labels"], scores, s.classes, masks=target["masks"])
    tags = [t.get_text() for t in ax.texts]
    assert len(ax.patches) == k
    assert tags == [f"{s.classes[c]} {p:.2f}" for c, p in zip(target["labels"].tolist(), scores.tolist(),
                                                              strict=True)]
    x1, y1, x2, y2 = target["boxes"][0].tolist()
    assert ax.patches[0].get_xy() == (x1 - 0.5, y1 - 0.5) and ax.patches[0].get_width() == x2 - x1
    assert scenes.show(s, [0, 1], masks=True).axes[1].get_title().startswith("scene 1:")
    with pytest.raises(ValueError, match=r"boxes must be \(k, 4\)"):
        scenes.draw(image, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"scores must have one entry per box \(1\)"):
        scenes.draw(image, torch.zeros(1, 4), scores=[0.5, 0.2])
    plt.close("all")


# ---------------------------------------------------------------- the single-object shapes did not change
SHAPES_SHA256 = {  # sha256 of (images, labels, masks) bytes, computed before course_utils/scenes.py existed
    "generate(2000, seed=7)": (
        lambda: shapes.generate(2000, seed=7),
        ("ea3e82d89a5be8d48b25070e3878d80984c66a7b4154168657b409ad50440759",
         "6ae5458721bc02ba0fa8ae6f3461db30d6f0d48cbf4ae39ed5a0b17923a551db",
         "45771cb5320ec0b993e5e258a5afc40035fe7392e375a533df14c16dbb8c57a4")),
    "generate(500, size=64, seed=3, style='outline', family='extra')": (
        lambda: shapes.generate(500, size=64, seed=3, style="outline", family="extra"),
        ("bc0f58c98b3613e5e4fa819290f448cb05098e494e63a74e3c0bbeef9cf6ae01",
         "db3979e7131283f76a4a089953caed008352aae35a99f979acd648e08bb3382e",
         "480729392eaeed6312c070a5689ef0befa69475bbcb4929535dff4ed507bc839")),
}


@pytest.mark.parametrize("call", sorted(SHAPES_SHA256))
def test_shapes_data_is_bit_for_bit_unchanged(call):
    """scenes.py reuses the shapes' renderer; the single-object data (and the course checkpoint) must not move."""
    generate, expected = SHAPES_SHA256[call]
    digests = tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in generate())
    assert digests == expected
