"""The conv-matrix viewer (lecture 02): its matrix agrees with PyTorch, its figure lights the right cells."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from matplotlib.colors import to_rgba

from course_utils import widgets
from course_utils.widgets import conv_matrix
from course_utils.widgets.conv_matrix import HIGHLIGHT

# (i, k, s, p): stride 1 and 2, padding, a kernel as big as the padded input, a 1x1 kernel,
# and settings where the last stride does not fit (PyTorch floors and leaves input unread)
SETTINGS = [(3, 2, 1, 0), (5, 3, 1, 1), (6, 3, 2, 1), (7, 3, 3, 0), (7, 3, 2, 0), (4, 4, 2, 1), (5, 1, 2, 0),
            (8, 5, 3, 2), (2, 3, 1, 1), (1, 1, 1, 0)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _filled(ids, w):
    """C with the kernel's values in place of the weight ids (0 where ids is -1)."""
    return torch.where(ids >= 0, w.flatten()[ids.clamp(min=0)], torch.zeros((), dtype=w.dtype))


def _lit(ax):
    return sum(1 for patch in ax.patches if patch.get_gid() == HIGHLIGHT)


@pytest.mark.parametrize("i, k, s, p", SETTINGS)
def test_the_matrix_is_conv2d_and_its_transpose_is_conv_transpose2d(i, k, s, p):
    generator = torch.Generator().manual_seed(i * 1000 + k * 100 + s * 10 + p)
    ids, o = widgets.conv_matrix_of(i, k, s, p)
    assert ids.dtype == torch.int64 and ids.shape == (o * o, i * i)
    assert o == (i + 2 * p - k) // s + 1
    for _ in range(3):
        w = torch.randn(k, k, generator=generator, dtype=torch.float64)
        x = torch.randn(i, i, generator=generator, dtype=torch.float64)
        y = torch.randn(o, o, generator=generator, dtype=torch.float64)
        C = _filled(ids, w)  # (o², i²)
        expected = F.conv2d(x[None, None], w[None, None], stride=s, padding=p).flatten()
        torch.testing.assert_close(C @ x.flatten(), expected)
        a = (i + 2 * p - k) % s  # the output padding that brings the transposed conv back to size i
        expected_t = F.conv_transpose2d(y[None, None], w[None, None], stride=s, padding=p, output_padding=a)
        assert expected_t.shape[-2:] == (i, i)
        torch.testing.assert_close(C.T @ y.flatten(), expected_t.flatten())


def test_the_lecture_example_is_the_hand_written_4x9_matrix():
    ids, o = widgets.conv_matrix_of(3, 2)
    C = _filled(ids, torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    by_hand = torch.tensor([[0, 1, 0, 2, 3, 0, 0, 0, 0],
                            [0, 0, 1, 0, 2, 3, 0, 0, 0],
                            [0, 0, 0, 0, 1, 0, 2, 3, 0],
                            [0, 0, 0, 0, 0, 1, 0, 2, 3]], dtype=torch.float32)
    assert o == 2 and torch.equal(C, by_hand)
    y = C @ torch.arange(1.0, 10.0)
    assert y.tolist() == [25, 31, 43, 49]
    assert (C.T @ y).tolist() == [0, 25, 31, 50, 180, 142, 86, 227, 147]
    # the symbolic version: w[0,0] (id 0) sits where the numbers show a 0
    assert ids[0].tolist() == [0, 1, -1, 2, 3, -1, -1, -1, -1]


@pytest.mark.parametrize("i, k, s", [(3, 2, 1), (6, 3, 2), (7, 3, 3), (5, 5, 1)])
def test_without_padding_every_weight_appears_once_per_output(i, k, s):
    ids, o = widgets.conv_matrix_of(i, k, s, 0)
    for weight in range(k * k):
        assert int((ids == weight).sum()) == o * o
    assert all(sorted(row[row >= 0].tolist()) == list(range(k * k)) for row in ids)  # each row: all k² weights


@pytest.mark.parametrize("i, k, s, p", [(5, 3, 1, 1), (6, 3, 2, 1), (4, 4, 2, 1), (3, 3, 1, 2), (8, 5, 3, 2)])
def test_with_padding_a_weight_appears_only_where_it_lands_on_the_input(i, k, s, p):
    ids, o = widgets.conv_matrix_of(i, k, s, p)

    def hits(offset):  # output rows r whose tap s*r + offset - p is a real input row, not padding
        return sum(0 <= s * r + offset - p < i for r in range(o))

    for row in range(k):
        for col in range(k):
            assert int((ids == row * k + col).sum()) == hits(row) * hits(col)
    assert int((ids == 0).sum()) < o * o  # the corner weight reads the padding for the first output


@pytest.mark.parametrize("i, k, s, p, weight", [(3, 2, 1, 0, (0, 1)), (5, 3, 2, 1, (0, 0)), (5, 3, 2, 1, (1, 1)),
                                                (7, 3, 3, 0, (2, 2)), (4, 2, 1, 1, (1, 0))])
def test_the_figure_lights_every_cell_of_the_chosen_weight(i, k, s, p, weight):
    ids, o = widgets.conv_matrix_of(i, k, s, p)
    count = int((ids == weight[0] * k + weight[1]).sum())
    fig = widgets.conv_matrix_figure(i, k, s, p, weight)
    ax_w, ax_c, ax_t = fig.axes
    assert (_lit(ax_w), _lit(ax_c), _lit(ax_t)) == (1, count, count)
    assert ax_c.images[0].get_array().shape == (o * o, i * i)
    assert ax_t.images[0].get_array().shape == (i * i, o * o)
    title = fig._suptitle.get_text()
    assert f"(o², i²) = ({o * o}, {i * i})" in title and f"o={o}" in title
    assert f"w[{weight[0]},{weight[1]}] appears {count} times" in title
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in fig.axes)


def test_the_summary_names_unread_input():
    assert "never read" not in widgets.conv_matrix_summary(7, 3, 2, 0)
    assert "the last 1 padded row(s)/col(s) are never read" in widgets.conv_matrix_summary(7, 3, 3, 0)


def test_the_figure_follows_the_weight():
    def lit_cells(weight):
        fig = widgets.conv_matrix_figure(4, 2, 1, 0, weight)
        return sorted(patch.get_xy() for patch in fig.axes[1].patches if patch.get_gid() == HIGHLIGHT)

    assert lit_cells((0, 0)) != lit_cells((1, 1))
    assert lit_cells((0, 0)) == lit_cells((0, 0))


@pytest.mark.parametrize("args, message", [
    ((3, 5, 1, 0), r"kernel size k=5 is larger than the padded input i \+ 2p = 3 \+ 2\*0 = 3"),
    ((0, 1, 1, 0), "input size i must be at least 1, got 0"),
    ((3, 0, 1, 0), "kernel size k must be at least 1, got 0"),
    ((3, 2, 0, 0), "stride s must be at least 1, got 0"),
    ((3, 2, 1, -1), "padding p must be at least 0, got -1"),
    ((2.5, 2, 1, 0), "input size i must be an int, got 2.5"),
    ((3, True, 1, 0), "kernel size k must be an int, got True"),
])
def test_impossible_settings_raise_and_say_what_was_expected(args, message):
    with pytest.raises(ValueError, match=message):
        widgets.conv_matrix_of(*args)
    with pytest.raises(ValueError, match=message):
        widgets.conv_matrix_figure(*args)


@pytest.mark.parametrize("weight", [(2, 0), (0, 2), (-1, 0), (0, 0, 0), "a"])
def test_a_weight_outside_the_kernel_is_refused(weight):
    with pytest.raises(ValueError, match="weight"):
        widgets.conv_matrix_figure(3, 2, 1, 0, weight)


def test_the_viewer_wires_every_control_and_explains_impossible_settings():
    viewer = widgets.conv_matrix_viewer()
    controls = {c.description: c for c in viewer.children[:-1]}
    assert set(controls) == {"input size i", "kernel size k", "stride s", "padding p", "weight row", "weight col"}
    assert "(o², i²) = (4, 9)" in viewer.result  # the lecture's example first
    figures = len(plt.get_fignums())
    controls["input size i"].value = 5
    assert "(o², i²) = (16, 25)" in viewer.result and len(plt.get_fignums()) == figures + 1
    controls["stride s"].value = 2
    assert "o=2" in viewer.result
    controls["weight row"].value = 1
    assert "w[1,1]" in viewer.result
    controls["kernel size k"].value = 4
    assert controls["weight row"].max == controls["weight col"].max == 3
    controls["weight col"].value = 3
    assert "w[1,3]" in viewer.result
    controls["kernel size k"].value = 2  # the weight sliders follow the smaller kernel
    assert controls["weight col"].max == 1 and controls["weight col"].value == 1 and "w[1,1]" in viewer.result
    controls["input size i"].value = 1
    controls["kernel size k"].value = 3  # larger than the padded input: a message, not an exception
    assert "kernel size k=3 is larger than the padded input" in viewer.result
    controls["padding p"].value = 1
    assert "(o², i²) = (1, 1)" in viewer.result


@pytest.mark.parametrize("k, apart", [(1, 0.1), (2, 0.1), (3, 0.1), (5, 0.08), (7, 0.05)])
def test_every_weight_of_a_kernel_has_its_own_colour(k, apart):
    colours = conv_matrix.weight_colours(k)
    assert colours.shape == (k * k, 4)
    distances = np.linalg.norm(colours[:, None, :3] - colours[None, :, :3], axis=-1)  # RGB, 0..sqrt(3)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > apart  # no two weights look alike (viridis with 25 weights: 0.03)
    empty = np.array(to_rgba(conv_matrix._EMPTY)[:3])
    assert np.linalg.norm(colours[:, :3] - empty, axis=1).min() > 0.1  # nor like a structural zero


def _cell_inches(fig, ax):
    """Width and height of one matrix cell of ``ax``, in inches."""
    box = ax.get_position()  # figure fractions
    n_rows, n_cols = ax.images[0].get_array().shape
    width, height = fig.get_size_inches()
    return box.width * width / n_cols, box.height * height / n_rows


@pytest.mark.parametrize("i, k, s, p", [(3, 2, 1, 0), (7, 3, 3, 0), (5, 3, 2, 1), (8, 5, 1, 2), (8, 1, 1, 2),
                                        (1, 1, 1, 0), (8, 2, 3, 0)])
def test_cells_are_squares_of_one_size_and_the_figure_stays_readable(i, k, s, p):
    fig = widgets.conv_matrix_figure(i, k, s, p)
    ax_w, ax_c, ax_t = fig.axes
    fig.canvas.draw()
    cells = [_cell_inches(fig, ax) for ax in (ax_c, ax_t)]
    for width, height in cells:  # square, not stretched into stripes (a (4, 49) matrix used to be)
        assert width == pytest.approx(height, rel=1e-6)
    assert cells[0][0] == pytest.approx(cells[1][0], rel=1e-6)  # the same size in C and Cᵀ
    assert _cell_inches(fig, ax_w)[0] >= cells[0][0] - 1e-9  # the legend is never smaller
    width, height = fig.get_size_inches()
    assert width <= 14 and height <= 10  # fits a notebook page
    o = (i + 2 * p - k) // s + 1
    assert cells[0][0] == pytest.approx(conv_matrix.matrix_cell_size(i, o))
    assert cells[0][0] * 100 >= 3.5  # pixels at the notebook's 100 dpi, even for the largest, (144, 64)
    # cells big enough to read print their weight ("rc"); the kernel (the legend) always does
    labelled = cells[0][0] >= conv_matrix._LABELLED_CELL
    assert bool(ax_c.texts) == labelled and len(ax_w.texts) == k * k
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    for ax in fig.axes:  # titles and labels are inside the figure, not cut off
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            box = text.get_window_extent(renderer)
            assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, text.get_text()
            assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, text.get_text()


def test_the_lecture_examples_print_their_weights():
    for args in [(3, 2, 1, 0), (5, 3, 2, 1)]:
        fig = widgets.conv_matrix_figure(*args)
        texts = {t.get_text() for t in fig.axes[1].texts}
        k = args[1]
        assert texts == {f"{r}{c}" for r in range(k) for c in range(k)}
