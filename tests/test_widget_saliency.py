"""The saliency explorer (lecture 09): each method's map agrees with a hand computation on models where the answer is
known, SmoothGrad's noise is scaled to the image's range, the on-object share is what the mask says, the figure
shows the map clipped at its 99th percentile with a labelled colour bar, the same settings draw the same figure, and
bad settings are refused."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_utils import widgets
from course_utils.widgets import saliency as sal


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


class Linear(nn.Module):
    """z = x . w per class: every gradient is w_c, whatever x is."""

    def __init__(self, shape=(3, 8, 8), classes=2):
        super().__init__()
        self.w = nn.Parameter(torch.randn(classes, *shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):  # (N, C, H, W) -> (N, classes)
        return torch.einsum("nchw,kchw->nk", x, self.w)


class Squares(nn.Module):
    """z_0 = sum of x^2 / 2: its gradient is x itself, so SmoothGrad's mean gradient is x + sigma * mean(eps)."""

    def forward(self, x):
        return (x ** 2).flatten(1).sum(1, keepdim=True) / 2


class MeanOfMaps(nn.Module):
    """layer3 passes the image through; class c's score is the mean of channel c: Grad-CAM = ReLU(x_c) / (H W)."""

    def __init__(self):
        super().__init__()
        self.layer3 = nn.Identity()

    def forward(self, x):
        return self.layer3(x).mean(dim=(2, 3))


def _image(shape=(3, 8, 8), seed=1, low=0.0, high=1.0):
    return low + (high - low) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_the_vanilla_gradient_of_a_linear_model_is_its_weight():
    model, x = Linear(), _image()
    heat = sal.saliency_map(model, x, 1, "vanilla gradient")
    torch.testing.assert_close(heat, model.w[1].detach().abs().sum(0))  # (H, W): |w| summed over channels


def test_integrated_gradients_of_a_linear_model_are_input_times_weight():
    model, x = Linear(), _image()
    heat = sal.saliency_map(model, x, 0, "Integrated Gradients")
    # black baseline: IG = (x - 0) * w exactly, for any step count
    torch.testing.assert_close(heat, (x * model.w[0].detach()).abs().sum(0))


def test_integrated_gradients_are_a_right_riemann_sum_over_the_steps():
    x = _image()
    heat = sal.saliency_map(Squares(), x, 0, "Integrated Gradients")
    m = sal.IG_STEPS
    # the gradient of x^2/2 at (k/m) x is (k/m) x, so IG = x * (1/m) sum_{k=1..m} (k/m) x = x^2 (m + 1) / (2m);
    # a left sum (k = 0..m-1) gives (m - 1) / (2m), the exact integral 1/2
    torch.testing.assert_close(heat, (x ** 2 * (m + 1) / (2 * m)).sum(0))


def test_smoothgrad_scales_its_noise_to_the_range_of_the_image():
    x = _image(low=0.2, high=0.7)  # a range of about 0.5, not 1: a fixed sigma would be wrong
    sigma = 0.3 * float(x.max() - x.min())
    heat = sal.saliency_map(Squares(), x, 0, "SmoothGrad", noise_level=0.3, samples=7, seed=5)
    eps = torch.randn((7, *x.shape), generator=torch.Generator().manual_seed(5))
    expected = (x + sigma * eps).mean(0).abs().sum(0)  # the gradient of x^2/2 at x + sigma*eps is x + sigma*eps
    torch.testing.assert_close(heat, expected)
    unscaled = (x + 0.3 * eps).mean(0).abs().sum(0)  # noise_level taken as sigma itself
    assert not torch.allclose(heat, unscaled, atol=1e-3)


def test_smoothgrad_without_noise_is_the_vanilla_gradient_and_a_seed_repeats():
    model = sal._model()
    x = sal._images().images[2]
    vanilla = sal.saliency_map(model, x, 1, "vanilla gradient")
    torch.testing.assert_close(sal.saliency_map(model, x, 1, "SmoothGrad", noise_level=0.0, samples=3), vanilla)
    first = sal.saliency_map(model, x, 1, "SmoothGrad", samples=10, seed=3)
    assert torch.equal(first, sal.saliency_map(model, x, 1, "SmoothGrad", samples=10, seed=3))
    assert not torch.equal(first, sal.saliency_map(model, x, 1, "SmoothGrad", samples=10, seed=4))


def test_grad_cam_weighs_the_feature_maps_of_layer3_by_their_mean_gradient():
    x = _image(low=-1.0, high=1.0)  # negative values: the ReLU must remove them
    heat = sal.saliency_map(MeanOfMaps(), x, 2, "Grad-CAM")
    H, W = x.shape[1:]
    torch.testing.assert_close(heat, torch.relu(x[2]) / (H * W))  # same size: the upsampling changes nothing


def test_grad_cam_is_upsampled_to_the_image_size():
    model = sal._model()
    heat = sal.saliency_map(model, sal._images().images[0], 0, "Grad-CAM")
    assert heat.shape == (32, 32) and bool((heat >= 0).all())


def test_saliency_leaves_the_model_in_eval_mode_and_its_weights_alone():
    model = Linear()
    before = model.w.detach().clone()
    model.train()
    sal.saliency_map(model, _image(), 0, "SmoothGrad", samples=4)
    assert not model.training and torch.equal(model.w.detach(), before)


def test_the_view_reports_the_share_of_the_map_on_the_object():
    view = sal.saliency_view(3, "Integrated Gradients")
    images = sal._images()
    assert torch.equal(view.image, images.images[3]) and torch.equal(view.mask, images.masks[3])
    assert view.saliency.shape == (32, 32) and bool((view.saliency >= 0).all())
    assert view.on_object == pytest.approx(float(view.saliency[view.mask].sum() / view.saliency.sum()))
    assert view.area == pytest.approx(float(view.mask.float().mean()))
    assert view.label == images.classes[int(images.labels[3])] and 0 < view.confidence <= 1
    assert view.clip == pytest.approx(float(np.percentile(view.saliency.numpy(), 99)), rel=1e-5)


def test_the_figure_shows_the_map_clipped_at_its_99th_percentile_with_a_labelled_bar():
    fig = sal.saliency_figure(5, "SmoothGrad", 0.2, 20)
    view = sal.saliency_view(5, "SmoothGrad", 0.2, 20)
    image_ax, map_ax, overlay_ax, bar_ax = fig.axes
    shown = map_ax.get_images()[0]
    assert shown.get_clim() == pytest.approx((0.0, view.clip))
    assert shown.get_cmap().name == "viridis"  # a magnitude: sequential colours
    assert "99th percentile" in bar_ax.get_ylabel()
    assert "SmoothGrad" in map_ax.get_title() and "20% of the range" in map_ax.get_title()
    assert "20 samples" in map_ax.get_title()
    assert f"{view.on_object:.0%}" in overlay_ax.get_title()


def test_the_same_settings_draw_the_same_map():
    a = sal.saliency_view(7, "SmoothGrad", 0.1, 30)
    b = sal.saliency_view(7, "SmoothGrad", 0.1, 30)
    assert torch.equal(a.saliency, b.saliency)


@pytest.mark.parametrize("bad, message", [
    ({"method": "saliency"}, "method must be one of 'vanilla gradient', 'SmoothGrad', 'Integrated Gradients', "
                             "'Grad-CAM'; got 'saliency'"),
    ({"image": sal.N_IMAGES}, f"image must be an int from 0 to {sal.N_IMAGES - 1}, got {sal.N_IMAGES}"),
    ({"noise_level": -0.1}, "noise_level must be a finite number >= 0"),
    ({"noise_level": float("nan")}, "noise_level must be a finite number >= 0"),
    ({"samples": 0}, f"samples must be an int from 1 to {sal.MAX_SAMPLES}, got 0"),
    ({"samples": 2.5}, "samples must be an int"),
])
def test_bad_settings_say_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sal.saliency_view(**{"image": 0, "method": "SmoothGrad", **bad})


def test_grad_cam_names_the_module_it_needs():
    with pytest.raises(ValueError, match="model.layer3.*Linear has no such module"):
        sal.saliency_map(Linear(), _image(), 0, "Grad-CAM")


def test_one_image_at_a_time():
    with pytest.raises(ValueError, match=r"one image \(C, H, W\), got shape \(2, 3, 8, 8\)"):
        sal.saliency_map(Linear(), torch.rand(2, 3, 8, 8), 0, "vanilla gradient")


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["saliency_explorer"].figure is sal.saliency_figure
    assert widgets.saliency_explorer is sal.saliency_explorer
    widget = sal.saliency_explorer(image=2, method="Grad-CAM", noise_level=0.2, samples=10)
    assert widget.kwargs == {"image": 2, "method": "Grad-CAM", "noise_level": 0.2, "samples": 10}
    assert isinstance(widget.result, sal.SaliencyView) and widget.result.method == "Grad-CAM"
    assert widget.result.index == 2
    widget.close()
    with pytest.raises(ValueError, match="method must be one of"):
        sal.saliency_explorer(method="LIME")


def test_the_explorer_computes_each_map_once(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    calls = []
    original = sal.saliency_map
    monkeypatch.setattr(sal, "saliency_map", lambda *a, **k: calls.append(a[3]) or original(*a, **k))
    widget = sal.saliency_explorer(image=1, method="SmoothGrad", noise_level=0.1, samples=5)
    assert calls == ["SmoothGrad"], f"one slider move should compute one map, got {len(calls)} computations"
    widget.close()


def test_smoothgrads_settings_are_greyed_out_for_the_other_methods(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    widget = sal.saliency_explorer(image=1, method="vanilla gradient", samples=5)
    controls = {c.description: c for c in widget.kwargs_widgets}
    assert controls["noise level"].disabled and controls["samples"].disabled
    controls["method"].value = "SmoothGrad"
    assert not controls["noise level"].disabled and not controls["samples"].disabled
    before = widget.result.saliency.clone()
    controls["noise level"].value = 0.3  # the map it shows follows the slider
    assert not torch.equal(before, widget.result.saliency)
    controls["method"].value = "Grad-CAM"
    assert controls["noise level"].disabled and controls["samples"].disabled
    widget.close()
