"""The device and precision policy every model run follows (training, evaluation, compression, the served
model): device choice, autocast precision, memory format, batched prediction and host-to-device copies.
Kept apart from the training loop so serving never imports it.

One rule everywhere (train, evaluate, robustness, latency, serving): channels_last weights and
inputs on every device, and `autocast(device, amp)` — bf16 on a CUDA device that supports it,
else fp16 (training adds a GradScaler); on CPU autocast stays off (fp32), as measured in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from vistune.models.backbones import Backbone


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def setup_device(device: torch.device) -> None:
    """Fast-math switches for CUDA: cuDNN autotuning (fixed input shapes) and TF32 matmuls/convs."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def amp_dtype(device: torch.device, amp: bool, prefer: str = "auto") -> torch.dtype | None:
    """The autocast dtype, or None for fp32: bf16 where the GPU has it, else fp16; CPU stays fp32.

    `prefer` ("bfloat16" / "float16", `train.amp_dtype`) pins one of the two on CUDA.
    """
    if not amp or device.type != "cuda":
        return None
    if prefer in _DTYPES:
        return _DTYPES[prefer]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, amp: bool, prefer: str = "auto"):
    dtype = amp_dtype(device, amp, prefer)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def to_memory_format(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Weights in channels_last (NHWC) or back to NCHW, in place; returns the model."""
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def place(backbone: Backbone, device: torch.device, channels_last: bool = True) -> nn.Module:
    """Move network + normalization to `device` in the memory format everything runs in; the `net`."""
    backbone.normalizer.channels_last = channels_last
    to_memory_format(backbone.model.to(device), channels_last)
    return backbone.net.to(device)


def batches(n: int, batch_size: int, g: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=g) if g is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU -> CUDA through pinned memory (asynchronous); a no-op or plain copy otherwise."""
    if device.type == "cuda" and x.device.type == "cpu":
        return (x if x.is_pinned() else x.pin_memory()).to(device, non_blocking=True)
    return x.to(device)


@torch.no_grad()
def predict_logits(
    backbone: Backbone, images: torch.Tensor, device: torch.device, batch_size: int = 256, amp: bool = True
) -> torch.Tensor:
    """uint8 NCHW (CPU) -> float32 logits (CPU), model in eval mode, same precision as training."""
    net = backbone.net.to(device).eval()
    out = []
    for idx in batches(images.shape[0], batch_size, None):
        with autocast(device, amp):
            out.append(net(to_device(images[idx], device)).float())
    return torch.cat(out).cpu() if out else torch.empty(0)  # one device->host copy, one sync
