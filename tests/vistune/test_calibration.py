"""ECE on a hand-computed case; temperature scaling recovers a known over-confidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistune.evaluate.calibration import expected_calibration_error, fit_temperature, reliability_table


def test_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65]])
    y = np.array([0, 1, 1])
    # bin (0.9, 1.0]: 2 samples, accuracy 0.5, confidence 0.95; bin (0.6, 0.7]: 1 sample, acc 1, conf 0.65
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(2 / 3 * 0.45 + 1 / 3 * 0.35)
    table = reliability_table(probs, y, n_bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 2]
    assert table.loc[9, "accuracy"] == pytest.approx(0.5)


def test_perfectly_calibrated_is_zero_and_empty_is_zero():
    probs = np.array([[0.75, 0.25]] * 4)
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, y, n_bins=4) == pytest.approx(0.0)
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 0.0


def test_temperature_recovers_known_overconfidence():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6000, 3, generator=g) * 1.5
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)  # labels drawn from softmax(z)
    overconfident = 3.0 * z
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.1)
    nll = lambda temp: torch.nn.functional.cross_entropy(overconfident / temp, y).item()  # noqa: E731
    assert nll(t) < nll(1.0)
    probs_before = overconfident.softmax(1).numpy()
    probs_after = (overconfident / t).softmax(1).numpy()
    assert (probs_before.argmax(1) == probs_after.argmax(1)).all()  # accuracy unchanged
    assert expected_calibration_error(probs_after, y.numpy()) < expected_calibration_error(probs_before, y.numpy())


def test_validation_without_errors_keeps_t_one():
    """Every val answer right: the NLL keeps falling as T -> 0, so there is no T to fit."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (76,), generator=g)
    logits = torch.randn(76, 2, generator=g)
    logits[torch.arange(76), y] += 5.0  # all right, with a margin
    assert (logits.argmax(1) == y).all()
    assert fit_temperature(logits, y) == 1.0
    logits[0] = logits[0].flip(0)  # one error: a finite T again
    assert 0.05 < fit_temperature(logits, y) < 20


def test_empty_validation_keeps_t_one():
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0


def test_reliability_table_matches_scikit_learn_calibration_curve():
    """Per-bin accuracy and confidence equal sklearn's calibration_curve on (correct, confidence)."""
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.7, size=2000)
    y = np.array([rng.choice(4, p=row**1.5 / (row**1.5).sum()) for row in probs])  # miscalibrated on purpose
    conf, correct = probs.max(1), probs.argmax(1) == y
    table = reliability_table(probs, y, n_bins=10)
    used = table[table["count"] > 0]
    acc, mean_conf = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(used.accuracy, acc)
    np.testing.assert_allclose(used.confidence, mean_conf)
    counts = np.histogram(conf, bins=np.linspace(0, 1, 11))[0]
    ece = float(np.sum(counts[counts > 0] / len(y) * np.abs(acc - mean_conf)))
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(ece)
