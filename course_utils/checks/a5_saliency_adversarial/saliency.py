"""a5's saliency checks: vanilla gradients, SmoothGrad (a wrapper around any attribution), Integrated Gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import CheckFailure
from .. import case_label as _where
from . import (HELPERS, Call, Case, Model, _call_text, _cases, _close_maps, _cnn, _checkpoint, _declare,
               _describe_model, _expect_value_error, _finish, _images, _inputs, _name, _rules, _run, _seed, _sigma,
               _torch_seed, build_model, reference_gradient, reference_integrated_gradients, reference_smoothgrad)


# --- 1. vanilla gradient -------------------------------------------------------------------------------
VANILLA_CASES: list[Case] = [
    ("the gradient of the target's logit (before softmax), signed, all channels",
     {"model": _cnn(11), "n": 1, "size": 12}),
    ("batched: each image its own target", {"model": _cnn(12, classes=6), "n": 4, "size": 16}),
    ("R1: a model handed over in train mode (BatchNorm, Dropout) is used in eval mode",
     {"model": _cnn(13, train=True), "n": 3, "size": 12}),
    ("one channel", {"model": _cnn(14, channels=1), "n": 2, "size": 10}),
    ("R1: the course checkpoint handed over in train mode", {"model": _checkpoint(train=True), "n": 2, "size": 32}),
]
HIDDEN_VANILLA_CASES: list[Case] = [
    ("batched: each image its own target", {"model": _cnn(0, classes=7), "n": 5, "size": 14}),
    ("R1: a model handed over in train mode (BatchNorm, Dropout) is used in eval mode",
     {"model": _cnn(0, train=True), "n": 3, "size": 9}),
    ("one channel", {"model": _cnn(0, channels=1, train=True), "n": 3, "size": 13}),
]


@_declare()
def check_vanilla_gradient(vanilla_gradient: Callable, hidden: bool = False) -> None:
    """vanilla_gradient(model, x, target): d f_{target[n]} / d x[n] for every image, signed, all channels, computed
    in eval mode (R1), x untouched and a new detached tensor returned (R2), the parameters unchanged (R3)."""
    name = _name(vanilla_gradient, "vanilla_gradient")
    cases = _cases(VANILLA_CASES, HIDDEN_VANILLA_CASES, hidden, "check_vanilla_gradient")
    for rule, setting, seed in cases:
        spec, x, target = _inputs(setting, seed)
        where = _where(name, _call_text(name, spec, x, target, "", "target"), rule, hidden)
        got = _rules(_run(vanilla_gradient, Call(spec, x, target), where, hidden), x, where, hidden)
        model = build_model(spec).eval()
        expected = reference_gradient(model, x, target)
        _close_maps(got, expected, where, hidden, " (the gradient of the target class's logit, in eval mode, "
                                                  "signed, every channel)")
    _finish(name, "the gradient of each target's logit", len(cases), hidden)


# --- 2. SmoothGrad ---------------------------------------------------------------------------------------
RANGES = [(0.0, 1.0), (0.2, 0.6), (0.1, 0.3)]  # images of different ranges: sigma is per image
SMOOTHGRAD_CASES: list[Case] = [
    ("the mean of the attributions of x + sigma * noise[s], sigma = noise_level * (max - min) of each image",
     {"model": _cnn(21), "n": 3, "size": 10, "ranges": RANGES, "samples": 6, "level": 0.15,
      "helper": "target_logit_gradient"}),
    ("any attribution function: one that is not a gradient",
     {"model": _cnn(22), "n": 3, "size": 8, "ranges": RANGES, "samples": 5, "level": 0.3, "helper": "squared_input"}),
    ("R1: the model is put in eval mode before the attribution runs",
     {"model": _cnn(23, train=True), "n": 2, "size": 10, "ranges": RANGES, "samples": 4, "level": 0.1,
      "helper": "target_logit_gradient"}),
    ("noise_level 0: the plain attribution", {"model": _cnn(24), "n": 2, "size": 8, "samples": 3, "level": 0.0,
                                              "helper": "target_logit_gradient"}),
    ("the notebook's vanilla_gradient as the attribution",
     {"model": _cnn(25), "n": 2, "size": 10, "ranges": RANGES, "samples": 4, "level": 0.2, "helper": "notebook"}),
    ("noise None: drawn with torch.randn (the global RNG), standard normal, one sigma per image",
     {"model": _cnn(26), "n": 3, "size": 16, "ranges": RANGES, "samples": 300, "level": 0.2,
      "helper": "identity_attribution", "noise": None}),
]
SMOOTHGRAD_ERRORS: list[Case] = [
    ("ValueError for noise of another shape than (n_samples, *x.shape)", {"samples": 4, "noise_shape": "one less"}),
    ("ValueError for noise of another shape than (n_samples, *x.shape)", {"samples": 4, "noise_shape": "no samples"}),
    ("ValueError for n_samples < 1", {"samples": 0}),
    ("ValueError for noise_level < 0", {"samples": 3, "level": -0.1}),
]
HIDDEN_SMOOTHGRAD_CASES: list[Case] = [
    ("the mean of the attributions of x + sigma * noise[s], sigma = noise_level * (max - min) of each image",
     {"model": _cnn(0, classes=4), "n": 4, "size": 9, "ranges": RANGES[::-1], "samples": 5, "level": 0.25,
      "helper": "target_logit_gradient"}),
    ("any attribution function: one that is not a gradient",
     {"model": _cnn(0), "n": 2, "size": 7, "ranges": RANGES[1:], "samples": 7, "level": 0.2,
      "helper": "squared_input"}),
    ("R1: the model is put in eval mode before the attribution runs",
     {"model": _cnn(0, train=True), "n": 3, "size": 8, "ranges": RANGES, "samples": 3, "level": 0.12,
      "helper": "target_logit_gradient"}),
    ("noise None: drawn with torch.randn (the global RNG), standard normal, one sigma per image",
     {"model": _cnn(0), "n": 2, "size": 18, "ranges": RANGES[1:], "samples": 250, "level": 0.3,
      "helper": "identity_attribution", "noise": None}),
]
HIDDEN_SMOOTHGRAD_ERRORS: list[Case] = [
    ("ValueError for noise of another shape than (n_samples, *x.shape)", {"samples": 3, "noise_shape": "one more"}),
    ("ValueError for n_samples < 1", {"samples": -1}),
]


def _noise_of(shape_rule: str, samples: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if shape_rule == "one less":
        return torch.randn(samples - 1, *x.shape, generator=g)
    if shape_rule == "one more":
        return torch.randn(samples + 1, *x.shape, generator=g)
    if shape_rule == "no samples":
        return torch.randn(*x.shape, generator=g)
    return torch.randn(samples, *x.shape, generator=g)


def _smoothgrad_expected(got: dict, setting: dict, spec: Model, x: torch.Tensor, target: torch.Tensor,
                         noise: torch.Tensor, where: str, hidden: bool) -> torch.Tensor | None:
    """The reference; for the notebook's own attribution, the mean of what it returned on each noisy image
    (found among its recorded calls), None when it failed."""
    if setting["helper"] != "notebook":
        model = build_model(spec).eval()
        return reference_smoothgrad(HELPERS[setting["helper"]], model, x, target, noise, setting["level"])
    rows_in = [row for inputs, _ in got["calls"] for row in inputs]
    rows_out = [row for _, outputs in got["calls"] for row in outputs]
    sigma = _sigma(x, setting["level"])
    maps = []
    for s in range(noise.shape[0]):
        noisy = x + sigma * noise[s]
        for n in range(x.shape[0]):
            match = next((k for k, row in enumerate(rows_in) if row.shape == noisy[n].shape
                          and torch.allclose(row, noisy[n], atol=1e-5, rtol=1e-5)), None)
            if match is None:
                raise CheckFailure(f"{where}: the attribution was never called on x + sigma * noise[s] for every "
                                   f"sample s (sigma_n = noise_level * (max(x_n) - min(x_n)), noise as given)")
            maps.append(rows_out[match])
    return torch.stack(maps).view(noise.shape[0], *x.shape).mean(0)


def _noise_statistics(got: torch.Tensor, x: torch.Tensor, setting: dict, where: str, hidden: bool) -> None:
    """SmoothGrad of the identity with its own noise: (result - x) / sigma * sqrt(S) should be N(0, 1) per pixel."""
    z = (got.double() - x.double()) / _sigma(x, setting["level"]).double() * math.sqrt(setting["samples"])
    std, mean = float(z.std()), float(z.mean())
    if not (0.8 <= std <= 1.25 and abs(mean) <= 0.25):
        raise CheckFailure(f"{where}: with the identity as the attribution, (result - x) / sigma * sqrt(n_samples) "
                           f"should look standard normal (mean 0, std 1) when the noise is torch.randn scaled by "
                           f"sigma_n = noise_level * (max(x_n) - min(x_n))"
                           + ("" if hidden else f"; it has mean {mean:.2f} and std {std:.2f}"))


@_declare()
def check_smoothgrad(smoothgrad: Callable, vanilla_gradient: Callable, hidden: bool = False) -> None:
    """smoothgrad(attribution, model, x, target, n_samples, noise_level, noise): the mean of attribution(model,
    x + sigma_n * noise[s], target) over the samples, sigma_n = noise_level * (max(x_n) - min(x_n)); any attribution
    function; the model in eval mode; noise None -> torch.randn; ValueError for a noise of the wrong shape,
    n_samples < 1, noise_level < 0. vanilla_gradient is wrapped in one case (what it returns is what counts)."""
    name = _name(smoothgrad, "smoothgrad")
    vanilla = _name(vanilla_gradient, "vanilla_gradient")
    cases = _cases(SMOOTHGRAD_CASES, HIDDEN_SMOOTHGRAD_CASES, hidden, "check_smoothgrad")
    skipped = ""
    for rule, setting, seed in cases:
        spec, x, target = _inputs(setting, seed)
        g = torch.Generator().manual_seed(seed + 2)
        samples, level = setting["samples"], setting["level"]
        helper = setting["helper"]
        noise = None if "noise" in setting else _noise_of("", samples, x, g)
        shown = vanilla if helper == "notebook" else helper
        extra = f", n_samples={samples}, noise_level={level}, noise=" + ("None" if noise is None else
                                                                         f"a tensor of shape {tuple(noise.shape)}")
        call = f"{name}({shown}, model, x, target{extra}) with model = {_describe_model(spec)}, x of shape " \
               f"{tuple(x.shape)} (image ranges {[round(float(x[i].max() - x[i].min()), 2) for i in range(len(x))]})"
        where = _where(name, call, rule, hidden)
        kwargs = {"n_samples": samples, "noise_level": level, "noise": noise}
        driver = Call(spec, x, target, kwargs=kwargs, layout="smoothgrad",
                      helper=f"notebook:{vanilla}" if helper == "notebook" else f"check:{helper}",
                      seed=_torch_seed(seed) if noise is None else None, again=noise is None)
        raw = _run(smoothgrad, driver, where, hidden)
        if raw.get("helper_failed"):
            skipped = f" ({vanilla} failed inside it: the case that wraps it was skipped)"
            continue
        got = _rules(raw, x, where, hidden)
        if noise is None:
            _noise_statistics(got, x, setting, where, hidden)
            if raw["again"] is None or not torch.equal(raw["again"], got):
                raise CheckFailure(f"{where}: after the same torch.manual_seed it returned something else: draw the "
                                   f"noise with torch.randn (PyTorch's global random generator)")
            continue
        expected = _smoothgrad_expected(raw, setting, spec, x, target, noise, where, hidden)
        assert expected is not None
        _close_maps(got, expected, where, hidden, " (sigma is per image: noise_level times that image's own max - min; "
                    "the noisy images are not clamped to [0, 1]; the model is in eval mode)")
    for index, (rule, setting) in enumerate(HIDDEN_SMOOTHGRAD_ERRORS if hidden else SMOOTHGRAD_ERRORS):
        seed = _seed(hidden, "check_smoothgrad", f"error{index}")
        spec, x, target = _cnn(seed % 9973), _images(seed, 2, 3, 8), torch.tensor([0, 1])
        samples, level = setting["samples"], setting.get("level", 0.1)
        g = torch.Generator().manual_seed(seed)
        noise = _noise_of(setting.get("noise_shape", ""), max(samples, 1), x, g) if "noise_shape" in setting \
            else None
        extra = f", n_samples={samples}, noise_level={level}, noise=" + ("None" if noise is None else
                                                                         f"a tensor of shape {tuple(noise.shape)}")
        where = _where(name, f"{name}(target_logit_gradient, model, x, target{extra}) with x of shape "
                             f"{tuple(x.shape)}", rule, hidden)
        _expect_value_error(smoothgrad, Call(spec, x, target, kwargs={"n_samples": samples, "noise_level": level,
                                                                      "noise": noise},
                                             layout="smoothgrad", helper="check:target_logit_gradient", seed=0,
                                             errors=True), where, hidden)
    _finish(name, "the mean of the attributions of noisy copies", len(cases) + len(SMOOTHGRAD_ERRORS), hidden,
            skipped)


# --- 3. Integrated Gradients ---------------------------------------------------------------------------
IG_CASES: list[Case] = [
    ("the right Riemann sum with m = steps, baseline None = zeros (black)",
     {"model": _cnn(31), "n": 2, "size": 10, "steps": 7}),
    ("the (x - baseline) factor, a baseline of x's shape", {"model": _cnn(32), "n": 2, "size": 10, "steps": 5,
                                                            "baseline": "full"}),
    ("a baseline broadcastable to x: (C, H, W)", {"model": _cnn(33), "n": 3, "size": 8, "steps": 4,
                                                 "baseline": "image"}),
    ("a baseline broadcastable to x: a scalar tensor", {"model": _cnn(34), "n": 2, "size": 8, "steps": 6,
                                                        "baseline": "scalar"}),
    ("steps 1: one gradient, at x", {"model": _cnn(35), "n": 2, "size": 8, "steps": 1}),
    ("default steps = 50", {"model": _cnn(36), "n": 1, "size": 8, "steps": None}),
    ("R1: a model handed over in train mode is used in eval mode", {"model": _cnn(37, train=True), "n": 3, "size": 8,
                                                                    "steps": 5}),
    ("completeness on the course checkpoint: sum of IG ~ f_t(x) - f_t(x')",
     {"model": _checkpoint(), "n": 2, "size": 32, "steps": 16}),
]
IG_ERRORS: list[Case] = [("ValueError for steps < 1", {"steps": 0})]
HIDDEN_IG_CASES: list[Case] = [
    ("the right Riemann sum with m = steps, baseline None = zeros (black)",
     {"model": _cnn(0, classes=4), "n": 3, "size": 9, "steps": 9}),
    ("the (x - baseline) factor, a baseline of x's shape", {"model": _cnn(0, train=True), "n": 2, "size": 11,
                                                            "steps": 6, "baseline": "full"}),
    ("a baseline broadcastable to x: (C, H, W)", {"model": _cnn(0), "n": 2, "size": 7, "steps": 3,
                                                 "baseline": "image"}),
]
HIDDEN_IG_ERRORS: list[Case] = [("ValueError for steps < 1", {"steps": -2})]


def _baseline(kind: str | None, x: torch.Tensor, seed: int) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(seed + 3)
    if kind == "full":
        return torch.rand(x.shape, generator=g)
    if kind == "image":
        return torch.rand(x.shape[1:], generator=g)
    if kind == "scalar":
        return torch.tensor(float(torch.rand(1, generator=g)))
    return None


@_declare()
def check_integrated_gradients(integrated_gradients: Callable, hidden: bool = False) -> None:
    """integrated_gradients(model, x, target, baseline=None, steps=50): (x - x') * (1/m) sum_{k=1..m} grad f_t(x' +
    (k/m)(x - x')), baseline None = zeros or a tensor broadcastable to x, eval mode; ValueError for steps < 1."""
    name = _name(integrated_gradients, "integrated_gradients")
    cases = _cases(IG_CASES, HIDDEN_IG_CASES, hidden, "check_integrated_gradients")
    for rule, setting, seed in cases:
        spec, x, target = _inputs(setting, seed)
        baseline = _baseline(setting.get("baseline"), x, seed)
        kwargs: dict[str, Any] = {} if baseline is None else {"baseline": baseline}
        if setting["steps"] is not None:
            kwargs["steps"] = setting["steps"]
        steps = setting["steps"] or 50
        extra = "".join(f", {k}=" + (f"a tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else
                                     repr(v)) for k, v in kwargs.items())
        where = _where(name, _call_text(name, spec, x, target, extra, "target"), rule, hidden)
        got = _rules(_run(integrated_gradients, Call(spec, x, target, kwargs=kwargs), where, hidden), x, where,
                     hidden)
        model = build_model(spec).eval()
        zero = torch.zeros_like(x) if baseline is None else baseline
        expected = reference_integrated_gradients(model, x, target, zero, steps)
        hint = ""
        if not hidden:
            with torch.no_grad():
                gap = (model(x) - model(zero.expand_as(x))).gather(1, target.view(-1, 1)).flatten()
            hint = (f" (completeness: the sums of your map over (C, H, W) are "
                    f"{[round(float(v), 4) for v in got.flatten(1).sum(1)]}, f_t(x) - f_t(x') = "
                    f"{[round(float(v), 4) for v in gap]})")
        _close_maps(got, expected, where, hidden, hint)
    for index, (rule, setting) in enumerate(HIDDEN_IG_ERRORS if hidden else IG_ERRORS):
        seed = _seed(hidden, "check_integrated_gradients", f"error{index}")
        spec, x, target = _cnn(seed % 9973), _images(seed, 2, 3, 8), torch.tensor([1, 0])
        where = _where(name, f"{name}(model, x, target, steps={setting['steps']})", rule, hidden)
        _expect_value_error(integrated_gradients, Call(spec, x, target, kwargs={"steps": setting["steps"]},
                                                       errors=True), where, hidden)
    _finish(name, "the right Riemann sum of the gradients times (x - baseline)", len(cases) + len(IG_ERRORS), hidden)
