"""The transfer explorer (lecture 08): it gathers the right runs, its statistics are the seeds' mean and spread, its
figure draws every strategy with labelled axes and whole epochs, bad choices are refused, and the stored results
hold the whole table."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils import widgets
from course_utils.widgets import transfer as te


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _results(seeds=(1, 2, 3), epochs=4) -> dict:
    """A small made-up results file: the test accuracy of a run encodes its cell and seed, so a mix-up shows."""
    runs = []
    for t, target in enumerate(te.TARGETS):
        for s, size in enumerate(te.SIZES):
            for k, strategy in enumerate(te.STRATEGIES):
                for i, seed in enumerate(seeds):
                    acc = 0.1 + 0.2 * t + 0.1 * s + 0.05 * k + 0.01 * i
                    runs.append({"target": target, "size": size, "strategy": strategy, "seed": seed,
                                 "n_train": 10 * (5 if size == "little" else 100),
                                 "val_acc": [acc * (e + 1) / epochs for e in range(epochs)],
                                 "train_acc": [min(1.0, 2 * acc * (e + 1) / epochs) for e in range(epochs)],
                                 "test_acc": acc})
    config = {"targets": {"similar": "shapes-extra", "different": "digits"}, "per_class": {"little": 5, "more": 100},
              "strategies": list(te.STRATEGIES), "seeds": list(seeds)}
    return {"config": config, "runs": runs[::-1]}  # reversed: the seeds must come out sorted anyway


def test_a_cell_gathers_its_own_runs_sorted_by_seed():
    cell = te.transfer_cell("different", "more", "fine-tuning", _results())
    assert cell.seeds == (1, 2, 3)
    expected = np.array([0.1 + 0.2 + 0.1 + 0.05 + 0.01 * i for i in range(3)])
    np.testing.assert_allclose(cell.test_acc, expected)
    assert cell.val_acc.shape == cell.train_acc.shape == (3, 4) and cell.epochs == 4
    np.testing.assert_allclose(cell.val_acc[:, -1], expected)
    assert (cell.dataset, cell.per_class, cell.n_train) == ("digits", 100, 1000)


def test_the_mean_and_spread_are_over_seeds_with_n_minus_1():
    cell = te.transfer_cell("similar", "little", "from scratch", _results())
    accs = [0.2, 0.21, 0.22]
    assert math.isclose(cell.mean, 0.21)
    assert math.isclose(cell.std, math.sqrt(sum((a - 0.21) ** 2 for a in accs) / 2))
    one = te.transfer_cell("similar", "little", "from scratch", _results(seeds=(7,)))
    assert one.std == 0.0 and math.isclose(one.mean, 0.2)


def test_missing_values_become_nan_in_the_curves():
    results = _results()
    results["runs"][0]["val_acc"][1] = None  # the script stores a value that is not finite as None
    run = results["runs"][0]
    cell = te.transfer_cell(run["target"], run["size"], run["strategy"], results)
    assert np.isnan(cell.val_acc).sum() == 1


@pytest.mark.parametrize("bad, message", [
    ({"target": "same"}, "target must be one of 'similar', 'different'; got 'same'"),
    ({"size": "lots"}, "size must be one of 'little', 'more'"),
    ({"strategy": "fine tuning"}, "strategy must be one of 'feature extraction', 'fine-tuning', 'from scratch'"),
])
def test_bad_choices_say_what_is_allowed(bad, message):
    choice = {"target": "similar", "size": "little", "strategy": "fine-tuning", **bad}
    with pytest.raises(ValueError, match=message):
        te.transfer_cell(**choice, results=_results())


def test_a_cell_without_runs_says_how_to_make_them():
    results = _results()
    results["runs"] = [r for r in results["runs"] if r["strategy"] != "from scratch"]
    with pytest.raises(ValueError, match="no run for target 'similar', size 'more', strategy 'from scratch'.*"
                                         "scripts/transfer_table.py"):
        te.transfer_cell("similar", "more", "from scratch", results)


def test_a_missing_results_file_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="python scripts/transfer_table.py"):
        te.load_results(tmp_path / "nothing.json")


@pytest.mark.parametrize("curve", te.CURVES)
def test_the_figure_shows_every_strategy_on_whole_epochs(curve):
    fig = te.transfer_figure("different", "little", curve, results=_results(epochs=7))
    ax_curve, ax_bar = fig.axes
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == list(te.STRATEGIES)
    assert ax_curve.get_xlabel() == "epoch" and ax_curve.get_ylabel() == f"{curve} accuracy"
    ticks = [t for t in ax_curve.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax_bar.get_ylabel() and len(ax_bar.patches) == 3
    heights = sorted(p.get_height() for p in ax_bar.patches)
    cells = sorted(te.transfer_cell("different", "little", s, _results(epochs=7)).mean for s in te.STRATEGIES)
    np.testing.assert_allclose(heights, cells)
    assert "digits" in fig._suptitle.get_text() and "5 training images per class" in fig._suptitle.get_text()


def test_the_figure_refuses_an_unknown_curve():
    with pytest.raises(ValueError, match="curve must be one of 'validation', 'training'"):
        te.transfer_figure("similar", "little", "test", results=_results())


def test_the_stored_results_hold_the_whole_table():
    results = te.load_results()
    seeds = results["config"]["seeds"]
    assert len(seeds) >= 3, "the table needs several seeds for a spread"
    for target in te.TARGETS:
        for size in te.SIZES:
            for strategy in te.STRATEGIES:
                cell = te.transfer_cell(target, size, strategy)
                assert cell.seeds == tuple(sorted(seeds))
                assert cell.n_train == 10 * results["config"]["per_class"][size]
                assert np.all((cell.test_acc >= 0) & (cell.test_acc <= 1))


def test_the_explorer_is_registered_and_shows_its_result(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    assert widgets.DEMOS["transfer_explorer"].figure is te.transfer_figure
    assert widgets.transfer_explorer is te.transfer_explorer
    widget = te.transfer_explorer(target="different", size="more", curve="training")
    assert widget.kwargs == {"target": "different", "size": "more", "curve": "training"}
    assert [s for s, _, _ in widget.result] == list(te.STRATEGIES)
    assert widget.result[1][1] == te.transfer_cell("different", "more", "fine-tuning").mean
    widget.close()
    with pytest.raises(ValueError, match="size must be one of"):
        te.transfer_explorer(size="all")
