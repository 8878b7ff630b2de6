"""Mixup / cutmix on a batch already on the device, with soft (probability) targets.

Each batch is mixed with itself reversed (as timm's `Mixup` in batch mode), so no extra images
are read. When both alphas are set, each batch picks one of the two with equal chance. The mix
factor is drawn from a numpy Generator seeded by the training generator, so runs reproduce.
Kept instead of timm's Mixup (measured, benchmarks/library_ops.py): it asserts an even batch (a last
batch of 7 fails) and draws from numpy's global RNG, so reseeding the training generator does not
reproduce its mix (same torch seed, different targets).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Integer labels -> label-smoothed one-hot rows (float32)."""
    off = smoothing / num_classes
    return F.one_hot(y, num_classes).float() * (1 - smoothing) + off


def mix_batch(
    x: torch.Tensor, targets: torch.Tensor, mixup: float, cutmix: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images NCHW, soft targets NxC) -> mixed images and targets; unchanged if both alphas are 0."""
    if (mixup <= 0 and cutmix <= 0) or x.shape[0] < 2:
        return x, targets
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    other = x.flip(0)
    if use_cutmix:
        h, w = x.shape[2:]
        cut = np.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
        x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = other[:, :, y0:y1, x0:x1]
        lam = 1 - float((y1 - y0) * (x1 - x0)) / (h * w)  # the area actually pasted
    else:
        x = x * lam + other * (1 - lam)
    return x, targets * lam + targets.flip(0) * (1 - lam)
