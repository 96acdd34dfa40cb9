"""Lecture 06's experiment in full: the same CNN with and without BatchNorm, across learning rates and seeds.

    .venv/bin/python scripts/bn_lr_grid.py            # the whole grid, about 2 minutes on one CPU core
    .venv/bin/python scripts/bn_lr_grid.py --quick    # 2 seeds, 3 epochs: checks the mechanics in seconds

Writes ``lectures/precomputed/bn_lr_grid.json`` (``--out`` to change), which lecture 06 reads for its
table and curves next to a small live rerun. Everything runs on the CPU, on one thread, offline (the
bundled 8x8 digits), seeded: the same machine and PyTorch version give the same numbers on every run.

The model, data and training settings below are the lecture's; the JSON records them (and the model's
``repr``), and the lecture checks that its own CNN and settings are the same as the file's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_utils import data, seeding, training  # noqa: E402

OUT = ROOT / "lectures" / "precomputed" / "bn_lr_grid.json"

CONFIG = {
    "data": "digits, 8x8, split (0.8, 0.1, 0.1) with the course seed; Normalize with training-split statistics",
    "optimizer": "SGD",
    "momentum": 0.9,
    "batch_size": 32,
    "epochs": 10,
    "learning_rates": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
    "seeds": [seeding.COURSE_SEED + i for i in range(5)],
    "width": 16,
}


def make_cnn(batchnorm: bool, mean: torch.Tensor, std: torch.Tensor, width: int = 16) -> nn.Sequential:
    """Four 3x3 conv layers (width, width, 2 width, 2 width), ReLU, two 2x2 max-pools, a linear classifier.

    With ``batchnorm`` every convolution is followed by ``nn.BatchNorm2d`` and has no bias (the BatchNorm's
    shift replaces it). Input (N, 1, 8, 8) in [0, 1] -> class scores (N, 10).
    """
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        return layers + [nn.ReLU()]

    return nn.Sequential(
        data.Normalize(mean, std),
        *block(1, width), *block(width, width), nn.MaxPool2d(2),              # (N, width, 4, 4)
        *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),  # (N, 2 width, 2, 2)
        nn.Flatten(), nn.Linear(2 * width * 2 * 2, 10),                       # (N, 10)
    )


def _finite(values: list[float]) -> list[float | None]:
    """Rounded values, NaN and infinity as None (JSON has no NaN)."""
    return [round(v, 5) if math.isfinite(v) else None for v in values]


def run(batchnorm: bool, lr: float, seed: int, splits: data.Splits, epochs: int) -> dict:
    """Train one CNN; return its per-epoch curves and final validation / test accuracy."""
    mean, std = data.channel_stats(splits.train)
    seeding.seed_everything(seed)
    model = make_cnn(batchnorm, mean, std, CONFIG["width"])
    loaders = data.make_loaders(splits, batch_size=CONFIG["batch_size"], seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=CONFIG["momentum"])
    start = time.perf_counter()
    history = training.fit(model, loaders["train"], val_loader=loaders["val"], epochs=epochs,
                           optimizer=optimizer, device="cpu", progress=False)
    test = training.evaluate(model, loaders["test"], device="cpu")
    return {"batchnorm": batchnorm, "lr": lr, "seed": seed, "train_loss": _finite(history.train_loss),
            "val_acc": _finite(history.val_acc), "val_loss": _finite(history.val_loss),
            "test_acc": round(test["accuracy"], 5), "seconds": round(time.perf_counter() - start, 2)}


def _dumps(report: dict) -> str:
    """JSON with one line per run, so that a rerun's changes read well in a diff."""
    head = json.dumps({key: value for key, value in report.items() if key != "runs"}, indent=1)
    lines = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in report["runs"])
    return head[:-2] + ',\n "runs": [\n' + lines + "\n ]\n}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds and 3 epochs, to check the mechanics")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the JSON (default {OUT})")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and the numbers do not depend on the core count
    config = dict(CONFIG)
    if args.quick:
        config.update(seeds=config["seeds"][:2], epochs=3)
    digits = data.load("digits")  # (1797, 1, 8, 8) in [0, 1]
    splits = data.split(digits)
    mean, std = data.channel_stats(splits.train)
    load_start = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    runs = []
    for batchnorm in (False, True):
        for lr in config["learning_rates"]:
            for seed in config["seeds"]:
                result = run(batchnorm, lr, seed, splits, config["epochs"])
                runs.append(result)
                print(f"batchnorm={batchnorm!s:5} lr={lr:<6g} seed={seed}: val acc {result['val_acc'][-1]}, "
                      f"{result['seconds']:.1f} s", file=sys.stderr)
    report = {
        "command": "python scripts/bn_lr_grid.py" + (" --quick" if args.quick else ""),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "device": "cpu", "threads": 1},
        "config": config,
        "architecture": {"without": repr(make_cnn(False, mean, std, config["width"])),
                         "with": repr(make_cnn(True, mean, std, config["width"]))},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_dumps(report))
    print(f"wrote {args.out} ({len(runs)} runs in {report['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
