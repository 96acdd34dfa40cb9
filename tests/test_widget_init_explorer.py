"""The initialization explorer (lecture 04): its statistics follow the variance derivations, its figure draws."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import widgets
from course_utils.widgets import init_explorer as explorer


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _std(init, activation, depth=8, width=256, n=512, seed=0):
    return explorer.layer_activations(init, activation, depth, width=width, n=n, seed=seed).std


def test_shapes_and_determinism():
    result = explorer.layer_activations("lecun", "tanh", depth=5, width=64, n=100, seed=3)
    assert len(result.activations) == 5 and all(a.shape == (100, 64) for a in result.activations)
    assert result.std.shape == result.unit_spread.shape == (5,)
    again = explorer.layer_activations("lecun", "tanh", depth=5, width=64, n=100, seed=3)
    assert torch.equal(result.std, again.std)
    other = explorer.layer_activations("lecun", "tanh", depth=5, width=64, n=100, seed=4)
    assert not torch.equal(result.std, other.std)


def test_linear_layers_keep_the_variance_with_lecun_and_scale_it_with_kaiming():
    # Var(W h) = fan_in Var(w) Var(h): factor 1 per layer (LeCun), 2 (Kaiming), (0.01² fan_in) (small)
    lecun = _std("lecun", "linear") ** 2
    kaiming = _std("kaiming", "linear") ** 2
    small = _std("small", "linear") ** 2
    layers = torch.arange(1, 9, dtype=torch.float32)
    assert torch.allclose(lecun, torch.ones(8), rtol=0.25)
    assert torch.allclose(kaiming, 2.0 ** layers, rtol=0.3)
    assert torch.allclose(small, (0.01**2 * 256) ** layers, rtol=0.4)


def test_kaiming_keeps_relu_networks_alive_and_lecun_halves_them():
    # E[relu(y)^2] = Var(y)/2: the second moment is kept with Var(w) = 2/fan_in and halved with 1/fan_in
    def second_moments(init):
        result = explorer.layer_activations(init, "relu", depth=10, width=256, n=512, seed=1)
        return torch.stack([(a**2).mean() for a in result.activations])

    kaiming, lecun = second_moments("kaiming"), second_moments("lecun")
    # finite width: the log of the second moment random-walks a little from layer to layer
    assert math.isclose(kaiming.mean().item(), 1.0, rel_tol=0.2) and kaiming.min() > 0.5 and kaiming.max() < 2
    ratio = (lecun[-1] / lecun[0]).item()
    assert 0.5**9 / 2 < ratio < 0.5**9 * 2


def test_small_random_init_vanishes_in_tanh_and_glorot_does_not():
    small = _std("small", "tanh", depth=6)
    assert small[-1] < 1e-3 * small[0]
    glorot = _std("glorot", "tanh", depth=6)
    assert glorot[-1] > 0.3 * glorot[0]


def test_constant_init_makes_every_unit_equal_and_zero_init_kills_everything():
    constant = explorer.layer_activations("constant", "tanh", depth=4, width=64, n=50)
    assert torch.all(constant.unit_spread == 0) and torch.all(constant.std > 0)
    zero = explorer.layer_activations("zero", "relu", depth=4, width=64, n=50)
    assert torch.all(zero.std == 0)
    assert explorer.layer_activations("lecun", "tanh", depth=4, width=64, n=50).unit_spread.min() > 0


def test_selu_with_lecun_weights_settles_at_mean_0_variance_1():
    result = explorer.layer_activations("lecun", "selu", depth=30, width=256, n=512)
    last = result.activations[-1]
    assert abs(last.mean().item()) < 0.1 and math.isclose(last.var().item(), 1.0, rel_tol=0.15)


@pytest.mark.parametrize("bad, message", [({"init": "xavier"}, "init must be one of"),
                                          ({"activation": "sigmoid"}, "activation must be one of"),
                                          ({"depth": 0}, "depth must be an int"),
                                          ({"depth": 2.0}, "depth must be an int")])
def test_bad_settings_say_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        explorer.layer_activations(**bad)


@pytest.mark.parametrize("init, activation, depth", [("small", "tanh", 10), ("zero", "relu", 3),
                                                     ("constant", "tanh", 12), ("kaiming", "relu", 1)])
def test_the_figure_shows_one_histogram_per_shown_layer_and_a_log_std_axis(init, activation, depth):
    fig = explorer.init_figure(init, activation, depth, width=64, n=64)
    histograms, std_axis = fig.axes[:-1], fig.axes[-1]
    assert len(histograms) == min(depth, 6)
    assert histograms[0].get_title().startswith("layer 1") and histograms[-1].get_title().startswith(f"layer {depth}")
    assert std_axis.get_yscale() == "log" and std_axis.get_xlabel() == "layer"
    assert init in fig.get_suptitle() and activation in fig.get_suptitle()


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["initialization_explorer"].figure is explorer.init_figure
    assert widgets.initialization_explorer is explorer.initialization_explorer
    widget = explorer.initialization_explorer(init="lecun", activation="relu", depth=4)
    assert widget.kwargs == {"init": "lecun", "activation": "relu", "depth": 4}
    assert len(widget.result.activations) == 4
    widget.close()
