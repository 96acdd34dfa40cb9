"""Trusted grading of one submitted notebook.

The student's cells run in a sandboxed worker process (``worker.py``); the
checks run here, in the grader, with PyTorch and NumPy as they were installed.
Each graded test cell is read from the instructor's source notebook (hidden
tests included), never from the submission, and its checks call the student's
functions through :class:`StudentFunction` proxies: arguments and results cross
as plain data (``wire.py``). So a submission can neither rewrite a test, nor
patch ``numpy.allclose``, nor read the hidden inputs, nor print its way to a
pass. What it earns is kept: a cell that hangs or kills the worker costs that
cell, then the worker is restarted, the earlier cells replayed, and grading
goes on.

Blame: anything the untrusted worker sends or fails to send (a crash, a hang,
a forged, oversized or undecodable answer, a worker that will not come back)
is the student's: that cell scores 0 with a flag and the rest is graded, so
:func:`grade_notebook` returns a result for every submission. Only the
grader's own faults raise :class:`GradingError`. A whole notebook has a
wall-clock budget (``Timeouts.notebook``); steps past it are not run. Cells
that run after a hidden check called the student's code keep no output in the
result (it could show the hidden inputs).
"""

from __future__ import annotations

import builtins
import keyword
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..checks import ForbiddenReference
from .integrity import Integrity, compare_with_release, read_submission
from .nbgrader_course import COURSE_ROOT
from .protocol import (BadAnswer, GradedCell, StudentFault, StudentGone, checks_module, graded_cells,
                       run_test_cell, source_notebook)
from .results import CellResult, CellRun, NotebookResult, StepKind
from .wire import (CHECKS_ENV, MAX_ANSWER_BYTES, Oversized, WireError, checks_modules, clean_text, decode, encode,
                   receive, send)

__all__ = ["Timeouts", "Worker", "StudentFunction", "NotebookResult", "Step", "grade_notebook", "GradingError",
           "TimedOut", "OverBudget"]

MAX_RESTARTS = 5
HIDDEN_GRACE = 120.0  # seconds for the hidden checks when the notebook's budget ran out before them
TEXT_LIMIT = 20_000  # characters of one text field of an answer kept (the worker keeps as many; it is untrusted)
_SAFE_BUILTIN_ERRORS = {"ValueError", "TypeError", "IndexError", "KeyError", "RuntimeError", "AssertionError",
                        "ZeroDivisionError", "ArithmeticError", "OverflowError", "NotImplementedError",
                        "AttributeError", "NameError", "LookupError", "MemoryError", "RecursionError", "Exception"}


class GradingError(BaseException):
    """The grader itself could not do its job (not the student's fault).

    A BaseException, like StudentGone, so that a check, which catches the
    student's ordinary errors, can never mistake it for a wrong answer.
    """


class TimedOut(StudentGone):
    """No answer within the cell's or the call's time limit (the worker is stopped)."""


class OverBudget(TimedOut):
    """The notebook's whole wall-clock budget ran out (the worker is stopped, later steps are not run)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed, each a separate limit."""

    cell: float = 300.0      # one student cell (training cells take time)
    call: float = 120.0      # one call of a student's function by a check
    start: float = 120.0     # the worker's start-up
    # The whole notebook, restarts and replays included. An honest a1 takes 5-10 s (sandboxed, on a laptop);
    # 900 s is three cells at the full cell limit, so slow honest code passes, while a submission that stays
    # just under every limit holds a worker for 15 minutes at most (a class of 200 on 8 cores: under 6 hours
    # even if every student did it).
    notebook: float = 900.0


class _ChannelEnd:
    """Put on the answer queue by the reader thread when it stops reading (never a message)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail   # kind: closed | oversized | garbled


class Worker:
    """A sandboxed Python process that runs the student's cells and answers calls.

    sandbox_factory(scratch, env) -> an object with ``popen(argv, **kwargs)`` (see
    ``sandbox.py``); ``None`` runs the worker as a plain subprocess. ``deadline``
    (``time.monotonic()`` seconds) bounds every wait, whatever the per-step limit.
    """

    def __init__(self, scratch: Path, sandbox_factory: Callable[[Path, dict], Any] | None, env: dict[str, str],
                 timeouts: Timeouts, deadline: float | None = None) -> None:
        self.scratch, self.sandbox_factory, self.env, self.timeouts = scratch, sandbox_factory, env, timeouts
        self.deadline = deadline
        self.process: subprocess.Popen | None = None
        self.answers: queue.Queue = queue.Queue()
        self.counter = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def start(self) -> None:
        argv = [sys.executable, "-I", "-m", "course_utils.grading.worker"]
        env = {**self.env, "COURSE_WORKER_LOG": str(self.scratch / "worker-output.log")}
        pipes: dict[str, Any] = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if self.sandbox_factory is None:
            self.process = subprocess.Popen(argv, env={**_plain_env(), **env}, cwd=self.scratch,
                                            start_new_session=True, **pipes)
        else:
            self.process = self.sandbox_factory(self.scratch, env).popen(argv, **pipes)
        self.answers = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout, self.answers), daemon=True).start()
        ready = self._wait(self.timeouts.start, "starting")
        if ready.get("ready") is not True:
            self.stop()
            raise GradingError(f"the worker did not start: {str(ready)[:300]}")

    @staticmethod
    def _read(stream, answers: queue.Queue) -> None:
        """Reads answers until the channel ends; never more than MAX_ANSWER_BYTES of one, never a deep one."""
        try:
            while True:
                answers.put(receive(stream, MAX_ANSWER_BYTES))
        except Oversized as err:  # the body is left unread: the worker is stopped, nothing else reads it
            answers.put(_ChannelEnd("oversized", str(err)))
        except WireError as err:
            answers.put(_ChannelEnd("garbled", str(err)))
        except (EOFError, OSError, ValueError) as err:
            answers.put(_ChannelEnd("closed", str(err)))
        except BaseException as err:  # e.g. MemoryError: whatever the worker sent, the grader goes on
            answers.put(_ChannelEnd("garbled", f"{type(err).__name__}: {err}"))

    def _wait(self, timeout: float, doing: str) -> dict:
        left = self.time_left()
        try:
            answer = self.answers.get(timeout=max(0.0, min(timeout, left)))
        except queue.Empty:
            self.stop()
            if left <= timeout:
                raise OverBudget(f"the notebook's time budget of {self.timeouts.notebook:g} s ran out while "
                                 f"{doing} (timed out)") from None
            raise TimedOut(f"no answer after {timeout:g} s while {doing} (timed out)") from None
        if isinstance(answer, _ChannelEnd):
            code = self.stop()
            if answer.kind == "closed":
                raise StudentGone(f"the process ended while {doing} (exit status {code})")
            if answer.kind == "oversized":
                raise BadAnswer(f"oversized answer while {doing}: {answer.detail} (the worker was restarted)")
            raise BadAnswer(f"tampering suspected: the worker's answer while {doing} could not be read "
                            f"({answer.detail}); an unmodified worker never sends this")
        return answer

    def _request(self, message: dict, timeout: float, doing: str) -> dict:
        if self.process is None or self.process.stdin is None or self.process.poll() is not None:
            raise StudentGone("the worker is not running")
        self.counter += 1
        try:
            send(self.process.stdin, {"id": self.counter, **message})
        except (BrokenPipeError, OSError):
            code = self.stop()
            raise StudentGone(f"the process ended before {doing} (exit status {code})") from None
        answer = self._wait(timeout, doing)
        if answer.get("id") != self.counter or "protocol_error" in answer:
            # Only the student's code can garble the channel (e.g. a forked process that answers too):
            # the worker is restarted and the cell flagged, like a crash.
            self.stop()
            raise StudentGone(f"the process's answers got mixed up while {doing} (did the code fork or write "
                              f"to the grader's channel?)")
        if "oversized" in answer:  # the worker's own refusal of a too large answer: it is still in step
            raise BadAnswer(f"oversized answer while {doing}: {_text(answer['oversized'], 300)}")
        return answer

    def _forged(self, doing: str, answer: dict) -> BadAnswer:
        self.stop()  # whoever wrote it may have more queued: only a fresh worker is in step again
        return BadAnswer(f"tampering suspected: the answer while {doing} is not what the worker sends "
                         f"({_text(str(answer), 200)}); the worker was restarted")

    def execute(self, source: str) -> dict:
        """Run one cell: {"ok": bool, "stdout": str, "error": {"ename", "evalue", "traceback"} | None}."""
        doing = "running a cell"
        answer = self._request({"op": "exec", "source": source}, self.timeouts.cell, doing)
        error = answer.get("error")
        if not isinstance(answer.get("ok"), bool) or not isinstance(answer.get("stdout", ""), str) or \
                not (error is None or isinstance(error, dict)):
            raise self._forged(doing, answer)
        if error is not None:
            error = {key: _text(error.get(key), 8000) for key in ("ename", "evalue", "traceback")}
        return {"ok": answer["ok"], "stdout": _text(answer.get("stdout", ""), TEXT_LIMIT), "error": error}

    def call(self, name: str, args: tuple, kwargs: dict, refuse: Sequence[str] = (),
             forbid: Sequence[str] = (), refuse_code: Sequence[str] = (), why: str | None = None) -> tuple[Any, int]:
        """Call the student's ``name`` through the worker's guard: (value, ATen operators it dispatched)."""
        try:
            message = {"op": "call", "name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs)),
                       **_guard_fields(refuse, forbid, refuse_code, why)}
        except WireError as err:
            raise GradingError(f"a check passed {name} something that cannot be sent: {err}") from None
        return self._answer(message, name, f"calling {name}")

    def drive(self, name: str, driver: Any, refuse: Sequence[str] = (), forbid: Sequence[str] = (),
              refuse_code: Sequence[str] = (), why: str | None = None) -> tuple[Any, int]:
        """``driver(the student's name)`` in the worker, through its guard: (value, ATen operators dispatched).

        ``driver``: a test object of a checks module (``wire.checks_class``), sent as its data.
        """
        try:
            message = {"op": "drive", "name": name, "driver": encode(driver),
                       **_guard_fields(refuse, forbid, refuse_code, why)}
        except WireError as err:
            raise GradingError(f"a check drove {name} with something that cannot be sent: {err}") from None
        if not (isinstance(message["driver"], dict) and message["driver"].get("t") == "object"):
            raise GradingError(f"a check drove {name} with a {type(driver).__name__}: expected a test object of "
                               f"a checks module (a class with __wire__ and __call__(self, student))")
        if type(driver).__module__ not in checks_modules(self.env.get(CHECKS_ENV, "")):
            raise GradingError(f"a check drove {name} with a {type(driver).__qualname__} of {type(driver).__module__}, "
                               f"a module the worker was not started with (its {CHECKS_ENV} names the checks modules "
                               f"whose drivers it pins before any student code runs)")
        return self._answer(message, name, f"running a check's scenario with {name}")

    def _answer(self, message: dict, name: str, doing: str) -> tuple[Any, int]:
        answer = self._request(message, self.timeouts.call, doing)
        if "value" in answer:
            ops = answer.get("ops", 0)
            if not isinstance(ops, int) or isinstance(ops, bool) or ops < 0:
                raise self._forged(doing, answer)
            try:
                return decode(answer["value"]), ops
            except (WireError, RecursionError) as err:
                raise BadAnswer(f"tampering suspected: what {name} returned could not be read ({err}); "
                                f"an unmodified worker never sends this") from None
        if isinstance(answer.get("missing"), str):
            raise NameError(_text(answer["missing"], 300))
        if isinstance(answer.get("raised"), dict):
            raise _rebuild(answer["raised"])
        if isinstance(answer.get("tampered"), str):  # the checks' driver, or code it uses, was changed in the worker
            raise BadAnswer(f"tampering suspected: the checks' code in the worker was changed while {doing} "
                            f"({_text(answer['tampered'], 300)}); an unmodified notebook never does this")
        raise self._forged(doing, answer)

    def stop(self) -> int | None:
        """End the worker and everything it started; its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None and process.stdin is not None:
            try:
                process.stdin.close()
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait()
        return process.returncode


def _guard_fields(refuse: Sequence[str], forbid: Sequence[str], refuse_code: Sequence[str],
                  why: str | None) -> dict[str, Any]:
    """A request's guard: ATen operators, dotted names, refused code (and the refusals' reason, if not the default)."""
    fields: dict[str, Any] = {"refuse": list(refuse), "forbid": list(forbid)}
    if refuse_code:
        fields["refuse_code"] = list(refuse_code)
    if why is not None:
        fields["why"] = why
    return fields


def _plain_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def _text(value: Any, limit: int) -> str:
    """A string from the worker, as the grader keeps it: a str, no lone surrogates, at most ``limit`` long."""
    text = clean_text(value if isinstance(value, str) else "" if value is None else str(value))
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters]"


def _rebuild(raised: dict) -> Exception:
    """The student's exception, rebuilt from plain data as a built-in type (with their class's name).

    A class the student named is marked ``named_by_student`` (a hidden failure shows its built-in base);
    ``ForbiddenReference`` comes back as itself, so a check can tell a refused reference apart.
    """
    base_name = _text(raised.get("builtin"), 100) or "Exception"
    base: type[Exception] = getattr(builtins, base_name) if base_name in _SAFE_BUILTIN_ERRORS else Exception
    name = _text(raised.get("type"), 100) or base.__name__
    message = _text(raised.get("message"), 2000)
    if name == "ForbiddenReference" and base_name == "RuntimeError":
        return ForbiddenReference(message)
    if name != base.__name__ and name.isidentifier() and not keyword.iskeyword(name):
        base = type(name, (base,), {"named_by_student": True})
    return base(message)


class StudentFunction:
    """Stands for the student's function (or class) ``name`` in a check; calls it in the worker, through its guard.

    ``refuse``: ATen operators, ``forbid``: dotted names and ``refuse_code``: modules, classes or functions
    whose Python code the call may not use (see ``checks.guard``, ``checks.codeguard``); ``why`` ends the
    refusals' messages (None: the guard's default).
    """

    def __init__(self, worker: Worker, name: str, refuse: Sequence[str] = (), forbid: Sequence[str] = (),
                 refuse_code: Sequence[str] = (), why: str | None = None) -> None:
        self.worker, self.__name__ = worker, name
        self.refuse, self.forbid, self.refuse_code, self.why = tuple(refuse), tuple(forbid), tuple(refuse_code), why

    def with_guard(self, refuse: Sequence[str], forbid: Sequence[str], refuse_code: Sequence[str] = (),
                   why: str | None = None) -> StudentFunction:
        return StudentFunction(self.worker, self.__name__, refuse, forbid, refuse_code, why)

    def with_forbidden(self, forbid: Sequence[str]) -> StudentFunction:
        """The older spelling of :meth:`with_guard` (dotted names only)."""
        return self.with_guard(self.refuse, forbid)

    def counted(self, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        """(value, number of ATen operators the call dispatched in the worker)."""
        return self.worker.call(self.__name__, args, kwargs, self.refuse, self.forbid, self.refuse_code, self.why)

    def drive(self, driver: Any) -> tuple[Any, int]:
        """(``driver(the student's object)`` run in the worker, ATen operators dispatched): ``checks.drive``."""
        return self.worker.drive(self.__name__, driver, self.refuse, self.forbid, self.refuse_code, self.why)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.counted(*args, **kwargs)[0]


@dataclass(frozen=True)
class Step:
    """One step of a submission's plan."""

    index: int               # position in the submitted notebook (-1: a test cell the student deleted)
    grade_id: str | None     # always set for TEST
    kind: StepKind
    source: str = ""         # EXEC: the code the worker runs (TEST cells are read from the source notebook)


def _plan(submission: nbformat.NotebookNode, release: nbformat.NotebookNode,
          tests: dict[str, GradedCell]) -> list[Step]:
    """The steps in submission order: TEST for graded test cells, EXEC for every other code cell.

    Locked code cells run as released (like nbgrader's OverwriteCells); test
    cells run from the source notebook; a test cell the student deleted runs
    at the end. (``read_submission`` has made every cell's grading metadata a
    dict and every grade_id a str.)
    """
    released = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in release.cells}
    steps, seen = [], set()
    for index, cell in enumerate(submission.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if grade_id in tests:
            if grade_id not in seen:
                steps.append(Step(index, grade_id, StepKind.TEST))
                seen.add(grade_id)
            continue
        original = released.get(grade_id) if grade_id else None
        if original is not None and original.metadata["nbgrader"].get("locked") \
                and not original.metadata["nbgrader"].get("solution"):
            steps.append(Step(index, grade_id, StepKind.EXEC, original.source))
        else:
            steps.append(Step(index, grade_id, StepKind.EXEC, cell.source))
    steps += [Step(-1, grade_id, StepKind.TEST) for grade_id in tests if grade_id not in seen]
    return steps


def grade_notebook(path: Path, assignment: str, *, root: Path = COURSE_ROOT,
                   sandbox_factory: Callable[[Path, dict], Any] | None = None, timeouts: Timeouts = Timeouts(),
                   scratch_parent: Path | None = None) -> NotebookResult:
    """Grade one submitted notebook of ``assignment`` (the checks run here, the student's code in a worker).

    Returns a result for anything the submission does; raises GradingError only for the grader's own faults.
    """
    start = time.perf_counter()
    deadline = time.monotonic() + timeouts.notebook
    name = path.stem
    source_path = root / "solutions" / assignment / f"{name}.ipynb"
    if not source_path.is_file():
        source_path = source_notebook(assignment, root)
    release = nbformat.read(root / "assignments" / assignment / source_path.name, as_version=4)
    tests = {cell.grade_id: cell for cell in graded_cells(source_path)}
    module = checks_module(assignment)
    result = NotebookResult(name, points={g: c.points for g, c in tests.items()})

    submission, problems = read_submission(path)
    result.flags += problems
    if submission is None:
        result.invalid = True
        for grade_id in tests:
            result.tests[grade_id] = CellResult(grade_id, False, failure="the notebook could not be read",
                                                feedback="your notebook file could not be read", error_name="Invalid")
        result.seconds = time.perf_counter() - start
        return result
    integrity: Integrity = compare_with_release(submission, release)
    result.flags += integrity.flags

    scratch = Path(tempfile.mkdtemp(prefix="grade-", dir=scratch_parent))
    try:
        _copy_release_files(root / "assignments" / assignment, scratch)
        env = {"NBGRADER_EXECUTION": "autograde", "COURSE_FAST": "1", "MPLBACKEND": "Agg", CHECKS_ENV: module.__name__}
        worker = Worker(scratch, sandbox_factory, env, timeouts, deadline)
        try:
            _run_steps(worker, _plan(submission, release, tests), tests, module, result)
        except StudentFault as fault:  # a safety net: no student-caused problem ends without a result
            result.flags.append(f"grading stopped early: {fault}")
            for grade_id in tests:
                result.tests.setdefault(grade_id, CellResult(
                    grade_id, False, failure=f"not run: {fault}", feedback="not graded: your notebook stopped "
                    "the grader", error_name=type(fault).__name__))
        finally:
            worker.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


def _copy_release_files(release_folder: Path, scratch: Path) -> None:
    """Data files handed out with the assignment (never the student's own extra files)."""
    for item in release_folder.rglob("*"):
        if item.is_file() and item.suffix != ".ipynb" and ".ipynb_checkpoints" not in item.parts:
            target = scratch / item.relative_to(release_folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(item, target)


def _start(worker: Worker) -> None:
    """The first start: one that fails is the machine's problem (no student code has run), never a 0."""
    for attempt in range(3):
        try:
            worker.start()
            return
        except (StudentFault, GradingError, OSError) as failed:
            worker.stop()
            if attempt == 2:
                raise GradingError(f"the grading worker did not start (3 tries): {failed}") from None


def _run_steps(worker: Worker, steps: list[Step], tests: dict[str, GradedCell], module,
               result: NotebookResult) -> None:
    """Run the plan: student cells and the visible checks in notebook order, then every hidden check.

    Hidden checks run after the notebook's last cell, on the functions as the notebook left them, so
    nothing the student's code learns from a hidden call (its inputs) can reach a cell's output or a
    visible check's message, which feedback shows.
    """
    done: list[str] = []      # sources that ran without killing the worker, to replay after a restart
    stopped: str | None = None  # why the remaining steps are not run
    not_run = 0
    deferred: list[str] = []  # test cells whose visible checks passed and that have hidden checks

    def restart(reason: str) -> str | None:
        """Restart the worker and replay; None when it is back, else why not (the student's doing)."""
        if result.restarts >= MAX_RESTARTS:
            return f"gave up after {MAX_RESTARTS} restarts of the worker"
        result.restarts += 1
        worker.stop()
        try:
            worker.start()
            for source in done:
                worker.execute(source)
        except OverBudget:
            worker.stop()
            return "over budget"
        except (StudentFault, GradingError, OSError) as failed:
            worker.stop()
            return f"the worker did not come back after a restart ({reason}): {failed}"
        return None

    def after_step(where: str) -> None:
        nonlocal stopped
        if not worker.running:
            stopped = "over budget" if worker.time_left() <= 0 else restart(f"after {where}")

    _start(worker)
    for step in steps:
        if stopped is None and worker.time_left() <= 0:
            stopped = "over budget"
        if stopped is not None:
            _not_run(step, stopped, result)
            not_run += 1
            continue
        if step.kind is StepKind.TEST:
            grade_id = str(step.grade_id)
            cell = tests[grade_id]
            outcome = run_test_cell(cell, module, lambda n: StudentFunction(worker, n), hidden=False)
            if step.index < 0:
                outcome.flags.append("test cell deleted from the submission: graded from the source notebook")
            result.tests[grade_id] = outcome
            if outcome.passed and any(call.hidden for call in cell.calls):
                deferred.append(grade_id)
        else:
            try:
                answer = worker.execute(step.source)
            except StudentFault as fault:
                status = "timeout" if isinstance(fault, TimedOut) else \
                    "refused" if isinstance(fault, BadAnswer) else "died"
                result.runs.append(CellRun(step.index, step.grade_id, status,
                                           error={"ename": type(fault).__name__, "evalue": str(fault)}))
                result.flags.append(f"cell {step.index}{f' ({step.grade_id})' if step.grade_id else ''}: {fault}")
            else:
                done.append(step.source)
                result.runs.append(CellRun(step.index, step.grade_id, "ok" if answer["ok"] else "error",
                                           answer["stdout"], answer["error"]))
        after_step(step.grade_id or f"cell {step.index}")

    budget_ran_out = stopped == "over budget" or stopped is None and worker.time_left() <= 0
    if deferred and budget_ran_out:
        # The budget bounds the student's cells. The hidden checks of the test cells that passed their visible
        # checks get a short grace of their own (a fresh worker replays the cells that finished, then the calls).
        worker.deadline = time.monotonic() + min(HIDDEN_GRACE, worker.timeouts.notebook)
        stopped = None if worker.running else restart("for the hidden checks")
    for grade_id in deferred:  # the hidden checks, after the last cell
        visible = result.tests[grade_id]
        if stopped is None and worker.time_left() <= 0:
            stopped = "over budget"
        if stopped is not None:
            _not_run(Step(-1, grade_id, StepKind.TEST, ""), stopped, result)
            result.tests[grade_id].output = visible.output
            result.tests[grade_id].flags[:0] = visible.flags
            not_run += 1
            continue
        hidden = run_test_cell(tests[grade_id], module, lambda n: StudentFunction(worker, n), visible=False)
        hidden.output = visible.output + hidden.output
        hidden.flags[:0] = visible.flags
        result.tests[grade_id] = hidden
        after_step(f"the hidden checks of {grade_id}")
    if budget_ran_out or stopped == "over budget":
        result.flags.append(f"the notebook's time budget of {worker.timeouts.notebook:g} s ran out: {not_run} "
                            f"step(s) not run, what ran is graded")
    if stopped is not None and stopped != "over budget":
        result.flags.append(stopped)


def _not_run(step: Step, why: str, result: NotebookResult) -> None:
    if step.kind is StepKind.EXEC:
        result.runs.append(CellRun(step.index, step.grade_id, "skipped"))
        return
    grade_id = str(step.grade_id)
    if why == "over budget":
        result.tests[grade_id] = CellResult(
            grade_id, False, failure="not run: the notebook's time budget ran out",
            feedback="not graded: your notebook used up the grader's time for one notebook", error_name="OverBudget")
    else:
        result.tests[grade_id] = CellResult(grade_id, False, failure=f"not run: {why}",
                                                 feedback="not graded: your notebook kept stopping the grader",
                                                 error_name="StudentGone")
