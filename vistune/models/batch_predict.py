"""Predict many image files with a `Classifier`: decode in threads, run the network in batches,
softmax with the served temperature. The same decode and precision as serving and evaluate, so a
batch score equals what the served model answers for each image.

Decoding (PIL releases the GIL) of the next batch overlaps the network's work on the current one;
a progress bar counts images.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from vistune.data.imageio import decode_rgb
from vistune.data.preprocess import resize_rgb
from vistune.models.classifier import Classifier


def _decode_batch(pool: ThreadPoolExecutor, files: Sequence[Path], size: int) -> torch.Tensor:
    arrs = list(pool.map(lambda f: resize_rgb(decode_rgb(Path(f).read_bytes()), size), files))
    return torch.from_numpy(np.stack(arrs))


def predict_files(
    clf: Classifier, files: Sequence[Path], batch_size: int = 256, workers: int = 4, progress: bool = True
) -> np.ndarray:
    """Probabilities N x C (rows in `files` order). Files must already have passed validation:
    a file that fails to decode here raises `ImageDecodeError`."""
    out = np.zeros((len(files), len(clf.classes)), dtype=np.float32)
    chunks = [list(range(i, min(i + batch_size, len(files)))) for i in range(0, len(files), batch_size)]
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        ThreadPoolExecutor(max_workers=1) as ahead,
        tqdm(total=len(files), desc="score", unit="img", disable=None if progress else True) as bar,
    ):
        pending = ahead.submit(_decode_batch, pool, [files[i] for i in chunks[0]], clf.image_size) if chunks else None
        for n, idx in enumerate(chunks):
            images = pending.result()
            if n + 1 < len(chunks):  # decode the next batch while this one runs
                pending = ahead.submit(_decode_batch, pool, [files[i] for i in chunks[n + 1]], clf.image_size)
            logits = clf.logits(images, batch_size=batch_size)
            out[idx] = (logits / clf.temperature).softmax(dim=1).numpy()
            bar.update(len(idx))
    return out
