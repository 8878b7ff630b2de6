"""The fine-tuning loop: AdamW, warmup + cosine, label smoothing, EMA, clipping, mixup/cutmix,
class weighting, early stopping, bf16 autocast, DDP, checkpoints.

Speed on a GPU comes from keeping the host out of the loop: the uint8 training set is copied
to the device once when it fits (otherwise pinned batches go over with non_blocking copies),
augmentation runs on the device, and nothing calls `.item()` inside an epoch.

Each epoch's randomness (shuffle, augmentation, dropout) is seeded from (seed, epoch), so a run
resumed from the checkpoint of epoch k continues exactly as the uninterrupted run would.
The checkpoint is rewritten atomically after every epoch (by rank 0 under DDP).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vistune.train import adversarial as vadv
from vistune.train import distributed as vdist
from vistune.train.augment import BatchAugment
from vistune.models.backbones import Backbone
from vistune.config import AugmentCfg, TrainCfg, to_dict
from vistune.data.prepared import PreparedData
from vistune.train.ema import ModelEma
from vistune.errors import ConfigError
from vistune.train.finetune import Strategy
from vistune.io import atomic_path
from vistune.train.mix import mix_batch, soft_targets
from vistune.data.preprocess import normalize
from vistune.models.inference import autocast, batches, predict_logits, resolve_device, to_device
from vistune.train.schedule import WarmupCosine

CLASS_WEIGHTING = ("none", "loss", "sampler")
_DEVICE_DATA_FRACTION = 0.25  # copy the train set to the GPU when it takes under this share of free memory


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    resumed_from_epoch: int
    state_dict: dict[str, torch.Tensor] = field(repr=False)


def _fingerprint(tcfg: TrainCfg, acfg: AugmentCfg, data: PreparedData, world_size: int) -> str:
    train = {k: v for k, v in to_dict(tcfg).items() if k not in ("device", "compile")}  # resume on any device
    if tcfg.adversarial == "none":  # checkpoints from before the adversarial options still resume
        train = {k: v for k, v in train.items() if k != "adversarial" and not k.startswith("adv_")}
    key = {"train": train, "augment": to_dict(acfg), "classes": data.classes,
           "n": {s: len(a) for s, a in data.splits.items()}, "world_size": world_size}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("fingerprint") == fingerprint else None


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (C * count_c): each class contributes equally in total; absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, len(labels) / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _evaluate(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool) -> tuple[float, float]:
    if not len(y):
        return float("nan"), 0.0
    logits = predict_logits(backbone, x, device, amp=amp)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


class _TrainSet:
    """The uint8 train images, on the device when they fit (one copy per run), else pinned on the host."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.device = device
        on_device = False
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            on_device = x.numel() < _DEVICE_DATA_FRACTION * free
        self.x = x.to(device) if on_device else (x.pin_memory() if device.type == "cuda" else x)
        self.y = y.to(device) if on_device else y
        self.on_device = on_device

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on_device:
            idx = idx.to(self.device, non_blocking=True)
            return self.x[idx], self.y[idx]
        return to_device(self.x[idx], self.device), to_device(self.y[idx], self.device)


def fit(
    backbone: Backbone,
    strategy: Strategy,
    data: PreparedData,
    tcfg: TrainCfg,
    acfg: AugmentCfg,
    checkpoint: Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    dist: vdist.DistInfo | None = None,
) -> FitResult:
    """Fine-tune `backbone` in place; returns history and the best-on-val weights (plain keys).

    `on_epoch_end(epoch)` runs after each epoch's checkpoint is on disk (tests use it to crash).
    """
    if tcfg.class_weighting not in CLASS_WEIGHTING:
        raise ConfigError(f"params.yaml: train.class_weighting {tcfg.class_weighting!r} is unknown; valid: {list(CLASS_WEIGHTING)}")
    vadv.check_adversarial(tcfg.adversarial, tcfg.adv_epsilon, tcfg.adv_steps, tcfg.adv_step_size, tcfg.adv_fraction)
    dist = dist or vdist.DistInfo()
    device = resolve_device(tcfg.device)
    model = backbone.model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    groups = strategy.param_groups(backbone, tcfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    opt_kw = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(groups, lr=tcfg.lr, **opt_kw)
    ema = ModelEma(model, tcfg.model_ema_decay) if tcfg.model_ema else None
    num_classes = len(data.classes)
    train_x, train_y = data.tensors("train")
    val_x, val_y = data.tensors("val")
    per_rank = -(-len(train_y) // dist.world_size)
    steps_per_epoch = max(1, -(-per_rank // tcfg.batch_size))
    sched = WarmupCosine(tcfg.lr, tcfg.min_lr, int(tcfg.warmup_epochs * steps_per_epoch), tcfg.epochs * steps_per_epoch)
    augment = BatchAugment(acfg)
    fp = _fingerprint(tcfg, acfg, data, dist.world_size)
    weights = class_weights(train_y, num_classes)
    loss_weight = weights.to(device) if tcfg.class_weighting == "loss" else None
    sample_weight = weights[train_y] if tcfg.class_weighting == "sampler" else None
    mixing = acfg.mixup > 0 or acfg.cutmix > 0
    adversarial = tcfg.adversarial != "none"

    def model_input(x01: torch.Tensor) -> torch.Tensor:
        x = normalize(x01, backbone.mean, backbone.std)
        return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x

    history: list[dict[str, float]] = []
    best_acc, best_epoch, bad_epochs, start = -1.0, -1, 0, 0
    best_state = _cpu_state(ema.module if ema else model)
    resumed = _load_checkpoint(checkpoint, fp)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if ema is not None:
            ema.load_state_dict(resumed["ema"])
        history, best_acc, best_epoch = resumed["history"], resumed["best_acc"], resumed["best_epoch"]
        bad_epochs, start, best_state = resumed["bad_epochs"], resumed["epoch"] + 1, resumed["best_state"]
    stopped_early = bool(resumed and resumed.get("stopped_early"))

    train_model: torch.nn.Module = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg.compile:
        train_model = torch.compile(train_model)
    train_set = _TrainSet(train_x, train_y, device)
    show = progress and dist.is_main

    for epoch in range(start, tcfg.epochs):
        if stopped_early:
            break
        base_seed = tcfg.seed * 1000 + epoch
        torch.manual_seed(base_seed + 7919 * dist.rank)  # dropout / drop-path
        g = torch.Generator().manual_seed(base_seed)
        if sample_weight is not None:
            order = torch.multinomial(sample_weight, len(train_y), replacement=True, generator=g)
        else:
            order = torch.randperm(len(train_y), generator=g)
        order = vdist.shard(order, dist)  # same permutation on every rank, a different slice each
        if dist.rank:
            g.manual_seed(base_seed + 7919 * dist.rank)  # augmentation differs per rank
        strategy.set_train_mode(backbone)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen, lr = 0, sched.lr_at(epoch * steps_per_epoch)
        bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="img", disable=not show, leave=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for i in range(0, len(order), tcfg.batch_size):
            idx = order[i : i + tcfg.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # a batch of one breaks BatchNorm in train mode
            lr = sched.apply(optimizer, epoch * steps_per_epoch + i // tcfg.batch_size)
            xb, y = train_set.batch(idx)
            x = augment(xb.float().div_(255), g)
            if mixing:
                x, target = mix_batch(x, soft_targets(y, num_classes, tcfg.smoothing), acfg.mixup, acfg.cutmix, g)
            if adversarial and vadv.is_adversarial_batch(i // tcfg.batch_size, tcfg.adv_fraction):
                # attack the plain module (not the DDP/compiled wrapper): only pixels get gradients
                with autocast(device, tcfg.amp):
                    x = vadv.perturb(tcfg.adversarial, model, x, target if mixing else y, tcfg.adv_epsilon,
                                     model_input, tcfg.adv_steps, tcfg.adv_step_size)
            x = model_input(x)
            with autocast(device, tcfg.amp):
                logits = train_model(x)
            if mixing:
                loss = F.cross_entropy(logits.float(), target, weight=loss_weight)
            else:
                loss = F.cross_entropy(logits.float(), y, weight=loss_weight, label_smoothing=tcfg.smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, tcfg.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            seen += len(idx)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            bar.update(len(idx))
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - t0
        seen_all, loss_all, correct_all = vdist.all_sum([seen, float(loss_sum), float(correct)], dist, device)
        val_loss, val_acc, raw = float("nan"), 0.0, None
        if dist.is_main:
            val_loss, val_acc = _evaluate(backbone, val_x, val_y, device, tcfg.amp)
            if ema is not None:
                raw = (val_loss, val_acc)
                val_loss, val_acc = _evaluate(dataclasses.replace(backbone, model=ema.module), val_x, val_y, device, tcfg.amp)
        val_loss, val_acc = vdist.broadcast([val_loss, val_acc], dist, device)
        row = {
            "epoch": epoch + 1, "train_loss": loss_all / max(seen_all, 1), "train_accuracy": correct_all / max(seen_all, 1),
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "images_per_s": seen_all / max(train_time, 1e-9),
        }
        if raw is not None:
            row.update(raw_val_loss=raw[0], raw_val_accuracy=raw[1])
        history.append(row)
        if show:
            tqdm.write(
                f"epoch {epoch + 1}/{tcfg.epochs}  train_loss {row['train_loss']:.4f}  "
                f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}{' (EMA)' if ema else ''}  {row['images_per_s']:.0f} img/s"
            )
        if val_acc > best_acc:
            best_acc, best_epoch, bad_epochs = val_acc, epoch + 1, 0
            best_state = _cpu_state(ema.module if ema else model)
        else:
            bad_epochs += 1
        stopped_early = tcfg.patience > 0 and bad_epochs >= tcfg.patience and epoch + 1 < tcfg.epochs
        if checkpoint is not None and dist.is_main:
            _save_checkpoint(checkpoint, {
                "fingerprint": fp, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema else None, "history": history, "best_acc": best_acc,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "best_state": best_state,
                "stopped_early": stopped_early,
            })
        vdist.barrier(dist)
        if stopped_early and show:
            tqdm.write(f"early stop: no val improvement for {bad_epochs} epochs (best epoch {best_epoch})")
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    model.load_state_dict(best_state)
    return FitResult(
        history=history, best_epoch=best_epoch, best_val_accuracy=best_acc, stopped_early=stopped_early,
        resumed_from_epoch=start,
        state_dict={k: v.detach().cpu() for k, v in strategy.export_state_dict(model).items()},
    )


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
