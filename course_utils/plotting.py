"""One look for every figure: image grids, training curves, heatmap overlays.

Colours come from the Okabe-Ito palette (safe for colour-blind readers); signed
quantities use a diverging colour map centred at zero; every axis that carries
a quantity is labelled. Functions return the matplotlib Figure (or Axes) so a
notebook can adjust or save it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

__all__ = ["PALETTE", "DIVERGING", "SEQUENTIAL", "style", "show_images", "plot_history",
           "show_heatmap", "show_signed"]

# Okabe & Ito (2008), "Color Universal Design".
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DIVERGING = "RdBu_r"  # for signed values, always centred at zero
SEQUENTIAL = "viridis"  # for non-negative values

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


def show_images(images, labels=None, *, classes: Sequence[str] | None = None, predictions=None,
                ncols: int = 8, title: str | None = None, scale: float = 1.4,
                vmin: float = 0.0, vmax: float = 1.0) -> Figure:
    """A grid of images, each titled with its label (and prediction, red when wrong).

    images: (N, C, H, W) or (N, H, W) in [0, 1]; labels, predictions: (N,) class indices.
    """
    array = _to_numpy_images(images)
    n = array.shape[0]
    if n == 0:
        raise ValueError("show_images needs at least one image")
    for what, values in (("labels", labels), ("predictions", predictions)):
        if values is not None and len(values) != n:
            raise ValueError(f"{what} must have one entry per image ({n}), got {len(values)}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    with styled():
        fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.4 if title else 0)),
                                 squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i >= n:
                continue
            ax.imshow(array[i].clip(vmin, vmax), cmap="gray" if array[i].ndim == 2 else None,
                      vmin=vmin, vmax=vmax)
            text, colour = "", "black"
            if labels is not None:
                text = _name(labels[i], classes)
            if predictions is not None:
                guess = _name(predictions[i], classes)
                wrong = labels is not None and int(predictions[i]) != int(labels[i])
                text = f"{text}\n→ {guess}" if text else guess
                colour = PALETTE[3] if wrong else colour
            if text:
                ax.set_title(text, fontsize=8, color=colour)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_history(history, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training vs validation (a :class:`~course_utils.training.History`)."""
    if len(history) == 0:
        raise ValueError("the history is empty: no epoch was completed")
    with styled():
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            for part, colour, marker in (("train", PALETTE[0], "o"), ("val", PALETTE[1], "s")):
                values = np.asarray(getattr(history, f"{part}_{key}"), dtype=float)
                if not np.all(np.isnan(values)):
                    ax.plot(history.epoch, values, marker=marker, color=colour,
                            label="training" if part == "train" else "validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.legend()
        fig.suptitle(title or f"Training on {history.device}")
        fig.tight_layout()
    return fig


def show_signed(values, ax: Axes | None = None, title: str | None = None, colorbar: bool = True,
                annotate: bool = False) -> Axes:
    """A 2-D array of signed values (kernels, gradients) on a diverging map centred at zero."""
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
        if colorbar:
            ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def show_heatmap(image, heatmap, ax: Axes | None = None, title: str | None = None, alpha: float = 0.55,
                 signed: bool | None = None, colorbar: bool = True) -> Axes:
    """Overlay ``heatmap`` (H, W) on ``image`` ((C, H, W) or (H, W) in [0, 1]).

    Signed heatmaps (or ``signed=True``) use the diverging map centred at zero;
    non-negative ones use the sequential map from zero to their maximum.
    """
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
        if colorbar:
            ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    return ax
