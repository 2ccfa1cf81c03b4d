"""DINO's photometric augmentations, batched: one call per view position, own draws per image.

torchvision.transforms.v2 applies ColorJitter, RandomGrayscale, GaussianBlur and
RandomSolarize to one image at a time; at 32 px the per-call overhead dominates (about 0.35 s
for a batch of 64 images x 8 crops on one core). These functions take a stacked batch
(B, 3, H, W) of floats in [0, 1] and per-image factors, and compute exactly what
``torchvision.transforms.v2.functional`` computes for each image with its factor (the tests
check this to 1e-5); the ``random_*`` wrappers draw the factors, probabilities and the order
of the jitter operations from the same distributions as the v2 transforms, per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.data.draws import Draws

_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(-3)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(-3)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = ratio.view(-1, 1, 1, 1)
    return (a * ratio + b * (1.0 - ratio)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale intensities by factor (B,)."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with each image's mean grey level."""
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with each image's grey version."""
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by factor (B,) turns, in HSV as torchvision does."""
    h, s, v = _rgb_to_hsv(x).unbind(-3)
    h = torch.remainder(h + factor.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with per-image sigma (B,), reflect padding (torchvision's)."""
    b, c, h, w = x.shape
    t = torch.arange(kernel_size, dtype=x.dtype) - (kernel_size - 1) / 2
    k = torch.softmax(-0.5 * (t[None] / sigma[:, None].to(x.dtype)) ** 2, dim=1)  # (B, k), sums to 1
    k = k.repeat_interleave(c, dim=0)  # (B*C, k): one kernel per channel of each image
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel_size), groups=b * c)  # along W
    y = F.conv2d(y, k.view(b * c, 1, kernel_size, 1), groups=b * c)  # along H
    return y.view(b, c, h, w)


def solarize(x: torch.Tensor, threshold: float = 128 / 255) -> torch.Tensor:
    """Invert values at or above threshold (DINO: 128 on the uint8 scale)."""
    return torch.where(x >= threshold, 1.0 - x, x)


_JITTER = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def random_color_jitter(x: torch.Tensor, g: torch.Generator | Draws, p: float = 0.8, brightness: float = 0.4,
                        contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1) -> torch.Tensor:
    """RandomApply(ColorJitter(brightness, contrast, saturation, hue), p) per image.

    As in v2.ColorJitter: factors uniform in [1 - a, 1 + a] (hue in [-hue, hue]), the four
    operations in a random order per image. ``g``: a generator, or the draws of these rows of
    a global batch (``draws``), as for every ``random_*`` here.
    """
    d = Draws.of(g, x.shape[0])
    on = d.rand() < p
    order = torch.argsort(d.rand(4), dim=1)  # a random permutation per image
    lo_hi = [(1 - brightness, 1 + brightness), (1 - contrast, 1 + contrast),
             (1 - saturation, 1 + saturation), (-hue, hue)]
    factors = [lo + (hi - lo) * d.rand() for lo, hi in lo_hi]
    x = x.clone()
    for slot in range(4):
        for op in range(4):
            sel = on & (order[:, slot] == op)
            if sel.any():
                x[sel] = _JITTER[op](x[sel], factors[op][sel])
    return x


def random_grayscale(x: torch.Tensor, g: torch.Generator | Draws, p: float = 0.2) -> torch.Tensor:
    """RandomGrayscale(p): grey replicated to 3 channels, per image."""
    on = (Draws.of(g, x.shape[0]).rand() < p).view(-1, 1, 1, 1)
    return torch.where(on, grayscale(x).expand_as(x), x)


def random_gaussian_blur(x: torch.Tensor, g: torch.Generator | Draws, p: float | torch.Tensor, kernel_size: int,
                         sigma: tuple[float, float]) -> torch.Tensor:
    """RandomApply(GaussianBlur(kernel_size, sigma), p): sigma uniform per image; p a float
    or one probability per image (B,)."""
    d = Draws.of(g, x.shape[0])
    on = d.rand() < p
    s = sigma[0] + (sigma[1] - sigma[0]) * d.rand()
    if not on.any():
        return x
    x = x.clone()
    x[on] = gaussian_blur(x[on], kernel_size, s[on])
    return x


def random_solarize(x: torch.Tensor, g: torch.Generator | Draws, p: float | torch.Tensor) -> torch.Tensor:
    """RandomSolarize(128, p) per image; p a float or one probability per image (B,)."""
    on = (Draws.of(g, x.shape[0]).rand() < p).view(-1, 1, 1, 1)
    return torch.where(on, solarize(x), x)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's float RGB -> HSV, all in [0, 1]; (B, 3, H, W)."""
    r, g, b = x.unbind(-3)
    maxc, minc = x.amax(-3), x.amin(-3)
    eqc = maxc == minc
    rng = maxc - minc
    ones = torch.ones_like(maxc)
    s = rng / torch.where(eqc, ones, maxc)
    div = torch.where(eqc, ones, rng)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    is_r, is_g = maxc == r, (maxc == g) & (maxc != r)
    is_b = ~is_r & ~is_g
    h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torchvision's HSV -> RGB; h, s, v (B, H, W) -> (B, 3, H, W)."""
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.to(torch.int64).remainder_(6)
    p = (v * (1.0 - s)).clamp_(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp_(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp_(0.0, 1.0)
    vpqt = torch.stack((v, p, q, t), dim=1)  # (B, 4, H, W)
    # For hue sector i, which of (v, p, q, t) is r, g and b.
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
    idx = select[:, i].permute(1, 0, 2, 3)  # (B, 3, H, W)
    return torch.gather(vpqt, 1, idx)
