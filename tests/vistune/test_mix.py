"""Mixup / cutmix labels against the lambda / area math, and smoothing against torch's own.

Each batch is mixed with itself reversed, so the mixed images show lambda (mixup: the blend
weight, recovered by least squares) or the pasted box (cutmix: the pixels that changed), and the
targets are checked against that, not against the module's arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from vistune.train.mix import mix_batch, soft_targets

N, C = 6, 3


def batch(seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, 3, size, size, generator=g)
    return x, soft_targets(torch.tensor([0, 1, 2, 0, 1, 2]), C, smoothing=0.1)


def blend_weight(mixed: torch.Tensor, x: torch.Tensor) -> float:
    """lambda with mixed = lambda * x + (1 - lambda) * x.flip(0), by least squares."""
    a, b = (x - x.flip(0)).double(), (mixed - x.flip(0)).double()
    return float((a * b).sum() / (a * a).sum())


def test_soft_targets_equal_torch_label_smoothing():
    y = torch.tensor([0, 2, 1, 1])
    logits = torch.randn(4, C, generator=torch.Generator().manual_seed(0))
    for s in (0.0, 0.1, 0.3):
        t = soft_targets(y, C, smoothing=s)
        torch.testing.assert_close(t.sum(1), torch.ones(4))
        torch.testing.assert_close(F.cross_entropy(logits, t), F.cross_entropy(logits, y, label_smoothing=s))


def test_mixup_targets_use_the_images_blend_weight():
    x, t = batch()
    mx, mt = mix_batch(x, t, 0.4, 0.0, torch.Generator().manual_seed(0))
    lam = blend_weight(mx, x)
    torch.testing.assert_close(mx, lam * x + (1 - lam) * x.flip(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(mt, lam * t + (1 - lam) * t.flip(0), atol=1e-6, rtol=0)
    assert 0 < lam < 1


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha):
    x, t = batch()
    lams = [blend_weight(mix_batch(x, t, alpha, 0.0, torch.Generator().manual_seed(s))[0], x) for s in range(300)]
    assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_cutmix_targets_equal_one_minus_the_pasted_area():
    x, t = batch()
    areas = []
    for seed in range(40):
        mx, mt = mix_batch(x, t, 0.0, 1.0, torch.Generator().manual_seed(seed))
        pasted = (mx != x).any(1).any(0)  # x and x.flip(0) differ at every pixel
        assert torch.equal(mx[:, :, pasted], x.flip(0)[:, :, pasted])
        assert torch.equal(mx[:, :, ~pasted], x[:, :, ~pasted])
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        if len(rows):
            h, w = int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1
            assert int(pasted.sum()) == h * w  # one axis-aligned box, the same in every image
        area = float(pasted.float().mean())
        lam = 1 - area
        torch.testing.assert_close(mt, lam * t + (1 - lam) * t.flip(0), atol=1e-6, rtol=0)
        areas.append(area)
    assert 0.05 < np.mean(areas) < 0.6 and max(areas) > 0.2  # boxes of many sizes were drawn


def test_with_both_alphas_each_batch_picks_one_at_random():
    x, t = batch()
    kinds = []
    for seed in range(200):
        mx, _ = mix_batch(x, t, 0.4, 1.0, torch.Generator().manual_seed(seed))
        is_cut = bool(((mx == x) | (mx == x.flip(0))).all())
        kinds.append(is_cut)
    assert stats.binomtest(sum(kinds), len(kinds), 0.5).pvalue > 1e-3


def test_mixing_reproduces_under_a_seed_and_is_off_at_zero():
    x, t = batch()
    a = mix_batch(x, t, 0.4, 1.0, torch.Generator().manual_seed(3))
    b = mix_batch(x, t, 0.4, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    same, st = mix_batch(x, t, 0.0, 0.0, torch.Generator())
    assert same is x and st is t
    one, ot = mix_batch(x[:1], t[:1], 0.4, 1.0, torch.Generator())
    assert torch.equal(one, x[:1]) and torch.equal(ot, t[:1])  # a batch of one has nothing to mix with
