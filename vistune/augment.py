"""Per-batch augmentation on tensors, on whatever device the batch lives (GPU or CPU).

Geometric ops (random resized crop, flip, rotation) are folded into one affine grid per image
and applied with a single `grid_sample`, so augmenting costs one kernel, not one per op.
Randomness comes from an explicit `torch.Generator`, so a seed reproduces a batch exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vistune.config import AugmentCfg


@dataclass(frozen=True)
class BatchAugment:
    cfg: AugmentCfg

    def _affine(self, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        """N x 2 x 3 matrices mapping output coords to input coords (normalized [-1, 1])."""
        c = self.cfg
        lo, hi = c.scale
        area = torch.empty(n).uniform_(lo, hi, generator=g)
        log_r = torch.empty(n).uniform_(math.log(c.ratio[0]), math.log(c.ratio[1]), generator=g)
        ratio = torch.exp(log_r)
        sw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width as a fraction of the image
        sh = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - sw)  # crop centre stays inside the image
        ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - sh)
        angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(c.rotation)
        flip = torch.where(torch.rand(n, generator=g) < c.hflip, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([sw * cos * flip, -sh * sin, tx], dim=1),
                torch.stack([sw * sin * flip, sh * cos, ty], dim=1),
            ],
            dim=1,
        )
        return theta.to(device)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x: float NCHW in [0, 1] -> augmented float NCHW in [0, 1], same shape and dtype."""
        n = x.shape[0]
        theta = self._affine(n, g, x.device).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.cfg.salt_pepper > 0:
            u = torch.rand((n, 1, *x.shape[2:]), generator=g).to(x.device)
            p = self.cfg.salt_pepper
            x = torch.where(u < p / 2, torch.zeros_like(x), x)
            x = torch.where(u > 1 - p / 2, torch.ones_like(x), x)
        return x.clamp_(0, 1)
