"""a5's attack checks: FGSM, PGD (projection, clamping, random start), targeted PGD, the accuracy-vs-epsilon curve."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import CheckFailure
from .. import case_label as _where
from . import (RANDOM_START_DROP, RANDOM_START_SETTING, TARGETED_SETTING, TARGETED_THRESHOLD, Call, Case, Model,
               _accuracy, _call_text, _cases, _checkpoint, _close_attack, _cnn, _declare, _describe_model,
               _expect_value_error, _finish, _hidden_model, _images, _inputs, _name, _rules, _run, _seed, _targets,
               _torch_seed, build_model, reference_fgsm, reference_pgd)


# --- 4. FGSM -------------------------------------------------------------------------------------------
FGSM_CASES: list[Case] = [
    ("x + epsilon * sign(gradient of the cross-entropy of the logits)", {"model": _cnn(41), "n": 4, "size": 12,
                                                                         "epsilon": 0.03}),
    ("clamped to [0, 1]", {"model": _cnn(42), "n": 3, "size": 10, "epsilon": 0.2, "borders": True}),
    ("epsilon 0: x itself (a new tensor)", {"model": _cnn(43), "n": 2, "size": 8, "epsilon": 0.0}),
    ("R1: a model handed over in train mode is used in eval mode", {"model": _cnn(44, train=True), "n": 3,
                                                                    "size": 10, "epsilon": 0.05}),
    ("the course checkpoint", {"model": _checkpoint(), "n": 4, "size": 32, "epsilon": 4 / 255}),
]
FGSM_ERRORS: list[Case] = [("ValueError for epsilon < 0", {"epsilon": -0.01})]
HIDDEN_FGSM_CASES: list[Case] = [
    ("x + epsilon * sign(gradient of the cross-entropy of the logits)", {"model": _cnn(0, classes=7), "n": 5,
                                                                         "size": 9, "epsilon": 0.04}),
    ("clamped to [0, 1]", {"model": _cnn(0), "n": 2, "size": 11, "epsilon": 0.3, "borders": True}),
    ("epsilon 0: x itself (a new tensor)", {"model": _cnn(0), "n": 3, "size": 7, "epsilon": 0.0}),
    ("R1: a model handed over in train mode is used in eval mode", {"model": _cnn(0, train=True), "n": 3,
                                                                    "size": 8, "epsilon": 0.02}),
]
HIDDEN_FGSM_ERRORS: list[Case] = [("ValueError for epsilon < 0", {"epsilon": -0.5})]


@_declare()
def check_fgsm(fgsm: Callable, hidden: bool = False) -> None:
    """fgsm(model, x, y, epsilon): clamp(x + epsilon * sign(grad_x L(f(x), y)), 0, 1), L the cross-entropy of the
    logits, in eval mode; epsilon 0 -> x (a new tensor); ValueError for epsilon < 0."""
    name = _name(fgsm, "fgsm")
    cases = _cases(FGSM_CASES, HIDDEN_FGSM_CASES, hidden, "check_fgsm")
    for rule, setting, seed in cases:
        spec, x, y = _inputs(setting, seed)
        epsilon = setting["epsilon"]
        where = _where(name, _call_text(name, spec, x, y, f", epsilon={epsilon:.4g}", "y"), rule, hidden)
        got = _rules(_run(fgsm, Call(spec, x, y, args=[epsilon]), where, hidden), x, where, hidden,
                     "the adversarial image")
        expected = reference_fgsm(build_model(spec), x, y, epsilon)
        _close_attack(got, expected, where, hidden, " (one step of epsilon along the SIGN of the loss's gradient, "
                                                    "up the loss, clamped to [0, 1], in eval mode)", spec["kind"])
    for index, (rule, setting) in enumerate(HIDDEN_FGSM_ERRORS if hidden else FGSM_ERRORS):
        seed = _seed(hidden, "check_fgsm", f"error{index}")
        spec, x, y = _cnn(seed % 9973), _images(seed, 2, 3, 8), torch.tensor([1, 0])
        where = _where(name, f"{name}(model, x, y, epsilon={setting['epsilon']})", rule, hidden)
        _expect_value_error(fgsm, Call(spec, x, y, args=[setting["epsilon"]], errors=True), where, hidden)
    _finish(name, "one signed gradient step of size epsilon, clamped", len(cases) + len(FGSM_ERRORS), hidden)


# --- 5. PGD --------------------------------------------------------------------------------------------
PGD_CASES: list[Case] = [
    ("steps of alpha * sign(gradient), projected onto the epsilon ball around the ORIGINAL x",
     {"model": _cnn(51), "n": 3, "size": 10, "epsilon": 0.05, "alpha": 0.02, "steps": 6}),
    ("clamped to [0, 1] after each step", {"model": _cnn(52), "n": 3, "size": 10, "epsilon": 0.25, "alpha": 0.1,
                                           "steps": 4, "borders": True}),
    ("one step with alpha = epsilon is FGSM", {"model": _cnn(53), "n": 2, "size": 8, "epsilon": 0.03,
                                                "alpha": 0.03, "steps": 1}),
    ("steps 0 without random start: x itself (a new tensor)", {"model": _cnn(54), "n": 2, "size": 8,
                                                               "epsilon": 0.1, "alpha": 0.01, "steps": 0}),
    ("R1: a model handed over in train mode is used in eval mode",
     {"model": _cnn(55, train=True), "n": 3, "size": 10, "epsilon": 0.05, "alpha": 0.02, "steps": 4}),
    ("the course checkpoint", {"model": _checkpoint(), "n": 3, "size": 32, "epsilon": 4 / 255, "alpha": 1 / 255,
                               "steps": 5}),
]
PGD_ERRORS: list[Case] = [
    ("ValueError for epsilon < 0", {"epsilon": -0.1, "alpha": 0.01, "steps": 3}),
    ("ValueError for alpha < 0", {"epsilon": 0.1, "alpha": -0.01, "steps": 3}),
    ("ValueError for steps < 0", {"epsilon": 0.1, "alpha": 0.01, "steps": -1}),
]
HIDDEN_PGD_CASES: list[Case] = [
    ("steps of alpha * sign(gradient), projected onto the epsilon ball around the ORIGINAL x",
     {"model": _cnn(0, classes=6), "n": 4, "size": 9, "epsilon": 0.04, "alpha": 0.015, "steps": 5}),
    ("clamped to [0, 1] after each step", {"model": _cnn(0), "n": 2, "size": 11, "epsilon": 0.3, "alpha": 0.12,
                                           "steps": 3, "borders": True}),
    ("steps 0 without random start: x itself (a new tensor)", {"model": _cnn(0), "n": 3, "size": 7,
                                                               "epsilon": 0.2, "alpha": 0.05, "steps": 0}),
    ("R1: a model handed over in train mode is used in eval mode",
     {"model": _cnn(0, train=True), "n": 3, "size": 8, "epsilon": 0.06, "alpha": 0.025, "steps": 3}),
]
HIDDEN_PGD_ERRORS: list[Case] = [
    ("ValueError for alpha < 0", {"epsilon": 0.05, "alpha": -0.2, "steps": 2}),
    ("ValueError for steps < 0", {"epsilon": 0.05, "alpha": 0.01, "steps": -3}),
]
# random start: (rule, setting) checked by properties
RANDOM_START_CASES: list[Case] = [
    ("random start: clamp(x + U(-epsilon, epsilon), 0, 1) from torch's global RNG (steps 0 shows the start)",
     {"model": _cnn(56), "n": 4, "size": 16, "epsilon": 0.1, "alpha": 0.01, "steps": 0}),
    ("random start: inside the ball, in [0, 1], at most as accurate as the clean model (the course checkpoint)",
     {"model": _checkpoint(), **RANDOM_START_SETTING}),
]
HIDDEN_RANDOM_START_CASES: list[Case] = RANDOM_START_CASES


def _pgd_args(setting: dict) -> list[Any]:
    return [setting["epsilon"], setting["alpha"], setting["steps"]]


def _pgd_text(name: str, spec: Model, x: torch.Tensor, y: torch.Tensor, setting: dict, flags: str, label: str) -> str:
    return _call_text(name, spec, x, y, f", epsilon={setting['epsilon']:.4g}, alpha={setting['alpha']:.4g}, "
                                        f"steps={setting['steps']}{flags}", label)


def _in_ball(got: torch.Tensor, x: torch.Tensor, epsilon: float, where: str, hidden: bool) -> None:
    if float((got - x).abs().max()) > epsilon + 1e-6:
        shown = "" if hidden else f" (max |x_adv - x| = {float((got - x).abs().max()):.4g} > epsilon = {epsilon:.4g})"
        raise CheckFailure(f"{where}: the result leaves the epsilon ball around x{shown}: project onto "
                           f"[x - epsilon, x + epsilon] after the random start and after every step")
    if float(got.min()) < 0 or float(got.max()) > 1:
        shown = "" if hidden else f" (min {float(got.min()):.4g}, max {float(got.max()):.4g})"
        raise CheckFailure(f"{where}: the result leaves [0, 1]{shown}: clamp to valid pixels")


def _random_start_case(pgd: Callable, name: str, rule: str, setting: dict, seed: int, hidden: bool) -> None:
    spec, x, y = _inputs(setting, seed)
    epsilon = setting["epsilon"]
    where = _where(name, _pgd_text(name, spec, x, y, setting, ", random_start=True", "y") + ", after "
                   "torch.manual_seed(s) and again after the same seed", rule, hidden)
    raw = _run(pgd, Call(spec, x, y, args=_pgd_args(setting), kwargs={"random_start": True}, seed=_torch_seed(seed),
                         again=True), where, hidden)
    got = _rules(raw, x, where, hidden, "the adversarial image")
    _in_ball(got, x, epsilon, where, hidden)
    if raw["again"] is None or not torch.equal(raw["again"], got):
        raise CheckFailure(f"{where}: after the same torch.manual_seed it returned something else: draw the start "
                           f"with torch.rand or torch.empty(...).uniform_ (PyTorch's global random generator)")
    model = build_model(spec).eval()
    plain = reference_pgd(model, x, y, epsilon, setting["alpha"], setting["steps"])
    if torch.equal(got, plain):
        raise CheckFailure(f"{where}: the result is the one without random start: start from clamp(x + "
                           f"U(-epsilon, epsilon), 0, 1)")
    if setting["steps"] == 0:
        inside = (x > epsilon) & (x < 1 - epsilon)  # where neither clamp touches the start
        delta = (got - x)[inside] / epsilon
        mean, std = float(delta.mean()), float(delta.std())
        if not (abs(mean) <= 0.1 and abs(std - 1 / math.sqrt(3)) <= 0.08 and float(delta.abs().max()) > 0.9):
            shown = "" if hidden else f" = {epsilon / math.sqrt(3):.4g}); away from 0 and 1 its perturbation has " \
                                      f"mean {mean * epsilon:.3g} and std {std * epsilon:.3g}"
            raise CheckFailure(f"{where}: the random start should be uniform on [-epsilon, epsilon] per pixel (mean 0, "
                               f"std epsilon / sqrt(3){shown or ')'}")
        return
    clean, attacked = _accuracy(model, x, y), _accuracy(model, got, y)
    if not attacked <= clean - RANDOM_START_DROP:
        shown = "" if hidden else f": {attacked:.0%} on these {len(y)} images, clean {clean:.0%}"
        raise CheckFailure(f"{where}: the attack should bring the checkpoint's accuracy at least "
                           f"{RANDOM_START_DROP:.0%} points below the clean accuracy{shown} (each step climbs the "
                           f"loss of the true class: x + alpha * sign(gradient))")


@_declare()
def check_pgd(pgd: Callable, hidden: bool = False) -> None:
    """pgd(model, x, y, epsilon, alpha, steps, random_start=False): steps of x + alpha * sign(grad L), each projected
    onto [x - epsilon, x + epsilon] (x the original) and clamped to [0, 1], in eval mode; random start
    clamp(x + U(-epsilon, epsilon), 0, 1); ValueError for epsilon, alpha or steps < 0."""
    name = _name(pgd, "pgd")
    cases = _cases(PGD_CASES, HIDDEN_PGD_CASES, hidden, "check_pgd")
    for rule, setting, seed in cases:
        spec, x, y = _inputs(setting, seed)
        where = _where(name, _pgd_text(name, spec, x, y, setting, "", "y"), rule, hidden)
        got = _rules(_run(pgd, Call(spec, x, y, args=_pgd_args(setting)), where, hidden), x, where, hidden,
                     "the adversarial image")
        expected = reference_pgd(build_model(spec), x, y, setting["epsilon"], setting["alpha"], setting["steps"])
        _in_ball(got, x, setting["epsilon"], where, hidden)
        _close_attack(got, expected, where, hidden, " (each step: x_k + alpha * sign(gradient of the loss), then "
                                                    "clamp to [x - epsilon, x + epsilon] around the ORIGINAL x and to "
                                                    "[0, 1]; eval mode)", spec["kind"])
    for index, (rule, setting) in enumerate(HIDDEN_PGD_ERRORS if hidden else PGD_ERRORS):
        seed = _seed(hidden, "check_pgd", f"error{index}")
        spec, x, y = _cnn(seed % 9973), _images(seed, 2, 3, 8), torch.tensor([1, 0])
        where = _where(name, f"{name}(model, x, y, {', '.join(f'{k}={v}' for k, v in setting.items())})", rule,
                       hidden)
        _expect_value_error(pgd, Call(spec, x, y, args=_pgd_args(setting), errors=True), where, hidden)
    starts = HIDDEN_RANDOM_START_CASES if hidden else RANDOM_START_CASES
    for index, (rule, setting) in enumerate(starts):
        seed = _seed(hidden, "check_pgd", f"start{index}")
        if hidden and setting["model"]["kind"] == "cnn":
            setting = {**setting, "model": _hidden_model(setting["model"], seed % 9973)}
        _random_start_case(pgd, name, rule, setting, seed, hidden)
    _finish(name, "projected signed gradient steps, with and without random start",
            len(cases) + len(PGD_ERRORS) + len(starts), hidden)


# --- 6. targeted PGD -------------------------------------------------------------------------------------
PGD_TARGETED_CASES: list[Case] = [
    ("targeted: steps of x_k - alpha * sign(gradient of the loss of the TARGET class), projected, clamped",
     {"model": _cnn(61), "n": 3, "size": 10, "epsilon": 0.05, "alpha": 0.02, "steps": 5}),
    ("R1: a model handed over in train mode is used in eval mode",
     {"model": _cnn(62, train=True), "n": 3, "size": 8, "epsilon": 0.08, "alpha": 0.03, "steps": 3}),
    ("targeted PGD reaches its target on most images of the course checkpoint",
     {"model": _checkpoint(), **TARGETED_SETTING}),
    ("targeted with random start: inside the ball and in [0, 1]",
     {"model": _cnn(63), "n": 3, "size": 10, "epsilon": 0.05, "alpha": 0.02, "steps": 3, "random_start": True}),
]
HIDDEN_PGD_TARGETED_CASES: list[Case] = [
    ("targeted: steps of x_k - alpha * sign(gradient of the loss of the TARGET class), projected, clamped",
     {"model": _cnn(0, classes=6), "n": 4, "size": 9, "epsilon": 0.06, "alpha": 0.02, "steps": 4}),
    ("R1: a model handed over in train mode is used in eval mode",
     {"model": _cnn(0, train=True), "n": 2, "size": 9, "epsilon": 0.07, "alpha": 0.03, "steps": 3}),
    ("targeted PGD reaches its target on most images of the course checkpoint",
     {"model": _checkpoint(), **TARGETED_SETTING}),
]


@_declare()
def check_pgd_targeted(pgd: Callable, hidden: bool = False) -> None:
    """pgd(..., targeted=True): y are the target classes; each step descends their loss (x_k - alpha * sign(grad L)),
    projected and clamped; on the course checkpoint it reaches the target on at least TARGETED_THRESHOLD of the
    images at TARGETED_SETTING."""
    name = _name(pgd, "pgd")
    cases = _cases(PGD_TARGETED_CASES, HIDDEN_PGD_TARGETED_CASES, hidden, "check_pgd_targeted")
    for rule, setting, seed in cases:
        spec, x, labels = _inputs(setting, seed)
        t = _targets(labels, spec["classes"], seed)
        random_start = setting.get("random_start", False)
        flags = ", targeted=True" + (", random_start=True" if random_start else "")
        where = _where(name, _pgd_text(name, spec, x, t, setting, flags, "y (the targets)"), rule, hidden)
        kwargs = {"targeted": True, **({"random_start": True} if random_start else {})}
        driver = Call(spec, x, t, args=_pgd_args(setting), kwargs=kwargs,
                      seed=_torch_seed(seed) if random_start else None)
        got = _rules(_run(pgd, driver, where, hidden), x, where, hidden, "the adversarial image")
        model = build_model(spec).eval()
        if random_start:
            _in_ball(got, x, setting["epsilon"], where, hidden)
            continue
        expected = reference_pgd(model, x, t, setting["epsilon"], setting["alpha"], setting["steps"], targeted=True)
        _in_ball(got, x, setting["epsilon"], where, hidden)
        if spec["kind"] == "checkpoint":
            with torch.no_grad():
                reached = float((model(got).argmax(1) == t).double().mean())
            if not reached >= TARGETED_THRESHOLD:
                shown = "" if hidden else f" (it reaches {reached:.0%} of {len(t)})"
                raise CheckFailure(f"{where}: the attack should make the checkpoint predict the target class on at "
                                   f"least {TARGETED_THRESHOLD:.0%} of the images{shown}: a targeted step descends "
                                   f"the loss of the target class, x_k - alpha * sign(gradient)")
        _close_attack(got, expected, where, hidden, " (targeted: x_k - alpha * sign(gradient of the loss of the "
                                                    "target class), projected around the original x, clamped)",
                      spec["kind"])
    _finish(name + " (targeted)", "steps towards the target classes", len(cases), hidden)


# --- 7. accuracy vs epsilon --------------------------------------------------------------------------------
ACCURACY_CASES: list[Case] = [
    ("for each epsilon in order, the fraction of images whose prediction on attack(model, x, y, epsilon) is y",
     {"model": _cnn(71), "n": 16, "size": 10, "epsilons": [0.0, 0.3, 0.1, 0.6], "helper": "check:pattern_attack"}),
    ("R1: predictions in eval mode (a model handed over in train mode)",
     {"model": _cnn(72, train=True), "n": 16, "size": 10, "epsilons": [0.0, 0.2], "helper": "check:pattern_attack"}),
    ("any attack with fgsm's signature: the check's FGSM on the course checkpoint",
     {"model": _checkpoint(), "n": 16, "size": 32, "epsilons": [2 / 255, 0.0, 8 / 255],
      "helper": "check:reference_fgsm"}),
    ("with the notebook's fgsm: epsilon 0 gives the clean accuracy",
     {"model": _cnn(73), "n": 12, "size": 10, "epsilons": [0.0, 0.05], "helper": "notebook"}),
]
HIDDEN_ACCURACY_CASES: list[Case] = [
    ("for each epsilon in order, the fraction of images whose prediction on attack(model, x, y, epsilon) is y",
     {"model": _checkpoint(), "n": 16, "size": 32, "epsilons": [8 / 255, 0.0, 2 / 255, 4 / 255],
      "helper": "check:reference_fgsm"}),
    ("R1: predictions in eval mode (a model handed over in train mode)",
     {"model": _cnn(0, train=True), "n": 32, "size": 8, "epsilons": [0.1, 0.0], "helper": "check:pattern_attack"}),
]


def _half_right(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels equal to the model's clean predictions on about three images in four, random elsewhere (so that the
    accuracies are neither 0 nor 1 and move with epsilon)."""
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    keep = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed + 7)) < 0.75
    return torch.where(keep, predicted, labels)


@_declare()
def check_accuracy_vs_epsilon(accuracy_vs_epsilon: Callable, fgsm: Callable, hidden: bool = False) -> None:
    """accuracy_vs_epsilon(model, attack, x, y, epsilons): for each epsilon in order, the fraction (a Python float in
    [0, 1]) of images whose eval-mode prediction on attack(model, x, y, epsilon) is y; any attack; fgsm is wrapped in
    one case (what it returns is what counts)."""
    name = _name(accuracy_vs_epsilon, "accuracy_vs_epsilon")
    attack_name = _name(fgsm, "fgsm")
    cases = _cases(ACCURACY_CASES, HIDDEN_ACCURACY_CASES, hidden, "check_accuracy_vs_epsilon")
    skipped = ""
    for rule, setting, seed in cases:
        spec, x, labels = _inputs(setting, seed)
        model = build_model(spec).eval()
        if spec["kind"] == "cnn":
            labels = _half_right(model, x, labels, seed)
        epsilons = [float(e) for e in setting["epsilons"]]
        helper = setting["helper"] if setting["helper"] != "notebook" else f"notebook:{attack_name}"
        shown = helper.partition(":")[2]
        where = _where(name, f"{name}(model, {shown}, x, y, {[round(e, 4) for e in epsilons]}) with model = "
                             f"{_describe_model(spec)}, x of shape {tuple(x.shape)}", rule, hidden)
        raw = _run(accuracy_vs_epsilon, Call(spec, x, labels, args=[epsilons], layout="accuracy", helper=helper),
                   where, hidden)
        if raw.get("helper_failed"):
            skipped = f" ({attack_name} failed inside it: the case that wraps it was skipped)"
            continue
        if raw.get("type") not in ("list", "tuple") or len(raw["items"]) != len(epsilons):
            count = f" of {len(raw['items'])}" if "items" in raw and not hidden else ""
            raise CheckFailure(f"{where} should return a list of {'one float per epsilon' if hidden else len(epsilons)}"
                               f" floats, got a {raw.get('type')}{count}")
        items = raw["items"]
        if not all(isinstance(v, float) for v in items):
            kinds = sorted({v for v in items if isinstance(v, str)})
            raise CheckFailure(f"{where}: each accuracy should be a Python float (e.g. float(...) or .item()), got "
                               f"{', '.join(kinds)}")
        outputs: dict[float, Any] = {}
        for epsilon, out in raw["calls"]:
            outputs.setdefault(epsilon, out)
        for index, epsilon in enumerate(epsilons):
            if epsilon not in outputs:
                called = "" if hidden else f" (it was called with {sorted(outputs)})"
                raise CheckFailure(f"{where}: the attack was never called with the epsilon of position {index}"
                                   f"{'' if hidden else f' ({epsilon:.4g})'}{called}: call attack(model, x, y, "
                                   f"epsilon) for each epsilon of the list")
            adversarial = outputs[epsilon]
            expected = _accuracy(model, adversarial, labels) if isinstance(adversarial, torch.Tensor) else math.nan
            if not abs(items[index] - expected) <= 1e-6:
                shown = "" if hidden else f": expected {expected:.4f} (right on {round(expected * len(labels))} of " \
                                          f"{len(labels)}), got {items[index]:.4f}"
                raise CheckFailure(f"{where}: the accuracy at position {index} is wrong{shown} (the fraction in [0, 1] "
                                   f"of images whose eval-mode prediction on the attacked images equals y)")
    _finish(name, "the accuracy under attack at each epsilon", len(cases), hidden, skipped)
