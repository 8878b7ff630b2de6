"""Latency and size of a model as it would be served: the one timer behind `evaluate`'s figures and the
compression variants' (`vistune.evaluate.variants`).

`evaluate` times through `predict_logits`, the served path: normalization inside the model, channels_last,
the same autocast as training and the test metrics (a model from `Classifier.load` is placed so). A
variant is timed through its own predictor (eager torch or ONNX Runtime) with the same clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vistune.models.backbones import Backbone
from vistune.models.device_policy import predict_logits

BATCH = 32  # the batched latency / throughput figure's batch size of a variant
Predict = Callable[[np.ndarray], np.ndarray]  # uint8 NCHW -> logits


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def call_times_ms(fn: Callable[[int], object], runs: int, device: torch.device | None = None) -> list[float]:
    """Wall-clock milliseconds of `fn(i)` for i in 0..runs-1, each call fenced by a device sync (CUDA)."""
    times = []
    for i in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        fn(i)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def measure(
    backbone: Backbone,
    model_file: Path,
    images: torch.Tensor,
    device: torch.device,
    runs: int = 20,
    batch_size: int = 64,
) -> dict[str, float]:
    """Single-image latency percentiles (ms) over `runs` calls after one warm-up, and
    batched images/s over one pass of `images` (warm-up first, so it is steady-state)."""
    out: dict[str, float] = {
        "model_size_mb": model_file.stat().st_size / 2**20,
        "params_m": sum(p.numel() for p in backbone.model.parameters()) / 1e6,
    }
    if len(images) == 0:
        return out
    predict_logits(backbone, images[:1], device, batch_size=1)
    n = len(images)
    times = call_times_ms(
        lambda i: predict_logits(backbone, images[i % n : i % n + 1], device, batch_size=1), runs, device
    )
    batch = images[:batch_size]
    predict_logits(backbone, batch, device, batch_size=batch_size)
    elapsed = call_times_ms(lambda _: predict_logits(backbone, batch, device, batch_size=batch_size), 1, device)[0]
    out.update(
        {
            "latency_p50_ms": float(np.percentile(times, 50)),
            "latency_p95_ms": float(np.percentile(times, 95)),
            "images_per_s": len(batch) / max(elapsed / 1000, 1e-9),
        }
    )
    return out


@dataclass
class Latency:
    p50_ms: float  # one image
    p95_ms: float
    p50_b32_ms: float  # one batch of BATCH images
    p95_b32_ms: float
    images_per_s: float  # BATCH / the batch's p50


def _percentiles(predict: Predict, batch: np.ndarray, runs: int) -> tuple[float, float]:
    predict(batch)  # warm-up
    times = call_times_ms(lambda _: predict(batch), runs)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def latency(predict: Predict, images: np.ndarray, runs: int) -> Latency:
    """Wall-clock per call at batch 1 and at batch `BATCH` (images repeated when fewer), `runs` calls each."""
    batch = images[np.arange(BATCH) % len(images)]
    p50, p95 = _percentiles(predict, images[:1], runs)
    b50, b95 = _percentiles(predict, batch, runs)
    return Latency(p50, p95, b50, b95, BATCH / (b50 / 1000) if b50 > 0 else 0.0)


def paired_speedup(predict: Predict, parent: Predict, images: np.ndarray, runs: int) -> float:
    """`parent`'s p50 / `predict`'s p50 on one image, each call of one followed by a call of the other, so
    both see the same machine load (the variants are built minutes apart; other jobs come and go)."""
    image = images[:1]
    predict(image), parent(image)  # warm-up
    mine, theirs = [], []
    for _ in range(runs):
        mine += call_times_ms(lambda _: predict(image), 1)
        theirs += call_times_ms(lambda _: parent(image), 1)
    return float(np.percentile(theirs, 50) / max(np.percentile(mine, 50), 1e-12))
