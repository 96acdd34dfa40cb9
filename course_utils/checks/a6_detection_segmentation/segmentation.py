"""a6's segmentation checks: the Dice score, the soft Dice loss, the U-Net and its training loop."""

from __future__ import annotations

import math
from collections.abc import Callable
import torch

from .. import CheckFailure
from .. import case_label as _where
from . import (FIRST_EPOCH_RTOL, TRAIN_DICE_THRESHOLD, TRAIN_RECIPE, Case, LossRun, TrainRun, UNet, UNetRun, _call,
               _compare, _declare, _expect_value_error, _finish, _generator, _name, _run, _seed, _show,
               fill_by_name, held_out_dice, reference_dice_score, reference_first_order, reference_soft_dice_loss,
               reference_train_epochs, shapes_masks,
               unet_slots)

_DTYPES = {"bool": torch.bool, "float": torch.float32, "long": torch.int64, "uint8": torch.uint8}


# --- 7. dice_score -----------------------------------------------------------------------------------------------
def _masks(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    n, h, w = setting["shape"]
    density = torch.rand(n, 1, 1, generator=g) * 0.6 + 0.05
    pred = torch.rand(n, h, w, generator=g) < density
    target = torch.rand(n, h, w, generator=g) < density
    if setting.get("empty"):
        pred[0], target[0] = False, False                        # both empty
        if n > 1:
            pred[1] = False                                       # one empty
        if n > 2:
            target[2] = False
    if "other" in setting:
        target = torch.rand(*setting["other"], generator=g) < 0.5
    return (pred.to(_DTYPES[setting.get("pred", "bool")]), target.to(_DTYPES[setting.get("target", "bool")]))


DICE_CASES: list[Case] = [
    ("2 |A and B| / (|A| + |B|) for each image of bool masks (N, H, W)", {"shape": (3, 8, 8)}),
    ("one value per image (N,), not one for the whole batch", {"shape": (4, 6, 10)}),
    ("0/1 masks of any dtype (float, int64, uint8)", {"shape": (3, 5, 7), "pred": "float", "target": "long"}),
    ("0/1 masks of any dtype (float, int64, uint8)", {"shape": (2, 6, 6), "pred": "uint8", "target": "float"}),
    ("both masks empty: 1.0 (and one of them empty: 0.0)", {"shape": (3, 4, 4), "empty": True}),
    ("ValueError when the shapes differ", {"shape": (2, 4, 4), "other": (2, 4, 5)}),
    ("ValueError when the shapes differ", {"shape": (2, 4, 4), "other": (4, 4)}),
]
HIDDEN_DICE_CASES: list[Case] = [
    ("one value per image (N,), not one for the whole batch", {"shape": (5, 7, 9)}),
    ("0/1 masks of any dtype (float, int64, uint8)", {"shape": (3, 6, 5), "pred": "long", "target": "uint8"}),
    ("both masks empty: 1.0 (and one of them empty: 0.0)", {"shape": (4, 5, 6), "empty": True, "pred": "float",
                                                           "target": "float"}),
    ("ValueError when the shapes differ", {"shape": (3, 5, 5), "other": (3, 5, 4)}),
]


@_declare()
def check_dice_score(dice_score: Callable, hidden: bool = False) -> None:
    """dice_score(pred, target): 2 |A and B| / (|A| + |B|) per image of binary (N, H, W) masks of any dtype, 1.0 when
    both are empty, a float tensor (N,); ValueError on a shape mismatch."""
    name = _name(dice_score, "dice_score")
    cases = HIDDEN_DICE_CASES if hidden else DICE_CASES
    for index, (rule, setting) in enumerate(cases):
        pred, target = _masks(setting, _seed(hidden, "check_dice_score", index))
        where = _where(name, f"{name}(pred, target) with pred = {pred.int().tolist()} ({pred.dtype}), target = "
                             f"{target.int().tolist()} ({target.dtype})", rule, hidden)
        if "other" in setting:
            _expect_value_error(dice_score, (pred.clone(), target.clone()), {}, where, hidden)
            continue
        got = _call(dice_score, where, hidden, pred.clone(), target.clone())
        if isinstance(got, torch.Tensor) and not got.is_floating_point():
            raise CheckFailure(f"{where} should return a float tensor, got {got.dtype} (integer division?)")
        _compare(got, reference_dice_score(pred, target), where, hidden,
                 " (per image; 1.0 where both masks are empty)")
    _finish(name, "the Dice score", len(cases), hidden)


# --- 8. soft_dice_loss --------------------------------------------------------------------------------------------
def _loss_inputs(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    shape = setting["shape"]
    logits = torch.randn(*shape, generator=g) * 2.0
    fill = torch.rand(shape[0], *([1] * (len(shape) - 1)), generator=g)
    if setting.get("uneven"):
        fill = torch.linspace(0.02, 0.9, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    target = (torch.rand(*shape, generator=g) < fill).float()
    return logits, target


SOFT_CASES: list[Case] = [
    ("p = sigmoid(logits), d_n = (2 sum p t + smooth) / (sum p + sum t + smooth), loss = 1 - mean_n d_n: the value "
     "and its gradient with respect to the logits", {"shape": (3, 6, 6)}),
    ("a scalar tensor, smooth = 1.0 by default", {"shape": (2, 5, 5), "default": True}),
    ("(N, 1, H, W) logits and targets", {"shape": (3, 1, 6, 7)}),
    ("sums per image, then the mean over the batch (not sums over the whole batch)",
     {"shape": (4, 8, 8), "uneven": True}),
    ("smooth in both the numerator and the denominator (another smooth)", {"shape": (3, 5, 6), "smooth": 0.5}),
    ("smooth in both the numerator and the denominator (another smooth)", {"shape": (2, 4, 4), "smooth": 4.0}),
]
HIDDEN_SOFT_CASES: list[Case] = [
    ("p = sigmoid(logits), d_n = (2 sum p t + smooth) / (sum p + sum t + smooth), loss = 1 - mean_n d_n: the value "
     "and its gradient with respect to the logits", {"shape": (4, 7, 5)}),
    ("(N, 1, H, W) logits and targets", {"shape": (2, 1, 9, 6), "smooth": 2.0}),
    ("sums per image, then the mean over the batch (not sums over the whole batch)",
     {"shape": (5, 6, 6), "uneven": True, "smooth": 0.25}),
]


def _brief(t: torch.Tensor) -> object:
    """A small tensor's values; a larger one's shape and range (the values would bury the comparison below)."""
    if t.numel() <= 36:
        return _show(t)
    return f"a {tuple(t.shape)} tensor with values in [{t.min().item():.3g}, {t.max().item():.3g}]"


@_declare()
def check_soft_dice_loss(soft_dice_loss: Callable, hidden: bool = False) -> None:
    """soft_dice_loss(logits, target, smooth=1.0): 1 - mean_n (2 sum p t + smooth) / (sum p + sum t + smooth) with
    p = sigmoid(logits), sums per image; a scalar tensor; its gradient with respect to the logits as autograd's."""
    name = _name(soft_dice_loss, "soft_dice_loss")
    cases = HIDDEN_SOFT_CASES if hidden else SOFT_CASES
    for index, (rule, setting) in enumerate(cases):
        logits, target = _loss_inputs(setting, _seed(hidden, "check_soft_dice_loss", index))
        kwargs = {} if setting.get("default") else {"smooth": setting.get("smooth", 1.0)}
        shown = ", ".join(["logits", "target"] + [f"{k}={v}" for k, v in kwargs.items()])
        where = _where(name, f"{name}({shown}) with logits = {_brief(logits)}, target = {_brief(target)}", rule,
                       hidden)
        got = _run(soft_dice_loss, LossRun(logits, target, kwargs), where, hidden)
        if got.get("type") != "Tensor":
            raise CheckFailure(f"{where} should return a scalar tensor, got {got.get('type')}")
        leaf = logits.clone().requires_grad_(True)
        expected = reference_soft_dice_loss(leaf, target, setting.get("smooth", 1.0))
        expected.backward()
        hint = " (p = sigmoid(logits); smooth added once in the numerator and once in the denominator; per image)"
        _compare(got["value"], expected.detach(), where, hidden, hint, atol=1e-6, rtol=1e-4)
        if got["grad"] is None:
            raise CheckFailure(f"{where}: the loss is not differentiable with respect to the logits (no gradient "
                               f"reached them: keep every step in torch, without .detach(), .item() or numpy)")
        assert leaf.grad is not None  # (the reference is differentiable)
        _compare(got["grad"], leaf.grad, f"{where}, the gradient with respect to the logits", hidden, hint,
                 atol=1e-6, rtol=1e-4)
    _finish(name, "the soft Dice loss and its gradient", len(cases), hidden)


# --- 9. UNet ------------------------------------------------------------------------------------------------------
LAYOUT = ("encoders: depth + 1 blocks, upsamplers: depth ConvTranspose2d(2c, c, 2, stride 2), decoders: depth "
          "blocks(2c, c), deepest first, head: Conv2d(width, num_classes, 1)")
UNET_CASES: list[Case] = [
    ("the stated layout (encoders, upsamplers, decoders, head) and forward pass in eval mode",
     {"args": (3, 1, 2, 8), "x": (2, 3, 16, 16)}),
    ("each decoder on cat([the skip of the same resolution, the up-sampled map]); logits (N, num_classes, H, W)",
     {"args": (3, 2, 2, 4), "x": (2, 3, 8, 8)}),
    ("train mode: BatchNorm with the batch's statistics", {"args": (3, 1, 2, 8), "x": (3, 3, 16, 16),
                                                           "train": True}),
    ("depth 1", {"args": (1, 2, 1, 4), "x": (2, 1, 6, 6)}),
    ("depth 3, other channels, classes and width", {"args": (2, 3, 3, 4), "x": (2, 2, 16, 16)}),
    ("non-square inputs (H != W), both divisible by 2^depth", {"args": (3, 1, 2, 4), "x": (1, 3, 12, 20)}),
    ("ValueError in forward when H or W is not divisible by 2^depth", {"args": (3, 1, 3, 4), "bad_x": (1, 3, 12, 16)}),
    ("ValueError in forward when H or W is not divisible by 2^depth", {"args": (3, 1, 2, 4), "bad_x": (1, 3, 16, 18)}),
    ("ValueError for depth < 1", {"args": (3, 1, 2, 8), "bad_args": (3, 1, 0, 8)}),
]
HIDDEN_UNET_CASES: list[Case] = [
    ("the stated layout (encoders, upsamplers, decoders, head) and forward pass in eval mode",
     {"args": (3, 2, 2, 6), "x": (2, 3, 12, 12)}),
    ("train mode: BatchNorm with the batch's statistics", {"args": (1, 1, 3, 4), "x": (2, 1, 16, 8), "train": True}),
    ("non-square inputs (H != W), both divisible by 2^depth", {"args": (2, 2, 1, 6), "x": (2, 2, 10, 6)}),
    ("ValueError in forward when H or W is not divisible by 2^depth", {"args": (3, 1, 2, 4), "bad_x": (1, 3, 14, 16)}),
    ("ValueError for depth < 1", {"args": (3, 1, 2, 8), "bad_args": (3, 1, -1, 8)}),
]


def _layout_failure(where: str, entries: list, slots: list, hidden: bool) -> CheckFailure:
    got = {k: tuple(s) for k, s in entries}
    wanted = {k: tuple(s) for k, s, _ in slots}
    missing = sorted(set(wanted) - set(got))
    extra = sorted(set(got) - set(wanted))
    shapes = sorted(k for k in set(got) & set(wanted) if got[k] != wanted[k])
    if hidden:
        return CheckFailure(f"{where}: the model's parameters and buffers are not the stated layout ({LAYOUT}).")
    parts = []
    if missing:
        parts.append(f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if extra:
        parts.append(f"unexpected {extra[:6]}{' ...' if len(extra) > 6 else ''}")
    if shapes:
        parts.append("other shapes: " + ", ".join(f"{k} {list(got[k])} (expected {list(wanted[k])})"
                                                  for k in shapes[:4]))
    return CheckFailure(f"{where}: its state_dict() is not the stated layout ({LAYOUT}; the check loads its weights "
                        f"by these names): {'; '.join(parts)}")


@_declare()
def check_unet(UNet_: Callable, hidden: bool = False) -> None:  # noqa: N803 (the notebook's class)
    """UNet(in_channels, num_classes, depth, width): the stated layout (compared by state_dict names and shapes),
    filled with the check's seeded weights, the same outputs as the reference in eval and train mode; ValueError
    for depth < 1 and, in forward, for H or W not divisible by 2^depth."""
    name = _name(UNet_, "UNet")
    cases = HIDDEN_UNET_CASES if hidden else UNET_CASES
    for index, (rule, setting) in enumerate(cases):
        seed = _seed(hidden, "check_unet", index)
        args = setting["args"]
        slots = unet_slots(*args)
        g = _generator(seed)
        shape = setting.get("x") or setting.get("bad_x") or (1, args[0], 8, 8)
        x = torch.rand(*shape, generator=g)
        call = f"{name}{tuple(args)}" + (f" on x of shape {tuple(x.shape)}" if "bad_args" not in setting else "")
        if "bad_args" in setting:
            call = f"{name}{tuple(setting['bad_args'])}"
        where = _where(name, call, rule, hidden)
        driver = UNetRun(args, slots, seed, x if "x" in setting else torch.zeros(0),
                         bad_x=x if "bad_x" in setting else None, bad_args=setting.get("bad_args"))
        got = _run(UNet_, driver, where, hidden, " (each decoder takes the skip of the same resolution, saved "
                   "before its max-pool: the last saved first; check the channels of each block against the layout)")
        if "bad_args" in setting:
            if got["bad_args"] != "ValueError":
                did = "returned a model" if got["bad_args"] == "returned" else "raised " + got["bad_args"]
                raise CheckFailure(f"{where} should raise ValueError (depth must be at least 1), but it {did}")
            continue
        if "returned" in got:
            raise CheckFailure(f"{where}: {name}(...) should build an nn.Module, got {got['returned']}")
        if "eval" not in got and "bad_x" not in got:
            raise _layout_failure(where, got["entries"], slots, hidden)
        if "bad_x" in setting:
            if got["bad_x"] != "ValueError":
                did = "returned" if got["bad_x"] == "returned" else "raised " + got["bad_x"]
                raise CheckFailure(f"{where}: forward should raise ValueError saying that H and W must be divisible "
                                   f"by 2^depth, but it {did}")
            continue
        reference = UNet(*args)
        fill_by_name(reference, slots, seed)
        with torch.no_grad():
            expected = reference.eval()(x) if not setting.get("train") else reference.train()(x)
        got_out = got["train"] if setting.get("train") else got["eval"]
        scale = float(expected.abs().max())
        hint = (" (skips kept before each max-pool and used in reverse order, the skip first in the concatenation, "
                "ConvTranspose2d up-sampling, the head last)")
        _compare(got_out, expected, where + (" in train mode" if setting.get("train") else " in eval mode"), hidden,
                 hint, atol=1e-4 * scale, rtol=1e-3)
    _finish(name, "the U-Net", len(cases), hidden)


# --- 10. train_unet -----------------------------------------------------------------------------------------------
TRAIN_RULE = (f"trains the model in place by the stated recipe (Adam, torch.randperm batches, BCE with logits + soft "
              f"Dice, the mean loss per epoch) to a held-out Dice of at least {TRAIN_DICE_THRESHOLD}")
TRAIN_CASES: list[Case] = [(TRAIN_RULE, {"seed": 0})]
HIDDEN_TRAIN_CASES: list[Case] = [(TRAIN_RULE, {"seed": None})]


@_declare()
def check_train_unet(train_unet: Callable, hidden: bool = False) -> None:
    """train_unet(model, images, masks, epochs, lr, batch_size) on the check's own U-Net and shapes masks: a list of
    one mean loss per epoch, the first within FIRST_EPOCH_RTOL of the check's run of the recipe from the same seed,
    the last below the first, the model trained in place to a held-out Dice >= TRAIN_DICE_THRESHOLD."""
    name = _name(train_unet, "train_unet")
    r = TRAIN_RECIPE
    for index, (rule, setting) in enumerate(HIDDEN_TRAIN_CASES if hidden else TRAIN_CASES):
        seed = _seed(hidden, "check_train_unet", index) % 100_000 if setting["seed"] is None else setting["seed"]
        data_seed = 7 + seed
        call = (f"{name}(model, images, masks, {r['epochs']}, lr={r['lr']}, batch_size={r['batch_size']}) with the "
                f"check's UNet(3, 1, depth={r['depth']}, width={r['width']}) built after torch.manual_seed({seed}) and "
                f"{r['n']} shapes images of {r['size']}x{r['size']} (images (N, 3, H, W), masks (N, 1, H, W) floats)")
        where = _where(name, call, rule, hidden)
        got = _run(train_unet, TrainRun(seed, data_seed, r["n"], r["size"], r["epochs"], r["lr"], r["batch_size"]),
                   where, hidden)
        losses = got["losses"]
        if not isinstance(losses, list) or len(losses) != r["epochs"] or not all(isinstance(v, float)
                                                                                 for v in losses):
            kinds = sorted({v if isinstance(v, str) else type(v).__name__ for v in losses}) \
                if isinstance(losses, list) else []
            shown = losses if isinstance(losses, str) else f"{len(losses)} items of type {', '.join(kinds) or '-'}" \
                if isinstance(losses, list) else type(losses).__name__
            raise CheckFailure(f"{where} should return a list of {r['epochs']} floats (the mean loss of each epoch, "
                               f"e.g. loss.item()), got {shown}")
        for inputs in ("images", "masks"):
            if got.get(f"{inputs}_changed"):
                raise CheckFailure(f"{where}: the {inputs} were changed in place (leave the inputs untouched)")
        order = reference_first_order(seed, r["n"])
        expected_batches = [order[i : i + r["batch_size"]] for i in range(0, r["n"], r["batch_size"])]
        if got["first_batches"] != expected_batches:
            raise CheckFailure(f"{where}: the first epoch's batches are not images[perm[i:i + batch_size]] in order "
                               f"for perm = torch.randperm(N) drawn first, with no other draw from torch's global "
                               f"random generator before it (a DataLoader's shuffling draws differently)")
        images, masks = shapes_masks(data_seed, r["n"], r["size"])
        expected = reference_train_epochs(seed, images, masks, 1, r["lr"], r["batch_size"])[0]
        if not math.isfinite(losses[0]) or abs(losses[0] - expected) > FIRST_EPOCH_RTOL * abs(expected):
            detail = "" if hidden else f": expected about {expected:.4f} (within {FIRST_EPOCH_RTOL:.0%}), got " \
                                       f"{losses[0]:.4f}"
            raise CheckFailure(f"{where}: the first epoch's mean loss is not the recipe's{detail} (model.train(); "
                               f"Adam(model.parameters(), lr); each epoch perm = torch.randperm(N) first, batches "
                               f"perm[i:i + batch_size] in order; loss = F.binary_cross_entropy_with_logits + "
                               f"soft_dice_loss; zero_grad, backward, step; the mean of the batches' losses)")
        if not losses[-1] < losses[0]:
            raise CheckFailure(f"{where}: the loss did not go down (first epoch {losses[0]:.4f}, last "
                               f"{losses[-1]:.4f})" if not hidden else f"{where}: the loss did not go down")
        held_images, held_masks = shapes_masks(data_seed + 100_003, r["held_out"], r["size"])
        dice = held_out_dice(got["state"], held_images, held_masks)
        if not dice >= TRAIN_DICE_THRESHOLD:
            detail = "" if hidden else f" (it reached {dice:.3f})"
            raise CheckFailure(f"{where}: the trained model's Dice on held-out shapes (eval mode, logits > 0) is "
                               f"below {TRAIN_DICE_THRESHOLD}{detail}: was the check's model trained in place, with "
                               f"every step of the recipe?")
    _finish(name, "training the U-Net", 1, hidden)

