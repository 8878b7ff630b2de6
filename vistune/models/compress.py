"""Smaller, faster variants of a trained classifier, each measured the same way.

- `onnx`: exported with torch.onnx and checked against the torch outputs (max abs difference).
- `onnx_int8`: ONNX Runtime dynamic int8 quantization of MatMul/Gemm (see `quantize_int8`).
- `pruned`: global magnitude (L1) pruning of conv/linear weights, fine-tuned with masks held, made permanent.
- `distilled`: a smaller student trained on the teacher's softened outputs plus the labels.

onnx / onnxruntime are imported lazily: the rest of the core never needs them.
"""

from __future__ import annotations

import copy
import gzip
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistune.train.augment import BatchAugment
from vistune.models.backbones import Backbone
from vistune.config import AugmentCfg
from vistune.data.prepared import PreparedData
from vistune.data.preprocess import normalize
from vistune.train.schedule import WarmupCosine
from vistune.models.inference import batches, predict_logits


@dataclass
class VariantReport:
    variant: str
    accuracy: float
    size_mb: float
    gzip_mb: float  # what sparsity buys on disk / over the wire
    p50_ms: float
    p95_ms: float
    sparsity: float = 0.0
    max_abs_diff: float = 0.0  # vs the fp32 torch model's logits (onnx variants)
    file: str = ""


def _percentiles(predict: Callable[[np.ndarray], np.ndarray], one: np.ndarray, runs: int) -> tuple[float, float]:
    predict(one)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        predict(one)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _sizes(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    return len(data) / 2**20, len(gzip.compress(data, compresslevel=6)) / 2**20


def sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / max(total, 1))


def report_torch(name: str, backbone: Backbone, file: Path, images: torch.Tensor, labels: torch.Tensor,
                 runs: int) -> VariantReport:
    device = torch.device("cpu")
    backbone.model.to(device).eval()
    acc = float((predict_logits(backbone, images, device).argmax(1) == labels).float().mean())
    p50, p95 = _percentiles(lambda x: predict_logits(backbone, torch.from_numpy(x), device).numpy(),
                            images[:1].numpy(), runs)
    size, gz = _sizes(file)
    return VariantReport(name, acc, size, gz, p50, p95, sparsity(backbone.model), file=str(file))


# ---- ONNX ----------------------------------------------------------------------------------

def export_onnx(backbone: Backbone, image_size: int, path: Path) -> None:
    """Export with the normalized float input `x` (N x 3 x S x S) and a dynamic batch axis."""
    model = backbone.model.cpu().eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    buf = io.BytesIO()
    torch.onnx.export(model, (dummy,), buf, dynamo=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 for MatMul/Gemm only.

    Measured on the digits EfficientNet-Lite0: dynamic int8 on the (depthwise) convolutions
    drops test accuracy from 0.97 to 0.10 (per-tensor activation scales), and ORT's static QDQ
    path fails on the TF-"same" padded depthwise convs, so convolutions stay fp32 here.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])


def onnx_predictor(path: Path, mean, std) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NCHW -> logits with ONNX Runtime, normalized exactly as the torch model is."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        x = normalize(torch.from_numpy(np.ascontiguousarray(images)), mean, std).numpy()
        return session.run(None, {"x": x})[0]

    return predict


def report_onnx(name: str, path: Path, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
                reference: torch.Tensor, runs: int, batch_size: int = 256) -> VariantReport:
    predict = onnx_predictor(path, backbone.mean, backbone.std)
    logits = np.concatenate([predict(images[i : i + batch_size].numpy()) for i in range(0, len(images), batch_size)])
    acc = float((logits.argmax(1) == labels.numpy()).mean())
    p50, p95 = _percentiles(predict, images[:1].numpy(), runs)
    size, gz = _sizes(path)
    diff = float(np.abs(logits - reference.numpy()).max()) if len(logits) else 0.0
    return VariantReport(name, acc, size, gz, p50, p95, max_abs_diff=diff, file=str(path))


# ---- pruning ---------------------------------------------------------------------------------

def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, amount: float) -> None:
    """Zero the `amount` fraction of smallest-magnitude conv/linear weights across the network.

    Masks stay attached (torch.nn.utils.prune) so a fine-tune keeps pruned weights at zero;
    call `make_permanent` afterwards.
    """
    from torch.nn.utils import prune

    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)


def make_permanent(model: nn.Module) -> None:
    from torch.nn.utils import prune

    for module, name in prunable(model):
        if prune.is_pruned(module):
            prune.remove(module, name)


# ---- distillation ----------------------------------------------------------------------------

def distill(teacher: Backbone, student: Backbone, data: PreparedData, acfg: AugmentCfg, epochs: int,
            lr: float, batch_size: int, temperature: float, alpha: float, seed: int) -> list[float]:
    """Train `student` on `alpha` * KL(teacher/T || student/T) * T^2 + (1 - alpha) * CE(labels).

    Both see the same augmented batch; each model gets its own normalization. Returns the
    per-epoch mean loss.
    """
    device = torch.device("cpu")
    teacher.model.to(device).eval()
    model = student.model.to(device)
    x_all, y_all = data.tensors("train")
    steps = max(1, -(-len(y_all) // batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = WarmupCosine(lr, lr * 0.01, steps // 2, epochs * steps)
    augment = BatchAugment(acfg)
    losses = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        model.train()
        total, seen = 0.0, 0
        for i, idx in enumerate(batches(len(y_all), batch_size, g)):
            sched.apply(opt, epoch * steps + i)
            x01 = augment(x_all[idx].float().div_(255), g)
            with torch.no_grad():
                soft = F.softmax(teacher.model(normalize(x01, teacher.mean, teacher.std)) / temperature, dim=1)
            logits = model(normalize(x01, student.mean, student.std))
            kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean") * temperature**2
            loss = alpha * kd + (1 - alpha) * F.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        losses.append(total / max(seen, 1))
    model.eval()
    return losses


def clone_backbone(backbone: Backbone) -> Backbone:
    return copy.deepcopy(backbone)
