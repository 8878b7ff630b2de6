"""The image manifest: one row per file with the facts validation rules are written against.

Columns: path (relative to the data root, POSIX), split, label, format, width, height, mode,
bytes, sha256, decodable, error, ext_ok. Files are decoded in parallel threads (PIL releases
the GIL while decoding) and never written to.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from vistune.imageio import ImageDecodeError, inspect_bytes
from vistune.io import sha256_bytes
from vistune.sources import SPLITS

COLUMNS = [
    "path", "split", "label", "format", "width", "height", "mode",
    "bytes", "sha256", "decodable", "error", "ext_ok",
]

# extensions each PIL format may legitimately carry
FORMAT_EXTENSIONS = {
    "PNG": {".png"},
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "BMP": {".bmp"},
    "GIF": {".gif"},
    "WEBP": {".webp"},
    "TIFF": {".tif", ".tiff"},
}


def _row(root: Path, path: Path, split: str, label: str, max_pixels: int) -> dict:
    row = {
        "path": path.relative_to(root).as_posix(), "split": split, "label": label,
        "format": "", "width": 0, "height": 0, "mode": "", "bytes": 0, "sha256": "",
        "decodable": False, "error": "", "ext_ok": False,
    }
    try:
        data = path.read_bytes()
    except OSError as exc:
        row["error"] = f"unreadable file ({exc.strerror or exc.__class__.__name__})"
        return row
    row["bytes"] = len(data)
    row["sha256"] = sha256_bytes(data)
    try:
        info = inspect_bytes(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        row["error"] = str(exc)
        return row
    row.update(format=info.format, width=info.width, height=info.height, mode=info.mode, decodable=True)
    row["ext_ok"] = path.suffix.lower() in FORMAT_EXTENSIONS.get(info.format, {path.suffix.lower()})
    return row


def list_images(root: Path) -> list[tuple[Path, str, str]]:
    """(file, split, label) for every file under root/<split>/<label>/..., sorted for stable output."""
    found = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(class_dir.rglob("*")):
                if f.is_file() or f.is_symlink():
                    found.append((f, split, class_dir.name))
    return found


def build_manifest(root: str | Path, max_pixels: int, workers: int = 8) -> pd.DataFrame:
    root = Path(root)
    files = list_images(root)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda t: _row(root, t[0], t[1], t[2], max_pixels), files))
    return pd.DataFrame(rows, columns=COLUMNS)
