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

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["conv_matrix_of", "conv_matrix_summary", "conv_matrix_figure", "conv_matrix_viewer"]

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


def _draw_ids(ax, ids: np.ndarray, k: int, light: int, cmap, annotate: bool, aspect: str = "auto") -> int:
    """Draw a matrix of weight ids (-1 = empty), outline the cells equal to ``light``; return their count."""
    shown = np.ma.masked_less(ids, 0)
    ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=k * k - 0.5, interpolation="nearest", aspect=aspect)
    ax.set_facecolor(_EMPTY)
    lit = np.argwhere(ids == light)
    for r, c in lit:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=PALETTE[3], linewidth=2.2,
                               gid=HIGHLIGHT))
    if annotate:
        fontsize = 8 if max(ids.shape) <= 9 else 6
        for (r, c), v in np.ndenumerate(ids):
            if v >= 0:
                red, green, blue, _ = cmap(int(v))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
                ax.text(c, r, f"{v // k}{v % k}", ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
    ax.set_xlim(-0.5, ids.shape[1] - 0.5)
    ax.set_ylim(ids.shape[0] - 0.5, -0.5)
    return len(lit)


def conv_matrix_figure(i: int, k: int, s: int = 1, p: int = 0, weight: tuple[int, int] = (0, 0)) -> Figure:
    """The kernel, C (o², i²) and Cᵀ (i², o²) side by side, the cells of kernel weight ``weight`` outlined.

    Cell colour = which kernel weight sits there (the kernel panel is the legend; small
    matrices also print it as "rc"); light grey = a structural zero. Thin lines separate
    the image rows inside the flattened axes. Raises ValueError for impossible settings
    or a weight outside the kernel.
    """
    ids, o = conv_matrix_of(i, k, s, p)
    row, col = _check_weight(weight, k)
    light = row * k + col
    ids = ids.numpy()
    base = plt.get_cmap("viridis", max(k * k, 2))
    cmap = ListedColormap(base(np.arange(max(k * k, 2))))
    annotate = ids.size <= 160
    with styled():
        fig, (ax_w, ax_c, ax_t) = plt.subplots(1, 3, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 2.8, 1.8]})
        kernel_ids = np.arange(k * k).reshape(k, k)
        _draw_ids(ax_w, kernel_ids, k, light, cmap, annotate=True, aspect="equal")
        ax_w.set_title(f"kernel w ({k}×{k})\nlabels: row, column")
        ax_w.set_xlabel("kernel column")
        ax_w.set_ylabel("kernel row")
        ax_w.set_xticks(range(k))
        ax_w.set_yticks(range(k))

        _draw_ids(ax_c, ids, k, light, cmap, annotate)
        ax_c.set_title(f"C: convolution, ({o * o}, {i * i})")
        ax_c.set_xlabel(f"input pixel (row·{i} + col)")
        ax_c.set_ylabel(f"output pixel (row·{o} + col)")
        _draw_ids(ax_t, ids.T, k, light, cmap, annotate)
        ax_t.set_title(f"Cᵀ: transposed conv., ({i * i}, {o * o})")
        ax_t.set_xlabel(f"its input = conv. output pixel (row·{o} + col)")
        ax_t.set_ylabel(f"its output = conv. input pixel (row·{i} + col)")
        for ax, rows_every, cols_every in ((ax_c, o, i), (ax_t, i, o)):
            n_rows, n_cols = ax.images[0].get_array().shape
            for x in range(cols_every, n_cols, cols_every):
                ax.axvline(x - 0.5, color="white", linewidth=1.2)
            for y in range(rows_every, n_rows, rows_every):
                ax.axhline(y - 0.5, color="white", linewidth=1.2)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=8))
            ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=8))
        fig.suptitle(conv_matrix_summary(i, k, s, p, (row, col)), fontsize=10)
        fig.tight_layout()
    return fig


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
