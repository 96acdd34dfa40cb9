"""Layer speed: the assignments' from-scratch layers (naive loops, vectorized) vs PyTorch, on the CPU.

    .venv/bin/python benchmarks/bench_conv.py [--runs 5] [--naive-runs 1] [--threads 1]

Operations (float32, stride 1, padding 1, 3x3 kernels, one CPU thread) on two layers:
  small  N=8, C=16, H=W=32, F=32   (the naive loops are timed here only: 262,144 outputs)
  large  N=8, C=64, H=W=56, F=64   (a ResNet stage-1 sized layer)

  conv2d             a1's conv2d_naive and conv2d_vectorized vs F.conv2d
  conv_transpose2d   a1's conv_transpose2d vs F.conv_transpose2d, on the layer read backwards
  batchnorm_forward  a3's forward vs F.batch_norm (training mode)      ("not measured" until
  batchnorm_backward a3's backward vs autograd through F.batch_norm      solutions/ has a3)

Every version is checked against PyTorch before it is timed. One timing is the
mean over as many calls as fill --min-time seconds (one call for the naive loops).
One thread by default: on this shared 2-core machine under load, two threads
made a 1 ms F.conv2d call take 1-30 ms (a thread waiting for a core), which says
nothing about the code. Within a run the versions of an operation are timed one
after the other, so each run gives ratios to PyTorch taken side by side; a figure
is the median of --runs runs with min and max. Another operation is one more
entry in CASES: an assignment, and a function that builds {label: call},
PyTorch's reference first.
Writes benchmarks/results/conv.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from measure import ROOT, load, spread, write

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from course_utils.grading.protocol import solution_namespace  # noqa: E402

LAYERS = {"small": (8, 16, 32, 32, 32, 3), "large": (8, 64, 56, 56, 64, 3)}  # N, C, H, W, F, K
SLOW = {"naive"}  # timed --naive-runs times, on the small layer only


def conv2d(sol: dict, n, c, h, w, f, k) -> dict[str, Callable]:
    x, weight, b = torch.randn(n, c, h, w), torch.randn(f, c, k, k), torch.randn(f)  # (N, C, H, W), (F, C, K, K)
    assert torch.allclose(sol["conv2d_vectorized"](x, weight, b, padding=1), F.conv2d(x, weight, b, padding=1),
                          atol=1e-3)
    calls = {"F.conv2d": lambda: F.conv2d(x, weight, b, padding=1),
             "vectorized": lambda: sol["conv2d_vectorized"](x, weight, b, padding=1)}
    if h <= 32:  # the small layer only
        calls["naive"] = lambda: sol["conv2d_naive"](x, weight, b, padding=1)
    return calls


def conv_transpose2d(sol: dict, n, c, h, w, f, k) -> dict[str, Callable]:
    y, weight = torch.randn(n, f, h, w), torch.randn(f, c, k, k)  # (N, F, H', W'), (C_in=F, C_out=C, K, K)
    assert torch.allclose(sol["conv_transpose2d"](y, weight, padding=1), F.conv_transpose2d(y, weight, padding=1),
                          atol=1e-3)
    return {"F.conv_transpose2d": lambda: F.conv_transpose2d(y, weight, padding=1),
            "conv_transpose2d": lambda: sol["conv_transpose2d"](y, weight, padding=1)}


def _batchnorm(sol: dict, n, c, h, w):
    """a3's interface: ``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    -> (out, cache)`` (training mode: batch statistics, running ones updated in place),
    ``batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``. PyTorch's reference gets running buffers too,
    so that both do the same work."""
    forward = sol["batchnorm_forward"]
    x, gamma, beta = torch.randn(n, c, h, w), torch.rand(c) + 0.5, torch.randn(c)  # (N, C, H, W), (C,), (C,)
    out, cache = forward(x, gamma, beta, torch.zeros(c), torch.ones(c), True, momentum=0.1, eps=1e-5)
    assert torch.allclose(out, F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5), atol=1e-4)
    return forward, x, gamma, beta, out, cache


def batchnorm_forward(sol: dict, n, c, h, w, f, k) -> dict[str, Callable]:
    forward, x, gamma, beta, _, _ = _batchnorm(sol, n, c, h, w)
    mean, var, ref_mean, ref_var = torch.zeros(c), torch.ones(c), torch.zeros(c), torch.ones(c)
    return {"F.batch_norm": lambda: F.batch_norm(x, ref_mean, ref_var, gamma, beta, training=True, momentum=0.1,
                                                 eps=1e-5),
            "forward": lambda: forward(x, gamma, beta, mean, var, True, momentum=0.1, eps=1e-5)}


def batchnorm_backward(sol: dict, n, c, h, w, f, k) -> dict[str, Callable]:
    backward = sol["batchnorm_backward"]
    _, x, gamma, beta, out, cache = _batchnorm(sol, n, c, h, w)
    x, gamma, beta = (t.clone().requires_grad_() for t in (x, gamma, beta))
    ref = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    dout = torch.randn_like(out)
    dx, _, _ = backward(dout, cache)
    assert torch.allclose(dx, torch.autograd.grad(ref, x, dout, retain_graph=True)[0], atol=1e-3)
    return {"autograd backward": lambda: torch.autograd.grad(ref, (x, gamma, beta), dout, retain_graph=True),
            "backward": lambda: backward(dout, cache)}


# (operation, assignment prefix, builder); the first call a builder returns is the reference
CASES = [("conv2d", "a1", conv2d), ("conv_transpose2d", "a1", conv_transpose2d),
         ("batchnorm_forward", "a3", batchnorm_forward), ("batchnorm_backward", "a3", batchnorm_backward)]


def solution(prefix: str) -> tuple[dict | None, str]:
    """The solution namespace of the assignment whose id starts with ``prefix``, or why there is none."""
    found = sorted(p.name for p in (ROOT / "solutions").glob(f"{prefix}_*") if p.is_dir())
    if not found:
        return None, f"not measured: needs {prefix}'s solution"
    return solution_namespace(found[0]), found[0]


def timed(call: Callable, min_seconds: float) -> float:
    """Seconds per call: the mean over as many calls as fill ``min_seconds`` (one, if a call is slower)."""
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def measure(calls: dict[str, Callable], runs: int, naive_runs: int, min_seconds: float = 0.2) -> dict:
    reference = next(iter(calls))
    for label, call in calls.items():
        if label not in SLOW:
            call()  # warm-up: allocator, thread pool
    seconds: dict[str, list[float]] = {label: [] for label in calls}
    ratios: dict[str, list[float]] = {label: [] for label in calls if label != reference}
    for run in range(runs):
        ref = timed(calls[reference], min_seconds)
        seconds[reference].append(ref)
        for label, call in calls.items():
            if label == reference or (label in SLOW and run >= naive_runs):
                continue
            seconds[label].append(timed(call, min_seconds))
            ratios[label].append(seconds[label][-1] / ref)
    return {"reference": reference, "seconds": {label: spread(v) for label, v in seconds.items()},
            "ratio_to_pytorch": {label: spread(v) for label, v in ratios.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=1, help="runs of the (slow) naive loops (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help=f"PyTorch threads (default 1; this machine's default is {torch.get_num_threads()})")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds of repeated calls behind one timing (default 0.2)")
    args = parser.parse_args()
    start_load = load()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    operations: dict = {}
    for operation, prefix, build in CASES:
        sol, source = solution(prefix)
        if sol is None:
            operations[operation] = {"not_measured": source}
            continue
        operations[operation] = {"assignment": source}
        for layer, shape in LAYERS.items():
            try:
                calls = build(sol, *shape)
            except KeyError as err:  # the assignment does not define the function this benchmark expects
                operations[operation] = {"not_measured": f"{source}'s solution has no {err}"}
                break
            n, c, h, w, f, k = shape
            operations[operation][layer] = {"shape": {"N": n, "C": c, "H": h, "W": w, "F": f, "K": k},
                                            **measure(calls, args.runs, args.naive_runs, args.min_time)}
        print(f"{operation}: done", file=sys.stderr)
    out = write("conv", {"threads": args.threads, "runs": args.runs, "naive_runs": args.naive_runs,
                         "min_time": args.min_time,
                         "operations": operations}, start_load)

    print(f"\n{args.threads} thread(s), torch {torch.__version__}, median of {args.runs} (min-max)\n")
    print("| operation | layer | version | median s | x PyTorch |")
    print("|---|---|---|---:|---:|")
    for operation, entry in operations.items():
        if "not_measured" in entry:
            print(f"| {operation} | | | {entry['not_measured']} | |")
            continue
        for layer in LAYERS:
            for label, s in entry[layer]["seconds"].items():
                r = entry[layer]["ratio_to_pytorch"].get(label)
                shown = f"{r['median']:,.1f} ({r['min']:,.1f}-{r['max']:,.1f})" if r else "1"
                print(f"| {operation} | {layer} | {label} | {s['median']:.4f} | {shown} |")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
