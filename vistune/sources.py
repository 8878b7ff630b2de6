"""Materialize a data source as an ImageFolder tree `<out>/{train,val,test}/<class>/<file>`.

Sources are read-only: files are copied byte for byte (never re-encoded, moved or deleted), so
`validate` sees exactly what the user gave. Sources are registered by scheme (`sklearn:digits`);
anything else is a directory path.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vistune.config import DataCfg
from vistune.errors import DataError

SPLITS = ("train", "val", "test")


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


def _split_indices(labels: list[str], cfg: DataCfg) -> dict[str, list[int]]:
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


def _cap(items: list[tuple[Path, str]], cfg: DataCfg) -> list[tuple[Path, str]]:
    if cfg.max_per_class <= 0:
        return items
    seen: dict[str, int] = defaultdict(int)
    kept = []
    for path, lab in items:
        if seen[lab] < cfg.max_per_class:
            seen[lab] += 1
            kept.append((path, lab))
    return kept


def _ingest_digits(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    """scikit-learn's load_digits: real 8x8 scans of handwritten digits, written as PNG."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    labels = [str(int(t)) for t in digits.target]
    order = list(range(len(labels)))
    if cfg.max_per_class > 0:
        seen: dict[str, int] = defaultdict(int)
        capped = []
        for i in order:
            if seen[labels[i]] < cfg.max_per_class:
                seen[labels[i]] += 1
                capped.append(i)
        order = capped
    split = _split_indices([labels[i] for i in order], cfg)
    for name, positions in split.items():
        for pos in positions:
            i = order[pos]
            dest = out / name / labels[i] / f"digit_{i:04d}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").save(dest)
        report.counts[name] = len(positions)
    report.classes = sorted(set(labels), key=int)


def _is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _list_class_files(split_dir: Path, root: Path, report: IngestReport) -> list[tuple[Path, str]]:
    """(file, class) pairs under `split_dir/<class>/...`; refuses files that escape `root`."""
    items: list[tuple[Path, str]] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                f = Path(dirpath) / fname
                rel = str(f.relative_to(root))
                if f.is_symlink() and not _is_inside(f, root):
                    report.skipped.append({"path": rel, "reason": "symlink points outside the data root"})
                    continue
                if not f.is_file():
                    report.skipped.append({"path": rel, "reason": "not a regular file"})
                    continue
                items.append((f, class_dir.name))
    return items


def _copy(items: list[tuple[Path, str]], split: str, out: Path, src_root: Path) -> None:
    for f, lab in items:
        rel_in_class = f.relative_to(src_root).parts
        # keep the file name (and any sub-folders below the class) so quarantine reports match the source
        dest = out / split / lab / Path(*rel_in_class[rel_in_class.index(lab) + 1 :])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)


def _ingest_folder(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    root = Path(cfg.source).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: data.source is not a directory; point data.source in params.yaml at an "
            "ImageFolder (train/ and val/ sub-folders, or one folder of class sub-folders) or use sklearn:digits"
        )
    has_splits = (root / "train").is_dir() and (root / "val").is_dir()
    if has_splits:
        train = _cap(_list_class_files(root / "train", root, report), cfg)
        val = _cap(_list_class_files(root / "val", root, report), cfg)
        if (root / "test").is_dir():
            test = _cap(_list_class_files(root / "test", root, report), cfg)
        else:
            # carve a test split out of val so early stopping and the final score never share images
            frac = cfg.test_fraction / max(cfg.val_fraction + cfg.test_fraction, 1e-9)
            sub = DataCfg(val_fraction=1.0 - frac, test_fraction=frac, seed=cfg.seed)
            parts = _split_indices([lab for _, lab in val], sub)
            test = [val[i] for i in parts["test"]]
            val = [val[i] for i in parts["val"] + parts["train"]]
        groups = {"train": train, "val": val, "test": test}
    else:
        items = _cap(_list_class_files(root, root, report), cfg)
        parts = _split_indices([lab for _, lab in items], cfg)
        groups = {s: [items[i] for i in parts[s]] for s in SPLITS}
    if not groups["train"]:
        raise DataError(f"{root}: no images found under class sub-folders; expected <root>/<class>/<image> files")
    for split, items in groups.items():
        _copy(items, split, out, root)
        report.counts[split] = len(items)
    report.classes = sorted({lab for items in groups.values() for _, lab in items})


SOURCES: dict[str, Callable[[DataCfg, Path, IngestReport], None]] = {
    "sklearn:digits": _ingest_digits,
}


def list_sources() -> list[str]:
    return sorted(SOURCES) + ["<path to an ImageFolder directory>"]


def ingest(cfg: DataCfg, out: Path) -> IngestReport:
    """Write the source as an ImageFolder under `out` (replaced whole; the source is only read)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = IngestReport(source=cfg.source)
    handler = SOURCES.get(cfg.source)
    if handler is None and ":" in cfg.source and not Path(cfg.source).exists():
        raise DataError(
            f"data.source {cfg.source!r} is neither a known source nor an existing directory; "
            f"valid: {list_sources()}"
        )
    (handler or _ingest_folder)(cfg, out, report)
    return report
