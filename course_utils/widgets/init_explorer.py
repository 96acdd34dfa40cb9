"""The initialization explorer (lecture 04): activations layer by layer in a deep MLP at initialization.

A batch of N standard-normal inputs of width D goes through ``depth`` bias-free
linear layers of shape (D, D), each followed by the chosen activation. The weights
are drawn by ``torch.nn.init`` (or set to a constant), one scheme for every layer:

=============  ==================================================  ==========================================
name           Var(w) (fan_in = fan_out = D)                       drawn by
=============  ==================================================  ==========================================
zero           0 (every weight 0)                                   ``nn.init.zeros_``
constant       0 (every weight 0.01)                                ``nn.init.constant_``
small          0.01²                                                ``nn.init.normal_(std=0.01)``
lecun          1/fan_in                                             ``kaiming_normal_(nonlinearity="linear")``
glorot         2/(fan_in + fan_out)                                 ``xavier_normal_``
kaiming        2/fan_in                                             ``kaiming_normal_(nonlinearity="relu")``
=============  ==================================================  ==========================================

With equal widths, Glorot's variance equals LeCun's. The explorer draws a histogram
of the activations of a few layers and their standard deviation at every layer.
Nothing here is an initializer to reuse: the weights come from PyTorch's built-ins
inside :func:`layer_activations` (assignment a2 asks for the initializers).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..plotting import PALETTE, styled
from ..seeding import COURSE_SEED
from .registry import demo

__all__ = ["INITS", "ACTIVATIONS", "LayerActivations", "layer_activations", "init_figure", "initialization_explorer"]

INITS = ("zero", "constant", "small", "lecun", "glorot", "kaiming")
ACTIVATIONS = ("tanh", "relu", "selu", "linear")
CONSTANT = 0.01  # the "small constant" weight
SMALL_STD = 0.01  # the standard deviation of the "small random" weights
MAX_DEPTH = 50
_PANELS = 6  # histograms drawn at most
_ACT = {"tanh": torch.tanh, "relu": F.relu, "selu": F.selu, "linear": lambda h: h}


@dataclass(frozen=True)
class LayerActivations:
    """What :func:`layer_activations` measured.

    activations: one (N, D) tensor per layer, after the activation function (layer 1 first).
    std:         (depth,) standard deviation of each layer's activations over the batch and the units.
    unit_spread: (depth,) the standard deviation across the D units, averaged over the N inputs;
                 0 when every unit of the layer computes the same value (the symmetry problem).
    """

    init: str
    activation: str
    activations: list[Tensor]
    std: Tensor
    unit_spread: Tensor


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
    return int(value)


def _draw_weight(weight: Tensor, init: str, generator: torch.Generator) -> None:
    """Fill ``weight`` (D_out, D_in) in place with PyTorch's built-in for ``init``."""
    init_ = torch.nn.init
    if init == "zero":
        init_.zeros_(weight)
    elif init == "constant":
        init_.constant_(weight, CONSTANT)
    elif init == "small":
        init_.normal_(weight, std=SMALL_STD, generator=generator)
    elif init == "lecun":
        init_.kaiming_normal_(weight, nonlinearity="linear", generator=generator)  # Var = 1/fan_in
    elif init == "glorot":
        init_.xavier_normal_(weight, generator=generator)  # Var = 2/(fan_in + fan_out)
    else:
        init_.kaiming_normal_(weight, nonlinearity="relu", generator=generator)  # Var = 2/fan_in


@torch.no_grad()
def layer_activations(init: str = "kaiming", activation: str = "relu", depth: int = 10, width: int = 256,
                      n: int = 512, seed: int = COURSE_SEED) -> LayerActivations:
    """Push N standard-normal inputs of width D through ``depth`` layers h = act(W h), W: (D, D), no bias.

    init: one of :data:`INITS`; activation: one of :data:`ACTIVATIONS`; width = D; n = N.
    The same ``seed`` gives the same inputs and weights.
    """
    init = _check_choice("init", init, INITS)
    activation = _check_choice("activation", activation, ACTIVATIONS)
    depth = _check_int("depth", depth, 1, MAX_DEPTH)
    width, n = _check_int("width", width, 2, 4096), _check_int("n", n, 2, 100_000)
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(n, width, generator=generator)  # (N, D), mean 0, variance 1
    weight = torch.empty(width, width)  # (D_out, D_in), as in nn.Linear
    act = _ACT[activation]
    layers = []
    for _ in range(depth):
        _draw_weight(weight, init, generator)
        h = act(h @ weight.T)  # (N, D_in) @ (D_in, D_out) -> (N, D_out)
        layers.append(h)
    std = torch.stack([a.std() for a in layers])
    unit_spread = torch.stack([a.std(dim=1).mean() for a in layers])
    return LayerActivations(init, activation, layers, std, unit_spread)


def _shown_layers(depth: int) -> list[int]:
    """Up to six layers (1-based), evenly spread, always the first and the last."""
    if depth <= _PANELS:
        return list(range(1, depth + 1))
    return sorted({int(round(v)) for v in np.linspace(1, depth, _PANELS)})


def init_figure(init: str = "kaiming", activation: str = "relu", depth: int = 10, width: int = 256,
                n: int = 512) -> Figure:
    """Histograms of a few layers' activations (one shared value axis) and the std of every layer (log scale)."""
    result = layer_activations(init, activation, depth, width, n)
    shown = _shown_layers(depth)
    first = result.activations[0]
    # one value range for every histogram: a bounded activation's range, else 4 std of layer 1
    limit = 1.0 if activation == "tanh" or first.std().item() == 0 else 4 * first.std().item()
    with styled():
        fig = plt.figure(figsize=(11, 5.6), layout="constrained")
        grid = fig.add_gridspec(2, _PANELS, height_ratios=(1, 1.15))
        for column, layer in enumerate(shown):
            ax = fig.add_subplot(grid[0, column])
            values = result.activations[layer - 1].flatten().numpy()
            outside = float(np.mean(np.abs(values) > limit))
            ax.hist(np.clip(values, -limit, limit), bins=41, range=(-limit, limit), color=PALETTE[0],
                    density=True)
            ax.set_title(f"layer {layer}\nstd {result.std[layer - 1].item():.2g}"
                         + (f", {outside:.0%} outside" if outside >= 0.005 else ""), fontsize=9)
            ax.set_xlabel("activation")
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel("density")
        ax_std = fig.add_subplot(grid[1, :])
        layers = np.arange(1, depth + 1)
        std = result.std.numpy()
        drawn = std > 0
        if drawn.any():
            ax_std.semilogy(layers[drawn], std[drawn], marker="o", label="std of the activations")
        spread = result.unit_spread.numpy()
        if (spread > 0).any():
            ax_std.semilogy(layers[spread > 0], spread[spread > 0], marker="x", linestyle="--",
                            label="spread across the units of a layer")
        if not drawn.any():
            ax_std.set_title("every activation is exactly 0: nothing to draw on a log scale", fontsize=10)
            ax_std.set_ylim(1e-3, 10)
        elif not (spread > 0).any():
            ax_std.set_title("spread across the units is exactly 0 in every layer: all units of a layer are equal "
                             "(not drawable on a log scale)", fontsize=10)
        ax_std.set_yscale("log")
        if drawn.any():  # at least 0.1 to 10: a wobble near 1 should look like one
            low, high = ax_std.get_ylim()
            ax_std.set_ylim(min(low, 0.1), max(high, 10.0))
        ax_std.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax_std.set_xlabel("layer")
        ax_std.set_ylabel("standard deviation (log scale)")
        ax_std.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_std.set_xlim(0.5, depth + 0.5)
        if drawn.any() or (spread > 0).any():
            ax_std.legend(loc="best", fontsize=9)
        fig.suptitle(f"{init} init, {activation}, {depth} layers of width {width} "
                     f"(histograms on one axis, clipped at ±{limit:.2g})")
    return fig


@demo(figure=init_figure)
def initialization_explorer(init: str = "small", activation: str = "tanh", depth: int = 10):
    """Controls for :func:`init_figure`: the initialization, the activation function and the depth.
    ``explorer.result`` is the :class:`LayerActivations` on show."""
    import ipywidgets as widgets

    style = {"description_width": "7em"}
    controls = {
        "init": widgets.Dropdown(options=INITS, value=init, description="init", style=style),
        "activation": widgets.Dropdown(options=ACTIVATIONS, value=activation, description="activation",
                                       style=style),
        "depth": widgets.IntSlider(value=depth, min=1, max=30, description="depth", continuous_update=False,
                                   style=style),
    }

    def show(init, activation, depth):
        fig = init_figure(init, activation, depth)
        plt.show()
        plt.close(fig)
        return layer_activations(init, activation, depth)

    return widgets.interactive(show, **controls)
