"""a2_backprop_init through the grading command with the sandbox on: hostile submissions cost exactly their points.

Each student starts from the full solution and changes one thing; the table says which graded cells that
must cost and which flag it must raise (the pattern of test_grading_a1.py).
"""

import pytest

import variants_harness as vh
from course_utils.grading.protocol import graded_cells, source_notebook

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a2_backprop_init"
POINTS = {cell.grade_id: cell.points for cell in graded_cells(source_notebook(ASSIGNMENT))}
LINEAR = {"test_linear", "test_two_layer_loss", "test_two_layer_training"}

# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "softmax_without_max_subtraction": ({}, ("softmax_cross_entropy",
                                             "def softmax_cross_entropy(logits, y):\n"
                                             "    n = logits.shape[0]\n"
                                             "    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)\n"
                                             "    loss = -np.log(p[np.arange(n), y]).mean()\n"
                                             "    p[np.arange(n), y] -= 1\n"
                                             "    return float(loss), p / n\n"),
                                        {"test_softmax_cross_entropy"}, None),
    "relu_passes_dout_everywhere": ({}, ("relu",
                                         "def relu_backward(dout, cache):\n"
                                         "    return dout.copy()\n"),
                                    {"test_relu", "test_two_layer_loss"}, None),
    "autograd_imported_by_name": ({}, ("linear",
                                       "from torch.autograd import grad as _grad\n"
                                       "import torch as _t\n"
                                       "def linear_backward(dout, cache):\n"
                                       "    x, w = (_t.tensor(a, requires_grad=True) for a in cache)\n"
                                       "    out = x @ w.T\n"
                                       "    dx, dw = _grad(out, (x, w), _t.from_numpy(dout))\n"
                                       "    return dx.numpy(), dw.numpy(), dout.sum(axis=0)\n"),
                                  LINEAR, None),
    "kaiming_is_lecun": ({}, ("initializers",
                              "def kaiming_normal(fan_in, fan_out, rng):\n"
                              "    return rng.normal(0.0, np.sqrt(1 / fan_in), size=(fan_out, fan_in))\n"),
                         {"test_kaiming_normal"}, None),
    "scipy_correlate2d": ({}, ("conv2d_backward",
                               "from scipy.signal import correlate2d, convolve2d\n"
                               "def conv2d_backward(dout, cache):\n"
                               "    x, w, b, s, p = cache\n"
                               "    N, C, H, W = x.shape\n"
                               "    F_, _, KH, KW = w.shape\n"
                               "    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))\n"
                               "    ho, wo = dout.shape[2:]\n"
                               "    d = np.zeros(dout.shape[:2] + (s * (ho - 1) + 1, s * (wo - 1) + 1))\n"
                               "    d[:, :, ::s, ::s] = dout\n"
                               "    dw = np.zeros_like(w)\n"
                               "    dxp = np.zeros_like(xp)\n"
                               "    for n in range(N):\n"
                               "        for f in range(F_):\n"
                               "            for c in range(C):\n"
                               "                dw[f, c] += correlate2d(xp[n, c], d[n, f], mode='valid')[:KH, :KW]\n"
                               "                full = convolve2d(d[n, f], w[f, c], mode='full')\n"
                               "                full = full[:xp.shape[2], :xp.shape[3]]\n"
                               "                dxp[n, c, :full.shape[0], :full.shape[1]] += full\n"
                               "    return dxp[:, :, p:p + H, p:p + W], dw, dout.sum(axis=(0, 2, 3))\n"),
                          set(), "scipy.signal.correlate2d"),
}


(graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
 test_each_submission_loses_exactly_its_points) = vh.hostile_class(
    ASSIGNMENT, CLASS, POINTS, cell_timeout=120, call_timeout=20, timeout=1500)
