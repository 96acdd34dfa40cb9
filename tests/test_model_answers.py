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
