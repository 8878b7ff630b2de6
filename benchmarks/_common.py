"""Shared benchmark helpers: decode an ImageFolder into vistune's prepared arrays, device facts."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from vistune.data.prepared import PreparedData, SplitArrays
from vistune.data.imageio import decode_file
from vistune.data.preprocess import resize_rgb

EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def folder_items(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).rglob("*")) if p.suffix.lower() in EXTS]
    return classes, items


def decode_items(items: list[tuple[Path, int]], size: int) -> SplitArrays:
    """The same decode-once path as the `augment` stage: RGB, squashed to size x size, uint8."""
    imgs = [resize_rgb(decode_file(p), size) for p, _ in items]
    x = np.stack(imgs) if imgs else np.empty((0, 3, size, size), np.uint8)
    return SplitArrays(x, np.array([y for _, y in items], dtype=np.int64))


def prepared(classes: list[str], size: int, **splits: SplitArrays) -> PreparedData:
    return PreparedData(classes, size, dict(splits))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def write_result(path: Path, result: dict) -> None:
    """Benchmark figures as JSON beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {path}")
