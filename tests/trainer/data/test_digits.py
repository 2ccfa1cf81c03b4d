"""scikit-learn digits: upscaled to 3 channels, a seeded split that partitions the 1797 images."""

import numpy as np
from sklearn.datasets import load_digits

from trainer.config import Data
from trainer.data import build_dataset


def test_split_partitions_the_digits_and_is_seeded():
    data = Data(name="digits", num_train=0, num_val=0, image_size=16)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert len(tr) + len(va) == 1797 and len(va) == 359
    counts = np.bincount(np.concatenate([tr.labels, va.labels]), minlength=10)
    np.testing.assert_array_equal(counts, np.bincount(load_digits().target, minlength=10))
    assert tr.images.shape[1:] == (16, 16, 3) and tr.classes == [str(d) for d in range(10)]
    assert (tr.images[..., 0] == tr.images[..., 2]).all() and tr.images.max() >= 250
    again, other = build_dataset(data, "val", 0), build_dataset(data, "val", 1)
    np.testing.assert_array_equal(again.images, va.images)
    assert not np.array_equal(other.labels, va.labels)


def test_first_n_and_native_size_keeps_the_grey_levels():
    tr = build_dataset(Data(name="digits", num_train=50, image_size=8), "train", 0)
    assert len(tr) == 50
    # At 8 px nothing is resampled: the 17 levels 0..16 map to round(v * 255 / 16).
    levels = set(np.unique(tr.images).tolist())
    assert levels <= {int(round(v * 255 / 16)) for v in range(17)}
