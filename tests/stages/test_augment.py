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
