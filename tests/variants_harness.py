"""What the per-assignment test harnesses share, as plain functions.

tests/a1_variants.py, a2 and a3 load an assignment's graded cells (the solution notebook's, or its contract's while
the notebook is missing), run the solution's code, run graded cells with some of its names replaced and measure
catch rates; tests/test_a*_checks.py compare visible and hidden rules; tests/heavy/test_grading_a*.py grade a class
of submissions through the grading command. Everything here is parameterized by the assignment's id, its contract
(grade_id -> (check, functions, points)), its cells or its checks module; what is an assignment's own (reference
answers, how a replacement is bound, which cells a test skips) stays in its module.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import torch

from course_utils.grading import COURSE_ROOT
from course_utils.grading.protocol import (CellResult, GradedCell, checks_module, parse_test_cell, run_test_cell,
                                           source_notebook)

# grade_id -> (check, functions, points): the test cells a contract promises
Contract = dict[str, tuple[str, tuple[str, ...], int]]
# variant name -> (replaced names, the graded cells it must fail)
Variants = dict[str, tuple[dict[str, Any], set[str]]]


# --- the graded cells and the solution's code ----------------------------------------------------------
def contract_cells(contract: Contract) -> list[GradedCell]:
    """The graded cells of ``contract``: each calls its check on its functions, once visible and once hidden."""
    cells = []
    for index, (grade_id, (check, functions, points)) in enumerate(contract.items()):
        call = f"checks.{check}({', '.join(functions)}"
        source = f"{call})\n### BEGIN HIDDEN TESTS\n{call}, hidden=True)\n### END HIDDEN TESTS\n"
        cells.append(GradedCell(grade_id, float(points), tuple(parse_test_cell(source, grade_id)), index))
    return cells


def solution_notebook_or_none(assignment: str) -> Path | None:
    """The assignment's solution notebook, or None while it does not exist."""
    try:
        notebook = source_notebook(assignment)
        return notebook if notebook.exists() else None
    except (ValueError, FileNotFoundError):
        return None


@functools.cache
def solution_code(assignment: str, notebook: Path) -> tuple[types.CodeType, ...]:
    """The notebook's code cells that define its functions (its locked and answer cells, not its tests), compiled
    once."""
    cells = nbformat.read(notebook, as_version=4).cells
    return tuple(compile(cell.source, f"<{assignment}:{cell.metadata['nbgrader']['grade_id']}>", "exec")
                 for cell in cells if cell.cell_type == "code"
                 and cell.metadata.get("nbgrader", {}).get("grade_id") and not cell.metadata["nbgrader"].get("grade"))


def exec_solution(assignment: str, notebook: Path, namespace: dict[str, Any], *, quiet_stdout: bool = False,
                  quiet_stderr: bool = False) -> dict[str, Any]:
    """``namespace`` after the solution's code cells ran in it (what they print dropped where asked)."""
    with contextlib.ExitStack() as stack:
        if quiet_stdout:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        if quiet_stderr:
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        for code in solution_code(assignment, notebook):
            exec(code, namespace)
    return namespace


def rebound(fn: Callable, namespace: dict[str, Any]) -> Callable:
    """``fn`` looking its global names up in ``namespace`` (as a notebook cell's function does)."""
    return types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)


@contextlib.contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block; afterwards what it was (unset if it was unset)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


# --- running graded cells ------------------------------------------------------------------------------
def cells_using(cells: Iterable[GradedCell], callers: dict[str, set[str]], names: Iterable[str]) -> list[GradedCell]:
    """The cells whose checks use one of ``names`` or one of their ``callers`` (name -> the names that use it)."""
    names = set(names)
    names |= set().union(*(callers.get(n, set()) for n in names))
    return [cell for cell in cells if names & {f for call in cell.calls for f in call.functions}]


def hidden_calls_only(cell: GradedCell) -> GradedCell:
    """``cell`` with its hidden calls alone (what the catch-rate tests measure)."""
    return type(cell)(cell.grade_id, cell.points, tuple(c for c in cell.calls if c.hidden), cell.index)


def run_cells_in(assignment: str, namespace: dict[str, Any], cells: Iterable[GradedCell], hidden: bool = True,
                 only_hidden: bool = False) -> dict[str, CellResult]:
    """Each of ``cells`` run with the assignment's checks on the names of ``namespace``, by grade id."""
    module = checks_module(assignment)
    results = {}
    for cell in cells:
        if only_hidden:
            cell = hidden_calls_only(cell)
        results[cell.grade_id] = run_test_cell(cell, module, namespace.__getitem__, hidden)
    return results


def failed(results: dict[str, CellResult]) -> set[str]:
    """The grade ids of the cells that did not pass."""
    return {grade_id for grade_id, result in results.items() if not result.passed}


def caught(run_cells: Callable[..., dict[str, CellResult]], cells: Iterable[GradedCell], replacements: dict[str, Any],
           must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``; ``run_cells``
    is the assignment's (replacements, only_hidden=..., cells=...) -> results."""
    results = run_cells(replacements, only_hidden=True, cells=[cell for cell in cells if cell.grade_id in must_fail])
    return all(not result.passed for result in results.values())


def catch_rates(caught: Callable[[dict[str, Any], set[str]], bool], wrong: Variants, secrets: Iterable[str],
                names: Iterable[str] | None = None) -> dict[str, float]:
    """Per wrong variant (all of ``wrong``, or ``names``), the share of ``secrets`` for which ``caught`` says its
    hidden checks catch it (COURSE_GRADING_SEED is set to each secret in turn and restored afterwards)."""
    secrets = list(secrets)
    names = list(names if names is not None else wrong)
    hits = dict.fromkeys(names, 0)
    for secret in secrets:
        with environment("COURSE_GRADING_SEED", secret):
            for name in names:
                hits[name] += caught(*wrong[name])
    return {name: hits[name] / len(secrets) for name in names}


# --- for the fast tier's tests (tests/test_a*_checks.py) -----------------------------------------------
@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyTorch on one thread inside the block (tiny tensors on a loaded 2-core machine), then as before."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cells_failed_by(variants: Variants) -> set[str]:
    """The graded cells that at least one of ``variants`` must fail."""
    return set().union(*(must_fail for _, must_fail in variants.values()))


def rule_pairs(checks: types.ModuleType, pairs: dict[str, tuple[list, list]]) -> dict[str, tuple[list, list]]:
    """``pairs`` (check name -> (its visible cases, its hidden cases), each case a (rule, setting) pair), once it is
    known to name exactly the checks of ``checks.hidden_rules()``."""
    assert set(pairs) == set(checks.hidden_rules()), \
        f"the pairs name {sorted(pairs)}, the checks with hidden rules are {sorted(checks.hidden_rules())}"
    return pairs


def rules_only_hidden(visible: list, hidden: list) -> set[str]:
    """The rules that a hidden case tests and no visible case does (each case a (rule, setting) pair)."""
    return {rule for rule, _ in hidden} - {rule for rule, _ in visible}


# --- a class graded by the grading command (tests/heavy/test_grading_a*.py) ---------------------------
# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
Students = dict[str, tuple[dict[str, str], tuple[str, str] | None, set[str], str | None]]


def make_notebook(assignment: str, replaced: dict[str, str], extra: tuple[str, str] | None, path: Path) -> None:
    """The release with every answer cell taken from the solution, then the student's changes: the answer cells
    in ``replaced`` (grade_id -> source), and ``extra`` = (grade_id, source), a cell added after that cell."""
    solution = {c.metadata["nbgrader"]["grade_id"]: c.source
                for c in nbformat.read(source_notebook(assignment), as_version=4).cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(COURSE_ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solution:
            cell.source = replaced.get(grade_id, solution[grade_id])
        cells.append(cell)
        if extra and grade_id == extra[0]:
            cells.append(nbformat.v4.new_code_cell(extra[1]))
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def write_course(root: Path, assignment: str, students: Students) -> None:
    """A copy of the course under ``root`` (its nbgrader config, solutions and assignments) with one submission
    per student in ``root/subs``."""
    for name in ("nbgrader_config.py", "solutions", "assignments"):
        (shutil.copytree if (COURSE_ROOT / name).is_dir() else shutil.copy)(COURSE_ROOT / name, root / name)
    for student, (replaced, extra, _, _) in students.items():
        make_notebook(assignment, replaced, extra, root / "subs" / student / assignment / f"{assignment}.ipynb")


def grade(root: Path, assignment: str, *, cell_timeout: int, call_timeout: int,
          timeout: int) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, str]]]:
    """The grading command run on ``root/subs`` under a fresh 128-bit secret (as official grading needs): the
    finished process and the grades file's rows by student."""
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", assignment, "subs", "--root", str(root),
                           "--jobs", "2", "--cell-timeout", str(cell_timeout), "--call-timeout", str(call_timeout)],
                          cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COURSE_GRADING_SEED": secrets.token_hex(16)})
    with open(root / f"grades-{assignment}.csv", encoding="utf-8") as grades:
        rows = {r["student"]: r for r in csv.DictReader(grades)}
    return done, rows


def class_graded_problems(done: subprocess.CompletedProcess, rows: dict[str, dict[str, str]],
                          students: Students) -> list[str]:
    """What is wrong with a class's grading run (empty when it finished with the sandbox on and a row per
    student)."""
    problems = []
    if done.returncode != 0:
        problems.append(f"the grading command exited with {done.returncode}:\n"
                        + done.stdout[-3000:] + done.stderr[-3000:])
    if "protections OFF" in done.stdout:
        problems.append("the grading command ran with its protections OFF")
    if set(rows) != set(students):
        problems.append(f"the grades file has rows for {sorted(rows)}, expected {sorted(students)}")
    return problems


def points_problems(row: dict[str, str], points: dict[str, float], must_fail: set[str],
                    flag: str | None) -> list[str]:
    """What is wrong with a student's row of the grades file (empty when exactly the cells ``must_fail`` got 0,
    the autograded total lacks exactly their points and ``flag``, if any, is among the row's flags)."""
    problems = []
    failed_cells = {g for g in points if float(row[g]) == 0}
    if failed_cells != must_fail:
        problems.append(f"cells with 0 points: {sorted(failed_cells)}, expected {sorted(must_fail)} "
                        f"(flags: {row['flags']})")
    expected = sum(points.values()) - sum(points[g] for g in must_fail)
    if float(row["autograded"]) != expected:
        problems.append(f"autograded {row['autograded']}, expected {expected}")
    if flag and flag not in row["flags"]:
        problems.append(f"the flags should mention {flag!r}: {row['flags']}")
    return problems


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (across pytest-xdist's worker processes)."""
    import fcntl

    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def hostile_class(assignment: str, students: Students, points: dict[str, float], *, cell_timeout: int,
                  call_timeout: int, timeout: int, total: float = 80,
                  missing: Callable[[], str | None] = lambda: None) -> tuple[Callable[..., Any], ...]:
    """The three tests of an assignment's hostile class, graded once by the grading command (a module fixture):
    the run finished with the sandbox on and a row per student, the correct submission gets every autograded
    point (``total``), and each submission loses exactly its cells' points. A test module binds them to its own
    names (pytest collects them there):

        (graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
         test_each_submission_loses_exactly_its_points) = vh.hostile_class(ASSIGNMENT, CLASS, POINTS, ...)

    ``missing()``: why the class cannot be graded yet (the tests skip with it), or None.
    """
    import time

    import pytest

    @pytest.fixture(scope="module", name="graded")
    def graded(tmp_path_factory: Any) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, str]]]:
        why = missing()
        if why is not None:
            pytest.skip(why)
        # Once per test session: with pytest-xdist each worker that gets one of these tests builds this module
        # fixture, and would grade the whole class again (seen: a5's class graded twice, 400 s each). The first
        # worker grades; the other waits for the lock and reads the result.
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # shared by the workers of this session
        done_file = base / f"{assignment}-class.json"
        with exclusive(base / f"{assignment}-class.lock"):
            if not done_file.is_file():
                root = base / f"{assignment}-class"
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir()
                write_course(root, assignment, students)
                started = time.monotonic()
                done, rows = grade(root, assignment, cell_timeout=cell_timeout, call_timeout=call_timeout,
                                   timeout=timeout)
                print(f"graded {len(students)} submissions in {time.monotonic() - started:.0f} s")
                done_file.write_text(json.dumps({"args": [str(a) for a in done.args], "returncode": done.returncode,
                                                 "stdout": done.stdout, "stderr": done.stderr, "rows": rows}))
        saved = json.loads(done_file.read_text())
        return (subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"]),
                saved["rows"])

    def test_the_class_is_graded_with_the_sandbox_on(graded: Any) -> None:
        assert class_graded_problems(*graded, students) == []

    def test_the_correct_submission_gets_every_autograded_point(graded: Any) -> None:
        _, rows = graded
        assert float(rows["correct"]["autograded"]) == sum(points.values()) == total, rows["correct"]["flags"]

    @pytest.mark.parametrize("student", students)
    def test_each_submission_loses_exactly_its_points(graded: Any, student: str) -> None:
        _, rows = graded
        _, _, must_fail, flag = students[student]
        assert points_problems(rows[student], points, must_fail, flag) == []

    return (graded, test_the_class_is_graded_with_the_sandbox_on,
            test_the_correct_submission_gets_every_autograded_point, test_each_submission_loses_exactly_its_points)
