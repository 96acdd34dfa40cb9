"""Lecture 08's experiment in full: transfer from the course checkpoint, similar/different target x little/more data.

    .venv/bin/python scripts/transfer_table.py             # the whole table, a few minutes on one CPU core
    .venv/bin/python scripts/transfer_table.py --jobs 2    # the same runs on two processes (same numbers)
    .venv/bin/python scripts/transfer_table.py --quick     # 1 seed, 2 epochs: checks the mechanics in seconds

Writes ``lectures/precomputed/transfer_table.json`` (``--out`` to change), which lecture 08 reads for its 2x2
table and curves next to a small live rerun. The source model is the course checkpoint "shapes_resnet"
(``course_utils.pretrained.load``), trained on the basic shapes. Three ways to use it on a new task:

- feature extraction: the body frozen (weights AND BatchNorm statistics: evaluation mode), a new linear head;
  since nothing in the body changes, its features are computed once and the head is trained on them;
- fine-tuning: a new head, every weight trained, the body at a smaller learning rate than the head;
- from scratch: the same architecture with fresh random weights (``pretrained.architecture``, seeded with the
  run's seed) and the target's own input statistics, every weight at the from-scratch learning rate.

Three variants check sentences of the lecture and stay out of the 2x2 table (``variant_runs`` in the JSON):
feature extraction with the BatchNorm layers of the frozen body left to follow ``train()`` (the lecture's common
mistake, trained through ``training.fit`` on the images), fine-tuning with one learning rate (``lr_head``) for
every weight, and from scratch on the basic shapes, the source task itself ("source": is from scratch's failure
about the target or about the amount of data?).

Targets: "similar" = ``shapes-extra`` (ten other shapes, drawn the same way as the source's), "different" =
``digits`` (8x8 grey handwritten digits, resized to 32x32 and repeated on 3 channels). Data: "little" = a few
images per class, "more" = about a hundred. Each run's seed draws its training images, the new weights and the
batch order; the held-out images are the same for every run. Everything runs on the CPU, one thread per
process, offline and seeded: the same machine and PyTorch version give the same numbers on every run.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import functools
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import (  # noqa: E402
    BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset)

from course_utils import data, pretrained, seeding, training  # noqa: E402

OUT = ROOT / "lectures" / "precomputed" / "transfer_table.json"

CONFIG = {
    "source": "shapes_resnet",
    "targets": {"similar": "shapes-extra", "different": "digits"},
    "per_class": {"little": 5, "more": 100},
    "strategies": ["feature extraction", "fine-tuning", "from scratch"],
    "seeds": [seeding.COURSE_SEED + i for i in range(3)],
    "optimizer": "Adam",
    "lr_head": 1e-2,      # the new head (feature extraction and fine-tuning)
    "lr_body": 1e-3,      # the pretrained body when fine-tuning
    "lr_scratch": 1e-3,   # every weight when training from scratch
    "batch_size": {"little": 10, "more": 50},
    "epochs": {"little": 20, "more": 12},
    # held-out images, the same for every run: val for the curves (every epoch), test for the table (last epoch)
    # outside the table: each variant, the targets and sizes it runs on (every seed); "source" = the basic shapes
    "variants": {
        "feature extraction, BatchNorm not frozen": {"targets": ["similar", "different"], "sizes": ["little", "more"]},
        "fine-tuning, one rate": {"targets": ["similar", "different"], "sizes": ["little"]},
        "from scratch": {"targets": ["source"], "sizes": ["more"]},
    },
    "variant_targets": {"source": "shapes"},
    "held_out": {"shapes-extra": {"val": 300, "test": 1000}, "shapes": {"val": 300, "test": 1000},
                 "digits": {"val": 200, "test": 397}},
    "data": {
        "shapes-extra": "pool load('shapes-extra', n=3000, seed=1); val/test load('shapes-extra', n=1300, seed=2)",
        "shapes": "the same calls with 'shapes' (the basic shapes; the checkpoint was trained on seed 7)",
        "digits": "load('digits', size=32), grey repeated on 3 channels; per class the first 120 of a "
                  "course-seed shuffle form the pool, the other 597 images val (200) and test (397)",
    },
}
DIGITS_POOL_PER_CLASS = 120


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey -> (N, 3, H, W), the same values on each channel."""
    return images.expand(-1, 3, -1, -1).contiguous()


@functools.cache
def target_data(name: str) -> tuple[data.ImageSet, data.ImageSet, data.ImageSet]:
    """The training pool, the validation and the test images of a target (the same for every run)."""
    if name in ("shapes-extra", "shapes"):
        pool = data.load(name, n=3000, seed=1)
        sizes = CONFIG["held_out"][name]
        held = data.load(name, n=sizes["val"] + sizes["test"], seed=2)
        n_val = sizes["val"]
        return pool, held.subset(range(n_val)), held.subset(range(n_val, len(held)))
    if name == "digits":
        digits = data.load("digits", size=32)
        digits = replace(digits, images=_three_channels(digits.images))  # (1797, 3, 32, 32)
        order = torch.randperm(len(digits), generator=seeding.torch_generator(seeding.COURSE_SEED))
        pool_idx, rest_idx = [], []
        for c in range(10):
            of_class = order[digits.labels[order] == c].tolist()
            pool_idx += of_class[:DIGITS_POOL_PER_CLASS]
            rest_idx += of_class[DIGITS_POOL_PER_CLASS:]
        rest_idx = torch.tensor(rest_idx)[torch.randperm(len(rest_idx), generator=seeding.torch_generator(1))]
        n_val = CONFIG["held_out"][name]["val"]
        return digits.subset(pool_idx), digits.subset(rest_idx[:n_val]), digits.subset(rest_idx[n_val:])
    raise ValueError(f"unknown target {name!r}; expected one of {list(CONFIG['held_out'])}")


def few_per_class(pool: data.ImageSet, per_class: int, seed: int) -> data.ImageSet:
    """``per_class`` images of every class, drawn from ``pool`` with ``seed``."""
    order = torch.randperm(len(pool), generator=seeding.torch_generator(seed))
    chosen = []
    for c in range(pool.num_classes):
        of_class = order[pool.labels[order] == c]
        if len(of_class) < per_class:
            raise ValueError(f"the pool has {len(of_class)} images of class {c}, fewer than {per_class}")
        chosen.append(of_class[:per_class])
    return pool.subset(torch.cat(chosen))


@torch.no_grad()
def features(body: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The frozen body's output for (N, 3, 32, 32) images: (N, D), in evaluation mode."""
    body.eval()
    return torch.cat([body(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _feature_loader(features: TensorDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Batches of (features, labels) in the order ``data.make_loader`` gives the images they came from (the same
    seeded sampler), so that the head sees the same batches as in the lecture's feature-extraction module."""
    generator = seeding.torch_generator(seed)
    sampler = RandomSampler(features, generator=generator) if shuffle else SequentialSampler(features)
    return DataLoader(features, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


def _rounded(values: list[float]) -> list[float | None]:
    return [round(v, 5) if math.isfinite(v) else None for v in values]


def run(target: str, size: str, strategy: str, seed: int, epochs: int) -> dict:
    """Train one model; return its training and validation curves, its final test accuracy and its final
    accuracy on its own training images in evaluation mode."""
    torch.set_num_threads(1)
    pool, val, test = target_data({**CONFIG["targets"], **CONFIG["variant_targets"]}[target])
    train = few_per_class(pool, CONFIG["per_class"][size], seed)
    batch_size = CONFIG["batch_size"][size]
    source = pretrained.load(CONFIG["source"], device="cpu")
    start = time.perf_counter()
    seeding.seed_everything(seed)
    if strategy == "feature extraction":
        body = copy.deepcopy(source)
        body.fc = nn.Identity()  # the body now returns its (N, D) features
        head = nn.Linear(source.fc.in_features, train.num_classes)
        sets = {name: TensorDataset(features(body, part.images), part.labels)
                for name, part in (("train", train), ("val", val), ("test", test))}
        loaders = {name: _feature_loader(ds, batch_size, shuffle=(name == "train"), seed=seed)
                   for name, ds in sets.items()}
        loaders["train, in order"] = _feature_loader(sets["train"], batch_size, shuffle=False, seed=seed)
        model, optimizer = head, torch.optim.Adam(head.parameters(), lr=CONFIG["lr_head"])
    else:
        if strategy == "feature extraction, BatchNorm not frozen":
            body = copy.deepcopy(source)
            body.fc = nn.Identity()
            body.requires_grad_(False)  # the weights frozen; BatchNorm follows fit's train() (the common mistake)
            head = nn.Linear(source.fc.in_features, train.num_classes)
            model = nn.Sequential(body, head)
            optimizer = torch.optim.Adam(head.parameters(), lr=CONFIG["lr_head"])
        elif strategy in ("fine-tuning", "fine-tuning, one rate"):
            model = copy.deepcopy(source)
            model.fc = nn.Linear(source.fc.in_features, train.num_classes)
            head_ids = {id(p) for p in model.fc.parameters()}
            body_params = [p for p in model.parameters() if id(p) not in head_ids]
            body_lr = CONFIG["lr_body"] if strategy == "fine-tuning" else CONFIG["lr_head"]
            optimizer = torch.optim.Adam([{"params": body_params, "lr": body_lr},
                                          {"params": list(model.fc.parameters()), "lr": CONFIG["lr_head"]}])
        elif strategy == "from scratch":
            model = pretrained.architecture(CONFIG["source"], num_classes=train.num_classes, seed=seed)
            model.normalize = data.Normalize(*data.channel_stats(train))  # the target's own input statistics
            optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG["lr_scratch"])
        else:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of "
                             f"{CONFIG['strategies'] + list(CONFIG['variants'])}")
        loaders = {name: data.make_loader(part, batch_size, shuffle=(name == "train"), seed=seed)
                   for name, part in (("train", train), ("val", val), ("test", test))}
        loaders["train, in order"] = data.make_loader(train, batch_size, shuffle=False)
    history = training.fit(model, loaders["train"], val_loader=loaders["val"], epochs=epochs,
                           optimizer=optimizer, device="cpu", progress=False)
    final = training.evaluate(model, loaders["test"], device="cpu")
    # the training images again after the last epoch, in evaluation mode (train_acc is measured while training)
    train_eval = training.evaluate(model, loaders["train, in order"], device="cpu")
    return {"target": target, "size": size, "strategy": strategy, "seed": seed, "n_train": len(train),
            "train_acc": _rounded(history.train_acc), "val_acc": _rounded(history.val_acc),
            "test_acc": round(final["accuracy"], 5), "n_test": final["n"],
            "train_acc_eval": round(train_eval["accuracy"], 5),
            "seconds": round(time.perf_counter() - start, 2)}


def _dumps(report: dict) -> str:
    """JSON with one line per run, so that a rerun's changes read well in a diff."""
    lists = ("runs", "variant_runs")
    head = json.dumps({key: value for key, value in report.items() if key not in lists}, indent=1)
    parts = [f' "{key}": [\n' + ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in report[key])
             + "\n ]" for key in lists]
    return head[:-2] + ",\n" + ",\n".join(parts) + "\n}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed and 2 epochs, to check the mechanics")
    parser.add_argument("--jobs", type=int, default=1, help="processes (one thread each); the numbers do not change")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the JSON (default {OUT})")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small model: one thread per process, and the numbers do not depend on the core count
    config = copy.deepcopy(CONFIG)
    if args.quick:
        config.update(seeds=config["seeds"][:1], epochs={"little": 2, "more": 2})
    info = pretrained.info(config["source"])
    jobs = [(target, size, strategy, seed, config["epochs"][size])
            for target in config["targets"] for size in config["per_class"]
            for strategy in config["strategies"] for seed in config["seeds"]]
    variant_jobs = [(target, size, strategy, seed, config["epochs"][size])
                    for strategy, where in config["variants"].items() for target in where["targets"]
                    for size in where["sizes"] for seed in config["seeds"]]
    load_start = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as executor:
        futures = [executor.submit(run, *job) for job in jobs + variant_jobs]
        results = []
        for future in futures:
            result = future.result()
            results.append(result)
            print(f"{result['target']:9s} {result['size']:6s} {result['strategy']:18s} seed {result['seed']}: "
                  f"test acc {result['test_acc']:.3f} ({result['seconds']:.1f} s)", file=sys.stderr)
    runs, variant_runs = results[:len(jobs)], results[len(jobs):]
    report = {
        "command": ("python scripts/transfer_table.py" + (" --quick" if args.quick else "")
                    + (f" --jobs {args.jobs}" if args.jobs > 1 else "")),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "jobs": args.jobs,
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "device": "cpu", "threads_per_job": 1},
        "source": {"name": config["source"], "sha256": info.get("sha256")},
        "config": config,
        "runs": runs,
        "variant_runs": variant_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_dumps(report))
    print(f"wrote {args.out} ({len(runs)} runs and {len(variant_runs)} variant runs in {report['seconds']} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
