"""The views each method trains on: DINO's multi-crop, or one lightly augmented view.

multicrop (Caron et al. 2021, scaled to the image size): ``n_global`` crops of ``global_size``
px covering ``global_scale`` of the image and ``n_local`` crops of ``local_size`` px covering
``local_scale``; each with a horizontal flip, colour jitter and greyscale (the spec's; the paper's
(0.4, 0.4, 0.2, 0.1) at p=0.8 and p=0.2 by default; DINO's config strengthens them for shapes);
Gaussian blur at p=1.0 on the first global crop, 0.1 on the others and 0.5 on local crops;
solarisation at p=0.2 on global crops after the first. single (MAE, I-JEPA: their masks come
from the method): one crop of scale (0.35, 1) and a flip.

Speed: per-image ``torchvision.transforms.v2`` takes about 0.35 s for 64 images x (2 + 6)
crops at 32 px on one core, mostly call overhead. Here crop boxes are drawn exactly as
``v2.RandomResizedCrop`` draws them, all crops of one size are cut and resized in one
``torchvision.ops.roi_align`` call (bilinear, bins averaged when shrinking), and the
photometric operations run batched over all views of one size (``photometric``), each image
with its own draws. Every draw comes from one ``torch.Generator``, so the loader can make a
step's views a function of (seed, step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby

import torch
from torchvision.ops import roi_align

from trainer.data import photometric as P
from trainer.data.datasets import MEAN, STD
from trainer.data.draws import Draws
from trainer.data.views import ViewSpec

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range
SINGLE_SCALE = (0.35, 1.0)  # crop scale of the single view (MAE uses 0.2, I-JEPA 0.3)


@dataclass(frozen=True)
class _View:
    size: int
    scale: tuple[float, float]
    photometric: bool  # flip only when False
    blur_p: float = 0.0
    solarize_p: float = 0.0


class ViewTransform:
    """Callable: one uint8 image (3, S, S) -> list of normalised float views, globals first.

    ``batch(images, generator)`` does the same for a stacked batch, returning one (B, 3, h, w)
    tensor per view position: this is what the loader uses. ``generator`` may be the
    ``Draws`` of these images' rows in a global batch (DDP: every rank draws what one process
    would draw for its images).
    """

    def __init__(self, spec: ViewSpec):
        if spec.kind == "multicrop":
            views = [_View(spec.global_size, spec.global_scale, True, 1.0 if k == 0 else 0.1, 0.0 if k == 0 else 0.2)
                     for k in range(spec.n_global)]
            views += [_View(spec.local_size, spec.local_scale, True, 0.5)] * spec.n_local
        elif spec.kind == "single":
            views = [_View(spec.global_size, SINGLE_SCALE, False)]
        else:
            raise ValueError(f"ViewSpec.kind='{spec.kind}' is not known; use 'multicrop' or 'single'")
        self.spec = spec
        self.views = views
        self.blur_sigma = blur_sigma_range(spec.global_size)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        return [v[0] for v in self.batch(image.unsqueeze(0), generator)]

    def batch(self, images: torch.Tensor, generator: torch.Generator | Draws | None = None) -> list[torch.Tensor]:
        """uint8 (B, 3, S, S) -> [float (B, 3, size_v, size_v) per view], normalised."""
        b = len(images)
        rows = Draws.of(generator if generator is not None else torch.default_generator, b)
        x01 = images.float().div_(255.0)
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        out: list[torch.Tensor] = []
        # Views of one size and scale are processed together: (k * B) images, view-major.
        for (size, scale, photometric), group in groupby(self.views, key=lambda v: (v.size, v.scale, v.photometric)):
            views = list(group)
            g = rows.copies(len(views))  # the draws of these (k * B) rows, view-major
            x = random_resized_crop(x01, g, size, scale, copies=len(views))
            flip = (g.rand() < 0.5).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
            if photometric and self.spec.rotation > 0:
                x = random_rotation(x, g, self.spec.rotation)
            if photometric:
                bri, con, sat, hue = self.spec.color_jitter
                x = P.random_color_jitter(x, g, self.spec.jitter_p, bri, con, sat, hue)
                x = P.random_grayscale(x, g, self.spec.grayscale_p)
                blur_p = torch.tensor([v.blur_p for v in views]).repeat_interleave(b)
                x = P.random_gaussian_blur(x, g, blur_p, blur_kernel_size(size), self.blur_sigma)
                solarize_p = torch.tensor([v.solarize_p for v in views]).repeat_interleave(b)
                if solarize_p.any():
                    x = P.random_solarize(x, g, solarize_p)
            out.extend(((x - mean) / std).split(b))
        return out


def rotate(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate each image (N, 3, h, w) about its centre by its angle ``theta`` (N,) in radians,
    counter-clockwise as displayed; corners take the nearest border pixel (bilinear, one
    grid_sample call). At multiples of 90 degrees the grid lands on pixel centres: exact."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(c)
    # affine_grid maps output coordinates (x right, y down, in [-1, 1]) to input ones
    mat = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1).to(x.dtype)  # (N, 2, 3)
    grid = torch.nn.functional.affine_grid(mat, list(x.shape), align_corners=False)  # (N, h, w, 2)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_rotation(x: torch.Tensor, g: torch.Generator | Draws, degrees: float) -> torch.Tensor:
    """``rotate`` each image (N, 3, h, w) by its own angle, uniform in [-degrees, degrees]
    (drawn for the whole global batch under DDP, like every other view draw)."""
    theta = (Draws.of(g, x.shape[0]).rand(dtype=torch.float64) * 2 - 1) * math.radians(degrees)
    return rotate(x, theta)


def build_view_transform(spec: ViewSpec) -> ViewTransform:
    """The augmentation pipeline a method asks for (see the module docstring)."""
    return ViewTransform(spec)


def random_resized_crop(images: torch.Tensor, g: torch.Generator | Draws, size: int, scale: tuple[float, float],
                        copies: int = 1) -> torch.Tensor:
    """float (B, 3, H, W) -> (copies * B, 3, size, size): ``copies`` RandomResizedCrops per image,
    view-major (all images' first crop, then all second crops, ...)."""
    b, _, h, w = images.shape
    top, left, ch, cw = crop_boxes(g, copies * b, h, w, scale).double().unbind(1)
    batch_index = torch.arange(b, dtype=torch.float64).repeat(copies)
    rois = torch.stack([batch_index, left, top, left + cw, top + ch], dim=1).to(images.dtype)  # (k*B, 5)
    # aligned=True: pixel k spans [k, k+1], so a box of whole pixels samples like resized_crop;
    # sampling_ratio=-1 averages ceil(box / size) samples per output pixel when shrinking.
    return roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def crop_boxes(g: torch.Generator | Draws, n: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float] = RATIO, tries: int = 10) -> torch.Tensor:
    """(n, 4) int64 boxes (top, left, height, width): RandomResizedCrop's draw, vectorised.

    Up to ``tries`` draws of area and log-aspect per image; the first that fits wins, else the
    central crop clipped to the ratio range, exactly as ``RandomResizedCrop.make_params``.
    """
    d = Draws.of(g, n)
    u_area, u_ratio = d.rand(tries, lead=(2,), dtype=torch.float64)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_ratio)
    cw = torch.round(torch.sqrt(area * aspect)).long()
    ch = torch.round(torch.sqrt(area / aspect)).long()
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    first = torch.argmax(ok.long(), dim=1)  # first fitting try (0 if none; handled below)
    found = ok.any(dim=1)
    cw = cw.gather(1, first[:, None])[:, 0]
    ch = ch.gather(1, first[:, None])[:, 0]
    top = (d.rand(dtype=torch.float64) * (height - ch + 1)).long()
    left = (d.rand(dtype=torch.float64) * (width - cw + 1)).long()
    # Fallback: the central crop, clipped to the aspect-ratio range.
    in_ratio = width / height
    fw, fh = width, height
    if in_ratio < ratio[0]:
        fh = int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw = int(round(height * ratio[1]))
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw])
    boxes = torch.stack([top, left, ch, cw], dim=1)
    return torch.where(found[:, None], boxes, fallback)


def blur_kernel_size(size: int) -> int:
    """Odd kernel of about a tenth of the view side, at least 3 (DINO: 23 at 224 px)."""
    k = max(3, int(round(size * 0.1)))
    return k if k % 2 else k + 1


def blur_sigma_range(global_size: int) -> tuple[float, float]:
    """DINO's sigma range (0.1, 2.0) at 224 px, scaled down with the image but to no less than
    (0.1, 1.0), so a 3-tap kernel at 32 px still blurs visibly."""
    return 0.1, 2.0 * max(global_size, 112) / 224
