"""More sources, offline: a local torchvision MNIST copy, the offline error, CSV manifests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tree_hash
from vistune.config import DataCfg
from vistune.errors import DataError
from vistune.data.sources import ingest, list_sources


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: big-endian magic (0x08 = ubyte, number of dims), dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def local_mnist(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """What torchvision.datasets.MNIST(root, download=True) leaves on disk, with tiny random digits."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def files(out: Path, split: str) -> list[Path]:
    return sorted(p for p in (out / split).rglob("*.png"))


def test_torchvision_local_copy_is_ingested_without_network(tmp_path: Path) -> None:
    root = local_mnist(tmp_path / "tv")
    before = tree_hash(root)
    cfg = DataCfg(source="torchvision:MNIST", cache_dir=str(root), download=False, val_fraction=0.2, seed=1)
    report = ingest(cfg, tmp_path / "raw")
    assert report.counts == {"train": 50, "val": 10, "test": 20}  # stratified: 1 of 6 per class
    assert len(report.classes) == 10 and report.classes[0] == "0 - zero"
    out = tmp_path / "raw"
    assert len(files(out, "train")) == 50 and len(files(out, "val")) == 10 and len(files(out, "test")) == 20
    assert all(p.name.startswith("test_") for p in files(out, "test"))  # torchvision's test split -> test
    assert not {p.name for p in files(out, "train")} & {p.name for p in files(out, "val")}
    img = Image.open(files(out, "test")[0])
    assert img.size == (28, 28) and img.mode == "L"
    assert tree_hash(root) == before  # the cache is only read

    ingest(cfg, tmp_path / "raw2")
    assert sorted(p.relative_to(tmp_path / "raw2") for p in (tmp_path / "raw2").rglob("*.png")) == sorted(
        p.relative_to(out) for p in out.rglob("*.png")
    )  # the split is seeded

    capped = ingest(
        DataCfg(source="torchvision:MNIST", cache_dir=str(root), download=False, max_per_class=3), tmp_path / "raw3"
    )
    assert capped.counts["train"] + capped.counts["val"] == 30 and capped.counts["test"] == 20


def test_missing_torchvision_dataset_is_one_clear_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    cfg = DataCfg(source="torchvision:FashionMNIST", cache_dir=str(empty), download=False)
    with pytest.raises(DataError) as err:
        ingest(cfg, tmp_path / "raw")
    msg = str(err.value)
    assert "\n" not in msg and "torchvision:FashionMNIST" in msg and str(empty) in msg and "data.download" in msg
    with pytest.raises(DataError, match="torchvision has no dataset 'NoSuchSet'"):
        ingest(DataCfg(source="torchvision:NoSuchSet", cache_dir=str(empty)), tmp_path / "raw")
    assert any(s.startswith("torchvision:") for s in list_sources())


def png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)).save(path)


def test_csv_manifest_with_splits_and_escaping_paths_refused(tmp_path: Path) -> None:
    data = tmp_path / "set"
    rows = ["path,label,split"]
    for k in range(4):
        for label in ("cat", "dog"):
            png(data / "img" / label / f"{k}.png", k + 10 * (label == "dog"))
            rows.append(f"img/{label}/{k}.png,{label},{'train' if k < 2 else 'val' if k == 2 else 'test'}")
    png(tmp_path / "secret.png", 99)  # next to, not inside, the CSV's folder
    rows += ["../secret.png,cat,train", f"{tmp_path / 'secret.png'},cat,train", "img/none.png,cat,train"]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    before = tree_hash(data)
    report = ingest(DataCfg(source=str(data / "labels.csv")), tmp_path / "raw")
    assert report.counts == {"train": 4, "val": 2, "test": 2} and report.classes == ["cat", "dog"]
    assert (tmp_path / "raw" / "train" / "cat" / "img" / "cat" / "0.png").is_file()
    assert not list((tmp_path / "raw").rglob("secret.png"))
    codes = {r["path"]: r["code"] for r in report.skipped}
    assert codes == {
        "labels.csv:../secret.png": "outside_root",
        f"labels.csv:{tmp_path / 'secret.png'}": "outside_root",
        "labels.csv:img/none.png": "missing",
    }
    assert all(r["reason"] for r in report.skipped)
    assert tree_hash(data) == before


def test_csv_manifest_without_split_is_split_by_seed_and_bad_header_is_clear(tmp_path: Path) -> None:
    rows = ["path,label"]
    for k in range(10):
        for label in ("a", "b"):
            png(tmp_path / f"{label}{k}.png", k + 100 * (label == "b"))
            rows.append(f"{label}{k}.png,{label}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    report = ingest(DataCfg(source=str(tmp_path / "m.csv"), val_fraction=0.2, test_fraction=0.2), tmp_path / "raw")
    assert report.counts == {"train": 12, "val": 4, "test": 4}
    (tmp_path / "bad.csv").write_text("file,class\na0.png,a\n")
    with pytest.raises(DataError, match=r"bad.csv: a CSV manifest needs a header row with columns path,label"):
        ingest(DataCfg(source=str(tmp_path / "bad.csv")), tmp_path / "raw")
    (tmp_path / "split.csv").write_text("path,label,split\na0.png,a,holdout\n")
    with pytest.raises(DataError, match="row 2 has split 'holdout'"):
        ingest(DataCfg(source=str(tmp_path / "split.csv")), tmp_path / "raw")
