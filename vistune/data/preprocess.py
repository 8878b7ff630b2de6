"""Resize and normalize: the one definition of model input shared by train, evaluate and serve."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> 3xSxS uint8, the whole image squashed to a square (bicubic, antialiased).

    Squashing keeps every pixel of the subject (no centre crop), and it is what the serving
    model does too, so train-time and serve-time inputs match exactly.
    """
    img = Image.fromarray(rgb, mode="RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or [0,1] float NCHW -> normalized float32, on the batch's device."""
    x = batch.float()
    if batch.dtype == torch.uint8:
        x = x / 255.0
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
