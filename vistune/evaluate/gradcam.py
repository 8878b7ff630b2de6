"""Grad-CAM: where in the image the predicted class's evidence comes from.

Hooks the last Conv2d with some spatial resolution left (see `target_layer`),
weights its channels by the spatially averaged gradient of the chosen class score, and keeps the
positive part, upsampled to the input size and scaled to [0, 1] per image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistune.models.backbones import Backbone
from vistune.models.device_policy import to_device


def target_layer(model: nn.Module, sample: torch.Tensor, min_side: int = 4) -> nn.Module:
    """The last Conv2d whose output is at least `min_side` pixels square for this input size.

    The final feature map is the classic choice, but at 32 px a stride-32 network leaves it 1x1,
    which carries no "where"; stepping back to the last map with some resolution keeps the idea.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a convolutional backbone; this model has no Conv2d layer")
    sides: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: sides.__setitem__(mod, min(out.shape[-2:]))) for m in convs]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    wide = [m for m in convs if sides.get(m, 0) >= min_side]
    return wide[-1] if wide else convs[0]


def gradcam(backbone: Backbone, images: torch.Tensor, target: torch.Tensor, device: torch.device) -> np.ndarray:
    """uint8 NCHW + class index per image -> N x H x W heatmaps in [0, 1]."""
    model = backbone.net.to(device).eval()  # fp32: gradients of a class score need the precision
    store: dict[str, torch.Tensor] = {}
    x = to_device(images, device)
    layer = target_layer(model, x[:1])
    handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out))
    try:
        with torch.enable_grad():
            logits = model(x)
            score = logits.gather(1, target.to(device).view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, store["act"])
    finally:
        handle.remove()
    act = store["act"].detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return ((cam - lo) / (hi - lo).clamp_min(1e-8)).cpu().numpy()


def pick_samples(y_true: np.ndarray, y_pred: np.ndarray, per_kind: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random sample of correct and wrong prediction indices (same seed, same images)."""
    rng = np.random.default_rng(seed)
    correct = np.flatnonzero(y_true == y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    take = lambda idx: np.sort(rng.choice(idx, size=min(per_kind, len(idx)), replace=False)) if len(idx) else idx  # noqa: E731
    return take(correct), take(wrong)
