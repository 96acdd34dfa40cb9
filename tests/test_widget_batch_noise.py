"""The batch-noise explorer (lecture 06): its measured spreads follow the laws, its figure draws, bad input is refused.

Tolerances: a standard deviation estimated from n batches has a relative standard error of about
sqrt((kurtosis - 1) / (4 n)). With n = 20,000 that is at most 0.8% for the batch means (5% allowed), about 1%
for the batch variances of light-tailed values (6% allowed) and, for exponential values at B = 2, whose batch
variance has very heavy tails, about 3% (15% allowed; 20 seeds deviated by up to 6.6%).
"""

import itertools
import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import widgets
from course_utils.widgets import batch_noise as noise

N = 20_000


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("distribution", noise.DISTRIBUTIONS)
def test_the_population_moments_are_the_true_ones(distribution):
    # 2 million draws: mean, variance and fourth central moment within a few standard errors
    x = noise._draw(distribution, (2000, 1000), torch.Generator().manual_seed(5)).double().flatten()
    p = noise.population(distribution)
    assert math.isclose(x.mean().item(), p.mean, abs_tol=5 * p.std / math.sqrt(x.numel()))
    assert math.isclose(x.var().item(), p.var, rel_tol=0.01)
    assert math.isclose(((x - x.mean()) ** 4).mean().item(), p.mu4, rel_tol=0.03)


@pytest.mark.parametrize("distribution", noise.DISTRIBUTIONS)
@pytest.mark.parametrize("batch_size", [2, 16, 256])
def test_the_std_of_batch_means_is_sigma_over_sqrt_b(distribution, batch_size):
    result = noise.batch_statistics(batch_size, distribution, n_batches=N if batch_size < 256 else 4000)
    n = len(result.means)  # fewer batches for B = 256: the relative error is the same, the draw 16x larger
    assert math.isclose(result.mean_std_law, result.population.std / math.sqrt(batch_size))
    assert math.isclose(result.mean_std, result.mean_std_law, rel_tol=0.05 if n == N else 0.1)


@pytest.mark.parametrize("distribution", noise.DISTRIBUTIONS)
@pytest.mark.parametrize("batch_size", [2, 8, 64])
def test_the_biased_batch_variance_is_too_small_on_average_and_spreads_as_the_formula_says(distribution, batch_size):
    result = noise.batch_statistics(batch_size, distribution, n_batches=N)
    expected = (batch_size - 1) / batch_size * result.population.var
    standard_error = result.variance_std_law / math.sqrt(N)
    assert abs(result.variances.mean().item() - expected) < 5 * standard_error
    assert math.isclose(result.variance_std, result.variance_std_law,
                        rel_tol=0.15 if distribution == "exponential" else 0.06)
    if batch_size == 2:  # at B = 2 the expected biased variance is half the true one: far beyond the noise
        assert result.population.var - result.variances.mean().item() > 20 * standard_error


def test_the_variances_are_the_biased_ones_and_the_means_are_plain_means():
    result = noise.batch_statistics(4, "normal", n_batches=10, seed=3)
    x = noise._draw("normal", (10, 4), torch.Generator().manual_seed(3))
    assert torch.allclose(result.means, x.mean(1))
    assert torch.allclose(result.variances, ((x - x.mean(1, keepdim=True)) ** 2).sum(1) / 4)  # 1/B, not 1/(B-1)


def test_larger_batches_are_less_noisy():
    curve = noise.noise_curve("relu", (2, 8, 32, 128), n_batches=4000)
    spreads = [r.mean_std for r in curve]
    assert spreads == sorted(spreads, reverse=True)
    # quadrupling B halves the spread of the means
    for small, large in itertools.pairwise(curve):
        assert math.isclose(small.mean_std / large.mean_std, 2.0, rel_tol=0.1)


def test_the_same_seed_gives_the_same_batches():
    a = noise.batch_statistics(8, "exponential", n_batches=50, seed=1)
    b = noise.batch_statistics(8, "exponential", n_batches=50, seed=1)
    c = noise.batch_statistics(8, "exponential", n_batches=50, seed=2)
    assert torch.equal(a.means, b.means) and torch.equal(a.variances, b.variances)
    assert not torch.equal(a.means, c.means)


@pytest.mark.parametrize("bad, message", [
    ({"batch_size": 1}, "batch_size must be an int from 2 to 4096 \\(a variance needs at least 2 values\\), got 1"),
    ({"batch_size": 0}, "batch_size must be an int from 2"),
    ({"batch_size": 8.0}, "batch_size must be an int from 2"),
    ({"batch_size": True}, "batch_size must be an int from 2"),
    ({"batch_size": 8, "distribution": "gaussian"}, "distribution must be one of normal, uniform, exponential, relu"),
    ({"batch_size": 8, "n_batches": 5}, "n_batches must be an int from 10"),
    ({"batch_size": 4096, "n_batches": 10_000}, "batch_size \\* n_batches must be at most"),
])
def test_bad_settings_say_what_is_allowed(bad, message):
    with pytest.raises(ValueError, match=message):
        noise.batch_statistics(**bad)


def test_a_curve_needs_batch_sizes_and_the_explorer_offers_only_its_slider_values():
    with pytest.raises(ValueError, match="at least one batch size"):
        noise.noise_curve("normal", ())
    with pytest.raises(ValueError, match="batch_size must be one of 2, 4, 8"):
        noise.batch_noise_explorer(batch_size=10)


@pytest.mark.parametrize("batch_size, distribution", [(2, "exponential"), (16, "normal"), (512, "uniform")])
def test_the_figure_has_two_histograms_and_a_log_log_law(batch_size, distribution):
    fig = noise.batch_noise_figure(batch_size, distribution, n_batches=200)
    ax_mean, ax_var, ax_law = fig.axes
    assert f"B = {batch_size}" in ax_mean.get_title() and f"B = {batch_size}" in ax_var.get_title()
    assert ax_law.get_xscale() == "log" and ax_law.get_yscale() == "log"
    assert "batch size" in ax_law.get_xlabel() and ax_law.get_ylabel()
    assert [int(t) for t in ax_law.get_xticks()] == list(noise.BATCH_SIZES)
    assert ax_mean.get_xlabel() and ax_var.get_xlabel()
    assert len(ax_law.get_legend().get_texts()) == 4


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["batch_noise_explorer"].figure is noise.batch_noise_figure
    assert widgets.batch_noise_explorer is noise.batch_noise_explorer
    widget = noise.batch_noise_explorer(batch_size=32, distribution="relu")
    assert widget.kwargs == {"batch_size": 32, "distribution": "relu"}
    assert widget.result.batch_size == 32 and widget.result.distribution == "relu"
    widget.close()
