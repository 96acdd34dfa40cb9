"""The widget registry: every widget is registered with the plain function that draws it, and has a still.

The browser suite (tests/browser) checks the same mapping in JupyterLab; these tests check it
in-process, in milliseconds, and cover static mode (the course website).
"""

import inspect
import re

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances

from course_utils import widgets
from course_utils.notebooks import COURSE_ROOT, stored_notebooks
from course_utils.widgets import registry


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def test_every_widget_builder_is_registered():
    assert {"shapes_explorer", "sliding_window_explorer", "conv_matrix_viewer"} <= set(widgets.DEMOS)
    assert set(widgets.DEMOS) <= set(widgets.__all__), "every registered widget is exported by course_utils.widgets"
    for name in widgets.__all__:
        thing = getattr(widgets, name)
        if not inspect.isfunction(thing) or any(p.default is inspect.Parameter.empty
                                                for p in inspect.signature(thing).parameters.values()):
            continue  # classes and functions that need arguments are not widget builders
        made = thing()
        if isinstance(made, ipywidgets.Widget):
            assert name in widgets.DEMOS, f"widgets.{name} builds a widget but is not registered (@demo)"
            made.close()
        plt.close("all")


def test_every_widget_a_lecture_calls_is_registered():
    called = set()
    for lecture in stored_notebooks(folders=("lectures",)):
        called |= set(re.findall(r"widgets\.(\w+_(?:explorer|viewer))\(", lecture.read_text()))
    assert called and called <= set(widgets.DEMOS)


@pytest.mark.parametrize("name", sorted(widgets.DEMOS))
def test_a_widget_shows_what_its_plain_function_draws(name, fast_mode, monkeypatch):
    demo = widgets.DEMOS[name]
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(_pixels(plt.gcf())))
    widget = demo.build()
    assert getattr(widget, registry.DEMO_ATTRIBUTE) == name
    assert widget.kwargs == demo.starting_values()  # the controls start at the builder's arguments
    shown.clear()
    widget.update()  # draw again for the current values, as a moved control does
    expected = demo.draw(**widget.kwargs)
    assert len(shown) == 1 and np.array_equal(shown[0], _pixels(expected))
    widget.close()
    plt.close("all")


def test_builders_start_from_the_values_given(fast_mode):
    explorer = widgets.sliding_window_explorer(i=9, s=2, position=5)
    assert explorer.kwargs == {"i": 9, "k": 3, "s": 2, "p": 0, "d": 1, "position": 5}
    viewer = widgets.conv_matrix_viewer(k=3, row=2, col=2)
    assert viewer.kwargs["row"] == 2 and viewer.kwargs["col"] == 2  # the weight sliders follow k
    shapes = widgets.shapes_explorer(family="extra", seed=3)
    assert shapes.kwargs["family"] == "extra" and shapes.kwargs["seed"] == 3
    with pytest.raises(TypeError):
        widgets.DEMOS["sliding_window_explorer"].starting_values(q=1)
    for w in (explorer, viewer, shapes):
        w.close()
    plt.close("all")


@pytest.mark.parametrize("name", sorted(widgets.DEMOS))
def test_in_static_mode_a_builder_shows_a_still_and_a_note(name, fast_mode, monkeypatch):
    monkeypatch.setenv(registry.STATIC_ENV, "1")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **k: shown.append(_pixels(obj)))
    before = len(_instances)
    note = widgets.DEMOS[name].build()
    assert len(_instances) == before, "static mode must not create widgets (a static page cannot run them)"
    assert isinstance(note, registry.StaticNote)
    assert f"widgets.{name}()" in repr(note) and "JupyterLab" in note._repr_html_()
    expected = widgets.DEMOS[name].draw(**widgets.DEMOS[name].starting_values())
    assert len(shown) == 1 and np.array_equal(shown[0], _pixels(expected))
    assert not plt.get_fignums() or plt.get_fignums() == [expected.number]  # the still was closed
    plt.close("all")


def test_a_still_of_an_impossible_setting_says_why(monkeypatch):
    monkeypatch.setenv(registry.STATIC_ENV, "1")
    note = widgets.conv_matrix_viewer(i=1, k=3)
    assert "kernel size k=3 is larger than the padded input" in repr(note)


@pytest.mark.parametrize("value, static", [("1", True), ("true", True), ("", False), ("0", False),
                                           ("false", False)])
def test_static_mode_follows_the_environment(monkeypatch, value, static):
    monkeypatch.setenv(registry.STATIC_ENV, value)
    assert registry.static_mode() is static


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        registry.demo(figure=widgets.shapes_figure)(widgets.DEMOS["shapes_explorer"].build.__wrapped__)


def test_describe_views_tells_the_kinds_apart():
    loose = ipywidgets.interactive(lambda x: None, x=1)  # an interactive no registered builder made
    found = registry.describe_views(["no-such-id", loose.model_id, ipywidgets.IntSlider().model_id])
    assert [entry["kind"] for entry in found] == ["missing", "unregistered", "other"]
    loose.close()


def test_describe_views_gives_the_label_a_labelled_option_shows(monkeypatch):
    # the browser suite compares a control's text with the kernel: for (label, value) options that text is the label
    monkeypatch.delenv(registry.STATIC_ENV, raising=False)
    monkeypatch.setattr(registry, "_png_digests", lambda fig: [])  # (the PNGs need a kernel: not compared here)
    explorer = widgets.shapes_explorer()
    entry = registry.describe_views([explorer.model_id])[0]
    assert entry["kind"] == "demo" and len(entry["labels"]) == len(entry["values"])
    family = explorer.kwargs_widgets[0]
    family.options = [(f"the {option} family", option) for option in family.options]
    entry = registry.describe_views([explorer.model_id])[0]
    assert entry["labels"][0] == f"the {family.value} family", entry
    explorer.close()


def test_the_browser_suite_and_the_site_are_not_in_the_fast_tier():
    # they run with `make test-browser`; the fast tier must not need Chromium or Sphinx
    for path in (COURSE_ROOT / "tests" / "browser").glob("test_*.py"):
        assert "pytest.mark.heavy" in path.read_text()
