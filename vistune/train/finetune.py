"""Fine-tuning strategies: which parameters train, in which optimizer groups.

A strategy is a small object (as in Lightning's fine-tuning callbacks): `param_groups` freezes
what must not train and splits the rest into decay / no-decay groups (no weight decay on norms
and biases), with a per-group `lr_scale` for layer-wise LR decay; `set_train_mode` keeps frozen
BatchNorm statistics frozen; `export_state_dict` gives the plain backbone weights to save.

| name           | trains                                                          |
|----------------|-----------------------------------------------------------------|
| `linear_probe` | the classification head                                         |
| `partial`      | the last `unfreeze_blocks` blocks, everything after them, head  |
| `full`         | everything; `layer_decay` scales LR down towards the input      |
| `lora`         | LoRA adapters on Linear / 1x1-conv layers, and the head         |
| `bitfit`       | every bias (norm shifts included) and the head                  |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from vistune.models.backbones import Backbone
from vistune.config import TrainCfg
from vistune.errors import ConfigError
from vistune.models.lora import apply_lora, merged_state_dict


def split_decay(named: list[tuple[str, nn.Parameter]], weight_decay: float, lr_scale: float = 1.0) -> list[dict]:
    decay = [p for n, p in named if p.ndim > 1]
    no_decay = [p for n, p in named if p.ndim <= 1]  # biases and norm scales/shifts
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "lr_scale": lr_scale})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale})
    return groups


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_ids(backbone: Backbone) -> tuple[dict[str, int], int]:
    """Parameter name -> depth: 0 for the stem, i+1 for block i, n+1 for what follows the blocks."""
    blocks = backbone.blocks()
    ids, seen_block = {}, False
    for name, _ in backbone.model.named_parameters():
        hit = next((i for i, b in enumerate(blocks) if _under(name, b)), None)
        if hit is not None:
            seen_block = True
            ids[name] = hit + 1
        else:
            ids[name] = len(blocks) + 1 if seen_block or _under(name, backbone.head) else 0
    return ids, len(blocks) + 1


@dataclass
class Strategy:
    name: str = ""
    trains_backbone: bool = True

    def prepare(self, backbone: Backbone) -> None:
        """Change the network itself if the strategy needs to (adapters); idempotent."""

    def trainable(self, backbone: Backbone) -> set[str]:
        raise NotImplementedError

    def _freeze(self, backbone: Backbone) -> list[tuple[str, nn.Parameter]]:
        self.prepare(backbone)
        keep = self.trainable(backbone)
        named = []
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(n in keep)
            if n in keep:
                named.append((n, p))
        return named

    def param_groups(self, backbone: Backbone, weight_decay: float) -> list[dict]:
        return split_decay(self._freeze(backbone), weight_decay)

    def set_train_mode(self, backbone: Backbone) -> None:
        model = backbone.model
        if not self.trains_backbone:
            model.eval()  # frozen features: BatchNorm uses its ImageNet statistics, no dropout
            backbone.head_module().train()
            return
        model.train()
        for m in model.modules():  # a BatchNorm whose affine params are frozen keeps its statistics too
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
                m.eval()

    def export_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Weights under the backbone's own keys (what `model.pt` stores)."""
        return merged_state_dict(model)


def _head_names(backbone: Backbone) -> set[str]:
    return {f"{backbone.head}.{n}" for n, _ in backbone.head_module().named_parameters()}


@dataclass
class LinearProbe(Strategy):
    """Train only the new classification layer on frozen ImageNet features."""

    name: str = "linear_probe"
    trains_backbone: bool = False

    def trainable(self, backbone: Backbone) -> set[str]:
        return _head_names(backbone)


@dataclass
class Partial(Strategy):
    """Train the last `unfreeze_blocks` blocks and every layer after them (final conv/norm, head)."""

    name: str = "partial"
    unfreeze_blocks: int = 2

    def trainable(self, backbone: Backbone) -> set[str]:
        blocks = backbone.blocks()
        if not 1 <= self.unfreeze_blocks <= len(blocks):
            raise ConfigError(
                f"params.yaml: train.unfreeze_blocks must be 1..{len(blocks)} for {backbone.spec} "
                f"(blocks: {blocks[0]} .. {blocks[-1]}), got {self.unfreeze_blocks}"
            )
        ids, top = layer_ids(backbone)
        first = len(blocks) - self.unfreeze_blocks + 1  # layer id of the first unfrozen block
        return {n for n, i in ids.items() if i >= first} | _head_names(backbone)


@dataclass
class Full(Strategy):
    """Train every parameter; with `layer_decay` in (0, 1), block i's LR is scaled by
    layer_decay ** (depth - i), as timm does (the head gets the full LR)."""

    name: str = "full"
    layer_decay: float = 0.0

    def trainable(self, backbone: Backbone) -> set[str]:
        return {n for n, _ in backbone.model.named_parameters()}

    def param_groups(self, backbone: Backbone, weight_decay: float) -> list[dict]:
        named = self._freeze(backbone)
        if not 0 < self.layer_decay < 1:
            return split_decay(named, weight_decay)
        ids, top = layer_ids(backbone)
        groups = []
        for layer in range(top + 1):
            part = [(n, p) for n, p in named if ids[n] == layer]
            groups += split_decay(part, weight_decay, lr_scale=self.layer_decay ** (top - layer))
        return groups


@dataclass
class LoRA(Strategy):
    """Frozen backbone plus trainable low-rank adapters (vistune.models.lora) and the head."""

    name: str = "lora"
    rank: int = 8
    alpha: float = 16.0

    def prepare(self, backbone: Backbone) -> None:
        apply_lora(backbone.model, self.rank, self.alpha, skip=backbone.head)

    def trainable(self, backbone: Backbone) -> set[str]:
        adapters = {n for n, _ in backbone.model.named_parameters() if n.endswith((".lora_a", ".lora_b"))}
        return adapters | _head_names(backbone)


@dataclass
class BitFit(Strategy):
    """Train only the biases (BitFit, Ben Zaken et al. 2022) and the head."""

    name: str = "bitfit"

    def trainable(self, backbone: Backbone) -> set[str]:
        return {n for n, _ in backbone.model.named_parameters() if n.endswith(".bias")} | _head_names(backbone)


_STRATEGIES: dict[str, Callable[[TrainCfg], Strategy]] = {
    "linear_probe": lambda c: LinearProbe(),
    "partial": lambda c: Partial(unfreeze_blocks=c.unfreeze_blocks),
    "full": lambda c: Full(layer_decay=c.layer_decay),
    "lora": lambda c: LoRA(rank=c.lora_rank, alpha=c.lora_alpha),
    "bitfit": lambda c: BitFit(),
}


def register_strategy(name: str, factory: Callable[[TrainCfg], Strategy]) -> None:
    _STRATEGIES[name] = factory


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def create_strategy(name: str, cfg: TrainCfg | None = None) -> Strategy:
    """Strategy by name, configured from `cfg` (defaults when None)."""
    if name not in _STRATEGIES:
        raise ConfigError(f"params.yaml: train.strategy {name!r} is unknown; valid: {list_strategies()}")
    return _STRATEGIES[name](cfg or TrainCfg())
