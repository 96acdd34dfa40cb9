"""Checks for a2_backprop_init: layers' backward passes, gradient checking, a two-layer network, initializers.

Every answer is NumPy (float64 arrays in and out). Every reference is PyTorch
in float64: autograd for the gradients, ``F.conv2d`` / ``F.max_pool2d`` /
``F.cross_entropy`` for the forwards, and for the initializers the statistics
of ``torch.nn.init``'s definitions. While a check calls the student's function
it counts the PyTorch operators the call dispatches (:func:`operations`): an
answer that dispatches any (autograd, ``torch.nn.functional``, reached by any
name) is told to write it with NumPy and loses that cell.

Each check has two sets of cases, each a list of ``(rule, setting)``:

* visible: fixed inputs, every rule the task states at least once (ReLU at
  exactly 0, logits of magnitude 1000, a row of equal logits, a stride that
  leaves input rows unread, padding cropped from ``dx``, overlapping pooling
  windows that share a maximum, a function with curvature for the numerical
  gradient, values below 1e-8 for the relative error, ...);
* hidden: a fixed twin of every visible rule (other sizes, values drawn from
  the instructor's secret), then random settings drawn from the secret. Every
  known bug class is caught by a fixed case, so no bug depends on the term's
  secret (tests/heavy/test_a2_catch_rate.py measures it).

The initializer checks are statistical: shapes, the family (bounds, kurtosis),
mean and variance on 500,000 draws, within bands many standard errors wide
(a correct answer fails with probability below 1e-12 per check), determinism
given the generator, and a 20-layer network built with the initializer whose
per-layer second moments the check measures and compares with the derivation.

A failure on a visible case shows the call; a failure on a hidden case names
the rule involved and what was wrong (shape or values), never the inputs.
"""

from __future__ import annotations

import functools
import math
import random
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import CheckFailure, check, drive, expect_close, hidden_seed, operations, passed
from . import case_label as _where, gradients, type_name as _kind

__all__ = ["check_linear", "check_relu", "check_sigmoid", "check_tanh", "check_softmax_cross_entropy",
           "check_conv2d_backward", "check_max_pool2d_backward", "check_numerical_gradient",
           "check_relative_error", "check_two_layer_loss", "check_two_layer_training", "check_lecun_normal",
           "check_glorot_uniform", "check_glorot_normal", "check_kaiming_normal", "check_kaiming_uniform",
           "Objective", "Quietly", "hidden_rules"]

ASSIGNMENT = "a2_backprop_init"
ATOL, RTOL = 1e-6, 1e-5           # float64 answers against float64 references
Case = tuple[str, tuple]          # (the rule a case exercises, its setting)


# --- helpers ------------------------------------------------------------------------------------
def _rng(hidden: bool, check_name: str, part: str) -> random.Random:
    """Random numbers for one part of a check: fixed for the visible cases, from the secret for hidden ones."""
    if hidden:
        return random.Random(hidden_seed(ASSIGNMENT, check_name, part))
    return random.Random(f"{check_name}/{part}")


def _np_rng(hidden: bool, check_name: str, part: str) -> np.random.Generator:
    """A NumPy generator for one part of a check: fixed (visible) or keyed by the secret (hidden)."""
    seed = hidden_seed(ASSIGNMENT, check_name, part) if hidden else zlib.crc32(f"{check_name}/{part}".encode())
    return np.random.default_rng(seed)


def _uniform(g: np.random.Generator, *shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return g.uniform(low, high, size=shape)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float64))


def _name(fn: Callable, default: str) -> str:
    return getattr(fn, "__name__", default)


def _describe(**settings: Any) -> str:
    return ", ".join(f"{k}={tuple(v.shape) if isinstance(v, np.ndarray) else v}" for k, v in settings.items())


def _numpy_call(fn: Callable, where: str, hidden: bool, *args: Any, **kwargs: Any) -> Any:
    """Call the student's function; it must run no PyTorch operator. A crash becomes a failure that says where
    (not the inputs, if hidden)."""
    try:
        value, ops = operations(fn, *args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} raised {_kind(err, hidden)}{detail}") from None
    if ops:
        plural = "s" if ops != 1 else ""
        raise CheckFailure(f"{where}: your code ran {ops:,} PyTorch operation{plural} (autograd or torch functions). "
                           f"Write it with NumPy: PyTorch is what this check compares your answer with.")
    return value


def _compare(got: Any, expected: torch.Tensor | np.ndarray, where: str, hidden: bool, *, atol: float = ATOL,
             rtol: float = RTOL) -> None:
    """expect_close on float64 values; a hidden case's message keeps what was wrong, drops shapes and values."""
    if isinstance(expected, np.ndarray):
        expected = torch.from_numpy(expected)
    if isinstance(got, (np.generic, int, float)) and not isinstance(got, (bool, np.bool_)):
        got = np.asarray(got)  # a NumPy or Python number: compared as a 0-d array
    if not isinstance(got, np.ndarray):
        raise CheckFailure(f"{where}: it should be a NumPy array" + ("" if hidden else
                           f" of shape {tuple(expected.shape)}") + f", got {_kind(got, hidden)}")
    if got.dtype.kind not in "fiu":
        raise CheckFailure(f"{where}: it should be a real-valued (float64) array, got dtype {got.dtype}")
    try:
        expect_close(got, expected, where, atol=atol, rtol=rtol)
    except CheckFailure as failure:
        if not hidden:
            raise
        text = str(failure)
        what = "it has the wrong shape" if "should have shape" in text else "some values are wrong"
        raise CheckFailure(f"{where}: {what}. The visible cases test the same rule on other inputs: make "
                           f"your code right for every size, not only theirs.") from None


def _parts(got: Any, count: int, where: str, what: str, hidden: bool) -> tuple:
    """``got`` must be a tuple (or list) of ``count`` items: ``what`` names them."""
    if not isinstance(got, (tuple, list)) or len(got) != count:
        shown = _kind(got, hidden) + ("" if not isinstance(got, (tuple, list)) else f" of {len(got)} items")
        raise CheckFailure(f"{where} should return {what}, got {shown}")
    return tuple(got)


def _scalar(got: Any, where: str, what: str, hidden: bool) -> float:
    """A float (a Python or NumPy number, or an array of one value) as a float."""
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.number, np.ndarray)) \
            or (isinstance(got, np.ndarray) and (got.size != 1 or got.dtype.kind not in "fiu")):
        shown = f"an array of shape {got.shape}" if isinstance(got, np.ndarray) and not hidden else \
            _kind(got, hidden)
        raise CheckFailure(f"{where}: {what} should be a float, got {shown}")
    return float(np.asarray(got).reshape(()))


def _compare_scalar(got: Any, expected: float, where: str, what: str, hidden: bool, *, atol: float = ATOL,
                    rtol: float = RTOL) -> None:
    value = _scalar(got, where, what, hidden)
    if not abs(value - expected) <= atol + rtol * abs(expected):  # NaN fails
        raise CheckFailure(f"{where}: {what} is wrong" + ("" if hidden else f": expected {expected:.10g}, "
                                                                            f"got {value:.10g}"))


def _autograd(forward: Callable[..., torch.Tensor], inputs: Sequence[np.ndarray],
              dout: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """PyTorch's value of ``forward(*inputs)`` and the gradients of <forward(...), dout> (or of the scalar)."""
    tensors = [_t(a).requires_grad_(True) for a in inputs]
    out = forward(*tensors)
    if dout is None:
        out.backward()
    else:
        out.backward(_t(dout))
    return out.detach().numpy(), [np.zeros(t.shape) if t.grad is None else t.grad.numpy() for t in tensors]


# --- 1. layers ----------------------------------------------------------------------------------
# (rule, (N, D_in, D_out))
LINEAR_CASES: list[Case] = [
    ("one example", (1, 3, 2)),
    ("a batch, D_in != D_out: dw is shaped like w, (D_out, D_in)", (4, 5, 3)),
    ("a batch: db sums dout over the examples", (6, 2, 4)),
    ("a square weight (D_in = D_out): a transposed dw shows in its values", (3, 4, 4)),
    ("one output (D_out = 1)", (5, 3, 1)),
]
HIDDEN_LINEAR_CASES: list[Case] = [
    ("a batch, D_in != D_out: dw is shaped like w, (D_out, D_in)", (5, 4, 6)),
    ("a square weight (D_in = D_out): a transposed dw shows in its values", (4, 5, 5)),
    ("a batch: db sums dout over the examples", (7, 3, 2)),
    ("one example", (1, 4, 3)),
]


def _random_linear_cases(rng: random.Random, count: int = 4) -> list[Case]:
    return [("a random setting", (rng.randint(2, 8), rng.randint(1, 8), rng.randint(1, 8))) for _ in range(count)]


@check()
def check_linear(linear_forward: Callable, linear_backward: Callable, hidden: bool = False) -> None:
    """out = x @ w.T + b; (dx, dw, db) agree with autograd: dw shaped like w (D_out, D_in), db summed over the batch."""
    g = _np_rng(hidden, "check_linear", "arrays")
    cases = HIDDEN_LINEAR_CASES + _random_linear_cases(_rng(True, "check_linear", "random")) \
        if hidden else LINEAR_CASES
    for rule, (n, d, m) in cases:
        x, w, b, dout = _uniform(g, n, d), _uniform(g, m, d), _uniform(g, m), _uniform(g, n, m)
        out, (dx, dw, db) = _autograd(lambda x_, w_, b_: x_ @ w_.T + b_, (x, w, b), dout)
        where = _where("linear_forward", f"linear_forward({_describe(x=x, w=w, b=b)})", rule, hidden)
        got_out, cache = _parts(_numpy_call(linear_forward, where, hidden, x, w, b), 2, where, "(out, cache)",
                                hidden)
        _compare(got_out, out, where + ", out", hidden)
        where = _where("linear_backward", f"linear_backward({_describe(dout=dout)}, cache)", rule, hidden)
        grads = _parts(_numpy_call(linear_backward, where, hidden, dout, cache), 3, where, "(dx, dw, db)", hidden)
        for got, expected, what in zip(grads, (dx, dw, db), ("dx", "dw", "db"), strict=True):
            _compare(got, expected, f"{where}, {what}", hidden)
    passed("linear_forward / linear_backward" + (" (hidden cases)" if hidden else ""), len(cases))


def _activation_input(g: np.random.Generator, shape: tuple[int, ...], values: str) -> np.ndarray:
    """values: "zeros" (a fifth exact zeros, the rest in [-2, 2]), "large" (values up to 1000 in magnitude),
    "mixed" (uniform in [-3, 3])."""
    x = _uniform(g, *shape, low=-3.0, high=3.0)
    if values == "zeros":
        x = np.where(g.random(shape) < 0.2, 0.0, x)
        x.flat[0] = 0.0
    elif values == "large":
        magnitudes = np.array([1000.0, 800.0, 200.0, 50.0, 20.0, 1.0])
        x = g.choice(magnitudes, size=shape) * g.choice([-1.0, 1.0], size=shape)
        x.flat[:2] = [1000.0, -1000.0]
    return x


# (rule, (shape, values))
RELU_CASES: list[Case] = [
    ("a batch of positive and negative values", ((4, 5), "mixed")),
    ("inputs exactly 0: ReLU's gradient there is 0, as PyTorch's", ((3, 6), "zeros")),
    ("any shape (here 4-d)", ((2, 3, 2, 2), "zeros")),
]
HIDDEN_RELU_CASES: list[Case] = [
    ("inputs exactly 0: ReLU's gradient there is 0, as PyTorch's", ((5, 4), "zeros")),
    ("a batch of positive and negative values", ((3, 7), "mixed")),
    ("any shape (here 4-d)", ((3, 2, 3, 2), "zeros")),
]
SQUASH_CASES: list[Case] = [
    ("a batch of positive and negative values", ((4, 5), "mixed")),
    ("inputs of magnitude up to 1000: finite values, no overflow", ((3, 6), "large")),
    ("any shape (here 4-d)", ((2, 3, 2, 2), "mixed")),
]
HIDDEN_SQUASH_CASES: list[Case] = [
    ("inputs of magnitude up to 1000: finite values, no overflow", ((5, 4), "large")),
    ("a batch of positive and negative values", ((3, 7), "mixed")),
    ("any shape (here 4-d)", ((3, 2, 3, 2), "mixed")),
]


class Quietly:
    """A scenario the grader runs where the student's code lives: call a forward pass on ``x`` with NumPy's
    floating-point warnings turned into errors (overflow, invalid values, division by zero; underflow to 0 is
    fine). Returns None, or NumPy's message if it would have warned (a warning in a graded cell goes to stderr).
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float64)

    def __wire__(self) -> dict[str, np.ndarray]:
        return {"x": self.x}

    def __call__(self, forward: Callable) -> str | None:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            try:
                forward(self.x.copy())
            except FloatingPointError as err:
                return str(err)
        return None


def _random_activation_cases(rng: random.Random, values: Sequence[str], count: int = 3) -> list[Case]:
    return [("a random setting", ((rng.randint(1, 6), rng.randint(1, 8)), rng.choice(values))) for _ in range(count)]


def _activation_check(check_name: str, label: str, reference: Callable[[torch.Tensor], torch.Tensor],
                      visible: list[Case], fixed_hidden: list[Case], values: Sequence[str],
                      doc: str) -> Callable[..., None]:
    @check()
    def run(forward: Callable, backward: Callable, hidden: bool = False) -> None:
        g = _np_rng(hidden, check_name, "arrays")
        cases = fixed_hidden + _random_activation_cases(_rng(True, check_name, "random"), values) \
            if hidden else visible
        for rule, (shape, kind) in cases:
            x = _activation_input(g, shape, kind)
            dout = _uniform(g, *shape)
            out, (dx,) = _autograd(reference, (x,), dout)
            where = _where(f"{label}_forward", f"{label}_forward({_describe(x=x)})", rule, hidden)
            got_out, cache = _parts(_numpy_call(forward, where, hidden, x), 2, where, "(out, cache)", hidden)
            _compare(got_out, out, where + ", out", hidden)
            where = _where(f"{label}_backward", f"{label}_backward({_describe(dout=dout)}, cache)", rule, hidden)
            _compare(_numpy_call(backward, where, hidden, dout, cache), dx, where + ", dx", hidden)
            if kind == "large":  # "no overflow": right values are not enough, NumPy must not warn either
                where = _where(f"{label}_forward", f"{label}_forward({_describe(x=x)})", rule, hidden)
                complaint = drive(forward, Quietly(x))
                if complaint is not None:
                    raise CheckFailure(f"{where}: NumPy warns '{complaint}' (the warning goes to stderr, which "
                                       f"fails a graded cell): no exponent may be large and positive")
        passed(f"{label}_forward / {label}_backward" + (" (hidden cases)" if hidden else ""), len(cases))

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = doc
    return run


check_relu = _activation_check(
    "check_relu", "relu", torch.relu, RELU_CASES, HIDDEN_RELU_CASES, ("zeros", "mixed"),
    "max(0, x) and its gradient: dout where x > 0, 0 where x <= 0 (exactly 0 included, as PyTorch).")
check_sigmoid = _activation_check(
    "check_sigmoid", "sigmoid", torch.sigmoid, SQUASH_CASES, HIDDEN_SQUASH_CASES, ("large", "mixed"),
    "sigmoid and its gradient s(1 - s) from the output; finite for inputs of magnitude 1000.")
check_tanh = _activation_check(
    "check_tanh", "tanh", torch.tanh, SQUASH_CASES, HIDDEN_SQUASH_CASES, ("large", "mixed"),
    "tanh and its gradient 1 - tanh(x)^2 (from the output, not the input); inputs of magnitude 1000.")


# (rule, (N, n_cls, values))
SOFTMAX_CASES: list[Case] = [
    ("a batch: the loss is the mean over the examples", (4, 5, "normal")),
    ("one example", (1, 3, "normal")),
    ("logits of magnitude 1000: log-sum-exp keeps them finite", (3, 4, "large")),
    ("a row of equal logits: probabilities 1/n_cls", (3, 6, "equal")),
    ("two classes", (5, 2, "normal")),
]
HIDDEN_SOFTMAX_CASES: list[Case] = [
    ("logits of magnitude 1000: log-sum-exp keeps them finite", (4, 3, "large")),
    ("a batch: the loss is the mean over the examples", (6, 4, "normal")),
    ("a row of equal logits: probabilities 1/n_cls", (2, 5, "equal")),
    ("two classes", (3, 2, "normal")),
]


def _logits(g: np.random.Generator, n: int, k: int, values: str) -> np.ndarray:
    if values == "large":
        z = _uniform(g, n, k, low=-1000.0, high=1000.0)
        z[0, 0] = 1000.0
        return z
    z = 3.0 * g.standard_normal((n, k))
    if values == "equal":
        z[0] = g.uniform(-5, 5)
    return z


def _random_softmax_cases(rng: random.Random, count: int = 4) -> list[Case]:
    return [("a random setting", (rng.randint(1, 8), rng.randint(2, 10), rng.choice(["normal", "large", "equal"])))
            for _ in range(count)]


@check()
def check_softmax_cross_entropy(softmax_cross_entropy: Callable, hidden: bool = False) -> None:
    """(loss, dlogits) agree with F.cross_entropy (mean over the batch) and its gradient, for logits up to 1000."""
    g = _np_rng(hidden, "check_softmax_cross_entropy", "arrays")
    cases = HIDDEN_SOFTMAX_CASES + _random_softmax_cases(_rng(True, "check_softmax_cross_entropy", "random")) \
        if hidden else SOFTMAX_CASES
    name = _name(softmax_cross_entropy, "softmax_cross_entropy")
    for rule, (n, k, values) in cases:
        z, y = _logits(g, n, k, values), g.integers(0, k, size=n)
        target = torch.from_numpy(y)
        loss, (dz,) = _autograd(lambda z_, t=target: F.cross_entropy(z_, t), (z,), None)
        where = _where(name, f"{name}({_describe(logits=z, y=y)})", rule, hidden)
        got_loss, got_dz = _parts(_numpy_call(softmax_cross_entropy, where, hidden, z, y), 2, where,
                                  "(loss, dlogits)", hidden)
        _compare_scalar(got_loss, float(loss), where, "the loss", hidden)
        _compare(got_dz, dz, where + ", dlogits", hidden)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


# (rule, (N, C, H, W, F, KH, KW, stride, padding))
CONV_CASES: list[Case] = [
    ("one image, one channel, one filter", (1, 1, 4, 4, 1, 2, 2, 1, 0)),
    ("batched, C > 1, F > 1, non-square input and kernel", (2, 3, 5, 6, 4, 3, 2, 1, 0)),
    ("stride 2: the windows fit exactly", (2, 2, 7, 7, 3, 3, 3, 2, 0)),
    ("a stride with a remainder: input rows and columns never read get 0 gradient", (1, 2, 8, 7, 2, 3, 3, 3, 0)),
    ("padding: dx is shaped like x (the padding's gradient is cropped)", (2, 2, 5, 4, 3, 3, 3, 1, 1)),
    ("stride and padding, non-square kernel", (2, 3, 6, 7, 2, 2, 3, 2, 1)),
    ("a 1x1 kernel", (2, 3, 3, 4, 2, 1, 1, 1, 0)),
]
HIDDEN_CONV_CASES: list[Case] = [
    ("batched, C > 1, F > 1, non-square input and kernel", (3, 2, 6, 5, 3, 2, 3, 1, 0)),
    ("a stride with a remainder: input rows and columns never read get 0 gradient", (2, 2, 10, 10, 2, 3, 2, 3, 0)),
    ("padding: dx is shaped like x (the padding's gradient is cropped)", (1, 3, 4, 6, 2, 3, 2, 1, 2)),
    ("stride and padding, non-square kernel", (2, 2, 7, 6, 3, 3, 2, 2, 1)),
    ("stride 2: the windows fit exactly", (1, 3, 9, 5, 2, 3, 3, 2, 0)),
]


def _random_conv_cases(rng: random.Random, count: int = 4) -> list[Case]:
    cases: list[Case] = []
    while len(cases) < count:
        n, c, h, w, f = rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 3)
        kh, kw, s, p = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3), rng.randint(0, 2)
        if h + 2 * p >= kh and w + 2 * p >= kw:
            cases.append(("a random setting", (n, c, h, w, f, kh, kw, s, p)))
    return cases


@check()
def check_conv2d_backward(conv2d_forward: Callable, conv2d_backward: Callable, hidden: bool = False) -> None:
    """(dx, dw, db) of the given conv2d_forward agree with autograd of F.conv2d: strides (with remainders),
    padding, non-square inputs and kernels, C > 1, F > 1, N > 1."""
    g = _np_rng(hidden, "check_conv2d_backward", "arrays")
    cases = HIDDEN_CONV_CASES + _random_conv_cases(_rng(True, "check_conv2d_backward", "random")) \
        if hidden else CONV_CASES
    for rule, (n, c, h, w_, f, kh, kw, s, p) in cases:
        x, w, b = _uniform(g, n, c, h, w_), _uniform(g, f, c, kh, kw), _uniform(g, f)
        out_shape = (n, f, (h + 2 * p - kh) // s + 1, (w_ + 2 * p - kw) // s + 1)
        dout = _uniform(g, *out_shape)
        out, (dx, dw, db) = _autograd(lambda x_, w__, b_, s=s, p=p: F.conv2d(x_, w__, b_, stride=s, padding=p),
                                      (x, w, b), dout)
        settings = _describe(x=x, w=w, b=b, stride=s, padding=p)
        where = _where("conv2d_forward", f"conv2d_forward({settings})", rule, hidden)
        got_out, cache = _parts(_numpy_call(conv2d_forward, where, hidden, x, w, b, stride=s, padding=p), 2,
                                where, "(out, cache)", hidden)
        _compare(got_out, out, where + ", out (the given forward: run its cell as released)", hidden)
        where = _where("conv2d_backward", f"conv2d_backward({_describe(dout=dout)}, cache of conv2d_forward("
                                          f"{settings}))", rule, hidden)
        grads = _parts(_numpy_call(conv2d_backward, where, hidden, dout, cache), 3, where, "(dx, dw, db)", hidden)
        for got, expected, what in zip(grads, (dx, dw, db), ("dx", "dw", "db"), strict=True):
            _compare(got, expected, f"{where}, {what}", hidden)
    passed("conv2d_backward" + (" (hidden cases)" if hidden else ""), len(cases))


# (rule, (N, C, H, W, kernel_size, stride))
POOL_CASES: list[Case] = [
    ("non-overlapping 2x2 windows", (1, 1, 4, 4, 2, 2)),
    ("batched, C > 1, non-square input", (2, 3, 6, 4, 2, 2)),
    ("overlapping windows (stride < kernel size) that share a maximum: the gradients add up",
     (2, 2, 7, 7, 3, 2)),
    ("stride 1: every maximum is shared by several windows", (1, 2, 5, 6, 3, 1)),
    ("a stride with a remainder: input rows and columns never read get 0 gradient", (2, 1, 7, 8, 3, 3)),
]
HIDDEN_POOL_CASES: list[Case] = [
    ("overlapping windows (stride < kernel size) that share a maximum: the gradients add up",
     (1, 3, 8, 7, 3, 2)),
    ("stride 1: every maximum is shared by several windows", (2, 1, 6, 5, 2, 1)),
    ("a stride with a remainder: input rows and columns never read get 0 gradient", (2, 2, 9, 7, 2, 2)),
    ("batched, C > 1, non-square input", (3, 2, 4, 6, 2, 2)),
]


def _pool_input(g: np.random.Generator, n: int, c: int, h: int, w: int, k: int, s: int) -> np.ndarray:
    """Distinct values (no ties); where windows overlap, each slice's largest value at (s, s), which the first
    two windows of each direction both read."""
    x = g.permutation(n * c * h * w).reshape(n, c, h, w) / (n * c * h * w) + _uniform(g, n, c, h, w, low=0, high=1e-4)
    if s < k and min(h, w) >= s + k:
        x[:, :, s, s] = 2.0 + np.arange(n * c).reshape(n, c)
    return x


def _random_pool_cases(rng: random.Random, count: int = 4) -> list[Case]:
    cases: list[Case] = []
    for _ in range(count):
        k = rng.randint(1, 4)
        cases.append(("a random setting", (rng.randint(1, 3), rng.randint(1, 3), rng.randint(k, 9),
                                           rng.randint(k, 9), k, rng.randint(1, k))))
    return cases


@check()
def check_max_pool2d_backward(max_pool2d_forward: Callable, max_pool2d_backward: Callable,
                              hidden: bool = False) -> None:
    """dx of the given max_pool2d_forward agrees with autograd of F.max_pool2d: each window's gradient goes to
    its maximum only, overlapping windows add up, rows and columns never read get 0."""
    g = _np_rng(hidden, "check_max_pool2d_backward", "arrays")
    cases = HIDDEN_POOL_CASES + _random_pool_cases(_rng(True, "check_max_pool2d_backward", "random")) \
        if hidden else POOL_CASES
    for rule, (n, c, h, w, k, s) in cases:
        x = _pool_input(g, n, c, h, w, k, s)
        dout = _uniform(g, n, c, (h - k) // s + 1, (w - k) // s + 1)
        out, (dx,) = _autograd(lambda x_, k=k, s=s: F.max_pool2d(x_, k, stride=s), (x,), dout)
        settings = _describe(x=x, kernel_size=k, stride=s)
        where = _where("max_pool2d_forward", f"max_pool2d_forward({settings})", rule, hidden)
        got_out, cache = _parts(_numpy_call(max_pool2d_forward, where, hidden, x, k, s), 2, where,
                                "(out, cache)", hidden)
        _compare(got_out, out, where + ", out (the given forward: run its cell as released)", hidden)
        where = _where("max_pool2d_backward", f"max_pool2d_backward({_describe(dout=dout)}, cache of "
                                              f"max_pool2d_forward({settings}))", rule, hidden)
        _compare(_numpy_call(max_pool2d_backward, where, hidden, dout, cache), dx, where + ", dx", hidden)
    passed("max_pool2d_backward" + (" (hidden cases)" if hidden else ""), len(cases))


# --- 2. gradient checking -------------------------------------------------------------------------
class Objective:
    """A test function f(x) = sum(c * x**3) + (a . x)**2 / 2 (a float), with its exact gradient.

    Curved (a forward difference is off by about h/2 * f'' >= 7e-6 per entry, a central one by 1e-9) and
    coupled through a . x (a step left in x changes every later entry of the gradient). Plain NumPy: the
    student's code evaluates it while PyTorch operations are counted. Its data are its parameters ``c`` and
    ``a`` (arrays shaped like x): the grader sends those (``course_utils.grading.wire.DATA_CLASSES``).
    """

    def __init__(self, c: np.ndarray, a: np.ndarray) -> None:
        self.c, self.a = np.asarray(c, dtype=np.float64), np.asarray(a, dtype=np.float64)
        self.__name__ = "f"

    def __wire__(self) -> dict[str, np.ndarray]:
        """Its data, from which the grader's wire rebuilds it in the student's process (``Objective(**data)``)."""
        return {"c": self.c, "a": self.a}

    def __call__(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float64)
        return float(np.sum(self.c * x ** 3) + 0.5 * np.sum(self.a * x) ** 2)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The exact gradient 3 c x^2 + a (a . x)."""
        return 3 * self.c * x ** 2 + self.a * np.sum(self.a * x)

    def central_difference(self, x: np.ndarray, h: float) -> np.ndarray:
        """What (f(x + h e_i) - f(x - h e_i)) / 2h equals exactly: the gradient plus c h^2 (the cubic's term)."""
        return self.gradient(x) + self.c * h ** 2

    def __repr__(self) -> str:
        return f"f (a cubic plus a coupling term, x of shape {self.c.shape})"


# (rule, (shape, h or None))
NUMERICAL_CASES: list[Case] = [
    ("a vector: central differences (f(x+h) - f(x-h)) / 2h", ((6,), None)),
    ("a matrix: one entry of x at a time, x unchanged afterwards", ((3, 4), None)),
    ("a 3-d array", ((2, 3, 2), None)),
    ("the step h is the argument's", ((5,), 1e-2)),
]
HIDDEN_NUMERICAL_CASES: list[Case] = [
    ("a matrix: one entry of x at a time, x unchanged afterwards", ((4, 3), None)),
    ("the step h is the argument's", ((2, 3), 1e-2)),
    ("a vector: central differences (f(x+h) - f(x-h)) / 2h", ((7,), None)),
    ("a 3-d array", ((3, 2, 2), None)),
]
# A forward difference is off by h/2 * f''(x) = 3 h c x >= 3 * 1e-5 * 0.5 * 0.5 = 7.5e-6 on every entry; a
# central one by about 1e-9 (h^2 c plus rounding): this tolerance tells them apart.
NUMERICAL_ATOL, NUMERICAL_RTOL = 3e-7, 1e-8


def _random_numerical_cases(rng: random.Random, count: int = 3) -> list[Case]:
    return [("a random setting", (tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3))), None))
            for _ in range(count)]


@check(refuse_code=("course_utils.checks.gradients",), why="this question asks for your own gradient checker")
def check_numerical_gradient(numerical_gradient: Callable, hidden: bool = False) -> None:
    """Central differences, an array shaped like x, the step h passed on, and x unchanged afterwards."""
    g = _np_rng(hidden, "check_numerical_gradient", "arrays")
    cases = HIDDEN_NUMERICAL_CASES + _random_numerical_cases(_rng(True, "check_numerical_gradient", "random")) \
        if hidden else NUMERICAL_CASES
    name = _name(numerical_gradient, "numerical_gradient")
    for rule, (shape, h) in cases:
        f = Objective(_uniform(g, *shape, low=0.5, high=1.5), _uniform(g, *shape))
        x = _uniform(g, *shape, low=0.5, high=1.5)  # f'' = 6 c x + a^2 >= 1.5: a forward difference is off
        before = x.copy()
        kwargs = {} if h is None else {"h": h}
        expected = f.central_difference(x, 1e-5 if h is None else h)
        where = _where(name, f"{name}({f!r}, {_describe(x=x, **kwargs)})", rule, hidden)
        got = _numpy_call(numerical_gradient, where, hidden, f, x, **kwargs)
        if not np.array_equal(x, before):
            raise CheckFailure(f"{where}: x was changed by the call; put each entry back after its two evaluations")
        _compare(got, expected, where, hidden, atol=NUMERICAL_ATOL, rtol=NUMERICAL_RTOL)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


# (rule, (shape, kind))
RELATIVE_CASES: list[Case] = [
    ("nearby arrays: max |a - b| / (|a| + |b|)", ((3, 4), "close")),
    ("the largest error over the elements (not the mean)", ((10,), "one off")),
    ("values near zero: the denominator is at least 1e-8", ((5,), "tiny")),
    ("two zero arrays: 0, not nan", ((2, 3), "zeros")),
    ("equal arrays: 0", ((4,), "equal")),
]
HIDDEN_RELATIVE_CASES: list[Case] = [
    ("values near zero: the denominator is at least 1e-8", ((3, 2), "tiny")),
    ("the largest error over the elements (not the mean)", ((2, 6), "one off")),
    ("two zero arrays: 0, not nan", ((5,), "zeros")),
    ("nearby arrays: max |a - b| / (|a| + |b|)", ((4, 3), "close")),
]


def _relative_inputs(g: np.random.Generator, shape: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    a = _uniform(g, *shape, low=-2, high=2)
    if kind == "zeros":
        return np.zeros(shape), np.zeros(shape)
    if kind == "equal":
        return a, a.copy()
    if kind == "tiny":
        a = _uniform(g, *shape, low=1e-11, high=3e-9) * g.choice([-1.0, 1.0], size=shape)
        return a, np.where(g.random(shape) < 0.5, 0.0, a * g.uniform(0.2, 0.8, size=shape))
    b = a * (1 + _uniform(g, *shape, low=-1e-6, high=1e-6))
    if kind == "one off":
        b.flat[int(g.integers(0, b.size))] *= 1.5
    return a, b


def reference_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max over elements of |a - b| / max(1e-8, |a| + |b|): the course's shared definition."""
    return gradients.relative_error(a, b)


def _random_relative_cases(rng: random.Random, count: int = 4) -> list[Case]:
    return [("a random setting", ((rng.randint(1, 6), rng.randint(1, 6)), rng.choice(["close", "one off", "tiny"])))
            for _ in range(count)]


@check(refuse_code=("course_utils.checks.gradients",), why="this question asks for your own gradient checker")
def check_relative_error(relative_error: Callable, hidden: bool = False) -> None:
    """max |a - b| / max(1e-8, |a| + |b|) over the elements, as a float: 0 for equal or zero arrays."""
    g = _np_rng(hidden, "check_relative_error", "arrays")
    cases = HIDDEN_RELATIVE_CASES + _random_relative_cases(_rng(True, "check_relative_error", "random")) \
        if hidden else RELATIVE_CASES
    name = _name(relative_error, "relative_error")
    for rule, (shape, kind) in cases:
        a, b = _relative_inputs(g, shape, kind)
        where = _where(name, f"{name}({_describe(a=a, b=b)})", rule, hidden)
        got = _numpy_call(relative_error, where, hidden, a, b)
        _compare_scalar(got, reference_relative_error(a, b), where, "the relative error", hidden, atol=1e-12,
                        rtol=1e-9)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


# --- 3. a two-layer network -----------------------------------------------------------------------
# (rule, (N, D, D_h, n_cls))
TWO_LAYER_CASES: list[Case] = [
    ("a batch, D != D_h != n_cls", (5, 4, 6, 3)),
    ("one example", (1, 3, 5, 4)),
    ("digit-sized: D = 64, n_cls = 10", (8, 64, 16, 10)),
]
HIDDEN_TWO_LAYER_CASES: list[Case] = [
    ("a batch, D != D_h != n_cls", (6, 5, 4, 3)),
    ("digit-sized: D = 64, n_cls = 10", (10, 64, 12, 10)),
    ("one example", (1, 4, 3, 5)),
]
PARAMETERS = ("w1", "b1", "w2", "b2")


def _two_layer_reference(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    names = list(params)
    target = torch.from_numpy(y)

    def loss(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.relu(_t(x) @ w1.T + b1) @ w2.T + b2, target)

    value, grads = _autograd(loss, [params[k] for k in PARAMETERS], None)
    return float(value), dict(zip(names, grads, strict=True))


def _two_layer_params(g: np.random.Generator, d: int, h: int, k: int) -> dict[str, np.ndarray]:
    return {"w1": g.standard_normal((h, d)) * math.sqrt(2 / d), "b1": _uniform(g, h, low=-0.5, high=0.5),
            "w2": g.standard_normal((k, h)) * math.sqrt(1 / h), "b2": _uniform(g, k, low=-0.5, high=0.5)}


def _random_two_layer_cases(rng: random.Random, count: int = 3) -> list[Case]:
    return [("a random setting", (rng.randint(1, 8), rng.randint(1, 8), rng.randint(1, 8), rng.randint(2, 6)))
            for _ in range(count)]


@check()
def check_two_layer_loss(two_layer_loss: Callable, hidden: bool = False) -> None:
    """linear -> ReLU -> linear -> softmax cross-entropy: the loss and every parameter's gradient agree with
    autograd (grads has the keys of params, each shaped like its parameter)."""
    g = _np_rng(hidden, "check_two_layer_loss", "arrays")
    cases = HIDDEN_TWO_LAYER_CASES + _random_two_layer_cases(_rng(True, "check_two_layer_loss", "random")) \
        if hidden else TWO_LAYER_CASES
    name = _name(two_layer_loss, "two_layer_loss")
    for rule, (n, d, h, k) in cases:
        params, x, y = _two_layer_params(g, d, h, k), _uniform(g, n, d), g.integers(0, k, size=n)
        loss, grads = _two_layer_reference(params, x, y)
        where = _where(name, f"{name}(params with {_describe(**params)}; {_describe(x=x, y=y)})", rule, hidden)
        got_loss, got_grads = _parts(_numpy_call(two_layer_loss, where, hidden, params, x, y), 2, where,
                                     "(loss, grads)", hidden)
        _compare_scalar(got_loss, loss, where, "the loss", hidden)
        if not isinstance(got_grads, dict) or set(got_grads) != set(PARAMETERS):
            shown = sorted(map(str, got_grads)) if isinstance(got_grads, dict) else _kind(got_grads, hidden)
            raise CheckFailure(f"{where}: grads should be a dict with keys {list(PARAMETERS)}, got {shown}")
        for key in PARAMETERS:
            _compare(got_grads[key], grads[key], f"{where}, grads[{key!r}]", hidden)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits in [0, 1], flattened (N, 64): a fixed split, 1,297 to train and 500 to test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data.astype(np.float64) / 16.0, bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:-500], order[-500:]
    return x[train], y[train], x[test], y[test]


# The recipe the check trains with (plain SGD, as the notebook's train_two_layer): seconds in the grader. With
# correct gradients it reaches 97.9% test accuracy on average over 300 initial weights and batch orders (standard
# deviation 0.5 points, lowest 96.2%): 90% is 16 standard deviations below. Wrong gradients that still train
# (a missing ReLU backward, say) are the loss check's to catch.
TRAINING = {"hidden": 64, "lr": 0.5, "steps": 600, "batch": 64}
TRAINING_ACCURACY = 0.9


def _accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    scores = np.maximum(0, x @ params["w1"].T + params["b1"]) @ params["w2"].T + params["b2"]
    return float(np.mean(np.argmax(scores, axis=1) == y))


@check()
def check_two_layer_training(two_layer_loss: Callable, train_two_layer: Callable | None = None,
                             hidden: bool = False) -> None:
    """Plain SGD with the student's two_layer_loss reaches at least 90% test accuracy on the digits.

    The check runs the notebook's recipe (``train_two_layer``: minibatch SGD, a fixed learning rate) itself, so
    that only the gradients are the student's; ``train_two_layer`` is accepted for the test cell's symmetry.
    Hidden: the initial weights and the minibatch order come from the secret.
    """
    name = _name(two_layer_loss, "two_layer_loss")
    x_train, y_train, x_test, y_test = _digits()
    g = _np_rng(hidden, "check_two_layer_training", "init")
    h, lr, steps, batch = int(TRAINING["hidden"]), TRAINING["lr"], int(TRAINING["steps"]), int(TRAINING["batch"])
    params = _two_layer_params(g, x_train.shape[1], h, 10)
    params["b1"][:], params["b2"][:] = 0.0, 0.0
    recipe = f"{steps} SGD steps, lr {lr}, batch {batch}, {h} hidden units"
    where = f"{name}, trained on the digits ({recipe}" + (", hidden initial weights and batches)" if hidden else ")")
    for step in range(steps):
        idx = g.choice(len(y_train), size=batch, replace=False)
        loss, grads = _parts(_numpy_call(two_layer_loss, where, hidden, params, x_train[idx], y_train[idx]), 2,
                             where, "(loss, grads)", hidden)
        if step == 0:
            loss = _scalar(loss, where, "the loss", hidden)
            if not isinstance(grads, dict) or set(grads) != set(PARAMETERS):
                raise CheckFailure(f"{where}: grads should be a dict with keys {list(PARAMETERS)}")
        for key in PARAMETERS:
            grad = grads[key] if isinstance(grads, dict) else None
            if not isinstance(grad, np.ndarray) or grad.shape != params[key].shape:
                raise CheckFailure(f"{where}: at step {step}, grads[{key!r}] should be an array shaped like "
                                   f"params[{key!r}] {params[key].shape}, got "
                                   + (f"shape {grad.shape}" if isinstance(grad, np.ndarray) else _kind(grad, hidden)))
            params[key] = params[key] - lr * grad
    accuracy = _accuracy(params, x_test, y_test)
    if not accuracy >= TRAINING_ACCURACY:
        raise CheckFailure(f"{where}: the test accuracy is {accuracy:.1%}, expected at least "
                           f"{TRAINING_ACCURACY:.0%}. Check the gradients with numerical_gradient first.")
    print(f"✓ {name}: {accuracy:.1%} test accuracy on the digits after {recipe}"
          + (" (hidden initial weights)" if hidden else ""))


# --- 4. initializers ------------------------------------------------------------------------------
# Statistics of a correct answer on FAN_IN x FAN_OUT = 500,000 draws: the standard error of the variance is
# sqrt(2 / n) = 0.2% of it (normal; 0.13% uniform), of the kurtosis sqrt(24 / n) = 0.007 (normal), of the mean
# 0.14% of the standard deviation. The bands below are 10 or more standard errors wide (a correct answer fails
# one with probability < 1e-20); the wrong answers they catch are off by 33% or more.
LARGE = {"fan_in": 1000, "fan_out": 500}
HIDDEN_LARGE = {"fan_in": 400, "fan_out": 1250}
VARIANCE_BAND = 0.03              # relative
MEAN_BAND = 0.015                 # in standard deviations
KURTOSIS = {"normal": (3.0, 0.15), "uniform": (1.8, 0.1)}  # (value, band)
DEPTH, WIDTH, BATCH = 20, 256, 512
# The derivation says each layer multiplies the second moment of the pre-activations by 1. One network's
# measured factor, (q_20 / q_1) ** (1/19), fluctuates with its weights: for Kaiming + ReLU its log has a standard
# deviation of 0.028 (0.005 for a linear network), measured over 300 networks, so this band is 8 standard
# deviations wide; a variance off by a factor of 2 gives a factor of 2 or 1/2 per layer.
GAIN_BAND = (0.8, 1.25)

INITIALIZERS = {
    "lecun_normal": ("normal", lambda fan_in, fan_out: 1 / fan_in, "linear", "Var(w) = 1/fan_in keeps a "
                     "linear network's second moment"),
    "glorot_uniform": ("uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out), "linear",
                       "Var(w) = 2/(fan_in + fan_out) = 1/fan_in for square layers keeps a linear network's "
                       "second moment"),
    "glorot_normal": ("normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out), "linear",
                      "Var(w) = 2/(fan_in + fan_out) = 1/fan_in for square layers keeps a linear network's "
                      "second moment"),
    "kaiming_normal": ("normal", lambda fan_in, fan_out: 2 / fan_in, "relu", "Var(w) = 2/fan_in keeps a ReLU "
                       "network's second moment"),
    "kaiming_uniform": ("uniform", lambda fan_in, fan_out: 2 / fan_in, "relu", "Var(w) = 2/fan_in keeps a ReLU "
                        "network's second moment"),
}


def _init_call(init: Callable, name: str, fan_in: int, fan_out: int, seed: int, rule: str, hidden: bool) -> Any:
    where = _where(name, f"{name}(fan_in={fan_in}, fan_out={fan_out}, rng=np.random.default_rng(...))", rule, hidden)
    got = _numpy_call(init, where, hidden, fan_in, fan_out, np.random.default_rng(seed))
    if not isinstance(got, np.ndarray) or got.dtype.kind != "f":
        raise CheckFailure(f"{where} should return a float NumPy array, got "
                           + (f"dtype {got.dtype}" if isinstance(got, np.ndarray) else _kind(got, hidden)))
    if got.shape != (fan_out, fan_in):
        raise CheckFailure(f"{where} should return shape (fan_out, fan_in) = {(fan_out, fan_in)}, as PyTorch lays "
                           f"out weights (out_features, in_features), got {got.shape}")
    if not np.all(np.isfinite(got)):
        raise CheckFailure(f"{where}: some values are not finite")
    return got.astype(np.float64)


def _statistics(w: np.ndarray, family: str, variance: float, where: str) -> None:
    """Family (bounds and kurtosis), mean and variance of a large sample, within the bands above."""
    values = w.ravel()
    mean, var = float(values.mean()), float(values.var())
    std = math.sqrt(variance)
    if abs(mean) > MEAN_BAND * std:
        raise CheckFailure(f"{where}: the mean is {mean:.3g}, expected 0 (within {MEAN_BAND * std:.2g})")
    if not abs(var / variance - 1) <= VARIANCE_BAND:
        raise CheckFailure(f"{where}: the variance is {var:.4g}, expected {variance:.4g} (within "
                           f"{VARIANCE_BAND:.0%}); a standard deviation and a variance confused, fan_out for fan_in, "
                           f"or another family's constant?")
    kurtosis = float(np.mean((values - mean) ** 4) / var ** 2)
    expected, band = KURTOSIS[family]
    bound = math.sqrt(3 * variance)  # uniform(-a, a) has variance a^2 / 3
    if family == "uniform":
        largest = float(np.abs(values).max())
        if largest > bound * (1 + 1e-12) or largest < 0.99 * bound:
            raise CheckFailure(f"{where}: uniform(-a, a) with a = {bound:.4g} has values up to a and none beyond; "
                               f"the largest |w| is {largest:.4g}")
    if not abs(kurtosis - expected) <= band:
        other = "uniform" if family == "normal" else "normal"
        raise CheckFailure(f"{where}: the values are not {family}ly distributed: their kurtosis (fourth moment over "
                           f"variance squared) is {kurtosis:.3f}, a {family} distribution has {expected} "
                           f"({other}: {KURTOSIS[other][0]})")


def _second_moments(init: Callable, name: str, activation: str, seed: int, hidden: bool) -> list[float]:
    """The mean square of every layer's pre-activations in a DEPTH-layer network of WIDTH units built with
    ``init`` (the input: BATCH standard normal vectors)."""
    g = np.random.default_rng(seed)
    h = g.standard_normal((BATCH, WIDTH))
    moments = []
    for layer in range(DEPTH):
        w = _init_call(init, name, WIDTH, WIDTH, seed + 1 + layer, f"a {DEPTH}-layer network, width {WIDTH}", hidden)
        a = h @ w.T
        moments.append(float(np.mean(a ** 2)))
        h = np.maximum(a, 0) if activation == "relu" else a
    return moments


def _initializer_check(check_name: str, label: str) -> Callable[..., None]:
    family, variance_of, activation, derivation = INITIALIZERS[label]

    @check()
    def run(init: Callable, hidden: bool = False) -> None:
        name = _name(init, label)
        base = hidden_seed(ASSIGNMENT, check_name, "seeds") % 2**32 if hidden else zlib.crc32(check_name.encode())
        # shapes: small and non-square
        rule = "shape (fan_out, fan_in), non-square"
        for fan_in, fan_out in ((3, 5), (7, 2)) if not hidden else ((5, 3), (2, 9)):
            _init_call(init, name, fan_in, fan_out, base, rule, hidden)
        # determinism: the generator's draws, nothing else
        rule = "the same generator state gives the same weights; another, other weights"
        first, again = (_init_call(init, name, 6, 4, base + 7, rule, hidden) for _ in range(2))
        other = _init_call(init, name, 6, 4, base + 8, rule, hidden)
        where = _where(name, f"{name}(6, 4, rng) twice with generators of equal seeds, once with another", rule,
                       hidden)
        if not np.array_equal(first, again):
            raise CheckFailure(f"{where}: equal generators gave different weights; draw from rng, not from np.random")
        if np.array_equal(first, other) or np.unique(first).size < first.size:
            raise CheckFailure(f"{where}: the weights should be random draws from rng (distinct values, different for "
                               f"another generator)")
        # family, mean and variance on a large sample (fan_in != fan_out tells them apart)
        fan_in, fan_out = (HIDDEN_LARGE if hidden else LARGE).values()
        rule = f"{family}, variance {derivation.split(' keeps')[0].removeprefix('Var(w) = ')}"
        w = _init_call(init, name, fan_in, fan_out, base + 11, rule, hidden)
        where = _where(name, f"{name}(fan_in={fan_in}, fan_out={fan_out}, rng)", rule, hidden)
        _statistics(w, family, variance_of(fan_in, fan_out), where)
        # the derivation, measured: the second moment through a deep network
        moments = _second_moments(init, name, activation, base + 100, hidden)
        gain = (moments[-1] / moments[0]) ** (1 / (DEPTH - 1)) if moments[0] > 0 else math.nan
        low, high = GAIN_BAND
        network = f"{DEPTH} {activation} layers of width {WIDTH}"
        if not low <= gain <= high:
            where = _where(name, f"{name} in {network}", f"{derivation} through {network}", hidden)
            raise CheckFailure(f"{where}: each layer multiplies the second moment of the pre-activations by "
                               f"{gain:.3g} on average (from {moments[0]:.3g} after layer 1 to {moments[-1]:.3g} after "
                               f"layer {DEPTH}), expected a factor within [{low}, {high}]: {derivation}")
        shown = ", ".join(f"{moments[i]:.3g}" for i in (0, 4, 9, 19))
        print(f"✓ {name}: shape, {family} family, variance and determinism; through {network}: second moment "
              f"{shown} after layers 1, 5, 10, 20 (a factor {gain:.3f} per layer)"
              + (" (hidden draws)" if hidden else ""))

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = (f"{label}(fan_in, fan_out, rng): shape (fan_out, fan_in), {family}, {derivation.split(' keeps')[0]}"
                   f", deterministic given rng; measured through a {DEPTH}-layer {activation} network.")
    return run


check_lecun_normal = _initializer_check("check_lecun_normal", "lecun_normal")
check_glorot_uniform = _initializer_check("check_glorot_uniform", "glorot_uniform")
check_glorot_normal = _initializer_check("check_glorot_normal", "glorot_normal")
check_kaiming_normal = _initializer_check("check_kaiming_normal", "kaiming_normal")
check_kaiming_uniform = _initializer_check("check_kaiming_uniform", "kaiming_uniform")


def hidden_rules() -> dict[str, Sequence[str]]:
    """The rules each check's fixed hidden cases exercise (for the instructor's guide and the tests)."""
    return {"check_linear": [r for r, _ in HIDDEN_LINEAR_CASES],
            "check_relu": [r for r, _ in HIDDEN_RELU_CASES],
            "check_sigmoid": [r for r, _ in HIDDEN_SQUASH_CASES],
            "check_tanh": [r for r, _ in HIDDEN_SQUASH_CASES],
            "check_softmax_cross_entropy": [r for r, _ in HIDDEN_SOFTMAX_CASES],
            "check_conv2d_backward": [r for r, _ in HIDDEN_CONV_CASES],
            "check_max_pool2d_backward": [r for r, _ in HIDDEN_POOL_CASES],
            "check_numerical_gradient": [r for r, _ in HIDDEN_NUMERICAL_CASES],
            "check_relative_error": [r for r, _ in HIDDEN_RELATIVE_CASES],
            "check_two_layer_loss": [r for r, _ in HIDDEN_TWO_LAYER_CASES]}
