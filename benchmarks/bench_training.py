"""Training throughput: the course's ``fit`` loop vs a minimal hand-written PyTorch loop.

    .venv/bin/python benchmarks/bench_training.py [--runs 3] [--epochs 2] [--n 4096]

Same model (lecture 00's small CNN), same data (shapes, 32x32 RGB), same loader, same
optimizer settings; each run times one warm-up epoch apart, then ``--epochs`` epochs of
each loop, alternating, so the ratio is measured side by side. ``fit`` runs as a
student sees it: progress bar on (written to a discarded stream), accuracy recorded.
On CPU always; on CUDA, when there is one, with and without mixed precision.
Writes benchmarks/results/training.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_utils import data, training  # noqa: E402
from course_utils.device import autocast  # noqa: E402
from course_utils.seeding import seed_everything  # noqa: E402


def small_cnn(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (N, 16, 16, 16)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 32, 8, 8)
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, classes))


def minimal_loop(model, loader, epochs, device, amp) -> None:
    """What one would write by hand: no bookkeeping, no progress bar."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, enabled=amp):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


def course_fit(model, loader, epochs, device, amp) -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        training.fit(model, loader, epochs=epochs, lr=1e-3, device=device, amp=amp, progress=True)


def timed(loop, model, loader, epochs, device, amp) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loop(model, loader, epochs, device, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(device: torch.device, amp: bool, args, dataset) -> dict:
    loader = data.make_loader(dataset, batch_size=args.batch_size, shuffle=True, device=device)
    images = len(dataset) * args.epochs
    fit_rates, minimal_rates, ratios = [], [], []
    for run in range(args.runs):
        rates = {}
        for name, loop in (("fit", course_fit), ("minimal", minimal_loop)) if run % 2 == 0 else \
                (("minimal", minimal_loop), ("fit", course_fit)):
            seed_everything()
            model = small_cnn(len(dataset.classes)).to(device)
            loop(model, loader, 1, device, amp)  # warm-up: allocator, cuDNN autotuning, caches
            rates[name] = images / timed(loop, model, loader, args.epochs, device, amp)
        fit_rates.append(rates["fit"])
        minimal_rates.append(rates["minimal"])
        ratios.append(rates["minimal"] / rates["fit"])  # > 1: fit is slower
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"device": device.type, "device_name": name, "amp": amp, "threads": torch.get_num_threads(),
            "fit_images_per_s": stats(fit_rates), "minimal_images_per_s": stats(minimal_rates),
            "overhead_ratio": stats(ratios)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n", type=int, default=4096, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped without a GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training.json")
    args = parser.parse_args()

    dataset = data.load("shapes", n=args.n)
    results = []
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        for amp in ((False,) if name == "cpu" else (True, False)):
            results.append(measure(torch.device(name), amp, args, dataset))
    host = f"{platform.node()} ({os.cpu_count()} CPUs)"
    for r in results:
        r.update(host=host, runs=args.runs, epochs=args.epochs, images=args.n)
    # Results measured on another machine (a lent GPU, say) are kept: each machine adds its own rows.
    earlier = json.loads(args.out.read_text()).get("results", []) if args.out.is_file() else []
    kept = [r for r in earlier if r.get("host") != host and r.get("host", "").startswith(("lent", "gpu"))]
    report = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "runs": args.runs, "epochs": args.epochs, "images": args.n, "batch_size": args.batch_size,
              "load_average": os.getloadavg(), "results": results + kept}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))

    print(f"training throughput, {args.n} shapes images x {args.epochs} epochs, batch {args.batch_size}, "
          f"median of {args.runs} (min-max)\n")
    print("| device | AMP | fit images/s | minimal images/s | fit overhead (minimal/fit) |")
    print("|---|---|---|---|---|")
    for r in results:
        f, m, o = r["fit_images_per_s"], r["minimal_images_per_s"], r["overhead_ratio"]
        amp = "on" if r["amp"] else "off"
        print(f"| {r['device_name']} | {amp} | {f['median']:,.0f} ({f['min']:,.0f}-{f['max']:,.0f}) "
              f"| {m['median']:,.0f} ({m['min']:,.0f}-{m['max']:,.0f}) "
              f"| {o['median']:.3f}x ({o['min']:.3f}-{o['max']:.3f}) |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
