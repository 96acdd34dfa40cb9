"""a5 student variants, shared by tests/test_a5_checks.py (fast tier) and tests/heavy/test_grading_a5.py.

The solution is the notebook's (solutions/a5_saliency_adversarial/a5_saliency_adversarial.ipynb) when it exists, else
the reference answers below (the first correct variant: written independently of the notebook's), run in a namespace
of their own like a notebook's cells. WRONG maps a variant's name to the replacements and exactly the graded cells it
must fail; CORRECT lists differently written right answers (every point); BACK_DOORS lists answers that call captum,
torchattacks (where installed) or the course's own widget code (each loses exactly its cells' points, told that the
reference is not available).

A variant runs the cells whose check calls name a replaced function: a wrong vanilla_gradient runs
test_vanilla_gradient and test_smoothgrad (which wraps it in one case and must NOT fail for it), a wrong fgsm runs
test_fgsm and test_accuracy_vs_epsilon (likewise). The notebook's integrated_gradients calls its vanilla_gradient, so
a wrong vanilla_gradient may cost that cell too in a real submission (tests/heavy/test_grading_a5.py shows it); the
variants here leave that cell out.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells

ASSIGNMENT = "a5_saliency_adversarial"
# the contract's test cells: grade_id -> (check, functions, points)
CONTRACT_CELLS = {
    "test_vanilla_gradient": ("check_vanilla_gradient", ("vanilla_gradient",), 10),
    "test_smoothgrad": ("check_smoothgrad", ("smoothgrad", "vanilla_gradient"), 12),
    "test_integrated_gradients": ("check_integrated_gradients", ("integrated_gradients",), 12),
    "test_fgsm": ("check_fgsm", ("fgsm",), 10),
    "test_pgd": ("check_pgd", ("pgd",), 16),
    "test_pgd_targeted": ("check_pgd_targeted", ("pgd",), 10),
    "test_accuracy_vs_epsilon": ("check_accuracy_vs_epsilon", ("accuracy_vs_epsilon", "fgsm"), 10),
}
VANILLA, SMOOTH, IG, FGSM = "test_vanilla_gradient", "test_smoothgrad", "test_integrated_gradients", "test_fgsm"
PGD, TARGETED, ACCURACY = "test_pgd", "test_pgd_targeted", "test_accuracy_vs_epsilon"

NOTEBOOK = vh.solution_notebook_or_none(ASSIGNMENT)
CELLS = graded_cells(NOTEBOOK) if NOTEBOOK is not None else vh.contract_cells(CONTRACT_CELLS)
ALL_CELLS = {cell.grade_id for cell in CELLS}


# --- the reference answers (the first correct variant) -------------------------------------------------
def vanilla_gradient(model, x, target):
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    model(x).gather(1, target.view(-1, 1)).sum().backward()  # sum_n z_{t_n}(x_n)
    return x.grad.detach()


def smoothgrad(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    if n_samples < 1 or noise_level < 0:
        raise ValueError(f"n_samples >= 1 and noise_level >= 0, got {n_samples} and {noise_level}")
    if noise is not None and tuple(noise.shape) != (n_samples, *x.shape):
        raise ValueError(f"noise should have shape {(n_samples, *x.shape)}, got {tuple(noise.shape)}")
    model.eval()
    if noise is None:
        noise = torch.randn(n_samples, *x.shape)
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (N,)
    total = torch.zeros_like(x)
    for s in range(n_samples):
        total += attribution(model, x + sigma.view(-1, 1, 1, 1) * noise[s], target)
    return (total / n_samples).detach()


def integrated_gradients(model, x, target, baseline=None, steps=50):
    if steps < 1:
        raise ValueError(f"steps >= 1, got {steps}")
    model.eval()
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        point = (baseline + k / steps * (x - baseline)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(point).gather(1, target.view(-1, 1)).sum(), point)
        total += grad
    return ((x - baseline) * total / steps).detach()


def fgsm(model, x, y, epsilon):
    if epsilon < 0:
        raise ValueError(f"epsilon >= 0, got {epsilon}")
    model.eval()
    x_adv = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
    return (x + epsilon * g.sign()).clamp(0, 1).detach()


def pgd(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    if epsilon < 0 or alpha < 0 or steps < 0:
        raise ValueError(f"epsilon, alpha and steps >= 0, got {epsilon}, {alpha}, {steps}")
    model.eval()
    x_adv = x.detach().clone()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x_adv).uniform_(-epsilon, epsilon)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            x_adv = x_adv - alpha * g.sign() if targeted else x_adv + alpha * g.sign()
            x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)
    return x_adv.detach()


def accuracy_vs_epsilon(model, attack, x, y, epsilons):
    out = []
    for epsilon in epsilons:
        adversarial = attack(model, x, y, epsilon)
        model.eval()
        with torch.no_grad():
            out.append((model(adversarial).argmax(1) == y).float().mean().item())
    return out


# what a variant builds on, under names no replacement takes (a variant bound as pgd calling pgd would call itself)
_vanilla_gradient, _fgsm, _pgd, _smoothgrad = vanilla_gradient, fgsm, pgd, smoothgrad
_accuracy_vs_epsilon = accuracy_vs_epsilon
REFERENCE = {name: globals()[name] for name in ("vanilla_gradient", "smoothgrad", "integrated_gradients", "fgsm",
                                                "pgd", "accuracy_vs_epsilon")}


def solution_namespace() -> dict:
    """The solution's names in a fresh namespace: the notebook's code cells (fast mode) or the reference answers."""
    namespace: dict[str, Any] = {**globals(), "__name__": f"solution_{ASSIGNMENT}"}  # (the variants' helpers)
    if NOTEBOOK is not None:
        with vh.environment("COURSE_FAST", "1"):
            vh.exec_solution(ASSIGNMENT, NOTEBOOK, namespace, quiet_stdout=True, quiet_stderr=True)
    else:
        namespace.update({name: vh.rebound(fn, namespace) for name, fn in REFERENCE.items()})
    return namespace


def run_cells(replacements: dict[str, Any], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None) -> dict[str, CellResult]:
    """The graded cells whose checks name a replaced function, run on the solution with the replacements (each
    rebound to the solution's namespace, as a redefinition in the notebook would be)."""
    namespace = solution_namespace()
    namespace.update({name: vh.rebound(value, namespace) if isinstance(value, types.FunctionType) else value
                      for name, value in replacements.items()})
    cells = cells if cells is not None else vh.cells_using(CELLS, {}, replacements)
    return vh.run_cells_in(ASSIGNMENT, namespace, cells, hidden, only_hidden)


def failing_cells(replacements: dict[str, Any], **options: Any) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's names are replaced."""
    return vh.failed(run_cells(replacements, **options))


# --- correct, written differently ----------------------------------------------------------------------
def vanilla_gradient_one_hot(model, x, target):
    """torch.autograd.grad of (logits * one_hot).sum(), x as a new leaf made with torch.tensor semantics."""
    model.eval()
    x_ = x.clone().detach().requires_grad_()
    logits = model(x_)
    (g,) = torch.autograd.grad((logits * F.one_hot(target, logits.shape[1])).sum(), x_)
    return g


def vanilla_gradient_loop(model, x, target):
    """One image at a time (eval mode: the same as batched)."""
    model.eval()
    rows = []
    for n in range(x.shape[0]):
        image = x[n : n + 1].detach().clone().requires_grad_(True)
        model(image)[0, int(target[n])].backward()
        rows.append(image.grad[0])
    return torch.stack(rows)


def smoothgrad_batched(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """All samples in one call of the attribution: (S * N, C, H, W), the targets repeated."""
    if n_samples < 1:
        raise ValueError("n_samples must be at least 1")
    if noise_level < 0:
        raise ValueError("noise_level must be >= 0")
    if noise is None:
        noise = torch.randn((n_samples,) + tuple(x.shape))
    if noise.shape != (n_samples, *x.shape):
        raise ValueError("noise must have shape (n_samples, N, C, H, W)")
    model.eval()
    N = x.shape[0]
    lo = x.reshape(N, -1).min(dim=1).values
    hi = x.reshape(N, -1).max(dim=1).values
    sigma = (noise_level * (hi - lo))[None, :, None, None, None]  # (1, N, 1, 1, 1)
    noisy = (x[None] + sigma * noise).reshape(n_samples * N, *x.shape[1:])  # (S*N, C, H, W)
    maps = attribution(model, noisy, target.repeat(n_samples))
    return maps.reshape(n_samples, *x.shape).mean(dim=0).detach()


def smoothgrad_randn_like(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """A loop that draws each sample's noise with torch.randn_like when none is given; a running mean."""
    if n_samples < 1 or noise_level < 0:
        raise ValueError("bad n_samples or noise_level")
    if noise is not None and list(noise.shape) != [n_samples, *x.shape]:
        raise ValueError("bad noise shape")
    model.eval()
    sigma = noise_level * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
    mean = torch.zeros_like(x)
    for s in range(n_samples):
        eps = torch.randn_like(x) if noise is None else noise[s]
        mean = mean + (attribution(model, x + sigma * eps, target) - mean) / (s + 1)
    return mean.detach()


def integrated_gradients_batched(model, x, target, baseline=None, steps=50):
    """All m points in one forward pass: (m * N, C, H, W)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    model.eval()
    N = x.shape[0]
    base = torch.zeros_like(x) if baseline is None else torch.broadcast_to(baseline, x.shape)
    k = torch.arange(1, steps + 1, dtype=x.dtype).view(-1, 1, 1, 1, 1) / steps  # (m, 1, 1, 1, 1)
    points = (base[None] + k * (x - base)[None]).reshape(steps * N, *x.shape[1:]).requires_grad_(True)
    scores = model(points).gather(1, target.repeat(steps).view(-1, 1))
    (g,) = torch.autograd.grad(scores.sum(), points)
    return ((x - base) * g.reshape(steps, *x.shape).mean(0)).detach()


def fgsm_log_softmax_sum(model, x, y, epsilon):
    """log_softmax + nll_loss with a sum, backward() on a leaf copy."""
    if epsilon < 0:
        raise ValueError("epsilon must be >= 0")
    model.eval()
    leaf = x.clone().detach().requires_grad_(True)
    F.nll_loss(F.log_softmax(model(leaf), dim=1), y, reduction="sum").backward()
    return torch.clamp(x + epsilon * torch.sign(leaf.grad), 0.0, 1.0)


def pgd_delta(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    """The perturbation delta as the variable: delta clamped to [-eps, eps], then x + delta to [0, 1]; backward."""
    if min(epsilon, alpha, steps) < 0:
        raise ValueError("epsilon, alpha and steps must be >= 0")
    model.eval()
    delta = torch.zeros_like(x)
    if random_start:
        delta = (torch.rand(x.shape) * 2 - 1) * epsilon
        delta = (x + delta).clamp(0, 1) - x
    direction = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        loss.backward()
        delta = (delta + direction * alpha * delta.grad.sign()).clamp(-epsilon, epsilon).detach()
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def pgd_log_softmax(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    """log_softmax + nll_loss, clamp to [0, 1] first and then to the ball (the order does not matter)."""
    for value in (epsilon, alpha, steps):
        if value < 0:
            raise ValueError("negative setting")
    model.eval()
    adv = x.clone().detach()
    if random_start:
        adv = torch.clamp(adv + torch.empty(adv.shape).uniform_(-epsilon, epsilon), 0, 1)
    for _ in range(steps):
        adv.requires_grad = True
        loss = F.nll_loss(F.log_softmax(model(adv), dim=1), y)
        (g,) = torch.autograd.grad(-loss if targeted else loss, adv)
        adv = (adv.detach() + alpha * g.sign()).clamp(0, 1)
        adv = torch.clamp(adv, x - epsilon, x + epsilon)
    return adv.detach()


def accuracy_vs_epsilon_numpy(model, attack, x, y, epsilons):
    """Counts in NumPy, np.float64 values (a float subclass)."""
    model.eval()
    result = []
    for epsilon in epsilons:
        adversarial = attack(model, x, y, epsilon)
        model.eval()
        with torch.no_grad():
            predicted = model(adversarial).argmax(dim=1).numpy()
        result.append(np.mean(predicted == y.numpy()))
    return result


CORRECT: dict[str, dict[str, Any]] = {
    "reference_answers": dict(REFERENCE),
    "vanilla_one_hot_autograd_grad": {"vanilla_gradient": vanilla_gradient_one_hot},
    "vanilla_one_image_at_a_time": {"vanilla_gradient": vanilla_gradient_loop},
    "smoothgrad_samples_batched": {"smoothgrad": smoothgrad_batched},
    "smoothgrad_randn_like_running_mean": {"smoothgrad": smoothgrad_randn_like},
    "integrated_gradients_batched": {"integrated_gradients": integrated_gradients_batched},
    "fgsm_log_softmax_nll_sum_backward": {"fgsm": fgsm_log_softmax_sum},
    "pgd_delta_sum_backward": {"pgd": pgd_delta},
    "pgd_log_softmax_clamps_swapped": {"pgd": pgd_log_softmax},
    "accuracy_numpy": {"accuracy_vs_epsilon": accuracy_vs_epsilon_numpy},
}


# --- wrong, one realistic bug each ---------------------------------------------------------------------
def vanilla_loss_gradient(model, x, target):
    """The gradient of the cross-entropy loss instead of the target's logit."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    F.cross_entropy(model(x), target).backward()
    return x.grad.detach()


def vanilla_predicted_class(model, x, target):
    """The gradient of the predicted class's logit, not the target's."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    return x.grad.detach()


def vanilla_train_mode(model, x, target):
    """model.eval() forgotten."""
    x = x.detach().clone().requires_grad_(True)
    model(x).gather(1, target.view(-1, 1)).sum().backward()
    return x.grad.detach()


def vanilla_softmax(model, x, target):
    """The gradient of the softmax probability instead of the logit."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    model(x).softmax(1).gather(1, target.view(-1, 1)).sum().backward()
    return x.grad.detach()


def vanilla_abs(model, x, target):
    return _vanilla_gradient(model, x, target).abs()


def vanilla_max_over_channels(model, x, target):
    """The display map (max over channels of |gradient|) instead of the gradient."""
    return _vanilla_gradient(model, x, target).abs().amax(1, keepdim=True).expand_as(x).clone()


def vanilla_requires_grad_on_x(model, x, target):
    """requires_grad switched on for the caller's tensor."""
    model.eval()
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
    return g


def vanilla_not_detached(model, x, target):
    """create_graph=True and no detach: the result still requires grad."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x, create_graph=True)
    return g


def _smoothgrad_with_sigma(sigma_of):
    def smoothgrad(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
        if n_samples < 1 or noise_level < 0:
            raise ValueError("bad setting")
        if noise is not None and tuple(noise.shape) != (n_samples, *x.shape):
            raise ValueError("bad noise")
        model.eval()
        noise = torch.randn(n_samples, *x.shape) if noise is None else noise
        sigma = sigma_of(x, noise_level)
        return torch.stack([attribution(model, x + sigma * noise[s], target) for s in range(n_samples)]).mean(0)
    return smoothgrad


smoothgrad_sigma_is_noise_level = _smoothgrad_with_sigma(lambda x, level: level)
smoothgrad_sigma_times_255 = _smoothgrad_with_sigma(
    lambda x, level: level * 255 * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)))
smoothgrad_batch_range = _smoothgrad_with_sigma(lambda x, level: level * (x.max() - x.min()))
smoothgrad_std_not_range = _smoothgrad_with_sigma(lambda x, level: level * x.std(dim=(1, 2, 3), keepdim=True))


def smoothgrad_calls_vanilla(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """The attribution argument ignored: vanilla_gradient hard-wired."""
    return _smoothgrad(vanilla_gradient, model, x, target, n_samples, noise_level, noise)


def smoothgrad_no_eval(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """Leaves the model's mode to the attribution (R1 forgotten)."""
    model.train(model.training)
    if n_samples < 1 or noise_level < 0:
        raise ValueError("bad setting")
    if noise is not None and tuple(noise.shape) != (n_samples, *x.shape):
        raise ValueError("bad noise")
    noise = torch.randn(n_samples, *x.shape) if noise is None else noise
    sigma = noise_level * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
    return torch.stack([attribution(model, x + sigma * noise[s], target) for s in range(n_samples)]).mean(0)


def smoothgrad_sum(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """The sum over the samples, not the mean."""
    return _smoothgrad(attribution, model, x, target, n_samples, noise_level, noise) * n_samples


def smoothgrad_numpy_noise(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """Its own noise from NumPy's generator (not torch's: torch.manual_seed does not repeat it)."""
    if noise is None:
        noise = torch.from_numpy(np.random.standard_normal((n_samples, *x.shape))).float()
    return _smoothgrad(attribution, model, x, target, n_samples, noise_level, noise)


def smoothgrad_uniform_noise(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """Its own noise uniform in [0, 1) (torch.rand instead of torch.randn)."""
    if noise is None:
        noise = torch.rand(n_samples, *x.shape)
    return _smoothgrad(attribution, model, x, target, n_samples, noise_level, noise)


def smoothgrad_no_checks(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):
    """No ValueErrors: a noise tensor of any shape is indexed as it comes."""
    model.eval()
    noise = torch.randn(max(n_samples, 1), *x.shape) if noise is None else noise
    sigma = noise_level * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
    return torch.stack([attribution(model, x + sigma * noise[s], target)
                        for s in range(max(n_samples, 1))]).mean(0)


def _ig(points_of, factor=True):
    def integrated_gradients(model, x, target, baseline=None, steps=50):
        if steps < 1:
            raise ValueError("steps >= 1")
        model.eval()
        base = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
        fractions = points_of(steps)
        total = sum(_vanilla_gradient(model, base + float(a) * (x - base), target) for a in fractions)
        mean = total / len(fractions)
        return ((x - base) * mean if factor else mean).detach()
    return integrated_gradients


integrated_gradients_no_factor = _ig(lambda m: [k / m for k in range(1, m + 1)], factor=False)
integrated_gradients_left_sum = _ig(lambda m: [k / m for k in range(m)])
integrated_gradients_linspace = _ig(lambda m: torch.linspace(0, 1, m).tolist())
integrated_gradients_midpoint = _ig(lambda m: [(k + 0.5) / m for k in range(m)])


def integrated_gradients_zero_baseline_always(model, x, target, baseline=None, steps=50):
    """The baseline argument ignored: always a black image."""
    if steps < 1:
        raise ValueError("steps >= 1")
    model.eval()
    total = sum(_vanilla_gradient(model, k / steps * x, target) for k in range(1, steps + 1))
    return (x * total / steps).detach()


def integrated_gradients_train_mode(model, x, target, baseline=None, steps=50):
    """model.eval() forgotten; the gradients taken in train mode."""
    if steps < 1:
        raise ValueError("steps >= 1")
    base = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        point = (base + k / steps * (x - base)).requires_grad_(True)
        (g,) = torch.autograd.grad(model(point).gather(1, target.view(-1, 1)).sum(), point)
        total += g
    return ((x - base) * total / steps).detach()


def integrated_gradients_no_check(model, x, target, baseline=None, steps=50):
    """No ValueError for steps < 1 (0 steps: a map of zeros)."""
    model.eval()
    base = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        total += _vanilla_gradient(model, base + k / steps * (x - base), target)
    return ((x - base) * total / max(steps, 1)).detach()


def _loss_grad(model, x, y):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def fgsm_gradient_not_sign(model, x, y, epsilon):
    """Along the gradient itself, not its sign."""
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    return (x + epsilon * _loss_grad(model, x, y)).clamp(0, 1)


def fgsm_descends(model, x, y, epsilon):
    """Down the loss (x - epsilon * sign): it makes the true class more likely."""
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    return (x - epsilon * _loss_grad(model, x, y).sign()).clamp(0, 1)


def fgsm_no_clamp(model, x, y, epsilon):
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    return x + epsilon * _loss_grad(model, x, y).sign()


def fgsm_train_mode(model, x, y, epsilon):
    if epsilon < 0:
        raise ValueError("epsilon")
    return (x + epsilon * _loss_grad(model, x, y).sign()).clamp(0, 1)


def fgsm_in_place(model, x, y, epsilon):
    """x itself perturbed in place (and returned)."""
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    g = _loss_grad(model, x, y)
    return x.add_(epsilon * g.sign()).clamp_(0, 1)


def fgsm_returns_x_for_zero(model, x, y, epsilon):
    """epsilon 0 answered by x itself: the caller's tensor, not a new one."""
    if epsilon == 0:
        return x
    return _fgsm(model, x, y, epsilon)


def fgsm_logit_gradient(model, x, y, epsilon):
    """Down the true class's logit instead of up the loss (a different direction)."""
    if epsilon < 0:
        raise ValueError("epsilon")
    return (x - epsilon * _vanilla_gradient(model, x, y).sign()).clamp(0, 1)


def fgsm_leftover_optimizer_step(model, x, y, epsilon):
    """Training-loop code left in: an optimizer step on the model's weights after the backward pass."""
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    leaf = x.detach().clone().requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    F.cross_entropy(model(leaf), y).backward()
    optimizer.step()
    return (x + epsilon * leaf.grad.sign()).clamp(0, 1)


def fgsm_no_check(model, x, y, epsilon):
    """No ValueError for a negative epsilon."""
    model.eval()
    return (x + epsilon * _loss_grad(model, x, y).sign()).clamp(0, 1)


def _pgd_variant(step_rule):
    """A PGD whose step, projection and clamping are ``step_rule(x_adv, g, x, epsilon, alpha, targeted)``."""
    def pgd(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
        if epsilon < 0 or alpha < 0 or steps < 0:
            raise ValueError("negative setting")
        model.eval()
        x_adv = x.detach().clone()
        if random_start:
            x_adv = (x_adv + torch.empty_like(x_adv).uniform_(-epsilon, epsilon)).clamp(0, 1)
        for _ in range(steps):
            x_adv = step_rule(x_adv, _loss_grad(model, x_adv, y), x, epsilon, alpha, targeted).detach()
        return x_adv
    return pgd


def _signed(g, targeted):
    return -g.sign() if targeted else g.sign()


pgd_no_projection = _pgd_variant(lambda a, g, x, e, al, t: (a + al * _signed(g, t)).clamp(0, 1))
pgd_projection_around_current = _pgd_variant(
    lambda a, g, x, e, al, t: torch.min(torch.max(a + al * _signed(g, t), a - e), a + e).clamp(0, 1))
pgd_no_clamp = _pgd_variant(lambda a, g, x, e, al, t: torch.min(torch.max(a + al * _signed(g, t), x - e), x + e))
pgd_gradient_not_sign = _pgd_variant(
    lambda a, g, x, e, al, t: torch.min(torch.max(a + al * (-g if t else g), x - e), x + e).clamp(0, 1))
pgd_targeted_moves_away = _pgd_variant(
    lambda a, g, x, e, al, t: torch.min(torch.max(a + al * g.sign(), x - e), x + e).clamp(0, 1))
pgd_always_descends = _pgd_variant(
    lambda a, g, x, e, al, t: torch.min(torch.max(a - al * g.sign(), x - e), x + e).clamp(0, 1))


def pgd_project_before_step(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    """Projects and clamps, then steps: the last step is neither projected nor clamped."""
    if epsilon < 0 or alpha < 0 or steps < 0:
        raise ValueError("negative setting")
    model.eval()
    x_adv = x.detach().clone()
    if random_start:
        x_adv = (x_adv + torch.empty_like(x_adv).uniform_(-epsilon, epsilon)).clamp(0, 1)
    for _ in range(steps):
        x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)
        x_adv = (x_adv + alpha * _signed(_loss_grad(model, x_adv, y), targeted)).detach()
    return x_adv


def _pgd_start(start_of):
    def pgd(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
        if not random_start:
            return _pgd(model, x, y, epsilon, alpha, steps, False, targeted)
        if epsilon < 0 or alpha < 0 or steps < 0:
            raise ValueError("negative setting")
        model.eval()
        x_adv = start_of(x, epsilon)
        for _ in range(steps):
            x_adv = x_adv + alpha * _signed(_loss_grad(model, x_adv, y), targeted)
            x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)
        return x_adv.detach()
    return pgd


pgd_random_start_outside_ball = _pgd_start(lambda x, e: (x + torch.empty_like(x).uniform_(-2 * e, 2 * e)).clamp(0, 1))
pgd_random_start_ignored = _pgd_start(lambda x, e: x.clone())
pgd_random_start_gaussian = _pgd_start(lambda x, e: (x + (e * torch.randn_like(x)).clamp(-e, e)).clamp(0, 1))
pgd_random_start_numpy = _pgd_start(
    lambda x, e: (x + torch.from_numpy(np.random.uniform(-e, e, x.shape)).float()).clamp(0, 1))
pgd_random_start_corners = _pgd_start(lambda x, e: (x + e * torch.randn_like(x).sign()).clamp(0, 1))


def pgd_train_mode(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    model.train(model.training)
    x_adv = x.detach().clone()
    if epsilon < 0 or alpha < 0 or steps < 0:
        raise ValueError("negative setting")
    if random_start:
        x_adv = (x_adv + torch.empty_like(x_adv).uniform_(-epsilon, epsilon)).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv + alpha * _signed(_loss_grad(model, x_adv, y), targeted)
        x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)
    return x_adv.detach()


def pgd_returns_x_detached(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    """x_adv = x.detach() (a view of the caller's x): with 0 steps and no random start it returns x's memory."""
    if epsilon < 0 or alpha < 0 or steps < 0:
        raise ValueError("negative setting")
    x_adv = x.detach()
    if random_start or steps:
        return _pgd(model, x, y, epsilon, alpha, steps, random_start, targeted)
    return x_adv


def pgd_no_checks(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    """No ValueErrors (abs of a negative setting)."""
    return _pgd(model, x, y, abs(epsilon), abs(alpha), abs(steps), random_start, targeted)


def accuracy_percent(model, attack, x, y, epsilons):
    return [100 * a for a in _accuracy_vs_epsilon(model, attack, x, y, epsilons)]


def accuracy_train_mode(model, attack, x, y, epsilons):
    """Predictions in whatever mode the model was handed over."""
    out = []
    for epsilon in epsilons:
        with torch.no_grad():
            out.append((model(attack(model, x, y, epsilon)).argmax(1) == y).float().mean().item())
    return out


def accuracy_wrong_epsilon(model, attack, x, y, epsilons):
    """Off by one: position i is attacked with epsilon i + 1 (the last with the last)."""
    shifted = list(epsilons[1:]) + [epsilons[-1]]
    return _accuracy_vs_epsilon(model, attack, x, y, shifted)


def accuracy_epsilon_in_255ths(model, attack, x, y, epsilons):
    """Each epsilon divided by 255 (read as pixel levels)."""
    return _accuracy_vs_epsilon(model, attack, x, y, [e / 255 for e in epsilons])


def accuracy_sorted(model, attack, x, y, epsilons):
    """The epsilons sorted first."""
    return _accuracy_vs_epsilon(model, attack, x, y, sorted(epsilons))


def accuracy_against_clean_predictions(model, attack, x, y, epsilons):
    """Compared with the clean predictions instead of the labels (the share of unchanged predictions)."""
    model.eval()
    with torch.no_grad():
        clean = model(x).argmax(1)
    return _accuracy_vs_epsilon(model, attack, x, clean, epsilons)


def accuracy_error_rate(model, attack, x, y, epsilons):
    return [1 - a for a in _accuracy_vs_epsilon(model, attack, x, y, epsilons)]


def accuracy_tensors(model, attack, x, y, epsilons):
    """Tensors, not Python floats."""
    model.eval()
    with torch.no_grad():
        return [(model(attack(model, x, y, e)).argmax(1) == y).float().mean() for e in epsilons]


WRONG: dict[str, tuple[dict[str, Any], set[str]]] = {
    "vanilla_loss_gradient": ({"vanilla_gradient": vanilla_loss_gradient}, {VANILLA}),
    "vanilla_predicted_class": ({"vanilla_gradient": vanilla_predicted_class}, {VANILLA}),
    "vanilla_train_mode": ({"vanilla_gradient": vanilla_train_mode}, {VANILLA}),
    "vanilla_softmax": ({"vanilla_gradient": vanilla_softmax}, {VANILLA}),
    "vanilla_abs": ({"vanilla_gradient": vanilla_abs}, {VANILLA}),
    "vanilla_max_over_channels": ({"vanilla_gradient": vanilla_max_over_channels}, {VANILLA}),
    "vanilla_requires_grad_on_x": ({"vanilla_gradient": vanilla_requires_grad_on_x}, {VANILLA}),
    "vanilla_not_detached": ({"vanilla_gradient": vanilla_not_detached}, {VANILLA}),
    "smoothgrad_sigma_is_noise_level": ({"smoothgrad": smoothgrad_sigma_is_noise_level}, {SMOOTH}),
    "smoothgrad_sigma_times_255": ({"smoothgrad": smoothgrad_sigma_times_255}, {SMOOTH}),
    "smoothgrad_batch_range": ({"smoothgrad": smoothgrad_batch_range}, {SMOOTH}),
    "smoothgrad_std_not_range": ({"smoothgrad": smoothgrad_std_not_range}, {SMOOTH}),
    "smoothgrad_calls_vanilla": ({"smoothgrad": smoothgrad_calls_vanilla}, {SMOOTH}),
    "smoothgrad_no_eval": ({"smoothgrad": smoothgrad_no_eval}, {SMOOTH}),
    "smoothgrad_sum": ({"smoothgrad": smoothgrad_sum}, {SMOOTH}),
    "smoothgrad_numpy_noise": ({"smoothgrad": smoothgrad_numpy_noise}, {SMOOTH}),
    "smoothgrad_uniform_noise": ({"smoothgrad": smoothgrad_uniform_noise}, {SMOOTH}),
    "smoothgrad_no_checks": ({"smoothgrad": smoothgrad_no_checks}, {SMOOTH}),
    "integrated_gradients_no_factor": ({"integrated_gradients": integrated_gradients_no_factor}, {IG}),
    "integrated_gradients_left_sum": ({"integrated_gradients": integrated_gradients_left_sum}, {IG}),
    "integrated_gradients_linspace": ({"integrated_gradients": integrated_gradients_linspace}, {IG}),
    "integrated_gradients_midpoint": ({"integrated_gradients": integrated_gradients_midpoint}, {IG}),
    "integrated_gradients_baseline_ignored": ({"integrated_gradients": integrated_gradients_zero_baseline_always},
                                              {IG}),
    "integrated_gradients_train_mode": ({"integrated_gradients": integrated_gradients_train_mode}, {IG}),
    "integrated_gradients_no_check": ({"integrated_gradients": integrated_gradients_no_check}, {IG}),
    "fgsm_gradient_not_sign": ({"fgsm": fgsm_gradient_not_sign}, {FGSM}),
    "fgsm_descends": ({"fgsm": fgsm_descends}, {FGSM}),
    "fgsm_no_clamp": ({"fgsm": fgsm_no_clamp}, {FGSM}),
    "fgsm_train_mode": ({"fgsm": fgsm_train_mode}, {FGSM}),
    "fgsm_in_place": ({"fgsm": fgsm_in_place}, {FGSM}),
    "fgsm_returns_x_for_zero": ({"fgsm": fgsm_returns_x_for_zero}, {FGSM}),
    "fgsm_logit_gradient": ({"fgsm": fgsm_logit_gradient}, {FGSM}),
    "fgsm_leftover_optimizer_step": ({"fgsm": fgsm_leftover_optimizer_step}, {FGSM}),
    "fgsm_no_check": ({"fgsm": fgsm_no_check}, {FGSM}),
    "pgd_no_projection": ({"pgd": pgd_no_projection}, {PGD, TARGETED}),
    "pgd_projection_around_current": ({"pgd": pgd_projection_around_current}, {PGD, TARGETED}),
    "pgd_no_clamp": ({"pgd": pgd_no_clamp}, {PGD, TARGETED}),
    "pgd_gradient_not_sign": ({"pgd": pgd_gradient_not_sign}, {PGD, TARGETED}),
    "pgd_targeted_moves_away": ({"pgd": pgd_targeted_moves_away}, {TARGETED}),
    "pgd_always_descends": ({"pgd": pgd_always_descends}, {PGD}),
    "pgd_project_before_step": ({"pgd": pgd_project_before_step}, {PGD, TARGETED}),
    "pgd_random_start_outside_ball": ({"pgd": pgd_random_start_outside_ball}, {PGD}),
    "pgd_random_start_ignored": ({"pgd": pgd_random_start_ignored}, {PGD}),
    "pgd_random_start_gaussian": ({"pgd": pgd_random_start_gaussian}, {PGD}),
    "pgd_random_start_numpy": ({"pgd": pgd_random_start_numpy}, {PGD}),
    "pgd_random_start_corners": ({"pgd": pgd_random_start_corners}, {PGD}),
    "pgd_train_mode": ({"pgd": pgd_train_mode}, {PGD, TARGETED}),
    "pgd_returns_x_detached": ({"pgd": pgd_returns_x_detached}, {PGD}),
    "pgd_no_checks": ({"pgd": pgd_no_checks}, {PGD}),
    "accuracy_percent": ({"accuracy_vs_epsilon": accuracy_percent}, {ACCURACY}),
    "accuracy_train_mode": ({"accuracy_vs_epsilon": accuracy_train_mode}, {ACCURACY}),
    "accuracy_wrong_epsilon": ({"accuracy_vs_epsilon": accuracy_wrong_epsilon}, {ACCURACY}),
    "accuracy_epsilon_in_255ths": ({"accuracy_vs_epsilon": accuracy_epsilon_in_255ths}, {ACCURACY}),
    "accuracy_sorted": ({"accuracy_vs_epsilon": accuracy_sorted}, {ACCURACY}),
    "accuracy_against_clean_predictions": ({"accuracy_vs_epsilon": accuracy_against_clean_predictions}, {ACCURACY}),
    "accuracy_error_rate": ({"accuracy_vs_epsilon": accuracy_error_rate}, {ACCURACY}),
    "accuracy_tensors": ({"accuracy_vs_epsilon": accuracy_tensors}, {ACCURACY}),
}


# --- back doors: the course's widget code, captum, torchattacks --------------------------------------------
def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_SALIENCY_WIDGET = _optional("course_utils.widgets.saliency")
_EPSILON_WIDGET = _optional("course_utils.widgets.epsilon")
_CAPTUM = _optional("captum.attr")
_TORCHATTACKS = _optional("torchattacks")


def vanilla_from_the_widget(model, x, target):
    """The saliency widget's own gradient helper, one image at a time."""
    model.eval()
    return torch.stack([_SALIENCY_WIDGET._score_gradient(model, x[n : n + 1], int(target[n]))[0]
                        for n in range(len(x))])


def fgsm_from_the_widget(model, x, y, epsilon):
    """The epsilon widget's loss-gradient sign."""
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    return (x + epsilon * _EPSILON_WIDGET._loss_gradient_sign(model, x, y)).clamp(0, 1)


def vanilla_from_captum(model, x, target):
    model.eval()
    return _CAPTUM.Saliency(model).attribute(x.clone(), target=target, abs=False).detach()


def integrated_gradients_from_captum(model, x, target, baseline=None, steps=50):
    if steps < 1:
        raise ValueError("steps")
    model.eval()
    base = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).clone()
    return _CAPTUM.IntegratedGradients(model).attribute(x.clone(), base, target=target, n_steps=steps,
                                                        method="riemann_right").detach()


def fgsm_from_torchattacks(model, x, y, epsilon):
    if epsilon < 0:
        raise ValueError("epsilon")
    model.eval()
    return _TORCHATTACKS.FGSM(model, eps=epsilon)(x, y).detach()


def pgd_from_torchattacks(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):
    if epsilon < 0 or alpha < 0 or steps < 0:
        raise ValueError("negative setting")
    model.eval()
    attack = _TORCHATTACKS.PGD(model, eps=epsilon, alpha=alpha, steps=steps, random_start=random_start)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    return attack(x, y).detach()


# A back door in vanilla_gradient (fgsm) is refused in test_smoothgrad (test_accuracy_vs_epsilon) too, where the check
# hands it to the student's smoothgrad (accuracy_vs_epsilon): the guard does not let the student's code swallow a
# refusal, so that case fails instead of being skipped.
BACK_DOORS: dict[str, tuple[dict[str, Any], set[str]]] = {}
if _SALIENCY_WIDGET is not None:
    BACK_DOORS["vanilla_from_the_saliency_widget"] = ({"vanilla_gradient": vanilla_from_the_widget}, {VANILLA, SMOOTH})
if _EPSILON_WIDGET is not None:
    BACK_DOORS["fgsm_from_the_epsilon_widget"] = ({"fgsm": fgsm_from_the_widget}, {FGSM, ACCURACY})
if _CAPTUM is not None:
    BACK_DOORS["vanilla_from_captum"] = ({"vanilla_gradient": vanilla_from_captum}, {VANILLA, SMOOTH})
    BACK_DOORS["integrated_gradients_from_captum"] = ({"integrated_gradients": integrated_gradients_from_captum},
                                                      {IG})
if _TORCHATTACKS is not None:
    BACK_DOORS["fgsm_from_torchattacks"] = ({"fgsm": fgsm_from_torchattacks}, {FGSM, ACCURACY})
    BACK_DOORS["pgd_from_torchattacks"] = ({"pgd": pgd_from_torchattacks}, {PGD, TARGETED})


def caught(replacements: dict[str, Any], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it."""
    return vh.catch_rates(caught, WRONG, secrets, names)
