"""Checks for a1_convolutions: output sizes, conv2d, the conv matrix, transposed conv, max-pooling.

Every reference is PyTorch itself (``F.conv2d``, ``F.conv_transpose2d``,
``F.max_pool2d``, computed in float64). While the student's functions run,
PyTorch's convolution and pooling operators are refused at the dispatcher
(``guard.CONVOLUTION_OPS``, ``guard.POOLING_OPS``): every way to reach them
(an import by name, ``torch.ops.aten``, ``torch.nn.grad``, ``F.unfold``, which is
``aten.im2col``, ``F.max_pool3d`` on an unsqueezed input, ...) raises.
``Tensor.unfold`` and ``torch.as_strided`` (views, no arithmetic) stay allowed.

Each check has two sets of cases, each a list of ``(rule, setting)``:

* visible: fixed inputs, every rule the task states at least once, each edge
  case included (a kernel that fits only thanks to the padding, output_padding
  smaller than the dilation but not the stride, max-pool windows of exact zeros, ...);
* hidden: a fixed twin of every visible rule (other sizes, values drawn from the
  instructor's secret), then random settings drawn from the secret. Every known
  bug class is caught by a fixed case, so no bug depends on the term's secret
  (tests/heavy/test_a1_catch_rate.py measures it over 1,000 secrets).

A failure on a visible case shows the call; a failure on a hidden case names
the rule involved and what was wrong (shape or values), never the inputs.
Vectorization (questions 3 and 5) is checked by counting the PyTorch operators a
call dispatches on inputs of several sizes: the count of a vectorized answer does
not depend on the sizes; a Python loop over images, channels or positions makes it grow.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import CheckFailure, check, expect_close, hidden_generator, hidden_random, operations, passed
from . import case_label as _where, type_name as _kind
from .a0_warmup import VISIBLE_CASES as A0_SIZE_CASES
from .a0_warmup import reference_output_size
from .guard import AVERAGE_POOLING_OPS, CONVOLUTION_OPS, POOLING_OPS

__all__ = ["check_conv_output_size", "check_conv_output_size_errors", "check_conv_transpose_output_size",
           "check_conv2d_basic", "check_conv2d_stride_padding", "check_conv2d_dilation", "check_conv2d_bias",
           "check_conv2d_fast", "check_conv_matrix", "check_conv_transpose2d_via_matrix",
           "check_conv_transpose2d", "check_conv_transpose2d_options", "check_conv_transpose2d_vectorized",
           "check_max_pool2d"]

ASSIGNMENT = "a1_convolutions"
# A hidden failure's message names the check and the rule, never an input, a size, a value or any text the
# student's code chose (an exception's message, a returned number, an operation count): the grader shows it
# to the student (course_utils.grading.protocol).
HIDDEN_MESSAGES_NAME_THE_RULE = True
ATOL, RTOL = 1e-4, 1e-4
# An output size computed by running a convolution or a pooling layer (even on shape-only "meta" tensors) is not
# an answer: the size checks refuse all of them, as a0's do.
SIZE_REFUSE = CONVOLUTION_OPS + POOLING_OPS + AVERAGE_POOLING_OPS
Case = tuple[str, tuple]  # (the rule a case exercises, its setting)


# --- helpers ------------------------------------------------------------------------------------
def _rng(hidden: bool, check_name: str, part: str) -> random.Random:
    """Random numbers for one part of a check: fixed for the visible cases, from the secret for hidden ones."""
    return hidden_random(ASSIGNMENT, check_name, part) if hidden else random.Random(f"{check_name}/{part}")


def _generator(hidden: bool, check_name: str, part: str) -> torch.Generator:
    if hidden:
        return hidden_generator(ASSIGNMENT, check_name, part)
    return torch.Generator().manual_seed(zlib.crc32(f"{check_name}/{part}".encode()))  # fixed: the visible cases


def _tensor(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator) * 2 - 1  # uniform in [-1, 1), float32


def _name(fn: Callable, default: str) -> str:
    return getattr(fn, "__name__", default)


def _describe(**settings: Any) -> str:
    return ", ".join(f"{k}={tuple(v.shape) if isinstance(v, torch.Tensor) else v}" for k, v in settings.items())


def _call(fn: Callable, where: str, hidden: bool, *args: Any, **kwargs: Any) -> Any:
    """Call the student's function; a crash becomes a failure that says where (not the inputs, if hidden)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} raised {_kind(err, hidden)}{detail}") from None


def _dense(got: Any) -> Any:
    """A sparse tensor (a natural way to store a conv matrix) compared by its value."""
    if isinstance(got, torch.Tensor) and got.layout != torch.strided:
        return got.to_dense()
    return got


def _compare(got: Any, expected: torch.Tensor, where: str, hidden: bool) -> None:
    """expect_close; for a hidden case the message keeps what was wrong and drops shapes and values."""
    try:
        expect_close(_dense(got), expected, where, atol=ATOL, rtol=RTOL)
    except CheckFailure as failure:
        if not hidden:
            raise
        text = str(failure)
        what = "the output has the wrong shape" if "should have shape" in text else \
            "the output is not a real-valued tensor" if "should be" in text else "some output values are wrong"
        raise CheckFailure(f"{where}: {what}. The visible cases test the same rule on other inputs: make "
                           f"your code right for every size, not only theirs.") from None


def _expect_size(fn: Callable, args: tuple, kwargs: dict, expected: int, rule: str, hidden: bool) -> None:
    name = _name(fn, "size")
    call = f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
    where = _where(name, call, rule, hidden)
    got = _call(fn, where, hidden, *args, **kwargs)
    if isinstance(got, bool) or not isinstance(got, int):
        raise CheckFailure(f"{where} should return an int, got {_kind(got, hidden)}")
    if int(got) != expected:
        raise CheckFailure(f"{where}: the size is wrong" if hidden else
                           f"{where}: expected {expected}, got {int(got)}")


def _expect_value_error(fn: Callable, args: tuple, kwargs: dict, rule: str, hidden: bool) -> None:
    name = _name(fn, "size")
    call = f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
    where = _where(name, call, rule, hidden)
    try:
        got = fn(*args, **kwargs)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} should raise ValueError, but it raised {_kind(err, hidden)}{detail}") from None
    shown = _kind(got, hidden) if hidden else repr(got)
    raise CheckFailure(f"{where} should raise ValueError, but it returned {shown}")


def _vectorized(fn: Callable, name: str, sizes: dict[str, Callable[[torch.Generator], tuple]],
                reference: Callable[..., torch.Tensor], hidden: bool, loops: str, arguments: str) -> int:
    """Call ``fn`` on inputs of several sizes; each result must be right and every call must dispatch the same
    number of PyTorch operators as the first (a loop over what changed in between makes the count grow).

    sizes: {what grows compared with the first entry: inputs -> (args, kwargs)}; arguments: the names of the
    positional arguments, one letter each. Returns the operator count.
    """
    counts: dict[str, int] = {}
    g = _generator(hidden, name, "vectorized")
    for grows, make in sizes.items():
        args, kwargs = make(g)
        call = f"{name}({_describe(**dict(zip(arguments, args, strict=True)), **kwargs)})"
        where = _where(name, call, "vectorized: " + (grows or "smallest input"), hidden)
        try:
            got, ops = operations(fn, *args, **kwargs)
        except NotImplementedError:
            raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
        except Exception as err:
            raise CheckFailure(f"{where} raised {_kind(err, hidden)}" + ("" if hidden else f": {err}")) from None
        _compare(got, reference(*args, **kwargs), where, hidden)
        counts[grows] = ops
    first, base = next(iter(counts.items()))
    for grows, ops in counts.items():
        if ops != base and hidden:  # (counts are the student's to choose: they could spell the hidden sizes)
            raise CheckFailure(f"{name} is not vectorized, on a hidden case: the number of PyTorch operations it "
                               f"dispatched grew with {grows}, so there is a Python loop over {loops}.")
        if ops != base:
            raise CheckFailure(
                f"{name} is not vectorized: it dispatched {base:,} PyTorch operations on the smallest input and "
                f"{ops:,} with {grows}. The work of a vectorized version does not depend on the sizes; this grows "
                f"with them, so there is a Python loop over {loops}.")
    return base


# --- 1. output sizes ----------------------------------------------------------------------------
# a0's worked examples and errors, then the edge cases a1 adds: (rule, (i, k, s, p, d))
SIZE_CASES: list[Case] = [("a worked example", case) for case in A0_SIZE_CASES] + [
    ("padding makes a kernel larger than the input fit", (3, 5, 2, 1, 1)),
    ("padding makes a dilated kernel fit", (4, 3, 3, 2, 3)),
    ("a stride that leaves a remainder (floor)", (10, 3, 4, 1, 1)),
]
SIZE_ERRORS: list[Case] = [
    ("the kernel is larger than the padded input", (3, 5, 1, 0, 1)),
    ("the stride must be at least 1", (5, 3, 0, 0, 1)),
    ("the kernel size must be at least 1", (5, 0, 1, 0, 1)),
    ("padding cannot be negative", (5, 3, 1, -1, 1)),
    ("the dilation must be at least 1", (5, 3, 1, 0, 0)),
    ("the dilated kernel is larger than the padded input", (5, 3, 1, 0, 3)),
    ("the kernel is larger than the padded input, with stride > 1 (no output, not 1)", (3, 4, 2, 0, 1)),
    ("the kernel is larger than the padded input, with stride > 1 (no output, not 1)", (4, 7, 3, 1, 1)),
]
HIDDEN_SIZE_CASES: list[Case] = [
    ("padding makes a kernel larger than the input fit", (2, 4, 3, 1, 1)),
    ("padding makes a dilated kernel fit", (5, 3, 2, 2, 4)),
    ("a stride that leaves a remainder (floor)", (12, 4, 5, 1, 1)),
    ("a worked example", (224, 7, 2, 3, 1)),
]
HIDDEN_SIZE_ERRORS: list[Case] = [
    ("the kernel is larger than the padded input, with stride > 1 (no output, not 1)", (5, 8, 4, 1, 1)),
    ("the dilated kernel is larger than the padded input", (4, 3, 2, 0, 3)),
    ("the stride must be at least 1", (6, 3, 0, 1, 1)),
    ("the kernel size must be at least 1", (6, 0, 2, 0, 1)),
    ("padding cannot be negative", (6, 3, 1, -2, 1)),
    ("the dilation must be at least 1", (6, 3, 2, 0, 0)),
]


def _random_sizes(rng: random.Random, count: int) -> tuple[list[Case], list[Case]]:
    cases: list[Case] = []
    errors: list[Case] = []
    while len(cases) < count or len(errors) < count // 4:
        i, k, s, p, d = rng.randint(1, 64), rng.randint(1, 9), rng.randint(1, 5), rng.randint(0, 4), rng.randint(1, 3)
        if i + 2 * p >= d * (k - 1) + 1:
            cases.append(("a random setting", (i, k, s, p, d)))
        else:
            errors.append(("the dilated kernel is larger than the padded input", (i, k, s, p, d)))
    return cases[:count], errors[:count // 4]


@check(refuse=SIZE_REFUSE)
def check_conv_output_size(conv_output_size: Callable[..., int], hidden: bool = False) -> None:
    """The output size matches PyTorch's: worked examples, remainders, padding that makes the kernel fit."""
    cases = list(HIDDEN_SIZE_CASES) + _random_sizes(_rng(True, "check_conv_output_size", "random"), 40)[0] \
        if hidden else SIZE_CASES
    for rule, (i, k, s, p, d) in cases:
        _expect_size(conv_output_size, (i, k), {"s": s, "p": p, "d": d}, reference_output_size(i, k, s, p, d),
                     rule, hidden)
    passed("conv_output_size" + (" (hidden cases)" if hidden else ""), len(cases))


@check(refuse=SIZE_REFUSE)
def check_conv_output_size_errors(conv_output_size: Callable[..., int], hidden: bool = False) -> None:
    """Settings with no output raise ValueError (a kernel larger than the padded input, at any stride)."""
    errors = list(HIDDEN_SIZE_ERRORS) + _random_sizes(_rng(True, "check_conv_output_size_errors", "random"), 40)[1] \
        if hidden else SIZE_ERRORS
    for rule, (i, k, s, p, d) in errors:
        _expect_value_error(conv_output_size, (i, k), {"s": s, "p": p, "d": d}, rule, hidden)
    passed("conv_output_size errors" + (" (hidden cases)" if hidden else ""), len(errors))


@functools.lru_cache(maxsize=4096)
def reference_transpose_size(i: int, k: int, s: int, p: int, d: int, op: int) -> int:
    y = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return F.conv_transpose2d(y, w, stride=s, padding=p, output_padding=op, dilation=d).shape[-1]


# (rule, (i, k, s, p, d, output_padding)): lecture 02's examples and the edge cases
TRANSPOSE_SIZES: list[Case] = [
    ("a worked example", (2, 2, 1, 0, 1, 0)), ("a worked example", (3, 3, 2, 0, 1, 0)),
    ("output_padding smaller than the stride", (3, 3, 2, 0, 1, 1)), ("padding", (4, 4, 2, 1, 1, 0)),
    ("padding", (5, 3, 1, 1, 1, 0)), ("output_padding with dilation", (3, 3, 2, 1, 2, 1)),
    ("a 1x1 kernel", (1, 1, 1, 0, 1, 0)), ("output_padding smaller than the stride", (7, 5, 3, 2, 1, 2)),
    ("output_padding smaller than the dilation but not the stride (allowed)", (3, 3, 1, 0, 2, 1)),
    ("output_padding smaller than the dilation but not the stride (allowed)", (2, 3, 2, 1, 3, 2)),
    ("an output of exactly 1", (2, 1, 2, 1, 1, 0)),
]
TRANSPOSE_SIZE_ERRORS: list[Case] = [
    ("output_padding >= stride and >= dilation", (3, 3, 2, 0, 1, 2)),
    ("output_padding >= stride and >= dilation", (3, 3, 1, 0, 1, 1)),
    ("output_padding >= stride and >= dilation", (3, 3, 2, 0, 2, 2)),
    ("the kernel size must be at least 1", (3, 0, 1, 0, 1, 0)),
    ("the stride must be at least 1", (3, 3, 0, 0, 1, 0)),
    ("the dilation must be at least 1", (3, 3, 1, 0, 0, 0)),
    ("padding cannot be negative", (3, 3, 1, -1, 1, 0)),
    ("output_padding cannot be negative", (3, 3, 1, 0, 1, -1)),
    ("the output would be empty", (1, 1, 1, 1, 1, 0)),
    ("the output would be exactly 0", (2, 1, 1, 1, 1, 0)),
]
HIDDEN_TRANSPOSE_SIZES: list[Case] = [
    ("output_padding smaller than the dilation but not the stride (allowed)", (4, 2, 1, 1, 3, 2)),
    ("output_padding smaller than the dilation but not the stride (allowed)", (3, 2, 2, 0, 3, 2)),
    ("output_padding smaller than the stride", (5, 3, 4, 1, 1, 3)),
    ("output_padding with dilation", (4, 3, 3, 2, 2, 2)),
    ("an output of exactly 1", (2, 2, 1, 2, 2, 1)),
]
HIDDEN_TRANSPOSE_ERRORS: list[Case] = [
    ("output_padding >= stride and >= dilation", (4, 3, 3, 1, 2, 3)),
    ("output_padding >= stride and >= dilation", (2, 2, 1, 0, 1, 1)),
    ("the output would be exactly 0", (3, 1, 2, 3, 1, 1)),
    ("the output would be empty", (1, 2, 2, 2, 1, 1)),
    ("the kernel size must be at least 1", (4, 0, 2, 0, 1, 0)),
    ("the stride must be at least 1", (4, 2, 0, 0, 1, 0)),
    ("the dilation must be at least 1", (4, 2, 1, 0, 0, 0)),
    ("padding cannot be negative", (4, 2, 1, -2, 1, 0)),
    ("output_padding cannot be negative", (4, 2, 2, 0, 1, -1)),
]


def _random_transpose_sizes(rng: random.Random, count: int) -> tuple[list[Case], list[Case]]:
    cases: list[Case] = []
    errors: list[Case] = []
    while len(cases) < count or len(errors) < count // 3:
        i, k, s, p, d = rng.randint(1, 20), rng.randint(1, 7), rng.randint(1, 4), rng.randint(0, 3), rng.randint(1, 3)
        op = rng.randint(0, max(s, d))  # max(s, d) itself is not allowed
        o = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        if op < max(s, d) and o >= 1:
            cases.append(("a random setting", (i, k, s, p, d, op)))
        else:
            errors.append(("output_padding >= stride and >= dilation" if op >= max(s, d) else
                           "the output would be empty", (i, k, s, p, d, op)))
    return cases[:count], errors[:count // 3]


@check(refuse=SIZE_REFUSE)
def check_conv_transpose_output_size(conv_transpose_output_size: Callable[..., int], hidden: bool = False) -> None:
    """Matches F.conv_transpose2d's output size; raises ValueError exactly where PyTorch has no output."""
    if hidden:
        cases, errors = _random_transpose_sizes(_rng(True, "check_conv_transpose_output_size", "random"), 30)
        cases, errors = HIDDEN_TRANSPOSE_SIZES + cases, HIDDEN_TRANSPOSE_ERRORS + errors
    else:
        cases, errors = TRANSPOSE_SIZES, TRANSPOSE_SIZE_ERRORS
    for rule, (i, k, s, p, d, op) in cases:
        _expect_size(conv_transpose_output_size, (i, k), {"s": s, "p": p, "d": d, "output_padding": op},
                     reference_transpose_size(i, k, s, p, d, op), rule, hidden)
    for rule, (i, k, s, p, d, op) in errors:
        _expect_value_error(conv_transpose_output_size, (i, k), {"s": s, "p": p, "d": d, "output_padding": op},
                            rule, hidden)
    passed("conv_transpose_output_size" + (" (hidden cases)" if hidden else ""), len(cases) + len(errors))


# --- 2. conv2d ----------------------------------------------------------------------------------
# (rule, (N, C, H, W, F, KH, KW, stride, padding, dilation))
CONV_BASIC: list[Case] = [
    ("one image, one channel", (1, 1, 3, 3, 1, 2, 2, 1, 0, 1)),
    ("batched, multi-channel, non-square input", (2, 3, 7, 9, 4, 3, 3, 1, 0, 1)),
    ("a 1x1 kernel", (1, 2, 5, 4, 3, 1, 1, 1, 0, 1)),
    ("a non-square kernel", (3, 1, 6, 6, 2, 3, 2, 1, 0, 1)),
    ("a kernel as large as the input", (2, 2, 4, 5, 3, 4, 5, 1, 0, 1)),
]
CONV_STRIDE_PADDING: list[Case] = [
    ("stride 2 and padding: the windows fit exactly", (2, 3, 7, 7, 4, 3, 3, 2, 1, 1)),
    ("stride 3 with a remainder", (1, 2, 8, 5, 3, 3, 3, 3, 0, 1)),
    ("stride 3: the windows fit exactly", (2, 1, 7, 7, 2, 3, 3, 3, 0, 1)),
    ("padding on every side", (1, 3, 5, 6, 2, 2, 3, 1, 2, 1)),
    ("stride and padding, non-square kernel", (2, 2, 9, 8, 3, 4, 2, 2, 1, 1)),
    ("padding makes a kernel larger than the input fit", (1, 2, 2, 3, 3, 4, 3, 1, 1, 1)),
    ("padding makes a kernel larger than the input fit, with stride 2", (2, 1, 3, 2, 2, 4, 4, 2, 1, 1)),
]
CONV_DILATION: list[Case] = [
    ("dilation 2", (1, 1, 7, 7, 1, 3, 3, 1, 0, 2)),
    ("dilation with padding, non-square kernel", (2, 3, 9, 8, 2, 3, 2, 1, 1, 2)),
    ("dilation with stride and padding", (1, 2, 11, 10, 3, 3, 3, 2, 2, 3)),
    ("padding makes a dilated kernel fit", (1, 2, 4, 5, 2, 3, 3, 1, 1, 2)),
]
CONV_BIAS: list[Case] = [("a bias per filter: " + rule, case) for rule, case in
                         CONV_BASIC[1:3] + CONV_STRIDE_PADDING[:2] + CONV_STRIDE_PADDING[4:5] + CONV_DILATION[2:3]]

HIDDEN_CONV_BASIC: list[Case] = [
    ("batched, multi-channel, non-square input", (3, 2, 8, 6, 3, 3, 3, 1, 0, 1)),
    ("a non-square kernel", (2, 3, 5, 7, 2, 2, 4, 1, 0, 1)),
    ("a kernel as large as the input", (1, 3, 3, 4, 2, 3, 4, 1, 0, 1)),
    ("a 1x1 kernel", (2, 4, 3, 5, 2, 1, 1, 1, 0, 1)),
]
HIDDEN_CONV_STRIDE_PADDING: list[Case] = [
    ("stride 2 and padding: the windows fit exactly", (2, 2, 9, 5, 3, 3, 3, 2, 1, 1)),
    ("stride 3 with a remainder", (1, 3, 9, 10, 2, 2, 3, 3, 1, 1)),
    ("padding on every side", (2, 2, 4, 5, 3, 3, 2, 1, 2, 1)),
    ("padding makes a kernel larger than the input fit", (2, 2, 3, 2, 2, 5, 4, 1, 1, 1)),
    ("padding makes a kernel larger than the input fit, with stride 2", (1, 3, 2, 4, 2, 4, 3, 2, 1, 1)),
]
HIDDEN_CONV_DILATION: list[Case] = [
    ("dilation 2", (2, 2, 8, 7, 2, 3, 2, 1, 0, 2)),
    ("dilation with stride and padding", (1, 3, 10, 9, 2, 3, 3, 2, 1, 3)),
    ("padding makes a dilated kernel fit", (2, 1, 3, 6, 3, 2, 3, 1, 1, 3)),
]
HIDDEN_CONV_BIAS: list[Case] = [("a bias per filter: " + rule, case) for rule, case in
                                HIDDEN_CONV_BASIC[:1] + HIDDEN_CONV_STRIDE_PADDING[:2] + HIDDEN_CONV_DILATION[1:2]]


def _random_conv_cases(rng: random.Random, rule: str, strided: bool, dilated: bool, count: int = 5) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        n, c, h, w, f = rng.randint(1, 3), rng.randint(1, 4), rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 4)
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        s = rng.randint(1, 3) if strided else 1
        p = rng.randint(0, 2) if strided else 0
        d = rng.randint(1, 3) if dilated else 1
        if h + 2 * p >= d * (kh - 1) + 1 and w + 2 * p >= d * (kw - 1) + 1:
            cases.append((rule, (n, c, h, w, f, kh, kw, s, p, d)))
    return cases


def _run_conv_cases(conv2d: Callable, cases: list[Case], check_name: str, hidden: bool, bias: bool) -> int:
    name = _name(conv2d, "conv2d")
    g = _generator(hidden, check_name, "tensors")
    for rule, (n, c, h, w_, f, kh, kw, s, p, d) in cases:
        x, w = _tensor(g, n, c, h, w_), _tensor(g, f, c, kh, kw)
        b = _tensor(g, f) if bias else None
        expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride=s, padding=p,
                            dilation=d)
        where = _where(name, f"{name}({_describe(x=x, w=w, b=b, stride=s, padding=p, dilation=d)})", rule, hidden)
        got = _call(conv2d, where, hidden, x, w, b, stride=s, padding=p, dilation=d)
        _compare(got, expected, where, hidden)
    return len(cases)


def _conv_check(check_name: str, visible: list[Case], fixed_hidden: list[Case], strided: bool, dilated: bool,
                bias: bool, label: str, doc: str) -> Callable[..., None]:
    @check(refuse=CONVOLUTION_OPS)
    def run(conv2d: Callable, hidden: bool = False) -> None:
        cases = fixed_hidden + _random_conv_cases(_rng(True, check_name, "random"), label, strided, dilated) \
            if hidden else visible
        count = _run_conv_cases(conv2d, cases, check_name, hidden, bias)
        passed(f"{_name(conv2d, 'conv2d')}: {label}" + (" (hidden cases)" if hidden else ""), count)

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = doc
    return run


check_conv2d_basic = _conv_check(
    "check_conv2d_basic", CONV_BASIC, HIDDEN_CONV_BASIC, False, False, False, "batched, multi-channel, non-square",
    "Stride 1, no padding: agrees with F.conv2d on batched, multi-channel, non-square inputs and kernels.")
check_conv2d_stride_padding = _conv_check(
    "check_conv2d_stride_padding", CONV_STRIDE_PADDING, HIDDEN_CONV_STRIDE_PADDING, True, False, False,
    "stride and padding", "Strides (exact and with remainders), zero padding on every side, padding that makes "
                          "the kernel fit.")
check_conv2d_dilation = _conv_check(
    "check_conv2d_dilation", CONV_DILATION, HIDDEN_CONV_DILATION, True, True, False, "dilation",
    "Dilated kernels (taps d pixels apart), with stride and padding.")
check_conv2d_bias = _conv_check(
    "check_conv2d_bias", CONV_BIAS, HIDDEN_CONV_BIAS, True, False, True, "bias",
    "A bias per filter, added at every output position.")


def _conv_inputs(n: int, c: int, h: int, w: int, f: int, k: tuple[int, int]) -> Callable[[torch.Generator], tuple]:
    def make(g: torch.Generator) -> tuple:
        return (_tensor(g, n, c, h, w), _tensor(g, f, c, *k), _tensor(g, f)), {"stride": 1, "padding": 1,
                                                                               "dilation": 1}
    return make


def _reference_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, **kwargs: int) -> torch.Tensor:
    return F.conv2d(x.double(), w.double(), b.double(), **kwargs)


# Sizes for the vectorization check: no size is 1 (PyTorch may skip work on a size-1 axis), C and the kernel
# stay the same (a loop over input channels or kernel taps is allowed), the rest grows one at a time.
VECTORIZED_CONV = {"": (2, 3, 5, 6, 2, (3, 2)), "a larger batch N": (5, 3, 5, 6, 2, (3, 2)),
                   "more filters F": (2, 3, 5, 6, 7, (3, 2)), "a larger output H' x W'": (2, 3, 11, 9, 2, (3, 2))}


@check(refuse=CONVOLUTION_OPS)
def check_conv2d_fast(conv2d: Callable, hidden: bool = False) -> None:
    """Vectorized: as many PyTorch operations for a larger batch, more filters or a larger image, and right."""
    name = _name(conv2d, "conv2d")
    sizes = {grows: _conv_inputs(*size) for grows, size in VECTORIZED_CONV.items()}
    ops = _vectorized(conv2d, name, sizes, _reference_conv, hidden, "images n, filters f or output positions (r, c)",
                      "xwb")
    print(f"✓ {name} is vectorized: {ops} PyTorch operations for every input size"
          + (" (hidden inputs)" if hidden else ""))


# --- 3. the conv matrix and transposed convolution ------------------------------------------------
# (rule, (H, W, KH, KW, stride, padding))
MATRIX_CASES: list[Case] = [
    ("one channel, no padding", (3, 3, 2, 2, 1, 0)), ("a 3x3 kernel", (4, 4, 3, 3, 1, 0)),
    ("stride 2 and padding, non-square", (5, 4, 3, 2, 2, 1)), ("stride 2 with a remainder", (6, 5, 3, 3, 2, 0)),
    ("padding on a non-square input: taps on the padding read nothing", (4, 6, 1, 2, 1, 1)),
    ("padding makes a kernel larger than the input fit", (2, 3, 3, 4, 1, 1)),
]
HIDDEN_MATRIX_CASES: list[Case] = [
    ("padding on a non-square input: taps on the padding read nothing", (3, 5, 3, 2, 1, 1)),
    ("stride 2 and padding, non-square", (6, 4, 2, 3, 2, 1)),
    ("stride 2 with a remainder", (7, 6, 2, 2, 2, 0)),
    ("padding makes a kernel larger than the input fit", (3, 2, 4, 3, 1, 1)),
]


def reference_conv_matrix(w: torch.Tensor, size: tuple[int, int], stride: int, padding: int) -> torch.Tensor:
    """The matrix whose product with a flattened input is F.conv2d's flattened output (one-hot probing)."""
    h, w_ = size
    probes = torch.eye(h * w_, dtype=torch.float64).reshape(h * w_, 1, h, w_)
    out = F.conv2d(probes, w.double()[None, None], stride=stride, padding=padding)  # (H*W, 1, H', W')
    return out.reshape(h * w_, -1).T  # (H'*W', H*W)


def _random_matrix_cases(rng: random.Random, count: int = 5) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        h, w, kh, kw, s, p = rng.randint(2, 7), rng.randint(2, 7), rng.randint(1, 4), rng.randint(1, 4), \
            rng.randint(1, 3), rng.randint(0, 2)
        if h + 2 * p >= kh and w + 2 * p >= kw:
            cases.append(("a random setting", (h, w, kh, kw, s, p)))
    return cases


@check(refuse=CONVOLUTION_OPS)
def check_conv_matrix(conv_matrix: Callable, hidden: bool = False) -> None:
    """conv_matrix(w, (H, W), stride, padding) @ x.flatten() is the convolution, for every x (sparse is fine)."""
    g = _generator(hidden, "check_conv_matrix", "tensors")
    cases = HIDDEN_MATRIX_CASES + _random_matrix_cases(_rng(True, "check_conv_matrix", "random")) \
        if hidden else MATRIX_CASES
    for rule, (h, w_, kh, kw, s, p) in cases:
        w = _tensor(g, kh, kw)
        where = _where("conv_matrix", f"conv_matrix({_describe(w=w, input_size=(h, w_), stride=s, padding=p)})",
                       rule, hidden)
        got = _call(conv_matrix, where, hidden, w, (h, w_), stride=s, padding=p)
        _compare(got, reference_conv_matrix(w, (h, w_), s, p), where, hidden)
    passed("conv_matrix" + (" (hidden cases)" if hidden else ""), len(cases))


# (rule, (H', W', KH, KW, stride, padding, output_padding))
VIA_MATRIX_CASES: list[Case] = [
    ("stride 1", (2, 2, 2, 2, 1, 0, 0)), ("output_padding", (2, 3, 3, 3, 2, 0, 1)),
    ("padding", (3, 3, 3, 2, 2, 1, 0)), ("output_padding 2 with stride 3", (3, 2, 2, 2, 3, 0, 2)),
    ("output_padding with padding", (2, 3, 3, 3, 2, 1, 1)),
]
HIDDEN_VIA_MATRIX_CASES: list[Case] = [
    ("output_padding with padding", (3, 2, 3, 2, 2, 1, 1)),
    ("output_padding 2 with stride 3", (2, 3, 3, 2, 3, 1, 2)),
    ("padding", (4, 3, 3, 3, 1, 1, 0)),
]


def _random_via_matrix_cases(rng: random.Random, count: int = 5) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        oh, ow, kh, kw, s, p = rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 4), \
            rng.randint(1, 3), rng.randint(0, 2)
        op = rng.randint(0, s - 1)
        if min((oh - 1) * s + kh, (ow - 1) * s + kw) + op - 2 * p >= 1:
            cases.append(("a random setting", (oh, ow, kh, kw, s, p, op)))
    return cases


@check(refuse=CONVOLUTION_OPS)
def check_conv_transpose2d_via_matrix(conv_transpose2d_via_matrix: Callable, hidden: bool = False) -> None:
    """The transposed matrix applied to y equals F.conv_transpose2d (single channel, no batch)."""
    g = _generator(hidden, "check_conv_transpose2d_via_matrix", "tensors")
    cases = HIDDEN_VIA_MATRIX_CASES + _random_via_matrix_cases(
        _rng(True, "check_conv_transpose2d_via_matrix", "random")) if hidden else VIA_MATRIX_CASES
    name = "conv_transpose2d_via_matrix"
    for rule, (oh, ow, kh, kw, s, p, op) in cases:
        y, w = _tensor(g, oh, ow), _tensor(g, kh, kw)
        expected = F.conv_transpose2d(y.double()[None, None], w.double()[None, None], stride=s, padding=p,
                                      output_padding=op)[0, 0]
        where = _where(name, f"{name}({_describe(y=y, w=w, stride=s, padding=p, output_padding=op)})", rule, hidden)
        got = _call(conv_transpose2d_via_matrix, where, hidden, y, w, stride=s, padding=p, output_padding=op)
        _compare(got, expected, where, hidden)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


# (rule, (N, C, H, W, F, KH, KW, stride, padding, output_padding, dilation)); weights are (C, F, KH, KW)
TRANSPOSE_BASIC: list[Case] = [
    ("one channel, stride 1", (1, 1, 2, 2, 1, 2, 2, 1, 0, 0, 1)),
    ("batched, C != F, stride 1", (2, 3, 3, 4, 2, 3, 3, 1, 0, 0, 1)),
    ("stride 2, non-square kernel", (2, 2, 3, 3, 3, 3, 2, 2, 0, 0, 1)),
    ("stride 3 (gaps between the kernel's copies)", (1, 3, 4, 2, 2, 2, 2, 3, 0, 0, 1)),
]
TRANSPOSE_OPTIONS: list[Case] = [
    ("padding >= output_padding > 0: the extra rows receive contributions", (2, 2, 3, 3, 2, 3, 3, 2, 1, 1, 1)),
    ("dilation with padding", (1, 3, 4, 5, 2, 3, 3, 2, 1, 0, 2)),
    ("padding, a 4x4 kernel", (2, 1, 3, 3, 1, 4, 4, 2, 1, 0, 1)),
    ("output_padding 2 with stride 3 and padding 2", (1, 2, 2, 3, 3, 3, 2, 3, 2, 2, 1)),
    ("output_padding without padding: the extra rows receive only the bias", (1, 2, 3, 3, 2, 3, 3, 2, 0, 1, 1)),
    ("output_padding smaller than the dilation, stride 1", (1, 2, 3, 4, 2, 3, 3, 1, 1, 1, 2)),
]
HIDDEN_TRANSPOSE_BASIC: list[Case] = [
    ("batched, C != F, stride 1", (3, 2, 4, 3, 3, 2, 3, 1, 0, 0, 1)),
    ("stride 2, non-square kernel", (2, 3, 3, 4, 2, 2, 3, 2, 0, 0, 1)),
    ("stride 3 (gaps between the kernel's copies)", (2, 1, 3, 3, 2, 2, 1, 3, 0, 0, 1)),
]
HIDDEN_TRANSPOSE_OPTIONS: list[Case] = [
    ("padding >= output_padding > 0: the extra rows receive contributions", (1, 3, 4, 3, 2, 3, 3, 2, 2, 1, 1)),
    ("output_padding without padding: the extra rows receive only the bias", (2, 1, 2, 3, 3, 2, 3, 3, 0, 2, 1)),
    ("output_padding smaller than the dilation, stride 1", (2, 2, 3, 3, 3, 2, 3, 1, 0, 2, 3)),
    ("dilation with padding", (1, 2, 4, 4, 2, 3, 2, 2, 2, 0, 2)),
]


def _random_transpose_cases(rng: random.Random, rule: str, options: bool, count: int = 5) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        n, c, h, w, f, kh, kw = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 5),
                                 rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4))
        s = rng.randint(1, 3)
        p, d = (rng.randint(0, 2), rng.randint(1, 2)) if options else (0, 1)
        op = rng.randint(0, max(s, d) - 1) if options else 0
        if (min(h, w) - 1) * s - 2 * p + d * (min(kh, kw) - 1) + op + 1 >= 1:
            cases.append((rule, (n, c, h, w, f, kh, kw, s, p, op, d)))
    return cases


def _reference_transpose(y: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, **kwargs: int) -> torch.Tensor:
    return F.conv_transpose2d(y.double(), w.double(), None if b is None else b.double(), **kwargs)


def _run_transpose_cases(conv_transpose2d: Callable, cases: list[Case], check_name: str, hidden: bool,
                         bias: bool) -> int:
    g = _generator(hidden, check_name, "tensors")
    name = _name(conv_transpose2d, "conv_transpose2d")
    for rule, (n, c, h, w_, f, kh, kw, s, p, op, d) in cases:
        y, w = _tensor(g, n, c, h, w_), _tensor(g, c, f, kh, kw)
        b = _tensor(g, f) if bias else None
        kwargs = {"stride": s, "padding": p, "output_padding": op, "dilation": d}
        where = _where(name, f"{name}({_describe(y=y, w=w, b=b, **kwargs)})", rule, hidden)
        got = _call(conv_transpose2d, where, hidden, y, w, b, **kwargs)
        _compare(got, _reference_transpose(y, w, b, **kwargs), where, hidden)
    return len(cases)


@check(refuse=CONVOLUTION_OPS)
def check_conv_transpose2d(conv_transpose2d: Callable, hidden: bool = False) -> None:
    """Batched, multi-channel transposed convolution with strides, no padding: F.conv_transpose2d."""
    cases = HIDDEN_TRANSPOSE_BASIC + _random_transpose_cases(
        _rng(True, "check_conv_transpose2d", "random"), "strides", False) if hidden else TRANSPOSE_BASIC
    count = _run_transpose_cases(conv_transpose2d, cases, "check_conv_transpose2d", hidden, bias=False)
    passed("conv_transpose2d" + (" (hidden cases)" if hidden else ""), count)


@check(refuse=CONVOLUTION_OPS)
def check_conv_transpose2d_options(conv_transpose2d: Callable, hidden: bool = False) -> None:
    """Padding, output_padding (with and without padding, below the stride or the dilation), dilation, bias."""
    cases = HIDDEN_TRANSPOSE_OPTIONS + _random_transpose_cases(
        _rng(True, "check_conv_transpose2d_options", "random"), "padding, output_padding, dilation", True) \
        if hidden else TRANSPOSE_OPTIONS
    count = _run_transpose_cases(conv_transpose2d, cases, "check_conv_transpose2d_options", hidden, bias=True)
    passed("conv_transpose2d with padding, output_padding, dilation, bias" + (" (hidden cases)" if hidden else ""),
           count)


def _transpose_inputs(n: int, c: int, h: int, w: int, f: int, k: tuple[int, int]) -> Callable[[torch.Generator], tuple]:
    def make(g: torch.Generator) -> tuple:
        return (_tensor(g, n, c, h, w), _tensor(g, c, f, *k), _tensor(g, f)), {"stride": 2, "padding": 1,
                                                                               "output_padding": 1, "dilation": 1}
    return make


# F and the kernel stay the same (a loop over output channels or kernel taps is allowed); N, C, H, W grow.
VECTORIZED_TRANSPOSE = {"": (2, 2, 3, 4, 3, (3, 2)), "a larger batch N": (5, 2, 3, 4, 3, (3, 2)),
                        "more input channels C": (2, 6, 3, 4, 3, (3, 2)),
                        "a larger input H x W": (2, 2, 7, 6, 3, (3, 2))}


@check(refuse=CONVOLUTION_OPS)
def check_conv_transpose2d_vectorized(conv_transpose2d: Callable, hidden: bool = False) -> None:
    """No loops over n, m (input channels) or input positions: the operation count does not grow with them."""
    name = _name(conv_transpose2d, "conv_transpose2d")
    sizes = {grows: _transpose_inputs(*size) for grows, size in VECTORIZED_TRANSPOSE.items()}
    ops = _vectorized(conv_transpose2d, name, sizes, _reference_transpose, hidden,
                      "images n, input channels m or input positions (r, c)", "ywb")
    print(f"✓ {name} is vectorized: {ops} PyTorch operations for every input size"
          + (" (hidden inputs)" if hidden else ""))


# --- 4. max-pooling -----------------------------------------------------------------------------
# (rule, (N, C, H, W, kernel_size, stride or None, padding, values))
# values: "negative" (mostly below 0: padding with zeros would win), "relu" (a ReLU's output: exact zeros,
# whole windows of zeros, next to the padding), "ties" (small integers: equal maxima in a window)
POOL_CASES: list[Case] = [
    ("default stride (= kernel size)", (1, 1, 4, 4, 2, None, 0, "negative")),
    ("default stride, a remainder (floor)", (2, 3, 7, 5, 2, None, 0, "negative")),
    ("overlapping windows (stride < kernel size)", (2, 2, 7, 7, 3, 2, 0, "ties")),
    ("padding never wins a maximum", (1, 3, 6, 5, 3, 2, 1, "negative")),
    ("padding, stride 1, non-square", (2, 1, 5, 8, 2, 1, 1, "negative")),
    ("windows of exact zeros next to the padding (a ReLU's output)", (2, 2, 6, 6, 3, 2, 1, "relu")),
    ("stride = kernel size with padding", (1, 2, 6, 4, 2, 2, 1, "negative")),
    ("default stride with padding", (2, 1, 5, 7, 3, None, 1, "relu")),
]
HIDDEN_POOL_CASES: list[Case] = [
    ("windows of exact zeros next to the padding (a ReLU's output)", (2, 3, 5, 7, 2, 1, 1, "relu")),
    ("padding never wins a maximum", (1, 2, 7, 6, 4, 3, 2, "negative")),
    ("stride = kernel size with padding", (2, 2, 6, 6, 3, 3, 1, "negative")),
    ("default stride with padding", (1, 3, 4, 6, 2, None, 1, "relu")),
    ("default stride, a remainder (floor)", (2, 2, 9, 8, 3, None, 0, "ties")),
    ("overlapping windows (stride < kernel size)", (1, 2, 8, 9, 3, 1, 0, "ties")),
]


def _pool_input(g: torch.Generator, shape: tuple[int, ...], values: str) -> torch.Tensor:
    if values == "negative":
        return _tensor(g, *shape) - 0.5
    if values == "ties":
        return torch.randint(-3, 2, shape, generator=g).float()
    x = torch.relu(_tensor(g, *shape) - 0.3)  # about 65% exact zeros
    x[..., :2, :2] = 0.0  # a window of zeros at a corner, where the padding is
    return x


def _random_pool_cases(rng: random.Random, count: int = 5) -> list[Case]:
    cases: list[Case] = []
    for _ in range(count):
        k = rng.randint(1, 4)
        cases.append(("a random setting", (rng.randint(1, 3), rng.randint(1, 3), rng.randint(k, 10),
                                           rng.randint(k, 10), k, rng.choice([None, 1, 2, 3]), rng.randint(0, k // 2),
                                           rng.choice(["negative", "relu", "ties"]))))
    return cases


@check(refuse=POOLING_OPS)
def check_max_pool2d(max_pool2d: Callable, hidden: bool = False) -> None:
    """Agrees with F.max_pool2d: default stride = kernel size, overlapping windows, padding that never wins,
    exact zeros and ties."""
    g = _generator(hidden, "check_max_pool2d", "tensors")
    cases = HIDDEN_POOL_CASES + _random_pool_cases(_rng(True, "check_max_pool2d", "random")) \
        if hidden else POOL_CASES
    name = _name(max_pool2d, "max_pool2d")
    for rule, (n, c, h, w, k, s, p, values) in cases:
        x = _pool_input(g, (n, c, h, w), values)
        expected = F.max_pool2d(x.double(), k, stride=s, padding=p)
        where = _where(name, f"{name}({_describe(x=x, kernel_size=k, stride=s, padding=p)})", rule, hidden)
        got = _call(max_pool2d, where, hidden, x, k, stride=s, padding=p)
        _compare(got, expected, where, hidden)
    passed(f"{name}" + (" (hidden cases)" if hidden else ""), len(cases))


def hidden_rules() -> dict[str, Sequence[str]]:
    """The rules each check's fixed hidden cases exercise (for the instructor's guide and the tests)."""
    return {"check_conv_output_size": [r for r, _ in HIDDEN_SIZE_CASES],
            "check_conv_output_size_errors": [r for r, _ in HIDDEN_SIZE_ERRORS],
            "check_conv_transpose_output_size": [r for r, _ in HIDDEN_TRANSPOSE_SIZES + HIDDEN_TRANSPOSE_ERRORS],
            "check_conv2d_basic": [r for r, _ in HIDDEN_CONV_BASIC],
            "check_conv2d_stride_padding": [r for r, _ in HIDDEN_CONV_STRIDE_PADDING],
            "check_conv2d_dilation": [r for r, _ in HIDDEN_CONV_DILATION],
            "check_conv2d_bias": [r for r, _ in HIDDEN_CONV_BIAS],
            "check_conv_matrix": [r for r, _ in HIDDEN_MATRIX_CASES],
            "check_conv_transpose2d_via_matrix": [r for r, _ in HIDDEN_VIA_MATRIX_CASES],
            "check_conv_transpose2d": [r for r, _ in HIDDEN_TRANSPOSE_BASIC],
            "check_conv_transpose2d_options": [r for r, _ in HIDDEN_TRANSPOSE_OPTIONS],
            "check_max_pool2d": [r for r, _ in HIDDEN_POOL_CASES]}
