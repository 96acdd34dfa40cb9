"""Time course_utils.shapes.generate: how long do N shape images take on this machine?

    python benchmarks/bench_shapes.py                   # 20,000 images at 32x32, 5 repeats
    python benchmarks/bench_shapes.py --n 5000 --size 64 --style outline

Prints the median, min and max wall-clock time and the throughput; writes nothing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from course_utils import shapes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="images per call (default 20000)")
    parser.add_argument("--size", type=int, default=32, help="image height = width (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument("--family", default="basic", choices=sorted(shapes.FAMILIES))
    parser.add_argument("--style", default="filled", choices=shapes.STYLES)
    parser.add_argument("--noise", type=float, default=0.05, help="pixel noise std (default 0.05)")
    parser.add_argument("--no-texture", action="store_true", help="flat backgrounds")
    args = parser.parse_args()

    kwargs = dict(size=args.size, family=args.family, style=args.style,
                  noise=args.noise, texture=not args.no_texture)
    shapes.generate(min(args.n, 100), **kwargs)                 # warm-up (imports, caches)
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        images, _, _ = shapes.generate(args.n, seed=i, **kwargs)
        times.append(time.perf_counter() - t0)
        del images
    med = statistics.median(times)
    print(f"shapes.generate(n={args.n}, {', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
    print(f"  {args.repeats} runs: median {med:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s")
    print(f"  {args.n / med:,.0f} images/s ({1e6 * med / max(args.n, 1):.1f} us per image)")


if __name__ == "__main__":
    main()
