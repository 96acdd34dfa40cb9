import pytest
import torch

from course_utils import data
from course_utils.data import ImageSet, Normalize


def _check_images(ds: ImageSet, n: int, c: int, hw: int, classes: int):
    assert ds.images.shape == (n, c, hw, hw)
    assert ds.images.dtype == torch.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.long
    assert len(ds.classes) == classes
    assert 0 <= ds.labels.min() and ds.labels.max() < classes


def test_shapes_default_size_follows_fast_mode(fast_mode):
    ds = data.load("shapes")
    _check_images(ds, 1_000, 3, 32, 10)
    assert ds.masks is not None and ds.masks.shape == (1_000, 32, 32) and ds.masks.dtype == torch.bool


def test_shapes_default_mode_is_ten_thousand(default_mode):
    assert len(data.load("shapes")) == 10_000


def test_shapes_is_deterministic_and_seeded():
    a, b = data.load("shapes", n=64, seed=1), data.load("shapes", n=64, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, data.load("shapes", n=64, seed=2).images)


def test_shapes_extra_family_and_style_options():
    extra = data.load("shapes-extra", n=50, size=48, style="outline", noise=0.0)
    _check_images(extra, 50, 3, 48, 10)
    assert set(extra.classes).isdisjoint(data.load("shapes", n=10).classes)
    assert extra.name == "shapes-extra"


def test_digits_are_sklearn_digits_scaled_and_resizable():
    digits = data.load("digits")
    _check_images(digits, 1797, 1, 8, 10)
    assert digits.images.max() == 1.0  # 16 -> 1
    big = data.load("digits", n=100, size=28)
    _check_images(big, 100, 1, 28, 10)
    # Resizing keeps the picture: the big image averaged back down is close to the small one.
    down = torch.nn.functional.adaptive_avg_pool2d(big.images, 8)
    assert (down - digits.images[:100]).abs().mean() < 0.1


def test_faces_hold_both_classes_in_any_prefix():
    faces = data.load("faces")
    _check_images(faces, 200, 1, 25, 2)
    assert faces.classes == ["non-face", "face"]
    assert faces.labels[:10].tolist().count(1) == 5
    assert int(faces.labels.sum()) == 100


def test_photos_are_chw_in_unit_range_and_resizable():
    pics = data.photos()
    assert set(pics) == set(data.PHOTOS)
    for name, image in pics.items():
        assert image.ndim == 3 and image.shape[0] == 3, name
        assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    small = data.photos(["astronaut", "camera"], size=64, gray=True)
    assert small["astronaut"].shape == (1, 64, 64) and small["camera"].shape == (1, 64, 64)
    with pytest.raises(ValueError, match="unknown photo.*'mona_lisa'.*expected some of"):
        data.photos(["mona_lisa"])


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*shapes.*digits"):
        data.load("imagenet")


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive int"),
    ({"n": -5}, "n must be a positive int"),
    ({"size": 0}, "size"),
])
def test_bad_sizes_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load("digits", **kwargs)


def test_shapes_options_only_apply_to_shapes():
    with pytest.raises(TypeError, match="only apply to the shapes datasets"):
        data.load("digits", style="outline")


def test_internet_dataset_without_cache_names_the_offline_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"Cannot load 'mnist'.*download=True.*load\('digits'\)"):
        data.load("mnist")
    with pytest.raises(RuntimeError, match=r"load\('shapes'\)"):
        data.load("cifar10")


def test_default_path_needs_no_network(no_network, tmp_path, monkeypatch):
    """Every offline dataset loads with sockets blocked; an opt-in download fails clearly."""
    data.load("shapes", n=32)
    data.load("shapes-extra", n=32)
    data.load("scenes", n=8)
    data.load("digits", size=16)
    data.load("faces")
    data.photos()
    assert no_network == []  # nothing even tried
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"download failed.*load\('shapes'\)"):
        data.load("fashion-mnist", download=True)
    assert no_network, "the opt-in download should have tried the network"


def test_opt_in_dataset_is_read_from_the_cache(tmp_path, monkeypatch):
    """A cached torchvision dataset loads through the same function (files written by hand here)."""
    import numpy as np

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 4)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        # IDX format: magic (0x0803 images / 0x0801 labels), sizes big-endian, then bytes.
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([0x803, n, 28, 28], dtype=">i4").tobytes() + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, n], dtype=">i4").tobytes() + labels.tobytes())
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    ds = data.load("mnist", n=10)
    _check_images(ds, 10, 1, 28, 10)
    assert torch.allclose(ds.images[0, 0] * 255, torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, size=(12, 28, 28), dtype=np.uint8)[0]).float())
    assert len(data.load("mnist", train=False)) == 4


def test_imageset_validates_shapes_and_batches():
    images, labels = torch.rand(6, 3, 8, 8), torch.arange(6)
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        ImageSet(torch.rand(6, 8, 8), labels, ["a"])
    with pytest.raises(ValueError, match=r"labels must be \(6,\)"):
        ImageSet(images, torch.arange(5), ["a"])
    with pytest.raises(ValueError, match=r"masks must be \(N, H, W\)"):
        ImageSet(images, labels, ["a"], masks=torch.zeros(6, 4, 4, dtype=torch.bool))
    ds = ImageSet(images, labels, [str(i) for i in range(6)], masks=torch.zeros(6, 8, 8, dtype=torch.bool))
    x, y = ds[2]
    assert x.shape == (3, 8, 8) and int(y) == 2
    xb, yb = ds[[1, 3]]
    assert xb.shape == (2, 3, 8, 8) and yb.tolist() == [1, 3]
    sub = ds.subset([5, 0])
    assert sub.labels.tolist() == [5, 0] and sub.masks.shape == (2, 8, 8)
    assert "6 images of 3x8x8" in repr(ds)


def test_split_is_a_seeded_partition():
    ds = data.load("shapes", n=200)
    tr, va, te = data.split(ds, (0.7, 0.2, 0.1), seed=3)
    assert (len(tr), len(va), len(te)) == (140, 40, 20)
    together = torch.cat([tr.images, va.images, te.images]).flatten(1)
    assert torch.unique(together, dim=0).shape[0] == 200  # nothing lost, nothing twice
    again = data.split(ds, (0.7, 0.2, 0.1), seed=3)
    assert torch.equal(again.train.labels, tr.labels)
    assert not torch.equal(data.split(ds, (0.7, 0.2, 0.1), seed=4).train.labels, tr.labels)
    assert tr.masks is not None and tr.masks.shape[0] == 140


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (-0.1, 0.6, 0.5)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="sum to 1"):
        data.split(data.load("digits", n=20), fractions)


def test_split_rejects_too_few_images():
    with pytest.raises(ValueError, match="too few"):
        data.split(data.load("digits", n=3), (0.5, 0.25, 0.25))


def test_channel_stats_and_normalize_layer():
    images = torch.rand(50, 3, 4, 4) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    mean, std = data.channel_stats(images)
    assert mean.shape == (3,) and std.shape == (3,)
    out = Normalize(mean, std)(images)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match=r"Normalize expects \(N, 3, H, W\)"):
        Normalize(mean, std)(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0.5], [0.0])
    with pytest.raises(ValueError, match="one value per channel"):
        Normalize([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match=r"non-empty \(N, C, H, W\)"):
        data.channel_stats(torch.rand(3, 4, 4))


def test_loaders_batch_shuffle_repeatably_and_cover_everything():
    splits = data.split(data.load("shapes", n=300), (0.8, 0.1, 0.1))
    loaders = data.make_loaders(splits, batch_size=64)
    batches = list(loaders["train"])
    assert [b[0].shape[0] for b in batches] == [64, 64, 64, 48]
    assert batches[0][0].shape == (64, 3, 32, 32) and batches[0][1].dtype == torch.long
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == sorted(splits.train.labels.tolist())
    assert not torch.equal(labels, splits.train.labels)  # shuffled
    again = torch.cat([b[1] for b in data.make_loaders(splits, batch_size=64)["train"]])
    assert torch.equal(labels, again)  # same seed, same order
    val = torch.cat([b[1] for b in loaders["val"]])
    assert torch.equal(val, splits.val.labels)  # not shuffled
    assert not loaders["train"].pin_memory
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.make_loader(splits.train, batch_size=0)


def test_available_lists_offline_and_online():
    names = data.available()
    assert names["shapes"] == "offline" and "internet" in names["cifar10"]
