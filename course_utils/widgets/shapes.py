"""The shapes dataset explorer (lecture 00): a figure function and its widget."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .. import data, shapes
from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["shapes_figure", "shapes_explorer"]


def shapes_figure(family: str = "basic", style: str = "filled", noise: float = 0.05, seed: int = 0,
                  per_class: int = 4) -> Figure:
    """One row per class of a shapes family: ``per_class`` images and, below them, their masks.

    Returns a figure of (2 x classes) rows by ``per_class`` columns.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    names = shapes.class_names(family)
    ds = data.load("shapes" if family == "basic" else "shapes-extra", n=len(names) * per_class * 4, seed=seed,
                   style=style, noise=noise)
    with styled():
        fig, axes = plt.subplots(len(names), 2 * per_class, figsize=(1.1 * 2 * per_class, 1.1 * len(names)),
                                 squeeze=False)
        for row, name in enumerate(names):
            index = (ds.labels == row).nonzero().flatten()[:per_class]
            for col in range(per_class):
                image_ax, mask_ax = axes[row, col], axes[row, per_class + col]
                image_ax.set_axis_off()
                mask_ax.set_axis_off()
                if col < len(index):
                    image_ax.imshow(ds.images[index[col]].permute(1, 2, 0).numpy())
                    mask_ax.imshow(ds.masks[index[col]].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, 0].text(-0.15, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center",
                              fontsize=9, color=PALETTE[0])
        axes[0, 0].set_title("images", loc="left", fontsize=9)
        axes[0, per_class].set_title("object masks", loc="left", fontsize=9)
        fig.suptitle(f"shapes: family '{family}', style '{style}', noise {noise:g}, seed {seed}")
        fig.tight_layout()
    return fig


@demo(figure=shapes_figure)
def shapes_explorer(family: str = "basic", style: str = "filled", noise: float = 0.05, seed: int = 0):
    """Dropdowns and sliders for :func:`shapes_figure` (family, style, noise, seed), starting at the values given."""
    import ipywidgets as widgets

    def show(family, style, noise, seed):
        shapes_figure(family, style, noise, seed)
        plt.show()

    styles = widgets.ToggleButtons(options=list(shapes.STYLES), value=style, description="style",
                                   style={"button_width": "6em"})
    styles.add_class("widget-inline-hbox")  # ipywidgets 8 puts this label above the buttons; inline like the rest
    return widgets.interactive(
        show,
        family=widgets.Dropdown(options=list(shapes.FAMILIES), value=family, description="family"),
        style=styles,
        noise=widgets.FloatSlider(value=noise, min=0.0, max=0.3, step=0.05, description="noise",
                                  continuous_update=False),
        seed=widgets.IntSlider(value=seed, min=0, max=20, description="seed", continuous_update=False),
    )
