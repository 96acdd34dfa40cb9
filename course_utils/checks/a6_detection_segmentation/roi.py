"""a6's ROI checks: Fast R-CNN's ROI max pooling and Mask R-CNN's ROI align, as torchvision.ops defines them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import case_label as _where
from . import (Case, _call, _compare, _declare, _finish, _generator, _name, _seed, _show,
               reference_roi_align, reference_roi_pool)


def _features(setting: dict, seed: int) -> torch.Tensor:
    g = _generator(seed)
    x = torch.randn(*setting["features"], generator=g)
    return -x.abs() - 0.1 if setting.get("negative") else x


def random_rois(g: torch.Generator, k: int, images: int, height: int, width: int, scale: float,
                half: bool = False) -> torch.Tensor:
    """(k, 5) rows (batch index, x1, y1, x2, y2) in input-image pixels (the map's size / scale): corners anywhere in
    [-10 %, 110 %] of the image, some partly outside. ``half``: odd integer corners with scale 1/2 (x * scale = j + 0.5,
    where the rounding rule matters)."""
    extent = torch.tensor([width, height], dtype=torch.float32) / scale
    if half:
        a = torch.randint(0, int(extent.min()) // 2, (k, 2), generator=g) * 2 + 1
        b = a + torch.randint(0, 6, (k, 2), generator=g) * 2
        corners = torch.cat([a, b], dim=1).float()
    else:
        a = (torch.rand(k, 2, generator=g) * 1.2 - 0.1) * extent
        size = torch.rand(k, 2, generator=g) * 0.7 * extent
        corners = torch.cat([a, a + size], dim=1)
    index = torch.randint(images, (k, 1), generator=g).float()
    return torch.cat([index, corners], dim=1)


def _roi_inputs(setting: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    features = _features(setting, seed)
    if "rois" in setting:
        return features, torch.tensor(setting["rois"], dtype=torch.float32).reshape(-1, 5)
    n, _, h, w = setting["features"]
    g = _generator(seed + 1)
    rois = random_rois(g, setting["k"], n, h, w, setting.get("scale", 1.0), setting.get("half", False))
    if setting.get("small"):  # narrower and shorter than a pixel (one of them empty)
        rois[:, 3:] = rois[:, 1:3] + torch.rand(rois.shape[0], 2, generator=g) * 0.9
        rois[0, 3:] = rois[0, 1:3]
    return features, rois


def _describe(name: str, features: torch.Tensor, rois: torch.Tensor, setting: dict, align: bool) -> str:
    options = f", spatial_scale={setting.get('scale', 1.0)}"
    if align:
        options += f", sampling_ratio={setting.get('sr', -1)}, aligned={setting.get('aligned', False)}"
    return (f"{name}(features, rois, {setting['out']!r}{options}) with features of shape {tuple(features.shape)}"
            f"{' (all negative)' if setting.get('negative') else ''}, rois = {_show(rois)}")


# --- 4. roi_pool ------------------------------------------------------------------------------------------------
POOL_HINT = (" (start = round(x1 * spatial_scale) rounding half away from zero, end = round(x2 * spatial_scale), "
             "roi width = max(end - start + 1, 1), bin j covers [floor(j * bin) + start, ceil((j + 1) * bin) + start) "
             "clipped to the map; the maximum over each bin, 0 for an empty bin)")
POOL_CASES: list[Case] = [
    ("one ROI inside the map, output_size an int (a square grid of bins)",
     {"features": (1, 2, 8, 8), "rois": [[0, 1, 1, 6, 6]], "out": 2}),
    ("output_size (ph, pw) with ph != pw", {"features": (1, 2, 8, 8), "rois": [[0, 0, 1, 7, 5]], "out": (3, 2)}),
    ("spatial_scale: ROI corners in input-image pixels, multiplied by spatial_scale",
     {"features": (1, 3, 8, 8), "rois": [[0, 4, 8, 24, 28], [0, 0, 0, 31, 31], [0, 9, 2, 19, 13]], "out": 2,
      "scale": 0.25}),
    ("rounding half away from zero: x * spatial_scale = j + 0.5 rounds up (torch.round rounds half to even)",
     {"features": (1, 2, 10, 10), "rois": [[0, 5, 3, 13, 9], [0, 1, 9, 9, 17], [0, 5.2, 2.8, 10.6, 12.2]],
      "out": 2, "scale": 0.5}),
    ("several images: each ROI pools from the image of its batch index",
     {"features": (3, 2, 6, 6), "rois": [[2, 0, 0, 5, 5], [0, 1, 1, 4, 4], [1, 0, 2, 5, 5], [2, 2, 0, 3, 5]],
      "out": 2}),
    ("a ROI partly outside the map: its bins clipped to the map; an empty bin gives 0",
     {"features": (1, 2, 6, 6), "rois": [[0, -4, -4, 3, 3], [0, 4, 4, 12, 12], [0, -9, 1, -1, 5]], "out": 3}),
    ("a ROI smaller than its grid: bins overlap (floor of the start, ceil of the end); a one-pixel ROI",
     {"features": (1, 2, 8, 8), "rois": [[0, 2, 2, 3, 3], [0, 1, 1, 1, 1], [0, 5, 1, 7, 2]], "out": (3, 4)}),
    ("all-negative features: the maximum of each bin (not clamped at 0)",
     {"features": (2, 2, 8, 8), "rois": [[1, 0, 0, 7, 7], [0, 2, 1, 6, 7]], "out": 3, "negative": True}),
    ("random ROIs, sizes and spatial scales", {"features": (2, 3, 9, 11), "k": 6, "out": (2, 3), "scale": 0.5}),
    ("random ROIs, sizes and spatial scales", {"features": (1, 2, 7, 7), "k": 5, "out": 3, "scale": 0.3}),
    ("no ROIs: a (0, C, ph, pw) tensor", {"features": (1, 2, 5, 5), "rois": [], "out": (2, 3)}),
]
HIDDEN_POOL_CASES: list[Case] = [
    ("random ROIs, sizes and spatial scales", {"features": (2, 2, 10, 8), "k": 7, "out": (3, 2), "scale": 0.25}),
    ("random ROIs, sizes and spatial scales", {"features": (3, 3, 6, 9), "k": 6, "out": 2, "scale": 1.0}),
    ("rounding half away from zero: x * spatial_scale = j + 0.5 rounds up (torch.round rounds half to even)",
     {"features": (2, 2, 12, 12), "k": 6, "out": (2, 3), "scale": 0.5, "half": True}),
    ("all-negative features: the maximum of each bin (not clamped at 0)",
     {"features": (1, 3, 8, 8), "k": 4, "out": 2, "scale": 0.5, "negative": True}),
    ("no ROIs: a (0, C, ph, pw) tensor", {"features": (2, 3, 4, 6), "rois": [], "out": 2}),
]


@_declare()
def check_roi_pool(roi_pool: Callable, hidden: bool = False) -> None:
    """roi_pool(features, rois, output_size, spatial_scale): torchvision's ROI max pooling, (K, C, ph, pw)."""
    name = _name(roi_pool, "roi_pool")
    cases = HIDDEN_POOL_CASES if hidden else POOL_CASES
    for index, (rule, setting) in enumerate(cases):
        features, rois = _roi_inputs(setting, _seed(hidden, "check_roi_pool", index))
        scale = setting.get("scale", 1.0)
        where = _where(name, _describe(name, features, rois, setting, align=False), rule, hidden)
        got = _call(roi_pool, where, hidden, features.clone(), rois.clone(), setting["out"], spatial_scale=scale)
        expected = reference_roi_pool(features, rois, setting["out"], scale)
        _compare(got, expected, where, hidden, POOL_HINT, atol=1e-6, rtol=0.0)
    _finish(name, "ROI max pooling", len(cases), hidden)


# --- 5. roi_align -----------------------------------------------------------------------------------------------
ALIGN_HINT = (" (no rounding: corners times spatial_scale (minus 0.5 if aligned); sampling_ratio x sampling_ratio "
              "points "
              "per bin, or ceil(roi_h / ph) x ceil(roi_w / pw) per ROI when it is <= 0; each point bilinearly "
              "interpolated, 0 beyond one pixel outside the map; the mean of the points)")
ALIGN_CASES: list[Case] = [
    ("bilinear interpolation at the sampling points, averaged (sampling_ratio 2, aligned=False)",
     {"features": (1, 2, 8, 8), "rois": [[0, 1.3, 0.7, 6.2, 5.9]], "out": 2, "sr": 2}),
    ("sampling_ratio <= 0: an adaptive grid of ceil(roi_h / ph) x ceil(roi_w / pw) points, per ROI",
     {"features": (1, 2, 9, 9), "rois": [[0, 0.5, 0.5, 7.5, 3.2], [0, 2, 1, 4, 7.9]], "out": (2, 3), "sr": -1}),
    ("sampling_ratio <= 0: an adaptive grid of ceil(roi_h / ph) x ceil(roi_w / pw) points, per ROI",
     {"features": (1, 2, 12, 12), "rois": [[0, 0.2, 1.1, 11.3, 10.4], [0, 3, 3, 5.5, 4]], "out": 2, "sr": 0}),
    ("sampling_ratio 1: one point per bin, at its centre",
     {"features": (1, 2, 8, 8), "rois": [[0, 0.6, 1.2, 7.1, 6.3]], "out": 3, "sr": 1}),
    ("sampling_ratio 3: 3 x 3 points per bin", {"features": (1, 2, 8, 8), "rois": [[0, 1, 0.5, 6.5, 7]], "out": 2,
                                                "sr": 3}),
    ("spatial_scale: corners multiplied by spatial_scale, no rounding",
     {"features": (1, 3, 8, 8), "rois": [[0, 3, 5, 27, 22], [0, 10, 1, 14, 30]], "out": 2, "scale": 0.25, "sr": 2}),
    ("aligned=True: every corner shifted by -0.5 pixel after scaling",
     {"features": (1, 2, 8, 8), "rois": [[0, 1.3, 0.7, 6.2, 5.9], [0, 2, 2, 6, 6]], "out": 2, "sr": 2,
      "aligned": True}),
    ("aligned=False: a ROI narrower or shorter than 1 pixel counts as 1 pixel",
     {"features": (1, 2, 8, 8), "rois": [[0, 2, 2, 2.4, 5], [0, 3, 4, 6, 4]], "out": 2, "sr": -1}),
    ("aligned=True: no minimum size (an empty ROI has no sampling points and gives 0)",
     {"features": (1, 2, 8, 8), "rois": [[0, 3, 3, 3, 3], [0, 2, 2, 2.4, 5]], "out": 2, "sr": -1, "aligned": True}),
    ("points outside the map: beyond one pixel outside gives 0, within it clamped to the border",
     {"features": (1, 2, 8, 8), "rois": [[0, -3, -2.5, 4, 3], [0, 5, 5.5, 11, 10], [0, -0.8, 6.5, 2, 8.7]], "out": 3,
      "sr": 2}),
    ("several images: each ROI pools from the image of its batch index",
     {"features": (3, 2, 6, 6), "rois": [[2, 0, 0, 5, 5], [0, 1, 1, 4, 4], [1, 0.5, 2, 5, 5.5]], "out": 2, "sr": 2}),
    ("random ROIs, sizes, scales and settings", {"features": (2, 3, 9, 11), "k": 5, "out": (2, 3), "scale": 0.5,
                                                 "sr": -1}),
    ("random ROIs, sizes, scales and settings", {"features": (1, 2, 7, 7), "k": 4, "out": 2, "scale": 0.3, "sr": 2,
                                                 "aligned": True}),
    ("no ROIs: a (0, C, ph, pw) tensor", {"features": (1, 2, 5, 5), "rois": [], "out": (2, 3)}),
]
HIDDEN_ALIGN_CASES: list[Case] = [
    ("random ROIs, sizes, scales and settings", {"features": (2, 2, 10, 8), "k": 5, "out": (3, 2), "scale": 0.25,
                                                 "sr": -1}),
    ("random ROIs, sizes, scales and settings", {"features": (2, 3, 7, 9), "k": 4, "out": 2, "scale": 1.0, "sr": 3}),
    ("random ROIs, sizes, scales and settings", {"features": (1, 2, 8, 8), "k": 4, "out": (2, 2), "scale": 0.5,
                                                 "sr": 0, "aligned": True}),
    ("sampling_ratio 1: one point per bin, at its centre",
     {"features": (1, 2, 9, 7), "k": 4, "out": 3, "scale": 0.5, "sr": 1}),
    ("aligned=True: no minimum size (an empty ROI has no sampling points and gives 0)",
     {"features": (2, 2, 8, 8), "k": 4, "out": 2, "scale": 1.0, "sr": -1, "aligned": True, "small": True}),
    ("no ROIs: a (0, C, ph, pw) tensor", {"features": (2, 3, 4, 6), "rois": [], "out": 2}),
]


@_declare()
def check_roi_align(roi_align: Callable, hidden: bool = False) -> None:
    """roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned): torchvision's ROI align."""
    name = _name(roi_align, "roi_align")
    cases = HIDDEN_ALIGN_CASES if hidden else ALIGN_CASES
    for index, (rule, setting) in enumerate(cases):
        features, rois = _roi_inputs(setting, _seed(hidden, "check_roi_align", index))
        scale, sr, aligned = setting.get("scale", 1.0), setting.get("sr", -1), setting.get("aligned", False)
        where = _where(name, _describe(name, features, rois, setting, align=True), rule, hidden)
        got = _call(roi_align, where, hidden, features.clone(), rois.clone(), setting["out"], spatial_scale=scale,
                    sampling_ratio=sr, aligned=aligned)
        expected = reference_roi_align(features, rois, setting["out"], scale, sr, aligned)
        _compare(got, expected, where, hidden, ALIGN_HINT)
    _finish(name, "ROI align", len(cases), hidden)
