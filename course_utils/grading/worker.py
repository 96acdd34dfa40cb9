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
  the same answers, or ``{"tampered": str}``: ``driver(<the notebook's name>)`` through the guard, where
  ``driver`` is a test object of a checks module that runs a scenario with the student's function or class
  (``checks.drive``). It is rebuilt here from its data with the class :class:`Pinned` kept when the worker
  started (the modules ``wire.CHECKS_ENV`` names, imported before any student code ran); if the class, or
  anything its code reaches, is no longer what was pinned, before or after the call, the answer is
  ``{"tampered": what changed}`` (the grader scores the cell 0 with a flag).

Nothing here is trusted: the grader checks every value it gets back, and reads
no answer longer than ``wire.MAX_ANSWER_BYTES``; an answer over that limit is
replaced here by ``{"oversized": ...}`` so that an honest worker stays in step.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.util
import io
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from types import CellType, CodeType, FunctionType, ModuleType
from typing import Any

from .wire import (CHECKS_ENV, MAX_ANSWER_BYTES, Oversized, WireError, checks_modules, decode, encode, object_tag,
                   receive, send)

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


# --- the checks' own code, pinned before the student's runs -----------------------------------------------------------
_ABSENT = object()         # "no such name" (a module that did not define a name its code finds in builtins)
FOLLOW_MODULES = 3         # module attributes followed from a global name: torch.nn.functional.cross_entropy
LAZY_CLASS_NAMES = frozenset({"__annotations__", "__slotnames__"})  # Python adds these to a class dict on its own
WRAPPED_DEPTH = 4          # a library may wrap its own function (import torch._dynamo wraps torch.manual_seed)


def _load(name: str, path: str | None) -> ModuleType:
    """The checks module ``name``: imported, or executed from ``path`` (a checks module outside the package)."""
    if path is None:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{CHECKS_ENV}: cannot load {name} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _functions(value: Any) -> list[FunctionType]:
    """The Python functions a class attribute stands for (a method, a static or class method, a property)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel) if isinstance(f, FunctionType)]
    return [value] if isinstance(value, FunctionType) else []


def _names(code: CodeType) -> set[str]:
    """Every global or attribute name ``code`` and the code nested in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def _wraps(value: Any, original: Any) -> bool:
    """Whether ``value`` is ``original`` wrapped (``functools.wraps``), the way a library rebinds its own names."""
    for _ in range(WRAPPED_DEPTH):
        try:
            value = getattr(value, "__wrapped__", None)
        except Exception:
            return False
        if value is original:
            return True
    return False


def _library_wrappers() -> frozenset[CodeType]:
    """The code of wrappers a library puts around a checks class's method by itself: the profiling hook the first
    instance of a ``torch.optim.Optimizer`` subclass puts around its class's ``step``."""
    try:
        from torch.optim import Optimizer

        hook = Optimizer.__dict__["profile_hook_step"].__func__
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - another torch: no such wrapper
        return frozenset()
    return frozenset(c for c in hook.__code__.co_consts if isinstance(c, CodeType))


def _contents(cell: CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _ABSENT


class _Reach:
    """What one test-object class's code reaches, as it was: collected once, at the worker's start.

    ``names``: (namespace, name, object, what, library): a module's global (a checks module's function, class or
    constant, ``torch``), a builtin the code uses (and its absence from the module), an attribute of a library
    module it names (``F.cross_entropy``: ``library``, which may be replaced by a wrapper of itself);
    ``classes``: (class, its live ``__dict__``, a copy, ``__mro__``, metaclass) of the class and of its bases
    and the classes its code names, in checks modules;
    ``functions``: (function, ``__code__``, ``__defaults__``, ``__kwdefaults__``, [(cell, contents)], what)
    of every function in those classes and of every checks function their code names, followed through.
    """

    def __init__(self, cls: type, modules: set[str]) -> None:
        self.modules = modules
        self.names: list[tuple[Mapping[str, Any], str, Any, str, bool]] = []
        self.classes: list[tuple[type, Mapping[str, Any], dict[str, Any], tuple, type]] = []
        self.functions: list[tuple[FunctionType, CodeType, Any, Any, list[tuple[CellType, Any]], str]] = []
        self.methods = {key for base in cls.__mro__ if self._ours(base) for key, value in base.__dict__.items()
                        if _functions(value)}  # what an attribute of the test object itself would hide
        self._seen: set[int] = set()
        self._pinned_names: set[tuple[int, str]] = set()
        self._class(cls)

    def _ours(self, value: Any) -> bool:
        """Defined in a checks module (the pinned ones, or ``course_utils.checks`` itself and its helpers)."""
        try:
            module = getattr(value, "__module__", None)
        except Exception:  # an object whose attributes cannot be read: not one of ours
            return False
        return isinstance(module, str) and (module in self.modules or module.startswith("course_utils.checks"))

    def _name(self, space: Mapping[str, Any], name: str, value: Any, what: str, library: bool = False) -> None:
        if (id(space), name) not in self._pinned_names:
            self._pinned_names.add((id(space), name))
            self.names.append((space, name, value, what, library))

    def _class(self, cls: type) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        for base in cls.__mro__[1:]:
            if self._ours(base):
                self._class(base)
        self.classes.append((cls, cls.__dict__, dict(cls.__dict__), cls.__mro__, type(cls)))
        for key, value in cls.__dict__.items():
            for fn in _functions(value):
                self._function(fn, f"{cls.__qualname__}.{key}")

    def _function(self, fn: FunctionType, what: str) -> None:
        if id(fn) in self._seen:
            return
        self._seen.add(id(fn))
        cells = [(cell, _contents(cell)) for cell in fn.__closure__ or ()]
        self.functions.append((fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__, cells, what))
        names = _names(fn.__code__)
        for _, value in cells:
            self._value(value, names, 0)
        space = fn.__globals__
        where = str(space.get("__name__", "?"))
        found = space.get("__builtins__")
        built = found if isinstance(found, dict) else vars(found) if isinstance(found, ModuleType) else {}
        for name in sorted(names):
            if name in space:
                self._name(space, name, space[name], f"{where}.{name}")
                self._value(space[name], names, 0)
            elif name in built:   # found in builtins: it must stay there, and not appear in the module
                self._name(space, name, _ABSENT, f"{where}.{name}")
                self._name(built, name, built[name], f"builtins.{name}")

    def _value(self, value: Any, names: set[str], depth: int) -> None:
        if isinstance(value, FunctionType) and self._ours(value):
            self._function(value, f"{value.__module__}.{value.__qualname__}")
        elif isinstance(value, type) and self._ours(value):
            self._class(value)
        elif isinstance(value, ModuleType) and depth < FOLLOW_MODULES:
            space, library = vars(value), not self._ours(value) and value.__name__ not in self.modules
            for name in sorted(names & space.keys()):
                self._name(space, name, space[name], f"{value.__name__}.{name}", library)
                self._value(space[name], names, depth + 1)
        elif self._ours(value) and isinstance(getattr(value, "__wrapped__", None), FunctionType):
            self._function(value.__wrapped__, f"{value.__module__}.{value.__wrapped__.__qualname__}")


class Pinned:
    """The checks modules' test-object classes, and what their code reaches, as they were at the worker's start.

    A driver (``checks.drive``) runs in this process, next to the student's code, which could patch it (its
    ``__call__``, a helper it calls, ``__code__``, the class in its module) to report what the check wants. So
    the worker imports the modules the grader names (``wire.CHECKS_ENV``) before any student code runs and
    keeps every top-level class with ``__wire__``: drivers are rebuilt from these class objects, never looked up
    again, and :meth:`problem` compares what each one's code reaches (:class:`_Reach`: class dicts, functions'
    code, defaults and closures, the globals, builtins and module attributes they name) with what it was.
    (An audit hook could also catch a function's ``__code__`` set and put back during a drive, but it costs
    about a quarter of a drive's time and a class attribute set and put back would escape it all the same.)
    """

    def __init__(self, modules: Mapping[str, str | None]) -> None:
        self.classes: dict[str, type] = {}
        self.reach: dict[str, _Reach] = {}
        for name, path in modules.items():
            module = _load(name, path)
            for key, value in vars(module).items():
                tag = object_tag(value) if isinstance(value, type) and value.__module__ == name \
                    and value.__qualname__ == key else None
                if tag is not None:
                    self.classes[tag] = value
                    self.reach[tag] = reach = _Reach(value, set(modules))
                    reach.names.insert(0, (vars(module), key, value, f"{name}.{key}", False))
        self._wrappers = _library_wrappers()

    def problem(self, tag: str, instance: Any = None) -> str | None:
        """What about the class ``tag`` (and its ``instance``) is no longer as pinned; None if nothing."""
        reach = self.reach.get(tag)
        if reach is None:
            return f"no class {tag[:100]!r} was among the checks' test objects when the worker started"
        for space, name, expected, what, library in reach.names:
            now = space.get(name, _ABSENT)
            if now is not expected and not (library and _wraps(now, expected)):
                return f"{what} was {'removed' if now is _ABSENT else 'defined' if expected is _ABSENT else 'replaced'}"
        for cls, live, copy, mro, meta in reach.classes:
            if type(cls) is not meta or cls.__mro__ is not mro:
                return f"the bases of {cls.__qualname__} were changed"
            for name, value in copy.items():
                now = live.get(name, _ABSENT)
                if now is not value and not self._library_wrapped(now, value):
                    return f"{cls.__qualname__}.{name} was replaced"
            added = live.keys() - copy.keys() - LAZY_CLASS_NAMES
            if added:
                return f"{cls.__qualname__}.{sorted(added)[0]} was added"
        for fn, code, defaults, kwdefaults, cells, what in reach.functions:
            if fn.__code__ is not code or fn.__defaults__ is not defaults or fn.__kwdefaults__ is not kwdefaults \
                    or any(_contents(cell) is not value for cell, value in cells):
                return f"the code or defaults of {what} were changed"
        if instance is not None:
            if type(instance) is not self.classes[tag]:
                return f"the test object's class was changed to {type(instance).__qualname__[:100]}"
            shadowing = reach.methods & getattr(instance, "__dict__", {}).keys()
            if shadowing:
                return f"the test object's attribute {sorted(shadowing)[0]} hides its method"
        return None

    def _library_wrapped(self, now: Any, original: Any) -> bool:
        """Whether a class's method ``now`` is a library's own wrapper of the pinned ``original`` (which it calls)."""
        return isinstance(now, FunctionType) and now.__code__ in self._wrappers and _wraps(now, original) and \
            any(_contents(cell) is original for cell in now.__closure__ or ())


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
        # The checks modules whose test objects this worker may be sent, pinned as they are before any student code.
        self.pinned = Pinned(checks_modules(os.environ.get(CHECKS_ENV, "")))

    def execute(self, source: str) -> dict:
        sink = _Bounded(STDOUT_LIMIT)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                result = self.shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except Exception as err:  # IPython itself gave up (e.g. RecursionError compiling a huge expression)
            error = err
        return {"ok": error is None, "error": None if error is None else _describe(error), "stdout": sink.text()}

    def drive(self, name: str, item: dict, refuse: list[str], forbid: list[str], refuse_code: list[str] | None = None,
              why: str | None = None) -> dict:
        """``driver(the notebook's name)`` through the guard, ``driver`` rebuilt from ``item`` with its pinned class;
        ``{"tampered": what}`` if the class or what its code reaches changed before or during the call."""
        tag = str(item.get("class"))
        problem = self._pinned_problem(tag)
        if problem is not None:
            return {"tampered": problem}
        driver = decode(item, objects=True, classes=self.pinned.classes)
        answer = self.call(name, [], {}, refuse, forbid, refuse_code, why, driver=driver)
        problem = self._pinned_problem(tag, driver)
        return answer if problem is None else {"tampered": problem}

    def _pinned_problem(self, tag: str, driver: Any = None) -> str | None:
        try:
            return self.pinned.problem(tag, driver)
        except Exception as err:  # e.g. the test object's __dict__ replaced by something that raises
            return f"the checks' objects could not be compared with what was pinned ({type(err).__name__})"

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


def _guard_request(request: dict) -> tuple[list[str], list[str], list[str], str | None]:
    """A call's or a drive's (refuse, forbid, refuse_code, why)."""
    why = request.get("why")
    return (_strings(request, "refuse"), _strings(request, "forbid"), _strings(request, "refuse_code"),
            None if why is None else str(why))


def _answer(worker: Worker, op: str, request: dict) -> dict:
    """The answer to a call or a drive request (test objects are rebuilt with the worker's pinned classes)."""
    name, pinned = str(request["name"]), worker.pinned.classes
    if op == "call":
        return worker.call(name, decode(request["args"], objects=True, classes=pinned),
                           decode(request["kwargs"], objects=True, classes=pinned), *_guard_request(request))
    driver = request["driver"]
    if not (isinstance(driver, dict) and driver.get("t") == "object"):
        raise WireError("a drive request without a test object")
    return worker.drive(name, driver, *_guard_request(request))


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
                answer = _answer(worker, op, request)
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
