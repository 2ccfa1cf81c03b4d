"""A user's image folder: layouts, centre crop, splits, junk skipped and counted, bad paths."""

from pathlib import Path

import numpy as np
from PIL import Image

from trainer.config import Data
from trainer.data import build_dataset


def _save(path: Path, rgb, size=(12, 12), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(rgb)).save(path, format=fmt)


def _junk(root: Path) -> list[str]:
    (root / "notes.txt").write_text("not an image")
    (root / "text.png").write_text("a text file renamed .png")
    (root / "empty.jpg").write_bytes(b"")
    good = root / "tmp_good.png"
    _save(good, (1, 2, 3))
    (root / "truncated.png").write_bytes(good.read_bytes()[:30])
    good.unlink()
    return ["notes.txt", "text.png", "empty.jpg", "truncated.png"]


def _data(root: Path, **kw) -> Data:
    return Data(name="folder", path=str(root), image_size=8, **kw)


def test_class_folders_with_junk_load_the_good_images_and_count_the_rest(tmp_path):
    # 10 images per class in distinct colours; junk at the top and inside a class folder.
    for c, cls in enumerate(["zebra", "apple", "moth"]):
        for k in range(10):
            _save(tmp_path / cls / f"{k}.{'png' if k % 2 else 'jpg'}", (80 * c, 20 * k, 7))
    _junk(tmp_path)
    _junk(tmp_path / "apple")
    data = _data(tmp_path, num_train=0, num_val=6)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert tr.classes == ["apple", "moth", "zebra"] == va.classes  # sorted folder names
    assert len(tr) + len(va) == 30 and len(va) <= 6
    # Junk lying in the split is skipped and counted (top-level junk belongs to no class: both).
    assert tr.skipped + va.skipped >= 2 * 4 + 4 and tr.skipped >= 4 and va.skipped >= 4
    assert set(tr.skipped_examples) <= {"notes.txt", "text.png", "empty.jpg", "truncated.png"}
    labels = np.concatenate([tr.labels, va.labels])
    assert np.bincount(labels).tolist() == [10, 10, 10]
    # The red channel encodes the class: label k <-> folder of colour 80 * index in the list above.
    red_of = {"zebra": 0, "apple": 80, "moth": 160}
    for ds in (tr, va):
        for img, y in zip(ds.images, ds.labels):
            assert abs(int(img[4, 4, 0]) - red_of[ds.classes[y]]) <= 3


def test_split_is_disjoint_deterministic_and_seeded(tmp_path):
    for k in range(20):
        _save(tmp_path / f"{k:02d}.png", (k * 12, 0, 0))  # flat folder: unlabelled
    data = _data(tmp_path, num_val=5)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert len(tr) == 16 and len(va) == 4  # num_val capped at a fifth
    reds = sorted(tr.images[:, 0, 0, 0].tolist() + va.images[:, 0, 0, 0].tolist())
    assert reds == [k * 12 for k in range(20)]
    assert (tr.labels == -1).all() and tr.classes == [] and not tr.labelled
    again = build_dataset(data, "val", 0)
    np.testing.assert_array_equal(again.images, va.images)
    other = build_dataset(data, "val", 1)
    assert sorted(other.images[:, 0, 0, 0].tolist()) != sorted(va.images[:, 0, 0, 0].tolist())


def test_train_val_layout_and_num_train(tmp_path):
    for side, n in (("train", 6), ("val", 3)):
        for cls in ("a", "b"):
            for k in range(n):
                _save(tmp_path / side / cls / f"{k}.png", (k, 0, 0))
    data = _data(tmp_path, num_train=0, num_val=0)
    tr, va = build_dataset(data, "train", 0), build_dataset(data, "val", 0)
    assert (len(tr), len(va)) == (12, 6) and tr.classes == ["a", "b"]
    assert np.bincount(va.labels).tolist() == [3, 3]
    assert len(build_dataset(_data(tmp_path, num_train=5), "train", 0)) == 5


def test_centre_crop_and_resize(tmp_path):
    img = np.zeros((20, 60, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:40] = (0, 0, 255)
    img[:, 40:] = (0, 255, 0)
    Image.fromarray(img).save(tmp_path / "wide.png")
    Image.fromarray(np.full((9, 9), 128, np.uint8), mode="L").save(tmp_path / "grey.png")  # 1 channel
    Image.fromarray(np.full((9, 9, 4), 200, np.uint8), mode="RGBA").save(tmp_path / "alpha.png")
    ds = build_dataset(_data(tmp_path, num_val=0), "train", 0)  # 3 files: none held out
    assert ds.images.shape == (3, 8, 8, 3) and ds.skipped == 0
    # Each image is uniform: the wide one kept only its blue middle square; grey became 3 equal
    # channels; RGBA 200 at alpha 200 is shown over white: 200 * 200/255 + 255 * 55/255 = 211.8.
    colours = sorted(tuple(int(v) for v in im[0, 0]) for im in ds.images)
    assert colours == [(0, 0, 255), (128, 128, 128), (212, 212, 212)]
    for im in ds.images:
        assert (np.abs(im.astype(int) - im[0, 0]) <= 1).all()


def test_missing_path_is_a_one_line_error(tmp_path, one_line_error):
    msg = one_line_error(_data(tmp_path / "photos"))
    assert "does not exist" in msg and "photos" in msg and "--data-path" in msg


def test_no_path_given(one_line_error):
    assert "--data-path" in one_line_error(Data(name="folder", path=""))


def test_path_is_a_file(tmp_path, one_line_error):
    (tmp_path / "a.png").write_bytes(b"x")
    assert "not a folder" in one_line_error(_data(tmp_path / "a.png"))


def test_empty_folder(tmp_path, one_line_error):
    msg = one_line_error(_data(tmp_path))
    assert "empty" in msg and str(tmp_path) in msg and ".png" in msg


def test_folder_of_only_junk_names_what_was_skipped(tmp_path, one_line_error):
    _junk(tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "fake.jpg").write_text("nope")
    msg = one_line_error(_data(tmp_path))
    assert "no readable image" in msg and "skipped" in msg and str(tmp_path) in msg
