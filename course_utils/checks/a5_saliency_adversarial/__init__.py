"""Checks for a5_saliency_adversarial: vanilla gradients, SmoothGrad, Integrated Gradients, FGSM, PGD (untargeted,
random start, targeted) and the accuracy-vs-epsilon curve.

Every reference is computed here with autograd, step by step (:func:`reference_gradient`,
:func:`reference_smoothgrad`, :func:`reference_integrated_gradients`, :func:`reference_fgsm`,
:func:`reference_pgd`), never with course_utils' lectures or widgets and never by properties alone (returning x
unchanged stays inside every epsilon ball). Models never cross to the student's side: a *driver*
(:class:`Call`, plain data) builds the model where the student's code runs, either the check's own seeded small CNN
(:func:`small_cnn`: Conv-BatchNorm-ReLU-MaxPool, Conv-BatchNorm-ReLU, Dropout, Linear, with seeded running
statistics, so an answer computed in train mode differs) or the course checkpoint ``shapes_resnet``, builds the
arguments, calls the student's function and returns what it returned, whether x or the model's parameters changed,
and what the helper functions it was handed saw. The check builds the same model on its side and computes the
reference. The rules the notebook states once (R1 evaluation mode, R2 inputs untouched and a new detached result,
R3 parameters unchanged) are checked on every call; some models are handed over in training mode.

Comparisons. Gradient maps (vanilla, SmoothGrad with the check's noise, Integrated Gradients at the same m) in
float32: |got - expected| <= :data:`MAP_ATOL` * max|expected| + :data:`MAP_RTOL` |expected|. Sign-based attacks
(FGSM, PGD without random start): a correct answer written another way (log_softmax + nll_loss, a sum instead of a
mean, autograd.grad instead of backward, the perturbation delta as the variable, the two clamps swapped) may flip
the sign of a component whose gradient is ~0, and in PGD a flip moves the next steps' gradients; so at most
:data:`ATTACK_FLIP_SHARE` of the pixels (and at least one) may differ by more than :data:`ATTACK_ATOL`: 1 % on the
check's small CNN, 5 % on the course checkpoint. Measured over the visible cases and the hidden ones of 4 secrets
(tests/a5_variants.py's correct variants and the notebook's solution against the references here): 0 % of the
pixels differ on the small CNN, at most 1.3 % on the checkpoint (targeted PGD, 15 steps; 1.0 % for the delta
formulation over 5 steps). The kept wrong attacks differ in 9 % to 100 % of the pixels on the cases of their rule
(no clamping: 32 % to 63 % on the cases with pixels at 0 and 1; no sign: 80 % to 100 %; no projection: 41 % to
90 %; descending: 90 % to 100 %); the ones that agree in value (in place, x itself returned, weights stepped, no
ValueError) fail R2, R3 or the error cases. Property cases: PGD's random start (inside the ball, in [0, 1], uniform,
torch's global RNG, and on a fixed batch of 24 checkpoint images at most the clean accuracy minus
:data:`RANDOM_START_DROP` = 0.5; measured drop 0.875 or more over 40 batches), targeted PGD on the checkpoint at
:data:`TARGETED_SETTING` (epsilon 16/255, alpha 2/255, 15 steps: at least :data:`TARGETED_THRESHOLD` = 60 % of 24
images reach their target; the reference reaches 83 % to 100 % over 40 batches, mean 93 %; a step away from the
target reaches almost none), SmoothGrad's own noise (its statistics). The seed studies are repeated in
tests/heavy/test_grading_a5.py.

Refused while the student's code runs (``refuse_code``, :func:`refused_code`): the course's widget modules that
compute saliency maps and attacks, and captum's and torchattacks' code where they are installed (resolved at the
first check: importing them takes seconds). Autograd and the rest of torch stay
allowed: they are the tools.

The package: this module holds what is shared, the references and the driver (a driver crosses to the grader's
worker as a top-level class of this module); :mod:`.saliency` the checks of the attributions (vanilla gradient,
SmoothGrad, Integrated Gradients), :mod:`.attacks` those of the attacks (FGSM, PGD, targeted PGD, accuracy vs
epsilon).

Each check has visible cases (every stated rule at least once, ValueErrors included) and hidden ones (other sizes,
seeds, epsilons, modes drawn from the instructor's secret); a hidden failure names the rule, never the inputs.
"""

from __future__ import annotations

import functools
import importlib
import math
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import CheckFailure, check_later, drive, expect_close, hidden_seed
from .. import notebook_global as _notebook_global
from .. import type_name as _kind
from ..codeguard import importable as _importable
from ..codeguard import resolvable as _resolvable

__all__ = ["check_vanilla_gradient", "check_smoothgrad", "check_integrated_gradients", "check_fgsm", "check_pgd",
           "check_pgd_targeted", "check_accuracy_vs_epsilon", "Call", "small_cnn", "build_model",
           "reference_gradient", "reference_smoothgrad", "reference_integrated_gradients", "reference_fgsm",
           "reference_pgd", "hidden_rules", "refused_code", "MAP_ATOL", "MAP_RTOL", "ATTACK_ATOL",
           "ATTACK_FLIP_SHARE", "TARGETED_THRESHOLD", "TARGETED_SETTING", "RANDOM_START_DROP",
           "RANDOM_START_SETTING"]

ASSIGNMENT = "a5_saliency_adversarial"
# A hidden failure's message names the check and the rule, never an input, a size, a value or text the student's
# code chose: the grader shows it to the student (course_utils.grading.protocol).
HIDDEN_MESSAGES_NAME_THE_RULE = True
CHECKPOINT = "shapes_resnet"
MAP_ATOL, MAP_RTOL = 1e-4, 1e-3      # gradient maps in float32, atol relative to the map's largest value
ATTACK_ATOL = 1e-5                    # a pixel of an attack "agrees" within this
# the share of pixels a correct attack written another way may flip: on the check's small CNN (a few steps) and on
# the course checkpoint (up to 15 steps, where a flip changes the next gradients)
ATTACK_FLIP_SHARE = {"cnn": 0.01, "checkpoint": 0.05}
# targeted PGD on the checkpoint: epsilon, alpha, steps, and the share of images that must reach their target
TARGETED_SETTING: dict[str, float] = {"epsilon": 16 / 255, "alpha": 2 / 255, "steps": 15, "n": 24}
TARGETED_THRESHOLD: float = 0.6
# PGD with random start on the checkpoint: its accuracy at most the clean accuracy minus RANDOM_START_DROP
RANDOM_START_SETTING: dict[str, float] = {"epsilon": 8 / 255, "alpha": 2 / 255, "steps": 10, "n": 24}
RANDOM_START_DROP: float = 0.5
Case = tuple[str, dict]               # (the rule a case exercises, its setting)
Model = dict                          # {"kind": "cnn" | "checkpoint", "seed", "channels", "classes", "train"}


# --- what the student's code may not run -------------------------------------------------------------


_WIDGETS = Path(__file__).resolve().parent.parent.parent / "widgets"
WIDGET_CODE: tuple[str, ...] = tuple(f"course_utils.widgets.{m}" for m in ("saliency", "epsilon")
                                     if (_WIDGETS / f"{m}.py").exists())
CAPTUM_CODE: tuple[str, ...] = tuple(
    [f"captum.attr._core.{m}" for m in ("saliency", "integrated_gradients", "noise_tunnel", "input_x_gradient",
                                        "gradient_shap")]
    + ["captum._utils.gradient", "captum.attr._utils.approximation_methods"])
TORCHATTACKS_CODE: tuple[str, ...] = ("torchattacks.attack",) + tuple(
    f"torchattacks.attacks.{m}" for m in ("fgsm", "pgd", "bim", "ffgsm", "tpgd", "apgd", "apgdt", "mifgsm", "rfgsm"))
WHY = ("compute it yourself with autograd (the course's widgets, captum and torchattacks are what the check compares "
       "with)")


@functools.cache
def refused_code() -> tuple[str, ...]:
    """What every check refuses (``refuse_code``): the widget modules that exist, and captum's and torchattacks'
    modules where those are installed. Resolved at the first check, not at import: importing captum and
    torchattacks takes about 2 s, which a notebook's imports cell should not pay."""
    found = WIDGET_CODE
    if _importable("captum"):
        found += _resolvable(CAPTUM_CODE)
    if _importable("torchattacks"):
        found += _resolvable(TORCHATTACKS_CODE)
    return found


def _declare() -> Callable[[Callable[..., None]], Callable[..., None]]:
    """:func:`check` with :func:`refused_code`, declared when the check is first called."""
    return check_later(refused_code, why=WHY)


# --- the models ----------------------------------------------------------------------------------------
def _tensor(value: Any) -> torch.Tensor:
    assert isinstance(value, torch.Tensor)  # (a layer built with a bias and running statistics has them)
    return value


def small_cnn(seed: int, channels: int = 3, classes: int = 5) -> nn.Module:
    """The check's model: Conv(3x3, 8)-BatchNorm-ReLU-MaxPool(2), Conv(3x3, 12)-BatchNorm-ReLU, adaptive average
    pool to 2x2, Dropout(0.5), Linear(48, classes): (N, channels, H, W) -> (N, classes) logits, H, W >= 4.

    Weights N(0, 2 / fan_in), biases and BatchNorm shifts N(0, 0.1^2), BatchNorm scales U(0.5, 1.5), running means
    N(0, 0.2^2) and variances U(0.5, 1.5), all from ``seed`` (torch's global RNG is left alone): in train mode
    (batch statistics, dropout) it computes something else than in eval mode."""
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                              nn.Flatten(), nn.Dropout(0.5), nn.Linear(48, classes))
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
                _tensor(module.bias).normal_(0.0, 0.1, generator=g)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.normal_(0.0, 0.1, generator=g)
                _tensor(module.running_mean).normal_(0.0, 0.2, generator=g)
                _tensor(module.running_var).uniform_(0.5, 1.5, generator=g)
    return model


def build_model(spec: Model) -> nn.Module:
    """The model ``spec`` describes, in the mode it names: the check's :func:`small_cnn` or the course checkpoint."""
    if spec["kind"] == "checkpoint":
        model = importlib.import_module("course_utils.pretrained").load(CHECKPOINT, device="cpu")
    else:
        model = small_cnn(int(spec["seed"]), int(spec["channels"]), int(spec["classes"]))
    return model.train(bool(spec["train"]))


def _describe_model(spec: Model) -> str:
    mode = "handed over in train mode" if spec["train"] else "in eval mode"
    if spec["kind"] == "checkpoint":
        return f"the course checkpoint {CHECKPOINT!r} {mode}"
    return f"the check's small CNN (BatchNorm, Dropout; {spec['classes']} classes) {mode}"


# --- the references, computed with autograd step by step ------------------------------------------------
def reference_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d f_{target[n]}(x)[n] / d x[n] for every image n (N, C, H, W), in the model's current mode: the gradient of
    sum_n f_{t_n}(x_n), since the images are independent in eval mode."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)                                      # (N, K)
    score = logits.gather(1, target.view(-1, 1)).sum()     # sum_n f_{t_n}(x_n)
    (grad,) = torch.autograd.grad(score, x)
    return grad


def _sigma(x: torch.Tensor, noise_level: float) -> torch.Tensor:
    """sigma_n = noise_level * (max(x_n) - min(x_n)), shaped (N, 1, 1, 1) to broadcast."""
    flat = x.flatten(1)
    return (noise_level * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)


def reference_smoothgrad(attribution: Callable, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                         noise: torch.Tensor, noise_level: float) -> torch.Tensor:
    """(1/S) sum_s attribution(model, x + sigma * noise[s], target), noise (S, N, C, H, W)."""
    sigma = _sigma(x, noise_level)
    maps = [attribution(model, x + sigma * noise[s], target) for s in range(noise.shape[0])]
    return torch.stack(maps).mean(0)


def reference_integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                                   baseline: torch.Tensor, steps: int) -> torch.Tensor:
    """(x - x') * (1/m) sum_{k=1..m} grad f_t(x' + (k/m)(x - x')): the right Riemann sum, m = steps."""
    baseline = baseline.expand_as(x)
    total = torch.zeros_like(x)
    for k in range(1, steps + 1):
        total += reference_gradient(model, baseline + (k / steps) * (x - baseline), target)
    return (x - baseline) * total / steps


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x of the cross-entropy of the logits (summed over the images: the sign is that of the mean's)."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def reference_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """clamp(x + epsilon * sign(grad_x L(f(x), y)), 0, 1), in eval mode."""
    model.eval()
    return (x + epsilon * _loss_gradient(model, x, y).sign()).clamp(0.0, 1.0)


def reference_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, alpha: float, steps: int,
                  targeted: bool = False, start: torch.Tensor | None = None) -> torch.Tensor:
    """L-infinity PGD from x (or ``start``): x_{k+1} = clip_{x, eps}(x_k +- alpha * sign(grad L(f(x_k), y))),
    then clamped to [0, 1]; - for a targeted attack (y the targets)."""
    model.eval()
    x_adv = x.clone() if start is None else start.clone()
    for _ in range(steps):
        step = alpha * _loss_gradient(model, x_adv, y).sign()
        x_adv = x_adv - step if targeted else x_adv + step
        x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0.0, 1.0)  # onto the ball, then [0, 1]
    return x_adv


# the check's own helpers, handed to the student's smoothgrad and accuracy_vs_epsilon (by name, in the driver)
def target_logit_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An attribution: the gradient of the target's logit, in whatever mode the model is (it does not call eval)."""
    return reference_gradient(model, x, target)


def squared_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An attribution that is not a gradient: x * x, elementwise (the mean over noisy copies is not x * x)."""
    return x * x


def identity_attribution(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An attribution returning its input: SmoothGrad of it is x + sigma * (the mean of the noise)."""
    return x.clone()


def pattern_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """An attack that ignores the model: x + epsilon * a fixed +-1 pattern, clamped to [0, 1]."""
    n = torch.arange(x[0].numel(), dtype=torch.float64).view_as(x[0])
    pattern = torch.sin(n * 1.7 + 0.3).sign().to(x.dtype)  # the same pattern for every image
    return (x + epsilon * pattern).clamp(0.0, 1.0)


HELPERS: dict[str, Callable[..., torch.Tensor]] = {
    "target_logit_gradient": target_logit_gradient, "squared_input": squared_input,
    "identity_attribution": identity_attribution, "pattern_attack": pattern_attack, "reference_fgsm": reference_fgsm}


class _HelperFailed(Exception):
    """The notebook's own helper (vanilla_gradient, fgsm) failed inside the student's call: that case is skipped."""


class _Recorder:
    """A helper function as the student's code receives it: it records each call's input (or epsilon) and output."""

    def __init__(self, fn: Callable[..., Any], attack: bool, notebook: bool) -> None:
        self.fn, self.attack, self.notebook = fn, attack, notebook
        self.calls: list[list[Any]] = []
        self.failed = False

    def __call__(self, model: Any, x: Any, y: Any, epsilon: Any = None) -> Any:
        args = (model, x, y) if epsilon is None and not self.attack else (model, x, y, epsilon)
        try:
            out = self.fn(*args)
        except Exception:
            if not self.notebook:
                raise
            self.failed = True
            raise _HelperFailed("the notebook's helper raised") from None
        if self.notebook and (not isinstance(out, torch.Tensor) or not isinstance(x, torch.Tensor)
                              or out.shape != x.shape):
            self.failed = True
            raise _HelperFailed("the notebook's helper returned no tensor of x's shape")
        first = float(epsilon) if self.attack else x.detach().clone() if isinstance(x, torch.Tensor) else None
        self.calls.append([first, out.detach().clone() if isinstance(out, torch.Tensor) else None])
        return out


# --- the driver --------------------------------------------------------------------------------------
def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.numel() > 0
    except (RuntimeError, NotImplementedError):
        return False


class Call:
    """A driver: build the model (``model``, a spec for :func:`build_model`) and call the student's function.

    ``layout`` says how: "plain" fn(model, x, labels, *args, **kwargs); "smoothgrad" fn(helper, model, x, labels,
    **kwargs); "accuracy" fn(model, helper, x, labels, *args). ``helper``: "check:<name>" (one of :data:`HELPERS`)
    or "notebook:<name>" (the notebook's function of that name, as ``fn`` sees it), handed over through a recorder.
    ``seed``: ``torch.manual_seed(seed)`` right before the call; ``again``: call a second time after the same seed.
    ``errors``: the student's exception is returned ({"raised": ...}) instead of raised. Returns plain data: the
    answer (a tensor, or a list of plain values), whether x, its requires_grad or the parameters changed, whether
    the answer shares memory with x or requires grad, and the helper's recorded calls."""

    def __init__(self, model: Model, x: torch.Tensor, labels: torch.Tensor, args: Sequence[Any] = (),
                 kwargs: dict | None = None, layout: str = "plain", helper: str = "", seed: int | None = None,
                 again: bool = False, errors: bool = False) -> None:
        self.model, self.x, self.labels = dict(model), x, labels
        self.args, self.kwargs = list(args), dict(kwargs or {})
        self.layout, self.helper, self.seed = str(layout), str(helper), None if seed is None else int(seed)
        self.again, self.errors = bool(again), bool(errors)

    def __wire__(self) -> dict[str, Any]:
        return {"model": self.model, "x": self.x, "labels": self.labels, "args": self.args, "kwargs": self.kwargs,
                "layout": self.layout, "helper": self.helper, "seed": self.seed, "again": self.again,
                "errors": self.errors}

    def _helper(self, fn: Any) -> _Recorder | None:
        if not self.helper:
            return None
        where, _, name = self.helper.partition(":")
        attack = self.layout == "accuracy"
        if where == "notebook":
            return _Recorder(_notebook_global(fn, name), attack, notebook=True)
        return _Recorder(HELPERS[name], attack, notebook=False)

    def _once(self, fn: Any, model: nn.Module, x: torch.Tensor, helper: _Recorder | None) -> Any:
        if self.layout == "smoothgrad":
            args: list[Any] = [helper, model, x, self.labels.clone()]
        elif self.layout == "accuracy":
            args = [model, helper, x, self.labels.clone()]
        else:
            args = [model, x, self.labels.clone()]
        if self.seed is not None:
            torch.manual_seed(self.seed)
        return fn(*args, *self.args, **self.kwargs)

    @staticmethod
    def _answer(value: Any, x: torch.Tensor) -> dict[str, Any]:
        if isinstance(value, torch.Tensor):
            return {"type": "Tensor", "value": value.detach().clone(), "requires_grad": bool(value.requires_grad),
                    "shares_x": _shares_memory(value, x)}
        if isinstance(value, (list, tuple)):
            items = [float(v) if isinstance(v, float) else type(v).__name__ for v in value]
            return {"type": type(value).__name__, "items": items}
        return {"type": type(value).__name__}

    def __call__(self, fn: Any) -> dict[str, Any]:
        model = build_model(self.model)
        x = self.x.clone()
        params = [p.detach().clone() for p in model.parameters()]
        helper = self._helper(fn)
        try:
            value = self._once(fn, model, x, helper)
        except _HelperFailed:
            return {"helper_failed": True}
        except Exception as err:
            if helper is not None and helper.failed:
                return {"helper_failed": True}
            if not self.errors:
                raise
            return {"raised": "ValueError" if isinstance(err, ValueError) else _kind(err, True),
                    "message": str(err)[:300]}
        result = {**self._answer(value, x), "x_changed": not torch.equal(x, self.x),
                  "x_requires_grad": bool(x.requires_grad),
                  "params_changed": any(not torch.equal(p, q.detach()) for p, q in zip(params, model.parameters(),
                                                                                         strict=True)),
                  "calls": helper.calls if helper is not None else []}
        if self.again:
            again = self._once(fn, build_model(self.model), self.x.clone(), self._helper(fn))
            result["again"] = again.detach().clone() if isinstance(again, torch.Tensor) else None
        return result


# --- helpers of the checks ---------------------------------------------------------------------------
def _name(obj: Any, default: str) -> str:
    return getattr(obj, "__name__", default)


def _seed(hidden: bool, check_name: str, part: str | int) -> int:
    if hidden:
        return hidden_seed(ASSIGNMENT, check_name, part) % 2**31
    return zlib.crc32(f"{check_name}/{part}".encode())


def _rng(hidden: bool, check_name: str, part: str) -> random.Random:
    return random.Random(_seed(hidden, check_name, part))


def _cnn(seed: int, channels: int = 3, classes: int = 5, train: bool = False) -> Model:
    return {"kind": "cnn", "seed": seed, "channels": channels, "classes": classes, "train": train}


def _checkpoint(train: bool = False) -> Model:
    return {"kind": "checkpoint", "seed": 0, "channels": 3, "classes": 10, "train": train}


def _images(seed: int, n: int, channels: int, size: int, ranges: Sequence[Sequence[float]] | None = None,
            borders: bool = False) -> torch.Tensor:
    """(n, channels, size, size) in [0, 1]: uniform, or image i in ranges[i % len(ranges)]; ``borders``: a third of
    the pixels exactly 0 or 1 (where clamping matters)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    if ranges:
        lo = torch.tensor([float(ranges[i % len(ranges)][0]) for i in range(n)]).view(-1, 1, 1, 1)
        hi = torch.tensor([float(ranges[i % len(ranges)][1]) for i in range(n)]).view(-1, 1, 1, 1)
        x = lo + (hi - lo) * x
    if borders:
        pick = torch.rand(x.shape, generator=g)
        x = torch.where(pick < 1 / 6, torch.zeros_like(x), torch.where(pick > 5 / 6, torch.ones_like(x), x))
    return x


def _shapes(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of the shapes data (3x32x32, the checkpoint's) and their labels."""
    data = importlib.import_module("course_utils.data").load("shapes", n=n, size=32, seed=seed)
    return data.images.float().contiguous(), data.labels.long()


def _labels(seed: int, n: int, classes: int) -> torch.Tensor:
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed + 1))


def _torch_seed(seed: int) -> int:
    """The ``torch.manual_seed`` a driver sets before the call (not the seed the case's inputs were drawn with)."""
    return zlib.crc32(f"torch/{seed}".encode())


def _run(student: Any, driver: Call, where: str, hidden: bool) -> dict[str, Any]:
    """``drive``; the student's exception becomes a failure that says where (not the inputs, if hidden)."""
    try:
        result = drive(student, driver)
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except CheckFailure:
        raise
    except Exception as err:
        detail = "" if hidden else f": {err}"
        if "does not require grad" in str(err) or "inference tensor" in str(err).lower():
            detail += (" (gradients were switched off: an attack or an attribution needs them, so don't call it "
                       "inside torch.no_grad() or torch.inference_mode(), and don't detach the input you "
                       "differentiate with respect to)")
        raise CheckFailure(f"{where} raised {_kind(err, hidden)}{detail}") from None
    if not isinstance(result, dict):  # (only a broken driver gets here)
        raise CheckFailure(f"{where}: the check's driver returned {type(result).__name__}")
    return result


def _rules(got: dict[str, Any], x: torch.Tensor, where: str, hidden: bool, what: str = "the result") -> torch.Tensor:
    """R2 and R3 on the driver's answer; returns the answer tensor."""
    if got.get("type") != "Tensor":
        shown = "another type" if hidden else str(got.get("type"))
        raise CheckFailure(f"{where}: {what} should be a tensor of x's shape, got {shown}")
    value = got["value"]
    if tuple(value.shape) != tuple(x.shape):
        shown = "" if hidden else f" {tuple(x.shape)}, got {tuple(value.shape)}"
        raise CheckFailure(f"{where}: {what} should have x's shape (N, C, H, W){shown}")
    if value.dtype != x.dtype:
        raise CheckFailure(f"{where}: {what} should have x's dtype {x.dtype}, got {value.dtype}")
    if got["x_changed"]:
        raise CheckFailure(f"{where}: x was modified in place (R2: leave the inputs untouched; work on a copy, "
                           f"e.g. x.clone())")
    if got["x_requires_grad"]:
        raise CheckFailure(f"{where}: the caller's x now has requires_grad=True (R2: leave the inputs untouched; "
                           f"take the gradient with respect to a copy, x.clone().requires_grad_())")
    if got["params_changed"]:
        raise CheckFailure(f"{where}: the model's parameters changed (R3: only x is perturbed; the model's weights "
                           f"stay as they are)")
    if got["requires_grad"]:
        raise CheckFailure(f"{where}: {what} should be detached (requires_grad False): return .detach() of it")
    if got["shares_x"]:
        raise CheckFailure(f"{where}: {what} shares memory with x (R2: return a new tensor, e.g. x.clone(), "
                           f"not x or x.detach())")
    return value


def _close_maps(got: torch.Tensor, expected: torch.Tensor, where: str, hidden: bool, hint: str = "") -> None:
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    try:
        expect_close(got, expected, where, atol=MAP_ATOL * scale + 1e-7, rtol=MAP_RTOL)
    except CheckFailure as failure:
        if hidden:
            raise CheckFailure(f"{where}: some values of the map are wrong{hint}. The visible cases test the same "
                               f"rule on other inputs: make your code right for every size and setting.") from None
        raise CheckFailure(f"{failure}{hint}") from None


def _close_attack(got: torch.Tensor, expected: torch.Tensor, where: str, hidden: bool, hint: str = "",
                  kind: str = "cnn") -> None:
    """A sign-based attack: at most ATTACK_FLIP_SHARE[kind] of the pixels (at least one) off by more than
    ATTACK_ATOL."""
    error = (got.double() - expected.double()).abs()
    bad = ~(error <= ATTACK_ATOL)
    allowed = max(1, int(ATTACK_FLIP_SHARE[kind] * error.numel()))
    if int(bad.sum()) <= allowed:
        return
    if hidden:
        raise CheckFailure(f"{where}: the adversarial images are wrong in many pixels{hint}. The visible cases test "
                           f"the same rule on other inputs.")
    flat = int(torch.where(bad.flatten(), error.flatten().nan_to_num(float("inf")), -1.0).argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
    raise CheckFailure(f"{where}: {int(bad.sum())} of {error.numel()} pixels differ from the reference by more "
                       f"than {ATTACK_ATOL:g} (at most {allowed} may: a sign flipped where the gradient is ~0); the "
                       f"largest error is {float(error.flatten()[flat]):.3g} at index {index} (got "
                       f"{float(got.flatten()[flat]):.6g}, expected {float(expected.flatten()[flat]):.6g}){hint}")


def _expect_value_error(student: Any, driver: Call, where: str, hidden: bool) -> None:
    got = _run(student, driver, where, hidden)
    if got.get("raised") == "ValueError":
        return
    if "raised" in got:
        detail = "" if hidden else f": {got['message']}"
        raise CheckFailure(f"{where} should raise ValueError, but it raised {got['raised']}{detail}")
    raise CheckFailure(f"{where} should raise ValueError, but it returned a value")


def _call_text(name: str, spec: Model, x: torch.Tensor, labels: torch.Tensor, extra: str, label: str) -> str:
    return (f"{name}(model, x, {label}{extra}) with model = {_describe_model(spec)}, x of shape {tuple(x.shape)}, "
            f"{label} = {labels.tolist()}")


def _finish(name: str, what: str, cases: int, hidden: bool, note: str = "") -> None:
    print(f"✓ {name}: {what}: all {cases} cases passed{note}" + (" (hidden cases)" if hidden else ""))


# --- what the cases share ----------------------------------------------------------------------------
def _hidden_model(spec: Model, seed: int) -> Model:
    return {**spec, "seed": seed} if spec["kind"] == "cnn" else spec


def _inputs(setting: dict, seed: int) -> tuple[Model, torch.Tensor, torch.Tensor]:
    """The case's model spec, images and labels (the checkpoint's cases: shapes images and their labels)."""
    spec = setting["model"]
    if spec["kind"] == "checkpoint":
        x, labels = _shapes(seed % 1000, setting["n"])
        return spec, x, labels
    x = _images(seed, setting["n"], spec["channels"], setting["size"], setting.get("ranges"), setting.get("borders",
                                                                                                         False))
    return spec, x, _labels(seed, setting["n"], spec["classes"])


def _cases(visible: list[Case], hidden_cases: list[Case], hidden: bool, check_name: str) -> list[tuple[str, dict, int]]:
    """(rule, setting, seed) per case; a hidden case's model seed drawn from the secret too."""
    found = []
    for index, (rule, setting) in enumerate(hidden_cases if hidden else visible):
        seed = _seed(hidden, check_name, index)
        if hidden:
            setting = {**setting, "model": _hidden_model(setting["model"], seed % 9973)}
        found.append((rule, setting, seed))
    return found


def _accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == labels).double().mean())


def _targets(y: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """A target for each image, never its label."""
    shift = torch.randint(1, classes, y.shape, generator=torch.Generator().manual_seed(seed + 5))
    return (y + shift) % classes


# --- the checks (imported last: they use the drivers and helpers above; the case tables re-exported for the tests
# and the instructor's guide) ------------------------------------------------------------------------------------
from .attacks import (ACCURACY_CASES, FGSM_CASES, FGSM_ERRORS, HIDDEN_ACCURACY_CASES,  # noqa: E402, F401
                      HIDDEN_FGSM_CASES, HIDDEN_FGSM_ERRORS, HIDDEN_PGD_CASES, HIDDEN_PGD_ERRORS,
                      HIDDEN_PGD_TARGETED_CASES, HIDDEN_RANDOM_START_CASES, PGD_CASES, PGD_ERRORS, PGD_TARGETED_CASES,
                      RANDOM_START_CASES, check_accuracy_vs_epsilon, check_fgsm, check_pgd, check_pgd_targeted)
from .saliency import (HIDDEN_IG_CASES, HIDDEN_IG_ERRORS, HIDDEN_SMOOTHGRAD_CASES,  # noqa: E402, F401
                       HIDDEN_SMOOTHGRAD_ERRORS, HIDDEN_VANILLA_CASES, IG_CASES, IG_ERRORS, SMOOTHGRAD_CASES,
                       SMOOTHGRAD_ERRORS, VANILLA_CASES, check_integrated_gradients, check_smoothgrad,
                       check_vanilla_gradient)


# --- for the instructor's guide and the tests -------------------------------------------------------
def hidden_rules() -> dict[str, Sequence[str]]:
    """The rules each check's hidden cases exercise (for the instructor's guide and the tests)."""
    return {"check_vanilla_gradient": [r for r, _ in HIDDEN_VANILLA_CASES],
            "check_smoothgrad": [r for r, _ in HIDDEN_SMOOTHGRAD_CASES + HIDDEN_SMOOTHGRAD_ERRORS],
            "check_integrated_gradients": [r for r, _ in HIDDEN_IG_CASES + HIDDEN_IG_ERRORS],
            "check_fgsm": [r for r, _ in HIDDEN_FGSM_CASES + HIDDEN_FGSM_ERRORS],
            "check_pgd": [r for r, _ in HIDDEN_PGD_CASES + HIDDEN_PGD_ERRORS + HIDDEN_RANDOM_START_CASES],
            "check_pgd_targeted": [r for r, _ in HIDDEN_PGD_TARGETED_CASES],
            "check_accuracy_vs_epsilon": [r for r, _ in HIDDEN_ACCURACY_CASES]}


def visible_rules() -> dict[str, Sequence[str]]:
    """The rules each check's visible cases exercise."""
    return {"check_vanilla_gradient": [r for r, _ in VANILLA_CASES],
            "check_smoothgrad": [r for r, _ in SMOOTHGRAD_CASES + SMOOTHGRAD_ERRORS],
            "check_integrated_gradients": [r for r, _ in IG_CASES + IG_ERRORS],
            "check_fgsm": [r for r, _ in FGSM_CASES + FGSM_ERRORS],
            "check_pgd": [r for r, _ in PGD_CASES + PGD_ERRORS + RANDOM_START_CASES],
            "check_pgd_targeted": [r for r, _ in PGD_TARGETED_CASES],
            "check_accuracy_vs_epsilon": [r for r, _ in ACCURACY_CASES]}
