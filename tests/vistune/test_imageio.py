"""Decoding: every accepted mode normalizes to RGB, bad bytes fail with the right code."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vistune.data.imageio import (
    RGB_CONVERTIBLE_MODES, ImageDecodeError, decode_rgb, exif_rotated, inspect_bytes, open_header, to_rgb,
)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries almost no pixel data (a bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def sample(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode == "1":
        return Image.fromarray(rng.random((6, 10)) > 0.5)
    if mode == "I":
        return Image.fromarray(rng.integers(0, 2**20, (6, 10)).astype(np.int32))
    if mode.startswith("I;16"):
        return Image.frombytes(mode, (10, 6), rng.integers(0, 255, 120, dtype=np.uint8).tobytes())
    rgb = Image.fromarray(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8))
    if mode == "P":
        return rgb.convert("P")
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", RGB_CONVERTIBLE_MODES)
def test_every_accepted_mode_becomes_8bit_rgb(mode: str) -> None:
    img = sample(mode)
    assert img.mode == mode
    out = np.asarray(to_rgb(img))
    assert out.shape == (6, 10, 3) and out.dtype == np.uint8


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    data = encode(Image.fromarray(arr), "PNG")
    assert inspect_bytes(data).mode.startswith("I")
    rgb = decode_rgb(data)
    assert rgb[1, 1].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [0, 0, 0]


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_rgb(encode(img, "PNG"))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(img, "JPEG", exif=exif.tobytes())
    assert exif_rotated(open_header(data))
    assert inspect_bytes(data).width == 40
    assert decode_rgb(data).shape == (40, 20, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_fail_the_full_decode(fmt: str) -> None:
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    open_header(data[: len(data) // 2])  # the header alone looks fine
    with pytest.raises(ImageDecodeError, match="does not decode fully") as err:
        inspect_bytes(data[: len(data) // 2])
    assert err.value.code == "undecodable"


@pytest.mark.parametrize(("data", "code"), [(b"", "empty"), (b"hello, not an image\n", "not_image")])
def test_non_images_fail_with_their_code(data: bytes, code: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(data)
    assert err.value.code == code


def test_bomb_is_refused_from_the_header() -> None:
    data = png_header_only(3000, 3000)
    with pytest.raises(ImageDecodeError, match="decompression bomb") as err:
        decode_rgb(data, max_pixels=1_000_000)
    assert err.value.code == "bomb" and err.value.pixels == 9_000_000
    # beyond PIL's own hard limit the size still comes back
    with pytest.raises(ImageDecodeError) as err:
        open_header(png_header_only(100_000, 100_000))
    assert err.value.code == "bomb" and err.value.pixels == 10**10


def test_decode_past_its_deadline_is_refused_with_code_timeout() -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1500, 1500, 3), dtype=np.uint8)).save(buf, "PNG")  # ~7 MB, many reads
    data = buf.getvalue()
    assert decode_rgb(data, timeout_s=None).shape == (1500, 1500, 3)
    with pytest.raises(ImageDecodeError, match=r"decode timed out after 0 s") as err:
        decode_rgb(data, timeout_s=0.0)
    assert err.value.code == "timeout"


def test_timed_out_decode_is_quarantined_and_not_cached(tmp_path) -> None:
    from vistune.data.manifest import build_manifest, load_cache

    root = tmp_path / "raw" / "train" / "a"
    root.mkdir(parents=True)
    Image.new("RGB", (64, 64), "red").save(root / "x.png")
    cache = tmp_path / "cache.json"
    slow = build_manifest(tmp_path / "raw", max_pixels=10**8, cache_path=cache, timeout_s=0.0)
    assert not slow.decodable.iloc[0] and slow.error.iloc[0].startswith("decode timed out")
    assert load_cache(cache) == {}  # tried again next run
    ok = build_manifest(tmp_path / "raw", max_pixels=10**8, cache_path=cache)
    assert ok.decodable.iloc[0] and len(load_cache(cache)) == 1
