"""The review loop: `vistune labels` turns label_issues.csv into decisions in labels.csv, and `ingest`
relabels / excludes exactly what that file says in its own copy (data/raw); the source stays untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import cli
from stages import ingest
from tests.conftest import tree_hash
from tests.vistune.test_label_issues import colour_photo
from vistune.config import DataCfg
from vistune.errors import DataError
from vistune.layout import Layout


def source_tree(src: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for label in ("red", "green"):
            for k in range(n):
                rel = f"{split}/{label}/{k}.jpg"
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                colour_photo(label, rel).save(src / rel, quality=90)


def test_labels_command_writes_decisions_that_ingest_applies(tmp_path: Path, capsys) -> None:
    src, lay = tmp_path / "source", Layout(tmp_path / "repo")
    source_tree(src)
    before = tree_hash(src)
    lay.validated.mkdir(parents=True)
    lay.label_issues.write_text(
        "path,given_label,suggested_label,score,split\n"
        "train/red/1.jpg,red,green,0.97,train\n"
        "val/green/0.jpg,green,red,0.81,val\n"
        "train/green/2.jpg,green,red,0.66,train\n"
    )
    assert cli.main(["--root", str(lay.root), "labels"]) == 0
    assert "train/red/1.jpg" in capsys.readouterr().out and not lay.label_overrides.exists()  # listing only

    assert cli.main(["--root", str(lay.root), "labels", "--accept", "1", "--exclude", "train/green/2.jpg"]) == 0
    assert lay.label_overrides.read_text() == "path,label\ntrain/green/2.jpg,exclude\ntrain/red/1.jpg,green\n"
    assert cli.main(["--root", str(lay.root), "labels", "--accept", "2"]) == 0  # merged with the earlier ones
    assert lay.label_overrides.read_text().splitlines()[1:] == [
        "train/green/2.jpg,exclude",
        "train/red/1.jpg,green",
        "val/green/0.jpg,red",
    ]

    ingest.run(DataCfg(source=str(src)), lay)
    raw = {p.relative_to(lay.raw).as_posix() for p in lay.raw.rglob("*.jpg")}
    # moved to the accepted class; the names 1.jpg / 0.jpg were taken there, so prefixed by the old class
    assert {"train/green/red_1.jpg", "val/red/green_0.jpg", "train/green/1.jpg", "val/red/0.jpg"} <= raw
    assert not {"train/red/1.jpg", "val/green/0.jpg", "train/green/2.jpg"} & raw  # moved away / excluded
    assert len(raw) == 10 - 1
    report = json.loads(lay.ingest_report.read_text())["label_overrides"]
    assert (report["relabelled"], report["excluded"], report["unmatched"]) == (2, 1, [])
    assert len(report["sha256"]) == 64
    assert tree_hash(src) == before  # the source is only read


def test_override_file_mistakes_fail_with_one_line(tmp_path: Path, capsys) -> None:
    src, lay = tmp_path / "source", Layout(tmp_path / "repo")
    source_tree(src)
    lay.root.mkdir()
    lay.label_overrides.write_text("path,label\ntrain/red/0.jpg,blue\n")
    with pytest.raises(DataError, match=r"labels.csv: train/red/0.jpg -> 'blue' is not a class of this data"):
        ingest.run(DataCfg(source=str(src)), lay)
    lay.label_overrides.write_text("file,class\n")
    with pytest.raises(DataError, match="header `path,label`"):
        ingest.run(DataCfg(source=str(src)), lay)
    lay.label_overrides.write_text("path,label\ntrain/red/9.jpg,green\n")  # no such image: reported, not fatal
    ingest.run(DataCfg(source=str(src)), lay)
    assert json.loads(lay.ingest_report.read_text())["label_overrides"]["unmatched"] == ["train/red/9.jpg"]
    assert cli.main(["--root", str(tmp_path / "elsewhere"), "labels"]) == 2
    assert "run `dvc repro validate` first" in capsys.readouterr().err
