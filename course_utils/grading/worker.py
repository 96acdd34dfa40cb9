"""The student's side of trusted grading: runs their cells and answers calls, inside the sandbox.

Started by :class:`course_utils.grading.session.Worker` as
``python -I -m course_utils.grading.worker``. Messages (``wire`` framing) come
on stdin; answers go out on the original stdout, which this process keeps for
itself before pointing file descriptors 1 and 2 at a log file, so nothing the
student prints can be mistaken for an answer.

Requests and answers:

* ``{"op": "exec", "source": str}`` -> ``{"ok": bool, "error": {...} | None, "stdout": str}``:
  run one cell (IPython syntax, magics included) in the notebook's namespace.
* ``{"op": "call", "name": str, "args": [...], "kwargs": {...}, "refuse": [...], "forbid": [...]}`` ->
  ``{"value": ..., "ops": int}`` or ``{"raised": {"type", "builtin", "message"}}`` or ``{"missing": str}``
  or ``{"oversized": str}``: call one of the notebook's functions with plain data through the guard
  (``course_utils.checks.guard``, installed before the first cell runs): the ATen operators in
  ``refuse`` and the dotted names in ``forbid`` are refused, and ``ops`` counts the operators it
  dispatched. What the function prints is dropped (it could reveal hidden inputs). Optional fields:
  ``"refuse_code"`` (dotted names of modules, classes, functions whose Python code is refused:
  ``course_utils.checks.codeguard``) and ``"why"`` (the end of a refusal's message).
* ``{"op": "drive", "name": str, "driver": {test object}, "refuse", "forbid", "refuse_code", "why"}`` ->
  the same answers: ``driver(<the notebook's name>)`` through the guard, where ``driver`` is a test
  object of a checks module (``wire.checks_class``: rebuilt here from its data) that runs a scenario
  with the student's function or class (``checks.drive``).

Nothing here is trusted: the grader checks every value it gets back, and reads
no answer longer than ``wire.MAX_ANSWER_BYTES``; an answer over that limit is
replaced here by ``{"oversized": ...}`` so that an honest worker stays in step.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import signal
import sys
import traceback
from typing import Any

from .wire import MAX_ANSWER_BYTES, Oversized, WireError, decode, encode, receive, send

STDOUT_LIMIT = 20_000  # characters of a cell's printed output kept for the report


class _Bounded(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size, self.limit = 0, limit

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.size < self.limit:
            self.parts.append(text[: self.limit - self.size])
        self.size += len(text)
        return len(text)

    def text(self) -> str:
        kept = "".join(self.parts)
        return kept + (f"\n... [{self.size - self.limit} more characters]" if self.size > self.limit else "")


def _builtin_base(err: BaseException) -> str:
    """The first built-in exception class of ``err``'s type (``ValueError`` for a ``ValueError`` subclass)."""
    for cls in type(err).__mro__:
        if cls.__module__ == "builtins" and isinstance(getattr(builtins, cls.__name__, None), type):
            return cls.__name__
    return "Exception"


def _text(err: BaseException) -> str:
    """``str(err)``, even when the student's exception cannot say it."""
    try:
        return str(err)[:2000]
    except Exception:
        return f"<{type(err).__name__} whose message cannot be shown>"


def _describe(error: BaseException) -> dict:
    try:
        trace = "".join(traceback.format_exception(error))[-8000:]
    except Exception:
        trace = ""
    return {"ename": type(error).__name__, "evalue": _text(error), "traceback": trace}


def _raised(err: BaseException) -> dict:
    return {"raised": {"type": type(err).__name__, "builtin": _builtin_base(err), "message": _text(err)}}


def _no_gui(line: str = "") -> None:
    """``%matplotlib`` (any backend): a no-op here, figures are drawn off screen (Agg) and not kept."""


class Worker:
    def __init__(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        self.shell.colors = "NoColor"
        # A plain shell has no GUI loop: "%matplotlib inline" would fail the cell (and the answer in it).
        self.shell.register_magic_function(_no_gui, "line", "matplotlib")  # type: ignore[arg-type]
        self.namespace = self.shell.user_ns
        # The operator-level guard, set up before any student code runs (it keeps its own references).
        from course_utils.checks.guard import install

        self.guard = install()

    def execute(self, source: str) -> dict:
        sink = _Bounded(STDOUT_LIMIT)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                result = self.shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except Exception as err:  # IPython itself gave up (e.g. RecursionError compiling a huge expression)
            error = err
        return {"ok": error is None, "error": None if error is None else _describe(error), "stdout": sink.text()}

    def call(self, name: str, args: list, kwargs: dict, refuse: list[str], forbid: list[str],
             refuse_code: list[str] | None = None, why: str | None = None, driver: Any = None) -> dict:
        """Call the notebook's ``name`` (or, with ``driver``, ``driver(name)``) through the guard."""
        fn = self.namespace.get(name)
        if fn is None:
            return {"missing": f"{name} is not defined: did the cell that defines it run without errors?"}
        if not callable(fn):
            return {"missing": f"{name} is a {type(fn).__name__}, not a function"}
        if driver is not None:
            fn, args, kwargs = driver, [fn], {}
        options: dict[str, Any] = {"refuse": tuple(refuse), "forbid": tuple(forbid),
                                   "refuse_code": tuple(refuse_code or ())}
        if why is not None:
            options["why"] = why
        sink = _Bounded(STDOUT_LIMIT)  # dropped: printed during a hidden call, it would show the inputs
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                value, ops = self.guard.call(fn, args, kwargs, **options)
        except Exception as err:  # the student's error is an answer, reported as such
            return _raised(err)
        try:
            return {"value": encode(value), "ops": int(ops)}
        except Exception as err:  # WireError, or a tensor subclass that fails on the way
            return {"raised": {"type": "TypeError", "builtin": "TypeError",
                               "message": f"{name} returned something the grader cannot read: {_text(err)}"}}


def _strings(request: dict, key: str) -> list[str]:
    return [str(n) for n in request.get(key, [])]


def _call_request(op: str, request: dict) -> tuple[list, dict, list[str], list[str], list[str], str | None, Any]:
    """A call's or a drive's (args, kwargs, refuse, forbid, refuse_code, why, driver), decoded."""
    why = request.get("why")
    guard = (_strings(request, "refuse"), _strings(request, "forbid"), _strings(request, "refuse_code"),
             None if why is None else str(why))
    if op == "call":
        return (decode(request["args"], objects=True), decode(request["kwargs"], objects=True), *guard, None)
    driver = request["driver"]
    if not (isinstance(driver, dict) and driver.get("t") == "object"):
        raise WireError("a drive request without a test object")
    return ([], {}, *guard, decode(driver, objects=True))


def main() -> int:
    # Keep the real stdout for answers; the student's prints go to a log file instead.
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    channel_in = os.fdopen(os.dup(0), "rb")
    log = os.open(os.environ.get("COURSE_WORKER_LOG", "worker-output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
    if hasattr(signal, "SIGXFSZ"):  # over the file-size limit: writes fail instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    worker = Worker()
    main_pid = os.getpid()
    send(channel_out, {"ready": True, "pid": main_pid})
    while True:
        if os.getpid() != main_pid:  # a child the student's code forked came back here: it must not answer
            os._exit(0)
        try:
            request = receive(channel_in)
        except EOFError:
            return 0
        op = request.get("op")
        try:
            if op == "exec":
                answer = worker.execute(str(request["source"]))
            elif op in ("call", "drive"):
                answer = worker.call(str(request["name"]), *_call_request(op, request))
            elif op == "bye":
                return 0
            else:
                answer = {"protocol_error": f"unknown op {op!r}"}
        except (WireError, KeyError) as err:
            answer = {"protocol_error": f"{type(err).__name__}: {err}"}
        if os.getpid() != main_pid:  # forked inside the cell or the call: only the original answers
            os._exit(0)
        try:
            send(channel_out, {"id": request.get("id"), **answer}, limit=MAX_ANSWER_BYTES)
        except Oversized as err:  # e.g. 64 MiB of bytes where an int was expected: the grader would refuse it
            what = f"call of {request.get('name')}" if op == "call" else "cell"
            send(channel_out, {"id": request.get("id"), "oversized": f"the answer to a {what} is too large: {err}"})


if __name__ == "__main__":
    sys.exit(main())
