"""Batched photometric ops equal torchvision.transforms.v2.functional image by image, and the
random wrappers draw from the v2 transforms' distributions."""

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from trainer.data import photometric as P


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 9, 9, generator=g)
    x[0] = 0.4  # a grey image: hue undefined, saturation zero
    x[1, :, :3] = 1.0  # saturated corner
    return x


@pytest.mark.parametrize("ours, ref, lo, hi", [
    (P.adjust_brightness, F.adjust_brightness, 0.6, 1.4),
    (P.adjust_contrast, F.adjust_contrast, 0.6, 1.4),
    (P.adjust_saturation, F.adjust_saturation, 0.8, 1.2),
    (P.adjust_hue, F.adjust_hue, -0.1, 0.1),
])
def test_jitter_ops_match_v2_per_image(x, ours, ref, lo, hi):
    f = torch.linspace(lo, hi, len(x))
    want = torch.stack([ref(img, float(fi)) for img, fi in zip(x, f)])
    torch.testing.assert_close(ours(x, f), want, atol=1e-5, rtol=0)


def test_blur_grey_solarize_match_v2(x):
    sigma = torch.linspace(0.1, 1.0, len(x))
    want = torch.stack([F.gaussian_blur(img, [3, 3], [float(s), float(s)]) for img, s in zip(x, sigma)])
    torch.testing.assert_close(P.gaussian_blur(x, 3, sigma), want, atol=1e-5, rtol=0)
    want5 = torch.stack([F.gaussian_blur(img, [5, 5], [float(s), float(s)]) for img, s in zip(x, sigma)])
    torch.testing.assert_close(P.gaussian_blur(x, 5, sigma), want5, atol=1e-5, rtol=0)
    torch.testing.assert_close(P.grayscale(x).expand_as(x), F.rgb_to_grayscale(x, num_output_channels=3))
    torch.testing.assert_close(P.solarize(x), F.solarize(x, 128 / 255))


def test_brightness_factor_distribution_and_apply_probability():
    # Constant 0.5 images, brightness only: output = 0.5 * f with f ~ U(0.6, 1.4) on 80%.
    n = 20000
    x = torch.full((n, 3, 2, 2), 0.5)
    g = torch.Generator().manual_seed(1)
    y = P.random_color_jitter(x, g, p=0.8, contrast=0, saturation=0, hue=0)[:, 0, 0, 0]
    changed = y != 0.5
    assert abs(changed.float().mean().item() - 0.8) < 0.015
    f = y[changed] / 0.5
    assert f.min() >= 0.6 - 1e-6 and f.max() <= 1.4 + 1e-6
    assert abs(f.mean().item() - 1.0) < 0.01 and abs(f.std().item() - 0.8 / 12**0.5) < 0.01


def test_jitter_order_is_random_per_image():
    # Brightness then contrast differs from contrast then brightness once values clip; with
    # two orders drawn per image, both outcomes occur.
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)).expand(400, -1, -1, -1).contiguous()
    y = P.random_color_jitter(x, torch.Generator().manual_seed(3), p=1.0, brightness=0.4, contrast=0.4,
                              saturation=0, hue=0)
    assert len(torch.unique(y.flatten(1), dim=0)) == 400


def test_grayscale_blur_solarize_probabilities():
    g = torch.Generator().manual_seed(4)
    n = 10000
    x = torch.rand(n, 3, 4, 4, generator=g)
    grey = P.random_grayscale(x, g, p=0.2)
    is_grey = (grey[:, 0] == grey[:, 1]).all(-1).all(-1)
    assert abs(is_grey.float().mean().item() - 0.2) < 0.015
    p = torch.where(torch.arange(n) < n // 2, 1.0, 0.1)  # per-image probabilities
    blurred = (P.random_gaussian_blur(x, g, p, 3, (0.5, 1.0)) != x).flatten(1).any(1)
    assert blurred[: n // 2].all() and abs(blurred[n // 2:].float().mean().item() - 0.1) < 0.015
    sol = (P.random_solarize(x, g, 0.2) != x).flatten(1).any(1)
    assert abs(sol.float().mean().item() - 0.2) < 0.015
