"""An assignment's life cycle: release it, start and check a student's copy, bundle for a class.

    python -m course_utils.assignments release            # solutions/ -> assignments/ (nbgrader)
    python -m course_utils.assignments start a0           # assignments/a0_warmup -> work/a0_warmup
    python -m course_utils.assignments check a0           # run work/a0_warmup/*.ipynb, report each check
    python -m course_utils.assignments bundle             # dist/student-bundle.zip (no solutions)

The Makefile's ``release``, ``start``, ``check`` and ``student-bundle`` targets
call these. An assignment may be named by its full id (``a0_warmup``) or by its
unique prefix (``a0``). Nothing a student has written is ever overwritten.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .grading import COURSE_ROOT, assignment_ids, run_nbgrader

__all__ = ["resolve", "release", "start", "check", "validate", "Validation", "bundle"]

# What a graded class receives: everything a student needs, nothing with answers. The README and the
# Makefile are the students' own (docs/student_README.md, docs/student_Makefile: lab, start, check, help).
BUNDLE_ITEMS = ("lectures", "assignments", "course_utils", "docs/syllabus.md", "docs/notation.md",
                "requirements.txt", "environment.yml", "pyproject.toml", "LICENSE")
STUDENT_FILES = {"README.md": "docs/student_README.md", "Makefile": "docs/student_Makefile"}
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


@dataclass
class Validation:
    """What ``make check`` found in one notebook: each problem with the full message a student can act on."""

    notebook: Path
    passed: list[str] = field(default_factory=list)                 # graded test cells that pass
    failed: list[tuple[str, str]] = field(default_factory=list)     # (grade_id, the check's full message)
    unanswered: list[str] = field(default_factory=list)             # questions still to answer, named
    changed: list[str] = field(default_factory=list)                # locked or test cells that were edited
    crashed: list[str] = field(default_factory=list)                # other cells that raised, with the error

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unanswered or self.changed)

    def text(self) -> str:
        lines = [f"{self.notebook.name}: {len(self.passed)} of {len(self.passed) + len(self.failed)} "
                 f"test cells pass"]
        lines += [f"  ✗ {grade_id}: " + message.replace("\n", "\n      ") for grade_id, message in self.failed]
        lines += [f"  ✗ edited cell {grade_id}: it is replaced by the original when grading; copy it back from "
                  f"the released notebook" for grade_id in self.changed]
        lines += [f"  ✗ not answered yet: {question}" for question in self.unanswered]
        lines += [f"  ! {error}" for error in self.crashed]
        if self.ok:
            lines.append("Success! Your notebook passes all the tests.")
        return "\n".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _question(cells: list, index: int) -> str:
    """A cell's grade id with the heading of the question it answers (the nearest markdown heading above)."""
    grade_id = cells[index].metadata["nbgrader"]["grade_id"]
    for cell in reversed(cells[:index]):
        if cell.cell_type == "markdown":
            heading = next((line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")),
                           None)
            if heading:
                return f"{grade_id} ({heading})"
    return grade_id


def validate(notebook: Path, timeout: float = 300) -> Validation:
    """Run a student's notebook top to bottom as ``nbgrader validate`` does, and read each test cell's verdict.

    A failing test cell gives the check's whole message (``CheckFailure: ...``), never a traceback;
    written answers still reading ``YOUR ANSWER HERE`` and code still raising ``NotImplementedError``
    are named.
    """
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbgrader.utils import compute_checksum

    nb = nbformat.read(notebook, as_version=4)
    report = Validation(notebook)
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked") and meta.get("checksum") and compute_checksum(cell) != meta["checksum"]:
            report.changed.append(meta.get("grade_id", f"cell {index}"))
        if meta.get("solution") and ("YOUR ANSWER HERE" in cell.source or "raise NotImplementedError()" in
                                     cell.source):
            report.unanswered.append(_question(nb.cells, index))
    saved = {k: os.environ.get(k) for k in ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING")}
    os.environ.update(NBGRADER_EXECUTION="validate", NBGRADER_VALIDATING="1")
    try:
        NotebookClient(nb, timeout=timeout, allow_errors=True,
                       kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        errors = [_ANSI.sub("", f"{o.ename}: {o.evalue}".rstrip(": ")) for o in cell.outputs
                  if o.output_type == "error"]
        if not meta.get("grade") or meta.get("solution"):  # the student's own cell: context for what fails
            if errors and not (meta.get("solution") and "raise NotImplementedError()" in cell.source):
                report.crashed.append(f"cell {index + 1}{' (' + meta['grade_id'] + ')' if 'grade_id' in meta else ''}"
                                      f" raised {errors[0]}")
            continue
        if errors:
            report.failed.append((meta["grade_id"], "\n".join(errors)))
        else:
            report.passed.append(meta["grade_id"])
    return report


def check(name: str | None, root: Path = COURSE_ROOT) -> bool:
    """Run the visible checks of ``work/<id>/``; print each problem in full; True if all pass and all is answered."""
    aid = resolve(name, root)
    folder = root / "work" / aid
    if not folder.is_dir():
        raise CourseError(f"{folder.relative_to(root)} does not exist; run `make start {aid}` first")
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise CourseError(f"no notebook in {folder.relative_to(root)}")
    ok = True
    for notebook in notebooks:
        report = validate(notebook)
        print(report.text())
        ok = ok and report.ok
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
    for name, source_name in STUDENT_FILES.items():
        shutil.copy2(root / source_name, staging / name)
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
