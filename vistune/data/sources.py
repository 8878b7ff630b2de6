"""Materialize a data source as an ImageFolder tree `<out>/{train,val,test}/<class>/<file>`.

Sources are read-only: files are copied byte for byte (never re-encoded, moved or deleted), so
`validate` sees exactly what the user gave. Sources are registered by scheme (`sklearn:digits`);
`torchvision:<Dataset>` writes a torchvision dataset (downloaded into `data.cache_dir` when
missing) as PNGs; a `.csv` manifest lists `path,label[,split]` rows relative to its folder;
anything else is a directory path or an archive (`.zip`, `.tar`, `.tar.gz`, `.tgz`). Archives are
extracted member by member into a temp root: only regular files with relative, `..`-free, UTF-8
names are written; links, devices and escaping names are refused and reported, never followed.
Files refused here are listed in the report (`skipped`, with a `code`) and end up in quarantine.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import os
import random
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from vistune.config import DataCfg
from vistune.errors import DataError

SPLITS = ("train", "val", "test")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


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


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.fsdecode turned undecodable bytes into surrogates
        return False


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _member_problem(name: str) -> str | None:
    """Why an archive member name may not be written, or None when it is safe."""
    if not _utf8(name):
        return "archive member name is not valid UTF-8"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "archive member has an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "archive member escapes the archive root ('..' path traversal)"
    return None


def _write_member(dest: Path, name: str, stream) -> None:
    target = dest.joinpath(*PurePosixPath(name.replace("\\", "/")).parts)
    if not _is_inside(target, dest):  # belt and braces after _member_problem
        raise DataError(f"archive member {name!r} escapes the extraction root")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        shutil.copyfileobj(stream, f)


def extract_archive(archive: Path, dest: Path, report: IngestReport) -> None:
    """Write the archive's regular files under `dest`; refuse links, devices and escaping names."""
    def refuse(name: str, code: str, reason: str) -> None:
        report.skipped.append({"path": f"{archive.name}:{_printable(name)}", "code": code, "reason": reason})

    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    refuse(info.filename, "refused", "archive member is a symlink; archives may hold regular files only")
                elif problem := _member_problem(info.filename):
                    refuse(info.filename, "unsafe_name", problem)
                else:
                    with zf.open(info) as stream:
                        _write_member(dest, info.filename, stream)
        return
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            if m.isdir():
                continue
            if not m.isfile():
                kind = "link" if (m.issym() or m.islnk()) else "special file"
                refuse(m.name, "refused", f"archive member is a {kind}; archives may hold regular files only")
            elif problem := _member_problem(m.name):
                refuse(m.name, "unsafe_name", problem)
            else:
                with tf.extractfile(m) as stream:
                    _write_member(dest, m.name, stream)


def _dataset_root(extracted: Path) -> Path:
    """Step into a single top-level folder (`hymenoptera/train/...` archives)."""
    root = extracted
    while not (root / "train").is_dir():
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


def _ingest_archive(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    archive = Path(cfg.source).expanduser()
    with tempfile.TemporaryDirectory(prefix="vistune-archive-") as tmp:
        try:
            extract_archive(archive, Path(tmp), report)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"{archive}: not a readable archive ({exc}); re-create it or point data.source "
                            "at a directory") from None
        _ingest_folder(dataclasses.replace(cfg, source=str(_dataset_root(Path(tmp)))), out, report)


def is_archive(source: str) -> bool:
    return source.lower().endswith(ARCHIVE_SUFFIXES) and Path(source).expanduser().is_file()


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
                rel = _printable(str(f.relative_to(root)))
                if not _utf8(str(f.relative_to(root))):
                    report.skipped.append({"path": rel, "code": "unsafe_name",
                                           "reason": "file name is not valid UTF-8; rename it"})
                    continue
                if f.is_symlink() and not _is_inside(f, root):
                    report.skipped.append({"path": rel, "code": "outside_root",
                                           "reason": "symlink points outside the data root; copy the file in instead"})
                    continue
                if not f.is_file():
                    report.skipped.append({"path": rel, "code": "refused", "reason": "not a regular file"})
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


TORCHVISION_PREFIX = "torchvision:"


def torchvision_root(cfg: DataCfg) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "vistune" / "torchvision"


def _open_torchvision(cls: type, name: str, root: Path, train: bool, cfg: DataCfg):
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


def _dataset_labels(ds) -> list[int]:
    for attr in ("targets", "labels"):
        labels = getattr(ds, attr, None)
        if labels is not None:
            return [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
    return [int(ds[i][1]) for i in range(len(ds))]


def _class_folder(name: str) -> str:
    clean = name.replace("/", "_").replace("\\", "_").strip()
    return clean if clean and not clean.startswith(".") else f"_{clean}"


def _ingest_torchvision(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    """torchvision's train split -> train/val (seeded, stratified), its test split -> test; PNGs."""
    import torchvision.datasets as tvd

    name = cfg.source[len(TORCHVISION_PREFIX):]
    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and hasattr(cls, "__getitem__")):
        raise DataError(f"data.source {cfg.source!r}: torchvision has no dataset {name!r}; "
                        "use a class name from torchvision.datasets, e.g. torchvision:CIFAR10, torchvision:MNIST")
    root = torchvision_root(cfg)
    counts: dict[str, int] = {s: 0 for s in SPLITS}
    names: list[str] = []
    for train in (True, False):
        ds = _open_torchvision(cls, name, root, train, cfg)
        labels = _dataset_labels(ds)
        names = list(getattr(ds, "classes", None) or names)
        folder = {k: _class_folder(names[k]) if k < len(names) else str(k) for k in set(labels)}
        order = [i for i, _ in _cap([(i, lab) for i, lab in enumerate(labels)], cfg)]  # type: ignore[misc]
        if train:
            sub = dataclasses.replace(cfg, test_fraction=0.0)
            parts = _split_indices([str(labels[i]) for i in order], sub)
            groups = {"train": [order[p] for p in parts["train"]], "val": [order[p] for p in parts["val"]]}
        else:
            groups = {"test": order}
        tag = "train" if train else "test"
        for split, idx in groups.items():
            for i in idx:
                image = ds[i][0]
                dest = out / split / folder[labels[i]] / f"{tag}_{i:05d}.png"
                dest.parent.mkdir(parents=True, exist_ok=True)
                image.save(dest, format="PNG")
            counts[split] += len(idx)
    report.counts = counts
    report.classes = sorted({p.name for s in SPLITS if (out / s).is_dir() for p in (out / s).iterdir()})


def is_csv_manifest(source: str) -> bool:
    return source.lower().endswith(".csv") and Path(source).expanduser().is_file()


def _manifest_problem(rel: str, base: Path) -> str | None:
    """Why a manifest path may not be read (absolute, escaping, missing), or None."""
    if problem := _member_problem(rel):
        return problem.replace("archive member", "manifest path").replace("the archive root", "the CSV's folder")
    target = base.joinpath(*PurePosixPath(rel.replace("\\", "/")).parts)
    if not _is_inside(target, base):
        return "manifest path resolves outside the CSV's folder (symlink); copy the file in instead"
    if not target.is_file():
        return "manifest path is not an existing regular file"
    return None


def read_csv_manifest(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and stripped rows of a `path,label[,split]` manifest (shared by ingest and `vistune init`)."""
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in header or "label" not in header:
            raise DataError(f"{manifest}: a CSV manifest needs a header row with columns path,label "
                            f"(optional split); found {header}")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    return header, rows


def _ingest_csv(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    """Rows `path,label[,split]`; paths relative to the CSV's folder and confined to it."""
    manifest = Path(cfg.source).expanduser()
    base = manifest.parent
    header, rows = read_csv_manifest(manifest)
    with_split = "split" in header
    items: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
    unsplit: list[tuple[Path, str]] = []
    for n, row in enumerate(rows, start=2):
        rel, label, split = row.get("path", ""), row.get("label", ""), row.get("split", "")
        where = f"{manifest.name}:{_printable(rel)}"
        if not rel or not label or label in (".", "..") or "/" in label or "\\" in label:
            report.skipped.append({"path": where, "code": "refused",
                                   "reason": f"manifest row {n} needs a path and a plain label (no '/', not '..')"})
            continue
        if problem := _manifest_problem(rel, base):
            code = "missing" if "not an existing" in problem else (
                "outside_root" if "outside" in problem or "escapes" in problem or "absolute" in problem else "unsafe_name")
            report.skipped.append({"path": where, "code": code, "reason": problem})
            continue
        item = (base.joinpath(*PurePosixPath(rel.replace("\\", "/")).parts), label)
        if with_split and split:
            if split not in SPLITS:
                raise DataError(f"{manifest}: row {n} has split {split!r}; use one of {list(SPLITS)} or leave it empty")
            items[split].append(item)
        else:
            unsplit.append(item)
    if unsplit:  # rows without a split are split by seed like a plain folder
        unsplit = _cap(unsplit, cfg)
        parts = _split_indices([lab for _, lab in unsplit], cfg)
        for s in SPLITS:
            items[s] += [unsplit[i] for i in parts[s]]
    groups = {s: _cap(v, cfg) for s, v in items.items()}
    if not groups["train"]:
        raise DataError(f"{manifest}: no usable rows for the train split; list image files as path,label rows")
    for split, group in groups.items():
        for f, lab in group:
            dest = out / split / lab / f.relative_to(base)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        report.counts[split] = len(group)
    report.classes = sorted({lab for group in groups.values() for _, lab in group})


SOURCES: dict[str, Callable[[DataCfg, Path, IngestReport], None]] = {
    "sklearn:digits": _ingest_digits,
}


def list_sources() -> list[str]:
    return sorted(SOURCES) + ["torchvision:<Dataset> (e.g. torchvision:CIFAR10)", "<path to an ImageFolder directory>",
                              "<path to a .zip/.tar/.tar.gz of one>", "<path to a .csv manifest: path,label[,split]>"]


def ingest(cfg: DataCfg, out: Path) -> IngestReport:
    """Write the source as an ImageFolder under `out` (replaced whole; the source is only read)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = IngestReport(source=cfg.source)
    handler = SOURCES.get(cfg.source)
    if handler is None and cfg.source.startswith(TORCHVISION_PREFIX):
        handler = _ingest_torchvision
    if handler is None and is_csv_manifest(cfg.source):
        handler = _ingest_csv
    if handler is None and ":" in cfg.source and not Path(cfg.source).exists():
        raise DataError(
            f"data.source {cfg.source!r} is neither a known source nor an existing directory; "
            f"valid: {list_sources()}"
        )
    if handler is None and is_archive(cfg.source):
        handler = _ingest_archive
    (handler or _ingest_folder)(cfg, out, report)
    return report
