"""Checks for a1_convolutions: output sizes, conv2d, the conv matrix, transposed conv, max-pooling.

Every reference is PyTorch itself (``F.conv2d``, ``F.conv_transpose2d``,
``F.max_pool2d``, computed in float64), and those references, together with
``F.unfold`` / ``F.fold``, are unavailable while the student's functions run.
Inputs are random tensors from a seeded generator: fixed for the visible checks,
drawn from the grading seed for the hidden ones. Settings include non-square
inputs and kernels, odd sizes and strides that leave a remainder.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import CheckFailure, check, expect_close, expect_equal, expect_raises, grading_seed, passed
from .a0_warmup import check_conv_output_size, check_conv_output_size_errors

__all__ = ["check_conv_output_size", "check_conv_output_size_errors", "check_conv_transpose_output_size",
           "check_conv2d_basic", "check_conv2d_stride_padding", "check_conv2d_dilation", "check_conv2d_bias",
           "check_conv2d_fast", "check_conv_matrix", "check_conv_transpose2d_via_matrix",
           "check_conv_transpose2d", "check_conv_transpose2d_options", "check_max_pool2d"]

# Every public door to PyTorch's convolutions we know of: the functional API, the torch.* aliases, the
# gradient helpers of torch.nn.grad (an input gradient IS a transposed convolution) and the ATen operators
# underneath. nn.Conv2d / nn.ConvTranspose2d go through F.conv2d / F.conv_transpose2d and are covered.
CONVOLUTIONS = tuple(f"torch.nn.functional.{name}" for name in (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "unfold", "fold")) \
    + tuple(f"torch.{name}" for name in (
        "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution",
        "_convolution")) \
    + tuple(f"torch.nn.grad.{name}" for name in ("conv1d_input", "conv2d_input", "conv2d_weight", "conv3d_input")) \
    + tuple(f"torch.ops.aten.{name}" for name in (
        "convolution", "_convolution", "conv2d", "conv_transpose2d", "convolution_backward", "mkldnn_convolution",
        "thnn_conv2d", "_slow_conv2d_forward", "slow_conv_transpose2d", "im2col", "col2im")) \
    + ("torch._C._nn.im2col", "torch._C._nn.col2im")
POOLING = ("torch.nn.functional.max_pool2d", "torch.nn.functional.max_pool2d_with_indices", "torch.max_pool2d",
           "torch.nn.functional.adaptive_max_pool2d", "torch.nn.functional.lp_pool2d", "torch.ops.aten.max_pool2d",
           "torch.ops.aten.max_pool2d_with_indices", "torch._C._nn.max_pool2d_with_indices")
ATOL, RTOL = 1e-4, 1e-4


def _seed(hidden: bool, salt: int) -> int:
    return grading_seed() * 1000 + salt if hidden else salt


def _tensor(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator) * 2 - 1  # uniform in [-1, 1), float32


def _call(fn: Callable, what: str, *args, **kwargs):
    """Call the student's function; a crash becomes a failure that says where."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{what} is not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        raise CheckFailure(f"{what} raised {type(err).__name__}: {err}") from None


def _describe(**settings) -> str:
    return ", ".join(f"{k}={tuple(v.shape) if isinstance(v, torch.Tensor) else v}" for k, v in settings.items())


# --- 1. output sizes ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def reference_transpose_size(i: int, k: int, s: int, p: int, d: int, op: int) -> int:
    y = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return F.conv_transpose2d(y, w, stride=s, padding=p, output_padding=op, dilation=d).shape[-1]


# (i, k, s, p, d, output_padding): lecture 02's examples and the edge cases
TRANSPOSE_CASES = [(2, 2, 1, 0, 1, 0), (3, 3, 2, 0, 1, 0), (3, 3, 2, 0, 1, 1), (4, 4, 2, 1, 1, 0),
                   (5, 3, 1, 1, 1, 0), (3, 3, 2, 1, 2, 1), (1, 1, 1, 0, 1, 0), (7, 5, 3, 2, 1, 2)]
TRANSPOSE_ERRORS = [((3, 3, 2, 0, 1, 2), "output_padding must be smaller than the stride or the dilation"),
                    ((3, 3, 1, 0, 1, 1), "output_padding must be smaller than the stride or the dilation"),
                    ((3, 0, 1, 0, 1, 0), "the kernel size must be at least 1"),
                    ((3, 3, 0, 0, 1, 0), "the stride must be at least 1"),
                    ((3, 3, 1, -1, 1, 0), "padding cannot be negative"),
                    ((3, 3, 1, 0, 1, -1), "output_padding cannot be negative"),
                    ((1, 1, 1, 1, 1, 0), "the output would be empty: (1-1)*1 - 2*1 + 1 = -1")]


@check(forbid=CONVOLUTIONS)
def check_conv_transpose_output_size(conv_transpose_output_size: Callable[..., int], hidden: bool = False) -> None:
    """Matches F.conv_transpose2d's output size; raises ValueError exactly where PyTorch has no output."""
    cases = list(TRANSPOSE_CASES)
    if hidden:
        rng = random.Random(_seed(True, 11))
        while len(cases) < len(TRANSPOSE_CASES) + 30:
            i, k, s, p, d = rng.randint(1, 20), rng.randint(1, 7), rng.randint(1, 4), rng.randint(0, 3), rng.randint(1, 3)
            op = rng.randint(0, max(s, d) - 1)
            if (i - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1:
                cases.append((i, k, s, p, d, op))
    for i, k, s, p, d, op in cases:
        expect_equal(conv_transpose_output_size, (i, k), {"s": s, "p": p, "d": d, "output_padding": op},
                     reference_transpose_size(i, k, s, p, d, op))
    for (i, k, s, p, d, op), why in TRANSPOSE_ERRORS:
        expect_raises(conv_transpose_output_size, (i, k), {"s": s, "p": p, "d": d, "output_padding": op},
                      ValueError, why)
    passed("conv_transpose_output_size" + (" (hidden cases)" if hidden else ""), len(cases) + len(TRANSPOSE_ERRORS))


# --- 2. conv2d ----------------------------------------------------------------------------------
# (N, C, H, W, F, KH, KW, stride, padding, dilation)
CONV_BASIC = [(1, 1, 3, 3, 1, 2, 2, 1, 0, 1), (2, 3, 7, 9, 4, 3, 3, 1, 0, 1), (1, 2, 5, 4, 3, 1, 1, 1, 0, 1),
              (3, 1, 6, 6, 2, 3, 2, 1, 0, 1)]
CONV_STRIDE_PADDING = [(2, 3, 7, 7, 4, 3, 3, 2, 1, 1), (1, 2, 8, 5, 3, 3, 3, 3, 0, 1), (2, 1, 7, 7, 2, 3, 3, 3, 0, 1),
                       (1, 3, 5, 6, 2, 2, 3, 1, 2, 1), (2, 2, 9, 8, 3, 4, 2, 2, 1, 1)]
CONV_DILATION = [(1, 1, 7, 7, 1, 3, 3, 1, 0, 2), (2, 3, 9, 8, 2, 3, 2, 1, 1, 2), (1, 2, 11, 10, 3, 3, 3, 2, 2, 3)]


def _hidden_conv_cases(salt: int, strided: bool, dilated: bool, count: int = 6) -> list[tuple]:
    rng = random.Random(_seed(True, salt))
    cases = []
    while len(cases) < count:
        n, c, h, w, f = rng.randint(1, 3), rng.randint(1, 4), rng.randint(3, 12), rng.randint(3, 12), rng.randint(1, 4)
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        s = rng.randint(1, 3) if strided else 1
        p = rng.randint(0, 2) if strided else 0
        d = rng.randint(1, 3) if dilated else 1
        if h + 2 * p >= d * (kh - 1) + 1 and w + 2 * p >= d * (kw - 1) + 1:
            cases.append((n, c, h, w, f, kh, kw, s, p, d))
    return cases


def _conv_cases(conv2d: Callable, cases: list[tuple], salt: int, hidden: bool, bias: bool, name: str) -> int:
    g = torch.Generator().manual_seed(_seed(hidden, salt))
    for n, c, h, w_, f, kh, kw, s, p, d in cases:
        x, w = _tensor(g, n, c, h, w_), _tensor(g, f, c, kh, kw)
        b = _tensor(g, f) if bias else None
        expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride=s, padding=p,
                            dilation=d)
        call = f"{name}({_describe(x=x, w=w, b=b if bias else None, stride=s, padding=p, dilation=d)})"
        got = _call(conv2d, call, x, w, b, stride=s, padding=p, dilation=d)
        expect_close(got, expected, call, atol=ATOL, rtol=RTOL)
    return len(cases)


def _conv_check(salt: int, visible: list[tuple], strided: bool, dilated: bool, bias: bool, label: str):
    @check(forbid=CONVOLUTIONS)
    def run(conv2d: Callable, hidden: bool = False) -> None:
        name = getattr(conv2d, "__name__", "conv2d")
        cases = _hidden_conv_cases(salt, strided, dilated) if hidden else visible
        count = _conv_cases(conv2d, cases, salt, hidden, bias, name)
        passed(f"{name}: {label}" + (" (hidden cases)" if hidden else ""), count)

    return run


check_conv2d_basic = _conv_check(21, CONV_BASIC, False, False, False, "batched, multi-channel, non-square")
check_conv2d_basic.__doc__ = "Stride 1, no padding: agrees with F.conv2d on batched, multi-channel, non-square inputs."
check_conv2d_stride_padding = _conv_check(22, CONV_STRIDE_PADDING, True, False, False, "stride and padding")
check_conv2d_stride_padding.__doc__ = "Strides (with remainders) and zero padding on every side."
check_conv2d_dilation = _conv_check(23, CONV_DILATION, True, True, False, "dilation")
check_conv2d_dilation.__doc__ = "Dilated kernels (taps d pixels apart), with stride and padding."
check_conv2d_bias = _conv_check(24, CONV_BASIC + CONV_STRIDE_PADDING[:2], True, False, True, "bias")
check_conv2d_bias.__doc__ = "A bias per filter, added at every output position."

FAST_SHAPE = (8, 16, 64, 64, 32, 3)  # N, C, H, W, F, K: a million output values
FAST_LIMIT = 5.0                     # seconds: loops over output positions take far longer


@functools.lru_cache(maxsize=4)
def _fast_case(seed: int) -> tuple[torch.Tensor, ...]:
    n, c, h, w_, f, k = FAST_SHAPE
    g = torch.Generator().manual_seed(seed)
    x, w, b = _tensor(g, n, c, h, w_), _tensor(g, f, c, k, k), _tensor(g, f)
    return x, w, b, F.conv2d(x.double(), w.double(), b.double(), padding=1)


@check(forbid=CONVOLUTIONS)
def check_conv2d_fast(conv2d: Callable, hidden: bool = False) -> None:
    """Vectorized: a layer with a million outputs in well under FAST_LIMIT seconds, and right."""
    x, w, b, expected = (t.clone() for t in _fast_case(_seed(hidden, 25)))  # a student may write into them
    call = f"{getattr(conv2d, '__name__', 'conv2d')}({_describe(x=x, w=w, b=b, stride=1, padding=1, dilation=1)})"
    start = time.perf_counter()
    got = _call(conv2d, call, x, w, b, stride=1, padding=1, dilation=1)
    seconds = time.perf_counter() - start
    expect_close(got, expected, call, atol=ATOL, rtol=RTOL)
    if seconds > FAST_LIMIT:
        raise CheckFailure(f"{call} took {seconds:.1f} s; a vectorized version needs well under {FAST_LIMIT:g} s "
                           f"(no Python loops over output positions)")
    print(f"✓ {getattr(conv2d, '__name__', 'conv2d')} is vectorized: {seconds * 1e3:.0f} ms for "
          f"{expected.numel():,} outputs" + (" (hidden inputs)" if hidden else ""))


# --- 3. the conv matrix and transposed convolution ------------------------------------------------
# (H, W, KH, KW, stride, padding)
MATRIX_CASES = [(3, 3, 2, 2, 1, 0), (4, 4, 3, 3, 1, 0), (5, 4, 3, 2, 2, 1), (6, 5, 3, 3, 2, 0), (4, 6, 1, 2, 1, 1)]


def reference_conv_matrix(w: torch.Tensor, size: tuple[int, int], stride: int, padding: int) -> torch.Tensor:
    """The matrix whose product with a flattened input is F.conv2d's flattened output (one-hot probing)."""
    h, w_ = size
    probes = torch.eye(h * w_, dtype=torch.float64).reshape(h * w_, 1, h, w_)
    out = F.conv2d(probes, w.double()[None, None], stride=stride, padding=padding)  # (H*W, 1, OH, OW)
    return out.reshape(h * w_, -1).T  # (OH*OW, H*W)


def _hidden_matrix_cases(count: int = 6) -> list[tuple]:
    rng = random.Random(_seed(True, 31))
    cases = []
    while len(cases) < count:
        h, w, kh, kw, s, p = rng.randint(2, 7), rng.randint(2, 7), rng.randint(1, 4), rng.randint(1, 4), \
            rng.randint(1, 3), rng.randint(0, 2)
        if h + 2 * p >= kh and w + 2 * p >= kw:
            cases.append((h, w, kh, kw, s, p))
    return cases


@check(forbid=CONVOLUTIONS)
def check_conv_matrix(conv_matrix: Callable, hidden: bool = False) -> None:
    """conv_matrix(w, (H, W), stride, padding) @ x.flatten() is the convolution, for every x."""
    g = torch.Generator().manual_seed(_seed(hidden, 32))
    cases = _hidden_matrix_cases() if hidden else MATRIX_CASES
    for h, w_, kh, kw, s, p in cases:
        w = _tensor(g, kh, kw)
        call = f"conv_matrix({_describe(w=w, input_size=(h, w_), stride=s, padding=p)})"
        got = _call(conv_matrix, call, w, (h, w_), stride=s, padding=p)
        expect_close(got, reference_conv_matrix(w, (h, w_), s, p), call, atol=ATOL, rtol=RTOL)
    passed("conv_matrix" + (" (hidden cases)" if hidden else ""), len(cases))


# (OH, OW, KH, KW, stride, padding, output_padding)
VIA_MATRIX_CASES = [(2, 2, 2, 2, 1, 0, 0), (2, 3, 3, 3, 2, 0, 1), (3, 3, 3, 2, 2, 1, 0), (3, 2, 2, 2, 3, 0, 2)]


@check(forbid=CONVOLUTIONS)
def check_conv_transpose2d_via_matrix(conv_transpose2d_via_matrix: Callable, hidden: bool = False) -> None:
    """The transposed matrix applied to y equals F.conv_transpose2d (single channel, no batch)."""
    g = torch.Generator().manual_seed(_seed(hidden, 33))
    cases = list(VIA_MATRIX_CASES)
    if hidden:
        rng = random.Random(_seed(True, 34))
        cases = [(rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 4), s, 0, rng.randint(0, s - 1))
                 for s in (rng.randint(1, 3) for _ in range(6))]
    for oh, ow, kh, kw, s, p, op in cases:
        y, w = _tensor(g, oh, ow), _tensor(g, kh, kw)
        expected = F.conv_transpose2d(y.double()[None, None], w.double()[None, None], stride=s, padding=p,
                                      output_padding=op)[0, 0]
        call = f"conv_transpose2d_via_matrix({_describe(y=y, w=w, stride=s, padding=p, output_padding=op)})"
        got = _call(conv_transpose2d_via_matrix, call, y, w, stride=s, padding=p, output_padding=op)
        expect_close(got, expected, call, atol=ATOL, rtol=RTOL)
    passed("conv_transpose2d_via_matrix" + (" (hidden cases)" if hidden else ""), len(cases))


# (N, C, H, W, F, KH, KW, stride, padding, output_padding, dilation); weights are (C, F, KH, KW) as in PyTorch
TRANSPOSE_BASIC = [(1, 1, 2, 2, 1, 2, 2, 1, 0, 0, 1), (2, 3, 3, 4, 2, 3, 3, 1, 0, 0, 1), (2, 2, 3, 3, 3, 3, 2, 2, 0, 0, 1),
                   (1, 3, 4, 2, 2, 2, 2, 3, 0, 0, 1)]
TRANSPOSE_OPTIONS = [(2, 2, 3, 3, 2, 3, 3, 2, 1, 1, 1), (1, 3, 4, 5, 2, 3, 3, 2, 1, 0, 2), (2, 1, 3, 3, 1, 4, 4, 2, 1, 0, 1),
                     (1, 2, 2, 3, 3, 3, 2, 3, 2, 2, 1)]


def _transpose_cases(conv_transpose2d: Callable, cases: list[tuple], salt: int, hidden: bool, bias: bool) -> int:
    g = torch.Generator().manual_seed(_seed(hidden, salt))
    for n, c, h, w_, f, kh, kw, s, p, op, d in cases:
        y, w = _tensor(g, n, c, h, w_), _tensor(g, c, f, kh, kw)
        b = _tensor(g, f) if bias else None
        expected = F.conv_transpose2d(y.double(), w.double(), None if b is None else b.double(), stride=s,
                                      padding=p, output_padding=op, dilation=d)
        call = f"conv_transpose2d({_describe(y=y, w=w, b=b, stride=s, padding=p, output_padding=op, dilation=d)})"
        got = _call(conv_transpose2d, call, y, w, b, stride=s, padding=p, output_padding=op, dilation=d)
        expect_close(got, expected, call, atol=ATOL, rtol=RTOL)
    return len(cases)


def _hidden_transpose_cases(salt: int, options: bool, count: int = 6) -> list[tuple]:
    rng = random.Random(_seed(True, salt))
    cases = []
    while len(cases) < count:
        n, c, h, w, f, kh, kw = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 5),
                                 rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4))
        s = rng.randint(1, 3)
        p, d = (rng.randint(0, 2), rng.randint(1, 2)) if options else (0, 1)
        op = rng.randint(0, max(s, d) - 1) if options else 0
        if (min(h, w) - 1) * s - 2 * p + d * (min(kh, kw) - 1) + op + 1 >= 1:
            cases.append((n, c, h, w, f, kh, kw, s, p, op, d))
    return cases


@check(forbid=CONVOLUTIONS)
def check_conv_transpose2d(conv_transpose2d: Callable, hidden: bool = False) -> None:
    """Batched, multi-channel transposed convolution with strides, no padding: F.conv_transpose2d."""
    cases = _hidden_transpose_cases(41, False) if hidden else TRANSPOSE_BASIC
    count = _transpose_cases(conv_transpose2d, cases, 41, hidden, bias=False)
    passed("conv_transpose2d" + (" (hidden cases)" if hidden else ""), count)


@check(forbid=CONVOLUTIONS)
def check_conv_transpose2d_options(conv_transpose2d: Callable, hidden: bool = False) -> None:
    """Padding, output_padding, dilation and bias."""
    cases = _hidden_transpose_cases(42, True) if hidden else TRANSPOSE_OPTIONS
    count = _transpose_cases(conv_transpose2d, cases, 42, hidden, bias=True)
    passed("conv_transpose2d with padding, output_padding, dilation, bias" + (" (hidden cases)" if hidden else ""),
           count)


# --- 4. max-pooling -----------------------------------------------------------------------------
# (N, C, H, W, kernel_size, stride or None, padding)
POOL_CASES = [(1, 1, 4, 4, 2, None, 0), (2, 3, 7, 5, 2, None, 0), (2, 2, 7, 7, 3, 2, 0), (1, 3, 6, 5, 3, 2, 1),
              (2, 1, 5, 8, 2, 1, 1)]


@check(forbid=POOLING)
def check_max_pool2d(max_pool2d: Callable, hidden: bool = False) -> None:
    """Agrees with F.max_pool2d: default stride = kernel size, overlapping windows, padding that never wins."""
    g = torch.Generator().manual_seed(_seed(hidden, 51))
    cases = list(POOL_CASES)
    if hidden:
        rng = random.Random(_seed(True, 52))
        cases = []
        while len(cases) < 6:
            k = rng.randint(1, 4)
            case = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(k, 10), rng.randint(k, 10), k,
                    rng.choice([None, 1, 2, 3]), rng.randint(0, k // 2))
            cases.append(case)
    for n, c, h, w, k, s, p in cases:
        x = _tensor(g, n, c, h, w) - 0.5  # mostly negative: padding with zeros would win
        expected = F.max_pool2d(x.double(), k, stride=s, padding=p)
        call = f"max_pool2d({_describe(x=x, kernel_size=k, stride=s, padding=p)})"
        got = _call(max_pool2d, call, x, k, stride=s, padding=p)
        expect_close(got, expected, call, atol=ATOL, rtol=RTOL)
    passed("max_pool2d" + (" (hidden cases)" if hidden else ""), len(cases))
