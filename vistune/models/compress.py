"""Smaller, faster variants of a trained classifier, each measured the same way.

- `onnx`: exported with torch.onnx — normalization included, uint8 images in, TF-"same" padding as
  constants (`vistune.models.onnx_export`) — and checked against the torch outputs (max abs difference).
- `onnx_int8`: static calibrated int8 of the whole graph, every Conv included (`vistune.models.quantize`).
- `onnx_int8_dynamic`: the older dynamic int8 of MatMul/Gemm only, kept as a measured comparison.
- `pruned`: global magnitude (L1) pruning of conv/linear weights, fine-tuned with masks held, made permanent.
- `distilled`: a smaller student trained on the teacher's softened outputs plus the labels.

onnx / onnxruntime are imported lazily: the rest of the core never needs them.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistune.config import AugmentCfg, TrainCfg
from vistune.data.prepared import PreparedData
from vistune.models.backbones import Backbone
from vistune.models.inference import autocast, place, predict_logits, to_memory_format
from vistune.models.onnx_export import export_onnx  # noqa: F401  (re-exported: callers import it from here)
from vistune.train import steps
from vistune.train.feed import TrainFeed
from vistune.train.finetune import create_strategy


BATCH = 32  # the batched latency / throughput figure's batch size
Predict = Callable[[np.ndarray], np.ndarray]  # uint8 NCHW -> logits


@dataclass
class Latency:
    p50_ms: float  # one image
    p95_ms: float
    p50_b32_ms: float  # one batch of BATCH images
    p95_b32_ms: float
    images_per_s: float  # BATCH / the batch's p50


@dataclass
class VariantReport:
    variant: str
    accuracy: float
    size_mb: float
    gzip_mb: float  # what sparsity buys on disk / over the wire
    p50_ms: float
    p95_ms: float
    p50_b32_ms: float = 0.0
    p95_b32_ms: float = 0.0
    images_per_s: float = 0.0
    sparsity: float = 0.0
    max_abs_diff: float = 0.0  # vs the fp32 torch model's logits (onnx variants)
    int8_conv: int = 0  # Conv nodes that run on int8 weights and activations (onnx variants)
    conv: int = 0
    file: str = ""
    # fp32 parent's p50 / this p50 at batch 1, the two timed call by call in alternation (the same load on
    # a shared CPU); what the gate's speed checks use. 0 = not measured (the parent itself)
    speedup_b1: float = 0.0


def _percentiles(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, runs: int) -> tuple[float, float]:
    predict(batch)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        predict(batch)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def latency(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, runs: int) -> Latency:
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
        for fn, times in ((predict, mine), (parent, theirs)):
            t0 = time.perf_counter()
            fn(image)
            times.append(time.perf_counter() - t0)
    return float(np.percentile(theirs, 50) / max(np.percentile(mine, 50), 1e-12))


def _sizes(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    return len(data) / 2**20, len(gzip.compress(data, compresslevel=6)) / 2**20


def sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / max(total, 1))


def torch_predictor(backbone: Backbone) -> Predict:
    device = torch.device("cpu")
    backbone.model.to(device).eval()
    return lambda x: predict_logits(backbone, torch.from_numpy(x), device).numpy()


def report_torch(name: str, backbone: Backbone, file: Path, images: torch.Tensor, labels: torch.Tensor,
                 runs: int, parent: Predict | None = None) -> VariantReport:
    """Accuracy, size and latency of an eager torch model; `parent` given: also `speedup_b1` against it."""
    predict = torch_predictor(backbone)
    acc = float((predict_logits(backbone, images, torch.device("cpu")).argmax(1) == labels).float().mean())
    lat = latency(predict, images.numpy(), runs)
    size, gz = _sizes(file)
    speedup = paired_speedup(predict, parent, images.numpy(), runs) if parent is not None else 0.0
    return VariantReport(name, acc, size, gz, **dataclasses.asdict(lat), sparsity=sparsity(backbone.model),
                         file=str(file), speedup_b1=speedup)


# ---- ONNX ----------------------------------------------------------------------------------


def onnx_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NCHW -> logits with ONNX Runtime (the graph normalizes, as the torch model does)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"images": np.ascontiguousarray(images, dtype=np.uint8)})[0]

    return predict


def report_onnx(name: str, path: Path, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
                reference: torch.Tensor, runs: int, batch_size: int = 256, parent: Predict | None = None
                ) -> VariantReport:
    from vistune.models.quantize import integer_ops

    predict = onnx_predictor(path)
    logits = np.concatenate([predict(images[i : i + batch_size].numpy()) for i in range(0, len(images), batch_size)])
    acc = float((logits.argmax(1) == labels.numpy()).mean())
    lat = latency(predict, images.numpy(), runs)
    size, gz = _sizes(path)
    diff = float(np.abs(logits - reference.numpy()).max()) if len(logits) else 0.0
    ops = integer_ops(path)
    speedup = paired_speedup(predict, parent, images.numpy(), runs) if parent is not None else 0.0
    return VariantReport(name, acc, size, gz, **dataclasses.asdict(lat), max_abs_diff=diff, int8_conv=ops["int8_conv"],
                         conv=ops["conv"], file=str(path), speedup_b1=speedup)


# ---- pruning ---------------------------------------------------------------------------------

def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, amount: float) -> None:
    """Zero the `amount` fraction of smallest-magnitude conv/linear weights across the network.

    Masks stay attached (torch.nn.utils.prune) so a fine-tune keeps pruned weights at zero;
    call `make_permanent` afterwards.
    """
    from torch.nn.utils import prune

    to_memory_format(model, channels_last=False)  # global pruning flattens weights with .view(-1)
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)


def make_permanent(model: nn.Module) -> None:
    from torch.nn.utils import prune

    for module, name in prunable(model):
        if prune.is_pruned(module):
            prune.remove(module, name)


# ---- distillation ----------------------------------------------------------------------------

def kd_loss(teacher_net: nn.Module, device: torch.device, temperature: float, alpha: float) -> steps.LossFn:
    """`alpha` * KL(teacher/T || student/T) * T^2 + (1 - alpha) * CE(labels) on the student's batch."""

    def loss(logits: torch.Tensor, b: steps.Batch) -> torch.Tensor:
        with torch.no_grad(), autocast(device, True):
            soft = F.softmax(teacher_net(b.x).float() / temperature, dim=1)
        kd = F.kl_div(F.log_softmax(logits.float() / temperature, dim=1), soft, reduction="batchmean") * temperature**2
        hard = F.cross_entropy(logits.float(), b.target if b.target is not None else b.y)
        return alpha * kd + (1 - alpha) * hard

    return loss


def distill(teacher: Backbone, student: Backbone, data: PreparedData, acfg: AugmentCfg, epochs: int,
            lr: float, batch_size: int, temperature: float, alpha: float, seed: int, device: str = "cpu",
            strategy: str = "full", unfreeze_blocks: int = 2) -> list[float]:
    """Train `student` with `kd_loss` through the training loop's own steps (setup, one epoch).

    Both see the same augmented batch, each through its own normalization (`Backbone.net`); AdamW,
    half an epoch of warmup, cosine to lr / 100. `strategy` decides what the student trains, as
    `train.strategy` does for the teacher (a pretrained student on a few hundred photos keeps its
    ImageNet features; a student from scratch needs `full`; `partial` trains the last `unfreeze_blocks`
    blocks). Returns the per-epoch mean loss; the student keeps its last weights.
    """
    tcfg = TrainCfg(model=student.spec, pretrained="none", strategy=strategy, unfreeze_blocks=unfreeze_blocks,
                    epochs=epochs, batch_size=batch_size, lr=lr, min_lr=lr * 0.01, weight_decay=0.05,
                    warmup_epochs=0.5, smoothing=0.0, patience=0, device=device, seed=seed)
    x, y = data.tensors("train")
    run = steps.setup(student, create_strategy(strategy, tcfg), tcfg, acfg, y, len(data.classes))
    teacher_net = place(teacher, run.device).eval()
    loss_fn = kd_loss(teacher_net, run.device, temperature, alpha)
    feed = TrainFeed(x, y, run.device, batch_size)
    losses = []
    for epoch in range(epochs):
        order, g = steps.epoch_order(seed, epoch, len(y), run.dist)
        stats = steps.run_epoch(run, feed, order, g, epoch, loss_fn)
        losses.append(float(stats.loss_sum) / max(stats.seen, 1))
    student.model.eval()
    return losses


def clone_backbone(backbone: Backbone) -> Backbone:
    return copy.deepcopy(backbone)


# ---- the gate a variant passes before it is registered ----------------------------------------

def gate(variant: VariantReport, parent: VariantReport, max_drop: float, max_slowdown: float) -> str:
    """Why `variant` should not be shipped next to `parent` (the fp32 model), '' when it should:
    test accuracy (same test split) at most `max_drop` below the parent's, single-image latency at
    most `max_slowdown` above it (timing noise on a shared CPU), no larger on the wire (gzip), and
    smaller or faster than the parent. Speed is judged on `speedup_b1` (both timed in alternation)
    where it was measured, else on the two p50s."""
    why = []
    if parent.accuracy - variant.accuracy > max_drop + 1e-9:
        why.append(f"accuracy {variant.accuracy:.4f} is more than compress.max_drop={max_drop} below "
                   f"fp32's {parent.accuracy:.4f}")
    ratio = 1 / variant.speedup_b1 if variant.speedup_b1 > 0 else variant.p50_ms / max(parent.p50_ms, 1e-12)
    if ratio > 1 + max_slowdown:
        how = "timed in alternation with fp32" if variant.speedup_b1 > 0 else f"fp32's p50 {parent.p50_ms:.2f} ms"
        why.append(f"batch-1 latency {ratio:.2f}x fp32's ({how}) is more than 1 + compress.max_slowdown="
                   f"{max_slowdown}")
    if variant.gzip_mb > parent.gzip_mb:
        why.append(f"larger than fp32 ({variant.gzip_mb:.2f} MB > {parent.gzip_mb:.2f} MB gzip)")
    elif not (variant.gzip_mb < parent.gzip_mb or ratio < 1):
        why.append("neither smaller nor faster than fp32")
    return "; ".join(why)
