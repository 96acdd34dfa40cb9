"""The gradient-flow explorer (lecture 03): per-layer gradient norms in a deep network, by activation.

A stack of ``depth`` linear layers (no biases) of ``width`` units, with an
activation after every layer but the last, maps a batch of N(0, 1) inputs to
10 class scores; the loss is the cross-entropy against random labels. Autograd
(PyTorch's own backward pass) then gives, for every layer l = 1..depth:

- ``signal[l]``: the norm of dL/da_l, the gradient with respect to the layer's
  output a_l = x_l W_lᵀ before the activation: the signal backpropagation carries;
- ``weight_grad[l]``: the norm of dL/dW_l = (dL/da_l)ᵀ x_l, what the optimizer sees.

Weights start as N(0, σ²) with σ = gain / sqrt(fan_in) ("matched": PyTorch's
``nn.init.calculate_gain`` for the activation, lecture 04 derives it), or as
PyTorch's default for ``nn.Linear``, U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Every
activation is run with the same random draws, so the curves differ only by the
activation. Nothing here is an assignment's answer: PyTorch computes the
gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..plotting import PALETTE, styled
from ..seeding import COURSE_SEED
from .registry import demo

__all__ = ["ACTIVATIONS", "INITS", "GradientFlow", "gradient_flow", "gradient_flow_figure", "gradient_flow_explorer"]

#: activation name -> (function, name for ``nn.init.calculate_gain``, name in legends, colour, line style)
_ACTIVATIONS = {
    "sigmoid": (torch.sigmoid, "sigmoid", "sigmoid", PALETTE[0], (0, (6, 2))),
    "tanh": (torch.tanh, "tanh", "tanh", PALETTE[1], (0, (2, 2))),
    "relu": (torch.relu, "relu", "ReLU", PALETTE[2], (0, (6, 2, 2, 2))),
    "leaky_relu": (F.leaky_relu, "leaky_relu", "Leaky ReLU (slope 0.01)", PALETTE[4], (0, (1, 1))),
}
ACTIVATIONS = tuple(_ACTIVATIONS)
INITS = ("matched", "pytorch")  # N(0, (gain/sqrt(fan_in))^2), or nn.Linear's default uniform
N_CLASSES = 10
MAX_DEPTH = 100


@dataclass(frozen=True)
class GradientFlow:
    """Per-layer gradient norms of one network (layer 1 is next to the input, layer ``depth`` gives the scores).

    weight_grad: (depth,) Frobenius norms ||dL/dW_l||, W_l of shape (D_out, D_in).
    signal:      (depth,) norms ||dL/da_l|| of the gradient w.r.t. each layer's output a_l (N, D_out),
                 before its activation.
    """

    depth: int
    activation: str
    init: str
    width: int
    batch: int
    loss: float
    weight_grad: tuple[float, ...]
    signal: tuple[float, ...]

    @property
    def shrink(self) -> float:
        """||dL/dW_1|| / ||dL/dW_depth||: how much smaller the first layer's gradient is than the last's."""
        return self.weight_grad[0] / self.weight_grad[-1]


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
    return int(value)


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def gradient_flow(depth: int = 20, activation: str = "sigmoid", init: str = "matched", width: int = 64,
                  batch: int = 64, seed: int = COURSE_SEED) -> GradientFlow:
    """Per-layer gradient norms of a deep MLP, computed by autograd (see the module docstring).

    depth: number of linear layers (2..100), an activation after each but the last.
    activation: one of :data:`ACTIVATIONS`. init: ``"matched"`` or ``"pytorch"`` (:data:`INITS`).
    width: units per hidden layer (D_in = D_out = width); batch: N inputs of shape (N, width).
    seed: the draws of inputs, labels and weights (a private generator: the global one is untouched).
    """
    depth = _check_int("depth", depth, 2, MAX_DEPTH)
    activation = _check_choice("activation", activation, ACTIVATIONS)
    init = _check_choice("init", init, INITS)
    width = _check_int("width", width, 1, 4096)
    batch = _check_int("batch", batch, 1, 4096)
    phi, gain_name = _ACTIVATIONS[activation][:2]
    gain = torch.nn.init.calculate_gain(gain_name)  # sigmoid 1, tanh 5/3, ReLU sqrt(2), ...
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64x64 products are too small to split; on a busy machine splitting costs a lot
    try:
        return _run(depth, phi, gain, init, width, batch, generator, activation)
    finally:
        torch.set_num_threads(threads)


def _run(depth: int, phi, gain: float, init: str, width: int, batch: int, generator: torch.Generator,
         activation: str) -> GradientFlow:
    """The forward and backward pass of :func:`gradient_flow` (arguments already checked)."""
    with torch.enable_grad():
        x = torch.randn(batch, width, generator=generator, dtype=torch.float64)  # (N, D_in)
        labels = torch.randint(0, N_CLASSES, (batch,), generator=generator)  # (N,)
        weights, outputs = [], []
        for layer in range(depth):
            last = layer == depth - 1
            d_out = N_CLASSES if last else width
            if init == "matched":
                sigma = (1.0 if last else gain) / math.sqrt(width)  # no activation after the last layer
                w = torch.randn(d_out, width, generator=generator, dtype=torch.float64) * sigma
            else:
                bound = 1 / math.sqrt(width)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                w = (torch.rand(d_out, width, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            w.requires_grad_(True)
            a = x @ w.T  # (N, D_out): a_l = x_l W_l^T
            a.retain_grad()  # keep dL/da_l, which autograd would otherwise free
            weights.append(w)
            outputs.append(a)
            x = a if last else phi(a)
        loss = F.cross_entropy(x, labels)
        loss.backward()
    return GradientFlow(depth, activation, init, width, batch, loss.item(),
                        tuple(w.grad.norm().item() for w in weights),
                        tuple(a.grad.norm().item() for a in outputs))


def _label(activation: str) -> str:
    return _ACTIVATIONS[activation][2]


def gradient_flow_figure(depth: int = 20, activation: str = "sigmoid", init: str = "matched") -> Figure:
    """Per-layer gradient norms (log scale) for ``activation`` (bold), the other activations thin for reference.

    Left: ||dL/da_l||, the signal backpropagation carries to layer l; right: ||dL/dW_l||, the weight gradient.
    Lines carry gid ``"chosen"`` (the chosen activation) or ``"reference"``.
    """
    flows = {name: gradient_flow(depth, name, init) for name in ACTIVATIONS}
    chosen = flows[_check_choice("activation", activation, ACTIVATIONS)]
    layers = np.arange(1, chosen.depth + 1)
    init_text = ("weights N(0, gain²/fan_in), gain matched to the activation" if init == "matched" else
                 "weights U(±1/√fan_in), PyTorch's default for nn.Linear")
    with styled():
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
        for ax, field, ylabel in ((axes[0], "signal", r"$\|\partial L / \partial a_l\|$ (log scale)"),
                                  (axes[1], "weight_grad", r"$\|\partial L / \partial W_l\|$ (log scale)")):
            for name, flow in flows.items():
                values = getattr(flow, field)
                colour, dashes = _ACTIVATIONS[name][3:]
                if name == activation:
                    ax.semilogy(layers, values, color=colour, marker="o", markersize=4, linewidth=2.5,
                                label=_label(name), gid="chosen", zorder=3)
                else:
                    ax.semilogy(layers, values, color=colour, linewidth=1.3, alpha=0.7, linestyle=dashes,
                                label=_label(name), gid="reference")
            ax.set_xlabel(f"layer l (1 = next to the input, {chosen.depth} = class scores)")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].set_title("gradient w.r.t. each layer's output (before the activation)", fontsize=10)
        axes[1].set_title("gradient w.r.t. each layer's weights", fontsize=10)
        axes[1].legend(fontsize=8, title="activation (bold: chosen)", title_fontsize=8)
        first, last = chosen.weight_grad[0], chosen.weight_grad[-1]
        fig.suptitle(f"{_label(activation)}, {chosen.depth} layers, {init_text}\n"
                     f"weight gradient {first:.1e} at layer 1, {last:.1e} at layer {chosen.depth} "
                     f"(ratio {chosen.shrink:.1e})", fontsize=10)
    return fig


@demo(figure=gradient_flow_figure)
def gradient_flow_explorer(depth: int = 20, activation: str = "sigmoid", init: str = "matched"):
    """A depth slider, an activation and an init menu around :func:`gradient_flow_figure`, starting at the
    values given. ``explorer.result`` is the :class:`GradientFlow` of the chosen activation."""
    import ipywidgets as widgets

    def show(depth, activation, init):
        fig = gradient_flow_figure(depth, activation, init)
        plt.show()
        plt.close(fig)
        return gradient_flow(depth, activation, init)

    return widgets.interactive(
        show,
        depth=widgets.IntSlider(value=depth, min=2, max=50, description="depth", continuous_update=False,
                                tooltip="number of linear layers"),
        # each option shows its value (the browser suite checks that a control shows what the kernel holds)
        activation=widgets.Dropdown(options=list(ACTIVATIONS), value=activation,
                                    description="activation"),
        init=widgets.Dropdown(options=list(INITS), value=init, tooltip="matched: N(0, gain²/fan_in); "
                              "pytorch: nn.Linear's default",
                              description="init"),
    )
