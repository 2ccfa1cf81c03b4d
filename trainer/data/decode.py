"""One image file -> the centre square at ``size`` px, (size, size, 3) uint8, or the reason not.

Every PIL mode ends as 8-bit RGB the way a viewer shows it, instead of ``convert("RGB")``
clipping or truncating it:
- 16-bit and 32-bit integer greys (``I;16*``, ``I``) are scaled from their range (65535 -> 255),
  not clipped (a 16-bit PNG would load all white);
- float greys (``F``, e.g. a float TIFF) in [0, 1] are scaled by 255, in [0, 255] kept, any other
  range stretched from its min to its max (they would load all black); NaN reads as 0;
- alpha (RGBA, LA, PA, a palette with a transparent index) is composited over white;
- CMYK goes through its embedded ICC profile when it has one and LAB through the CIE L*a*b*
  profile (PIL's plain conversion reads LAB as RGB); YCbCr, HSV, palette and 1-bit images are
  converted by PIL; the EXIF orientation is applied.

Memory: decoding threads share a pixel budget (``PIXEL_BUDGET``): an image waits until its
pixels fit in what the others hold, and one that alone exceeds the budget (after JPEG's
draft-mode downscale) is refused with its size, before it is decoded. PIL's own bomb check
(about 179 Mpx) would let four 169 Mpx images through at once, 3.6 GB together.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PIXEL_BUDGET = 50_000_000  # pixels decoded at once across threads (~1 GB peak with conversions)
_INT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class PixelBudget:
    """A counting semaphore over pixels: ``hold(n)`` waits until ``n`` pixels are free."""

    def __init__(self, total: int):
        self.total, self._free = total, total
        self._cv = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        with self._cv:
            self._cv.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._cv:
                self._free += n
                self._cv.notify_all()


def decode_square(path: Path, size: int, budget: PixelBudget) -> np.ndarray | str:
    """Centre square of the image, resized to (size, size, 3) uint8; or, if it cannot be
    used, a short reason (not an image, truncated, too many pixels, an unknown mode)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: let the decoder downscale (keeps >= size)
            w, h = im.size
            if w * h > budget.total:
                return (f"{w}x{h} = {w * h / 1e6:.0f} Mpx, over the pixel budget of {budget.total / 1e6:.0f} Mpx; "
                        "downscale it")
            with budget.hold(w * h):
                ImageOps.exif_transpose(im, in_place=True)
                rgb = to_rgb(im)
                w, h = rgb.size
                side = min(w, h)
                box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
                # Crop first: resize(box=...) would filter in pixels from outside the square.
                return np.asarray(rgb.crop(box).resize((size, size), Image.Resampling.BICUBIC), np.uint8)
    except Exception as e:  # noqa: BLE001 - any decoder failure (truncated, not an image, bomb) means: skip it
        return " ".join(str(e).split())[:120] or type(e).__name__


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB as a viewer shows it (module docstring)."""
    if im.mode in _INT_GREY or im.mode == "F":
        return Image.fromarray(_grey_to_uint8(np.asarray(im), im.mode), "L").convert("RGB")
    if im.mode in ("CMYK", "LAB"):
        return _colour_managed(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _colour_managed(im: Image.Image) -> Image.Image:
    """CMYK through its embedded ICC profile (PIL's plain conversion ignores it), LAB through
    the CIE L*a*b* profile (PIL's plain conversion reads it as RGB); both to sRGB."""
    from PIL import ImageCms

    srgb = ImageCms.createProfile("sRGB")
    if im.mode == "LAB":
        return ImageCms.applyTransform(im, ImageCms.buildTransform(ImageCms.createProfile("LAB"), srgb, "LAB", "RGB"))
    icc = im.info.get("icc_profile")
    if icc:
        try:
            return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion below
    return im.convert("RGB")


def _grey_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) integer or float grey -> uint8 by its range (module docstring)."""
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode != "F":
        if mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535):
            return np.round(a / 257.0).clip(0, 255).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
    elif lo >= 0 and hi <= 1:
        return np.round(a * 255.0).astype(np.uint8)
    elif lo >= 0 and hi <= 255:
        return np.round(a).astype(np.uint8)
    if hi == lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8)
