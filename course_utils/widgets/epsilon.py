"""The epsilon explorer (lecture 10): one image, one attack, and what happens as the budget epsilon grows.

An L-infinity attack may move every pixel value of an image x (N = 1, shape (C, H, W), values in [0, 1]) by at
most epsilon, and keeps the result a valid image. Two attacks, computed here with autograd on the course
checkpoint "shapes_resnet" (Goodfellow, Shlens & Szegedy 2014; Madry et al. 2018):

- FGSM, one step:  x_adv = clamp(x + epsilon * sign(grad_x L(x, y)), 0, 1)
- PGD, ``PGD_STEPS`` steps of size alpha = epsilon / 4 from x_0 = x:
      x_{k+1} = clamp(clip(x_k + alpha * sign(grad_x L(x_k, y)), x - epsilon, x + epsilon), 0, 1)

with L the cross-entropy of the logits and y the true label (untargeted). :func:`sweep` runs one attack at every
epsilon of the slider at once (a batch of copies of the image, one epsilon each) and returns the class
probabilities; :func:`epsilon_view` gathers what the figure shows for one setting; :func:`epsilon_figure` draws the
clean image, the perturbation delta = x_adv - x on a diverging colour scale that spans +-epsilon, the adversarial
image, and the probabilities against epsilon; :func:`epsilon_explorer` is the widget around it.

Epsilon is given in units of 1/255 (one step of an 8-bit pixel value), as the literature quotes it.
This module works on one image with a fixed step schedule; assignment a5 asks for the general attacks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from ..plotting import DIVERGING, PALETTE, WRONG, colorbar, styled
from .registry import demo

__all__ = ["ATTACKS", "EPSILONS", "PGD_STEPS", "N_IMAGES", "IMAGE_SEED", "EpsilonView", "course_model",
           "course_images", "sweep", "epsilon_view", "epsilon_figure", "epsilon_explorer"]

ATTACKS = ("FGSM", "PGD")
EPSILONS = tuple(range(17))  # the slider, in units of 1/255: 0, 1, ..., 16
PGD_STEPS = 10  # PGD's steps; its step size is epsilon / 4
N_IMAGES = 20  # images to choose from: fresh basic shapes, not used to train the checkpoint
IMAGE_SEED = 11


@functools.cache
def course_model() -> nn.Module:
    """The course checkpoint "shapes_resnet" on the CPU, in evaluation mode (loaded once)."""
    from .. import pretrained

    return pretrained.load("shapes_resnet", device="cpu").eval()


@functools.cache
def course_images():
    """The images the explorer offers: an ImageSet of ``N_IMAGES`` basic shapes, (N, 3, 32, 32) in [0, 1]."""
    from .. import data

    return data.load("shapes", n=N_IMAGES, size=32, seed=IMAGE_SEED)


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_epsilons(epsilons) -> Tensor:
    eps = torch.as_tensor(epsilons, dtype=torch.float32).reshape(-1)  # (E,)
    if eps.numel() == 0 or not torch.isfinite(eps).all() or (eps < 0).any():
        raise ValueError(f"epsilons must be finite numbers >= 0 (in units of 1/255), got {epsilons!r}")
    return eps


def _loss_gradient_sign(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """sign(grad_x L) for a batch x (E, C, H, W) with labels y (E,); each image's own loss (sum over the batch)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


@torch.no_grad()
def _probabilities(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).softmax(dim=1)  # (E, K)


def sweep(model: nn.Module, image: Tensor, label: int, attack: str = "FGSM",
          epsilons=EPSILONS) -> tuple[Tensor, Tensor]:
    """Attack one image at several budgets at once.

    model:    maps (E, C, H, W) images in [0, 1] to logits (E, K); it is put in evaluation mode.
    image:    (C, H, W) in [0, 1];  label: its true class.
    attack:   "FGSM" or "PGD" (``PGD_STEPS`` steps of epsilon / 4), both untargeted.
    epsilons: E budgets in units of 1/255.
    Returns (adversarial images (E, C, H, W), class probabilities of each (E, K)).
    """
    _check_choice("attack", attack, ATTACKS)
    if image.ndim != 3:
        raise ValueError(f"image must be one image (C, H, W), got shape {tuple(image.shape)}")
    model.eval()
    eps = (_check_epsilons(epsilons) / 255).to(image.device).view(-1, 1, 1, 1)  # (E, 1, 1, 1)
    x = image.detach().unsqueeze(0).expand(len(eps), -1, -1, -1)  # (E, C, H, W): one copy per epsilon
    y = torch.full((len(eps),), int(label), device=image.device)
    if attack == "FGSM":
        x_adv = (x + eps * _loss_gradient_sign(model, x, y)).clamp(0, 1)
    else:
        alpha = eps / 4
        x_adv = x.clone()
        for _ in range(PGD_STEPS):
            x_adv = x_adv + alpha * _loss_gradient_sign(model, x_adv, y)  # climb the loss
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)  # back into the epsilon ball
            x_adv = x_adv.clamp(0, 1)  # and into the valid pixel range
    x_adv = x_adv.detach()
    return x_adv, _probabilities(model, x_adv)


@dataclass(frozen=True)
class EpsilonView:
    """What the explorer shows for one (image, attack, epsilon).

    image, adversarial: (C, H, W) in [0, 1];  epsilons: (E,) the sweep, in units of 1/255
    probabilities:      (E, K) class probabilities of the adversarial image at each epsilon of the sweep
    """

    index: int
    attack: str
    epsilon: int  # units of 1/255
    label: int
    classes: tuple[str, ...]
    image: Tensor
    adversarial: Tensor
    epsilons: np.ndarray
    probabilities: np.ndarray

    @property
    def perturbation(self) -> Tensor:
        """delta = x_adv - x, (C, H, W); every value within +-epsilon / 255."""
        return self.adversarial - self.image

    @property
    def _row(self) -> int:
        return int(np.flatnonzero(self.epsilons == self.epsilon)[0])

    @property
    def clean_probabilities(self) -> np.ndarray:
        """(K,) class probabilities of the clean image (the sweep always starts at epsilon 0)."""
        return self.probabilities[0]

    @property
    def adversarial_probabilities(self) -> np.ndarray:
        """(K,) class probabilities of the adversarial image at this epsilon."""
        return self.probabilities[self._row]

    @property
    def prediction(self) -> int:
        return int(self.adversarial_probabilities.argmax())

    @property
    def confidence(self) -> float:
        """The probability of the predicted class of the adversarial image."""
        return float(self.adversarial_probabilities.max())

    @property
    def fooled(self) -> bool:
        return self.prediction != self.label


@functools.cache
def _course_sweep(index: int, attack: str) -> tuple[Tensor, np.ndarray]:
    images = course_images()
    x_adv, probs = sweep(course_model(), images.images[index], int(images.labels[index]), attack, EPSILONS)
    return x_adv, probs.numpy()


def epsilon_view(index: int = 0, attack: str = "FGSM", epsilon: int = 4) -> EpsilonView:
    """The course checkpoint attacked on image ``index`` of :func:`course_images`; epsilon in units of 1/255."""
    _check_choice("attack", attack, ATTACKS)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < N_IMAGES:
        raise ValueError(f"index must be an int from 0 to {N_IMAGES - 1}, got {index!r}")
    _check_choice("epsilon (in units of 1/255)", epsilon, EPSILONS)
    images = course_images()
    x_adv, probs = _course_sweep(int(index), attack)
    row = EPSILONS.index(epsilon)
    return EpsilonView(int(index), attack, int(epsilon), int(images.labels[index]), tuple(images.classes),
                       images.images[index], x_adv[row], np.array(EPSILONS), probs)


def _name(classes, c: int) -> str:
    return classes[c].replace("_", " ")


def _show_image(ax, image: Tensor, title: str, wrong: bool) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())  # (H, W, C) for imshow
    ax.set_title(title, fontsize=10, color=WRONG if wrong else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    if wrong:
        for spine in ax.spines.values():
            spine.set_edgecolor(WRONG)
            spine.set_linewidth(3)


def epsilon_figure(index: int = 0, attack: str = "FGSM", epsilon: int = 4) -> Figure:
    """Clean image | perturbation (mean over the channels, colour scale +-epsilon) | adversarial image |
    the probability of the true class and of the predicted class against epsilon."""
    view = epsilon_view(index, attack, epsilon)
    classes, y = view.classes, view.label
    clean = view.clean_probabilities
    with styled():
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), layout="constrained", width_ratios=(1, 1.25, 1, 1.9))
        ax_clean, ax_delta, ax_adv, ax_curve = axes
        clean_pred = int(clean.argmax())
        _show_image(ax_clean, view.image, f"clean: {_name(classes, clean_pred)} ({clean.max():.1%})\n"
                    f"true class: {_name(classes, y)}", clean_pred != y)
        limit = max(epsilon, 1)  # the colour scale spans +-epsilon (in 1/255); a flat map at epsilon 0
        delta = view.perturbation.mean(0).numpy() * 255  # (H, W), units of 1/255
        shown = ax_delta.imshow(delta, cmap=DIVERGING, norm=TwoSlopeNorm(0.0, -limit, limit))
        ax_delta.set_xticks([])
        ax_delta.set_yticks([])
        magnified = 255 / (2 * limit)  # the image's full range 0..1 against the map's 2 epsilon
        ax_delta.set_title(f"perturbation, mean of R, G, B\n(magnified {magnified:.0f}x)" if epsilon else
                           "perturbation\n(none at epsilon 0)", fontsize=10)
        colorbar(shown, ax_delta, "delta (units of 1/255)")
        _show_image(ax_adv, view.adversarial, f"{attack}, epsilon = {epsilon}/255: {_name(classes, view.prediction)}"
                    f"\n({view.confidence:.1%})", view.fooled)
        eps = view.epsilons
        probs = view.probabilities  # (E, K)
        ax_curve.plot(eps, probs[:, y], marker="o", markersize=3, color=PALETTE[0],
                      label=f"true class ({_name(classes, y)})")
        others = probs.copy()
        others[:, y] = -1
        ax_curve.plot(eps, others.max(1), marker="s", markersize=3, color=PALETTE[3], linestyle="--",
                      label="most probable other class")
        ax_curve.axvline(epsilon, color="grey", linestyle=":", linewidth=1)
        ax_curve.set_xlabel("epsilon (units of 1/255)")
        ax_curve.set_ylabel("probability")
        ax_curve.set_ylim(-0.02, 1.02)
        ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_curve.legend(fontsize=8, loc="center right")
        steps = "one step" if attack == "FGSM" else f"{PGD_STEPS} steps of epsilon/4"
        ax_curve.set_title(f"{attack} ({steps}) at every epsilon", fontsize=10)
        fig.suptitle(f"Image {index} of the explorer's {N_IMAGES}: {attack} on the course checkpoint")
    return fig


@demo(figure=epsilon_figure)
def epsilon_explorer(index: int = 0, attack: str = "FGSM", epsilon: int = 4):
    """Controls for :func:`epsilon_figure`: the image, the attack and epsilon (in 1/255).
    ``explorer.result`` is (predicted class name, its probability) for the adversarial image on show."""
    import ipywidgets as widgets

    epsilon_view(index, attack, epsilon)  # refuses a bad starting value with a clear message
    images = course_images()
    options = [(f"{i}: {_name(images.classes, int(c))}", i) for i, c in enumerate(images.labels)]
    style = {"description_width": "6em"}
    controls = {
        "index": widgets.Dropdown(options=options, value=index, description="image", style=style),
        "attack": widgets.ToggleButtons(options=ATTACKS, value=attack, description="attack", style=style),
        "epsilon": widgets.IntSlider(value=epsilon, min=EPSILONS[0], max=EPSILONS[-1], step=1,
                                     description="ε in 1/255", style=style, continuous_update=False),
    }

    def show(index, attack, epsilon):
        fig = epsilon_figure(index, attack, epsilon)
        plt.show()
        plt.close(fig)
        view = epsilon_view(index, attack, epsilon)
        return _name(view.classes, view.prediction), view.confidence

    return widgets.interactive(show, **controls)
