"""Procedural shapes: one salient object per image on a cluttered, textured background.

Built for watching self-supervised training at CPU scale. Every image differs in many ways:
the object in class, tint (any hue, pale), size, position, rotation, shading and outline; the
background in brightness, a gradient, often stripes and soft blobs, thin distractor strokes,
small dots and pixel noise. The object is the salient thing: the largest item, drawn last,
fully inside the image, bright and pale over a dim, greyish background whose texture and
clutter are kept low in contrast.

Why the background is subdued and the objects pale: what a method can learn most cheaply is
what it learns first. With backgrounds as bright and colourful as the objects, DINO, MAE and
I-JEPA learned background and colour identity and their k-NN on the classes stayed at
random-init level (about 0.15, chance 0.125) after 300-3000 steps; a supervised ViT on the same
data stayed at chance for 1500 steps. With saturated objects of random hue, DINO could be
taught to ignore the hue (hue jitter between its views) but MAE (which reconstructs the
colours) and I-JEPA (whose target encoder sees the same colours as its context) encoded hue
first: k-NN 0.17 -> 0.16-0.17 after 250-500 steps. Pale tints (saturation at most 0.25) leave
luminance contrast, i.e. the outline, as the strongest cue for all three (docs/architecture.md).

Each object is an implicit region in its own rotated, scaled frame (u, v) and is painted
through that boolean region, so the mask is exactly the set of pixels the object coloured.
All rendering is vectorised over images with numpy (5000 images of 32 px in well under a
second per core). Images come in chunks of ``CHUNK`` drawn from their own random streams, so
image i depends only on (seed, split, i): a smaller ``n`` gives a prefix of a larger one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.config import Data
from trainer.data.datasets import ImageDataset

CLASSES = ("disc", "square", "triangle", "star", "cross", "ring", "ellipse", "heart")
CHUNK = 256
_SPLIT_STREAM = {"train": 0, "val": 1}

# Object radius (px) as a fraction of the image side; every class fits in the unit circle of
# its frame, and centres keep one radius from the border, so no object is ever cut off.
RADIUS = (0.22, 0.38)
CENTRE_JITTER = 0.5  # centre offsets from the middle: uniform within this fraction of the room left
BG_VALUE = (0.05, 0.4)  # HSV value (brightness) of background colours: dim
BG_SAT = (0.0, 0.15)  # HSV saturation of background colours: greyish
BG_CONTRAST = 0.3  # texture and clutter amplitude around each background's mean colour (1 = full)
OBJ_VALUE = (0.8, 1.0)  # HSV value of object colours: bright (any hue)
OBJ_SAT = (0.0, 0.25)  # HSV saturation of object colours: pale tints (saturated hues dominate MAE / I-JEPA)
NOISE_STD_MAX = 8.0  # per-image Gaussian pixel noise, std drawn from [0, this] (0..255 scale)


@dataclass
class ShapeSet:
    """Generated images with their ground truth.

    images (N, S, S, 3) uint8; masks (N, S, S) bool; labels (N,) int64 into ``CLASSES``;
    centres (N, 2) (x, y) px; radii (N,) px; angles (N,) rad; colors (N, 3) object base RGB.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    angles: np.ndarray
    colors: np.ndarray


def load(data: Data, split: str, seed: int) -> ImageDataset:
    """The shapes split for the data config: ``num_train`` / ``num_val`` images from ``seed``."""
    n = data.num_train if split == "train" else data.num_val
    s = make_shapes(n, data.image_size, seed, split)
    return ImageDataset(s.images, s.labels, list(CLASSES), "shapes", s.masks)


def make_shapes(n: int, size: int = 32, seed: int = 0, split: str = "train", *,
                object_rgb: tuple[int, int, int] | None = None, noise: bool = True) -> ShapeSet:
    """``n`` images of ``size`` px, identical for identical (seed, split).

    ``object_rgb`` paints every object in that flat colour and ``noise=False`` drops the pixel
    noise: both only for checks and figures (the random draws stay the same).
    """
    chunks = [_chunk(np.random.default_rng([seed, _SPLIT_STREAM[split], k]), size, object_rgb, noise)
              for k in range(-(-n // CHUNK))]
    if not chunks:
        return ShapeSet(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), bool),
                        np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
    return ShapeSet(*(np.concatenate(parts)[:n] for parts in zip(*(
        (c.images, c.masks, c.labels, c.centres, c.radii, c.angles, c.colors) for c in chunks))))


def object_masks(labels: np.ndarray, centres: np.ndarray, radii: np.ndarray, angles: np.ndarray,
                 size: int) -> np.ndarray:
    """Boolean masks (N, S, S): pixel centres inside each object's region."""
    u, v = _frame(centres, radii, angles, size)
    masks = np.zeros(u.shape, bool)
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            masks[idx] = _REGIONS[name](u[idx], v[idx])
    return masks


# --- the object classes, each a region of its unit frame -----------------------------------
def _disc(u, v):
    return u * u + v * v <= 0.8**2


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.7


def _triangle(u, v):
    # Equilateral, circumradius 1: three half-planes at distance 1/2 from the centre.
    inside = np.ones(u.shape, bool)
    for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
        inside &= u * np.cos(a) + v * np.sin(a) <= 0.5
    return inside


def _star(u, v, outer=1.0, inner=0.45):
    # Fold the angle into one half-spike: outer vertex O at angle 0, inner vertex I at pi/5;
    # inside = on the origin's side of the edge O-I.
    r = np.hypot(u, v)
    a = np.mod(np.arctan2(v, u), 2 * np.pi / 5)
    a = np.minimum(a, 2 * np.pi / 5 - a)
    px, py = r * np.cos(a), r * np.sin(a)
    ex, ey = inner * np.cos(np.pi / 5) - outer, inner * np.sin(np.pi / 5)
    return ex * py - ey * (px - outer) >= 0


def _cross(u, v, w=0.3, length=0.92):
    au, av = np.abs(u), np.abs(v)
    return ((au <= w) & (av <= length)) | ((av <= w) & (au <= length))


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 <= 0.92**2) & (r2 >= 0.5**2)


def _ellipse(u, v):
    return (u / 0.95) ** 2 + (v / 0.55) ** 2 <= 1


def _heart(u, v):
    # Two lobes and a point: discs at (+-0.36, 0.28) of radius 0.42 over a triangle to (0, -0.9);
    # y up = -v. The notch and the tip keep it apart from the disc at 32 px.
    y = -v
    lobes = ((u - 0.36) ** 2 + (y - 0.28) ** 2 <= 0.42**2) | ((u + 0.36) ** 2 + (y - 0.28) ** 2 <= 0.42**2)
    # Triangle (-0.75, 0.15), (0.75, 0.15), (0, -0.9): below the lobes' line, inside both slanted edges.
    tri = (y <= 0.15) & (1.05 * u - 0.75 * y <= 0.675) & (-1.05 * u - 0.75 * y <= 0.675)
    return lobes | tri


_REGIONS = {"disc": _disc, "square": _square, "triangle": _triangle, "star": _star, "cross": _cross,
            "ring": _ring, "ellipse": _ellipse, "heart": _heart}

# Exact areas in units of radius^2 (the heart has no closed form): for checks.
AREAS = {"disc": np.pi * 0.64, "square": 1.96, "triangle": 3 * np.sqrt(3) / 4,
         "star": 5 * 0.45 * np.sin(np.pi / 5), "cross": 8 * 0.3 * 0.92 - 4 * 0.09,
         "ring": np.pi * (0.92**2 - 0.25), "ellipse": np.pi * 0.95 * 0.55}


# --- rendering ------------------------------------------------------------------------------
def _chunk(rng: np.random.Generator, size: int, object_rgb, noise: bool) -> ShapeSet:
    n, s = CHUNK, float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres, (S, S)

    # Exactly balanced classes within a chunk, in random order.
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    radii = rng.uniform(*RADIUS, n) * s
    centres = s / 2 + CENTRE_JITTER * rng.uniform(radii[:, None] - s / 2, s / 2 - radii[:, None], (n, 2))
    angles = rng.uniform(0, 2 * np.pi, n)

    img = _background(rng, n, xx, yy, s)  # (n, S, S, 3) float 0..255
    masks = object_masks(labels, centres, radii, angles, size)

    # Object colour: the candidate farthest from the background it covers.
    cand = _hsv_to_rgb(rng.uniform(0, 1, (n, 4)), rng.uniform(*OBJ_SAT, (n, 4)), rng.uniform(*OBJ_VALUE, (n, 4)))
    area = np.maximum(masks.sum((1, 2)), 1)[:, None]
    flat_masks = masks.reshape(n, 1, -1).astype(np.float32)  # (n, 1, S*S)
    under = np.matmul(flat_masks, img.reshape(n, -1, 3))[:, 0] / area  # mean background under the object
    colors = cand[np.arange(n), np.linalg.norm(cand - under[:, None], axis=-1).argmax(1)]

    # Shading: a linear brightness ramp across the object; outline: a darker 1 px rim.
    u, v = _frame(centres, radii, angles, size)
    phi = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    ramp = 1 + rng.uniform(0, 0.3, n).astype(np.float32)[:, None, None] * (u * np.cos(phi) + v * np.sin(phi))
    rim = masks & ~_erode(masks) & (rng.random(n) < 0.35)[:, None, None]
    shade = ramp * np.where(rim, np.float32(0.45), np.float32(1.0))  # (n, S, S)
    paint = colors.astype(np.float32)[:, None, None, :] * shade[..., None]
    if object_rgb is not None:
        paint = np.broadcast_to(np.asarray(object_rgb, np.float32), img.shape)
        colors = np.tile(np.asarray(object_rgb, np.float64), (n, 1))
    img = np.where(masks[..., None], paint, img)

    sigma = rng.uniform(0, NOISE_STD_MAX, n).astype(np.float32)[:, None, None, None]
    jitter = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    if noise:
        img = img + jitter
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return ShapeSet(images, masks, labels, centres, radii, angles, colors)


def _background(rng: np.random.Generator, n: int, xx: np.ndarray, yy: np.ndarray, s: float) -> np.ndarray:
    """Gradient, then (often) stripes and soft colour blobs, then strokes and dots: (n, S, S, 3)."""
    size = xx.shape[0]

    def uni(lo, hi, shape):  # float32 draws keep every image-sized array float32
        return rng.uniform(lo, hi, shape).astype(np.float32)

    def colours(k: int, sat=BG_SAT, val=BG_VALUE) -> np.ndarray:
        rgb = _hsv_to_rgb(uni(0, 1, (n, k)), uni(*sat, (n, k)), uni(*val, (n, k)))
        return rgb.astype(np.float32)

    def coord(theta: np.ndarray) -> np.ndarray:
        # Signed position along direction theta, in image sides, (n, S, S).
        c, si = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        return (((xx - s / 2) * c + (yy - s / 2) * si) / s).astype(np.float32)

    # Linear gradient between two colours.
    c = colours(2)
    t = np.clip(coord(uni(0, 2 * np.pi, n)) + 0.5, 0, 1)[..., None]
    img = c[:, None, None, 0] + (c[:, None, None, 1] - c[:, None, None, 0]) * t

    # Stripes of a third colour, soft to hard-edged.
    on = rng.random(n) < 0.5
    freq = uni(1.5, 5, n)[:, None, None]
    wave = np.sin(2 * np.pi * freq * coord(uni(0, np.pi, n)) + uni(0, 2 * np.pi, n)[:, None, None])
    hard = uni(1, 6, n)[:, None, None]
    w = np.clip(0.5 + 0.5 * hard * wave, 0, 1) * (uni(0.35, 0.8, n) * on)[:, None, None]
    img = img * (1 - w[..., None]) + colours(1)[:, None, None, 0] * w[..., None]

    # Soft blobs: a 4x4 grid of random colours and opacities, bilinearly upsampled.
    on = rng.random(n) < 0.6
    interp = _upsample_matrix(4, size)  # (S, 4)
    grid_rgb = colours(16).reshape(n, 4, 4, 3).transpose(0, 3, 1, 2)  # (n, 3, 4, 4)
    grid_a = uni(0, 1, (n, 1, 4, 4)) ** 2 * (uni(0.4, 0.9, n) * on)[:, None, None, None]
    grid = np.concatenate([grid_rgb, grid_a.astype(np.float32)], 1)  # (n, 4, 4, 4): r, g, b, alpha
    up = (interp @ grid @ interp.T).transpose(0, 2, 3, 1)  # (n, S, S, 4)
    blob_rgb, blob_a = up[..., :3], up[..., 3:]
    img = img * (1 - blob_a) + blob_rgb * blob_a

    # Thin distractor strokes (segments), then small dots: clutter, smaller than any object.
    k = 3
    a = uni(0, s, (n, k, 2))
    ang = uni(0, 2 * np.pi, (n, k))
    length = uni(0.15, 0.5, (n, k)) * s
    b = a + length[..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)
    half_width = uni(0.4, 0.9, (n, k)) * s / 32
    present = rng.random((n, k)) < 0.8
    stroke_rgb = colours(k)
    dot_c = uni(0, s, (n, 2, 2))
    dot_r = uni(0.04, 0.08, (n, 2)) * s
    dot_on = rng.random((n, 2)) < 0.5
    dot_rgb = colours(2)
    # Paint by layer index (0 = none, later layers on top), then one gather of the colours.
    layer = np.zeros((n, size, size), np.int64)
    for j in range(k):
        d = _segment_distance(xx, yy, a[:, j], b[:, j])
        layer[(d <= half_width[:, j, None, None]) & present[:, j, None, None]] = 1 + j
    for j in range(2):
        d2 = (xx - dot_c[:, j, 0, None, None]) ** 2 + (yy - dot_c[:, j, 1, None, None]) ** 2
        layer[(d2 <= dot_r[:, j, None, None] ** 2) & dot_on[:, j, None, None]] = 1 + k + j
    palette = np.concatenate([np.zeros((n, 1, 3), np.float32), stroke_rgb, dot_rgb], 1)  # (n, 1 + k + 2, 3)
    clutter = np.take_along_axis(palette, layer.reshape(n, -1, 1), 1).reshape(img.shape)
    img = np.where((layer > 0)[..., None], clutter, img)
    mean = img.mean(axis=(1, 2), keepdims=True)  # (n, 1, 1, 3)
    return (mean + BG_CONTRAST * (img - mean)).astype(np.float32)


def _frame(centres: np.ndarray, radii: np.ndarray, angles: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel centre in each object's frame: rotated by -angle, in units of the radius; (N, S, S) x2."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx = xx - centres[:, 0, None, None].astype(np.float32)
    dy = yy - centres[:, 1, None, None].astype(np.float32)
    c = (np.cos(angles) / radii).astype(np.float32)[:, None, None]
    s = (np.sin(angles) / radii).astype(np.float32)[:, None, None]
    return c * dx + s * dy, -s * dx + c * dy


def _segment_distance(xx, yy, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each pixel centre to segment a-b; a, b (n, 2) -> (n, S, S)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    ex, ey = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    t = np.clip(((xx - ax) * ex + (yy - ay) * ey) / np.maximum(ex * ex + ey * ey, 1e-9), 0, 1)
    return np.hypot(xx - ax - t * ex, yy - ay - t * ey)


def _erode(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion of (N, S, S) masks (outside the image counts as background)."""
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    return m & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]


def _upsample_matrix(g: int, size: int) -> np.ndarray:
    """(size, g) weights of bilinear interpolation from g grid points spread over the image."""
    pos = np.clip((np.arange(size) + 0.5) / size * (g - 1), 0, g - 1)
    lo = np.minimum(np.floor(pos).astype(int), g - 2)
    frac = pos - lo
    m = np.zeros((size, g), np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (any shape) -> RGB in [0, 255] (shape + (3,))."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]])  # (6, ..., 3)
    return 255 * np.take_along_axis(table, i[None, ..., None], 0)[0]
