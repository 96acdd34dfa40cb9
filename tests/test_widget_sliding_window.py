"""The sliding-window explorer (lecture 01): layout logic, figure and widget wiring."""

import itertools

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from course_utils import widgets
from course_utils.widgets import WindowLayout, sliding_window_figure, window_layout

SETTINGS = [(i, k, s, p, d) for i, k, s, p, d in itertools.product(range(1, 11), (1, 2, 3, 5), (1, 2, 3),
                                                                     (0, 1, 2), (1, 2, 3))]


def _torch_size(i, k, s, p, d):
    """F.conv2d's output size, or 0 where it refuses the setting."""
    try:
        return F.conv2d(torch.zeros(1, 1, i, i), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d).shape[-1]
    except RuntimeError:
        return 0


def test_output_size_agrees_with_conv2d_over_a_grid_of_settings():
    sizes = {setting: window_layout(*setting).o for setting in SETTINGS}
    assert sizes == {setting: _torch_size(*setting) for setting in SETTINGS}
    assert 0 in sizes.values()  # the grid includes impossible settings ...
    assert any(window_layout(*s).uncovered for s in SETTINGS if sizes[s])  # ... and remainders


def test_taps_are_what_conv2d_reads():
    """Put a 1 in one padded pixel at a time: output (r, c) changes exactly when the pixel is a tap."""
    for i, k, s, p, d in [(7, 3, 3, 0, 1), (6, 2, 2, 1, 2), (5, 3, 1, 2, 2), (8, 2, 3, 0, 1)]:
        n = i + 2 * p
        for row, col in [(0, 0), (1, 0), (window_layout(i, k, s, p, d).o - 1,) * 2]:
            layout = window_layout(i, k, s, p, d, (row, col))
            seen = set()
            for r, c in itertools.product(range(n), range(n)):
                padded = torch.zeros(1, 1, n, n)
                padded[0, 0, r, c] = 1.0
                y = F.conv2d(padded, torch.ones(1, 1, k, k), stride=s, dilation=d)  # padding already in the grid
                if y[0, 0, row, col] != 0:
                    seen.add((r, c))
            assert set(layout.taps) == seen and len(layout.taps) == k * k


def test_taps_by_hand():
    # 3x3 kernel, dilation 2, on a 7x7 input: output (1, 2) reads rows 1, 3, 5 and columns 2, 4, 6
    layout = window_layout(7, 3, d=2, position=(1, 2))
    assert layout.o == 3 and layout.span == 5
    assert layout.taps == [(r, c) for r in (1, 3, 5) for c in (2, 4, 6)]
    # 2x2 kernel, padding 1: output (0, 0) reads the padded corner, two zeros of padding and one input pixel
    layout = window_layout(3, 2, p=1)
    assert layout.o == 4 and layout.padded == 5
    assert layout.taps == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # stride 2: output (1, 1) starts at padded (2, 2)
    assert window_layout(5, 3, s=2, position=(1, 1)).taps[0] == (2, 2)


def test_doesnt_fit_reports_the_ignored_column():
    layout = window_layout(7, 3, s=3)  # (7 - 3)/3 + 1 = 2.33: PyTorch floors to 2
    assert layout.o == 2
    assert layout.uncovered == 1 and layout.unread == (6,)
    assert "⌊4/3⌋ + 1 = 2" in layout.message
    assert "last row and column" in layout.message and "1 column of the real input ignored" in layout.message
    padding_only = window_layout(6, 3, s=2, p=1)  # the leftover is a padding column: nothing lost
    assert padding_only.uncovered == 1 and "no input is lost" in padding_only.message
    exact = window_layout(7, 3, s=2)
    assert exact.o == 3 and exact.uncovered == 0 and exact.unread == ()
    assert "Every row and column" in exact.message
    gaps = window_layout(4, 1, s=2)  # a 1x1 kernel with stride 2 skips every other column
    assert gaps.unread == (1, 3) and gaps.uncovered == 1 and "Row and column 1 falls between" in gaps.message


@pytest.mark.parametrize("setting", [(5, 7, 1, 0, 1), (5, 3, 1, 0, 3), (1, 2, 1, 0, 1), (3, 3, 2, 0, 2)])
def test_impossible_settings_give_no_output_and_say_why(setting):
    with pytest.raises(RuntimeError):  # PyTorch itself refuses these
        F.conv2d(torch.zeros(1, 1, *setting[:1] * 2), torch.zeros(1, 1, *setting[1:2] * 2), stride=setting[2],
                 padding=setting[3], dilation=setting[4])
    layout = window_layout(*setting)
    assert layout.o == 0 and layout.taps == []
    assert "no output" in layout.message and f"spans d(k−1) + 1 = {layout.span}" in layout.message
    fig = sliding_window_figure(*setting)  # draws instead of crashing
    assert [p.get_gid() for p in fig.axes[0].patches].count("overhang") == setting[1] ** 2
    assert not any(p.get_gid() in ("tap", "selected") for ax in fig.axes for p in ax.patches)
    plt.close(fig)


def _gids(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


@pytest.mark.parametrize("setting, position", [((7, 3, 3, 0, 1), (1, 1)), ((9, 3, 2, 2, 2), (1, 2)),
                                               ((6, 1, 1, 0, 1), (5, 0)), ((16, 5, 1, 3, 1), (0, 17))])
def test_figure_lights_the_taps_and_the_output_pixel(setting, position):
    fig = sliding_window_figure(*setting, position=position)
    ax_in, ax_out = fig.axes[:2]
    layout = window_layout(*setting, position=position)
    taps = _gids(ax_in, "tap")
    assert len(taps) == setting[1] ** 2
    assert {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in taps} == set(layout.taps)
    (selected,) = _gids(ax_out, "selected")
    assert (round(selected.get_y() + 0.5), round(selected.get_x() + 0.5)) == position
    (window,) = _gids(ax_in, "window")
    assert window.get_width() == layout.span
    assert layout.formula in fig._suptitle.get_text()
    assert ax_in.get_xlim() == (-0.5, layout.padded - 0.5) and ax_out.get_xlim() == (-0.5, layout.o - 0.5)
    plt.close(fig)


def test_explorer_has_its_controls_and_follows_them():
    explorer = widgets.sliding_window_explorer()
    controls = {c.description.split()[0]: c for c in explorer.children[:-1]}
    assert list(controls) == ["i", "k", "s", "p", "d", "position"]
    assert isinstance(explorer.result, WindowLayout) and explorer.result.o == 5
    assert controls["position"].max == 24  # 5x5 output positions, counted 0..24
    controls["position"].value = 7
    assert explorer.result.position == (1, 2)
    controls["s"].value = 3  # 7x7 input, 3x3 kernel, stride 3: the output shrinks to 2x2
    assert explorer.kwargs["s"] == 3 and explorer.result.o == 2 and explorer.result.uncovered == 1
    assert controls["position"].max == 3 and controls["position"].value == 3  # clamped into the new output
    assert explorer.result.position == (1, 1)
    controls["k"].value = 7
    controls["i"].value = 5  # kernel wider than the input: no output, no exception
    assert explorer.result.o == 0 and "no output" in explorer.result.message
    assert controls["position"].max == 0
    plt.close("all")


@pytest.mark.parametrize("kwargs, message", [
    ({"i": -1, "k": 3}, "i must be an int >= 1"),
    ({"i": 0, "k": 3}, "i must be an int >= 1"),
    ({"i": 7.0, "k": 3}, "i must be an int"),
    ({"i": 7, "k": 0}, "k must be an int >= 1"),
    ({"i": 7, "k": "3"}, "k must be an int"),
    ({"i": 7, "k": 3, "s": 0}, "s must be an int >= 1"),
    ({"i": 7, "k": 3, "p": -1}, "p must be an int >= 0"),
    ({"i": 7, "k": 3, "d": 0}, "d must be an int >= 1"),
    ({"i": 7, "k": 3, "s": True}, "s must be an int"),
    ({"i": 7, "k": 3, "position": (5, 0)}, r"inside the 5x5 output"),
    ({"i": 7, "k": 3, "position": (0, -1)}, "position col must be an int >= 0"),
    ({"i": 7, "k": 3, "position": 3}, r"\(row, col\) pair"),
])
def test_bad_input_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        window_layout(**kwargs)
    with pytest.raises(ValueError, match=message):
        sliding_window_figure(**kwargs)
