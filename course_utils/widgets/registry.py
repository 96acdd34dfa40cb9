"""The widget registry: every lecture widget, the plain function that draws it, and its still for web pages.

A widget builder is registered with the :func:`demo` decorator, which names the
plain figure function and how the controls' values become that function's
arguments::

    @demo(figure=sliding_window_figure, arguments=_figure_arguments)
    def sliding_window_explorer(i=7, k=3, s=1, p=0, d=1, position=0): ...

The builder's keyword arguments are the controls' starting values. The registry
(``DEMOS``, keyed by the builder's name) is what the rest of the course reads:

- the browser suite (``tests/browser``) finds every widget a lecture shows, moves
  its controls in JupyterLab and checks that the picture on screen is the one
  ``figure(**arguments(**values))`` draws for the values the controls now hold;
- the course website: with ``COURSE_STATIC=1`` in the kernel's environment (the
  site build sets it), a builder shows the figure for its starting values and a
  note on running the notebook live, instead of a widget a static page cannot run.

A widget added by a later lecture needs nothing but the decorator.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["STATIC_ENV", "Demo", "DEMOS", "demo", "static_mode", "StaticNote", "describe_views"]

STATIC_ENV = "COURSE_STATIC"  # set (to 1) when a notebook is executed for a static web page
DEMO_ATTRIBUTE = "course_demo"  # the name of its Demo, set on every widget a registered builder returns


@dataclass(frozen=True)
class Demo:
    """A registered widget.

    name:      the builder's name; lectures call ``widgets.<name>()``.
    build:     the builder (as decorated): keyword arguments are the controls' starting values.
    figure:    the plain function that draws what the widget shows.
    arguments: maps the controls' values (keyword arguments) to ``figure``'s keyword arguments.
    """

    name: str
    build: Callable[..., Any]
    figure: Callable[..., Figure]
    arguments: Callable[..., dict]

    def starting_values(self, *args, **kwargs) -> dict:
        """The controls' starting values: the builder's defaults, updated with the arguments given."""
        bound = inspect.signature(self.build).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def draw(self, **values) -> Figure:
        """The figure the widget shows when its controls hold ``values``."""
        return self.figure(**self.arguments(**values))


DEMOS: dict[str, Demo] = {}


def static_mode() -> bool:
    """True when notebooks are being executed for a static page (``COURSE_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() not in ("", "0", "false", "no")


class StaticNote:
    """What a widget cell shows in a static page, under the still: how to get the live widget."""

    def __init__(self, name: str, error: str | None = None) -> None:
        self.name, self.error = name, error

    def _text(self) -> tuple[str, str]:
        still = (f"could not be drawn ({self.error})" if self.error else
                 "is shown above as a still, at its starting values")
        return (f"Interactive widget: widgets.{self.name}() {still}.",
                "Run this notebook in JupyterLab (`make lab`) to move the sliders.")

    def __repr__(self) -> str:
        return " ".join(self._text())

    def _repr_html_(self) -> str:
        first, second = self._text()
        first = first.replace(f"widgets.{self.name}()", f"<code>widgets.{self.name}()</code>")
        second = second.replace("`make lab`", "<code>make lab</code>")
        return f'<p class="course-widget-note"><strong>{first}</strong> {second}</p>'


def _still(spec: Demo, values: dict) -> StaticNote:
    """Show the figure for ``values`` (the way ``plt.show`` would) and return the note that goes under it."""
    from IPython.display import display

    try:
        fig = spec.draw(**values)
    except ValueError as err:  # an impossible starting setting: say so instead of a figure
        return StaticNote(spec.name, error=str(err))
    display(fig)
    plt.close(fig)
    return StaticNote(spec.name)


def demo(figure: Callable[..., Figure], arguments: Callable[..., dict] | None = None):
    """Register a widget builder; ``figure(**arguments(**controls))`` draws what the widget shows.

    ``arguments`` defaults to passing the controls' values through unchanged. The decorated
    builder returns the ipywidgets widget (tagged with its demo's name), or, in static mode,
    shows the still and returns a :class:`StaticNote`.
    """
    def register(builder: Callable[..., Any]) -> Callable[..., Any]:
        name = builder.__name__
        if name in DEMOS:
            raise ValueError(f"a widget named {name!r} is already registered")

        @functools.wraps(builder)
        def build(*args, **kwargs):
            spec = DEMOS[name]
            if static_mode():
                return _still(spec, spec.starting_values(*args, **kwargs))
            widget = builder(*args, **kwargs)
            setattr(widget, DEMO_ATTRIBUTE, name)
            return widget

        DEMOS[name] = Demo(name, build, figure, arguments or (lambda **values: values))
        return build

    return register


def _png_digests(fig: Figure) -> list[str]:
    """sha256 of the PNG the notebook's display machinery makes of ``fig`` (what the page shows)."""
    import base64

    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("describe_views runs inside a Jupyter kernel (it compares what the page shows)")
    png = shell.display_formatter.formatters["image/png"](fig)
    if png is None:
        return []
    data = png if isinstance(png, bytes) and png.startswith(b"\x89PNG") else base64.b64decode(png)
    return [hashlib.sha256(data).hexdigest()]


def describe_views(model_ids: list[str]) -> list[dict]:
    """What the kernel knows about each displayed widget (by ipywidgets model id), for the browser suite.

    Each entry has ``kind``: ``"demo"`` (a registered widget: also ``name``, the controls'
    ``values``, their ``labels`` (a selection control's shown label, else None) and ``images``, the sha256 of each PNG its plain function draws for those
    values, or ``error``), ``"progress"`` (a tqdm bar), ``"unregistered"`` (an ``interactive``
    no :func:`demo` builder made) or ``"other"`` (also ``type``); ``"missing"`` for an
    unknown id.
    """
    from ipywidgets import interactive
    from ipywidgets.widgets.widget import _instances

    found = []
    for model_id in model_ids:
        widget = _instances.get(model_id)
        if widget is None:
            found.append({"model_id": model_id, "kind": "missing"})
            continue
        entry = {"model_id": model_id, "type": type(widget).__name__}
        name = getattr(widget, DEMO_ATTRIBUTE, None)
        if name is not None:
            values = {key: (list(v) if isinstance(v, tuple) else v) for key, v in widget.kwargs.items()}
            # what a selection control shows when its options are (label, value) pairs: the label
            labels = [getattr(control, "label", None) for control in widget.kwargs_widgets]
            entry.update(kind="demo", name=name, values=values, labels=labels)
            try:
                fig = DEMOS[name].draw(**widget.kwargs)
            except ValueError as err:
                entry.update(images=[], error=str(err))
            else:
                entry["images"] = _png_digests(fig)
                plt.close(fig)
        elif type(widget).__name__ == "TqdmHBox":
            entry["kind"] = "progress"
        elif isinstance(widget, interactive):
            entry["kind"] = "unregistered"
        else:
            entry["kind"] = "other"
        found.append(entry)
    return found
