"""The instructor's grading command: a whole class, in parallel, sandboxed, resumable.

    python -m course_utils.grading a0_warmup submitted/            # nbgrader's collect layout
    python -m course_utils.grading a0_warmup ~/Downloads/a0.zip    # LMS download
    python -m course_utils.grading a0_warmup submitted/ --feedback --jobs 4
    python -m course_utils.grading a3_optim_batchnorm submitted/ --gpu --jobs 2   # training cells on the GPU

The work is done by pipeline.py (grading the class), store.py (the results and
their fingerprints), gradebook.py (nbgrader's gradebook) and report.py (the CSV
and the summary); this module reads the arguments and refuses what would make
grades unofficial: no sandbox (unless ``--no-sandbox``) or a guessable secret
(unless ``--practice``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .. import checks
from .session import Timeouts

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.split("\n")[0])
    parser.add_argument("assignment", help="assignment id, e.g. a0_warmup")
    parser.add_argument("submissions", type=Path, help="nbgrader's submitted/ folder, or an LMS zip or folder")
    parser.add_argument("--jobs", type=int, default=None, help="parallel graders (default: one per core)")
    parser.add_argument("--cell-timeout", type=float, default=Timeouts.cell, help="seconds per student cell")
    parser.add_argument("--call-timeout", type=float, default=Timeouts.call,
                        help="seconds per call of a student's function by a check")
    parser.add_argument("--notebook-timeout", type=float, default=Timeouts.notebook,
                        help="seconds for a whole notebook; what exceeds it is flagged, what ran is graded")
    parser.add_argument("--pattern", action="append", default=None,
                        help="LMS path pattern: a regular expression with a student_id group, matched against "
                             "each file's path in the download, then its name (repeatable; default: Canvas "
                             "and Moodle)")
    parser.add_argument("--csv", type=Path, help="where to write the grades (default: grades-<assignment>.csv)")
    parser.add_argument("--feedback", action="store_true", help="also write feedback/ (hidden tests removed)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (only for code you trust: no isolation at all)")
    parser.add_argument("--gpu", action="store_true",
                        help="expose this machine's NVIDIA GPUs inside the sandbox (student code can use them; the "
                             "protections report says so); default: the sandbox has no GPU, grading runs on the CPU")
    parser.add_argument("--practice", action="store_true",
                        help=f"allow the public default or a weak {checks.GRADING_SEED_VAR} (grades are not "
                             f"official: anyone can compute the hidden inputs)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course directory (default: here)")
    return parser


def _refusal(args: argparse.Namespace) -> str | None:
    """Why this run may not grade (a message for the instructor), or None."""
    if not args.no_sandbox:
        from .sandbox import bubblewrap_problem

        problem = bubblewrap_problem()
        if problem is not None:
            return (f"the sandbox cannot run here: {problem}.\nStudent code would run with your permissions. "
                    f"Install bubblewrap, or pass --no-sandbox to grade unsandboxed anyway (code you trust only).")
    secret = os.environ.get(checks.GRADING_SEED_VAR, "")
    weak = checks.secret_problem(secret) if secret else "it is not set: the public default secret would be used"
    if weak is not None:
        if not args.practice:
            return (f"{checks.GRADING_SEED_VAR} is too weak for official grading: {weak}.\n"
                    f"Set a secret of at least 128 bits, e.g.\n"
                    f"  export {checks.GRADING_SEED_VAR}="
                    f"$(python -c \"import secrets; print(secrets.token_hex(16))\")\n"
                    f"or pass --practice for a practice run (its hidden inputs can be computed by anyone).")
        print(f"PRACTICE RUN: {checks.GRADING_SEED_VAR} {weak}; these grades are not official.", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"{root} is not a course directory: expected nbgrader_config.py there (use --root)")
    from ..assignments import CourseError, resolve

    try:
        args.assignment = resolve(args.assignment, root, folder="solutions")  # "a0" -> "a0_warmup"
    except CourseError as err:
        parser.error(str(err))
    refusal = _refusal(args)
    if refusal is not None:
        print(f"refused: {refusal}", file=sys.stderr)
        return 2
    from .gradebook_url import connection_problem, gradebook_url

    problem = connection_problem(gradebook_url(root))  # before minutes of grading, not after
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs its helpers (alembic) by name
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])

    from .intake import DEFAULT_PATTERNS
    from .pipeline import grade_class
    from .report import print_summary, write_csv

    start = time.perf_counter()
    timeouts = Timeouts(cell=args.cell_timeout, call=args.call_timeout, notebook=args.notebook_timeout)
    try:
        report = grade_class(args.assignment, args.submissions, root=root, jobs=args.jobs, timeouts=timeouts,
                             sandboxed=not args.no_sandbox, patterns=args.pattern or DEFAULT_PATTERNS,
                             gpu=args.gpu)
    except (FileNotFoundError, ValueError) as err:  # no submissions there, not a zip, bad pattern, 0 matched...
        print(f"error: {err}", file=sys.stderr)
        return 2
    csv_path = args.csv or root / f"grades-{args.assignment}.csv"
    write_csv(report, root, csv_path)
    if args.feedback:
        from .gradebook import nbgrader_api
        from .store import results_folder

        outcome = nbgrader_api(root, results_folder(root)).generate_feedback(args.assignment)
        if not outcome["success"]:
            print(f"feedback failed:\n{outcome.get('error')}", file=sys.stderr)
    print_summary(report, csv_path, time.perf_counter() - start)
    return 1 if report.errors or report.record_errors else 0
