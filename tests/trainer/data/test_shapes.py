"""Procedural shapes: determinism, exact masks (against closed-form areas and a re-paint),
balance, salience, and the dataset entry point."""

import numpy as np
import pytest

from trainer.config import Data
from trainer.data import build_dataset
from trainer.data.shapes import AREAS, CHUNK, CLASSES, RADIUS, make_shapes, object_masks


def test_same_seed_same_arrays_other_seed_or_split_differs():
    a, b = make_shapes(40, 32, seed=3), make_shapes(40, 32, seed=3)
    for name in ("images", "masks", "labels", "centres", "radii", "angles", "colors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c, v = make_shapes(40, 32, seed=4), make_shapes(40, 32, seed=3, split="val")
    assert (a.images != c.images).mean() > 0.5
    assert (a.images != v.images).mean() > 0.5


def test_fewer_images_are_a_prefix_of_more():
    small, big = make_shapes(30, 32, seed=1), make_shapes(CHUNK + 30, 32, seed=1)
    np.testing.assert_array_equal(small.images, big.images[:30])
    np.testing.assert_array_equal(small.masks, big.masks[:30])


def test_types_shapes_balance_and_ranges():
    s = make_shapes(2 * CHUNK, 24, seed=0)
    assert s.images.shape == (2 * CHUNK, 24, 24, 3) and s.images.dtype == np.uint8
    assert s.masks.shape == (2 * CHUNK, 24, 24) and s.masks.dtype == bool
    assert s.labels.dtype == np.int64 and s.labels.min() >= 0 and s.labels.max() < len(CLASSES)
    # Each chunk is exactly balanced.
    assert np.bincount(s.labels, minlength=len(CLASSES)).tolist() == [2 * CHUNK // len(CLASSES)] * len(CLASSES)
    assert s.masks.sum((1, 2)).min() > 0
    assert ((s.radii >= RADIUS[0] * 24) & (s.radii <= RADIUS[1] * 24)).all()


def test_mask_is_exactly_what_the_object_paints():
    # Same draws, object painted red then blue: the pixels that change are exactly the mask,
    # and with no noise every mask pixel has the object's colour.
    red = make_shapes(64, 32, seed=5, object_rgb=(255, 0, 0), noise=False)
    blue = make_shapes(64, 32, seed=5, object_rgb=(0, 0, 255), noise=False)
    changed = (red.images != blue.images).any(-1)
    np.testing.assert_array_equal(changed, red.masks)
    assert (red.images[red.masks] == [255, 0, 0]).all()
    # With pixel noise too (same noise in both renders), the changed pixels are still the mask.
    red_n = make_shapes(64, 32, seed=5, object_rgb=(255, 0, 0))
    blue_n = make_shapes(64, 32, seed=5, object_rgb=(0, 0, 255))
    np.testing.assert_array_equal((red_n.images != blue_n.images).any(-1), red_n.masks)


def test_masks_rerender_and_match_closed_form_areas():
    s = make_shapes(200, 32, seed=2)
    np.testing.assert_array_equal(object_masks(s.labels, s.centres, s.radii, s.angles, 32), s.masks)
    # The same objects at 4x the resolution: pixel counts approach the exact areas.
    big = object_masks(s.labels, 4 * s.centres, 4 * s.radii, s.angles, 128)
    r = 4 * s.radii
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(s.labels == c)
        assert len(idx) >= 20
        m = big[idx]
        d2 = (xx - 4 * s.centres[idx, 0, None, None]) ** 2 + (yy - 4 * s.centres[idx, 1, None, None]) ** 2
        assert not (m & (d2 > r[idx, None, None] ** 2)).any(), f"{name} leaves its unit circle"
        if name in AREAS:
            ratio = m.sum((1, 2)) / (AREAS[name] * r[idx] ** 2)
            assert abs(ratio.mean() - 1) < 0.015 and np.abs(ratio - 1).max() < 0.06, (name, ratio.mean())
        if name != "heart":  # every other class has its centroid at the centre
            cy = (m * yy).sum((1, 2)) / m.sum((1, 2))
            cx = (m * xx).sum((1, 2)) / m.sum((1, 2))
            assert np.abs(cx - 4 * s.centres[idx, 0]).max() < 0.6, name
            assert np.abs(cy - 4 * s.centres[idx, 1]).max() < 0.6, name


def test_object_stands_out_from_its_surroundings():
    s = make_shapes(256, 32, seed=7)
    m = s.masks
    # A 2-pixel band just outside each object.
    band = np.zeros_like(m)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            band |= np.roll(np.roll(m, dy, 1), dx, 2)
    band &= ~m
    img = s.images.astype(float)
    inside = (img * m[..., None]).sum((1, 2)) / m.sum((1, 2))[:, None]
    around = (img * band[..., None]).sum((1, 2)) / band.sum((1, 2))[:, None]
    contrast = np.linalg.norm(inside - around, axis=1)
    assert np.median(contrast) > 80 and (contrast > 30).mean() > 0.9


def test_backgrounds_are_varied_textured_and_subdued():
    s = make_shapes(256, 32, seed=8, noise=False)
    bg = [s.images[i][~s.masks[i]].astype(float) for i in range(256)]  # (pixels, 3) each
    bg_grey = np.array([b.mean() for b in bg])
    assert bg_grey.std() > 8 and bg_grey.max() - bg_grey.min() > 50  # brightness varies image to image
    texture = np.array([b.std(0).mean() for b in bg])
    assert np.median(texture) > 2 and (texture > 1).mean() > 0.9  # textured, not flat (no noise here) ...
    assert np.median(texture) < 8  # ... but faint: crops must not match by background alone
    obj_grey = np.array([s.images[i][s.masks[i]].astype(float).mean() for i in range(256)])
    assert np.median(obj_grey - bg_grey) > 60 and (obj_grey - bg_grey > 20).mean() > 0.9  # object brighter


def test_build_dataset_splits():
    data = Data(name="shapes", num_train=100, num_val=50, image_size=16)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert len(tr) == 100 and len(va) == 50 and tr.image_size == 16
    assert tr.masks is not None and tr.masks.shape == (100, 16, 16)
    assert tr.classes == list(CLASSES) and tr.name == "shapes"
    assert not np.array_equal(tr.images[:50], va.images)
    img, label = tr[3]
    assert tuple(img.shape) == (3, 16, 16) and label == tr.labels[3]


@pytest.mark.parametrize("size", [8, 40])
def test_any_size(size):
    s = make_shapes(10, size, seed=0)
    assert s.images.shape == (10, size, size, 3) and s.masks.any((1, 2)).all()
