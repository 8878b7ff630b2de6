"""A `.csv` manifest of `path,label[,split]` rows; paths relative to the CSV's folder and confined to it."""

from __future__ import annotations

import csv
from pathlib import Path

from vistune.config import DataCfg
from vistune.data.files import is_inside, join_relative, printable_name, relative_name_problem
from vistune.data.sources.common import SPLITS, IngestReport, cap, copy_groups, split_indices
from vistune.errors import DataError


def is_csv_manifest(source: str) -> bool:
    return source.lower().endswith(".csv") and Path(source).expanduser().is_file()


def manifest_problem(rel: str, base: Path) -> str | None:
    """Why a manifest path may not be read (absolute, escaping, missing), or None."""
    if problem := relative_name_problem(rel, "manifest path", "the CSV's folder"):
        return problem
    target = join_relative(base, rel)
    if not is_inside(target, base):
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


def problem_code(problem: str) -> str:
    """The quarantine code of a `manifest_problem` (missing, outside_root, unsafe_name)."""
    if "not an existing" in problem:
        return "missing"
    return "outside_root" if "outside" in problem or "escapes" in problem or "absolute" in problem else "unsafe_name"


def csv_groups(cfg: DataCfg, manifest: Path, report: IngestReport,
               ) -> tuple[dict[str, list[tuple[Path, str]]], tuple[str, ...]]:
    """(split -> (file, class) pairs, carved splits): rows with a split go there, rows without one are split
    by seed like a plain folder; refused rows go to `report.skipped`. What `ingest` copies and `init` reads."""
    base = manifest.parent
    header, rows = read_csv_manifest(manifest)
    with_split = "split" in header
    items: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
    unsplit: list[tuple[Path, str]] = []
    for n, row in enumerate(rows, start=2):
        rel, label, split = row.get("path", ""), row.get("label", ""), row.get("split", "")
        where = f"{manifest.name}:{printable_name(rel)}"
        if not rel or not label or label in (".", "..") or "/" in label or "\\" in label:
            report.skipped.append({"path": where, "code": "refused",
                                   "reason": f"manifest row {n} needs a path and a plain label (no '/', not '..')"})
            continue
        if problem := manifest_problem(rel, base):
            report.skipped.append({"path": where, "code": problem_code(problem), "reason": problem})
            continue
        item = (join_relative(base, rel), label)
        if with_split and split:
            if split not in SPLITS:
                raise DataError(f"{manifest}: row {n} has split {split!r}; use one of {list(SPLITS)} or leave it empty")
            items[split].append(item)
        else:
            unsplit.append(item)
    unsplit = cap(unsplit, cfg)
    parts = split_indices([lab for _, lab in unsplit], cfg)
    for s in SPLITS:
        items[s] += [unsplit[i] for i in parts[s]]
    return {s: cap(v, cfg) for s, v in items.items()}, tuple(s for s in SPLITS if parts[s])


def ingest_csv(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    manifest = Path(cfg.source).expanduser()
    groups, _ = csv_groups(cfg, manifest, report)
    if not groups["train"]:
        raise DataError(f"{manifest}: no usable rows for the train split; list image files as path,label rows")
    copy_groups(groups, out, manifest.parent, report, class_level=False)
