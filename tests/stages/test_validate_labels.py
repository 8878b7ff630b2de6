"""Stage `validate` finds photos filed under the wrong class (real JPEGs, real decoder, real Lite0 features)
and applies `validate.on_label_issue`: warn keeps them, exclude quarantines the train ones, fail stops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from stages import validate
from tests.conftest import tree_hash
from tests.vistune.test_label_issues import HUES, LITE0, colour_photo
from vistune.config import ValidateCfg
from vistune.errors import DataError
from vistune.layout import Layout

# a red picture filed under green/ and a blue one under red/ (train); a green one under blue/ (val)
MISFILED = {"train/green/x0.jpg": "red", "train/red/x1.jpg": "blue", "val/blue/x2.jpg": "green"}
CFG = ValidateCfg(min_images_per_class=2, workers=2, near_duplicate_distance=-1)


def misfiled_tree(raw: Path) -> None:
    for split, n in (("train", 12), ("val", 5), ("test", 4)):
        for label in HUES:
            for k in range(n):
                rel = f"{split}/{label}/{k}.jpg"
                (raw / rel).parent.mkdir(parents=True, exist_ok=True)
                colour_photo(label, rel).save(raw / rel, quality=90)
    for rel, truth in MISFILED.items():
        colour_photo(truth, rel).save(raw / rel, quality=90)


def test_label_issues_warn_exclude_fail_and_raw_untouched(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    misfiled_tree(lay.raw)
    before = tree_hash(lay.raw)

    warned = validate.run(CFG, lay, features=LITE0)
    issues = pd.read_csv(lay.label_issues)
    assert list(issues.columns[:4]) == ["path", "given_label", "suggested_label", "score"]
    assert set(issues.path.head(3)) == set(MISFILED), issues
    assert dict(zip(issues.path, issues.suggested_label)).items() >= MISFILED.items()
    assert warned.summary["n_label_issues"] == len(issues) <= 5  # the 3 misfiled and at most 2 false flags
    assert warned.summary["label_issue_fraction"] == round(len(issues) / (3 * (12 + 5) + len(MISFILED)), 6)
    assert any("look mislabelled" in w and "validate.on_label_issue=warn" in w for w in warned.warnings)
    assert set(MISFILED) <= set(pd.read_csv(lay.manifest).path)  # warn: kept
    with Image.open(lay.label_issue_sheet) as sheet:  # thumbnails of the suspects for the Prefect artifact
        assert sheet.format == "PNG" and sheet.width >= 6 * 100

    excluded = validate.run(dataclasses.replace(CFG, on_label_issue="exclude"), lay, features=LITE0)
    q = pd.read_csv(lay.quarantine)
    flagged_train = set(issues.path[issues.split == "train"])
    assert set(q.path[q.code == "label_issue"]) == flagged_train >= {"train/green/x0.jpg", "train/red/x1.jpg"}
    kept = set(pd.read_csv(lay.manifest).path)
    assert not flagged_train & kept and "val/blue/x2.jpg" in kept  # val images are only reported
    assert excluded.summary["quarantined_label_issue"] == len(flagged_train) and excluded.summary["bad_fraction"] == 0

    with pytest.raises(DataError, match=r"look mislabelled.*validate.max_label_issue_fraction=0.0") as err:
        validate.run(dataclasses.replace(CFG, on_label_issue="fail"), lay, features=LITE0)
    assert "\n" not in str(err.value) and "label_issues.csv" in str(err.value)
    validate.run(dataclasses.replace(CFG, on_label_issue="fail", max_label_issue_fraction=0.2), lay, features=LITE0)

    assert tree_hash(lay.raw) == before  # raw files never written


def test_feature_checks_off_write_an_empty_list(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    misfiled_tree(lay.raw)
    result = validate.run(dataclasses.replace(CFG, label_issue_folds=0, on_lookalike="off"), lay, features=LITE0)
    assert pd.read_csv(lay.label_issues).empty and result.summary["n_label_issues"] == 0
    # dvc.yaml declares the cache as an out: it exists (else `dvc repro` fails the stage) and embeds nothing
    from vistune.data.features import load_cache

    assert lay.feature_cache.is_file() and load_cache(lay.feature_cache, LITE0.key) == {}
