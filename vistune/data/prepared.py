"""Prepared data: decoded, resized uint8 arrays on disk (`.npy`, memory-mappable).

`augment` writes them once; every epoch reads them with no JPEG decoding or PIL in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vistune.errors import DataError
from vistune.io import atomic_path, read_json, write_json


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
        s = self.splits[split]
        return torch.from_numpy(np.array(s.images)), torch.from_numpy(s.labels.astype(np.int64))


def save_split(out_dir: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    for suffix, arr in (("images", images), ("labels", labels)):
        with atomic_path(out_dir / f"{split}_{suffix}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)


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
            images=np.load(d / f"{s}_images.npy", mmap_mode="r"),
            labels=np.load(d / f"{s}_labels.npy"),
        )
    return PreparedData(classes=list(meta["classes"]), image_size=int(meta["image_size"]), splits=arrays)
