"""Decode images the same way at validate, train and serve time.

One function turns bytes into an RGB uint8 array: EXIF orientation applied, palette/alpha/CMYK/
grayscale/16-bit converted to RGB, a pixel-count limit checked from the header before any
pixel is decoded (decompression bombs), and a wall-clock limit on the decode itself.

Every format Pillow decodes is read (animations, multi-picture MPO and multi-page files give
their first frame) except EPS, whose loader runs Ghostscript, an outside interpreter, on the
file. Pillow skips some checksums while loading pixels (PNG skips each IDAT chunk's CRC and may
stop before the zlib stream's adler32), so `verify_stream` checks them and a file that fails is
refused as `corrupt` even though its pixels loaded.
"""

from __future__ import annotations

import io
import re
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_DECODE_TIMEOUT_S = 10.0
EXIF_ORIENTATION = 0x0112
# modes `to_rgb` normalizes; anything else PIL may open is refused by the default mode policy
RGB_CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr",
                         "I", "I;16", "I;16B", "I;16L")
# formats never opened: EPS pixels come from running Ghostscript on the (untrusted) file
REFUSED_FORMATS = ("EPS",)
_INFLATE_PIECE = 1 << 20  # bytes of inflated PNG data held at once while checking the adler32
_EPS_MAGIC = (b"%!PS", b"\xc5\xd0\xd3\xc6")  # plain and DOS-binary EPS


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; the message is the one-line reason.

    `code` names the kind of failure (`empty`, `not_image`, `bomb`, `undecodable`, `corrupt`, `timeout`) so
    callers can count and route failures without parsing the message; `pixels` is set for bombs.
    """

    def __init__(self, message: str, code: str = "undecodable", pixels: int = 0):
        super().__init__(message)
        self.code = code
        self.pixels = pixels


class DecodeTimeout(OSError):
    """Raised from inside PIL's read loop when a decode runs past its deadline."""


class _DeadlineBytes(io.BytesIO):
    """In-memory image bytes whose reads fail after a deadline.

    PIL decodes by reading its file object block by block from Python, so checking the clock on
    every read bounds the decode time in any thread, without signals or subprocesses.
    """

    def __init__(self, data: bytes, timeout_s: float | None):
        super().__init__(data)
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DecodeTimeout(f"decode timed out after {self.timeout_s:g} s")

    def read(self, size: int | None = -1) -> bytes:
        self.check_deadline()
        return super().read(size)


def _timed_out(exc: BaseException) -> DecodeTimeout | None:
    """The DecodeTimeout behind `exc`, however PIL wrapped it."""
    while exc is not None:
        if isinstance(exc, DecodeTimeout):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@lru_cache(maxsize=1)
def decodable_formats() -> tuple[str, ...]:
    """Pillow's format IDs `open_header` tries, in Pillow's order (an MPO is opened by the JPEG plugin)."""
    Image.init()
    return tuple(f for f in Image.ID if f not in REFUSED_FORMATS)


def format_names() -> tuple[str, ...]:
    """Every `img.format` a decoded image may report: what `validate.allowed_formats` may list."""
    return tuple(sorted({*decodable_formats(), "MPO"}))


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str


def _open_checked(data: bytes, max_pixels: int, timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S) -> Image.Image:
    """Open the header only; refuse empty input, non-images and images over `max_pixels`.
    The image's reads (header now, pixels at `load_fully`) stop `timeout_s` seconds from now."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)", code="empty")
    if data.startswith(_EPS_MAGIC):
        raise ImageDecodeError("EPS is not decoded (its loader runs Ghostscript on the file); export it as PNG",
                               code="not_image")
    try:
        img = Image.open(_DeadlineBytes(data, timeout_s), formats=decodable_formats())
    except Image.DecompressionBombError as exc:
        # PIL's own hard limit (2x MAX_IMAGE_PIXELS) fires before we see the size; its message has it
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        raise ImageDecodeError(f"decompression bomb: {pixels} pixels > limit {max_pixels}",
                               code="bomb", pixels=pixels) from None
    except Exception as exc:  # PIL raises many types for garbage input
        if _timed_out(exc):
            raise ImageDecodeError(str(_timed_out(exc)), code="timeout") from None
        raise ImageDecodeError(f"not an image PIL can identify ({exc.__class__.__name__})", code="not_image") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageDecodeError(f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}",
                               code="bomb", pixels=w * h)
    return img


def open_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S) -> Image.Image:
    """A lazily-decoded PIL image whose header passed the empty / identify / pixel-limit checks."""
    return _open_checked(data, max_pixels, timeout_s)


def load_fully(img: Image.Image) -> None:
    """Decode every pixel now, so truncated files fail here and not at train time."""
    try:
        img.load()
    except Exception as exc:
        if _timed_out(exc):
            raise ImageDecodeError(str(_timed_out(exc)), code="timeout") from None
        raise ImageDecodeError(f"{img.format or 'image'} does not decode fully ({exc})", code="undecodable") from None


def _inflate_png(fp: _DeadlineBytes) -> None:
    """Walk the chunks to IEND checking each CRC, and inflate the image's zlib stream to its end
    (output dropped, memory bounded) so its adler32 is checked; raise on the first failure."""
    fp.seek(8)
    chunks = PngImagePlugin.ChunkStream(fp)
    inflate = zlib.decompressobj()
    while True:
        cid, _, length = chunks.read()
        body = fp.read(length)
        if len(body) < length:
            raise EOFError(f"file ends inside chunk {cid.decode('latin-1')}")
        chunks.crc(cid, body)  # SyntaxError on a bad CRC
        while cid == b"IDAT" and body and not inflate.eof:
            inflate.decompress(body, _INFLATE_PIECE)
            body = inflate.unconsumed_tail
            fp.check_deadline()
        if cid == b"IEND":
            break
    if not inflate.eof:
        raise EOFError("image data ends before its zlib stream does")


def verify_stream(data: bytes, fmt: str, timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S) -> None:
    """Check what the pixel load skipped; ImageDecodeError code `corrupt` when a checksum fails.

    Only PNG (APNG too) has such checks: Pillow loads pixels without each IDAT chunk's CRC and can
    stop before the zlib adler32. The other formats Pillow reads carry no checksum it skips.
    """
    if fmt != "PNG":
        return
    try:
        _inflate_png(_DeadlineBytes(data, timeout_s))
    except Exception as exc:
        if _timed_out(exc):
            raise ImageDecodeError(str(_timed_out(exc)), code="timeout") from None
        why = f"zlib: {exc}" if isinstance(exc, zlib.error) else str(exc) or exc.__class__.__name__
        raise ImageDecodeError(f"PNG stream is corrupt although its pixels load ({why})", code="corrupt") from None


def exif_rotated(img: Image.Image) -> bool:
    """True when the EXIF orientation tag asks for a rotation or flip (to_rgb applies it)."""
    try:
        return img.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)
    except Exception:  # a broken EXIF block is not a reason to refuse the pixels
        return False


def inspect_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Header facts plus a full decode (truncated files fail here, not at train time)."""
    img = _open_checked(data, max_pixels)
    info = ImageInfo(format=img.format or "", width=img.size[0], height=img.size[1], mode=img.mode)
    load_fully(img)
    verify_stream(data, info.format)
    return info


def to_rgb(img: Image.Image) -> Image.Image:
    """EXIF-rotate and convert any mode (L, P, RGBA, CMYK, I;16, ...) to 8-bit RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S) -> np.ndarray:
    """Bytes -> HxWx3 uint8 RGB array (first frame of an animation), or ImageDecodeError with a one-line
    reason: the same checks `validate` applies, so serving refuses what training never saw."""
    img = _open_checked(data, max_pixels, timeout_s)
    load_fully(img)
    verify_stream(data, img.format or "", timeout_s)
    try:
        return np.asarray(to_rgb(img), dtype=np.uint8)
    except Exception as exc:
        raise ImageDecodeError(f"image does not convert to RGB ({exc})") from None


def decode_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return decode_rgb(Path(path).read_bytes(), max_pixels)
