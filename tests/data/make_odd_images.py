"""Write the generated half of tests/data/odd_images/ (the other half is copied from Pillow's Tests/images).

Each file is made with Pillow's own encoders from a real photo in the corpus (Pillow's
`hopper_orientation_6.jpg`), then, for the corrupt cases, damaged in one checksum only, so that
Pillow still loads its pixels. Run from the repository root:

    .venv/bin/python tests/data/make_odd_images.py

The outputs are committed; rerunning rewrites them (byte-identical with the same Pillow build).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent / "odd_images"
PHOTO = HERE / "jpeg_exif_orientation_6.jpg"
APNG = HERE / "apng_delay.png"


def chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the length field, data length) of every chunk after the signature."""
    out, pos = [], 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        out.append((kind, pos, length))
        pos += 12 + length
    return out


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def flip_crc(png: bytes, kind: bytes, which: int = 0) -> bytes:
    """The PNG with the CRC of its `which`-th chunk of `kind` inverted (its data untouched)."""
    _, pos, length = [c for c in chunks(png) if c[0] == kind][which]
    crc_at = pos + 8 + length
    return png[:crc_at] + bytes(b ^ 0xFF for b in png[crc_at:crc_at + 4]) + png[crc_at + 4:]


def adler_in_own_chunk(img: Image.Image) -> bytes:
    """A PNG whose zlib stream ends with a wrong adler32, alone in the last IDAT chunk, all CRCs
    valid: Pillow has every pixel before it reaches that chunk, and `verify()` checks only CRCs."""
    png = encode(img, "PNG", compress_level=9)
    found = chunks(png)
    head = png[:found[1][1]]  # signature + IHDR (+ any chunk before the first IDAT)
    stream = b"".join(png[p + 8:p + 8 + n] for kind, p, n in found if kind == b"IDAT")
    bad_adler = bytes(b ^ 0xFF for b in stream[-4:])
    return head + chunk(b"IDAT", stream[:-4]) + chunk(b"IDAT", bad_adler) + chunk(b"IEND", b"")


def main() -> int:
    photo = Image.open(PHOTO).convert("RGB")
    small = photo.resize((64, 64), Image.Resampling.LANCZOS)
    frames = [photo.crop((x, x, x + 48, x + 48)) for x in (0, 24, 48)]
    out = {
        "webp_animated.webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100,
                                     loop=0, lossless=True),
        "png_named.jpg": encode(small, "PNG"),
        "jpeg_named.png": encode(small, "JPEG", quality=90),
        "png_idat_crc.png": flip_crc(encode(small, "PNG"), b"IDAT"),
        "png_adler_split.png": adler_in_own_chunk(small),
        "apng_fdat_crc.png": flip_crc(APNG.read_bytes(), b"fdAT", which=-1),
    }
    for name, data in out.items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
