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

A check is declared with :func:`check`, which names the references that the
student's code may not call while it is being checked (``forbid``). Visible
checks use fixed inputs; with ``hidden=True`` a check draws its inputs from
:func:`grading_seed`, which the instructor sets at grading time. Rules for
check authors: compare behaviour, not code; say what was expected and what was
given; print one ``✓`` line on success and nothing to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["CheckFailure", "ForbiddenReference", "check", "blocked", "grading_seed", "expect_equal",
           "expect_raises", "expect_close", "passed", "GRADING_SEED_VAR"]

#: Environment variable the instructor sets at grading time to choose the hidden inputs.
GRADING_SEED_VAR = "COURSE_GRADING_SEED"
_DEFAULT_HIDDEN_SEED = 7


class CheckFailure(AssertionError):
    """A check found a wrong answer; the message says what was expected and what was given."""


class ForbiddenReference(RuntimeError):
    """The student's code called a reference implementation that the question asks them to write."""


def grading_seed() -> int:
    """Seed for hidden inputs: ``$COURSE_GRADING_SEED`` if set, else a fixed default."""
    value = os.environ.get(GRADING_SEED_VAR, "").strip()
    if not value:
        return _DEFAULT_HIDDEN_SEED
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{GRADING_SEED_VAR}={value!r} must be an integer") from None


# --- references that are unavailable while the student's code runs --------------------------------
def _owner(dotted: str) -> tuple[Any, str]:
    """``"torch.nn.functional.conv2d"`` -> (the module torch.nn.functional, "conv2d")."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        if not hasattr(owner, parts[-1]):
            break
        return owner, parts[-1]
    raise ValueError(f"cannot forbid {dotted!r}: expected a dotted path to an attribute, e.g. "
                     f"'torch.nn.functional.conv2d'")


@contextlib.contextmanager
def blocked(names: Sequence[str], why: str = "this question asks you to write it yourself") -> Iterator[None]:
    """Within the block, calling any of the dotted ``names`` raises :class:`ForbiddenReference`."""
    saved = []
    try:
        for dotted in names:
            owner, attr = _owner(dotted)
            # An inherited class attribute is shadowed while blocked and then removed again, so the
            # class ends up exactly as it was (not with a copy of its parent's attribute of its own).
            inherited = isinstance(owner, type) and attr not in owner.__dict__
            original = None if inherited else \
                owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)

            def refuse(*args: Any, _name: str = dotted, **kwargs: Any) -> Any:
                raise ForbiddenReference(f"{_name} cannot be used in this answer: {why}")

            setattr(owner, attr, refuse)  # (raises for a read-only attribute: nothing to restore then)
            saved.append((owner, attr, inherited, original))
        yield
    finally:
        for owner, attr, inherited, original in reversed(saved):
            if inherited:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def _guarded(fn: Any, forbid: Sequence[str]) -> Any:
    """The student's function as a check calls it: references blocked, its warnings kept quiet.

    nbgrader fails a test cell that writes to stderr; a warning raised by a correct
    answer must not cost the student anything, in their kernel or when graded.
    """
    if not callable(fn):
        return fn
    if hasattr(fn, "with_forbidden"):  # a grading proxy: the worker does all this on its side
        return fn.with_forbidden(forbid)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with blocked(forbid), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)

    return call


def check(*, forbid: Sequence[str] = ()) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare a check. ``forbid``: dotted references the student's functions may not call.

    The check receives the student's functions as positional arguments; each is
    wrapped so that the forbidden references raise :class:`ForbiddenReference`
    while it runs.
    """
    def declare(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def run(*functions: Any, **options: Any) -> None:
            return body(*(_guarded(f, forbid) for f in functions), **options)

        run.forbid = tuple(forbid)  # type: ignore[attr-defined]
        return run

    return declare


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


def passed(what: str, cases: int) -> None:
    """Print the one line a student sees when a check passes."""
    print(f"✓ {what}: all {cases} cases passed")
