"""Latency and size of the model as it would be served: file size, throughput, p50/p95.

Timed through `predict_logits`, the served path: normalization inside the model, channels_last,
the same autocast as training and the test metrics (a model from `Classifier.load` is placed so).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from vistune.models.backbones import Backbone
from vistune.models.inference import predict_logits


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(backbone: Backbone, model_file: Path, images: torch.Tensor, device: torch.device,
            runs: int = 20, batch_size: int = 64) -> dict[str, float]:
    """Single-image latency percentiles (ms) over `runs` calls after one warm-up, and
    batched images/s over one pass of `images` (warm-up first, so it is steady-state)."""
    out: dict[str, float] = {
        "model_size_mb": model_file.stat().st_size / 2**20,
        "params_m": sum(p.numel() for p in backbone.model.parameters()) / 1e6,
    }
    if len(images) == 0:
        return out
    one = images[:1]
    predict_logits(backbone, one, device, batch_size=1)
    times = []
    for i in range(runs):
        x = images[i % len(images) : i % len(images) + 1]
        _sync(device)
        t0 = time.perf_counter()
        predict_logits(backbone, x, device, batch_size=1)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    batch = images[:batch_size]
    predict_logits(backbone, batch, device, batch_size=batch_size)
    _sync(device)
    t0 = time.perf_counter()
    predict_logits(backbone, batch, device, batch_size=batch_size)
    _sync(device)
    elapsed = time.perf_counter() - t0
    out.update({
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p95_ms": float(np.percentile(times, 95)),
        "images_per_s": len(batch) / max(elapsed, 1e-9),
    })
    return out
