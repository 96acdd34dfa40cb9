"""Where computation runs: pick a device, mixed precision on CUDA, move batches.

The course never assumes a GPU. ``get_device()`` prefers CUDA, then Apple's MPS,
then the CPU, and says which it picked and why. ``COURSE_DEVICE=cpu`` (or
``cuda``, ``cuda:1``, ``mps``) overrides the choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["get_device", "describe_device", "autocast", "to_device"]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _pick() -> tuple[torch.device, str]:
    """Return the preferred device and a one-line reason."""
    wanted = os.environ.get("COURSE_DEVICE", "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(
                f"COURSE_DEVICE={wanted!r} is not a device name; expected 'cpu', 'cuda', "
                f"'cuda:N' or 'mps'"
            ) from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"COURSE_DEVICE={wanted!r} asks for CUDA, but torch sees no CUDA GPU")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(f"COURSE_DEVICE={wanted!r} asks for MPS, but it is not available")
        return device, f"set by COURSE_DEVICE={wanted}"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
    if _mps_available():
        return torch.device("mps"), "Apple MPS backend found (no CUDA GPU)"
    return torch.device("cpu"), "no CUDA GPU or Apple MPS backend found"


def get_device(verbose: bool = True) -> torch.device:
    """Pick CUDA, then MPS, then CPU (or what ``COURSE_DEVICE`` says).

    With ``verbose`` it prints one line, e.g. ``Using cpu (no CUDA GPU or Apple
    MPS backend found)``, so a notebook shows where it runs.
    """
    device, reason = _pick()
    if verbose:
        print(f"Using {device} ({reason})")
    return device


def describe_device(device: torch.device | str | None = None) -> str:
    """A short human-readable description, e.g. ``'cpu (2 threads)'``."""
    device = torch.device(device) if device is not None else _pick()[0]
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool = True) -> Iterator[None]:
    """Mixed precision (float16 autocast) on CUDA; a no-op anywhere else.

    On the CPU, bfloat16 autocast is slower than float32 for small models and
    changes numerics, so the course keeps the CPU in float32.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested batch (tuple, list, dict, dataclass) to ``device``.

    Non-tensor leaves (ints, strings, None) are returned unchanged; containers are
    rebuilt with the same type (named tuples included).
    """
    device = torch.device(device)
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device, non_blocking) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # named tuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: to_device(getattr(batch, f.name), device, non_blocking)
                   for f in dataclasses.fields(batch)}
        return dataclasses.replace(batch, **changes)
    return batch
