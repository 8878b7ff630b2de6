"""vistune.data.inspect reads every kind of source in place and splits it exactly as `ingest` copies it;
duplicates and leaks are checked against sha256 computed here from the files themselves."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.app.test_init import make_photos
from vistune.config import DataCfg, ValidateCfg
from vistune.data.inspect import describe, inspect_source
from vistune.data.sources import ingest


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("inspect") / "photos", {"train": 6, "val": 4}, classes=("a", "b"))


def _ingested_counts(cfg: DataCfg, out: Path) -> dict:
    ingest(cfg, out)
    found = Counter((p.parent.parent.name, p.parent.name) for p in out.rglob("*.jpg"))
    return {s: {c: found[(s, c)] for c in ("a", "b") if found[(s, c)]} for s in ("train", "val", "test")}


def test_folder_zip_and_csv_list_what_ingest_copies(photos, tmp_path):
    cfg = DataCfg(source=str(photos))
    expected = _ingested_counts(cfg, tmp_path / "raw")  # the test split is carved out of val/ by data.seed
    assert inspect_source(cfg, ValidateCfg()).counts == expected
    archive = shutil.make_archive(str(tmp_path / "photos"), "zip", photos.parent, photos.name)
    assert inspect_source(DataCfg(source=archive), ValidateCfg()).counts == expected
    rows = ["path,label,split"] + [
        f"{p.relative_to(photos)},{p.parent.name},{p.parts[-3]}" for p in sorted(photos.rglob("*.jpg"))
    ]
    (photos / "images.csv").write_text("\n".join(rows) + "\n")
    csv_cfg = DataCfg(source=str(photos / "images.csv"))
    from_csv = inspect_source(csv_cfg, ValidateCfg())
    assert from_csv.counts == _ingested_counts(csv_cfg, tmp_path / "raw_csv")
    assert from_csv.n_images == 20 and from_csv.formats == {"JPEG": 20}


def test_duplicates_and_leaks_match_sha256(photos, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(photos, root, ignore=shutil.ignore_patterns("*.csv"))
    shutil.copy(root / "train/a/a_000.jpg", root / "train/a/again.jpg")  # same split: an exact duplicate
    shutil.copy(root / "train/b/b_001.jpg", root / "val/b/leaked.jpg")  # val (or the test carved from it): a leak
    p = inspect_source(DataCfg(source=str(root)), ValidateCfg())
    digests = Counter(hashlib.sha256(f.read_bytes()).hexdigest() for f in root.rglob("*.jpg"))
    assert len(p.exact_duplicates) + len(p.leaks) == sum(n - 1 for n in digests.values()) == 2
    assert [f.path for f in p.exact_duplicates] == ["train/a/again.jpg"]
    assert [f.path for f in p.leaks] == ["val/b/leaked.jpg"] and "train/b/b_001.jpg" in p.leaks[0].detail
    text = "\n".join(describe(p))
    assert "exact duplicates (same split): 1" in text and "cross-split leaks" in text and "leaked.jpg" in text


def test_digits_are_not_photos_and_max_per_class_caps():
    p = inspect_source(DataCfg(source="sklearn:digits", max_per_class=5), ValidateCfg())
    assert not p.is_photo and p.short_side.median == 8 and set(p.modes) == {"L"}
    assert p.n_images == 50 and len(p.classes) == 10


def test_undecodable_files_are_reported_not_fatal(photos, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(photos, root, ignore=shutil.ignore_patterns("*.csv"))
    (root / "train/a/a_000.jpg").write_bytes((root / "train/a/a_000.jpg").read_bytes()[:200])
    p = inspect_source(dataclasses.replace(DataCfg(source=str(root))), ValidateCfg())
    assert [f.path for f in p.undecodable] == ["train/a/a_000.jpg"] and p.n_decodable == 19
