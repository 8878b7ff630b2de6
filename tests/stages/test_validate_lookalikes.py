"""Stage `validate` finds another shot of a train photo in val/test, which pHash cannot see (real hymenoptera
JPEGs, real decoder, real Lite0 features), and applies `validate.on_lookalike`: warn marks, exclude
quarantines, off skips."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from stages import validate
from tests.conftest import HYMENOPTERA, tree_hash
from vistune.config import ValidateCfg
from vistune.data.features import FeatureSpec
from vistune.data.phash import hamming, phash
from vistune.layout import Layout

LITE0 = FeatureSpec("timm:tf_efficientnet_lite0", "imagenet", "", 160)
CFG = ValidateCfg(min_images_per_class=2, workers=2, label_issue_folds=0)
SIZES = {"train": 100, "val": 8, "test": 6}  # photos per class and split, distinct files
# another shot of a train photo: mirrored, turned a little, cropped, brighter, re-encoded
RESHOT = {"val/ants/reshot.jpg": "train/ants/2.jpg", "test/bees/reshot.jpg": "train/bees/5.jpg"}


def another_shot(src: Path) -> bytes:
    with Image.open(src) as im:
        im = im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(8, expand=False)
        w, h = im.size
        im = im.crop((w // 12, h // 12, w - w // 12, h - h // 12))
        im = ImageEnhance.Brightness(im).enhance(1.15)
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=85)
    return out.getvalue()


def photo_tree(raw: Path) -> None:
    photos = {c: sorted((HYMENOPTERA / "train" / c).glob("*.jpg")) for c in ("ants", "bees")}
    for cls, files in photos.items():
        start = 0
        for split, n in SIZES.items():
            for k, src in enumerate(files[start : start + n]):
                (raw / split / cls).mkdir(parents=True, exist_ok=True)
                (raw / split / cls / f"{k}.jpg").write_bytes(src.read_bytes())
            start += n
    for rel, original in RESHOT.items():
        (raw / rel).write_bytes(another_shot(raw / original))


@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="needs ../shared/datasets/hymenoptera")
def test_another_shot_in_val_and_test_is_marked_excluded_or_skipped(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    photo_tree(lay.raw)
    before = tree_hash(lay.raw)
    for rel, original in RESHOT.items():  # pHash does not see these: the near-duplicate check passes them
        with Image.open(lay.raw / rel) as shot, Image.open(lay.raw / original) as first:
            assert hamming(phash(shot), phash(first)) > CFG.near_duplicate_distance

    warned = validate.run(CFG, lay, features=LITE0)
    manifest = pd.read_csv(lay.manifest).set_index("path")
    marked = manifest.lookalike_of.dropna().to_dict()
    assert marked.items() >= RESHOT.items()  # each re-shot names its train original
    n_checked = 2 * (SIZES["val"] + SIZES["test"]) + len(RESHOT)
    assert len(marked) <= len(RESHOT) + 1  # at most one fresh photo of 28 flagged
    assert warned.summary["n_leaked_lookalike"] == len(marked)
    assert warned.summary["leaked_lookalike_fraction"] == round(len(marked) / n_checked, 6)
    assert any("look like another shot of a train image" in w and "on_lookalike=warn" in w for w in warned.warnings)
    assert set(RESHOT) <= set(manifest.index)  # warn: kept
    with Image.open(lay.lookalike_sheet) as sheet:  # the pairs side by side, for the Prefect artifact and the card
        assert sheet.format == "PNG" and sheet.width >= 2 * 150 and sheet.height >= 100

    excluded = validate.run(dataclasses.replace(CFG, on_lookalike="exclude"), lay, features=LITE0)
    q = pd.read_csv(lay.quarantine)
    assert set(q.path[q.code == "lookalike"]) == set(marked) and not set(marked) & set(pd.read_csv(lay.manifest).path)
    assert excluded.summary["quarantined_lookalike"] == len(marked) and excluded.summary["bad_fraction"] == 0
    assert set(RESHOT.values()) <= set(pd.read_csv(lay.manifest).path)  # the train originals stay

    off = validate.run(dataclasses.replace(CFG, on_lookalike="off"), lay, features=LITE0)
    assert pd.read_csv(lay.manifest).lookalike_of.isna().all() and off.summary["n_leaked_lookalike"] == 0
    assert tree_hash(lay.raw) == before  # raw files never written
