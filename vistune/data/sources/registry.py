"""Source kinds registered by name, as backbones are: `register_source`, `create_source`, `list_sources`.

A kind claims a `data.source` value by its scheme (`sklearn:digits`, `torchvision:<Dataset>`) or by
what the path is (`.csv` file, archive, directory); kinds are tried in registration order. This is the
one dispatcher: `ingest` writes a kind with its `ingest` function, `vistune init`'s inspection
(`vistune.data.inspect`) and batch scoring (`vistune.data.score_source`) attach their own reader of
each kind with `source_hook(name, "inspect" | "score")` and find it through `find_source`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

from vistune.config import DataCfg
from vistune.data.sources.archive import ingest_archive, is_archive
from vistune.data.sources.common import IngestReport
from vistune.data.sources.csv_manifest import ingest_csv, is_csv_manifest
from vistune.data.sources.folder import ingest_folder
from vistune.data.sources.sklearn_digits import DIGITS, ingest_digits
from vistune.data.sources.torchvision_ds import TORCHVISION_PREFIX, ingest_torchvision
from vistune.errors import DataError

Ingest = Callable[[DataCfg, Path, IngestReport], None]


@dataclass(frozen=True)
class SourceKind:
    name: str  # the kind: sklearn:digits | torchvision | csv | archive | folder
    claims: Callable[[str], bool]  # does this kind read that data.source value?
    ingest: Ingest  # (cfg, out, report): write the source as an ImageFolder under out
    usage: str  # how a user spells it, for error messages and `list_sources()`
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)  # "inspect" / "score": other readers


Hook = Literal["inspect", "score"]


_KINDS: dict[str, SourceKind] = {}


def register_source(name: str, claims: Callable[[str], bool], usage: str) -> Callable[[Ingest], Ingest]:
    """Decorator registering an ingest function as the source kind `name`."""
    def wrap(fn: Ingest) -> Ingest:
        _KINDS[name] = SourceKind(name, claims, fn, usage)
        return fn
    return wrap


def source_hook(name: str, hook: Hook) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator attaching another reader of the registered kind `name` (init's inspection, scoring)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        kind = _KINDS[name]
        _KINDS[name] = replace(kind, hooks={**kind.hooks, hook: fn})
        return fn
    return wrap


def list_sources() -> list[str]:
    """How each registered kind is spelled in `data.source`."""
    return [k.usage for k in _KINDS.values()]


def find_source(source: str) -> SourceKind:
    """The kind that claims `source`, else the folder kind (whose readers say what is wrong with the path)."""
    for kind in _KINDS.values():
        if kind.name != "folder" and kind.claims(source):
            return kind
    return _KINDS["folder"]


def create_source(source: str) -> SourceKind:
    """The kind that reads `source`; a scheme nobody registered (and no such path) fails with the valid ones."""
    kind = find_source(source)
    if kind.name != "folder":
        return kind
    if ":" in source and not Path(source).exists():
        raise DataError(f"data.source {source!r} is neither a known source nor an existing directory; "
                        f"valid: {list_sources()}")
    return _KINDS["folder"]


def ingest(cfg: DataCfg, out: Path) -> IngestReport:
    """Write the source as an ImageFolder under `out` (replaced whole; the source is only read)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = IngestReport(source=cfg.source)
    create_source(cfg.source).ingest(cfg, out, report)
    return report


register_source(DIGITS, lambda s: s == DIGITS, DIGITS)(ingest_digits)
register_source("torchvision", lambda s: s.startswith(TORCHVISION_PREFIX),
                "torchvision:<Dataset> (e.g. torchvision:CIFAR10)")(ingest_torchvision)
register_source("folder", lambda s: True, "<path to an ImageFolder directory>")(ingest_folder)
register_source("archive", is_archive, "<path to a .zip/.tar/.tar.gz of one>")(ingest_archive)
register_source("csv", is_csv_manifest, "<path to a .csv manifest: path,label[,split]>")(ingest_csv)
