"""Materialize a data source as an ImageFolder tree `<out>/{train,val,test}/<class>/<file>`.

Sources are read-only: files are copied byte for byte (never re-encoded, moved or deleted), so
`validate` sees exactly what the user gave. One module per kind, registered by name in `registry`:
`sklearn:digits` (sklearn_digits), `torchvision:<Dataset>` (torchvision_ds: downloaded into
`data.cache_dir` when missing, written as PNGs), a `.csv` manifest of `path,label[,split]` rows
relative to its folder (csv_manifest), an archive `.zip`/`.tar`/`.tar.gz`/`.tgz` (archive), anything
else a directory path (folder). Files refused here are listed in the report (`skipped`, with a `code`)
and end up in quarantine.csv; the path-safety rules live in `vistune.data.files`.
"""

from vistune.data.sources.archive import ARCHIVE_SUFFIXES, extract_archive, is_archive
from vistune.data.sources.common import SPLITS, IngestReport
from vistune.data.sources.csv_manifest import is_csv_manifest, read_csv_manifest
from vistune.data.sources.registry import (SourceKind, create_source, find_source, ingest, list_sources,
                                           register_source, source_hook)
from vistune.data.sources.sklearn_digits import DIGITS
from vistune.data.sources.torchvision_ds import TORCHVISION_PREFIX, torchvision_root

__all__ = [
    "ARCHIVE_SUFFIXES", "DIGITS", "SPLITS", "TORCHVISION_PREFIX", "IngestReport", "SourceKind", "create_source",
    "extract_archive", "find_source", "ingest", "is_archive", "is_csv_manifest", "list_sources", "read_csv_manifest",
    "register_source", "source_hook", "torchvision_root",
]
