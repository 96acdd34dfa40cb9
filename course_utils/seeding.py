"""One call seeds everything: Python's ``random``, NumPy and torch (CPU and CUDA).

Every notebook starts with ``seed_everything()`` so it gives the same numbers on
every run on the same machine. Across machines and devices, results agree within
a tolerance, not bit for bit (floating-point sums run in different orders).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["COURSE_SEED", "seed_everything", "deterministic", "torch_generator"]

#: The course seed: the default for every random choice in lectures and assignments.
COURSE_SEED = 2024


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return int(seed)


def seed_everything(seed: int = COURSE_SEED) -> int:
    """Seed ``random``, NumPy's global generator and torch (all CUDA devices too).

    Returns the seed, so a notebook can print what it used.
    """
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def deterministic(enabled: bool = True) -> None:
    """Switch PyTorch's deterministic algorithms on (or back off).

    Deterministic mode makes repeated GPU runs bit-identical at some cost in speed,
    and raises an error for operations that have no deterministic implementation.
    On the CPU the course's code is already deterministic.
    """
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def torch_generator(seed: int = COURSE_SEED) -> torch.Generator:
    """A private ``torch.Generator`` (e.g. for a DataLoader's shuffling order)."""
    generator = torch.Generator()
    generator.manual_seed(_check_seed(seed))
    return generator
