"""Break 5 (images): a 16-bit PNG loaded all white and a float TIFF all black; below PIL's bomb
threshold there was no pixel cap (four 164 KB PNGs of 169 Mpx reached 3.6 GB). Promise: odd
modes (CMYK, 16-bit, palette, alpha, float, LAB) decode as a viewer shows them or are refused
with a reason, and a pixel budget guards memory."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.faults.helpers import REPO, env
from trainer.config import Data
from trainer.data import build_dataset, decode

S = 8


def _decoded(path) -> np.ndarray:
    out = decode.decode_square(path, S, decode.PixelBudget(decode.PIXEL_BUDGET))
    assert not isinstance(out, str), out
    return out


def _uniform(img: np.ndarray) -> tuple[int, int, int]:
    assert (img == img[0, 0]).all(), "a uniform image must decode uniform"
    return tuple(int(v) for v in img[0, 0])


@pytest.mark.parametrize("name, make, rgb", [
    # 16-bit grey 40000 of 65535 -> 40000 / 257 = 155.6 (convert("RGB") clipped it to 255: all white)
    ("grey16.png", lambda: Image.fromarray(np.full((16, 16), 40000, np.uint16)), (156, 156, 156)),
    # float grey 0.25 in [0, 1] -> 63.75 (convert("RGB") truncated it to 0: all black)
    ("float01.tif", lambda: Image.fromarray(np.full((16, 16), 0.25, np.float32), "F"), (64, 64, 64)),
    # float grey already on the 0-255 scale stays
    ("float255.tif", lambda: Image.fromarray(np.full((16, 16), 100.0, np.float32), "F"), (100, 100, 100)),
    # CMYK (0, 255, 0, 0) = full magenta ink -> (255, 0, 255)
    ("magenta.tif", lambda: Image.new("CMYK", (16, 16), (0, 255, 0, 0)), (255, 0, 255)),
    # CIE L* = 128/255 * 100 = 50.2, a* = b* = 0: the sRGB grey of 50% lightness, 119
    ("lab.tif", lambda: Image.new("LAB", (16, 16), (128, 128, 128)), (119, 119, 119)),
    # a palette image keeps its palette colour
    ("palette.png", lambda: _palette([10, 200, 30]), (10, 200, 30)),
    # a fully transparent palette index shows the white background, not the hidden colour
    ("clear.png", lambda: _transparent_palette(), (255, 255, 255)),
    # grey 100 at alpha 0 is invisible (white); at alpha 255 it is 100
    ("la0.png", lambda: Image.new("LA", (16, 16), (100, 0)), (255, 255, 255)),
    ("la255.png", lambda: Image.new("LA", (16, 16), (100, 255)), (100, 100, 100)),
    # RGBA (0, 0, 200) at alpha 128 over white: 255 * 127/255 + c * 128/255
    ("rgba.png", lambda: Image.new("RGBA", (16, 16), (0, 0, 200, 128)), (127, 127, 227)),
])
def test_odd_modes_decode_as_a_viewer_shows_them(tmp_path, name, make, rgb):
    make().save(tmp_path / name)
    assert _uniform(_decoded(tmp_path / name)) == rgb


def _palette(colour: list[int]) -> Image.Image:
    im = Image.new("P", (16, 16), 0)
    im.putpalette(colour + [0, 0, 0] * 255)
    return im


def _transparent_palette() -> Image.Image:
    im = _palette([200, 0, 0])
    im.info["transparency"] = 0
    return im


def test_16_bit_and_float_gradients_keep_their_range(tmp_path):
    ramp16 = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    Image.fromarray(ramp16).save(tmp_path / "ramp16.png")
    ramp_f = np.tile(np.linspace(-1.0, 3.0, 16).astype(np.float32), (16, 1))  # any range: stretched
    Image.fromarray(ramp_f, "F").save(tmp_path / "rampf.tif")
    for name in ("ramp16.png", "rampf.tif"):
        row = _decoded(tmp_path / name)[S // 2, :, 0].astype(int)
        assert row[0] <= 20 and row[-1] >= 235 and (np.diff(row) >= 0).all(), (name, row)


def test_unreadable_images_are_skipped_with_their_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "PIXEL_BUDGET", 10_000)
    for i in range(3):  # 96 x 96 = 9216 px each: they fit one at a time
        Image.new("RGB", (96, 96), (i * 40, 0, 0)).save(tmp_path / f"ok{i}.png")
    Image.new("RGB", (200, 100), (0, 0, 0)).save(tmp_path / "huge.png")  # 20000 px > budget
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    ds = build_dataset(Data(name="folder", path=str(tmp_path), image_size=S, num_val=0), "train", 0)
    assert len(ds) == 3 and ds.skipped == 2
    reasons = dict(r.split(": ", 1) for r in ds.skipped_reasons)
    assert reasons["huge.png"] == "200x100 = 0 Mpx, over the pixel budget of 0 Mpx; downscale it"
    assert "broken.png" in reasons


def _big_png(path, side: int) -> None:
    """A grey PNG of side x side pixels, written row by row (small file, huge image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(z.compress(row))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


_PEAK = textwrap.dedent("""
    import resource, sys
    from trainer.config import Data
    from trainer.data import build_dataset
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds = build_dataset(Data(name="folder", path=sys.argv[1], image_size=16, num_val=0), "train", 0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(len(ds), ds.skipped, (after - before) // 1024, ds.skipped_reasons[0] if ds.skipped_reasons else "")
""")


@pytest.mark.slow
def test_a_pixel_budget_caps_the_memory_of_huge_small_files(tmp_path):
    _big_png(tmp_path / "big0.png", 13000)  # 169 Mpx in ~160 KB, below PIL's 179 Mpx bomb error
    for i in range(1, 4):
        (tmp_path / f"big{i}.png").write_bytes((tmp_path / "big0.png").read_bytes())
    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(tmp_path / f"small{i}.png")
    r = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path)], capture_output=True, text=True, env=env(),
                       cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    n, skipped, grew_mb, reason = r.stdout.split(maxsplit=3)
    assert (int(n), int(skipped)) == (4, 4)
    assert reason.strip().endswith("13000x13000 = 169 Mpx, over the pixel budget of 50 Mpx; downscale it")
    assert int(grew_mb) < 200, f"decoding grew the process by {grew_mb} MB"
