"""Fine-tuning strategies: which parameters train, in which optimizer groups.

A strategy is a small object (as in Lightning's fine-tuning callbacks): `param_groups` freezes
what must not train and splits the rest into decay / no-decay groups (no weight decay on norms
and biases); `set_train_mode` keeps frozen BatchNorm statistics frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from vistune.backbones import Backbone
from vistune.errors import ConfigError


def split_decay(named: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay = [p for n, p in named if p.ndim > 1]
    no_decay = [p for n, p in named if p.ndim <= 1]  # biases and norm scales/shifts
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@dataclass
class Strategy:
    name: str
    trains_backbone: bool

    def trainable(self, backbone: Backbone) -> set[str]:
        raise NotImplementedError

    def param_groups(self, backbone: Backbone, weight_decay: float) -> list[dict]:
        keep = self.trainable(backbone)
        named = []
        for n, p in backbone.model.named_parameters():
            p.requires_grad_(n in keep)
            if n in keep:
                named.append((n, p))
        return split_decay(named, weight_decay)

    def set_train_mode(self, backbone: Backbone) -> None:
        backbone.model.train()
        if not self.trains_backbone:
            backbone.model.eval()  # frozen features: BatchNorm uses its ImageNet statistics
            backbone.head_module().train()


class LinearProbe(Strategy):
    """Train only the new classification layer on frozen ImageNet features."""

    def __init__(self) -> None:
        super().__init__("linear_probe", trains_backbone=False)

    def trainable(self, backbone: Backbone) -> set[str]:
        return {f"{backbone.head}.{n}" for n, _ in backbone.head_module().named_parameters()}


class Full(Strategy):
    """Train every parameter."""

    def __init__(self) -> None:
        super().__init__("full", trains_backbone=True)

    def trainable(self, backbone: Backbone) -> set[str]:
        return {n for n, _ in backbone.model.named_parameters()}


_STRATEGIES: dict[str, Callable[[], Strategy]] = {"linear_probe": LinearProbe, "full": Full}


def register_strategy(name: str, factory: Callable[[], Strategy]) -> None:
    _STRATEGIES[name] = factory


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def create_strategy(name: str) -> Strategy:
    if name not in _STRATEGIES:
        raise ConfigError(f"params.yaml: train.strategy {name!r} is unknown; valid: {list_strategies()}")
    return _STRATEGIES[name]()
