"""Images to score, from any source `ingest` reads: a folder, a `.zip`/`.tar(.gz)` archive or a CSV
manifest. Unlike training data the images need no labels and no splits: every file under a folder
is scored. A label is kept when the source gives one (a CSV `label` column, or a folder
`<class>/<image>` whose class the model knows), so accuracy and the class-distribution drift test
can use it.

Refusals follow ingest's rules (archive members that are links or escape the root, manifest paths
outside the CSV's folder or missing) and come back as rows for quarantine.csv, never exceptions.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from vistune.data import sources
from vistune.data.files import join_relative
from vistune.data.sources.csv_manifest import manifest_problem, problem_code
from vistune.data.sources.registry import find_source, source_hook
from vistune.errors import DataError


@dataclass
class ScoreFiles:
    root: Path  # every file lies under it
    files: list[tuple[Path, str, str]]  # (file, split "", label or "") in the shape manifest.build_manifest takes
    refused: list[dict[str, str]] = field(default_factory=list)  # path, code, reason


def _walk(root: Path, classes: set[str]) -> list[tuple[Path, str, str]]:
    """Every file under root, sorted; the first folder is the label when it is one of `classes`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            top = path.relative_to(root).parts[0]
            found.append((path, "", top if top in classes and path.parent != root else ""))
    return found


@source_hook("csv", "score")
def _from_csv(manifest: Path, workdir: Path, classes: set[str]) -> ScoreFiles:
    base = manifest.parent
    header, rows = sources.read_csv_manifest(manifest) if _has_label(manifest) else _paths_only(manifest)
    files, refused = [], []
    for n, row in enumerate(rows, start=2):
        rel = row.get("path", "")
        if problem := (manifest_problem(rel, base) if rel else f"manifest row {n} has no path"):
            refused.append({"path": f"{manifest.name}:{rel}", "code": problem_code(problem), "reason": problem})
            continue
        files.append((join_relative(base, rel), "", row.get("label", "")))
    return ScoreFiles(base, files, refused)


def _has_label(manifest: Path) -> bool:
    with open(manifest, encoding="utf-8-sig") as f:
        return "label" in [h.strip() for h in f.readline().split(",")]


def _paths_only(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV with a `path` column and no labels (scoring needs none)."""
    import csv

    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in header:
            raise DataError(f"{manifest}: a CSV to score needs a header row with a `path` column; found {header}")
        return header, [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


@source_hook("archive", "score")
def _from_archive(src: Path, workdir: Path, classes: set[str]) -> ScoreFiles:
    """Every member, extracted (member by member, safely) into `workdir`; refused members as rows."""
    report = sources.IngestReport(source=str(src))
    try:
        sources.extract_archive(src, workdir, report)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{src}: not a readable archive ({exc}); re-create it or score a folder") from None
    return ScoreFiles(workdir, _walk(workdir, classes), report.skipped)


@source_hook("folder", "score")
def _from_folder(src: Path, workdir: Path, classes: set[str]) -> ScoreFiles:
    if not src.is_dir():
        raise DataError(f"{src}: not a folder, archive (.zip/.tar/.tar.gz) or .csv manifest of images to score")
    files = _walk(src, classes)
    if not files:
        raise DataError(f"{src}: no files to score")
    return ScoreFiles(src, files)


def collect(source: str | Path, workdir: Path, classes: list[str] | tuple[str, ...] = ()) -> ScoreFiles:
    """The files of `source` to score, read by the registry's kind for it (folder, archive, CSV manifest)."""
    src = Path(source).expanduser()
    kind = find_source(str(src))
    if "score" not in kind.hooks:  # sklearn:digits, torchvision:<Dataset>: training sets, nothing to score
        raise DataError(f"{src}: not a folder, archive (.zip/.tar/.tar.gz) or .csv manifest of images to score")
    return kind.hooks["score"](src, workdir, set(classes))
