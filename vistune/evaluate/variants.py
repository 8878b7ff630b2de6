"""Smaller, faster variants of a trained classifier, each measured the same way, and the gate a variant
passes before `register` ships it next to the fp32 model. The variants are made elsewhere: pruning in
`vistune.models.prune`, distillation in `vistune.train.distill`, ONNX export and int8 in
`vistune.models.onnx_export` / `vistune.models.quantize`; timing is `vistune.evaluate.latency`'s.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vistune.evaluate.latency import Predict, latency, paired_speedup
from vistune.models.backbones import Backbone
from vistune.models.device_policy import predict_logits
from vistune.models.prune import sparsity


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


def _sizes(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    return len(data) / 2**20, len(gzip.compress(data, compresslevel=6)) / 2**20


def torch_predictor(backbone: Backbone) -> Predict:
    device = torch.device("cpu")
    backbone.model.to(device).eval()
    return lambda x: predict_logits(backbone, torch.from_numpy(x), device).numpy()


def report_torch(
    name: str,
    backbone: Backbone,
    file: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    runs: int,
    parent: Predict | None = None,
) -> VariantReport:
    """Accuracy, size and latency of an eager torch model; `parent` given: also `speedup_b1` against it."""
    predict = torch_predictor(backbone)
    acc = float((predict_logits(backbone, images, torch.device("cpu")).argmax(1) == labels).float().mean())
    lat = latency(predict, images.numpy(), runs)
    size, gz = _sizes(file)
    speedup = paired_speedup(predict, parent, images.numpy(), runs) if parent is not None else 0.0
    return VariantReport(
        name,
        acc,
        size,
        gz,
        **dataclasses.asdict(lat),
        sparsity=sparsity(backbone.model),
        file=str(file),
        speedup_b1=speedup,
    )


# ---- ONNX ----------------------------------------------------------------------------------


def onnx_predictor(path: Path) -> Predict:
    """uint8 NCHW -> logits with ONNX Runtime (the graph normalizes, as the torch model does)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"images": np.ascontiguousarray(images, dtype=np.uint8)})[0]

    return predict


def report_onnx(
    name: str,
    path: Path,
    backbone: Backbone,
    images: torch.Tensor,
    labels: torch.Tensor,
    reference: torch.Tensor,
    runs: int,
    batch_size: int = 256,
    parent: Predict | None = None,
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
    return VariantReport(
        name,
        acc,
        size,
        gz,
        **dataclasses.asdict(lat),
        max_abs_diff=diff,
        int8_conv=ops["int8_conv"],
        conv=ops["conv"],
        file=str(path),
        speedup_b1=speedup,
    )


def clone_backbone(backbone: Backbone) -> Backbone:
    return copy.deepcopy(backbone)


# ---- the gate a variant passes before it is registered ----------------------------------------


def variant_gate(variant: VariantReport, parent: VariantReport, max_drop: float, max_slowdown: float) -> str:
    """Why `variant` should not be shipped next to `parent` (the fp32 model), '' when it should:
    test accuracy (same test split) at most `max_drop` below the parent's, single-image latency at
    most `max_slowdown` above it (timing noise on a shared CPU), no larger on the wire (gzip), and
    smaller or faster than the parent. Speed is judged on `speedup_b1` (both timed in alternation)
    where it was measured, else on the two p50s."""
    why = []
    if parent.accuracy - variant.accuracy > max_drop + 1e-9:
        why.append(
            f"accuracy {variant.accuracy:.4f} is more than compress.max_drop={max_drop} below "
            f"fp32's {parent.accuracy:.4f}"
        )
    ratio = 1 / variant.speedup_b1 if variant.speedup_b1 > 0 else variant.p50_ms / max(parent.p50_ms, 1e-12)
    if ratio > 1 + max_slowdown:
        how = "timed in alternation with fp32" if variant.speedup_b1 > 0 else f"fp32's p50 {parent.p50_ms:.2f} ms"
        why.append(f"batch-1 latency {ratio:.2f}x fp32's ({how}) is more than 1 + compress.max_slowdown={max_slowdown}")
    if variant.gzip_mb > parent.gzip_mb:
        why.append(f"larger than fp32 ({variant.gzip_mb:.2f} MB > {parent.gzip_mb:.2f} MB gzip)")
    elif not (variant.gzip_mb < parent.gzip_mb or ratio < 1):
        why.append("neither smaller nor faster than fp32")
    return "; ".join(why)
