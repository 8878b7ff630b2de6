"""Corruptions against reference implementations and sampling statistics on real photographs;
attacks on a small real conv net (no training needed for these properties)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy import stats
from torch import nn

from vistune.evaluate import robustness
from vistune.evaluate.robustness import CORRUPTIONS, attack, robustness_summary, robustness_table
from vistune.models.backbones import Backbone


def _net() -> Backbone:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3)
    )
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


def _photos(n: int = 4, size: int = 32) -> torch.Tensor:
    """Real uint8 photographs: crops of matplotlib's Grace Hopper sample image."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
        img.load()
    crops = [
        img.crop((20 + 60 * (i % 4), 40 + 50 * (i // 4), 270 + 60 * (i % 4), 290 + 50 * (i // 4))).resize(
            (size, size), Image.BICUBIC
        )
        for i in range(n)
    ]
    return torch.from_numpy(np.stack([np.asarray(c) for c in crops]).transpose(0, 3, 1, 2).copy())


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_blur_equals_torchvision_gaussian_blur(severity):
    """torchvision's separable Gaussian (kernel 2 * ceil(2 sigma) + 1) at the declared sigma; it pads
    by reflection, the corruption by replication, so the border of kernel radius is left out;
    both round to uint8, so they may differ by one level."""
    x = _photos()
    sigma = robustness._BLUR_SIGMA[severity]
    radius = max(1, math.ceil(2 * sigma))
    ref = (TF.gaussian_blur(x.float() / 255, [2 * radius + 1] * 2, [sigma, sigma]) * 255).round()
    out = CORRUPTIONS["blur"](x, severity, torch.Generator()).float()
    inner = (slice(None), slice(None), slice(radius, -radius), slice(radius, -radius))
    assert float((out[inner] - ref[inner]).abs().max()) <= 1
    assert float((out - x.float()).abs().mean()) > 1  # it did blur
    flat = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    assert torch.equal(CORRUPTIONS["blur"](flat, severity, torch.Generator()), flat)  # replicate border: no dark rim


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_gaussian_noise_is_normal_with_the_declared_std(severity):
    """On mid-grey the added noise (clipped only beyond 4 sigma up to severity 3) is N(0, sigma):
    std within 5 standard errors of 49,152 samples (plus uint8 rounding's 1/12 level^2), and a
    Kolmogorov-Smirnov test after undoing the rounding with uniform dither."""
    x = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    noise = (CORRUPTIONS["gaussian_noise"](x, severity, torch.Generator().manual_seed(0)).double() - 128) / 255
    sigma, m = robustness._NOISE_STD[severity], noise.numel()
    expected = math.sqrt(sigma**2 + 1 / (12 * 255**2))
    assert abs(float(noise.std()) - expected) < 5 * expected / math.sqrt(2 * m)
    assert abs(float(noise.mean())) < 5 * expected / math.sqrt(m)
    dither = np.random.default_rng(0).uniform(-0.5, 0.5, 20000) / 255
    assert stats.kstest(noise.flatten().numpy()[:20000] + dither, "norm", args=(0, sigma)).pvalue > 1e-3


def test_gaussian_noise_at_severity_5_has_the_declared_spread():
    """sigma 0.26 clips mid-grey at 1.9 sigma, so the spread is read from the quartiles (IQR =
    1.349 sigma), which clipping does not move; tolerance 5 standard errors plus one level."""
    x = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    noise = (CORRUPTIONS["gaussian_noise"](x, 5, torch.Generator().manual_seed(0)).double() - 128).numpy() / 255
    sigma = robustness._NOISE_STD[5]
    q1, q3 = np.quantile(noise, [0.25, 0.75])
    se = math.sqrt(0.25 * 0.75 / noise.size) / stats.norm.pdf(0.6745) * sigma  # one quartile's standard error
    assert abs((q3 - q1) / 1.349 - sigma) < (5 * math.sqrt(2) * se + 1 / 255) / 1.349


@pytest.mark.parametrize("severity", [1, 5])
def test_salt_pepper_hits_the_declared_fraction_of_whole_pixels(severity):
    x = _photos(16).clamp(1, 254)  # no pixel is black or white before
    y = CORRUPTIONS["salt_pepper"](x, severity, torch.Generator().manual_seed(0))
    salt, pepper = (y == 255).all(1), (y == 0).all(1)
    ref = torch.where(salt.unsqueeze(1), 255, torch.where(pepper.unsqueeze(1), 0, x.int())).to(torch.uint8)
    assert torch.equal(y, ref)  # whole pixels set, every other pixel untouched
    p, m = robustness._SP_FRACTION[severity], salt.numel()
    for hits in (salt, pepper):  # half salt, half pepper; binomial standard error on m pixels
        assert abs(float(hits.float().mean()) - p / 2) < 5 * math.sqrt(p / 2 * (1 - p / 2) / m)


@pytest.mark.parametrize("severity", [1, 4])
def test_brightness_adds_the_declared_shift_and_clips(severity):
    x = _photos()
    ref = (x.double() / 255 + robustness._BRIGHTNESS[severity]).clamp(0, 1).mul(255).round()
    out = CORRUPTIONS["brightness"](x, severity, torch.Generator()).double()
    assert float((out - ref).abs().max()) <= 1 and (out == 255).any()  # float32 vs float64 rounding at .5


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
