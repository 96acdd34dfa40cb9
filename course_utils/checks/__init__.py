"""The checks behind every assignment's test cells: one module per assignment.

A test cell only calls checks, e.g. ``checks.check_conv_output_size(conv_output_size)``.
A check compares the student's function with a reference (PyTorch itself,
worked examples, numerical gradients) on several inputs and raises
:class:`CheckFailure` with what was expected and what was given.

The same check runs in two places (see ``course_utils.grading``):

* in the student's kernel, on the student's function: instant feedback
  (the test cell, ``make check``, nbgrader's validate);
* for official grades, in a trusted grading process, where the student's
  function is a proxy that runs it in a sandboxed worker and passes only plain
  data (numbers, strings, lists, arrays, tensors) across. Nothing the
  student's code does can change the references or the comparisons.

A check is declared with :func:`check`, which names the PyTorch operators the
student's code may not run while it is being checked (``refuse``: refused at
PyTorch's dispatcher by :mod:`course_utils.checks.guard`, however they are
reached), dotted names outside torch it may not call (``forbid``) and
modules, classes or functions whose Python code may not run (``refuse_code``:
refused by :mod:`course_utils.checks.codeguard`, however they are reached,
subclasses calling ``super()`` included). :func:`operations` also returns how
many operators a call dispatched (for vectorization checks). A check that must
hold the student's object (an optimizer class, say) runs a scenario with it
through :func:`drive`: the scenario (a *driver*, a class of the checks module
holding only plain data) runs where the student's code runs, under the guard.
Visible checks use fixed inputs; hidden checks draw theirs with
:func:`hidden_random` / :func:`hidden_generator`, keyed by the instructor's
secret ``$COURSE_GRADING_SEED`` and a tag naming the assignment and the
check, so the inputs of one check tell nothing about another's or about the
secret. Rules for check authors: compare behaviour, not code; say
what was expected and what was given; print one ``✓`` line on success and
nothing to stderr.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import os
import random
import string
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .codeguard import code_rules
from .guard import ForbiddenReference, Guard, blocked, install, qualified_op

__all__ = ["CheckFailure", "ForbiddenReference", "check", "check_later", "operations", "drive", "drive_counted",
           "blocked", "expect_equal", "expect_raises", "expect_close", "case_label", "type_name", "notebook_global",
           "passed", "hidden_seed", "hidden_random", "hidden_generator",
           "secret_problem", "secret_fingerprint", "GRADING_SEED_VAR", "PUBLIC_SECRET", "SECRET_BITS"]

#: Environment variable holding the instructor's secret, from which every hidden input is derived.
GRADING_SEED_VAR = "COURSE_GRADING_SEED"
#: The secret used without the variable (self-study, practice runs): anyone can compute its hidden inputs.
PUBLIC_SECRET = "course-utils public practice secret"
#: Official grading needs a secret at least this strong (in bits), e.g. ``secrets.token_hex(16)``.
SECRET_BITS = 128
_MAKE_SECRET = 'python -c "import secrets; print(secrets.token_hex(16))"'


class CheckFailure(AssertionError):
    """A check found a wrong answer; the message says what was expected and what was given."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows in the student's kernel (and so ``make check`` and Validate): the whole message,
        none of the checks' frames."""
        return [f"{type(self).__name__}: {self}"]


# --- hidden inputs: a keyed hash of the instructor's secret ---------------------------------------
def _secret() -> bytes:
    return (os.environ.get(GRADING_SEED_VAR, "").strip() or PUBLIC_SECRET).encode()


def hidden_seed(*tag: str | int) -> int:
    """A 64-bit seed for one part of one check: HMAC-SHA256(secret, tag), e.g. ``hidden_seed("a0_warmup", "check_x")``.

    The secret is ``$COURSE_GRADING_SEED`` (the public default without it). Seeds of
    different tags are unrelated, and none reveals the secret (for a secret of
    :data:`SECRET_BITS` bits, recovering it from any number of seeds means trying 2**128 keys).
    """
    if not tag or not all(isinstance(part, (str, int)) and not isinstance(part, bool) for part in tag):
        raise TypeError(f"hidden_seed needs a tag of strings and ints (assignment, check, part), got {tag!r}")
    message = repr(tuple(tag)).encode()
    return int.from_bytes(hmac.new(_secret(), message, hashlib.sha256).digest()[:8], "big")


def hidden_random(*tag: str | int) -> random.Random:
    """A ``random.Random`` seeded with :func:`hidden_seed` of ``tag``."""
    return random.Random(hidden_seed(*tag))


def hidden_generator(*tag: str | int) -> Any:
    """A ``torch.Generator`` (CPU) seeded with :func:`hidden_seed` of ``tag``."""
    import torch

    return torch.Generator().manual_seed(hidden_seed(*tag))


def _bits_per_character(value: str) -> float:
    if value.isdigit():
        return math.log2(10)
    if all(ch in string.hexdigits for ch in value):
        return math.log2(16)
    if all(ch in string.ascii_letters + string.digits + "-_+/=" for ch in value):
        return math.log2(64)
    return math.log2(95)


def secret_problem(value: str) -> str | None:
    """Why ``value`` is too weak a secret for official grading, or None if it is strong enough.

    Strong means at least :data:`SECRET_BITS` bits as a random string: 32 hex
    digits, 22 URL-safe base64 characters (``secrets.token_urlsafe(16)``), 39
    decimal digits. Make one with ``python -c "import secrets; print(secrets.token_hex(16))"``.
    """
    value = value.strip()
    advice = f"make one with: {_MAKE_SECRET}"
    if not value:
        return f"it is empty; {advice}"
    if value == PUBLIC_SECRET:
        return f"it is the public default secret, which anyone can use to compute the hidden inputs; {advice}"
    bits = len(value) * _bits_per_character(value)
    if bits < SECRET_BITS:
        return (f"it has about {bits:.0f} bits ({len(value)} characters); official grading needs at least "
                f"{SECRET_BITS} (e.g. 32 hex digits); {advice}")
    if len(set(value)) < 8:
        return f"it repeats a few characters ({len(set(value))} different ones), not a random string; {advice}"
    return None


def secret_fingerprint() -> str:
    """A short hash of the secret in use (16 hex digits): tells secrets apart, reveals nothing of them."""
    return hashlib.sha256(b"course_utils.secret_fingerprint\x00" + _secret()).hexdigest()[:16]


# --- the student's functions as a check calls them -------------------------------------------------
_WHY = "this question asks you to write it yourself"


def _guarded(fn: Any, guard: Guard, call: Callable[..., tuple[Any, int]], refuse: tuple[str, ...],
             forbid: tuple[str, ...], refuse_code: tuple[str, ...] = (), why: str = _WHY) -> Any:
    """The student's function (or class) as a check calls it: through the guard, warnings and stderr kept quiet.

    nbgrader fails a test cell that writes to stderr; a warning raised by a correct
    answer must not cost the student anything, in their kernel or when graded.
    The result has ``counted(*args, **kwargs) -> (value, ops)`` (for :func:`operations`)
    and ``drive(driver) -> (value, ops)`` (for :func:`drive`).
    """
    if not callable(fn):
        return fn
    if hasattr(fn, "with_guard"):  # a grading proxy: the worker's guard does all this on its side
        if refuse_code or why != _WHY:
            return fn.with_guard(refuse, forbid, refuse_code=refuse_code, why=why)
        return fn.with_guard(refuse, forbid)
    if hasattr(fn, "with_forbidden"):  # an older proxy: dotted names only (the worker cannot refuse operators)
        return fn.with_forbidden(forbid)
    options = {"refuse": refuse, "forbid": forbid, "refuse_code": refuse_code, "why": why}

    def counted(*args: Any, **kwargs: Any) -> tuple[Any, int]:
        return call(guard, fn, args, kwargs, **options)

    def drive(driver: Callable[[Any], Any]) -> tuple[Any, int]:
        return call(guard, driver, (fn,), {}, **options)

    # a class's attributes stay on the class (wraps would copy them onto the wrapper)
    @functools.wraps(fn, updated=() if isinstance(fn, type) else functools.WRAPPER_UPDATES)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return call(guard, fn, args, kwargs, **options)[0]

    guarded.counted = counted  # type: ignore[attr-defined]
    guarded.drive = drive  # type: ignore[attr-defined]
    return guarded


def operations(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """Inside a check: ``(fn(*args, **kwargs), number of ATen operators the call dispatched)``.

    ``fn`` is a student function as the check received it (a local function or a
    grading proxy). A vectorized answer dispatches the same number of operators on
    a small and a large input; a Python loop over positions dispatches more on the larger.
    """
    counted = getattr(fn, "counted", None)
    if counted is None:
        raise TypeError(f"operations() needs a student function as a check received it, got {fn!r}")
    value, ops = counted(*args, **kwargs)
    return value, int(ops)


def drive_counted(student: Any, driver: Callable[[Any], Any]) -> tuple[Any, int]:
    """Inside a check: ``(driver(student), number of ATen operators the whole scenario dispatched)``.

    ``student``: a student's function or class as the check received it (a local
    wrapper or a grading proxy). ``driver``: an instance of a class of the checks
    module whose ``__call__(self, student)`` runs a scenario with the student's
    object (build an optimizer on fresh parameters, step it, record) and returns
    plain data (tensors, numbers, lists, dicts); its ``__wire__()`` returns the
    plain data it is rebuilt from (``cls(**obj.__wire__())``), so that the grader
    can send it to the sandboxed worker, where the student's object lives. The
    scenario runs through the guard with the check's refusals (``refuse``,
    ``forbid``, ``refuse_code``), in the student's kernel as in the grader.
    """
    run = getattr(student, "drive", None)
    if run is None:
        raise TypeError(f"drive() needs a student function or class as a check received it, got {student!r}")
    value, ops = run(driver)
    return value, int(ops)


def drive(student: Any, driver: Callable[[Any], Any]) -> Any:
    """Inside a check: ``driver(student)``, run through the guard where the student's code runs (see
    :func:`drive_counted`). Compare what it returns with PyTorch's own run, computed outside ``drive``."""
    return drive_counted(student, driver)[0]


def check(*, refuse: Iterable[str] = (), forbid: Sequence[str] = (), refuse_code: Iterable[str] = (),
          why: str = _WHY) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare a check. ``refuse``: PyTorch operators (``guard.CONVOLUTION_OPS``, ...), ``forbid``: dotted
    names outside torch, and ``refuse_code``: dotted names of modules, classes or functions whose Python code
    (:mod:`course_utils.checks.codeguard`) the student's functions may not use while the check calls them.
    ``why`` ends each refusal's message (default: "this question asks you to write it yourself").

    The check receives the student's functions (or classes) as positional arguments;
    each is wrapped so that every call, and every :func:`drive`, goes through the
    guard (:mod:`course_utils.checks.guard`). A :class:`CheckFailure` reaches the
    student with its message and without this package's frames in the traceback.
    """
    refuse, forbid, refuse_code = tuple(refuse), tuple(forbid), tuple(refuse_code)
    guard = install()                    # captured now: later changes to this module do not reach it
    call = type(guard).call
    for name in refuse:                  # a typo would refuse nothing: fail when the check is declared
        qualified_op(name)
    code_rules(refuse_code)              # (likewise for a name whose code cannot be found)

    def declare(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def run(*functions: Any, **options: Any) -> None:
            __tracebackhide__ = True  # noqa: F841 (IPython and pytest leave this frame out)
            try:
                return body(*(_guarded(f, guard, call, refuse, forbid, refuse_code, why) for f in functions),
                            **options)
            except CheckFailure as failure:  # the message is the whole story: no frames of the checks
                raise failure.with_traceback(None) from None

        run.refuse = refuse  # type: ignore[attr-defined]
        run.forbid = forbid  # type: ignore[attr-defined]
        run.refuse_code = refuse_code  # type: ignore[attr-defined]
        return run

    return declare


def check_later(refuse_code: Callable[[], Iterable[str]], *, refuse: Iterable[str] = (),
                why: str = _WHY) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """:func:`check`, declared when the check is first called: ``refuse_code()`` may import libraries that take
    seconds (captum, torchvision's detection code), which a notebook's imports cell should not pay for."""
    refuse = tuple(refuse)

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        declared: list[Callable[..., None]] = []

        @functools.wraps(body)
        def run(*functions: Any, **options: Any) -> None:
            __tracebackhide__ = True  # noqa: F841 (IPython and pytest leave this frame out)
            if not declared:
                declared.append(check(refuse=refuse, refuse_code=refuse_code(), why=why)(body))
            return declared[0](*functions, **options)

        run.refuse = refuse  # type: ignore[attr-defined]
        return run

    return decorate


# --- comparisons ----------------------------------------------------------------------------------
def _call(fn: Callable, args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{getattr(fn, '__name__', 'function')}({', '.join(parts)})"


def _raised(call: str, err: Exception, wanted: str) -> CheckFailure:
    if isinstance(err, NotImplementedError):
        return CheckFailure(f"{call} is not implemented yet (it raised NotImplementedError)")
    return CheckFailure(f"{call} should {wanted}, but it raised {type(err).__name__}: {err}")


def expect_equal(fn: Callable, args: tuple, kwargs: dict, expected: Any) -> None:
    """Call ``fn(*args, **kwargs)`` and require ``== expected`` (an ``int`` where ``expected`` is one)."""
    call = _call(fn, args, kwargs)
    try:
        got = fn(*args, **kwargs)
    except Exception as err:
        raise _raised(call, err, f"return {expected!r}") from None
    if isinstance(expected, int) and (isinstance(got, bool) or not isinstance(got, int)):
        raise CheckFailure(f"{call} should return the int {expected!r}, got {type(got).__name__} {got!r}")
    if got != expected:
        raise CheckFailure(f"{call}: expected {expected!r}, got {got!r}")


def expect_raises(fn: Callable, args: tuple, kwargs: dict, error: type[BaseException], why: str) -> None:
    """Require ``fn(*args, **kwargs)`` to raise ``error`` (``why`` says which rule applies)."""
    call = _call(fn, args, kwargs)
    try:
        got = fn(*args, **kwargs)
    except error:
        return
    except Exception as err:
        raise _raised(call, err, f"raise {error.__name__} ({why})") from None
    raise CheckFailure(f"{call} should raise {error.__name__} ({why}), but it returned {got!r}")


def expect_close(got: Any, expected: Any, what: str, *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Require the tensor/array ``got`` to match the tensor ``expected``: shape, then every value.

    The message gives the shape or type mismatch, or the largest error and where it is.
    """
    import numpy as np
    import torch

    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        raise CheckFailure(f"{what} should be a tensor of shape {tuple(expected.shape)}, "
                           f"got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailure(f"{what} should have shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if got.is_complex() or got.dtype == torch.bool:
        raise CheckFailure(f"{what} should be a real-valued tensor like {expected.dtype}, got {got.dtype}")
    got64, expected64 = got.detach().to("cpu", torch.float64), expected.detach().to("cpu", torch.float64)
    if got64.numel() == 0:
        return
    error = (got64 - expected64).abs()
    allowed = atol + rtol * expected64.abs()
    bad = ~(error <= allowed)  # NaN counts as bad
    if bad.any():
        flat = int(torch.where(bad.flatten(), error.flatten().nan_to_num(float("inf")), -1.0).argmax())
        index = tuple(int(i) for i in np.unravel_index(flat, tuple(got.shape)))
        raise CheckFailure(
            f"{what}: {int(bad.sum())} of {got64.numel()} values are off; the largest error is "
            f"{float(error.flatten()[flat]):.3g} at index {index} (got {float(got64.flatten()[flat]):.6g}, "
            f"expected {float(expected64.flatten()[flat]):.6g}; tolerance {atol:g} + {rtol:g}·|expected|)")


def case_label(name: str, call: str, rule: str, hidden: bool) -> str:
    """How a failure names its case: the call for a visible case, only the rule for a hidden one."""
    return f"{name}, on a hidden case ({rule})" if hidden else f"{call} [{rule}]"


def type_name(value: Any, hidden: bool) -> str:
    """The name of ``value``'s type; on a hidden case, of its first built-in base (a class the student named,
    or its message, could quote the hidden inputs)."""
    import builtins

    import numpy as np
    import torch

    cls = value if isinstance(value, type) else type(value)
    if not hidden:
        return cls.__name__
    known_types = ((ForbiddenReference, "ForbiddenReference"), (np.ndarray, "ndarray"), (torch.Tensor, "Tensor"))
    for known, shown in known_types:
        if issubclass(cls, known):
            return shown
    return next(c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c)


def notebook_global(fn: Any, name: str) -> Any:
    """The notebook's ``name`` as ``fn`` (a function defined in the notebook) sees it: how a check reaches a
    student's helper or constant that its test cell does not pass (``LookupError`` when there is none)."""
    space = getattr(fn, "__globals__", None)
    if not isinstance(space, dict) or name not in space:
        raise LookupError(f"the check looks {name} up where {getattr(fn, '__name__', 'the function')} was "
                          f"defined: define both in the notebook")
    return space[name]


def passed(what: str, cases: int) -> None:
    """Print the one line a student sees when a check passes."""
    print(f"✓ {what}: all {cases} cases passed")
