"""``python -m course_utils.pretrained build [NAME ...] [--device cpu|cuda] [--out DIR] | list | verify``."""

from __future__ import annotations

import argparse
import sys

from . import COURSE, IMAGENET, build, info, verify


def _list() -> int:
    for name in COURSE:
        try:
            meta = info(name)
            print(f"{name:20s} course checkpoint  test accuracy {meta['accuracy']['test']:.3f}  "
                  f"{meta['parameters']:,} parameters  {meta['size_bytes'] / 1e3:.0f} kB  "
                  f"built in {meta['build']['seconds']:.0f} s on {meta['build']['device']}")
        except FileNotFoundError:
            print(f"{name:20s} course checkpoint  MISSING (python -m course_utils.pretrained build {name})")
    for name in IMAGENET:
        meta = info(name)
        state = "cached" if meta["cached"] else "not cached (opt-in: load(..., download=True))"
        print(f"{name:20s} torchvision        ImageNet top-1 {meta['accuracy']['imagenet_top1']}  "
              f"{meta['parameters']:,} parameters  {state}")
    return 0


def _verify(directory: str | None) -> int:
    report = verify(directory)
    for name, result in report.items():
        print(f"{name}: {result}")
    return 0 if all(result == "ok" for result in report.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.pretrained",
                                     description="Build, list and verify the course checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="train checkpoints and write NAME.pt + NAME.json")
    build_cmd.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {list(COURSE)}")
    build_cmd.add_argument("--device", help="cpu (default, as the committed files), cuda, ...")
    build_cmd.add_argument("--out", help="output folder (default: course_utils/checkpoints)")
    commands.add_parser("list", help="the checkpoints, their accuracy and size")
    verify_cmd = commands.add_parser("verify", help="check every course checkpoint's hash and architecture")
    verify_cmd.add_argument("--dir", help="folder to check (default: course_utils/checkpoints)")
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "verify":
        return _verify(args.dir)
    unknown = [name for name in args.names if name not in COURSE]
    if unknown:
        parser.error(f"cannot build {unknown}: the course checkpoints are {list(COURSE)}"
                     + (" (ImageNet weights come from torchvision, not from a build)" if set(unknown) & set(IMAGENET)
                        else ""))
    for name in args.names or COURSE:
        build(name, out_dir=args.out, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
