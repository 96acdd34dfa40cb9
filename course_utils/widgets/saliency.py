"""The saliency explorer (lecture 09): four saliency maps of the course checkpoint on one shapes image.

For an image x (3, H, W) in [0, 1] and the class c the model predicts, with z_c(x) the logit of class c:

- **vanilla gradient** (Simonyan et al., 2014): S = dz_c/dx, one autograd backward pass;
- **SmoothGrad** (Smilkov et al., 2017): the mean of dz_c/dx over ``samples`` noisy copies x + sigma * eps,
  eps ~ N(0, I), sigma = ``noise_level`` * (max(x) - min(x)) (the recommended setting: 0.1 and 50 samples);
- **Integrated Gradients** (Sundararajan et al., 2017): (x - x') * (1/m) sum_{k=1..m} dz_c/dx at x' + (k/m)(x - x'),
  black baseline x' = 0, m = 50 steps (right Riemann sum);
- **Grad-CAM** (Selvaraju et al., 2017) on ``layer3``: ReLU(sum_k alpha_k A^k), alpha_k the mean over positions of
  dz_c/dA^k, upsampled bilinearly from 4x4 to the image size.

The gradient methods give one value per pixel and channel; the explorer shows their magnitude, the sum over the
channels of the absolute values (H, W), Grad-CAM its (non-negative) map. Maps are shown from 0 to their 99th
percentile, so that a few outlying pixels do not wash out the rest. The shapes data carries object masks, so the
explorer also reports the fraction of the map's total that falls on the object, next to the object's share of the
image (what a map of uniform noise would score on average).

These functions work on one image at a time and use autograd for every derivative; the noise comes from a
seeded generator, so the same settings always draw the same figure.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from ..plotting import colorbar, styled
from ..seeding import COURSE_SEED
from .registry import demo

__all__ = ["METHODS", "N_IMAGES", "SaliencyView", "saliency_map", "saliency_view", "saliency_figure",
           "saliency_explorer"]

METHODS = ("vanilla gradient", "SmoothGrad", "Integrated Gradients", "Grad-CAM")
N_IMAGES = 16       # the explorer's images: shapes "basic", 32x32, a fixed seed
IMAGE_SEED = 11     # not the training seed of the checkpoint: images it has not seen
IG_STEPS = 50       # m of Integrated Gradients
MAX_SAMPLES = 200   # SmoothGrad's sample count is capped to keep the widget responsive
CLIP_PERCENTILE = 99


@dataclass(frozen=True)
class SaliencyView:
    """What the explorer shows for one image and one method.

    image:      (3, H, W) in [0, 1]
    mask:       (H, W) bool, True on the object
    saliency:   (H, W) non-negative map (channel-summed magnitude, or Grad-CAM's map)
    on_object:  fraction of the map's total on the object's pixels, in [0, 1]
    area:       fraction of the image the object covers (a uniform random map's expected score)
    """

    index: int
    method: str
    noise_level: float
    samples: int
    label: str
    prediction: str
    confidence: float
    image: Tensor
    mask: Tensor
    saliency: Tensor
    on_object: float
    area: float

    @property
    def clip(self) -> float:
        """The display limit: the map's 99th percentile (its maximum if that is 0)."""
        top = float(torch.quantile(self.saliency.flatten(), CLIP_PERCENTILE / 100))
        return top if top > 0 else float(self.saliency.max())


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
    return int(value)


def _check_noise(noise_level) -> float:
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not math.isfinite(noise_level) \
            or noise_level < 0:
        raise ValueError(f"noise_level must be a finite number >= 0 (a fraction of the image's range, e.g. 0.1), "
                         f"got {noise_level!r}")
    return float(noise_level)


@functools.cache
def _model() -> nn.Module:
    from .. import pretrained

    return pretrained.load("shapes_resnet", device="cpu")


@functools.cache
def _images():
    from .. import data

    return data.load("shapes", n=N_IMAGES, size=32, seed=IMAGE_SEED)


def _score_gradient(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """dz_target/dx for a stack of copies of one image: x (S, 3, H, W) -> (S, 3, H, W).

    In evaluation mode the copies do not interact, so the gradient of the summed score is each copy's own."""
    x = x.detach().requires_grad_(True)
    score = model(x)[:, target].sum()  # sum over the copies of z_c(x_s)
    (grad,) = torch.autograd.grad(score, x)
    return grad


def _grad_cam(model: nn.Module, image: Tensor, target: int) -> Tensor:
    """Grad-CAM on ``model.layer3`` for one image (3, H, W) -> (H, W), non-negative."""
    stage = getattr(model, "layer3", None)
    if not isinstance(stage, nn.Module):
        raise ValueError(f"Grad-CAM here reads the feature maps of model.layer3 (the last convolutional stage of the "
                         f"course's ResNets); {type(model).__name__} has no such module")
    found: dict[str, Tensor] = {}
    hook = stage.register_forward_hook(lambda module, args, out: found.setdefault("A", out))
    try:
        # an input that requires a gradient: layer3's output is then in the graph even if the weights are frozen
        score = model(image[None].detach().requires_grad_(True))[0, target]
    finally:
        hook.remove()
    A = found["A"]  # (1, K, h, w) feature maps of layer3
    (dA,) = torch.autograd.grad(score, A)  # (1, K, h, w)
    alpha = dA.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1): one weight per feature map
    cam = F.relu((alpha * A).sum(dim=1, keepdim=True))  # (1, 1, h, w)
    cam = F.interpolate(cam, size=image.shape[1:], mode="bilinear", align_corners=False)  # (1, 1, H, W)
    return cam[0, 0].detach()


def saliency_map(model: nn.Module, image: Tensor, target: int, method: str, noise_level: float = 0.1,
                 samples: int = 50, seed: int = COURSE_SEED) -> Tensor:
    """The explorer's map of ``method`` for one image (3, H, W) in [0, 1] and class ``target``: (H, W), >= 0.

    noise_level, samples: SmoothGrad's sigma as a fraction of the image's range, and its number of noisy copies
                          (the other methods ignore them); the noise is drawn from a generator seeded with ``seed``.
    """
    _check_choice("method", method, METHODS)
    noise_level = _check_noise(noise_level)
    samples = _check_int("samples", samples, 1, MAX_SAMPLES)
    if image.ndim != 3:
        raise ValueError(f"image must be one image (C, H, W), got shape {tuple(image.shape)}")
    model.eval()
    if method == "Grad-CAM":
        return _grad_cam(model, image, target)
    if method == "vanilla gradient":
        attribution = _score_gradient(model, image[None], target)[0]  # (3, H, W)
    elif method == "SmoothGrad":
        sigma = noise_level * float(image.max() - image.min())  # 10% of the range: the recommended setting
        generator = torch.Generator().manual_seed(seed)
        eps = torch.randn((samples, *image.shape), generator=generator)  # (S, 3, H, W)
        attribution = _score_gradient(model, image + sigma * eps, target).mean(0)  # (3, H, W)
    else:  # Integrated Gradients, black baseline
        baseline = torch.zeros_like(image)
        k = torch.arange(1, IG_STEPS + 1, dtype=image.dtype).view(-1, 1, 1, 1) / IG_STEPS  # (m, 1, 1, 1): k/m
        path = baseline + k * (image - baseline)  # (m, 3, H, W)
        attribution = (image - baseline) * _score_gradient(model, path, target).mean(0)  # (3, H, W)
    return attribution.abs().sum(0)  # (H, W): magnitude summed over the channels


def saliency_view(image: int = 0, method: str = "SmoothGrad", noise_level: float = 0.1,
                  samples: int = 50) -> SaliencyView:
    """The map of ``method`` for the explorer's image number ``image``, for the class the model predicts."""
    index = _check_int("image", image, 0, N_IMAGES - 1)
    _check_choice("method", method, METHODS)
    noise_level = _check_noise(noise_level)
    samples = _check_int("samples", samples, 1, MAX_SAMPLES)
    model, images = _model(), _images()
    x, mask = images.images[index], images.masks[index]
    with torch.no_grad():
        probs = model(x[None]).softmax(1)[0]  # (10,)
    predicted = int(probs.argmax())
    heat = saliency_map(model, x, predicted, method, noise_level, samples)
    total = float(heat.sum())
    on_object = float(heat[mask].sum()) / total if total > 0 else math.nan
    return SaliencyView(index, method, noise_level, samples, images.classes[int(images.labels[index])],
                        images.classes[predicted], float(probs[predicted]), x, mask, heat, on_object,
                        float(mask.float().mean()))


def saliency_figure(image: int = 0, method: str = "SmoothGrad", noise_level: float = 0.1,
                    samples: int = 50) -> Figure:
    """The image with its object's outline, the map (0 to its 99th percentile) and the two overlaid."""
    return _draw(saliency_view(image, method, noise_level, samples))


def _draw(view: SaliencyView) -> Figure:
    """The figure of :func:`saliency_figure` for a view already computed."""
    picture = view.image.permute(1, 2, 0).numpy()  # (H, W, 3) for imshow
    heat = view.saliency.numpy()
    count = f"{view.samples} sample{'s' if view.samples != 1 else ''}"
    setting = {"SmoothGrad": f"noise {view.noise_level:.0%} of the range, {count}",
               "Integrated Gradients": f"black baseline, m = {IG_STEPS} steps",
               "Grad-CAM": "on layer3 (4x4), upsampled"}.get(view.method, "one backward pass")
    with styled():
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.7), layout="constrained")
        axes[0].imshow(picture)
        axes[0].contour(view.mask.numpy(), levels=[0.5], colors="white", linewidths=1)
        axes[0].set_title(f"image {view.index}: {view.label}\npredicted {view.prediction} ({view.confidence:.0%})",
                          fontsize=10)
        shown = axes[1].imshow(heat, cmap="viridis", vmin=0, vmax=view.clip)
        axes[1].set_title(f"{view.method}\n({setting})", fontsize=10)
        what = "Grad-CAM" if view.method == "Grad-CAM" else "|saliency|, summed over channels"
        colorbar(shown, axes[1], f"{what}\n(clipped at its {CLIP_PERCENTILE}th percentile)")
        axes[2].imshow(picture)
        axes[2].imshow(heat, cmap="viridis", vmin=0, vmax=view.clip, alpha=0.6)
        axes[2].contour(view.mask.numpy(), levels=[0.5], colors="white", linewidths=1)
        axes[2].set_title(f"on the object: {view.on_object:.0%} of the map\n(object area: {view.area:.0%} "
                          "of the image)", fontsize=10)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


@demo(figure=saliency_figure)
def saliency_explorer(image: int = 0, method: str = "vanilla gradient", noise_level: float = 0.1,
                      samples: int = 50):
    """An image slider, a method menu and SmoothGrad's noise level and sample count around :func:`saliency_figure`
    (greyed out unless the method is SmoothGrad). ``explorer.result`` is the :class:`SaliencyView` on show."""
    import ipywidgets as widgets

    _check_int("image", image, 0, N_IMAGES - 1)
    _check_choice("method", method, METHODS)
    _check_noise(noise_level)
    _check_int("samples", samples, 1, MAX_SAMPLES)

    def show(image, method, noise_level, samples):
        view = saliency_view(image, method, noise_level, samples)  # computed once, drawn and returned
        fig = _draw(view)
        plt.show()
        plt.close(fig)
        return view

    controls = dict(
        image=widgets.IntSlider(value=image, min=0, max=N_IMAGES - 1, description="image", continuous_update=False),
        method=widgets.Dropdown(options=list(METHODS), value=method, description="method"),
        noise_level=widgets.FloatSlider(value=noise_level, min=0.0, max=0.5, step=0.05, description="noise level",
                                        continuous_update=False, readout_format=".2f",
                                        tooltip="SmoothGrad: sigma as a fraction of the image's range"),
        samples=widgets.IntSlider(value=samples, min=1, max=MAX_SAMPLES, description="samples",
                                  continuous_update=False, tooltip="SmoothGrad: number of noisy copies"),
    )

    def applicable(_=None) -> None:  # the noise level and the sample count only change SmoothGrad's map
        controls["noise_level"].disabled = controls["samples"].disabled = controls["method"].value != "SmoothGrad"

    controls["method"].observe(applicable, names="value")
    applicable()
    return widgets.interactive(show, **controls)
