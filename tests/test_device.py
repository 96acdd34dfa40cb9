from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch

from course_utils import device as dev


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.get_device() == torch.device("cpu")
    assert "Using cpu (no CUDA GPU or Apple MPS backend found)" in capsys.readouterr().out

    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert dev.get_device(verbose=False) == torch.device("mps")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Fake GPU")
    assert dev.get_device() == torch.device("cuda")
    assert "Fake GPU" in capsys.readouterr().out


def test_course_device_overrides_and_is_checked(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert dev.get_device(verbose=False) == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "potato")
    with pytest.raises(ValueError, match="not a device name"):
        dev.get_device(verbose=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        dev.get_device(verbose=False)


def test_autocast_is_a_no_op_off_cuda():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with dev.autocast("cpu"):
        out = a @ b
        assert not torch.is_autocast_enabled("cpu")
    assert out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_uses_float16_on_cuda():
    a = torch.randn(4, 4, device="cuda")
    with dev.autocast("cuda"):
        assert (a @ a).dtype == torch.float16


def test_to_device_moves_nested_batches_and_keeps_types():
    Pair = namedtuple("Pair", "x y")

    @dataclass
    class Batch:
        images: torch.Tensor
        names: list

    batch = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": Pair(torch.ones(1), "s"),
             "c": Batch(torch.ones(2, dtype=torch.float64), ["n"]), "d": None}
    moved = dev.to_device(batch, "meta")
    assert moved["a"][0].device.type == "meta" and isinstance(moved["a"], list)
    assert isinstance(moved["a"][1], tuple) and moved["a"][1][1] == 3
    assert isinstance(moved["b"], Pair) and moved["b"].x.device.type == "meta" and moved["b"].y == "s"
    assert isinstance(moved["c"], Batch) and moved["c"].images.device.type == "meta"
    assert moved["c"].images.dtype == torch.float64 and moved["d"] is None
    assert batch["a"][0].device.type == "cpu"  # the original is not changed


def test_describe_device():
    assert dev.describe_device("cpu").startswith("cpu (")
