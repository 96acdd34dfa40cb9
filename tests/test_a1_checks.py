"""a1's checks, called directly: differently written correct answers pass, the common wrong ones lose points.

The solution notebook's own code is loaded from solutions/ (so these tests follow it), and each variant below
replaces one function of it. For each kept wrong variant we assert exactly which graded cells it must fail.
"""

import re
import time

import pytest
import torch
import torch.nn.functional as F

from course_utils.grading import COURSE_ROOT
from course_utils.grading.protocol import run_checks
from course_utils.grading.protocol import solution_namespace as load_solution

SOURCE = COURSE_ROOT / "solutions" / "a1_convolutions" / "a1_convolutions.ipynb"
ALL_CELLS = {"test_conv_output_size", "test_conv_transpose_output_size", "test_conv2d_naive_basic",
             "test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation", "test_conv2d_naive_bias",
             "test_conv2d_vectorized", "test_conv2d_vectorized_fast", "test_conv_matrix",
             "test_conv_transpose2d_via_matrix", "test_conv_transpose2d", "test_conv_transpose2d_options",
             "test_max_pool2d"}


def solution_namespace() -> dict:
    """The solution's functions (its locked and answer cells, run in a fresh namespace)."""
    return load_solution("a1_convolutions")


SOLUTION = solution_namespace()


def failing_cells(**replacements) -> set[str]:
    """Graded cells that fail when the notebook's functions are replaced (like a student's redefinitions,
    seen by the other functions too: they look names up in the notebook's namespace)."""
    namespace = solution_namespace()
    namespace.update(replacements)
    results = run_checks("a1_convolutions", namespace)
    assert set(results) == ALL_CELLS
    return {grade_id for grade_id, result in results.items() if not result.passed}


# --- correct, written differently --------------------------------------------------------------------
def conv2d_by_taps(x, w, b=None, stride=1, padding=0, dilation=1):
    """Vectorized over positions with strided slices, a loop over the K_H * K_W taps (no unfold)."""
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    s, p, d = stride, padding, dilation
    Ho, Wo = (H + 2 * p - d * (KH - 1) - 1) // s + 1, (W + 2 * p - d * (KW - 1) - 1) // s + 1
    xp = torch.zeros(N, C, H + 2 * p, W + 2 * p, dtype=x.dtype)
    xp[..., p:p + H, p:p + W] = x
    out = torch.zeros(N, F_, Ho, Wo, dtype=x.dtype)
    for u in range(KH):
        for v in range(KW):
            patch = xp[..., u * d:u * d + s * (Ho - 1) + 1:s, v * d:v * d + s * (Wo - 1) + 1:s]  # (N, C, Ho, Wo)
            out += torch.tensordot(patch, w[:, :, u, v], dims=([1], [1])).permute(0, 3, 1, 2)
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


def conv_matrix_by_probing(w, input_size, stride=1, padding=0):
    """Column j of C is the (flattened) convolution of the j-th one-hot image: uses the student's own conv."""
    H, W = input_size
    probes = torch.eye(H * W, dtype=w.dtype).reshape(H * W, 1, H, W)
    return conv2d_by_taps(probes, w[None, None], stride=stride, padding=padding).reshape(H * W, -1).T


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


def test_the_solution_gets_every_point():
    assert failing_cells() == set()


def test_differently_written_correct_answers_get_every_point():
    assert failing_cells(conv2d_naive=conv2d_by_taps, conv2d_vectorized=conv2d_as_strided,
                         conv_matrix=conv_matrix_by_probing, conv_transpose2d=conv_transpose2d_by_dilating,
                         max_pool2d=max_pool2d_loops) == set()
    assert failing_cells(conv2d_vectorized=conv2d_by_taps) == set()  # a loop over taps only is vectorized


# --- wrong ------------------------------------------------------------------------------------------
def flipped_kernel(x, w, b=None, stride=1, padding=0, dilation=1):
    """True convolution where cross-correlation is asked."""
    return SOLUTION["conv2d_vectorized"](x, w.flip(-1, -2), b, stride, padding, dilation)


def padding_one_side(x, w, b=None, stride=1, padding=0, dilation=1):
    return SOLUTION["conv2d_vectorized"](F.pad(x, (padding, 0, padding, 0)), w, b, stride, 0, dilation)


def stride_off_by_one(x, w, b=None, stride=1, padding=0, dilation=1):
    """Stops one window early: range(0, last, s) instead of range(0, last + 1, s)."""
    out = SOLUTION["conv2d_vectorized"](x, w, b, stride, padding, dilation)
    span_h = dilation * (w.shape[2] - 1) + 1
    fits_exactly = (x.shape[2] + 2 * padding - span_h) % stride == 0
    return out[:, :, :-1] if fits_exactly else out


def dilating_the_input(x, w, b=None, stride=1, padding=0, dilation=1):
    """Takes every d-th input pixel instead of spreading the kernel taps."""
    return SOLUTION["conv2d_vectorized"](F.pad(x, (padding,) * 4)[..., ::dilation, ::dilation], w, b, stride, 0, 1)


def bias_once(x, w, b=None, stride=1, padding=0, dilation=1):
    """Adds the bias to one position per image instead of every position."""
    out = SOLUTION["conv2d_vectorized"](x, w, None, stride, padding, dilation)
    if b is not None:
        out[:, :, 0, 0] += b
    return out


def slow_but_right(x, w, b=None, stride=1, padding=0, dilation=1):
    """Stands for loops over positions on the big layer (which would take many seconds)."""
    if x.numel() > 100_000:
        time.sleep(5.5)
    return SOLUTION["conv2d_vectorized"](x, w, b, stride, padding, dilation)


def size_without_output_padding(i, k, s=1, p=0, d=1, output_padding=0):
    return (i - 1) * s - 2 * p + d * (k - 1) + 1


def matrix_transposed(w, input_size, stride=1, padding=0):
    return SOLUTION["conv_matrix"](w, input_size, stride, padding).T


def transpose_ignoring_output_padding(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    return SOLUTION["conv_transpose2d"](y, w, b, stride, padding, 0, dilation)


def transpose_with_conv_weights_layout(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Reads the weights as (F, C, KH, KW): right only when C == F and the kernel is symmetric."""
    return SOLUTION["conv_transpose2d"](y, w.transpose(0, 1).contiguous().view_as(w), b, stride, padding,
                                        output_padding, dilation)


def pool_padding_zeros(x, kernel_size, stride=None, padding=0):
    s = stride or kernel_size
    return F.pad(x, (padding,) * 4).unfold(2, kernel_size, s).unfold(3, kernel_size, s).amax(dim=(-2, -1))


def uses_pytorch(x, w, b=None, stride=1, padding=0, dilation=1):
    return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)


def pool_uses_pytorch(x, kernel_size, stride=None, padding=0):
    return F.max_pool2d(x, kernel_size, stride, padding)


# Back doors to the same references (found by review): each must be shut while the check runs.
def uses_aten(x, w, b=None, stride=1, padding=0, dilation=1):
    return torch.ops.aten.convolution(x, w, b, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], 1)


def transpose_via_input_gradient(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):
    """The input gradient of a convolution is the transposed convolution: torch.nn.grad computes it."""
    N, C, H, W = y.shape
    size = [N, w.shape[1]] + [(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
                             for n, k in zip((H, W), w.shape[2:])]
    out = torch.nn.grad.conv2d_input(size, w, y, stride=stride, padding=padding, dilation=dilation)
    return out if b is None else out + b.view(1, -1, 1, 1)


def pool_uses_aten(x, kernel_size, stride=None, padding=0):
    return torch.ops.aten.max_pool2d(x, [kernel_size] * 2, [stride or kernel_size] * 2, [padding] * 2)


CONV2D_CELLS = {"test_conv2d_naive_basic", "test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation",
                "test_conv2d_naive_bias"}


@pytest.mark.parametrize("variant, must_fail", [
    (flipped_kernel, CONV2D_CELLS),
    (padding_one_side, {"test_conv2d_naive_stride_padding"}),
    (stride_off_by_one, {"test_conv2d_naive_stride_padding"}),
    (dilating_the_input, {"test_conv2d_naive_dilation"}),
    (bias_once, {"test_conv2d_naive_bias"}),
    (uses_pytorch, CONV2D_CELLS),
    (uses_aten, CONV2D_CELLS),
])
def test_wrong_conv2d_loses_the_points_of_its_question(variant, must_fail):
    failed = failing_cells(conv2d_naive=variant)
    assert must_fail <= failed <= CONV2D_CELLS, failed
    failed = failing_cells(conv2d_vectorized=variant)
    assert failed == {"test_conv2d_vectorized", "test_conv2d_vectorized_fast"} or \
        failed == {"test_conv2d_vectorized"}, failed


def test_a_slow_conv2d_fails_only_the_speed_check():
    assert failing_cells(conv2d_vectorized=slow_but_right) == {"test_conv2d_vectorized_fast"}


@pytest.mark.parametrize("replacements, must_fail", [
    ({"conv_transpose_output_size": size_without_output_padding},
     {"test_conv_transpose_output_size", "test_conv_transpose2d_via_matrix"}),
    ({"conv_matrix": matrix_transposed}, {"test_conv_matrix", "test_conv_transpose2d_via_matrix"}),
    ({"conv_transpose2d": transpose_ignoring_output_padding}, {"test_conv_transpose2d_options"}),
    ({"conv_transpose2d": transpose_with_conv_weights_layout}, {"test_conv_transpose2d",
                                                                "test_conv_transpose2d_options"}),
    ({"max_pool2d": pool_padding_zeros}, {"test_max_pool2d"}),
    ({"max_pool2d": pool_uses_pytorch}, {"test_max_pool2d"}),
    ({"max_pool2d": pool_uses_aten}, {"test_max_pool2d"}),
    ({"conv_transpose2d": transpose_via_input_gradient}, {"test_conv_transpose2d", "test_conv_transpose2d_options"}),
])
def test_wrong_transposed_and_pooling_answers_lose_their_points(replacements, must_fail):
    assert failing_cells(**replacements) == must_fail


def test_every_autograded_cell_fails_for_some_kept_wrong_variant():
    """Collected over the variants above: no graded cell passes everything."""
    wrong = [{"conv2d_naive": flipped_kernel, "conv2d_vectorized": slow_but_right},
             {"conv_transpose_output_size": size_without_output_padding, "conv_output_size": lambda *a, **k: 0},
             {"conv_matrix": matrix_transposed}, {"conv_transpose2d": transpose_with_conv_weights_layout},
             {"max_pool2d": pool_padding_zeros}, {"conv2d_vectorized": flipped_kernel}]
    failed = set().union(*(failing_cells(**w) for w in wrong))
    assert failed == ALL_CELLS, ALL_CELLS - failed


def test_failure_messages_say_what_was_expected_and_given():
    result = run_checks("a1_convolutions", {**SOLUTION, "conv2d_naive": padding_one_side})
    message = result["test_conv2d_naive_stride_padding"].failure
    assert "should have shape (2, 4, 4, 4), got (2, 4, 3, 3)" in message
    result = run_checks("a1_convolutions", {**SOLUTION, "conv2d_naive": flipped_kernel})
    assert re.search(r"values are off; the largest error is [\d.]+ at index \(", result["test_conv2d_naive_basic"].failure)
    result = run_checks("a1_convolutions", {**SOLUTION, "max_pool2d": pool_uses_pytorch})
    assert "max_pool2d cannot be used in this answer" in result["test_max_pool2d"].failure


def test_the_back_doors_really_compute_the_right_answer():
    """Otherwise the tests above would prove nothing: outside a check, each variant is correct."""
    g = torch.Generator().manual_seed(0)
    x, w, y, wt = (torch.randn(*shape, generator=g) for shape in ((2, 3, 7, 6), (4, 3, 3, 2), (2, 3, 3, 4),
                                                                    (3, 2, 3, 3)))
    assert torch.allclose(uses_aten(x, w, stride=2, padding=1), F.conv2d(x, w, stride=2, padding=1), atol=1e-5)
    assert torch.allclose(transpose_via_input_gradient(y, wt, stride=2, padding=1, output_padding=1),
                          F.conv_transpose2d(y, wt, stride=2, padding=1, output_padding=1), atol=1e-5)
    assert torch.equal(pool_uses_aten(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
