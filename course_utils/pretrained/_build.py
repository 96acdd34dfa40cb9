"""Build a course checkpoint: train it with its recipe, write ``NAME.pt`` and ``NAME.json``."""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from .. import data, training
from ..seeding import seed_everything
from ._course import CHECKPOINTS, SPECS, architecture, architecture_digest, sha256

__all__ = ["build"]


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def _cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), for telling machines apart."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: no half-written checkpoint."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o644)  # a temporary file is private (0600); a checkpoint is for everyone to read
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def build(name: str, *, out_dir: str | Path | None = None, device: torch.device | str | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train checkpoint ``name`` from its recipe (``_course.SPECS``); write the .pt and .json; return the manifest."""
    spec = SPECS[name]
    recipe = spec["recipe"]
    folder = Path(out_dir) if out_dir is not None else CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else torch.device("cpu")  # as the committed files
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(recipe["threads"])
    try:
        return _train_and_write(name, spec, folder, device, progress)
    finally:
        torch.set_num_threads(threads)


def _train_and_write(name: str, spec: dict[str, Any], folder: Path, device: torch.device,
                     progress: bool) -> dict[str, Any]:
    recipe = spec["recipe"]
    load_start, start = _load_average(), time.perf_counter()

    seed_everything(recipe["seed"])
    cfg = recipe["data"]
    images = data.load(cfg["dataset"], n=cfg["n"], size=cfg["size"], seed=cfg["seed"])
    splits = data.split(images, cfg["split"], seed=cfg["split_seed"])
    mean, std = data.channel_stats(splits.train)
    model = architecture(name, seed=recipe["seed"], mean=mean, std=std)
    loaders = data.make_loaders(splits, recipe["batch_size"], device=device, seed=recipe["seed"])

    opt = recipe["optimizer"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
    sched = recipe["schedule"]
    steps = recipe["epochs"] * len(loaders["train"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=sched["max_lr"], total_steps=steps,
                                                    pct_start=sched["pct_start"])
    history = training.fit(model, loaders["train"], epochs=recipe["epochs"], optimizer=optimizer,
                           scheduler=scheduler, scheduler_step="batch", val_loader=loaders["val"], device=device,
                           progress=progress)
    test = training.evaluate(model, loaders["test"], device=device)
    seconds = time.perf_counter() - start

    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    pt_path = folder / f"{name}.pt"
    _atomic_write(pt_path, lambda p: torch.save(state, p))
    manifest = {
        "name": name,
        "file": pt_path.name,
        "sha256": sha256(pt_path),
        "size_bytes": pt_path.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": {**spec["architecture"], "input": [3, cfg["size"], cfg["size"]],
                         "input_range": [0.0, 1.0], "state_dict_digest": architecture_digest(state),
                         "state_dict_entries": len(state)},
        "classes": list(spec["classes"]),
        "normalize": {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]},
        "accuracy": {"test": round(test["accuracy"], 4), "val": round(history.val_acc[-1], 4),
                     "train_last_epoch": round(history.train_acc[-1], 4), "n_test": test["n"],
                     "n_val": len(splits.val), "n_train": len(splits.train)},
        "history": {"train_loss": [round(x, 4) for x in history.train_loss],
                    "val_acc": [round(x, 4) for x in history.val_acc],
                    "epoch_seconds": [round(x, 1) for x in history.seconds]},
        "recipe": recipe,
        "build": {
            "command": f"python -m course_utils.pretrained build {name}",
            "seconds": round(seconds, 1),
            "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
            "amp": history.amp,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "cpu": _cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch chose
            "cpu_count": os.cpu_count(),
            "load_average": {"start": load_start, "end": _load_average()},
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        },
    }
    text = json.dumps(manifest, indent=2) + "\n"
    _atomic_write(folder / f"{name}.json", lambda p: p.write_text(text))
    print(f"{name}: test accuracy {test['accuracy']:.4f}, {seconds:.0f} s on {manifest['build']['device']}, "
          f"{manifest['size_bytes'] / 1e3:.0f} kB -> {pt_path}")
    return manifest
