"""Stage `train`: fine-tune an ImageNet-pretrained backbone on the prepared arrays.

Writes the best-on-val model (data/model/model.pt), per-epoch history (a DVC plot), final
metrics and the augmentation preview (here, not in `augment`, so an augmentation change reruns
training without re-decoding every image); the per-epoch checkpoint in data/checkpoints/ survives a crash so a rerun resumes.
Under `torchrun --nproc-per-node N -m stages.train` it trains data-parallel (gloo on CPU, nccl
on CUDA) and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.utils import save_image

from stages.cli import stage_main
from vistune.train import distributed as vdist
from vistune.models.backbones import create_backbone
from vistune.models.imagenet_names import imagenet_rows
from vistune.models.classifier import save_model
from vistune.config import AugmentCfg, TrainCfg, to_dict
from vistune.errors import ConfigError
from vistune.data.prepared import load_prepared
from vistune.train.finetune import create_strategy
from vistune.io import atomic_path, write_json, write_text
from vistune.train.augment import BatchAugment
from vistune.layout import Layout
from vistune.train.loop import FitResult, fit, set_seed
from vistune.models.device_policy import amp_dtype, resolve_device


def _preview(images: np.ndarray, cfg: AugmentCfg, layout: Layout, n: int = 32, seed: int = 0) -> None:
    """A grid of augmented training samples, so a human can see what the model trains on."""
    pick = np.linspace(0, len(images) - 1, num=min(n, len(images))).astype(int)  # spread over classes
    x = torch.from_numpy(np.ascontiguousarray(images[pick])).float() / 255
    aug = BatchAugment(cfg)(x, torch.Generator().manual_seed(seed))
    with atomic_path(layout.augment_preview) as tmp:
        save_image(torch.cat([x[:8], aug[:24]]), tmp, nrow=8, padding=2, format="png")


def run(cfg: TrainCfg, augment: AugmentCfg, layout: Layout, progress: bool = True) -> FitResult:
    dist, device = vdist.init(cfg.device)
    try:
        return _run(dataclasses.replace(cfg, device=device), augment, layout, progress, dist)
    finally:
        vdist.cleanup(dist)


def head_rows(cfg: TrainCfg, classes: list[str]) -> list[int] | None:
    """The ImageNet rows the new head starts from (`train.head_init: imagenet_names`), or None (random)."""
    if cfg.head_init != "imagenet_names":
        return None
    rows, unmatched = imagenet_rows(classes)
    if rows is None:
        raise ConfigError(
            f"params.yaml: train.head_init=imagenet_names but class(es) {unmatched} name no single "
            "ImageNet class; rename those class folders or set train.head_init to random"
        )
    return rows


def _head_from_features(cfg: TrainCfg, data, layout: Layout, backbone) -> None:
    """`train.head_init: features`: the head starts as a linear probe on the frozen features of the train images,
    read from validate's feature cache by sha256 where it holds them (vistune.train.head_fit)."""
    from vistune.data.features import FeatureSpec
    from vistune.train.head_fit import set_head_from_features, train_features

    train = data.splits["train"]
    rows = pd.read_csv(layout.manifest, usecols=["split", "sha256"], dtype=str)
    shas = rows.sha256[rows.split == "train"].tolist()
    spec = FeatureSpec(cfg.model, cfg.pretrained, cfg.pretrained_sha256, data.image_size)
    device = resolve_device(cfg.device)
    feats, cached = train_features(
        backbone, train.images, shas if len(shas) == len(train) else None, spec, layout.feature_cache, device
    )
    fit = set_head_from_features(backbone, feats, np.asarray(train.labels), len(data.classes))
    print(
        f"head from features: a linear probe on {len(feats)} train images' frozen features ({cached} from validate's "
        f"cache), train accuracy {fit:.3f}",
        flush=True,
    )


def _run(cfg: TrainCfg, augment: AugmentCfg, layout: Layout, progress: bool, dist: vdist.DistInfo) -> FitResult:
    set_seed(cfg.seed)
    data = load_prepared(layout.prepared)
    backbone = create_backbone(
        cfg.model,
        len(data.classes),
        cfg.pretrained,
        drop_rate=cfg.drop_rate,
        drop_path_rate=cfg.drop_path_rate,
        pretrained_sha256=cfg.pretrained_sha256,
        head_rows=head_rows(cfg, data.classes),
    )
    if cfg.head_init == "features":
        _head_from_features(cfg, data, layout, backbone)
    strategy = create_strategy(cfg.strategy, cfg)
    trainable = sum(p.numel() for g in strategy.param_groups(backbone, cfg.weight_decay) for p in g["params"])
    total = sum(p.numel() for p in backbone.model.parameters())
    say = print if dist.is_main else (lambda *a, **k: None)
    device = resolve_device(cfg.device)
    precision = str(amp_dtype(device, cfg.amp, cfg.amp_dtype) or "float32").replace("torch.", "")
    say(
        f"{cfg.model} ({cfg.pretrained}) strategy={cfg.strategy}: {trainable:,}/{total:,} trainable params "
        f"on {device}{f' x{dist.world_size} (DDP)' if dist.enabled else ''} ({precision}"
        f"{', channels_last' if cfg.channels_last else ''}), "
        f"{len(data.splits['train'])} train images at {data.image_size}px",
        flush=True,
    )
    result = fit(backbone, strategy, data, cfg, augment, checkpoint=layout.checkpoint, progress=progress, dist=dist)
    if result.resumed_from_epoch:
        say(f"resumed from checkpoint after epoch {result.resumed_from_epoch}")
    if not dist.is_main:
        return result
    save_model(
        layout.model,
        backbone,
        result.state_dict,
        data.classes,
        data.image_size,
        extra={
            "train": to_dict(cfg),
            "augment": to_dict(augment),
            "best_epoch": result.best_epoch,
            "kept_epoch": result.kept_epoch,
        },
    )
    _preview(data.splits["train"].images, augment, layout)
    history = pd.DataFrame(result.history)
    write_text(layout.train_history, history.to_csv(index=False))
    last = result.history[-1] if result.history else {}
    write_json(
        layout.train_metrics,
        {
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "kept_epoch": result.kept_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "final_train_loss": last.get("train_loss"),
            "images_per_s": float(history["images_per_s"].mean()) if len(history) else 0.0,
            "trainable_params": trainable,
            "total_params": total,
            "world_size": dist.world_size,
        },
    )
    kept = (
        f"best val accuracy {result.best_val_accuracy:.4f} at epoch {result.best_epoch}"
        if cfg.keep == "best"
        else f"last epoch {result.kept_epoch} kept (train.keep: last; best val accuracy {result.best_val_accuracy:.4f} "
        f"at epoch {result.best_epoch})"
    )
    say(f"{kept} -> {layout.model}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("train", argv, lambda p, layout: run(p.train, p.augment, layout))


if __name__ == "__main__":
    sys.exit(main())
