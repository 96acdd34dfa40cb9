"""a2 student variants, shared by tests/test_a2_checks.py (fast tier) and tests/heavy/test_a2_catch_rate.py.

The solution is the notebook's (solutions/a2_backprop_init/a2_backprop_init.ipynb) when it exists, else the
reference answers below: a correct NumPy implementation of every function of the contract, run in a namespace of
their own (like a notebook's cells: each looks the others up by name, so a student's redefinition of a layer
reaches two_layer_loss too). WRONG maps a variant's name to the replacements and exactly the graded cells it
must fail; CORRECT lists differently written right answers (every point); BACK_DOORS lists answers that run
PyTorch (each loses exactly its cells' points, told to write it with NumPy). A variant of a backward pass comes
with the reference forward whose cache it reads (a student's forward and backward agree on their cache; the
notebook's own cache may differ), so that it fails for its bug and not for a cache it cannot unpack.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch.nn.functional import cross_entropy as cross_entropy_by_name  # captured before any check runs

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells

ASSIGNMENT = "a2_backprop_init"
# the contract's test cells: grade_id -> (check, functions, points)
CONTRACT_CELLS = {
    "test_linear": ("check_linear", ("linear_forward", "linear_backward"), 6),
    "test_relu": ("check_relu", ("relu_forward", "relu_backward"), 3),
    "test_sigmoid": ("check_sigmoid", ("sigmoid_forward", "sigmoid_backward"), 4),
    "test_tanh": ("check_tanh", ("tanh_forward", "tanh_backward"), 3),
    "test_softmax_cross_entropy": ("check_softmax_cross_entropy", ("softmax_cross_entropy",), 8),
    "test_conv2d_backward": ("check_conv2d_backward", ("conv2d_forward", "conv2d_backward"), 12),
    "test_max_pool2d_backward": ("check_max_pool2d_backward", ("max_pool2d_forward", "max_pool2d_backward"), 8),
    "test_numerical_gradient": ("check_numerical_gradient", ("numerical_gradient",), 5),
    "test_relative_error": ("check_relative_error", ("relative_error",), 3),
    "test_two_layer_loss": ("check_two_layer_loss", ("two_layer_loss",), 8),
    "test_two_layer_training": ("check_two_layer_training", ("two_layer_loss", "train_two_layer"), 5),
    "test_lecun_normal": ("check_lecun_normal", ("lecun_normal",), 3),
    "test_glorot_uniform": ("check_glorot_uniform", ("glorot_uniform",), 3),
    "test_glorot_normal": ("check_glorot_normal", ("glorot_normal",), 3),
    "test_kaiming_normal": ("check_kaiming_normal", ("kaiming_normal",), 3),
    "test_kaiming_uniform": ("check_kaiming_uniform", ("kaiming_uniform",), 3),
}


NOTEBOOK = vh.solution_notebook_or_none(ASSIGNMENT)
CELLS = graded_cells(NOTEBOOK) if NOTEBOOK is not None else vh.contract_cells(CONTRACT_CELLS)
ALL_CELLS = {cell.grade_id for cell in CELLS}
# which notebook functions call which (a replaced function changes the cells of its callers too)
CALLERS = {name: {"two_layer_loss"} for name in ("linear_forward", "linear_backward", "relu_forward",
                                                 "relu_backward", "softmax_cross_entropy")}
LINEAR = {"test_linear", "test_two_layer_loss", "test_two_layer_training"}


# --- the reference answers (NumPy, float64) ---------------------------------------------------------
def linear_forward(x, w, b):
    return x @ w.T + b, (x, w, b)


def linear_backward(dout, cache):
    x, w, b = cache
    return dout @ w, dout.T @ x, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def sigmoid_forward(x):
    e = np.exp(-np.abs(x))  # never overflows
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    return dout * cache * (1 - cache)


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache ** 2)


def softmax_cross_entropy(logits, y):
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), y] -= 1
    return float(loss), dlogits / n


def conv2d_forward(x, w, b, stride=1, padding=0):
    """The notebook's locked forward: naive cross-correlation, as F.conv2d."""
    n, c, h, w_ = x.shape
    f, _, kh, kw = w.shape
    s, p = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - kh) // s + 1, (w_ + 2 * p - kw) // s + 1
    out = np.zeros((n, f, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * s:i * s + kh, j * s:j * s + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, stride, padding)


def conv2d_backward(dout, cache):
    x, w, b, s, p = cache
    h, w_ = x.shape[2:]
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            patch = xp[:, :, i * s:i * s + kh, j * s:j * s + kw]                    # (N, C, KH, KW)
            dw += np.tensordot(dout[:, :, i, j], patch, axes=([0], [0]))            # (F, C, KH, KW)
            dxp[:, :, i * s:i * s + kh, j * s:j * s + kw] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, p:p + h, p:p + w_], dw, dout.sum(axis=(0, 2, 3))


def max_pool2d_forward(x, kernel_size, stride):
    """The notebook's locked forward: no padding, as F.max_pool2d."""
    k, s = kernel_size, stride
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out, (x, kernel_size, stride)


def max_pool2d_backward(dout, cache):
    x, k, s = cache
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += mask * dout[:, :, i, j][:, :, None, None]
    return dx


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = f(x)
        x[index] = old - h
        minus = f(x)
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def two_layer_loss(params, x, y):
    hidden, cache1 = linear_forward(x, params["w1"], params["b1"])
    active, cache2 = relu_forward(hidden)
    scores, cache3 = linear_forward(active, params["w2"], params["b2"])
    loss, dscores = softmax_cross_entropy(scores, y)
    dactive, dw2, db2 = linear_backward(dscores, cache3)
    dhidden = relu_backward(dactive, cache2)
    _, dw1, db1 = linear_backward(dhidden, cache1)
    return loss, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def train_two_layer(loss_fn, params, x, y, lr, steps, batch, rng):
    """The notebook's locked training loop: plain minibatch SGD."""
    params = {k: v.copy() for k, v in params.items()}
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(y), size=batch, replace=False)
        loss, grads = loss_fn(params, x[idx], y[idx])
        for k in params:
            params[k] -= lr * grads[k]
        losses.append(loss)
    return params, losses


def lecun_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(1 / fan_in), size=(fan_out, fan_in))


def glorot_uniform(fan_in, fan_out, rng):
    a = math.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def glorot_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(2 / (fan_in + fan_out)), size=(fan_out, fan_in))


def kaiming_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(2 / fan_in), size=(fan_out, fan_in))


def kaiming_uniform(fan_in, fan_out, rng):
    a = math.sqrt(6 / fan_in)
    return rng.uniform(-a, a, size=(fan_out, fan_in))


REFERENCE = {name: globals()[name] for name in (
    "linear_forward", "linear_backward", "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "softmax_cross_entropy", "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "numerical_gradient", "relative_error", "two_layer_loss",
    "train_two_layer", "lecun_normal", "glorot_uniform", "glorot_normal", "kaiming_normal", "kaiming_uniform")}


def solution_namespace() -> dict:
    """The solution's functions in a fresh namespace: the notebook's cells, or the reference answers above."""
    namespace: dict[str, Any] = {**globals(), "__name__": f"solution_{ASSIGNMENT}"}  # (the variants' helpers)
    if NOTEBOOK is not None:
        vh.exec_solution(ASSIGNMENT, NOTEBOOK, namespace, quiet_stdout=True)  # (the data cell prints its sizes)
    else:
        namespace.update({name: vh.rebound(fn, namespace) for name, fn in REFERENCE.items()})
    return namespace


def cells_using(names: Iterable[str]) -> list:
    """The graded cells whose checks call one of ``names`` or a function that calls one."""
    return vh.cells_using(CELLS, CALLERS, names)


def run_cells(replacements: dict[str, Callable], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None) -> dict[str, CellResult]:
    """The graded cells that use the replaced functions, run on the solution with the replacements
    (each rebound to the solution's namespace, as a student's redefinition in the notebook would be)."""
    namespace = solution_namespace()
    namespace.update({name: vh.rebound(fn, namespace) if isinstance(fn, types.FunctionType) else fn
                      for name, fn in replacements.items()})
    return vh.run_cells_in(ASSIGNMENT, namespace, cells if cells is not None else cells_using(replacements), hidden,
                           only_hidden)


def failing_cells(**replacements: Callable) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's functions are replaced."""
    return vh.failed(run_cells(replacements))


# --- correct, written differently ----------------------------------------------------------------------
def linear_backward_einsum(dout, cache):
    x, w, _ = cache
    return np.einsum("nm,md->nd", dout, w), np.einsum("nm,nd->md", dout, x), np.einsum("nm->m", dout)


def relu_forward_cache_out(x):
    out = np.where(x > 0, x, 0.0)
    return out, out


def relu_backward_where(dout, cache):
    return np.where(cache > 0, dout, 0.0)


def sigmoid_forward_two_branches(x):
    out = np.empty_like(x, dtype=np.float64)
    positive = x >= 0
    out[positive] = 1 / (1 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1 + e)
    return out, x


def sigmoid_backward_from_input(dout, cache):
    s = 0.5 * (1 + np.tanh(cache / 2))  # the sigmoid of the cached input, without overflow
    return dout * s * (1 - s)


def tanh_forward_cache_input(x):
    return np.tanh(x), x


def tanh_backward_from_input(dout, cache):
    return dout / np.cosh(np.clip(cache, -300, 300)) ** 2


def softmax_cross_entropy_logsumexp(logits, y):
    n, k = logits.shape
    m = logits.max(axis=1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    loss = np.mean(lse - logits[np.arange(n), y])
    onehot = np.eye(k)[y]
    return np.float64(loss), (np.exp(logits - lse[:, None]) - onehot) / n


def conv2d_backward_vectorized(dout, cache):
    """im2col with sliding_window_view and einsum: no loops."""
    x, w, _, s, p = cache
    h, w_ = x.shape[2:]
    kh, kw = w.shape[2:]
    ho, wo = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::s, ::s][:, :, :ho, :wo]  # N,C,Ho,Wo,KH,KW
    dw = np.einsum("nfij,ncijab->fcab", dout, windows)
    # dx: scatter each tap's contribution with strided slices (a loop over the KH*KW taps only)
    dxp = np.zeros_like(xp)
    for a in range(kh):
        for b in range(kw):
            dxp[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += np.einsum("nfij,fc->ncij", dout,
                                                                                       w[:, :, a, b])
    return dxp[:, :, p:p + h, p:p + w_], dw, dout.sum(axis=(0, 2, 3))


def conv2d_backward_full_correlation(dout, cache):
    """dx as the full correlation of the (dilated) dout with the flipped kernel, the lecture's derivation."""
    x, w, _, s, p = cache
    n, c, h, w_ = x.shape
    f, _, kh, kw = w.shape
    ho, wo = dout.shape[2:]
    dilated = np.zeros((n, f, s * (ho - 1) + 1, s * (wo - 1) + 1))
    dilated[:, :, ::s, ::s] = dout
    padded = np.pad(dilated, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    flipped = w[:, :, ::-1, ::-1]
    full = np.zeros((n, c, padded.shape[2] - kh + 1, padded.shape[3] - kw + 1))
    for i in range(full.shape[2]):
        for j in range(full.shape[3]):
            full[:, :, i, j] = np.tensordot(padded[:, :, i:i + kh, j:j + kw], flipped, axes=([1, 2, 3], [0, 2, 3]))
    dxp = np.zeros((n, c, h + 2 * p, w_ + 2 * p))
    dxp[:, :, :full.shape[2], :full.shape[3]] = full[:, :, :h + 2 * p, :w_ + 2 * p]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dw = np.zeros_like(w)
    for a in range(kh):
        for b in range(kw):
            dw[:, :, a, b] = np.einsum("nfij,ncij->fc", dout, xp[:, :, a:a + s * (ho - 1) + 1:s,
                                                                b:b + s * (wo - 1) + 1:s])
    return dxp[:, :, p:p + h, p:p + w_], dw, dout.sum(axis=(0, 2, 3))


def conv2d_backward_loops(dout, cache):
    """Every index in a loop (slow, but right)."""
    x, w, _, s, p = cache
    n_, c_, h, w_ = x.shape
    f_, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(f_)
    for n in range(n_):
        for f in range(f_):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    g = dout[n, f, i, j]
                    db[f] += g
                    dw[f] += g * xp[n, :, i * s:i * s + kh, j * s:j * s + kw]
                    dxp[n, :, i * s:i * s + kh, j * s:j * s + kw] += g * w[f]
    return dxp[:, :, p:p + h, p:p + w_], dw, db


def max_pool2d_backward_argmax(dout, cache):
    """Windows with sliding_window_view, the argmax of each, and np.add.at for the overlaps."""
    x, k, s = cache
    n, c, ho, wo = dout.shape
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :ho, :wo].reshape(n, c, ho, wo, -1)
    best = windows.argmax(axis=-1)
    rows = np.arange(ho)[:, None] * s + best // k
    cols = np.arange(wo)[None, :] * s + best % k
    dx = np.zeros_like(x)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    np.add.at(dx, (nn[:, :, None, None], cc[:, :, None, None], rows, cols), dout)
    return dx


def numerical_gradient_copies(f, x, h=1e-5):
    """Perturbs copies, never x itself."""
    grad = np.empty(x.size)
    flat = x.reshape(-1)
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = h
        grad[i] = (f((flat + step).reshape(x.shape)) - f((flat - step).reshape(x.shape))) / (2 * h)
    return grad.reshape(x.shape)


def relative_error_fmax(a, b):
    return np.abs(a - b).__truediv__(np.fmax(np.abs(a) + np.abs(b), 1e-8)).max()


def two_layer_loss_inline(params, x, y):
    """Everything written out, no layer functions."""
    w1, b1, w2, b2 = params["w1"], params["b1"], params["w2"], params["b2"]
    pre = x @ w1.T + b1
    act = np.maximum(pre, 0)
    scores = act @ w2.T + b2
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(probs[np.arange(n), y]).mean()
    d = probs.copy()
    d[np.arange(n), y] -= 1
    d /= n
    dact = d @ w2
    dpre = dact * (pre > 0)
    return loss, {"w2": d.T @ act, "b2": d.sum(0), "w1": dpre.T @ x, "b1": dpre.sum(0)}


def lecun_normal_standard(fan_in, fan_out, rng):
    return rng.standard_normal((fan_out, fan_in)) / math.sqrt(fan_in)


def glorot_uniform_low_high(fan_in, fan_out, rng):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(low=-bound, high=bound, size=(fan_out, fan_in))


def glorot_uniform_from_random(fan_in, fan_out, rng):
    bound = math.sqrt(6 / (fan_in + fan_out))
    return bound * (2 * rng.random((fan_out, fan_in)) - 1)


def kaiming_normal_standard(fan_in, fan_out, rng):
    std = math.sqrt(2.0 / fan_in)
    return rng.standard_normal(size=(fan_out, fan_in)) * std


def glorot_normal_scaled(fan_in, fan_out, rng):
    """Glorot's normal as PyTorch writes it: a gain times sqrt(2 / (fan_in + fan_out))."""
    gain = 1.0
    return gain * math.sqrt(2.0 / float(fan_in + fan_out)) * rng.standard_normal((fan_out, fan_in))


def kaiming_uniform_via_std(fan_in, fan_out, rng):
    """Kaiming's uniform from its standard deviation: the bound is sqrt(3) times it."""
    std = np.sqrt(2.0) / np.sqrt(fan_in)
    return rng.uniform(-np.sqrt(3.0) * std, np.sqrt(3.0) * std, (fan_out, fan_in))


CORRECT: dict[str, dict[str, Callable]] = {
    "linear_backward_einsum": {"linear_forward": linear_forward, "linear_backward": linear_backward_einsum},
    "relu_cache_output_where": {"relu_forward": relu_forward_cache_out, "relu_backward": relu_backward_where},
    "sigmoid_two_branches_cache_input": {"sigmoid_forward": sigmoid_forward_two_branches,
                                         "sigmoid_backward": sigmoid_backward_from_input},
    "tanh_cache_input": {"tanh_forward": tanh_forward_cache_input, "tanh_backward": tanh_backward_from_input},
    "softmax_logsumexp": {"softmax_cross_entropy": softmax_cross_entropy_logsumexp},
    "conv2d_backward_vectorized": {"conv2d_backward": conv2d_backward_vectorized},
    "conv2d_backward_full_correlation": {"conv2d_backward": conv2d_backward_full_correlation},
    "conv2d_backward_loops": {"conv2d_backward": conv2d_backward_loops},
    "max_pool2d_backward_argmax": {"max_pool2d_backward": max_pool2d_backward_argmax},
    "numerical_gradient_copies": {"numerical_gradient": numerical_gradient_copies},
    "relative_error_fmax": {"relative_error": relative_error_fmax},
    "two_layer_loss_inline": {"two_layer_loss": two_layer_loss_inline},
    "lecun_normal_standard": {"lecun_normal": lecun_normal_standard},
    "glorot_uniform_low_high": {"glorot_uniform": glorot_uniform_low_high},
    "glorot_uniform_from_random": {"glorot_uniform": glorot_uniform_from_random},
    "kaiming_normal_standard": {"kaiming_normal": kaiming_normal_standard},
    "glorot_normal_scaled": {"glorot_normal": glorot_normal_scaled},
    "kaiming_uniform_via_std": {"kaiming_uniform": kaiming_uniform_via_std},
}


# --- wrong, one realistic bug each ---------------------------------------------------------------------
def linear_dw_transposed(dout, cache):
    x, w, _ = cache
    return dout @ w, x.T @ dout, dout.sum(axis=0)


def linear_db_not_summed(dout, cache):
    x, w, _ = cache
    return dout @ w, dout.T @ x, dout


def relu_gradient_one_at_zero(dout, cache):
    return dout * (cache >= 0)


def relu_passes_dout_everywhere(dout, cache):
    return dout.copy()


def sigmoid_forward_caches_input(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)), x


def sigmoid_backward_uses_input(dout, cache):
    return dout * cache * (1 - cache)


def tanh_backward_one_minus_x_squared(dout, cache):
    return dout * (1 - cache ** 2)


def softmax_without_max_subtraction(logits, y):
    n = logits.shape[0]
    e = np.exp(logits)
    probs = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(n), y]).mean()
    probs[np.arange(n), y] -= 1
    return loss, probs / n


def softmax_loss_summed(logits, y):
    loss, dlogits = REFERENCE["softmax_cross_entropy"](logits, y)
    return loss * logits.shape[0], dlogits


def softmax_dlogits_not_divided(logits, y):
    loss, dlogits = REFERENCE["softmax_cross_entropy"](logits, y)
    return loss, dlogits * logits.shape[0]


def _conv_backward(dout, cache, *, flip_dx=False, flip_dw=False, stride_in_backward=True, crop=True):
    x, w, b, s, p = cache
    h, w_ = x.shape[2:]
    kh, kw = w.shape[2:]
    t = s if stride_in_backward else 1
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    wk = w[:, :, ::-1, ::-1] if flip_dx else w
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            if i * t + kh > xp.shape[2] or j * t + kw > xp.shape[3]:
                continue
            patch = xp[:, :, i * t:i * t + kh, j * t:j * t + kw]
            dw += np.tensordot(dout[:, :, i, j], patch[:, :, ::-1, ::-1] if flip_dw else patch, axes=([0], [0]))
            dxp[:, :, i * t:i * t + kh, j * t:j * t + kw] += np.tensordot(dout[:, :, i, j], wk, axes=([1], [0]))
    return (dxp[:, :, p:p + h, p:p + w_] if crop else dxp), dw, dout.sum(axis=(0, 2, 3))


def conv_dx_with_unflipped_kernel(dout, cache):
    """dx as a full correlation of dout with the kernel as it is (the flip forgotten)."""
    return _conv_backward(dout, cache, flip_dx=True)


def conv_dw_as_true_convolution(dout, cache):
    """dw[f, c, a, b] from x[r - a]: the window read back to front."""
    return _conv_backward(dout, cache, flip_dw=True)


def conv_stride_ignored_in_backward(dout, cache):
    return _conv_backward(dout, cache, stride_in_backward=False)


def conv_padding_not_cropped(dout, cache):
    return _conv_backward(dout, cache, crop=False)


def conv_db_mean_over_batch(dout, cache):
    dx, dw, db = REFERENCE["conv2d_backward"](dout, cache)
    return dx, dw, dout.sum(axis=(2, 3)).mean(axis=0)


def pool_to_every_element(dout, cache):
    x, k, s = cache
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += dout[:, :, i, j][:, :, None, None]
    return dx


def pool_overlaps_overwritten(dout, cache):
    x, k, s = cache
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            region = dx[:, :, i * s:i * s + k, j * s:j * s + k]
            region[...] = np.where(mask, dout[:, :, i, j][:, :, None, None], region)
    return dx


def numerical_forward_difference(f, x, h=1e-5):
    grad = np.zeros_like(x, dtype=np.float64)
    base = f(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        grad[index] = (f(x) - base) / h
        x[index] = old
    return grad


def numerical_not_restoring_x(f, x, h=1e-5):
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        x[index] += h
        plus = f(x)
        x[index] -= 2 * h
        grad[index] = (plus - f(x)) / (2 * h)
    return grad


def numerical_ignores_h(f, x, h=1e-5):
    return REFERENCE["numerical_gradient"](f, x)


def relative_error_without_floor(a, b):
    return float(np.max(np.abs(a - b) / (np.abs(a) + np.abs(b))))


def relative_error_mean(a, b):
    return float(np.mean(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def two_layer_missing_relu_backward(params, x, y):
    hidden, cache1 = linear_forward(x, params["w1"], params["b1"])
    active, cache2 = relu_forward(hidden)
    scores, cache3 = linear_forward(active, params["w2"], params["b2"])
    loss, dscores = softmax_cross_entropy(scores, y)
    dactive, dw2, db2 = linear_backward(dscores, cache3)
    _, dw1, db1 = linear_backward(dactive, cache1)
    return loss, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def two_layer_b1_before_relu_mask(params, x, y):
    loss, grads = REFERENCE["two_layer_loss"](params, x, y)
    hidden, _ = linear_forward(x, params["w1"], params["b1"])
    scores, _ = linear_forward(np.maximum(hidden, 0), params["w2"], params["b2"])
    _, dscores = softmax_cross_entropy(scores, y)
    grads["b1"] = (dscores @ params["w2"]).sum(axis=0)
    return loss, grads


def lecun_layout_fan_in_fan_out(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(1 / fan_in), size=(fan_in, fan_out))


def lecun_std_as_variance(fan_in, fan_out, rng):
    return rng.normal(0.0, 1 / fan_in, size=(fan_out, fan_in))


def lecun_uses_fan_out(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(1 / fan_out), size=(fan_out, fan_in))


def glorot_bound_without_sqrt(fan_in, fan_out, rng):
    a = 2 / (fan_in + fan_out)
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def glorot_normal_instead_of_uniform(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(2 / (fan_in + fan_out)), size=(fan_out, fan_in))


def glorot_variance_as_bound(fan_in, fan_out, rng):
    """uniform(-a, a) with a^2 = 2/(fan_in + fan_out): the variance is a^2 / 3, not a^2."""
    a = math.sqrt(2 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def kaiming_is_lecun(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(1 / fan_in), size=(fan_out, fan_in))


def kaiming_uses_fan_out(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(2 / fan_out), size=(fan_out, fan_in))


def kaiming_global_generator(fan_in, fan_out, rng):
    return np.random.normal(0.0, math.sqrt(2 / fan_in), size=(fan_out, fan_in))


def kaiming_std_as_variance(fan_in, fan_out, rng):
    return rng.normal(0.0, 2 / fan_in, size=(fan_out, fan_in))


def sigmoid_forward_literal(x):
    """Right values (1/(1 + inf) = 0), but NumPy warns 'overflow encountered in exp' for x < -709."""
    out = 1 / (1 + np.exp(-x))
    return out, out


def sigmoid_forward_where_both_branches(x):
    """np.where evaluates both branches everywhere: exp(x) overflows for x > 709 (the values are still right)."""
    out = np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))
    return out, out


def glorot_normal_with_the_uniform_bound(fan_in, fan_out, rng):
    """The uniform bound sqrt(6 / (fan_in + fan_out)) used as a standard deviation: 3 times the variance."""
    return rng.normal(0.0, math.sqrt(6 / (fan_in + fan_out)), size=(fan_out, fan_in))


def glorot_normal_fan_in_only(fan_in, fan_out, rng):
    """LeCun's variance 1/fan_in: right for square layers only, which the non-square sample shows."""
    return rng.normal(0.0, math.sqrt(1 / fan_in), size=(fan_out, fan_in))


def kaiming_uniform_std_as_bound(fan_in, fan_out, rng):
    """uniform(-s, s) with s the standard deviation sqrt(2/fan_in): a third of the variance."""
    s = math.sqrt(2 / fan_in)
    return rng.uniform(-s, s, size=(fan_out, fan_in))


def kaiming_uniform_uses_fan_out(fan_in, fan_out, rng):
    a = math.sqrt(6 / fan_out)
    return rng.uniform(-a, a, size=(fan_out, fan_in))


def kaiming_uniform_is_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, math.sqrt(2 / fan_in), size=(fan_out, fan_in))


WRONG: dict[str, tuple[dict[str, Callable], set[str]]] = {
    "linear_dw_transposed": ({"linear_forward": linear_forward, "linear_backward": linear_dw_transposed}, LINEAR),
    "linear_db_not_summed": ({"linear_forward": linear_forward, "linear_backward": linear_db_not_summed}, LINEAR),
    "relu_gradient_one_at_zero": ({"relu_forward": relu_forward, "relu_backward": relu_gradient_one_at_zero},
                                  {"test_relu"}),
    "relu_passes_dout_everywhere": ({"relu_forward": relu_forward, "relu_backward": relu_passes_dout_everywhere},
                                    {"test_relu", "test_two_layer_loss"}),
    "sigmoid_backward_uses_input": ({"sigmoid_forward": sigmoid_forward_caches_input,
                                     "sigmoid_backward": sigmoid_backward_uses_input}, {"test_sigmoid"}),
    "tanh_backward_one_minus_x_squared": ({"tanh_forward": tanh_forward_cache_input,
                                           "tanh_backward": tanh_backward_one_minus_x_squared}, {"test_tanh"}),
    "softmax_without_max_subtraction": ({"softmax_cross_entropy": softmax_without_max_subtraction},
                                        {"test_softmax_cross_entropy"}),
    "softmax_loss_summed": ({"softmax_cross_entropy": softmax_loss_summed},
                            {"test_softmax_cross_entropy", "test_two_layer_loss"}),
    "softmax_dlogits_not_divided": ({"softmax_cross_entropy": softmax_dlogits_not_divided},
                                    {"test_softmax_cross_entropy", "test_two_layer_loss",
                                     "test_two_layer_training"}),
    "conv_dx_with_unflipped_kernel": ({"conv2d_backward": conv_dx_with_unflipped_kernel}, {"test_conv2d_backward"}),
    "conv_dw_as_true_convolution": ({"conv2d_backward": conv_dw_as_true_convolution}, {"test_conv2d_backward"}),
    "conv_stride_ignored_in_backward": ({"conv2d_backward": conv_stride_ignored_in_backward},
                                       {"test_conv2d_backward"}),
    "conv_padding_not_cropped": ({"conv2d_backward": conv_padding_not_cropped}, {"test_conv2d_backward"}),
    "conv_db_mean_over_batch": ({"conv2d_backward": conv_db_mean_over_batch}, {"test_conv2d_backward"}),
    "pool_to_every_element": ({"max_pool2d_backward": pool_to_every_element}, {"test_max_pool2d_backward"}),
    "pool_overlaps_overwritten": ({"max_pool2d_backward": pool_overlaps_overwritten}, {"test_max_pool2d_backward"}),
    "numerical_forward_difference": ({"numerical_gradient": numerical_forward_difference},
                                     {"test_numerical_gradient"}),
    "numerical_not_restoring_x": ({"numerical_gradient": numerical_not_restoring_x}, {"test_numerical_gradient"}),
    "numerical_ignores_h": ({"numerical_gradient": numerical_ignores_h}, {"test_numerical_gradient"}),
    "relative_error_without_floor": ({"relative_error": relative_error_without_floor}, {"test_relative_error"}),
    "relative_error_mean": ({"relative_error": relative_error_mean}, {"test_relative_error"}),
    "two_layer_missing_relu_backward": ({"two_layer_loss": two_layer_missing_relu_backward},
                                        {"test_two_layer_loss"}),
    "two_layer_b1_before_relu_mask": ({"two_layer_loss": two_layer_b1_before_relu_mask}, {"test_two_layer_loss"}),
    "lecun_layout_fan_in_fan_out": ({"lecun_normal": lecun_layout_fan_in_fan_out}, {"test_lecun_normal"}),
    "lecun_std_as_variance": ({"lecun_normal": lecun_std_as_variance}, {"test_lecun_normal"}),
    "lecun_uses_fan_out": ({"lecun_normal": lecun_uses_fan_out}, {"test_lecun_normal"}),
    "glorot_bound_without_sqrt": ({"glorot_uniform": glorot_bound_without_sqrt}, {"test_glorot_uniform"}),
    "glorot_normal_instead_of_uniform": ({"glorot_uniform": glorot_normal_instead_of_uniform},
                                         {"test_glorot_uniform"}),
    "glorot_variance_as_bound": ({"glorot_uniform": glorot_variance_as_bound}, {"test_glorot_uniform"}),
    "kaiming_is_lecun": ({"kaiming_normal": kaiming_is_lecun}, {"test_kaiming_normal"}),
    "kaiming_uses_fan_out": ({"kaiming_normal": kaiming_uses_fan_out}, {"test_kaiming_normal"}),
    "kaiming_global_generator": ({"kaiming_normal": kaiming_global_generator}, {"test_kaiming_normal"}),
    "kaiming_std_as_variance": ({"kaiming_normal": kaiming_std_as_variance}, {"test_kaiming_normal"}),
    "sigmoid_literal_overflows": ({"sigmoid_forward": sigmoid_forward_literal, "sigmoid_backward": sigmoid_backward},
                                  {"test_sigmoid"}),
    "sigmoid_where_both_branches": ({"sigmoid_forward": sigmoid_forward_where_both_branches,
                                     "sigmoid_backward": sigmoid_backward}, {"test_sigmoid"}),
    "glorot_normal_with_the_uniform_bound": ({"glorot_normal": glorot_normal_with_the_uniform_bound},
                                             {"test_glorot_normal"}),
    "glorot_normal_fan_in_only": ({"glorot_normal": glorot_normal_fan_in_only}, {"test_glorot_normal"}),
    "kaiming_uniform_std_as_bound": ({"kaiming_uniform": kaiming_uniform_std_as_bound}, {"test_kaiming_uniform"}),
    "kaiming_uniform_uses_fan_out": ({"kaiming_uniform": kaiming_uniform_uses_fan_out}, {"test_kaiming_uniform"}),
    "kaiming_uniform_is_normal": ({"kaiming_uniform": kaiming_uniform_is_normal}, {"test_kaiming_uniform"}),
}


# --- back doors: PyTorch's autograd and functions, reached by any name ---------------------------------
_autograd = torch.autograd.grad  # an alias


def linear_backward_autograd(dout, cache):
    x, w, b = (torch.tensor(a, requires_grad=True) for a in cache)
    out = x @ w.T + b
    grads = _autograd(out, (x, w, b), torch.from_numpy(dout))
    return tuple(g.numpy() for g in grads)


def softmax_cross_entropy_by_name(logits, y):
    z = torch.tensor(logits, requires_grad=True)
    loss = cross_entropy_by_name(z, torch.from_numpy(np.asarray(y)))
    loss.backward()
    return loss.item(), z.grad.numpy()


def conv2d_backward_torch_grad(dout, cache):
    x, w, b, s, p = cache
    xt, wt, gt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dout)
    dx = torch.nn.grad.conv2d_input(xt.shape, wt, gt, stride=s, padding=p)
    dw = torch.nn.grad.conv2d_weight(xt, wt.shape, gt, stride=s, padding=p)
    return dx.numpy(), dw.numpy(), dout.sum(axis=(0, 2, 3))


def max_pool2d_backward_autograd(dout, cache):
    x, k, s = cache
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt, k, stride=s).backward(torch.from_numpy(dout))
    return xt.grad.numpy()


def kaiming_normal_torch_init(fan_in, fan_out, rng):
    w = torch.empty(fan_out, fan_in, dtype=torch.float64)
    torch.nn.init.kaiming_normal_(w, generator=torch.Generator().manual_seed(int(rng.integers(2**62))))
    return w.numpy()


BACK_DOORS: dict[str, tuple[dict[str, Callable], set[str]]] = {
    "linear_backward_autograd": ({"linear_forward": linear_forward, "linear_backward": linear_backward_autograd},
                                 LINEAR),
    "softmax_cross_entropy_by_name": ({"softmax_cross_entropy": softmax_cross_entropy_by_name},
                                      {"test_softmax_cross_entropy", "test_two_layer_loss", "test_two_layer_training"}),
    "conv2d_backward_torch_grad": ({"conv2d_backward": conv2d_backward_torch_grad}, {"test_conv2d_backward"}),
    "max_pool2d_backward_autograd": ({"max_pool2d_backward": max_pool2d_backward_autograd},
                                     {"test_max_pool2d_backward"}),
    "kaiming_normal_torch_init": ({"kaiming_normal": kaiming_normal_torch_init}, {"test_kaiming_normal"}),
}

# A library convolution outside PyTorch: the guard cannot refuse it (it dispatches no PyTorch operator and is
# right), so the static scan must flag it for the instructor.
SCIPY_CONV_BACKWARD_SOURCE = '''
from scipy.signal import correlate2d

def conv2d_backward(dout, cache):
    x, w, b, s, p = cache
    dw = np.zeros_like(w)
    for f in range(w.shape[0]):
        for c in range(w.shape[1]):
            dw[f, c] = sum(correlate2d(x[n, c], dout[n, f], mode="valid") for n in range(x.shape[0]))
    return None, dw, dout.sum(axis=(0, 2, 3))
'''


def caught(replacements: dict[str, Callable], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it (COURSE_GRADING_SEED is set
    to each secret in turn and restored afterwards)."""
    return vh.catch_rates(caught, WRONG, secrets, names)
