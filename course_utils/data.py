"""Datasets, offline by default: generated shapes, bundled digits, faces and photos.

Every image is a float32 tensor in [0, 1], laid out (C, H, W); a batch is
(N, C, H, W). Normalization is not applied here: it is a layer of the model
(:class:`Normalize`), so that attacks and saliency maps work in pixel space.

Offline datasets (no network, ever):

=================  =============================================================
``shapes``         generated geometric shapes with per-pixel object masks
                   (:mod:`course_utils.shapes`), 10 classes, 32x32 RGB
``shapes-extra``   ten other shapes, for transfer-learning experiments
``scenes``         generated 64x64 scenes of one to four shapes with boxes, labels,
                   instance and semantic masks (:mod:`course_utils.scenes`), for
                   detection and segmentation (a :class:`~course_utils.scenes.Scenes`)
``digits``         scikit-learn's bundled 8x8 handwritten digits (1,797 images)
``faces``          scikit-image's bundled 25x25 face / non-face set (200 images)
=================  =============================================================

Opt-in internet datasets through torchvision (``download=True`` the first
time): ``mnist``, ``fashion-mnist``, ``cifar10``. When one is neither cached
nor downloadable, the error says so and names the offline alternative.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from . import fastmode, scenes, shapes
from .seeding import COURSE_SEED, torch_generator

__all__ = [
    "ImageSet", "Splits", "OFFLINE", "ONLINE", "available", "load", "photos", "split",
    "channel_stats", "Normalize", "make_loader", "make_loaders", "data_root",
]

OFFLINE = ("shapes", "shapes-extra", "scenes", "digits", "faces")
ONLINE = ("mnist", "fashion-mnist", "cifar10")

# What to use instead when an internet dataset cannot be had.
_ALTERNATIVE = {"mnist": "digits", "fashion-mnist": "shapes", "cifar10": "shapes"}


@dataclass(eq=False)
class ImageSet(Dataset):
    """Images with labels (and object masks where the data has them).

    images: (N, C, H, W) float32 in [0, 1]
    labels: (N,) int64 class indices into ``classes``
    masks:  (N, H, W) bool, True on the object's pixels, or None
    transform: optional callable applied to the images of each item or batch

    Indexing with an int gives ``(image, label)``; with a list or tensor of
    indices it gives a whole batch ``(images, labels)`` in one step, which is
    what :func:`make_loader` uses (much faster than collating single images).
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    masks: Tensor | None = None
    name: str = ""
    transform: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if self.labels.shape != (n,):
            raise ValueError(f"labels must be ({n},) to match {n} images, got {tuple(self.labels.shape)}")
        if self.masks is not None and self.masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"masks must be (N, H, W) = {(n, *self.images.shape[2:])}, "
                             f"got {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        image, label = self.images[index], self.labels[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        masks = ", with masks" if self.masks is not None else ""
        return f"ImageSet({self.name!r}: {n} images of {c}x{h}x{w}, {len(self.classes)} classes{masks})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageSet:
        """A new ImageSet with the given rows (images, labels and masks alike)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        masks = self.masks[index] if self.masks is not None else None
        return replace(self, images=self.images[index], labels=self.labels[index], masks=masks)


class Splits(NamedTuple):
    train: ImageSet
    val: ImageSet
    test: ImageSet


def available() -> dict[str, str]:
    """Dataset names and whether each needs the internet."""
    names = {name: "offline" for name in OFFLINE}
    names.update({name: "internet (opt-in, download=True)" for name in ONLINE})
    return names


def data_root() -> Path:
    """Where opt-in downloads are kept: ``$COURSE_DATA`` or ``data/`` in the course folder."""
    return Path(os.environ.get("COURSE_DATA", Path(__file__).resolve().parent.parent / "data"))


def _check_n(n: int | None, default: int) -> int:
    if n is None:
        return default
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of images), got {n!r}")
    return n


def _resize(images: Tensor, size: int | None) -> Tensor:
    """Resize (N, C, H, W) images to (N, C, size, size) with antialiased bilinear sampling."""
    if size is None or size == images.shape[-1] == images.shape[-2]:
        return images
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (pixels per side), got {size!r}")
    out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def _shapes(n, size, seed, family, **kwargs) -> ImageSet:
    images, labels, masks = shapes.generate(n, size=32 if size is None else size, seed=seed,
                                            family=family, **kwargs)
    name = "shapes" if family == "basic" else f"shapes-{family}"
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), shapes.class_names(family),
                    masks=torch.from_numpy(masks), name=name)


def _digits(n, size) -> ImageSet:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8), 0..16 -> [0, 1]
    labels = torch.from_numpy(bunch.target).long()
    data = ImageSet(_resize(images, size), labels, [str(d) for d in range(10)], name="digits")
    return data.subset(range(min(n, len(data))))


def _faces(n, size) -> ImageSet:
    from skimage.data import lfw_subset

    faces = torch.from_numpy(lfw_subset()).float().unsqueeze(1)  # (200, 1, 25, 25): 100 faces, then 100 others
    labels = torch.cat([torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)])
    # Interleave so that any prefix holds both classes.
    order = torch.stack([torch.arange(100), torch.arange(100, 200)], dim=1).flatten()
    data = ImageSet(_resize(faces[order], size), labels[order], ["non-face", "face"], name="faces")
    return data.subset(range(min(n, len(data))))


def _torchvision(name: str, n: int | None, size: int | None, train: bool, download: bool) -> ImageSet:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    root = data_root()
    try:
        ds = cls(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # not cached, or the download failed (no network)
        how = ("the download failed" if download else
               "it is not in the cache and download=False (pass download=True to fetch it)")
        raise RuntimeError(
            f"Cannot load {name!r}: {how}. Looked in {root} (set COURSE_DATA to change). "
            f"The offline alternative is load({_ALTERNATIVE[name]!r}), which needs no network. "
            f"[{type(err).__name__}: {err}]"
        ) from err
    data = torch.as_tensor(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST-style (N, H, W) uint8
        images = data.unsqueeze(1)
    else:  # CIFAR-style (N, H, W, C) uint8
        images = data.permute(0, 3, 1, 2)
    images = images.float().div_(255.0)
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    count = len(labels) if n is None else min(n, len(labels))
    return ImageSet(_resize(images[:count], size), labels[:count], list(ds.classes), name=name)


@overload
def load(name: Literal["scenes"], *, n: int | None = None, size: int | None = None, seed: int = COURSE_SEED,
         train: bool = True, download: bool = False, **kwargs) -> scenes.Scenes: ...
@overload
def load(name: str, *, n: int | None = None, size: int | None = None, seed: int = COURSE_SEED,
         train: bool = True, download: bool = False, **kwargs) -> ImageSet: ...
def load(name: str, *, n: int | None = None, size: int | None = None, seed: int = COURSE_SEED,
         train: bool = True, download: bool = False, **kwargs) -> ImageSet | scenes.Scenes:
    """Load a dataset by name (see :func:`available`).

    n:        number of images. For ``shapes`` the default is 10,000 (1,000 in
              fast mode), for ``scenes`` 2,000 (300 in fast mode); the bundled
              sets default to all of them.
    size:     side length in pixels; images are generated or resized to it
              (``scenes``: 64 by default, at least 32).
    seed:     generator seed (``shapes`` and ``scenes`` only; the other sets are fixed).
    train:    the training or test part of an internet dataset.
    download: allow an internet dataset to be downloaded into :func:`data_root`.
    kwargs:   passed to :func:`course_utils.shapes.generate` (``style``, ``noise``, ``texture``),
              or for ``scenes`` to :func:`course_utils.scenes.generate_scenes` (``family``,
              ``objects``, ``min_visible``, ``noise``, ``texture``).

    ``scenes`` returns a :class:`course_utils.scenes.Scenes` (boxes, labels, instance and
    semantic masks per image) instead of an :class:`ImageSet`.
    """
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    if key not in OFFLINE + ONLINE:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(OFFLINE + ONLINE)} "
                         f"(offline: {list(OFFLINE)})")
    if kwargs and not key.startswith(("shapes", "scenes")):
        raise TypeError(f"{sorted(kwargs)} only apply to the shapes datasets and to scenes, not {name!r}")
    if key == "scenes":
        return scenes.generate_scenes(_check_n(n, fastmode.size(2_000, 300)), size=64 if size is None else size,
                                      seed=seed, **kwargs)
    if key.startswith("shapes"):
        family = "basic" if key == "shapes" else "extra"
        return _shapes(_check_n(n, fastmode.size(10_000, 1_000)), size, seed, family, **kwargs)
    if key == "digits":
        return _digits(_check_n(n, 1797), size)
    if key == "faces":
        return _faces(_check_n(n, 200), size)
    return _torchvision(key, None if n is None else _check_n(n, 0), size, train, download)


# Photographs bundled with scikit-image and scikit-learn, for filters and saliency demos.
_SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel")
_SKLEARN_PHOTOS = ("china", "flower")
PHOTOS = _SKIMAGE_PHOTOS + _SKLEARN_PHOTOS


def photos(names: Sequence[str] | None = None, size: int | None = None,
           gray: bool = False) -> dict[str, Tensor]:
    """Bundled photographs as (C, H, W) float tensors in [0, 1] (C = 3, or 1 with ``gray``).

    ``size`` resizes the shorter side to that many pixels (keeping the aspect ratio).
    """
    names = list(PHOTOS if names is None else names)
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown photo(s) {unknown}; expected some of {list(PHOTOS)}")
    out = {}
    for name in names:
        if name in _SKIMAGE_PHOTOS:
            import skimage.data

            array = getattr(skimage.data, name)()
        else:
            from sklearn.datasets import load_sample_image

            array = load_sample_image(f"{name}.jpg")
        image = torch.from_numpy(np.asarray(array, dtype=np.float32) / 255.0)
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)  # (C, H, W)
        if gray and image.shape[0] == 3:
            image = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)  # ITU-R 601 luma
        elif not gray and image.shape[0] == 1:
            image = image.expand(3, -1, -1).clone()
        if size is not None:
            h, w = image.shape[1:]
            scale = size / min(h, w)
            image = F.interpolate(image[None], size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                  mode="bilinear", antialias=True, align_corners=False)[0].clamp_(0, 1)
        out[name] = image
    return out


def split(data: ImageSet, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = COURSE_SEED) -> Splits:
    """Shuffle once (with ``seed``) and cut into train / validation / test parts."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) that sum to 1, "
                         f"got {tuple(fractions)}")
    n = len(data)
    order = torch.randperm(n, generator=torch_generator(seed))
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    if n_train == 0 or (fractions[1] > 0 and n_val == 0) or (fractions[2] > 0 and n - n_train - n_val <= 0):
        raise ValueError(f"{n} images are too few to split into fractions {tuple(fractions)}")
    cuts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return Splits(*(data.subset(idx) for idx in cuts))


def channel_stats(data: ImageSet | Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation, each (C,), over all images and pixels.

    Compute them on the training split only, and pass them to :class:`Normalize`.
    """
    images = data.images if isinstance(data, ImageSet) else data
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected a non-empty (N, C, H, W) tensor or ImageSet, got {shape}")
    images = images.double()
    return images.mean(dim=(0, 2, 3)).float(), images.std(dim=(0, 2, 3)).float()


class Normalize(nn.Module):
    """The first layer of a course model: x -> (x - mean) / std, per channel.

    Keeping normalization inside the model lets inputs stay in [0, 1] pixel space.
    mean, std: (C,) tensors or sequences; input (N, C, H, W) -> output (N, C, H, W).
    """

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != std.shape:
            raise ValueError(f"mean and std must have one value per channel each, got {mean.numel()} and "
                             f"{std.numel()}")
        if (std <= 0).any():
            raise ValueError(f"std must be positive, got {std.tolist()}")
        self.register_buffer("mean", mean.view(-1, 1, 1))
        self.register_buffer("std", std.view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Normalize expects (N, {self.mean.shape[0]}, H, W) input, got {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def make_loader(data: Dataset, batch_size: int = 128, shuffle: bool = False, *,
                device: torch.device | str | None = None, seed: int = COURSE_SEED,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader that works on CPU and CUDA.

    For an :class:`ImageSet` (tensors in memory) it fetches whole batches at once
    and uses no worker processes, which is fastest for small images. Memory is
    pinned only when batches go to a CUDA device (it only helps there).
    Shuffling uses its own seeded generator, so the order is repeatable.
    :class:`~course_utils.scenes.Scenes` batches come as (images (B, 3, H, W), list of
    B target dicts), see :func:`course_utils.scenes.collate`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    pin = device is not None and torch.device(device).type == "cuda"
    generator = torch_generator(seed)
    if isinstance(data, ImageSet):
        sampler = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(data, sampler=batches, batch_size=None, pin_memory=pin)
    if isinstance(data, scenes.Scenes):  # (images (B, 3, H, W), list of B target dicts)
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last, pin_memory=pin, collate_fn=scenes.collate)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, pin_memory=pin)


def make_loaders(splits: Splits, batch_size: int = 128, *, device: torch.device | str | None = None,
                 seed: int = COURSE_SEED) -> dict[str, DataLoader]:
    """Loaders for each split: the training one shuffles, validation and test do not."""
    return {name: make_loader(part, batch_size, shuffle=(name == "train"), device=device, seed=seed)
            for name, part in splits._asdict().items()}
