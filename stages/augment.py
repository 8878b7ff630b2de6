"""Stage `augment`: decode once into resized uint8 arrays (the augmentation preview is `train`'s).

Epochs then read `data/prepared/*.npy` (memory-mappable) and augment per batch on the training
device; no JPEG decoding or PIL in the training loop.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from stages.cli import stage_main
from vistune.config import AugmentCfg
from vistune.data.prepared import class_order, save_meta, save_split
from vistune.errors import DataError
from vistune.data.imageio import decode_file
from vistune.layout import Layout
from vistune.data.preprocess import resize_rgb
from vistune.data.sources.common import SPLITS


def _decode_split(layout: Layout, paths: list[str], size: int, split: str) -> np.ndarray:
    def load(rel: str) -> np.ndarray:
        return resize_rgb(decode_file(layout.raw / rel), size)

    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for i, arr in enumerate(tqdm(pool.map(load, paths), total=len(paths), desc=f"decode {split}", unit="img")):
            out[i] = arr
    return out


def run(cfg: AugmentCfg, layout: Layout) -> dict[str, int]:
    if not layout.manifest.is_file():
        raise DataError(f"{layout.manifest}: validated manifest not found; run `dvc repro validate` first")
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    classes = class_order(manifest.label)
    index = {c: i for i, c in enumerate(classes)}
    layout.prepared.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = manifest[manifest.split == split]
        images = _decode_split(layout, list(part.path), cfg.image_size, split)
        labels = np.array([index[c] for c in part.label], dtype=np.int64)
        save_split(layout.prepared, split, images, labels)
        counts[split] = len(part)
    save_meta(layout.prepared, classes, cfg.image_size, counts)
    print(f"prepared {counts} images at {cfg.image_size}px, {len(classes)} classes -> {layout.prepared}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("augment", argv, lambda p, layout: run(p.augment, layout))


if __name__ == "__main__":
    sys.exit(main())
