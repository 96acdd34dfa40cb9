"""The course's own checkpoints: specifications, manifests, checked loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import shapes
from .models import ShapesResNet

__all__ = ["CHECKPOINTS", "SPECS", "CheckpointError", "architecture", "architecture_digest", "manifest", "load",
           "sha256"]

#: Where the committed checkpoints live: ``course_utils/checkpoints/``.
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"

# name -> how to build the model and train it. The recipe is recorded in the manifest as it is here.
SPECS: dict[str, dict[str, Any]] = {
    "shapes_resnet": {
        "architecture": {"name": "ShapesResNet", "widths": [16, 32, 64], "blocks": [2, 2, 2],
                         "stem_stride": 2},
        "classes": shapes.class_names("basic"),
        "recipe": {
            "data": {"dataset": "shapes", "n": 30_000, "size": 32, "seed": 7,
                     "call": 'course_utils.data.load("shapes", n=30000, size=32, seed=7)',
                     "split": [0.8, 0.1, 0.1], "split_seed": 2024},
            "batch_size": 64,
            "augmentation": None,
            "optimizer": {"name": "AdamW", "lr": 3e-3, "weight_decay": 5e-4},
            "schedule": {"name": "OneCycleLR", "max_lr": 3e-3, "pct_start": 0.25, "step": "batch"},
            "epochs": 3,
            "seed": 2024,
            # One thread: the same arithmetic on every CPU build, and on a busy 2-core machine one thread
            # is much faster than two competing for the cores (measured at load 7: 0.05 vs 1-1.6 s a batch).
            "threads": 1,
        },
    },
}


class CheckpointError(RuntimeError):
    """A checkpoint file does not match its manifest or the architecture in the code."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def architecture_digest(state: dict[str, torch.Tensor] | nn.Module) -> str:
    """SHA-256 of the state_dict's ordered (key, shape) list: equal digests mean the same layout."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    layout = [[key, list(value.shape)] for key, value in state.items()]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()


def _directory(directory: str | Path | None) -> Path:
    return Path(directory) if directory is not None else CHECKPOINTS


def _build_command(name: str, folder: Path | None = None) -> str:
    out = f" --out {folder}" if folder is not None and folder.resolve() != CHECKPOINTS.resolve() else ""
    return f"python -m course_utils.pretrained build {name}{out}"


def _restore(path: Path) -> str:
    """How to get a committed file back, or "" for a file outside the course's checkpoint folder."""
    if path.parent.resolve() != CHECKPOINTS.resolve():
        return ""
    relative = path.resolve().relative_to(CHECKPOINTS.resolve().parent.parent)
    return f"restore the committed file with `git checkout {relative}`, or "


def architecture(name: str, num_classes: int | None = None, *, seed: int | None = None,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) -> ShapesResNet:
    spec = SPECS[name]
    classes = spec["classes"]
    num_classes = len(classes) if num_classes is None else num_classes
    seed = spec["recipe"]["seed"] if seed is None else seed
    config = spec["architecture"]
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state is left as it was
        torch.manual_seed(seed)
        return ShapesResNet(num_classes, widths=config["widths"], blocks=config["blocks"],
                            stem_stride=config["stem_stride"], mean=mean, std=std,
                            classes=classes if num_classes == len(classes) else None)


def manifest(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    path = _directory(directory) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"the manifest of checkpoint {name!r} is missing: {path}. To fix it, "
                                f"{_restore(path)}build the checkpoint with `{_build_command(name, path.parent)}` "
                                f"(a minute or two on a CPU).")
    try:
        with open(path) as file:
            meta = json.load(file)
    except ValueError as err:  # not JSON (e.g. a merge conflict)
        raise CheckpointError(f"the manifest {path} is not valid JSON ({err}). To fix it, {_restore(path)}"
                              f"rebuild with `{_build_command(name, path.parent)}`.") from err
    missing = [key for key in ("sha256", "classes", "architecture") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CheckpointError(f"the manifest {path} lacks {missing}. To fix it, {_restore(path)}"
                              f"rebuild with `{_build_command(name, path.parent)}`.")
    return meta


def _layout_problems(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> list[str]:
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes_ = [f"{key}: file {tuple(found[key].shape)}, architecture {tuple(value.shape)}"
               for key, value in expected.items() if key in found and found[key].shape != value.shape]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes_)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{title}: {shown}")
    return problems


def load(name: str, directory: str | Path | None = None) -> ShapesResNet:
    """The checked, trained model on the CPU (train mode: the caller sets eval and the device)."""
    folder = _directory(directory)
    path = folder / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {name!r} is missing: {path}. To fix it, {_restore(path)}build it "
                                f"with `{_build_command(name, folder)}` (a minute or two on a CPU).")
    meta = manifest(name, folder)
    found = sha256(path)
    if found != meta["sha256"]:
        raise CheckpointError(
            f"checkpoint {name!r} has changed or is corrupt: the SHA-256 of {path} is {found}, its manifest "
            f"{name}.json records {meta['sha256']}. To fix it, {_restore(path)}rebuild both files with "
            f"`{_build_command(name, folder)}`.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = architecture(name, len(meta["classes"]))
    problems = _layout_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"checkpoint {name!r} does not fit the architecture in the code ({meta['architecture']['name']} "
            f"{SPECS[name]['architecture']}): " + "; ".join(problems)
            + f". The code or the file changed since the build; rebuild with `{_build_command(name, folder)}`.")
    model.load_state_dict(state)
    model.classes = list(meta["classes"])
    return model
