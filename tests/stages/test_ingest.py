"""Stage `ingest` then `validate`: files refused at ingest show up in quarantine.csv with a reason."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from stages import ingest, validate
from tests.conftest import tree_hash
from vistune.config import DataCfg, ValidateCfg
from vistune.layout import Layout


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_refused_files_reach_quarantine(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, (split, label, k) in enumerate(
        (s, c, k) for s in ("train", "val", "test") for c in ("a", "b") for k in range(3)
    ):
        (src / split / label).mkdir(parents=True, exist_ok=True)
        (src / split / label / f"{k}.png").write_bytes(png(i))
    (tmp_path / "outside.png").write_bytes(png(100))
    (src / "train" / "a" / "escape.png").symlink_to(tmp_path / "outside.png")
    with open(os.fsencode(src / "val" / "b") + b"/na\xefve.png", "wb") as f:
        f.write(png(101))
    before = tree_hash(src)
    lay = Layout(tmp_path / "repo")
    report = ingest.run(DataCfg(source=str(src)), lay)
    assert report.counts == {"train": 6, "val": 6, "test": 6} and len(report.skipped) == 2
    json.loads(lay.ingest_report.read_text())  # valid UTF-8 JSON despite the bad name
    result = validate.run(ValidateCfg(min_images_per_class=2, max_bad_fraction=0.2, workers=2), lay)
    assert tree_hash(src) == before
    q = pd.read_csv(lay.quarantine).set_index("path")
    assert q.code.to_dict() == {"train/a/escape.png": "outside_root", "val/b/na\\xefve.png": "unsafe_name"}
    assert result.summary["n_files"] == 20 and result.summary["n_good"] == 18
    assert result.summary["quarantined_outside_root"] == 1 and result.summary["quarantined_unsafe_name"] == 1


def test_zip_archive_source(tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, label in enumerate(("a", "b") * 4):
            zf.writestr(f"photos/{label}/{i}.png", png(i))
        zf.writestr("photos/../../../tmp/evil.png", png(99))
    lay = Layout(tmp_path / "repo")
    report = ingest.run(DataCfg(source=str(archive), val_fraction=0.25, test_fraction=0.25), lay)
    assert sum(report.counts.values()) == 8 and report.classes == ["a", "b"]
    assert report.skipped == [
        {
            "path": "photos.zip:photos/../../../tmp/evil.png",
            "code": "unsafe_name",
            "reason": "archive member escapes the archive root ('..' path traversal)",
        }
    ]
