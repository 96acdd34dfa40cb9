"""The sliding-window explorer (lecture 01): where a convolution's window lands, and how big the output is.

One spatial axis at a time, square inputs and kernels, in the course's notation
(``docs/notation.md``): input size ``i``, kernel size ``k``, stride ``s``, zero
padding ``p`` on each side, dilation ``d``, output size ``o``. Coordinates are
(row, column) in the **padded** input, which is ``i + 2p`` pixels wide.

PyTorch does the arithmetic: the output size is the shape ``F.conv2d`` returns
on shape-only ("meta") tensors, and the pixels a window reads are what
``F.unfold`` gathers from a grid of pixel numbers. Nothing here computes a
convolution.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["WindowLayout", "window_layout", "sliding_window_figure", "sliding_window_explorer"]


@dataclass(frozen=True)
class WindowLayout:
    """What the explorer draws for one setting, computed with PyTorch.

    i, k, s, p, d: the setting (input, kernel, stride, padding, dilation).
    o:          output size per side (0 when the setting has no output).
    position:   the output pixel (row, col) whose window is shown.
    taps:       the k*k padded-input pixels (row, col) the window reads at ``position``,
                in kernel order (row-major over the kernel offsets); empty when o = 0.
    unread:     padded-input indices (per axis) that no window ever reads.
    uncovered:  how many of those are at the end: the leftover the floor in the formula drops.
    formula:    the output-size formula with the numbers filled in.
    message:    the formula and one sentence on what it means for this setting.
    """

    i: int
    k: int
    s: int
    p: int
    d: int
    o: int
    position: tuple[int, int]
    taps: list[tuple[int, int]]
    unread: tuple[int, ...]
    uncovered: int
    formula: str
    message: str

    @property
    def padded(self) -> int:
        """Size of the zero-padded input, i + 2p."""
        return self.i + 2 * self.p

    @property
    def span(self) -> int:
        """Pixels the dilated kernel spans along one axis, d(k - 1) + 1."""
        return self.d * (self.k - 1) + 1


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _output_size(i: int, k: int, s: int, p: int, d: int) -> int:
    """o from the shape F.conv2d returns; 0 when the dilated kernel is wider than the padded input."""
    if d * (k - 1) + 1 > i + 2 * p:
        return 0  # F.conv2d would raise "Kernel size can't be greater than actual input size"
    x = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return int(F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1])  # (1, 1, o, o)


def _windows(n: int, k: int, s: int, d: int) -> torch.Tensor:
    """(k*k, o*o) padded-input pixel numbers read by each window, gathered by F.unfold."""
    numbers = torch.arange(n * n, dtype=torch.float64).reshape(1, 1, n, n)  # pixel r*n + c holds r*n + c
    return F.unfold(numbers, kernel_size=k, dilation=d, stride=s)[0].long()  # (k*k, o*o)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _coverage_sentence(i: int, p: int, unread: tuple[int, ...], uncovered: int) -> str:
    if not unread:
        return "Every row and column of the padded input is read by at least one window."
    n = i + 2 * p
    parts = []
    if uncovered:
        tail = range(n - uncovered, n)
        real = sum(p <= t < p + i for t in tail)
        which = "the last row and column" if uncovered == 1 else f"the last {uncovered} rows and columns"
        if real:
            lost = f"{_plural(real, 'row')} and {_plural(real, 'column')} of the real input"
            parts.append(f"One more stride would not fit, so the floor drops the remainder: {which} of the "
                         f"padded input are never read ({lost} ignored).")
        else:
            parts.append(f"One more stride would not fit: {which} of the padded input are never read, "
                         f"but that is padding, so no input is lost.")
    gaps = [u for u in unread if u < n - uncovered]
    if gaps:
        listed = ", ".join(str(g) for g in gaps[:8]) + (", ..." if len(gaps) > 8 else "")
        which = f"Row and column {listed} falls" if len(gaps) == 1 else f"Rows and columns {listed} fall"
        verb = "is" if len(gaps) == 1 else "are"
        parts.append(f"{which} between the windows' taps and {verb} never read{' either' if parts else ''}.")
    return " ".join(parts)


def window_layout(i: int, k: int, s: int = 1, p: int = 0, d: int = 1,
                  position: tuple[int, int] = (0, 0)) -> WindowLayout:
    """Where the window of a (square) convolution lands, and the output size.

    i: input size, k: kernel size, s: stride, p: zero padding per side, d: dilation
    (all ints; i, k, s, d >= 1 and p >= 0). position: (row, col) of the output pixel whose
    window is shown, 0 <= row, col < o. A setting whose dilated kernel is wider than the
    padded input has no output: it gives o = 0 and a message (the position is then ignored).

    Raises ValueError for a non-integer or out-of-range argument or a position outside the output.
    """
    i, k, s, d = (_check_int(name, v, 1) for name, v in (("i", i), ("k", k), ("s", s), ("d", d)))
    p = _check_int("p", p, 0)
    try:
        row, col = position
    except (TypeError, ValueError):
        raise ValueError(f"position must be a (row, col) pair of ints, got {position!r}") from None
    row, col = _check_int("position row", row, 0), _check_int("position col", col, 0)

    n = i + 2 * p  # padded size
    span = d * (k - 1) + 1  # the dilated kernel covers this many pixels per axis
    o = _output_size(i, k, s, p, d)
    top = f"⌊({i} + 2·{p} − {d}·({k}−1) − 1)/{s}⌋ + 1 = ⌊{n - span}/{s}⌋ + 1".replace("-", "−")
    if o == 0:
        formula = f"o = {top} < 1"
        message = (f"{formula}: no output. The dilated kernel spans d(k−1) + 1 = {span} pixels but the "
                   f"padded input is only i + 2p = {n} wide, so not even one window fits "
                   f"(make the kernel or the dilation smaller, or pad more).")
        return WindowLayout(i, k, s, p, d, 0, (row, col), [], tuple(range(n)), 0, formula, message)
    if row >= o or col >= o:
        raise ValueError(f"position must be inside the {o}x{o} output (0 <= row, col < {o}), got {position!r}")

    windows = _windows(n, k, s, d)  # (k*k, o*o) padded pixel numbers r*n + c
    columns = windows[:, :o] % n  # the windows of output row 0 cover every column any window covers
    read = set(columns.flatten().tolist())
    unread = tuple(t for t in range(n) if t not in read)  # rows: the same, by symmetry
    uncovered = n - 1 - max(read)
    taps = [(t // n, t % n) for t in windows[:, row * o + col].tolist()]
    formula = f"o = {top} = {o}"
    message = f"{formula}. The output is {o}x{o}. " + _coverage_sentence(i, p, unread, uncovered)
    return WindowLayout(i, k, s, p, d, o, (row, col), taps, unread, uncovered, formula, message)


# colours of the padded-input cells: padding, real input, never read
_CELL_COLOURS = ("#DDDDDD", "#FFFFFF", "#F4C7B0")
_CELLS = ListedColormap(list(_CELL_COLOURS))


def _grid(ax, n: int, title: str, extent: int | None = None) -> None:
    """Cell borders, integer ticks and labels for an n x n grid drawn with imshow (extent: visible size)."""
    extent = max(n, extent or n)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="#999999", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    step = 1 if extent <= 12 else 2
    ax.set_xticks(range(0, extent, step))
    ax.set_yticks(range(0, extent, step))
    ax.set_xlim(-0.5, extent - 0.5)
    ax.set_ylim(extent - 0.5, -0.5)
    for spine in ax.spines.values():
        spine.set_visible(True)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(title, fontsize=10)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def sliding_window_figure(i: int, k: int, s: int = 1, p: int = 0, d: int = 1,
                          position: tuple[int, int] = (0, 0)) -> Figure:
    """The padded input with the window's taps at ``position``, the output with that pixel lit, the formula.

    Left: the (i + 2p) x (i + 2p) padded input: padding grey, input white, pixels no window reads
    shaded, the k*k taps orange (patches with gid "tap") inside the window's dashed outline (gid
    "window"). Right: the o x o output, the chosen pixel orange (gid "selected"). Title: the formula
    evaluated; bottom line: what it means. When there is no output, the window is drawn hanging
    over the input's edge (taps with gid "overhang") and the output panel says so.
    """
    layout = window_layout(i, k, s, p, d, position)
    n, span, o = layout.padded, layout.span, layout.o
    cells = np.ones((n, n))
    cells[:, :p] = cells[:, n - p:] = cells[:p, :] = cells[n - p:, :] = 0  # padding
    for u in layout.unread:
        cells[u, :] = cells[:, u] = 2  # a pixel is read only if its row and its column are
    extent = n if o else span  # an impossible window sticks out of the input: show all of it
    with styled():
        fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(10, 5.2), width_ratios=(extent, max(o, 0.4 * extent)))
        ax_in.imshow(cells, cmap=_CELLS, vmin=0, vmax=2)
        _grid(ax_in, n, f"padded input: i + 2p = {layout.i} + 2·{layout.p} = {n}", extent)
        if p:
            ax_in.add_patch(Rectangle((p - 0.5, p - 0.5), layout.i, layout.i, fill=False, edgecolor="black",
                                      linewidth=1.5, gid="input-border"))
        taps = layout.taps or [(d * a, d * b) for a in range(layout.k) for b in range(layout.k)]
        (r0, c0) = taps[0]
        ax_in.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), span, span, fill=False, edgecolor=PALETTE[3],
                                  linewidth=2, linestyle="--", gid="window"))
        for tap_index, (r, c) in enumerate(taps):
            ax_in.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=PALETTE[1], alpha=0.9 if o else 0.35,
                                      edgecolor="black", linewidth=0.6, gid="tap" if o else "overhang"))
            if extent <= 14 and layout.k <= 5:
                a, b = divmod(tap_index, layout.k)
                ax_in.text(c, r, f"w{a}{b}", ha="center", va="center", fontsize=7)
        shown = [p > 0, True, bool(layout.unread)]  # padding, input, never read: only what is in the picture
        legend = [Rectangle((0, 0), 1, 1, facecolor=colour, edgecolor="#999999")
                  for colour, show in zip(_CELL_COLOURS, shown) if show]
        names = [name for name, show in zip(("zero padding", "input", "never read"), shown) if show]
        legend.append(Rectangle((0, 0), 1, 1, facecolor=PALETTE[1], edgecolor="black"))
        names.append("the window's taps")
        if extent > n:  # the part of the window that hangs over the edge: there is no input there
            for xy, width, height in (((n - 0.5, -0.5), extent - n, extent), ((-0.5, n - 0.5), n, extent - n)):
                ax_in.add_patch(Rectangle(xy, width, height, facecolor="none", edgecolor="#999999", hatch="//",
                                          linewidth=0, gid="outside"))
            legend.append(Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="#999999", hatch="//"))
            names.append("outside the padded input")
        ax_in.legend(legend, names, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8,
                     frameon=False)
        if o:
            ax_out.imshow(np.zeros((o, o)), cmap=ListedColormap(["#FFFFFF"]), vmin=0, vmax=1)
            _grid(ax_out, o, f"output: {o}x{o}, pixel {layout.position}")
            r, c = layout.position
            ax_out.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=PALETTE[1], edgecolor="black",
                                       gid="selected"))
        else:
            ax_out.set_axis_off()
            ax_out.text(0.5, 0.5, "no output", ha="center", va="center", color=PALETTE[3], fontsize=12,
                        transform=ax_out.transAxes)
        fig.suptitle(f"i = {layout.i}, k = {layout.k}, s = {layout.s}, p = {layout.p}, d = {layout.d}:   "
                     f"{layout.formula}", fontsize=11)
        explanation = _capitalized(layout.message.removeprefix(layout.formula).lstrip(":. "))
        fig.text(0.5, 0.01, _wrap(explanation, 125), ha="center", va="bottom", fontsize=9)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _figure_arguments(i: int, k: int, s: int, p: int, d: int, position: int) -> dict:
    """The explorer's controls -> :func:`sliding_window_figure`'s arguments.

    ``position`` numbers the output pixels row by row (the order the window slides); one past
    the last pixel (left over when a control shrinks the output) shows the last pixel.
    """
    o = window_layout(i, k, s, p, d).o
    row, col = divmod(min(position, max(o * o - 1, 0)), max(o, 1))
    return {"i": i, "k": k, "s": s, "p": p, "d": d, "position": (row, col)}


@demo(figure=sliding_window_figure, arguments=_figure_arguments)
def sliding_window_explorer(i: int = 7, k: int = 3, s: int = 1, p: int = 0, d: int = 1, position: int = 0):
    """Sliders for i, k, s, p, d and the output pixel (numbered in sliding order) around
    :func:`sliding_window_figure`, starting at the values given. ``explorer.result`` is the
    :class:`WindowLayout` on show."""
    import ipywidgets as widgets

    def slider(name, value, low, high, text):
        return widgets.IntSlider(value=value, min=low, max=high, description=name, tooltip=text,
                                 continuous_update=False)

    sizes = {
        "i": slider("i (input)", i, 1, 16, "input size i"),
        "k": slider("k (kernel)", k, 1, 7, "kernel size k"),
        "s": slider("s (stride)", s, 1, 4, "stride s"),
        "p": slider("p (padding)", p, 0, 3, "zero padding p on each side"),
        "d": slider("d (dilation)", d, 1, 3, "dilation d: spacing of the kernel taps"),
    }
    position = slider("position", position, 0, max(position, 0),
                      "output pixel, counted row by row (the order the window slides)")

    def last_position(*_) -> None:
        o = window_layout(*(w.value for w in sizes.values())).o
        position.max = max(o * o - 1, 0)  # ipywidgets clamps the value when the range shrinks

    last_position()
    for control in sizes.values():  # registered before interactive's own observers, so this runs first
        control.observe(last_position, names="value")

    def show(i, k, s, p, d, position):
        arguments = _figure_arguments(i, k, s, p, d, position)
        layout = window_layout(**arguments)
        fig = sliding_window_figure(**arguments)
        plt.show()
        plt.close(fig)
        return layout

    return widgets.interactive(show, **sizes, position=position)
