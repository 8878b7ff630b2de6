"""What `vistune score` reads from each kind of source: every file, labels only where the source
gives them, refusals (escaping archive members, manifest paths outside the CSV's folder, missing
files) as rows with a code, never an exception."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from vistune.data.score_source import collect
from vistune.errors import DataError


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (200, 10, 10)).save(path)
    return path


def test_folder_keeps_known_class_folders_as_labels(tmp_path):
    _png(tmp_path / "src" / "cat" / "a.png")
    _png(tmp_path / "src" / "holiday" / "b.png")  # not a class of the model: no label
    _png(tmp_path / "src" / "c.png")
    (tmp_path / "src" / ".hidden").write_text("x")
    got = collect(tmp_path / "src", tmp_path / "work", classes=["cat", "dog"])
    rows = {f.relative_to(got.root).as_posix(): label for f, _, label in got.files}
    assert rows == {"c.png": "", "cat/a.png": "cat", "holiday/b.png": ""} and not got.refused


def test_archive_is_extracted_safely_and_escaping_members_are_refused(tmp_path):
    png = _png(tmp_path / "x.png").read_bytes()
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dog/x.png", png)
        zf.writestr("../evil.png", png)
    got = collect(archive, tmp_path / "work", classes=["dog"])
    assert [(f.relative_to(got.root).as_posix(), label) for f, _, label in got.files] == [("dog/x.png", "dog")]
    assert [r["code"] for r in got.refused] == ["unsafe_name"] and not (tmp_path / "evil.png").exists()


def test_csv_rows_outside_or_missing_are_refused_with_a_code(tmp_path):
    _png(tmp_path / "batch" / "img" / "a.png")
    _png(tmp_path / "outside.png")
    (tmp_path / "batch" / "list.csv").write_text("path\nimg/a.png\n../outside.png\nimg/missing.png\n")
    got = collect(tmp_path / "batch" / "list.csv", tmp_path / "work")
    assert [(f.name, label) for f, _, label in got.files] == [("a.png", "")]
    assert sorted(r["code"] for r in got.refused) == ["missing", "outside_root"]


def test_not_a_source_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a folder, archive"):
        collect(tmp_path / "nope", tmp_path / "work")
