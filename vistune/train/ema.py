"""Exponential moving average of the weights: timm's ModelEmaV3 does the update, kept on the training device.

The average usually validates better than the raw weights near the end of a short fine-tune;
with decay warmup (decay_t = min(decay, (1 + t) / (10 + t))) it is useful from the first epoch.
BatchNorm statistics and other buffers are copied, not averaged (ModelEmaV3 `exclude_buffers=True`).
This wrapper only adds that warmup rule (timm's own warmup is a power law) and a checkpoint state
holding the update count, so a resumed run continues the same decay sequence.
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self._ema = ModelEmaV3(model, decay=decay, exclude_buffers=True)
        self.module = self._ema.module
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
        self._ema.apply_update_no_buffers_(model, d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
