"""The named steps of a fine-tuning run — setup, resume, one epoch, validate, checkpoint — each
usable alone: `fit` chains them with cross-entropy, `vistune.train.distill.distill` with its
own loss, and the GPU tests run one epoch under `torch.cuda.set_sync_debug_mode("error")`.

Nothing inside `run_epoch` reads a device value back to the host: losses and hits accumulate in
device tensors, the caller reduces them after the epoch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vistune.config import AugmentCfg, TrainCfg
from vistune.errors import ConfigError
from vistune.models.backbones import Backbone
from vistune.models.device_policy import amp_dtype, autocast, place, predict_logits, resolve_device, setup_device
from vistune.train import adversarial as vadv
from vistune.train import distributed as vdist
from vistune.train.augment import BatchAugment
from vistune.train.ema import ModelEma
from vistune.train.feed import TrainFeed
from vistune.train.finetune import Strategy
from vistune.train.mix import mix_batch, soft_targets
from vistune.train.schedule import WarmupCosine

CLASS_WEIGHTING = ("none", "loss", "sampler")
LR_SCALING = ("none", "linear", "sqrt")


@dataclass
class Batch:
    x: torch.Tensor  # the model's input: augmented [0, 1] float pixels, NCHW, on the device
    y: torch.Tensor  # integer labels
    target: torch.Tensor | None = None  # soft targets when mixup / cutmix mixed the batch


LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits, batch) -> scalar loss


@dataclass
class Run:
    """What one training run holds: the placed model, its wrappers, optimizer and schedule."""

    backbone: Backbone
    strategy: Strategy
    tcfg: TrainCfg
    acfg: AugmentCfg
    device: torch.device
    dist: vdist.DistInfo
    net: nn.Module  # normalization + network on the device (validated, attacked)
    train_model: nn.Module  # `net` wrapped for DDP / torch.compile (what the step runs)
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sched: WarmupCosine
    ema: ModelEma | None
    augment: BatchAugment
    num_classes: int
    steps_per_epoch: int
    loss_weight: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None

    @property
    def model(self) -> nn.Module:
        """The bare network (checkpoints, EMA, the saved model's keys)."""
        return self.backbone.model


@dataclass
class EpochStats:
    seen: int
    loss_sum: torch.Tensor  # on the device
    correct: torch.Tensor
    lr: float


def check_config(tcfg: TrainCfg) -> None:
    if tcfg.lr_scaling not in LR_SCALING:
        raise ConfigError(f"params.yaml: train.lr_scaling {tcfg.lr_scaling!r} is unknown; valid: {list(LR_SCALING)}")
    vadv.check_adversarial(tcfg.adversarial, tcfg.adv_epsilon, tcfg.adv_steps, tcfg.adv_step_size, tcfg.adv_fraction)


def scaled_lr(lr: float, world_size: int, rule: str) -> float:
    """`train.lr` is the LR for one process's `batch_size`; N data-parallel ranks train on N x that
    batch, so `linear` (Goyal et al. 2017) multiplies by N, `sqrt` by sqrt(N), `none` keeps it."""
    return lr * {"none": 1.0, "linear": float(world_size), "sqrt": math.sqrt(world_size)}[rule]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (C * count_c): each class contributes equally in total; absent classes get 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, len(labels) / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))


def _wrap(net: nn.Module, tcfg: TrainCfg, device: torch.device, dist: vdist.DistInfo) -> nn.Module:
    model: nn.Module = net
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(model) if tcfg.compile else model


def _sync_bn(backbone: Backbone, tcfg: TrainCfg, device: torch.device, dist: vdist.DistInfo) -> None:
    """BatchNorm statistics over the global batch (small per-rank batches); needs CUDA (nccl)."""
    if not (tcfg.sync_bn and dist.enabled):
        return
    if device.type != "cuda":
        raise ConfigError(
            "params.yaml: train.sync_bn needs CUDA devices (SyncBatchNorm has no CPU/gloo kernel); "
            "set train.sync_bn: false for CPU data-parallel runs"
        )
    backbone.model = nn.SyncBatchNorm.convert_sync_batchnorm(backbone.model)


def setup(
    backbone: Backbone,
    strategy: Strategy,
    tcfg: TrainCfg,
    acfg: AugmentCfg,
    train_y: torch.Tensor,
    num_classes: int,
    dist: vdist.DistInfo | None = None,
) -> Run:
    """Check the recipe, place the model (channels_last), build optimizer, scaler, schedule, EMA, wrappers."""
    check_config(tcfg)
    dist = dist or vdist.DistInfo()
    device = resolve_device(tcfg.device)
    setup_device(device)
    strategy.prepare(backbone)  # adapters exist before the model moves, so they move with it
    _sync_bn(backbone, tcfg, device, dist)
    net = place(backbone, device, tcfg.channels_last)
    groups = strategy.param_groups(backbone, tcfg.weight_decay)
    lr = scaled_lr(tcfg.lr, dist.world_size, tcfg.lr_scaling)
    optimizer = torch.optim.AdamW(groups, lr=lr, **({"fused": True} if device.type == "cuda" else {}))
    fp16 = amp_dtype(device, tcfg.amp, tcfg.amp_dtype) == torch.float16
    per_rank = -(-len(train_y) // dist.world_size)
    steps = max(1, -(-per_rank // tcfg.batch_size))
    weights = class_weights(train_y, num_classes)
    return Run(
        backbone=backbone,
        strategy=strategy,
        tcfg=tcfg,
        acfg=acfg,
        device=device,
        dist=dist,
        net=net,
        train_model=_wrap(net, tcfg, device, dist),
        params=[p for g in groups for p in g["params"]],
        optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type, enabled=fp16),
        sched=WarmupCosine(
            lr,
            scaled_lr(tcfg.min_lr, dist.world_size, tcfg.lr_scaling),
            int(tcfg.warmup_epochs * steps),
            tcfg.epochs * steps,
        ),
        ema=ModelEma(backbone.model, tcfg.model_ema_decay) if tcfg.model_ema else None,
        augment=BatchAugment(acfg),
        num_classes=num_classes,
        steps_per_epoch=steps,
        loss_weight=weights.to(device) if tcfg.class_weighting == "loss" else None,
        sample_weight=weights[train_y] if tcfg.class_weighting == "sampler" else None,
    )


def cross_entropy(run: Run) -> LossFn:
    """The fine-tuning loss: label-smoothed (or soft-target) cross-entropy with optional class weights."""
    smoothing, weight = run.tcfg.smoothing, run.loss_weight

    def loss(logits: torch.Tensor, b: Batch) -> torch.Tensor:
        if b.target is not None:
            return F.cross_entropy(logits.float(), b.target, weight=weight)
        return F.cross_entropy(logits.float(), b.y, weight=weight, label_smoothing=smoothing)

    return loss


def epoch_order(
    seed: int, epoch: int, n: int, dist: vdist.DistInfo, sample_weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Generator]:
    """This rank's image order for `epoch` and the generator its augmentation draws from.

    Seeded from (seed, epoch): a resumed run repeats the uninterrupted one. Every rank draws the
    same permutation and takes its own shard; augmentation and dropout differ per rank.
    """
    base = seed * 1000 + epoch
    torch.manual_seed(base + 7919 * dist.rank)  # dropout / drop-path
    g = torch.Generator().manual_seed(base)
    if sample_weight is not None:
        order = torch.multinomial(sample_weight, n, replacement=True, generator=g)
    else:
        order = torch.randperm(n, generator=g)
    order = vdist.shard(order, dist)
    if dist.rank:
        g.manual_seed(base + 7919 * dist.rank)
    return order, g


def make_batch(run: Run, xb: torch.Tensor, y: torch.Tensor, g: torch.Generator, step: int) -> Batch:
    """uint8 images on the device -> augmented, mixed, (some steps) adversarial [0, 1] pixels."""
    acfg, tcfg = run.acfg, run.tcfg
    b = Batch(run.augment(xb.float().div_(255), g), y)
    if acfg.mixup > 0 or acfg.cutmix > 0:
        b.x, b.target = mix_batch(b.x, soft_targets(y, run.num_classes, tcfg.smoothing), acfg.mixup, acfg.cutmix, g)
    if tcfg.adversarial != "none" and vadv.is_adversarial_batch(step, tcfg.adv_fraction):
        # attack the plain net (not the DDP/compiled wrapper): only pixels get gradients
        with autocast(run.device, tcfg.amp, tcfg.amp_dtype):
            b.x = vadv.perturb(
                tcfg.adversarial,
                run.net,
                b.x,
                b.target if b.target is not None else y,
                tcfg.adv_epsilon,
                None,
                tcfg.adv_steps,
                tcfg.adv_step_size,
            )
    return b


def train_step(run: Run, b: Batch, loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward under autocast, backward (GradScaler when fp16), clip, optimizer step, EMA."""
    with autocast(run.device, run.tcfg.amp, run.tcfg.amp_dtype):
        logits = run.train_model(b.x)
    loss = loss_fn(logits, b)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.tcfg.clip_grad > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, run.tcfg.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.ema is not None:
        run.ema.update(run.model)
    return loss.detach(), logits.detach()


def run_epoch(
    run: Run, feed: TrainFeed, order: torch.Tensor, g: torch.Generator, epoch: int, loss_fn: LossFn, show: bool = False
) -> EpochStats:
    """One pass over `order`; returns device-side sums (no host sync inside)."""
    bs = run.tcfg.batch_size
    starts = [i for i in range(0, len(order), bs) if len(order[i : i + bs]) >= 2 or len(order) <= 1]
    chunks = [order[i : i + bs] for i in starts]  # a batch of one breaks BatchNorm in train mode
    run.strategy.set_train_mode(run.backbone)
    stats = EpochStats(
        0,
        torch.zeros((), device=run.device),
        torch.zeros((), device=run.device, dtype=torch.long),
        run.sched.lr_at(epoch * run.steps_per_epoch),
    )
    bar = tqdm(
        total=len(order),
        desc=f"epoch {epoch + 1}/{run.tcfg.epochs}",
        unit="img",
        disable=None if show else True,
        leave=False,
    )  # None: no frames when stderr is not a terminal
    for i, (xb, y) in zip(starts, feed.batches(chunks)):
        stats.lr = run.sched.apply(run.optimizer, epoch * run.steps_per_epoch + i // bs)
        b = make_batch(run, xb, y, g, i // bs)
        loss, logits = train_step(run, b, loss_fn)
        stats.seen += len(y)
        stats.loss_sum += loss * len(y)
        stats.correct += (logits.argmax(1) == y).sum()
        bar.update(len(y))
    bar.close()
    return stats


def evaluate(
    backbone: Backbone, x: torch.Tensor, y: torch.Tensor, device: torch.device, amp: bool
) -> tuple[float, float]:
    if not len(y):
        return float("nan"), 0.0
    logits = predict_logits(backbone, x, device, amp=amp)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def validate(run: Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """val_loss / val_accuracy of the weights being kept (the EMA's when on; raw_* then too), on rank 0,
    broadcast so every rank takes the same early-stopping decision."""
    out: dict[str, float] = {}
    loss, acc = float("nan"), 0.0
    if run.dist.is_main:
        loss, acc = evaluate(run.backbone, x, y, run.device, run.tcfg.amp)
        if run.ema is not None:
            out = {"raw_val_loss": loss, "raw_val_accuracy": acc}
            ema = dataclasses.replace(run.backbone, model=run.ema.module)
            loss, acc = evaluate(ema, x, y, run.device, run.tcfg.amp)
    loss, acc = vdist.broadcast([loss, acc], run.dist, run.device)
    return {"val_loss": loss, "val_accuracy": acc, **out}
