"""Widgets: the plain figure functions are tested here; the browser suite tests the rendering."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils import shapes, widgets


def _image_data(fig):
    return [ax.images[0].get_array() for ax in fig.axes if ax.images]


def test_shapes_figure_has_a_row_per_class_with_images_and_masks(fast_mode):
    per_class = 3
    fig = widgets.shapes_figure("basic", per_class=per_class)
    n_classes = len(shapes.class_names("basic"))
    assert len(fig.axes) == n_classes * 2 * per_class
    arrays = _image_data(fig)
    assert len(arrays) == n_classes * 2 * per_class  # every cell filled
    images = [a for a in arrays if a.ndim == 3]
    masks = [a for a in arrays if a.ndim == 2]
    assert len(images) == len(masks) == n_classes * per_class
    assert all(a.shape == (32, 32, 3) for a in images)
    assert all(set(np.unique(m)) <= {0.0, 1.0} for m in masks)
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert labels == list(shapes.class_names("basic"))
    plt.close(fig)


def test_shapes_figure_follows_its_controls(fast_mode):
    base = _image_data(widgets.shapes_figure(seed=0, per_class=1))
    same = _image_data(widgets.shapes_figure(seed=0, per_class=1))
    other_seed = _image_data(widgets.shapes_figure(seed=1, per_class=1))
    extra = widgets.shapes_figure("extra", per_class=1)
    assert all(np.array_equal(a, b) for a, b in zip(base, same))
    assert not all(np.array_equal(a, b) for a, b in zip(base, other_seed))
    assert [t.get_text() for ax in extra.axes for t in ax.texts] == list(shapes.class_names("extra"))
    assert "'extra'" in extra._suptitle.get_text()
    plt.close("all")


@pytest.mark.parametrize("kwargs, message", [
    ({"per_class": 0}, "per_class must be at least 1"),
    ({"family": "triangles"}, "triangles"),
    ({"style": "neon"}, "neon"),
])
def test_shapes_figure_rejects_bad_controls(kwargs, message):
    with pytest.raises(ValueError, match=message):
        widgets.shapes_figure(**kwargs)


def test_shapes_explorer_wires_every_control():
    explorer = widgets.shapes_explorer()
    controls = {c.description: c for c in explorer.children[:-1]}
    assert set(controls) == {"family", "style", "noise", "seed"}
    controls["seed"].value = 3
    controls["family"].value = "extra"
    assert explorer.kwargs["seed"] == 3 and explorer.kwargs["family"] == "extra"
    plt.close("all")
