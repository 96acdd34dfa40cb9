import ast

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
    assert axes[0].get_title() == "a\n→ a" and axes[0].title.get_color() == "black" and not axes[0].patches
    assert axes[1].get_title() == "b\n→ c" and axes[1].title.get_color() == plotting.WRONG
    assert [patch.get_edgecolor() for patch in axes[1].patches] == [matplotlib.colors.to_rgba(plotting.WRONG)]
    assert fig.get_suptitle() == "grid"
    # the figure names its own colour: a legend in the colour of the marks, with the count
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["wrong prediction (1 of 5)"]
    assert legend.get_patches()[0].get_edgecolor() == matplotlib.colors.to_rgba(plotting.WRONG)


def _overlaps(fig):
    """(what, where) pairs of titles that cover an image (or the figure title) once the figure is drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    images = [(i, ax.images[0].get_window_extent(renderer)) for i, ax in enumerate(fig.axes) if ax.images]
    titles = [(i, ax.title.get_window_extent(renderer)) for i, ax in enumerate(fig.axes) if ax.get_title()]
    found = [(f"title {i}", f"image {j}") for i, box in titles for j, image in images if box.overlaps(image)]
    if fig.get_suptitle():
        top = fig._suptitle.get_window_extent(renderer)
        found += [("figure title", f"title {i}") for i, box in titles if box.overlaps(top)]
        found += [("figure title", f"image {j}") for j, image in images if image.overlaps(top)]
    return found


@pytest.mark.parametrize("n, ncols", [(16, 8), (10, 10), (7, 3), (1, 8)])
def test_image_titles_never_cover_the_images_above_them(n, ncols):
    """Regression: with tight_layout, the titles of a 2x8 grid ran into the first row's images."""
    labels = torch.arange(n) % 3
    fig = plotting.show_images(torch.rand(n, 3, 32, 32), labels, classes=["crescent", "hexagon", "arrow"],
                               predictions=(labels + 1) % 3, ncols=ncols, title="label → prediction")
    assert _overlaps(fig) == []
    for images in (torch.rand(n, 3, 32, 32), torch.rand(n, 1, 16, 24)):  # one title line, square or wide
        assert _overlaps(plotting.show_images(images, labels, ncols=ncols, title="one line each")) == []


def test_image_grid_reserves_room_for_titles_of_the_size_asked():
    fig, axes = plotting.image_grid(8, 4, scale=2.0, aspect=0.5, title_lines=2, title="photos")
    assert len(axes) == 8 and len(fig.axes) == 8 and not any(ax.axison for ax in axes)
    for ax in axes:
        ax.imshow(np.random.rand(64, 128))
        ax.set_title("astronaut\n(3, 128, 128)")  # the default title size, two lines
    assert _overlaps(fig) == []
    fig, axes = plotting.image_grid(5, 3)
    assert len(axes) == 5 and len(fig.axes) == 5  # the sixth cell of the 2x3 grid is removed
    with pytest.raises(ValueError, match="n must be a positive int"):
        plotting.image_grid(0)
    with pytest.raises(ValueError, match="title_lines must be an int >= 0"):
        plotting.image_grid(4, title_lines=-1)


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


@pytest.mark.parametrize("epochs", [1, 2, 3, 8, 40])
def test_training_curves_tick_whole_epochs_only(epochs):
    """Regression: three epochs were ticked 1.00, 1.25, ..., 3.00."""
    numbers = list(range(1, epochs + 1))
    history = History(epoch=numbers, train_loss=[1 / e for e in numbers], train_acc=[0.5] * epochs,
                      val_loss=[1 / e for e in numbers], val_acc=[0.5] * epochs, seconds=[1] * epochs)
    fig = plotting.plot_history(history)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert low < 1 and high > epochs  # every point is inside the axes


def test_colour_bars_need_a_label():
    fig, ax = plt.subplots()
    shown = ax.imshow(np.random.rand(4, 4))
    bar = plotting.colorbar(shown, ax, "weight")
    assert bar.ax.get_ylabel() == "weight" and bar.mappable is shown
    for missing in ("", "  ", None):
        with pytest.raises(ValueError, match="a colour bar needs a label"):
            plotting.colorbar(shown, ax, missing)
    fig, axes = plt.subplots(1, 2)
    bar = plotting.colorbar(axes[0].imshow(np.eye(3)), axes, "activation", orientation="horizontal")
    assert bar.ax.get_xlabel() == "activation"


def test_heatmap_helpers_take_the_colour_bar_label_not_a_switch():
    ax = plotting.show_signed(np.eye(3) - 0.5, colorbar="weight")
    (bar_ax,) = [a for a in ax.figure.axes if a is not ax]
    assert bar_ax.get_ylabel() == "weight"
    ax = plotting.show_heatmap(torch.rand(3, 4, 4), torch.rand(4, 4), colorbar="saliency")
    assert [a.get_ylabel() for a in ax.figure.axes if a is not ax] == ["saliency"]
    for helper, args in ((plotting.show_signed, (np.eye(3),)), (plotting.show_heatmap, (np.zeros((4, 4)),) * 2)):
        assert len(helper(*args).figure.axes) == 1  # no bar unless asked for
        assert len(helper(*args, colorbar=False).figure.axes) == 1
        with pytest.raises(ValueError, match="colorbar= takes the colour bar's label"):
            helper(*args, colorbar=True)


def _unlabelled_colour_bars(source: str) -> list[int]:
    """Lines of ``source`` that draw a colour bar with no ``label=`` (``plotting.colorbar`` always has one)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    lines = []
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "colorbar"
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "plotting")
                and not any(k.arg in ("label", None) for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def test_the_colour_bar_scan_finds_unlabelled_bars():
    assert _unlabelled_colour_bars("fig.colorbar(im, ax=ax)\nplt.colorbar(im)") == [1, 2]
    assert _unlabelled_colour_bars("fig.colorbar(im, ax=ax, label='weight')\nplotting.colorbar(im, ax, 'x')") == []


def test_every_colour_bar_in_the_course_is_labelled():
    import nbformat

    from course_utils.notebooks import COURSE_ROOT, stored_notebooks

    found = []
    for path in stored_notebooks():
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and "colorbar" in cell.source:
                found += [f"{path.relative_to(COURSE_ROOT)} cell {index} line {line}"
                          for line in _unlabelled_colour_bars(cell.source)]
    for path in sorted((COURSE_ROOT / "course_utils").rglob("*.py")):
        if "colorbar" in (source := path.read_text()):
            found += [f"{path.relative_to(COURSE_ROOT)} line {line}" for line in _unlabelled_colour_bars(source)]
    assert found == [], "colour bars without a label (use plotting.colorbar(mappable, ax, label)): " + ", ".join(found)


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
    assert len(ax.figure.axes) == 1  # no colour bar unless given a label
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
