"""The fine-tuning loop: AdamW, warmup + cosine, label smoothing, early stopping, AMP, checkpoints.

Each epoch's randomness (shuffle, augmentation, dropout) is seeded from (seed, epoch), so a run
resumed from the checkpoint of epoch k continues exactly as the uninterrupted run would.
The checkpoint is rewritten atomically after every epoch.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vistune.augment import BatchAugment
from vistune.backbones import Backbone
from vistune.config import AugmentCfg, TrainCfg, to_dict
from vistune.data import PreparedData
from vistune.finetune import Strategy
from vistune.io import atomic_path
from vistune.preprocess import normalize
from vistune.schedule import WarmupCosine


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    resumed_from_epoch: int
    state_dict: dict[str, torch.Tensor] = field(repr=False)


def _batches(n: int, batch_size: int, g: torch.Generator | None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=g) if g is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def predict_logits(
    backbone: Backbone, images: torch.Tensor, device: torch.device, batch_size: int = 256, amp: bool = True
) -> torch.Tensor:
    """uint8 NCHW (CPU) -> float32 logits (CPU), model in eval mode."""
    backbone.model.eval()
    out = []
    for idx in _batches(images.shape[0], batch_size, None):
        x = normalize(_to_device(images[idx], device), backbone.mean, backbone.std)
        with _autocast(device, amp):
            out.append(backbone.model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def _fingerprint(tcfg: TrainCfg, acfg: AugmentCfg, data: PreparedData) -> str:
    key = {"train": to_dict(tcfg), "augment": to_dict(acfg), "classes": data.classes,
           "n": {s: len(a) for s, a in data.splits.items()}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("fingerprint") == fingerprint else None


def fit(
    backbone: Backbone,
    strategy: Strategy,
    data: PreparedData,
    tcfg: TrainCfg,
    acfg: AugmentCfg,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> FitResult:
    device = resolve_device(tcfg.device)
    model = backbone.model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    groups = strategy.param_groups(backbone, tcfg.weight_decay)
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(groups, lr=tcfg.lr, **opt_kw)
    train_x, train_y = data.tensors("train")
    val_x, val_y = data.tensors("val")
    steps_per_epoch = max(1, -(-len(train_y) // tcfg.batch_size))
    sched = WarmupCosine(tcfg.lr, tcfg.min_lr, int(tcfg.warmup_epochs * steps_per_epoch), tcfg.epochs * steps_per_epoch)
    augment = BatchAugment(acfg)
    fp = _fingerprint(tcfg, acfg, data)

    history: list[dict[str, float]] = []
    best_acc, best_epoch, bad_epochs, start = -1.0, -1, 0, 0
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    resumed = _load_checkpoint(checkpoint, fp)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        history, best_acc, best_epoch = resumed["history"], resumed["best_acc"], resumed["best_epoch"]
        bad_epochs, start, best_state = resumed["bad_epochs"], resumed["epoch"] + 1, resumed["best_state"]
    stopped_early = bool(resumed and resumed.get("stopped_early"))

    for epoch in range(start, tcfg.epochs):
        if stopped_early:
            break
        torch.manual_seed(tcfg.seed * 1000 + epoch)  # dropout / drop-path
        g = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch)
        strategy.set_train_mode(backbone)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(total=len(train_y), desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="img", disable=not progress, leave=False)
        for i, idx in enumerate(_batches(len(train_y), tcfg.batch_size, g)):
            lr = sched.apply(optimizer, epoch * steps_per_epoch + i)
            x = _to_device(train_x[idx], device).float().div_(255)
            y = _to_device(train_y[idx], device)
            x = normalize(augment(x, g), backbone.mean, backbone.std)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, tcfg.amp):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=tcfg.smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            bar.update(len(idx))
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        bar.close()
        train_time = time.perf_counter() - t0
        val_logits = predict_logits(backbone, val_x, device, amp=tcfg.amp)
        val_loss = float(F.cross_entropy(val_logits, val_y)) if len(val_y) else float("nan")
        val_acc = float((val_logits.argmax(1) == val_y).float().mean()) if len(val_y) else 0.0
        row = {
            "epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "images_per_s": seen / max(train_time, 1e-9),
        }
        history.append(row)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{tcfg.epochs}  train_loss {row['train_loss']:.4f}  "
                f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  {row['images_per_s']:.0f} img/s"
            )
        if val_acc > best_acc:
            best_acc, best_epoch, bad_epochs = val_acc, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stopped_early = tcfg.patience > 0 and bad_epochs >= tcfg.patience and epoch + 1 < tcfg.epochs
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "fingerprint": fp, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "history": history, "best_acc": best_acc, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_state": best_state, "stopped_early": stopped_early,
            })
        if stopped_early and progress:
            tqdm.write(f"early stop: no val improvement for {bad_epochs} epochs (best epoch {best_epoch})")

    model.load_state_dict(best_state)
    return FitResult(
        history=history, best_epoch=best_epoch, best_val_accuracy=best_acc, stopped_early=stopped_early,
        resumed_from_epoch=start, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
    )


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
