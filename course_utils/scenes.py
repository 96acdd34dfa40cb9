"""Scenes: generated multi-object images with boxes, class labels, instance and semantic masks.

Every scene shows one to four shapes of :mod:`course_utils.shapes` (random class, colour,
size, position and rotation, smaller than the single-object images) on a textured,
noisy background; later objects are painted over earlier ones (occlusion). The targets
are what detection and segmentation models train on (lecture 11, a6):

- ``boxes`` (k, 4) in (x1, y1, x2, y2) pixel coordinates of each object's VISIBLE mask:
  x1 is the first column it covers and x2 the last column + 1, so x2 - x1 is its width in
  pixels (torchvision's convention: a box is a continuous rectangle on the pixel grid);
- ``labels`` (k,) class indices; ``instance_masks`` (k, H, W) the visible part of each
  object; ``semantic`` (H, W) 0 for background and c + 1 where the top object is of class c.

Placement: each scene draws its object count k uniformly in ``objects``, then tries
candidate objects in turn; a candidate is kept when every object, old and new, still shows
at least ``min_visible`` of its own area (and its colour differs from the others'), so no
object is hidden or cut into slivers. Rendering reuses the shapes' anti-aliased coverage
(3x supersampled inside-tests) in a small window around each object, which keeps 1,000
scenes of 64x64 to about a second on one core.

Scenes come in chunks of ``CHUNK``, each from its own generator that draws all the chunk's
candidates, so ``generate_scenes(m, seed=s)`` equals the first m scenes of
``generate_scenes(n, seed=s)`` for m <= n (same size and options); ``noise`` and ``texture``
change the pixels only: the same seed places the same objects.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .shapes import (BATCH_SUBPIXELS, FAMILIES, SHAPES, SUPERSAMPLE, _check_choice, _check_int, _contrast_against,
                     _pool, _texture, _texture_params, class_names)

__all__ = ["Scenes", "generate_scenes", "collate", "draw", "show", "CLASS_COLOURS", "CHUNK", "MAX_OBJECTS",
           "R_RANGE"]

Array = np.ndarray
CHUNK = 256            # scenes per generator; fixed, so prefixes are stable
MAX_OBJECTS = 6        # most objects a scene may ask for (objects=(lo, hi), hi <= this)
MIN_SIZE = 32          # smallest image side: below it the objects are a few pixels wide
R_RANGE = (0.16, 0.36)  # object radius / image half-width (single shapes use 0.35-0.85)
REACH = 1.2            # shapes fit in the unit disc, corners poke out by < 0.2 (the heart by 0.14)
ROUNDS_PER_OBJECT = 24  # candidate objects drawn per scene: this many per object of the largest count
MIN_AREA = 4           # an object covers at least this many pixels inside the image
MIN_COLOUR_DISTANCE = 0.3   # RGB distance between any two objects of a scene (max sqrt(3))
_STREAM = 0x5CE9E5     # keeps the scenes' random streams apart from the shapes' ([seed, chunk])

# Paul Tol's "muted" qualitative scheme (colour-blind safe; https://personal.sron.nl/~pault/),
# nine colours plus its pale grey, one per class of a family (label k -> CLASS_COLOURS[k % 10]).
CLASS_COLOURS = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
                 "#882255", "#44AA99", "#999933", "#AA4499", "#DDDDDD"]


# ---------------------------------------------------------------- the dataset
@dataclass(eq=False)
class Scenes(Dataset):
    """Multi-object scenes with detection and segmentation targets.

    images:         (N, 3, H, W) float32 in [0, 1]
    boxes:          N tensors (k_i, 4) float32, (x1, y1, x2, y2) pixels of each visible mask
    labels:         N tensors (k_i,) int64, class indices into ``classes``
    instance_masks: N tensors (k_i, H, W) bool, the visible pixels of each object
    semantic:       (N, H, W) int64, 0 = background, c + 1 = class c (the top object's)
    classes:        class names; objects are listed in painting order (later ones on top)

    ``scenes[i]`` is ``(image, target)`` with ``target = {"boxes", "labels", "masks"}``,
    torchvision's detection format; a DataLoader batches them with :func:`collate`.
    """

    images: Tensor
    boxes: list[Tensor]
    labels: list[Tensor]
    instance_masks: list[Tensor]
    semantic: Tensor
    classes: list[str]
    name: str = "scenes"

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(self.images.shape)}")
        n, _, h, w = self.images.shape
        for what, items in (("boxes", self.boxes), ("labels", self.labels), ("instance_masks", self.instance_masks)):
            if len(items) != n:
                raise ValueError(f"{what} must be a list of one tensor per image ({n}), got {len(items)}")
        if self.semantic.shape != (n, h, w):
            raise ValueError(f"semantic must be (N, H, W) = {(n, h, w)}, got {tuple(self.semantic.shape)}")
        for i, (b, lab, m) in enumerate(zip(self.boxes, self.labels, self.instance_masks, strict=True)):
            k = lab.shape[0] if lab.ndim == 1 else -1
            if k < 0 or b.shape != (k, 4) or m.shape != (k, h, w):
                raise ValueError(f"scene {i}: expected labels (k,), boxes (k, 4), masks (k, {h}, {w}) with one k, "
                                 f"got {tuple(lab.shape)}, {tuple(b.shape)}, {tuple(m.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Scenes index must be an int (use .subset(indices) for several), "
                            f"got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"scene index {index} out of range for {n} scenes")
        i = int(index) % n
        target = {"boxes": self.boxes[i], "labels": self.labels[i], "masks": self.instance_masks[i]}
        return self.images[i], target

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        counts = self.num_objects
        objects = f", {int(counts.min())}-{int(counts.max())} objects each" if n else ""
        return f"Scenes({self.name!r}: {n} scenes of {c}x{h}x{w}, {len(self.classes)} classes{objects})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_objects(self) -> Tensor:
        """(N,) int64: how many objects each scene holds."""
        return torch.tensor([lab.shape[0] for lab in self.labels], dtype=torch.long)

    def subset(self, indices: Sequence[int] | Tensor) -> Scenes:
        """A new Scenes with the given rows (images, boxes, labels and masks alike)."""
        index = torch.as_tensor(indices, dtype=torch.long).flatten()
        rows = index.tolist()
        return replace(self, images=self.images[index], semantic=self.semantic[index],
                       boxes=[self.boxes[i] for i in rows], labels=[self.labels[i] for i in rows],
                       instance_masks=[self.instance_masks[i] for i in rows])


def collate(batch: Sequence[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Batch ``(image, target)`` items for a DataLoader: images stacked to (B, 3, H, W), targets kept
    as a list of B dicts (each scene has its own number of objects), as torchvision's detectors expect.

    >>> loader = DataLoader(scenes, batch_size=32, collate_fn=collate)
    """
    if len(batch) == 0:
        raise ValueError("collate needs at least one (image, target) item")
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


# ---------------------------------------------------------------- generation
def _window(size: int) -> int:
    """Side W of the square pixel window around an object that holds every shape of radius <= R_RANGE[1]."""
    return 2 * math.ceil(REACH * R_RANGE[1] * size / 2) + 2


def _local_coverage(name: str, centre: Array, theta: Array, r: Array, offset: Array, size: int,
                    window: int) -> Array:
    """Coverage (B, W, W) in [0, 1] of B shapes `name` inside their windows: pixel rows
    offset[:, 0] + (0..W-1) and columns offset[:, 1] + (0..W-1) of a size x size image that
    spans [-1, 1]^2 (y up). centre (B, 2), theta (B,), r (B,) as in shapes._coverage."""
    f = SUPERSAMPLE
    u = ((np.arange(f * window) + 0.5) / f).astype(np.float32)      # (3W,) sub-pixel centres, in pixels
    to_unit = np.float32(2 / size)
    col = lambda v: v[:, None, None].astype(np.float32)             # noqa: E731  (B,) -> (B, 1, 1)
    gx = (u[None, None, :] + col(offset[:, 1])) * to_unit - 1 - col(centre[:, 0])   # (B, 1, 3W)
    gy = 1 - (u[None, :, None] + col(offset[:, 0])) * to_unit - col(centre[:, 1])   # (B, 3W, 1), y up
    cos, sin, inv_r = col(np.cos(theta)), col(np.sin(theta)), col(1 / r)
    x = (cos * inv_r) * gx + (sin * inv_r) * gy                      # shape frame: R(-theta) (p - centre) / r
    y = (-sin * inv_r) * gx + (cos * inv_r) * gy                     # (B, 3W, 3W)
    return _pool(SHAPES[name](x, y))                                 # (B, W, W)


def _windows(a: Array, w: int) -> Array:
    """Writeable view (..., P - w + 1, P - w + 1, w, w) of every w x w window of a (..., P, P): indexing it
    with (rows, cols) arrays gathers whole windows at once, and assigning to it writes them back."""
    return np.lib.stride_tricks.sliding_window_view(a, (w, w), axis=(-2, -1), writeable=True)


def _candidates(rng: np.random.Generator, c: int, t: int, k: int, bg: Array) -> dict[str, Array]:
    """t rounds of one candidate object for each of c scenes (arrays (t, c, ...)): class among k,
    radius, centre, rotation, and a colour that contrasts with the scene's background bg (c, 3)."""
    r = rng.uniform(*R_RANGE, (t, c))                                # radius (fraction of half-width)
    return {"cls": rng.integers(0, k, (t, c)), "r": r,
            "centre": rng.uniform(-1, 1, (t, c, 2)) * (1 - r[..., None]),  # the unit disc stays inside
            "theta": rng.uniform(0, 2 * np.pi, (t, c)),
            "fg": _contrast_against(np.tile(bg, (t, 1)), rng.random((t * c, 3)), rng.random(t * c)).reshape(t, c, 3)}


def _place(cand: dict[str, Array], want: Array, names: tuple[str, ...], size: int, min_visible: float,
           hi: int) -> dict[str, Array]:
    """Try the candidates round by round; keep one where every object of its scene (old and new) still
    shows >= min_visible of its own area. Returns, for the m = len(want) scenes: count (m,), labels and
    colours (m, hi[, 3]), cover (m, hi, W, W) coverage windows at corner (m, hi, 2) (row, col), and
    owner (m, S, S) int8: the object each pixel shows (-1 background)."""
    m, S, W = want.shape[0], size, _window(size)
    pad = W // 2 + 2                                                 # every window fits in the padded map
    owner = np.full((m, S + 2 * pad, S + 2 * pad), -2, np.int8)      # -2 outside the image, -1 background
    owner[:, pad:pad + S, pad:pad + S] = -1
    owner_win = _windows(owner, W)                                   # (m, P', P', W, W)
    count = np.zeros(m, np.int64)
    area = np.zeros((m, hi), np.int64)                               # own area of each object (pixels)
    visible = np.zeros((m, hi), np.int64)                            # ... and how much of it still shows
    out: dict[str, Array] = {"labels": np.zeros((m, hi), np.int64), "colours": np.zeros((m, hi, 3)),
           "cover": np.zeros((m, hi, W, W), np.float32), "corner": np.zeros((m, hi, 2), np.int64)}
    per = max(1, BATCH_SUBPIXELS // (SUPERSAMPLE * W) ** 2)          # objects per rendering batch
    for j in range(cand["cls"].shape[0]):
        need = np.flatnonzero(count < want)
        if need.size == 0:
            break
        # colour first (cheap): far enough from the colours of the scene's objects so far
        dist = np.linalg.norm(out["colours"][need] - cand["fg"][j, need, None], axis=-1)   # (B, hi)
        dist[np.arange(hi)[None, :] >= count[need, None]] = np.inf
        need = need[dist.min(axis=1) >= MIN_COLOUR_DISTANCE]
        if need.size == 0:
            continue
        px = (cand["centre"][j, need] * [1, -1] + 1) * (S / 2)       # (B, 2) centre in pixels (x right, y down)
        off = np.floor(px[:, ::-1]).astype(np.int64) - W // 2        # (B, 2) window's top-left (row, col)
        cls = cand["cls"][j, need]
        cov = np.empty((need.size, W, W), np.float32)
        for label in np.unique(cls):
            idx = np.flatnonzero(cls == label)
            for s in range(0, idx.size, per):
                b, q = idx[s:s + per], need[idx[s:s + per]]
                cov[b] = _local_coverage(names[label], cand["centre"][j, q], cand["theta"][j, q], cand["r"][j, q],
                                         off[b], S, W)
        win = owner_win[need, off[:, 0] + pad, off[:, 1] + pad]      # (B, W, W) what the window shows now
        mask = (cov >= 0.5) & (win != -2)                            # the candidate's pixels inside the image
        a = mask.sum(axis=(1, 2))
        hidden = np.stack([(mask & (win == k)).sum(axis=(1, 2)) for k in range(hi)], axis=1)  # (B, hi)
        left = visible[need] - hidden                                # what each object would still show
        ok = (a >= MIN_AREA) & np.all(left >= min_visible * area[need], axis=1)
        keep, slot, off = need[ok], count[need[ok]], off[ok]
        visible[keep] = left[ok]
        visible[keep, slot] = area[keep, slot] = a[ok]
        out["labels"][keep, slot] = cls[ok]
        out["colours"][keep, slot] = cand["fg"][j, keep]
        out["cover"][keep, slot] = cov[ok]
        out["corner"][keep, slot] = off
        owner_win[keep, off[:, 0] + pad, off[:, 1] + pad] = np.where(mask[ok], slot[:, None, None], win[ok])
        count[keep] += 1
    return {**out, "count": count, "owner": owner[:, pad:pad + S, pad:pad + S]}


def _paint(base: Array, placed: dict[str, Array]) -> Array:
    """Paint the placed objects over the backgrounds base (m, 3, S, S), in order:
    x <- x + alpha (fg - x) inside each object's coverage window (in place; returns base)."""
    m, _, S, _ = base.shape
    W = placed["cover"].shape[-1]
    pad = W // 2 + 2
    img = np.zeros((m, 3, S + 2 * pad, S + 2 * pad), np.float32)
    img[:, :, pad:pad + S, pad:pad + S] = base
    img_win = _windows(img, W)                                       # (m, 3, P', P', W, W)
    for k in range(placed["cover"].shape[1]):
        has = np.flatnonzero(placed["count"] > k)
        if has.size == 0:
            break
        rows, cols = placed["corner"][has, k, 0] + pad, placed["corner"][has, k, 1] + pad
        x = img_win[has, :, rows, cols]                              # (B, 3, W, W)
        fg = placed["colours"][has, k, :, None, None].astype(np.float32)
        x += placed["cover"][has, k, None] * (fg - x)
        img_win[has, :, rows, cols] = x
    base[:] = img[:, :, pad:pad + S, pad:pad + S]
    return base


def _render_chunk(seed: int, index: int, m: int, size: int, names: tuple[str, ...], objects: tuple[int, int],
                  min_visible: float, noise: float, texture: bool) -> dict[str, Array]:
    """The first m scenes of chunk `index`: images (m, 3, S, S) float32, owner (m, S, S) int8 (the object
    each pixel shows, -1 background), count (m,) and labels (m, hi) of the objects."""
    lo, hi = objects
    rng = np.random.default_rng([seed, index, _STREAM])
    # Every draw is made for the full chunk, in a fixed order, whatever m is.
    want = rng.integers(lo, hi + 1, CHUNK)                           # objects per scene, uniform in lo..hi
    bg = rng.random((CHUNK, 3))
    tex_params = _texture_params(rng, CHUNK)
    cand = _candidates(rng, CHUNK, ROUNDS_PER_OBJECT * hi, len(names), bg)
    placed = _place(cand, want[:m], names, size, min_visible, hi)
    short = np.flatnonzero(placed["count"] < lo)
    if short.size:
        raise RuntimeError(f"could not place {lo} objects with min_visible={min_visible} in scene "
                           f"{index * CHUNK + short[0]} after {ROUNDS_PER_OBJECT * hi} tries; "
                           f"lower min_visible or objects")
    img = np.empty((m, 3, size, size), np.float32)                   # background (+ texture)
    img[:] = bg[:m, :, None, None]
    if texture:
        img += _texture(tex_params, m, size)[:, None]
    _paint(img, placed)
    if noise > 0:
        z = np.random.default_rng([seed, index, _STREAM, 1]).standard_normal(img.shape, dtype=np.float32)
        z *= noise
        img += z
    np.clip(img, 0, 1, out=img)
    return {"images": img, "owner": placed["owner"], "count": placed["count"], "labels": placed["labels"]}


def _targets(owner: Array, count: Array, labels: Array) -> tuple[Array, Array, Array]:
    """From owner maps (m, S, S) (-1 background) and labels (m, hi): instance masks (m, hi, S, S) bool,
    boxes (m, hi, 4) float32 (x1, y1, x2, y2) of each visible mask, semantic (m, S, S) int64."""
    m, S, _ = owner.shape
    hi = labels.shape[1]
    inst = owner[:, None] == np.arange(hi, dtype=np.int8)[None, :, None, None]   # (m, hi, S, S)
    cols, rows = inst.any(axis=2), inst.any(axis=3)                  # (m, hi, S): columns / rows it covers
    x1, y1 = cols.argmax(axis=-1), rows.argmax(axis=-1)              # first True
    x2, y2 = S - cols[..., ::-1].argmax(axis=-1), S - rows[..., ::-1].argmax(axis=-1)   # last True + 1
    boxes = np.stack([x1, y1, x2, y2], axis=-1).astype(np.float32)
    top = np.take_along_axis(labels, np.maximum(owner, 0).reshape(m, -1).astype(np.int64), axis=1)
    semantic = np.where(owner >= 0, top.reshape(m, S, S) + 1, 0)     # c + 1 where class c shows, 0 background
    return inst, boxes, semantic


def _check_objects(objects: object) -> tuple[int, int]:
    """(lo, hi) with 1 <= lo <= hi <= MAX_OBJECTS, or a ValueError that says so."""
    pair = tuple(objects) if isinstance(objects, (tuple, list)) else ()
    if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)
            or not 1 <= pair[0] <= pair[1] <= MAX_OBJECTS):
        raise ValueError(f"objects must be a pair (lo, hi) of ints with 1 <= lo <= hi <= {MAX_OBJECTS} "
                         f"(objects per scene), got {objects!r}")
    return int(pair[0]), int(pair[1])


def generate_scenes(n: int, *, size: int = 64, seed: int = 0, family: str = "basic",
                    objects: tuple[int, int] = (1, 4), min_visible: float = 0.6, noise: float = 0.05,
                    texture: bool = True) -> Scenes:
    """Generate n multi-object scenes with boxes, labels, instance and semantic masks.

    Inputs:
    - n: number of scenes N (>= 0)
    - size: image height = width S in pixels (>= 32)
    - seed: the scenes are a deterministic function of the seed; prefixes agree across n
    - family: "basic" or "extra" (10 classes each, ``shapes.class_names(family)``)
    - objects: (lo, hi), each scene holds k objects, k uniform in lo..hi (1 <= lo <= hi <= 6)
    - min_visible: every object shows at least this fraction of its own area (in (0, 1]); a scene
      that has no room for another object (rare; many objects with min_visible near 1) keeps fewer,
      and a RuntimeError says so if that is fewer than lo
    - noise: std of additive Gaussian pixel noise (>= 0), before clipping to [0, 1]
    - texture: smooth random variation (gradient, stripes, blobs) on the background

    Returns a :class:`Scenes`: images (N, 3, S, S) float32 in [0, 1]; per scene boxes (k, 4)
    float32 (x1, y1, x2, y2), labels (k,) int64, instance_masks (k, S, S) bool (visible parts,
    in painting order); semantic (N, S, S) int64 (0 background, c + 1 class c).

    >>> s = generate_scenes(8, seed=0)
    >>> s.images.shape, s.semantic.shape, s.boxes[0].shape[1]
    (torch.Size([8, 3, 64, 64]), torch.Size([8, 64, 64]), 4)
    """
    n = _check_int("n", n, 0)
    size = _check_int("size", size, MIN_SIZE)
    seed = _check_int("seed", seed, 0)
    _check_choice("family", family, tuple(FAMILIES))
    lo, hi = _check_objects(objects)
    if isinstance(min_visible, bool) or not isinstance(min_visible, numbers.Real) or not 0 < min_visible <= 1:
        raise ValueError(f"min_visible must be a number in (0, 1] (the fraction of each object left visible), "
                         f"got {min_visible!r}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 <= noise < np.inf:
        raise ValueError(f"noise must be a finite number >= 0 (a pixel std), got {noise!r}")

    images = torch.empty((n, 3, size, size), dtype=torch.float32)
    semantic = torch.empty((n, size, size), dtype=torch.long)
    boxes: list[Tensor] = []
    labels: list[Tensor] = []
    masks: list[Tensor] = []
    for index, start in enumerate(range(0, n, CHUNK)):
        stop = min(start + CHUNK, n)
        out = _render_chunk(seed, index, stop - start, size, FAMILIES[family], (lo, hi), float(min_visible),
                            float(noise), bool(texture))
        inst, box, sem = _targets(out["owner"], out["count"], out["labels"])
        images[start:stop] = torch.from_numpy(out["images"])
        semantic[start:stop] = torch.from_numpy(sem)
        inst_t, box_t, lab_t = torch.from_numpy(inst), torch.from_numpy(box), torch.from_numpy(out["labels"])
        for i, k in enumerate(out["count"].tolist()):
            boxes.append(box_t[i, :k])
            labels.append(lab_t[i, :k])
            masks.append(inst_t[i, :k])
    name = "scenes" if family == "basic" else f"scenes-{family}"
    return Scenes(images, boxes, labels, masks, semantic, class_names(family), name=name)


# ---------------------------------------------------------------- drawing
def _ink(colour: str) -> str:
    """Black or white text, whichever reads better on `colour` (relative luminance above 0.4: black)."""
    from matplotlib.colors import to_rgb

    return "black" if float(np.dot(to_rgb(colour), [0.2126, 0.7152, 0.0722])) > 0.4 else "white"


def draw(image: Tensor | Array, boxes: Tensor | Array, labels: Tensor | Array | None = None,
         scores: Tensor | Array | None = None, classes: Sequence[str] | None = None, *,
         masks: Tensor | Array | None = None, ax: Any = None, title: str | None = None,
         linestyle: str = "-", linewidth: float = 1.8, fontsize: float = 7.0, tags: bool = True) -> Any:
    """Draw an image with boxes (and class names, scores, instance masks) over it; returns the Axes.

    image: (3, H, W) or (H, W) in [0, 1]; boxes: (k, 4) (x1, y1, x2, y2) pixels, x2 = last column + 1;
    labels: (k,) class indices (a box's colour is CLASS_COLOURS[label]); scores: (k,) in [0, 1],
    printed in each box's tag; classes: names for the labels; masks: (k, H, W) bool, overlaid in the
    box colours. ``linestyle="--"`` tells ground truth from predictions when both are drawn (with
    ``tags=False`` for one of them, so the class/score tags do not cover each other).
    """
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    from .plotting import PALETTE, styled

    arr = lambda v: v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)  # noqa: E731
    img = arr(image).astype(np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image must be (3, H, W) or (H, W), got shape {arr(image).shape}")
    h, w = img.shape[:2]
    b = arr(boxes).astype(np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (k, 4) as (x1, y1, x2, y2), got shape {b.shape}")
    k = b.shape[0]
    lab = None if labels is None else arr(labels).astype(np.int64).reshape(-1)
    sc = None if scores is None else arr(scores).astype(np.float64).reshape(-1)
    for what, v in (("labels", lab), ("scores", sc)):
        if v is not None and v.shape[0] != k:
            raise ValueError(f"{what} must have one entry per box ({k}), got {v.shape[0]}")
    if lab is not None and classes is not None and k and not 0 <= lab.min() <= lab.max() < len(classes):
        raise ValueError(f"labels must be class indices in [0, {len(classes)}), got {lab.tolist()}")
    colours = [CLASS_COLOURS[v % len(CLASS_COLOURS)] for v in lab] if lab is not None else [PALETTE[0]] * k

    with styled():
        if ax is None:
            _, ax = plt.subplots(figsize=(3, 3 * h / w), layout="constrained")
        ax.imshow(img.clip(0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        if masks is not None:
            mk = arr(masks).astype(bool)
            if mk.shape != (k, h, w):
                raise ValueError(f"masks must be (k, H, W) = {(k, h, w)}, got {mk.shape}")
            overlay = np.zeros((h, w, 4), np.float32)
            for i in range(k):
                overlay[mk[i]] = (*to_rgb(colours[i]), 0.55)
            ax.imshow(overlay)
        halo = [pe.withStroke(linewidth=linewidth + 1.6, foreground="black", alpha=0.7)]
        for i in range(k):
            x1, y1, x2, y2 = b[i]
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colours[i],
                                   linewidth=linewidth, linestyle=linestyle, path_effects=halo))
            parts = []
            if lab is not None:
                parts.append(classes[lab[i]] if classes is not None else str(lab[i]))
            if sc is not None:
                parts.append(f"{sc[i]:.2f}")
            if parts and tags:
                above = y1 > 0.12 * h                                # room above the box for the tag
                ax.text(x1 - 0.5, y1 - 0.5, " ".join(parts), fontsize=fontsize, color=_ink(colours[i]),
                        va="bottom" if above else "top", ha="left", clip_on=True,
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": colours[i], "edgecolor": "none",
                              "alpha": 0.9})
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
        if title:
            ax.set_title(title, fontsize=9)
    return ax


def _objects(k: int) -> str:
    return f"{k} object" if k == 1 else f"{k} objects"


def show(scenes: Scenes, indices: Sequence[int] | None = None, *, ncols: int = 4, masks: bool = False,
         scale: float = 2.2, title: str | None = None) -> Any:
    """A grid of scenes with their ground-truth boxes and class tags (and instance masks); returns the Figure.

    indices: which scenes (default: the first min(8, N)).
    """
    from .plotting import image_grid

    if not isinstance(scenes, Scenes):
        raise ValueError(f"show expects a Scenes dataset, got {type(scenes).__name__}")
    rows = list(range(min(8, len(scenes)))) if indices is None else [int(i) for i in indices]
    if not rows:
        raise ValueError("show needs at least one scene")
    fig, axes = image_grid(len(rows), ncols, scale=scale, title_lines=1, title_size=9, title=title)
    for ax, i in zip(axes, rows, strict=True):
        image, target = scenes[i]
        draw(image, target["boxes"], target["labels"], classes=scenes.classes, ax=ax,
             masks=target["masks"] if masks else None, title=f"scene {i}: {_objects(len(target['labels']))}")
    return fig
