"""The conv-matrix viewer (lecture 02): a single-channel convolution as a matrix C, and its transpose.

A convolution (PyTorch's cross-correlation) of an i x i input with a k x k kernel,
stride s and padding p is a linear map ``y = C x`` on the flattened images, with
C of shape (o², i²) (rows: output positions, columns: input positions, both in
row-major order) and o from formula (1) of ``docs/notation.md``. The transposed
convolution computes ``Cᵀ y``. The viewer draws C and Cᵀ and lights the cells
that hold one chosen kernel weight.

C is found by asking PyTorch: push each one-hot input image through ``F.conv2d``
with a kernel whose weights are 1, 2, ..., k² and read which weight lands where.
Nothing here builds the matrix from the index arithmetic (that is assignment a1's
job), and, because it calls ``F.conv2d``, it does not run where a check has
switched PyTorch's convolutions off.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..plotting import styled
from .registry import demo

__all__ = ["conv_matrix_of", "conv_matrix_summary", "conv_matrix_figure", "conv_matrix_viewer", "weight_colours",
           "matrix_cell_size"]

HIGHLIGHT = "highlight"  # gid of the rectangles that light the chosen weight (tests look for it)
_EMPTY = "#f0f0f0"  # background of the cells that hold no weight (a structural zero)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_setting(i: int, k: int, s: int, p: int) -> tuple[int, int, int, int]:
    i, k = _check_int("input size i", i, 1), _check_int("kernel size k", k, 1)
    s, p = _check_int("stride s", s, 1), _check_int("padding p", p, 0)
    if k > i + 2 * p:
        raise ValueError(f"kernel size k={k} is larger than the padded input i + 2p = {i} + 2*{p} = {i + 2 * p}; "
                         f"a convolution needs k <= i + 2p (raise i or p, or lower k)")
    return i, k, s, p


def _check_weight(weight, k: int) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in weight)
    except (TypeError, ValueError):
        raise ValueError(f"weight must be a pair (row, col) of kernel indices, got {weight!r}") from None
    if not (0 <= row < k and 0 <= col < k):
        raise ValueError(f"weight (row, col) = ({row}, {col}) is outside the {k}x{k} kernel; "
                         f"expected 0 <= row, col <= {k - 1}")
    return row, col


def conv_matrix_of(i: int, k: int, s: int = 1, p: int = 0) -> tuple[torch.Tensor, int]:
    """The matrix of a single-channel convolution, with symbolic weights.

    Returns ``(ids, o)``: ``ids`` is an int64 tensor of shape (o², i²) whose entry [n, m]
    is the index ``row * k + col`` of the kernel weight that multiplies input pixel m
    (row-major) in output pixel n, or -1 where C holds a structural zero; ``o`` is the
    output size. Filling ``ids`` with a kernel's values gives C, with
    ``F.conv2d(x, w, stride=s, padding=p).flatten() == C @ x.flatten()``.

    Raises ValueError for impossible settings (i, k, s < 1, p < 0, or k > i + 2p).
    """
    i, k, s, p = _check_setting(i, k, s, p)
    kernel = torch.arange(1, k * k + 1, dtype=torch.float64).reshape(1, 1, k, k)  # distinct weights 1..k²
    one_hots = torch.eye(i * i, dtype=torch.float64).reshape(i * i, 1, i, i)  # (i², 1, i, i): input m is 1
    out = F.conv2d(one_hots, kernel, stride=s, padding=p)  # (i², 1, o, o): column m of C, as an image
    o = out.shape[-1]
    ids = out.reshape(i * i, o * o).T.round().long() - 1  # (o², i²); weight value v is weight index v - 1
    return ids, o


def _unread(i: int, k: int, s: int, p: int) -> int:
    """How many of the last padded rows (and columns) no window reaches: (i + 2p - k) mod s."""
    return (i + 2 * p - k) % s


def conv_matrix_summary(i: int, k: int, s: int = 1, p: int = 0, weight: tuple[int, int] = (0, 0)) -> str:
    """One line: the sizes, the shapes of C and Cᵀ, and how often ``weight`` appears in C."""
    ids, o = conv_matrix_of(i, k, s, p)
    row, col = _check_weight(weight, k)
    count = int((ids == row * k + col).sum())
    text = (f"i={i}, k={k}, s={s}, p={p} → o={o};  C is (o², i²) = ({o * o}, {i * i}), "
            f"Cᵀ is ({i * i}, {o * o});  w[{row},{col}] appears {count} times")
    if _unread(i, k, s, p):
        text += f";  the last {_unread(i, k, s, p)} padded row(s)/col(s) are never read"
    return text


# Weight colours: the kernel row picks the hue (Okabe-Ito, safe for colour-blind readers), the kernel
# column the shade (from the full colour towards white), so w[r, c] reads as "hue r, shade c" at any size.
_ROW_HUES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#F0E442", "#56B4E9", "#D55E00")
_LIGHTEST = 0.6  # the last kernel column is mixed this far towards white
_OUTLINE = "black"  # the outline of the lit weight's cells (no fill colour is black)

# Layout, in inches: every matrix cell is a square of the same size in C and Cᵀ, as large as fits.
_CELL_MAX = 0.42  # small matrices: cells this big
_MATRIX_WIDTH = 8.0  # C and Cᵀ side by side share this width ...
_MATRIX_HEIGHT = 6.5  # ... and the taller of the two is at most this high
_LABELLED_CELL = 0.16  # cells at least this big print their weight's "rc"
_SLOT_MIN = 1.7  # a panel narrower than this still gets this much room, for its labels


def weight_colours(k: int) -> np.ndarray:
    """The fill colour of each kernel weight, (k², 4) RGBA, row-major like the weight ids.

    Hue = kernel row (cycling through 7 Okabe-Ito hues for k > 7), shade = kernel column
    (full colour for column 0, lighter to the right), so no two weights of a kernel up to
    7x7 share a colour.
    """
    k = _check_int("kernel size k", k, 1)
    colours = np.empty((k * k, 4))
    for row in range(k):
        hue = np.array(to_rgba(_ROW_HUES[row % len(_ROW_HUES)]))
        for col in range(k):
            mix = _LIGHTEST * col / (k - 1) if k > 1 else 0.0
            colours[row * k + col] = (1 - mix) * hue + mix * np.ones(4)
    return colours


def _text_colour(rgba) -> str:
    red, green, blue = rgba[:3]
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"


def _draw_ids(ax, ids: np.ndarray, k: int, light: int, colours: np.ndarray, cell: float,
              blocks: tuple[int, int] | None = None) -> int:
    """Draw a matrix of weight ids (-1 = empty) with square cells ``cell`` inches wide; outline the
    cells equal to ``light`` (gid HIGHLIGHT); ``blocks`` = (rows, cols) per image row, for the
    separators of the flattened axes. Return the number of cells outlined."""
    n_rows, n_cols = ids.shape
    ax.imshow(np.ma.masked_less(ids, 0), cmap=ListedColormap(colours), vmin=-0.5, vmax=k * k - 0.5,
              interpolation="nearest", aspect="equal")
    ax.set_facecolor(_EMPTY)
    if cell >= 0.05:  # a thin white border around every cell, while the cells are big enough for it
        ax.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=min(1.0, 6 * cell))
        ax.tick_params(which="minor", length=0)
    if blocks is not None:  # darker lines between the image rows of the flattened axes
        rows_every, cols_every = blocks
        for x in range(cols_every, n_cols, cols_every):
            ax.axvline(x - 0.5, color="#777777", linewidth=1.0, zorder=2)
        for y in range(rows_every, n_rows, rows_every):
            ax.axhline(y - 0.5, color="#777777", linewidth=1.0, zorder=2)
    lit = np.argwhere(ids == light)
    for r, c in lit:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=_OUTLINE, zorder=3,
                               linewidth=float(np.clip(12 * cell, 1.0, 2.5)), gid=HIGHLIGHT))
    if cell >= _LABELLED_CELL:
        fontsize = float(np.clip(cell * 72 * 0.42, 5.5, 9.0))
        for (r, c), v in np.ndenumerate(ids):
            if v >= 0:
                ax.text(c, r, f"{v // k}{v % k}", ha="center", va="center", fontsize=fontsize,
                        color=_text_colour(colours[v]), zorder=4)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    for axis, length in ((ax.xaxis, n_cols * cell), (ax.yaxis, n_rows * cell)):
        axis.set_major_locator(MaxNLocator(integer=True, nbins=max(2, int(length / 0.4)), min_n_ticks=1))
    return len(lit)


def matrix_cell_size(i: int, o: int) -> float:
    """Side of one matrix cell in inches: C (o², i²) and Cᵀ side by side fit the figure, capped for small ones."""
    n_in, n_out = i * i, o * o
    return min(_CELL_MAX, _MATRIX_WIDTH / (n_in + n_out), _MATRIX_HEIGHT / max(n_in, n_out))


def conv_matrix_figure(i: int, k: int, s: int = 1, p: int = 0, weight: tuple[int, int] = (0, 0)) -> Figure:
    """The kernel, C (o², i²) and Cᵀ (i², o²) side by side, the cells of kernel weight ``weight`` outlined.

    Cell colour = which kernel weight sits there: hue = kernel row, shade = kernel column (the
    kernel panel is the legend; cells big enough also print it as "rc"); light grey = a
    structural zero; black outline = the chosen weight. Cells are squares of one size in C and
    Cᵀ (:func:`matrix_cell_size`), so a (4, 49) matrix stays a wide band of readable cells;
    grey lines separate the image rows inside the flattened axes. Raises ValueError for
    impossible settings or a weight outside the kernel.
    """
    ids, o = conv_matrix_of(i, k, s, p)
    row, col = _check_weight(weight, k)
    light = row * k + col
    ids = ids.numpy()
    colours = weight_colours(k)
    cell = matrix_cell_size(i, o)
    kernel_cell = max(cell, min(0.6, 2.0 / k))  # the legend: never smaller than the matrices' cells
    panels = [(k, k, kernel_cell), (o * o, i * i, cell), (i * i, o * o, cell)]  # (rows, cols, cell size)
    left, gap, right, top, bottom = 1.0, 0.9, 0.3, 1.05, 0.85  # inches around and between the panels
    slots = [max(n_cols * size, _SLOT_MIN) for _, n_cols, size in panels]
    height = max(n_rows * size for n_rows, _, size in panels)
    fig_width = max(left + sum(slots) + gap * (len(slots) - 1) + right, 8.0)
    fig_height = top + height + bottom
    with styled():
        fig = plt.figure(figsize=(fig_width, fig_height))
        axes, x = [], left + (fig_width - (left + sum(slots) + gap * 2 + right)) / 2
        for (n_rows, n_cols, size), slot in zip(panels, slots):
            w_in, h_in = n_cols * size, n_rows * size
            axes.append(fig.add_axes(((x + (slot - w_in) / 2) / fig_width, (bottom + height - h_in) / fig_height,
                                      w_in / fig_width, h_in / fig_height)))
            x += slot + gap
        ax_w, ax_c, ax_t = axes
        _draw_ids(ax_w, np.arange(k * k).reshape(k, k), k, light, colours, kernel_cell)
        ax_w.set_title(f"kernel w ({k}×{k})", fontsize=10)
        ax_w.set_xlabel("column")
        ax_w.set_ylabel("row")

        _draw_ids(ax_c, ids, k, light, colours, cell, blocks=(o, i))
        ax_c.set_title(f"C: convolution, ({o * o}, {i * i})", fontsize=10)
        ax_c.set_xlabel(f"input pixel\n(row·{i} + col)")
        ax_c.set_ylabel(f"output pixel\n(row·{o} + col)")
        _draw_ids(ax_t, ids.T, k, light, colours, cell, blocks=(i, o))
        ax_t.set_title(f"Cᵀ: transposed conv., ({i * i}, {o * o})", fontsize=10)
        ax_t.set_xlabel(f"its input = conv. output\npixel (row·{o} + col)")
        ax_t.set_ylabel(f"its output = conv. input\npixel (row·{i} + col)")
        legend = (f"colour = kernel row, shade = kernel column (cells print \"row col\" when they are big enough); "
                  f"grey = structural zero; black outline = w[{row},{col}]")
        fig.suptitle(_wrap(conv_matrix_summary(i, k, s, p, (row, col)), fig_width) + "\n" + _wrap(legend, fig_width),
                     fontsize=9.5, y=1 - 0.08 / fig_height, va="top")
    return fig


def _wrap(text: str, width_inches: float) -> str:
    """Break a line of the title to fit a figure ``width_inches`` wide (about 15 characters per inch)."""
    return "\n".join(textwrap.wrap(text, max(40, int(width_inches * 15))))


def _figure_arguments(i: int, k: int, s: int, p: int, row: int, col: int) -> dict:
    """The viewer's controls -> :func:`conv_matrix_figure`'s arguments."""
    return {"i": i, "k": k, "s": s, "p": p, "weight": (row, col)}


@demo(figure=conv_matrix_figure, arguments=_figure_arguments)
def conv_matrix_viewer(i: int = 3, k: int = 2, s: int = 1, p: int = 0, row: int = 0, col: int = 1):
    """Sliders for :func:`conv_matrix_figure`: input size, kernel size, stride, padding, and the weight to light
    (``row``, ``col``), starting at the values given.

    Impossible settings (kernel larger than the padded input) print the reason instead
    of a figure. The widget's ``result`` is the summary line (or that reason).
    """
    import ipywidgets as widgets

    def slider(value, low, high, description):
        return widgets.IntSlider(value=value, min=low, max=high, description=description, continuous_update=False,
                                 style={"description_width": "7em"})  # one width: the sliders line up

    controls = {"i": slider(i, 1, 8, "input size i"), "k": slider(k, 1, 5, "kernel size k"),
                "s": slider(s, 1, 3, "stride s"), "p": slider(p, 0, 2, "padding p"),
                "row": slider(row, 0, max(k - 1, 0), "weight row"), "col": slider(col, 0, max(k - 1, 0), "weight col")}

    def follow_kernel(change):  # the weight sliders only offer weights inside the kernel
        controls["row"].max = controls["col"].max = change["new"] - 1

    controls["k"].observe(follow_kernel, names="value")  # registered first, so it runs before the redraw

    def show(i, k, s, p, row, col):
        arguments = _figure_arguments(i, k, s, p, row, col)
        try:
            summary = conv_matrix_summary(**arguments)
            conv_matrix_figure(**arguments)
        except ValueError as err:
            print(f"No convolution here: {err}")
            return str(err)
        plt.show()
        return summary

    return widgets.interactive(show, **controls)
