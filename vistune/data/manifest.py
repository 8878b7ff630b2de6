"""The image manifest: one row per file with the facts validation rules are written against.

Every check `validate` makes is a column here, so each rule is a plain expectation over a table:
`exists` (not deleted mid-run), `readable`, `name_ok` (UTF-8, no `..`), `within_root` (symlinks),
`bytes`, `identified`, `pixels` (from the header; bombs are never decoded), `corrupt` (pixels load
but a checksum fails), `decodable` (full decode, the same as `imageio.decode_rgb`),
`extension_mismatch` (the name's extension is not one Pillow registers for the content's format),
`mode`, `width`/`height`/`aspect`, plus `phash`/`brightness` for duplicate and drift checks. Files are only read, in parallel threads (PIL and hashlib release the GIL), and the
decode result is cached by sha256 so an unchanged file is not decoded again on the next run.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image

from vistune.data.imageio import (
    DEFAULT_DECODE_TIMEOUT_S, ImageDecodeError, exif_rotated, load_fully, open_header, to_rgb, verify_stream,
)
from vistune.io import atomic_path, sha256_bytes
from vistune.data.phash import phash
from vistune.data.files import is_within, name_is_safe, printable_name, walk_class_files
from vistune.data.sources.common import SPLITS

COLUMNS = [
    "path", "split", "label", "exists", "readable", "name_ok", "within_root", "bytes", "sha256",
    "identified", "format", "extension_mismatch", "width", "height", "pixels", "aspect", "mode", "exif_rotated",
    "corrupt", "decodable", "error", "phash", "brightness",
]

# names a format's files also carry besides the ones Pillow registers (an MPO is a JPEG to every viewer)
_EXTRA_EXTENSIONS = {"MPO": (".jpg", ".jpeg", ".jpe", ".jfif"), "BMP": (".dib",), "DIB": (".bmp",)}

ROWS_PER_CHUNK = 2048  # files read per round; their rows become a compact DataFrame part at once
CACHE_VERSION = 2  # 2: `corrupt` (checksums Pillow skips) joined the facts
# facts that depend only on the bytes: what the cache stores per sha256
_DECODE_FACTS = ("identified", "format", "width", "height", "pixels", "mode", "exif_rotated",
                 "corrupt", "decodable", "error", "phash", "brightness", "decoded")


_NO_FACTS = {"identified": False, "format": "", "width": 0, "height": 0, "pixels": 0, "mode": "",
             "exif_rotated": False, "corrupt": False, "decodable": False, "error": "", "phash": "",
             "brightness": float("nan"), "decoded": False}


@lru_cache(maxsize=None)
def format_extensions(fmt: str) -> tuple[str, ...]:
    """File extensions (".jpg") a `fmt` image may carry: Pillow's registered ones plus common aliases."""
    Image.init()
    return tuple(e for e, f in Image.registered_extensions().items() if f == fmt) + _EXTRA_EXTENSIONS.get(fmt, ())


def preferred_extension(fmt: str) -> str:
    """The extension to suggest when renaming a `fmt` file ("" when Pillow registers none)."""
    names = format_extensions(fmt)
    return next((e for e in (".jpg", f".{fmt.lower()}") if e in names), names[0] if names else "")


def extension_mismatch(fmt: str, suffix: str) -> bool:
    """True when the content's format is known and the name's extension is not one of its names.
    A format Pillow registers no extension for matches any name."""
    names = format_extensions(fmt) if fmt else ()
    return bool(names) and suffix.lower() not in names


def decode_facts(data: bytes, max_pixels: int, timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S) -> dict:
    """Header facts, then (only under the pixel limit) a full decode, pHash and mean brightness."""
    facts = dict(_NO_FACTS)
    try:
        img = open_header(data, max_pixels=max_pixels, timeout_s=timeout_s)
    except ImageDecodeError as exc:
        facts["error"] = str(exc)
        facts["identified"] = exc.code == "bomb"
        facts["pixels"] = exc.pixels
        return facts
    w, h = img.size
    facts.update(identified=True, format=img.format or "", width=w, height=h, pixels=w * h, mode=img.mode,
                 decoded=True)
    if img.format in ("JPEG", "MPO"):
        # DCT-domain downscale: every entropy-coded byte is still decoded (truncation is caught)
        # but the IDCT and colour conversion run at 1/8 size, ~2x faster on photos
        img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
    try:
        load_fully(img)  # before anything that may load as a side effect (PNG getexif) and swallow the error
        verify_stream(data, img.format or "", timeout_s)
        facts["exif_rotated"] = exif_rotated(img)
        rgb = to_rgb(img)
    except ImageDecodeError as exc:
        facts.update(error=str(exc), corrupt=exc.code == "corrupt")
        return facts
    except Exception as exc:  # a mode to_rgb cannot convert
        facts["error"] = f"{img.mode} image does not convert to RGB ({exc.__class__.__name__})"
        return facts
    small = rgb.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    brightness = float(np.asarray(small, dtype=np.float32).mean()) / 255.0
    facts.update(decodable=True, phash=f"{phash(small):016x}", brightness=round(brightness, 4))
    return facts


def _facts_for(data: bytes, digest: str, max_pixels: int, timeout_s: float | None,
               cache: tuple[dict, dict] | None) -> dict:
    """Decode facts for these bytes, from (old, live) cache when possible; `live` collects this run's.
    A timed-out decode is not cached: the next run tries again (the machine may just have been busy)."""
    if cache is None:
        return decode_facts(data, max_pixels, timeout_s)
    old, live = cache
    packed = live.get(digest)
    packed = old.get(digest) if packed is None else packed
    hit = packed if packed is None or isinstance(packed, dict) else dict(zip(_DECODE_FACTS, packed))
    # a cached bomb (never decoded) must be decoded if the limit was raised since
    if hit is None or not (hit["decoded"] or hit["pixels"] > max_pixels or not hit["identified"]):
        hit = decode_facts(data, max_pixels, timeout_s)
    if not str(hit.get("error") or "").startswith("decode timed out"):
        # a tuple, not the dict: ~1/3 of the memory per file; single assignment, atomic under the GIL
        live[digest] = tuple(hit[k] for k in _DECODE_FACTS)
    return hit


def _row(root: Path, root_real: str, path: Path, split: str, label: str, max_pixels: int, timeout_s: float | None,
         cache: tuple[dict, dict] | None, before_read: Callable[[Path], None] | None) -> dict:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    row = {c: None for c in COLUMNS}
    row.update(path=printable_name(rel), split=split, label=label, exists=True, readable=True, name_ok=name_is_safe(rel),
               within_root=is_within(path, root_real), bytes=0, sha256="", extension_mismatch=False,
               aspect=float("nan"))
    row.update({k: v for k, v in _NO_FACTS.items() if k in COLUMNS})
    if not row["within_root"]:
        return row  # never follow a link out of the data root
    if before_read is not None:
        before_read(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        row.update(exists=False, error="file disappeared while validating")
        return row
    except OSError as exc:
        row.update(readable=False, error=exc.strerror or exc.__class__.__name__)
        return row
    row["bytes"] = len(data)
    row["sha256"] = sha256_bytes(data)
    facts = _facts_for(data, row["sha256"], max_pixels, timeout_s, cache)
    row.update({k: v for k, v in facts.items() if k in COLUMNS})
    if facts["width"] and facts["height"]:
        row["aspect"] = round(facts["width"] / facts["height"], 4)
    row["extension_mismatch"] = extension_mismatch(facts["format"], path.suffix)
    return row


def list_images(root: Path) -> Iterator[tuple[Path, str, str]]:
    """(file, split, label) for every file under root/<split>/<label>/..., sorted for stable output.

    A generator: the caller takes files a chunk at a time, so no list of every path is held.
    Symlinks are listed (not followed) so a link out of the root is reported, not silently read.
    """
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for f, label in walk_class_files(split_dir):
            yield f, split, label


def _packed(obj: dict):
    """json object hook: a facts entry becomes a tuple in `_DECODE_FACTS` order (~1/3 of a dict's memory)."""
    return tuple(obj[k] for k in _DECODE_FACTS) if obj.keys() == _FACT_KEYS else obj


_FACT_KEYS = set(_DECODE_FACTS)


def _load_packed(path: Path | None) -> dict:
    """sha256 -> facts tuple from an earlier run; empty when missing, stale or unreadable."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        raw = json.loads(Path(path).read_text(), object_hook=_packed)
    except (OSError, ValueError, KeyError):
        return {}
    return raw.get("facts", {}) if isinstance(raw, dict) and raw.get("version") == CACHE_VERSION else {}


def load_cache(path: Path | None) -> dict:
    """sha256 -> decode facts (a dict per file) from an earlier run; empty when missing, stale or unreadable."""
    return {k: v if isinstance(v, dict) else dict(zip(_DECODE_FACTS, v)) for k, v in _load_packed(path).items()}


class _CacheWriter:
    """This run's decode facts, written entry by entry as each chunk of files is done: only the
    current chunk's entries are held, plus a sorted uint64 array of the digests written (their first
    8 bytes: a file seen twice is written once; a prefix collision only costs a decode next run), so
    memory does not grow with a row of facts per file. A copy in a later chunk is decoded again."""

    def __init__(self, f) -> None:
        self.f, self.live, self.seen, self.n = f, {}, np.empty(0, dtype=np.uint64), 0
        f.write(f'{{"version":{CACHE_VERSION},"facts":{{')

    def flush(self) -> None:
        if self.live:
            digests = list(self.live)
            keys = np.array([int(d[:16], 16) for d in digests], dtype=np.uint64)
            new = ~np.isin(keys, self.seen)
            for digest in (d for d, n in zip(digests, new) if n):
                facts = dict(zip(_DECODE_FACTS, self.live[digest]))
                entry = json.dumps(digest) + ":" + json.dumps(facts, separators=(",", ":"))
                self.f.write(("," if self.n else "") + entry)
                self.n += 1
            self.seen = np.union1d(self.seen, keys[new])
            self.live.clear()

    def close(self) -> None:
        self.flush()
        self.f.write("}}")


def manifest_parts(root: str | Path, max_pixels: int, workers: int = 8, cache_path: str | Path | None = None,
                   before_read: Callable[[Path], None] | None = None,
                   timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
                   files: list[tuple[Path, str, str]] | None = None) -> Iterator[pd.DataFrame]:
    """The manifest as DataFrame parts of up to ROWS_PER_CHUNK files, in listing order, so a caller
    that keeps only what it needs of each part holds memory independent of the number of files.

    With `cache_path` (JSON) files seen before are not decoded again; this run's facts are written
    as parts are made and the file is replaced once the last part has been taken (only facts for
    files present in this run: the cache never grows stale). `files` ((file, split, label) under
    root) replaces the root/<split>/<label>/ listing (batch scoring). `before_read` is called with
    each file just before it is read (progress, or tests that delete a file mid-run).
    """
    root = Path(root)
    files = iter(list_images(root) if files is None else files)  # a list too is taken a chunk at a time, once
    root_real = os.path.realpath(root)
    with ExitStack() as stack:
        writer, cache = None, None
        if cache_path is not None:
            tmp = stack.enter_context(atomic_path(Path(cache_path)))
            old = _load_packed(Path(cache_path))
            writer = _CacheWriter(stack.enter_context(open(tmp, "w")))
            cache = (old, writer.live)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        while chunk := list(islice(files, ROWS_PER_CHUNK)):  # paths and row dicts: one chunk at a time
            rows = pool.map(lambda t: _row(root, root_real, t[0], t[1], t[2], max_pixels, timeout_s, cache,
                                           before_read), chunk)
            part = pd.DataFrame(list(rows), columns=COLUMNS)
            if writer is not None:
                writer.flush()
            yield part
        if writer is not None:
            writer.close()


def build_manifest(root: str | Path, max_pixels: int, workers: int = 8, cache_path: str | Path | None = None,
                   before_read: Callable[[Path], None] | None = None,
                   timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
                   files: list[tuple[Path, str, str]] | None = None) -> pd.DataFrame:
    """One row per file under root, in one DataFrame (`manifest_parts`, concatenated); for sets
    that fit in memory (init's inspection, batch scoring, tests). `validate` takes the parts."""
    parts = list(manifest_parts(root, max_pixels, workers, cache_path, before_read, timeout_s, files))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
