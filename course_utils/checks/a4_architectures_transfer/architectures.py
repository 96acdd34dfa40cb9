"""a4's checks of the models: VGG from its configuration, GoogLeNet's Inception module, ResNet's blocks and
ResNet-18/50, each compared with torchvision's given the same weights (see the package's docstring)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .. import CheckFailure, expect_close, passed
from .. import case_label as _where
from . import (Case, ModelRun, NotebookValue, Slot, _declare, _name, _rng, _run, _seed, _tv,
               reference_slots)


STAGES = (("eval", "in eval mode (BatchNorm normalizes with its running statistics)"),
          ("train", "in train mode (BatchNorm with the batch's statistics; dropout after the same "
                    "torch.manual_seed)"),
          ("after", "in eval mode after one train-mode batch (the running statistics updated, momentum 0.1)"))


def _entries_problem(got: dict, slots: Sequence[Slot], hidden: bool, what: str) -> str | None:
    """What is wrong with the student's state_dict entries compared with torchvision's ``slots``, or None."""
    if "returned" in got:
        return f"it should return an nn.Module, got {got['returned']}"
    entries = got["entries"]
    hint = ""
    expected_biases = sum(1 for s in slots if s[2] == "bias" and s[3] == "Conv2d")
    biases = [e[0] for e in entries if e[2] == "Conv2d" and str(e[0]).endswith("bias")]
    if len(biases) > expected_biases:
        shown = "" if hidden else f" ({biases[0]!r} is not in torchvision's)"
        hint = (f" A convolution followed by BatchNorm takes bias=False{shown}: BatchNorm's shift replaces the "
                f"bias.")
    if hint:  # the likeliest cause of every mismatch that follows: say it alone
        return f"its state_dict has more entries than torchvision's.{hint}"
    for position, (entry, slot) in enumerate(zip(entries, slots, strict=False)):
        if list(entry[1]) != list(slot[1]):
            if hidden:
                return (f"state_dict entry {position} does not have the shape of torchvision's ({slot[2]} of a "
                        f"{slot[3]}).{hint}")
            return (f"state_dict entry {position} is {entry[0]!r} of shape {tuple(entry[1])} (in a {entry[2]}), "
                    f"expected shape {tuple(slot[1])} (torchvision's {slot[0]!r}, in a {slot[3]}). The check "
                    f"copies the weights by order and shape: register {what}'s modules in torchvision's order with "
                    f"torchvision's shapes.{hint}")
    if len(entries) != len(slots):
        counts = f" ({len(entries)} entries, torchvision's has {len(slots)})"
        if len(entries) < len(slots):
            slot = slots[len(entries)]
            shown = "" if hidden else f": torchvision's next is {slot[0]!r} of shape {tuple(slot[1])}"
            return f"its state_dict ends too early{counts}{shown} ({slot[2]} of a {slot[3]}).{hint}"
        entry = entries[len(slots)]
        shown = "" if hidden else f": the first extra one is {entry[0]!r} of shape {tuple(entry[1])} (in a {entry[2]})"
        return f"its state_dict has entries torchvision's does not{counts}{shown}.{hint}"
    return None


def _compare_runs(got: dict, expected: dict, slots: Sequence[Slot], where: str, hidden: bool, what: str) -> None:
    """The student's run (a :class:`ModelRun` result) against torchvision's: entries, then every stage's output."""
    problem = _entries_problem(got, slots, hidden, what)
    if problem:
        raise CheckFailure(f"{where}: {problem}")
    for stage, said in STAGES:
        mine, theirs = got.get(stage), expected[stage]
        label = f"{where}: the output {said}"
        if not isinstance(mine, torch.Tensor):
            raise CheckFailure(f"{label} should be a tensor, got {mine}")
        scale = float(theirs.abs().max()) if theirs.numel() else 1.0
        try:
            expect_close(mine, theirs, label, atol=1e-5 * max(1.0, scale), rtol=1e-4)
        except CheckFailure as failure:
            if not hidden:
                raise
            why = "it has the wrong shape" if "should have shape" in str(failure) else "some values are wrong"
            raise CheckFailure(f"{label}: {why}. The visible cases test the same rule on other inputs.") from None


def _model_case(student: Any, reference: Callable[[], nn.Module], args: Sequence[Any], kwargs: dict,
                x_shape: Sequence[int] | None, seed: int, where: str, hidden: bool, what: str,
                var: Sequence[float] = (0.5, 1.5), notebook: dict | None = None,
                attributes: Sequence[str] = ()) -> dict:
    """One case: the student's model and torchvision's, filled alike, compared (``x_shape`` None: the state_dict
    entries only, both models staying on the meta device). Returns the student's run."""
    with torch.device("meta"):
        model = reference()
    slots = reference_slots(model)
    x = torch.zeros(0) if x_shape is None else torch.randn(list(x_shape), generator=torch.Generator().manual_seed(seed))
    driver = ModelRun(args, kwargs, slots, seed, x, var, notebook, attributes)
    got = _run(student, driver, where, hidden)
    if not isinstance(got, dict):
        raise CheckFailure(f"{where}: the run did not complete")
    problem = _entries_problem(got, slots, hidden, what)
    if problem:
        raise CheckFailure(f"{where}: {problem}")
    if x_shape is not None:
        expected = driver.outputs(model)
        del model
        _compare_runs(got, expected, slots, where, hidden, what)
    return got


# --- 1. VGG --------------------------------------------------------------------------------------
def _vgg_reference(config: Sequence[int | str], num_classes: int, batch_norm: bool) -> Callable[[], nn.Module]:
    vgg = _tv("vgg")
    return lambda: vgg.VGG(vgg.make_layers(list(config), batch_norm), num_classes=num_classes, init_weights=False)


VGG_PARAMETERS = {"D": 138_357_544}  # VGG-16, 1000 classes (the paper's and torchvision's count)
# (rule, {"config": letter or list, "num_classes", "batch_norm", "x": input shape or None (structure only)})
VGG_CASES: list[Case] = [
    ("configuration A (VGG-11): layers in torchvision's order and shapes", {"config": "A", "num_classes": 1000,
                                                                          "batch_norm": False}),
    ("configuration B (VGG-13)", {"config": "B", "num_classes": 1000, "batch_norm": False}),
    ("configuration D (VGG-16): 138,357,544 parameters", {"config": "D", "num_classes": 1000, "batch_norm": False}),
    ("configuration E (VGG-19)", {"config": "E", "num_classes": 1000, "batch_norm": False}),
    ("batch_norm=True: a BatchNorm2d after every convolution", {"config": "D", "num_classes": 1000,
                                                                "batch_norm": True}),
    ("VGG-16's outputs with torchvision's weights: eval and train mode (dropout)",
     {"config": "D", "num_classes": 10, "batch_norm": False, "x": [2, 3, 32, 32]}),
    ("a configuration list of its own, batch_norm=True: outputs in eval and train mode",
     {"config": [16, "M", 32, 32, "M", 512, "M"], "num_classes": 7, "batch_norm": True, "x": [2, 3, 40, 40]}),
]
HIDDEN_VGG_CASES: list[Case] = [
    ("configuration E (VGG-19)", {"config": "E", "num_classes": 100, "batch_norm": True}),
    ("configuration A (VGG-11): layers in torchvision's order and shapes", {"config": "A", "num_classes": 5,
                                                                          "batch_norm": False}),
]


def _random_vgg_cases(rng: random.Random) -> list[Case]:
    config: list[int | str] = []
    for _ in range(rng.randint(1, 3)):
        config += [rng.choice([8, 16, 24, 32]) for _ in range(rng.randint(1, 2))] + ["M"]
    config += [512] + (["M"] if rng.random() < 0.5 else [])
    size = rng.randint(24, 48)
    return [("a configuration list of its own, batch_norm=True: outputs in eval and train mode",
             {"config": config, "num_classes": rng.randint(2, 20), "batch_norm": True,
              "x": [rng.randint(1, 3), 3, size, size]})]


def _vgg_configs_problem(configs: Any) -> str | None:
    """What is wrong with the student's VGG_CONFIGS (compared with torchvision's), or None."""
    expected = _tv("vgg").cfgs
    if not isinstance(configs, dict):
        return f"VGG_CONFIGS should be a dict from 'A', 'B', 'D', 'E' to lists, got {type(configs).__name__}"
    for letter in "ABDE":
        got = configs.get(letter)
        if not isinstance(got, (list, tuple)):
            return f"VGG_CONFIGS[{letter!r}] should be a list of ints and 'M', got {type(got).__name__}"
        want = expected[letter]
        for position, (a, b) in enumerate(zip(got, want, strict=False)):
            if a != b or type(a) is not type(b):
                return (f"VGG_CONFIGS[{letter!r}][{position}] should be {b!r} (the paper's configuration "
                        f"{letter}: {want}), got {a!r}")
        if len(got) != len(want):
            return f"VGG_CONFIGS[{letter!r}] should have {len(want)} items ({want}), got {len(got)}"
    return None


@_declare()
def check_vgg(configs: Any, make_vgg: Callable, hidden: bool = False) -> None:
    """VGG_CONFIGS holds the paper's configurations A, B, D, E; make_vgg(config, num_classes, batch_norm) has
    torchvision's VGG layout (state_dict order and shapes; VGG-16 has 138,357,544 parameters) and, given
    torchvision's weights, its outputs in eval and train mode."""
    name = _name(make_vgg, "make_vgg")
    if isinstance(configs, dict):
        values: Any = configs
    else:  # in the grader, a notebook value reaches the check through a function defined beside it
        where = _where(name, f"VGG_CONFIGS as {name} sees it", "the configurations as data", hidden)
        values = _run(make_vgg, NotebookValue(_name(configs, "VGG_CONFIGS")), where, hidden)
    problem = _vgg_configs_problem(values)
    if problem:
        raise CheckFailure(problem)
    letters = _tv("vgg").cfgs
    cases = HIDDEN_VGG_CASES + _random_vgg_cases(_rng(True, "check_vgg", "random")) if hidden else VGG_CASES
    for index, (rule, setting) in enumerate(cases):
        config = letters[setting["config"]] if isinstance(setting["config"], str) else setting["config"]
        shown = f"VGG_CONFIGS[{setting['config']!r}]" if isinstance(setting["config"], str) else str(config)
        kwargs = {"num_classes": setting["num_classes"], "batch_norm": setting["batch_norm"]}
        call = f"{name}({shown}, num_classes={kwargs['num_classes']}, batch_norm={kwargs['batch_norm']})"
        if setting.get("x") is not None:
            call += f" on x of shape {tuple(setting['x'])}"
        _model_case(make_vgg, _vgg_reference(config, **kwargs), [list(config)], kwargs, setting.get("x"),
                    _seed(hidden, "check_vgg", index), _where(name, call, rule, hidden), hidden, name)
    passed(f"{name} matches torchvision's VGG" + (" (hidden cases)" if hidden else ""), len(cases) + 1)



# --- 2. Inception ----------------------------------------------------------------------------------
def _inception_reference(*channels: int) -> Callable[[], nn.Module]:
    """torchvision's Inception with branch3's 3x3 replaced by the paper's 5x5 (padding 2): torchvision keeps a 3x3
    there for its weights' sake (pytorch/vision#906)."""
    def build() -> nn.Module:
        googlenet = _tv("googlenet")
        module = googlenet.Inception(*channels)
        module.branch3[1] = googlenet.BasicConv2d(channels[4], channels[5], kernel_size=5, padding=2)
        return module
    return build


INCEPTION_VAR = (0.005, 0.05)  # small running variances: BatchNorm's eps (0.001 here, 1e-5 by default) shows
# (rule, {"channels": (in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), "x": input shape})
INCEPTION_CASES: list[Case] = [
    ("four branches concatenated on channels in the order [1x1], [1x1 -> 3x3], [1x1 -> 5x5 (padding 2)], "
     "[3x3 max-pool (stride 1, padding 1) -> 1x1]; each conv bias=False + BatchNorm2d(eps=0.001) + ReLU",
     {"channels": (16, 8, 6, 12, 4, 6, 5), "x": [2, 16, 9, 9]}),
    ("GoogLeNet's inception (3a): 192 -> 64 + 128 + 32 + 32 channels",
     {"channels": (192, 64, 96, 128, 16, 32, 32), "x": [1, 192, 8, 8]}),
    ("an odd, non-square input: every branch keeps H and W", {"channels": (8, 4, 4, 8, 2, 4, 3), "x": [2, 8, 7, 5]}),
]
HIDDEN_INCEPTION_CASES: list[Case] = [
    ("an odd, non-square input: every branch keeps H and W", {"channels": (12, 5, 6, 7, 3, 4, 6), "x": [3, 12, 5, 8]}),
]


def _random_inception_cases(rng: random.Random) -> list[Case]:
    channels = (rng.randint(3, 24),) + tuple(rng.randint(1, 12) for _ in range(6))
    return [("four branches concatenated on channels in the order [1x1], [1x1 -> 3x3], [1x1 -> 5x5 (padding 2)], "
             "[3x3 max-pool (stride 1, padding 1) -> 1x1]; each conv bias=False + BatchNorm2d(eps=0.001) + ReLU",
             {"channels": channels, "x": [rng.randint(1, 3), channels[0], rng.randint(3, 10), rng.randint(3, 10)]})]


@_declare()
def check_inception(inception: Any, hidden: bool = False) -> None:
    """Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) matches torchvision's
    GoogLeNet Inception module (with the paper's 5x5 in branch 3) given the same weights: state_dict order and
    shapes, outputs in eval and train mode."""
    name = _name(inception, "Inception")
    cases = HIDDEN_INCEPTION_CASES + _random_inception_cases(_rng(True, "check_inception", "random")) if hidden \
        else INCEPTION_CASES
    for index, (rule, setting) in enumerate(cases):
        channels = setting["channels"]
        call = f"{name}{tuple(channels)} on x of shape {tuple(setting['x'])}"
        _model_case(inception, _inception_reference(*channels), list(channels), {}, setting["x"],
                    _seed(hidden, "check_inception", index), _where(name, call, rule, hidden), hidden, name,
                    var=INCEPTION_VAR)
    passed(f"{name} matches torchvision's Inception (5x5 in branch 3)" + (" (hidden cases)" if hidden else ""),
           len(cases))


# --- 3. ResNet blocks ------------------------------------------------------------------------------
def _block_reference(kind: str, in_channels: int, width: int, stride: int) -> Callable[[], nn.Module]:
    """torchvision's BasicBlock or Bottleneck (v1.5) with a projection shortcut exactly when the stride or the
    number of channels changes."""
    def build() -> nn.Module:
        resnet = _tv("resnet")
        cls = resnet.BasicBlock if kind == "basic" else resnet.Bottleneck
        out = width * cls.expansion
        downsample = None
        if stride != 1 or in_channels != out:
            downsample = nn.Sequential(resnet.conv1x1(in_channels, out, stride), nn.BatchNorm2d(out))
        return cls(in_channels, width, stride, downsample)
    return build


# (rule, {"args": (in_channels, width, stride), "x": input shape})
BLOCK_CASES: dict[str, list[Case]] = {
    "basic": [
        ("same channels, stride 1: identity shortcut, ReLU after the addition",
         {"args": (16, 16, 1), "x": [2, 16, 8, 8]}),
        ("stride 2: projection shortcut (1x1 conv with the stride, bias=False, + BatchNorm2d)",
         {"args": (16, 32, 2), "x": [2, 16, 8, 8]}),
        ("channels change at stride 1: projection shortcut", {"args": (8, 16, 1), "x": [2, 8, 6, 6]}),
        ("stride 2 with the same channels, an odd input: projection shortcut", {"args": (16, 16, 2),
                                                                               "x": [2, 16, 7, 7]}),
    ],
    "bottleneck": [
        ("in_channels == 4 * width, stride 1: identity shortcut, ReLU after the addition",
         {"args": (64, 16, 1), "x": [2, 64, 6, 6]}),
        ("channels change: projection shortcut; the output has 4 * width channels (expansion 4)",
         {"args": (16, 8, 1), "x": [2, 16, 6, 6]}),
        ("stride 2 in the 3x3 convolution (v1.5), projection shortcut with stride 2",
         {"args": (32, 16, 2), "x": [2, 32, 8, 8]}),
        ("stride 2 with in_channels == 4 * width, an odd input: projection shortcut",
         {"args": (64, 16, 2), "x": [2, 64, 7, 7]}),
    ],
}
HIDDEN_BLOCK_CASES: dict[str, list[Case]] = {
    "basic": [("stride 2: projection shortcut (1x1 conv with the stride, bias=False, + BatchNorm2d)",
               {"args": (8, 24, 2), "x": [3, 8, 9, 6]}),
              ("same channels, stride 1: identity shortcut, ReLU after the addition",
               {"args": (12, 12, 1), "x": [2, 12, 5, 7]}),
              ("channels change at stride 1: projection shortcut", {"args": (6, 10, 1), "x": [3, 6, 5, 4]})],
    "bottleneck": [("stride 2 in the 3x3 convolution (v1.5), projection shortcut with stride 2",
                    {"args": (24, 8, 2), "x": [2, 24, 9, 9]}),
                   ("in_channels == 4 * width, stride 1: identity shortcut, ReLU after the addition",
                    {"args": (32, 8, 1), "x": [3, 32, 5, 5]})],
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _random_block_cases(kind: str, rng: random.Random) -> list[Case]:
    width = rng.randint(2, 12)
    out = width * EXPANSION[kind]
    stride = rng.choice([1, 2])
    in_channels = rng.choice([out, rng.randint(2, 40)])
    rule = ("a random setting: projection shortcut exactly when the stride or the channels change"
            if kind == "basic" else "a random setting: projection shortcut exactly when the stride or the channels "
                                    "change")
    return [(rule, {"args": (in_channels, width, stride), "x": [rng.randint(1, 3), in_channels, rng.randint(4, 10),
                                                                rng.randint(4, 10)]})]


def _block_check(check_name: str, kind: str, label: str, doc: str) -> Callable[..., None]:
    @_declare()
    def run(block: Any, hidden: bool = False) -> None:
        name = _name(block, label)
        cases = BLOCK_CASES[kind]
        if hidden:
            cases = HIDDEN_BLOCK_CASES[kind] + _random_block_cases(kind, _rng(True, check_name, "random"))
        for index, (rule, setting) in enumerate(cases):
            args = setting["args"]
            call = f"{name}{tuple(args)} on x of shape {tuple(setting['x'])}"
            where = _where(name, call, rule, hidden)
            got = _model_case(block, _block_reference(kind, *args), list(args), {}, setting["x"],
                              _seed(hidden, check_name, index), where, hidden, name, attributes=["expansion"])
            if got["attributes"]["expansion"] != repr(EXPANSION[kind]):
                raise CheckFailure(f"{where}: {name}.expansion should be {EXPANSION[kind]} (a class attribute: the "
                                   f"output has width * expansion channels), got {got['attributes']['expansion']}")
        passed(f"{name} matches torchvision's {'BasicBlock' if kind == 'basic' else 'Bottleneck (v1.5)'}"
               + (" (hidden cases)" if hidden else ""), len(cases))

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = doc
    return run


check_basic_block = _block_check(
    "check_basic_block", "basic", "BasicBlock",
    "BasicBlock(in_channels, out_channels, stride=1) matches torchvision's BasicBlock given the same weights: "
    "two 3x3 convs (bias=False) with BatchNorm, a projection shortcut exactly when the stride or the channels "
    "change, ReLU after the addition; expansion = 1.")
check_bottleneck = _block_check(
    "check_bottleneck", "bottleneck", "Bottleneck",
    "Bottleneck(in_channels, width, stride=1) matches torchvision's (v1.5: the stride in the 3x3 conv) given the "
    "same weights: 1x1, 3x3, 1x1 convs with BatchNorm, width * 4 output channels, a projection shortcut exactly "
    "when the stride or the channels change, ReLU after the addition; expansion = 4.")


# --- 4. ResNet -------------------------------------------------------------------------------------
def _resnet_reference(kind: str, layers: Sequence[int], num_classes: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        resnet = _tv("resnet")
        return resnet.ResNet(resnet.BasicBlock if kind == "basic" else resnet.Bottleneck, list(layers),
                             num_classes=num_classes)
    return build


RESNET_PARAMETERS = {("basic", (2, 2, 2, 2)): 11_689_512, ("bottleneck", (3, 4, 6, 3)): 25_557_032}
# (rule, {"block": "basic" | "bottleneck", "layers", "num_classes", "x": input shape or None (structure only)})
RESNET_CASES: list[Case] = [
    ("ResNet-18 = (BasicBlock, [2, 2, 2, 2]): torchvision's order and shapes, 11,689,512 parameters",
     {"block": "basic", "layers": [2, 2, 2, 2], "num_classes": 1000}),
    ("ResNet-50 = (Bottleneck, [3, 4, 6, 3]): torchvision's order and shapes, 25,557,032 parameters",
     {"block": "bottleneck", "layers": [3, 4, 6, 3], "num_classes": 1000}),
    ("ResNet-18's outputs with torchvision's weights, eval and train mode",
     {"block": "basic", "layers": [2, 2, 2, 2], "num_classes": 10, "x": [2, 3, 64, 64]}),
    ("ResNet-50's outputs with torchvision's weights, eval and train mode",
     {"block": "bottleneck", "layers": [3, 4, 6, 3], "num_classes": 10, "x": [2, 3, 64, 64]}),
]


def _random_resnet_cases(rng: random.Random) -> list[Case]:
    cases = []
    for kind, rule in (("basic", "ResNet-18's outputs with torchvision's weights, eval and train mode"),
                       ("bottleneck", "ResNet-50's outputs with torchvision's weights, eval and train mode")):
        size = rng.randint(40, 72)
        cases.append((rule, {"block": kind, "layers": [rng.randint(1, 2) for _ in range(4)],
                             "num_classes": rng.randint(2, 30), "x": [rng.randint(1, 3), 3, size, size]}))
    return cases


@_declare()
def check_resnet(make_resnet: Callable, basic_block: Any, bottleneck: Any, hidden: bool = False) -> None:
    """make_resnet(block, layers, num_classes) with the notebook's BasicBlock and Bottleneck has torchvision's
    ResNet layout (ResNet-18: 11,689,512 parameters, ResNet-50: 25,557,032) and its outputs given the same
    weights, in eval and train mode."""
    name = _name(make_resnet, "make_resnet")
    blocks = {"basic": _name(basic_block, "BasicBlock"), "bottleneck": _name(bottleneck, "Bottleneck")}
    cases = _random_resnet_cases(_rng(True, "check_resnet", "random")) if hidden else RESNET_CASES
    for index, (rule, setting) in enumerate(cases):
        kind, layers, num_classes = setting["block"], setting["layers"], setting["num_classes"]
        call = f"{name}({blocks[kind]}, {layers}, num_classes={num_classes})"
        if setting.get("x") is not None:
            call += f" on x of shape {tuple(setting['x'])}"
        where = _where(name, call, rule, hidden)
        _model_case(make_resnet, _resnet_reference(kind, layers, num_classes), [None, list(layers)],
                    {"num_classes": num_classes}, setting.get("x"), _seed(hidden, "check_resnet", index), where,
                    hidden, name, notebook={0: blocks[kind]})
    passed(f"{name} matches torchvision's ResNet-18 and ResNet-50" + (" (hidden cases)" if hidden else ""),
           len(cases))


