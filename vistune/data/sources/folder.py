"""An ImageFolder directory: `train/` + `val/` (+ `test/`) of class folders, or one folder of class folders."""

from __future__ import annotations

from pathlib import Path

from vistune.config import DataCfg
from vistune.data.files import is_inside, is_utf8, printable_name, walk_class_files
from vistune.data.sources.common import SPLITS, IngestReport, cap, copy_groups, split_indices
from vistune.errors import DataError

Groups = dict[str, list[tuple[Path, str]]]


def list_class_files(split_dir: Path, root: Path, report: IngestReport) -> list[tuple[Path, str]]:
    """(file, class) pairs under `split_dir/<class>/...`; refuses files that escape `root`."""
    items: list[tuple[Path, str]] = []
    for f, label in walk_class_files(split_dir, skip_hidden=True):
        rel = printable_name(str(f.relative_to(root)))
        if not is_utf8(str(f.relative_to(root))):
            report.skipped.append({"path": rel, "code": "unsafe_name",
                                   "reason": "file name is not valid UTF-8; rename it"})
        elif f.is_symlink() and not is_inside(f, root):
            report.skipped.append({"path": rel, "code": "outside_root",
                                   "reason": "symlink points outside the data root; copy the file in instead"})
        elif not f.is_file():
            report.skipped.append({"path": rel, "code": "refused", "reason": "not a regular file"})
        else:
            items.append((f, label))
    return items


def folder_groups(cfg: DataCfg, root: Path, report: IngestReport) -> tuple[Groups, str, tuple[str, ...]]:
    """(split -> (file, class) pairs, kind, carved splits): what `ingest` copies and `vistune init` reads in place."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = cap(list_class_files(root / "train", root, report), cfg)
        val = cap(list_class_files(root / "val", root, report), cfg)
        if (root / "test").is_dir():
            return {"train": train, "val": val, "test": cap(list_class_files(root / "test", root, report), cfg)}, \
                "folder-splits", ()
        # carve a test split out of val so early stopping and the final score never share images
        frac = cfg.test_fraction / max(cfg.val_fraction + cfg.test_fraction, 1e-9)
        parts = split_indices([lab for _, lab in val], DataCfg(val_fraction=1.0 - frac, test_fraction=frac,
                                                               seed=cfg.seed))
        test = [val[i] for i in parts["test"]]
        val = [val[i] for i in parts["val"] + parts["train"]]
        return {"train": train, "val": val, "test": test}, "folder-splits", ("test",)
    items = cap(list_class_files(root, root, report), cfg)
    parts = split_indices([lab for _, lab in items], cfg)
    return {s: [items[i] for i in parts[s]] for s in SPLITS}, "folder", SPLITS


def ingest_folder(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    root = Path(cfg.source).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: data.source is not a directory; point data.source in params.yaml at an "
            "ImageFolder (train/ and val/ sub-folders, or one folder of class sub-folders) or use sklearn:digits"
        )
    groups, _, _ = folder_groups(cfg, root, report)
    if not groups["train"]:
        raise DataError(f"{root}: no images found under class sub-folders; expected <root>/<class>/<image> files")
    copy_groups(groups, out, root, report, class_level=True)
