"""Corruptions and attacks on a small real conv net (no training needed for these properties)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vistune.models.backbones import Backbone
from vistune.evaluate.robustness import CORRUPTIONS, attack, robustness_summary, robustness_table


def _net() -> Backbone:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(32, 3))
    return Backbone(model.eval(), "test:tiny", "4", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 16)


def _images(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(40, 216, (n, 3, 16, 16), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_deterministic_and_grows_with_severity(name):
    x = _images()
    fn = CORRUPTIONS[name]
    a = fn(x, 3, torch.Generator().manual_seed(0))
    b = fn(x, 3, torch.Generator().manual_seed(0))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b)
    change = [(fn(x, s, torch.Generator().manual_seed(0)).float() - x.float()).abs().mean().item() for s in (1, 3, 5)]
    assert 0 < change[0] < change[1] < change[2]


def test_blur_leaves_flat_image_and_brightness_brightens():
    flat = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    assert torch.equal(CORRUPTIONS["blur"](flat, 5, torch.Generator()), flat)
    assert CORRUPTIONS["brightness"](flat, 2, torch.Generator()).float().mean() == pytest.approx(100 + 0.2 * 255, abs=1)


def test_salt_pepper_hits_about_the_fraction():
    x = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    y = CORRUPTIONS["salt_pepper"](x, 5, torch.Generator().manual_seed(0))
    frac = (y[:, 0] != 128).float().mean().item()
    assert frac == pytest.approx(0.15, abs=0.03)
    assert set(y.unique().tolist()) == {0, 128, 255}


@pytest.mark.parametrize("steps", [1, 5])
def test_attack_stays_in_the_ball_and_raises_the_loss(steps):
    net, x = _net(), _images()
    y = net.model(((x.float() / 255) - 0.5) / 0.5).argmax(1)
    eps = 0.03
    adv = attack(net, x, y, eps, steps, torch.device("cpu"))
    x01 = x.float() / 255
    assert (adv - x01).abs().max().item() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    loss = lambda z: nn.functional.cross_entropy(net.model((z - 0.5) / 0.5), y).item()  # noqa: E731
    assert loss(adv) > loss(x01)


def test_table_and_summary():
    net, x = _net(), _images()
    y = torch.zeros(len(x), dtype=torch.long)
    table = robustness_table(net, x, y, torch.device("cpu"), (1, 5), (0.01,), pgd_steps=2, batch_size=5)
    assert table.perturbation.tolist() == ["clean"] + [n for n in CORRUPTIONS for _ in (1, 5)] + ["fgsm", "pgd"]
    assert table.accuracy.between(0, 1).all()
    s = robustness_summary(table)
    corr = table[table.perturbation.isin(list(CORRUPTIONS))]
    assert s["robust_accuracy"] == pytest.approx(corr.accuracy.mean())
    assert s["robust_worst_accuracy"] == pytest.approx(corr.accuracy.min())
    assert {"fgsm_accuracy", "pgd_accuracy", "robust_blur"} <= set(s)
    with pytest.raises(ValueError, match="outside 1..5"):
        robustness_table(net, x, y, torch.device("cpu"), (7,), (), pgd_steps=0)
