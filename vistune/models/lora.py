"""LoRA adapters: a frozen layer plus a trainable low-rank update `scale * B @ A`.

Wraps `nn.Linear` and 1x1 `nn.Conv2d` (the pointwise convolutions that hold most of a
ConvNet's weights). B starts at zero, so a wrapped model computes exactly what it did before.
`merged_state_dict` folds the update back into the plain weights, so `model.pt` keeps the
backbone's own keys and loads without any LoRA code.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += (self.lora_b @ self.lora_a).to(out.weight.dtype) * self.scale
        return out


class LoRAConv1x1(nn.Module):
    def __init__(self, base: nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_channels, 1, 1))
        self.lora_b = nn.Parameter(torch.zeros(base.out_channels, rank, 1, 1))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        low = F.conv2d(x, self.lora_a, stride=b.stride, padding=b.padding, dilation=b.dilation)
        return b(x) + F.conv2d(low, self.lora_b) * self.scale

    def merged(self) -> nn.Conv2d:
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            delta = self.lora_b.flatten(1) @ self.lora_a.flatten(1)
            out.weight += delta.view_as(out.weight).to(out.weight.dtype) * self.scale
        return out


LORA_TYPES = (LoRALinear, LoRAConv1x1)


def lora_target(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear):
        return True
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1


def apply_lora(model: nn.Module, rank: int, alpha: float, skip: str = "") -> list[str]:
    """Wrap every Linear / 1x1 conv (not under `skip`, the head) in place; returns wrapped names.

    Idempotent: layers already wrapped (and the bases inside wrappers) are left alone.
    """
    inside = {f"{n}.base" for n, m in model.named_modules() if isinstance(m, LORA_TYPES)}
    targets = [
        n
        for n, m in model.named_modules()
        if n and lora_target(m) and n not in inside and not (skip and (n == skip or n.startswith(skip + ".")))
    ]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, attr)
        wrapper = LoRALinear(base, rank, alpha) if isinstance(base, nn.Linear) else LoRAConv1x1(base, rank, alpha)
        setattr(parent, attr, wrapper.to(base.weight.device))
    return targets


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of `model` with every adapter folded into its base layer (the plain keys)."""
    if not any(isinstance(m, LORA_TYPES) for m in model.modules()):
        return model.state_dict()
    plain = copy.deepcopy(model)
    wrapped = [(n, m) for n, m in plain.named_modules() if isinstance(m, LORA_TYPES)]
    for name, m in wrapped:
        parent_name, _, attr = name.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        setattr(parent, attr, m.merged())
    return plain.state_dict()
