"""The checks behind every assignment's test cells: one module per assignment.

A test cell only calls a check, e.g. ``checks.check_conv_output_size(conv_output_size)``.
A check compares the student's function with a reference (PyTorch itself,
worked examples, numerical gradients) on several inputs and raises
:class:`CheckFailure` with what was expected and what was given. Visible checks
use fixed inputs; hidden checks (``hidden=True``) draw theirs from
:func:`grading_seed`, which the instructor sets at grading time, so reading the
public code does not reveal them.

The grading-protocol work extends this package (official grades computed
outside the student's kernel); the helpers here are its shared vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["CheckFailure", "grading_seed", "expect_equal", "expect_raises", "passed", "GRADING_SEED_VAR"]

#: Environment variable the instructor sets at grading time to choose the hidden inputs.
GRADING_SEED_VAR = "COURSE_GRADING_SEED"
_DEFAULT_HIDDEN_SEED = 7


class CheckFailure(AssertionError):
    """A check found a wrong answer; the message says what was expected and what was given."""


def grading_seed() -> int:
    """Seed for hidden inputs: ``$COURSE_GRADING_SEED`` if set, else a fixed default."""
    value = os.environ.get(GRADING_SEED_VAR, "").strip()
    if not value:
        return _DEFAULT_HIDDEN_SEED
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{GRADING_SEED_VAR}={value!r} must be an integer") from None


def _call(fn: Callable, args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{getattr(fn, '__name__', 'function')}({', '.join(parts)})"


def expect_equal(fn: Callable, args: tuple, kwargs: dict, expected: Any) -> None:
    """Call ``fn(*args, **kwargs)`` and require ``== expected`` (same type family for ints)."""
    call = _call(fn, args, kwargs)
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{call} is not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        raise CheckFailure(f"{call} should return {expected!r}, but it raised "
                           f"{type(err).__name__}: {err}") from None
    if isinstance(expected, int) and (isinstance(got, bool) or not isinstance(got, int)):
        raise CheckFailure(f"{call} should return the int {expected!r}, got {type(got).__name__} {got!r}")
    if got != expected:
        raise CheckFailure(f"{call}: expected {expected!r}, got {got!r}")


def expect_raises(fn: Callable, args: tuple, kwargs: dict, error: type[BaseException], why: str) -> None:
    """Require ``fn(*args, **kwargs)`` to raise ``error`` (``why`` says which rule applies)."""
    call = _call(fn, args, kwargs)
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{call} is not implemented yet (it raised NotImplementedError)") from None
    except error:
        return
    except Exception as err:
        raise CheckFailure(f"{call} should raise {error.__name__} ({why}), but it raised "
                           f"{type(err).__name__}: {err}") from None
    raise CheckFailure(f"{call} should raise {error.__name__} ({why}), but it returned {got!r}")


def passed(what: str, cases: int) -> None:
    """Print the one line a student sees when a check passes."""
    print(f"✓ {what}: all {cases} cases passed")
