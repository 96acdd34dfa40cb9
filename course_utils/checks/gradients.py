"""Numerical gradients: the one way every assignment's checks test a gradient against finite differences.

Central differences in float64, compared by the largest relative error::

    from course_utils.checks.gradients import numerical_gradient, numerical_vjp, relative_error, gradient_errors

    g = numerical_gradient(lambda x: float((x ** 2).sum()), x)          # d f / d x, shaped like x
    v = numerical_vjp(layer, x, dout)                                    # d sum(layer(x) * dout) / d x
    relative_error(analytic, g)                                          # max |a - b| / max(1e-8, |a| + |b|)
    gradient_errors(lambda w, b: loss(x, w, b), {"w": w, "b": b}, {"w": dw, "b": db})  # {"w": 3e-10, ...}

Inputs may be NumPy arrays or torch tensors; the function under test receives the kind it was
given, in float64, and is evaluated twice per entry (so keep the inputs small: a few hundred
entries). ``x`` is never changed: each entry is perturbed in a float64 copy.

Why these choices (lecture 03 measures them): a central difference is off by O(h^2) where a
forward one is off by O(h); in float64 the rounding error of f(x +- h) / 2h is about 1e-16 / h,
so h = 1e-6 balances the two near 1e-10 for smooth functions of order one. Near a kink (ReLU at 0,
a max-pool tie) finite differences are meaningless: checks draw inputs away from kinks.

Assignment a2 asks students to write their own ``numerical_gradient`` and ``relative_error``; its
checks refuse this module while the student's code runs.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["DEFAULT_STEP", "numerical_gradient", "numerical_vjp", "relative_error", "gradient_errors"]

DEFAULT_STEP = 1e-6
FLOOR = 1e-8  # relative_error's denominator is at least this: two zeros are 0 apart, not nan


def _float64(x: Any, name: str) -> np.ndarray | torch.Tensor:
    """A float64 copy of ``x`` of the same kind (NumPy array or torch tensor, detached)."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be a real tensor, got {x.dtype}")
        return x.detach().to(torch.float64).clone(memory_format=torch.contiguous_format)
    try:
        array = np.array(x, dtype=np.float64)  # a copy
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array or tensor of real numbers, got {type(x).__name__}") from None
    return array


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must return a single number, got a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"{what} must return a single number, got an array of shape {array.shape}")
    return float(array.reshape(()))


def _check_step(h: float) -> float:
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < 1:
        raise ValueError(f"the step h must be a number between 0 and 1, e.g. 1e-6, got {h!r}")
    return float(h)


def numerical_gradient(f: Callable[[Any], Any], x: Any, h: float = DEFAULT_STEP) -> np.ndarray | torch.Tensor:
    """(f(x + h e_i) - f(x - h e_i)) / 2h for every entry i: the gradient of a scalar ``f`` at ``x``, in float64.

    f: maps an array shaped like x (of x's kind, float64) to one number.
    Returns an array (or tensor) shaped like x, float64. ``x`` itself is not changed.
    """
    h = _check_step(h)
    point = _float64(x, "x")
    flat = point.reshape(-1)  # a view: perturbing it perturbs point
    grad = np.zeros(flat.shape[0]) if isinstance(point, np.ndarray) else torch.zeros(flat.shape[0],
                                                                                     dtype=torch.float64)
    for i in range(flat.shape[0]):
        saved = float(flat[i])
        flat[i] = saved + h
        up = _scalar(f(point), "f")
        flat[i] = saved - h
        down = _scalar(f(point), "f")
        flat[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad.reshape(point.shape)


def numerical_vjp(f: Callable[[Any], Any], x: Any, dout: Any, h: float = DEFAULT_STEP) -> np.ndarray | torch.Tensor:
    """The gradient of sum(f(x) * dout) at x: what a layer's backward returns for the upstream gradient ``dout``.

    f: maps x (float64, x's kind) to an array or tensor shaped like ``dout``.
    """
    weights = _float64(dout, "dout")

    def projected(point: Any) -> float:
        out = f(point)
        if tuple(out.shape) != tuple(weights.shape):
            raise ValueError(f"f returned shape {tuple(out.shape)}, but dout has shape {tuple(weights.shape)}")
        if isinstance(out, torch.Tensor):
            return float((out.detach().to(torch.float64) * torch.as_tensor(weights)).sum())
        return float(np.sum(np.asarray(out, dtype=np.float64) * np.asarray(weights)))

    return numerical_gradient(projected, x, h)


def relative_error(a: Any, b: Any) -> float:
    """max over the entries of |a - b| / max(1e-8, |a| + |b|): 0 for equal arrays, about 1 for unrelated ones."""
    first, second = _float64(a, "a"), _float64(b, "b")
    first = first.numpy() if isinstance(first, torch.Tensor) else first
    second = second.numpy() if isinstance(second, torch.Tensor) else second
    if first.shape != second.shape:
        raise ValueError(f"relative_error compares arrays of one shape, got {first.shape} and {second.shape}")
    if first.size == 0:
        return 0.0
    return float(np.max(np.abs(first - second) / np.maximum(FLOOR, np.abs(first) + np.abs(second))))


def gradient_errors(f: Callable[..., Any], inputs: Mapping[str, Any], grads: Mapping[str, Any], *,
                    dout: Any = None, h: float = DEFAULT_STEP) -> dict[str, float]:
    """The relative error of each analytic gradient in ``grads`` against central differences of ``f``.

    f:      called as f(**inputs) (float64 copies); returns a scalar, or an array shaped like ``dout``
            (then the gradients are those of sum(f(...) * dout), a backward's upstream gradient).
    inputs: name -> array or tensor; grads: name -> its analytic gradient (the same shape), for some or all names.
    Returns {name: relative error}; a check compares each with its tolerance (about 1e-7 for float64
    gradients of smooth functions at h = 1e-6; float32 arithmetic cannot do better than about 1e-3).
    """
    unknown = sorted(set(grads) - set(inputs))
    if unknown:
        raise KeyError(f"gradients given for {unknown}, which are not among the inputs {sorted(inputs)}")
    points = {name: _float64(value, name) for name, value in inputs.items()}
    errors = {}
    for name, analytic in grads.items():
        def along(value: Any, name: str = name) -> Any:
            return f(**{**points, name: value})

        numeric = (numerical_gradient(along, points[name], h) if dout is None
                   else numerical_vjp(along, points[name], dout, h))
        given = _float64(analytic, f"the gradient of {name}")
        if tuple(given.shape) != tuple(numeric.shape):
            raise ValueError(f"the gradient of {name} has shape {tuple(given.shape)}, but {name} has shape "
                             f"{tuple(numeric.shape)}")
        errors[name] = relative_error(given, numeric)
    return errors
