"""A reviewer's label decisions (`labels.csv`), applied by `ingest` to its own output, never to the source.

One row per image: `path,label`, `path` as in manifest.csv (`<split>/<class>/<file>` under data/raw) and
`label` either a class name (the image moves to that class) or `exclude` (it is left out of data/raw).
`vistune labels` writes the file from label_issues.csv; DVC tracks it as a dependency of `ingest`, so an
edit reruns the pipeline from the start and `dvc metrics diff` shows the change. A header-only file
changes nothing.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from vistune.errors import DataError

EXCLUDE = "exclude"
HEADER = ["path", "label"]


@dataclass
class OverrideReport:
    """What `apply` did, for the ingest report (the file's sha256 identifies the decisions)."""

    sha256: str = ""
    relabelled: int = 0
    excluded: int = 0
    unmatched: list[str] = field(default_factory=list)  # paths not in data/raw (source changed since review)

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "relabelled": self.relabelled, "excluded": self.excluded,
                "unmatched": self.unmatched}


def read(path: Path) -> dict[str, str]:
    """path -> label or `exclude`; a malformed file fails with its row and the fix."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != HEADER:
        raise DataError(f"{path}: the first line must be the header `path,label`; "
                        "rows are <split>/<class>/<file>,<new class or exclude>")
    out: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path}:{n}: expected `path,label` (label a class name or `exclude`), got {row}")
        out[row[0].strip()] = row[1].strip()
    return out


def write(path: Path, overrides: dict[str, str]) -> None:
    """The file sorted by path (a stable diff), written atomically."""
    import io

    from vistune.io import write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(sorted(overrides.items()))
    write_text(path, buf.getvalue())


def apply(path: Path, raw: Path, classes: list[str]) -> OverrideReport:
    """Move or drop the listed files inside `raw` (ingest's fresh output). A target class that the data
    does not have fails: a typo must not create a new class."""
    from vistune.io import sha256_bytes

    report = OverrideReport(sha256=sha256_bytes(path.read_bytes()))
    for rel, label in sorted(read(path).items()):
        parts = Path(rel).parts
        src = raw / rel
        if len(parts) < 3 or ".." in parts or not src.is_file():
            report.unmatched.append(rel)
            continue
        if label == EXCLUDE:
            src.unlink()
            report.excluded += 1
        elif label not in classes:
            raise DataError(f"{path}: {rel} -> {label!r} is not a class of this data; valid: {classes} or {EXCLUDE}")
        elif label != parts[1]:
            _move(src, raw / parts[0] / label, Path(*parts[2:]), parts[1], path)
            report.relabelled += 1
    return report


def _move(src: Path, folder: Path, rest: Path, old_class: str, overrides: Path) -> None:
    """Into the new class's folder under the same name, or `<old class>_<name>` when that name is taken
    (ImageFolder names such as 0001.jpg repeat across classes): never over another image."""
    for dest in (folder / rest, folder / rest.parent / f"{old_class}_{rest.name}"):
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            return
    raise DataError(f"{overrides}: cannot move {src.name} into {folder.name}/: both {rest} and "
                    f"{old_class}_{rest.name} are taken; exclude one of them instead")
