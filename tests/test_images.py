"""Every PIL mode decodes to the 8-bit RGB the rules of ``images.to_rgb`` promise, checked on hand-made images."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ftlib.images import center_crop, decode

SIZE = 8  # images are decoded at their own size: resizing is the identity, so values are exact


def _halves(left, right, dtype):
    """An 8x8 image: left half ``left``, right half ``right`` (scalars or per-channel tuples)."""
    left, right = np.asarray(left, dtype), np.asarray(right, dtype)
    out = np.empty((SIZE, SIZE, *left.shape), dtype)
    out[:, : SIZE // 2], out[:, SIZE // 2:] = left, right
    return out


def _decoded(path):
    arr = decode(path, SIZE)
    assert arr is not None and arr.shape == (SIZE, SIZE, 3) and arr.dtype == np.uint8
    return arr[0, 0], arr[0, -1]  # a left pixel, a right pixel


def _write_png16(path, arr):
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the last axis), written byte by byte."""
    arr = np.asarray(arr, dtype=">u2")
    arr = arr[..., None] if arr.ndim == 2 else arr
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_grey_png_is_scaled_by_the_16_bit_range_not_clipped(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(_halves(257 * 10, 257 * 200, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    left, right = _decoded(path)
    assert list(left) == [10] * 3 and list(right) == [200] * 3


def test_16_bit_grey_written_by_hand_and_big_endian_tiff(tmp_path):
    left, right = _decoded(_write_png16(tmp_path / "g.png", _halves(0, 65535, np.uint16)))
    assert list(left) == [0] * 3 and list(right) == [255] * 3
    Image.fromarray(_halves(257 * 3, 257 * 250, np.uint16).astype(">u2")).save(tmp_path / "b.tif")
    left, right = _decoded(tmp_path / "b.tif")
    assert list(left) == [3] * 3 and list(right) == [250] * 3


def test_16_bit_rgb_and_rgba_pngs_keep_their_colours(tmp_path):
    rgb = _halves((257 * 10, 257 * 100, 257 * 200), (65535, 0, 257 * 50), np.uint16)
    left, right = _decoded(_write_png16(tmp_path / "rgb16.png", rgb))
    assert list(left) == [10, 100, 200] and list(right) == [255, 0, 50]
    alpha = _halves(65535, 0, np.uint16)[..., None]
    left, right = _decoded(_write_png16(tmp_path / "rgba16.png", np.concatenate([rgb, alpha], 2)))
    assert list(left) == [10, 100, 200] and list(right) == [255, 255, 255]  # transparent: white


def test_32_bit_integer_grey_in_16_bit_range_and_outside_it(tmp_path):
    Image.fromarray(_halves(257 * 20, 257 * 40, np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    left, right = _decoded(tmp_path / "i.tif")
    assert list(left) == [20] * 3 and list(right) == [40] * 3
    Image.fromarray(_halves(-1000, 100_000, np.int32)).save(tmp_path / "wide.tif")  # own min..max
    left, right = _decoded(tmp_path / "wide.tif")
    assert list(left) == [0] * 3 and list(right) == [255] * 3


@pytest.mark.parametrize("left, right, expect", [
    (0.0, 1.0, (0, 255)),  # [0, 1]: times 255
    (0.2, 0.6, (51, 153)),
    (3.0, 200.0, (3, 200)),  # [0, 255]: as they are
    (-1.0, 3.0, (0, 255)),  # anything else: own min..max
])
def test_float_images(tmp_path, left, right, expect):
    Image.fromarray(_halves(left, right, np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    a, b = _decoded(tmp_path / "f.tif")
    assert (int(a[0]), int(b[0])) == expect and len(set(a)) == len(set(b)) == 1


def _palette_image():
    im = Image.new("P", (SIZE, SIZE))
    im.putpalette([9, 99, 199, 250, 20, 30] + [0] * (256 * 3 - 6))
    im.putdata(_halves(0, 1, np.uint8).reshape(-1).tolist())
    return im


def test_palette_without_and_with_transparency(tmp_path):
    im = _palette_image()
    im.save(tmp_path / "p.png")
    left, right = _decoded(tmp_path / "p.png")
    assert list(left) == [9, 99, 199] and list(right) == [250, 20, 30]
    im.save(tmp_path / "pt.png", transparency=0)  # index 0 transparent
    assert Image.open(tmp_path / "pt.png").mode == "P" and "transparency" in Image.open(tmp_path / "pt.png").info
    left, right = _decoded(tmp_path / "pt.png")
    assert list(left) == [255, 255, 255] and list(right) == [250, 20, 30]


def test_grey_with_alpha_and_rgba_are_composited_on_white(tmp_path):
    la = np.stack([_halves(50, 50, np.uint8), _halves(255, 0, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    left, right = _decoded(tmp_path / "la.png")
    assert list(left) == [50] * 3 and list(right) == [255] * 3
    rgba = _halves((200, 10, 10, 255), (200, 10, 10, 0), np.uint8)
    rgba[:, : SIZE // 4, 3] = 128  # half transparent: half way to white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    arr = decode(tmp_path / "rgba.png", SIZE)
    assert list(arr[0, -1]) == [255, 255, 255] and list(arr[0, SIZE // 2 - 1]) == [200, 10, 10]
    assert np.abs(arr[0, 0].astype(int) - [227, 132, 132]).max() <= 1


def test_cmyk_one_bit_grey_and_rgb(tmp_path):
    cmyk = _halves((0, 0, 0, 0), (255, 0, 0, 0), np.uint8)  # white paper; full cyan
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    left, right = _decoded(tmp_path / "c.tif")
    assert list(left) == [255, 255, 255] and list(right) == [0, 255, 255]
    Image.fromarray(_halves(0, 255, np.uint8)).convert("1").save(tmp_path / "bw.png")
    assert Image.open(tmp_path / "bw.png").mode == "1"
    left, right = _decoded(tmp_path / "bw.png")
    assert list(left) == [0] * 3 and list(right) == [255] * 3
    Image.fromarray(_halves(7, 77, np.uint8)).save(tmp_path / "l.png")
    assert [list(p) for p in _decoded(tmp_path / "l.png")] == [[7] * 3, [77] * 3]
    Image.fromarray(_halves((1, 2, 3), (4, 5, 6), np.uint8)).save(tmp_path / "rgb.png")
    assert [list(p) for p in _decoded(tmp_path / "rgb.png")] == [[1, 2, 3], [4, 5, 6]]


def test_center_crop_applies_the_same_rules_to_an_open_image():
    im = Image.fromarray(_halves(257 * 10, 257 * 200, np.uint16))
    arr = center_crop(im, SIZE)
    assert list(arr[0, 0]) == [10] * 3 and list(arr[0, -1]) == [200] * 3
