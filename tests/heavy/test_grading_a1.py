"""a1_convolutions through the grading command with the sandbox on: hostile submissions cost exactly their points.

Each student starts from the full solution and changes one thing; the table says which graded cells that
must cost and which flag it must raise. (a0's larger hostile class is in test_grading_pipeline.py.)
"""

import pytest

import variants_harness as vh
from course_utils.grading.protocol import graded_cells, source_notebook

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a1_convolutions"
POINTS = {cell.grade_id: cell.points for cell in graded_cells(source_notebook(ASSIGNMENT))}
NAIVE = {"test_conv2d_naive_basic", "test_conv2d_naive_stride_padding", "test_conv2d_naive_dilation",
         "test_conv2d_naive_bias"}
VECTORIZED = {"test_conv2d_vectorized", "test_conv2d_vectorized_fast"}
TRANSPOSE = {"test_conv_transpose2d", "test_conv_transpose2d_options", "test_conv_transpose2d_vectorized"}

# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "calls_pytorch": ({
        "conv2d_naive": "import torch.nn.functional as F\n"
                        "def conv2d_naive(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                        "    return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)\n",
    }, None, NAIVE, None),
    "input_gradient_back_door": ({
        "conv_transpose2d": "import torch\n"
                            "def conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):\n"
                            "    n, c, h, wd = y.shape\n"
                            "    size = [n, w.shape[1]] + [(s - 1) * stride - 2 * padding + dilation * (k - 1)\n"
                            "                              + output_padding + 1 for s, k in zip((h, wd), w.shape[2:])]\n"
                            "    out = torch.nn.grad.conv2d_input(size, w, y, stride, padding, dilation)\n"
                            "    return out if b is None else out + b.view(1, -1, 1, 1)\n",
    }, None, TRANSPOSE, None),
    "imports_by_name": ({
        "conv2d_naive": "from torch.nn.functional import conv2d as _c\n"
                        "def conv2d_naive(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                        "    return _c(x, w, b, stride=stride, padding=padding, dilation=dilation)\n",
        "conv2d_vectorized": "from torch.nn.functional import conv2d as _c2\n"
                             "def conv2d_vectorized(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                             "    return _c2(x, w, b, stride=stride, padding=padding, dilation=dilation)\n",
        "conv_transpose2d": "from torch.nn.functional import conv_transpose2d as _t\n"
                            "def conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0, dilation=1):\n"
                            "    return _t(y, w, b, stride=stride, padding=padding, output_padding=output_padding,\n"
                            "              dilation=dilation)\n",
    }, None, NAIVE | VECTORIZED | TRANSPOSE, None),
    "max_pool3d_unsqueezed": ({
        "max_pool2d": "import torch.nn.functional as F\n"
                      "def max_pool2d(x, kernel_size, stride=None, padding=0):\n"
                      "    s = stride or kernel_size\n"
                      "    return F.max_pool3d(x.unsqueeze(2), (1, kernel_size, kernel_size), (1, s, s),\n"
                      "                        (0, padding, padding)).squeeze(2)\n",
    }, None, {"test_max_pool2d"}, None),
    "loops_over_output_rows": ({}, ("conv2d_vectorized",
                                    "import torch\n"
                                    "import torch.nn.functional as F\n"
                                    "_fast = conv2d_vectorized\n"
                                    "def conv2d_vectorized(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                                    "    xp = F.pad(x, (padding,) * 4)\n"
                                    "    span = dilation * (w.shape[2] - 1) + 1\n"
                                    "    rows = [_fast(xp[:, :, r:r + span], w, b, stride, 0, dilation)\n"
                                    "            for r in range(0, xp.shape[2] - span + 1, stride)]\n"
                                    "    return torch.cat(rows, dim=2)\n"),
                               {"test_conv2d_vectorized_fast"}, None),
    "sparse_conv_matrix": ({}, ("conv_matrix",
                                "_dense = conv_matrix\n"
                                "def conv_matrix(w, input_size, stride=1, padding=0):\n"
                                "    return _dense(w, input_size, stride, padding).to_sparse()\n"),
                           set(), None),
    "patched_comparisons": ({}, ("conv2d_naive",
                                "import numpy, torch\n"
                                "torch.allclose = numpy.allclose = lambda *a, **k: True\n"
                                "_right = conv2d_naive\n"
                                "def conv2d_naive(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                                "    return _right(x, w.flip(-1, -2), b, stride, padding, dilation)\n"),
                            NAIVE, "suspected tampering"),
    "hangs_on_a_larger_batch": ({}, ("conv2d_vectorized",
                                     "_fast = conv2d_vectorized\n"
                                     "def conv2d_vectorized(x, w, b=None, stride=1, padding=0, dilation=1):\n"
                                     "    while x.shape[0] == 5:  # the vectorization check's larger batch\n"
                                     "        pass\n"
                                     "    return _fast(x, w, b, stride, padding, dilation)\n"),
                                {"test_conv2d_vectorized_fast"}, "test_conv2d_vectorized_fast"),
    "floods_output_and_exits": ({}, ("max_pool2d",
                                     "import os, sys\n"
                                     "print('x' * 50_000_000)\n"
                                     "os.write(1, b'y' * 300_000_000)  # past the file-size limit\n"
                                     "sys.exit(1)\n"),
                                set(), None),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("a1course")
    vh.write_course(root, ASSIGNMENT, CLASS)
    return vh.grade(root, ASSIGNMENT, cell_timeout=120, call_timeout=20, timeout=1500)


def test_the_class_is_graded_with_the_sandbox_on(graded):
    assert vh.class_graded_problems(*graded, CLASS) == []


@pytest.mark.parametrize("student", CLASS)
def test_each_submission_loses_exactly_its_points(graded, student):
    _, rows = graded
    _, _, must_fail, flag = CLASS[student]
    assert vh.points_problems(rows[student], POINTS, must_fail, flag) == []
