"""a4's receptive-field check: the recurrence, verified by measuring the gradient of one output pixel."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import CheckFailure, check, passed
from .. import case_label as _where, type_name as _kind
from . import Case, _name, _rng

# --- 5. receptive fields ---------------------------------------------------------------------------
Layer = tuple[int, int, int, int]  # (kernel k, stride s, padding p, dilation d), nn.Conv2d's order


def receptive_field_recurrence(layers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(r, j) after each layer: r_out = r_in + (k - 1) d j_in, j_out = j_in s, from r_0 = j_0 = 1."""
    r, j, out = 1, 1, []
    for k, s, _, d in layers:
        r += (k - 1) * d * j  # r_out = r_in + (k - 1) d j_in
        j *= s                # j_out = j_in s
        out.append((r, j))
    return out


def measured_receptive_field(layers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(r, j) after each layer, measured: on a 1-D stack of convolutions with positive weights (float64), the
    input pixels the gradient of one output pixel reaches (r: their span) and how far that span moves from one
    output pixel to the next (j). The input is long enough that no border clips the span."""
    found = []
    for depth in range(1, len(layers) + 1):
        r, j = receptive_field_recurrence(layers[:depth])[-1]
        length = 2 * r + 2 * j * (sum(p for _, _, p, _ in layers[:depth]) + 8) + 16  # a dozen outputs or more
        x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
        y = x
        for k, s, p, d in layers[:depth]:
            y = F.conv1d(y, torch.ones(1, 1, k, dtype=torch.float64), stride=s, padding=p, dilation=d)
        middle = y.shape[-1] // 2
        spans = []
        for position in (middle, middle + 1):
            (grad,) = torch.autograd.grad(y[0, 0, position], x, retain_graph=True)
            reached = torch.nonzero(grad[0, 0]).flatten()
            spans.append((int(reached.min()), int(reached.max())))
        found.append((spans[0][1] - spans[0][0] + 1, spans[1][0] - spans[0][0]))
    return found


# (rule, {"layers": [(k, s, p, d), ...]}); raises: (rule, layers) that must raise ValueError
RECEPTIVE_FIELD_CASES: list[Case] = [
    ("one 3x3 convolution: r = 3, j = 1", {"layers": [(3, 1, 1, 1)]}),
    ("stacked 3x3 convolutions grow r by 2 each", {"layers": [(3, 1, 1, 1)] * 3}),
    ("a stride multiplies the jump, and later layers grow r by (k - 1) * j",
     {"layers": [(3, 2, 1, 1), (3, 1, 1, 1), (2, 2, 0, 1), (3, 1, 1, 1)]}),
    ("dilation d: a kernel k spans (k - 1) * d + 1 pixels", {"layers": [(3, 1, 2, 2), (3, 1, 4, 4), (3, 1, 1, 1)]}),
    ("padding changes neither r nor j", {"layers": [(5, 1, 0, 1), (5, 1, 2, 1), (3, 1, 3, 1)]}),
    ("a 1x1 convolution changes neither r nor j", {"layers": [(3, 2, 1, 1), (1, 1, 0, 1)]}),
    ("VGG's first two stages: conv, conv, 2x2 max-pool, conv, conv, 2x2 max-pool",
     {"layers": [(3, 1, 1, 1), (3, 1, 1, 1), (2, 2, 0, 1), (3, 1, 1, 1), (3, 1, 1, 1), (2, 2, 0, 1)]}),
    ("ResNet's stem: 7x7 conv stride 2, 3x3 max-pool stride 2", {"layers": [(7, 2, 3, 1), (3, 2, 1, 1)]}),
    ("no layers: an empty list", {"layers": []}),
]
RECEPTIVE_FIELD_ERRORS: list[tuple[str, list[Layer]]] = [
    ("a kernel below 1 raises ValueError", [(3, 1, 1, 1), (0, 1, 0, 1)]),
    ("a stride below 1 raises ValueError", [(3, 0, 1, 1)]),
    ("a dilation below 1 raises ValueError", [(3, 1, 1, 0)]),
    ("a negative padding raises ValueError", [(3, 1, -1, 1)]),
]
HIDDEN_RECEPTIVE_FIELD_CASES: list[Case] = [
    ("a stride multiplies the jump, and later layers grow r by (k - 1) * j",
     {"layers": [(5, 3, 2, 1), (3, 2, 1, 1), (3, 1, 1, 1)]}),
    ("dilation d: a kernel k spans (k - 1) * d + 1 pixels", {"layers": [(3, 2, 1, 1), (3, 1, 3, 3), (2, 1, 0, 2)]}),
]
HIDDEN_RECEPTIVE_FIELD_ERRORS: list[tuple[str, list[Layer]]] = [
    ("a stride below 1 raises ValueError", [(1, 1, 0, 1), (3, -2, 1, 1)]),
    ("a negative padding raises ValueError", [(3, 2, 1, 1), (3, 1, -2, 1)]),
]


def _random_receptive_field_cases(rng: random.Random, count: int = 3) -> list[Case]:
    return [("a random setting", {"layers": [(rng.choice([1, 2, 3, 5, 7]), rng.choice([1, 1, 2, 3]), rng.randint(0, 3),
                                                rng.choice([1, 1, 2, 3])) for _ in range(rng.randint(1, 8))]})
            for _ in range(count)]


def _pairs_problem(got: Any, expected: list[tuple[int, int]], hidden: bool) -> str | None:
    if not isinstance(got, (list, tuple)):
        return f"it should return a list of (r, j) pairs, got {_kind(got, hidden)}"
    if len(got) != len(expected):
        return f"it should return one (r, j) pair per layer ({len(expected)}), got {len(got)}"
    for index, (pair, want) in enumerate(zip(got, expected, strict=True)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return f"item {index} should be a pair (r, j), got {_kind(pair, hidden)}"
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair):
            return f"item {index} should be two ints, got {_kind(pair[0], hidden)} and {_kind(pair[1], hidden)}"
        if tuple(pair) != want:
            shown = "" if hidden else f": expected {want}, got {tuple(pair)}"
            what = "r" if pair[0] != want[0] else "j"
            return (f"after layer {index + 1}, {what} is wrong{shown} (r_out = r_in + (k - 1) * d * j_in, "
                    f"j_out = j_in * s, from r = j = 1)")
    return None


@check()
def check_receptive_field(receptive_field: Callable, hidden: bool = False) -> None:
    """receptive_field(layers), layers a list of (k, s, p, d): the receptive field r and the jump j after each
    layer, as the recurrence gives them and as the gradient of one output pixel measures them; ValueError for
    k, s or d below 1 or a negative padding."""
    name = _name(receptive_field, "receptive_field")
    cases = RECEPTIVE_FIELD_CASES
    errors = RECEPTIVE_FIELD_ERRORS
    if hidden:
        cases = HIDDEN_RECEPTIVE_FIELD_CASES + _random_receptive_field_cases(_rng(True, "check_receptive_field",
                                                                                 "random"))
        errors = HIDDEN_RECEPTIVE_FIELD_ERRORS
    for rule, setting in cases:
        layers = [tuple(layer) for layer in setting["layers"]]
        expected = receptive_field_recurrence(layers)
        assert expected == measured_receptive_field(layers), layers  # the check's own formula, measured
        where = _where(name, f"{name}({layers})", rule, hidden)
        try:
            got = receptive_field([list(layer) if index % 2 else layer for index, layer in enumerate(layers)])
        except NotImplementedError:
            raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
        except Exception as err:
            raise CheckFailure(f"{where} raised {_kind(err, hidden)}" + ("" if hidden else f": {err}")) from None
        problem = _pairs_problem(got, expected, hidden)
        if problem:
            raise CheckFailure(f"{where}: {problem}")
    for rule, layers in errors:
        where = _where(name, f"{name}({layers})", rule, hidden)
        try:
            got = receptive_field(layers)
        except ValueError:
            continue
        except Exception as err:
            raise CheckFailure(f"{where} should raise ValueError, but it raised {_kind(err, hidden)}"
                               + ("" if hidden else f": {err}")) from None
        raise CheckFailure(f"{where} should raise ValueError, but it returned "
                           + ("a value" if hidden else repr(got)))
    passed(f"{name} matches the recurrence and the measured receptive fields" + (" (hidden cases)" if hidden else ""),
           len(cases) + len(errors))


