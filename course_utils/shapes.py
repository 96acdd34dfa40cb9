"""Shapes: a generated, offline image-classification dataset with object masks.

Every image shows one geometric shape (random class, colour, size, position and
rotation) on a background of a different colour, with optional smooth background
texture and Gaussian pixel noise. Next to each image comes the per-pixel mask of
the painted object, so a saliency map can be scored by how much of it falls on
the object (lecture 09) and a segmentation net has targets (a6).

Rendering is vectorized: each shape is an inside-test ``f(x, y) -> bool`` on a
coordinate grid in the shape's own frame, where the shape fits in the unit disc.
Coverage is rendered at 3x resolution and average-pooled (anti-aliased edges);
the mask is ``coverage >= 0.5`` (9 samples per pixel, so no ties at one half).

Images are drawn in chunks of ``CHUNK`` images, each from its own generator
``np.random.default_rng([seed, chunk_index])`` that always draws a full chunk's
parameters, so ``generate(100, seed=s)`` equals ``generate(20000, seed=s)[:100]``.
The style and ``texture`` switch do not change what is drawn: the same seed gives
the same objects, filled or outlined, on textured or flat backgrounds.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

__all__ = ["FAMILIES", "STYLES", "SHAPES", "CHUNK", "MIN_CONTRAST", "class_names", "generate"]

Array = np.ndarray
CHUNK = 1024           # images per generator; fixed, so prefixes are stable
BATCH_SUBPIXELS = 2 ** 18  # render this many sub-pixels at a time: small temporaries stay in cache
SUPERSAMPLE = 3        # coverage is rendered at 3x (9 samples, no ties at 0.5) and average-pooled
MIN_CONTRAST = 0.3     # |L_fg - L_bg| >= this, luminance L = 0.299 R + 0.587 G + 0.114 B
R_RANGE = (0.35, 0.85)  # object radius / image half-width: the object spans 35-85% of the image
OUTLINE_MIN_WIDTH = 1.25  # outline band: size / 20 pixels wide, at least this
LUMA = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------- shape tests
# Each test takes local coordinates x, y (any broadcastable float arrays; y points
# up) in which the shape fits (almost) inside the unit disc, and returns a bool mask.

def _star(x: Array, y: Array, n: int, inner: float) -> Array:
    """n-pointed star, tips at radius 1, inner vertices at radius `inner`.

    Fold the polar angle into one sector centred on a tip: psi = |phi - a round(phi / a)|,
    a = 2 pi / n. Inside iff p = rho (cos psi, sin psi) lies on the origin's side of the
    line from the tip T = (1, 0) to the inner vertex I = inner (cos a/2, sin a/2):
    (p - T) . (-d_y, d_x) >= 0 with d = I - T.
    """
    a = 2 * np.pi / n
    rho = np.sqrt(x * x + y * y)
    phi = np.arctan2(y, x)
    psi = np.abs(phi - a * np.rint(phi / a))                        # in [0, a/2]
    dx, dy = float(inner * np.cos(a / 2) - 1.0), float(inner * np.sin(a / 2))  # floats keep x's dtype
    return -(rho * np.cos(psi) - 1.0) * dy + rho * np.sin(psi) * dx >= 0


def _polygon(x: Array, y: Array, n: int) -> Array:
    """Regular n-gon with circumradius 1: a star whose 'inner vertices' are the edge
    midpoints, at the apothem cos(pi / n)."""
    return _star(x, y, n, float(np.cos(np.pi / n)))


def _box(x: Array, y: Array, x0: float, x1: float, y0: float, y1: float) -> Array:
    """Axis-aligned rectangle [x0, x1] x [y0, y1]."""
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _disc(x: Array, y: Array, cx: float = 0.0, cy: float = 0.0, r: float = 1.0) -> Array:
    """(x - cx)^2 + (y - cy)^2 <= r^2."""
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _heart(x: Array, y: Array) -> Array:
    """Heart curve (u^2 + v^2 - 1)^3 - u^2 v^3 <= 0, scaled and shifted into the unit disc
    (u = 1.1 x, v = 1.1 y + 0.25; its bounding circle has radius 1.25 around v = 0.25,
    so the heart pokes ~0.14 out of the unit disc, like the other shapes' corners)."""
    u, v = 1.1 * x, 1.1 * y + 0.25
    q = u * u + v * v - 1
    return q * q * q - u * u * v * v * v <= 0                        # float ** 3 is slow


def _arrow(x: Array, y: Array) -> Array:
    """Shaft |y| <= 0.2 for x in [-0.95, 0.15], plus a head: the triangle with tip (1, 0)
    and base x = 0.1 of half-width 0.6, i.e. x >= 0.1 and |y| <= 0.6 (1 - x) / 0.9."""
    head = (x >= 0.1) & (np.abs(y) <= 0.6 * (1.0 - x) / 0.9)
    return _box(x, y, -0.95, 0.15, -0.2, 0.2) | head


SHAPES: dict[str, Callable[[Array, Array], Array]] = {
    # basic
    "circle":   lambda x, y: _disc(x, y),
    "square":   lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 0.75,       # L-inf ball
    "triangle": lambda x, y: _polygon(x, y, 3),
    "star":     lambda x, y: _star(x, y, 5, 0.45),
    "cross":    lambda x, y: _box(x, y, -0.3, 0.3, -0.95, 0.95) | _box(x, y, -0.95, 0.95, -0.3, 0.3),
    "ring":     lambda x, y: _disc(x, y) & ~_disc(x, y, r=0.6),               # annulus 0.6 <= rho <= 1
    "crescent": lambda x, y: _disc(x, y) & ~_disc(x, y, cx=0.45, r=0.8),      # disc minus offset disc
    "heart":    _heart,
    "arrow":    _arrow,
    "hexagon":  lambda x, y: _polygon(x, y, 6),
    # extra
    "ellipse":     lambda x, y: x * x + (y / 0.5) ** 2 <= 1,                   # semi-axes 1 and 0.5
    "pentagon":    lambda x, y: _polygon(x, y, 5),
    "rectangle":   lambda x, y: _box(x, y, -0.9, 0.9, -0.4, 0.4),
    "half_disc":   lambda x, y: _disc(x, y, cy=-0.4, r=0.95) & (y >= -0.4),
    "l_shape":     lambda x, y: _box(x, y, -0.7, -0.2, -0.8, 0.8) | _box(x, y, -0.7, 0.7, -0.8, -0.3),
    "t_shape":     lambda x, y: _box(x, y, -0.8, 0.8, 0.35, 0.8) | _box(x, y, -0.25, 0.25, -0.85, 0.8),
    "square_ring": lambda x, y: (np.maximum(np.abs(x), np.abs(y)) <= 0.75)
                                & (np.maximum(np.abs(x), np.abs(y)) > 0.42),
    "star4":       lambda x, y: _star(x, y, 4, 0.35),
    "star6":       lambda x, y: _star(x, y, 6, 0.55),
    "trapezoid":   lambda x, y: (np.abs(y) <= 0.55) & (np.abs(x) <= 0.7 - 0.3 * y / 0.55),  # widths 2 / 0.8
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "basic": ("circle", "square", "triangle", "star", "cross",
              "ring", "crescent", "heart", "arrow", "hexagon"),
    "extra": ("ellipse", "pentagon", "rectangle", "half_disc", "l_shape",
              "t_shape", "square_ring", "star4", "star6", "trapezoid"),
}
STYLES = ("filled", "outline")


def class_names(family: str = "basic") -> list[str]:
    """Class names of `family`, in label order (label k is class_names(family)[k])."""
    _check_choice("family", family, tuple(FAMILIES))
    return list(FAMILIES[family])


# ---------------------------------------------------------------- validation
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_choice(name: str, value: object, known: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, known))}")


# ---------------------------------------------------------------- rendering
def _erode(m: Array, steps: int) -> Array:
    """Binary erosion of masks m (B, S, S), alternating a 3x3 square and a 4-neighbour
    cross (a rough disc of radius `steps`). Outside the image counts as background."""
    for i in range(steps):
        v = m.copy()                                   # v = m & up(m) & down(m)
        v[:, 1:, :] &= m[:, :-1, :]
        v[:, :-1, :] &= m[:, 1:, :]
        v[:, [0, -1], :] = False
        src = v if i % 2 == 0 else m                   # square: erode v sideways; cross: erode m
        e = v.copy()
        e[:, :, 1:] &= src[:, :, :-1]
        e[:, :, :-1] &= src[:, :, 1:]
        e[:, :, [0, -1]] = False
        m = e
    return m


def _pool(inside: Array) -> Array:
    """Coverage (B, S/f, S/f) float32: the mean of each f x f block of inside (B, S, S),
    f = SUPERSAMPLE (summed as uint8 slices: much faster than reshape + mean)."""
    f, u = SUPERSAMPLE, inside.view(np.uint8)
    total = sum(u[:, i::f, j::f] for i in range(f) for j in range(f))
    return total.astype(np.float32) * (1.0 / (f * f))


def _contrasting_colours(rng: np.random.Generator, c: int) -> tuple[Array, Array]:
    """Background and foreground RGB colours (c, 3) with |L_fg - L_bg| >= MIN_CONTRAST.

    Draw both uniformly, then mix the foreground towards white (fg + t (1 - fg), raises L)
    or black ((1 - t) fg, lowers L) just enough. Going up needs L_bg + MIN_CONTRAST <= 1,
    going down L_bg >= MIN_CONTRAST; one always works, and when both do a coin picks.
    """
    bg, fg, coin = rng.random((c, 3)), rng.random((c, 3)), rng.random(c)
    return bg, _contrast_against(bg, fg, coin)


def _contrast_against(bg: Array, fg: Array, coin: Array) -> Array:
    """Foreground colours fg (c, 3) mixed towards white or black just enough that
    |L_fg - L_bg| >= MIN_CONTRAST against the background colours bg (c, 3); coin (c,) in
    [0, 1) picks the direction when both work (see _contrasting_colours)."""
    lb, lf = bg @ LUMA, fg @ LUMA                                   # (c,)
    can_up, can_down = lb + MIN_CONTRAST <= 1, lb - MIN_CONTRAST >= 0
    up = can_up & (~can_down | (coin < 0.5))
    t_up = np.clip((lb + MIN_CONTRAST - lf) / np.maximum(1 - lf, 1e-9), 0, 1)   # L(t) = lf + t (1 - lf)
    t_dn = np.clip(1 - (lb - MIN_CONTRAST) / np.maximum(lf, 1e-9), 0, 1)       # L(t) = (1 - t) lf
    return np.where(up[:, None], fg + t_up[:, None] * (1 - fg), (1 - t_dn[:, None]) * fg)


def _texture_params(rng: np.random.Generator, c: int) -> dict[str, Array]:
    """Random parameters of c background textures (see _texture)."""
    return {"amp": rng.random((c, 3)) * [0.06, 0.04, 0.05],          # gradient, stripes, blobs
            "angle": rng.random((c, 2)) * 2 * np.pi,                 # gradient, stripe directions
            "freq": rng.uniform([1.5, 0.5, 0.5], [4.0, 1.5, 1.5], (c, 3)),  # cycles per image width
            "phase": rng.random((c, 3)) * 2 * np.pi}


def _texture(p: dict[str, Array], m: int, size: int) -> Array:
    """Smooth background variation t (m, H, W) for the first m parameter sets:

        t = a0 (cos b0 x + sin b0 y) / sqrt(2)                        linear gradient along b0
          + a1 sin(pi f0 (cos b1 x + sin b1 y) + phi0)                stripes across b1
          + a2 cos(pi f1 x + phi1) cos(pi f2 y + phi2)                low-frequency blobs

    with |t| <= 0.15. Every term is built from row (m, 1, W) and column (m, H, 1)
    factors, stripes via sin(A + B) = sin A cos B + cos A sin B, so that only a few
    operations touch all m H W pixels.
    """
    u = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)  # pixel centres in [-1, 1]
    x, y = u[None, None, :], -u[None, :, None]                       # (1, 1, W), (1, H, 1)
    a, b, f, ph = (p[key][:m, :, None, None].astype(np.float32) for key in ("amp", "angle", "freq", "phase"))
    grad = (a[:, 0] * np.cos(b[:, 0]) * x + a[:, 0] * np.sin(b[:, 0]) * y) * (0.5 ** 0.5)
    sx = np.pi * f[:, 0] * np.cos(b[:, 1]) * x + ph[:, 0]            # (m, 1, W) stripe phase along x
    sy = np.pi * f[:, 0] * np.sin(b[:, 1]) * y                       # (m, H, 1) ... and along y
    stripes = (a[:, 1] * np.sin(sx)) * np.cos(sy) + (a[:, 1] * np.cos(sx)) * np.sin(sy)
    blobs = (a[:, 2] * np.cos(np.pi * f[:, 1] * x + ph[:, 1])) * np.cos(np.pi * f[:, 2] * y + ph[:, 2])
    return grad + stripes + blobs                                    # (m, H, W) float32


def _col(v: Array) -> Array:
    """(B,) -> (B, 1, 1) float32, to broadcast one number per image over its pixels."""
    return v[:, None, None].astype(np.float32)


def _coverage(shape: Callable[[Array, Array], Array], centre: Array, theta: Array, r: Array,
              size: int, outline: bool) -> Array:
    """Coverage (B, H, W) in [0, 1] of B shapes with centres (B, 2), rotations (B,) and
    radii (B,), all in units of the image half-width; the image spans [-1, 1]^2."""
    s = SUPERSAMPLE * size
    g = ((np.arange(s) + 0.5) / s * 2 - 1).astype(np.float32)        # (S,) sub-pixel centres
    gx = g[None, None, :] - _col(centre[:, 0])                       # (B, 1, S)
    gy = -g[None, :, None] - _col(centre[:, 1])                      # (B, S, 1), y points up
    cos, sin, inv_r = _col(np.cos(theta)), _col(np.sin(theta)), _col(1 / r)
    # shape frame: (x, y) = R(-theta) (p - centre) / r
    x = (cos * inv_r) * gx + (sin * inv_r) * gy                      # (B, S, S)
    y = (-sin * inv_r) * gx + (cos * inv_r) * gy
    inside = shape(x, y)                                             # (B, S, S) bool
    if outline:                                                      # keep a band along the boundary
        width = max(OUTLINE_MIN_WIDTH, size / 20)                    # band width in pixels
        inside &= ~_erode(inside, steps=round(SUPERSAMPLE * width))
    return _pool(inside)


def _render_chunk(out: Array, seed: int, index: int, names: tuple[str, ...], outline: bool,
                  noise: float, texture: bool, buf: Array | None = None) -> tuple[Array, Array]:
    """Render the first m images of chunk `index` into out (m, 3, H, W); return their
    labels (m,) and masks (m, H, W). buf: optional (CHUNK, 3, H, W) float32 scratch space."""
    m, size = out.shape[0], out.shape[-1]
    rng = np.random.default_rng([seed, index])
    c, k = CHUNK, len(names)
    # Every draw is made for the full chunk, in a fixed order, whatever m, style, texture.
    labels = rng.permutation(np.arange(c) % k)                       # balanced within the chunk
    r = rng.uniform(*R_RANGE, c)                                     # radius (fraction of half-width)
    centre = rng.uniform(-1, 1, (c, 2)) * (1 - r[:, None])           # shape stays inside the image
    theta = rng.uniform(0, 2 * np.pi, c)                             # rotation
    bg, fg = _contrasting_colours(rng, c)
    tex_params = _texture_params(rng, c)

    cover = np.zeros((m, size, size), np.float32)                    # (m, H, W) coverage in [0, 1]
    per = max(1, BATCH_SUBPIXELS // (SUPERSAMPLE * size) ** 2)       # images per rendering batch
    for label, name in enumerate(names):
        idx = np.flatnonzero(labels[:m] == label)
        for j in range(0, idx.size, per):
            b = idx[j:j + per]
            cover[b] = _coverage(SHAPES[name], centre[b], theta[b], r[b], size, outline)

    # image = (1 - alpha) (bg + t) + alpha fg + noise, written in place into out (m, 3, H, W)
    alpha = cover[:, None]                                           # (m, 1, H, W)
    out[:] = (fg[:m] - bg[:m]).astype(np.float32)[:, :, None, None]
    out *= alpha
    out += bg[:m, :, None, None].astype(np.float32)
    if texture:
        out += (1 - alpha) * _texture(tex_params, m, size)[:, None]
    if noise > 0:
        if buf is None or buf.shape != (c, 3, size, size):
            buf = np.empty((c, 3, size, size), np.float32)
        z = rng.standard_normal(dtype=np.float32, out=buf)[:m]       # full chunk, then the first m
        z *= noise
        out += z
    np.clip(out, 0, 1, out=out)
    return labels[:m].astype(np.int64), cover >= 0.5


def generate(n: int, *, size: int = 32, seed: int = 0, family: str = "basic", style: str = "filled",
             noise: float = 0.05, texture: bool = True) -> tuple[Array, Array, Array]:
    """Generate n images of random shapes, with labels and object masks.

    Inputs:
    - n: number of images N (>= 0)
    - size: image height = width H = W in pixels (>= 8)
    - seed: data are a deterministic function of the seed; prefixes agree across n
    - family: "basic" or "extra" (10 classes each, see FAMILIES / class_names)
    - style: "filled", or "outline" (only a band along the boundary is painted)
    - noise: std of additive Gaussian pixel noise (>= 0), before clipping to [0, 1]
    - texture: smooth random variation (gradient, stripes, blobs) on the background

    Returns (images, labels, masks):
    - images: float32 (N, 3, H, W) in [0, 1]
    - labels: int64 (N,) in [0, K), K = len(class_names(family))
    - masks: bool (N, H, W), True where the object is painted (coverage >= 0.5)

    generate(m, seed=s) equals generate(n, seed=s)[:m] for m <= n, and the same seed gives
    the same objects (labels, sizes, positions, rotations, colours) whatever style, noise
    and texture are, so e.g. masks(style="outline") is a subset of masks(style="filled").

    >>> images, labels, masks = generate(8, seed=0)
    >>> images.shape, labels.shape, masks.shape
    ((8, 3, 32, 32), (8,), (8, 32, 32))
    """
    n = _check_int("n", n, 0)
    size = _check_int("size", size, 8)
    seed = _check_int("seed", seed, 0)
    _check_choice("family", family, tuple(FAMILIES))
    _check_choice("style", style, STYLES)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 <= noise < np.inf:
        raise ValueError(f"noise must be a finite number >= 0 (a pixel std), got {noise!r}")

    images = np.empty((n, 3, size, size), np.float32)
    labels = np.empty(n, np.int64)
    masks = np.empty((n, size, size), bool)
    buf = np.empty((CHUNK, 3, size, size), np.float32) if noise > 0 and n > 0 else None
    for index, start in enumerate(range(0, n, CHUNK)):
        stop = min(start + CHUNK, n)
        labels[start:stop], masks[start:stop] = _render_chunk(
            images[start:stop], seed, index, FAMILIES[family], style == "outline",
            float(noise), bool(texture), buf)
    return images, labels, masks
