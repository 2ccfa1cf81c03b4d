"""The dataset entry point and the normalisation shared by training, k-NN and display."""

import numpy as np
import pytest
import torch

from trainer.config import Data
from trainer.data import MEAN, STD, DataError, ImageDataset, build_dataset, eval_tensor, normalize, to_uint8_image


def test_unknown_dataset_and_split_are_one_line_errors():
    for data, split, needle in [(Data(name="cifar"), "train", "shapes"), (Data(), "test", "train, val")]:
        with pytest.raises(DataError) as e:
            build_dataset(data, split, 0)
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_normalize_by_hand_and_layouts_agree():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    x = normalize(nhwc)
    assert x.shape == (2, 3, 5, 5) and x.dtype == torch.float32
    # One pixel by hand: (v / 255 - mean_c) / std_c.
    v = nhwc[1, 2, 4, 1]
    assert float(x[1, 1, 2, 4]) == pytest.approx((v / 255 - MEAN[1]) / STD[1], abs=1e-6)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    torch.testing.assert_close(normalize(nchw), x)
    torch.testing.assert_close(normalize(torch.from_numpy(nhwc)), x)
    torch.testing.assert_close(normalize(nhwc[0]), x[:1])


def test_to_uint8_image_inverts_normalize():
    nhwc = np.random.default_rng(1).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    x = normalize(nhwc)
    np.testing.assert_array_equal(to_uint8_image(x), nhwc)
    np.testing.assert_array_equal(to_uint8_image(x[2]), nhwc[2])


def test_image_dataset_items_and_eval_tensor():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    ds = ImageDataset(images, np.array([1, -1]), ["a", "b"], "toy")
    img, label = ds[0]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 4, 4) and label == 1
    assert int(img[2, 1, 3]) == int(images[0, 1, 3, 2])
    assert not ds.labelled and ds.image_size == 4
    torch.testing.assert_close(eval_tensor(ds), normalize(images))
