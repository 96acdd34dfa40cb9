"""Course checkpoints: "pretrained" models made by the course itself, offline.

There is no internet when the course runs, so the course trains its own source
models, the way a lab would: a script in the repository trains each one on
course data with a fixed seed and writes two files into ``course_utils/checkpoints/``:

- ``NAME.pt``   the trained ``state_dict`` (nothing else: no pickled code);
- ``NAME.json`` its manifest: the SHA-256 and size of the ``.pt``, the parameter
  count, the architecture and a digest of the state_dict's (key, shape) list,
  the class names, the validation and test accuracy, the full training recipe
  (data, split, batch size, optimizer, schedule, epochs, seed, threads) and how
  the build went (seconds, device, machine load, torch/torchvision versions, date).

Both are committed. ``load(NAME)`` checks the file's hash against the manifest
(a changed or corrupt file fails clearly) and the architecture against the code
(missing, unexpected and wrong-shape keys are listed), then returns the model
in eval mode on the course's device.

Rebuild a checkpoint (``shapes_resnet``: about 1.5 minutes on a busy 2-core CPU)::

    python -m course_utils.pretrained build shapes_resnet     # or: make checkpoints
    python -m course_utils.pretrained verify                  # hashes and architectures
    python -m course_utils.pretrained list

Reproducibility: the build is seeded end to end and trains on one CPU thread
(the recipe fixes it), so on the same machine with the same software a rebuild
repeats the same run, bit for bit. On another CPU, torch version or device,
floating-point sums run in other orders, so the weights and their hash differ;
what is reproduced is the recorded test accuracy, within 2 percentage points
(``tests/heavy/test_pretrained_rebuild.py`` rebuilds and checks both).

ImageNet weights of torchvision's models are the opt-in path through the same
loader: ``load("resnet18_imagenet")`` uses torchvision's weights when they are in
torch's hub cache (``torch.hub.get_dir()``) and downloads them only with
``download=True``; otherwise the error says how to get them and names the
offline alternative, ``"shapes_resnet"``. Every model returned here takes
images in [0, 1]: normalization is its first layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..device import get_device
from . import _course, _imagenet
from ._course import CHECKPOINTS, CheckpointError, architecture_digest
from .models import ShapesResNet

__all__ = ["names", "architecture", "load", "info", "build", "verify", "CheckpointError", "CHECKPOINTS",
           "ShapesResNet", "architecture_digest", "COURSE", "IMAGENET"]

COURSE = tuple(_course.SPECS)          # course checkpoints, offline
IMAGENET = tuple(_imagenet.SPECS)      # torchvision's ImageNet weights, opt-in


def names() -> list[str]:
    """The loadable names: course checkpoints first, then the ImageNet opt-ins."""
    return [*COURSE, *IMAGENET]


def _check_name(name: str) -> str:
    if name not in COURSE + IMAGENET:
        raise ValueError(f"unknown checkpoint {name!r}; expected one of {names()} "
                         f"(offline: {list(COURSE)})")
    return name


def architecture(name: str, num_classes: int | None = None, *, seed: int | None = None) -> nn.Module:
    """The model of checkpoint ``name`` with fresh, seeded random weights (train mode, on the CPU).

    num_classes: outputs of the head (default: the checkpoint's own, 10 for ``shapes_resnet``).
    seed:        seeds the initialization (default: the recipe's seed; the course seed for the
                 ImageNet names), without touching torch's global random state.
    Inputs are (N, 3, H, W) in [0, 1]; ``shapes_resnet`` normalizes with neutral statistics
    (mean 0.5, std 0.25) until trained weights are loaded.
    """
    if _check_name(name) in COURSE:
        return _course.architecture(name, num_classes, seed=seed)
    return _imagenet.architecture(name, num_classes, seed=seed)


def load(name: str, *, device: torch.device | str | None = None, download: bool = False,
         directory: str | Path | None = None) -> nn.Module:
    """The trained model ``name`` in eval mode, on ``device`` (default: :func:`course_utils.device.get_device`).

    Course checkpoints (``shapes_resnet``) are read from ``directory`` (default ``course_utils/checkpoints``)
    and checked: the file exists (FileNotFoundError naming the build command), its SHA-256 equals the
    manifest's and its keys and shapes match the architecture (:class:`CheckpointError` otherwise).
    ImageNet names use torch's hub cache; ``download=True`` allows fetching the weights.
    The model carries its class names as ``model.classes``.
    """
    device = torch.device(device) if device is not None else get_device(verbose=False)
    if _check_name(name) in COURSE:
        if download:
            raise ValueError(f"{name!r} is a course checkpoint: it is built, not downloaded "
                             f"(python -m course_utils.pretrained build {name})")
        model: nn.Module = _course.load(name, directory)
    else:
        model = _imagenet.load(name, download=download)
    return model.to(device).eval()


def info(name: str, *, directory: str | Path | None = None) -> dict[str, Any]:
    """What is known about checkpoint ``name`` without loading it.

    Course checkpoints: their manifest (``NAME.json``: sha256, size_bytes, parameters, architecture,
    classes, accuracy, recipe, build). ImageNet names: torchvision's metadata for the weights, the file's
    place in the hub cache and whether it is there.
    """
    if _check_name(name) in COURSE:
        return _course.manifest(name, directory)
    return _imagenet.info(name)


def build(name: str, *, out_dir: str | Path | None = None, device: torch.device | str | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train course checkpoint ``name`` with its recipe; write ``NAME.pt`` and ``NAME.json``; return the manifest.

    out_dir: where to write (default ``course_utils/checkpoints``, replacing the committed files).
    device:  where to train (default: the CPU, like the committed files; ``"cuda"`` is faster, and gives
             other weights with an accuracy within the same tolerance).
    """
    if _check_name(name) not in COURSE:
        raise ValueError(f"{name!r} is torchvision's; only the course checkpoints {list(COURSE)} are built here")
    from ._build import build as _build_one

    return _build_one(name, out_dir=out_dir, device=device, progress=progress)


def verify(directory: str | Path | None = None) -> dict[str, str]:
    """Check every course checkpoint's hash and architecture: ``{name: "ok" or the problem}``."""
    report = {}
    for name in COURSE:
        try:
            _course.load(name, directory)
            report[name] = "ok"
        except (OSError, ValueError, CheckpointError) as err:  # missing, unreadable manifest, mismatch
            report[name] = str(err)
    return report
