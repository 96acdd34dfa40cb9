"""The transfer-learning table, one cell at a time (lecture 08).

``scripts/transfer_table.py`` trains, from the course checkpoint "shapes_resnet", every combination of

- target:   "similar" (ten other shapes) or "different" (handwritten digits),
- size:     "little" (a few training images per class) or "more" (about a hundred per class),
- strategy: "feature extraction", "fine-tuning" or "from scratch",

with several seeds, and stores per run the accuracy after every epoch (training and validation) and the test
accuracy after the last one in ``lectures/precomputed/transfer_table.json``. This module only reads that
file: :func:`transfer_cell` gathers the runs of one (target, size, strategy), :func:`transfer_figure` draws
one (target, size) cell of the table, and :func:`transfer_explorer` is the widget around it. Nothing here
trains or builds a model (assignment a4 asks for that).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..plotting import PALETTE, styled
from .registry import demo

__all__ = ["RESULTS", "TARGETS", "SIZES", "STRATEGIES", "CURVES", "TransferCell", "load_results", "transfer_cell",
           "transfer_figure", "transfer_explorer"]

RESULTS = Path(__file__).resolve().parents[2] / "lectures" / "precomputed" / "transfer_table.json"
TARGETS = ("similar", "different")
SIZES = ("little", "more")
STRATEGIES = ("feature extraction", "fine-tuning", "from scratch")
CURVES = ("validation", "training")
_COLOURS = dict(zip(STRATEGIES, (PALETTE[0], PALETTE[1], PALETTE[2]), strict=True))
_MARKERS = dict(zip(STRATEGIES, "os^", strict=True))


@dataclass(frozen=True)
class TransferCell:
    """The runs of one (target, size, strategy), one per seed.

    test_acc:  (seeds,) test accuracy after the last epoch
    val_acc:   (seeds, epochs) validation accuracy after each epoch
    train_acc: (seeds, epochs) training accuracy during each epoch
    """

    target: str
    size: str
    strategy: str
    dataset: str
    per_class: int
    n_train: int
    seeds: tuple[int, ...]
    test_acc: np.ndarray
    val_acc: np.ndarray
    train_acc: np.ndarray

    @property
    def mean(self) -> float:
        """Mean test accuracy over the seeds."""
        return float(self.test_acc.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the test accuracy over the seeds (n - 1 in the denominator; 0 for one seed)."""
        return float(self.test_acc.std(ddof=1)) if len(self.test_acc) > 1 else 0.0

    @property
    def epochs(self) -> int:
        return self.val_acc.shape[1]


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


@functools.cache
def _read(path: str, modified: float) -> dict:  # keyed by the file's time stamp: a rerun of the script is seen
    return json.loads(Path(path).read_text())


def load_results(path: Path | str | None = None) -> dict:
    """The precomputed results (the JSON ``scripts/transfer_table.py`` writes); ``path`` defaults to
    :data:`RESULTS`."""
    path = Path(path) if path is not None else RESULTS
    if not path.exists():
        raise FileNotFoundError(f"no precomputed transfer results at {path}; make them with "
                                f"`python scripts/transfer_table.py` (a few minutes on a CPU)")
    return _read(str(path), path.stat().st_mtime)


def _curve(values: list) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def transfer_cell(target: str, size: str, strategy: str, results: dict | None = None) -> TransferCell:
    """Gather the runs of one (target, size, strategy) from ``results`` (default: :func:`load_results`)."""
    _check_choice("target", target, TARGETS)
    _check_choice("size", size, SIZES)
    _check_choice("strategy", strategy, STRATEGIES)
    results = load_results() if results is None else results
    runs = sorted((r for r in results["runs"]
                   if (r["target"], r["size"], r["strategy"]) == (target, size, strategy)), key=lambda r: r["seed"])
    if not runs:
        raise ValueError(f"the results hold no run for target {target!r}, size {size!r}, strategy {strategy!r}; "
                         f"rerun `python scripts/transfer_table.py`")
    config = results["config"]
    return TransferCell(target, size, strategy, config["targets"][target], config["per_class"][size],
                        runs[0]["n_train"], tuple(r["seed"] for r in runs),
                        np.array([r["test_acc"] for r in runs], dtype=float),
                        np.array([_curve(r["val_acc"]) for r in runs]),
                        np.array([_curve(r["train_acc"]) for r in runs]))


def transfer_figure(target: str = "similar", size: str = "little", curve: str = "validation",
                    results: dict | None = None) -> Figure:
    """One cell of the table: the accuracy per epoch of each strategy (mean over seeds, band from the lowest to the
    highest seed) and the test accuracy after the last epoch (bars: mean; dots: the seeds)."""
    _check_choice("curve", curve, CURVES)
    cells = [transfer_cell(target, size, s, results) for s in STRATEGIES]
    first = cells[0]
    chance = 1 / 10  # both targets have ten classes
    with styled():
        fig, (ax_curve, ax_bar) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", width_ratios=(1.6, 1))
        for cell in cells:
            values = cell.val_acc if curve == "validation" else cell.train_acc  # (seeds, epochs)
            epochs = np.arange(1, values.shape[1] + 1)
            colour = _COLOURS[cell.strategy]
            ax_curve.plot(epochs, values.mean(0), marker=_MARKERS[cell.strategy], markersize=4, color=colour,
                          label=cell.strategy)
            ax_curve.fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.2, linewidth=0)
        ax_curve.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance (10 classes)")
        ax_curve.set_xlabel("epoch")
        ax_curve.set_ylabel(f"{curve} accuracy")
        ax_curve.set_ylim(0, 1.02)
        ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_curve.set_title(f"{curve} accuracy per epoch: mean of {len(first.seeds)} seeds, band lowest to highest",
                           fontsize=10)
        fig.legend(*ax_curve.get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=9,
                   frameon=False)
        x = np.arange(len(cells))
        for i, cell in enumerate(cells):
            ax_bar.bar(i, cell.mean, color=_COLOURS[cell.strategy], alpha=0.8, width=0.6)
            ax_bar.plot(np.full(len(cell.test_acc), i), cell.test_acc, "o", color="black", markersize=4)
            top = max(cell.mean, float(cell.test_acc.max()))  # the label goes above the bar and every dot
            ax_bar.text(i, top + 0.02, f"{cell.mean:.1%}\n± {cell.std:.1%}", ha="center", va="bottom", fontsize=8)
        ax_bar.axhline(chance, color="grey", linestyle=":", linewidth=1)
        ax_bar.set_xticks(x, [c.strategy.replace(" ", "\n", 1) for c in cells], fontsize=9)
        ax_bar.set_ylim(0, 1.22)  # room for the labels above a bar at 100%
        ax_bar.set_yticks(np.linspace(0, 1, 6))
        ax_bar.set_ylabel("test accuracy after the last epoch")
        ax_bar.set_title("test accuracy (bars: mean ± std; dots: seeds)", fontsize=10)
        fig.suptitle(f"{target} target ({first.dataset}), {size} data: {first.per_class} training images per class "
                     f"({first.n_train} in all)")
    return fig


@demo(figure=transfer_figure)
def transfer_explorer(target: str = "similar", size: str = "little", curve: str = "validation"):
    """Controls for :func:`transfer_figure`: the target, the amount of data and which curve to show.
    ``explorer.result`` lists the (strategy, mean, std) of the test accuracy on show."""
    import ipywidgets as widgets

    for name, value, choices in (("target", target, TARGETS), ("size", size, SIZES), ("curve", curve, CURVES)):
        _check_choice(name, value, choices)
    style = {"description_width": "6em"}
    controls = {
        "target": widgets.ToggleButtons(options=TARGETS, value=target, description="target", style=style),
        "size": widgets.ToggleButtons(options=SIZES, value=size, description="data", style=style),
        "curve": widgets.ToggleButtons(options=CURVES, value=curve, description="curve", style=style),
    }

    def show(target, size, curve):
        fig = transfer_figure(target, size, curve)
        plt.show()
        plt.close(fig)
        cells = [transfer_cell(target, size, s) for s in STRATEGIES]
        return [(cell.strategy, cell.mean, cell.std) for cell in cells]

    return widgets.interactive(show, **controls)
