"""Stage `augment`: the prepared arrays are the raw files decoded and resized.

Reference decode: PIL straight from the raw file (EXIF orientation, RGB, 16 px bicubic), not
vistune's decode/resize functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from vistune.data.prepared import load_prepared
from vistune.data.sources.common import SPLITS
from vistune.io import read_json


def reference_decode(path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB").resize((size, size), Image.BICUBIC)
        return np.asarray(rgb).transpose(2, 0, 1)


def test_prepared_arrays_equal_an_independent_decode_of_the_raw_files(prepared_tiny):
    lay = prepared_tiny
    data = load_prepared(lay.prepared)
    meta = read_json(lay.prepared / "meta.json")
    manifest = pd.read_csv(lay.manifest, dtype={"label": str})
    assert data.image_size == meta["image_size"] == 16
    assert sorted(data.classes, key=int) == sorted(manifest.label.unique(), key=int) == data.classes
    for split in SPLITS:
        part = manifest[manifest.split == split]
        arr = data.splits[split]
        assert len(arr) == meta["counts"][split] == len(part) > 0
        expected = np.stack([reference_decode(lay.raw / p, 16) for p in part.path])
        np.testing.assert_array_equal(arr.images, expected)  # same order as the manifest, pixel for pixel
        assert [data.classes[i] for i in arr.labels] == part.label.tolist()
    assert isinstance(data.splits["train"].images, np.memmap)  # epochs read without decoding


def test_class_order_is_decided_in_the_core():
    """The model's output order: names first, then numbers by value, whatever order the manifest lists them."""
    from vistune.data.prepared import class_order

    assert class_order(["10", "2", "bee", "ant", "1", "2"]) == ["ant", "bee", "1", "2", "10"]


def test_augment_decodes_into_the_memory_map_a_chunk_at_a_time(prepared_tiny, tmp_path, monkeypatch):
    """Resident memory independent of the data size: the split is written in place into the `.npy`
    memory map, never held whole in RAM (peak traced allocations well under one split's bytes)."""
    import dataclasses
    import shutil
    import tracemalloc

    from stages import augment
    from tests.conftest import tiny_params_dict
    from vistune.config import parse_params
    from vistune.layout import Layout

    lay = Layout(tmp_path)
    lay.manifest.parent.mkdir(parents=True)
    shutil.copy(prepared_tiny.manifest, lay.manifest)
    lay.raw.parent.mkdir(parents=True, exist_ok=True)
    lay.raw.symlink_to(prepared_tiny.raw)
    monkeypatch.setattr(augment, "CHUNK", 4)
    cfg = dataclasses.replace(parse_params(tiny_params_dict()).augment, image_size=128)
    tracemalloc.start()
    try:
        counts = augment.run(cfg, lay)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    split_bytes = counts["train"] * 3 * 128 * 128
    assert counts["train"] >= 40 and peak < split_bytes / 2, (
        peak,
        split_bytes,
    )  # a whole-split array alone is split_bytes
    data = load_prepared(lay.prepared)
    manifest = pd.read_csv(lay.manifest, dtype={"label": str})
    train = manifest[manifest.split == "train"]
    expected = np.stack([reference_decode(lay.raw / p, 128) for p in train.path])
    np.testing.assert_array_equal(data.splits["train"].images, expected)


def test_exif_turned_photos_reach_the_prepared_arrays_upright(tmp_path):
    """EXIF orientations 6 and 8 (JPEG and PNG) through the `augment` stage: the prepared arrays hold the
    upright image (the red corner where the display puts it), and serving prepares the same pixels."""
    import dataclasses

    from stages import augment
    from tests.conftest import tiny_params_dict
    from tests.vistune.test_imageio import corner_marked, with_orientation
    from vistune.config import parse_params
    from vistune.layout import Layout
    from vistune.models.classifier import prepare_images

    lay = Layout(tmp_path)
    rows = []
    for split in SPLITS:
        for orientation in (6, 8):
            for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
                rel = f"{split}/o{orientation}/{ext}.{ext}"
                (lay.raw / rel).parent.mkdir(parents=True, exist_ok=True)
                (lay.raw / rel).write_bytes(with_orientation(corner_marked(), fmt, orientation))
                rows.append({"path": rel, "split": split, "label": f"o{orientation}"})
    lay.manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(lay.manifest, index=False)
    size = 16
    augment.run(dataclasses.replace(parse_params(tiny_params_dict()).augment, image_size=size), lay)
    data = load_prepared(lay.prepared)
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        images = data.splits[split].images
        np.testing.assert_array_equal(images, np.stack([reference_decode(lay.raw / r["path"], size) for r in part]))
        served = prepare_images([(lay.raw / r["path"]).read_bytes() for r in part], size)
        np.testing.assert_array_equal(images, served)
        for img, row in zip(images, part):
            red = (img[0] > 200) & (img[2] < 60)
            top_right, bottom_left = red[:3, -3:].all(), red[-3:, :3].all()
            assert (top_right, bottom_left) == ((True, False) if row["label"] == "o6" else (False, True)), row
