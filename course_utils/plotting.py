"""One look for every figure: image grids, training curves, heatmap overlays, colour bars.

Colours come from the Okabe-Ito palette (safe for colour-blind readers); signed
quantities use a diverging colour map centred at zero; every axis and every
colour bar that carries a quantity is labelled. Functions return the matplotlib
Figure (or Axes) so a notebook can adjust or save it.

The helpers make three common figure faults hard to commit:

- :func:`image_grid` sizes the figure so that every image keeps room for its
  title (titles never run into the row above);
- :func:`plot_history` puts ticks only on whole epochs;
- :func:`colorbar` (and the ``colorbar=`` argument of the heatmap helpers)
  refuses to draw a colour bar without a label saying what its colours measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

__all__ = ["PALETTE", "DIVERGING", "SEQUENTIAL", "WRONG", "style", "image_grid", "show_images", "plot_history",
           "colorbar", "show_heatmap", "show_signed"]

# Okabe & Ito (2008), "Color Universal Design".
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DIVERGING = "RdBu_r"  # for signed values, always centred at zero
SEQUENTIAL = "viridis"  # for non-negative values
WRONG = PALETTE[3]  # vermillion (an orange red): wrong predictions, framed and titled in it

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": plt.cycler(color=PALETTE),
    "image.cmap": SEQUENTIAL,
    "image.interpolation": "nearest",
}

# Room (inches) above each image for a title of one line at `fontsize` points, and for a figure title.
_POINT = 1 / 72
_TITLE_PAD = 6 * _POINT  # matplotlib's axes.titlepad
_SUPTITLE = 0.45
_LEGEND = 0.35  # a one-line legend under a grid


def _resolve_backend() -> None:
    """Load the plotting backend now, outside any ``rc_context``.

    The first figure loads the backend, and Jupyter's inline backend switches
    interactive mode on as it loads. Were that inside ``rc_context``, leaving the
    block would switch it off again, and later figures would silently not show.
    """
    plt.switch_backend(plt.get_backend())


def styled():
    """``with styled():`` draws a figure in the course look (without touching the global rcParams)."""
    _resolve_backend()
    return plt.rc_context(STYLE)


def style() -> None:
    """Apply the course look to every later figure (notebooks call it once at the top)."""
    _resolve_backend()
    plt.rcParams.update(STYLE)


def _to_numpy_images(images) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) tensor/array in [0, 1] -> (N, H, W, C) or (N, H, W) array."""
    array = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3:
        return array
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, or (N, H, W); got {array.shape}")
    array = np.transpose(array, (0, 2, 3, 1))
    return array[..., 0] if array.shape[-1] == 1 else array


def _name(label, classes: Sequence[str] | None) -> str:
    label = int(label)
    return classes[label] if classes is not None else str(label)


def _title_points(size) -> float:
    """A font size (points, or a name such as "large") in points."""
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=size).get_size_in_points()


def image_grid(n: int, ncols: int = 8, *, scale: float = 1.4, aspect: float = 1.0, title_lines: int = 1,
               title_size: float | str | None = None, title: str | None = None) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` axes for images, ``ncols`` to a row, each with room for its title above it.

    Every axes is ``scale`` inches wide and ``scale * aspect`` tall (``aspect`` = H / W of the images);
    each row also gets ``title_lines`` lines of ``title_size``-point text (default: the axes title size)
    on top, and the figure ``title`` its own line, so titles never run into the images above them.
    Constrained layout keeps that room when the figure is drawn. Axis lines and ticks are off.

    Returns ``(fig, axes)``: a list of ``n`` Axes in reading order (unused grid cells are removed).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of images), got {n!r}")
    if isinstance(title_lines, bool) or not isinstance(title_lines, int) or title_lines < 0:
        raise ValueError(f"title_lines must be an int >= 0 (lines of text above each image), got {title_lines!r}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    with styled():
        points = _title_points(plt.rcParams["axes.titlesize"] if title_size is None else title_size)
        title_room = title_lines * 1.25 * points * _POINT + (_TITLE_PAD if title_lines else 0.0)
        height = nrows * (scale * aspect + title_room) + (_SUPTITLE if title else 0.0)
        fig, grid = plt.subplots(nrows, ncols, figsize=(scale * ncols, height), squeeze=False, layout="constrained")
        axes = list(grid.flat)
        for ax in axes[n:]:
            ax.remove()
        for ax in axes[:n]:
            ax.set_axis_off()
        if title:
            fig.suptitle(title)
    return fig, axes[:n]


def _frame(ax: Axes, colour: str) -> None:
    """A coloured frame around an axes whose axis lines are off."""
    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor=colour, linewidth=3,
                           clip_on=False))


def show_images(images, labels=None, *, classes: Sequence[str] | None = None, predictions=None,
                ncols: int = 8, title: str | None = None, scale: float = 1.4,
                vmin: float = 0.0, vmax: float = 1.0) -> Figure:
    """A grid of images, each titled with its label (and "→ prediction").

    Wrong predictions are framed and titled in :data:`WRONG`, and a legend under
    the grid says so and counts them, so the figure explains its own colours.

    images: (N, C, H, W) or (N, H, W) in [0, 1]; labels, predictions: (N,) class indices.
    """
    array = _to_numpy_images(images)
    n = array.shape[0]
    if n == 0:
        raise ValueError("show_images needs at least one image")
    for what, values in (("labels", labels), ("predictions", predictions)):
        if values is not None and len(values) != n:
            raise ValueError(f"{what} must have one entry per image ({n}), got {len(values)}")
    lines = (labels is not None) + (predictions is not None)
    height, width = array.shape[1:3]
    fig, axes = image_grid(n, ncols, scale=scale, aspect=height / width, title_lines=lines, title_size=8,
                           title=title)
    wrong = 0
    with styled():
        for i, ax in enumerate(axes):
            ax.imshow(array[i].clip(vmin, vmax), cmap="gray" if array[i].ndim == 2 else None,
                      vmin=vmin, vmax=vmax)
            text, colour = "", "black"
            if labels is not None:
                text = _name(labels[i], classes)
            if predictions is not None:
                guess = _name(predictions[i], classes)
                text = f"{text}\n→ {guess}" if text else f"→ {guess}"
                if labels is not None and int(predictions[i]) != int(labels[i]):
                    wrong += 1
                    colour = WRONG
                    _frame(ax, WRONG)
            if text:
                ax.set_title(text, fontsize=8, color=colour)
        if predictions is not None and labels is not None:
            key = Patch(facecolor="none", edgecolor=WRONG, linewidth=3, label=f"wrong prediction ({wrong} of {n})")
            fig.set_figheight(fig.get_figheight() + _LEGEND)
            fig.legend(handles=[key], loc="outside lower center", frameon=False, fontsize=9, labelcolor=WRONG)
    return fig


def plot_history(history, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training vs validation (a :class:`~course_utils.training.History`).

    Ticks sit on whole epochs only (there is no epoch 1.5).
    """
    if len(history) == 0:
        raise ValueError("the history is empty: no epoch was completed")
    with styled():
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        first, last = min(history.epoch), max(history.epoch)
        margin = max(0.5, 0.04 * (last - first))  # room for the markers; a single epoch still gets a tick
        for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            for part, colour, marker in (("train", PALETTE[0], "o"), ("val", PALETTE[1], "s")):
                values = np.asarray(getattr(history, f"{part}_{key}"), dtype=float)
                if not np.all(np.isnan(values)):
                    ax.plot(history.epoch, values, marker=marker, color=colour,
                            label="training" if part == "train" else "validation")
            ax.set_xlim(first - margin, last + margin)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.legend()
        fig.suptitle(title or f"Training on {history.device}")
    return fig


def colorbar(mappable: ScalarMappable, ax: Axes | Sequence[Axes] | np.ndarray, label: str,
             **options) -> Colorbar:
    """A colour bar for ``mappable`` (what ``imshow`` returns) beside ``ax``, labelled ``label``.

    label:   what the colours measure, with its unit or scale where it has one
             (``"weight"``, ``"paths (log scale)"``); required, since a bar without
             one leaves the reader guessing.
    ax:      the Axes (or several) the bar takes its room from.
    options: passed to ``Figure.colorbar`` (``ticks``, ``orientation``, ``fraction``, ``pad``, ...).
    """
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"a colour bar needs a label saying what its colours measure (e.g. label='weight'), "
                         f"got {label!r}")
    first = ax if isinstance(ax, Axes) else np.asarray(ax, dtype=object).flat[0]
    options = {"fraction": 0.046, "pad": 0.04, **options}
    bar = first.figure.colorbar(mappable, ax=ax, **options)
    bar.set_label(label)
    return bar


_colorbar = colorbar  # the helpers below have an argument of that name


def _bar_label(value) -> str | None:
    """The ``colorbar=`` argument of the heatmap helpers: a label, or None/False for no bar."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"colorbar= takes the colour bar's label (what its colours measure, e.g. "
                         f"colorbar='gradient'), or None for no colour bar; got {value!r}")
    return value


def show_signed(values, ax: Axes | None = None, title: str | None = None, colorbar: str | None = None,
                annotate: bool = False) -> Axes:
    """A 2-D array of signed values (kernels, gradients) on a diverging map centred at zero.

    values:   (H, W) array or tensor.
    colorbar: label of a colour bar beside the axes (what the values are, e.g. ``"weight"``);
              None draws no bar.
    """
    label = _bar_label(colorbar)
    array = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"show_signed expects a 2-D array, got shape {array.shape}")
    limit = float(np.abs(array).max()) or 1.0
    with styled():
        if ax is None:
            _, ax = plt.subplots(figsize=(3.2, 3.2))
        image = ax.imshow(array, cmap=DIVERGING, norm=TwoSlopeNorm(0.0, -limit, limit))
        if annotate:
            for (r, c), v in np.ndenumerate(array):
                ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title)
        if label:
            _colorbar(image, ax, label)
    return ax


def show_heatmap(image, heatmap, ax: Axes | None = None, title: str | None = None, alpha: float = 0.55,
                 signed: bool | None = None, colorbar: str | None = None) -> Axes:
    """Overlay ``heatmap`` (H, W) on ``image`` ((C, H, W) or (H, W) in [0, 1]).

    Signed heatmaps (or ``signed=True``) use the diverging map centred at zero;
    non-negative ones use the sequential map from zero to their maximum.
    colorbar: label of a colour bar beside the axes (e.g. ``"saliency"``); None draws no bar.
    """
    label = _bar_label(colorbar)
    picture = _to_numpy_images(image[None] if hasattr(image, "ndim") and image.ndim in (2, 3) else image)[0]
    heat = heatmap.detach().cpu().float().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    if heat.shape != picture.shape[:2]:
        raise ValueError(f"heatmap must be (H, W) = {picture.shape[:2]} to match the image, got {heat.shape}")
    signed = bool((heat < 0).any()) if signed is None else signed
    with styled():
        if ax is None:
            _, ax = plt.subplots(figsize=(3.4, 3.4))
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
        if signed:
            limit = float(np.abs(heat).max()) or 1.0
            shown = ax.imshow(heat, cmap=DIVERGING, norm=TwoSlopeNorm(0.0, -limit, limit), alpha=alpha)
        else:
            shown = ax.imshow(heat, cmap=SEQUENTIAL, vmin=0.0, vmax=float(heat.max()) or 1.0, alpha=alpha)
        ax.set_axis_off()
        if title:
            ax.set_title(title)
        if label:
            _colorbar(shown, ax, label)
    return ax
