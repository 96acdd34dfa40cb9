"""Properties of course_utils.shapes.generate: the generated shapes dataset with masks."""
from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from course_utils import shapes

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@cache
def gen(n: int, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached generate(); the tests only read the arrays."""
    return shapes.generate(n, **kwargs)


def luminance(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W)."""
    return np.einsum("nchw,c->nhw", images, LUMA)


# ---------------------------------------------------------------- API, shapes, dtypes
@pytest.mark.parametrize("family", sorted(shapes.FAMILIES))
@pytest.mark.parametrize("style", shapes.STYLES)
@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
def test_shapes_dtypes_and_ranges(family, style, size):
    images, labels, masks = shapes.generate(40, size=size, seed=1, family=family, style=style)
    assert images.shape == (40, 3, size, size) and images.dtype == np.float32
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert masks.shape == (40, size, size) and masks.dtype == bool
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert labels.min() >= 0 and labels.max() < len(shapes.class_names(family))


def test_n_zero_gives_empty_arrays_of_the_right_shape():
    images, labels, masks = shapes.generate(0, size=16)
    assert images.shape == (0, 3, 16, 16) and images.dtype == np.float32
    assert labels.shape == (0,) and labels.dtype == np.int64
    assert masks.shape == (0, 16, 16) and masks.dtype == bool


def test_families_have_ten_disjoint_class_names():
    basic, extra = shapes.class_names("basic"), shapes.class_names("extra")
    assert shapes.class_names() == basic == list(shapes.FAMILIES["basic"])
    assert len(basic) == len(set(basic)) == 10 and len(extra) == len(set(extra)) == 10
    assert not set(basic) & set(extra)
    assert set(basic) | set(extra) <= set(shapes.SHAPES)


# ---------------------------------------------------------------- randomness
def test_deterministic_per_seed():
    a, b = shapes.generate(300, seed=7), shapes.generate(300, seed=7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs", [{}, {"style": "outline", "noise": 0.0, "size": 20, "family": "extra"}])
def test_prefix_stable_across_chunks(kwargs):
    n = shapes.CHUNK + 300                                   # two chunks
    full = shapes.generate(n, seed=3, **kwargs)
    for m in (1, 100, shapes.CHUNK, shapes.CHUNK + 1):
        for part, whole in zip(shapes.generate(m, seed=3, **kwargs), full, strict=True):
            np.testing.assert_array_equal(part, whole[:m])


def test_different_seeds_and_chunks_differ():
    (x0, y0, m0), (x1, y1, m1) = gen(shapes.CHUNK + 200, seed=0), gen(200, seed=1)
    assert (y0[:200] != y1).mean() > 0.5 and (m0[:200] != m1).any()
    assert np.abs(x0[:200] - x1).mean() > 0.1
    # the second chunk is not a copy of the first
    assert (y0[:200] != y0[shapes.CHUNK:]).mean() > 0.5
    assert np.abs(x0[:200] - x0[shapes.CHUNK:]).mean() > 0.1


@pytest.mark.parametrize("family", sorted(shapes.FAMILIES))
def test_labels_cover_all_classes_and_are_balanced(family):
    _, labels, _ = shapes.generate(shapes.CHUNK, seed=2, family=family, noise=0.0, texture=False)
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= shapes.CHUNK // 10 and counts.max() <= shapes.CHUNK // 10 + 1, counts
    counts = np.bincount(labels[:500], minlength=10)        # a prefix is roughly balanced too
    assert counts.min() >= 30 and counts.max() <= 70, counts


# ---------------------------------------------------------------- masks and pixels
@pytest.mark.parametrize("style", shapes.STYLES)
@pytest.mark.parametrize("size", [16, 32])
def test_masks_nonempty_and_not_the_whole_image(style, size):
    _, _, masks = gen(1000, size=size, style=style, seed=4)
    area = masks.mean(axis=(1, 2))                           # (N,) fraction of the image
    assert area.min() > 0.01, f"an empty-looking mask: min area {area.min():.4f}"
    assert area.max() < 0.75, f"a mask covers most of the image: {area.max():.3f}"


def test_object_has_guaranteed_contrast_without_noise_and_texture():
    images, _, masks = gen(1000, seed=5, noise=0.0, texture=False)
    lum = luminance(images)
    for i in range(len(lum)):
        background = np.median(lum[i][~masks[i]])            # the flat background colour
        contrast = np.abs(lum[i][masks[i]] - background)     # partly covered pixels have less
        assert contrast.max() >= shapes.MIN_CONTRAST - 1e-4, (i, contrast.max())
        assert contrast.mean() >= 0.5 * shapes.MIN_CONTRAST, (i, contrast.mean())


def test_background_is_flat_without_noise_and_texture():
    images, _, masks = gen(1000, seed=5, noise=0.0, texture=False)
    for i in range(0, 1000, 50):
        padded = np.pad(masks[i], 2)                         # dilate the mask by 2 pixels
        near = np.logical_or.reduce([np.roll(padded, (dy, dx), axis=(0, 1))
                                     for dy in range(-2, 3) for dx in range(-2, 3)])[2:-2, 2:-2]
        background = images[i][:, ~near]                     # (3, n_far): one flat colour
        assert np.ptp(background, axis=1).max() < 1e-5


def test_object_stands_out_from_textured_noisy_background():
    images, _, masks = gen(1000, seed=6)
    lum = luminance(images)
    ratios = []
    for i in range(len(lum)):
        background = np.median(lum[i][~masks[i]])            # estimate of the background level
        dev = np.abs(lum[i] - background)
        ratios.append(dev[masks[i]].mean() / dev[~masks[i]].mean())
    ratios = np.array(ratios)
    assert ratios.min() > 2, f"an object hardly differs from its background: ratio {ratios.min():.2f}"
    assert np.median(ratios) > 5


def test_noise_is_gaussian_with_the_requested_std():
    clean, _, _ = gen(400, seed=8, noise=0.0)
    noisy, _, _ = gen(400, seed=8, noise=0.1)
    ok = (clean > 0.35) & (clean < 0.65)                     # 3.5 sigma from clipping
    diff = (noisy - clean)[ok]
    assert abs(diff.mean()) < 0.005 and abs(diff.std() - 0.1) < 0.005, (diff.mean(), diff.std())


def test_texture_only_changes_the_background_and_is_modest():
    flat, y0, m0 = gen(400, seed=9, noise=0.0, texture=False)
    textured, y1, m1 = gen(400, seed=9, noise=0.0)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(m0, m1)
    diff = np.abs(textured - flat)
    assert diff.max() <= 0.15 + 1e-5
    assert (diff.max(axis=(1, 2, 3)) > 0.01).mean() > 0.9    # (almost) every image has some texture
    assert (diff.mean(axis=(1, 2, 3)) > 1e-3).mean() > 0.8


def test_outline_masks_are_subsets_of_filled_masks_and_smaller():
    _, y_fill, m_fill = gen(1000, seed=10, noise=0.0, texture=False)
    _, y_out, m_out = gen(1000, seed=10, noise=0.0, texture=False, style="outline")
    np.testing.assert_array_equal(y_fill, y_out)             # same objects, only painted differently
    assert not (m_out & ~m_fill).any()                       # the band lies inside the filled shape
    area_fill, area_out = m_fill.sum(axis=(1, 2)), m_out.sum(axis=(1, 2))
    assert area_out.mean() < 0.8 * area_fill.mean()
    assert (area_out < area_fill).mean() > 0.8


@pytest.mark.parametrize("family", sorted(shapes.FAMILIES))
def test_mean_mask_area_matches_the_shape_area(family):
    """E[area in pixels] = A * E[r^2] * (size / 2)^2, A = the shape's area in its unit frame."""
    _, labels, masks = gen(3000, seed=11, family=family, noise=0.0, texture=False)
    g = (np.arange(1000) + 0.5) / 500 - 1                    # fine grid on [-1, 1]^2
    lo, hi = shapes.R_RANGE
    mean_r2 = (lo * lo + lo * hi + hi * hi) / 3              # E[r^2], r ~ U(lo, hi)
    for k, name in enumerate(shapes.class_names(family)):
        unit_area = shapes.SHAPES[name](g[None, :], -g[:, None]).mean() * 4
        expected = unit_area * mean_r2 * (32 / 2) ** 2
        measured = masks[labels == k].sum(axis=(1, 2)).mean()
        assert abs(measured / expected - 1) < 0.12, (name, measured, expected)


def test_area_ordering_of_related_classes():
    _, labels, masks = gen(3000, seed=11, noise=0.0, texture=False)
    names = shapes.class_names("basic")
    area = {name: masks[labels == k].sum(axis=(1, 2)).mean() for k, name in enumerate(names)}
    assert area["ring"] < 0.8 * area["circle"]
    assert area["crescent"] < 0.8 * area["circle"]
    assert area["star"] < 0.6 * area["circle"]
    assert area["triangle"] < 0.7 * area["hexagon"]


def test_rotation_is_uniform():
    """The long axis of the rectangles' masks (from their second moments) points every way."""
    _, labels, masks = gen(3000, seed=12, family="extra", noise=0.0, texture=False)
    rect = masks[labels == shapes.class_names("extra").index("rectangle")]
    angles = []
    for m in rect:
        yy, xx = np.nonzero(m)
        cov = np.cov(np.stack([xx, -yy]))                    # (2, 2)
        w, v = np.linalg.eigh(cov)
        angles.append(np.arctan2(v[1, 1], v[0, 1]) % np.pi)  # direction of the largest eigenvalue
    counts = np.histogram(angles, bins=6, range=(0, np.pi))[0]
    assert counts.min() >= 0.5 * len(angles) / 6, counts
    # and two same-class images are not the same picture
    assert len({m.tobytes() for m in rect}) == len(rect)


def test_objects_lie_inside_the_image():
    _, _, masks = gen(1000, seed=13, noise=0.0, texture=False)
    border = masks[:, 0].sum() + masks[:, -1].sum() + masks[:, :, 0].sum() + masks[:, :, -1].sum()
    assert border / masks.sum() < 0.01                       # corners may just touch the edge
    rows, cols = masks.any(axis=2), masks.any(axis=1)        # (N, H), (N, W): rows / columns the object covers
    centre_y = (rows * np.arange(32)).sum(1) / rows.sum(1)   # (N,) middle of the covered rows
    centre_x = (cols * np.arange(32)).sum(1) / cols.sum(1)   # (N,) middle of the covered columns
    for axis, centre in (("y", centre_y), ("x", centre_x)):  # positions vary along both axes, around the middle
        assert centre.min() < 12 and centre.max() > 20, (axis, centre.min(), centre.max())
        assert abs(centre.mean() - 15.5) < 1, (axis, centre.mean())
    # and independently: where an object sits vertically says nothing about where it sits horizontally
    assert abs(np.corrcoef(centre_y, centre_x)[0, 1]) < 0.15


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    ({"n": -1}, "n"),
    ({"n": 2.5}, "n"),
    ({"n": "10"}, "n"),
    ({"n": 4, "size": 7}, "size"),
    ({"n": 4, "size": 32.0}, "size"),
    ({"n": 4, "family": "animals"}, "family"),
    ({"n": 4, "style": "dotted"}, "style"),
    ({"n": 4, "noise": -0.1}, "noise"),
    ({"n": 4, "noise": float("nan")}, "noise"),
    ({"n": 4, "seed": -1}, "seed"),
])
def test_bad_input_raises_a_clear_error(kwargs, name):
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=name) as info:
        shapes.generate(n, **kwargs)
    assert repr(kwargs.get(name, n))[:3] in str(info.value)  # says what was given


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="'basic', 'extra'"):
        shapes.generate(1, family="animals")
    with pytest.raises(ValueError, match="'filled', 'outline'"):
        shapes.generate(1, style="dotted")
    with pytest.raises(ValueError, match="family"):
        shapes.class_names("animals")
