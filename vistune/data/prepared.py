"""Prepared data: decoded, resized uint8 arrays on disk (`.npy`, memory-mappable).

`augment` writes them once; every epoch reads them with no JPEG decoding or PIL in the loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vistune.errors import DataError
from vistune.io import atomic_path, read_json, write_json


def class_order(labels) -> list[str]:
    """The model's output order (class index = position): numeric labels by value ("2" before "10"),
    after any named classes in name order. Decided once here; `augment` stores it in the prepared meta."""
    return sorted(set(labels), key=lambda c: (len(c), c) if c.isdigit() else (0, c))


@dataclass
class SplitArrays:
    images: np.ndarray  # N x 3 x S x S uint8
    labels: np.ndarray  # N int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class PreparedData:
    classes: list[str]
    image_size: int
    splits: dict[str, SplitArrays]

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Tensors that share memory with the arrays: a memory-mapped split is not read into RAM
        (pages load as batches touch them); treat the images as read-only."""
        s = self.splits[split]
        images = s.images if s.images.flags.writeable else _copy_on_write(s.images)
        return torch.from_numpy(images), torch.from_numpy(np.asarray(s.labels, dtype=np.int64))


def _copy_on_write(images: np.ndarray) -> np.ndarray:
    """A read-only memory map (mmap_mode="r") reopened copy-on-write: torch needs a writable array."""
    path = getattr(images, "filename", None)
    if isinstance(images, np.memmap) and path:
        whole = np.load(path, mmap_mode="c")
        if whole.shape == images.shape and whole.dtype == images.dtype:
            return whole
    return np.array(images)  # read-only and not a file: the one case that copies


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def save_split(out_dir: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Both arrays of a split held in RAM (small sets, tests); `augment` streams with `split_writer`."""
    _save_npy(out_dir / f"{split}_images.npy", images)
    save_labels(out_dir, split, labels)


def save_labels(out_dir: Path, split: str, labels: np.ndarray) -> None:
    _save_npy(out_dir / f"{split}_labels.npy", labels)


@contextlib.contextmanager
def split_writer(out_dir: Path, split: str, n: int, image_size: int) -> Iterator[np.ndarray]:
    """A writable N x 3 x S x S uint8 `.npy` memory map filled in place (decode straight into it, no
    whole-split array in RAM); it lands atomically as `<split>_images.npy` when the block exits cleanly."""
    with atomic_path(out_dir / f"{split}_images.npy") as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, image_size, image_size))
        yield arr
        arr.flush()


def save_meta(out_dir: Path, classes: list[str], image_size: int, counts: dict[str, int]) -> None:
    write_json(out_dir / "meta.json", {"classes": classes, "image_size": image_size, "counts": counts})


def load_prepared(prepared_dir: str | Path, splits: tuple[str, ...] = ("train", "val", "test")) -> PreparedData:
    d = Path(prepared_dir)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: prepared data not found; run `dvc repro augment` first")
    meta = read_json(meta_path)
    arrays = {}
    for s in splits:
        arrays[s] = SplitArrays(
            images=np.load(d / f"{s}_images.npy", mmap_mode="c"),  # copy-on-write: torch-writable, never written
            labels=np.load(d / f"{s}_labels.npy"),
        )
    return PreparedData(classes=list(meta["classes"]), image_size=int(meta["image_size"]), splits=arrays)
