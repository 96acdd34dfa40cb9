"""The optimizer race (lecture 05): surfaces, PyTorch's steps checked by hand, bad settings refused."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import widgets
from course_utils.widgets import optimizer_race as race


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _gradient(surface, point):
    """The gradient of each surface, derived by hand (not by autograd)."""
    x, y = point
    if surface == "quadratic":  # x²/2 + 25 y²
        return torch.tensor([x, 50 * y], dtype=torch.float64)
    if surface == "rosenbrock":  # (1 - x)² + 100 (y - x²)²
        return torch.tensor([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], dtype=torch.float64)
    return torch.tensor([2 * x, y**3 - y], dtype=torch.float64)  # x² + y⁴/4 - y²/2


@pytest.mark.parametrize("surface", sorted(race.SURFACES))
def test_each_surface_has_its_stated_minimum_and_its_hand_derived_gradient(surface):
    spec = race.SURFACES[surface]
    for point in spec.minimizers:
        assert math.isclose(race.surface_value(surface, point).item(), spec.minimum, abs_tol=1e-12)
        assert torch.allclose(_gradient(surface, point), torch.zeros(2, dtype=torch.float64))
    # f* is the lowest value on a fine grid of the plotted region
    xs = torch.linspace(*spec.xlim, 301, dtype=torch.float64)
    ys = torch.linspace(*spec.ylim, 301, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1)  # (301, 301, 2)
    assert race.surface_value(surface, grid).min().item() >= spec.minimum - 1e-12
    for point in ((0.3, -0.7), (-1.2, 1.1), spec.start):
        p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        race.surface_value(surface, p).backward()
        assert torch.allclose(p.grad, _gradient(surface, point))


def test_the_saddle_is_a_saddle_and_the_quadratic_is_ill_conditioned():
    hessian = torch.autograd.functional.hessian(lambda p: race.surface_value("saddle", p),
                                                torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(torch.linalg.eigvalsh(hessian), torch.tensor([-1.0, 2.0], dtype=torch.float64))
    hessian = torch.autograd.functional.hessian(lambda p: race.surface_value("quadratic", p),
                                                torch.zeros(2, dtype=torch.float64))
    curvatures = torch.linalg.eigvalsh(hessian)
    assert curvatures[1] / curvatures[0] == 50


@pytest.mark.parametrize("surface", sorted(race.SURFACES))
def test_sgd_and_momentum_follow_the_hand_computed_updates(surface):
    lr, mu = 1e-3, 0.8
    start = torch.tensor(race.SURFACES[surface].start, dtype=torch.float64)
    sgd = race.trajectory(surface, "sgd", lr=lr, steps=3).points
    theta = start
    for t in range(3):  # theta_t = theta_{t-1} - lr g_t
        theta = theta - lr * _gradient(surface, theta.tolist())
        assert torch.allclose(sgd[t + 1], theta, rtol=1e-12, atol=1e-14)
    momentum = race.trajectory(surface, "momentum", lr=lr, mu=mu, steps=3).points
    nesterov = race.trajectory(surface, "nesterov", lr=lr, mu=mu, steps=3).points
    theta, u = start, None
    theta_n, u_n = start, None
    for t in range(3):
        g = _gradient(surface, theta.tolist())
        u = g if u is None else mu * u + g  # u_1 = g_1
        theta = theta - lr * u
        g_n = _gradient(surface, theta_n.tolist())
        u_n = g_n if u_n is None else mu * u_n + g_n
        theta_n = theta_n - lr * (g_n + mu * u_n)
        assert torch.allclose(momentum[t + 1], theta, rtol=1e-12, atol=1e-14)
        assert torch.allclose(nesterov[t + 1], theta_n, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(momentum[3], nesterov[3])


def test_adaptive_methods_follow_the_hand_computed_updates():
    start = torch.tensor((0.7, -0.4), dtype=torch.float64)
    lr, (b1, b2), eps = 0.05, (0.8, 0.99), 1e-8
    adam = race.trajectory("rosenbrock", "adam", lr=lr, betas=(b1, b2), steps=2, start=start).points
    m = v = torch.zeros(2, dtype=torch.float64)
    theta = start
    for t in (1, 2):
        g = _gradient("rosenbrock", theta.tolist())
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
        assert torch.allclose(adam[t], theta, rtol=1e-12, atol=1e-14)
    # Adam's first step is lr * g / (|g| + eps): about lr in each coordinate, whatever the gradient's size
    assert torch.allclose((start - adam[1]).abs(), torch.full((2,), lr, dtype=torch.float64), rtol=1e-6)

    rms = race.trajectory("quadratic", "rmsprop", lr=0.01, steps=2, start=start).points
    ada = race.trajectory("quadratic", "adagrad", lr=0.5, steps=2, start=start).points
    v, G = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    theta_r, theta_a = start, start
    for t in (1, 2):
        g = _gradient("quadratic", theta_r.tolist())
        v = 0.99 * v + 0.01 * g**2  # PyTorch's alpha = 0.99, eps = 1e-8
        theta_r = theta_r - 0.01 * g / (v.sqrt() + 1e-8)
        g = _gradient("quadratic", theta_a.tolist())
        G = G + g**2  # AdaGrad: eps = 1e-10
        theta_a = theta_a - 0.5 * g / (G.sqrt() + 1e-10)
        assert torch.allclose(rms[t], theta_r, rtol=1e-12) and torch.allclose(ada[t], theta_a, rtol=1e-12)


def test_paths_record_the_loss_at_every_point_and_stop_when_they_diverge():
    path = race.trajectory("rosenbrock", "momentum", lr=1e-3, steps=50)
    assert path.points.shape == (51, 2) and path.losses.shape == (51,) and path.diverged_at is None
    assert torch.allclose(path.losses, race.surface_value("rosenbrock", path.points))
    assert path.losses[-1] < path.losses[0]
    # plain gradient descent on the quadratic diverges once lr > 2 / (largest curvature 50) = 0.04
    assert race.trajectory("quadratic", "sgd", lr=0.039, steps=300).diverged_at is None
    gone = race.trajectory("quadratic", "sgd", lr=0.041, steps=2000)
    assert gone.diverged_at is not None and len(gone.points) == gone.diverged_at
    assert torch.isfinite(gone.points).all()


def test_race_gives_each_family_its_own_rate_and_the_same_start():
    paths = race.race("saddle", ("sgd", "adam"), lr=0.2, adaptive_lr=0.01, steps=1)
    assert torch.equal(paths["sgd"].points[0], paths["adam"].points[0])
    g = _gradient("saddle", race.SURFACES["saddle"].start)
    assert torch.allclose(paths["sgd"].points[1], paths["sgd"].points[0] - 0.2 * g)
    assert torch.allclose((paths["adam"].points[1] - paths["adam"].points[0]).abs(),
                          torch.full((2,), 0.01, dtype=torch.float64), rtol=1e-5)
    spec = race.SURFACES["rosenbrock"]
    default = race.race("rosenbrock", ("sgd",))["sgd"]
    assert len(default.points) == spec.steps + 1  # the surface's suggested steps and rates


@pytest.mark.parametrize("call, message", [
    (lambda: race.trajectory("himmelblau", "sgd", lr=0.1), "surface must be one of"),
    (lambda: race.trajectory("saddle", "lbfgs", lr=0.1), "optimizer must be one of"),
    (lambda: race.trajectory("saddle", "sgd", lr=0.0), "lr must be a positive finite number"),
    (lambda: race.trajectory("saddle", "sgd", lr=float("nan")), "lr must be a positive finite number"),
    (lambda: race.trajectory("saddle", "momentum", lr=0.1, mu=1.0), r"mu \(the momentum coefficient\) must be"),
    (lambda: race.trajectory("saddle", "nesterov", lr=0.1, mu=0.0), "nesterov needs a momentum coefficient"),
    (lambda: race.trajectory("saddle", "adam", lr=0.1, betas=(0.9, 1.0)), r"beta2 must be a number in \[0, 1\)"),
    (lambda: race.trajectory("saddle", "adam", lr=0.1, betas=0.9), "betas must be a pair"),
    (lambda: race.trajectory("saddle", "sgd", lr=0.1, steps=0), "steps must be an int from 1"),
    (lambda: race.trajectory("saddle", "sgd", lr=0.1, steps=2.5), "steps must be an int from 1"),
    (lambda: race.trajectory("saddle", "sgd", lr=0.1, start=(1.0, 2.0, 3.0)), "start must be a finite point"),
    (lambda: race.race("saddle", "adam"), "optimizers must be a sequence of names"),
    (lambda: race.race("saddle", ("adam", "adam")), "each optimizer may run once"),
    (lambda: race.surface_value("saddle", torch.zeros(3)), r"points must have shape \(\.\.\., 2\)"),
])
def test_bad_settings_say_what_is_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("surface", sorted(race.SURFACES))
def test_the_figure_draws_every_path_and_a_log_loss_axis(surface):
    fig = race.race_figure(surface, race.OPTIMIZERS, steps=20)
    ax_path, ax_loss = fig.axes
    assert ax_loss.get_yscale() == "log" and ax_loss.get_xlabel() == "step"
    assert ax_path.get_xlabel() == "$x$" and ax_path.get_ylabel() == "$y$"
    labels = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert [label.split(" (")[0] for label in labels] == [race.LABELS[n] for n in race.OPTIMIZERS]
    drawn = {line.get_color(): line for line in ax_loss.get_lines()}
    assert set(drawn) == {race.COLOURS[n] for n in race.OPTIMIZERS}  # one colour per optimizer, as in the legend
    assert surface in fig.get_suptitle()


def test_a_diverging_path_says_so_in_the_legend():
    fig = race.race_figure("quadratic", ("sgd", "adam"), lr=0.08, steps=200)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels[0].startswith("SGD (diverged at step") and labels[1] == "Adam"
    start_gap = race.surface_value("quadratic", race.SURFACES["quadratic"].start).item()
    assert fig.axes[1].get_ylim()[1] <= 100 * start_gap  # the diverging loss leaves at the top


def test_the_explorer_is_registered_and_follows_the_surface(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["optimizer_race_explorer"].figure is race.race_figure
    assert widgets.optimizer_race_explorer is race.optimizer_race_explorer
    explorer = race.optimizer_race_explorer(sgd=False, rmsprop=True, steps=30)
    assert explorer.kwargs["rmsprop"] and not explorer.kwargs["sgd"] and explorer.kwargs["steps"] == 30
    assert set(explorer.result) == {"momentum", "rmsprop", "adam"}
    assert widgets.DEMOS["optimizer_race_explorer"].arguments(**explorer.kwargs)["optimizers"] == (
        "momentum", "rmsprop", "adam")
    surface = explorer.children[0]
    surface.value = "rosenbrock"  # the rates and steps move to the surface's own
    spec = race.SURFACES["rosenbrock"]
    assert explorer.kwargs["surface"] == "rosenbrock" and explorer.kwargs["steps"] == spec.steps
    assert math.isclose(explorer.kwargs["lr"], spec.lr) and math.isclose(explorer.kwargs["adaptive_lr"],
                                                                         spec.adaptive_lr)
    assert len(explorer.result["adam"].points) == spec.steps + 1
    explorer.close()


def test_the_explorer_explains_a_setting_pytorch_refuses(monkeypatch, capsys):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    explorer = race.optimizer_race_explorer(nesterov=True, mu=0.0)
    assert explorer.result == {}
    assert "nesterov needs a momentum coefficient" in capsys.readouterr().out
    explorer.close()


def test_remembered_runs_are_handed_out_as_copies():
    first = race.trajectory("saddle", "adam", lr=0.1, steps=5)
    first.points.zero_()
    again = race.trajectory("saddle", "adam", lr=0.1, steps=5)
    assert torch.equal(again.points[0], torch.tensor(race.SURFACES["saddle"].start, dtype=torch.float64))
    assert not torch.equal(again.points, first.points)


def test_settings_no_chosen_optimizer_uses_are_greyed_out():
    explorer = race.optimizer_race_explorer(sgd=True, momentum=False, nesterov=False, adagrad=False, rmsprop=False,
                                       adam=False)
    controls = {c.description: c for c in explorer.children if hasattr(c, "description")}
    assert not controls["lr (SGD family)"].disabled
    assert controls["lr (adaptive)"].disabled and controls["momentum μ"].disabled
    assert controls["Adam β₁"].disabled and controls["Adam β₂"].disabled
    controls["Adam"].value = True
    assert not controls["Adam β₁"].disabled and not controls["lr (adaptive)"].disabled
    controls["SGD"].value = False
    assert controls["lr (SGD family)"].disabled
