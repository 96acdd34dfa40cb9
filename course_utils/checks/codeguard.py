"""Python code a student's answer may not run: ``refuse_code`` of :func:`course_utils.checks.check`.

A question that asks for Adam must not be answered by ``torch.optim.Adam``.
Its arithmetic dispatches ordinary operators (``mul``, ``addcdiv``...), which
the operator-level guard cannot refuse without refusing the answer too; and a
name imported earlier, an alias, a subclass calling ``super().step()``,
``functools.partial`` or ``getattr(torch.optim, "Ad" + "am")`` all reach the
same Python code. So this refuses the code itself: while a guarded call runs,
a profile hook (``sys.setprofile``) sees every Python frame that starts and
raises :class:`~course_utils.checks.guard.ForbiddenReference` for a frame
whose code belongs to a refused name:

* a module (``"torch.optim.adam"``): every code object compiled from its file
  (a copy of the module loaded again from the same file included);
* a class (``"torch.optim.lr_scheduler.StepLR"``): the functions of its body,
  and the functions and classes nested in them (``co_qualname`` ``StepLR.*`` in
  the class's file); inherited methods are not the class's code, so the base
  class (``LRScheduler``) stays usable;
* a function (``"torch.optim.adam.adam"``): its code and the functions nested in it.

The verdict per code object is cached for the call, so the hook costs a dict
lookup per Python call (see ``tests/test_codeguard.py`` for the overhead
measured). What the guard does to be switched off only with effort (its hook
replaced or removed, ``sys.setprofile`` called during the call, the hook's
code or state changed) lives in ``guard.py``, which runs this hook.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any

__all__ = ["CodeRule", "CodeRules", "CodeCall", "code_rules", "build_rules", "resolve", "refusal", "make_hook",
           "hook_damage", "closure_values", "own_functions"]


@dataclass(frozen=True)
class CodeRule:
    """One refused name, as code to recognise: ``filename`` and, for a class or function, a ``qualname``."""

    name: str                # as the check declared it, e.g. "torch.optim.adam"
    module: str              # the module whose file holds the code, e.g. "torch.optim.adam"
    filenames: frozenset[str]  # the file's path as imported (and resolved, if different)
    qualname: str | None     # None: the whole module; else the class's or function's qualified name
    nested: str = ""         # what follows ``qualname`` in a nested code's co_qualname: "." (class), ".<locals>."
    lines: tuple[int, int] = (0, 0)  # the source lines of the class or function (Python 3.10 has no co_qualname)

    def covers(self, code: CodeType) -> bool:
        if code.co_filename not in self.filenames:
            return False
        if self.qualname is None:
            return True
        qualname = getattr(code, "co_qualname", None)
        if qualname is None:  # Python 3.10: the code defined within the class's or function's lines
            return self.lines[0] <= code.co_firstlineno <= self.lines[1]
        return qualname == self.qualname or qualname.startswith(self.qualname + self.nested)


def qualname(code: CodeType) -> str:
    """The code's qualified name (``Adam.step``); its plain name before Python 3.11."""
    return getattr(code, "co_qualname", code.co_name)


def _lines(target: Any) -> tuple[int, int]:
    try:
        source, first = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return (0, 0)
    return (first, first + len(source) - 1)


def _module_file(module: ModuleType, dotted: str) -> frozenset[str]:
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        raise ValueError(f"cannot refuse the code of {dotted!r}: {module.__name__} is not a Python source module "
                         f"(refuse its PyTorch operators with refuse= instead)")
    return frozenset({path, os.path.realpath(path)})


def resolve(dotted: str) -> CodeRule:
    """The rule for a dotted name of a module, class or function (``ValueError`` for anything else).

    ``"torch.optim.Adam"`` (a re-export) resolves to the class where it is defined (``torch.optim.adam.Adam``).
    """
    parts = dotted.strip().split(".")
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"cannot refuse the code of {dotted!r}: expected a dotted name like 'torch.optim.adam'")
    for cut in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                raise ValueError(f"cannot refuse the code of {dotted!r}: {'.'.join(parts[:cut])} has no "
                                 f"{attribute!r} (a typo would refuse nothing)")
            target = getattr(target, attribute)
        break
    else:
        raise ValueError(f"cannot refuse the code of {dotted!r}: no module {parts[0]!r}")
    if isinstance(target, ModuleType):
        return CodeRule(dotted, target.__name__, _module_file(target, dotted), None)
    if isinstance(target, type):
        module = sys.modules.get(target.__module__)
        if module is None:
            raise ValueError(f"cannot refuse the code of {dotted!r}: its module {target.__module__} is not loaded")
        return CodeRule(dotted, target.__module__, _module_file(module, dotted), target.__qualname__, ".",
                        _lines(target))
    function = inspect.unwrap(target) if callable(target) else target
    code = getattr(function, "__code__", None)
    if not isinstance(code, CodeType):
        raise ValueError(f"cannot refuse the code of {dotted!r}: a {type(target).__name__}, not a module, class or "
                         f"Python function (refuse its PyTorch operators with refuse= instead)")
    return CodeRule(dotted, getattr(function, "__module__", "") or "", frozenset({code.co_filename}),
                    getattr(function, "__qualname__", code.co_name), ".<locals>.", _lines(function))


def importable(top: str) -> bool:
    """Whether the package ``top`` is installed (found without importing it: a library may take seconds)."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def resolvable(names: Iterable[str]) -> tuple[str, ...]:
    """The dotted names whose code can be found (another version of a library may have moved a module)."""
    import warnings

    kept = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                resolve(name)
            except (ValueError, ImportError):
                continue
            kept.append(name)
    return tuple(kept)


@dataclass(frozen=True)
class CodeRules:
    """The refused names of one call, indexed by file: ``judge(code)`` -> the rule covering it, or None."""

    rules: tuple[CodeRule, ...]
    by_file: dict[str, tuple[CodeRule, ...]]

    def judge(self, code: CodeType) -> CodeRule | None:
        for rule in self.by_file.get(code.co_filename, ()):
            if rule.covers(code):
                return rule
        return None

    def merged(self, other: CodeRules | None) -> CodeRules:
        """These rules and ``other``'s (a guarded call inside another refuses what both refuse)."""
        if other is None or other is self:
            return self
        return _index(tuple(dict.fromkeys(self.rules + other.rules)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def snapshot(self) -> tuple:
        """Everything that decides a verdict, as immutable values (compared after a call: nothing was changed)."""
        fields = tuple((r.name, r.module, r.filenames, r.qualname, r.nested, r.lines) for r in self.rules)
        return fields, tuple(sorted((f, tuple(map(id, rules))) for f, rules in self.by_file.items()))


def _index(rules: tuple[CodeRule, ...]) -> CodeRules:
    by_file: dict[str, tuple[CodeRule, ...]] = {}
    for rule in rules:
        for filename in rule.filenames:
            by_file[filename] = by_file.get(filename, ()) + (rule,)
    return CodeRules(rules, by_file)


def build_rules(names: tuple[str, ...]) -> CodeRules | None:
    """The rules of ``names``, made now (the guard keeps its own, with their snapshot); None for no names."""
    return _index(tuple(resolve(name) for name in names)) if names else None


@functools.lru_cache(maxsize=256)
def _rules(names: tuple[str, ...]) -> CodeRules | None:
    return build_rules(names)


def code_rules(names: Iterable[str]) -> CodeRules | None:
    """The rules of ``names`` (cached; ``ValueError`` for a name whose code cannot be found); None for no names."""
    return _rules((names,) if isinstance(names, str) else tuple(names))


def refusal(rule: CodeRule, code: CodeType, why: str) -> str:
    """The message: which code ran, which refused name covers it, and why."""
    where = f"{rule.module}.{qualname(code)}" if rule.module else qualname(code)
    whole = "" if where == rule.name else f" (the check refuses {rule.name})"
    return f"{where}{whole} cannot be used in this answer: {why}"


Hook = Callable[[FrameType, str, Any], None]


class CodeCall:
    """What one guarded call refuses at the Python level, and what it saw (read by the shared hook).

    ``seen``: id(code) -> (code, the rule covering it or None), kept for the call
    (holding the code keeps its id unique); ``refused``: the messages of the
    refused frames; ``thread``: the ident of the thread that made the call.
    """

    __slots__ = ("rules", "seen", "refused", "why", "thread")
    rules: CodeRules
    seen: dict[int, tuple[CodeType, CodeRule | None]]
    refused: list[str]
    why: str
    thread: int

    def __init__(self, rules: CodeRules, why: str, thread: int) -> None:
        for name, value in (("rules", rules), ("seen", {}), ("refused", []), ("why", why), ("thread", thread)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        from .guard import ForbiddenReference

        raise ForbiddenReference(f"the guard's {name} cannot be changed")

    def damage(self, rules: CodeRules, snapshot: tuple) -> str | None:
        """None if the call's state is as built with ``rules`` (whose ``snapshot()`` was taken before the call)
        and every cached verdict is right."""
        if self.rules is not rules or rules.snapshot() != snapshot:
            return "its list of refused code was changed"
        for key, (code, verdict) in list(self.seen.items()):
            if key != id(code) or verdict is not rules.judge(code):
                return "its cache of refused code was changed"
        return None


def make_hook(active: list[Any], disarmed: list[tuple[int, str]], error: type[Exception],
              get_ident: Callable[[], int]) -> Hook:
    """The profile hook (one per process): refuses a frame whose code the innermost running call refuses.

    ``active``: the guard's running calls (each with a ``code`` attribute: a :class:`CodeCall` or None).
    Raising from a profile hook makes the frame's call raise, and unsets the hook in that thread: the
    call's verdict is decided by ``refused`` whatever the student's code does next, and a thread other than
    the caller's is recorded in ``disarmed`` with why (the guard refuses to run a call while it is alive).
    """

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and active:
            state = active[-1].code
            if state is not None:
                code = frame.f_code
                entry = state.seen.get(id(code))
                if entry is None:
                    entry = state.seen[id(code)] = (code, state.rules.judge(code))
                if entry[1] is not None:
                    message = refusal(entry[1], code, state.why)
                    state.refused.append(message)
                    if get_ident() != state.thread:
                        disarmed.append((get_ident(), "ran refused code"))
                    raise error(message)

    return hook


_HOOK_CODE = make_hook([], [], RuntimeError, int).__code__


def own_functions() -> tuple[tuple[Any, str, Any, CodeType], ...]:
    """(namespace, name, function, code) of what the hook relies on: the guard verifies them after each call."""
    here = sys.modules[__name__]
    places: list[tuple[Any, str]] = [(vars(cls), name) for cls, name in (
        (CodeRule, "covers"), (CodeRules, "judge"), (CodeRules, "snapshot"), (CodeCall, "damage"))]
    places += [(vars(here), name) for name in ("refusal", "qualname", "hook_damage", "build_rules", "resolve")]
    return tuple((space, name, space[name], space[name].__code__) for space, name in places)


def closure_values(hook: Hook) -> tuple[Any, ...]:
    """What ``hook``'s closure holds now (taken right after :func:`make_hook`, compared by :func:`hook_damage`)."""
    return tuple(cell.cell_contents for cell in hook.__closure__ or ())


def hook_damage(hook: Hook, cells: tuple[Any, ...]) -> str | None:
    """None if ``hook`` still runs as built (its code, what its closure holds), else what changed."""
    closure = getattr(hook, "__closure__", None)
    if getattr(hook, "__code__", None) is not _HOOK_CODE or closure is None or len(closure) != len(cells):
        return "its profile hook's code was replaced"
    try:
        if any(cell.cell_contents is not value for cell, value in zip(closure, cells, strict=True)):
            return "its profile hook's state was replaced"
    except ValueError:  # an emptied cell
        return "its profile hook's state was replaced"
    return None
