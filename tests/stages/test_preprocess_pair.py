"""Train-time and serve-time preprocessing are one function: the arrays `augment` writes for training
and the arrays the served `Classifier` builds from the same bytes are identical, for photos of every
awkward kind (non-square, EXIF-rotated, grayscale, palette, alpha, 16-bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stages.augment import _decode_split
from tests.app.test_init import _photo
from vistune.layout import Layout
from vistune.models.classifier import Classifier


def _odd_photos(raw: Path) -> list[str]:
    rng = np.random.default_rng(3)
    photo = _photo(rng, "circle", (200, 120))
    files = {
        "wide.jpg": (photo, {"quality": 85}),
        "tall.png": (photo.transpose(Image.Transpose.ROTATE_90), {}),
        "gray.jpg": (photo.convert("L"), {}),
        "palette.png": (photo.convert("P"), {}),
        "alpha.png": (photo.convert("RGBA"), {}),
        "deep.png": (photo.convert("L").convert("I;16"), {}),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    files["rotated.jpg"] = (photo, {"exif": exif.tobytes()})
    for name, (img, kw) in files.items():
        (raw / "test" / "x").mkdir(parents=True, exist_ok=True)
        img.save(raw / "test" / "x" / name, **kw)
    return [f"test/x/{n}" for n in files]


def test_augment_and_serving_decode_the_same_arrays(trained_tiny, tmp_path):
    lay = Layout(tmp_path)
    paths = _odd_photos(lay.raw)
    clf = Classifier.load(trained_tiny.model)
    lay.prepared.mkdir(parents=True, exist_ok=True)
    _decode_split(lay, paths, clf.image_size, "test")  # streams into the split's .npy memory map
    train_side = np.load(lay.prepared / "test_images.npy")
    serve_side = clf.prepare([(lay.raw / p).read_bytes() for p in paths]).numpy()
    assert train_side.shape == serve_side.shape == (len(paths), 3, clf.image_size, clf.image_size)
    assert np.array_equal(train_side, serve_side)
