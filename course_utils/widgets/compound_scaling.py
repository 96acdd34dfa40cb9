"""EfficientNet's compound scaling, measured (lecture 07).

EfficientNet-B0 (Tan and Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks*,
ICML 2019) is the baseline network; B1-B7 scale it up along three axes at once:

- depth d:      every stage repeats its block ceil(d * L_i) times (L_i from the B0 table below);
- width w:      every layer gets about w times as many channels (rounded to a multiple of 8);
- resolution r: the input image is r x r pixels (B0: 224).

A convolution's multiply-adds grow linearly with depth and with the square of width and of resolution,
so the cost of a scaled network is about d * w^2 * (r / 224)^2 times B0's. The paper's compound rule
takes d = alpha^phi, w = beta^phi, r/224 = gamma^phi with alpha = 1.2, beta = 1.1, gamma = 1.15
(alpha * beta^2 * gamma^2 is about 2: each step of phi about doubles the FLOPs).

This module builds the scaled network with torchvision's own ``EfficientNet`` and ``MBConvConfig`` on
PyTorch's "meta" device (shapes only, no memory, no arithmetic), counts its parameters and counts its
FLOPs with ``torch.utils.flop_counter.FlopCounterMode``, which counts **2 FLOPs per multiply-add**
(convolutions and matrix products; BatchNorm, activations and additions are not counted).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter
from torch.utils.flop_counter import FlopCounterMode

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["B0_STAGES", "PUBLISHED", "COMPOUND", "ScaledCost", "scaled_cost", "compound", "scaling_figure",
           "compound_scaling_explorer"]

# EfficientNet-B0's stages (the paper's Table 1, rows 2-8): MBConv expansion ratio, kernel size, stride of the
# stage's first block, input channels, output channels, number of blocks L_i. The stem (3x3 conv, 32 channels,
# stride 2) and the head (1x1 conv to 1280 channels, pooling, a linear layer) are added by torchvision.
B0_STAGES = ((1, 3, 1, 32, 16, 1),
             (6, 3, 2, 16, 24, 2),
             (6, 5, 2, 24, 40, 2),
             (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3),
             (6, 5, 2, 112, 192, 4),
             (6, 3, 1, 192, 320, 1))

# B0-B7: (width w, depth d, resolution r in pixels); w and d as in torchvision's model builders, r from the paper
# (torchvision's ImageNet weights for B2 were evaluated at 288 pixels instead of 260).
PUBLISHED = {"B0": (1.0, 1.0, 224), "B1": (1.0, 1.1, 240), "B2": (1.1, 1.2, 260), "B3": (1.2, 1.4, 300),
             "B4": (1.4, 1.8, 380), "B5": (1.6, 2.2, 456), "B6": (1.8, 2.6, 528), "B7": (2.0, 3.1, 600)}

COMPOUND = (1.2, 1.1, 1.15)  # the paper's alpha (depth), beta (width), gamma (resolution)

DEPTH_RANGE = (1.0, 4.0)
WIDTH_RANGE = (1.0, 2.5)
RESOLUTION_RANGE = (32, 640)


@dataclass(frozen=True)
class ScaledCost:
    """Size and cost of EfficientNet-B0 scaled by depth d, width w and input resolution r (pixels).

    parameters: learnable numbers (BatchNorm's running statistics are buffers, not counted)
    flops:      FLOPs for one r x r RGB image, 2 per multiply-add (what FlopCounterMode counts)
    blocks:     number of MBConv blocks (B0 has 16)
    """

    depth: float
    width: float
    resolution: int
    parameters: int
    flops: int
    blocks: int

    @property
    def macs(self) -> int:
        """Multiply-adds: half the FLOPs."""
        return self.flops // 2

    @property
    def rule(self) -> float:
        """d * w^2 * (r / 224)^2: how many times B0's FLOPs the scaling rule predicts."""
        return self.depth * self.width**2 * (self.resolution / 224) ** 2


def _check_number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


@functools.lru_cache(maxsize=256)
def _measure(depth: float, width: float, resolution: int) -> ScaledCost:
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig  # here: importing torchvision takes a second

    stages = [MBConvConfig(e, k, s, c_in, c_out, n, width_mult=width, depth_mult=depth)
              for e, k, s, c_in, c_out, n in B0_STAGES]
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = EfficientNet(stages, dropout=0.2).eval()
        x = torch.empty(1, 3, resolution, resolution)  # (N, C, H, W) = (1, 3, r, r)
    parameters = sum(p.numel() for p in model.parameters())
    # FlopCounterMode does not count BatchNorm, and on the meta device it is the slowest layer: leave it out
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(module, name, torch.nn.Identity())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return ScaledCost(depth, width, resolution, parameters, int(counter.get_total_flops()),
                      sum(c.num_layers for c in stages))


def scaled_cost(depth: float = 1.0, width: float = 1.0, resolution: int = 224) -> ScaledCost:
    """Parameters and FLOPs (2 per multiply-add) of EfficientNet-B0 scaled by ``depth``, ``width`` and an
    input of ``resolution`` x ``resolution`` pixels, measured on torchvision's ``EfficientNet``.

    depth in [1, 4], width in [1, 2.5], resolution an int in [32, 640]. Results are cached.
    """
    depth = _check_number("depth", depth, *DEPTH_RANGE)
    width = _check_number("width", width, *WIDTH_RANGE)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or not RESOLUTION_RANGE[0] <= resolution <= RESOLUTION_RANGE[1]:
        raise ValueError(f"resolution must be an int from {RESOLUTION_RANGE[0]} to {RESOLUTION_RANGE[1]} "
                         f"(pixels), got {resolution!r}")
    return _measure(round(depth, 4), round(width, 4), int(resolution))


def compound(phi: float, coefficients: tuple[float, float, float] = COMPOUND) -> tuple[float, float, int]:
    """The compound rule: (d, w, r) = (alpha^phi, beta^phi, 224 * gamma^phi), r rounded to a pixel."""
    alpha, beta, gamma = coefficients
    return alpha**phi, beta**phi, int(round(224 * gamma**phi))


def _plain_log_labels(ax) -> None:
    """Log axes labelled 1, 2, 5, 10, 20, ... instead of powers of ten."""
    def minor(value: float, _position) -> str:
        leading = round(value / 10 ** np.floor(np.log10(value)), 6) if value > 0 else 0
        return f"{value:g}" if leading in (2, 5) else ""

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FuncFormatter(minor))


def scaling_figure(depth: float = 1.0, width: float = 1.0, resolution: int = 224) -> Figure:
    """Two log-log panels: measured FLOPs against the d * w^2 * r^2 rule, and parameters against FLOPs, for
    B0-B7 (blue dots) and the chosen scaling (a star; a hollow star: the same d and w at 224 pixels)."""
    chosen = scaled_cost(depth, width, resolution)
    at_224 = scaled_cost(depth, width, 224)
    base = scaled_cost()
    published = {name: scaled_cost(d, w, r) for name, (w, d, r) in PUBLISHED.items()}
    with styled():
        fig, (ax_rule, ax_size) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
        rules = [c.rule for c in published.values()] + [chosen.rule]
        line = np.array([min(rules) / 1.3, max(rules) * 1.3])
        ax_rule.loglog(line, line, color="grey", linewidth=1, label=r"measured = $d\,w^2\,(r/224)^2$")
        for name, cost in published.items():
            ax_rule.loglog(cost.rule, cost.flops / base.flops, "o", color=PALETTE[0])
            ax_rule.annotate(name, (cost.rule, cost.flops / base.flops), textcoords="offset points",
                             xytext=(5, -10), fontsize=8, zorder=5)  # above the star
            ax_size.loglog(cost.flops / 1e9, cost.parameters / 1e6, "o", color=PALETTE[0])
            ax_size.annotate(name, (cost.flops / 1e9, cost.parameters / 1e6), textcoords="offset points",
                             xytext=(5, -10), fontsize=8, zorder=5)
        ax_rule.plot([], [], "o", color=PALETTE[0], label="B0-B7 (torchvision's multipliers)")
        ax_rule.loglog(chosen.rule, chosen.flops / base.flops, "*", markersize=16, color=PALETTE[3], alpha=0.8,
                       label="your scaling")  # translucent: a B0-B7 dot under it stays visible
        ax_rule.set_xlabel(r"predicted cost $d\,w^2\,(r/224)^2$ (times B0, log scale)")
        ax_rule.set_ylabel("measured FLOPs / B0's FLOPs (log scale)")
        ax_rule.set_title("FLOPs grow as depth x width² x resolution²", fontsize=10)
        ax_rule.legend(fontsize=8, loc="upper left")
        ax_size.loglog(chosen.flops / 1e9, chosen.parameters / 1e6, "*", markersize=16, color=PALETTE[3], alpha=0.8,
                       label=f"your scaling, r = {chosen.resolution} px")
        ax_size.loglog([at_224.flops / 1e9, chosen.flops / 1e9], [at_224.parameters / 1e6] * 2, ":",
                       color=PALETTE[3], linewidth=1)
        ax_size.loglog(at_224.flops / 1e9, at_224.parameters / 1e6, "*", markersize=16, markerfacecolor="none",
                       color=PALETTE[3], label="the same d and w at r = 224 px")
        ax_size.legend(fontsize=8, loc="upper left")
        for ax in (ax_rule, ax_size):
            _plain_log_labels(ax)
        ax_size.set_xlabel("GFLOPs per image (2 per multiply-add, log scale)")
        ax_size.set_ylabel("parameters (millions, log scale)")
        ax_size.set_title("the resolution changes the FLOPs, not the parameters", fontsize=10)
        fig.suptitle(f"B0 scaled by d = {chosen.depth:g}, w = {chosen.width:g}, r = {chosen.resolution} px: "
                     f"{chosen.blocks} blocks, {chosen.parameters / 1e6:.2f} M parameters, "
                     f"{chosen.flops / 1e9:.2f} GFLOPs ({chosen.flops / base.flops:.1f} x B0; "
                     f"rule {chosen.rule:.1f} x)", fontsize=11)
    return fig


@demo(figure=scaling_figure)
def compound_scaling_explorer(depth: float = 1.0, width: float = 1.0, resolution: int = 224):
    """Sliders for :func:`scaling_figure`: depth and width multipliers and the input resolution.
    ``explorer.result`` is the :class:`ScaledCost` on show."""
    import ipywidgets as widgets

    style = {"description_width": "9em"}
    controls = {
        "depth": widgets.FloatSlider(value=depth, min=DEPTH_RANGE[0], max=DEPTH_RANGE[1], step=0.1,
                                     description="depth d", continuous_update=False, style=style),
        "width": widgets.FloatSlider(value=width, min=WIDTH_RANGE[0], max=WIDTH_RANGE[1], step=0.1,
                                     description="width w", continuous_update=False, style=style),
        "resolution": widgets.IntSlider(value=resolution, min=RESOLUTION_RANGE[0], max=RESOLUTION_RANGE[1],
                                        step=8, description="resolution r (px)", continuous_update=False,
                                        style=style),
    }
    scaled_cost(depth, width, resolution)  # refuse bad starting values before drawing anything

    def show(depth, width, resolution):
        fig = scaling_figure(depth, width, resolution)
        plt.show()
        plt.close(fig)
        return scaled_cost(depth, width, resolution)

    return widgets.interactive(show, **controls)
