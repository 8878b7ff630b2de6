"""Stage `augment`: decode once into uint8 arrays and write a preview grid of augmented samples."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vistune.data.prepared import load_prepared
from vistune.io import read_json


def test_prepared_arrays_and_preview(prepared_tiny):
    data = load_prepared(prepared_tiny.prepared)
    meta = read_json(prepared_tiny.prepared / "meta.json")
    assert data.image_size == 16 and len(data.classes) == 10
    for split, arr in data.splits.items():
        assert arr.images.dtype == np.uint8 and arr.images.shape[1:] == (3, 16, 16)
        assert len(arr) == meta["counts"][split] > 0
    assert isinstance(data.splits["train"].images, np.memmap)  # epochs read without decoding
    with Image.open(prepared_tiny.augment_preview) as im:
        assert im.format == "PNG" and im.width > 16 * 8
