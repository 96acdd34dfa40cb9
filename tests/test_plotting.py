import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import plotting  # noqa: E402
from course_utils.training import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_show_images_titles_labels_and_marks_wrong_predictions():
    images = torch.rand(5, 3, 8, 8)
    fig = plotting.show_images(images, [0, 1, 2, 0, 1], classes=["a", "b", "c"], predictions=[0, 2, 2, 0, 1],
                               ncols=3, title="grid")
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 5
    assert axes[0].get_title() == "a\n→ a"
    assert axes[1].get_title() == "b\n→ c" and axes[1].title.get_color() == plotting.PALETTE[3]
    assert fig._suptitle.get_text() == "grid"


def test_show_images_accepts_gray_and_numpy():
    fig = plotting.show_images(np.random.rand(3, 1, 6, 6), [1, 2, 3])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["1", "2", "3"]
    fig = plotting.show_images(torch.rand(2, 6, 6))
    assert sum(1 for ax in fig.axes if ax.images) == 2


@pytest.mark.parametrize("images", [torch.rand(2, 2, 4, 4), torch.rand(4, 4), torch.rand(0, 3, 4, 4)])
def test_show_images_rejects_bad_shapes(images):
    with pytest.raises(ValueError, match="images must be|at least one image"):
        plotting.show_images(images)


def test_show_images_rejects_wrong_number_of_labels():
    with pytest.raises(ValueError, match=r"labels must have one entry per image \(3\), got 2"):
        plotting.show_images(torch.rand(3, 1, 4, 4), [0, 1])


def test_plot_history_draws_training_and_validation():
    history = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_acc=[0.5, 0.8], val_loss=[1.1, 0.7],
                      val_acc=[0.4, 0.7], seconds=[1, 1], device="cpu")
    fig = plotting.plot_history(history)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert loss_ax.get_xlabel() == "epoch"
    assert len(loss_ax.lines) == 2
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_history(History())


def test_signed_heatmap_is_centred_at_zero():
    image = torch.rand(3, 8, 8)
    heat = torch.linspace(-1, 3, 64).view(8, 8)
    ax = plotting.show_heatmap(image, heat)
    overlay = ax.images[-1]
    assert overlay.get_cmap().name == plotting.DIVERGING
    assert overlay.norm.vcenter == 0 and overlay.norm.vmin == -3 and overlay.norm.vmax == 3
    ax = plotting.show_heatmap(image[0], heat.abs())
    assert ax.images[-1].get_cmap().name == plotting.SEQUENTIAL
    with pytest.raises(ValueError, match=r"heatmap must be \(H, W\) = \(8, 8\)"):
        plotting.show_heatmap(image, torch.rand(4, 4))


def test_show_signed_annotates_and_centres():
    ax = plotting.show_signed([[0, -2], [1, 0.5]], annotate=True, title="kernel")
    assert ax.images[0].norm.vcenter == 0 and ax.images[0].norm.vmin == -2
    assert len(ax.texts) == 4 and ax.get_title() == "kernel"
    with pytest.raises(ValueError, match="2-D"):
        plotting.show_signed(np.zeros(3))


def test_style_sets_the_colour_blind_safe_cycle():
    plotting.style()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert colours[:3] == plotting.PALETTE[:3]


@pytest.mark.notebook
def test_every_figure_shows_in_a_notebook_even_the_first_drawn_in_course_style(tmp_path):
    """Regression: the inline backend loaded inside rc_context switched interactive mode off for good."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from course_utils.notebooks import run_notebook

    nb = new_notebook(cells=[new_code_cell("import torch\nfrom course_utils import plotting\nplotting.style()"),
                             new_code_cell("plotting.show_images(torch.rand(4, 3, 8, 8));"),
                             new_code_cell("plotting.show_images(torch.rand(4, 3, 8, 8));")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path / "figures.ipynb"
    nbformat.write(nb, path)
    executed = run_notebook(path)
    shown = [[o.output_type for o in cell.outputs] for cell in executed.cells]
    assert shown == [[], ["display_data"], ["display_data"]]
