"""The epsilon explorer (lecture 10): its attacks match a step-by-step autograd computation, stay inside the epsilon
ball and the valid pixel range, lower the true class's probability, and its figure labels what it shows; bad
choices are refused."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import widgets
from course_utils.widgets import epsilon as ep


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _small_model(seed=0) -> nn.Module:
    """A tiny CNN with BatchNorm: left in training mode, so that an attack computed in train mode would differ."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():  # give BatchNorm running statistics far from any batch's own
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(2.0)
    return model.train()


def _image(seed=1):
    return torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(seed))


def _reference(model, image, label, attack, eps):
    """The attack written out for one image, one epsilon (in [0, 1]), step by step."""
    model.eval()
    x = image[None]

    def sign_of_gradient(x_k):
        x_k = x_k.clone().requires_grad_(True)
        F.cross_entropy(model(x_k), torch.tensor([label])).backward()
        return x_k.grad.sign()

    if attack == "FGSM":
        return (x + eps * sign_of_gradient(x)).clamp(0, 1)[0]
    x_k = x.clone()
    for _ in range(ep.PGD_STEPS):
        x_k = x_k + eps / 4 * sign_of_gradient(x_k)
        x_k = torch.clamp(torch.clamp(x_k, x - eps, x + eps), 0, 1)
    return x_k.detach()[0]


@pytest.mark.parametrize("attack", ep.ATTACKS)
def test_the_sweep_matches_the_attack_computed_one_epsilon_at_a_time(attack):
    model, image = _small_model(), _image()
    epsilons = (0, 1, 3, 8, 16)
    x_adv, probs = ep.sweep(model, image, 2, attack, epsilons)
    assert x_adv.shape == (5, 3, 6, 6) and probs.shape == (5, 5)
    assert not model.training, "the sweep puts the model in evaluation mode"
    for row, e in enumerate(epsilons):
        expected = _reference(model, image, 2, attack, e / 255)
        torch.testing.assert_close(x_adv[row], expected, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(probs, model(x_adv).softmax(1))
    torch.testing.assert_close(x_adv[0], image)  # epsilon 0 leaves the image as it is


@pytest.mark.parametrize("attack", ep.ATTACKS)
def test_attacks_stay_in_the_ball_and_the_valid_range_and_hurt_the_true_class(attack):
    model = _small_model(3).eval()
    image = _image(4)
    image[0, :2] = 0.0  # pixels at the edges of the range: the clamp has work to do
    image[1, :2] = 1.0
    with torch.no_grad():
        label = int(model(image[None]).argmax())
    epsilons = (0, 2, 4, 8, 16)
    x_adv, probs = ep.sweep(model, image, label, attack, epsilons)
    for row, e in enumerate(epsilons):
        delta = x_adv[row] - image
        assert delta.abs().max() <= e / 255 + 1e-6
        assert x_adv[row].min() >= 0 and x_adv[row].max() <= 1
    assert probs[-1, label] < probs[0, label], "the attack should lower the true class's probability"


def test_pgd_is_at_least_as_strong_as_fgsm_on_the_course_images():
    fgsm_fooled = pgd_fooled = 0
    for index in range(8):
        fgsm_fooled += ep.epsilon_view(index, "FGSM", 4).fooled
        pgd_fooled += ep.epsilon_view(index, "PGD", 4).fooled
    assert pgd_fooled >= fgsm_fooled and pgd_fooled >= 4


def _turns_right_again(view) -> bool:
    """True when the prediction is wrong at some epsilon of the sweep and right again at a larger one."""
    right = view.probabilities.argmax(1) == view.label  # (E,)
    return any(not right[i] and right[i + 1:].any() for i in range(len(right)))


def test_the_images_lecture_10_points_to_overshoot_under_fgsm_but_not_under_pgd():
    # Lecture 10, section 8: "images whose FGSM prediction turns right again at a larger epsilon (images 6 and 10)"
    for index in (6, 10):
        assert _turns_right_again(ep.epsilon_view(index, "FGSM", 4)), f"image {index}: FGSM should turn right again"
        assert not _turns_right_again(ep.epsilon_view(index, "PGD", 4)), f"image {index}: PGD should stay wrong"
    assert not _turns_right_again(ep.epsilon_view(0, "FGSM", 4)), "image 0: once wrong, FGSM stays wrong"


def test_bad_choices_say_what_is_allowed():
    with pytest.raises(ValueError, match="attack must be one of 'FGSM', 'PGD'; got 'fgsm'"):
        ep.sweep(_small_model(), _image(), 0, "fgsm")
    with pytest.raises(ValueError, match="epsilons must be finite numbers >= 0"):
        ep.sweep(_small_model(), _image(), 0, "FGSM", (1, -2))
    with pytest.raises(ValueError, match=r"image must be one image \(C, H, W\)"):
        ep.sweep(_small_model(), _image()[None], 0, "FGSM")
    with pytest.raises(ValueError, match="index must be an int from 0 to 19"):
        ep.epsilon_view(20)
    with pytest.raises(ValueError, match=r"epsilon \(in units of 1/255\) must be one of"):
        ep.epsilon_view(0, "FGSM", 2.5)


def test_the_view_reads_its_own_row_of_the_sweep():
    view = ep.epsilon_view(5, "PGD", 6)
    assert view.epsilon == 6 and view.label == int(ep.course_images().labels[5])
    assert view.perturbation.abs().max() <= 6 / 255 + 1e-6
    np.testing.assert_allclose(view.adversarial_probabilities, view.probabilities[6])
    with torch.no_grad():
        probs = ep.course_model()(view.adversarial[None]).softmax(1)[0].numpy()
    np.testing.assert_allclose(view.adversarial_probabilities, probs, atol=1e-6)
    assert view.prediction == int(probs.argmax()) and view.confidence == pytest.approx(float(probs.max()))
    assert ep.epsilon_view(5, "PGD", 0).perturbation.abs().max() == 0


def test_the_figure_labels_its_panels_and_centres_the_perturbation_at_zero():
    fig = ep.epsilon_figure(2, "FGSM", 8)
    ax_clean, ax_delta, ax_adv, ax_curve, ax_bar = fig.axes  # the colour bar is an axes of its own
    assert "clean" in ax_clean.get_title() and "epsilon = 8/255" in ax_adv.get_title()
    assert "magnified 16x" in ax_delta.get_title()
    image = ax_delta.get_images()[0]
    assert image.norm.vmin == -8 and image.norm.vmax == 8 and image.norm.vcenter == 0
    assert ax_bar.get_ylabel() == "delta (units of 1/255)"
    assert ax_curve.get_xlabel() == "epsilon (units of 1/255)" and ax_curve.get_ylabel() == "probability"
    ticks = [t for t in ax_curve.get_xticks() if 0 <= t <= 16]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert len(ax_curve.get_lines()) == 3  # true class, best other class, the current epsilon
    assert "none at epsilon 0" in ep.epsilon_figure(2, "FGSM", 0).axes[1].get_title()


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["epsilon_explorer"].figure is ep.epsilon_figure
    assert widgets.epsilon_explorer is ep.epsilon_explorer
    widget = ep.epsilon_explorer(index=1, attack="PGD", epsilon=3)
    assert widget.kwargs == {"index": 1, "attack": "PGD", "epsilon": 3}
    view = ep.epsilon_view(1, "PGD", 3)
    assert widget.result == (view.classes[view.prediction].replace("_", " "), view.confidence)
    widget.close()
    with pytest.raises(ValueError, match="attack must be one of"):
        ep.epsilon_explorer(attack="CW")
