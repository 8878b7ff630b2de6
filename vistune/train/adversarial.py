"""L-inf attacks on [0, 1] pixels (FGSM, PGD) shared by adversarial training and robustness evaluation.

Attacks perturb pixels *before* the model's normalization, so epsilon is in pixel units
(8/255 ~ 0.031) whatever the backbone's mean/std. Pass `Backbone.net` (normalization inside the
module) with `normalize_fn=None`, or a bare network plus its normalization function. They run the model in eval mode (no dropout,
BatchNorm statistics untouched) and restore each module's own mode afterwards, so a strategy that
keeps some modules frozen in eval stays that way. Gradients are taken with respect to the pixels
only (`torch.autograd.grad`), so parameters' `.grad` is never written.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from vistune.errors import ConfigError

ATTACKS = ("none", "fgsm", "pgd")
NormalizeFn = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block, then every module back to its own previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _loss(model: torch.nn.Module, x01: torch.Tensor, y: torch.Tensor, normalize_fn: NormalizeFn | None) -> torch.Tensor:
    # y: class indices or (soft) class probabilities, as F.cross_entropy takes them (mixup targets work)
    return F.cross_entropy(model(normalize_fn(x01) if normalize_fn is not None else x01).float(), y)


def pgd(
    model: torch.nn.Module,
    x01: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    normalize_fn: NormalizeFn | None = None,
    steps: int = 5,
    step_size: float = 0.0,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on cross-entropy inside the L-inf ball of radius `eps` (Madry et al.).

    `step_size` 0 means 2.5 * eps / steps, so the walk can reach the ball's surface from any start.
    `random_start` begins at a uniform point in the ball (training; the attack is then not
    deterministic without `generator`). Returns detached [0, 1] pixels with |x - x01| <= eps.
    """
    if steps < 1:
        raise ValueError(f"pgd: steps must be >= 1, got {steps}")
    x0 = x01.detach().float().clamp(0, 1)
    if eps <= 0:
        return x0.clone()
    alpha = step_size if step_size > 0 else 2.5 * eps / steps
    lo, hi = (x0 - eps).clamp_min(0), (x0 + eps).clamp_max(1)
    x = x0.clone()
    if random_start:
        noise = torch.rand(x0.shape, generator=generator, device="cpu" if generator is not None else x0.device)
        x = torch.max(torch.min(x0 + (noise.to(x0.device) * 2 - 1) * eps, hi), lo)
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(_loss(model, x, y, normalize_fn), x)
            x = torch.max(torch.min(x.detach() + alpha * grad.sign(), hi), lo)
    return x.detach()


def fgsm(
    model: torch.nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: float, normalize_fn: NormalizeFn | None = None
) -> torch.Tensor:
    """One signed-gradient step of size `eps` (Goodfellow et al.); [0, 1] pixels, detached."""
    return pgd(model, x01, y, eps, normalize_fn, steps=1, step_size=eps, random_start=False)


def check_adversarial(kind: str, eps: float, steps: int, step_size: float, fraction: float) -> None:
    """Reject bad `train.adv_*` values with one line naming the key and the valid range."""
    if kind not in ATTACKS:
        raise ConfigError(f"params.yaml: train.adversarial {kind!r} is unknown; valid: {list(ATTACKS)}")
    if kind == "none":
        return
    if not 0 < eps <= 1:
        raise ConfigError(f"params.yaml: train.adv_epsilon must be in (0, 1] (pixel units, e.g. 0.016), got {eps}")
    if kind == "pgd" and steps < 1:
        raise ConfigError(f"params.yaml: train.adv_steps must be >= 1 for pgd, got {steps}")
    if step_size < 0:
        raise ConfigError(f"params.yaml: train.adv_step_size must be >= 0 (0 = 2.5 * eps / steps), got {step_size}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"params.yaml: train.adv_fraction must be in (0, 1], got {fraction}")


def is_adversarial_batch(step: int, fraction: float) -> bool:
    """Spread `fraction` of the batches evenly over an epoch (no RNG: resume-exact, exact share)."""
    return math.floor((step + 1) * fraction + 1e-9) > math.floor(step * fraction + 1e-9)


def perturb(
    kind: str,
    model: torch.nn.Module,
    x01: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    normalize_fn: NormalizeFn | None = None,
    steps: int = 5,
    step_size: float = 0.0,
) -> torch.Tensor:
    """The training-time attack by name (`train.adversarial`); PGD starts at a random point."""
    if kind == "fgsm":
        return fgsm(model, x01, y, eps, normalize_fn)
    if kind == "pgd":
        return pgd(model, x01, y, eps, normalize_fn, steps=steps, step_size=step_size, random_start=True)
    raise ConfigError(f"params.yaml: train.adversarial {kind!r} is unknown; valid: {list(ATTACKS)[1:]}")
