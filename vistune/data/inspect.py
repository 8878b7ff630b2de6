"""Look at a data source where it lies (nothing is copied) and describe it: `vistune init` reads this.

Every source `ingest` accepts is listed the way `ingest` would split it (same seeded carve of a
test split out of `val/`, same `data.max_per_class` cap), but files are read in place: folders
and CSV manifests file by file, `sklearn:digits` and `torchvision:<Dataset>` in memory; only an
archive is unpacked, into a temp folder deleted afterwards. Each image gets the facts `validate`
computes (`manifest.decode_facts`: format, size, mode, pHash), and duplicates are marked by the
same rule (`dataquality.mark_duplicates`), so what `init` reports is what `validate` will find.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from vistune.config import DataCfg, ValidateCfg
from vistune.data.sources.archive import dataset_root, extract_archive
from vistune.data.sources.common import SPLITS, IngestReport
from vistune.data.sources.csv_manifest import csv_groups
from vistune.data.sources.folder import folder_groups
from vistune.data.sources.registry import find_source, list_sources, source_hook
from vistune.data.sources.sklearn_digits import DIGITS, digits_items
from vistune.data.sources.torchvision_ds import torchvision_items
from vistune.data.dataquality import mark_duplicates
from vistune.data.manifest import decode_facts
from vistune.errors import DataError
from vistune.io import sha256_bytes

PHOTO_MIN_SIDE = 96  # median short side from which a set counts as photos (digits: 8, CIFAR: 32)


@dataclass(frozen=True)
class Item:
    """One image of the source: where it lives (as the user names it), its split and class, its bytes."""

    path: str
    split: str
    label: str
    read: Callable[[], bytes] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Finding:
    """A file worth naming in the report: `path` (split) and what is wrong with it."""

    path: str
    split: str
    detail: str


@dataclass(frozen=True)
class Spread:
    lo: float
    median: float
    hi: float


@dataclass(frozen=True)
class DataProfile:
    """What a source holds, as `validate` will see it after `ingest`."""

    source: str
    kind: str  # folder | folder-splits | archive | csv | sklearn | torchvision
    carved: tuple[str, ...]  # splits cut from another by data.seed (not given as folders)
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # split -> class -> images listed
    formats: dict[str, int]  # decodable images per PIL format
    modes: dict[str, int]
    short_side: Spread
    long_side: Spread
    aspect: Spread  # width / height
    undecodable: tuple[Finding, ...]
    exact_duplicates: tuple[Finding, ...]  # same split, same sha256
    near_duplicates: tuple[Finding, ...]  # same split, pHash within validate.near_duplicate_distance
    leaks: tuple[Finding, ...]  # a copy (exact or near) of an image in an earlier split
    refused: tuple[Finding, ...]  # not readable as listed (links out of the root, bad names, missing rows)
    seconds: float

    @property
    def n_images(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def n_split(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    @property
    def n_decodable(self) -> int:
        return sum(self.formats.values())

    @property
    def is_colour(self) -> bool:
        """Most images are colour (a grayscale set such as scanned digits is not)."""
        colour = sum(n for m, n in self.modes.items() if m in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "P", "PA"))
        return colour * 2 >= max(self.n_decodable, 1)

    @property
    def is_photo(self) -> bool:
        """Colour pictures big enough for ImageNet-style photo augmentation (flips, crops, jitter)."""
        return self.short_side.median >= PHOTO_MIN_SIDE and self.is_colour


# ---- listing, per kind of source -----------------------------------------------------------------


def _file_items(items: list[tuple[Path, str]], split: str, root: Path) -> list[Item]:
    return [Item(str(p.relative_to(root)), split, lab, p.read_bytes) for p, lab in items]


def _folder(cfg: DataCfg, root: Path, report: IngestReport) -> tuple[list[Item], str, tuple[str, ...]]:
    """The same groups `ingest` copies from a folder (`folder.folder_groups`), left where they are."""
    groups, kind, carved = folder_groups(cfg, root, report)
    return [it for s, g in groups.items() for it in _file_items(g, s, root)], kind, carved


@source_hook("csv", "inspect")
@contextlib.contextmanager
def _csv(cfg: DataCfg, report: IngestReport) -> Iterator[tuple[list[Item], str, tuple[str, ...]]]:
    """Rows `path,label[,split]` read in place, refused and split as `ingest` does (`csv_manifest.csv_groups`)."""
    manifest = Path(cfg.source).expanduser()
    groups, carved = csv_groups(cfg, manifest, report)
    yield [it for s, g in groups.items() for it in _file_items(g, s, manifest.parent)], "csv", carved


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@source_hook(DIGITS, "inspect")
@contextlib.contextmanager
def _digits(cfg: DataCfg, report: IngestReport) -> Iterator[tuple[list[Item], str, tuple[str, ...]]]:
    """scikit-learn's digits as `ingest` writes them (PNG bytes), in memory."""
    from PIL import Image

    items = [
        Item(fname, split, label, lambda image=image: _png(Image.fromarray(image, mode="L")))
        for image, split, label, fname in digits_items(cfg)
    ]
    yield items, "sklearn", SPLITS


@source_hook("torchvision", "inspect")
@contextlib.contextmanager
def _torchvision(cfg: DataCfg, report: IngestReport) -> Iterator[tuple[list[Item], str, tuple[str, ...]]]:
    """A torchvision dataset from `data.cache_dir` (downloaded only when `data.download` allows), in memory."""
    items = [
        Item(fname, split, folder, lambda ds=ds, i=i: _png(ds[i][0]))
        for ds, split, i, folder, fname in torchvision_items(cfg)
    ]
    yield items, "torchvision", ("val",)


@source_hook("archive", "inspect")
@contextlib.contextmanager
def _archive(cfg: DataCfg, report: IngestReport) -> Iterator[tuple[list[Item], str, tuple[str, ...]]]:
    """An archive's members, extracted as `ingest` extracts them, for as long as the caller reads them."""
    source = cfg.source
    with tempfile.TemporaryDirectory(prefix="vistune-inspect-") as tmp:
        try:
            extract_archive(Path(source).expanduser(), Path(tmp), report)
        except Exception as exc:  # zipfile/tarfile raise several types for a damaged archive
            raise DataError(
                f"{source}: not a readable archive ({exc.__class__.__name__}); re-create it or point at a directory"
            ) from None
        root = dataset_root(Path(tmp))
        items, _, carved = _folder(cfg, root, report)
        yield items, "archive", carved


@source_hook("folder", "inspect")
@contextlib.contextmanager
def _directory(cfg: DataCfg, report: IngestReport) -> Iterator[tuple[list[Item], str, tuple[str, ...]]]:
    source = cfg.source
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(
            f"{source}: no such file or directory; give an ImageFolder directory, an archive, "
            f"a .csv manifest or one of {list_sources()[:1] + ['torchvision:<Dataset>']}"
        )
    if not root.is_dir():
        raise DataError(f"{source}: not a directory, archive (.zip/.tar/.tar.gz) or .csv manifest")
    yield _folder(cfg, root, report)


def list_source(cfg: DataCfg, report: IngestReport):
    """(items, kind, carved splits) for any source `ingest` accepts, as a context manager (an archive's
    files exist only while it is open); bad sources raise DataError. The kind is the registry's."""
    kind = find_source(cfg.source)
    if "inspect" not in kind.hooks:
        raise DataError(f"{cfg.source}: `vistune init` cannot inspect a {kind.name} source yet")
    return kind.hooks["inspect"](cfg, report)


# ---- facts and the profile -----------------------------------------------------------------------


def _facts(item: Item, vcfg: ValidateCfg) -> dict:
    try:
        data = item.read()
    except OSError as exc:
        return {
            "path": item.path,
            "split": item.split,
            "label": item.label,
            "sha256": "",
            "decodable": False,
            "error": exc.strerror or type(exc).__name__,
            "width": 0,
            "height": 0,
            "phash": "",
            "format": "",
            "mode": "",
        }
    facts = decode_facts(data, vcfg.max_pixels, vcfg.decode_timeout_s or None)
    return {
        "path": item.path,
        "split": item.split,
        "label": item.label,
        "sha256": sha256_bytes(data),
        **{k: facts[k] for k in ("decodable", "error", "width", "height", "phash", "format", "mode")},
    }


def _spread(values: pd.Series) -> Spread:
    if not len(values):
        return Spread(0, 0, 0)
    return Spread(float(values.min()), float(values.median()), float(values.max()))


def _findings(df: pd.DataFrame, mask: pd.Series, detail: Callable[[pd.Series], str]) -> tuple[Finding, ...]:
    return tuple(Finding(r.path, r.split, detail(r)) for r in df[mask].itertuples())


def _check_usable(source: str, items: list[Item]) -> None:
    if not items:
        raise DataError(
            f"{source}: no images found; expected <root>/<class>/<image> files "
            "(or <root>/train/<class>/... and <root>/val/<class>/...)"
        )
    classes = sorted({it.label for it in items})
    if len(classes) < 2:
        hint = (
            (
                f" (a {classes[0]}/ folder without a sibling {'val' if classes[0] == 'train' else 'train'}/ is read "
                "as a class: add the other split folder)"
            )
            if classes[0] in SPLITS
            else ""
        )
        raise DataError(
            f"{source}: only one class ({classes[0]!r}) found; a classifier needs at least two "
            f"class folders, one per label{hint}"
        )


def profile(
    df: pd.DataFrame, source: str, kind: str, carved: tuple[str, ...], refused: tuple[Finding, ...], seconds: float
) -> DataProfile:
    """The report's numbers from a facts table already marked by `mark_duplicates`."""
    ok = df[df.decodable.astype(bool)]
    short = np.minimum(ok.width, ok.height)
    long = np.maximum(ok.width, ok.height)
    counts = {s: {str(k): int(v) for k, v in sorted(df[df.split == s].label.value_counts().items())} for s in SPLITS}
    return DataProfile(
        source=source,
        kind=kind,
        carved=carved,
        classes=tuple(sorted(df.label.unique())),
        counts=counts,
        formats=dict(Counter(ok.format).most_common()),
        modes=dict(Counter(ok["mode"]).most_common()),
        short_side=_spread(short),
        long_side=_spread(long),
        aspect=_spread((ok.width / ok.height).round(3)),
        undecodable=_findings(df, ~df.decodable.astype(bool), lambda r: r.error or "does not decode"),
        exact_duplicates=_findings(df, df.exact_dup_of.notna(), lambda r: f"same bytes as {r.exact_dup_of}"),
        near_duplicates=_findings(df, df.near_dup_of.notna(), lambda r: f"looks like {r.near_dup_of}"),
        leaks=_findings(df, df.leak_of.notna(), lambda r: f"copy of {r.leak_of}"),
        refused=refused,
        seconds=round(seconds, 2),
    )


def inspect_source(cfg: DataCfg, vcfg: ValidateCfg) -> DataProfile:
    """Read every image of `cfg.source` once (in threads) and describe the set; nothing is written."""
    t0 = time.perf_counter()
    report = IngestReport(source=cfg.source)
    with list_source(cfg, report) as (items, kind, carved):
        _check_usable(cfg.source, items)
        with ThreadPoolExecutor(max_workers=max(1, vcfg.workers)) as pool:
            rows = list(pool.map(lambda it: _facts(it, vcfg), items))
    df = pd.DataFrame(rows)
    if not df.decodable.astype(bool).any():
        raise DataError(
            f"{cfg.source}: none of the {len(df)} files decodes as an image; "
            f"first: {df.path.iloc[0]} ({df.error.iloc[0]})"
        )
    df = mark_duplicates(df, vcfg.near_duplicate_distance, vcfg.near_duplicate_min_side)
    refused = tuple(Finding(s["path"], "", s["reason"]) for s in report.skipped)
    return profile(df, cfg.source, kind, carved, refused, time.perf_counter() - t0)


# ---- the printed report ---------------------------------------------------------------------------


def _examples(found: tuple[Finding, ...], limit: int = 3) -> str:
    shown = "; ".join(f"{f.path} ({f.detail})" for f in found[:limit])
    return shown + (f"; ... {len(found) - limit} more" if len(found) > limit else "")


def describe(p: DataProfile) -> list[str]:
    """Human-readable lines: counts per class and split, size/mode/format spread, duplicates, leaks."""
    width = max(5, *(len(c) for c in p.classes)) + 2
    head = "".join(f"{s:>8}" for s in SPLITS)
    lines = [
        f"source {p.source} ({p.kind}): {p.n_images} images, {len(p.classes)} classes, read in {p.seconds:.1f}s"
        + (f"; {', '.join(p.carved)} split by data.seed" if p.carved else ""),
        f"  {'class':<{width}}{head}",
    ]
    for c in p.classes:
        lines.append(f"  {c:<{width}}" + "".join(f"{p.counts[s].get(c, 0):>8}" for s in SPLITS))
    lines.append(f"  {'total':<{width}}" + "".join(f"{p.n_split(s):>8}" for s in SPLITS))
    fmt = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    lines += [
        f"  size (px): short side {p.short_side.lo:g} / {p.short_side.median:g} / {p.short_side.hi:g} "
        f"(min / median / max), long side {p.long_side.lo:g} / {p.long_side.median:g} / {p.long_side.hi:g}, "
        f"aspect w/h {p.aspect.lo:g}..{p.aspect.hi:g}",
        f"  modes: {fmt(p.modes)};  formats: {fmt(p.formats)}",
        f"  looks like: {'photos' if p.is_photo else 'small or grayscale images (not photos)'}",
    ]
    for title, found in (
        ("undecodable", p.undecodable),
        ("exact duplicates (same split)", p.exact_duplicates),
        ("near duplicates (same split, pHash)", p.near_duplicates),
        ("cross-split leaks (validate quarantines them from val/test)", p.leaks),
        ("refused while listing", p.refused),
    ):
        lines.append(f"  {title}: {len(found)}" + (f": {_examples(found)}" if found else ""))
    return lines
