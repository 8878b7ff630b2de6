"""Robustness: accuracy when the pixels are worse than the test split's.

Corruptions (Gaussian noise, blur, salt-and-pepper, brightness) act on uint8 NCHW batches at
severities 1..5 with a fixed seed; attacks (FGSM, PGD under an L-inf ball) perturb pixels in
[0, 1] before the model's own normalization, so epsilon is in pixel units (8/255 ~ 0.031).
Every row runs the served path (`Backbone.net`: channels_last, the same autocast as the test
metrics), so the "clean" row equals the test accuracy on the same images.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vistune.models.backbones import Backbone
from vistune.models.device_policy import autocast, to_device
from vistune.train.adversarial import fgsm, pgd

# severity 1..5 -> strength; index 0 unused
_NOISE_STD = (0, 0.04, 0.08, 0.12, 0.18, 0.26)  # fraction of the pixel range
_BLUR_SIGMA = (0, 0.5, 0.8, 1.1, 1.5, 2.0)  # pixels at the prepared resolution
_SP_FRACTION = (0, 0.01, 0.03, 0.06, 0.1, 0.15)
_BRIGHTNESS = (0, 0.1, 0.2, 0.3, 0.4, 0.5)  # added to [0, 1] pixels


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def gaussian_noise(images: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    x = images.float() / 255
    return _to_uint8(x + torch.randn(x.shape, generator=g) * _NOISE_STD[severity])


def gaussian_blur(images: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    sigma = _BLUR_SIGMA[severity]
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    x = images.float() / 255
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return _to_uint8(x)


def salt_pepper(images: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    u = torch.rand((n, 1, h, w), generator=g)
    frac = _SP_FRACTION[severity]
    out = images.clone()
    out.masked_fill_((u < frac / 2).expand_as(out), 0)
    out.masked_fill_(((u >= frac / 2) & (u < frac)).expand_as(out), 255)
    return out


def brightness(images: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return _to_uint8(images.float() / 255 + _BRIGHTNESS[severity])


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "blur": gaussian_blur,
    "salt_pepper": salt_pepper,
    "brightness": brightness,
}


def attack(
    backbone: Backbone,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    steps: int,
    device: torch.device,
    amp: bool = True,
) -> torch.Tensor:
    """FGSM when steps == 1, else PGD with step 2.5 * eps / steps (Madry et al.'s rule of thumb).

    Returns adversarial pixels in [0, 1] (float, on `device`) that maximize cross-entropy
    within `eps` of the originals. The attack itself is `vistune.train.adversarial` (shared with training).
    """
    net = backbone.net.to(device).eval()
    x0 = to_device(images, device).float() / 255
    y = to_device(labels, device)
    with autocast(device, amp):
        if steps == 1:
            return fgsm(net, x0, y, eps)
        return pgd(net, x0, y, eps, steps=steps, random_start=False)


@torch.no_grad()
def _accuracy(
    backbone: Backbone,
    x01_or_u8: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int,
    amp: bool = True,
) -> float:
    net = backbone.net.to(device).eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, len(labels), batch_size):
        with autocast(device, amp):
            logits = net(to_device(x01_or_u8[i : i + batch_size], device))
        correct += (logits.argmax(1) == to_device(labels[i : i + batch_size], device)).sum()
    return int(correct) / max(len(labels), 1)


def robustness_table(
    backbone: Backbone,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    severities: tuple[int, ...],
    attack_eps: tuple[float, ...],
    pgd_steps: int,
    batch_size: int = 256,
    seed: int = 0,
    amp: bool = True,
) -> pd.DataFrame:
    """Rows (perturbation, severity, accuracy): clean, each corruption x severity, FGSM/PGD x eps."""
    g = torch.Generator().manual_seed(seed)
    rows = [
        {
            "perturbation": "clean",
            "severity": 0.0,
            "accuracy": _accuracy(backbone, images, labels, device, batch_size, amp),
        }
    ]
    for name, fn in CORRUPTIONS.items():
        for s in severities:
            if not 1 <= s <= 5:
                raise ValueError(f"evaluate.robust_severities: {s} is outside 1..5")
            rows.append(
                {
                    "perturbation": name,
                    "severity": float(s),
                    "accuracy": _accuracy(backbone, fn(images, s, g), labels, device, batch_size, amp),
                }
            )
    for kind, steps in (("fgsm", 1), ("pgd", pgd_steps)):
        if steps < 1:
            continue
        for eps in attack_eps:
            adv = (
                torch.cat(
                    [
                        attack(
                            backbone, images[i : i + batch_size], labels[i : i + batch_size], eps, steps, device, amp
                        )
                        for i in range(0, len(labels), batch_size)
                    ]
                )
                if len(labels)
                else images.float()
            )
            rows.append(
                {
                    "perturbation": kind,
                    "severity": float(eps),
                    "accuracy": _accuracy(backbone, adv, labels, device, batch_size, amp),
                }
            )
    return pd.DataFrame(rows)


def robustness_summary(table: pd.DataFrame) -> dict[str, float]:
    """Scalars for metrics.json: mean corruption accuracy (the gate's robustness floor), each
    corruption's mean, and attack accuracy at the largest epsilon."""
    out: dict[str, float] = {}
    corr = table[table.perturbation.isin(list(CORRUPTIONS))]
    if len(corr):
        out["robust_accuracy"] = float(corr.accuracy.mean())
        out["robust_worst_accuracy"] = float(corr.accuracy.min())
        for name, grp in corr.groupby("perturbation"):
            out[f"robust_{name}"] = float(grp.accuracy.mean())
    for kind in ("fgsm", "pgd"):
        rows = table[table.perturbation == kind]
        if len(rows):
            out[f"{kind}_accuracy"] = float(rows.sort_values("severity").accuracy.iloc[-1])
    return out
