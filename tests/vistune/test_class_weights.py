"""Class weighting against scikit-learn's 'balanced' weights; the sampler by its sampled frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.utils.class_weight import compute_class_weight

from vistune.train.distributed import DistInfo
from vistune.train.loop import class_weights
from vistune.train.steps import epoch_order

COUNTS = (12, 120, 600, 36)  # a long-tailed train split


def labels(counts=COUNTS, seed: int = 0) -> torch.Tensor:
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return torch.from_numpy(np.random.default_rng(seed).permutation(y))


def test_weights_equal_scikit_learn_balanced():
    y = labels()
    expected = compute_class_weight("balanced", classes=np.arange(len(COUNTS)), y=y.numpy())
    np.testing.assert_allclose(class_weights(y, len(COUNTS)).numpy(), expected, rtol=1e-6)


def test_absent_class_gets_zero_and_the_rest_match_scikit_learn_on_present_classes():
    y = labels((5, 0, 20))
    w = class_weights(y, 3).numpy()
    assert w[1] == 0.0
    # scikit-learn's n / (k * count) over the k present classes, rescaled to n / (C * count) for C = 3
    sk = compute_class_weight("balanced", classes=np.array([0, 2]), y=y.numpy()) * 2 / 3
    np.testing.assert_allclose(w[[0, 2]], sk, rtol=1e-6)


def test_weighted_loss_gives_every_class_the_same_total_weight():
    y = labels()
    w = class_weights(y, len(COUNTS))
    totals = torch.bincount(y, weights=w[y].double(), minlength=len(COUNTS))
    torch.testing.assert_close(totals, torch.full((len(COUNTS),), len(y) / len(COUNTS), dtype=torch.float64))


def test_sampler_draws_classes_uniformly():
    """Chi-square on 20 epochs x 768 draws (15,360): each class expected 3,840 times, where plain
    shuffling would give the 1.6% / 78% shares of the split."""
    y = labels()
    sample_weight = class_weights(y, len(COUNTS))[y]
    drawn = torch.cat([y[epoch_order(0, e, len(y), DistInfo(), sample_weight)[0]] for e in range(20)])
    freq = torch.bincount(drawn, minlength=len(COUNTS)).numpy()
    assert stats.chisquare(freq).pvalue > 1e-3
    assert freq.min() > 0.9 * len(drawn) / len(COUNTS)


def test_plain_order_is_a_permutation_and_sampler_order_reproduces():
    y = labels()
    order, _ = epoch_order(0, 0, len(y), DistInfo())
    assert sorted(order.tolist()) == list(range(len(y)))
    w = class_weights(y, len(COUNTS))[y]
    a, _ = epoch_order(3, 1, len(y), DistInfo(), w)
    b, _ = epoch_order(3, 1, len(y), DistInfo(), w)
    c, _ = epoch_order(3, 2, len(y), DistInfo(), w)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("counts", [(1, 1), (3, 7, 0, 1)])
def test_small_cases_by_hand(counts):
    y = labels(counts)
    w = class_weights(y, len(counts)).numpy()
    n, c = sum(counts), len(counts)
    np.testing.assert_allclose(w, [n / (c * k) if k else 0.0 for k in counts], rtol=1e-6)
