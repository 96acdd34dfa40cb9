"""The checking protocol: what a test cell may contain, and how its checks are run.

A graded test cell holds only calls of the assignment's checks, one per line::

    checks.check_conv_output_size(conv_output_size)
    ### BEGIN HIDDEN TESTS
    checks.check_conv_output_size(conv_output_size, hidden=True)
    ### END HIDDEN TESTS

Positional arguments name the notebook's functions under test; keyword
arguments are literals. Because a cell is data of this shape, a grader never
has to run the cell's code where the student's code lives: it reads the calls
from the instructor's own (source) notebook, resolves each name to something
that calls the student's function, and runs the check itself. The same parser
and runner serve three callers:

* :func:`run_checks`: calls the checks directly on Python functions, in
  milliseconds (the tests prove correct variants pass and wrong ones fail);
* ``course_utils.grading.session``: the official grader, whose names resolve
  to proxies into the sandboxed worker;
* the student's kernel, which simply executes the cell.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat

from ..checks import CheckFailure
from .nbgrader_course import COURSE_ROOT
from .results import CellResult

__all__ = ["CheckCall", "GradedCell", "CellResult", "ProtocolError", "StudentFault", "StudentGone", "BadAnswer",
           "parse_test_cell", "graded_cells", "checks_module", "run_test_cell", "run_checks", "source_notebook",
           "solution_namespace"]

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


class ProtocolError(ValueError):
    """A test cell does not follow the protocol (a problem in the assignment, not in a submission)."""


class StudentFault(BaseException):
    """What the student's process sent, or failed to send, is no answer at all: that cell scores 0, flagged.

    A BaseException, so that checks, which catch the student's ordinary errors,
    let it through to the grader (a wrong answer is a CheckFailure; this is not one).
    """


class StudentGone(StudentFault):
    """The student's process died, ran out of time or garbled its channel: the grader restarts it."""


class BadAnswer(StudentFault):
    """An answer the grader refuses: too large, undecodable, or not of the shape the worker sends (forged)."""


@dataclass(frozen=True)
class CheckCall:
    check: str                      # a function of the assignment's checks module
    functions: tuple[str, ...]      # names of the notebook's functions, passed positionally
    options: Mapping[str, Any]      # literal keyword arguments
    hidden: bool                    # between the hidden-test markers (or hidden=True)
    line: int


@dataclass(frozen=True)
class GradedCell:
    grade_id: str
    points: float
    calls: tuple[CheckCall, ...]
    index: int                      # position in the source notebook


def parse_test_cell(source: str, grade_id: str = "?") -> list[CheckCall]:
    """The check calls of a test cell, in order; :class:`ProtocolError` for anything else."""
    hidden_lines: set[int] = set()
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == HIDDEN_BEGIN:
            inside = True
        elif marker == HIDDEN_END:
            inside = False
        elif inside:
            hidden_lines.add(number)
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ProtocolError(f"test cell {grade_id!r} is not valid Python: {err}") from None
    expected = "expected only lines like checks.check_name(function_name, option=literal)"
    calls = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "checks"):
            raise ProtocolError(f"test cell {grade_id!r}, line {node.lineno}: {expected}, "
                                f"got {ast.unparse(node)[:80]!r}")
        if not all(isinstance(arg, ast.Name) for arg in call.args):
            raise ProtocolError(f"test cell {grade_id!r}, line {node.lineno}: positional arguments must be "
                                f"names of the notebook's functions; {expected}")
        options = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ProtocolError(f"test cell {grade_id!r}, line {node.lineno}: no **options; {expected}")
            try:
                options[keyword.arg] = ast.literal_eval(keyword.value)
            except (ValueError, TypeError):
                raise ProtocolError(f"test cell {grade_id!r}, line {node.lineno}: option {keyword.arg}= must be "
                                    f"a literal") from None
        calls.append(CheckCall(call.func.attr, tuple(a.id for a in call.args if isinstance(a, ast.Name)), options,
                               node.lineno in hidden_lines or bool(options.get("hidden")), node.lineno))
    if not calls:
        raise ProtocolError(f"test cell {grade_id!r} calls no checks; {expected}")
    return calls


def source_notebook(assignment: str, root: Path = COURSE_ROOT) -> Path:
    """The instructor's notebook of an assignment: ``solutions/<id>/<id>.ipynb``."""
    path = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        known = sorted(p.name for p in (root / "solutions").glob("*") if p.is_dir())
        raise ValueError(f"no assignment {assignment!r}: expected {path}; known: {known}")
    return path


def graded_cells(notebook: nbformat.NotebookNode | Path) -> list[GradedCell]:
    """The autograded test cells of a notebook (nbgrader ``grade`` and not ``solution``), parsed."""
    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, Path) else notebook
    cells = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            grade_id = meta["grade_id"]
            calls = tuple(parse_test_cell(cell.source, grade_id))
            cells.append(GradedCell(grade_id, float(meta.get("points", 0)), calls, index))
    return cells


def checks_module(assignment: str) -> ModuleType:
    """``course_utils.checks.<assignment>``: the checks every test cell of the assignment calls."""
    try:
        return importlib.import_module(f"course_utils.checks.{assignment}")
    except ModuleNotFoundError as err:
        raise ValueError(f"no checks for assignment {assignment!r}: expected a module "
                         f"course_utils/checks/{assignment}.py ({err})") from None


def _hidden_feedback(call: CheckCall, err: BaseException, module: ModuleType) -> str:
    """What a student sees of a hidden failure: never the inputs.

    A checks module whose hidden failures name only the rule, with no text or number the student's code
    chose (``HIDDEN_MESSAGES_NAME_THE_RULE = True``), has its message shown; otherwise a fixed sentence.
    """
    if isinstance(err, CheckFailure) and getattr(module, "HIDDEN_MESSAGES_NAME_THE_RULE", False):
        return f"A hidden check failed: {err}"
    return (f"A hidden check failed ({call.check}, on inputs that are not shown). Your code passes or fails "
            f"the visible checks above; make it correct in general, not only for the examples.")


def _error_name(err: BaseException) -> str:
    """The name of ``err``'s class, or of its first base the student did not name (hidden failures show it)."""
    for cls in type(err).__mro__:
        if not cls.__dict__.get("named_by_student", False):
            return cls.__name__
    return "Exception"  # pragma: no cover - object is never named by a student


def run_test_cell(cell: GradedCell, module: ModuleType, resolve: Callable[[str], Any], hidden: bool = True,
                  on_hidden: Callable[[], None] | None = None, visible: bool = True) -> CellResult:
    """Run a test cell's checks with ``resolve(name)`` standing for the notebook's functions.

    The cell passes when every call returns; the first failing call decides the
    message. ``hidden=False`` skips the hidden calls (what a student runs),
    ``visible=False`` the visible ones (the grader runs a notebook's hidden calls
    after its last cell); ``on_hidden()`` is called before each hidden call runs.
    A :class:`StudentFault` (the student's process sent no usable answer) fails
    the cell with a flag.
    """
    printed = io.StringIO()
    for call in cell.calls:
        if call.hidden and not hidden or not call.hidden and not visible:
            continue
        body = getattr(module, call.check, None)
        if not callable(body):
            raise ProtocolError(f"test cell {cell.grade_id!r} calls checks.{call.check}, which "
                                f"{module.__name__} does not define")
        if call.hidden and on_hidden is not None:
            on_hidden()
        try:
            with contextlib.redirect_stdout(printed):
                body(*(resolve(name) for name in call.functions), **call.options)
        except StudentFault as fault:
            what = "your code stopped the grader's worker" if isinstance(fault, StudentGone) else \
                "the grader refused what your code sent back"
            message = f"{what}: {fault}"
            return CellResult(cell.grade_id, False, printed.getvalue(), message, message, type(fault).__name__,
                              call.hidden, [f"{cell.grade_id}: {message}"])
        except Exception as err:  # CheckFailure, or the student's error escaping the check
            message = str(err) if isinstance(err, CheckFailure) else f"{type(err).__name__}: {err}"
            # A hidden failure shows no text of the student's: a class they named could carry the inputs.
            name = _error_name(err) if call.hidden else type(err).__name__
            feedback = _hidden_feedback(call, err, module) if call.hidden else message
            return CellResult(cell.grade_id, False, printed.getvalue(), message, feedback, name, call.hidden)
    return CellResult(cell.grade_id, True, printed.getvalue())


def _missing(name: str) -> Callable[..., Any]:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NameError(f"{name} is not defined: did the cell that defines it run without errors?")

    missing.__name__ = name
    return missing


def run_checks(assignment: str, namespace: Mapping[str, Any] | ModuleType, *, hidden: bool = True,
               root: Path = COURSE_ROOT) -> dict[str, CellResult]:
    """Every test cell of ``assignment`` run directly on Python functions (no notebook, no kernel).

    namespace: the functions under test by name, e.g. ``{"conv_output_size": my_version}``
    or a module. Returns {grade_id: CellResult}, in notebook order.
    """
    names = vars(namespace) if isinstance(namespace, ModuleType) else namespace
    cells = graded_cells(source_notebook(assignment, root))
    module = checks_module(assignment)
    return {cell.grade_id: run_test_cell(cell, module, lambda n: names.get(n) or _missing(n), hidden)
            for cell in cells}


def solution_namespace(assignment: str, root: Path = COURSE_ROOT) -> dict[str, Any]:
    """The instructor's solution: the source notebook's code cells run in a fresh namespace, test cells left out.

    For tests (variants replace one function of it) and benchmarks; needs ``solutions/``.
    """
    namespace: dict[str, Any] = {"__name__": f"solution_{assignment}"}
    for cell in nbformat.read(source_notebook(assignment, root), as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade_id") and not meta.get("grade"):
            exec(compile(cell.source, f"<{assignment}:{meta['grade_id']}>", "exec"), namespace)
    return namespace
