"""The optimizer race (lecture 05): PyTorch's optimizers side by side on a 2-D loss surface.

A point theta = (x, y) starts at the surface's starting point and each optimizer
(``torch.optim.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``) moves it for ``steps``
steps, the gradient coming from autograd. Three surfaces, each with a known
minimum value f*:

============  ==========================================  ==========  ===========================
name          f(x, y)                                      f*          what it shows
============  ==========================================  ==========  ===========================
quadratic     x²/2 + 25 y²  (curvatures 1 and 50)          0 at (0,0)  an ill-conditioned valley
rosenbrock    (1 - x)² + 100 (y - x²)²                     0 at (1,1)  a curved, flat-bottomed valley
saddle        x² + y⁴/4 - y²/2                             -1/4 at     a saddle point at (0, 0)
                                                           (0, ±1)
============  ==========================================  ==========  ===========================

Two learning rates, because the two families read the rate differently: the SGD
family (``sgd``, ``momentum``, ``nesterov``) steps by ``lr`` times the gradient,
the adaptive family (``adagrad``, ``rmsprop``, ``adam``) by about ``adaptive_lr``
per coordinate, whatever the gradient's size. ``mu`` is the momentum coefficient
(PyTorch's ``momentum``), ``betas`` Adam's decay rates; RMSProp keeps PyTorch's
``alpha = 0.99`` and AdaGrad its defaults. Nothing here is an optimizer to reuse:
every step is PyTorch's own (assignment a3 asks for the optimizers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["SURFACES", "OPTIMIZERS", "Surface", "RacePath", "surface_value", "make_optimizer", "trajectory", "race",
           "race_figure", "optimizer_race_explorer"]


@dataclass(frozen=True)
class Surface:
    """A 2-D loss surface: ``f`` maps points (..., 2) to values (...); ``minimum`` is f* (its lowest value)."""

    name: str
    formula: str  # for titles (matplotlib mathtext)
    f: Callable[[Tensor], Tensor]
    minimum: float
    minimizers: tuple[tuple[float, float], ...]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    lr: float  # learning rates and steps that suit the surface: the widget's values when it is picked
    adaptive_lr: float
    steps: int


def _quadratic(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return 0.5 * x**2 + 25.0 * y**2  # Hessian diag(1, 50): condition number 50


def _rosenbrock(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _saddle(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return x**2 + 0.25 * y**4 - 0.5 * y**2  # Hessian diag(2, -1) at (0, 0); minima -1/4 at (0, ±1)


SURFACES: dict[str, Surface] = {
    "quadratic": Surface("quadratic", r"$x^2/2 + 25\,y^2$", _quadratic, 0.0, ((0.0, 0.0),), (-4.5, 1.0),
                         (-5.0, 5.0), (-1.5, 1.5), lr=0.025, adaptive_lr=0.1, steps=100),
    "rosenbrock": Surface("rosenbrock", r"$(1-x)^2 + 100\,(y - x^2)^2$", _rosenbrock, 0.0, ((1.0, 1.0),),
                          (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0), lr=0.001, adaptive_lr=0.05, steps=500),
    "saddle": Surface("saddle", r"$x^2 + y^4/4 - y^2/2$", _saddle, -0.25, ((0.0, 1.0), (0.0, -1.0)),
                      (-2.0, 0.01), (-2.5, 2.5), (-1.6, 1.6), lr=0.1, adaptive_lr=0.1, steps=100),
}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
ADAPTIVE = ("adagrad", "rmsprop", "adam")  # these step by about adaptive_lr per coordinate
LABELS = {"sgd": "SGD", "momentum": "momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
          "rmsprop": "RMSProp", "adam": "Adam"}
COLOURS = dict(zip(OPTIMIZERS, (PALETTE[7], PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[4], PALETTE[3]), strict=True))
MAX_STEPS = 5000
_ESCAPE = 1e6  # a point this far from the start has diverged: the path stops there


@dataclass(frozen=True)
class RacePath:
    """One optimizer's run. points: (T+1, 2), theta_0 (the start) to theta_T; losses: (T+1,) f at each point.

    ``diverged_at`` is the step at which the point left every sensible range (non-finite, or more than
    1e6 away from the start), after which the run stopped; None if it ran all its steps.
    """

    optimizer: str
    points: Tensor
    losses: Tensor
    diverged_at: int | None


def _choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _unit_interval(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _steps(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_STEPS:
        raise ValueError(f"steps must be an int from 1 to {MAX_STEPS}, got {value!r}")
    return int(value)


def surface_value(surface: str, points) -> Tensor:
    """f at ``points``: a tensor or array of shape (..., 2) (last axis x, y) -> values of shape (...)."""
    spec = SURFACES[_choice("surface", surface, tuple(SURFACES))]
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.ndim == 0 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2) (x, y on the last axis), got {tuple(points.shape)}")
    return spec.f(points)


def make_optimizer(name: str, params, lr: float, mu: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """PyTorch's optimizer ``name`` (one of :data:`OPTIMIZERS`) over ``params`` with learning rate ``lr``.

    momentum / nesterov: ``SGD(momentum=mu[, nesterov=True])``; adam: ``Adam(betas=betas)``;
    adagrad, rmsprop: PyTorch's defaults for everything but the rate.
    """
    name = _choice("optimizer", name, OPTIMIZERS)
    lr, mu = _positive("lr", lr), _unit_interval("mu (the momentum coefficient)", mu)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = (_unit_interval(f"beta{i}", b) for i, b in enumerate(betas, start=1))
    optim = torch.optim
    if name == "sgd":
        return optim.SGD(params, lr=lr)
    if name in ("momentum", "nesterov"):
        if name == "nesterov" and mu == 0:
            raise ValueError("nesterov needs a momentum coefficient mu > 0 (PyTorch refuses mu = 0)")
        return optim.SGD(params, lr=lr, momentum=mu, nesterov=name == "nesterov")
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr)
    return optim.Adam(params, lr=lr, betas=(beta1, beta2))


def trajectory(surface: str, optimizer: str, *, lr: float, steps: int | None = None, mu: float = 0.9,
               betas: tuple[float, float] = (0.9, 0.999), start=None) -> RacePath:
    """Run PyTorch's ``optimizer`` on ``surface`` from ``start`` (default: the surface's) for ``steps`` steps.

    Computes in float64; returns the :class:`RacePath` (points (T+1, 2), losses (T+1,)). Runs are
    deterministic, so recent ones are remembered: a widget redrawn for the same settings does not rerun them.
    """
    spec = SURFACES[_choice("surface", surface, tuple(SURFACES))]
    steps = _steps(spec.steps if steps is None else steps)
    start = torch.as_tensor(spec.start if start is None else start, dtype=torch.float64)
    if start.shape != (2,) or not torch.isfinite(start).all():
        raise ValueError(f"start must be a finite point (x, y), got {start.tolist()}")
    make_optimizer(optimizer, [torch.zeros(1, requires_grad=True)], lr, mu, betas)  # checks the settings
    points, losses, diverged_at = _run(surface, optimizer, float(lr), steps, float(mu),
                                       (float(betas[0]), float(betas[1])), tuple(start.tolist()))
    return RacePath(optimizer, points.clone(), losses.clone(), diverged_at)


@functools.lru_cache(maxsize=128)
def _run(surface: str, optimizer: str, lr: float, steps: int, mu: float, betas: tuple[float, float],
         start: tuple[float, float]) -> tuple[Tensor, Tensor, int | None]:
    """The optimization loop of :func:`trajectory` (arguments already checked); callers get copies."""
    f = SURFACES[surface].f
    origin = torch.tensor(start, dtype=torch.float64)
    theta = origin.clone().requires_grad_(True)  # (2,)
    opt = make_optimizer(optimizer, [theta], lr, mu, betas)
    points, losses, diverged_at = [origin.clone()], [f(origin)], None
    with torch.enable_grad():
        for step in range(1, steps + 1):
            opt.zero_grad()
            f(theta).backward()
            opt.step()
            point = theta.detach().clone()
            if not torch.isfinite(point).all() or (point - origin).abs().max() > _ESCAPE:
                diverged_at = step
                break
            points.append(point)
            losses.append(f(point))
    return torch.stack(points), torch.stack(losses), diverged_at


def race(surface: str = "quadratic", optimizers: Sequence[str] = OPTIMIZERS, *, lr: float | None = None,
         adaptive_lr: float | None = None, steps: int | None = None, mu: float = 0.9,
         betas: tuple[float, float] = (0.9, 0.999), start=None) -> dict[str, RacePath]:
    """One :func:`trajectory` per optimizer, all from the same start: ``lr`` for the SGD family,
    ``adaptive_lr`` for AdaGrad, RMSProp and Adam (each defaults to the surface's suggestion)."""
    spec = SURFACES[_choice("surface", surface, tuple(SURFACES))]
    if isinstance(optimizers, str) or not all(isinstance(name, str) for name in optimizers):
        raise ValueError(f"optimizers must be a sequence of names from {OPTIMIZERS}, got {optimizers!r}")
    for name in optimizers:
        _choice("optimizer", name, OPTIMIZERS)
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"each optimizer may run once, got {list(optimizers)}")
    lr = spec.lr if lr is None else lr
    adaptive_lr = spec.adaptive_lr if adaptive_lr is None else adaptive_lr
    return {name: trajectory(surface, name, lr=adaptive_lr if name in ADAPTIVE else lr, steps=steps, mu=mu,
                             betas=betas, start=start)
            for name in optimizers}


GAP_FLOOR = 1e-12  # the loss panel is on a log scale: f - f* below this is drawn at it


def race_figure(surface: str = "quadratic", optimizers: Sequence[str] = ("sgd", "momentum", "adam"),
                lr: float | None = None, adaptive_lr: float | None = None, steps: int | None = None,
                mu: float = 0.9, beta1: float = 0.9, beta2: float = 0.999) -> Figure:
    """Left: the paths over the surface's contours (the minima as stars); right: f - f* per step, log scale.

    Every optimizer has its own colour (:data:`COLOURS`) in both panels; a path that diverged is marked
    so in the legend, and its loss leaves the panel at the top (100 times the largest starting gap).
    The two axes of the left panel have different scales where the region is much wider than tall.
    """
    spec = SURFACES[_choice("surface", surface, tuple(SURFACES))]
    paths = race(surface, optimizers, lr=lr, adaptive_lr=adaptive_lr, steps=steps, mu=mu, betas=(beta1, beta2))
    lr = spec.lr if lr is None else lr
    adaptive_lr = spec.adaptive_lr if adaptive_lr is None else adaptive_lr
    steps = spec.steps if steps is None else steps
    xs = torch.linspace(*spec.xlim, 241, dtype=torch.float64)
    ys = torch.linspace(*spec.ylim, 201, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (201, 241) each
    gap = (spec.f(torch.stack([grid_x, grid_y], dim=-1)) - spec.minimum).numpy()  # (201, 241), >= 0
    levels = np.geomspace(max(gap[gap > 0].min(), 1e-3), gap.max(), 14)  # log-spaced: valleys stay visible
    with styled():
        fig, (ax_path, ax_loss) = plt.subplots(1, 2, figsize=(11.5, 4.6), layout="constrained",
                                               gridspec_kw={"width_ratios": (1.25, 1)})
        ax_path.contour(grid_x.numpy(), grid_y.numpy(), gap, levels=levels, colors="0.7", linewidths=0.7)
        ax_path.plot(*np.array(spec.minimizers).T, linestyle="none", marker="*", markersize=13, color="black",
                     zorder=4)
        ax_path.plot(*spec.start, marker="o", color="black", markersize=5, zorder=4)
        for name, path in paths.items():
            points = path.points.numpy()
            label = LABELS[name] + (f" (diverged at step {path.diverged_at})" if path.diverged_at else "")
            ax_path.plot(points[:, 0], points[:, 1], color=COLOURS[name], linewidth=1.4, marker=".",
                         markersize=3, label=label)
            ax_loss.semilogy(np.arange(len(path.losses)),
                             np.maximum(path.losses.numpy() - spec.minimum, GAP_FLOOR), color=COLOURS[name],
                             linewidth=1.6, label=label)
        ax_path.set_xlim(*spec.xlim)
        ax_path.set_ylim(*spec.ylim)
        ax_path.set_xlabel("$x$")
        ax_path.set_ylabel("$y$")
        ax_path.set_title("paths from the start (dot) towards a minimum (star)", fontsize=10)
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel(r"$f - f^*$ (log scale)")
        ax_loss.set_title(f"loss above the minimum (drawn at least at {GAP_FLOOR:.0e})", fontsize=10)
        ax_loss.set_xlim(0, steps)
        if paths:  # a diverging path leaves through the top instead of stretching the axis to 1e100
            start_gap = max(p.losses[0].item() - spec.minimum for p in paths.values())
            ax_loss.set_ylim(top=max(100 * start_gap, 10 * GAP_FLOOR))
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
        if paths:
            handles = [Line2D([], [], color=COLOURS[n], linewidth=2,
                              label=LABELS[n] + (f" (diverged at step {p.diverged_at})" if p.diverged_at else ""))
                       for n, p in paths.items()]
            ax_loss.legend(handles=handles, fontsize=8, loc="best")
        rates = []
        if any(n not in ADAPTIVE for n in paths):
            rates.append(f"lr {lr:g}" + (f", momentum μ {mu:g}" if {"momentum", "nesterov"} & set(paths) else ""))
        if any(n in ADAPTIVE for n in paths):
            rates.append(f"adaptive lr {adaptive_lr:g}" + (f", betas ({beta1:g}, {beta2:g})" if "adam" in paths
                                                           else ""))
        fig.suptitle(f"{spec.name}: f = {spec.formula}, {steps} steps" + (f"; {'; '.join(rates)}" if rates else ""))
    return fig


def _figure_arguments(surface, sgd, momentum, nesterov, adagrad, rmsprop, adam, lr, adaptive_lr, mu, beta1,
                      beta2, steps) -> dict:
    """The controls' values -> :func:`race_figure`'s arguments (one checkbox per optimizer)."""
    chosen = dict(sgd=sgd, momentum=momentum, nesterov=nesterov, adagrad=adagrad, rmsprop=rmsprop, adam=adam)
    return dict(surface=surface, optimizers=tuple(name for name, on in chosen.items() if on), lr=lr,
                adaptive_lr=adaptive_lr, steps=steps, mu=mu, beta1=beta1, beta2=beta2)


@demo(figure=race_figure, arguments=_figure_arguments)
def optimizer_race_explorer(surface: str = "quadratic", sgd: bool = True, momentum: bool = True,
                            nesterov: bool = False, adagrad: bool = False, rmsprop: bool = False,
                            adam: bool = True, lr: float = 0.025, adaptive_lr: float = 0.1, mu: float = 0.9,
                            beta1: float = 0.9, beta2: float = 0.999, steps: int = 100):
    """Controls for :func:`race_figure`: the surface, a checkbox per optimizer, the two learning rates
    (log sliders), the momentum coefficient, Adam's betas and the number of steps, starting at the values
    given. Picking another surface moves the rates and steps to the values that suit it.
    ``explorer.result`` is the dict of :class:`RacePath` on show."""
    import ipywidgets as widgets

    style = {"description_width": "8em"}
    wide = widgets.Layout(width="24em")
    controls = {
        "surface": widgets.Dropdown(options=tuple(SURFACES), value=surface, description="surface", style=style),
        **{name: widgets.Checkbox(value=value, description=LABELS[name], indent=False)
           for name, value in (("sgd", sgd), ("momentum", momentum), ("nesterov", nesterov),
                               ("adagrad", adagrad), ("rmsprop", rmsprop), ("adam", adam))},
        "lr": widgets.FloatLogSlider(value=lr, base=10, min=-4, max=0, step=0.1, description="lr (SGD family)",
                                     readout_format=".2g", continuous_update=False, style=style, layout=wide),
        "adaptive_lr": widgets.FloatLogSlider(value=adaptive_lr, base=10, min=-3, max=0, step=0.1,
                                              description="lr (adaptive)", readout_format=".2g",
                                              continuous_update=False, style=style, layout=wide),
        "mu": widgets.FloatSlider(value=mu, min=0.0, max=0.99, step=0.01, description="momentum μ",
                                  continuous_update=False, style=style, layout=wide),
        "beta1": widgets.FloatSlider(value=beta1, min=0.0, max=0.99, step=0.01, description="Adam β₁",
                                     continuous_update=False, style=style, layout=wide),
        "beta2": widgets.FloatSlider(value=beta2, min=0.9, max=0.9999, step=0.0001, description="Adam β₂",
                                     readout_format=".4f", continuous_update=False, style=style, layout=wide),
        "steps": widgets.IntSlider(value=steps, min=10, max=1000, step=10, description="steps",
                                   continuous_update=False, style=style, layout=wide),
    }

    def suit(change) -> None:  # a new surface: its learning rates and number of steps
        spec = SURFACES[change["new"]]
        controls["lr"].value, controls["adaptive_lr"].value = spec.lr, spec.adaptive_lr
        controls["steps"].value = spec.steps

    controls["surface"].observe(suit, names="value")  # registered first, so it runs before the redraw

    def applicable(_=None) -> None:  # a setting no chosen optimizer uses is greyed out
        chosen = {name for name in OPTIMIZERS if controls[name].value}
        controls["lr"].disabled = not chosen - set(ADAPTIVE)
        controls["adaptive_lr"].disabled = not chosen & set(ADAPTIVE)
        controls["mu"].disabled = not chosen & {"momentum", "nesterov"}
        controls["beta1"].disabled = controls["beta2"].disabled = "adam" not in chosen

    for name in OPTIMIZERS:
        controls[name].observe(applicable, names="value")
    applicable()

    def show(**values):
        arguments = _figure_arguments(**values)
        try:
            fig = race_figure(**arguments)
        except ValueError as err:  # e.g. Nesterov with momentum 0, which PyTorch refuses
            print(f"No race with these settings: {err}")
            return {}
        plt.show()
        plt.close(fig)
        return race(arguments["surface"], arguments["optimizers"], lr=arguments["lr"],
                    adaptive_lr=arguments["adaptive_lr"], steps=arguments["steps"], mu=arguments["mu"],
                    betas=(arguments["beta1"], arguments["beta2"]))

    return widgets.interactive(show, **controls)
