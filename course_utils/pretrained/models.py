"""The architectures behind the course checkpoints, laid out like torchvision's.

``ShapesResNet`` is a small ResNet for (N, 3, 32, 32) images in [0, 1]. Its
children, in registration order, are those of torchvision's ResNet, with the
input normalization as a first layer and one stage fewer:
``normalize, conv1, bn1, relu, layer1, layer2, layer3, avgpool, fc``. Like
torchvision's stem, ``conv1`` halves the resolution (3x3, stride 2: 32x32 ->
16x16), then layer2 and layer3 halve it again (8x8, 4x4). The
blocks are torchvision's own ``BasicBlock`` (post-activation, stride in the
first 3x3 conv, 1x1 projection shortcut when the stride or width changes), so
transfer-learning code written for ``torchvision.models.resnet18`` reads the
same here: ``model.fc.in_features`` is the feature size, ``model.fc`` the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from ..data import Normalize

__all__ = ["ShapesResNet", "add_input_normalization"]


class ShapesResNet(nn.Module):
    """A ResNet for small images: 3x3 stem, three stages of BasicBlocks, global pooling, linear head.

    num_classes: outputs of ``fc``.
    widths:      channels of layer1..layer3 (layer2 and layer3 halve the resolution: stride 2).
    stem_stride: stride of ``conv1`` (2: a 32x32 input gives 16x16, 8x8 and 4x4 maps in layer1..layer3).
    blocks:      BasicBlocks per stage.
    mean, std:   per-channel input statistics (3,) of the training split, kept as buffers of ``normalize``.
    classes:     class names (kept as ``model.classes``; not part of the state_dict).

    Input (N, 3, H, W) floats in [0, 1] (H = W = 32 for the course checkpoint); output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64),
                 blocks: Sequence[int] = (2, 2, 2), mean: Sequence[float] | Tensor = (0.5, 0.5, 0.5),
                 std: Sequence[float] | Tensor = (0.25, 0.25, 0.25), classes: Sequence[str] | None = None,
                 stem_stride: int = 2) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if len(widths) != 3 or len(blocks) != 3 or min(*widths, *blocks) < 1:
            raise ValueError(f"widths and blocks must be three positive ints each (layer1..layer3), "
                             f"got widths={tuple(widths)}, blocks={tuple(blocks)}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names given for num_classes={num_classes}")
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        stages = []
        for width, count, stride in zip(widths, blocks, (1, 2, 2), strict=True):
            stages.append(self._stage(channels, width, count, stride))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.classes = list(classes) if classes is not None else None
        # torchvision's initialization: He (fan_out) for convolutions, BatchNorm as the identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _stage(in_channels: int, width: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(count):
            s = stride if i == 0 else 1
            downsample = None
            if s != 1 or in_channels != width:  # projection shortcut (torchvision's "option B")
                downsample = nn.Sequential(nn.Conv2d(in_channels, width, kernel_size=1, stride=s, bias=False),
                                           nn.BatchNorm2d(width))
            layers.append(BasicBlock(in_channels, width, stride=s, downsample=downsample))
            in_channels = width
        return nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, fc.in_features): the pooled features the head sees."""
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def _normalize_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: apply ``module.normalize`` to the input before the model's own first layer."""
    normalize: nn.Module = module.normalize  # type: ignore[assignment]
    return (normalize(args[0]), *args[1:])


def add_input_normalization(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """Give a torchvision model inputs in [0, 1]: ``model.normalize`` runs first (a forward pre-hook).

    The model keeps its own attributes (``model.fc``, ``model.conv1``, ...), so transfer code reads the
    same as for torchvision's models; ``normalize``'s buffers come last in its state_dict.
    """
    model.normalize = Normalize(mean, std)
    model.register_forward_pre_hook(_normalize_input)
    return model
