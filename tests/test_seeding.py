import random

import numpy as np
import pytest
import torch

from course_utils.seeding import COURSE_SEED, deterministic, seed_everything, torch_generator


def _draw():
    return random.random(), np.random.rand(), torch.rand(3).tolist()


def test_seed_everything_repeats_python_numpy_and_torch():
    assert seed_everything() == COURSE_SEED
    first = _draw()
    seed_everything()
    assert _draw() == first
    seed_everything(COURSE_SEED + 1)
    assert _draw() != first


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "7", True])
def test_bad_seeds_are_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        seed_everything(bad)


def test_torch_generator_is_private_and_repeatable():
    a = torch.randperm(10, generator=torch_generator(3))
    torch.manual_seed(0)
    b = torch.randperm(10, generator=torch_generator(3))
    assert torch.equal(a, b)


def test_deterministic_mode_switches_on_and_off():
    try:
        deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    finally:
        deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
