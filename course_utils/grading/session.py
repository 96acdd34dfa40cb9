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

from .integrity import Integrity, compare_with_release, read_submission
from .nbgrader_course import COURSE_ROOT
from .protocol import GradedCell, StudentGone, checks_module, graded_cells, run_test_cell, source_notebook
from .results import CellResult, CellRun, NotebookResult
from .wire import WireError, decode, encode, receive, send

__all__ = ["Timeouts", "Worker", "StudentFunction", "NotebookResult", "grade_notebook", "GradingError"]

MAX_RESTARTS = 5
_SAFE_BUILTIN_ERRORS = {"ValueError", "TypeError", "IndexError", "KeyError", "RuntimeError", "AssertionError",
                        "ZeroDivisionError", "ArithmeticError", "OverflowError", "NotImplementedError",
                        "AttributeError", "NameError", "LookupError", "MemoryError", "RecursionError", "Exception"}


class GradingError(BaseException):
    """The grader itself could not do its job (not the student's fault).

    A BaseException, like StudentGone, so that a check, which catches the
    student's ordinary errors, can never mistake it for a wrong answer.
    """


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed, each a separate limit."""

    cell: float = 300.0      # one student cell (training cells take time)
    call: float = 120.0      # one call of a student's function by a check
    start: float = 120.0     # the worker's start-up


class Worker:
    """A sandboxed Python process that runs the student's cells and answers calls.

    sandbox_factory(scratch) -> an object with ``popen(argv, **kwargs)`` (see
    ``sandbox.py``); ``None`` runs the worker as a plain subprocess.
    """

    def __init__(self, scratch: Path, sandbox_factory: Callable[[Path], Any] | None, env: dict[str, str],
                 timeouts: Timeouts) -> None:
        self.scratch, self.sandbox_factory, self.env, self.timeouts = scratch, sandbox_factory, env, timeouts
        self.process: subprocess.Popen | None = None
        self.answers: queue.Queue = queue.Queue()
        self.counter = 0

    def start(self) -> None:
        argv = [sys.executable, "-I", "-m", "course_utils.grading.worker"]
        env = {**self.env, "COURSE_WORKER_LOG": str(self.scratch / "worker-output.log")}
        kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if self.sandbox_factory is None:
            self.process = subprocess.Popen(argv, env={**_plain_env(), **env}, cwd=self.scratch,
                                            start_new_session=True, **kwargs)
        else:
            self.process = self.sandbox_factory(self.scratch, env).popen(argv, **kwargs)
        self.answers = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout, self.answers), daemon=True).start()
        ready = self._wait(self.timeouts.start, "starting")
        if not ready.get("ready"):
            raise GradingError(f"the worker did not start: {ready}")

    @staticmethod
    def _read(stream, answers: queue.Queue) -> None:
        try:
            while True:
                answers.put(receive(stream))
        except (EOFError, WireError, OSError, ValueError) as err:
            answers.put({"closed": str(err)})

    def _wait(self, timeout: float, doing: str) -> dict:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise StudentGone(f"no answer after {timeout:g} s while {doing} (timed out)") from None
        if "closed" in answer:
            code = self.stop()
            raise StudentGone(f"the process ended while {doing} (exit status {code})")
        return answer

    def _request(self, message: dict, timeout: float, doing: str) -> dict:
        if self.process is None or self.process.poll() is not None:
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
        return answer

    def execute(self, source: str) -> dict:
        return self._request({"op": "exec", "source": source}, self.timeouts.cell, "running a cell")

    def call(self, name: str, args: tuple, kwargs: dict, forbid: Sequence[str]) -> Any:
        try:
            message = {"op": "call", "name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs)),
                       "forbid": list(forbid)}
        except WireError as err:
            raise GradingError(f"a check passed {name} something that cannot be sent: {err}") from None
        answer = self._request(message, self.timeouts.call, f"calling {name}")
        if "value" in answer:
            try:
                return decode(answer["value"])
            except WireError as err:
                raise GradingError(f"{name} returned an unreadable value: {err}") from None
        if "missing" in answer:
            raise NameError(answer["missing"])
        if "raised" in answer:
            raise _rebuild(answer["raised"])
        raise GradingError(f"unexpected answer to a call of {name}: {str(answer)[:300]}")

    def stop(self) -> int | None:
        """End the worker and everything it started; its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
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


def _plain_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def _rebuild(raised: dict) -> Exception:
    """The student's exception, rebuilt from plain data as a built-in type (with their class's name)."""
    base_name = str(raised.get("builtin", "Exception"))
    base = getattr(builtins, base_name) if base_name in _SAFE_BUILTIN_ERRORS else Exception
    name = str(raised.get("type", base.__name__))
    if name != base.__name__ and name.isidentifier() and not keyword.iskeyword(name):
        base = type(name, (base,), {})
    return base(str(raised.get("message", "")))


class StudentFunction:
    """Stands for the student's function ``name`` in a check; calls it in the worker."""

    def __init__(self, worker: Worker, name: str, forbid: Sequence[str] = ()) -> None:
        self.worker, self.__name__, self.forbid = worker, name, tuple(forbid)

    def with_forbidden(self, forbid: Sequence[str]) -> StudentFunction:
        return StudentFunction(self.worker, self.__name__, forbid)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.worker.call(self.__name__, args, kwargs, self.forbid)


def _plan(submission: nbformat.NotebookNode, release: nbformat.NotebookNode,
          tests: dict[str, GradedCell]) -> list[tuple[int, str | None, str]]:
    """The steps in submission order: ("test", grade_id) for test cells, ("exec", source) otherwise.

    Locked code cells run as released (like nbgrader's OverwriteCells); test
    cells run from the source notebook; a test cell the student deleted runs
    at the end.
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
                steps.append((index, grade_id, "test"))
                seen.add(grade_id)
            continue
        original = released.get(grade_id) if grade_id else None
        if original is not None and original.metadata["nbgrader"].get("locked") \
                and not original.metadata["nbgrader"].get("solution"):
            steps.append((index, grade_id, original.source))
        else:
            steps.append((index, grade_id, cell.source))
    steps += [(-1, grade_id, "test") for grade_id in tests if grade_id not in seen]
    return steps


def grade_notebook(path: Path, assignment: str, *, root: Path = COURSE_ROOT,
                   sandbox_factory: Callable[[Path, dict], Any] | None = None, timeouts: Timeouts = Timeouts(),
                   scratch_parent: Path | None = None) -> NotebookResult:
    """Grade one submitted notebook of ``assignment`` (the checks run here, the student's code in a worker)."""
    start = time.perf_counter()
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
        env = {"NBGRADER_EXECUTION": "autograde", "COURSE_FAST": "1", "MPLBACKEND": "Agg"}
        worker = Worker(scratch, sandbox_factory, env, timeouts)
        _run_steps(worker, _plan(submission, release, tests), tests, module, result)
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


def _run_steps(worker: Worker, steps: list, tests: dict[str, GradedCell], module, result: NotebookResult) -> None:
    done: list[str] = []  # sources that ran without killing the worker, to replay after a restart

    def restart(reason: str) -> bool:
        if result.restarts >= MAX_RESTARTS:
            return False
        result.restarts += 1
        worker.stop()
        worker.start()
        for source in done:
            try:
                worker.execute(source)
            except StudentGone:
                result.flags.append(f"a cell that ran before did not run again after a restart ({reason})")
                return False
        return True

    for attempt in range(3):  # a start that fails is the machine's problem, never the student's 0
        try:
            worker.start()
            break
        except (StudentGone, GradingError, OSError) as gone:
            worker.stop()
            if attempt == 2:
                raise GradingError(f"the grading worker did not start (3 tries): {gone}") from None
    alive = True
    for index, grade_id, what in steps:
        if not alive:
            if what == "test":
                result.tests[grade_id] = CellResult(grade_id, False, failure="not run: the worker kept dying",
                                                    feedback="not graded: your notebook kept stopping the grader",
                                                    error_name="StudentGone")
            else:
                result.runs.append(CellRun(index, grade_id, "skipped"))
            continue
        if what == "test":
            cell = tests[grade_id]
            outcome = run_test_cell(cell, module, lambda n: StudentFunction(worker, n))
            if index < 0:
                outcome.flags.append("test cell deleted from the submission: graded from the source notebook")
            result.tests[grade_id] = outcome
            if outcome.error_name == "StudentGone":
                result.flags.append(f"{grade_id}: {outcome.failure}")
                alive = restart(f"after {grade_id}")
            continue
        try:
            answer = worker.execute(what)
        except StudentGone as gone:
            status = "timeout" if "timed out" in str(gone) else "died"
            result.runs.append(CellRun(index, grade_id, status, error={"ename": "StudentGone", "evalue": str(gone)}))
            result.flags.append(f"cell {index}{f' ({grade_id})' if grade_id else ''}: {gone}")
            alive = restart(f"after cell {index}")
            continue
        done.append(what)
        result.runs.append(CellRun(index, grade_id, "ok" if answer["ok"] else "error", answer.get("stdout", ""),
                                   answer.get("error")))
    if not alive:
        result.flags.append(f"gave up after {MAX_RESTARTS} restarts of the worker")
    worker.stop()
