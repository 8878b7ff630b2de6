"""Linear warmup then cosine decay, stepped per optimizer update (as timm's CosineLRScheduler).

Kept instead of timm's CosineLRScheduler: its cosine agrees to 2e-16, but its linear warmup (lr_init + t *
step, base reached at step W) cannot express this one (base * (t + 1) / W, base at step W - 1); 11 of 12 warmup
steps differ by up to 7.6% (benchmarks/library_ops.py, RESULTS.md 2026-12-02), which would change every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    base_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def lr_at(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t))

    def apply(self, optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
