"""Convolution speed: the a1 solution's naive loops and vectorized version vs PyTorch.

    .venv/bin/python benchmarks/bench_conv.py [--runs 5] [--threads 1]

Layers (stride 1, padding 1, 3x3 kernels, float32, CPU):
  small  N=8, C=16, H=W=32, F=32   (the naive loops are timed here only: 262,144 outputs)
  large  N=8, C=64, H=W=56, F=64   (a ResNet stage-1 sized layer)
and the transposed convolution (a1's direct version vs F.conv_transpose2d) on the small layer read backwards.
Each figure is the median of --runs runs, with min and max; ratios are taken within one run.
Writes benchmarks/results/conv.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_utils.grading.protocol import solution_namespace  # noqa: E402


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=1, help="runs of the (slow) naive loops")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conv.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    solution = solution_namespace("a1_convolutions")
    naive, vectorized, transposed = (solution[n] for n in ("conv2d_naive", "conv2d_vectorized", "conv_transpose2d"))

    layers = {"small": (8, 16, 32, 32, 32, 3), "large": (8, 64, 56, 56, 64, 3)}
    results: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                     "torch": torch.__version__, "layers": {}}
    for name, (n, c, h, w_, f, k) in layers.items():
        x, w, b = torch.randn(n, c, h, w_), torch.randn(f, c, k, k), torch.randn(f)
        assert torch.allclose(vectorized(x, w, b, padding=1), F.conv2d(x, w, b, padding=1), atol=1e-4)
        times: dict[str, list[float]] = {"vectorized": [], "F.conv2d": [], "conv_transpose2d": [],
                                         "F.conv_transpose2d": []}
        y = F.conv2d(x, w, padding=1)
        wt = torch.randn(f, c, k, k)  # (C_in=f, C_out=c, k, k) for the transposed direction
        for _ in range(args.runs):
            times["vectorized"].append(timed(vectorized, x, w, b, padding=1))
            times["F.conv2d"].append(timed(F.conv2d, x, w, b, padding=1))
            times["conv_transpose2d"].append(timed(transposed, y, wt, padding=1))
            times["F.conv_transpose2d"].append(timed(F.conv_transpose2d, y, wt, padding=1))
        if name == "small":
            times["naive"] = [timed(naive, x, w, b, padding=1) for _ in range(args.naive_runs)]
        entry = {"shape": {"N": n, "C": c, "H": h, "W": w_, "F": f, "K": k},
                 "seconds": {k_: summary(v) for k_, v in times.items()}}
        ref, tref = statistics.median(times["F.conv2d"]), statistics.median(times["F.conv_transpose2d"])
        entry["ratio_to_pytorch"] = {"vectorized": statistics.median(times["vectorized"]) / ref,
                                     "conv_transpose2d": statistics.median(times["conv_transpose2d"]) / tref}
        if "naive" in times:
            entry["ratio_to_pytorch"]["naive"] = statistics.median(times["naive"]) / ref
        results["layers"][name] = entry

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"conv2d on {results['machine']}, {args.threads} thread(s), torch {torch.__version__}\n")
    print("| layer | operation | median s | min s | max s | x PyTorch |")
    print("|---|---|---|---|---|---|")
    for name, entry in results["layers"].items():
        ratios = entry["ratio_to_pytorch"]
        for op, s in entry["seconds"].items():
            ratio = ratios.get(op, 1.0 if op.startswith("F.") else None)
            shown = f"{ratio:,.1f}" if ratio is not None else ""
            print(f"| {name} | {op} | {s['median']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {shown} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
