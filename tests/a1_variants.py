"""a1 student variants, shared by tests/test_a1_checks.py (fast tier) and tests/heavy/test_a1_catch_rate.py.

Each variant replaces one function of the solution notebook (as a student's redefinition would: the solution's
other functions look names up in the notebook's namespace and see it too). WRONG maps a variant's name to the
replacements and exactly the graded cells it must fail; CORRECT lists differently written right answers (every
point); BACK_DOORS lists answers that reach PyTorch's own operators (each loses exactly its cells' points).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.functional import conv2d as conv2d_by_name  # captured before any check runs
from torch.nn.functional import conv_transpose2d as conv_transpose2d_by_name

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells, source_notebook
from course_utils.grading.protocol import solution_namespace as load_solution

ASSIGNMENT = "a1_convolutions"
CELLS = graded_cells(source_notebook(ASSIGNMENT))
ALL_CELLS = {cell.grade_id for cell in CELLS}
NAIVE = {"test_conv2d_naive_basic", "test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation",
         "test_conv2d_naive_bias"}
VECTORIZED = {"test_conv2d_vectorized", "test_conv2d_vectorized_fast"}
TRANSPOSE = {"test_conv_transpose2d", "test_conv_transpose2d_options", "test_conv_transpose2d_vectorized"}
# which notebook functions call which (a replaced function changes the cells of its callers too)
CALLERS = {"conv_matrix": {"conv_transpose2d_via_matrix"},
           "conv_transpose_output_size": {"conv_transpose2d_via_matrix"}}


def solution_namespace() -> dict:
    """The solution's functions (its locked and answer cells, run in a fresh namespace)."""
    namespace: dict[str, Any] = {"__name__": f"solution_{ASSIGNMENT}"}
    return vh.exec_solution(ASSIGNMENT, source_notebook(ASSIGNMENT), namespace)


SOLUTION = solution_namespace()
assert set(SOLUTION) >= set(load_solution(ASSIGNMENT)) - {"__builtins__"}


def cells_using(names: Iterable[str]) -> list:
    """The graded cells whose checks call one of ``names`` or a function that calls one."""
    return vh.cells_using(CELLS, CALLERS, names)


def run_cells(replacements: dict[str, Callable], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None) -> dict[str, CellResult]:
    """The graded cells that use the replaced functions, run on the solution with the replacements.

    (A cell that uses none of them gives the solution's result, every point: test_the_solution_gets_every_point.)
    only_hidden: run the hidden calls alone (what the catch-rate test measures).
    """
    namespace = solution_namespace()
    namespace.update(replacements)
    return vh.run_cells_in(ASSIGNMENT, namespace, cells if cells is not None else cells_using(replacements), hidden,
                           only_hidden)


def failing_cells(**replacements: Callable) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's functions are replaced."""
    return vh.failed(run_cells(replacements))


# --- correct, written differently ----------------------------------------------------------------------
def size_with_math_floor(i, k, s=1, p=0, d=1):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output")
    return math.floor((i + 2 * p - d * (k - 1) - 1) / s) + 1


def transpose_size_checks_last(i, k, s=1, p=0, d=1, output_padding=0):
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    if min(k, s, d) < 1 or min(p, output_padding) < 0 or output_padding >= max(s, d) or o <= 0:
        raise ValueError(f"no output: o'={o}")
    return o


def conv2d_by_taps(x, w, b=None, stride=1, padding=0, dilation=1):
    """Vectorized over positions with strided slices, a loop over the K_H * K_W taps (no unfold)."""
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    s, p, d = stride, padding, dilation
    Ho, Wo = (H + 2 * p - d * (KH - 1) - 1) // s + 1, (W + 2 * p - d * (KW - 1) - 1) // s + 1
    xp = torch.zeros(N, C, H + 2 * p, W + 2 * p, dtype=x.dtype)
    xp[..., p:p + H, p:p + W] = x
    out = torch.zeros(N, F_, Ho, Wo, dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            patch = xp[..., i * d:i * d + s * (Ho - 1) + 1:s, j * d:j * d + s * (Wo - 1) + 1:s]  # (N, C, Ho, Wo)
            out += torch.tensordot(patch, w[:, :, i, j], dims=([1], [1])).permute(0, 3, 1, 2)
    return out if b is None else out + b[None, :, None, None]


def conv2d_as_strided(x, w, b=None, stride=1, padding=0, dilation=1):
    """im2col with torch.as_strided and one matmul."""
    s, p, d = stride, padding, dilation
    xp = F.pad(x, (p, p, p, p)).contiguous()
    N, C, H, W = xp.shape
    F_, _, KH, KW = w.shape
    Ho, Wo = (H - d * (KH - 1) - 1) // s + 1, (W - d * (KW - 1) - 1) // s + 1
    sN, sC, sH, sW = xp.stride()
    cols = torch.as_strided(xp, (N, Ho, Wo, C, KH, KW), (sN, s * sH, s * sW, sC, d * sH, d * sW))
    out = (cols.reshape(N, Ho, Wo, -1) @ w.reshape(F_, -1).T).permute(0, 3, 1, 2)
    return out if b is None else out + b.view(1, -1, 1, 1)


def conv2d_unfold_einsum(x, w, b=None, stride=1, padding=0, dilation=1):
    """The previous model solution: Tensor.unfold windows contracted in one einsum."""
    KH, KW = w.shape[2:]
    padded = F.pad(x, (padding,) * 4)
    windows = padded.unfold(2, dilation * (KH - 1) + 1, stride).unfold(3, dilation * (KW - 1) + 1, stride)
    out = torch.einsum("nchwuv,fcuv->nfhw", windows[..., ::dilation, ::dilation], w)
    return out if b is None else out + b.view(1, -1, 1, 1)


def conv2d_loop_over_input_channels(x, w, b=None, stride=1, padding=0, dilation=1):
    """A loop over the input channels m is allowed: it does not grow with N, F or the image."""
    out = sum(conv2d_unfold_einsum(x[:, m:m + 1], w[:, m:m + 1], None, stride, padding, dilation)
              for m in range(x.shape[1]))
    return out if b is None else out + b.view(1, -1, 1, 1)


def conv2d_with_debug_print(x, w, b=None, stride=1, padding=0, dilation=1):
    """A debugging print left in: the output goes to the cell's output, and the answer stays right and vectorized."""
    out = conv2d_unfold_einsum(x, w, b, stride, padding, dilation)
    print("conv2d_vectorized:", tuple(out.shape), out[0, 0])
    return out


def conv_matrix_by_probing(w, input_size, stride=1, padding=0):
    """Column j of C is the (flattened) convolution of the j-th one-hot image: uses the student's own conv."""
    H, W = input_size
    probes = torch.eye(H * W, dtype=w.dtype).reshape(H * W, 1, H, W)
    return conv2d_by_taps(probes, w[None, None], stride=stride, padding=padding).reshape(H * W, -1).T


def conv_matrix_sparse(w, input_size, stride=1, padding=0):
    """A sparse COO matrix (the natural representation: most entries are 0), built from its nonzeros."""
    KH, KW = w.shape
    H, W = input_size
    Ho, Wo = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    rows, cols, values = [], [], []
    for r in range(Ho):
        for c in range(Wo):
            for i in range(KH):
                for j in range(KW):
                    row, col = r * stride + i - padding, c * stride + j - padding
                    if 0 <= row < H and 0 <= col < W:
                        rows.append(r * Wo + c)
                        cols.append(row * W + col)
                        values.append(w[i, j])
    values_t = torch.stack(values) if values else w.new_zeros(0)
    return torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1), values_t,
                                   (Ho * Wo, H * W))


def conv_transpose2d_by_dilating(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Spread the input by the stride, pad, and correlate with the flipped, channel-swapped kernel."""
    N, C, H, W = y.shape
    KH, KW = w.shape[2:]
    s, p, d, a = stride, padding, dilation, output_padding
    spread = torch.zeros(N, C, (H - 1) * s + 1, (W - 1) * s + 1, dtype=y.dtype)
    spread[..., ::s, ::s] = y
    eh, ew = d * (KH - 1), d * (KW - 1)  # full padding for a "full" correlation
    spread = F.pad(spread, (ew, ew + a, eh, eh + a))
    flipped = w.flip(-1, -2).transpose(0, 1)  # (F, C, KH, KW)
    out = conv2d_by_taps(spread, flipped, dilation=d)
    out = out[..., p:out.shape[-2] - p, p:out.shape[-1] - p]
    return out if b is None else out + b.view(1, -1, 1, 1)


def conv_transpose2d_loop_over_output_channels(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """A loop over the output channels f is allowed by question 5's rule (no loops over n, m, r, c)."""
    outs = [SOLUTION["conv_transpose2d"](y, w[:, f:f + 1], None, stride, padding, output_padding, dilation)
            for f in range(w.shape[1])]
    out = torch.cat(outs, dim=1)
    return out if b is None else out + b.view(1, -1, 1, 1)


def max_pool2d_loops(x, kernel_size, stride=None, padding=0):
    k, s, p = kernel_size, stride or kernel_size, padding
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = torch.empty(N, C, Ho, Wo, dtype=x.dtype)
    for r in range(Ho):
        for c in range(Wo):
            rows = slice(max(r * s - p, 0), min(r * s - p + k, H))
            cols = slice(max(c * s - p, 0), min(c * s - p + k, W))
            out[:, :, r, c] = x[:, :, rows, cols].amax(dim=(-2, -1))
    return out


def max_pool2d_as_strided(x, kernel_size, stride=None, padding=0):
    k, s, p = kernel_size, stride or kernel_size, padding
    xp = torch.full((*x.shape[:2], x.shape[2] + 2 * p, x.shape[3] + 2 * p), float("-inf"), dtype=x.dtype)
    xp[..., p:p + x.shape[2], p:p + x.shape[3]] = x
    N, C, H, W = xp.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    sN, sC, sH, sW = xp.stride()
    return torch.as_strided(xp, (N, C, Ho, Wo, k, k), (sN, sC, s * sH, s * sW, sH, sW)).amax(dim=(-2, -1))


CORRECT: dict[str, dict[str, Callable]] = {
    "size_with_math_floor": {"conv_output_size": size_with_math_floor},
    "transpose_size_checks_last": {"conv_transpose_output_size": transpose_size_checks_last},
    "conv2d_by_taps": {"conv2d_naive": conv2d_by_taps, "conv2d_vectorized": conv2d_by_taps},
    "conv2d_as_strided": {"conv2d_naive": conv2d_as_strided, "conv2d_vectorized": conv2d_as_strided},
    "conv2d_unfold_einsum": {"conv2d_vectorized": conv2d_unfold_einsum},
    "conv2d_loop_over_input_channels": {"conv2d_vectorized": conv2d_loop_over_input_channels},
    "conv2d_with_debug_print": {"conv2d_vectorized": conv2d_with_debug_print},
    "conv_matrix_by_probing": {"conv_matrix": conv_matrix_by_probing},
    "conv_matrix_sparse": {"conv_matrix": conv_matrix_sparse},
    "conv_transpose2d_by_dilating": {"conv_transpose2d": conv_transpose2d_by_dilating},
    "conv_transpose2d_loop_over_output_channels": {"conv_transpose2d": conv_transpose2d_loop_over_output_channels},
    "max_pool2d_loops": {"max_pool2d": max_pool2d_loops},
    "max_pool2d_as_strided": {"max_pool2d": max_pool2d_as_strided},
}


# --- wrong: one realistic bug each --------------------------------------------------------------------
def _size_arguments_ok(k, s, p, d):
    if min(k, s, d) < 1 or p < 0:
        raise ValueError("bad arguments")


def size_truncating_division(i, k, s=1, p=0, d=1):
    """int() truncates toward 0: a kernel 1 pixel too large with s = 2 gives int(-0.5) + 1 = 1, not an error."""
    _size_arguments_ok(k, s, p, d)
    o = int((i + 2 * p - d * (k - 1) - 1) / s) + 1
    if o < 1:
        raise ValueError("no output")
    return o


def size_fit_ignores_padding(i, k, s=1, p=0, d=1):
    """Rejects a kernel larger than the input even when the padding makes it fit."""
    _size_arguments_ok(k, s, p, d)
    if i < d * (k - 1) + 1:
        raise ValueError("the kernel is larger than the input")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def size_ceil(i, k, s=1, p=0, d=1):
    _size_arguments_ok(k, s, p, d)
    if i + 2 * p < d * (k - 1) + 1:
        raise ValueError("no output")
    return math.ceil((i + 2 * p - d * (k - 1) - 1) / s) + 1


def size_fit_ignores_dilation(i, k, s=1, p=0, d=1):
    _size_arguments_ok(k, s, p, d)
    if i + 2 * p < k:
        raise ValueError("no output")
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def transpose_size_rejects_op_ge_stride(i, k, s=1, p=0, d=1, output_padding=0):
    """Forgets the dilation in PyTorch's rule: rejects s <= output_padding < d."""
    if output_padding >= s:
        raise ValueError("output_padding must be smaller than the stride")
    return SOLUTION["conv_transpose_output_size"](i, k, s, p, d, output_padding)


def transpose_size_allows_zero(i, k, s=1, p=0, d=1, output_padding=0):
    """Raises for a negative output only: returns 0 where PyTorch has no output."""
    _size_arguments_ok(k, s, p, d)
    if output_padding < 0 or (output_padding >= s and output_padding >= d):
        raise ValueError("bad output_padding")
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    if o < 0:
        raise ValueError("negative output")
    return o


def transpose_size_op_strict(i, k, s=1, p=0, d=1, output_padding=0):
    """`>` where PyTorch's rule is `>=`: accepts output_padding == max(s, d)."""
    _size_arguments_ok(k, s, p, d)
    if output_padding < 0 or (output_padding > s and output_padding > d):
        raise ValueError("bad output_padding")
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    if o < 1:
        raise ValueError("no output")
    return o


def size_without_output_padding(i, k, s=1, p=0, d=1, output_padding=0):
    return (i - 1) * s - 2 * p + d * (k - 1) + 1


def _conv(x, w, b=None, stride=1, padding=0, dilation=1):
    return SOLUTION["conv2d_vectorized"](x, w, b, stride, padding, dilation)


def flipped_kernel(x, w, b=None, stride=1, padding=0, dilation=1):
    """True convolution where cross-correlation is asked."""
    return _conv(x, w.flip(-1, -2), b, stride, padding, dilation)


def padding_one_side(x, w, b=None, stride=1, padding=0, dilation=1):
    return _conv(F.pad(x, (padding, 0, padding, 0)), w, b, stride, 0, dilation)


def stride_off_by_one(x, w, b=None, stride=1, padding=0, dilation=1):
    """Stops one window early: range(0, last, s) instead of range(0, last + 1, s)."""
    out = _conv(x, w, b, stride, padding, dilation)
    span_h = dilation * (w.shape[2] - 1) + 1
    fits_exactly = (x.shape[2] + 2 * padding - span_h) % stride == 0
    return out[:, :, :-1] if fits_exactly else out


def dilating_the_input(x, w, b=None, stride=1, padding=0, dilation=1):
    """Takes every d-th input pixel instead of spreading the kernel taps."""
    return _conv(F.pad(x, (padding,) * 4)[..., ::dilation, ::dilation], w, b, stride, 0, 1)


def bias_once(x, w, b=None, stride=1, padding=0, dilation=1):
    """Adds the bias to one position per image instead of every position."""
    out = _conv(x, w, None, stride, padding, dilation)
    if b is not None:
        out[:, :, 0, 0] += b
    return out


def width_from_height(x, w, b=None, stride=1, padding=0, dilation=1):
    """W' computed with H's formula (copy-paste): right only for square settings."""
    out = _conv(x, w, b, stride, padding, dilation)
    Ho, Wo = out.shape[2:]
    return out[..., :Ho] if Wo >= Ho else F.pad(out, (0, Ho - Wo))


def kernel_must_fit_unpadded(x, w, b=None, stride=1, padding=0, dilation=1):
    """Rejects a (dilated) kernel larger than the input before padding it."""
    if any(dilation * (k - 1) + 1 > n for k, n in zip(w.shape[2:], x.shape[2:], strict=True)):
        raise ValueError("the kernel is larger than the input")
    return _conv(x, w, b, stride, padding, dilation)


def square_kernel(x, w, b=None, stride=1, padding=0, dilation=1):
    """Reads K_W as K_H: right only for square kernels."""
    KH, KW = w.shape[2:]
    w = w[..., :KH] if KW >= KH else F.pad(w, (0, KH - KW))
    return _conv(x, w, b, stride, padding, dilation)


def _output_size(x, w, s, p, d):
    return [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k in zip(x.shape[2:], w.shape[2:], strict=True)]


def loops_over_positions(x, w, b=None, stride=1, padding=0, dilation=1):
    """Right values; a Python loop over output positions (r, c) with a vectorized inner product."""
    s, d = stride, dilation
    KH, KW = w.shape[2:]
    xp = F.pad(x, (padding,) * 4)
    Ho, Wo = _output_size(x, w, s, padding, d)
    out = x.new_zeros(x.shape[0], w.shape[0], Ho, Wo)
    for r in range(Ho):
        for c in range(Wo):
            window = xp[:, :, r * s:r * s + d * (KH - 1) + 1:d, c * s:c * s + d * (KW - 1) + 1:d]  # (N, C, KH, KW)
            out[:, :, r, c] = torch.einsum("nmij,fmij->nf", window, w)
    return out if b is None else out + b.view(1, -1, 1, 1)


def loop_over_images(x, w, b=None, stride=1, padding=0, dilation=1):
    return torch.cat([_conv(x[n:n + 1], w, b, stride, padding, dilation) for n in range(x.shape[0])])


def loop_over_filters(x, w, b=None, stride=1, padding=0, dilation=1):
    return torch.cat([_conv(x, w[f:f + 1], None if b is None else b[f:f + 1], stride, padding, dilation)
                      for f in range(w.shape[0])], dim=1)


def matrix_transposed(w, input_size, stride=1, padding=0):
    return SOLUTION["conv_matrix"](w, input_size, stride, padding).T


def _matrix(w, input_size, stride, padding, tap: Callable) -> torch.Tensor:
    KH, KW = w.shape
    H, W = input_size
    Ho, Wo = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    C = w.new_zeros(Ho * Wo, H * W)
    for r in range(Ho):
        for c in range(Wo):
            for i in range(KH):
                for j in range(KW):
                    column = tap(r, c, i, j, H, W)
                    if column is not None:
                        C[r * Wo + c, column] = w[i, j]
    return C


def matrix_wraps_rows(w, input_size, stride=1, padding=0):
    """Bounds-checks the flat index only: a tap left or right of the image wraps into the neighbouring row."""
    def tap(r, c, i, j, H, W):
        flat = (r * stride + i - padding) * W + (c * stride + j - padding)
        return flat if 0 <= flat < H * W else None
    return _matrix(w, input_size, stride, padding, tap)


def matrix_ignores_stride(w, input_size, stride=1, padding=0):
    """Output size with the stride, but windows one pixel apart."""
    def tap(r, c, i, j, H, W):
        row, col = r + i - padding, c + j - padding
        return row * W + col if 0 <= row < H and 0 <= col < W else None
    return _matrix(w, input_size, stride, padding, tap)


def matrix_forgets_padding_offset(w, input_size, stride=1, padding=0):
    """Output size with the padding, but taps placed as if there were none (no - p)."""
    def tap(r, c, i, j, H, W):
        row, col = r * stride + i, c * stride + j
        return row * W + col if 0 <= row < H and 0 <= col < W else None
    return _matrix(w, input_size, stride, padding, tap)


def via_matrix_pads_zeros(y, w, stride=1, padding=0, output_padding=0):
    """Builds C for the size without output_padding and appends zero rows: wrong when padding > 0."""
    out = SOLUTION["conv_transpose2d_via_matrix"](y, w, stride, padding, 0)
    return F.pad(out, (0, output_padding, 0, output_padding))


def _full_scatter(y, w, s, d, extra):
    """The transposed convolution before the crop, with ``extra`` rows and columns of zeros at the end."""
    N, C, H, W = y.shape
    KH, KW = w.shape[2:]
    out = y.new_zeros(N, w.shape[1], (H - 1) * s + d * (KH - 1) + 1 + extra, (W - 1) * s + d * (KW - 1) + 1 + extra)
    for i in range(KH):
        for j in range(KW):
            out[:, :, i * d:i * d + (H - 1) * s + 1:s, j * d:j * d + (W - 1) * s + 1:s] += \
                torch.einsum("nmhw,mf->nfhw", y, w[:, :, i, j])
    return out


def _bias(out, b):
    return out if b is None else out + b.view(1, -1, 1, 1)


def transpose_ignoring_output_padding(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    return SOLUTION["conv_transpose2d"](y, w, b, stride, padding, 0, dilation)


def transpose_output_padding_by_slicing(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Slices p:full-p+a out of the scatter without the extra zeros: too short when output_padding > padding."""
    out = _full_scatter(y, w, stride, dilation, 0)
    p, a = padding, output_padding
    return _bias(out[:, :, p:out.shape[2] - p + a, p:out.shape[3] - p + a], b)


def transpose_output_padding_after_crop(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Crops the padding, then appends output_padding rows of zeros: those rows lose their contributions."""
    out = _full_scatter(y, w, stride, dilation, 0)
    p = padding
    out = out[:, :, p:out.shape[2] - p, p:out.shape[3] - p]
    return _bias(F.pad(out, (0, output_padding, 0, output_padding)), b)


def transpose_output_padding_only_when_strided(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    a = output_padding if stride > 1 else 0
    return SOLUTION["conv_transpose2d"](y, w, b, stride, padding, a, dilation)


def transpose_with_conv_weights_layout(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Reads the weights as (F, C, KH, KW): right only when C == F and the kernel is symmetric."""
    return SOLUTION["conv_transpose2d"](y, w.transpose(0, 1).contiguous().view_as(w), b, stride, padding,
                                        output_padding, dilation)


def transpose_crop_minus_p(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """out[..., p:-p]: with p = 0 that is out[..., 0:0], nothing."""
    out = _full_scatter(y, w, stride, dilation, output_padding)
    p = padding
    return _bias(out[:, :, p:-p, p:-p], b)


def transpose_ignores_dilation(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    return SOLUTION["conv_transpose2d"](y, w, b, stride, padding, output_padding, 1)


def transpose_loops_over_positions(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Right values; scatters one input position (r, c) at a time."""
    N, C, H, W = y.shape
    KH, KW = w.shape[2:]
    s, d, p, a = stride, dilation, padding, output_padding
    out = y.new_zeros(N, w.shape[1], (H - 1) * s + d * (KH - 1) + 1 + a, (W - 1) * s + d * (KW - 1) + 1 + a)
    for r in range(H):
        for c in range(W):
            patch = torch.einsum("nm,mfij->nfij", y[:, :, r, c], w)  # (N, F, KH, KW)
            out[:, :, r * s:r * s + d * (KH - 1) + 1:d, c * s:c * s + d * (KW - 1) + 1:d] += patch
    return _bias(out[:, :, p:out.shape[2] - p, p:out.shape[3] - p], b)


def transpose_loops_over_input_channels(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    out = sum(SOLUTION["conv_transpose2d"](y[:, m:m + 1], w[m:m + 1], None, stride, padding, output_padding, dilation)
              for m in range(y.shape[1]))
    return _bias(out, b)


def pool_padding_zeros(x, kernel_size, stride=None, padding=0):
    s = stride or kernel_size
    return F.pad(x, (padding,) * 4).unfold(2, kernel_size, s).unfold(3, kernel_size, s).amax(dim=(-2, -1))


def pool_zeros_to_minus_inf(x, kernel_size, stride=None, padding=0):
    """Pads with zeros, then turns every zero into -inf: wrong wherever the input itself has a zero maximum."""
    s = stride or kernel_size
    padded = F.pad(x, (padding,) * 4)
    padded = padded.masked_fill(padded == 0, float("-inf"))
    return padded.unfold(2, kernel_size, s).unfold(3, kernel_size, s).amax(dim=(-2, -1))


def pool_reshape_fast_path(x, kernel_size, stride=None, padding=0):
    """A reshape for non-overlapping windows (s == k) that forgets the padding."""
    k = kernel_size
    if (stride or k) == k:
        N, C, H, W = x.shape
        return x[..., :H // k * k, :W // k * k].reshape(N, C, H // k, k, W // k, k).amax(dim=(3, 5))
    return SOLUTION["max_pool2d"](x, k, stride, padding)


def pool_default_stride_one(x, kernel_size, stride=None, padding=0):
    return SOLUTION["max_pool2d"](x, kernel_size, stride or 1, padding)


def pool_ceil(x, kernel_size, stride=None, padding=0):
    """Rounds the output size up (ceil_mode) where PyTorch floors."""
    k, s, p = kernel_size, stride or kernel_size, padding
    padded = F.pad(x, (p, p + s - 1, p, p + s - 1), value=float("-inf"))
    return padded.unfold(2, k, s).unfold(3, k, s).amax(dim=(-2, -1))


# name -> (replacements, exactly the graded cells it must fail)
WRONG: dict[str, tuple[dict[str, Callable], set[str]]] = {
    "size_truncating_division": ({"conv_output_size": size_truncating_division}, {"test_conv_output_size"}),
    "size_fit_ignores_padding": ({"conv_output_size": size_fit_ignores_padding}, {"test_conv_output_size"}),
    "size_ceil": ({"conv_output_size": size_ceil}, {"test_conv_output_size"}),
    "size_fit_ignores_dilation": ({"conv_output_size": size_fit_ignores_dilation}, {"test_conv_output_size"}),
    "transpose_size_rejects_op_ge_stride": ({"conv_transpose_output_size": transpose_size_rejects_op_ge_stride},
                                            {"test_conv_transpose_output_size"}),
    "transpose_size_allows_zero": ({"conv_transpose_output_size": transpose_size_allows_zero},
                                   {"test_conv_transpose_output_size"}),
    "transpose_size_op_strict": ({"conv_transpose_output_size": transpose_size_op_strict},
                                 {"test_conv_transpose_output_size"}),
    "size_without_output_padding": ({"conv_transpose_output_size": size_without_output_padding},
                                    {"test_conv_transpose_output_size", "test_conv_transpose2d_via_matrix"}),
    "flipped_kernel": ({"conv2d_naive": flipped_kernel}, NAIVE),
    "padding_one_side": ({"conv2d_naive": padding_one_side},
                         {"test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation", "test_conv2d_naive_bias"}),
    "stride_off_by_one": ({"conv2d_naive": stride_off_by_one}, NAIVE),
    "dilating_the_input": ({"conv2d_naive": dilating_the_input},
                           {"test_conv2d_naive_dilation", "test_conv2d_naive_bias"}),
    "bias_once": ({"conv2d_naive": bias_once}, {"test_conv2d_naive_bias"}),
    "width_from_height": ({"conv2d_naive": width_from_height}, NAIVE),
    "kernel_must_fit_unpadded": ({"conv2d_naive": kernel_must_fit_unpadded},
                                 {"test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation"}),
    "square_kernel": ({"conv2d_naive": square_kernel}, NAIVE),
    "vectorized_flipped_kernel": ({"conv2d_vectorized": flipped_kernel}, VECTORIZED),
    "vectorized_loops_over_positions": ({"conv2d_vectorized": loops_over_positions}, {"test_conv2d_vectorized_fast"}),
    "vectorized_loop_over_images": ({"conv2d_vectorized": loop_over_images}, {"test_conv2d_vectorized_fast"}),
    "vectorized_loop_over_filters": ({"conv2d_vectorized": loop_over_filters}, {"test_conv2d_vectorized_fast"}),
    "matrix_transposed": ({"conv_matrix": matrix_transposed}, {"test_conv_matrix", "test_conv_transpose2d_via_matrix"}),
    "matrix_wraps_rows": ({"conv_matrix": matrix_wraps_rows}, {"test_conv_matrix", "test_conv_transpose2d_via_matrix"}),
    "matrix_ignores_stride": ({"conv_matrix": matrix_ignores_stride},
                              {"test_conv_matrix", "test_conv_transpose2d_via_matrix"}),
    "matrix_forgets_padding_offset": ({"conv_matrix": matrix_forgets_padding_offset},
                                      {"test_conv_matrix", "test_conv_transpose2d_via_matrix"}),
    "via_matrix_pads_zeros": ({"conv_transpose2d_via_matrix": via_matrix_pads_zeros},
                              {"test_conv_transpose2d_via_matrix"}),
    "transpose_ignoring_output_padding": ({"conv_transpose2d": transpose_ignoring_output_padding},
                                          {"test_conv_transpose2d_options", "test_conv_transpose2d_vectorized"}),
    "transpose_output_padding_by_slicing": ({"conv_transpose2d": transpose_output_padding_by_slicing},
                                            {"test_conv_transpose2d_options"}),
    "transpose_output_padding_after_crop": ({"conv_transpose2d": transpose_output_padding_after_crop},
                                            {"test_conv_transpose2d_options", "test_conv_transpose2d_vectorized"}),
    "transpose_output_padding_only_when_strided": ({"conv_transpose2d": transpose_output_padding_only_when_strided},
                                                   {"test_conv_transpose2d_options"}),
    "transpose_with_conv_weights_layout": ({"conv_transpose2d": transpose_with_conv_weights_layout},
                                           {"test_conv_transpose2d", "test_conv_transpose2d_options",
                                            "test_conv_transpose2d_vectorized"}),
    "transpose_crop_minus_p": ({"conv_transpose2d": transpose_crop_minus_p},
                               {"test_conv_transpose2d", "test_conv_transpose2d_options"}),
    "transpose_ignores_dilation": ({"conv_transpose2d": transpose_ignores_dilation}, {"test_conv_transpose2d_options"}),
    "transpose_loops_over_positions": ({"conv_transpose2d": transpose_loops_over_positions},
                                       {"test_conv_transpose2d_vectorized"}),
    "transpose_loops_over_input_channels": ({"conv_transpose2d": transpose_loops_over_input_channels},
                                            {"test_conv_transpose2d_vectorized"}),
    "pool_padding_zeros": ({"max_pool2d": pool_padding_zeros}, {"test_max_pool2d"}),
    "pool_zeros_to_minus_inf": ({"max_pool2d": pool_zeros_to_minus_inf}, {"test_max_pool2d"}),
    "pool_reshape_fast_path": ({"max_pool2d": pool_reshape_fast_path}, {"test_max_pool2d"}),
    "pool_default_stride_one": ({"max_pool2d": pool_default_stride_one}, {"test_max_pool2d"}),
    "pool_ceil": ({"max_pool2d": pool_ceil}, {"test_max_pool2d"}),
}


# --- back doors: PyTorch's own operators, reached around the Python names -----------------------------
_alias = F.conv2d
_partial = functools.partial(F.conv2d, groups=1)


def conv_import_by_name(x, w, b=None, stride=1, padding=0, dilation=1):
    return conv2d_by_name(x, w, b, stride=stride, padding=padding, dilation=dilation)


def conv_alias(x, w, b=None, stride=1, padding=0, dilation=1):
    return _alias(x, w, b, stride=stride, padding=padding, dilation=dilation)


def conv_aten(x, w, b=None, stride=1, padding=0, dilation=1):
    return torch.ops.aten.convolution(x, w, b, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], 1)


def conv_deformable(x, w, b=None, stride=1, padding=0, dilation=1):
    """torchvision's deformable convolution with zero offsets: an ordinary convolution under another name."""
    from torchvision.ops import deform_conv2d

    N, _, H, W = x.shape
    KH, KW = w.shape[2:]
    OH = (H + 2 * padding - dilation * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * padding - dilation * (KW - 1) - 1) // stride + 1
    offsets = x.new_zeros(N, 2 * KH * KW, OH, OW)
    return deform_conv2d(x, offsets, w, b, stride=stride, padding=padding, dilation=dilation)


def conv_partial(x, w, b=None, stride=1, padding=0, dilation=1):
    return _partial(x, w, b, stride=stride, padding=padding, dilation=dilation)


def conv_getattr_string(x, w, b=None, stride=1, padding=0, dilation=1):
    return getattr(F, "con" + "v2d")(x, w, b, stride=stride, padding=padding, dilation=dilation)


def conv_pytorch(x, w, b=None, stride=1, padding=0, dilation=1):
    return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)


def transpose_import_by_name(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    return conv_transpose2d_by_name(y, w, b, stride=stride, padding=padding, output_padding=output_padding,
                                    dilation=dilation)


def transpose_via_input_gradient(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """The input gradient of a convolution is the transposed convolution: torch.nn.grad computes it."""
    N, C, H, W = y.shape
    size = [N, w.shape[1]] + [(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
                             for n, k in zip((H, W), w.shape[2:], strict=True)]
    out = torch.nn.grad.conv2d_input(size, w, y, stride=stride, padding=padding, dilation=dilation)
    return out if b is None else out + b.view(1, -1, 1, 1)


def pool_pytorch(x, kernel_size, stride=None, padding=0):
    return F.max_pool2d(x, kernel_size, stride, padding)


def pool_aten(x, kernel_size, stride=None, padding=0):
    return torch.ops.aten.max_pool2d(x, [kernel_size] * 2, [stride or kernel_size] * 2, [padding] * 2)


def pool_3d_unsqueezed(x, kernel_size, stride=None, padding=0):
    s = stride or kernel_size
    return F.max_pool3d(x.unsqueeze(2), (1, kernel_size, kernel_size), (1, s, s), (0, padding, padding)).squeeze(2)


def pool_aten_3d(x, kernel_size, stride=None, padding=0):
    s = stride or kernel_size
    return torch.ops.aten.max_pool3d(x.unsqueeze(2), [1, kernel_size, kernel_size], [1, s, s],
                                     [0, padding, padding]).squeeze(2)


def pool_1d_twice(x, kernel_size, stride=None, padding=0):
    """A k x k max is a max over rows of a max over columns: two passes of max_pool1d."""
    k, s, p = kernel_size, stride or kernel_size, padding
    N, C, H, W = x.shape
    rows = F.max_pool1d(x.reshape(N * C * H, 1, W), k, s, p).reshape(N, C, H, -1)  # (N, C, H, W')
    Wo = rows.shape[-1]
    cols = F.max_pool1d(rows.transpose(2, 3).reshape(N * C * Wo, 1, H), k, s, p)  # (N*C*W', 1, H')
    return cols.reshape(N, C, Wo, -1).transpose(2, 3)


BACK_DOORS: dict[str, tuple[dict[str, Callable], set[str]]] = {
    "conv_pytorch": ({"conv2d_naive": conv_pytorch}, NAIVE),
    "conv_import_by_name": ({"conv2d_naive": conv_import_by_name, "conv2d_vectorized": conv_import_by_name},
                            NAIVE | VECTORIZED),
    "conv_alias": ({"conv2d_naive": conv_alias}, NAIVE),
    "conv_aten": ({"conv2d_vectorized": conv_aten}, VECTORIZED),
    "conv_deformable": ({"conv2d_vectorized": conv_deformable}, VECTORIZED),
    "conv_partial": ({"conv2d_naive": conv_partial}, NAIVE),
    "conv_getattr_string": ({"conv2d_vectorized": conv_getattr_string}, VECTORIZED),
    "transpose_import_by_name": ({"conv_transpose2d": transpose_import_by_name}, TRANSPOSE),
    "transpose_via_input_gradient": ({"conv_transpose2d": transpose_via_input_gradient}, TRANSPOSE),
    "pool_pytorch": ({"max_pool2d": pool_pytorch}, {"test_max_pool2d"}),
    "pool_aten": ({"max_pool2d": pool_aten}, {"test_max_pool2d"}),
    "pool_3d_unsqueezed": ({"max_pool2d": pool_3d_unsqueezed}, {"test_max_pool2d"}),
    "pool_aten_3d": ({"max_pool2d": pool_aten_3d}, {"test_max_pool2d"}),
    "pool_1d_twice": ({"max_pool2d": pool_1d_twice}, {"test_max_pool2d"}),
}


def reference_for(name: str) -> Callable[..., Any]:
    """PyTorch's own function for a notebook function (to prove a back door computes the right answer)."""
    return {"conv2d_naive": F.conv2d, "conv2d_vectorized": F.conv2d, "conv_transpose2d": F.conv_transpose2d,
            "max_pool2d": F.max_pool2d}[name]


def caught(replacements: dict[str, Callable], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it (COURSE_GRADING_SEED is set
    to each secret in turn and restored afterwards)."""
    return vh.catch_rates(caught, WRONG, secrets, names)
