"""The opt-in path: torchvision's ImageNet weights, used from torch's hub cache, downloaded only when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..seeding import COURSE_SEED
from .models import add_input_normalization

__all__ = ["SPECS", "architecture", "cached_file", "info", "load"]

# name -> (torchvision model name, weights enum member)
SPECS: dict[str, tuple[str, str]] = {
    "resnet18_imagenet": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50_imagenet": ("resnet50", "ResNet50_Weights.IMAGENET1K_V2"),
}
OFFLINE_ALTERNATIVE = "shapes_resnet"


def _weights(name: str):
    enum_name, member = SPECS[name][1].split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def cached_file(name: str) -> Path:
    """Where torch's hub cache keeps the weights of ``name`` (whether or not they are there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_weights(name).url).name


def _classes(weights) -> list[str]:
    return list(weights.meta["categories"])


def _with_normalization(model: nn.Module, weights) -> nn.Module:
    preprocess = weights.transforms()
    return add_input_normalization(model, preprocess.mean, preprocess.std)


def architecture(name: str, num_classes: int | None = None, *, seed: int | None = None) -> nn.Module:
    weights = _weights(name)
    num_classes = len(_classes(weights)) if num_classes is None else num_classes
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state is left as it was
        torch.manual_seed(COURSE_SEED if seed is None else seed)
        model = torchvision.models.get_model(SPECS[name][0], weights=None, num_classes=num_classes)
    model = _with_normalization(model, weights)
    model.classes = _classes(weights) if num_classes == len(_classes(weights)) else None  # type: ignore[assignment]
    return model


def _how_to_get(name: str) -> str:
    weights = _weights(name)
    return (f"load({name!r}, download=True) on a machine with internet, or copy {weights.url} into "
            f"{cached_file(name).parent} (torch's hub cache: torch.hub.get_dir(), set TORCH_HOME to move it)")


def load(name: str, *, download: bool = False) -> nn.Module:
    """torchvision's model with ImageNet weights, inputs in [0, 1], on the CPU (the caller sets eval and device)."""
    weights = _weights(name)
    path = cached_file(name)
    if not path.is_file() and not download:
        raise RuntimeError(
            f"the ImageNet weights of {name!r} ({SPECS[name][1]}) are not cached at {path} and download=False. "
            f"To get them: {_how_to_get(name)}. The offline alternative is "
            f"pretrained.load({OFFLINE_ALTERNATIVE!r}), the course's own checkpoint, which needs no network.")
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)  # reads the cache; fetches if absent
    except (OSError, RuntimeError, ValueError) as err:  # no network, or a broken download / cached file
        how = "the download failed" if not path.is_file() else f"the cached file {path} could not be read"
        raise RuntimeError(
            f"cannot load the ImageNet weights of {name!r}: {how} [{type(err).__name__}: {err}]. "
            f"To get them: {_how_to_get(name)}. The offline alternative is "
            f"pretrained.load({OFFLINE_ALTERNATIVE!r}), which needs no network.") from err
    model = torchvision.models.get_model(SPECS[name][0], weights=None)
    model.load_state_dict(state)
    model = _with_normalization(model, weights)
    model.classes = _classes(weights)  # type: ignore[assignment]
    return model


def info(name: str) -> dict[str, Any]:
    weights = _weights(name)
    meta = weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    preprocess = weights.transforms()
    return {
        "name": name,
        "source": "torchvision (opt-in: needs the weights in torch's hub cache, or download=True)",
        "architecture": {"name": SPECS[name][0], "weights": SPECS[name][1]},
        "parameters": meta.get("num_params"),
        "classes": len(meta["categories"]),
        "accuracy": {"imagenet_top1": metrics.get("acc@1"), "imagenet_top5": metrics.get("acc@5")},
        "normalize": {"mean": list(preprocess.mean), "std": list(preprocess.std)},
        "input": {"resize": list(preprocess.resize_size), "crop": list(preprocess.crop_size)},
        "url": weights.url,
        "file": str(cached_file(name)),
        "cached": cached_file(name).is_file(),
        "recipe": meta.get("recipe"),
        "offline_alternative": OFFLINE_ALTERNATIVE,
    }
