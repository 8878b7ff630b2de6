"""Sources: archives are extracted safely, unsafe names and escaping links are refused and reported."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tree_hash
from vistune.config import DataCfg
from vistune.errors import DataError
from vistune.data.sources import ingest


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


GOOD = {
    f"data/{split}/{label}/{k}.png": png(zlib.crc32(f"{split}/{label}/{k}".encode()) % 1000)
    for split in ("train", "val")
    for label in ("a", "b")
    for k in range(3)
}


def add_tar(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tf.addfile(info, io.BytesIO(data) if data else None)


def test_tar_members_are_confined(tmp_path: Path) -> None:
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in GOOD.items():
            add_tar(tf, name, data)
        add_tar(tf, "../escape.png", png(1))
        add_tar(tf, "/etc/absolute.png", png(2))
        add_tar(tf, "data/train/a/link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add_tar(tf, "data/train/a/hard.png", kind=tarfile.LNKTYPE, link="data/train/a/0.png")
        add_tar(tf, os.fsdecode(b"data/train/a/bad\xff.png"), png(3))
    digest = archive.read_bytes()
    report = ingest(DataCfg(source=str(archive), seed=0), tmp_path / "out")
    assert archive.read_bytes() == digest
    assert sorted((tmp_path / "out").rglob("*.png")) and not (tmp_path / "escape.png").exists()
    assert report.counts["train"] == 6 and report.classes == ["a", "b"]
    codes = {r["path"]: r["code"] for r in report.skipped}
    assert codes == {
        "set.tar.gz:../escape.png": "unsafe_name",
        "set.tar.gz:/etc/absolute.png": "unsafe_name",
        "set.tar.gz:data/train/a/link.png": "refused",
        "set.tar.gz:data/train/a/hard.png": "refused",
        "set.tar.gz:data/train/a/bad\\xff.png": "unsafe_name",
    }
    assert not list((tmp_path / "out").rglob("link.png")) and not list((tmp_path / "out").rglob("hard.png"))


def test_zip_source_with_traversal_and_symlink(tmp_path: Path) -> None:
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in GOOD.items():
            zf.writestr(name, data)
        zf.writestr("data/train/../../evil.png", png(4))
        link = zipfile.ZipInfo("data/train/a/link.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    digest = archive.read_bytes()
    report = ingest(DataCfg(source=str(archive)), tmp_path / "out")
    assert archive.read_bytes() == digest
    assert {r["code"] for r in report.skipped} == {"unsafe_name", "refused"} and len(report.skipped) == 2
    assert not (tmp_path / "evil.png").exists() and not list((tmp_path / "out").rglob("link.png"))
    assert sum(report.counts.values()) == 12


def test_folder_refuses_non_utf8_names_and_outside_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, data in GOOD.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    root = src / "data"
    (tmp_path / "secret.png").write_bytes(png(7))
    (root / "train" / "a" / "escape.png").symlink_to(tmp_path / "secret.png")
    with open(os.fsencode(root / "train" / "b") + b"/caf\xe9.png", "wb") as f:
        f.write(png(8))
    before = tree_hash(src)
    report = ingest(DataCfg(source=str(root)), tmp_path / "out")
    assert tree_hash(src) == before
    assert {r["path"]: r["code"] for r in report.skipped} == {
        "train/a/escape.png": "outside_root",
        "train/b/caf\\xe9.png": "unsafe_name",
    }


def test_broken_archive_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(DataError, match="not a readable archive"):
        ingest(DataCfg(source=str(bad)), tmp_path / "out")


def test_registry_picks_the_kind_by_scheme_or_path_and_takes_new_kinds(tmp_path: Path) -> None:
    """One registry, like backbones: each kind claims its sources; a registered kind is used by ingest."""
    from vistune.data.sources import create_source, list_sources, register_source
    from vistune.data.sources import registry

    (tmp_path / "m.csv").write_text("path,label\n")
    (tmp_path / "a.tgz").write_bytes(b"")
    assert create_source("sklearn:digits").name == "sklearn:digits"
    assert create_source("torchvision:MNIST").name == "torchvision"
    assert create_source(str(tmp_path / "m.csv")).name == "csv"
    assert create_source(str(tmp_path / "a.tgz")).name == "archive"
    assert create_source(str(tmp_path)).name == "folder"
    with pytest.raises(DataError, match="neither a known source"):
        create_source("nosuch:thing")

    def ingest_one(cfg, out, report):
        (out / "train" / "x").mkdir(parents=True)
        report.counts = {"train": 0}

    register_source("const:one", lambda s: s == "const:one", "const:one")(ingest_one)
    try:
        assert "const:one" in list_sources()
        assert ingest(DataCfg(source="const:one"), tmp_path / "out").counts == {"train": 0}
        assert (tmp_path / "out" / "train" / "x").is_dir()
    finally:
        registry._KINDS.pop("const:one")
