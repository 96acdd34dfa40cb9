"""Fast mode: the same cells, smaller data and fewer epochs.

Fast mode is on when ``COURSE_FAST`` is set to a true value (``1``, ``true``,
``yes``, ``on``) or when nbgrader is executing the notebook (it sets
``NBGRADER_EXECUTION`` while validating and autograding). Tests run every
notebook in fast mode to check the mechanics in seconds; default mode is what a
student sees (about a minute per notebook on a laptop CPU).
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["is_fast", "choose", "epochs", "size"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_fast() -> bool:
    """True under ``COURSE_FAST=1`` or while nbgrader executes the notebook."""
    value = os.environ.get("COURSE_FAST", "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ValueError(
            f"COURSE_FAST={os.environ['COURSE_FAST']!r} is not understood; "
            f"expected one of 1/true/yes/on or 0/false/no/off (or unset)"
        )
    return value in _TRUE or bool(os.environ.get("NBGRADER_EXECUTION"))


def choose(default: T, fast: T) -> T:
    """Return ``fast`` in fast mode, ``default`` otherwise."""
    return fast if is_fast() else default


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def epochs(default: int, fast: int = 1) -> int:
    """Number of training epochs: ``default`` normally, ``fast`` (1) in fast mode."""
    return choose(_positive_int("default", default), _positive_int("fast", fast))


def size(default: int, fast: int | None = None) -> int:
    """A dataset size: ``default`` normally; ``fast`` (or a tenth, at least 64) in fast mode."""
    _positive_int("default", default)
    if fast is None:
        fast = min(default, max(64, default // 10))
    return choose(default, _positive_int("fast", fast))
