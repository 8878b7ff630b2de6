from __future__ import annotations

import pytest
import torch

from vistune.train.schedule import WarmupCosine


def test_warmup_then_cosine_to_min():
    s = WarmupCosine(1.0, 0.01, warmup_steps=4, total_steps=20)
    assert [s.lr_at(i) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert s.lr_at(4) == pytest.approx(1.0) and s.lr_at(20) == pytest.approx(0.01)
    assert all(s.lr_at(i) >= s.lr_at(i + 1) for i in range(4, 20))


def test_apply_respects_lr_scale_groups():
    w = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW([{"params": [w[0]], "lr_scale": 0.25}, {"params": [w[1]]}], lr=1.0)
    lr = WarmupCosine(2.0, 0.0, 0, 10).apply(opt, 0)
    assert lr == 2.0 and [g["lr"] for g in opt.param_groups] == [0.5, 2.0]
