"""Knowledge distillation: a smaller student trained on the teacher's softened outputs plus the labels,
through the training loop's own steps (`vistune.train.steps`). The `compress` stage's `distilled` variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistune.config import AugmentCfg, TrainCfg
from vistune.data.prepared import PreparedData
from vistune.models.backbones import Backbone
from vistune.models.device_policy import autocast, place
from vistune.train import steps
from vistune.train.feed import TrainFeed
from vistune.train.finetune import create_strategy


def kd_loss(teacher_net: nn.Module, device: torch.device, temperature: float, alpha: float) -> steps.LossFn:
    """`alpha` * KL(teacher/T || student/T) * T^2 + (1 - alpha) * CE(labels) on the student's batch."""

    def loss(logits: torch.Tensor, b: steps.Batch) -> torch.Tensor:
        with torch.no_grad(), autocast(device, True):
            soft = F.softmax(teacher_net(b.x).float() / temperature, dim=1)
        kd = F.kl_div(F.log_softmax(logits.float() / temperature, dim=1), soft, reduction="batchmean") * temperature**2
        hard = F.cross_entropy(logits.float(), b.target if b.target is not None else b.y)
        return alpha * kd + (1 - alpha) * hard

    return loss


def distill(
    teacher: Backbone,
    student: Backbone,
    data: PreparedData,
    acfg: AugmentCfg,
    epochs: int,
    lr: float,
    batch_size: int,
    temperature: float,
    alpha: float,
    seed: int,
    device: str = "cpu",
    strategy: str = "full",
    unfreeze_blocks: int = 2,
) -> list[float]:
    """Train `student` with `kd_loss` through the training loop's own steps (setup, one epoch).

    Both see the same augmented batch, each through its own normalization (`Backbone.net`); AdamW,
    half an epoch of warmup, cosine to lr / 100. `strategy` decides what the student trains, as
    `train.strategy` does for the teacher (a pretrained student on a few hundred photos keeps its
    ImageNet features; a student from scratch needs `full`; `partial` trains the last `unfreeze_blocks`
    blocks). Returns the per-epoch mean loss; the student keeps its last weights.
    """
    tcfg = TrainCfg(
        model=student.spec,
        pretrained="none",
        strategy=strategy,
        unfreeze_blocks=unfreeze_blocks,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        min_lr=lr * 0.01,
        weight_decay=0.05,
        warmup_epochs=0.5,
        smoothing=0.0,
        patience=0,
        device=device,
        seed=seed,
    )
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
