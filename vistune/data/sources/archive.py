"""A `.zip`/`.tar`/`.tar.gz`/`.tgz` of an ImageFolder, extracted member by member into a temp root.

Only regular files with relative, `..`-free, UTF-8 names are written; links, devices and escaping
names are refused and reported (`IngestReport.skipped`), never followed.
"""

from __future__ import annotations

import dataclasses
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from vistune.config import DataCfg
from vistune.data.files import is_inside, join_relative, printable_name, relative_name_problem
from vistune.data.sources.common import IngestReport
from vistune.data.sources.folder import ingest_folder
from vistune.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def is_archive(source: str) -> bool:
    return source.lower().endswith(ARCHIVE_SUFFIXES) and Path(source).expanduser().is_file()


def _write_member(dest: Path, name: str, stream) -> None:
    target = join_relative(dest, name)
    if not is_inside(target, dest):  # belt and braces after relative_name_problem
        raise DataError(f"archive member {name!r} escapes the extraction root")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        shutil.copyfileobj(stream, f)


def extract_archive(archive: Path, dest: Path, report: IngestReport) -> None:
    """Write the archive's regular files under `dest`; refuse links, devices and escaping names."""
    def refuse(name: str, code: str, reason: str) -> None:
        report.skipped.append({"path": f"{archive.name}:{printable_name(name)}", "code": code, "reason": reason})

    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    refuse(info.filename, "refused", "archive member is a symlink; archives may hold regular files only")
                elif problem := relative_name_problem(info.filename):
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
            elif problem := relative_name_problem(m.name):
                refuse(m.name, "unsafe_name", problem)
            else:
                with tf.extractfile(m) as stream:
                    _write_member(dest, m.name, stream)


def dataset_root(extracted: Path) -> Path:
    """Step into a single top-level folder (`hymenoptera/train/...` archives)."""
    root = extracted
    while not (root / "train").is_dir():
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


def ingest_archive(cfg: DataCfg, out: Path, report: IngestReport) -> None:
    archive = Path(cfg.source).expanduser()
    with tempfile.TemporaryDirectory(prefix="vistune-archive-") as tmp:
        try:
            extract_archive(archive, Path(tmp), report)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"{archive}: not a readable archive ({exc}); re-create it or point data.source "
                            "at a directory") from None
        ingest_folder(dataclasses.replace(cfg, source=str(dataset_root(Path(tmp)))), out, report)
