"""Fashion-MNIST idx reading: Debian's files, hand-made idx files, and every bad input."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from trainer.config import Data
from trainer.data import build_dataset
from trainer.data.fashion_mnist import CLASSES, DEFAULT_DIR


def _write_idx(path: Path, array: np.ndarray, magic_type: int = 0x08, gz: bool = False) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _tiny(root: Path, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    """3 train / 2 val images of 28 px with known pixels."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 7], np.uint8)
    ext = ".gz" if gz else ""
    _write_idx(root / f"train-images-idx3-ubyte{ext}", imgs[:3], gz=gz)
    _write_idx(root / f"train-labels-idx1-ubyte{ext}", labels[:3], gz=gz)
    _write_idx(root / f"t10k-images-idx3-ubyte{ext}", imgs[3:], gz=gz)
    _write_idx(root / f"t10k-labels-idx1-ubyte{ext}", labels[3:], gz=gz)
    return imgs, labels


@pytest.mark.parametrize("gz", [False, True])
def test_hand_made_idx_files_read_exactly(tmp_path, gz):
    imgs, labels = _tiny(tmp_path, gz)
    data = Data(name="fashion-mnist", path=str(tmp_path), image_size=28, num_train=0, num_val=0)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert len(tr) == 3 and len(va) == 2
    for c in range(3):  # grey repeated to 3 channels, pixels unchanged at 28 px
        np.testing.assert_array_equal(tr.images[..., c], imgs[:3])
    np.testing.assert_array_equal(va.images[..., 0], imgs[3:])
    assert tr.labels.tolist() == [3, 0, 9] and va.labels.tolist() == [1, 7]
    assert tr.classes == CLASSES and tr.masks is None


def test_resized_to_image_size_and_first_n(tmp_path):
    imgs, _ = _tiny(tmp_path, gz=True)
    tr = build_dataset(Data(name="fashion-mnist", path=str(tmp_path), image_size=32, num_train=2), "train", 0)
    assert tr.images.shape == (2, 32, 32, 3)
    # A bilinear resize keeps the mean grey level closely.
    assert abs(tr.images[..., 0].astype(float).mean() - imgs[:2].mean()) < 2.0


@pytest.mark.skipif(not Path(DEFAULT_DIR).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_files_hold_70k_images_of_10_balanced_classes():
    data = Data(name="fashion-mnist", num_train=0, num_val=0)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert len(tr) + len(va) == 70_000 and len(va) == 10_000
    assert np.bincount(tr.labels).tolist() == [6000] * 10 and np.bincount(va.labels).tolist() == [1000] * 10
    assert tr.images.shape[1:] == (32, 32, 3) and len(tr.classes) == 10


def test_missing_folder_says_how_to_install(tmp_path, one_line_error):
    msg = one_line_error(Data(name="fashion-mnist", path=str(tmp_path / "nowhere")))
    assert "sudo apt-get install dataset-fashion-mnist" in msg and "--data-path" in msg and "nowhere" in msg


def test_folder_without_the_files(tmp_path, one_line_error):
    msg = one_line_error(Data(name="fashion-mnist", path=str(tmp_path)))
    assert "train-images-idx3-ubyte" in msg and "apt-get install" in msg


def test_bad_magic_truncated_and_mismatched_files(tmp_path, one_line_error):
    _tiny(tmp_path, gz=False)
    data = Data(name="fashion-mnist", path=str(tmp_path))
    # A labels file where the images file should be: the magic number tells.
    (tmp_path / "train-images-idx3-ubyte").write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes())
    assert "magic number 2049" in one_line_error(data)
    # Truncated body.
    _tiny(tmp_path, gz=False)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    assert "truncated" in one_line_error(data)
    # Counts that do not match.
    _tiny(tmp_path, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    assert "do not match" in one_line_error(data)
    # A corrupt gzip.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    assert "cannot read" in one_line_error(data, "val")
