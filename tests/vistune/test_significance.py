"""Paired tests on small synthetic prediction sets whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vistune.evaluate import significance as sig
from vistune.evaluate.metrics import summarize


def _pair(n: int, champion_wrong: int, challenger_wrong: int, overlap: int = 0, n_classes: int = 4):
    """Labels plus two prediction arrays: the first `champion_wrong` images are wrong for the
    champion, the challenger is wrong on `challenger_wrong` images of which `overlap` are shared."""
    y = np.arange(n) % n_classes
    champ, chal = y.copy(), y.copy()
    champ[:champion_wrong] = (y[:champion_wrong] + 1) % n_classes
    start = champion_wrong - overlap
    chal[start : start + challenger_wrong] = (y[start : start + challenger_wrong] + 1) % n_classes
    return y, champ, chal


def test_mcnemar_exact_matches_hand_computed_binomial():
    # 6 discordant images, all gained: p = 2 * 0.5**6
    r = sig.mcnemar(np.array([0] * 6 + [1] * 10, bool), np.ones(16, bool))
    assert (r.gained, r.lost, r.method) == (6, 0, "exact")
    assert r.p_value == pytest.approx(2 / 64)
    # 5 gained, 3 lost: p = 2 * (C(8,0)+C(8,1)+C(8,2)+C(8,3)) / 256 = 2 * 93 / 256
    a = np.array([0, 0, 0, 0, 0, 1, 1, 1], bool)
    r = sig.mcnemar(a, ~a)
    assert (r.gained, r.lost) == (5, 3) and r.p_value == pytest.approx(186 / 256)


def test_mcnemar_chi_square_with_continuity_correction():
    y, champ, chal = _pair(200, champion_wrong=40, challenger_wrong=10)
    r = sig.mcnemar(champ == y, chal == y)
    assert (r.gained, r.lost, r.method) == (40, 10, "chi2")
    stat = (abs(40 - 10) - 1) ** 2 / 50
    assert r.statistic == pytest.approx(stat)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(stat / 2)))  # chi2(1) survival
    assert r.p_value < 1e-4


def test_identical_models_are_not_significant():
    y, champ, _ = _pair(120, champion_wrong=30, challenger_wrong=0)
    mc = sig.mcnemar(champ == y, champ == y)
    assert (mc.gained, mc.lost, mc.p_value, mc.method) == (0, 0, 1.0, "none")
    boot = sig.paired_bootstrap(y, champ, champ, "macro_f1", 4, n_boot=200, seed=1)
    assert boot.delta == 0.0 and boot.low == 0.0 and boot.high == 0.0 and boot.p_value == 1.0
    for test in ("mcnemar", "bootstrap"):
        assert not sig.is_significant(test, 0.05, mc, boot)[0]


def test_clearly_better_is_significant_and_worse_is_rejected():
    y, champ, chal = _pair(300, champion_wrong=60, challenger_wrong=15, overlap=5)
    mc = sig.mcnemar(champ == y, chal == y)
    boot = sig.paired_bootstrap(y, champ, chal, "accuracy", 4, n_boot=500, seed=0)
    assert boot.delta == pytest.approx((60 - 15) / 300)
    assert 0 < boot.low < boot.delta < boot.high
    assert sig.is_significant("mcnemar", 0.05, mc, boot)[0]
    assert sig.is_significant("bootstrap", 0.05, mc, boot)[0]
    # the same pair the other way round: significant difference, but the wrong direction
    mc_w = sig.mcnemar(chal == y, champ == y)
    boot_w = sig.paired_bootstrap(y, chal, champ, "accuracy", 4, n_boot=500, seed=0)
    assert mc_w.p_value == pytest.approx(mc.p_value) and boot_w.high < 0
    assert not sig.is_significant("mcnemar", 0.05, mc_w, boot_w)[0]
    assert not sig.is_significant("bootstrap", 0.05, mc_w, boot_w)[0]
    for test in ("mcnemar", "bootstrap"):  # the report's words say which way
        assert sig.verdict(test, 0.05, mc, boot) == "significantly better"
        assert sig.verdict(test, 0.05, mc_w, boot_w) == "significantly worse"


def test_small_gain_is_not_significant():
    y, champ, chal = _pair(300, champion_wrong=12, challenger_wrong=9)  # +12 / -9 images
    mc = sig.mcnemar(champ == y, chal == y)
    boot = sig.paired_bootstrap(y, champ, chal, "macro_f1", 4, n_boot=500, seed=0)
    assert mc.method == "exact" and mc.p_value > 0.5
    assert boot.delta > 0 and boot.low < 0 < boot.high
    assert not sig.is_significant("mcnemar", 0.05, mc, boot)[0]
    assert not sig.is_significant("bootstrap", 0.05, mc, boot)[0]
    assert {sig.verdict(t, 0.05, mc, boot) for t in ("mcnemar", "bootstrap")} == {"no significant difference"}


def test_bootstrap_is_seeded_and_macro_f1_matches_summarize():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 80)
    a = np.where(rng.random(80) < 0.7, y, rng.integers(0, 5, 80))
    b = np.where(rng.random(80) < 0.8, y, rng.integers(0, 5, 80))
    r1 = sig.paired_bootstrap(y, a, b, "macro_f1", 5, n_boot=300, seed=7)
    r2 = sig.paired_bootstrap(y, a, b, "macro_f1", 5, n_boot=300, seed=7, chunk=40)
    assert r1 == r2
    classes = [str(c) for c in range(5)]
    want = summarize(y, b, classes)[0]["macro_f1"] - summarize(y, a, classes)[0]["macro_f1"]
    assert r1.delta == pytest.approx(want)
    np.testing.assert_allclose(sig.per_class_f1(y, b, 5), summarize(y, b, classes)[1]["f1"].to_numpy())


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="different images"):
        sig.mcnemar(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="unknown bootstrap metric"):
        sig.paired_bootstrap(np.zeros(3), np.zeros(3), np.zeros(3), "auc", 2)
    with pytest.raises(ValueError, match="unknown gate test"):
        sig.is_significant(
            "ttest",
            0.05,
            sig.mcnemar(np.ones(2, bool), np.ones(2, bool)),
            sig.paired_bootstrap(np.zeros(2), np.zeros(2), np.zeros(2), "accuracy", 1, n_boot=10),
        )
