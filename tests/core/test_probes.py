"""Probe layouts: the check that a probe holds exactly its declared entries, the layout stored
in the npz file (no pickle), and old files read with the method's layout."""

import io

import numpy as np
import pytest

from core.probes import LAYOUT_KEY, ORIGINAL, ProbeEntry, ProbeLayoutError, check_probe, layout_array, read_probe

LAYOUT = (ORIGINAL, ProbeEntry("attn", "heatmap", ("heads", "h", "w"), "attention"),
          ProbeEntry("mask", "mask", ("h", "w"), "mask"), ProbeEntry("emb", "embedding", ("D",), "emb"))


def _arrays(p=3, heads=2, h=4, d=8):
    return {"original": np.zeros((p, 16, 16, 3), np.uint8), "attn": np.zeros((p, heads, h, h), np.float32),
            "mask": np.zeros((p, h, h), np.uint8), "emb": np.zeros((p, d), np.float32)}


def test_check_accepts_the_declared_arrays_and_names_what_is_wrong():
    check_probe(LAYOUT, _arrays())
    with pytest.raises(ProbeLayoutError, match="not the declared layout"):
        check_probe(LAYOUT, {**_arrays(), "images": np.zeros((3, 16, 16, 3))})  # a key nobody declared
    with pytest.raises(ProbeLayoutError, match="not the declared layout"):
        check_probe(LAYOUT, {k: v for k, v in _arrays().items() if k != "mask"})
    bad = _arrays()
    bad["mask"] = np.zeros((3, 5, 5))  # h = 4 in attn, 5 here
    with pytest.raises(ProbeLayoutError, match="'mask' has 5 along 'h'"):
        check_probe(LAYOUT, bad)
    bad = _arrays()
    bad["original"] = np.zeros((3, 16, 16, 4))  # the literal axis 3
    with pytest.raises(ProbeLayoutError, match="along '3'"):
        check_probe(LAYOUT, bad)
    bad = _arrays()
    bad["emb"] = np.zeros((2, 8))  # one probe-image count P for all entries
    with pytest.raises(ProbeLayoutError, match="along 'P'"):
        check_probe(LAYOUT, bad)
    with pytest.raises(ProbeLayoutError, match="declared \\(P, heads, h, w\\)"):
        check_probe(LAYOUT, {**_arrays(), "attn": np.zeros((3, 4, 4))})


def test_layout_travels_in_the_npz_without_pickle():
    buf = io.BytesIO()
    np.savez_compressed(buf, **_arrays(), **{LAYOUT_KEY: layout_array(LAYOUT)})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        probe = read_probe({k: z[k] for k in z.files}, fallback=())
    assert probe.layout == LAYOUT and LAYOUT_KEY not in probe.arrays
    assert [e.name for e in probe.drawn()] == ["original", "attn", "mask"] and probe.not_drawn() == ["emb"]
    assert probe.base_image() is probe.arrays["original"]


def test_old_files_take_the_fallback_layout_and_their_images_become_original():
    old = _arrays()
    old["images"] = old.pop("original")  # the loop used to add the pictures under this key
    probe = read_probe(old, fallback=LAYOUT)
    assert probe.layout == LAYOUT and "images" not in probe.arrays and "original" in probe.arrays
    both = {**_arrays(), "images": np.ones((3, 16, 16, 3), np.uint8)}  # MAE / I-JEPA: the method's own kept
    assert read_probe(both, LAYOUT).arrays["original"].max() == 0
