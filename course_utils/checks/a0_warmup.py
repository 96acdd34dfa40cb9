"""Checks for a0_warmup: the output size of a convolution.

The reference is PyTorch itself: ``F.conv2d`` on ``meta`` tensors computes the
output shape without computing anything, so the check never states the formula.
While the student's function runs, that reference (and pooling, which computes
the same size) is refused at PyTorch's dispatcher. Hidden cases are drawn from
the instructor's secret (``hidden_random``), tagged with this assignment and the check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import check, expect_equal, expect_raises, hidden_random, passed
from .guard import AVERAGE_POOLING_OPS, CONVOLUTION_OPS, POOLING_OPS

__all__ = ["check_conv_output_size", "check_conv_output_size_errors"]

ASSIGNMENT = "a0_warmup"

# While the student's function runs, PyTorch's convolutions are refused at the dispatcher (however they
# are reached): computing the size by running one, even on shape-only "meta" tensors, would not be an
# answer. Pooling computes the same size (with dilation and padding), so it is refused too.
REFUSE = CONVOLUTION_OPS + POOLING_OPS + AVERAGE_POOLING_OPS

# (i, k, s, p, d): the worked examples of lecture 01 and a few edge cases.
VISIBLE_CASES = [
    (32, 5, 1, 2, 1),   # 32x32 input, 5x5 filters, pad 2: size kept
    (7, 3, 1, 0, 1),
    (7, 3, 2, 0, 1),
    (7, 3, 3, 0, 1),    # "doesn't fit": the leftover column is ignored
    (227, 11, 4, 0, 1),  # AlexNet's first layer
    (5, 3, 1, 0, 2),    # dilation 2: the kernel spans 5 pixels
    (1, 1, 1, 0, 1),
]

# Settings with no output at all, and the rule each breaks.
VISIBLE_ERRORS = [
    ((3, 5, 1, 0, 1), "the kernel is larger than the padded input"),
    ((5, 3, 0, 0, 1), "the stride must be at least 1"),
    ((5, 0, 1, 0, 1), "the kernel size must be at least 1"),
    ((5, 3, 1, -1, 1), "padding cannot be negative"),
    ((5, 3, 1, 0, 0), "the dilation must be at least 1"),
    ((5, 3, 1, 0, 3), "the dilated kernel (7 pixels) is larger than the input"),
]


@functools.lru_cache(maxsize=4096)
def reference_output_size(i: int, k: int, s: int, p: int, d: int) -> int:
    """What PyTorch's conv2d gives along one side (shapes only, on the meta device)."""
    x = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]


def _hidden_cases(count: int = 40) -> list[tuple[int, int, int, int, int]]:
    rng = hidden_random(ASSIGNMENT, "check_conv_output_size", "cases")
    cases: list[tuple[int, int, int, int, int]] = []
    while len(cases) < count:
        i, k, s, p, d = rng.randint(1, 64), rng.randint(1, 9), rng.randint(1, 5), rng.randint(0, 4), rng.randint(1, 3)
        if i + 2 * p >= d * (k - 1) + 1:
            cases.append((i, k, s, p, d))
    return cases


@check(refuse=REFUSE)
def check_conv_output_size(conv_output_size: Callable[..., int], hidden: bool = False) -> None:
    """The output size matches PyTorch's on the worked examples (or the hidden cases)."""
    cases = _hidden_cases() if hidden else VISIBLE_CASES
    for i, k, s, p, d in cases:
        expect_equal(conv_output_size, (i, k), {"s": s, "p": p, "d": d}, reference_output_size(i, k, s, p, d))
    passed("conv_output_size" + (" (hidden cases)" if hidden else ""), len(cases))


@check(refuse=REFUSE)
def check_conv_output_size_errors(conv_output_size: Callable[..., int], hidden: bool = False) -> None:
    """Impossible settings raise ValueError; possible ones (even with a remainder) do not."""
    errors = list(VISIBLE_ERRORS)
    if hidden:
        rng = hidden_random(ASSIGNMENT, "check_conv_output_size_errors", "errors")
        for _ in range(10):
            k, d = rng.randint(2, 7), rng.randint(1, 3)
            i = rng.randint(1, d * (k - 1))  # always smaller than the dilated kernel
            errors.append(((i, k, 1, 0, d), f"the dilated kernel ({d * (k - 1) + 1} pixels) is larger than the input"))
    for (i, k, s, p, d), why in errors:
        expect_raises(conv_output_size, (i, k), {"s": s, "p": p, "d": d}, ValueError, why)
    # A remainder is not an error: PyTorch floors and ignores the leftover input.
    expect_equal(conv_output_size, (7, 3), {"s": 3, "p": 0, "d": 1}, reference_output_size(7, 3, 3, 0, 1))
    passed("conv_output_size errors" + (" (hidden cases)" if hidden else ""), len(errors) + 1)
