"""Exponential moving average of the weights (as timm's ModelEmaV3), kept on the training device.

The average usually validates better than the raw weights near the end of a short fine-tune;
with decay warmup (decay_t = min(decay, (1 + t) / (10 + t))) it is useful from the first epoch.
BatchNorm statistics and other buffers are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay_at(self.updates)
        self.updates += 1
        ema_p = [p for p in self.module.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        floats = [(e, s) for e, s in zip(ema_p, src_p) if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [s for _, s in floats], 1 - d)
        for e, s in zip(self.module.buffers(), model.buffers()):
            e.copy_(s)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
