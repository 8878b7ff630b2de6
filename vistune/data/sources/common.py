"""What every source kind shares: the split names, the ingest report, the seeded split and the per-class cap."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vistune.config import DataCfg

SPLITS = ("train", "val", "test")
T = TypeVar("T")


@dataclass
class IngestReport:
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # files refused before copy

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "counts": self.counts,
            "classes": self.classes,
            "n_skipped": len(self.skipped),
            "skipped": self.skipped,
        }


def split_indices(labels: list[str], cfg: DataCfg) -> dict[str, list[int]]:
    """Stratified, seeded split of item indices into train/val/test."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_class[lab].append(i)
    rng = random.Random(cfg.seed)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for lab in sorted(by_class):
        idx = by_class[lab]
        rng.shuffle(idx)
        n = len(idx)
        n_test = int(round(n * cfg.test_fraction))
        n_val = int(round(n * cfg.val_fraction))
        out["test"] += idx[:n_test]
        out["val"] += idx[n_test : n_test + n_val]
        out["train"] += idx[n_test + n_val :]
    return out


def cap(items: list[tuple[T, str]], cfg: DataCfg) -> list[tuple[T, str]]:
    """The first `data.max_per_class` (item, class) pairs of each class (all when it is 0 or less)."""
    if cfg.max_per_class <= 0:
        return items
    seen: dict[str, int] = defaultdict(int)
    kept = []
    for item, lab in items:
        if seen[lab] < cfg.max_per_class:
            seen[lab] += 1
            kept.append((item, lab))
    return kept


def capped_order(labels: list, cfg: DataCfg) -> list[int]:
    """Indices of `labels` kept by `cap`, in order (in-memory datasets)."""
    return [i for i, _ in cap([(i, lab) for i, lab in enumerate(labels)], cfg)]


def copy_groups(groups: dict[str, list[tuple[Path, str]]], out: Path, base: Path, report: IngestReport,
                class_level: bool) -> None:
    """Copy each split's files byte for byte to `out/<split>/<class>/...`, counts and classes into `report`.

    The file name (and sub-folders below the class folder, or below `base` for a manifest) is kept, so
    quarantine reports match the source."""
    for split, items in groups.items():
        for f, lab in items:
            rel = f.relative_to(base).parts
            dest = out / split / lab / Path(*(rel[rel.index(lab) + 1:] if class_level else rel))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        report.counts[split] = len(items)
    report.classes = sorted({lab for items in groups.values() for _, lab in items})
