"""The numbers the written questions' model answers claim, measured (COURSE.md: a unit is done when 6).

Each test reproduces one model answer's claim by simulation, with a tolerance stated as such.
"""
import math

import torch


def _gradient_second_moments(widths: list[int], mode: str, n: int = 4096, seed: int = 0) -> list[float]:
    """E[g^2] of the gradient w.r.t. each layer's output y, from the last layer back to the first.

    Layers y_l = W_l ReLU(y_{l-1}) (the first reads standard-normal inputs), weights Kaiming-normal in ``mode``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, widths[0], generator=g)
    outputs, h = [], x
    for fan_in, fan_out in zip(widths, widths[1:]):
        fan = fan_in if mode == "fan_in" else fan_out
        w = torch.randn(fan_out, fan_in, generator=g) * math.sqrt(2 / fan)
        y = (h @ w.T).requires_grad_()
        outputs.append(y)
        h = torch.relu(y)
    grads = torch.autograd.grad(h, outputs, torch.randn(h.shape, generator=g))
    return [float(grad.pow(2).mean()) for grad in reversed(grads)]


def test_a2_5b_the_fan_in_mode_doubles_the_gradients_second_moment_per_doubling_layer():
    widths = [64, 128, 256, 512, 1024]      # each layer doubles the width, as 5b's convolutions double channels
    moments = _gradient_second_moments(widths, "fan_in")
    factors = [before / after for after, before in zip(moments, moments[1:])]  # going back one layer
    # The model answer: a factor fan_out / fan_in = 2 per layer (in expectation), so from the last layer's output
    # back to the first's (three layers) 2^3 = 8.
    assert all(1.8 < f < 2.2 for f in factors), factors
    assert 6.5 < moments[-1] / moments[0] < 10


def test_a2_5b_the_fan_out_mode_keeps_the_gradient_steady():
    moments = _gradient_second_moments([64, 128, 256, 512, 1024], "fan_out")
    factors = [before / after for after, before in zip(moments, moments[1:])]
    assert all(0.9 < f < 1.1 for f in factors), factors


def test_a2_5b_numbers_for_a_3x3_convolution_from_32_to_64_channels():
    w = torch.empty(64, 32, 3, 3)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(w)
    assert (fan_in, fan_out) == (288, 576)
    assert round(math.sqrt(2 / fan_in), 3) == 0.083 and round(math.sqrt(2 / fan_out), 3) == 0.059


# --- a4_architectures_transfer: the written answers' numbers (8a, 8b, 8c) and the task text's counts --------------
def _conv_weights_and_macs(convs: list[tuple[int, int, int]], size: int = 28) -> tuple[int, int]:
    """Weights and multiply-adds (FlopCounterMode's FLOPs / 2) of bias-free convolutions on a size x size map."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    weights, flops = 0, 0
    for c_in, c_out, k in convs:
        conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False, device="meta")  # shapes only, no values
        with FlopCounterMode(display=False) as counter:
            conv(torch.empty(1, c_in, size, size, device="meta"))
        weights += conv.weight.numel()
        flops += counter.get_total_flops()
    return weights, flops // 2


def test_a4_8a_inception_3a_with_and_without_its_reductions():
    reduced = [(192, 64, 1), (192, 96, 1), (96, 128, 3), (192, 16, 1), (16, 32, 5), (192, 32, 1)]
    naive = [(192, 64, 1), (192, 128, 3), (192, 32, 5), (192, 32, 1)]
    weights, macs = _conv_weights_and_macs(reduced)
    assert weights == 163_328 and round(macs / 1e6) == 128
    naive_weights, naive_macs = _conv_weights_and_macs(naive)
    assert naive_weights == 393_216 and round(naive_macs / 1e6) == 308
    assert round(naive_macs / macs, 1) == 2.4
    five_by_five, reduced_branch = _conv_weights_and_macs([(192, 32, 5)])[0], _conv_weights_and_macs(reduced[3:5])[0]
    assert (five_by_five, reduced_branch) == (153_600, 15_872) and round(five_by_five / reduced_branch, 1) == 9.7


def test_a4_8a_two_3x3_layers_against_one_5x5_and_torchvisions_3x3():
    def field(layers):  # r_l = r_{l-1} + d (k - 1) j_{l-1}, j_l = j_{l-1} s (docs/notation.md)
        r, j = 1, 1
        for k, s, _, d in layers:
            r, j = r + d * (k - 1) * j, j * s
        return r
    assert field([(3, 1, 1, 1)] * 2) == field([(5, 1, 2, 1)]) == 5
    stacked, single = _conv_weights_and_macs([(16, 16, 3), (16, 32, 3)])[0], _conv_weights_and_macs([(16, 32, 5)])[0]
    assert (stacked, single) == (6_912, 12_800) and round(stacked / single, 2) == 0.54
    assert single - _conv_weights_and_macs([(16, 32, 3)])[0] == 8_192


def test_a4_8b_zeroed_last_batchnorm_makes_every_residual_block_the_identity():
    from torch import nn

    class Block(nn.Module):  # a basic block as part 3 asks for it, identity shortcut
        def __init__(self, width):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + x)

    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    blocks = nn.Sequential(*[Block(16) for _ in range(15)])  # depth 32 = 1 + 2 * 15 + 1
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for block in blocks:
        nn.init.zeros_(block.bn2.weight)  # zero_init_residual; bn2.bias is 0 from the start
    x = torch.rand(8, 1, 16, 16)
    for mode in (True, False):
        for module in (stem, blocks, head):
            module.train(mode)
        features = stem(x)
        assert torch.equal(blocks(features), features)
        assert torch.equal(head(blocks(features)), head(features))  # the network is its 2-layer version


def test_a4_8b_the_projection_shortcut_from_16_to_32_channels():
    from torch import nn

    projection = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
    assert sum(p.numel() for p in projection.parameters()) == 576
    assert sum(b.numel() for name, b in projection.named_buffers() if "running" in name) == 64
    assert projection(torch.rand(2, 16, 16, 16)).shape == (2, 32, 8, 8)


def test_a4_8c_a_grey_image_on_three_channels_is_a_convolution_with_the_summed_kernel():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    grey = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    repeated = F.conv2d(grey.expand(-1, 3, -1, -1), weight, padding=1)
    summed = F.conv2d(grey, weight.sum(dim=1, keepdim=True), padding=1)
    assert torch.allclose(repeated, summed, atol=1e-12)


def test_a4_8c_with_per_channel_normalization_the_kernel_is_divided_by_sigma_plus_a_constant():
    """8c(ii) with the model's normalization in front: sum_c w[f, c] * (g - mu_c) / sigma_c equals the single-channel
    convolution with sum_c w[f, c] / sigma_c minus a constant per filter, away from the zero-padded border; the plain
    kernel sum is wrong for ImageNet's statistics (about right for nearly equal ones)."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    grey = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    normalized = F.conv2d((grey.expand(-1, 3, -1, -1) - mean) / std, weight, padding=1)
    kernel = (weight / std.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    constant = (weight.sum(dim=(2, 3)) * (mean / std).view(1, 3)).sum(dim=1).view(1, 8, 1, 1)
    single = F.conv2d(grey, kernel, padding=1) - constant
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert torch.allclose(normalized[inner], single[inner], atol=1e-10)
    assert not torch.allclose(normalized[..., 0, :], single[..., 0, :])  # the border differs (zero padding)
    plain_sum = F.conv2d(grey, weight.sum(dim=1, keepdim=True), padding=1)
    assert not torch.allclose(normalized[inner], plain_sum[inner] / 0.226, atol=0.1)


def test_a4_8c_a_linear_head_on_the_frozen_features_fits_all_200_training_images():
    """8c(i): the default run's 200 training images (20 per class of the extra shapes); a linear head on the course
    network's frozen features, trained full-batch with Adam (lr 0.01), fits every one of them within 3,000 steps
    (the demo's 0.74 training accuracy comes from 150 minibatch steps, not from the head's capacity)."""
    import torch.nn.functional as F

    from course_utils import data, pretrained

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = pretrained.load("shapes_resnet", device="cpu").eval()
        extra = data.load("shapes-extra", n=2_000, seed=1)  # the notebook's part-7 demo set
        index = torch.cat([torch.nonzero(extra.labels[:1_000] == c).flatten()[:20] for c in range(10)])
        images, labels = extra.images[index], extra.labels[index]
        seen = []
        hook = model.fc.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
        with torch.no_grad():
            model(images)
        hook.remove()
        features = seen[0]
        assert features.shape == (200, model.fc.in_features) == (200, 64)
        head = torch.nn.Linear(features.shape[1], 10)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
        for _ in range(3_000):
            loss = F.cross_entropy(head(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy = float((head(features).argmax(dim=1) == labels).double().mean())
    finally:
        torch.set_num_threads(threads)
    assert accuracy == 1.0, accuracy


def test_a4_8c_and_task_texts_counts_from_torchvision():
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        resnet18 = torchvision.models.resnet18()
        vgg16 = torchvision.models.vgg16()
        resnet50 = torchvision.models.resnet50()
        with FlopCounterMode(display=False) as counter:
            resnet50(torch.empty(1, 3, 224, 224))
    assert resnet18.fc.in_features * 3 + 3 == 1_539  # 8c: a 3-class head on ResNet-18
    vgg_params = sum(p.numel() for p in vgg16.parameters())
    classifier = sum(p.numel() for p in vgg16.classifier.parameters())
    assert vgg_params == 138_357_544 and 0.85 < classifier / vgg_params < 0.95  # "nine tenths in the classifier"
    r50 = sum(p.numel() for p in resnet50.parameters())
    assert r50 == 25_557_032 and 0.15 < r50 / vgg_params < 0.25  # "a fifth of VGG-16's parameters"
    assert round(counter.get_total_flops() / 1e9, 1) == 8.2  # v1.5; v1 (stride in the first 1x1) 7.7: below
    for block in (resnet50.layer2[0], resnet50.layer3[0], resnet50.layer4[0]):  # move the stride to conv1 (v1)
        block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        resnet50(torch.empty(1, 3, 224, 224))
    assert round(counter.get_total_flops() / 1e9, 1) == 7.7
