"""Stage `augment`: the prepared arrays are the raw files decoded and resized, and the preview
shows real training images next to augmented ones.

Reference decode: PIL straight from the raw file (EXIF orientation, RGB, 16 px bicubic), not
vistune's decode/resize functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from vistune.data.prepared import load_prepared
from vistune.data.sources import SPLITS
from vistune.io import read_json

PAD = 2  # torchvision.utils.save_image padding around every tile (black)


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


def tiles(grid: np.ndarray, size: int) -> list[np.ndarray]:
    """Cut a save_image grid (HWC uint8) back into its CHW tiles, row by row."""
    step = size + PAD
    rows, cols = (grid.shape[0] - PAD) // step, (grid.shape[1] - PAD) // step
    return [grid[PAD + r * step: PAD + r * step + size, PAD + c * step: PAD + c * step + size].transpose(2, 0, 1)
            for r in range(rows) for c in range(cols)]


def test_preview_shows_eight_training_images_then_24_augmented_ones(prepared_tiny):
    train = load_prepared(prepared_tiny.prepared, splits=("train",)).splits["train"].images
    with Image.open(prepared_tiny.augment_preview) as im:
        assert im.format == "PNG"
        grid = np.asarray(im.convert("RGB"))
    assert grid.shape == (PAD + 4 * (16 + PAD), PAD + 8 * (16 + PAD), 3)  # 32 tiles, 8 per row
    mask = np.ones(grid.shape[:2], bool)
    for r in range(4):
        for c in range(8):
            mask[PAD + r * 18: PAD + r * 18 + 16, PAD + c * 18: PAD + c * 18 + 16] = False
    assert (grid[mask] == 0).all()  # only the padding is outside the tiles
    cut = tiles(grid, 16)
    originals = {img.tobytes() for img in train}
    assert all(t.tobytes() in originals for t in cut[:8])  # the first row: training images as prepared
    assert len({t.tobytes() for t in cut[:8]}) == 8
    assert not any(t.tobytes() in originals for t in cut[8:])  # the rest went through the augmentation
