"""Inference shared by evaluation, compression and the served model: device choice, batching,
host-to-device copies and autocast. Kept apart from the training loop so serving never imports it."""

from __future__ import annotations

from typing import Iterator

import torch

from vistune.data.preprocess import normalize
from vistune.models.backbones import Backbone


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def batches(n: int, batch_size: int, g: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=g) if g is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def predict_logits(
    backbone: Backbone, images: torch.Tensor, device: torch.device, batch_size: int = 256, amp: bool = True
) -> torch.Tensor:
    """uint8 NCHW (CPU) -> float32 logits (CPU), model in eval mode."""
    backbone.model.eval()
    out = []
    for idx in batches(images.shape[0], batch_size, None):
        x = normalize(to_device(images[idx], device), backbone.mean, backbone.std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out.append(backbone.model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
