"""Decoding: every accepted mode normalizes to RGB, bad bytes fail with the right code, and the real odd
files of tests/data/odd_images (animations, MPO, AVIF, icons, broken checksums) decode or fail as documented."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, features

from vistune.data.imageio import (
    RGB_CONVERTIBLE_MODES,
    ImageDecodeError,
    decode_rgb,
    exif_rotated,
    format_names,
    inspect_bytes,
    open_header,
    to_rgb,
    verify_stream,
)

ODD_DIR = Path(__file__).resolve().parents[1] / "data" / "odd_images"
# every file of the corpus -> (format Pillow reports, decoded (height, width)) or the ImageDecodeError code;
# provenance and why in tests/data/odd_images/README.md
ODD = {
    "mpo_frame_size.mpo": ("MPO", (70, 56)),  # Pillow's own test: first frame 56x70, second 349x434
    "avif_hopper.avif": ("AVIF", (128, 128)),
    "apng_delay.png": ("PNG", (64, 128)),
    "gif_animated_dispose_bgnd.gif": ("GIF", (100, 100)),
    "webp_animated.webp": ("WEBP", (48, 48)),
    "ico_hopper.ico": ("ICO", (16, 16)),
    "cur_deerstalker.cur": ("CUR", (32, 32)),
    "tga_la.tga": ("TGA", (64, 64)),
    "psd_rgba.psd": ("PSD", (100, 100)),
    "jpeg_exif_orientation_6.jpg": ("JPEG", (128, 128)),
    "png_padded_idat.png": ("PNG", (10, 256)),
    "png_named.jpg": ("PNG", (64, 64)),
    "jpeg_named.png": ("JPEG", (64, 64)),
    "wmf_drawing.wmf": "undecodable",
    "png_broken_data_stream.png": "undecodable",
    "png_truncated_end_chunk.png": "undecodable",
    "png_idat_crc.png": "corrupt",
    "png_adler_split.png": "corrupt",
    "apng_fdat_crc.png": "corrupt",
}
CORRUPT = sorted(name for name, want in ODD.items() if want == "corrupt")
HAS_AVIF = features.check("avif")


def odd(name: str) -> bytes:
    if name.endswith(".avif") and not HAS_AVIF:
        pytest.skip("this Pillow has no AVIF plugin")
    return (ODD_DIR / name).read_bytes()


def on_white(img: Image.Image) -> np.ndarray:
    """Reference RGB of one frame: alpha composited on white, computed in numpy (not by to_rgb)."""
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:] / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries almost no pixel data (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


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


def corner_marked(width: int = 48, height: int = 24) -> Image.Image:
    """A landscape image, blue with a red top-left corner: which way it was turned is visible."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 2] = 200
    arr[: height // 3, : width // 3] = (255, 0, 0)
    return Image.fromarray(arr)


def with_orientation(img: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes())


# EXIF 2.3, tag 0x0112: 6 = the stored image must turn 90 degrees clockwise to display (np.rot90 k=-1),
# 8 = 90 degrees counter-clockwise (k=1). The direction is the spec's, not read from Pillow.
TURN = {6: -1, 8: 1}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", sorted(TURN))
def test_exif_orientations_6_and_8_turn_the_right_way(orientation: int, fmt: str) -> None:
    data = with_orientation(corner_marked(), fmt, orientation)
    with Image.open(io.BytesIO(data)) as im:
        stored = np.asarray(im.convert("RGB"))  # the pixels as stored, before any turn
        reference = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    rgb = decode_rgb(data)
    np.testing.assert_array_equal(rgb, reference)
    np.testing.assert_array_equal(rgb, np.rot90(stored, k=TURN[orientation]))
    red = (rgb[..., 0] > 200) & (rgb[..., 2] < 60)
    top_right, bottom_left = red[:4, -4:].all(), red[-4:, :4].all()
    assert (top_right, bottom_left) == ((True, False) if orientation == 6 else (False, True))


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


def test_the_corpus_is_every_file_there_and_small() -> None:
    files = {p.name for p in ODD_DIR.iterdir()} - {"README.md"}
    assert files == set(ODD)
    assert sum(p.stat().st_size for p in ODD_DIR.iterdir()) < 300_000


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_real_files_decode_or_fail_with_their_code(name: str) -> None:
    data, want = odd(name), ODD[name]
    if isinstance(want, str):
        with pytest.raises(ImageDecodeError) as err:
            decode_rgb(data)
        assert err.value.code == want and "\n" not in str(err.value)
        return
    fmt, shape = want
    assert inspect_bytes(data).format == fmt and fmt in format_names()
    rgb = decode_rgb(data)
    assert rgb.shape == (*shape, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("name", ["gif_animated_dispose_bgnd.gif", "apng_delay.png"])
def test_animations_decode_to_their_first_frame(name: str) -> None:
    img = Image.open(ODD_DIR / name)
    first = on_white(img)
    img.seek(img.n_frames - 1)
    last = on_white(img)
    rgb = decode_rgb(odd(name))
    assert np.array_equal(rgb, first) and not np.array_equal(rgb, last)


def test_animated_webp_first_frame_is_the_crop_it_was_made_from() -> None:
    # make_odd_images.py: lossless frames cropped at (0,0), (24,24), (48,48) from this photo's stored pixels
    photo = Image.open(ODD_DIR / "jpeg_exif_orientation_6.jpg").convert("RGB")
    rgb = decode_rgb(odd("webp_animated.webp"))
    assert np.array_equal(rgb, np.asarray(photo.crop((0, 0, 48, 48))))
    assert not np.array_equal(rgb, np.asarray(photo.crop((24, 24, 72, 72))))


@pytest.mark.parametrize("name", CORRUPT)
def test_a_failed_checksum_is_corrupt_although_pillow_loads_the_pixels(name: str) -> None:
    data = odd(name)
    Image.open(io.BytesIO(data)).load()  # what a plain Pillow load would have accepted
    with pytest.raises(ImageDecodeError, match="corrupt although its pixels load") as err:
        decode_rgb(data)
    assert err.value.code == "corrupt"
    with pytest.raises(ImageDecodeError):
        inspect_bytes(data)


def test_a_bad_adler32_passes_pillow_verify_and_is_still_caught() -> None:
    data = odd("png_adler_split.png")
    Image.open(io.BytesIO(data)).verify()  # every chunk CRC is valid
    with pytest.raises(ImageDecodeError, match="incorrect data check"):
        verify_stream(data, "PNG")
    verify_stream(odd("png_padded_idat.png"), "PNG")  # bytes after the zlib stream are not a failure


def test_eps_is_refused_without_running_ghostscript() -> None:
    data = encode(Image.new("RGB", (8, 8), "red"), "EPS")
    with pytest.raises(ImageDecodeError, match="Ghostscript") as err:
        decode_rgb(data)
    assert err.value.code == "not_image" and "EPS" not in format_names()
