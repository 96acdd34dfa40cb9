"""An assignment's life cycle: release it, start and check a student's copy, bundle for a class.

    python -m course_utils.assignments release            # solutions/ -> assignments/ (nbgrader)
    python -m course_utils.assignments start a0           # assignments/a0_warmup -> work/a0_warmup
    python -m course_utils.assignments check a0           # nbgrader validate work/a0_warmup/*.ipynb
    python -m course_utils.assignments bundle             # dist/student-bundle.zip (no solutions)

The Makefile's ``release``, ``start``, ``check`` and ``student-bundle`` targets
call these. An assignment may be named by its full id (``a0_warmup``) or by its
unique prefix (``a0``). Nothing a student has written is ever overwritten.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from .grading import COURSE_ROOT, assignment_ids, run_nbgrader

__all__ = ["resolve", "release", "start", "check", "bundle"]

# What a graded class receives: everything a student needs, nothing with answers.
BUNDLE_ITEMS = ("lectures", "assignments", "course_utils", "docs/syllabus.md", "docs/notation.md",
                "requirements.txt", "environment.yml", "pyproject.toml", "Makefile", "LICENSE")
BUNDLE_EXCLUDE = ("__pycache__", ".ipynb_checkpoints", "*.pyc", "*.egg-info")


class CourseError(Exception):
    """A command could not do what was asked; the message says why and what to do."""


def resolve(name: str | None, root: Path = COURSE_ROOT, folder: str = "assignments") -> str:
    """Full assignment id from an id or a unique prefix (``a0`` -> ``a0_warmup``)."""
    known = sorted(p.name for p in (root / folder).iterdir() if p.is_dir()) if (root / folder).is_dir() else []
    if not name:
        raise CourseError(f"which assignment? e.g. `make start {known[0] if known else 'a0'}`; known: {known}")
    if name in known:
        return name
    matches = [k for k in known if k.startswith(name + "_") or k.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CourseError(f"no assignment {name!r} in {folder}/; known: {known}")
    raise CourseError(f"{name!r} could mean any of {matches}; give the full id")


def release(root: Path = COURSE_ROOT) -> list[str]:
    """Regenerate ``assignments/<id>/`` from ``solutions/<id>/`` for every assignment with nbgrader."""
    ids = assignment_ids(root)
    for aid in ids:
        run_nbgrader(["generate_assignment", aid, "--force", "--no-db"], root)
        print(f"released {aid}: solutions/{aid} -> assignments/{aid}")
    return ids


def start(name: str | None, root: Path = COURSE_ROOT) -> Path:
    """Copy a released assignment to ``work/<id>/``; an existing copy is kept as it is."""
    aid = resolve(name, root)
    target = root / "work" / aid
    if target.exists():
        print(f"{target.relative_to(root)} already exists: your work is kept as it is (nothing was copied).\n"
              f"To start over, rename or delete that folder yourself, then run `make start {aid}` again.")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "assignments" / aid, target, ignore=shutil.ignore_patterns(*BUNDLE_EXCLUDE))
    print(f"Copied assignments/{aid} to {target.relative_to(root)}/. Open it in JupyterLab (`make lab`), "
          f"then run `make check {aid}` to run its visible checks.")
    return target


def check(name: str | None, root: Path = COURSE_ROOT) -> bool:
    """Run the visible checks of ``work/<id>/`` with nbgrader validate; True if all pass."""
    aid = resolve(name, root)
    folder = root / "work" / aid
    if not folder.is_dir():
        raise CourseError(f"{folder.relative_to(root)} does not exist; run `make start {aid}` first")
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise CourseError(f"no notebook in {folder.relative_to(root)}")
    ok = True
    for notebook in notebooks:
        try:
            result = run_nbgrader(["validate", str(notebook)], folder)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return False
        print(result.stdout.strip())
        text = result.stdout
        ok = ok and "Success! Your notebook passes all the tests." in text
    return ok


def bundle(root: Path = COURSE_ROOT, output: Path | None = None) -> Path:
    """Build the zip an instructor hands to a graded class: no solutions, no tests."""
    output = output or root / "dist" / "student-bundle.zip"
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_suffix("")
    if staging.exists():
        shutil.rmtree(staging)
    for item in BUNDLE_ITEMS:
        source = root / item
        if not source.exists():
            raise CourseError(f"{item} is missing from {root}; cannot build the student bundle")
        target = staging / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*BUNDLE_EXCLUDE))
        else:
            shutil.copy2(source, target)
    shutil.copy2(root / "docs" / "student_README.md", staging / "README.md")
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                archive.write(path, Path("dl4cv") / path.relative_to(staging))
    shutil.rmtree(staging)
    print(f"wrote {output.relative_to(root) if output.is_relative_to(root) else output}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.assignments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/")
    for name in ("start", "check"):
        sub.add_parser(name).add_argument("assignment", nargs="?")
    sub.add_parser("bundle", help="build dist/student-bundle.zip")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            release()
        elif args.command == "start":
            start(args.assignment)
        elif args.command == "check":
            return 0 if check(args.assignment) else 1
        else:
            bundle()
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
