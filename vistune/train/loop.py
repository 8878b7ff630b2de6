"""The fine-tuning loop: AdamW, warmup + cosine, label smoothing, EMA, clipping, mixup/cutmix,
class weighting, early stopping, autocast (bf16, or fp16 + GradScaler), channels_last, DDP,
checkpoints.

`fit` only chains the named steps of `vistune.train.steps` (setup, one epoch, validate) and
`vistune.train.checkpoint` (resume, checkpoint). Speed on a GPU comes from keeping the host out of
the loop (`vistune.train.feed`): the uint8 train set is copied to the device once when it fits,
otherwise pinned batches are prefetched on a side stream; augmentation runs on the device and
nothing reads a device value inside an epoch.

Each epoch's randomness (shuffle, augmentation, dropout) is seeded from (seed, epoch), so a run
resumed from the checkpoint of epoch k continues exactly as the uninterrupted run would.
The checkpoint is rewritten atomically after every epoch (by rank 0 under DDP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from vistune.config import AugmentCfg, TrainCfg
from vistune.data.prepared import PreparedData
from vistune.models.backbones import Backbone
from vistune.train import checkpoint as ckpt
from vistune.train import distributed as vdist
from vistune.train.feed import TrainFeed
from vistune.train.finetune import Strategy
from vistune.train.steps import CLASS_WEIGHTING, LossFn, Run, class_weights, cross_entropy  # noqa: F401
from vistune.train.steps import epoch_order, run_epoch, setup, validate

__all__ = ["CLASS_WEIGHTING", "FitResult", "class_weights", "fit", "set_seed", "train_epoch"]


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    kept_epoch: int  # the epoch whose weights are returned (train.keep)
    stopped_early: bool
    resumed_from_epoch: int
    state_dict: dict[str, torch.Tensor] = field(repr=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(run: Run, feed: TrainFeed, epoch: int, loss_fn: LossFn, show: bool = False) -> dict[str, float]:
    """One timed epoch over this rank's shard, reduced over ranks: train_loss/accuracy, lr, images/s."""
    order, g = epoch_order(run.tcfg.seed, epoch, len(feed.y), run.dist, run.sample_weight)
    _sync(run.device)
    t0 = time.perf_counter()
    stats = run_epoch(run, feed, order, g, epoch, loss_fn, show)
    _sync(run.device)
    elapsed = time.perf_counter() - t0
    vdist.sync_buffers(run.model, run.dist)  # BatchNorm statistics: every rank keeps rank 0's
    seen, loss_sum, correct = vdist.all_sum(
        [stats.seen, float(stats.loss_sum), float(stats.correct)], run.dist, run.device
    )
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct / max(seen, 1),
        "lr": stats.lr,
        "images_per_s": seen / max(elapsed, 1e-9),
    }


def _row(train: dict[str, float], val: dict[str, float]) -> dict[str, float]:
    """One history row, columns in the order history.csv has always had."""
    head = {k: train[k] for k in ("epoch", "train_loss", "train_accuracy")}
    return {
        **head,
        "val_loss": val["val_loss"],
        "val_accuracy": val["val_accuracy"],
        "lr": train["lr"],
        "images_per_s": train["images_per_s"],
        **{k: v for k, v in val.items() if k.startswith("raw_")},
    }


def _report(row: dict[str, float], run: Run) -> None:
    tqdm.write(
        f"epoch {row['epoch']}/{run.tcfg.epochs}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
        f"val_acc {row['val_accuracy']:.4f}{' (EMA)' if run.ema else ''}  {row['images_per_s']:.0f} img/s"
    )


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
    loss_fn: LossFn | None = None,
) -> FitResult:
    """Fine-tune `backbone` in place; returns history and the best-on-val weights (plain keys).

    `loss_fn(logits, batch)` replaces cross-entropy (distillation); `on_epoch_end(epoch)` runs after
    each epoch's checkpoint is on disk (tests use it to crash).
    """
    dist = dist or vdist.DistInfo()
    train_x, train_y = data.tensors("train")
    val_x, val_y = data.tensors("val")
    run = setup(backbone, strategy, tcfg, acfg, train_y, len(data.classes), dist)
    fp = ckpt.fingerprint(tcfg, acfg, data, dist.world_size)
    prog = ckpt.resume(run, checkpoint, fp)
    feed = TrainFeed(train_x, train_y, run.device, tcfg.batch_size)
    loss_fn = loss_fn or cross_entropy(run)
    show = progress and dist.is_main
    for epoch in range(prog.start, tcfg.epochs):
        if prog.stopped_early:
            break
        row = _row(train_epoch(run, feed, epoch, loss_fn, show), validate(run, val_x, val_y))
        prog.record(row, run, epoch)
        if show:
            _report(row, run)
        if checkpoint is not None and dist.is_main:
            ckpt.save(checkpoint, run, prog, epoch, fp)
        vdist.barrier(dist)
        if prog.stopped_early and show:
            tqdm.write(f"early stop: no val improvement for {prog.bad_epochs} epochs (best epoch {prog.best_epoch})")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    run.model.load_state_dict(prog.best_state)
    return FitResult(
        history=prog.history,
        best_epoch=prog.best_epoch,
        best_val_accuracy=prog.best_acc,
        kept_epoch=prog.kept_epoch,
        stopped_early=prog.stopped_early,
        resumed_from_epoch=prog.start,
        state_dict={k: v.detach().cpu().contiguous() for k, v in strategy.export_state_dict(run.model).items()},
    )


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
