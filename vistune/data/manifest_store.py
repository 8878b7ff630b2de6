"""A manifest larger than memory: its parts on disk, and in memory only the compact facts that the
cross-row checks and the expectation suite need.

`validate` used to hold the whole manifest (paths, sha256 and pHash as Python strings, the error
text: ~1.5 KB a file with the decode cache and the copies made to mark duplicates). Here each part
from `manifest.manifest_parts` is pickled to a private temp directory as it is made (the same
process writes and reads it back: a full-fidelity copy, dtypes included, so the CSV written from it
is the one the in-memory frame gave), and only this stays per file: sha256 as 32 raw bytes, pHash
as a uint64, and a facts frame (flags, sizes, brightness; split/label/format/mode as shared
strings). Paths are read back from the parts for the few rows that need one.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

# per-file facts kept in memory: what the suite checks, the summary counts and the split findings
FACT_COLUMNS = ["split", "label", "exists", "readable", "name_ok", "within_root", "bytes", "identified", "format",
                "extension_mismatch", "width", "height", "pixels", "aspect", "mode", "exif_rotated", "corrupt",
                "decodable", "brightness"]
_SHARED = ("split", "label", "format", "mode")  # few distinct values: one string object each


@dataclass
class StoredManifest:
    directory: Path
    parts: list[Path] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # first row of each part
    facts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FACT_COLUMNS))
    sha: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="S32"))  # b"" where unread
    phash: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # 0 where not decoded

    def __len__(self) -> int:
        return len(self.facts)

    def iter_parts(self) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row, part) in row order, read back from disk one at a time."""
        for offset, path in zip(self.offsets, self.parts):
            with open(path, "rb") as f:
                yield offset, pickle.load(f)  # noqa: S301 - written by this process into its own temp dir

    def column_at(self, column: str, rows: Iterable[int]) -> list:
        """Values of `column` at these rows (any order; returned in that order), one pass over the parts."""
        rows = np.asarray(list(rows), dtype=np.int64)
        out = np.empty(len(rows), dtype=object)
        if not len(rows):
            return []
        for offset, part in self.iter_parts():
            here = (rows >= offset) & (rows < offset + len(part))
            if here.any():
                out[here] = part[column].to_numpy()[rows[here] - offset]
        return out.tolist()


class _Column:
    """One fact for every file in one growing array (capacity doubles): a few large allocations,
    no small array per part left behind between the parts' freed memory."""

    def __init__(self, dtype) -> None:
        self.values, self.n = np.empty(4096, dtype=dtype), 0

    def extend(self, values: np.ndarray) -> None:
        if self.n + len(values) > len(self.values):
            grown = np.empty(max(2 * len(self.values), self.n + len(values)), dtype=self.values.dtype)
            grown[:self.n] = self.values[:self.n]
            self.values = grown
        self.values[self.n:self.n + len(values)] = values
        self.n += len(values)

    def take(self, values: pd.Series) -> None:
        """Append a part's column; a part whose dtype differs (None among ints) makes it an object
        column, as concatenating the parts would."""
        if values.dtype != self.values.dtype and self.values.dtype != object:
            self.values = self.values.astype(object)
        self.extend(values.to_numpy(self.values.dtype))

    def done(self) -> np.ndarray:
        return self.values[:self.n].copy()


class _Shared:
    """A text column as codes into a short list of distinct values (split, label, format, mode)."""

    def __init__(self) -> None:
        self.codes, self.index, self.values = _Column(np.int32), {}, []

    def take(self, values: pd.Series) -> None:
        self.codes.extend(np.array([self.index.setdefault(v, len(self.index)) for v in values], dtype=np.int32))
        self.values += [v for v in list(self.index)[len(self.values):]]

    def done(self) -> np.ndarray:
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values
        return table[self.codes.done()]


def _columns(first: pd.DataFrame) -> dict:
    return {c: _Shared() if c in _SHARED else _Column(first[c].dtype) for c in FACT_COLUMNS}


def store_manifest(parts: Iterable[pd.DataFrame], directory: Path) -> StoredManifest:
    """Spill each part to `directory` and keep its compact facts, sha256 digests and pHashes."""
    store = StoredManifest(Path(directory))
    columns, sha, hashes, n = None, _Column("S32"), _Column(np.uint64), 0
    for k, part in enumerate(parts):
        path = store.directory / f"part{k:06d}.pkl"
        with open(path, "wb") as f:
            pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)
        store.parts.append(path)
        store.offsets.append(n)
        n += len(part)
        columns = columns or _columns(part)
        for name, col in columns.items():
            col.take(part[name])
        sha.extend(np.array([bytes.fromhex(s) if isinstance(s, str) else b"" for s in part.sha256], dtype="S32"))
        hashes.extend(np.array([int(h, 16) if isinstance(h, str) and h else 0 for h in part.phash], dtype=np.uint64))
    if columns:
        store.facts = pd.DataFrame({name: col.done() for name, col in columns.items()})
        store.sha, store.phash = sha.done(), hashes.done()
    return store
