"""Stage `augment`: decode once into resized uint8 arrays (the augmentation preview is `train`'s).

Epochs then read `data/prepared/*.npy` (memory-mappable) and augment per batch on the training
device; no JPEG decoding or PIL in the training loop. Images are decoded straight into the
memory-mapped `.npy` in chunks of `CHUNK` (at most that many decoded images in flight), so the
stage's resident memory does not grow with the data set (benchmarks/scale.py measures it).

Why the stage is still called `augment` though it only decodes and resizes (issue 29 allowed either):
the name is one key in many places at once, the DVC stage and its `dvc.lock` entry, the `augment:`
params section (whose other keys are the per-batch augmentation policy `train` reads, so old params
files and DVC experiments keep their meaning), the Prefect task, the MLflow `vistune.dvc.augment:*`
lineage tags of every registered version, and `flows.workspace`'s cache keys. Renaming it would
re-run the pipeline for every user and split lineage across two names for one thing; the
documentation says what it does instead (docs/pipeline.md).
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
from vistune.data.prepared import class_order, save_labels, save_meta, split_writer
from vistune.errors import DataError
from vistune.data.imageio import decode_file
from vistune.layout import Layout
from vistune.data.preprocess import resize_rgb
from vistune.data.sources.common import SPLITS


CHUNK = 256  # images decoded per round; bounds the decoded images held in RAM at once


def _decode_split(layout: Layout, paths: list[str], size: int, split: str) -> None:
    """Decode and resize `paths` into `<split>_images.npy`, written in place (memory map)."""

    def load(rel: str) -> np.ndarray:
        return resize_rgb(decode_file(layout.raw / rel), size)

    with (
        split_writer(layout.prepared, split, len(paths), size) as out,
        ThreadPoolExecutor(max_workers=8) as pool,
        tqdm(total=len(paths), desc=f"decode {split}", unit="img", disable=None) as bar,
    ):  # None: off in logs
        for start in range(0, len(paths), CHUNK):
            for i, arr in enumerate(pool.map(load, paths[start : start + CHUNK]), start):
                out[i] = arr
            bar.update(min(CHUNK, len(paths) - start))


def run(cfg: AugmentCfg, layout: Layout) -> dict[str, int]:
    if not layout.manifest.is_file():
        raise DataError(f"{layout.manifest}: validated manifest not found; run `dvc repro validate` first")
    manifest = pd.read_csv(layout.manifest, dtype={"label": str}, usecols=["path", "split", "label"])
    classes = class_order(manifest.label)
    index = {c: i for i, c in enumerate(classes)}
    layout.prepared.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = manifest[manifest.split == split]
        _decode_split(layout, part.path.tolist(), cfg.image_size, split)
        save_labels(layout.prepared, split, np.array([index[c] for c in part.label], dtype=np.int64))
        counts[split] = len(part)
    save_meta(layout.prepared, classes, cfg.image_size, counts)
    print(f"prepared {counts} images at {cfg.image_size}px, {len(classes)} classes -> {layout.prepared}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("augment", argv, lambda p, layout: run(p.augment, layout))


if __name__ == "__main__":
    sys.exit(main())
