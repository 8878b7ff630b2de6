"""Resize and normalize: the one definition of model input shared by train, evaluate and serve.

Normalization is a module (`Normalize`, mean/std as buffers) that sits in front of the network
(`Backbone.net`), so it moves with `.to(device)`, is part of the ONNX graph and of the served model,
and builds no tensor from Python numbers per batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> 3xSxS uint8, the whole image squashed to a square (bicubic, antialiased).

    Squashing keeps every pixel of the subject (no centre crop), and it is what the serving
    model does too, so train-time and serve-time inputs match exactly.
    """
    img = Image.fromarray(rgb, mode="RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


class Normalize(nn.Module):
    """uint8 [0, 255] or float [0, 1] NCHW -> (x - mean) / std in float32, as one fused multiply-add.

    `scale` = 1 / std and `shift` = -mean / std are non-persistent buffers: they follow the module
    to its device and dtype but never enter a state dict (saved models keep the network's keys).
    With `channels_last` the output is NHWC in memory, the fast layout for convolutions on CPU
    (oneDNN) and on GPU tensor cores.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = True) -> None:
        super().__init__()
        m = torch.tensor([float(v) for v in mean]).view(1, -1, 1, 1)
        s = torch.tensor([float(v) for v in std]).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / s, persistent=False)
        self.register_buffer("shift", -m / s, persistent=False)
        self.register_buffer("scale_u8", 1.0 / (255.0 * s), persistent=False)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        scale = self.scale_u8 if x.dtype == torch.uint8 else self.scale
        return torch.addcmul(self.shift, x.float(), scale)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One-off helper (tests, notebooks): the same result as `Normalize(mean, std)(batch)`.

    It builds mean/std tensors on every call; training, evaluation and serving use the module.
    """
    return Normalize(mean, std, channels_last=False).to(batch.device)(batch)
