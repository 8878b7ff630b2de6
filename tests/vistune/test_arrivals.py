"""`new_files`: a folder's labelled files compared by content with the bytes a model trained on."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from vistune.data.arrivals import new_files
from vistune.io import sha256_file


def _png(path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (shade, 0, 0)).save(path)


def test_only_unseen_bytes_count_renames_and_hidden_files_do_not(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        _png(src / "cat" / f"c{i}.png", 10 + i)
    known = {sha256_file(p) for p in src.rglob("*.png")}
    shutil.copy(src / "cat" / "c0.png", src / "cat" / "renamed.png")  # same bytes, new name: not new
    _png(src / "dog" / "d0.png", 200)  # new
    _png(src / "cat" / "c1.png", 99)  # edited in place: new bytes
    _png(src / "cat" / ".hidden.png", 123)  # hidden: skipped
    _png(src / "unlabelled.png", 77)  # not under a class folder: not labelled
    got = new_files(src, known)
    assert got.new == ["cat/c1.png", "dog/d0.png"] and got.per_class == {"cat": 1, "dog": 1}
    assert (got.n_new, got.n_files) == (2, 5)


def test_a_source_that_is_not_a_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a folder; point it at an ImageFolder"):
        new_files(tmp_path / "nope", set())
