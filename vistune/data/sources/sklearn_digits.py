"""`sklearn:digits`: scikit-learn's load_digits, real 8x8 scans of handwritten digits, written as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from vistune.config import DataCfg
from vistune.data.sources.common import SPLITS, IngestReport, capped_order, split_indices

DIGITS = "sklearn:digits"


def digits_items(cfg: DataCfg) -> Iterator[tuple[np.ndarray, str, str, str]]:
    """(8x8 uint8 image, split, class, file name) for every digit `ingest` writes, split by split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    labels = [str(int(t)) for t in digits.target]
    order = capped_order(labels, cfg)
    parts = split_indices([labels[i] for i in order], cfg)
    for split in SPLITS:
        for pos in parts[split]:
            i = order[pos]
            yield images[i], split, labels[i], f"digit_{i:04d}.png"


def ingest_digits(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    from PIL import Image

    counts = dict.fromkeys(SPLITS, 0)
    labels: set[str] = set()
    for image, split, label, fname in digits_items(cfg):
        dest = out / split / label / fname
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(dest)
        counts[split] += 1
        labels.add(label)
    report.counts = counts
    report.classes = sorted(labels, key=int)
