"""The gradient-flow explorer (lecture 03): per-layer gradient norms, the figure and the widget wiring."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import widgets
from course_utils.widgets import GradientFlow, gradient_flow, gradient_flow_figure
from course_utils.widgets.gradient_flow import ACTIVATIONS


def _by_hand(activation, derivative, gain, seed=7, width=5, batch=3):
    """A two-layer network's gradients written out: the same draws as gradient_flow, the chain rule by hand."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=g, dtype=torch.float64)  # (N, D_in)
    labels = torch.randint(0, 10, (batch,), generator=g)
    w1 = torch.randn(width, width, generator=g, dtype=torch.float64) * gain / math.sqrt(width)
    w2 = torch.randn(10, width, generator=g, dtype=torch.float64) / math.sqrt(width)
    a1 = x @ w1.T  # (N, width)
    h = activation(a1)
    a2 = h @ w2.T  # (N, 10)
    g2 = (torch.softmax(a2, dim=1) - F.one_hot(labels, 10)) / batch  # dL/da2 of the mean cross-entropy
    g1 = (g2 @ w2) * derivative(a1)  # dL/da1: back through W2, then the activation's diagonal Jacobian
    return (g1.T @ x, g2.T @ h), (g1, g2)  # dL/dW_l = (dL/da_l)^T x_l


@pytest.mark.parametrize("name, activation, derivative, gain", [
    ("sigmoid", torch.sigmoid, lambda a: torch.sigmoid(a) * (1 - torch.sigmoid(a)), 1.0),
    ("tanh", torch.tanh, lambda a: 1 - torch.tanh(a) ** 2, 5 / 3),
    ("relu", torch.relu, lambda a: (a > 0).double(), math.sqrt(2)),
    ("leaky_relu", F.leaky_relu, lambda a: 0.01 + 0.99 * (a > 0).double(), math.sqrt(2 / (1 + 0.01**2))),
])
def test_norms_are_the_chain_rule_by_hand(name, activation, derivative, gain):
    flow = gradient_flow(depth=2, activation=name, width=5, batch=3, seed=7)
    (dw1, dw2), (g1, g2) = _by_hand(activation, derivative, gain)
    assert flow.weight_grad == pytest.approx((dw1.norm().item(), dw2.norm().item()), rel=1e-12)
    assert flow.signal == pytest.approx((g1.norm().item(), g2.norm().item()), rel=1e-12)
    assert isinstance(flow, GradientFlow) and flow.shrink == flow.weight_grad[0] / flow.weight_grad[-1]


def test_pytorch_init_draws_from_nn_linears_default_range():
    # with the default init a single linear layer's gradient is still (softmax - onehot)^T x / N
    flow = gradient_flow(depth=2, activation="relu", init="pytorch", width=5, batch=3, seed=7)
    matched = gradient_flow(depth=2, activation="relu", init="matched", width=5, batch=3, seed=7)
    assert flow.weight_grad != matched.weight_grad and flow.loss != matched.loss
    assert math.isclose(flow.loss, math.log(10), rel_tol=0.1)  # small uniform weights: scores near 0


def test_what_the_lecture_claims():
    flows = {name: gradient_flow(20, name) for name in ACTIVATIONS}
    assert flows["sigmoid"].shrink < 1e-8  # sigmoid' <= 1/4: about a factor 4 lost per layer
    for name in ("tanh", "relu", "leaky_relu"):  # gain-matched init keeps the others within 10x
        assert 0.1 < flows[name].shrink < 10, (name, flows[name].shrink)
    assert gradient_flow(30, "sigmoid").shrink < gradient_flow(10, "sigmoid").shrink < 1e-3  # worse with depth
    default_relu = gradient_flow(30, "relu", "pytorch")  # PyTorch's default init: every layer's gradient tiny
    assert max(default_relu.weight_grad) < 1e-8 and 0.1 < default_relu.shrink < 10


def test_deterministic_and_leaves_global_state_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    first = gradient_flow(8, "tanh")
    assert torch.equal(torch.rand(3), expected)  # the global generator was not used
    assert torch.get_num_threads() == threads
    assert gradient_flow(8, "tanh") == first
    assert gradient_flow(8, "tanh", seed=1) != first
    with torch.no_grad():  # works inside no_grad, as a widget callback may be
        assert gradient_flow(8, "tanh") == first


def test_figure_draws_the_chosen_activation_over_the_others():
    fig = gradient_flow_figure(12, "tanh", "matched")
    flow = gradient_flow(12, "tanh")
    left, right = fig.axes[:2]
    for ax, values in ((left, flow.signal), (right, flow.weight_grad)):
        (chosen,) = [line for line in ax.get_lines() if line.get_gid() == "chosen"]
        assert chosen.get_label() == "tanh"
        assert np.allclose(chosen.get_ydata(), values) and list(chosen.get_xdata()) == list(range(1, 13))
        assert len([line for line in ax.get_lines() if line.get_gid() == "reference"]) == 3
        assert ax.get_yscale() == "log" and ax.get_ylabel() and ax.get_xlabel().startswith("layer")
    assert f"{flow.shrink:.1e}" in fig._suptitle.get_text()
    plt.close(fig)


def test_explorer_has_its_controls_and_follows_them(fast_mode):
    explorer = widgets.gradient_flow_explorer()
    controls = {c.description: c for c in explorer.children[:-1]}
    assert list(controls) == ["depth", "activation", "init"]
    assert explorer.result == gradient_flow(20, "sigmoid", "matched")
    controls["activation"].value = "relu"
    controls["depth"].value = 7
    assert explorer.result == gradient_flow(7, "relu", "matched")
    controls["init"].value = "pytorch"
    assert explorer.result.init == "pytorch" and explorer.result.depth == 7
    explorer.close()
    plt.close("all")


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 1}, "depth must be an int from 2 to 100"),
    ({"depth": 101}, "depth must be an int from 2 to 100"),
    ({"depth": 5.0}, "depth must be an int"),
    ({"depth": True}, "depth must be an int"),
    ({"activation": "softplus"}, "activation must be one of 'sigmoid', 'tanh', 'relu', 'leaky_relu'"),
    ({"init": "kaiming"}, "init must be one of 'matched', 'pytorch'"),
    ({"width": 0}, "width must be an int from 1"),
])
def test_bad_input_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradient_flow(**kwargs)
    figure_kwargs = {k: v for k, v in kwargs.items() if k in ("depth", "activation", "init")}
    if figure_kwargs:
        with pytest.raises(ValueError, match=message):
            gradient_flow_figure(**figure_kwargs)
