"""The energy-score out-of-distribution rule on real tensors: the val quantile sets the threshold."""

from __future__ import annotations

import numpy as np
import torch

from vistune.evaluate import ood


def test_threshold_passes_95_percent_of_val_and_flags_flat_logits():
    g = torch.Generator().manual_seed(0)
    val = torch.randn(400, 10, generator=g) + 6.0 * torch.nn.functional.one_hot(torch.randint(0, 10, (400,)), 10)
    threshold = ood.fit_threshold(val)
    assert 0.94 <= 1 - ood.flags(val, threshold).mean() <= 0.96  # ~95% of in-distribution rows pass
    flat = torch.zeros(5, 10)  # no class stands out: energy -log(10), far above a confident row's
    assert ood.flags(flat, threshold).all()
    assert np.allclose(ood.energy(flat), -np.log(10))
    assert ood.fit_threshold(torch.empty(0, 10)) is None
    assert not ood.flags(flat, None).any()  # no threshold (no val): nothing flagged
