"""Stage `augment`: decode once into resized uint8 arrays, and preview the training augmentation.

Epochs then read `data/prepared/*.npy` (memory-mappable) and augment per batch on the training
device; no JPEG decoding or PIL in the training loop.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from stages.cli import stage_main
from vistune.train.augment import BatchAugment
from vistune.config import AugmentCfg
from vistune.data.prepared import save_meta, save_split
from vistune.errors import DataError
from vistune.data.imageio import decode_file
from vistune.io import atomic_path
from vistune.layout import Layout
from vistune.data.preprocess import resize_rgb
from vistune.data.sources import SPLITS


def _decode_split(layout: Layout, paths: list[str], size: int, split: str) -> np.ndarray:
    def load(rel: str) -> np.ndarray:
        return resize_rgb(decode_file(layout.raw / rel), size)

    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for i, arr in enumerate(tqdm(pool.map(load, paths), total=len(paths), desc=f"decode {split}", unit="img")):
            out[i] = arr
    return out


def _preview(images: np.ndarray, cfg: AugmentCfg, layout: Layout, n: int = 32, seed: int = 0) -> None:
    """A grid of augmented training samples, so a human can see what the model trains on."""
    pick = np.linspace(0, len(images) - 1, num=min(n, len(images))).astype(int)  # spread over classes
    x = torch.from_numpy(np.ascontiguousarray(images[pick])).float() / 255
    aug = BatchAugment(cfg)(x, torch.Generator().manual_seed(seed))
    with atomic_path(layout.augment_preview) as tmp:
        save_image(torch.cat([x[:8], aug[:24]]), tmp, nrow=8, padding=2, format="png")


def run(cfg: AugmentCfg, layout: Layout) -> dict[str, int]:
    if not layout.manifest.is_file():
        raise DataError(f"{layout.manifest}: validated manifest not found; run `dvc repro validate` first")
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    classes = sorted(manifest.label.unique(), key=lambda c: (len(c), c) if c.isdigit() else (0, c))
    index = {c: i for i, c in enumerate(classes)}
    layout.prepared.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = manifest[manifest.split == split]
        images = _decode_split(layout, list(part.path), cfg.image_size, split)
        labels = np.array([index[c] for c in part.label], dtype=np.int64)
        save_split(layout.prepared, split, images, labels)
        counts[split] = len(part)
        if split == "train":
            _preview(images, cfg, layout)
    save_meta(layout.prepared, classes, cfg.image_size, counts)
    print(f"prepared {counts} images at {cfg.image_size}px, {len(classes)} classes -> {layout.prepared}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("augment", argv, lambda p, layout: run(p.augment, layout))


if __name__ == "__main__":
    sys.exit(main())
