"""a5's solution against the ecosystem: captum 0.9 and torchattacks 3.5.1 on the same models and inputs.

The solution's functions come from its notebook (solutions/a5_saliency_adversarial/a5_saliency_adversarial.ipynb,
its code cells run in fast mode, as tests/a4_variants.py runs a4's) and are compared, on the course checkpoint
``shapes_resnet`` and on a small seeded CNN (both in eval mode), with a few images of the shapes data:

- vanilla_gradient     vs captum's ``Saliency(model).attribute(x, target, abs=False)`` (signed, all channels);
- smoothgrad           vs captum's ``NoiseTunnel(Saliency(model))``, nt_type="smoothgrad", one image at a time
                       with ``stdevs`` = 0.1 * that image's range (captum's stdev is absolute, one per call) and the
                       SAME standard-normal draws: captum draws with ``torch.normal(0, std)``, which the test
                       replaces during the call by ``std * draws`` (captum's own scaling stays in play);
- integrated_gradients vs captum's ``IntegratedGradients``, method="riemann_right", the same n_steps and baseline;
- fgsm, pgd            vs torchattacks' ``FGSM`` and ``PGD`` (random_start=False), untargeted, and targeted through
                       ``set_mode_targeted_by_label`` (the labels passed are the targets).

Attributions must agree within a float32 tolerance (max difference <= 1e-4 of the largest value), sign-based attacks
on at least 99.5 % of the components (within 1e-6: a component whose gradient is ~0 may flip sign when a correct
answer sums in another order). Measured with the solution on torch 2.14 (`pytest -s` prints the numbers): the maps
agree to <= 4e-8 relative (0 for Saliency and IG), the attacks on 100 % of the components (max difference 5e-9, the
projection's rounding), with the same accuracies after the attack; so do differently written correct answers (a
one-hot score with backward, IG's m steps in one batch, log_softmax + nll_loss summed, the clamps in the other
order): 0 difference. Every comparison also runs on a wrong variant
(another class's gradient; the noise scaled by the image's std, or its level x10 or x0.1; IG without the
(x - baseline) factor; FGSM without the sign; PGD without the projection, or moving away from its target), which must
fail it: they reach 0.85-1.9 relative, or 2-22 % of the components. Without captum or torchattacks the tests skip
with the reason, and fail under CI (CI=true): see requirements-xcheck.txt for how they are installed.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import data, pretrained
from course_utils.grading import COURSE_ROOT

sys.path.insert(0, str(COURSE_ROOT / "tests"))
import variants_harness as vh  # noqa: E402

pytestmark = [pytest.mark.heavy,  # (captum notes that it set requires_grad on its copy of the inputs)
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")]

ASSIGNMENT = "a5_saliency_adversarial"
FUNCTIONS = ("vanilla_gradient", "smoothgrad", "integrated_gradients", "fgsm", "pgd")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
N_IMAGES = 8                       # images per model
SAMPLES, NOISE_LEVEL = 8, 0.1      # SmoothGrad: samples, sigma_n = NOISE_LEVEL * range of image n
STEPS_IG = 16                      # m, the Integrated-Gradients step count
EPSILON, ALPHA, STEPS_PGD = 8 / 255, 2 / 255, 10
ATTRIBUTION_RTOL = 1e-4            # max |ours - theirs| <= ATTRIBUTION_RTOL * max |theirs|
ATTACK_ATOL = 1e-6                 # a component "agrees" when |ours - theirs| <= ATTACK_ATOL ...
ATTACK_AGREEMENT = 0.995           # ... and at least this share of the components agree


# --- the ecosystem: skipped locally when missing, a failure under CI ---------------------------------
def ecosystem(name: str) -> types.ModuleType:
    """The module ``name`` (captum.attr or torchattacks); skip without it, fail under CI."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as error:
        how = ("pip install --no-deps torchattacks==3.5.1" if name == "torchattacks"
               else "pip install -r requirements-xcheck.txt")
        message = f"{name} is not importable ({error}): the ecosystem cross-check needs it (`{how}`)"
        if IN_CI:
            pytest.fail(f"{message} (CI must run the ecosystem cross-check)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def captum_attr() -> types.ModuleType:
    return ecosystem("captum.attr")


@pytest.fixture(scope="module")
def torchattacks() -> types.ModuleType:
    return ecosystem("torchattacks")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with vh.one_torch_thread():  # small tensors: a second thread only competes on a loaded machine
        yield


# --- the solution's functions ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def solution() -> dict[str, Callable]:
    """The five functions as the solution notebook defines them (a failure, not a skip, when they are missing)."""
    notebook = vh.solution_notebook_or_none(ASSIGNMENT)
    if notebook is None:
        pytest.fail(f"the solution notebook solutions/{ASSIGNMENT}/{ASSIGNMENT}.ipynb is missing", pytrace=False)
    namespace = {"__name__": f"solution_{ASSIGNMENT}"}
    with vh.environment("COURSE_FAST", "1"):
        vh.exec_solution(ASSIGNMENT, notebook, namespace, quiet_stdout=True, quiet_stderr=True)
    missing = [name for name in FUNCTIONS if not callable(namespace.get(name))]
    if missing:
        pytest.fail(f"the solution notebook defines no {', '.join(missing)} (expected all of {FUNCTIONS})",
                    pytrace=False)
    return {name: namespace[name] for name in FUNCTIONS}


# --- models and inputs ----------------------------------------------------------------------------
def small_cnn(seed: int = 0) -> nn.Module:
    """A seeded random CNN with BatchNorm (random running statistics), eval mode: (N, 3, 32, 32) -> (N, 10)."""
    with torch.random.fork_rng():  # (the global generator is left as it was)
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(16, 10))
        model[1].running_mean.uniform_(-0.2, 0.2)  # BatchNorm's statistics
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module", params=["shapes_resnet", "small_cnn"])
def case(request) -> tuple[str, nn.Module, torch.Tensor, torch.Tensor]:
    """(name, model in eval mode, images (N, 3, 32, 32) in [0, 1], labels (N,))."""
    model = pretrained.load("shapes_resnet", device="cpu") if request.param == "shapes_resnet" else small_cnn()
    images = data.load("shapes", n=N_IMAGES, size=32, seed=5)
    return request.param, model.eval(), images.images, images.labels


def targets_for(y: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """A class other than y for every image (the targeted attacks' and the wrong-class variant's)."""
    return (y + 3) % classes


# --- agreement --------------------------------------------------------------------------------------
def attribution_gap(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(max |ours - theirs|, that divided by max |theirs|)."""
    assert ours.shape == theirs.shape, f"shape {tuple(ours.shape)}, the ecosystem's {tuple(theirs.shape)}"
    gap = (ours.detach() - theirs.detach()).abs().max().item()
    return gap, gap / max(theirs.abs().max().item(), 1e-12)


def attributions_agree(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    return attribution_gap(ours, theirs)[1] <= ATTRIBUTION_RTOL


def attack_agreement(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(share of the components within ATTACK_ATOL of each other, max |ours - theirs|)."""
    assert ours.shape == theirs.shape, f"shape {tuple(ours.shape)}, the ecosystem's {tuple(theirs.shape)}"
    gap = (ours.detach() - theirs.detach()).abs()
    return (gap <= ATTACK_ATOL).float().mean().item(), gap.max().item()


def attacks_agree(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    return attack_agreement(ours, theirs)[0] >= ATTACK_AGREEMENT


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def report(method: str, name: str, **numbers: float) -> None:
    """One line of agreement numbers (seen with pytest -s)."""
    print(f"\n[a5 ecosystem] {method:>22} on {name:>13}: "
          + ", ".join(f"{k}={v:.3g}" for k, v in numbers.items()))


# --- wrong variants (each must fail its comparison) ------------------------------------------------
def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]


def smoothgrad_std_scaled(vanilla_gradient: Callable, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                          noise: torch.Tensor) -> torch.Tensor:
    """Wrong: sigma_n = noise level * the image's standard deviation instead of its range."""
    sigma = NOISE_LEVEL * x.flatten(1).std(1).view(-1, 1, 1, 1)  # (N, 1, 1, 1)
    return torch.stack([vanilla_gradient(model, x + sigma * n, target) for n in noise]).mean(0)


def ig_without_difference(vanilla_gradient: Callable, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                          steps: int) -> torch.Tensor:
    """Wrong: the mean gradient along the path, not multiplied by (x - x'), baseline zeros."""
    return torch.stack([vanilla_gradient(model, k / steps * x, target) for k in range(1, steps + 1)]).mean(0)


def fgsm_without_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Wrong: a step along the gradient itself."""
    return (x + epsilon * loss_gradient(model, x, y)).clamp(0, 1)


def pgd_without_projection(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, alpha: float,
                           steps: int, targeted: bool = False) -> torch.Tensor:
    """Wrong: sign steps clamped to [0, 1] only, never projected onto the epsilon ball."""
    x_adv = x.clone()
    for _ in range(steps):
        step = alpha * loss_gradient(model, x_adv, y).sign()
        x_adv = (x_adv - step if targeted else x_adv + step).clamp(0, 1)
    return x_adv


# --- captum ---------------------------------------------------------------------------------------
@contextmanager
def captum_draws(draws: torch.Tensor) -> Iterator[None]:
    """Inside the block ``torch.normal(mean, std)`` returns ``mean + std * draws``: NoiseTunnel's one draw (captum
    0.9, noise_tunnel.py: ``torch.normal(0, stdev_expanded)``), which must happen exactly once."""
    real, calls = torch.normal, []

    def normal(mean, std, *args, **kwargs):
        assert isinstance(std, torch.Tensor) and std.shape == draws.shape, \
            f"NoiseTunnel drew a noise of shape {getattr(std, 'shape', None)}, expected {tuple(draws.shape)}"
        calls.append(std.shape)
        return mean + std * draws

    torch.normal = normal
    try:
        yield
    finally:
        torch.normal = real
    assert len(calls) == 1, f"NoiseTunnel called torch.normal {len(calls)} times, expected once: has captum changed?"


def captum_smoothgrad(captum_attr, inner, x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor,
                      **kwargs) -> torch.Tensor:
    """NoiseTunnel(inner) image by image with stdevs = NOISE_LEVEL * range and the draws ``noise`` (S, N, ...)."""
    tunnel = captum_attr.NoiseTunnel(inner)
    maps = []
    for n in range(x.shape[0]):
        sigma = NOISE_LEVEL * (x[n].max() - x[n].min()).item()
        with captum_draws(noise[:, n]):  # (S, C, H, W): one image repeated S times (repeat_interleave)
            maps.append(tunnel.attribute(x[n:n + 1], nt_type="smoothgrad", nt_samples=noise.shape[0],
                                         stdevs=sigma, target=target[n:n + 1], **kwargs))
    return torch.cat(maps)


# --- the comparisons ------------------------------------------------------------------------------
def test_vanilla_gradient_matches_captum_saliency(solution, captum_attr, case):
    name, model, x, y = case
    theirs = captum_attr.Saliency(model).attribute(x, target=y, abs=False)
    ours = solution["vanilla_gradient"](model, x, y)
    gap, relative = attribution_gap(ours, theirs)
    wrong = solution["vanilla_gradient"](model, x, targets_for(y))  # the gradient of another class's score
    report("vanilla_gradient", name, max_abs_diff=gap, relative=relative,
           wrong_class_relative=attribution_gap(wrong, theirs)[1])
    assert relative <= ATTRIBUTION_RTOL, \
        f"vanilla_gradient differs from captum's Saliency by {gap:.3g} ({relative:.3g} of its largest value)"
    assert not attributions_agree(wrong, theirs), "the gradient of the wrong class passes the comparison"


@pytest.mark.parametrize("inner", ["saliency", "integrated_gradients"])
def test_smoothgrad_matches_captum_noise_tunnel(solution, captum_attr, case, inner):
    name, model, x, y = case
    noise = torch.randn(SAMPLES, *x.shape, generator=torch.Generator().manual_seed(16))  # (S, N, C, H, W)
    vanilla, smoothgrad, ig = solution["vanilla_gradient"], solution["smoothgrad"], solution["integrated_gradients"]
    if inner == "saliency":
        attribution = vanilla
        theirs = captum_smoothgrad(captum_attr, captum_attr.Saliency(model), x, y, noise, abs=False)
    else:  # SmoothGrad wraps any attribution function, as NoiseTunnel wraps any captum method
        def attribution(model, x, target):
            return ig(model, x, target, steps=STEPS_IG)

        theirs = captum_smoothgrad(captum_attr, captum_attr.IntegratedGradients(model), x, y, noise, n_steps=STEPS_IG,
                                   method="riemann_right")
    ours = smoothgrad(attribution, model, x, y, n_samples=SAMPLES, noise_level=NOISE_LEVEL, noise=noise)
    gap, relative = attribution_gap(ours, theirs)
    numbers = dict(max_abs_diff=gap, relative=relative)
    if inner == "saliency":  # wrong noise scales: sigma from the image's std, or the noise level x10 and x0.1
        wrongs = {"std_scaled": smoothgrad_std_scaled(vanilla, model, x, y, noise)}
        for factor in (10, 0.1):
            wrongs[f"level_x{factor}"] = smoothgrad(vanilla, model, x, y, n_samples=SAMPLES,
                                                    noise_level=NOISE_LEVEL * factor, noise=noise)
        for wrong, value in wrongs.items():
            numbers[f"{wrong}_relative"] = attribution_gap(value, theirs)[1]
            assert not attributions_agree(value, theirs), f"smoothgrad with the noise {wrong} passes the comparison"
    report(f"smoothgrad/{inner}", name, **numbers)
    assert relative <= ATTRIBUTION_RTOL, \
        f"smoothgrad differs from captum's NoiseTunnel by {gap:.3g} ({relative:.3g} of its largest value)"


@pytest.mark.parametrize("baseline", ["black", "grey"])
def test_integrated_gradients_matches_captum(solution, captum_attr, case, baseline):
    name, model, x, y = case
    x_prime = torch.zeros_like(x) if baseline == "black" else torch.full_like(x, 0.5)
    theirs = captum_attr.IntegratedGradients(model).attribute(x, baselines=x_prime, target=y, n_steps=STEPS_IG,
                                                              method="riemann_right")
    ig = solution["integrated_gradients"]
    ours = ig(model, x, y, steps=STEPS_IG) if baseline == "black" else ig(model, x, y, baseline=x_prime,
                                                                           steps=STEPS_IG)
    gap, relative = attribution_gap(ours, theirs)
    numbers = dict(max_abs_diff=gap, relative=relative)
    if baseline == "black":
        wrong = ig_without_difference(solution["vanilla_gradient"], model, x, y, STEPS_IG)
        numbers["no_difference_relative"] = attribution_gap(wrong, theirs)[1]
        assert not attributions_agree(wrong, theirs), "IG without the (x - baseline) factor passes the comparison"
    report(f"integrated_gradients/{baseline}", name, **numbers)
    assert relative <= ATTRIBUTION_RTOL, \
        f"integrated_gradients differs from captum's by {gap:.3g} ({relative:.3g} of its largest value)"


def test_fgsm_matches_torchattacks(solution, torchattacks, case):
    name, model, x, y = case
    theirs = torchattacks.FGSM(model, eps=EPSILON)(x, y)
    ours = solution["fgsm"](model, x, y, EPSILON)
    share, gap = attack_agreement(ours, theirs)
    wrong = fgsm_without_sign(model, x, y, EPSILON)
    report("fgsm", name, equal_share=share, max_abs_diff=gap, wrong_equal_share=attack_agreement(wrong, theirs)[0],
           clean_acc=accuracy(model, x, y), acc_ours=accuracy(model, ours, y), acc_theirs=accuracy(model, theirs, y))
    assert share >= ATTACK_AGREEMENT, f"fgsm agrees with torchattacks' FGSM on {share:.2%} of the components"
    assert not attacks_agree(wrong, theirs), "FGSM without the sign passes the comparison"


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_pgd_matches_torchattacks(solution, torchattacks, case, targeted):
    name, model, x, y = case
    labels = targets_for(y) if targeted else y
    attack = torchattacks.PGD(model, eps=EPSILON, alpha=ALPHA, steps=STEPS_PGD, random_start=False)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)  # the labels passed are the targets
    theirs = attack(x, labels)
    ours = solution["pgd"](model, x, labels, EPSILON, ALPHA, STEPS_PGD, targeted=targeted)
    share, gap = attack_agreement(ours, theirs)
    wrongs = {"no_projection": pgd_without_projection(model, x, labels, EPSILON, ALPHA, STEPS_PGD, targeted)}
    if targeted:  # climbing the target's loss: away from the target
        wrongs["away_from_target"] = solution["pgd"](model, x, labels, EPSILON, ALPHA, STEPS_PGD)
    hit = "target_hit" if targeted else "acc"
    report("pgd/" + ("targeted" if targeted else "untargeted"), name, equal_share=share, max_abs_diff=gap,
           **{f"{wrong}_equal_share": attack_agreement(value, theirs)[0] for wrong, value in wrongs.items()},
           clean_acc=accuracy(model, x, y),
           **{f"{hit}_ours": accuracy(model, ours, labels), f"{hit}_theirs": accuracy(model, theirs, labels)})
    assert share >= ATTACK_AGREEMENT, f"pgd agrees with torchattacks' PGD on {share:.2%} of the components"
    for wrong, value in wrongs.items():
        assert not attacks_agree(value, theirs), f"PGD with the mistake {wrong} passes the comparison"
