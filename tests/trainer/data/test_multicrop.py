"""Multi-crop and single views: counts, sizes, order, randomness, and crops as torchvision draws them."""

import math

import torch
from torchvision.transforms.v2 import functional as F

from trainer.data import build_view_transform, normalize
from trainer.data import photometric as P
from trainer.data.datasets import MEAN, STD
from trainer.data.multicrop import blur_kernel_size, blur_sigma_range, crop_boxes, random_resized_crop
from trainer.data.views import ViewSpec

DINO = ViewSpec("multicrop", global_size=32, n_global=2, local_size=16, n_local=6)


def _images(n=8, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_multicrop_views_globals_first_with_their_sizes():
    views = build_view_transform(DINO).batch(_images(), torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 6
    assert all(v.dtype == torch.float32 for v in views)
    one = build_view_transform(DINO)(_images(1)[0], torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in one] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 6


def test_crops_differ_between_views_and_images_and_are_seeded():
    t = build_view_transform(DINO)
    img = _images(1)[0].expand(4, -1, -1, -1)  # the same image four times
    a = t.batch(img, torch.Generator().manual_seed(1))
    b = t.batch(img, torch.Generator().manual_seed(1))
    c = t.batch(img, torch.Generator().manual_seed(2))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert not torch.allclose(a[0], a[1])  # two global crops of one batch
    for v in a:  # each copy of the image gets its own crop
        assert len(torch.unique(v.flatten(1), dim=0)) == 4


def test_single_view_crops_and_flips_but_keeps_colours():
    # A constant image stays that constant under crop + flip (no colour change); multi-crop's
    # jitter/grey/solarise change it in most views.
    img = torch.full((64, 3, 32, 32), 0, dtype=torch.uint8)
    img[:, 0], img[:, 1], img[:, 2] = 200, 50, 120
    want = normalize(img[:1])[0, :, 0, 0]
    single = build_view_transform(ViewSpec("single", global_size=32)).batch(img, torch.Generator().manual_seed(0))
    assert len(single) == 1 and single[0].shape == (64, 3, 32, 32)
    torch.testing.assert_close(single[0], want.view(1, 3, 1, 1).expand_as(single[0]), atol=1e-5, rtol=0)
    multi = build_view_transform(DINO).batch(img, torch.Generator().manual_seed(0))
    changed = (multi[0] - want.view(1, 3, 1, 1)).abs().amax((1, 2, 3)) > 1e-3
    assert 0.6 < changed.float().mean() < 1.0


def _hue_shift(spec: ViewSpec) -> torch.Tensor:
    """Hue change (turns, in [-0.5, 0.5)) of the first global view of 400 flat orange images."""
    img = torch.zeros((400, 3, 32, 32), dtype=torch.uint8)
    img[:, 0], img[:, 1], img[:, 2] = 230, 120, 20
    view = build_view_transform(spec).batch(img, torch.Generator().manual_seed(0))[0]
    x01 = view * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    hue = P._rgb_to_hsv(x01.clamp(0, 1))[:, 0].mean((1, 2))
    hue0 = P._rgb_to_hsv(img[:1].float() / 255)[0, 0, 0, 0]
    return torch.remainder(hue - hue0 + 0.5, 1.0) - 0.5


def test_colour_jitter_is_the_specs():
    # Only hue jitter, always on, no grey: the hue shift is uniform in [-h, h].
    paper = _hue_shift(ViewSpec("multicrop", 32, 2, 16, 2, color_jitter=(0, 0, 0, 0.1), jitter_p=1.0, grayscale_p=0))
    full = _hue_shift(ViewSpec("multicrop", 32, 2, 16, 2, color_jitter=(0, 0, 0, 0.5), jitter_p=1.0, grayscale_p=0))
    assert paper.abs().max() <= 0.1 + 1e-3
    assert 0.7 < (full.abs() > 0.1).float().mean() < 0.9  # P(|U(-0.5, 0.5)| > 0.1) = 0.8
    # No jitter and no grey at all: the first global view (blur only) keeps the flat colour.
    none = _hue_shift(ViewSpec("multicrop", 32, 2, 16, 2, color_jitter=(0, 0, 0, 0), jitter_p=0.0, grayscale_p=0))
    assert none.abs().max() < 1e-3


def test_crop_boxes_follow_random_resized_crop():
    g = torch.Generator().manual_seed(0)
    boxes = crop_boxes(g, 5000, 32, 32, (0.05, 0.4))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = (h * w).float() / 1024
    assert area.min() > 0.03 and area.max() < 0.45  # scale range, up to rounding of the sides
    aspect = w.float() / h.float()
    assert aspect.min() > 0.6 and aspect.max() < 1.6
    assert len(torch.unique(boxes, dim=0)) > 500
    # Positions cover the whole free range: an 8-px-high box lands anywhere in 0..24.
    tops = top[h == 8]
    assert len(tops) > 100 and tops.min() == 0 and tops.max() == 24
    # Impossible scales fall back to the central crop (the whole square image).
    assert crop_boxes(g, 3, 32, 32, (2.0, 3.0)).tolist() == [[0, 0, 32, 32]] * 3


def test_upscaling_crop_equals_torchvision_resized_crop_inside():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    state = g.get_state()
    ours = random_resized_crop(x, g, 32, (0.4, 0.9))
    g.set_state(state)
    boxes = crop_boxes(g, 2, 32, 32, (0.4, 0.9))
    for k in range(2):
        want = F.resized_crop(x[k], *boxes[k].tolist(), [32, 32], antialias=True)
        # Identical away from the crop's border (there roi_align may read the pixel beyond it).
        torch.testing.assert_close(ours[k, :, 2:-2, 2:-2], want[:, 2:-2, 2:-2], atol=1e-5, rtol=0)


def test_blur_scaled_to_image_size():
    assert blur_kernel_size(32) == 3 and blur_kernel_size(16) == 3 and blur_kernel_size(224) == 23
    assert blur_sigma_range(32) == (0.1, 1.0) and blur_sigma_range(224) == (0.1, 2.0)
    assert math.isclose(blur_sigma_range(160)[1], 2.0 * 160 / 224)



def test_rotation_is_exact_at_a_quarter_turn_and_identity_at_zero():
    """At +-90 degrees the sampling grid lands on pixel centres, so the rotation is exact and
    equals torch.rot90 (positive angles counter-clockwise on screen: rot90 k=1 of (h, w)); 0 is
    the identity; ``random_rotation`` draws each image's angle within +-degrees."""
    from trainer.data.multicrop import random_rotation, rotate

    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = rotate(x, torch.tensor([math.pi / 2, -math.pi / 2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(y[0], torch.rot90(x[0], 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1], torch.rot90(x[1], -1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[2], x[2], atol=1e-6, rtol=0)
    # on a smooth image, +60 then -60 degrees gives it back inside the inscribed disc (corners
    # take the border; bilinear resampling smooths a little), and +60 is not the identity
    t = torch.linspace(-1, 1, 16)
    smooth = (torch.sin(2 * t)[:, None] * torch.cos(1.5 * t)[None, :]).expand(1, 3, 16, 16).contiguous()
    deg60 = torch.full((1,), math.pi / 3, dtype=torch.float64)
    there = rotate(smooth, deg60)
    back = rotate(there, -deg60)
    assert (back - smooth)[..., 5:11, 5:11].abs().max() < 0.02 < (there - smooth)[..., 5:11, 5:11].abs().max()
    r = random_rotation(x, torch.Generator().manual_seed(1), 0.0)
    torch.testing.assert_close(r, x, atol=1e-6, rtol=0)
    assert not torch.allclose(random_rotation(x, torch.Generator().manual_seed(1), 180.0), x, atol=1e-2)
