"""Batch size vs the noise of batch statistics (lecture 06).

BatchNorm normalizes with the mean and variance of the current mini-batch, not of
the whole data. Those are estimates, and they wobble from batch to batch. This
module draws many batches of B independent values from a known distribution and
measures, across batches,

- the batch mean, whose standard deviation is exactly sigma / sqrt(B);
- the biased batch variance (1/B, what BatchNorm normalizes with), whose average is
  (B - 1)/B sigma^2 (too small for small B) and whose standard deviation is

      sqrt( ((B - 1)/B)^2 (mu_4 - (B - 3)/(B - 1) sigma^4) / B ),

  with mu_4 the fourth central moment (both formulas hold for any distribution with
  those moments; no Gaussian assumption).

The distributions are standard ones with moments known in closed form:

=============  ===========================  ===========  ==============  ====================
name           what                         mean         variance        mu_4
=============  ===========================  ===========  ==============  ====================
normal         N(0, 1)                      0            1               3
uniform        U(0, 1)                      1/2          1/12            1/80
exponential    rate 1 (skewed)              1            1               9
relu           ReLU(z), z ~ N(0, 1)         1/sqrt(2 pi) 1/2 - 1/(2 pi)  (see ``_relu_moments``)
=============  ===========================  ===========  ==============  ====================

The batches are drawn and summarized with PyTorch's ``mean`` and ``var``; nothing
here is a BatchNorm layer (assignment a3 asks for that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, FuncFormatter, NullLocator
from torch import Tensor

from ..plotting import PALETTE, styled
from ..seeding import COURSE_SEED
from .registry import demo

__all__ = ["DISTRIBUTIONS", "BATCH_SIZES", "Population", "BatchNoise", "population", "batch_statistics",
           "noise_curve", "batch_noise_figure", "batch_noise_explorer"]

DISTRIBUTIONS = ("normal", "uniform", "exponential", "relu")
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512)  # the explorer's slider and the curve's points
MAX_BATCH = 4096
MAX_VALUES = 20_000_000  # batch_size * n_batches drawn at once (80 MB of float32)


@dataclass(frozen=True)
class Population:
    """Mean, variance and fourth central moment mu_4 = E[(x - mean)^4] of a distribution."""

    mean: float
    var: float
    mu4: float

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


def _relu_moments() -> Population:
    """Moments of ReLU(z), z ~ N(0, 1), from E[z^k; z > 0] = 1/sqrt(2 pi), 1/2, 2/sqrt(2 pi), 3/2 (k = 1..4)."""
    m1, m2, m3, m4 = 1 / math.sqrt(2 * math.pi), 0.5, 2 / math.sqrt(2 * math.pi), 1.5
    var = m2 - m1**2
    mu4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4  # E[(x - m1)^4] expanded
    return Population(m1, var, mu4)


# What the figure's title calls each distribution, and the smallest value it can take.
_LABELS = {"normal": "N(0, 1)", "uniform": "U(0, 1)", "exponential": "an exponential distribution (rate 1)",
           "relu": "ReLU(z), z ~ N(0, 1)"}
_LOWEST = {"normal": -math.inf, "uniform": 0.0, "exponential": 0.0, "relu": 0.0}
_HIGHEST = {"normal": math.inf, "uniform": 1.0, "exponential": math.inf, "relu": math.inf}

_POPULATIONS = {
    "normal": Population(0.0, 1.0, 3.0),
    "uniform": Population(0.5, 1 / 12, 1 / 80),
    "exponential": Population(1.0, 1.0, 9.0),
    "relu": _relu_moments(),
}


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _check_int(name: str, value, low: int, high: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}{why}, got {value!r}")
    return int(value)


def population(distribution: str) -> Population:
    """The exact mean, variance and mu_4 of one of :data:`DISTRIBUTIONS`."""
    return _POPULATIONS[_check_choice("distribution", distribution, DISTRIBUTIONS)]


def _draw(distribution: str, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
    if distribution == "normal":
        return torch.randn(shape, generator=generator)
    if distribution == "uniform":
        return torch.rand(shape, generator=generator)
    if distribution == "exponential":
        return torch.empty(shape).exponential_(1.0, generator=generator)
    return torch.randn(shape, generator=generator).clamp_(min=0.0)  # relu


@dataclass(frozen=True)
class BatchNoise:
    """Statistics of ``n_batches`` batches of B values each (what :func:`batch_statistics` measured).

    means:     (n_batches,) the batch means mu_B
    variances: (n_batches,) the biased batch variances sigma_B^2 (divided by B, as BatchNorm normalizes)
    """

    distribution: str
    batch_size: int
    means: Tensor
    variances: Tensor
    population: Population

    @property
    def mean_std(self) -> float:
        """The measured standard deviation of the batch means across batches."""
        return self.means.std().item()

    @property
    def mean_std_law(self) -> float:
        """sigma / sqrt(B): the exact standard deviation of the mean of B independent values."""
        return self.population.std / math.sqrt(self.batch_size)

    @property
    def variance_average_law(self) -> float:
        """(B - 1)/B sigma^2: the expected biased batch variance (smaller than sigma^2)."""
        b = self.batch_size
        return (b - 1) / b * self.population.var

    @property
    def variance_std(self) -> float:
        """The measured standard deviation of the biased batch variances across batches."""
        return self.variances.std().item()

    @property
    def variance_std_law(self) -> float:
        """The exact standard deviation of the biased variance of B independent values."""
        b, p = self.batch_size, self.population
        unbiased = (p.mu4 - (b - 3) / (b - 1) * p.var**2) / b  # Var of the 1/(B-1) estimate
        return math.sqrt(max(unbiased, 0.0)) * (b - 1) / b


@torch.no_grad()
def batch_statistics(batch_size: int, distribution: str = "normal", n_batches: int = 2000,
                     seed: int = COURSE_SEED) -> BatchNoise:
    """Draw ``n_batches`` batches of ``batch_size`` = B independent values; return each batch's mean and variance.

    distribution: one of :data:`DISTRIBUTIONS`. B >= 2 (one value has no spread; PyTorch's BatchNorm
    refuses to train on one value per channel). The same ``seed`` gives the same batches.
    """
    distribution = _check_choice("distribution", distribution, DISTRIBUTIONS)
    batch_size = _check_int("batch_size", batch_size, 2, MAX_BATCH, " (a variance needs at least 2 values)")
    n_batches = _check_int("n_batches", n_batches, 10, 1_000_000, " (a spread needs many batches)")
    if batch_size * n_batches > MAX_VALUES:
        raise ValueError(f"batch_size * n_batches must be at most {MAX_VALUES:,} values, got "
                         f"{batch_size} * {n_batches} = {batch_size * n_batches:,}")
    generator = torch.Generator().manual_seed(seed)
    x = _draw(distribution, (n_batches, batch_size), generator)  # (n_batches, B): one row per batch
    means = x.mean(dim=1)                                         # (n_batches,)
    variances = x.var(dim=1, correction=0)                        # (n_batches,) biased: divided by B
    return BatchNoise(distribution, batch_size, means, variances, _POPULATIONS[distribution])


def noise_curve(distribution: str = "normal", batch_sizes: tuple[int, ...] = BATCH_SIZES, n_batches: int = 2000,
                seed: int = COURSE_SEED) -> list[BatchNoise]:
    """:func:`batch_statistics` for each batch size (each from its own seeded draw)."""
    if not batch_sizes:
        raise ValueError("batch_sizes must hold at least one batch size")
    return [batch_statistics(b, distribution, n_batches, seed + i) for i, b in enumerate(batch_sizes)]


def _histogram(ax, values: Tensor, low: float, high: float, colour: str) -> float:
    """Histogram of ``values`` on [low, high], values outside piled into the end bins; returns the share outside."""
    array = values.numpy()
    outside = float(np.mean((array < low) | (array > high)))
    heights, _, _ = ax.hist(np.clip(array, low, high), bins=80, range=(low, high), density=True, color=colour,
                            alpha=0.8)
    ax.set_ylim(0, 1.35 * heights.max())  # room for the legend above the bars
    ax.set_yticks([])
    return outside


def _label_2_and_5(value: float, _position) -> str:
    """Minor tick labels of a log axis at 2 and 5 times a power of ten only (the others stay unlabelled)."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if leading in (2, 5) else ""


def batch_noise_figure(batch_size: int = 16, distribution: str = "normal", n_batches: int = 2000) -> Figure:
    """Three panels: the batch means and the batch variances for B = ``batch_size`` (histograms on axes fixed
    for the distribution, so they narrow as B grows), and their spread across batches for every B (log-log)."""
    result = batch_statistics(batch_size, distribution, n_batches)
    p = result.population
    curve = noise_curve(distribution, BATCH_SIZES, n_batches)
    with styled():
        fig, (ax_mean, ax_var, ax_law) = plt.subplots(1, 3, figsize=(13, 4.0), layout="constrained",
                                                      width_ratios=(1, 1, 1.15))
        # batch means: axis fixed at mean +- 3 sigma / sqrt(2), the spread at the smallest batch size
        half = 3 * p.std / math.sqrt(2)
        low = max(p.mean - half, _LOWEST[distribution])
        high = min(p.mean + half, _HIGHEST[distribution])
        out = _histogram(ax_mean, result.means, low, high, PALETTE[0])
        ax_mean.axvline(p.mean, color="black", linewidth=1.5, label="population mean")
        for sign in (-1, 1):
            ax_mean.axvline(p.mean + sign * result.mean_std_law, color=PALETTE[3], linestyle="--", linewidth=1.2,
                            label=r"$\pm\,\sigma/\sqrt{B}$" if sign < 0 else None)
        ax_mean.set_title(f"batch means, B = {batch_size}\nstd {result.mean_std:.3g} (law {result.mean_std_law:.3g})"
                          + (f", {out:.0%} outside" if out >= 0.005 else ""), fontsize=10)
        ax_mean.set_xlabel(r"batch mean $\mu_B$")
        ax_mean.set_ylabel("share of batches (density)")
        ax_mean.legend(fontsize=8, loc="upper left")
        # batch variances: axis fixed at [0, 4 sigma^2]
        out = _histogram(ax_var, result.variances, 0.0, 4 * p.var, PALETTE[2])
        ax_var.axvline(p.var, color="black", linewidth=1.5, label=r"population variance $\sigma^2$")
        ax_var.axvline(result.variance_average_law, color=PALETTE[1], linestyle="--", linewidth=1.5,
                       label=r"expected batch variance $\frac{B-1}{B}\sigma^2$")
        ax_var.set_title(f"batch variances (biased, 1/B), B = {batch_size}\nstd {result.variance_std:.3g} "
                         f"(law {result.variance_std_law:.3g})" + (f", {out:.0%} outside" if out >= 0.005 else ""),
                         fontsize=10)
        ax_var.set_xlabel(r"batch variance $\sigma_B^2$")
        ax_var.legend(fontsize=8, loc="upper right")
        # spread against B, log-log
        sizes = np.array(BATCH_SIZES)
        ax_law.loglog(sizes, [r.mean_std for r in curve], "o", color=PALETTE[0], label="std of batch means")
        ax_law.loglog(sizes, [r.mean_std_law for r in curve], "-", color=PALETTE[0], linewidth=1,
                      label=r"$\sigma/\sqrt{B}$")
        ax_law.loglog(sizes, [r.variance_std for r in curve], "s", color=PALETTE[2], label="std of batch variances")
        ax_law.loglog(sizes, [r.variance_std_law for r in curve], "--", color=PALETTE[2], linewidth=1,
                      label="its exact formula")
        ax_law.axvline(batch_size, color="grey", linestyle=":", linewidth=1)
        ax_law.xaxis.set_major_locator(FixedLocator(sizes))
        ax_law.xaxis.set_minor_locator(NullLocator())
        ax_law.set_xticklabels([str(b) for b in sizes])
        ax_law.set_xlabel("batch size B (log scale)")
        ax_law.set_ylabel("std across batches (log scale)")
        ax_law.set_title(f"spread across {n_batches} batches", fontsize=10)
        ax_law.legend(fontsize=8, loc="lower left")
        ax_law.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax_law.yaxis.set_minor_formatter(FuncFormatter(_label_2_and_5))
        fig.suptitle(f"Batches of values drawn from {_LABELS[distribution]}: population mean {p.mean:.3g}, "
                     f"variance {p.var:.3g}")
    return fig


@demo(figure=batch_noise_figure)
def batch_noise_explorer(batch_size: int = 16, distribution: str = "normal"):
    """Controls for :func:`batch_noise_figure`: the batch size (powers of 2) and the distribution.
    ``explorer.result`` is the :class:`BatchNoise` on show."""
    import ipywidgets as widgets

    style = {"description_width": "7em"}
    if batch_size not in BATCH_SIZES:
        raise ValueError(f"batch_size must be one of {', '.join(map(str, BATCH_SIZES))}, got {batch_size!r}")
    controls = {
        "batch_size": widgets.SelectionSlider(options=list(BATCH_SIZES), value=batch_size, description="batch size",
                                              continuous_update=False, style=style),
        "distribution": widgets.Dropdown(options=DISTRIBUTIONS, value=distribution, description="distribution",
                                         style=style),
    }

    def show(batch_size, distribution):
        fig = batch_noise_figure(batch_size, distribution)
        plt.show()
        plt.close(fig)
        return batch_statistics(batch_size, distribution)

    return widgets.interactive(show, **controls)
