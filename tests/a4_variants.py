"""a4 student variants, shared by tests/test_a4_checks.py (fast tier) and tests/heavy/test_grading_a4.py.

The solution is the notebook's (solutions/a4_architectures_transfer/a4_architectures_transfer.ipynb) when it exists,
else the reference answers below: a correct implementation of every name of the contract (/tmp/team/a4_contract.md,
"Decisions"), written independently of the notebook's (an nn.Identity-free block with ``downsample = None``, a ResNet
class, the frozen BatchNorm kept in eval by a ``train`` override), run in a namespace of their own like a notebook's
cells (make_residual looks BasicBlock up by name, so a student's wrong BasicBlock reaches make_residual too). WRONG
maps a variant's name to the replacements and exactly the graded cells it must fail; CORRECT lists differently
written right answers (every point); BACK_DOORS lists answers that use torchvision's model code (each loses exactly
its cells' points, told that the reference is not available).
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock  # captured before any check runs

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells

ASSIGNMENT = "a4_architectures_transfer"
# the contract's test cells: grade_id -> (check, functions, points)
CONTRACT_CELLS = {
    "test_vgg": ("check_vgg", ("VGG_CONFIGS", "make_vgg"), 12),
    "test_inception": ("check_inception", ("Inception",), 8),
    "test_basic_block": ("check_basic_block", ("BasicBlock",), 8),
    "test_bottleneck": ("check_bottleneck", ("Bottleneck",), 8),
    "test_resnet": ("check_resnet", ("make_resnet", "BasicBlock", "Bottleneck"), 12),
    "test_receptive_field": ("check_receptive_field", ("receptive_field",), 8),
    "test_residual_vs_plain": ("check_residual_vs_plain", ("make_plain", "make_residual"), 10),
    "test_feature_extractor": ("check_feature_extractor", ("feature_extractor",), 7),
    "test_fine_tune": ("check_fine_tune", ("fine_tune_param_groups",), 7),
}

NOTEBOOK = vh.solution_notebook_or_none(ASSIGNMENT)
CELLS = graded_cells(NOTEBOOK) if NOTEBOOK is not None else vh.contract_cells(CONTRACT_CELLS)
ALL_CELLS = {cell.grade_id for cell in CELLS}
# which notebook names use which (a replaced class changes the cells of its users too)
CALLERS = {"BasicBlock": {"make_residual", "make_resnet"}, "Bottleneck": {"make_resnet"}}
RESIDUAL, FEATURES, FINE_TUNE = "test_residual_vs_plain", "test_feature_extractor", "test_fine_tune"
TRAINING = {RESIDUAL, FEATURES, FINE_TUNE}  # cells that train models (seconds each): the heavy tier runs them all


# --- the reference answers ---------------------------------------------------------------------------
VGG_CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, features, num_classes):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def make_vgg(config, num_classes=1000, batch_norm=False):
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    return VGG(nn.Sequential(*layers), num_classes)


def conv_bn(c_in, c_out, **options):
    """torchvision's BasicConv2d as a Sequential: conv (no bias), BatchNorm2d(eps=0.001), ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, bias=False, **options), nn.BatchNorm2d(c_out, eps=0.001),
                         nn.ReLU(inplace=True))


class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = conv_bn(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(conv_bn(in_channels, ch3x3red, kernel_size=1),
                                     conv_bn(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(conv_bn(in_channels, ch5x5red, kernel_size=1),
                                     conv_bn(ch5x5red, ch5x5, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(in_channels, pool_proj,
                                                                                    kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


def _projection(c_in, c_out, stride):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride) \
            if stride != 1 or in_channels != out_channels else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_channels, out, stride) if stride != 1 or in_channels != out else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels, stages = 64, []
        for width, count, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, 2), strict=True):
            blocks = []
            for i in range(count):
                blocks.append(block(channels, width, stride if i == 0 else 1))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_resnet(block, layers, num_classes=1000):
    return ResNet(block, layers, num_classes)


def receptive_field(layers):
    r, j, out = 1, 1, []
    for k, s, p, d in layers:
        if k < 1 or s < 1 or d < 1 or p < 0:
            raise ValueError(f"kernel, stride and dilation must be >= 1 and padding >= 0, got {(k, s, p, d)}")
        r += (k - 1) * d * j
        j *= s
        out.append((r, j))
    return out


class PlainBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class SmallNet(nn.Module):
    def __init__(self, depth, width, block):
        super().__init__()
        if depth % 2 or depth < 4:
            raise ValueError(f"depth must be even and at least 4, got {depth}")
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*[block(width) for _ in range((depth - 2) // 2)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_plain(depth, width=16):
    return SmallNet(depth, width, PlainBlock)


def make_residual(depth, width=16):
    return SmallNet(depth, width, lambda w: BasicBlock(w, w))


def _keep_batch_norm_in_eval(model):
    """model.train() sets every module's mode, then puts the BatchNorm layers back in eval mode."""
    plain_train = model.train

    def train(mode=True):
        plain_train(mode)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return model

    model.train = train
    return model


def feature_extractor(model, num_classes):
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return _keep_batch_norm_in_eval(model)


def fine_tune_param_groups(model, num_classes, lr_body, lr_head):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    for p in model.parameters():
        p.requires_grad_(True)
    head = list(model.fc.parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    return [{"params": body, "lr": lr_body}, {"params": head, "lr": lr_head}]


# what a variant builds on, under names no replacement takes (a variant bound as make_vgg calling make_vgg would call
# itself)
_make_vgg, _make_resnet, _fine_tune_param_groups = make_vgg, make_resnet, fine_tune_param_groups
_feature_extractor = feature_extractor
REFERENCE = {name: globals()[name] for name in (
    "VGG_CONFIGS", "make_vgg", "Inception", "BasicBlock", "Bottleneck", "make_resnet", "receptive_field", "make_plain",
    "make_residual", "feature_extractor", "fine_tune_param_groups")}


def solution_namespace() -> dict:
    """The solution's names in a fresh namespace: the notebook's code cells (fast mode) or the reference answers."""
    namespace: dict[str, Any] = {**globals(), "__name__": f"solution_{ASSIGNMENT}"}  # (the variants' helpers)
    if NOTEBOOK is not None:
        with vh.environment("COURSE_FAST", "1"):
            vh.exec_solution(ASSIGNMENT, NOTEBOOK, namespace, quiet_stdout=True, quiet_stderr=True)
    else:
        namespace.update({name: vh.rebound(fn, namespace) if isinstance(fn, types.FunctionType) else fn
                          for name, fn in REFERENCE.items()})
    return namespace


def cells_using(names: Iterable[str]) -> list:
    """The graded cells whose checks use one of ``names`` or something that uses one."""
    return vh.cells_using(CELLS, CALLERS, names)


def _bind(name: str, value: Any, namespace: dict) -> Any:
    """A function rebound to the namespace; a class of this file under the notebook's name."""
    if isinstance(value, types.FunctionType):
        return vh.rebound(value, namespace)
    if isinstance(value, type) and value.__module__ == __name__ and value.__name__ != name:
        return type(name, (value,), {"__module__": value.__module__})
    return value


def run_cells(replacements: dict[str, Any], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None, skip: Iterable[str] = ()) -> dict[str, CellResult]:
    """The graded cells that use the replaced names (but those in ``skip``), run on the solution with the
    replacements (each function rebound to the solution's namespace, as a redefinition in the notebook would be)."""
    namespace = solution_namespace()
    namespace.update({name: _bind(name, value, namespace) for name, value in replacements.items()})
    cells = cells if cells is not None else cells_using(replacements)
    skip = set(skip)
    return vh.run_cells_in(ASSIGNMENT, namespace, [c for c in cells if c.grade_id not in skip], hidden, only_hidden)


def failing_cells(replacements: dict[str, Any], skip: Iterable[str] = (), **options: Any) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's names are replaced."""
    return vh.failed(run_cells(replacements, skip=skip, **options))


# --- correct, written differently ----------------------------------------------------------------------
def make_vgg_flat_classifier(config, num_classes=1000, batch_norm=False):
    """One Sequential per part, the flattening as a module inside the classifier (keys differ, order and shapes
    do not), functional ReLUs nowhere: a ReLU module per layer, not in place."""
    def convs():
        channels = 3
        for v in config:
            if v == "M":
                yield nn.MaxPool2d(kernel_size=2, stride=2)
            else:
                yield nn.Conv2d(channels, v, kernel_size=3, padding=1)
                if batch_norm:
                    yield nn.BatchNorm2d(v)
                yield nn.ReLU()
                channels = v

    model = nn.Sequential()
    model.features = nn.Sequential(*convs())
    model.avgpool = nn.AdaptiveAvgPool2d(7)
    model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                                     nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes))
    return model


class BasicConv2d(nn.Module):
    def __init__(self, c_in, c_out, **options):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **options)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionWithBasicConv(nn.Module):
    """torchvision's own layout (a BasicConv2d class, functional ReLU); the branches in a ModuleList-free loop."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(in_channels, pool_proj,
                                                                                       kernel_size=1))

    def forward(self, x):
        return torch.cat([branch(x) for branch in (self.branch1, self.branch2, self.branch3, self.branch4)], 1)


class BasicBlockShortcut(nn.Module):
    """The shortcut an nn.Identity when no projection is needed, the addition in place, F.relu."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs = stride != 1 or in_channels != out_channels
        self.downsample = _projection(in_channels, out_channels, stride) if needs else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.downsample(x)
        return F.relu(out)


class BottleneckSequential(nn.Module):
    """The residual branch written as one Sequential (keys differ, order and shapes do not)."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out = width * 4
        self.branch = nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                    nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(), nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        if stride != 1 or in_channels != out:
            self.downsample = _projection(in_channels, out, stride)

    def forward(self, x):
        shortcut = self.downsample(x) if hasattr(self, "downsample") else x
        return torch.relu(self.branch(x) + shortcut)


def make_resnet_sequential(block, layers, num_classes=1000):
    """A Sequential with torchvision's child names, built by a helper per stage."""
    def stage(c_in, width, count, stride):
        blocks = [block(c_in, width, stride)] + [block(width * block.expansion, width) for _ in range(count - 1)]
        return nn.Sequential(*blocks), width * block.expansion

    model = nn.Sequential()
    model.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(64)
    model.relu = nn.ReLU()
    model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    channels = 64
    for index, (width, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
        layer, channels = stage(channels, width, layers[index], stride)
        setattr(model, f"layer{index + 1}", layer)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.flatten = nn.Flatten()
    model.fc = nn.Linear(channels, num_classes)
    return model


def receptive_field_backwards(layers):
    """Each prefix's field computed backwards from one output pixel: r = 1, then r = (r - 1) * s + (k - 1) * d + 1
    through the layers in reverse; the jump as the product of the strides."""
    out = []
    for n in range(1, len(layers) + 1):
        for k, s, p, d in layers:
            if min(k, s, d) < 1 or p < 0:
                raise ValueError("bad layer")
        r = 1
        for k, s, _, d in reversed(layers[:n]):
            r = (r - 1) * s + (k - 1) * d + 1
        j = 1
        for _, s, _, _ in layers[:n]:
            j *= s
        out.append([r, j])
    return out


class Block(nn.Module):
    """One block class for both nets: ``skip`` says whether the input is added back."""

    def __init__(self, width, skip):
        super().__init__()
        self.skip = skip
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + x if self.skip else out)


def _small_net(depth, width, skip):
    if depth < 4 or depth % 2 == 1:
        raise ValueError(f"depth = 2 + 2 * blocks, at least 4: got {depth}")
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         *[Block(width, skip) for _ in range(depth // 2 - 1)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))


def make_plain_one_class(depth, width=16):
    return _small_net(depth, width, False)


def make_residual_one_class(depth, width=16):
    return _small_net(depth, width, True)


def _batch_norm_frozen(module, args):
    module.training = False  # a forward pre-hook: this BatchNorm normalizes with its statistics, whatever mode


def feature_extractor_with_hooks(model, num_classes):
    """The frozen BatchNorm layers kept in eval by forward pre-hooks (the notebook's way)."""
    for _, p in model.named_parameters():
        p.requires_grad = False
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_pre_hook(_batch_norm_frozen)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fine_tune_param_groups_by_name(model, num_classes, lr_body, lr_head):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.requires_grad_(True)
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if not n.startswith("fc.")], "lr": lr_body},
            {"params": [p for n, p in named if n.startswith("fc.")], "lr": lr_head, "weight_decay": 0.0}]


CORRECT: dict[str, dict[str, Any]] = {
    "vgg_flat_classifier": {"make_vgg": make_vgg_flat_classifier},
    "inception_with_basic_conv": {"Inception": InceptionWithBasicConv},
    "basic_block_identity_module": {"BasicBlock": BasicBlockShortcut},
    "bottleneck_sequential": {"Bottleneck": BottleneckSequential},
    "resnet_sequential": {"make_resnet": make_resnet_sequential},
    "receptive_field_backwards": {"receptive_field": receptive_field_backwards},
    "one_block_class": {"make_plain": make_plain_one_class, "make_residual": make_residual_one_class},
    "feature_extractor_with_hooks": {"feature_extractor": feature_extractor_with_hooks},
    "fine_tune_by_name": {"fine_tune_param_groups": fine_tune_param_groups_by_name},
}


# --- wrong, one realistic bug each ---------------------------------------------------------------------
VGG_CONFIGS_D_SHORT = {**VGG_CONFIGS, "D": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, 512, "M", 512, 512,
                                             512, "M"]}  # a convolution of stage 3 missing


def make_vgg_batch_norm_after_relu(config, num_classes=1000, batch_norm=False):
    """BatchNorm after the ReLU instead of between the convolution and the ReLU."""
    model = _make_vgg(config, num_classes, False)
    if batch_norm:
        layers = []
        for layer in model.features:
            layers.append(layer)
            if isinstance(layer, nn.ReLU):
                layers.append(nn.BatchNorm2d(layers[-2].out_channels))
        model.features = nn.Sequential(*layers)
    return model


def make_vgg_dropout_first(config, num_classes=1000, batch_norm=False):
    """Dropout before each hidden Linear layer instead of after its ReLU."""
    model = _make_vgg(config, num_classes, batch_norm)
    model.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                     nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))
    return model


class InceptionTorchvision3x3(Inception):
    """torchvision's kept bug: a 3x3 (padding 1) in branch 3 instead of the paper's 5x5."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch3[1] = conv_bn(ch5x5red, ch5x5, kernel_size=3, padding=1)


class InceptionDefaultEps(nn.Module):
    """BatchNorm2d's default eps (1e-5) instead of torchvision's 0.001."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()

        def block(c_in, c_out, **options):
            return nn.Sequential(nn.Conv2d(c_in, c_out, bias=False, **options), nn.BatchNorm2d(c_out), nn.ReLU())

        self.branch1 = block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(block(in_channels, ch3x3red, kernel_size=1), block(ch3x3red, ch3x3,
                                                                                        kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(block(in_channels, ch5x5red, kernel_size=1), block(ch5x5red, ch5x5,
                                                                                        kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), block(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionBranchesSwapped(Inception):
    """The 3x3 and 5x5 branches concatenated in the wrong order."""

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch2(x), self.branch4(x)], dim=1)


class BasicBlockOptionA(BasicBlock):
    """No projection shortcut: the paper's parameter-free option A (subsample, pad the new channels with zeros)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, in_channels, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x):
        identity = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class BasicBlockProjectionOnlyOnStride(BasicBlock):
    """A projection when the stride changes, none when only the channels do (the identity cannot be added then:
    it pads the channels with zeros instead)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride == 1:
            self.downsample = None
        self.extra = out_channels - in_channels

    def forward(self, x):
        identity = F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class BasicBlockReluBeforeAdd(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out))) + identity


class BasicBlockConvBias(BasicBlock):
    """Convolutions with a bias, each followed by BatchNorm (which removes it)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)


class BasicBlockNoExpansion(BasicBlock):
    """Everything right but the class attribute ``expansion``, which make_resnet needs."""

    expansion = None


class BottleneckExpansion2(Bottleneck):
    expansion = 2


class BottleneckV1Stride(Bottleneck):
    """ResNet v1: the stride in the first 1x1 convolution, not in the 3x3 (torchvision's v1.5)."""

    def __init__(self, in_channels, width, stride=1):
        super().__init__(in_channels, width, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)


def make_resnet_no_maxpool(block, layers, num_classes=1000):
    """The stem's 3x3 max-pool left out (registration unchanged: it has no weights)."""
    model = _make_resnet(block, layers, num_classes)
    model.maxpool = nn.Identity()
    return model


def make_resnet_stride_in_layer1(block, layers, num_classes=1000):
    """Strides 2/2/2/1 instead of 1/2/2/2 (the same shapes but for layer1's projection)."""
    model = ResNet(block, [1, 1, 1, 1], num_classes)
    channels = 64
    for index, (width, stride) in enumerate(((64, 2), (128, 2), (256, 2), (512, 1))):
        blocks = []
        for i in range(layers[index]):
            blocks.append(block(channels, width, stride if i == 0 else 1))
            channels = width * block.expansion
        setattr(model, f"layer{index + 1}", nn.Sequential(*blocks))
    return model


def receptive_field_adds_padding(layers):
    out, r, j = [], 1, 1
    for k, s, p, d in layers:
        if min(k, s, d) < 1 or p < 0:
            raise ValueError("bad layer")
        r += (k - 1) * d * j + 2 * p
        j *= s
        out.append((r, j))
    return out


def receptive_field_no_jump(layers):
    """The growth of each layer counted in its own input's pixels: r += (k - 1) * d (the jump left out)."""
    out, r, j = [], 1, 1
    for k, s, p, d in layers:
        if min(k, s, d) < 1 or p < 0:
            raise ValueError("bad layer")
        r += (k - 1) * d
        j *= s
        out.append((r, j))
    return out


def receptive_field_ignores_dilation(layers):
    out, r, j = [], 1, 1
    for k, s, p, d in layers:
        if min(k, s, d) < 1 or p < 0:
            raise ValueError("bad layer")
        r += (k - 1) * j
        j *= s
        out.append((r, j))
    return out


def receptive_field_no_checks(layers):
    out, r, j = [], 1, 1
    for k, s, _, d in layers:
        r += (k - 1) * d * j
        j *= s
        out.append((r, j))
    return out


def make_residual_without_skips(depth, width=16):
    return make_plain(depth, width)


def make_plain_with_skips(depth, width=16):
    return SmallNet(depth, width, lambda w: BasicBlock(w, w))


def make_plain_depth_in_blocks(depth, width=16):
    """``depth`` read as the number of blocks."""
    if depth % 2 or depth < 4:
        raise ValueError(depth)
    return SmallNet(2 * depth + 2, width, PlainBlock)


def make_residual_depth_in_blocks(depth, width=16):
    if depth % 2 or depth < 4:
        raise ValueError(depth)
    return SmallNet(2 * depth + 2, width, lambda w: BasicBlock(w, w))


def make_residual_any_depth(depth, width=16):
    """No ValueError for an odd depth: one block fewer, silently."""
    return SmallNet(max(4, depth - depth % 2), width, lambda w: BasicBlock(w, w))


def feature_extractor_body_not_frozen(model, num_classes):
    """The head replaced, the body left trainable."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return _keep_batch_norm_in_eval(model)


def feature_extractor_statistics_update(model, num_classes):
    """requires_grad False everywhere but the head, BatchNorm left alone: train() makes it update its statistics."""
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def feature_extractor_old_head(model, num_classes):
    """The old head kept (made trainable), not replaced."""
    for p in model.parameters():
        p.requires_grad = False
    model.fc.requires_grad_(True)
    return _keep_batch_norm_in_eval(model)


def feature_extractor_head_frozen(model, num_classes):
    """The new head created first, then everything frozen (the head too)."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    for p in model.parameters():
        p.requires_grad = False
    return _keep_batch_norm_in_eval(model)


def fine_tune_body_still_frozen(model, num_classes, lr_body, lr_head):
    """Groups right, but the body's parameters left with requires_grad False (as a feature extractor leaves them)."""
    groups = _fine_tune_param_groups(model, num_classes, lr_body, lr_head)
    for p in groups[0]["params"]:
        p.requires_grad = False
    return groups


def fine_tune_head_in_both_groups(model, num_classes, lr_body, lr_head):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.requires_grad_(True)
    return [{"params": list(model.parameters()), "lr": lr_body}, {"params": list(model.fc.parameters()),
                                                                  "lr": lr_head}]


def fine_tune_rates_swapped(model, num_classes, lr_body, lr_head):
    groups = _fine_tune_param_groups(model, num_classes, lr_body, lr_head)
    groups[0]["lr"], groups[1]["lr"] = lr_head, lr_body
    return groups


def fine_tune_one_group(model, num_classes, lr_body, lr_head):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.requires_grad_(True)
    return [{"params": list(model.parameters()), "lr": lr_head}]


def feature_extractor_on_a_copy(model, num_classes):
    """A correct feature extractor, but on a deep copy: the caller's model is left as it was (the review's)."""
    import copy

    return _feature_extractor(copy.deepcopy(model), num_classes)


def feature_extractor_reuses_old_head(model, num_classes):
    """The new head initialised from the first rows of the old one (not freshly initialised)."""
    old = model.fc
    model = _feature_extractor(model, num_classes)
    with torch.no_grad():
        model.fc.weight.copy_(old.weight[:num_classes])
        model.fc.bias.copy_(old.bias[:num_classes])
    return model


def fine_tune_forgets_requires_grad(model, num_classes, lr_body, lr_head):
    """Groups right, but nothing made trainable: after feature extraction only the new head would train."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    head = list(model.fc.parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    return [{"params": body, "lr": lr_body}, {"params": head, "lr": lr_head}]


def fine_tune_statistics_frozen(model, num_classes, lr_body, lr_head):
    """Groups right, but the BatchNorm statistics frozen as in feature extraction."""
    return _fine_tune_param_groups(_keep_batch_norm_in_eval(model), num_classes, lr_body, lr_head)


def fine_tune_reuses_old_head(model, num_classes, lr_body, lr_head):
    """The new head initialised from the first rows of the old one."""
    old = model.fc
    groups = _fine_tune_param_groups(model, num_classes, lr_body, lr_head)
    with torch.no_grad():
        model.fc.weight.copy_(old.weight[:num_classes])
        model.fc.bias.copy_(old.bias[:num_classes])
    return groups


WRONG: dict[str, tuple[dict[str, Any], set[str]]] = {
    "vgg_configs_d_short": ({"VGG_CONFIGS": VGG_CONFIGS_D_SHORT}, {"test_vgg"}),
    "vgg_batch_norm_after_relu": ({"make_vgg": make_vgg_batch_norm_after_relu}, {"test_vgg"}),
    "vgg_dropout_first": ({"make_vgg": make_vgg_dropout_first}, {"test_vgg"}),
    "inception_torchvision_3x3": ({"Inception": InceptionTorchvision3x3}, {"test_inception"}),
    "inception_default_eps": ({"Inception": InceptionDefaultEps}, {"test_inception"}),
    "inception_branches_swapped": ({"Inception": InceptionBranchesSwapped}, {"test_inception"}),
    "basic_block_option_a": ({"BasicBlock": BasicBlockOptionA}, {"test_basic_block", "test_resnet"}),
    "basic_block_projection_only_on_stride": ({"BasicBlock": BasicBlockProjectionOnlyOnStride},
                                              {"test_basic_block"}),
    "basic_block_relu_before_add": ({"BasicBlock": BasicBlockReluBeforeAdd}, {"test_basic_block", "test_resnet"}),
    "basic_block_conv_bias": ({"BasicBlock": BasicBlockConvBias}, {"test_basic_block", "test_resnet", RESIDUAL}),
    "basic_block_no_expansion": ({"BasicBlock": BasicBlockNoExpansion}, {"test_basic_block", "test_resnet"}),
    "bottleneck_expansion_2": ({"Bottleneck": BottleneckExpansion2}, {"test_bottleneck", "test_resnet"}),
    "bottleneck_v1_stride": ({"Bottleneck": BottleneckV1Stride}, {"test_bottleneck", "test_resnet"}),
    "resnet_no_maxpool": ({"make_resnet": make_resnet_no_maxpool}, {"test_resnet"}),
    "resnet_stride_in_layer1": ({"make_resnet": make_resnet_stride_in_layer1}, {"test_resnet"}),
    "receptive_field_adds_padding": ({"receptive_field": receptive_field_adds_padding}, {"test_receptive_field"}),
    "receptive_field_no_jump": ({"receptive_field": receptive_field_no_jump}, {"test_receptive_field"}),
    "receptive_field_ignores_dilation": ({"receptive_field": receptive_field_ignores_dilation},
                                         {"test_receptive_field"}),
    "receptive_field_no_checks": ({"receptive_field": receptive_field_no_checks}, {"test_receptive_field"}),
    "residual_without_skips": ({"make_residual": make_residual_without_skips}, {RESIDUAL}),
    "plain_with_skips": ({"make_plain": make_plain_with_skips}, {RESIDUAL}),
    "depth_in_blocks": ({"make_plain": make_plain_depth_in_blocks, "make_residual": make_residual_depth_in_blocks},
                        {RESIDUAL}),
    "residual_any_depth": ({"make_residual": make_residual_any_depth}, {RESIDUAL}),
    "feature_extractor_body_not_frozen": ({"feature_extractor": feature_extractor_body_not_frozen}, {FEATURES}),
    "feature_extractor_statistics_update": ({"feature_extractor": feature_extractor_statistics_update}, {FEATURES}),
    "feature_extractor_old_head": ({"feature_extractor": feature_extractor_old_head}, {FEATURES}),
    "feature_extractor_head_frozen": ({"feature_extractor": feature_extractor_head_frozen}, {FEATURES}),
    "fine_tune_body_still_frozen": ({"fine_tune_param_groups": fine_tune_body_still_frozen}, {FINE_TUNE}),
    "fine_tune_head_in_both_groups": ({"fine_tune_param_groups": fine_tune_head_in_both_groups}, {FINE_TUNE}),
    "fine_tune_rates_swapped": ({"fine_tune_param_groups": fine_tune_rates_swapped}, {FINE_TUNE}),
    "fine_tune_one_group": ({"fine_tune_param_groups": fine_tune_one_group}, {FINE_TUNE}),
    # found by the review of the released notebook (/tmp/review_a4, findings 5 and 11), uncaught before
    "feature_extractor_on_a_copy": ({"feature_extractor": feature_extractor_on_a_copy}, {FEATURES}),
    "feature_extractor_reuses_old_head": ({"feature_extractor": feature_extractor_reuses_old_head}, {FEATURES}),
    "fine_tune_forgets_requires_grad": ({"fine_tune_param_groups": fine_tune_forgets_requires_grad}, {FINE_TUNE}),
    "fine_tune_statistics_frozen": ({"fine_tune_param_groups": fine_tune_statistics_frozen}, {FINE_TUNE}),
    "fine_tune_reuses_old_head": ({"fine_tune_param_groups": fine_tune_reuses_old_head}, {FINE_TUNE}),
}
# cells a variant may fail on some seeds only (not required of it): without a ReLU after the addition,
# make_residual(20, 16)'s stream grows block after block and its training error under the check's recipe ranges from
# 0.0 to 0.76 over seeds; the residual cell, which takes the better of two runs, loses it on some seeds only (it
# passes at the visible seeds). Its own cells, the block's and the ResNet's, catch it.
SEED_DEPENDENT = {"basic_block_relu_before_add": {RESIDUAL}}
# cells a variant cannot but crash in (a block without ``expansion``: make_resnet multiplies by it)
CRASHES = {"basic_block_no_expansion": {"test_resnet"}}
# the variants whose training cells fail before any training (cheap enough for the fast tier)
FAILS_EARLY = {"basic_block_conv_bias", "residual_without_skips", "plain_with_skips", "depth_in_blocks",
               "residual_any_depth", "feature_extractor_body_not_frozen", "feature_extractor_statistics_update",
               "feature_extractor_old_head", "feature_extractor_head_frozen", "fine_tune_body_still_frozen",
               "fine_tune_head_in_both_groups", "fine_tune_rates_swapped", "fine_tune_one_group",
               "feature_extractor_on_a_copy", "feature_extractor_reuses_old_head", "fine_tune_forgets_requires_grad",
               "fine_tune_statistics_frozen", "fine_tune_reuses_old_head"}


# --- back doors: torchvision's model code, reached by any name ---------------------------------------------
def make_vgg_torchvision(config, num_classes=1000, batch_norm=False):
    return tv_vgg.VGG(tv_vgg.make_layers(list(config), batch_norm), num_classes=num_classes, init_weights=False)


class InceptionSubclassed(__import__("torchvision.models.googlenet", fromlist=["Inception"]).Inception):
    """torchvision's Inception under the student's name, branch 3 fixed to the paper's 5x5."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch3[1] = conv_bn(ch5x5red, ch5x5, kernel_size=5, padding=2)


class BasicBlockSubclassed(TorchvisionBasicBlock):
    """torchvision's BasicBlock (imported by name before the check), the projection made by the student."""

    def __init__(self, in_channels, out_channels, stride=1):
        needs = stride != 1 or in_channels != out_channels
        super().__init__(in_channels, out_channels, stride, _projection(in_channels, out_channels, stride)
                         if needs else None)


class BottleneckWrapping(nn.Module):
    """torchvision's Bottleneck held inside a module of the student's own."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        needs = stride != 1 or in_channels != width * 4
        self.inner = tv_resnet.Bottleneck(in_channels, width, stride, _projection(in_channels, width * 4, stride)
                                          if needs else None)

    def forward(self, x):
        return self.inner(x)


def make_resnet_torchvision(block, layers, num_classes=1000):
    return tv_resnet.resnet18(num_classes=num_classes) if block.expansion == 1 else \
        tv_resnet.ResNet(tv_resnet.Bottleneck, list(layers), num_classes=num_classes)


BACK_DOORS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "vgg_torchvision": ({"make_vgg": make_vgg_torchvision}, {"test_vgg"}),
    "inception_subclassed": ({"Inception": InceptionSubclassed}, {"test_inception"}),
    "basic_block_subclassed": ({"BasicBlock": BasicBlockSubclassed}, {"test_basic_block", "test_resnet", RESIDUAL}),
    "bottleneck_wrapping_torchvision": ({"Bottleneck": BottleneckWrapping}, {"test_bottleneck", "test_resnet"}),
    "resnet_torchvision": ({"make_resnet": make_resnet_torchvision}, {"test_resnet"}),
}


def caught(replacements: dict[str, Any], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it."""
    return vh.catch_rates(caught, WRONG, secrets, names)
