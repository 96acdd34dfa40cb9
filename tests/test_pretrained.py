"""Course checkpoints (course_utils.pretrained): checked loading, manifests, the ImageNet opt-in, the CLI.

The rebuild itself (minutes) is in tests/heavy/test_pretrained_rebuild.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from torch import nn

from course_utils import data, pretrained, shapes, training
from course_utils.pretrained import CheckpointError
from course_utils.pretrained.__main__ import main as cli

NAME = "shapes_resnet"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models on a busy 2-core machine run faster on one thread than on two competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return pretrained.info(NAME)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return pretrained.load(NAME, device="cpu")


@pytest.fixture
def copy_dir(tmp_path):
    """A private copy of the committed checkpoint files, to damage."""
    for suffix in (".pt", ".json"):
        shutil.copy(pretrained.CHECKPOINTS / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    return tmp_path


def _rewrite(folder, state: dict) -> None:
    """Save ``state`` as the checkpoint in ``folder`` and record its hash, so only the layout is wrong."""
    path = folder / f"{NAME}.pt"
    torch.save(state, path)
    meta = json.loads((folder / f"{NAME}.json").read_text())
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / f"{NAME}.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------- the architecture

def test_names():
    assert pretrained.names()[0] == NAME
    assert {"resnet18_imagenet", "resnet50_imagenet"} <= set(pretrained.names())
    with pytest.raises(ValueError, match="unknown checkpoint 'resnet_shapes'.*shapes_resnet"):
        pretrained.architecture("resnet_shapes")


def test_architecture_is_laid_out_like_torchvision():
    net = pretrained.architecture(NAME)
    assert [name for name, _ in net.named_children()] == [
        "normalize", "conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    assert isinstance(net.normalize, data.Normalize)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.bias is None
    assert isinstance(net.avgpool, nn.AdaptiveAvgPool2d)
    assert net.fc.in_features == 64 and net.fc.out_features == 10
    assert net.layer2[0].downsample is not None and net.layer3[0].downsample is not None  # projection shortcuts
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer1[0].downsample is None
    assert sum(p.numel() for p in net.parameters()) < 1_000_000
    assert net.training
    out = net(torch.rand(5, 3, 32, 32))
    assert out.shape == (5, 10)
    assert pretrained.architecture(NAME, num_classes=4)(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_architecture_is_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    first, second = pretrained.architecture(NAME), pretrained.architecture(NAME)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    a, b = first.state_dict(), second.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[key], b[key]) for key in a)
    other = pretrained.architecture(NAME, seed=1)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)


# ---------------------------------------------------------------- the committed checkpoint

def test_load_gives_the_trained_model_in_eval_mode(model, manifest):
    assert isinstance(model, pretrained.ShapesResNet)
    assert not model.training and all(not m.training for m in model.modules())
    assert next(model.parameters()).device.type == "cpu"
    assert model.classes == shapes.class_names("basic") == manifest["classes"]
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(manifest["normalize"]["mean"]), atol=1e-6)
    fresh = pretrained.architecture(NAME)
    assert not torch.equal(model.conv1.weight, fresh.conv1.weight)


def test_manifest_matches_the_file_and_the_code(manifest):
    path = pretrained.CHECKPOINTS / f"{NAME}.pt"
    assert manifest["name"] == NAME and manifest["file"] == path.name
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["size_bytes"] == path.stat().st_size < 5_000_000
    net = pretrained.architecture(NAME)
    assert manifest["parameters"] == sum(p.numel() for p in net.parameters())
    assert manifest["architecture"]["state_dict_digest"] == pretrained.architecture_digest(net)
    assert manifest["accuracy"]["test"] >= 0.95 and manifest["accuracy"]["val"] >= 0.95
    recipe = manifest["recipe"]
    for key in ("data", "batch_size", "augmentation", "optimizer", "schedule", "epochs", "seed", "threads"):
        assert key in recipe, key
    assert recipe["data"]["dataset"] == "shapes" and recipe["data"]["size"] == 32
    for key in ("seconds", "device", "torch", "torchvision", "date", "load_average"):
        assert key in manifest["build"], key


def test_accuracy_on_fresh_images(model, manifest):
    """Images the build never saw (another seed): accuracy close to the recorded test accuracy."""
    fresh = data.load("shapes", n=500, size=32, seed=manifest["recipe"]["data"]["seed"] + 1000)
    result = training.evaluate(model, data.make_loader(fresh, 250), device="cpu")
    # 500 images: the standard error of an accuracy near 0.98 is 0.6 points; allow 3 points.
    assert result["accuracy"] >= manifest["accuracy"]["test"] - 0.03, result


def test_load_moves_to_the_device_asked_for(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert next(pretrained.load(NAME).parameters()).device.type == "cpu"  # the course's pick


# ---------------------------------------------------------------- clear failures

def test_missing_checkpoint_names_the_build_command(copy_dir):
    (copy_dir / f"{NAME}.pt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"python -m course_utils.pretrained build {NAME} --out {copy_dir}"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")


def test_missing_manifest_names_the_build_command(copy_dir):
    (copy_dir / f"{NAME}.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"manifest.*python -m course_utils.pretrained build {NAME}"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")
    with pytest.raises(FileNotFoundError, match="manifest"):
        pretrained.info(NAME, directory=copy_dir)


def test_broken_manifest_fails_clearly(copy_dir):
    path = copy_dir / f"{NAME}.json"
    path.write_text("<<<<<<< HEAD\n")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")
    path.write_text(json.dumps({"name": NAME}))
    with pytest.raises(CheckpointError, match=r"lacks \['sha256', 'classes', 'architecture'\]"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")
    assert "lacks" in pretrained.verify(copy_dir)[NAME]


def test_changed_file_fails_the_hash_check(copy_dir):
    path = copy_dir / f"{NAME}.pt"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01  # one bit inside the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"changed or is corrupt: the SHA-256 .* build {NAME} --out {copy_dir}"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")


def test_damaged_committed_file_says_how_to_restore_it(copy_dir, monkeypatch):
    from course_utils.pretrained import _course

    monkeypatch.setattr(_course, "CHECKPOINTS", copy_dir)  # the copy plays the committed folder
    (copy_dir / f"{NAME}.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=rf"`git checkout .*{NAME}\.pt`, or rebuild both files with "
                                              rf"`python -m course_utils.pretrained build {NAME}`"):
        pretrained.load(NAME, device="cpu")


@pytest.mark.parametrize("damage, expected", [
    ("drop", r"missing keys: fc\.bias"),
    ("extra", r"unexpected keys: layer4\.0\.conv1\.weight"),
    ("shape", r"wrong shapes: fc\.weight: file \(7, 64\), architecture \(10, 64\)"),
])
def test_wrong_architecture_lists_the_keys(copy_dir, damage, expected):
    state = torch.load(copy_dir / f"{NAME}.pt", weights_only=True)
    if damage == "drop":
        del state["fc.bias"]
    elif damage == "extra":
        state["layer4.0.conv1.weight"] = torch.zeros(1)
    else:
        state["fc.weight"] = torch.zeros(7, 64)
    _rewrite(copy_dir, state)
    with pytest.raises(CheckpointError, match=f"does not fit the architecture.*{expected}"):
        pretrained.load(NAME, directory=copy_dir, device="cpu")


def test_course_checkpoints_are_not_downloaded():
    with pytest.raises(ValueError, match="built, not downloaded"):
        pretrained.load(NAME, download=True, device="cpu")
    with pytest.raises(ValueError, match="only the course checkpoints"):
        pretrained.build("resnet18_imagenet")


# ---------------------------------------------------------------- the ImageNet opt-in

@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch's hub cache in an empty temporary folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a directory set with set_dir would win over TORCH_HOME
    return tmp_path / "torch" / "hub"


def test_imagenet_weights_not_cached_say_how_and_name_the_offline_alternative(empty_hub, no_network):
    with pytest.raises(RuntimeError) as err:
        pretrained.load("resnet18_imagenet", device="cpu")
    message = str(err.value)
    assert "not cached" in message and str(empty_hub / "checkpoints") in message
    assert "download=True" in message and "'shapes_resnet'" in message
    assert no_network == []  # download=False never touched the network
    info = pretrained.info("resnet18_imagenet")
    assert info["cached"] is False and info["parameters"] == 11_689_512
    assert info["offline_alternative"] == NAME


def test_imagenet_download_failure_is_explained(empty_hub, no_network):
    with pytest.raises(RuntimeError, match="download failed.*shapes_resnet"):
        pretrained.load("resnet18_imagenet", download=True, device="cpu")
    assert no_network  # it did try


def test_imagenet_cached_weights_are_used(empty_hub, monkeypatch, no_network):
    """With the file in the hub cache, load() reads it (here: a stand-in state) and adds [0, 1] normalization."""
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18(num_classes=1000).eval()
    file = empty_hub / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    file.parent.mkdir(parents=True)
    file.write_bytes(b"cached")
    monkeypatch.setattr(type(weights), "get_state_dict",
                        lambda self, progress=True, check_hash=True: reference.state_dict())
    net = pretrained.load("resnet18_imagenet", device="cpu")
    assert no_network == [] and not net.training
    assert len(net.classes) == 1000 and net.classes[0] == "tench"
    assert net.fc.in_features == 512
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference((x - mean) / std))


def test_imagenet_architecture_is_torchvisions_with_normalization():
    net = pretrained.architecture("resnet50_imagenet", num_classes=5, seed=0)
    assert net.fc.out_features == 5 and net.classes is None
    assert sum(p.numel() for n, p in net.named_parameters()) == 25_557_032 - 2048 * 995 - 995
    assert list(net.state_dict())[-2:] == ["normalize.mean", "normalize.std"]


# ---------------------------------------------------------------- command line

def test_cli_verify_and_list(capsys, copy_dir):
    assert cli(["verify"]) == 0
    assert f"{NAME}: ok" in capsys.readouterr().out
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "resnet18_imagenet" in out
    (copy_dir / f"{NAME}.pt").write_bytes(b"not a checkpoint")
    assert cli(["verify", "--dir", str(copy_dir)]) == 1
    assert "changed or is corrupt" in capsys.readouterr().out


def test_cli_build_refuses_unknown_names(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(["build", "resnet18_imagenet"])
    assert exit_.value.code == 2
    assert "ImageNet weights come from torchvision" in capsys.readouterr().err
