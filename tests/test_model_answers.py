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


# --- a5_saliency_adversarial: the written answers' numbers (7a, 7b, 7c) ---------------------------------------------
# Small reference versions of the assignment's functions (the solution notebook's rules), so that the claims are
# measured here without importing the notebook. The images are the notebook's: data.load("shapes", seed=11), unseen
# by the course network (trained on seed 7); its first 8 (part 3's completeness cell) and first 256 (parts 5 and 6).
def _a5_model_and_images(n: int = 256):
    from course_utils import data, pretrained

    shapes = data.load("shapes", n=n, seed=11)
    return pretrained.load("shapes_resnet", device="cpu").eval(), shapes.images, shapes.labels


def _a5_gradient(model, x, target):
    """Row n: d z_{target[n]}(x)_n / d x_n (evaluation mode)."""
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)[0]


def _a5_integrated_gradients(model, x, target, baseline, steps):
    """Right Riemann sum: (x - x') * (1/m) sum_{k=1..m} grad z_t(x' + (k/m)(x - x'))."""
    total = sum(_a5_gradient(model, baseline + k / steps * (x - baseline), target) for k in range(1, steps + 1))
    return (x - baseline) * total / steps


def _a5_pgd(model, x, y, epsilon, alpha, steps, targeted=False):
    """L-infinity PGD without random start; ``model`` may differ from the model the result is evaluated on."""
    import torch.nn.functional as F

    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)[0].sign()
        x_adv = (x_adv.detach() - alpha * g) if targeted else (x_adv.detach() + alpha * g)
        x_adv = torch.clamp(x_adv, min=x - epsilon, max=x + epsilon).clamp(0, 1)
    return x_adv


def _a5_accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())


def _a5_one_thread(test):
    """Run a test with one thread (as the notebook does): small networks, and the numbers of the notebook's runs."""
    import functools

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return test(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


def test_a5_7a_black_baseline_gives_zero_where_the_image_is_black_and_completeness_holds():
    """7a(i): with x' = 0 every pixel with x = 0 gets IG exactly 0 (the (x - x') factor), whatever the network does
    with it; the score change then lies on the bright pixels (completeness)."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).double().eval()
    x = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    x[:, :, 4:6, 9:12] = torch.rand(2, 1, 2, 3, dtype=torch.float64)  # a few bright "sources" on a black sky
    target = torch.tensor([0, 2])
    ig = _a5_integrated_gradients(model, x, target, torch.zeros_like(x), steps=300)
    sky = x == 0
    assert torch.equal(ig[sky], torch.zeros_like(ig[sky]))
    assert _a5_gradient(model, x, target)[sky].abs().sum() > 0  # the network does use the sky's pixels
    with torch.no_grad():
        change = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    assert torch.allclose(ig.sum(dim=(1, 2, 3)), change, rtol=0.02, atol=1e-4)


def test_a5_7a_raw_counts_scale_vanilla_and_smoothgrad_by_one_over_65535_and_a_fixed_sigma_does_not_smooth():
    """7a(ii): g(u) = f(u / 65535) at u = 65535 x: vanilla and SmoothGrad (sigma from each image's range, the same
    draws) are the [0, 1] maps divided by 65535; a fixed sigma = 0.1 on the counts leaves the vanilla gradient."""
    from torch import nn

    torch.manual_seed(0)
    f = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(8 * 12 * 12, 3)).double().eval()
    scale = 65_535.0

    class Counts(nn.Module):  # her model: divides the raw counts first
        def forward(self, u):
            return f(u / scale)

    g = Counts()
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64) * torch.tensor([1.0, 0.3, 0.05]).view(3, 1, 1, 1).double()
    u, target = x * scale, torch.tensor([0, 1, 2])
    noise = torch.randn(50, *x.shape, dtype=torch.float64)

    def smooth(model, images, sigma):  # sigma (N, 1, 1, 1)
        return sum(_a5_gradient(model, images + sigma * noise[s], target) for s in range(50)) / 50

    def per_range(images):
        flat = images.flatten(1)
        return 0.1 * (flat.amax(1) - flat.amin(1)).view(-1, 1, 1, 1)

    assert torch.allclose(_a5_gradient(g, u, target) * scale, _a5_gradient(f, x, target), rtol=1e-9, atol=1e-12)
    smooth_x = smooth(f, x, per_range(x))
    assert torch.allclose(smooth(g, u, per_range(u)) * scale, smooth_x, rtol=1e-9, atol=1e-12)
    fixed = smooth(g, u, torch.full((3, 1, 1, 1), 0.1, dtype=torch.float64)) * scale
    vanilla = _a5_gradient(f, x, target)
    assert (fixed - vanilla).norm() < 1e-3 * vanilla.norm()  # no smoothing at all
    assert (smooth_x - vanilla).norm() > 0.1 * vanilla.norm()  # what 10% of the range does


@_a5_one_thread
def test_a5_7a_completeness_error_against_m_on_the_notebooks_eight_images():
    """7a(iii), from part 3's cell: mean |sum IG - (z_t(x) - z_t(0))| over the first eight images."""
    model, images, labels = _a5_model_and_images(8)
    with torch.no_grad():
        change = (model(images) - model(torch.zeros_like(images))).gather(1, labels[:, None])[:, 0]
    errors = {}
    for m in (4, 16, 64):
        total = _a5_integrated_gradients(model, images, labels, torch.zeros_like(images), m).sum(dim=(1, 2, 3))
        errors[m] = float((total - change).abs().mean())
    mean_change = float(change.abs().mean())
    # The model answer: about 8.5 logit units of change; errors about 3.2 (37%), 0.28 (3%) and 0.05 (0.6%).
    assert 8.3 < mean_change < 8.8, mean_change
    assert 2.9 < errors[4] < 3.4 and 0.25 < errors[16] < 0.31 and 0.03 < errors[64] < 0.07, errors
    assert errors[64] / mean_change < 0.01


@_a5_one_thread
def test_a5_7b_rounding_hides_the_gradient_and_bpda_or_transfer_breaks_it():
    """7b: q(x) = round(7x)/7 in front of the course network. Its gradient is 0, so FGSM and PGD return x; the
    straight-through gradient (BPDA) and a transfer attack from the plain network bring the accuracy to a few %."""
    import torch.nn.functional as F
    from torch import nn

    model, x, y = _a5_model_and_images(256)

    class Round(nn.Module):
        def __init__(self, straight_through=False):
            super().__init__()
            self.straight_through = straight_through

        def forward(self, images):
            q = torch.round(7 * images) / 7
            return images + (q - images).detach() if self.straight_through else q

    defended, bpda = nn.Sequential(Round(), model).eval(), nn.Sequential(Round(True), model).eval()
    clean, rounded = _a5_accuracy(model, x, y), _a5_accuracy(defended, x, y)
    x_grad = x.clone().requires_grad_(True)
    assert torch.equal(torch.autograd.grad(F.cross_entropy(defended(x_grad), y), x_grad)[0], torch.zeros_like(x))
    eps = 8 / 255
    assert torch.equal(_a5_pgd(defended, x, y, eps, eps / 4, 10), x)  # steps of size 0: PGD returns x too
    accuracies = {e: _a5_accuracy(defended, _a5_pgd(bpda, x, y, e / 255, e / 255 / 4, 10), y) for e in (2, 4, 8, 16)}
    transfer = _a5_accuracy(defended, _a5_pgd(model, x, y, eps, eps / 4, 10), y)
    # The model answer: clean 97.7% without and 97.3% with the rounding; BPDA 60%, 21%, 2%, 0%; transfer 3%.
    assert round(clean, 3) == 0.977 and round(rounded, 3) == 0.973, (clean, rounded)
    assert 0.55 < accuracies[2] < 0.65 and 0.16 < accuracies[4] < 0.26, accuracies
    assert accuracies[8] < 0.04 and accuracies[16] == 0, accuracies
    assert transfer < 0.05, transfer


@_a5_one_thread
def test_a5_7c_l2_size_of_an_8_over_255_perturbation_and_targeted_against_untargeted():
    """7c(i): epsilon sqrt(n) = 1.74 for 3x32x32, PGD uses most of it; (iii) the part-5 cell's numbers: the
    untargeted attack fools most images at 4/255, the targeted one (to "heart") needs about twice the budget."""
    import math

    assert round(8 / 255 * math.sqrt(3 * 32 * 32), 2) == 1.74 and round(math.sqrt(3), 2) == 1.73
    model, x, y = _a5_model_and_images(256)
    eps = 8 / 255
    l2 = (_a5_pgd(model, x, y, eps, eps / 4, 20) - x).flatten(1).norm(dim=1)
    assert 1.5 < float(l2.mean()) < 1.6 and 1.35 < float(l2.min()) and float(l2.max()) < 1.7, l2  # "about 1.55"
    heart = model.classes.index("heart")
    x, y = x[:128], y[:128]  # the part-5 cell's images in default mode
    others = y != heart
    xs, ys = x[others], y[others]
    assert len(ys) == 115
    fooled, reached = {}, {}
    for e in (4, 8, 16):
        fooled[e] = 1 - _a5_accuracy(model, _a5_pgd(model, xs, ys, e / 255, e / 255 / 4, 20), ys)
        target = torch.full_like(ys, heart)
        reached[e] = _a5_accuracy(model, _a5_pgd(model, xs, target, e / 255, e / 255 / 4, 20, targeted=True), target)
    # The model answer: untargeted 76% at 4/255 and 99% at 8/255; targeted 37%, 72%, 90% at 4, 8, 16 /255.
    assert 0.72 < fooled[4] < 0.80 and fooled[8] > 0.97, fooled
    assert 0.33 < reached[4] < 0.41 and 0.68 < reached[8] < 0.76 and 0.87 < reached[16] < 0.94, reached


def test_a5_task_texts_worked_examples():
    """The worked examples of parts 3 to 5: IG of z = x^2 from 0 to 1 (right sum 1 + 1/m, left sum 1 - 1/m); FGSM on
    two pixels; PGD on one pixel (0.54, 0.58, then projected to 0.6); one PGD step with alpha = epsilon is FGSM."""
    from torch import nn

    class Square(nn.Module):  # one "pixel", one class: z(x) = x^2
        def forward(self, x):
            return x.pow(2).flatten(1).sum(dim=1, keepdim=True)

    x, target = torch.ones(1, 1, 1, 1, dtype=torch.float64), torch.tensor([0])
    for m in (1, 2, 5):
        ig = _a5_integrated_gradients(Square(), x, target, torch.zeros_like(x), m)
        assert math.isclose(float(ig.sum()), 1 + 1 / m)
        left = sum(2 * k / m for k in range(m)) / m  # the left sum: the gradient 2a at a = 0, 1/m, ..., (m-1)/m
        assert math.isclose(left, 1 - 1 / m, abs_tol=1e-12)

    class Linear(nn.Module):  # two classes; the loss gradient of class 0 is a positive multiple of (3, -0.001)
        def forward(self, x):
            return torch.stack([torch.zeros(len(x), dtype=x.dtype), (x.flatten(1) * torch.tensor(
                [3.0, -0.001], dtype=x.dtype)).sum(dim=1)], dim=1)

    pixels, y = torch.tensor([[[[0.98, 0.5]]]], dtype=torch.float64), torch.tensor([0])
    adversarial = _a5_pgd(Linear(), pixels, y, 0.05, 0.05, 1)  # one step with alpha = epsilon: FGSM
    assert torch.allclose(adversarial, torch.tensor([[[[1.0, 0.45]]]], dtype=torch.float64))

    class Climb(nn.Module):  # the loss of class 0 grows with the pixel: its gradient is positive at every step
        def forward(self, x):
            return torch.cat([torch.zeros_like(x.flatten(1)), x.flatten(1)], dim=1)

    pixel = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    path = [float(_a5_pgd(Climb(), pixel, y, 0.1, 0.04, steps)) for steps in (1, 2, 3, 4)]
    assert [round(p, 10) for p in path] == [0.54, 0.58, 0.6, 0.6]


# --- a6_detection_segmentation: the written answers' numbers (11a, 11b, 11c) and the task text's worked examples ---
# The references are torchvision.ops and small versions of the assignment's rules written here; the detections of 11b
# are the solution notebook's simulate_detections (copied below) on its held-out scenes (data.load("scenes", seed=32)).
def _a6_average_precision(detections, ground_truth, iou_threshold=0.5) -> float:
    """One class over a data set: stable ranking over all images, greedy matching to the best unmatched true box of
    the detection's image (IoU >= threshold), all-point interpolated area."""
    from torchvision.ops import box_iou

    n_true = sum(len(g) for g in ground_truth)
    if n_true == 0:
        return float("nan")
    ranked = sorted(((float(s), i, d) for i, (_, scores) in enumerate(detections) for d, s in enumerate(scores)),
                    key=lambda r: -r[0])  # Python's sort is stable
    matched = [torch.zeros(len(g), dtype=torch.bool) for g in ground_truth]
    hits = []
    for _, i, d in ranked:
        hit = False
        if len(ground_truth[i]):
            iou = box_iou(detections[i][0][d : d + 1], ground_truth[i])[0].masked_fill(matched[i], -1.0)
            best = int(iou.argmax())
            hit = bool(iou[best] >= iou_threshold)
            matched[i][best] |= hit
        hits.append(hit)
    if not hits:
        return 0.0
    tp = torch.tensor(hits, dtype=torch.float64).cumsum(0)
    precision, recall = tp / torch.arange(1, len(hits) + 1), tp / n_true
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return float(((recall - torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])) * envelope).sum())


def _a6_simulate_detections(scene_set, seed=0):
    """The solution notebook's simulate_detections (part 3's demo), with torchvision's box_iou."""
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(seed)
    size = scene_set.images.shape[-1]
    out = []
    for truth, truth_labels in zip(scene_set.boxes, scene_set.labels, strict=True):
        b, s, lab = [], [], []
        for box, label in zip(truth, truth_labels.tolist(), strict=True):
            if torch.rand(1, generator=g) < 0.15:  # missed object
                continue
            for copy in range(3):  # the detection and two looser duplicates
                jitter = (1.5 if copy == 0 else 3.0) * torch.randn(4, generator=g)
                moved = (box + jitter).clamp(0, size)
                moved = torch.cat([moved[:2], torch.maximum(moved[2:], moved[:2] + 1)])
                quality = box_iou(moved[None], box[None])[0, 0]
                score = (0.2 + 0.8 * quality) * (0.75 + 0.25 * torch.rand(1, generator=g)[0])
                b.append(moved), s.append(score * (1 if copy == 0 else 0.95)), lab.append(label)
            if torch.rand(1, generator=g) < 0.3:  # the same box with a wrong class
                b.append(box.clone()), s.append(0.4 * torch.rand(1, generator=g)[0])
                lab.append((label + 1 + int(torch.randint(9, (1,), generator=g))) % 10)
        for _ in range(2):  # boxes on background
            corner = torch.rand(2, generator=g) * (size - 12)
            b.append(torch.cat([corner, corner + 6 + 10 * torch.rand(2, generator=g)]))
            s.append(0.5 * torch.rand(1, generator=g)[0]), lab.append(int(torch.randint(10, (1,), generator=g)))
        out.append((torch.stack(b), torch.stack(s).float(), torch.tensor(lab, dtype=torch.long)))
    return out


def test_a6_task_text_worked_examples():
    """Parts 1-8's worked numbers: IoU 0.125 and 0 for touching boxes; NMS [0, 2, 3] at 0.5 and 0.4, [0, 2] at 0.25
    (IoUs 0.82, 0.25, 0.33, 0.11 and 0.43); roi_pool's cells and overlapping rows; roi_align's samples; AP 0.55 (0.525
    without interpolation); Dice 0.4; soft Dice loss 0.231."""
    from torchvision import ops

    assert float(ops.box_iou(torch.tensor([[1.0, 1, 5, 4]]), torch.tensor([[3.0, 2, 9, 6]]))) == 0.125
    assert float(ops.box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[2.0, 0, 4, 2]]))) == 0.0
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 6, 10, 16], [5, 0, 15, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    iou = ops.box_iou(boxes, boxes)
    assert [round(float(iou[0, k]), 2) for k in (1, 2, 3)] == [0.82, 0.25, 0.33]
    assert round(float(iou[2, 3]), 2) == 0.11 and round(float(iou[1, 3]), 2) == 0.43
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 2, 3] and ops.nms(boxes, scores, 0.25).tolist() == [0, 2]
    assert ops.nms(boxes, scores, 0.4).tolist() == [0, 2, 3]  # D survives B (0.43): B was suppressed first

    # roi_pool, scale 1/4, ROI (0, 6, 2, 21, 13), 2x2: columns [2, 4) and [4, 6), rows [1, 3) and [2, 4)
    column = torch.arange(16.0).expand(16, 16)  # value = its column
    row = column.T.contiguous()
    features = torch.stack([column, -column, row, -row])[None]  # (1, 4, 16, 16)
    roi = torch.tensor([[0.0, 6, 2, 21, 13]])
    pooled = ops.roi_pool(features, roi, 2, spatial_scale=1 / 4)[0]  # (4, 2, 2)
    assert pooled[0, 0].tolist() == [3, 5] and (-pooled[1, 0]).tolist() == [2, 4]  # last and first column per bin
    assert pooled[2, :, 0].tolist() == [2, 3] and (-pooled[3, :, 0]).tolist() == [1, 2]  # row 2 in both bins
    aligned = ops.roi_align(features, roi, 2, spatial_scale=1 / 4, sampling_ratio=-1, aligned=False)[0]
    # bin (0, 0): samples at x = 1.96875 and 2.90625, y = 0.84375 and 1.53125 (the linear map returns their mean)
    assert math.isclose(float(aligned[0, 0, 0]), (1.96875 + 2.90625) / 2, abs_tol=1e-5)
    assert math.isclose(float(aligned[2, 0, 0]), (0.84375 + 1.53125) / 2, abs_tol=1e-5)

    # AP: 4 true boxes, ranking TP, FP, FP, TP, TP
    truth = [torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])]
    dets = torch.tensor([[0.0, 0, 10, 10], [0, 40, 10, 50], [0, 60, 10, 70], [20, 0, 30, 10], [40, 0, 50, 10]])
    ap = _a6_average_precision([(dets, torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]))], truth)
    assert math.isclose(ap, 0.55, abs_tol=1e-12)
    assert math.isclose(0.25 * 1 + 0.25 * 2 / 4 + 0.25 * 3 / 5, 0.525)

    assert 2 * 1 / (3 + 2) == 0.4
    p = torch.sigmoid(torch.tensor([0.0, math.log(3)]))
    assert torch.allclose(p, torch.tensor([0.5, 0.75]))
    d = (2 * float((p * torch.tensor([0.0, 1.0])).sum()) + 1) / (float(p.sum()) + 1 + 1)
    assert round(d, 3) == 0.769 and round(1 - d, 3) == 0.231


def test_a6_11a_roi_pool_quantization_of_a_box_at_stride_16():
    """11a: the box (37, 50, 101, 118) at stride 16 pools columns 2-6 and rows 3-7, pixels [32, 112) x [48, 128):
    edges off by 5, 11, 2 and 10 pixels; about 2, 5, 1 and 4 cells of a 28x28 mask; roi_align's bins 0.571 of a cell
    wide and 0.607 tall; aligned=True reads every sample half a cell (8 pixels) further up and left."""
    from torchvision import ops

    column = torch.arange(20.0).expand(20, 20)
    row = column.T.contiguous()
    features = torch.stack([column, -column, row, -row])[None]  # (1, 4, 20, 20): a 320x320 image at stride 16
    box = (37.0, 50.0, 101.0, 118.0)
    pooled = ops.roi_pool(features, torch.tensor([[0.0, *box]]), 7, spatial_scale=1 / 16)[0]  # (4, 7, 7)
    first_col, last_col = int(-pooled[1].max()), int(pooled[0].max())
    first_row, last_row = int(-pooled[3].max()), int(pooled[2].max())
    assert (first_col, last_col, first_row, last_row) == (2, 6, 3, 7)
    region = (16 * first_col, 16 * first_row, 16 * (last_col + 1), 16 * (last_row + 1))
    assert region == (32, 48, 112, 128)
    errors = (box[0] - region[0], region[2] - box[2], box[1] - region[1], region[3] - box[3])
    assert errors == (5, 11, 2, 10)
    cell_w, cell_h = (box[2] - box[0]) / 28, (box[3] - box[1]) / 28
    in_cells = [round(e / size) for e, size in zip(errors, (cell_w, cell_w, cell_h, cell_h), strict=True)]
    assert in_cells == [2, 5, 1, 4], in_cells
    assert len(set(pooled[0, 0].tolist())) == 5  # 7 bins over 5 columns: some bins repeat a column
    # roi_align: no rounding; bins of (101 - 37) / 16 / 7 = 4/7 cell wide, (118 - 50) / 16 / 7 tall; aligned=True
    # reads half a cell up and left
    assert round((box[2] - box[0]) / 16 / 7, 3) == 0.571 and round((box[3] - box[1]) / 16 / 7, 3) == 0.607
    kwargs = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=2)
    plain = ops.roi_align(features, torch.tensor([[0.0, *box]]), aligned=False, **kwargs)[0]
    shifted = ops.roi_align(features, torch.tensor([[0.0, *box]]), aligned=True, **kwargs)[0]
    assert torch.allclose(plain[0] - shifted[0], torch.full((7, 7), 0.5), atol=1e-5)  # columns: half a cell
    assert torch.allclose(plain[2] - shifted[2], torch.full((7, 7), 0.5), atol=1e-5)  # rows
    assert 0.5 * 16 == 8


def test_a6_11b_duplicates_nms_and_stricter_thresholds_on_the_notebooks_detections():
    """11b: the notebook's per-class table (300 held-out scenes): mAP@0.5 0.80 with NMS, 0.69 without, every class
    losing 0.08 to 0.14; AP@0.75 of the smallest classes, which lose most (arrow 0.71 -> 0.12, triangle 0.85 -> 0.22,
    star 0.75 -> 0.20), against the largest (heart 0.80 -> 0.47); IoU of a box 1.5 px too large on every side: 0.53
    and 0.79."""
    from torchvision import ops

    from course_utils import data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scene_set = data.load("scenes", n=300, seed=32)
        detections = _a6_simulate_detections(scene_set)
    finally:
        torch.set_num_threads(threads)
    after = [(b[k], s[k], lab[k]) for b, s, lab in detections for k in [ops.batched_nms(b, s, lab, 0.5)]]

    def ap(dets, c, t):
        return _a6_average_precision([(b[lab == c], s[lab == c]) for b, s, lab in dets],
                                     [b[lab == c] for b, lab in zip(scene_set.boxes, scene_set.labels, strict=True)], t)

    names = scene_set.classes
    raw = {name: ap(detections, c, 0.5) for c, name in enumerate(names)}
    ap50 = {name: ap(after, c, 0.5) for c, name in enumerate(names)}
    ap75 = {name: ap(after, c, 0.75) for c, name in enumerate(names)}
    side = {name: float(torch.cat([((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sqrt()[lab == c]
                                   for b, lab in zip(scene_set.boxes, scene_set.labels, strict=True)]).mean())
            for c, name in enumerate(names)}
    m_raw, m50 = sum(raw.values()) / 10, sum(ap50.values()) / 10
    assert round(m50, 2) == 0.80 and round(m_raw, 2) == 0.69, (m50, m_raw)
    losses = [ap50[n] - raw[n] for n in names]
    assert 0.075 < min(losses) and max(losses) < 0.145, losses
    smallest = sorted(names, key=side.get)[:3]
    assert smallest == ["arrow", "triangle", "star"], smallest
    drops = {n: ap50[n] - ap75[n] for n in names}
    assert sorted(sorted(names, key=drops.get)[-3:]) == sorted(smallest), drops  # they lose most from 0.5 to 0.75
    assert max(side, key=side.get) == "heart" and round(side["arrow"], 1) == 11.5 and round(side["heart"], 1) == 16.7
    assert [round(side[n], 1) for n in ("triangle", "star")] == [12.8, 14.4]
    claimed = {"arrow": (0.71, 0.12), "triangle": (0.85, 0.22), "star": (0.75, 0.20), "heart": (0.80, 0.47)}
    for n, (at50, at75) in claimed.items():  # the answer rounds the table's three decimals to two
        assert abs(ap50[n] - at50) < 0.0051 and abs(ap75[n] - at75) < 0.0051, (n, ap50[n], ap75[n])
    for a, expected in ((8, 0.53), (24, 0.79)):
        iou = ops.box_iou(torch.tensor([[0.0, 0, a, a]]), torch.tensor([[-1.5, -1.5, a + 1.5, a + 1.5]]))
        assert round(float(iou), 2) == expected and math.isclose(float(iou), a**2 / (a + 3) ** 2, rel_tol=1e-6)


def test_a6_11b_the_copied_simulate_detections_is_the_notebooks():
    """11b's numbers come from the copy above: it must give the solution notebook's detections (part 3's demo), so
    that an edit of the notebook's simulator cannot leave the model answer's numbers behind."""
    import json
    from pathlib import Path

    from torchvision.ops import box_iou

    from course_utils import data

    notebook = Path(__file__).resolve().parents[1] / "solutions" / "a6_detection_segmentation" / \
        "a6_detection_segmentation.ipynb"
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    (source,) = [c for c in cells if "def simulate_detections(" in c]
    definition = source[: source.index("\ndetections = simulate_detections(")]  # the def, not the demo after it
    namespace = {"torch": torch, "box_iou": box_iou}
    exec(definition, namespace)  # noqa: S102 (the course's own notebook)
    scene_set = data.load("scenes", n=25, seed=32)
    theirs, ours = namespace["simulate_detections"](scene_set), _a6_simulate_detections(scene_set)
    assert len(theirs) == len(ours) == 25
    for a, b in zip(theirs, ours, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a6_11c_rare_class_accuracy_dice_and_the_unets_receptive_field():
    """11c: a 100-pixel lesion in a 100x100 scan: pixel accuracy 99.0% for both predictions, Dice 0 and 0.5; with
    lesions in 10% of the scans the all-background model's mean per-image Dice is 0.9 (empty/empty = 1); the
    receptive field of the bottleneck of the contract's U-Net: 14, 32, 68, 140 pixels for depth 1 to 4."""
    from torch import nn

    truth = torch.zeros(100, 100, dtype=torch.bool)
    truth[45:55, 45:55] = True  # 100 pixels
    half = torch.zeros_like(truth)
    half[45:50, 45:55] = True  # 50 of the lesion's pixels
    half[0:5, 0:10] = True  # and 50 healthy ones
    for pred, dice in ((torch.zeros_like(truth), 0.0), (half, 0.5)):
        tp, total = int((pred & truth).sum()), int(pred.sum() + truth.sum())
        assert float((pred == truth).double().mean()) == 0.99 and 2 * tp / total == dice
    scans = torch.zeros(100, 100, 100, dtype=torch.bool)
    scans[:10, 45:55, 45:55] = True  # 10% of the scans have a lesion
    pred = torch.zeros_like(scans)
    both = (pred & scans).flatten(1).sum(1).double()
    total = (pred.flatten(1).sum(1) + scans.flatten(1).sum(1)).double()
    dice = torch.where(total > 0, 2 * both / total.clamp(min=1), 1.0)
    assert float(dice.mean()) == 0.9

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    for depth, expected in ((1, 14), (2, 32), (3, 68), (4, 140)):
        layers = [block(1, 2)]
        for _ in range(depth):
            layers += [nn.AvgPool2d(2), block(2, 2)]  # the max pool's window: a max would pass the gradient to one
        encoder = nn.Sequential(*layers).double().eval()
        for m in encoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.weight, 0.1)  # positive weights and inputs: every ReLU passes
        size = max(64, 10 * 2**depth)  # room for the receptive field around the centre
        x = (torch.rand(1, 1, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
        out = encoder(x)  # (1, 2, size / 2^depth, size / 2^depth)
        centre = out.shape[-1] // 2
        (grad,) = torch.autograd.grad(out[0, 0, centre, centre], x)
        rows, cols = torch.nonzero(grad[0, 0]).unbind(1)
        assert int(rows.max() - rows.min() + 1) == int(cols.max() - cols.min() + 1) == expected, (depth, rows)
