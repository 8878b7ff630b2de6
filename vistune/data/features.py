"""Frozen pretrained-backbone features of image files, one forward pass per distinct content.

The features are the classifier's input (`vistune.evaluate.drift.embed`, the same hook the drift
test uses) of the backbone `train` starts from (`train.model` with `train.pretrained`), on images
decoded and squashed exactly as `augment` does (`prepare_images`). They are kept by sha256 in one
`.npz` beside validate's outputs, stamped with the backbone, weights and size, so a rerun embeds only
new files; another backbone or size starts the cache afresh. Stored as float16 and always used as
float16 values, so a cached and a fresh run give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

BATCH = 64  # images decoded and embedded at a time: memory stays flat whatever the data size
Source = Union[Path, str, Callable[[], bytes]]  # a file, or a reader of bytes (an archive member, `vistune init`)


@dataclass(frozen=True)
class FeatureSpec:
    """Which features: backbone spec, its weights (`imagenet` or a file + sha256) and the input size."""

    model: str
    pretrained: str
    pretrained_sha256: str
    image_size: int

    @property
    def key(self) -> str:
        return f"{self.model}|{self.pretrained}|{self.pretrained_sha256}|{self.image_size}"


def load_cache(path: Path | None, key: str) -> dict[bytes, np.ndarray]:
    """sha256 (hex, as bytes) -> feature row from an earlier run with the same `key`; else empty."""
    if path is None or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return {}
            return dict(zip(z["sha256"].tolist(), z["features"]))
    except (OSError, ValueError, KeyError):
        return {}  # unreadable or older layout: recompute


def save_cache(path: Path, key: str, shas: Sequence[str], features: np.ndarray) -> None:
    from vistune.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            key=np.array(key),
            sha256=np.array([s.encode() for s in shas], dtype="S64"),
            features=features.astype(np.float16),
        )


def embed_files(
    files: Sequence[Source], shas: Sequence[str], spec: FeatureSpec, cache_path: Path | None = None
) -> tuple[np.ndarray, int]:
    """(N x D float32 features in `files` order, how many were computed now); cache updated."""
    cached = load_cache(cache_path, spec.key)
    todo = sorted({s for s in shas if s.encode() not in cached})
    if todo:
        first = {}
        for f, s in zip(files, shas):
            first.setdefault(s, f)
        cached.update(_embed([first[s] for s in todo], todo, spec))
    distinct = sorted(set(shas))
    table = np.stack([cached[s.encode()] for s in distinct]).astype(np.float16) if distinct else np.zeros((0, 0))
    if cache_path is not None and todo:
        save_cache(cache_path, spec.key, distinct, table)
    where = {s: i for i, s in enumerate(distinct)}
    return table[[where[s] for s in shas]].astype(np.float32), len(todo)


def _read(source: Source) -> bytes:
    return source() if callable(source) else Path(source).read_bytes()


def _embed(files: Sequence[Source], shas: Sequence[str], spec: FeatureSpec) -> dict[bytes, np.ndarray]:
    import torch

    from vistune.evaluate.drift import embed
    from vistune.models.backbones import create_backbone
    from vistune.models.classifier import prepare_images
    from vistune.models.device_policy import place, resolve_device

    backbone = create_backbone(spec.model, 1, pretrained=spec.pretrained, pretrained_sha256=spec.pretrained_sha256)
    device = resolve_device("auto")
    place(backbone, device).eval()
    out: dict[bytes, np.ndarray] = {}
    for i in range(0, len(files), BATCH):
        images = prepare_images([_read(f) for f in files[i : i + BATCH]], spec.image_size)
        feats = embed(backbone, torch.from_numpy(images), device).astype(np.float16)
        out.update(zip((s.encode() for s in shas[i : i + BATCH]), feats))
    return out
