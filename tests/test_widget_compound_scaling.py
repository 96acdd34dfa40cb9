"""The compound-scaling explorer (lecture 07): it measures what torchvision builds, its counts obey the scaling
laws, its figure draws, and bad input is refused."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_utils import widgets
from course_utils.widgets import compound_scaling as scaling


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _torchvision_counts(name: str, resolution: int) -> tuple[int, int]:
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None).eval()
        x = torch.empty(1, 3, resolution, resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


@pytest.mark.parametrize("name", ["B0", "B3"])
def test_the_published_scalings_are_torchvisions_models(name):
    width, depth, resolution = scaling.PUBLISHED[name]
    cost = scaling.scaled_cost(depth, width, resolution)
    assert (cost.parameters, cost.flops) == _torchvision_counts(f"efficientnet_{name.lower()}", resolution)


def test_b0_has_its_documented_size_and_flops_count_two_per_multiply_add():
    cost = scaling.scaled_cost()
    assert cost.parameters == 5_288_548  # torchvision's documented count for EfficientNet-B0
    assert cost.blocks == 16             # the paper's Table 1: 1 + 2 + 2 + 3 + 3 + 4 + 1
    assert 0.38e9 < cost.macs < 0.40e9   # the paper's 0.39 billion "FLOPS" are multiply-adds
    assert cost.flops == 2 * cost.macs


def test_flop_counter_counts_two_flops_per_multiply_add_on_one_convolution():
    # 32x32x3 input, ten 5x5 filters, pad 2: 32*32*10 outputs * 3*5*5 multiply-adds = 768,000
    conv = nn.Conv2d(3, 10, 5, padding=2)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        conv(torch.zeros(1, 3, 32, 32))
    assert counter.get_total_flops() == 1_536_000


def test_the_resolution_changes_the_flops_about_quadratically_and_never_the_parameters():
    small, large = scaling.scaled_cost(1.2, 1.1, 224), scaling.scaled_cost(1.2, 1.1, 448)
    assert small.parameters == large.parameters
    assert math.isclose(large.flops / small.flops, 4.0, rel_tol=0.05)


def test_width_and_depth_grow_parameters_and_flops_as_the_rule_says():
    base = scaling.scaled_cost()
    wide, deep = scaling.scaled_cost(width=2.0), scaling.scaled_cost(depth=2.0)
    assert math.isclose(wide.flops / base.flops, 4.0, rel_tol=0.15)  # width squared
    assert wide.parameters > 3 * base.parameters
    assert deep.blocks == sum(math.ceil(2.0 * stage[-1]) for stage in scaling.B0_STAGES) == 32
    assert 1.5 < deep.flops / base.flops < 2.5                          # about linear in depth
    # the rule holds within about 40% for B1-B7; rounding each stage's block count up makes B1, at d = 1.1,
    # 23 blocks deep instead of 1.1 * 16 = 17.6, the largest excess
    for name, (w, d, r) in scaling.PUBLISHED.items():
        cost = scaling.scaled_cost(d, w, r)
        assert 0.75 < (cost.flops / base.flops) / cost.rule < 1.45, name
    assert scaling.scaled_cost(1.1, 1.0, 240).blocks == 23


def test_the_compound_rule_about_doubles_the_cost_per_step():
    d, w, r = scaling.compound(1.0)
    assert (d, w, r) == (1.2, 1.1, 258)
    assert math.isclose(d * w**2 * (r / 224) ** 2, 1.92, rel_tol=0.01)
    assert scaling.compound(0.0) == (1.0, 1.0, 224)


@pytest.mark.parametrize("bad, message", [
    ({"depth": 0.5}, "depth must be a number from 1 to 4, got 0.5"),
    ({"width": 3.0}, "width must be a number from 1 to 2.5, got 3.0"),
    ({"width": "1.1"}, "width must be a number"),
    ({"depth": True}, "depth must be a number"),
    ({"resolution": 224.0}, "resolution must be an int from 32 to 640 \\(pixels\\), got 224.0"),
    ({"resolution": 16}, "resolution must be an int from 32 to 640"),
])
def test_bad_settings_say_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        scaling.scaled_cost(**bad)


def test_the_figure_has_two_log_log_panels_and_names_the_unit():
    fig = scaling.scaling_figure(2.0, 1.5, 320)
    ax_rule, ax_size = fig.axes
    for ax in (ax_rule, ax_size):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_xlabel() and ax.get_ylabel()
    assert "2 per multiply-add" in ax_size.get_xlabel()
    assert "d = 2, w = 1.5, r = 320 px" in fig._suptitle.get_text()
    assert len(ax_rule.get_legend().get_texts()) == 3 and len(ax_size.get_legend().get_texts()) == 2


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["compound_scaling_explorer"].figure is scaling.scaling_figure
    assert widgets.compound_scaling_explorer is scaling.compound_scaling_explorer
    widget = scaling.compound_scaling_explorer(depth=1.4, width=1.2, resolution=304)
    assert widget.kwargs == {"depth": 1.4, "width": 1.2, "resolution": 304}
    assert widget.result == scaling.scaled_cost(1.4, 1.2, 304)
    widget.close()
    with pytest.raises(ValueError, match="resolution must be an int"):
        scaling.compound_scaling_explorer(resolution=1000)
