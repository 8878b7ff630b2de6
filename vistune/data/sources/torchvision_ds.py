"""`torchvision:<Dataset>`: a torchvision dataset (from `data.cache_dir`, downloaded only when allowed) as PNGs.

Its train split becomes train/val (seeded, stratified), its test split the test split.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Iterator

from vistune.config import DataCfg
from vistune.data.sources.common import SPLITS, IngestReport, capped_order, split_indices
from vistune.errors import DataError

TORCHVISION_PREFIX = "torchvision:"


def torchvision_root(cfg: DataCfg) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "vistune" / "torchvision"


def dataset_class(cfg: DataCfg) -> tuple[str, type]:
    """(name, class) of `torchvision:<name>`; an unknown name is one line with an example."""
    import torchvision.datasets as tvd

    name = cfg.source[len(TORCHVISION_PREFIX):]
    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and hasattr(cls, "__getitem__")):
        raise DataError(f"data.source {cfg.source!r}: torchvision has no dataset {name!r}; "
                        "use a class name from torchvision.datasets, e.g. torchvision:CIFAR10, torchvision:MNIST")
    return name, cls


def open_torchvision(cls: type, name: str, root: Path, train: bool, cfg: DataCfg):
    """The dataset's train or test split: the local copy if present, else a real download (when allowed)."""
    params = inspect.signature(cls.__init__).parameters
    if "train" in params:
        kw: dict = {"train": train}
    elif "split" in params:
        kw = {"split": "train" if train else "test"}
    else:
        raise DataError(f"data.source torchvision:{name}: the dataset has no train/test split argument; "
                        "export it as an ImageFolder and point data.source at that folder")
    try:
        return cls(str(root), download=False, **kw)
    except (RuntimeError, OSError) as exc:
        missing = exc
    if not cfg.download:
        raise DataError(f"data.source torchvision:{name}: not found in {root} and data.download is false "
                        f"({_one_line(missing)}); set data.download: true while online, or copy the "
                        f"dataset's files into {root} (data.cache_dir)") from None
    try:
        return cls(str(root), download=True, **kw)
    except Exception as exc:  # noqa: BLE001 - any network/integrity failure gets the same one-line fix
        raise DataError(f"data.source torchvision:{name}: not in {root} and the download failed "
                        f"({type(exc).__name__}: {_one_line(exc)}); run once online, or copy the dataset's "
                        f"files into {root} (data.cache_dir)") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def dataset_labels(ds) -> list[int]:
    for attr in ("targets", "labels"):
        labels = getattr(ds, attr, None)
        if labels is not None:
            return [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
    return [int(ds[i][1]) for i in range(len(ds))]


def class_folder(name: str) -> str:
    clean = name.replace("/", "_").replace("\\", "_").strip()
    return clean if clean and not clean.startswith(".") else f"_{clean}"


def torchvision_items(cfg: DataCfg) -> Iterator[tuple[object, str, int, str, str]]:
    """(dataset, split, index, class folder, file name) for every image `ingest` writes, in its order."""
    name, cls = dataset_class(cfg)
    root = torchvision_root(cfg)
    names: list[str] = []
    for train in (True, False):
        ds = open_torchvision(cls, name, root, train, cfg)
        labels = dataset_labels(ds)
        names = list(getattr(ds, "classes", None) or names)
        folder = {k: class_folder(names[k]) if k < len(names) else str(k) for k in set(labels)}
        order = capped_order(labels, cfg)
        if train:
            parts = split_indices([str(labels[i]) for i in order], dataclasses.replace(cfg, test_fraction=0.0))
            groups = {"train": [order[p] for p in parts["train"]], "val": [order[p] for p in parts["val"]]}
        else:
            groups = {"test": order}
        tag = "train" if train else "test"
        for split, idx in groups.items():
            for i in idx:
                yield ds, split, i, folder[labels[i]], f"{tag}_{i:05d}.png"


def ingest_torchvision(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    counts: dict[str, int] = {s: 0 for s in SPLITS}
    for ds, split, i, folder, fname in torchvision_items(cfg):
        dest = out / split / folder / fname
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds[i][0].save(dest, format="PNG")
        counts[split] += 1
    report.counts = counts
    report.classes = sorted({p.name for s in SPLITS if (out / s).is_dir() for p in (out / s).iterdir()})
